//! Switchboard routing: which node holds which user, channel streams (history, epochs,
//! offsets), presence and the backplane that carries messages between nodes. The router
//! never knows about sockets: a node hands it a [`NodeSink`] and receives deliveries there.
//!
//! # Layout
//! - this file: the four traits ([`Backplane`], [`Registry`], [`History`], [`Presence`]),
//!   their guarantees, and [`Router`], the bundle a gateway node holds.
//! - [`types`]: values crossing the traits (connections, nodes, publish outcomes, reads).
//! - [`policy`]: which channels keep history, and how much (count and age).
//! - [`memory`]: the embedded in-process implementation (single process, any number of nodes).
//! - [`redis`]: the Redis implementation (many processes behave as one).
//! - `testsuite` (feature `testsuite`): the behaviour suite every implementation must pass.

#![warn(unreachable_pub)]

use std::sync::Arc;

use async_trait::async_trait;
use switchboard_proto::frames::PresenceEvent;
use switchboard_proto::{Message, StreamPosition};

pub mod memory;
pub mod policy;
pub mod redis;
pub mod types;

#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;

pub use memory::{MemoryCluster, MemoryRouter};
pub use policy::{HistoryPolicies, HistoryPolicy};
pub use redis::{RedisRouter, RedisSettings};
pub use types::{
    BackplaneStats, ConnInfo, HistoryRead, Idempotency, NodeInfo, NodeStatus, PresenceInfo,
    PublishOutcome, PublishRequest, Registration, RouterError, ShardStatus,
};

pub type Result<T, E = RouterError> = std::result::Result<T, E>;

/// Where the backplane hands a node what it must deliver locally. Calls are synchronous
/// and must not block: implementations enqueue and return.
pub trait NodeSink: Send + Sync + 'static {
    /// A message on `message.channel`: for `user:<id>` deliver it to that user's local
    /// connections, for rooms to the local subscribers of the channel.
    fn deliver(&self, message: Arc<Message>);
    /// A presence change of a room this node subscribed to.
    fn presence(&self, channel: &str, user: &str, event: PresenceEvent);
    /// Close every local connection of `user`; returns how many were closed.
    fn disconnect_user(&self, user: &str, code: u16, reason: &str) -> usize;
    /// The backplane link went down (`false`) or came back (`true`): readiness only;
    /// what may have been missed meanwhile is reported by `channels_interrupted`.
    fn backplane_state(&self, up: bool);
    /// Live delivery of these channels may have missed messages (their subscription was
    /// interrupted — a Redis reconnect, a failover, a slot that moved — and is back):
    /// the node repairs them by reading history after the last offset it delivered.
    fn channels_interrupted(&self, channels: &[String]);
}

/// Carries messages between nodes.
///
/// Guarantees:
/// - `publish` returns only after the message has its `(epoch, offset)` and, for channels
///   that keep history, after it was appended; an `Err` means it was neither stored nor routed.
/// - Per channel, every node receives messages in offset order (live delivery is
///   at-most-once; history fills the gaps).
/// - A user-channel message reaches every node holding a connection of that user at the
///   time of the publish; a room message reaches every node that called `subscribe_room`.
#[async_trait]
pub trait Backplane: Send + Sync {
    /// Connects and attaches this node's sink. Fails fast when the backplane is unreachable.
    async fn start(&self, sink: Arc<dyn NodeSink>) -> Result<()>;
    /// Assigns `(epoch, offset)`, stores per the history policy and routes live.
    async fn publish(&self, request: PublishRequest) -> Result<PublishOutcome>;
    /// Publishes many messages at once (`/v1/batch`, `/v1/broadcast`); the results come
    /// in the order given, and the messages of one channel are numbered in that order.
    /// The default publishes each channel's messages one after the other, the channels
    /// concurrently; an implementation may pipeline them all.
    async fn publish_many(&self, requests: Vec<PublishRequest>) -> Vec<Result<PublishOutcome>> {
        let n = requests.len();
        let mut groups: Vec<(String, Vec<(usize, PublishRequest)>)> = Vec::new();
        for (i, r) in requests.into_iter().enumerate() {
            match groups.iter_mut().find(|(c, _)| *c == r.channel) {
                Some((_, g)) => g.push((i, r)),
                None => groups.push((r.channel.clone(), vec![(i, r)])),
            }
        }
        let done =
            futures_util::future::join_all(groups.into_iter().map(|(_, group)| async move {
                let mut out = Vec::with_capacity(group.len());
                for (i, r) in group {
                    out.push((i, self.publish(r).await));
                }
                out
            }))
            .await;
        let mut results: Vec<Option<Result<PublishOutcome>>> = (0..n).map(|_| None).collect();
        for (i, r) in done.into_iter().flatten() {
            results[i] = Some(r);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(RouterError::Unavailable("not published".into()))))
            .collect()
    }
    /// This node starts receiving room `channel`'s messages and presence.
    async fn subscribe_room(&self, channel: &str) -> Result<()>;
    /// This node stops receiving room `channel`.
    async fn unsubscribe_room(&self, channel: &str) -> Result<()>;
    /// Closes every connection of `user` on every node; returns how many were closed.
    async fn disconnect_user(&self, user: &str, code: u16, reason: &str) -> Result<usize>;
    /// Whether the node can route right now (connected and subscribed).
    fn is_up(&self) -> bool;
    /// Per-shard link state and counters (metrics, `/readyz`).
    fn stats(&self) -> BackplaneStats {
        BackplaneStats::default()
    }
    /// Leaves the cluster: removes this node's registry entries and presence.
    async fn shutdown(&self);
}

