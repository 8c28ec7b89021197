//! What one process measures: counters, close codes, failure kinds, latency histograms and
//! the per-second timeline. [`Partial`] is what a process reports (histograms as base64
//! HdrHistogram V2 serialisations); `report` merges the partials of all processes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::payload::now_us;

/// Largest value a histogram tracks exactly: one hour in µs (larger values saturate).
pub const HIST_MAX_US: u64 = 3_600_000_000;
const SHARDS: usize = 8;

/// An empty histogram (1 µs .. 1 h, 3 significant digits).
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("valid histogram bounds")
}

/// A histogram recorded from many tasks: a few shards so they rarely wait on each other.
pub struct Histo {
    shards: Vec<Mutex<Histogram<u64>>>,
    next: AtomicUsize,
}

impl Default for Histo {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(new_hist())).collect(),
            next: AtomicUsize::new(0),
        }
    }
}

impl Histo {
    /// Records `v` µs (at least 1; at most [`HIST_MAX_US`]).
    pub fn record(&self, v: u64) {
        let start = self.next.fetch_add(1, Relaxed);
        let v = v.clamp(1, HIST_MAX_US);
        for i in 0..SHARDS {
            if let Ok(mut h) = self.shards[(start + i) % SHARDS].try_lock() {
                h.saturating_record(v);
                return;
            }
        }
        let mut h = self.shards[start % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        h.saturating_record(v);
    }

    /// All shards merged.
    pub fn snapshot(&self) -> Histogram<u64> {
        let mut out = new_hist();
        for s in &self.shards {
            let h = s.lock().unwrap_or_else(|p| p.into_inner());
            out.add(&*h).expect("same bounds");
        }
        out
    }
}

/// Base64 of the V2 serialisation.
pub fn encode(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut buf)
        .expect("serialising into a Vec cannot fail");
    base64::engine::general_purpose::STANDARD.encode(buf)
}

/// The inverse of [`encode`] (an empty string is an empty histogram).
pub fn decode(s: &str) -> Result<Histogram<u64>, String> {
    if s.is_empty() {
        return Ok(new_hist());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("histogram base64: {e}"))?;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("histogram: {e:?}"))?;
    let mut out = new_hist();
    out.add(&h).map_err(|e| format!("histogram: {e:?}"))?;
    Ok(out)
}

/// Summary statistics of a histogram, in µs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
    pub count: u64,
}

impl Stat {
    pub fn of(h: &Histogram<u64>) -> Stat {
        let q = |x: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(x)
            }
        };
        Stat {
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: if h.is_empty() { 0 } else { h.max() },
            mean: if h.is_empty() {
                0.0
            } else {
                (h.mean() * 10.0).round() / 10.0
            },
            count: h.len(),
        }
    }
}

/// One second of the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub unix_s: u64,
    /// Open connections at the end of the second.
    pub connected: i64,
    /// Events during the second.
    pub reconnects: u64,
    pub closes: u64,
    pub sent: u64,
    pub delivered: u64,
}

/// The live measurements of one process.
#[derive(Default)]
pub struct Stats {
    pub connected: AtomicI64,
    pub attempted: AtomicU64,
    pub established: AtomicU64,
    pub failed: AtomicU64,
    pub reconnects: AtomicU64,
    pub closes_total: AtomicU64,
    pub recovery_failed: AtomicU64,
    pub scheduled: AtomicU64,
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub send_failed: AtomicU64,
    /// Unanswered publishes sent again (same idempotency key) after a reconnect.
    pub resent: AtomicU64,
    pub delivered: AtomicU64,
    pub duplicated: AtomicU64,
    pub out_of_order: AtomicU64,
    failures: Mutex<BTreeMap<String, u64>>,
    closes: Mutex<BTreeMap<String, u64>>,
    pub latency: Histo,
    /// Send start − scheduled time, µs: the load generator's own lateness (a late message is
    /// still timed from its schedule, so this is already inside `latency`).
    pub send_lag: Histo,
    pub handshake: Histo,
    timeline: Mutex<Vec<Point>>,
}

fn bump(m: &Mutex<BTreeMap<String, u64>>, key: String) {
    *m.lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key)
        .or_default() += 1;
}

impl Stats {
    /// A message scheduled at `at_us` starts being sent now.
    pub fn send_started(&self, at_us: u64) {
        self.send_lag.record(now_us().saturating_sub(at_us));
    }

    /// A setup attempt failed with `kind`.
    pub fn fail(&self, kind: String) {
        self.failed.fetch_add(1, Relaxed);
        bump(&self.failures, kind);
    }

    /// A reconnect attempt failed with `kind` (listed as `reconnect_<kind>`; not counted in
    /// `failed`, which is about the setup phase).
    pub fn fail_reconnect(&self, kind: String) {
        bump(&self.failures, format!("reconnect_{kind}"));
    }

    /// A connection was closed by the other side (or the network) with `code`.
    pub fn close(&self, code: u16) {
        self.closes_total.fetch_add(1, Relaxed);
        bump(&self.closes, code.to_string());
    }

