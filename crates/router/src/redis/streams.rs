//! Channel streams on Redis: positions, history reads and the inbox acks.

use std::sync::Arc;

use async_trait::async_trait;
use switchboard_proto::StreamPosition;

use super::client::Cmd;
use super::{frames, now_ms, random_string, value_str, value_u64, RedisRouter, ACK_TTL};
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
        let (max_len, max_age, ttl) = inner.history_args(channel);
        let (since_epoch, since_offset) = match since {
            Some(p) => (p.epoch.as_str(), p.offset),
            None => ("", 0),
        };
        let now = now_ms();
        let (meta, stream) = (inner.keys.meta(channel), inner.keys.stream(channel));
        let cmd = inner
            .scripts
            .read
            .cmd(&[meta.as_bytes(), stream.as_bytes()])
            .arg(random_string(10))
            .int(ttl)
            .arg(since_epoch)
            .int(since_offset)
            .int(limit.min(1_000_000))
            .int(now.saturating_sub(max_age))
            .int(max_len)
            .int(now);
        let parts = inner.call(cmd).await?.into_array();
        if parts.len() < 3 {
            return Err(RouterError::Unavailable("unexpected read answer".into()));
        }
        let epoch = value_str(&parts[0]);
        let mut messages = Vec::with_capacity((parts.len() - 3) / 2);
        for pair in parts[3..].chunks_exact(2) {
            let offset = value_u64(&pair[0]);
            let template = pair[1].as_bytes().map(|b| &b[..]).unwrap_or_default();
            let m = frames::stored_message(template, &epoch, offset)
                .map_err(|e| RouterError::Unavailable(format!("corrupt history entry: {e}")))?;
            messages.push(Arc::new(m));
        }
        Ok(HistoryRead {
            offset: value_u64(&parts[1]),
            recovered: value_u64(&parts[2]) == 1,
            epoch,
            messages,
        })
    }

    async fn ack(&self, user: &str, position: &StreamPosition) -> Result<()> {
        let inner = &self.inner;
        let key = inner.keys.ack(&format!("user:{user}"));
        let cmd = inner
            .scripts
            .ack
            .cmd(&[key.as_bytes()])
            .arg(&position.epoch)
            .int(position.offset)
            .int(ACK_TTL.as_millis() as u64);
        inner.call(cmd).await.map(|_| ())
    }

    async fn reset_epoch(&self, channel: &str, epoch: &str) -> Result<()> {
        let inner = &self.inner;
        let meta = inner.keys.meta(channel);
        let moved = inner
            .call(
                inner
                    .scripts
                    .reset
                    .cmd(&[meta.as_bytes()])
                    .arg(epoch)
                    .arg(random_string(10)),
            )
            .await?;
        if value_u64(&moved) == 1 {
            tracing::warn!(channel = %channel, epoch = %epoch, "history diverged; new epoch");
        }
        Ok(())
    }

    async fn acked(&self, user: &str) -> Result<Option<StreamPosition>> {
        let inner = &self.inner;
        let v = inner
            .call(
                Cmd::new("GET")
                    .key(inner.keys.ack(&format!("user:{user}")))
                    .idempotent(),
            )
            .await?;
        if v.is_nil() {
            return Ok(None);
        }
        let s = value_str(&v);
        Ok(s.split_once(' ')
            .and_then(|(epoch, offset)| Some(StreamPosition::new(epoch, offset.parse().ok()?))))
    }
}
