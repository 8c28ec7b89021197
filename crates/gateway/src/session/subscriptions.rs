//! Subscriptions of one session: validating a channel, subscribing with its replay and
//! presence, unsubscribing.

use std::sync::Arc;

use switchboard_proto::channel::Channel;
use switchboard_proto::frames::ReplyOk;
use switchboard_proto::{ErrorCode, Reply, ServerFrame, StreamPosition};

use super::{router_error, Outcome, Session, REPLAY_LIMIT};
use crate::conn::Released;
use crate::metrics as m;

impl Session {
    /// Completes a subscription (see `ConnHandle::open`); a channel that restarted
    /// meanwhile (live messages of a newer epoch came) is repaired, i.e. resynced.
    pub(super) async fn open_channel(
        &self,
        channel: &str,
        start: &StreamPosition,
        first: &ServerFrame,
        replay: &[Arc<switchboard_proto::Message>],
    ) {
        if self.conn.open(channel, start, first, replay).await != Released::Live {
            self.node.hub.repair(self.conn.clone(), channel.to_owned());
        }
    }

    /// Joins or leaves `channel`'s presence, for namespaces that have presence (rooms and
    /// --presence-namespaces).
    pub(super) async fn announce(&self, channel: &str, join: bool) {
        if !Channel::parse(channel).is_ok_and(|ch| self.node.config.has_presence(ch.namespace)) {
            return;
        }
        let (router, user, conn) = (&self.node.router, &self.conn.user, &self.conn.conn_id);
        let result = if join {
            router.join(channel, user, conn).await
        } else {
            router.leave(channel, user, conn).await
        };
        if let Err(e) = result {
            tracing::warn!(conn = %conn, error = %e, join, "presence change failed");
        }
    }

    /// Validates a channel name for this node's namespaces.
    pub(super) fn channel<'a>(&self, name: &'a str) -> Result<Channel<'a>, (ErrorCode, String)> {
        let ch = Channel::parse(name).map_err(|e| (ErrorCode::BadChannel, e.to_string()))?;
        if !self.node.config.knows_namespace(ch.namespace) {
            return Err((
                ErrorCode::BadChannel,
                format!("unknown namespace `{}`", ch.namespace),
            ));
        }
        Ok(ch)
    }

    pub(super) async fn subscribe(
        &mut self,
        id: Option<u64>,
        channel: String,
        since: Option<StreamPosition>,
    ) -> Outcome {
        let ch = self.channel(&channel)?;
        if ch.user().is_some() {
            return Err((
                ErrorCode::BadChannel,
                "personal channels are delivered without subscribing".into(),
            ));
        }
        if !self.claims.can_subscribe(&channel) {
            return Err((
                ErrorCode::Forbidden,
                format!("not allowed to subscribe to {channel}"),
            ));
        }
        if self.rooms.contains(&channel) {
            return Err((
                ErrorCode::AlreadySubscribed,
                format!("already subscribed to {channel}"),
            ));
        }
        if self.rooms.len() >= self.node.config.max_subscriptions {
            return Err((ErrorCode::LimitExceeded, "too many subscriptions".into()));
        }
        let node = self.node.clone();
        {
            let _guard = node.lock_room(&channel).await;
            self.conn.begin(&channel);
            if node.hub.join_room(&channel, &self.conn) {
                if let Err(e) = node.router.subscribe_room(&channel).await {
                    node.hub.leave_room(&channel, &self.conn);
                    self.conn.end(&channel);
                    return Err(router_error(e));
                }
            }
        }
        self.rooms.insert(channel.clone());
        let result = self.replay(id, &channel, since).await;
        let (start, replay, reply) = match result {
            Ok(r) => r,
            Err(e) => {
                self.drop_room(&channel).await;
                return Err(e);
            }
        };
        self.open_channel(&channel, &start, &ServerFrame::Reply(reply), &replay)
            .await;
        self.announce(&channel, true).await;
        // The reply was queued by `open`, in order with the replay.
        Ok(None)
    }

    /// Reads what a subscription must replay, and builds its reply.
    pub(super) async fn replay(
        &self,
        id: Option<u64>,
        channel: &str,
        since: Option<StreamPosition>,
    ) -> Result<(StreamPosition, Vec<Arc<switchboard_proto::Message>>, Reply), (ErrorCode, String)>
    {
        let router = &self.node.router;
        let ok = |top: StreamPosition, recovered| ReplyOk {
            position: Some(top),
            recovered,
            data: None,
        };
        match since {
            Some(since) => {
                let read = router
                    .read(channel, Some(&since), REPLAY_LIMIT)
                    .await
                    .map_err(router_error)?;
                count_recovery(read.recovered);
                let top = StreamPosition::new(read.epoch, read.offset);
                if read.recovered {
                    Ok((since, read.messages, Reply::ok(id, ok(top, Some(true)))))
                } else {
                    Ok((top.clone(), Vec::new(), Reply::ok(id, ok(top, Some(false)))))
                }
            }
            None => {
                let top = router.position(channel).await.map_err(router_error)?;
                Ok((top.clone(), Vec::new(), Reply::ok(id, ok(top, None))))
            }
        }
    }

    pub(super) async fn unsubscribe(&mut self, channel: &str) -> Outcome {
        self.channel(channel)?;
        if !self.rooms.contains(channel) {
            return Err((
                ErrorCode::NotSubscribed,
                format!("not subscribed to {channel}"),
            ));
        }
        self.drop_room(channel).await;
        Ok(Some(ReplyOk::default()))
    }

    /// Leaves a room locally, on the backplane when last, and in presence.
    pub(super) async fn drop_room(&mut self, channel: &str) {
        let node = self.node.clone();
        self.rooms.remove(channel);
        self.conn.end(channel);
        {
            let _guard = node.lock_room(channel).await;
            if node.hub.leave_room(channel, &self.conn) {
                if let Err(e) = node.router.unsubscribe_room(channel).await {
                    tracing::warn!(error = %e, "backplane unsubscribe failed");
                }
            }
        }
        self.announce(channel, false).await;
    }
}

pub(super) fn count_recovery(recovered: bool) {
    let result = if recovered {
        "recovered"
    } else {
        "not_recovered"
    };
    metrics::counter!(m::RECOVERY, "result" => result).increment(1);
}
