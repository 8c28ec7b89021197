//! The `switchboard.v1.proto` codec (one `pb::Frame` per binary message) and
//! conversions between the generated types and the domain types.

use std::sync::Arc;

use bytes::Bytes;
use prost::Message as _;

use crate::frames::{PresenceEvent, ReplyOk, ServerFrame};
use crate::{pb, ClientFrame, DecodeError, ErrorCode, Message, Payload, StreamPosition};

impl From<&Payload> for pb::Payload {
    fn from(p: &Payload) -> pb::Payload {
        pb::Payload {
            kind: Some(match p {
                Payload::Json(s) => pb::payload::Kind::Json(s.to_string()),
                Payload::Binary(b) => pb::payload::Kind::Binary(b.clone()),
            }),
        }
    }
}

/// Converts a received payload; JSON text is validated.
pub fn payload_from_pb(p: Option<pb::Payload>) -> Result<Payload, String> {
    match p.and_then(|p| p.kind) {
        Some(pb::payload::Kind::Json(s)) => {
            Payload::json(&s).map_err(|e| format!("`data.json` is not valid JSON: {e}"))
        }
        Some(pb::payload::Kind::Binary(b)) => Ok(Payload::Binary(b)),
        None => Err("`data` is missing".into()),
    }
}

impl From<&Message> for pb::Message {
    fn from(m: &Message) -> pb::Message {
        pb::Message {
            channel: m.channel.clone(),
            from: m.from.clone().unwrap_or_default(),
            id: m.id.clone(),
            epoch: m.epoch.clone(),
            offset: m.offset,
            ts: m.ts,
            data: Some((&m.data).into()),
        }
    }
}

/// Converts a stored or backplane message back into the domain type.
pub fn message_from_pb(m: pb::Message) -> Result<Message, String> {
    Ok(Message {
        data: payload_from_pb(m.data)?,
        channel: m.channel,
        from: (!m.from.is_empty()).then_some(m.from),
        id: m.id,
        epoch: m.epoch,
        offset: m.offset,
        ts: m.ts,
    })
}

/// Decodes one client frame from the bytes of a binary message.
pub fn decode_client(bytes: &[u8]) -> Result<ClientFrame, DecodeError> {
    use pb::frame::Kind;
    let frame = pb::Frame::decode(bytes)
        .map_err(|e| DecodeError::bad_frame(format!("not a valid protobuf Frame: {e}")))?;
    let bad = |m: String| DecodeError::bad_frame(m);
    Ok(match frame.kind {
        Some(Kind::Subscribe(s)) => ClientFrame::Subscribe {
            id: Some(s.id),
            channel: s.channel,
            since: match s.since {
                Some(p) if !crate::model::is_valid_epoch(&p.epoch) => {
                    return Err(bad("`since.epoch` must be [A-Za-z0-9_-]+".into()))
                }
                Some(p) => Some(StreamPosition::new(p.epoch, p.offset)),
                None => None,
            },
        },
        Some(Kind::Unsubscribe(u)) => ClientFrame::Unsubscribe {
            id: Some(u.id),
            channel: u.channel,
        },
        Some(Kind::Publish(p)) => ClientFrame::Publish {
            id: Some(p.id),
            channel: p.channel,
            data: payload_from_pb(p.data).map_err(bad)?,
            idempotency_key: match p.idempotency_key {
                k if k.is_empty() => None,
                k if crate::model::is_valid_idempotency_key(&k) => Some(k),
                _ => return Err(bad(crate::model::IDEMPOTENCY_KEY_RULE.into())),
            },
        },
        Some(Kind::Ack(a)) => ClientFrame::Ack {
            channel: a.channel,
            offset: a.offset,
            epoch: (!a.epoch.is_empty()).then_some(a.epoch),
        },
        Some(Kind::Refresh(r)) => ClientFrame::Refresh {
            id: Some(r.id),
            token: r.token,
        },
        Some(Kind::Ping(p)) => ClientFrame::Ping { id: Some(p.id) },
        Some(Kind::Rpc(r)) => ClientFrame::Rpc {
            id: Some(r.id),
            method: r.method,
            data: match r.data {
                None => Payload::Json(Arc::from("null")),
                d => payload_from_pb(d).map_err(bad)?,
            },
            traceparent: (!r.traceparent.is_empty()).then_some(r.traceparent),
        },
        Some(_) => {
            return Err(DecodeError {
                code: ErrorCode::UnknownType,
                message: "server-to-client frame sent by a client".into(),
            })
        }
        None => {
            return Err(DecodeError {
                code: ErrorCode::UnknownType,
                message: "frame has no known kind".into(),
            })
        }
    })
}

