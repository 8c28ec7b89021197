//! Backplane frames on the shard channels (`pb::BackplaneFrame`), built here for what
//! Rust publishes and in Lua (`scripts`) for what scripts publish, and the stored form of
//! a message (its protobuf without `epoch`/`offset`, which the stream's entry id and the
//! channel's meta give back).

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{encode_key, encode_varint, WireType};
use prost::Message as _;
use switchboard_proto::binary::message_from_pb;
use switchboard_proto::frames::PresenceEvent;
use switchboard_proto::{pb, Message};

/// A decoded backplane frame.
#[derive(Debug)]
pub enum Inbound {
    Deliver(Arc<Message>),
    Presence {
        channel: String,
        user: String,
        event: PresenceEvent,
    },
    Disconnect {
        user: String,
        code: u16,
        reason: String,
    },
    Probe {
        node: String,
        seq: u64,
    },
}

/// Decodes a frame; `None` for anything malformed (counted and dropped by the caller).
pub fn decode(bytes: &[u8]) -> Option<Inbound> {
    use pb::backplane_frame::Kind;
    let frame = pb::BackplaneFrame::decode(bytes).ok()?;
    Some(match frame.kind? {
        Kind::Delivery(d) => Inbound::Deliver(Arc::new(message_from_pb(d.message?).ok()?)),
        Kind::Presence(p) => Inbound::Presence {
            event: PresenceEvent::parse(&p.event)?,
            channel: p.channel,
            user: p.user,
        },
        Kind::Disconnect(d) => Inbound::Disconnect {
            user: d.user,
            code: u16::try_from(d.code).ok()?,
            reason: d.reason,
        },
        Kind::Probe(p) => Inbound::Probe {
            node: p.node,
            seq: p.seq,
        },
    })
}

fn encode(kind: pb::backplane_frame::Kind) -> Bytes {
    Bytes::from(pb::BackplaneFrame { kind: Some(kind) }.encode_to_vec())
}

pub fn probe(node: &str, seq: u64) -> Bytes {
    encode(pb::backplane_frame::Kind::Probe(pb::Probe {
        node: node.to_owned(),
        seq,
    }))
}

pub fn disconnect(user: &str, code: u16, reason: &str) -> Bytes {
    encode(pb::backplane_frame::Kind::Disconnect(pb::DisconnectUser {
        user: user.to_owned(),
        code: u32::from(code),
        reason: reason.to_owned(),
    }))
}

/// A message without its epoch and offset: what a stream stores, and what the publish
/// scripts complete.
pub fn message_template(m: &Message) -> Bytes {
    let mut pb = pb::Message::from(m);
    pb.epoch.clear();
    pb.offset = 0;
    Bytes::from(pb.encode_to_vec())
}

/// The template completed with `epoch` (field 4) and `offset` (field 5).
fn complete(template: &[u8], epoch: &str, offset: u64, out: &mut BytesMut) {
    out.put_slice(template);
    encode_key(4, WireType::LengthDelimited, out);
    encode_varint(epoch.len() as u64, out);
    out.put_slice(epoch.as_bytes());
    encode_key(5, WireType::Varint, out);
    encode_varint(offset, out);
}

/// The delivery frame of a stored message (`BackplaneFrame{delivery{message}}`), as the
/// publish scripts build it.
#[cfg(test)]
pub fn delivery(template: &[u8], epoch: &str, offset: u64) -> Bytes {
    let mut m = BytesMut::with_capacity(template.len() + epoch.len() + 16);
    complete(template, epoch, offset, &mut m);
    let mut out = BytesMut::with_capacity(m.len() + 12);
    encode_key(1, WireType::LengthDelimited, &mut out);
    encode_varint(
        (m.len() + 1 + prost::length_delimiter_len(m.len())) as u64,
        &mut out,
    );
    encode_key(1, WireType::LengthDelimited, &mut out);
    encode_varint(m.len() as u64, &mut out);
    out.put_slice(&m);
    out.freeze()
}

/// A message read back from a stream entry.
pub fn stored_message(template: &[u8], epoch: &str, offset: u64) -> Result<Message, String> {
    let mut m = BytesMut::with_capacity(template.len() + epoch.len() + 16);
    complete(template, epoch, offset, &mut m);
    let pb = pb::Message::decode(&m[..]).map_err(|e| e.to_string())?;
    message_from_pb(pb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_proto::Payload;

    fn message() -> Message {
        Message {
            channel: "user:a".into(),
            id: "m-1".into(),
            from: Some("b".into()),
            epoch: String::new(),
            offset: 0,
            ts: 5,
            data: Payload::Binary(Bytes::from_static(b"\x00\x01")),
        }
    }

    /// The Lua scripts append `epoch` (field 4) and `offset` (field 5) to the template;
    /// this is the same concatenation done in Rust.
    #[test]
    fn template_plus_epoch_and_offset_is_the_whole_message() {
        let m = message();
        let back = stored_message(&message_template(&m), "e9", 300).unwrap();
        assert_eq!(back.epoch, "e9");
        assert_eq!(back.offset, 300);
        assert_eq!(back.data, m.data);
        assert_eq!(back.from, m.from);
    }

    #[test]
    fn delivery_frames_decode() {
        let frame = delivery(&message_template(&message()), "e1", 7);
        match decode(&frame) {
            Some(Inbound::Deliver(m)) => {
                assert_eq!((m.epoch.as_str(), m.offset), ("e1", 7));
                assert_eq!(m.channel, "user:a");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn frames_round_trip() {
        match decode(&disconnect("u", 4003, "bye")) {
            Some(Inbound::Disconnect { user, code, reason }) => {
                assert_eq!((user.as_str(), code, reason.as_str()), ("u", 4003, "bye"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decode(&probe("n", 7)),
            Some(Inbound::Probe { seq: 7, .. })
        ));
        assert!(decode(b"\xff\xff").is_none());
    }
}
