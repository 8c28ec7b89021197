//! The state one gateway node shares between its listeners, connections and server API.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use switchboard_router::{Idempotency, Router};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::hub::Hub;
use crate::rpc::Rpc;
use crate::sweeper::Sweeper;

#[cfg(test)]
pub mod testing;

/// Striped locks that serialize backplane subscribe/unsubscribe per room.
const ROOM_LOCKS: usize = 64;

pub struct Node {
    pub config: Config,
    pub router: Arc<dyn Router>,
    pub hub: Arc<Hub>,
    pub metrics: PrometheusHandle,
    /// RPC forwarding: routes, upstream client, breakers (docs/protocol.md §4b).
    pub rpc: Arc<Rpc>,
    /// Every connection task, HTTP or WebSocket: hyper's graceful shutdown does not see
    /// upgraded sockets, so the drain waits on this instead.
    pub tracker: TaskTracker,
    /// Cancelled when the node must stop at once (after the drain deadline).
    pub shutdown: CancellationToken,
    /// Heartbeats, idle closes and token expiry of every connection (one task).
    pub sweeper: Arc<Sweeper>,
    /// Set at the start of a drain: `/readyz` answers 503 and upgrades are refused.
    draining: AtomicBool,
    /// WebSocket connections admitted (including handshakes in progress), for the cap.
    admitted: AtomicUsize,
    next_conn: AtomicU64,
    /// Random per process: connection ids stay unique when a node restarts under the
    /// same id (its previous life's ids may still be in the registry or events stream).
    conn_tag: String,
    room_locks: Vec<tokio::sync::Mutex<()>>,
}

impl Node {
    pub fn new(
        config: Config,
        router: Arc<dyn Router>,
        hub: Arc<Hub>,
        metrics: PrometheusHandle,
    ) -> Node {
        Node {
            rpc: Arc::new(Rpc::new(&config)),
            config,
            router,
            hub,
            metrics,
            tracker: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            sweeper: Arc::new(Sweeper::new()),
            draining: AtomicBool::new(false),
            admitted: AtomicUsize::new(0),
            next_conn: AtomicU64::new(1),
            conn_tag: {
                use rand::Rng as _;
                rand::rng()
                    .sample_iter(&rand::distr::Alphanumeric)
                    .take(5)
                    .map(char::from)
                    .collect()
            },
            room_locks: (0..ROOM_LOCKS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    /// A publish's idempotency key (already validated) in its scope, with the window.
    /// Keys are scoped per sender: a user's client publishes form one scope per user, the
    /// server API one scope of its own — so two users who both number their publishes
    /// `1, 2, 3…` never answer each other's, and no user can make another's publish look
    /// like a retry. The key comes first; it cannot hold the `/`.
    pub fn idempotency(&self, key: Option<String>, user: Option<&str>) -> Option<Idempotency> {
        let key = key?;
        Some(Idempotency {
            key: match user {
                Some(user) => format!("{key}/{user}"),
                None => key,
            },
            window: self.config.idempotency_window,
        })
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn start_drain(&self) -> bool {
        !self.draining.swap(true, Ordering::SeqCst)
    }

    /// Reserves a connection slot; `None` when the node is at `--max-connections`.
    pub fn admit(self: &Arc<Self>) -> Option<Admission> {
        let prev = self.admitted.fetch_add(1, Ordering::SeqCst);
        if prev >= self.config.max_connections {
            self.admitted.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Admission { node: self.clone() })
    }

    /// A fresh connection id: node-local number and the public `c-…` id.
    pub fn next_conn_id(&self) -> (u64, String) {
        let n = self.next_conn.fetch_add(1, Ordering::Relaxed);
        (
            n,
            format!("c-{}-{}-{n}", self.config.node_id, self.conn_tag),
        )
    }

    /// The lock serializing backplane (un)subscription of `room`.
    pub async fn lock_room(&self, room: &str) -> tokio::sync::MutexGuard<'_, ()> {
        let mut h: u64 = 0xcbf29ce484222325;
        for b in room.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
        }
        self.room_locks[(h % ROOM_LOCKS as u64) as usize]
            .lock()
            .await
    }
}

/// A reserved connection slot, released on drop.
pub struct Admission {
    node: Arc<Node>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.node.admitted.fetch_sub(1, Ordering::SeqCst);
    }
}
