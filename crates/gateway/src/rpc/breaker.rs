//! A circuit breaker per upstream (docs/protocol.md §4b): `failures` consecutive failures open
//! the circuit for `open_for`; then it is half-open and lets exactly one call through as a
//! probe (every other call sees it as open). The probe's success closes the circuit, its
//! failure opens it for another period. Time is `tokio::time`, so tests can pause it.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// What the `switchboard_rpc_circuit_state` gauge shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

/// Admission to call an upstream, returned by [`Breaker::acquire`]; its result must be
/// reported with [`Breaker::success`], [`Breaker::failure`] or [`Breaker::abandon`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permit {
    /// The circuit was closed.
    Normal,
    /// The one half-open probe.
    Probe,
}

enum Inner {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// `probing`: the probe is in flight.
    HalfOpen {
        probing: bool,
    },
}

impl Inner {
    fn state(&self) -> State {
        match self {
            Inner::Closed { .. } => State::Closed,
            Inner::Open { .. } => State::Open,
            Inner::HalfOpen { .. } => State::HalfOpen,
        }
    }
}

pub struct Breaker {
    failures: u32,
    open_for: Duration,
    inner: Mutex<Inner>,
    /// The circuit state gauge of this route and upstream.
    gauge: metrics::Gauge,
}

impl Breaker {
    pub fn new(failures: u32, open_for: Duration, gauge: metrics::Gauge) -> Breaker {
        gauge.set(f64::from(State::Closed as u8));
        Breaker {
            failures: failures.max(1),
            open_for,
            inner: Mutex::new(Inner::Closed { failures: 0 }),
            gauge,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, inner: &mut Inner, to: Inner) {
        let from = inner.state();
        *inner = to;
        if inner.state() != from {
            self.gauge.set(f64::from(inner.state() as u8));
        }
    }

    #[cfg(test)]
    pub fn state(&self) -> State {
        self.lock().state()
    }

    /// Whether a call may go through now; `None` while open (or half-open with the probe
    /// already in flight). An open circuit whose time is up turns half-open and this call
    /// becomes the probe.
    pub fn acquire(&self) -> Option<Permit> {
        let mut inner = self.lock();
        match *inner {
            Inner::Closed { .. } => Some(Permit::Normal),
            Inner::Open { until } if Instant::now() < until => None,
            Inner::Open { .. } | Inner::HalfOpen { probing: false } => {
                self.set(&mut inner, Inner::HalfOpen { probing: true });
                Some(Permit::Probe)
            }
            Inner::HalfOpen { probing: true } => None,
        }
    }

    /// The upstream answered (anything but a failure). Closes a half-open circuit.
    pub fn success(&self, permit: Permit) {
        let mut inner = self.lock();
        match (&mut *inner, permit) {
            (Inner::Closed { failures }, Permit::Normal) => *failures = 0,
            (Inner::HalfOpen { .. }, Permit::Probe) => {
                self.set(&mut inner, Inner::Closed { failures: 0 })
            }
            // A call admitted before the circuit opened says nothing about now.
            _ => {}
        }
    }

    /// A transport error, a timeout or a 5xx answer. Returns true when this opened the
    /// circuit.
    pub fn failure(&self, permit: Permit) -> bool {
        let mut inner = self.lock();
        let open = Inner::Open {
            until: Instant::now() + self.open_for,
        };
        match (&mut *inner, permit) {
            (Inner::Closed { failures }, Permit::Normal) => {
                *failures = failures.saturating_add(1);
                if *failures >= self.failures {
                    self.set(&mut inner, open);
                    return true;
                }
                false
            }
            (Inner::HalfOpen { .. }, Permit::Probe) => {
                self.set(&mut inner, open);
                true
            }
            _ => false,
        }
    }

    /// The call ended without an answer (the client went away): a probe's turn passes to
    /// the next call.
    pub fn abandon(&self, permit: Permit) {
        let mut inner = self.lock();
        if let (Inner::HalfOpen { probing }, Permit::Probe) = (&mut *inner, permit) {
            *probing = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(3, Duration::from_secs(10), metrics::Gauge::noop())
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_only() {
        let b = breaker();
        for _ in 0..2 {
            assert!(!b.failure(b.acquire().unwrap()));
        }
        // A success resets the count.
        b.success(b.acquire().unwrap());
        assert!(!b.failure(Permit::Normal));
        assert!(!b.failure(Permit::Normal));
        assert_eq!(b.state(), State::Closed);
        assert!(b.failure(Permit::Normal), "the third in a row opens it");
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.acquire(), None);
        // Late answers of calls admitted before it opened change nothing.
        b.success(Permit::Normal);
        assert!(!b.failure(Permit::Normal));
        assert_eq!(b.state(), State::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn one_probe_after_the_open_period_then_closed_or_open_again() {
        let b = breaker();
        for _ in 0..3 {
            b.failure(Permit::Normal);
        }
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert_eq!(b.acquire(), None, "still open");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(b.acquire(), Some(Permit::Probe));
        assert_eq!(b.state(), State::HalfOpen);
        assert_eq!(b.acquire(), None, "only one probe at a time");
        // The probe fails: open for another full period.
        assert!(b.failure(Permit::Probe));
        assert_eq!(b.state(), State::Open);
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert_eq!(b.acquire(), None);
        tokio::time::advance(Duration::from_millis(1)).await;
        let probe = b.acquire().unwrap();
        assert_eq!(probe, Permit::Probe);
        b.success(probe);
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.acquire(), Some(Permit::Normal));
        // Closed again with a fresh count: it takes three failures to open.
        b.failure(Permit::Normal);
        b.failure(Permit::Normal);
        assert_eq!(b.state(), State::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_lets_the_next_call_probe() {
        let b = breaker();
        for _ in 0..3 {
            b.failure(Permit::Normal);
        }
        tokio::time::advance(Duration::from_secs(10)).await;
        let probe = b.acquire().unwrap();
        assert_eq!(b.acquire(), None);
        b.abandon(probe);
        assert_eq!(b.state(), State::HalfOpen);
        assert_eq!(b.acquire(), Some(Permit::Probe));
        // Abandoning a normal call changes nothing.
        b.abandon(Permit::Normal);
        assert_eq!(b.acquire(), None);
    }
}
