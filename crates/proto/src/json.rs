//! The `switchboard.v1.json` codec: one JSON object per text frame, `"type"` naming it.
//!
//! Decoding goes through one flat struct so that every shape problem maps to a precise
//! `bad_frame` / `unknown_type` error. Encoding is hand-written: message bodies are
//! already-validated JSON text and are copied in without re-parsing.

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::frames::{ReplyOk, ServerFrame};
use crate::{ClientFrame, DecodeError, ErrorCode, Message, Payload, StreamPosition};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(rename = "type")]
    ty: Option<String>,
    id: Option<u64>,
    channel: Option<String>,
    since: Option<RawSince>,
    #[serde(default, borrow, deserialize_with = "present")]
    data: Option<&'a RawValue>,
    data_b64: Option<String>,
    offset: Option<u64>,
    epoch: Option<String>,
    token: Option<String>,
    method: Option<String>,
    /// Any JSON type is accepted: a `traceparent` that is not a string is ignored like an
    /// invalid one (docs/protocol.md §4b).
    traceparent: Option<serde_json::Value>,
    idempotency_key: Option<String>,
}

/// `since` as `{"epoch","offset"}` or as the `"<epoch>:<offset>"` string form.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawSince {
    Object { epoch: String, offset: u64 },
    Text(String),
}

/// Keeps an explicit `null` as a present value (`data` may be any JSON value).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

fn need<T>(v: Option<T>, field: &str, ty: &str) -> Result<T, DecodeError> {
    v.ok_or_else(|| DecodeError::bad_frame(format!("`{ty}` needs `{field}`")))
}

