//! The sharded subscriber: one SSUBSCRIBE connection per primary, carrying the shard
//! channels (`P{ch}`) of the channels this node holds whose slots that primary serves.
//!
//! - `subscribe` sends SSUBSCRIBE on the owner's connection and waits for Redis to
//!   confirm; messages arrive on that connection's reader task and go to the node's sink
//!   right there ([`Dispatch`]), with no task hop.
//! - A subscriber that breaks (Redis gone, failover), a slot that moves (Redis sends
//!   `sunsubscribe` for its channels), or a probe that does not come back marks the
//!   channels involved *interrupted*; the reconcile task refreshes the slot map,
//!   subscribes them on their owner again, and once Redis confirmed, tells the sink,
//!   which repairs them from history ([`NodeSink::channels_interrupted`]).
//! - Every half probe interval the node publishes a probe through each shard (to a
//!   channel in one of that shard's slots) and judges each shard by its probes: down when
//!   one Redis accepted is not back one interval later, forced to reconnect when it is
//!   two intervals late. The backplane is up when every shard is.
//!
//! # Layout
//! - this file: the state (wanted channels, subscribers) and the API the router uses.
//! - `dispatch`: what a subscriber's reader task does with what it reads.
//! - `reconcile`: opening subscribers and (re)subscribing channels on their owners.
//! - `probes`: the per-shard probes, the judgement of each shard, the watchdog.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::keys::Keys;
use crate::redis::client::{Client, Cmd, Conn, Error};
use crate::{NodeSink, ShardStatus};

mod dispatch;
mod probes;
mod reconcile;

use probes::{judge, probe_round, watchdog};
use reconcile::{reconcile, reconcile_loop};

/// One wanted shard channel.
struct Want {
    /// The subscriber Redis confirmed it on.
    on: Option<u64>,
    /// The subscriber an SSUBSCRIBE for it is in flight on.
    sent_on: Option<u64>,
    /// Live delivery may have missed messages: report once confirmed again.
    interrupted: bool,
    /// A liveness probe channel (not reported to the sink).
    probe: bool,
    waiters: Vec<oneshot::Sender<Result<(), Error>>>,
    /// When it was first wanted: a new subscription Redis has not confirmed yet is in
    /// flight, not an outage, until it is older than a probe interval.
    since: Instant,
}

impl Want {
    fn new(probe: bool) -> Want {
        Want {
            on: None,
            sent_on: None,
            interrupted: false,
            probe,
            waiters: Vec::new(),
            since: Instant::now(),
        }
    }

    /// Unconfirmed and holding readiness back: it lost its subscription (live delivery
    /// is interrupted until it is back), or Redis has not confirmed it for `grace`.
    fn holds_back(&self, grace: Duration) -> bool {
        self.on.is_none() && (self.interrupted || self.since.elapsed() >= grace)
    }
}

/// A command of a subscriber whose answer has not arrived.
enum Pending {
    Subscribe(VecDeque<String>),
    /// With whoever waits for Redis to confirm.
    Unsubscribe(VecDeque<String>, Option<oneshot::Sender<()>>),
}

/// Probe bookkeeping of one subscriber, shared with its reader task.
#[derive(Default)]
struct Probes {
    sent: AtomicU64,
    seen: AtomicU64,
}

struct Sub {
    id: u64,
    addr: String,
    conn: Conn,
    pending: VecDeque<Pending>,
    probes: Arc<Probes>,
    /// The shard index when it was opened (metrics).
    shard: usize,
    /// The probe channel of this shard and whether its probes come back.
    probe_channel: String,
    probe_slot: u16,
    up: bool,
    /// The oldest probe Redis accepted that has not come back, and when.
    missing: Option<(u64, Instant)>,
    accepted: bool,
    last_forced: Instant,
    /// When the current probe channel was chosen or lost its confirmation: when the
    /// subscriber opened, or when the probe moved with its slot. Redis gets two
    /// intervals to confirm it before the subscriber is reconnected.
    probe_since: Instant,
}

#[derive(Default)]
struct State {
    wanted: HashMap<String, Want>,
    subs: HashMap<String, Sub>,
    /// Wanted channels not confirmed anywhere.
    unconfirmed: usize,
    /// Channels to (re)subscribe on the next reconcile pass.
    dirty: Vec<String>,
    /// Subscribers opened per shard index (the first one is not a reconnect).
    opened: Vec<u64>,
}

