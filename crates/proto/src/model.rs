//! Domain values shared by the router and the gateway.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A message body: JSON text (any JSON value, already validated) or opaque bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// UTF-8 JSON text of one JSON value.
    Json(Arc<str>),
    /// Bytes published by a protobuf client; JSON clients receive them as `data_b64`.
    Binary(Bytes),
}

impl Payload {
    /// Validates `text` as one JSON value.
    pub fn json(text: &str) -> Result<Payload, serde_json::Error> {
        serde_json::from_str::<serde::de::IgnoredAny>(text)?;
        Ok(Payload::Json(Arc::from(text.trim())))
    }

    /// Size of the body in bytes (what size limits count).
    pub fn len(&self) -> usize {
        match self {
            Payload::Json(s) => s.len(),
            Payload::Binary(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes a protobuf client sees: JSON values as their UTF-8 text.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Payload::Json(s) => s.as_bytes(),
            Payload::Binary(b) => b,
        }
    }
}

/// A position in a channel's stream: offsets grow by exactly one per message within an
/// epoch; a new epoch means the history was lost or reset.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct StreamPosition {
    pub epoch: String,
    pub offset: u64,
}

impl StreamPosition {
    pub fn new(epoch: impl Into<String>, offset: u64) -> Self {
        StreamPosition {
            epoch: epoch.into(),
            offset,
        }
    }

    /// Parses the `<epoch>:<offset>` form used by `?since=`.
    pub fn parse(s: &str) -> Option<StreamPosition> {
        let (epoch, offset) = s.rsplit_once(':')?;
        if !is_valid_epoch(epoch) {
            return None;
        }
        Some(StreamPosition::new(epoch, offset.parse().ok()?))
    }
}

/// An epoch is a non-empty opaque string of `[A-Za-z0-9_-]` (at most 64 bytes).
pub fn is_valid_epoch(epoch: &str) -> bool {
    !epoch.is_empty()
        && epoch.len() <= 64
        && epoch
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// An idempotency key (docs/protocol.md §5): 1–64 characters of `[A-Za-z0-9_.:-]`.
pub fn is_valid_idempotency_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// Why an idempotency key is refused (the message of `bad_frame` / `bad_request`).
pub const IDEMPOTENCY_KEY_RULE: &str =
    "`idempotency_key` must be 1-64 characters of [A-Za-z0-9_.:-]";

/// A message on a channel, as stored in history and delivered to subscribers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub channel: String,
    /// Globally unique message id (`m-…`); clients dedupe by it.
    pub id: String,
    /// The sender's user id (client publishes) or the API's `from`.
    pub from: Option<String>,
    pub epoch: String,
    pub offset: u64,
    /// Milliseconds since the Unix epoch when the publish was accepted.
    pub ts: u64,
    pub data: Payload,
}

impl Message {
    pub fn position(&self) -> StreamPosition {
        StreamPosition::new(self.epoch.clone(), self.offset)
    }
}