fn reply_to_pb(r: &crate::Reply) -> pb::Reply {
    let mut out = pb::Reply {
        id: r.id.unwrap_or(0),
        ..Default::default()
    };
    match &r.result {
        Ok(ReplyOk {
            position,
            recovered,
            data,
        }) => {
            out.ok = true;
            if let Some(p) = position {
                out.epoch = p.epoch.clone();
                out.offset = p.offset;
            }
            out.recovered = *recovered;
            out.data = data.as_ref().map(Into::into);
        }
        Err(e) => {
            out.error = Some(pb::ErrorBody {
                code: e.code.as_str().into(),
                message: e.message.clone(),
            })
        }
    }
    out
}

/// Converts a server frame into its protobuf form.
pub fn server_to_pb(frame: &ServerFrame) -> pb::Frame {
    use pb::frame::Kind;
    let kind = match frame {
        ServerFrame::Welcome(w) => Kind::Welcome(pb::Welcome {
            conn_id: w.conn_id.clone(),
            user: w.user.clone(),
            node: w.node.clone(),
            heartbeat_ms: w.heartbeat_ms,
            channel: w.channel.clone(),
            epoch: w.epoch.clone(),
            offset: w.offset,
            recovered: w.recovered,
        }),
        ServerFrame::Message(m) => Kind::Message(m.as_ref().into()),
        ServerFrame::Reply(r) => Kind::Reply(reply_to_pb(r)),
        ServerFrame::Presence {
            channel,
            user,
            event,
        } => Kind::Presence(pb::Presence {
            channel: channel.clone(),
            user: user.clone(),
            event: event.as_str().into(),
        }),
        ServerFrame::Pong { id } => Kind::Pong(pb::Pong {
            id: id.unwrap_or(0),
        }),
        ServerFrame::Goaway {
            reason,
            reconnect_ms,
        } => Kind::Goaway(pb::Goaway {
            reason: reason.clone(),
            reconnect_ms: *reconnect_ms,
        }),
        ServerFrame::Error { code, message } => Kind::Error(pb::Error {
            code: code.as_str().into(),
            message: message.clone(),
        }),
        ServerFrame::Resync { channel, position } => Kind::Resync(pb::Resync {
            channel: channel.clone(),
            epoch: position.epoch.clone(),
            offset: position.offset,
        }),
    };
    pb::Frame { kind: Some(kind) }
}

/// Encodes one server frame as protobuf bytes.
pub fn encode_server(frame: &ServerFrame) -> Bytes {
    Bytes::from(server_to_pb(frame).encode_to_vec())
}

