//! The key set of `--jwt-jwks-url`, kept fresh without ever locking anyone out.
//!
//! - **Startup** ([`Jwks::start`]): the first fetch must succeed, or the node exits 1
//!   (unless `--jwt-jwks-allow-start-without-keys`: then it starts with no keys and keeps
//!   trying in the background, every token refused until a fetch succeeds).
//! - **Background refresh**: after a good fetch, again at 4/5 of the set's lifetime (the
//!   response's `Cache-Control: max-age`, bounded to [min, max] refresh; no header = min),
//!   so new keys are known before old tokens stop being the only ones in use. After a
//!   failed fetch, again after 1 s, 2 s, 4 s, … up to min.
//! - **Unknown `kid`** ([`Jwks::refresh_for_unknown_kid`]): a token naming a key we do not
//!   have triggers one fetch, at most one per min interval counted from the last fetch of
//!   any kind, so a flood of forged `kid`s costs the provider at most one request per
//!   interval. Requests that arrive while a fetch runs wait for it (single flight).
//! - **Failures keep the last good set**: an unreachable endpoint, a non-200 answer, a body
//!   that is not a JWKS or one with no usable key changes nothing but the metrics
//!   (`switchboard_jwks_refresh_total{result="error"}`) and a warning.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use super::fetch::Source;
use super::jwk::KeySet;
use crate::metrics as m;

/// What started a fetch (the `trigger` label of `switchboard_jwks_refresh_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Startup,
    Scheduled,
    UnknownKid,
}

impl Trigger {
    pub fn label(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::Scheduled => "scheduled",
            Trigger::UnknownKid => "unknown_kid",
        }
    }
}

/// When to fetch again: pure functions of the settings, unit-tested.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Shortest lifetime given to a set, and the least time between two fetches that an
    /// unknown `kid` may cause (`--jwt-jwks-min-refresh-seconds`).
    pub min: Duration,
    /// Longest lifetime given to a set (`--jwt-jwks-max-refresh-seconds`).
    pub max: Duration,
}

impl Policy {
    /// The lifetime of a set fetched with `max_age` (from `Cache-Control`): bounded to
    /// [min, max]; none given = min.
    pub fn lifetime(&self, max_age: Option<Duration>) -> Duration {
        max_age.unwrap_or(self.min).clamp(self.min, self.max)
    }

    /// When the background task fetches after a good fetch: at 4/5 of the lifetime, so the
    /// set is renewed before it expires, never sooner than min.
    pub fn refresh_after(&self, lifetime: Duration) -> Duration {
        (lifetime * 4 / 5).max(self.min)
    }

    /// When the background task tries again after `failures` failed fetches in a row
    /// (1, 2, …): 1 s doubling, at most min.
    pub fn retry_after(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(16);
        Duration::from_secs(1u64 << exp).min(self.min)
    }

    /// Whether an unknown `kid` may start a fetch `now`, the last fetch having started at
    /// `last` (`None`: never).
    pub fn may_fetch_for_unknown_kid(&self, last: Option<Instant>, now: Instant) -> bool {
        last.is_none_or(|last| now.saturating_duration_since(last) >= self.min)
    }
}

/// Bookkeeping of the fetches (under a short std mutex, never held across an await).
#[derive(Default)]
struct State {
    /// When the last fetch started, of any trigger.
    last_attempt: Option<Instant>,
    /// Fetches finished (good or not): a waiter that sees it change knows one completed.
    completed: u64,
    /// Failed fetches in a row.
    failures: u32,
}

/// The cached key set of one JWKS URL. Shared (`Arc`) by the authenticator and the
/// background task.
pub struct Jwks {
    source: Source,
    policy: Policy,
    /// Start even when the first fetch fails (`--jwt-jwks-allow-start-without-keys`).
    allow_start_without_keys: bool,
    /// The last good set; swapped whole, read (an `Arc` clone) per token.
    keys: RwLock<Arc<KeySet>>,
    state: Mutex<State>,
    /// Held for the whole of a fetch: one fetch at a time (single flight).
    fetching: Arc<tokio::sync::Mutex<()>>,
    /// The URL without its query, for logs.
    url_for_logs: String,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &self.url_for_logs)
            .field("policy", &self.policy)
            .field("keys", &self.current().len())
            .finish_non_exhaustive()
    }
}