/// Maps users to the nodes and connections that hold them.
///
/// Guarantees: an entry is visible to every node as soon as `register` returns; the
/// entries of a node whose lease expired (no `heartbeat` for the lease time) — its
/// connections and its presence entries — are gone within the lease plus one second.
/// `ConnInfo::node` must be the registering node. Calls on a node that was not started
/// (or was shut down) fail with `Unavailable`.
///
/// The per-user cap is atomic with the registration: however many nodes register
/// connections of one user at once, no more than `max_per_user` of them succeed. What
/// counts is every entry of the user in the registry — including those of a node that
/// died, until they are gone (the lease plus one second).
#[async_trait]
pub trait Registry: Send + Sync {
    /// Registers `conn`, unless its user already has `max_per_user` connections
    /// (0 = no cap): then nothing is written and the answer is
    /// [`Registration::UserAtCap`]. Registering an id that is already registered
    /// rewrites it and is never refused.
    async fn register(&self, conn: ConnInfo, max_per_user: usize) -> Result<Registration>;
    async fn unregister(&self, user: &str, conn_id: &str) -> Result<()>;
    /// Every live connection of `user`, on any node (empty when offline).
    async fn connections(&self, user: &str) -> Result<Vec<ConnInfo>>;
    /// Renews this node's lease and publishes its status.
    async fn heartbeat(&self, status: NodeStatus) -> Result<()>;
    /// Live nodes only.
    async fn nodes(&self) -> Result<Vec<NodeInfo>>;
}

/// Channel streams: positions, bounded history, replay and the inbox acks.
///
/// Guarantees: within an epoch offsets grow by exactly one per message; history keeps at
/// most the policy's count and age; `read` never silently skips: when it cannot return
/// everything after `since` it says `recovered: false`.
#[async_trait]
pub trait History: Send + Sync {
    /// The newest position of `channel` (offset 0 in a fresh epoch when empty).
    async fn position(&self, channel: &str) -> Result<StreamPosition>;
    /// Messages after `since` (all retained ones when `None`), oldest first, at most
    /// `limit`. `recovered` is false when `since` is in another epoch or older than what
    /// is retained; the messages are then what is retained (after `since` when it is in
    /// the current epoch, else from the oldest), and callers decide whether to use them.
    async fn read(
        &self,
        channel: &str,
        since: Option<&StreamPosition>,
        limit: usize,
    ) -> Result<HistoryRead>;
    /// Records that `user` has seen their personal channel up to `position`
    /// (acks never move backwards within an epoch).
    async fn ack(&self, user: &str, position: &StreamPosition) -> Result<()>;
    /// The user's last ack, if any.
    async fn acked(&self, user: &str) -> Result<Option<StreamPosition>>;
    /// History at `epoch` diverged from what was delivered (a failover lost a write some
    /// connection had already received, and its offset went to another message): starts
    /// a new epoch, unless the channel already left `epoch`, so that every resume from the
    /// old epoch answers `recovered: false`. Messages published from then on carry the
    /// new epoch; the offsets go on.
    async fn reset_epoch(&self, channel: &str, epoch: &str) -> Result<()>;
}

/// Who is in a room, cluster-wide.
///
/// Guarantees: `join` emits a `join` presence event to the room's subscribers when it is
/// the user's first connection in the room, `leave` a `leave` event when it was the last;
/// `users` is de-duplicated.
#[async_trait]
pub trait Presence: Send + Sync {
    /// Returns whether this was the user's first connection in `channel`.
    async fn join(&self, channel: &str, user: &str, conn_id: &str) -> Result<bool>;
    /// Returns whether this was the user's last connection in `channel`.
    async fn leave(&self, channel: &str, user: &str, conn_id: &str) -> Result<bool>;
    async fn presence(&self, channel: &str) -> Result<PresenceInfo>;
}

/// Everything a gateway node needs from the routing layer.
pub trait Router: Backplane + Registry + History + Presence {}

impl<T: Backplane + Registry + History + Presence> Router for T {}
