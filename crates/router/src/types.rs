//! Values that cross the router traits.

use std::sync::Arc;

use switchboard_proto::{Message, Payload};
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RouterError {
    /// The backplane cannot take or answer the request now (maps to `unavailable`).
    #[error("backplane unavailable: {0}")]
    Unavailable(String),
    /// The request itself is wrong (maps to `bad_request`).
    #[error("bad request: {0}")]
    BadRequest(String),
}

/// One connection in the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnInfo {
    pub conn_id: String,
    pub user: String,
    pub node: String,
    /// When the connection was accepted (ms since the Unix epoch).
    pub since_ms: u64,
}

/// What [`Registry::register`](crate::Registry::register) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registration {
    /// The entry is written and visible to every node.
    Registered,
    /// Nothing was written: the user already has `max_per_user` live connections.
    UserAtCap,
}

/// What a node reports with its heartbeat.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStatus {
    pub connections: u64,
    pub draining: bool,
}

/// A live node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub node: String,
    pub connections: u64,
    pub draining: bool,
    /// When the node started (ms since the Unix epoch).
    pub since_ms: u64,
}

#[derive(Clone, Debug)]
pub struct PublishRequest {
    pub channel: String,
    /// The sender: set by the server from the token for client publishes.
    pub from: Option<String>,
    pub data: Payload,
    /// Makes a retry of this publish safe (docs/protocol.md §5).
    pub idempotency: Option<Idempotency>,
}

/// An idempotency key with its window: a publish to the same channel with the same
/// `key` within `window` of the first is neither stored nor routed again; it is
/// answered with the first one's outcome. The check and the store are one atomic step,
/// so a retry can never race the original into two offsets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idempotency {
    /// The key, already validated and scoped by the caller (e.g. per sender).
    pub key: String,
    pub window: std::time::Duration,
}

#[derive(Clone, Debug)]
pub struct PublishOutcome {
    /// The message as stored and routed, with its id and position.
    pub message: Arc<Message>,
    /// For user channels: whether the user had a live connection; for other channels:
    /// whether any node subscribes to it.
    pub online: bool,
    /// How many nodes the message was routed to live.
    pub nodes: u32,
    /// The idempotency key was seen within its window: nothing was stored or routed, and
    /// this is the first publish's outcome (its position, `online` and `nodes`; `message`
    /// carries this request's id and payload).
    pub duplicate: bool,
}

#[derive(Clone, Debug)]
pub struct HistoryRead {
    /// The channel's current epoch.
    pub epoch: String,
    /// The channel's newest offset in that epoch.
    pub offset: u64,
    /// Messages after `since`, oldest first.
    pub messages: Vec<Arc<Message>>,
    /// False when the read could not return everything after `since`.
    pub recovered: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PresenceInfo {
    /// De-duplicated user ids, sorted.
    pub users: Vec<String>,
    /// Number of subscribed connections.
    pub connections: u64,
}

/// One backplane shard (a Redis primary and the slots it serves) as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardStatus {
    /// Position in the slot map, ordered by the first slot served (stable across a
    /// failover: the promoted replica serves the same slots).
    pub index: usize,
    /// `host:port` of the primary.
    pub primary: String,
    /// Whether this node's subscriber for the shard is connected and its probes come back.
    pub up: bool,
    /// Channels this node receives through the shard.
    pub subscriptions: usize,
    /// Times the subscriber had to connect again.
    pub reconnects: u64,
    /// Replicas of the primary that are online (as of the last slot map).
    pub replicas: usize,
}

/// What a backplane reports for metrics and readiness.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackplaneStats {
    /// Empty for the embedded backplane.
    pub shards: Vec<ShardStatus>,
    /// Publishes acknowledged although no replica confirmed them in time.
    pub unreplicated: u64,
}
