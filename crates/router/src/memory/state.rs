//! The shared state behind every node of a [`MemoryCluster`](super::MemoryCluster): nodes
//! and their leases, connections, room presence and channel streams. Everything here runs
//! under the cluster's single mutex; sinks are called while it is held, which is what makes
//! per-channel delivery order identical on every node.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use super::idempotency::{First, Keys};
use super::stream::{Stored, Stream};
use std::sync::Arc;
use std::time::Duration;

use rand::distr::Alphanumeric;
use rand::Rng;
use switchboard_proto::channel::USER_NAMESPACE;
use switchboard_proto::frames::PresenceEvent;
use switchboard_proto::{Message, StreamPosition};
use tokio::time::Instant;

use crate::{
    ConnInfo, HistoryPolicies, HistoryRead, NodeInfo, NodeSink, NodeStatus, PresenceInfo,
    PublishOutcome, PublishRequest,
};

use switchboard_proto::clock::now_ms;

mod streams;

/// A random `[A-Za-z0-9]` string: epochs and the cluster's message-id tag.
pub(super) fn random_token(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// The user id of a `user:<id>` channel.
fn user_of(channel: &str) -> Option<&str> {
    channel.strip_prefix(USER_NAMESPACE)?.strip_prefix(':')
}

/// One node of the cluster, as the other nodes see it.
#[derive(Default)]
pub(super) struct NodeState {
    sink: Option<Arc<dyn NodeSink>>,
    /// Started and not shut down. A node that is up but missed its lease is dead all the
    /// same; its next heartbeat revives it (with its entries already purged).
    up: bool,
    last_beat: Option<Instant>,
    since_ms: u64,
    status: NodeStatus,
    rooms: HashSet<String>,
    /// `(user, conn_id)` registered by this node: what a purge removes.
    conns: HashSet<(String, String)>,
    /// `(channel, user, conn_id)` joined through this node.
    joined: HashSet<(String, String, String)>,
}

impl NodeState {
    fn is_live(&self, now: Instant, lease: Duration) -> bool {
        self.up
            && self
                .last_beat
                .is_some_and(|beat| now.saturating_duration_since(beat) < lease)
    }
}

/// Everything the cluster knows.
pub(super) struct State {
    policies: HistoryPolicies,
    lease: Duration,
    /// Prefix of message ids, random per cluster so ids stay unique across restarts.
    id_tag: String,
    next_id: u64,
    nodes: HashMap<String, NodeState>,
    streams: HashMap<String, Stream>,
    /// user → conn_id → connection.
    conns: HashMap<String, HashMap<String, ConnInfo>>,
    /// channel → user → `(node, conn_id)` of the user's connections in the room.
    presence: HashMap<String, BTreeMap<String, HashSet<(String, String)>>>,
    acks: HashMap<String, StreamPosition>,
    idempotency: Keys,
}

impl State {
    pub(super) fn new(policies: HistoryPolicies, lease: Duration) -> State {
        State {
            policies,
            lease,
            id_tag: random_token(8),
            next_id: 0,
            nodes: HashMap::new(),
            streams: HashMap::new(),
            conns: HashMap::new(),
            presence: HashMap::new(),
            acks: HashMap::new(),
            idempotency: Keys::default(),
        }
    }

    // --- nodes and leases -------------------------------------------------------------

    pub(super) fn is_up(&self, node: &str) -> bool {
        self.nodes.get(node).is_some_and(|n| n.up)
    }

    pub(super) fn start(&mut self, node: &str, sink: Arc<dyn NodeSink>, now: Instant) {
        let n = self.nodes.entry(node.to_owned()).or_default();
        n.sink = Some(sink);
        n.up = true;
        n.last_beat = Some(now);
        n.since_ms = now_ms();
        n.status = NodeStatus::default();
    }

    pub(super) fn heartbeat(&mut self, node: &str, status: NodeStatus, now: Instant) {
        if let Some(n) = self.nodes.get_mut(node) {
            n.last_beat = Some(now);
            n.status = status;
        }
    }

    pub(super) fn shutdown(&mut self, node: &str, now: Instant) {
        if let Some(n) = self.nodes.get_mut(node) {
            n.up = false;
            n.last_beat = None;
            n.sink = None;
            n.rooms.clear();
        }
        self.drop_entries(node, now);
    }

    pub(super) fn live_nodes(&self, now: Instant) -> Vec<NodeInfo> {
        let mut nodes: Vec<NodeInfo> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.is_live(now, self.lease))
            .map(|(id, n)| NodeInfo {
                node: id.clone(),
                connections: n.status.connections,
                draining: n.status.draining,
                since_ms: n.since_ms,
            })
            .collect();
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        nodes
    }

    /// Drops the connections and presence of every node whose lease expired (or that shut
    /// down), emitting `leave` events for users who thereby left a room.
    pub(super) fn purge(&mut self, now: Instant) {
        let dead: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| {
                !n.is_live(now, self.lease) && (!n.conns.is_empty() || !n.joined.is_empty())
            })
            .map(|(id, _)| id.clone())
            .collect();
        for node in dead {
            tracing::debug!(node = %node, "memory backplane purges a dead node");
            self.drop_entries(&node, now);
        }
    }

    fn drop_entries(&mut self, node: &str, now: Instant) {
        let Some(n) = self.nodes.get_mut(node) else {
            return;
        };
        let conns = std::mem::take(&mut n.conns);
        let joined = std::mem::take(&mut n.joined);
        for (user, conn_id) in conns {
            self.remove_conn(node, &user, &conn_id);
        }
        for (channel, user, conn_id) in joined {
            if self.remove_presence(node, &channel, &user, &conn_id) {
                self.emit_presence(&channel, &user, PresenceEvent::Leave, now);
            }
        }
    }

    /// Live sinks of the nodes subscribed to room `channel`.
    fn room_sinks(&self, channel: &str, now: Instant) -> Vec<Arc<dyn NodeSink>> {
        self.nodes
            .values()
            .filter(|n| n.is_live(now, self.lease) && n.rooms.contains(channel))
            .filter_map(|n| n.sink.clone())
            .collect()
    }

    /// Live sinks of the nodes holding a connection of `user`.
    fn user_sinks(&self, user: &str, now: Instant) -> Vec<Arc<dyn NodeSink>> {
        let Some(conns) = self.conns.get(user) else {
            return Vec::new();
        };
        let holders: HashSet<&str> = conns.values().map(|c| c.node.as_str()).collect();
        holders
            .into_iter()
            .filter_map(|id| self.nodes.get(id))
            .filter(|n| n.is_live(now, self.lease))
            .filter_map(|n| n.sink.clone())
            .collect()
    }

    pub(super) fn live_sinks(&self, now: Instant) -> Vec<Arc<dyn NodeSink>> {
        self.nodes
            .values()
            .filter(|n| n.is_live(now, self.lease))
            .filter_map(|n| n.sink.clone())
            .collect()
    }

    // --- registry ---------------------------------------------------------------------

    /// Registers `conn` unless its user is at `max_per_user` (0 = no cap). Callers purge
    /// dead nodes' entries first, so only live connections count; the check and the
    /// insert are one step under the cluster's lock.
    pub(super) fn register(&mut self, conn: ConnInfo, max_per_user: usize) -> crate::Registration {
        if max_per_user > 0 {
            let held = self.conns.get(&conn.user);
            let known = held.is_some_and(|c| c.contains_key(&conn.conn_id));
            if !known && held.map_or(0, HashMap::len) >= max_per_user {
                return crate::Registration::UserAtCap;
            }
        }
        if let Some(n) = self.nodes.get_mut(&conn.node) {
            n.conns.insert((conn.user.clone(), conn.conn_id.clone()));
        }
        self.conns
            .entry(conn.user.clone())
            .or_default()
            .insert(conn.conn_id.clone(), conn);
        crate::Registration::Registered
    }

    pub(super) fn unregister(&mut self, node: &str, user: &str, conn_id: &str) {
        if self.remove_conn(node, user, conn_id) {
            if let Some(n) = self.nodes.get_mut(node) {
                n.conns.remove(&(user.to_owned(), conn_id.to_owned()));
            }
        }
    }

    /// Removes `conn_id` of `user` if `node` holds it.
    fn remove_conn(&mut self, node: &str, user: &str, conn_id: &str) -> bool {
        let Some(conns) = self.conns.get_mut(user) else {
            return false;
        };
        let removed = conns.get(conn_id).is_some_and(|c| c.node == node);
        if removed {
            conns.remove(conn_id);
            if conns.is_empty() {
                self.conns.remove(user);
            }
        }
        removed
    }

    pub(super) fn connections(&self, user: &str, now: Instant) -> Vec<ConnInfo> {
        let mut list: Vec<ConnInfo> = self
            .conns
            .get(user)
            .into_iter()
            .flat_map(|c| c.values())
            .filter(|c| {
                self.nodes
                    .get(&c.node)
                    .is_some_and(|n| n.is_live(now, self.lease))
            })
            .cloned()
            .collect();
        list.sort_by(|a, b| (a.since_ms, &a.conn_id).cmp(&(b.since_ms, &b.conn_id)));
        list
    }

    // --- rooms and presence -----------------------------------------------------------

    pub(super) fn subscribe_room(&mut self, node: &str, channel: &str) {
        if let Some(n) = self.nodes.get_mut(node) {
            n.rooms.insert(channel.to_owned());
        }
    }

    pub(super) fn unsubscribe_room(&mut self, node: &str, channel: &str) {
        if let Some(n) = self.nodes.get_mut(node) {
            n.rooms.remove(channel);
        }
    }

    pub(super) fn join(
        &mut self,
        node: &str,
        channel: &str,
        user: &str,
        conn_id: &str,
        now: Instant,
    ) -> bool {
        let entries = self
            .presence
            .entry(channel.to_owned())
            .or_default()
            .entry(user.to_owned())
            .or_default();
        let first = entries.is_empty();
        entries.insert((node.to_owned(), conn_id.to_owned()));
        if let Some(n) = self.nodes.get_mut(node) {
            n.joined
                .insert((channel.to_owned(), user.to_owned(), conn_id.to_owned()));
        }
        if first {
            self.emit_presence(channel, user, PresenceEvent::Join, now);
        }
        first
    }

    pub(super) fn leave(
        &mut self,
        node: &str,
        channel: &str,
        user: &str,
        conn_id: &str,
        now: Instant,
    ) -> bool {
        if let Some(n) = self.nodes.get_mut(node) {
            n.joined
                .remove(&(channel.to_owned(), user.to_owned(), conn_id.to_owned()));
        }
        let last = self.remove_presence(node, channel, user, conn_id);
        if last {
            self.emit_presence(channel, user, PresenceEvent::Leave, now);
        }
        last
    }

    /// Removes one presence entry; returns whether it was the user's last in `channel`.
    fn remove_presence(&mut self, node: &str, channel: &str, user: &str, conn_id: &str) -> bool {
        let Some(users) = self.presence.get_mut(channel) else {
            return false;
        };
        let Some(entries) = users.get_mut(user) else {
            return false;
        };
        let removed = entries.remove(&(node.to_owned(), conn_id.to_owned()));
        let last = removed && entries.is_empty();
        if entries.is_empty() {
            users.remove(user);
        }
        if users.is_empty() {
            self.presence.remove(channel);
        }
        last
    }

    fn emit_presence(&self, channel: &str, user: &str, event: PresenceEvent, now: Instant) {
        for sink in self.room_sinks(channel, now) {
            sink.presence(channel, user, event);
        }
    }

    pub(super) fn presence(&self, channel: &str) -> PresenceInfo {
        let Some(users) = self.presence.get(channel) else {
            return PresenceInfo::default();
        };
        PresenceInfo {
            users: users.keys().cloned().collect(),
            connections: users.values().map(|e| e.len() as u64).sum(),
        }
    }

    // --- streams ----------------------------------------------------------------------
}