/// Decodes one client frame from the bytes of a text message.
pub fn decode_client(bytes: &[u8]) -> Result<ClientFrame, DecodeError> {
    let raw: RawFrame<'_> = serde_json::from_slice(bytes)
        .map_err(|e| DecodeError::bad_frame(format!("not a valid frame object: {e}")))?;
    let ty = raw
        .ty
        .ok_or_else(|| DecodeError::bad_frame("frame has no `type`"))?;
    let t = ty.as_str();
    Ok(match t {
        "subscribe" => ClientFrame::Subscribe {
            id: raw.id,
            channel: need(raw.channel, "channel", t)?,
            since: raw.since.map(since).transpose()?,
        },
        "unsubscribe" => ClientFrame::Unsubscribe {
            id: raw.id,
            channel: need(raw.channel, "channel", t)?,
        },
        "publish" => ClientFrame::Publish {
            id: raw.id,
            channel: need(raw.channel, "channel", t)?,
            data: payload(raw.data, raw.data_b64, t)?,
            idempotency_key: idempotency_key(raw.idempotency_key)?,
        },
        "ack" => ClientFrame::Ack {
            channel: need(raw.channel, "channel", t)?,
            offset: need(raw.offset, "offset", t)?,
            epoch: raw.epoch,
        },
        "refresh" => ClientFrame::Refresh {
            id: raw.id,
            token: need(raw.token, "token", t)?,
        },
        "ping" => ClientFrame::Ping { id: raw.id },
        "rpc" => ClientFrame::Rpc {
            id: raw.id,
            method: need(raw.method, "method", t)?,
            data: match (raw.data, raw.data_b64) {
                (None, None) => Payload::Json(Arc::from("null")),
                (d, b) => payload(d, b, t)?,
            },
            traceparent: match raw.traceparent {
                Some(serde_json::Value::String(s)) => Some(s),
                _ => None,
            },
        },
        _ => {
            return Err(DecodeError {
                code: ErrorCode::UnknownType,
                message: format!("unknown frame type `{}`", truncate(t, 64)),
            })
        }
    })
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn idempotency_key(key: Option<String>) -> Result<Option<String>, DecodeError> {
    match key {
        Some(k) if !crate::model::is_valid_idempotency_key(&k) => {
            Err(DecodeError::bad_frame(crate::model::IDEMPOTENCY_KEY_RULE))
        }
        k => Ok(k),
    }
}

fn since(raw: RawSince) -> Result<StreamPosition, DecodeError> {
    let pos = match raw {
        RawSince::Object { epoch, offset } => StreamPosition { epoch, offset },
        RawSince::Text(s) => StreamPosition::parse(&s)
            .ok_or_else(|| DecodeError::bad_frame("`since` must be \"<epoch>:<offset>\""))?,
    };
    if !crate::model::is_valid_epoch(&pos.epoch) {
        return Err(DecodeError::bad_frame(
            "`since.epoch` must be [A-Za-z0-9_-]+",
        ));
    }
    Ok(pos)
}

fn payload(
    data: Option<&RawValue>,
    data_b64: Option<String>,
    ty: &str,
) -> Result<Payload, DecodeError> {
    match (data, data_b64) {
        (Some(d), None) => Ok(Payload::Json(Arc::from(d.get()))),
        (None, Some(b)) => B64
            .decode(b.as_bytes())
            .map(|v| Payload::Binary(Bytes::from(v)))
            .map_err(|_| DecodeError::bad_frame("`data_b64` is not valid base64")),
        (Some(_), Some(_)) => Err(DecodeError::bad_frame(
            "`data` and `data_b64` are mutually exclusive",
        )),
        (None, None) => Err(DecodeError::bad_frame(format!("`{ty}` needs `data`"))),
    }
}

/// Encodes one server frame as JSON text.
pub fn encode_server(frame: &ServerFrame) -> Bytes {
    let mut w = Writer::new("message");
    match frame {
        ServerFrame::Message(m) => {
            write_message(&mut w, m);
        }
        ServerFrame::Welcome(v) => {
            w = Writer::new("welcome");
            w.str("conn_id", &v.conn_id);
            w.str("user", &v.user);
            w.str("node", &v.node);
            w.num("heartbeat_ms", v.heartbeat_ms);
            w.str("channel", &v.channel);
            w.str("epoch", &v.epoch);
            w.num("offset", v.offset);
            if let Some(r) = v.recovered {
                w.bool("recovered", r);
            }
        }
        ServerFrame::Reply(r) => {
            w = Writer::new("reply");
            if let Some(id) = r.id {
                w.num("id", id);
            }
            match &r.result {
                Ok(ok) => {
                    w.bool("ok", true);
                    write_reply_ok(&mut w, ok);
                }
                Err(e) => {
                    w.bool("ok", false);
                    w.key("error");
                    w.buf.extend_from_slice(b"{\"code\":");
                    w.string(e.code.as_str());
                    w.buf.extend_from_slice(b",\"message\":");
                    w.string(&e.message);
                    w.buf.push(b'}');
                }
            }
        }
        ServerFrame::Presence {
            channel,
            user,
            event,
        } => {
            w = Writer::new("presence");
            w.str("channel", channel);
            w.str("user", user);
            w.str("event", event.as_str());
        }
        ServerFrame::Pong { id } => {
            w = Writer::new("pong");
            if let Some(id) = id {
                w.num("id", *id);
            }
        }
        ServerFrame::Goaway {
            reason,
            reconnect_ms,
        } => {
            w = Writer::new("goaway");
            w.str("reason", reason);
            w.num("reconnect_ms", *reconnect_ms);
        }
        ServerFrame::Error { code, message } => {
            w = Writer::new("error");
            w.str("code", code.as_str());
            w.str("message", message);
        }
        ServerFrame::Resync { channel, position } => {
            w = Writer::new("resync");
            w.str("channel", channel);
            w.str("epoch", &position.epoch);
            w.num("offset", position.offset);
        }
    }
    w.finish()
}

fn write_reply_ok(w: &mut Writer, ok: &ReplyOk) {
    if let Some(p) = &ok.position {
        w.str("epoch", &p.epoch);
        w.num("offset", p.offset);
    }
    if let Some(r) = ok.recovered {
        w.bool("recovered", r);
    }
    if let Some(d) = &ok.data {
        write_payload(w, d);
    }
}

fn write_message(w: &mut Writer, m: &Message) {
    w.str("channel", &m.channel);
    if let Some(from) = &m.from {
        w.str("from", from);
    }
    w.str("id", &m.id);
    w.str("epoch", &m.epoch);
    w.num("offset", m.offset);
    w.num("ts", m.ts);
    write_payload(w, &m.data);
}

fn write_payload(w: &mut Writer, p: &Payload) {
    match p {
        Payload::Json(text) => {
            w.key("data");
            w.buf.extend_from_slice(text.as_bytes());
        }
        Payload::Binary(b) => w.str("data_b64", &B64.encode(b)),
    }
}

/// A message as a JSON object (the `message` frame's shape), for the server API.
pub fn message_to_json(m: &Message) -> Box<RawValue> {
    let mut w = Writer::new("message");
    write_message(&mut w, m);
    let text = String::from_utf8(w.finish().to_vec()).expect("writer emits UTF-8");
    RawValue::from_string(text).expect("writer emits valid JSON")
}

/// Minimal JSON object writer; strings are escaped by serde_json.
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn new(ty: &str) -> Writer {
        let mut buf = Vec::with_capacity(160);
        buf.extend_from_slice(b"{\"type\":\"");
        buf.extend_from_slice(ty.as_bytes());
        buf.push(b'"');
        Writer { buf }
    }

    fn key(&mut self, k: &str) {
        self.buf.extend_from_slice(b",\"");
        self.buf.extend_from_slice(k.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    fn string(&mut self, v: &str) {
        serde_json::to_writer(&mut self.buf, v).expect("writing to a Vec cannot fail");
    }

    fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        self.string(v);
    }

    fn num(&mut self, k: &str, v: u64) {
        self.key(k);
        self.buf.extend_from_slice(v.to_string().as_bytes());
    }

    fn bool(&mut self, k: &str, v: bool) {
        self.key(k);
        self.buf
            .extend_from_slice(if v { b"true" } else { b"false" });
    }

    fn finish(mut self) -> Bytes {
        self.buf.push(b'}');
        Bytes::from(self.buf)
    }
}

#[cfg(test)]
mod tests;