impl Jwks {
    /// A key set for `url`, empty until [`Jwks::start`].
    pub fn new(url: &str, policy: Policy, allow_start_without_keys: bool) -> Result<Jwks, String> {
        let source = Source::new(url)?;
        Ok(Jwks {
            source,
            policy,
            allow_start_without_keys,
            keys: RwLock::new(Arc::new(KeySet::default())),
            state: Mutex::new(State::default()),
            fetching: Arc::new(tokio::sync::Mutex::new(())),
            url_for_logs: url.split(['?', '#']).next().unwrap_or_default().to_owned(),
        })
    }

    /// Whether the keys are fetched over plain `http://`.
    pub fn is_plain_http(&self) -> bool {
        self.source.is_plain_http()
    }

    /// The current set (cheap: an `Arc` clone).
    pub fn current(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the set (unit tests of the authenticator, without a server).
    #[cfg(test)]
    pub fn set_keys(&self, set: KeySet) {
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The first fetch, then the background refresh task. Fails when the first fetch
    /// fails, unless starting without keys is allowed.
    pub async fn start(self: &Arc<Self>) -> Result<(), String> {
        for trigger in [Trigger::Startup, Trigger::Scheduled, Trigger::UnknownKid] {
            for result in ["ok", "error"] {
                metrics::counter!(m::JWKS_REFRESH, "trigger" => trigger.label(), "result" => result)
                    .absolute(0);
            }
        }
        metrics::gauge!(m::JWKS_KEYS).set(0.0);
        let guard = self.fetching.clone().lock_owned().await;
        let first = self.fetch_locked(Trigger::Startup, guard).await;
        let wait = match first {
            Ok(wait) => wait,
            Err(e) if self.allow_start_without_keys => {
                tracing::warn!(
                    url = %self.url_for_logs,
                    error = %e,
                    "starting without JWT keys (--jwt-jwks-allow-start-without-keys): every \
                     token is refused until a fetch succeeds"
                );
                self.policy.retry_after(1)
            }
            Err(e) => return Err(format!("cannot fetch {}: {e}", self.url_for_logs)),
        };
        tokio::spawn(self.clone().refresh_loop(wait));
        Ok(())
    }

    async fn refresh_loop(self: Arc<Self>, mut wait: Duration) {
        loop {
            // A little jitter (up to 1/10) so that a fleet of nodes does not fetch in step.
            let jitter = wait.mul_f64(rand::random::<f64>() / 10.0);
            tokio::time::sleep(wait.saturating_sub(jitter)).await;
            let guard = self.fetching.clone().lock_owned().await;
            wait = match self.fetch_locked(Trigger::Scheduled, guard).await {
                Ok(wait) => wait,
                Err(_) => self.policy.retry_after(self.state().failures),
            };
        }
    }

    /// A token named a `kid` the set does not have: fetch once, unless a fetch started
    /// less than min ago. Returns whether a fetch finished since the call (a good one
    /// or not), i.e. whether looking the `kid` up again may find it.
    pub async fn refresh_for_unknown_kid(self: &Arc<Self>) -> bool {
        let seen = self.state().completed;
        let guard = self.fetching.clone().lock_owned().await;
        if self.state().completed != seen {
            // Another request's fetch finished while we waited: use its result.
            return true;
        }
        let last = self.state().last_attempt;
        if !self.policy.may_fetch_for_unknown_kid(last, Instant::now()) {
            return false;
        }
        // In its own task, so a client that gives up cannot cut the fetch short.
        let this = self.clone();
        let fetch =
            tokio::spawn(async move { this.fetch_locked(Trigger::UnknownKid, guard).await });
        let _ = fetch.await;
        true
    }

    /// One fetch, under the single-flight `guard`: swaps the set in when it is good and
    /// returns when to fetch again; keeps the old set and returns the error otherwise.
    async fn fetch_locked(
        &self,
        trigger: Trigger,
        guard: tokio::sync::OwnedMutexGuard<()>,
    ) -> Result<Duration, String> {
        self.state().last_attempt = Some(Instant::now());
        let result = match self.source.fetch().await {
            Ok(fetched) => KeySet::parse(&fetched.body).and_then(|set| {
                if set.is_empty() {
                    Err(format!(
                        "no usable key in the set ({})",
                        set.skipped.join("; ")
                    ))
                } else {
                    Ok((set, fetched.max_age))
                }
            }),
            Err(e) => Err(e),
        };
        let outcome = match result {
            Ok((set, max_age)) => {
                let lifetime = self.policy.lifetime(max_age);
                if !set.skipped.is_empty() {
                    tracing::warn!(
                        url = %self.url_for_logs,
                        skipped = %set.skipped.join("; "),
                        "some JWKS keys are not usable and are ignored"
                    );
                }
                let count = set.len();
                let old = std::mem::replace(
                    &mut *self.keys.write().unwrap_or_else(|e| e.into_inner()),
                    Arc::new(set),
                );
                tracing::info!(
                    url = %self.url_for_logs,
                    keys = count,
                    before = old.len(),
                    lifetime_secs = lifetime.as_secs(),
                    trigger = trigger.label(),
                    "JWT keys fetched"
                );
                metrics::gauge!(m::JWKS_KEYS).set(count as f64);
                metrics::gauge!(m::JWKS_LAST_SUCCESS)
                    .set(switchboard_proto::clock::now_secs() as f64);
                self.state().failures = 0;
                Ok(self.policy.refresh_after(lifetime))
            }
            Err(e) => {
                let failures = {
                    let mut state = self.state();
                    state.failures = state.failures.saturating_add(1);
                    state.failures
                };
                tracing::warn!(
                    url = %self.url_for_logs,
                    error = %e,
                    failures,
                    kept_keys = self.current().len(),
                    trigger = trigger.label(),
                    "cannot refresh the JWT keys; keeping the last good set"
                );
                Err(e)
            }
        };
        let result = if outcome.is_ok() { "ok" } else { "error" };
        metrics::counter!(m::JWKS_REFRESH, "trigger" => trigger.label(), "result" => result)
            .increment(1);
        self.state().completed += 1;
        drop(guard);
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        min: Duration::from_secs(60),
        max: Duration::from_secs(86_400),
    };

    #[test]
    fn lifetime_is_max_age_bounded() {
        let secs = Duration::from_secs;
        assert_eq!(POLICY.lifetime(None), secs(60));
        assert_eq!(POLICY.lifetime(Some(Duration::ZERO)), secs(60));
        assert_eq!(POLICY.lifetime(Some(secs(15))), secs(60));
        assert_eq!(POLICY.lifetime(Some(secs(3600))), secs(3600));
        assert_eq!(POLICY.lifetime(Some(secs(30 * 86_400))), secs(86_400));
    }

    #[test]
    fn refresh_comes_before_expiry_but_not_before_min() {
        let secs = Duration::from_secs;
        assert_eq!(POLICY.refresh_after(secs(3600)), secs(2880));
        assert_eq!(POLICY.refresh_after(secs(60)), secs(60));
        assert_eq!(POLICY.refresh_after(secs(70)), secs(60));
        assert_eq!(POLICY.refresh_after(secs(86_400)), secs(69_120));
    }

    #[test]
    fn failures_back_off_up_to_min() {
        let got: Vec<u64> = (1..=9).map(|n| POLICY.retry_after(n).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(POLICY.retry_after(u32::MAX), Duration::from_secs(60));
        let short = Policy {
            min: Duration::from_secs(1),
            ..POLICY
        };
        assert_eq!(short.retry_after(5), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_kids_fetch_at_most_once_per_min() {
        let start = Instant::now();
        assert!(POLICY.may_fetch_for_unknown_kid(None, start));
        let mut fetches = 0;
        let mut last = None;
        // A forged kid every 100 ms for ten minutes.
        for _ in 0..6000 {
            let now = Instant::now();
            if POLICY.may_fetch_for_unknown_kid(last, now) {
                fetches += 1;
                last = Some(now);
            }
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        assert_eq!(fetches, 10);
        assert!(!POLICY.may_fetch_for_unknown_kid(Some(start), start + Duration::from_secs(59)));
        assert!(POLICY.may_fetch_for_unknown_kid(Some(start), start + Duration::from_secs(60)));
    }

    #[test]
    fn urls_are_checked() {
        let policy = POLICY;
        assert!(Jwks::new(
            "https://idp.example.com/.well-known/jwks.json",
            policy,
            false
        )
        .is_ok_and(|j| !j.is_plain_http()));
        assert!(
            Jwks::new("http://127.0.0.1:8080/jwks", policy, false).is_ok_and(|j| j.is_plain_http())
        );
        for bad in [
            "ftp://idp/jwks",
            "idp.example.com/jwks",
            "https://user:pw@idp/jwks",
            "not a url",
            "https:///jwks",
        ] {
            assert!(Jwks::new(bad, policy, false).is_err(), "{bad}");
        }
    }
}
