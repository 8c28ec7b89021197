//! The registry on Redis: connection entries per user, the connection events, node
//! leases, and re-registration after this node's entries were reaped or Redis lost its
//! data. Registering a connection also subscribes its user's channel on this node.
//!
//! A registration spans slots (the node's set, the user's hash, the events stream), so
//! it is three steps, in an order that a crash between any two cannot turn into an
//! entry nobody cleans up: the node's set first (what a reaper reads), then the user's
//! entry, then the event; unregistering goes the other way.
//!
//! The per-user connection cap is checked by the script that writes the user's entry,
//! on the user's slot, atomically with the write: no extra round trip, and concurrent
//! registrations on any number of nodes never pass it. A refused registration takes its
//! member of the node's set back and writes no event. Re-registering after a reap is
//! not capped: those connections are open already.

use std::sync::atomic::Ordering;

use async_trait::async_trait;

use super::client::Cmd;
use super::presence::Change;
use super::{now_ms, unavailable, value_str, value_u64, Inner, RedisRouter};
use crate::types::{ConnInfo, NodeInfo, NodeStatus, Registration, RouterError};
use crate::{Registry, Result};

fn user_channel(user: &str) -> String {
    format!("user:{user}")
}

impl Inner {
    /// Appends a connection event (`connect` / `disconnect`) to the events stream.
    pub(super) fn event(&self, fields: &[(&str, &str)]) -> Cmd {
        let mut cmd = Cmd::new("XADD")
            .key(&self.settings.events_stream)
            .arg("MAXLEN")
            .arg("~")
            .int(self.settings.events_maxlen)
            .arg("*");
        for (k, v) in fields {
            cmd = cmd.arg(k).arg(v);
        }
        cmd
    }

    /// Writes `conn`'s entries unless its user is at `max_per_user` (0 = no cap; the
    /// check is in the registration script, atomic with the write).
    pub(super) async fn register_entry(
        &self,
        conn: &ConnInfo,
        max_per_user: usize,
    ) -> Result<Registration> {
        let node = &self.settings.node_id;
        let ch = user_channel(&conn.user);
        let member = format!("{} {}", conn.user, conn.conn_id);
        self.call(
            Cmd::new("SADD")
                .key(self.keys.node_conns(node))
                .arg(&member),
        )
        .await?;
        let registry = self.keys.registry(&ch);
        let cmd = self
            .scripts
            .register
            .cmd(&[registry.as_bytes()])
            .arg(&conn.conn_id)
            .arg(format!("{node} {}", conn.since_ms))
            .int(self.redis_deadline_ms(self.settings.command_timeout))
            .int(max_per_user);
        if value_u64(&self.call(cmd).await?) == 0 {
            // Refused, nothing written to the user's hash. A member left in the node's
            // set would be harmless (a reaper removes only entries the node owns).
            let srem = Cmd::new("SREM")
                .key(self.keys.node_conns(node))
                .arg(&member);
            if let Err(e) = self.call(srem).await {
                tracing::debug!(error = %e, "could not take back a refused registration");
            }
            return Ok(Registration::UserAtCap);
        }
        let ts = now_ms().to_string();
        self.call(self.event(&[
            ("type", "connect"),
            ("user", &conn.user),
            ("conn", &conn.conn_id),
            ("node", node),
            ("ts", &ts),
        ]))
        .await?;
        Ok(Registration::Registered)
    }

    pub(super) async fn unregister_entry(&self, user: &str, conn_id: &str) -> Result<()> {
        let node = &self.settings.node_id;
        let removed = self
            .call(
                Cmd::new("HDEL")
                    .key(self.keys.registry(&user_channel(user)))
                    .arg(conn_id),
            )
            .await?;
        if value_u64(&removed) == 1 {
            let ts = now_ms().to_string();
            self.call(self.event(&[
                ("type", "disconnect"),
                ("user", user),
                ("conn", conn_id),
                ("node", node),
                ("ts", &ts),
                ("reason", "closed"),
            ]))
            .await?;
        }
        self.call(
            Cmd::new("SREM")
                .key(self.keys.node_conns(node))
                .arg(format!("{user} {conn_id}")),
        )
        .await
        .map(|_| ())
    }

