//! The clocks every crate shares: wall time since the Unix epoch (message timestamps,
//! token expiry, registry heartbeats) and one monotonic process clock (timers that must
//! not jump with the wall clock). Plain `std`: no tokio, so a paused tokio clock in a
//! test does not stop them.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Seconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The process's monotonic clock: milliseconds since the first call (idle and heartbeat
/// bookkeeping; one `Instant` for the whole process instead of one per connection).
pub fn mono_ms() -> u64 {
    u64::try_from(mono_base().elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The `Instant` at which [`mono_ms`] is 0.
pub fn mono_base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}
