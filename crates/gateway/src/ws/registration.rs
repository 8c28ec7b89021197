//! A new connection's registry entry, written during the handshake: before the 101, so
//! that the per-user cap (`--max-connections-per-user`, counted cluster-wide by the
//! registry, atomically with the write) can refuse it with 429 `too_many_connections`.
//!
//! Until the upgraded connection takes the entry over, dropping it unregisters: an
//! upgrade that fails or times out, or a client that leaves mid-handshake, leaves no entry
//! counting against the user's cap.

use std::sync::Arc;

use http::StatusCode;
use switchboard_router::ConnInfo;

use super::handshake::Rejected;
use crate::node::{now_ms, Node};

/// Who a new connection is, and whether the registry holds it.
pub struct NewConn {
    /// Node-local number.
    pub id: u64,
    /// The public `c-…` id, as registered.
    pub conn_id: String,
    pub user: String,
    /// When it was accepted (ms since the Unix epoch), as registered.
    pub since_ms: u64,
    /// False when the backplane could not register it: the connection is upgraded all the
    /// same and told so (`error` unavailable, close 1013), as before the cap existed.
    pub registered: bool,
}

/// A [`NewConn`] whose entry is unregistered if it is dropped before
/// [`take_over`](Registration::take_over).
pub struct Registration {
    node: Arc<Node>,
    /// `None` once taken over.
    conn: Option<NewConn>,
}

impl Registration {
    /// The connection takes the entry over: from here its session unregisters it.
    pub fn take_over(mut self) -> NewConn {
        self.conn.take().expect("a registration is taken over once")
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take().filter(|c| c.registered) else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let node = self.node.clone();
        self.node.tracker.spawn(async move {
            tracing::debug!(conn = %conn.conn_id, "not upgraded; unregistering");
            if let Err(e) = node.router.unregister(&conn.user, &conn.conn_id).await {
                tracing::warn!(conn = %conn.conn_id, error = %e, "unregister failed");
            }
        });
    }
}

/// Registers a new connection of `user`; 429 `too_many_connections` when the user is at
/// the cap. Runs in a task of its own: when the handshake is dropped half-way, the
/// registration still completes, and its result, dropped with the task's output,
/// unregisters.
pub async fn register(node: &Arc<Node>, user: &str) -> Result<Registration, Rejected> {
    let (id, conn_id) = node.next_conn_id();
    let conn = NewConn {
        id,
        conn_id,
        user: user.to_owned(),
        since_ms: now_ms(),
        registered: false,
    };
    let task = node.tracker.spawn(write(node.clone(), conn));
    task.await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "the registration task failed");
        Err(Rejected {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "could not register the connection".into(),
        })
    })
}

async fn write(node: Arc<Node>, mut conn: NewConn) -> Result<Registration, Rejected> {
    let info = ConnInfo {
        conn_id: conn.conn_id.clone(),
        user: conn.user.clone(),
        node: node.config.node_id.clone(),
        since_ms: conn.since_ms,
    };
    let cap = node.config.max_connections_per_user;
    match node.router.register(info, cap).await {
        Ok(switchboard_router::Registration::Registered) => conn.registered = true,
        Ok(switchboard_router::Registration::UserAtCap) => {
            tracing::debug!(user = %conn.user, cap, "user at the connection cap");
            return Err(Rejected {
                status: StatusCode::TOO_MANY_REQUESTS,
                code: "too_many_connections",
                message: format!(
                    "this user already has {cap} connections, the most allowed; close one first"
                ),
            });
        }
        Err(e) => tracing::warn!(conn = %conn.conn_id, error = %e, "could not register"),
    }
    Ok(Registration {
        node,
        conn: Some(conn),
    })
}
