//! Idempotency keys of the embedded backplane (docs/protocol.md §5): which `(channel, key)`
//! pairs were published within their window, and what the first publish answered.
//!
//! Cost: one entry per key seen within its window — the map entry, a shared name
//! (channel and key) and its place in the expiry queue: about 270 bytes with a 36-byte
//! key (measured as RSS over 100,000 keys, `tests/idempotency/cost.rs`). Memory is
//! bounded by the publish rate times the window (e.g. 1,000 keyed publishes/s with the
//! default 300 s window: 300,000 entries, about 81 MB); every keyed publish first drops
//! the entries whose window ended.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use switchboard_proto::StreamPosition;
use tokio::time::Instant;

/// The first publish's outcome, as a retry is answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct First {
    pub position: StreamPosition,
    pub online: bool,
    pub nodes: u32,
}

struct Seen {
    first: First,
    until: Instant,
}

#[derive(Default)]
pub(super) struct Keys {
    /// `<channel>\n<key>` (neither may contain a newline) → the first outcome.
    seen: HashMap<Arc<str>, Seen>,
    /// The same names in the order they were stored, with when they end.
    expiry: VecDeque<(Instant, Arc<str>)>,
}

fn name(channel: &str, key: &str) -> String {
    let mut n = String::with_capacity(channel.len() + 1 + key.len());
    n.push_str(channel);
    n.push('\n');
    n.push_str(key);
    n
}

impl Keys {
    /// The first outcome of `key` on `channel`, while its window lasts.
    pub(super) fn get(&mut self, channel: &str, key: &str, now: Instant) -> Option<First> {
        self.purge(now);
        let seen = self.seen.get(name(channel, key).as_str())?;
        (seen.until > now).then(|| seen.first.clone())
    }

    /// Remembers the outcome of the first publish with `key` on `channel` until `until`.
    pub(super) fn insert(&mut self, channel: &str, key: &str, first: First, until: Instant) {
        let name: Arc<str> = name(channel, key).into();
        self.expiry.push_back((until, name.clone()));
        self.seen.insert(name, Seen { first, until });
    }

    /// Drops what expired. Windows may differ between publishes (a node restarted with
    /// another setting): an entry is removed only when the one in the map ended too.
    fn purge(&mut self, now: Instant) {
        while let Some((until, _)) = self.expiry.front() {
            if *until > now {
                break;
            }
            let Some((_, name)) = self.expiry.pop_front() else {
                break;
            };
            if self.seen.get(&name).is_some_and(|s| s.until <= now) {
                self.seen.remove(&name);
            }
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn first(offset: u64) -> First {
        First {
            position: StreamPosition::new("e", offset),
            online: true,
            nodes: 1,
        }
    }

    #[test]
    fn a_key_is_remembered_for_its_window_then_dropped() {
        let t0 = Instant::now();
        let mut keys = Keys::default();
        keys.insert("room:a", "k", first(1), t0 + Duration::from_secs(5));
        assert_eq!(keys.get("room:a", "k", t0), Some(first(1)));
        assert_eq!(keys.get("room:b", "k", t0), None, "keys are per channel");
        assert_eq!(keys.get("room:a", "k2", t0), None);
        assert_eq!(keys.get("room:a", "k", t0 + Duration::from_secs(5)), None);
        assert_eq!(keys.len(), 0, "the expired entry is gone, not only hidden");
    }

    #[test]
    fn a_channel_and_key_cannot_be_confused_with_another_pair() {
        let t0 = Instant::now();
        let mut keys = Keys::default();
        keys.insert("room:a", "b", first(1), t0 + Duration::from_secs(5));
        // Keys cannot hold a newline and channels neither; a ':' belongs to either.
        assert_eq!(keys.get("room:a:b", "", t0), None);
        assert_eq!(keys.get("room", "a:b", t0), None);
    }

    #[test]
    fn purging_keeps_an_entry_renewed_with_a_longer_window() {
        let t0 = Instant::now();
        let mut keys = Keys::default();
        keys.insert("room:a", "k", first(1), t0 + Duration::from_secs(1));
        keys.insert("room:a", "k", first(2), t0 + Duration::from_secs(10));
        assert_eq!(
            keys.get("room:a", "k", t0 + Duration::from_secs(2)),
            Some(first(2))
        );
        assert_eq!(keys.len(), 1);
    }
}