    /// One fewer local connection of `user`; the last one gives up the user's channel.
    fn release_user(&self, user: &str) {
        let mut local = self.local();
        let last = match local.users.get_mut(user) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                local.users.remove(user);
                true
            }
            None => false,
        };
        if last {
            // Under the lock: a registration of the same user that follows sees the
            // count at 0 and subscribes again.
            if let Some(shards) = self.shards.get() {
                shards.unsubscribe(&self.keys.live(&user_channel(user)));
            }
        }
    }

    /// Called every probe interval: when the lease is about to lapse without a heartbeat, the
    /// cluster has reaped (or will reap) this node's entries, so it stops receiving its
    /// users' channels, as a node that is gone would: the registry stays the truth
    /// about who is where. The next successful heartbeat undoes it.
    pub(super) fn check_lease(&self) {
        // A probe interval early: the reapers must not find this node's entries gone
        // while it still receives their channels.
        let limit = self
            .settings
            .lease
            .saturating_sub(self.settings.probe_interval);
        let since = self.mono_ms() - self.last_beat_ms.load(Ordering::SeqCst);
        if since <= limit.as_millis() as i64 || self.fenced.swap(true, Ordering::SeqCst) {
            return;
        }
        let users: Vec<String> = self.local().users.keys().cloned().collect();
        tracing::warn!(
            users = users.len(),
            "lease lapsed without a heartbeat; this node stops receiving its users' channels"
        );
        if let Some(shards) = self.shards.get() {
            for user in users {
                shards.unsubscribe(&self.keys.live(&user_channel(&user)));
            }
        }
    }

    /// After a heartbeat renewed a lapsed lease: subscribes the users' channels again
    /// and has the sink repair them (what was published meanwhile is in history).
    async fn unfence(&self) {
        let Ok(shards) = self.shards() else {
            return;
        };
        let users: Vec<String> = self.local().users.keys().cloned().collect();
        let channels: Vec<String> = users.iter().map(|u| user_channel(u)).collect();
        let subscribed = futures_util::future::join_all(
            channels
                .iter()
                .map(|ch| shards.subscribe_owned(self.keys.live(ch))),
        )
        .await;
        if subscribed.iter().any(Result::is_err) {
            tracing::warn!("could not subscribe every user channel again; retrying");
            return;
        }
        self.fenced.store(false, Ordering::SeqCst);
        tracing::info!(
            users = users.len(),
            "lease renewed; receiving users' channels again"
        );
        if let Some(sink) = self.sink.get() {
            sink.channels_interrupted(&channels);
        }
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
            // No cap: these connections are open already.
            if let Err(e) = self.register_entry(conn, 0).await {
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

#[async_trait]
impl Registry for RedisRouter {
    async fn register(&self, conn: ConnInfo, max_per_user: usize) -> Result<Registration> {
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
        // Live delivery first: the caller reads the inbox after this returns.
        *inner.local().users.entry(conn.user.clone()).or_default() += 1;
        let live = inner.keys.live(&user_channel(&conn.user));
        if let Err(e) = inner.shards()?.subscribe(&live).await {
            inner.release_user(&conn.user);
            return Err(unavailable(e));
        }
        match inner.register_entry(&conn, max_per_user).await {
            Ok(Registration::Registered) => {
                inner.local().conns.insert(conn.conn_id.clone(), conn);
                Ok(Registration::Registered)
            }
            Ok(Registration::UserAtCap) => {
                inner.release_user(&conn.user);
                Ok(Registration::UserAtCap)
            }
            Err(e) => {
                inner.release_user(&conn.user);
                // Parts may have been written with their answer lost or late: take them
                // back (the caller gives up on this connection and will not unregister it).
                let this = RedisRouter {
                    inner: inner.clone(),
                };
                tokio::spawn(async move {
                    let _ = this.inner.unregister_entry(&conn.user, &conn.conn_id).await;
                });
                Err(e)
            }
        }
    }

    async fn unregister(&self, user: &str, conn_id: &str) -> Result<()> {
        let inner = &self.inner;
        if inner.local().conns.remove(conn_id).is_some() {
            inner.release_user(user);
        }
        inner.unregister_entry(user, conn_id).await
    }

    async fn connections(&self, user: &str) -> Result<Vec<ConnInfo>> {
        let inner = &self.inner;
        let v = inner
            .call(
                Cmd::new("HGETALL")
                    .key(inner.keys.registry(&user_channel(user)))
                    .idempotent(),
            )
            .await?;
        let items = v.into_array();
        let mut out: Vec<ConnInfo> = items
            .chunks_exact(2)
            .map(|kv| {
                let v = value_str(&kv[1]);
                let mut parts = v.split(' ');
                ConnInfo {
                    conn_id: value_str(&kv[0]),
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
        let (nodes, status_key, reaping) = (
            inner.keys.nodes(),
            inner.keys.status(),
            inner.keys.reaping(),
        );
        let cmd = inner
            .scripts
            .heartbeat
            .cmd(&[nodes.as_bytes(), status_key.as_bytes(), reaping.as_bytes()])
            .arg(node)
            .int(inner.settings.lease.as_millis() as u64)
            .arg(format!(
                "{} {} {}",
                status.connections,
                u8::from(status.draining),
                inner.since_ms
            ));
        let v = match inner.call(cmd).await {
            Ok(v) => v,
            Err(e) => {
                inner.leases_ok_since_ms.store(-1, Ordering::SeqCst);
                return Err(e);
            }
        };
        let _ = inner.leases_ok_since_ms.compare_exchange(
            -1,
            sent_ms,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
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
        let being_reaped = parts.get(2).map(value_u64) == Some(1);
        inner.last_beat_ms.store(inner.mono_ms(), Ordering::SeqCst);
        if inner.fenced.load(Ordering::SeqCst) {
            inner.unfence().await;
        }
        let first = inner.heartbeats.fetch_add(1, Ordering::SeqCst) == 0;
        if added && !first {
            inner.reregister.store(true, Ordering::SeqCst);
        }
        if inner.reregister.load(Ordering::SeqCst) && !being_reaped && inner.resync().await {
            inner.reregister.store(false, Ordering::SeqCst);
        }
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        let inner = &self.inner;
        let (nodes, status) = (inner.keys.nodes(), inner.keys.status());
        let v = inner
            .call(
                inner
                    .scripts
                    .nodes
                    .cmd(&[nodes.as_bytes(), status.as_bytes()]),
            )
            .await?;
        let parts = v.into_array();
        Ok(parts
            .chunks_exact(2)
            .map(|c| {
                let status = value_str(&c[1]);
                let mut s = status.split(' ');
                let mut next = || s.next().and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
                NodeInfo {
                    node: value_str(&c[0]),
                    connections: next(),
                    draining: next() == 1,
                    since_ms: next(),
                }
            })
            .collect())
    }
}