    pub fn closes(&self) -> BTreeMap<String, u64> {
        self.closes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn failures(&self) -> BTreeMap<String, u64> {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Samples the timeline at every whole second until `stop`, plus a last sample.
    pub async fn run_timeline(self: Arc<Self>, stop: CancellationToken) {
        let mut last = [0u64; 4];
        loop {
            let now = now_us();
            let next = (now / 1_000_000 + 1) * 1_000_000;
            let stopped = tokio::select! {
                _ = tokio::time::sleep(Duration::from_micros(next - now)) => false,
                _ = stop.cancelled() => true,
            };
            let cur = [
                self.reconnects.load(Relaxed),
                self.closes_total.load(Relaxed),
                self.sent.load(Relaxed),
                self.delivered.load(Relaxed),
            ];
            let p = Point {
                unix_s: if stopped {
                    now_us() / 1_000_000
                } else {
                    next / 1_000_000 - 1
                },
                connected: self.connected.load(Relaxed),
                reconnects: cur[0] - last[0],
                closes: cur[1] - last[1],
                sent: cur[2] - last[2],
                delivered: cur[3] - last[3],
            };
            last = cur;
            let mut t = self.timeline.lock().unwrap_or_else(|e| e.into_inner());
            match t.last_mut() {
                Some(prev) if prev.unix_s == p.unix_s => {
                    prev.connected = p.connected;
                    prev.reconnects += p.reconnects;
                    prev.closes += p.closes;
                    prev.sent += p.sent;
                    prev.delivered += p.delivered;
                }
                _ => t.push(p),
            }
            if stopped {
                return;
            }
        }
    }

    /// The process's report (message totals that need the mode's state are set by it).
    pub fn partial(&self) -> Partial {
        Partial {
            attempted: self.attempted.load(Relaxed),
            established: self.established.load(Relaxed),
            failed: self.failed.load(Relaxed),
            failures: self.failures(),
            handshake: encode(&self.handshake.snapshot()),
            scheduled: self.scheduled.load(Relaxed),
            sent: self.sent.load(Relaxed),
            acked: self.acked.load(Relaxed),
            send_failed: self.send_failed.load(Relaxed),
            resent: self.resent.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            duplicated: self.duplicated.load(Relaxed),
            out_of_order: self.out_of_order.load(Relaxed),
            latency: encode(&self.latency.snapshot()),
            send_lag: encode(&self.send_lag.snapshot()),
            closes: self.closes(),
            recovery_failed: self.recovery_failed.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            timeline: self
                .timeline
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            ..Partial::default()
        }
    }
}

/// Fan-out measurements of one process, indexed by message sequence.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FanoutPartial {
    /// Subscribers of this process that subscribed.
    pub subscribers: u64,
    /// Per message: how many of them got it (first copies only).
    pub counts: Vec<u32>,
    /// Per message: the latest receive − publish time among them, µs.
    pub last_us: Vec<u64>,
    /// Per message, from the publishing process: acknowledged by the server.
    pub acked: Option<Vec<bool>>,
}

/// Slow subscribers of one process.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SlowPartial {
    pub connections: u64,
    pub closes: BTreeMap<String, u64>,
}

/// What one process reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Partial {
    pub attempted: u64,
    pub established: u64,
    pub failed: u64,
    pub failures: BTreeMap<String, u64>,
    pub handshake: String,
    /// First setup attempt started .. last one finished (unix µs).
    pub setup_start_us: u64,
    pub setup_end_us: u64,
    /// Common start (t0) .. last message sent (unix µs); 0 without messages.
    pub send_start_us: u64,
    pub send_end_us: u64,
    pub scheduled: u64,
    pub sent: u64,
    pub acked: u64,
    pub send_failed: u64,
    #[serde(default)]
    pub resent: u64,
    pub unconfirmed: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub latency: String,
    pub send_lag: String,
    pub closes: BTreeMap<String, u64>,
    pub recovery_failed: u64,
    pub reconnects: u64,
    pub timeline: Vec<Point>,
    pub fanout: Option<FanoutPartial>,
    pub slow: Option<SlowPartial>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_survive_encoding_and_merge() {
        let a = Histo::default();
        let b = Histo::default();
        for v in 1..=1000 {
            a.record(v);
        }
        for v in 1001..=2000 {
            b.record(v);
        }
        b.record(HIST_MAX_US * 10); // saturates at the top
        let mut m = decode(&encode(&a.snapshot())).unwrap();
        m.add(decode(&encode(&b.snapshot())).unwrap()).unwrap();
        let s = Stat::of(&m);
        assert_eq!(s.count, 2001);
        assert!((999..=1001).contains(&s.p50), "{s:?}");
        assert!(s.max >= HIST_MAX_US - HIST_MAX_US / 1000, "{s:?}");
        assert_eq!(Stat::of(&decode("").unwrap()).count, 0);
        assert!(decode("!!").is_err());
    }

    #[test]
    fn close_and_failure_tallies() {
        let s = Stats::default();
        s.close(1012);
        s.close(1012);
        s.close(1006);
        s.fail("refused".into());
        let p = s.partial();
        assert_eq!(p.closes.get("1012"), Some(&2));
        assert_eq!(p.closes.get("1006"), Some(&1));
        assert_eq!(p.failed, 1);
        assert_eq!(p.failures.get("refused"), Some(&1));
    }
}