pub(super) struct Shards {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    keys: Keys,
    node: String,
    sink: OnceLock<Arc<dyn NodeSink>>,
    state: Mutex<State>,
    wake: Notify,
    stopped: CancellationToken,
    probe_interval: Duration,
    timeout: Duration,
    next_id: AtomicU64,
    up: AtomicBool,
    refresh: AtomicBool,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Shards {
    pub(super) fn new(
        client: Client,
        keys: Keys,
        node: String,
        probe_interval: Duration,
        timeout: Duration,
    ) -> Shards {
        Shards {
            inner: Arc::new(Inner {
                client,
                keys,
                node,
                sink: OnceLock::new(),
                state: Mutex::new(State::default()),
                wake: Notify::new(),
                stopped: CancellationToken::new(),
                probe_interval,
                timeout,
                next_id: AtomicU64::new(1),
                up: AtomicBool::new(false),
                refresh: AtomicBool::new(false),
            }),
        }
    }

    /// Opens a subscriber per shard, starts the reconcile and probe tasks and waits until
    /// a probe made the round trip through every shard (fails fast otherwise).
    pub(super) async fn start(&self, sink: Arc<dyn NodeSink>) -> Result<(), Error> {
        let _ = self.inner.sink.set(sink);
        reconcile(&self.inner).await;
        tokio::spawn(reconcile_loop(self.inner.clone()));
        let deadline = Instant::now() + self.inner.timeout * 2;
        loop {
            probe_round(&self.inner).await;
            if judge(&self.inner) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Unavailable(
                    "no pub/sub round trip through every Redis shard".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts the probe watchdog (after `start`).
    pub(super) fn spawn_watchdog(&self) {
        tokio::spawn(watchdog(self.inner.clone()));
    }

    pub(super) fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::SeqCst)
    }

    pub(super) fn stop(&self) {
        self.inner.stopped.cancel();
        let subs: Vec<Conn> = self
            .inner
            .lock()
            .subs
            .values()
            .map(|s| s.conn.clone())
            .collect();
        for c in subs {
            c.close(Error::Closed);
        }
    }

    /// Subscribes the shard channel `live` and waits until Redis confirmed it.
    pub(super) async fn subscribe(&self, live: &str) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.inner.lock();
            let st = &mut *st;
            if !st.wanted.contains_key(live) {
                st.wanted.insert(live.to_owned(), Want::new(false));
                st.unconfirmed += 1;
            }
            let want = st.wanted.get_mut(live).expect("inserted above");
            if want.on.is_some() {
                return Ok(());
            }
            want.waiters.push(tx);
            if want.sent_on.is_none() && !send_subscribe(&self.inner, st, live) {
                st.dirty.push(live.to_owned());
                self.inner.wake.notify_one();
            }
        }
        match tokio::time::timeout(self.inner.timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => {
                self.unsubscribe(live);
                Err(Error::Timeout)
            }
        }
    }

    /// [`Shards::subscribe`] for an owned name (to collect many futures).
    pub(super) async fn subscribe_owned(&self, live: String) -> Result<(), Error> {
        self.subscribe(&live).await
    }

    /// Stops receiving the shard channel `live` (Redis confirms in the background).
    pub(super) fn unsubscribe(&self, live: &str) {
        self.unsubscribe_inner(live);
    }

    /// Stops receiving the shard channel `live` and waits until Redis confirmed it (at
    /// most the command timeout).
    pub(super) async fn unsubscribe_confirmed(&self, live: &str) {
        if let Some(rx) = self.unsubscribe_inner(live) {
            let _ = tokio::time::timeout(self.inner.timeout, rx).await;
        }
    }

    fn unsubscribe_inner(&self, live: &str) -> Option<oneshot::Receiver<()>> {
        let mut st = self.inner.lock();
        let want = st.wanted.remove(live)?;
        if want.on.is_none() {
            st.unconfirmed -= 1;
        }
        for w in want.waiters {
            let _ = w.send(Err(Error::Closed));
        }
        let mut confirmed = None;
        for id in [want.on, want.sent_on].into_iter().flatten() {
            if let Some(sub) = st.subs.values_mut().find(|s| s.id == id) {
                if sub.conn.send(&Cmd::new("SUNSUBSCRIBE").arg(live)).is_ok() {
                    let (tx, rx) = oneshot::channel();
                    confirmed = Some(rx);
                    sub.pending.push_back(Pending::Unsubscribe(
                        VecDeque::from([live.to_owned()]),
                        Some(tx),
                    ));
                }
            }
        }
        confirmed
    }

    /// Every shard of the current slot map with its subscriber's state.
    pub(super) fn status(&self) -> Vec<ShardStatus> {
        let topology = self.inner.client.topology();
        let st = self.inner.lock();
        let mut counts: HashMap<u64, usize> = HashMap::new();
        for w in st.wanted.values() {
            if let (Some(id), false) = (w.on, w.probe) {
                *counts.entry(id).or_default() += 1;
            }
        }
        topology
            .shards
            .iter()
            .enumerate()
            .map(|(index, shard)| {
                let sub = st.subs.get(&shard.primary);
                ShardStatus {
                    index,
                    primary: shard.primary.clone(),
                    up: sub.is_some_and(|s| s.up),
                    subscriptions: sub.and_then(|s| counts.get(&s.id)).copied().unwrap_or(0),
                    reconnects: st.opened.get(index).map_or(0, |n| n.saturating_sub(1)),
                    replicas: shard.replicas,
                }
            })
            .collect()
    }
}

/// Sends SSUBSCRIBE for `live` on its owner's subscriber, if there is one. Returns
/// false when there is none yet (the reconcile task opens it).
fn send_subscribe(inner: &Inner, st: &mut State, live: &str) -> bool {
    let topology = inner.client.topology();
    let Some(owner) = topology.primary_of(inner.keys.slot_of_key(live)) else {
        return false;
    };
    let Some(sub) = st.subs.get_mut(owner) else {
        return false;
    };
    if sub.conn.send(&Cmd::new("SSUBSCRIBE").arg(live)).is_err() {
        return false;
    }
    sub.pending
        .push_back(Pending::Subscribe(VecDeque::from([live.to_owned()])));
    let id = sub.id;
    if let Some(w) = st.wanted.get_mut(live) {
        w.sent_on = Some(id);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn readiness_waits_a_grace_for_new_subscriptions_only() {
        let grace = Duration::from_secs(1);
        let mut fresh = Want::new(false);
        assert!(!fresh.holds_back(grace), "in flight");
        tokio::time::advance(grace).await;
        assert!(fresh.holds_back(grace), "stuck for an interval");
        fresh.on = Some(1);
        assert!(!fresh.holds_back(grace), "confirmed");

        let mut lost = Want::new(false);
        lost.interrupted = true;
        assert!(lost.holds_back(grace), "a lost subscription counts at once");
        lost.on = Some(2);
        lost.interrupted = false;
        assert!(!lost.holds_back(grace));
    }
}
