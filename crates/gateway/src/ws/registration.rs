//! A new connection's registry entry, written during the handshake: before the 101, so
//! that the per-user cap (`--max-connections-per-user`, counted cluster-wide by the
//! registry, atomically with the write) can refuse it with 429 `too_many_connections`.
//!
//! Until the upgraded connection takes the entry over, dropping it unregisters: an
//! upgrade that fails or times out, or a client that leaves mid-handshake, leaves no entry
//! counting against the user's cap.

use std::sync::Arc;

use http::StatusCode;
use switchboard_proto::clock;
use switchboard_router::ConnInfo;

use super::rejection::Rejected;
use crate::node::Node;

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
        since_ms: clock::now_ms(),
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

#[cfg(test)]
mod tests {
    use std::future::Future as _;
    use std::task::Poll;
    use std::time::Duration;

    use switchboard_router::Backplane as _;

    use super::*;
    use crate::config::{Config, ServeArgs};
    use crate::hub::Hub;

    /// A node on a started embedded backplane, capped at `cap` connections per user.
    async fn node(cap: &str) -> Arc<Node> {
        let args = ServeArgs {
            jwt_secret: Some("registration-unit-test-secret-0123456789".into()),
            node_id: Some("gw-r".into()),
            max_connections_per_user: Some(cap.into()),
            ..ServeArgs::default()
        };
        let config = Config::from_parts(&args, None).expect("valid config");
        let router = switchboard_router::memory::MemoryCluster::standalone(
            "gw-r".to_owned(),
            config.history.clone(),
            config.lease,
        );
        let hub = Arc::new(Hub::new().0);
        router.start(hub.clone()).await.expect("start");
        let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle();
        Arc::new(Node::new(config, router, hub, handle))
    }

    async fn listed(node: &Node, user: &str) -> usize {
        let conns = node.router.connections(user).await;
        conns.expect("connections").len()
    }

    /// Waits until `user` has no registered connection.
    async fn offline(node: &Node, user: &str) {
        let wait = async {
            while listed(node, user).await > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .expect("the entry is unregistered");
    }

    #[tokio::test]
    async fn an_entry_not_taken_over_is_unregistered_and_frees_its_slot() {
        let node = node("1").await;
        let first = register(&node, "alice").await.expect("below the cap");
        let refused = register(&node, "alice").await.err().expect("at the cap");
        assert_eq!(
            (refused.status, refused.code),
            (StatusCode::TOO_MANY_REQUESTS, "too_many_connections")
        );
        drop(first);
        offline(&node, "alice").await;
        let again = register(&node, "alice").await.expect("the slot is free");
        assert!(again.take_over().registered);
        // Taken over, the entry is the connection's: nothing unregisters it here.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(listed(&node, "alice").await, 1);
    }

    #[tokio::test]
    async fn a_handshake_dropped_while_registering_leaves_no_entry() {
        let node = node("1").await;
        {
            // Polled once (the registration task is spawned), then dropped.
            let mut handshake = std::pin::pin!(register(&node, "bob"));
            let first = std::future::poll_fn(|cx| Poll::Ready(handshake.as_mut().poll(cx))).await;
            assert!(first.is_pending(), "the registration had not finished");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        offline(&node, "bob").await;
        let again = register(&node, "bob")
            .await
            .expect("no entry was left behind");
        assert!(again.take_over().registered);
    }
}
