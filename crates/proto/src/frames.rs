//! Decoded client frames and the server frames the gateway sends (docs/protocol.md §4).

use std::sync::Arc;

use crate::{ErrorCode, Message, Payload, StreamPosition};

/// A frame a client sent, already validated for shape (not for authorization).
#[derive(Clone, Debug, PartialEq)]
pub enum ClientFrame {
    Subscribe {
        id: Option<u64>,
        channel: String,
        since: Option<StreamPosition>,
    },
    Unsubscribe {
        id: Option<u64>,
        channel: String,
    },
    Publish {
        id: Option<u64>,
        channel: String,
        data: Payload,
        /// Makes a retry safe (docs/protocol.md §5); validated by the decoders
        /// ([`crate::model::is_valid_idempotency_key`]).
        idempotency_key: Option<String>,
    },
    Ack {
        channel: String,
        offset: u64,
        epoch: Option<String>,
    },
    Refresh {
        id: Option<u64>,
        token: String,
    },
    Ping {
        id: Option<u64>,
    },
    Rpc {
        id: Option<u64>,
        method: String,
        data: Payload,
        /// The client's W3C `traceparent`, as sent (not validated here).
        traceparent: Option<String>,
    },
}

impl ClientFrame {
    /// The client-chosen request id, echoed in the reply.
    pub fn id(&self) -> Option<u64> {
        match self {
            ClientFrame::Subscribe { id, .. }
            | ClientFrame::Unsubscribe { id, .. }
            | ClientFrame::Publish { id, .. }
            | ClientFrame::Refresh { id, .. }
            | ClientFrame::Ping { id }
            | ClientFrame::Rpc { id, .. } => *id,
            ClientFrame::Ack { .. } => None,
        }
    }
}

/// Why a client frame could not be decoded: answered with an `error` frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// `bad_frame` or `unknown_type`.
    pub code: ErrorCode,
    pub message: String,
}

impl DecodeError {
    pub fn bad_frame(message: impl Into<String>) -> Self {
        DecodeError {
            code: ErrorCode::BadFrame,
            message: message.into(),
        }
    }
}

/// The first frame of every connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Welcome {
    pub conn_id: String,
    pub user: String,
    pub node: String,
    pub heartbeat_ms: u64,
    /// The user's personal channel.
    pub channel: String,
    pub epoch: String,
    /// Offset of the newest message in the personal channel (0 when empty).
    pub offset: u64,
    /// Present only when the client asked to resume with `since`.
    pub recovered: Option<bool>,
}

/// The answer to a request carrying an `id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub id: Option<u64>,
    pub result: Result<ReplyOk, ReplyError>,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ReplyOk {
    pub position: Option<StreamPosition>,
    pub recovered: Option<bool>,
    pub data: Option<Payload>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyError {
    pub code: ErrorCode,
    pub message: String,
}

impl Reply {
    pub fn ok(id: Option<u64>, ok: ReplyOk) -> Reply {
        Reply { id, result: Ok(ok) }
    }

    pub fn err(id: Option<u64>, code: ErrorCode, message: impl Into<String>) -> Reply {
        Reply {
            id,
            result: Err(ReplyError {
                code,
                message: message.into(),
            }),
        }
    }
}

/// A frame the gateway sends to a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerFrame {
    Welcome(Welcome),
    Message(Arc<Message>),
    Reply(Reply),
    Presence {
        channel: String,
        user: String,
        event: PresenceEvent,
    },
    Pong {
        id: Option<u64>,
    },
    Goaway {
        reason: String,
        reconnect_ms: u64,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    /// History the connection depended on in `channel` is gone: the client reloads the
    /// channel's state; delivery goes on after `position` (docs/protocol.md §5).
    Resync {
        channel: String,
        position: StreamPosition,
    },
}

impl ServerFrame {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> ServerFrame {
        ServerFrame::Error {
            code,
            message: message.into(),
        }
    }
}

/// A room presence change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PresenceEvent {
    Join,
    Leave,
}

impl PresenceEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            PresenceEvent::Join => "join",
            PresenceEvent::Leave => "leave",
        }
    }

    pub fn parse(s: &str) -> Option<PresenceEvent> {
        match s {
            "join" => Some(PresenceEvent::Join),
            "leave" => Some(PresenceEvent::Leave),
            _ => None,
        }
    }
}
