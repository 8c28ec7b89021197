//! The timers of every connection, in one task per node: the server ping every
//! `--heartbeat-ms`, the idle close (1001) of a peer silent for `--idle-timeout-ms`, token
//! expiry (the `token_expired` error, then 4001), the write timeout of a socket that takes
//! nothing, and the close (1001) of everything when the node stops hard.
//!
//! An open connection holds no timer of its own. Connections are spread over [`SLOTS`]
//! phases of the heartbeat by the time they connected, and every heartbeat / `SLOTS` the
//! sweeper visits one phase: each connection is visited once per heartbeat, the first time
//! one heartbeat after it connected. Token expiries sit in an ordered set; the sweeper
//! sleeps until the next tick or the earliest expiry, whichever comes first.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_proto::{close, ErrorCode, ServerFrame};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::conn::outbound::{CloseRequest, Item, Kind};
use crate::conn::ConnHandle;
use switchboard_proto::clock::{mono_base, mono_ms, now_ms};

use crate::hub::Hub;

/// Phases of the heartbeat: a tick visits 1/SLOTS of the connections.
pub const SLOTS: u64 = 16;

/// The token expiries of the node's connections.
#[derive(Default)]
pub struct Sweeper {
    /// (expiry in seconds since the Unix epoch, connection id).
    expiries: Mutex<BTreeSet<(u64, u64)>>,
    /// An expiry earlier than every other was added.
    changed: Notify,
}

/// What a heartbeat visit does to one connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Visit {
    /// Too young for its first ping.
    Nothing,
    Ping,
    /// Silent for the idle timeout: close 1001.
    IdleClose,
}

/// The heartbeat decision for a connection born at `born_ms` and last heard from at
/// `last_seen_ms` (all on the node clock).
pub fn visit(
    now_ms: u64,
    born_ms: u64,
    last_seen_ms: u64,
    heartbeat: Duration,
    idle: Duration,
) -> Visit {
    if now_ms.saturating_sub(born_ms) < heartbeat.as_millis() as u64 / 2 {
        return Visit::Nothing;
    }
    if now_ms.saturating_sub(last_seen_ms) >= idle.as_millis() as u64 {
        return Visit::IdleClose;
    }
    Visit::Ping
}

/// The phase (0..SLOTS) of a connection born at `born_ms`: its first visit comes one
/// heartbeat after it connected.
pub fn slot(born_ms: u64, tick_ms: u64) -> u64 {
    (born_ms / tick_ms + 1) % SLOTS
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sweeper {
    pub fn new() -> Sweeper {
        Sweeper::default()
    }

    /// Watches a connection's token expiry (seconds since the Unix epoch).
    pub fn watch(&self, id: u64, exp: u64) {
        let mut set = lock(&self.expiries);
        let earliest = set.first().is_none_or(|(first, _)| exp < *first);
        set.insert((exp, id));
        drop(set);
        if earliest {
            self.changed.notify_one();
        }
    }

    /// A `refresh` moved the expiry.
    pub fn moved(&self, id: u64, old: u64, new: u64) {
        lock(&self.expiries).remove(&(old, id));
        self.watch(id, new);
    }

    /// The connection is gone.
    pub fn forget(&self, id: u64, exp: u64) {
        lock(&self.expiries).remove(&(exp, id));
    }

    /// Removes and returns the connections whose tokens expired by `now_secs`.
    fn due(&self, now_secs: u64) -> Vec<u64> {
        let mut set = lock(&self.expiries);
        let mut due = Vec::new();
        while let Some(&(exp, id)) = set.first() {
            if exp > now_secs {
                break;
            }
            set.pop_first();
            due.push(id);
        }
        due
    }

    /// When the earliest watched token expires (ms since the Unix epoch).
    fn next_expiry_ms(&self) -> Option<u64> {
        lock(&self.expiries)
            .first()
            .map(|(exp, _)| exp.saturating_mul(1000))
    }
}

/// Runs the timers of `hub`'s connections (`--heartbeat-ms`, `idle`: the idle timeout)
/// until `shutdown` (the node stops hard).
pub async fn run(
    sweeper: Arc<Sweeper>,
    hub: Arc<Hub>,
    shutdown: CancellationToken,
    heartbeat: Duration,
    idle: Duration,
) {
    let write_timeout = idle.max(Duration::from_secs(5));
    let tick = (heartbeat / SLOTS as u32).max(Duration::from_millis(1));
    let tick_ms = tick.as_millis() as u64;
    // The next tick's index on the node clock (tick k is at k × tick).
    let mut next = mono_ms() / tick_ms + 1;
    loop {
        let tick_at = mono_base() + Duration::from_millis(next * tick_ms);
        let mut wake = Instant::from_std(tick_at);
        if let Some(exp_ms) = sweeper.next_expiry_ms() {
            // Wake just past the second the token expires.
            let left = Duration::from_millis(exp_ms.saturating_sub(now_ms()) + 5);
            wake = wake.min(Instant::now() + left);
        }
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = sweeper.changed.notified() => continue,
            _ = shutdown.cancelled() => {
                for conn in hub.all() {
                    conn.outbound.close(
                        CloseRequest::new(close::GOING_AWAY, "shutting down"),
                        false,
                    );
                }
                return;
            }
        }
        expire_tokens(&sweeper, &hub);
        let now = mono_ms();
        // Every tick that passed visits its phase once (at most one round of phases).
        let last = now / tick_ms;
        if last >= next {
            let first = next.max(last.saturating_sub(SLOTS - 1));
            for k in first..=last {
                let phase = k % SLOTS;
                for conn in hub.matching(|c| slot(c.born_ms, tick_ms) == phase) {
                    heartbeat_visit(&conn, now, heartbeat, idle, write_timeout);
                }
            }
            next = last + 1;
        }
    }
}

