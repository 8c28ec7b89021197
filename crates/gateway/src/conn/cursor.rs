//! Where a connection stands in each channel it tracks, and what that makes of a message.

use std::collections::HashMap;
use std::sync::Arc;

use switchboard_proto::StreamPosition;

use super::delivery::Delivery;

/// Drops the held live messages of epochs older than `epoch`: the ones that arrived
/// before its last message, or all of another epoch when none of `epoch` arrived. (Live
/// messages arrive in order; one of another epoch after `epoch`'s is newer: it stays,
/// and holds the channel again for the next repair.)
pub(super) fn drop_older_epochs(pending: &mut Vec<Arc<Delivery>>, epoch: &str) {
    let last = pending.iter().rposition(|d| d.message.epoch == epoch);
    let mut i = 0;
    pending.retain(|d| {
        let keep = d.message.epoch == epoch || last.is_some_and(|l| i > l);
        i += 1;
        keep
    });
}

/// Where a connection stands in one channel.
#[derive(Default)]
pub(super) struct Cursor {
    pub(super) epoch: String,
    pub(super) offset: u64,
    /// [`id_hash`] of the message delivered at `offset` (0: not known, e.g. a subscription
    /// that started at the top).
    pub(super) last_id: u64,
    /// Another message arrived at `offset` than the one delivered there: history
    /// diverged (a failover lost a delivered write); the repair starts a new epoch.
    pub(super) diverged: bool,
    /// While a subscription is being set up (or repaired), live messages wait here so
    /// that they come after the replayed history.
    pub(super) pending: Option<Vec<Arc<Delivery>>>,
}

/// Every channel a connection tracks. The personal channel (every connection has it) sits
/// in a field of its own; rooms go in a map that is only allocated by the first one.
#[derive(Default)]
pub(super) struct Cursors {
    pub(super) personal: Option<Cursor>,
    pub(super) rooms: HashMap<Box<str>, Cursor>,
}

/// What the offset bookkeeping made of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sequence {
    Accept,
    /// At or before what was delivered (a replay overlapping live delivery).
    Duplicate,
    /// At the offset delivered last, but another message: history diverged.
    Diverged,
    /// In another epoch than the connection's: the channel restarted (history was lost
    /// or reset). Never followed silently: the repair tells the client to resync.
    Epoch,
}

/// How releasing a held channel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// Delivering live again (or the channel is no longer tracked).
    Live,
    /// A message at the offset delivered last is another one than was delivered:
    /// history diverged; the channel stays held.
    Diverged,
    /// A message of another epoch came: the channel stays held until a repair resyncs it.
    Epoch,
}

/// Where a held channel stands, for its repair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub position: StreamPosition,
    /// [`id_hash`] of the message delivered at `position` (0: unknown).
    pub last_id: u64,
    /// Live delivery already showed that history diverged.
    pub diverged: bool,
}

/// How a live message was taken by a connection.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// It came after a gap in offsets: the channel is held and must be repaired.
    pub gap: bool,
    /// (Deferred delivery) the caller must `flush` the connection's outbound queue.
    pub flush: bool,
}
