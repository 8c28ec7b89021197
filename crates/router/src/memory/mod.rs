//! The embedded, in-process router: one [`MemoryCluster`] holds the state that a real
//! backplane would keep (registry, leases, streams, presence) and hands out a
//! [`MemoryRouter`] per node. It is the default for a single process and the reference the
//! behaviour suite (`testsuite`) is written against.
//!
//! # Layout
//! - this file: [`MemoryCluster`], [`MemoryRouter`] and the trait glue (validation, locking).
//! - `state`: the shared state and every rule (leases, purge, routing, presence);
//!   `state/streams`: its channel streams (publish, history, epochs, acks).
//! - `idempotency`: the keys of idempotent publishes and their windows.
//!
//! All state sits behind one mutex that is never held across an `.await`. Sinks are called
//! while it is held, so every node sees a channel's messages in offset order; sinks must
//! only enqueue (as [`NodeSink`] requires).
//!
//! Time: leases and history ages use `tokio::time::Instant`, so tests may drive them with
//! `tokio::time::pause()`; message timestamps and `since_ms` use the wall clock.

mod idempotency;
mod state;
mod stream;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use switchboard_proto::StreamPosition;
use tokio::time::Instant;

use self::state::State;
use crate::{
    Backplane, ConnInfo, History, HistoryPolicies, HistoryRead, NodeInfo, NodeSink, NodeStatus,
    Presence, PresenceInfo, PublishOutcome, PublishRequest, Registry, Result, RouterError,
};

/// Shared in-process state for any number of nodes (the embedded backplane).
pub struct MemoryCluster {
    state: Mutex<State>,
}

impl MemoryCluster {
    /// A cluster whose channels keep history per `policies` and whose nodes stay live for
    /// `lease` after their last heartbeat (or their start).
    pub fn new(policies: HistoryPolicies, lease: Duration) -> Arc<MemoryCluster> {
        Arc::new(MemoryCluster {
            state: Mutex::new(State::new(policies, lease)),
        })
    }

    /// A cluster with a single node: the usual setup of a standalone gateway.
    pub fn standalone(
        node_id: impl Into<String>,
        policies: HistoryPolicies,
        lease: Duration,
    ) -> Arc<MemoryRouter> {
        MemoryCluster::new(policies, lease).node(node_id)
    }

    /// A handle for node `node_id` sharing this cluster's state. The node is not live
    /// until [`Backplane::start`]. Two handles with the same id are the same node.
    pub fn node(self: &Arc<Self>, node_id: impl Into<String>) -> Arc<MemoryRouter> {
        Arc::new(MemoryRouter {
            node: node_id.into(),
            cluster: Arc::clone(self),
        })
    }

    /// Locks the state. A panic in a sink poisons the mutex but leaves the state
    /// consistent (sinks run after every mutation), so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Locks the state with dead nodes' entries already purged.
    fn purged(&self, now: Instant) -> MutexGuard<'_, State> {
        let mut state = self.lock();
        state.purge(now);
        state
    }
}

/// One node's view of a [`MemoryCluster`]; implements every router trait.
pub struct MemoryRouter {
    node: String,
    cluster: Arc<MemoryCluster>,
}

impl MemoryRouter {
    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node
    }

    /// The cluster this node belongs to (to create more nodes sharing its state).
    pub fn cluster(&self) -> &Arc<MemoryCluster> {
        &self.cluster
    }

    /// The state, purged, provided this node is started.
    fn up_state(&self, now: Instant) -> Result<MutexGuard<'_, State>> {
        let state = self.cluster.purged(now);
        if state.is_up(&self.node) {
            Ok(state)
        } else {
            Err(RouterError::Unavailable(format!(
                "node {} is not started",
                self.node
            )))
        }
    }
}

fn non_empty(what: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(RouterError::BadRequest(format!("{what} is empty")));
    }
    Ok(())
}

#[async_trait]
impl Backplane for MemoryRouter {
    async fn start(&self, sink: Arc<dyn NodeSink>) -> Result<()> {
        let now = Instant::now();
        let mut state = self.cluster.purged(now);
        state.start(&self.node, sink, now);
        tracing::debug!(node = %self.node, "memory backplane node started");
        Ok(())
    }

