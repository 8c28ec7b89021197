//! Channel streams on Redis: positions, history reads and the inbox acks.

use std::sync::Arc;

use async_trait::async_trait;
use switchboard_proto::StreamPosition;

use super::{random_string, unavailable, value_str, value_u64, RedisRouter, ACK_TTL};
use crate::types::{HistoryRead, RouterError};
use crate::{History, Result};

#[async_trait]
impl History for RedisRouter {
    async fn position(&self, channel: &str) -> Result<StreamPosition> {
        let read = self
            .read(channel, Some(&StreamPosition::new("-", u64::MAX)), 0)
            .await?;
        Ok(StreamPosition::new(read.epoch, read.offset))
    }

    async fn read(
        &self,
        channel: &str,
        since: Option<&StreamPosition>,
        limit: usize,
    ) -> Result<HistoryRead> {
        let inner = &self.inner;
        let (_, max_age, meta_ttl) = inner.history_args(channel);
        let (since_epoch, since_offset) = match since {
            Some(p) => (p.epoch.clone(), p.offset),
            None => (String::new(), 0),
        };
        let v = inner
            .eval(
                &inner.scripts.read,
                vec![inner.key("m", channel), inner.key("s", channel)],
                vec![
                    random_string(10).into(),
                    meta_ttl.to_string().into(),
                    since_epoch.into(),
                    since_offset.to_string().into(),
                    limit.min(1_000_000).to_string().into(),
                    max_age.to_string().into(),
                ],
            )
            .await?;
        let parts = v.into_array();
        if parts.len() < 3 {
            return Err(RouterError::Unavailable("unexpected read answer".into()));
        }
        let mut messages = Vec::with_capacity(parts.len() - 3);
        for part in &parts[3..] {
            let bytes = part.as_bytes().unwrap_or_default();
            let pb = <switchboard_proto::pb::Message as prost::Message>::decode(bytes)
                .map_err(|e| RouterError::Unavailable(format!("corrupt history entry: {e}")))?;
            let m = switchboard_proto::binary::message_from_pb(pb)
                .map_err(|e| RouterError::Unavailable(format!("corrupt history entry: {e}")))?;
            messages.push(Arc::new(m));
        }
        Ok(HistoryRead {
            epoch: value_str(&parts[0]),
            offset: value_u64(&parts[1]),
            recovered: value_u64(&parts[2]) == 1,
            messages,
        })
    }

    async fn ack(&self, user: &str, position: &StreamPosition) -> Result<()> {
        let inner = &self.inner;
        inner
            .eval(
                &inner.scripts.ack,
                vec![inner.key("a", user)],
                vec![
                    position.epoch.clone().into(),
                    position.offset.to_string().into(),
                    (ACK_TTL.as_millis() as u64).to_string().into(),
                ],
            )
            .await
            .map(|_| ())
    }

    async fn acked(&self, user: &str) -> Result<Option<StreamPosition>> {
        let inner = &self.inner;
        let v: Option<String> =
            fred::interfaces::KeysInterface::get(&inner.client, inner.key("a", user))
                .await
                .map_err(unavailable)?;
        Ok(v.and_then(|s| {
            let (epoch, offset) = s.split_once(' ')?;
            Some(StreamPosition::new(epoch, offset.parse().ok()?))
        }))
    }
}
