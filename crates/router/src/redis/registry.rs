//! The registry on Redis: connection entries per user, node leases, re-registration
//! after this node's entries were reaped or Redis lost its data.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use async_trait::async_trait;

use super::link;
use super::presence::Change;
use super::{unavailable, value_str, value_u64, Inner, RedisRouter};
use crate::types::{ConnInfo, NodeInfo, NodeStatus, RouterError};
use crate::{Registry, Result};

impl Inner {
    pub(super) async fn register_conn(&self, conn: &ConnInfo) -> Result<()> {
        self.eval(
            &self.scripts.register,
            vec![
                self.key("u", &conn.user),
                self.key("nc", &conn.node),
                self.settings.events_stream.clone(),
            ],
            vec![
                conn.conn_id.clone().into(),
                conn.node.clone().into(),
                conn.since_ms.to_string().into(),
                conn.user.clone().into(),
                self.settings.events_maxlen.to_string().into(),
                self.redis_deadline_ms(self.settings.command_timeout)
                    .to_string()
                    .into(),
            ],
        )
        .await
        .map(|_| ())
    }

    /// Re-registers every local connection and presence entry (after this node's
    /// entries were reaped, or Redis restarted without its data). Returns whether every
    /// entry was written.
    pub(super) async fn resync(&self) -> bool {
        let (conns, presence) = {
            let local = self.local();
            (
                local.conns.values().cloned().collect::<Vec<_>>(),
                local.presence.iter().cloned().collect::<Vec<_>>(),
            )
        };
        tracing::warn!(
            connections = conns.len(),
            presence = presence.len(),
            "registry entries missing; re-registering"
        );
        let mut ok = true;
        for conn in &conns {
            if let Err(e) = self.register_conn(conn).await {
                tracing::warn!(error = %e, "re-register failed");
                ok = false;
            }
        }
        for (room, user, conn) in &presence {
            if let Err(e) = self.presence_change(Change::Join, room, user, conn).await {
                tracing::warn!(error = %e, "presence re-join failed");
                ok = false;
            }
        }
        ok
    }
}

impl RedisRouter {
    pub(super) async fn unregister_inner(&self, user: &str, conn_id: &str) -> Result<()> {
        let inner = &self.inner;
        let node = &inner.settings.node_id;
        inner
            .eval(
                &inner.scripts.unregister,
                vec![
                    inner.key("u", user),
                    inner.key("nc", node),
                    inner.settings.events_stream.clone(),
                ],
                vec![
                    conn_id.into(),
                    node.as_str().into(),
                    user.into(),
                    inner.settings.events_maxlen.to_string().into(),
                ],
            )
            .await
            .map(|_| ())
    }

    pub(super) fn nodes_key(&self) -> String {
        format!("{}nodes", self.inner.settings.prefix)
    }
}

#[async_trait]
impl Registry for RedisRouter {
    async fn register(&self, conn: ConnInfo) -> Result<()> {
        let inner = &self.inner;
        inner.ensure_started()?;
        if conn.node != inner.settings.node_id {
            return Err(RouterError::BadRequest(
                "a connection is registered by its own node".into(),
            ));
        }
        if conn.user.is_empty() || conn.conn_id.is_empty() {
            return Err(RouterError::BadRequest(
                "empty user or connection id".into(),
            ));
        }
        if let Err(e) = inner.register_conn(&conn).await {
            // The script may have run with its answer lost or late: take the entry back
            // (the caller gives up on this connection and will not unregister it).
            let this = RedisRouter {
                inner: inner.clone(),
            };
            tokio::spawn(async move {
                let _ = this.unregister_inner(&conn.user, &conn.conn_id).await;
            });
            return Err(e);
        }
        inner.local().conns.insert(conn.conn_id.clone(), conn);
        Ok(())
    }

    async fn unregister(&self, user: &str, conn_id: &str) -> Result<()> {
        self.inner.local().conns.remove(conn_id);
        self.unregister_inner(user, conn_id).await
    }

    async fn connections(&self, user: &str) -> Result<Vec<ConnInfo>> {
        let inner = &self.inner;
        let map: HashMap<String, String> =
            fred::interfaces::HashesInterface::hgetall(&inner.client, inner.key("u", user))
                .await
                .map_err(unavailable)?;
        let mut out: Vec<ConnInfo> = map
            .into_iter()
            .map(|(conn_id, v)| {
                let mut parts = v.split(' ');
                ConnInfo {
                    conn_id,
                    user: user.to_owned(),
                    node: parts.next().unwrap_or_default().to_owned(),
                    since_ms: parts.next().and_then(|s| s.parse().ok()).unwrap_or(0),
                }
            })
            .collect();
        out.sort_by(|a, b| a.conn_id.cmp(&b.conn_id));
        Ok(out)
    }

    async fn heartbeat(&self, status: NodeStatus) -> Result<()> {
        let inner = &self.inner;
        inner.ensure_started()?;
        let node = &inner.settings.node_id;
        let sent_ms = inner.mono_ms();
        let v = inner
            .eval(
                &inner.scripts.heartbeat,
                vec![self.nodes_key(), inner.key("node", node)],
                vec![
                    node.as_str().into(),
                    (inner.settings.lease.as_millis() as u64).to_string().into(),
                    status.connections.to_string().into(),
                    (if status.draining { "1" } else { "0" }).into(),
                    inner.since_ms.to_string().into(),
                ],
            )
            .await?;
        let rtt = inner.mono_ms() - sent_ms;
        let parts = v.into_array();
        let added = parts.first().map(value_u64) == Some(1);
        // The reading's error is half the round trip: after the first one, only quick
        // round trips move the offset.
        if let Some(redis_ms) = parts.get(1).map(value_u64) {
            let quick = rtt <= (inner.settings.command_timeout / 8).as_millis() as i64;
            if quick || inner.clock_offset_ms.load(Ordering::SeqCst) == i64::MIN {
                let offset = redis_ms as i64 - (sent_ms + rtt / 2);
                inner.clock_offset_ms.store(offset, Ordering::SeqCst);
            }
        }
        let first = inner.heartbeats.fetch_add(1, Ordering::SeqCst) == 0;
        if added && !first {
            inner.reregister.store(true, Ordering::SeqCst);
        }
        if inner.reregister.load(Ordering::SeqCst) {
            // Until the entries are back, publishes to local users are stored but routed
            // nowhere: take the link down, and let the watchdog bring it up (the node
            // then repairs every local channel from the streams) once all are written.
            link::down(inner, "registry entries lost");
            if inner.resync().await {
                inner.reregister.store(false, Ordering::SeqCst);
            }
        }
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        let inner = &self.inner;
        let v = inner
            .eval(
                &inner.scripts.nodes,
                vec![self.nodes_key()],
                vec![inner.settings.prefix.clone().into()],
            )
            .await?;
        let parts = v.into_array();
        Ok(parts
            .chunks_exact(4)
            .map(|c| NodeInfo {
                node: value_str(&c[0]),
                connections: value_u64(&c[1]),
                draining: value_u64(&c[2]) == 1,
                since_ms: value_u64(&c[3]),
            })
            .collect())
    }
}