/// Parses a presence event name from the wire.
pub fn presence_event(s: &str) -> Option<PresenceEvent> {
    PresenceEvent::parse(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(kind: pb::frame::Kind) -> Vec<u8> {
        pb::Frame { kind: Some(kind) }.encode_to_vec()
    }

    #[test]
    fn publish_idempotency_keys() {
        let publish = |key: &str| {
            decode_client(&enc(pb::frame::Kind::Publish(pb::Publish {
                channel: "room:a".into(),
                data: Some(pb::Payload {
                    kind: Some(pb::payload::Kind::Json("1".into())),
                }),
                idempotency_key: key.into(),
                ..Default::default()
            })))
        };
        match publish("k-1.a:b_C") {
            Ok(ClientFrame::Publish {
                idempotency_key, ..
            }) => assert_eq!(idempotency_key.as_deref(), Some("k-1.a:b_C")),
            other => panic!("{other:?}"),
        }
        match publish("") {
            Ok(ClientFrame::Publish {
                idempotency_key, ..
            }) => assert_eq!(idempotency_key, None, "empty = none (proto3 default)"),
            other => panic!("{other:?}"),
        }
        for bad in ["a b", "é", &"k".repeat(65)] {
            assert_eq!(publish(bad).unwrap_err().code, ErrorCode::BadFrame, "{bad}");
        }
    }

    #[test]
    fn encodes_resync() {
        let bytes = encode_server(&ServerFrame::Resync {
            channel: "user:alice".into(),
            position: StreamPosition::new("e3", 0),
        });
        match pb::Frame::decode(bytes).unwrap().kind {
            Some(pb::frame::Kind::Resync(r)) => {
                assert_eq!(
                    (r.channel.as_str(), r.epoch.as_str(), r.offset),
                    ("user:alice", "e3", 0)
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn decodes_client_frames() {
        let f = decode_client(&enc(pb::frame::Kind::Publish(pb::Publish {
            id: 3,
            channel: "room:a".into(),
            data: Some(pb::Payload {
                kind: Some(pb::payload::Kind::Binary(Bytes::from_static(b"\x00\xff"))),
            }),
            ..Default::default()
        })))
        .unwrap();
        assert_eq!(
            f,
            ClientFrame::Publish {
                id: Some(3),
                channel: "room:a".into(),
                data: Payload::Binary(Bytes::from_static(b"\x00\xff")),
                idempotency_key: None,
            }
        );
        let err = decode_client(&enc(pb::frame::Kind::Publish(pb::Publish {
            id: 3,
            channel: "room:a".into(),
            data: Some(pb::Payload {
                kind: Some(pb::payload::Kind::Json("{nope".into())),
            }),
            ..Default::default()
        })))
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::BadFrame);
        assert_eq!(
            decode_client(b"\xff\xff\xff").unwrap_err().code,
            ErrorCode::BadFrame
        );
        assert_eq!(decode_client(&[]).unwrap_err().code, ErrorCode::UnknownType);
        let pong = enc(pb::frame::Kind::Pong(pb::Pong { id: 1 }));
        assert_eq!(
            decode_client(&pong).unwrap_err().code,
            ErrorCode::UnknownType
        );
    }

    #[test]
    fn decodes_rpc_frames_with_and_without_traceparent() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let f = decode_client(&enc(pb::frame::Kind::Rpc(pb::Rpc {
            id: 6,
            method: "orders.create".into(),
            data: Some(pb::Payload {
                kind: Some(pb::payload::Kind::Json("{\"sku\":\"A1\"}".into())),
            }),
            traceparent: tp.into(),
        })))
        .unwrap();
        assert_eq!(
            f,
            ClientFrame::Rpc {
                id: Some(6),
                method: "orders.create".into(),
                data: Payload::Json(Arc::from("{\"sku\":\"A1\"}")),
                traceparent: Some(tp.into()),
            }
        );
        let f = decode_client(&enc(pb::frame::Kind::Rpc(pb::Rpc {
            id: 7,
            method: "m".into(),
            ..Default::default()
        })))
        .unwrap();
        assert_eq!(
            f,
            ClientFrame::Rpc {
                id: Some(7),
                method: "m".into(),
                data: Payload::Json(Arc::from("null")),
                traceparent: None,
            }
        );
    }

    #[test]
    fn message_round_trip() {
        let m = Message {
            channel: "user:a".into(),
            id: "m-1".into(),
            from: None,
            epoch: "e".into(),
            offset: 9,
            ts: 1,
            data: Payload::Json(Arc::from("[1,2]")),
        };
        let back = message_from_pb(pb::Message::from(&m)).unwrap();
        assert_eq!(back, m);
    }
}