    async fn publish(&self, request: PublishRequest) -> Result<PublishOutcome> {
        non_empty("channel", &request.channel)?;
        let now = Instant::now();
        Ok(self.up_state(now)?.publish(request, now))
    }

    async fn subscribe_room(&self, channel: &str) -> Result<()> {
        non_empty("channel", channel)?;
        self.up_state(Instant::now())?
            .subscribe_room(&self.node, channel);
        Ok(())
    }

    async fn unsubscribe_room(&self, channel: &str) -> Result<()> {
        self.cluster
            .purged(Instant::now())
            .unsubscribe_room(&self.node, channel);
        Ok(())
    }

    async fn disconnect_user(&self, user: &str, code: u16, reason: &str) -> Result<usize> {
        let now = Instant::now();
        let state = self.up_state(now)?;
        Ok(state
            .live_sinks(now)
            .iter()
            .map(|sink| sink.disconnect_user(user, code, reason))
            .sum())
    }

    fn is_up(&self) -> bool {
        self.cluster.lock().is_up(&self.node)
    }

    async fn shutdown(&self) {
        let now = Instant::now();
        self.cluster.purged(now).shutdown(&self.node, now);
        tracing::debug!(node = %self.node, "memory backplane node shut down");
    }
}

#[async_trait]
impl Registry for MemoryRouter {
    async fn register(&self, conn: ConnInfo, max_per_user: usize) -> Result<crate::Registration> {
        non_empty("user", &conn.user)?;
        non_empty("conn_id", &conn.conn_id)?;
        if conn.node != self.node {
            return Err(RouterError::BadRequest(format!(
                "connection of node {} registered through node {}",
                conn.node, self.node
            )));
        }
        Ok(self.up_state(Instant::now())?.register(conn, max_per_user))
    }

    async fn unregister(&self, user: &str, conn_id: &str) -> Result<()> {
        self.cluster
            .purged(Instant::now())
            .unregister(&self.node, user, conn_id);
        Ok(())
    }

    async fn connections(&self, user: &str) -> Result<Vec<ConnInfo>> {
        let now = Instant::now();
        Ok(self.cluster.purged(now).connections(user, now))
    }

    async fn heartbeat(&self, status: NodeStatus) -> Result<()> {
        let now = Instant::now();
        self.up_state(now)?.heartbeat(&self.node, status, now);
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        let now = Instant::now();
        Ok(self.cluster.purged(now).live_nodes(now))
    }
}

#[async_trait]
impl History for MemoryRouter {
    async fn position(&self, channel: &str) -> Result<StreamPosition> {
        non_empty("channel", channel)?;
        Ok(self.cluster.lock().position(channel))
    }

    async fn read(
        &self,
        channel: &str,
        since: Option<&StreamPosition>,
        limit: usize,
    ) -> Result<HistoryRead> {
        non_empty("channel", channel)?;
        let now = Instant::now();
        Ok(self.cluster.lock().read(channel, since, limit, now))
    }

    async fn ack(&self, user: &str, position: &StreamPosition) -> Result<()> {
        non_empty("user", user)?;
        self.cluster.lock().ack(user, position);
        Ok(())
    }

    async fn acked(&self, user: &str) -> Result<Option<StreamPosition>> {
        Ok(self.cluster.lock().acked(user))
    }

    async fn reset_epoch(&self, channel: &str, epoch: &str) -> Result<()> {
        non_empty("channel", channel)?;
        self.cluster.lock().reset_epoch(channel, epoch);
        Ok(())
    }
}

#[async_trait]
impl Presence for MemoryRouter {
    async fn join(&self, channel: &str, user: &str, conn_id: &str) -> Result<bool> {
        non_empty("channel", channel)?;
        non_empty("user", user)?;
        let now = Instant::now();
        Ok(self
            .up_state(now)?
            .join(&self.node, channel, user, conn_id, now))
    }

    async fn leave(&self, channel: &str, user: &str, conn_id: &str) -> Result<bool> {
        let now = Instant::now();
        Ok(self
            .cluster
            .purged(now)
            .leave(&self.node, channel, user, conn_id, now))
    }

    async fn presence(&self, channel: &str) -> Result<PresenceInfo> {
        Ok(self.cluster.purged(Instant::now()).presence(channel))
    }
}