fn heartbeat_visit(
    conn: &ConnHandle,
    now: u64,
    heartbeat: Duration,
    idle: Duration,
    write_timeout: Duration,
) {
    if conn.outbound.ended().is_some() {
        return;
    }
    if conn.outbound.expire_stalled(Instant::now(), write_timeout) {
        tracing::debug!(conn = %conn.conn_id, "write timed out");
        return;
    }
    let last_seen = conn.last_seen.load(std::sync::atomic::Ordering::Relaxed);
    match visit(now, conn.born_ms, last_seen, heartbeat, idle) {
        Visit::Nothing => {}
        Visit::Ping => {
            conn.outbound.push(Item {
                data: bytes::Bytes::new(),
                published_ms: None,
                kind: Kind::Ping,
            });
        }
        Visit::IdleClose => {
            conn.outbound.close(
                CloseRequest::new(close::GOING_AWAY, "heartbeat timeout"),
                false,
            );
        }
    }
}

/// Ends the connections whose token expired: the `token_expired` error, then 4001.
fn expire_tokens(sweeper: &Sweeper, hub: &Hub) {
    let now = switchboard_proto::clock::now_secs();
    for id in sweeper.due(now) {
        let Some(conn) = hub.get(id) else {
            continue;
        };
        let exp = conn.expires_at();
        if exp > now {
            // Refreshed meanwhile.
            sweeper.watch(id, exp);
            continue;
        }
        conn.send(&ServerFrame::error(
            ErrorCode::TokenExpired,
            "token expired",
        ));
        conn.outbound.close(
            CloseRequest::new(close::TOKEN_EXPIRED, "token expired"),
            true,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Duration = Duration::from_secs(25);
    const IDLE: Duration = Duration::from_secs(50);

    #[test]
    fn the_first_visit_pings_one_heartbeat_after_the_connect() {
        let tick = H.as_millis() as u64 / SLOTS;
        for born in [0, 1, tick - 1, tick, 12_345, 99_999] {
            let s = slot(born, tick);
            // The first tick of that phase after the connect.
            let first = (born / tick + 1..).find(|k| k % SLOTS == s).unwrap() * tick;
            assert!(first > born, "born {born}: visited at {first}");
            assert_eq!(visit(first, born, born, H, IDLE), Visit::Nothing);
            let second = first + SLOTS * tick;
            // (Within the rounding of heartbeat / SLOTS to whole milliseconds.)
            let h = H.as_millis() as u64;
            assert!(
                second + SLOTS >= born + h,
                "born {born}: pinged at {second}"
            );
            assert!(second <= born + h + tick);
            assert_eq!(visit(second, born, born, H, IDLE), Visit::Ping);
        }
    }

    #[test]
    fn a_silent_peer_is_closed_after_the_idle_timeout_and_a_live_one_is_not() {
        let born = 1_000;
        let h = H.as_millis() as u64;
        // Silent: pinged at one heartbeat, closed at two.
        assert_eq!(visit(born + h, born, born, H, IDLE), Visit::Ping);
        assert_eq!(visit(born + 2 * h, born, born, H, IDLE), Visit::IdleClose);
        // Answering every ping a few ms later keeps it open, even with idle = heartbeat.
        for k in 1..10 {
            let now = born + k * h;
            let pong = now - h + 3;
            assert_eq!(visit(now, born, pong, H, IDLE), Visit::Ping);
            assert_eq!(visit(now, born, pong, H, H), Visit::Ping);
        }
    }

    #[test]
    fn expiries_come_out_in_order_and_follow_refreshes() {
        let s = Sweeper::new();
        s.watch(1, 100);
        s.watch(2, 50);
        s.watch(3, 200);
        assert_eq!(s.next_expiry_ms(), Some(50_000));
        s.moved(2, 50, 300);
        assert_eq!(s.due(99), Vec::<u64>::new());
        assert_eq!(s.due(250), vec![1, 3]);
        s.forget(2, 300);
        assert_eq!(s.next_expiry_ms(), None);
    }
}
