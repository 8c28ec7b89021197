//! Room presence on Redis: atomic join/leave scripts that publish the presence frames.

use async_trait::async_trait;

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
        let node = &self.settings.node_id;
        let script = match change {
            Change::Join => &self.scripts.join,
            Change::Leave => &self.scripts.leave,
        };
        let v = self
            .eval(
                script,
                vec![
                    self.key("p", channel),
                    self.key("pu", channel),
                    self.key("np", node),
                ],
                vec![
                    conn_id.into(),
                    user.into(),
                    node.as_str().into(),
                    channel.into(),
                    self.room_channel(channel).into(),
                ],
            )
            .await?;
        Ok(value_u64(&v) == 1)
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
        let v = inner
            .eval(
                &inner.scripts.presence,
                vec![inner.key("p", channel), inner.key("pu", channel)],
                Vec::new(),
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
