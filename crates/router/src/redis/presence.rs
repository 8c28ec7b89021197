//! Room presence on Redis: atomic join/leave scripts on the room's slot, which publish
//! the presence frames to the room's shard channel. The node's own set of its presence
//! entries (what a reaper reads) is written before a join and cleared after a leave.

use async_trait::async_trait;

use super::client::Cmd;
use super::{value_str, value_u64, Inner, RedisRouter};
use crate::types::PresenceInfo;
use crate::{Presence, Result};

/// Which presence change a script makes.
#[derive(Clone, Copy)]
pub(super) enum Change {
    Join,
    Leave,
}

impl Inner {
    /// Joins or leaves `channel` for one connection; returns whether it was the user's
    /// first (join) or last (leave) connection there, which published the frame.
    pub(super) async fn presence_change(
        &self,
        change: Change,
        channel: &str,
        user: &str,
        conn_id: &str,
    ) -> Result<bool> {
        let node_set = self.keys.node_presence(&self.settings.node_id);
        let member = format!("{channel} {conn_id} {user}");
        match change {
            Change::Join => {
                self.call(Cmd::new("SADD").key(&node_set).arg(&member))
                    .await?;
                let (p, pu) = (
                    self.keys.presence(channel),
                    self.keys.presence_users(channel),
                );
                let cmd = self
                    .scripts
                    .join
                    .cmd(&[p.as_bytes(), pu.as_bytes()])
                    .arg(conn_id)
                    .arg(user)
                    .arg(&self.settings.node_id)
                    .arg(self.keys.live(channel))
                    .arg(channel);
                Ok(value_u64(&self.call(cmd).await?) == 1)
            }
            Change::Leave => {
                let last = self.leave_script(channel, user, conn_id).await?;
                self.call(Cmd::new("SREM").key(&node_set).arg(&member))
                    .await?;
                Ok(last)
            }
        }
    }

    /// The leave script alone (a reaper removing a dead node's entry uses it too).
    pub(super) async fn leave_script(
        &self,
        channel: &str,
        user: &str,
        conn_id: &str,
    ) -> Result<bool> {
        let (p, pu) = (
            self.keys.presence(channel),
            self.keys.presence_users(channel),
        );
        let cmd = self
            .scripts
            .leave
            .cmd(&[p.as_bytes(), pu.as_bytes()])
            .arg(conn_id)
            .arg(user)
            .arg(self.keys.live(channel))
            .arg(channel);
        Ok(value_u64(&self.call(cmd).await?) == 1)
    }
}

#[async_trait]
impl Presence for RedisRouter {
    async fn join(&self, channel: &str, user: &str, conn_id: &str) -> Result<bool> {
        let inner = &self.inner;
        inner.ensure_started()?;
        let first = inner
            .presence_change(Change::Join, channel, user, conn_id)
            .await?;
        inner
            .local()
            .presence
            .insert((channel.to_owned(), user.to_owned(), conn_id.to_owned()));
        Ok(first)
    }

    async fn leave(&self, channel: &str, user: &str, conn_id: &str) -> Result<bool> {
        self.inner.local().presence.remove(&(
            channel.to_owned(),
            user.to_owned(),
            conn_id.to_owned(),
        ));
        self.inner
            .presence_change(Change::Leave, channel, user, conn_id)
            .await
    }

    async fn presence(&self, channel: &str) -> Result<PresenceInfo> {
        let inner = &self.inner;
        let (p, pu) = (
            inner.keys.presence(channel),
            inner.keys.presence_users(channel),
        );
        let v = inner
            .call(
                inner
                    .scripts
                    .presence
                    .cmd(&[p.as_bytes(), pu.as_bytes()])
                    .idempotent(),
            )
            .await?;
        let parts = v.into_array();
        let connections = parts.first().map(value_u64).unwrap_or(0);
        let mut users: Vec<String> = parts.iter().skip(1).map(value_str).collect();
        users.sort();
        users.dedup();
        Ok(PresenceInfo { users, connections })
    }
}
