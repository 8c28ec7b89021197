//! Backplane frames on the Redis pub/sub channels: `pb::BackplaneFrame`, built here for
//! what Rust publishes and in Lua (`scripts`) for what scripts publish.

use std::sync::Arc;

use bytes::Bytes;
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

/// A message without its epoch and offset: the publish script appends those fields.
pub fn message_template(m: &Message) -> Bytes {
    let mut pb = pb::Message::from(m);
    pb.epoch.clear();
    pb.offset = 0;
    Bytes::from(pb.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_proto::Payload;

    /// The Lua scripts append `epoch` (field 4) and `offset` (field 5) to the template;
    /// this is the same concatenation done in Rust.
    #[test]
    fn template_plus_appended_fields_is_the_whole_message() {
        let m = Message {
            channel: "user:a".into(),
            id: "m-1".into(),
            from: Some("b".into()),
            epoch: String::new(),
            offset: 0,
            ts: 5,
            data: Payload::Binary(Bytes::from_static(b"\x00\x01")),
        };
        let mut bytes = message_template(&m).to_vec();
        bytes.extend_from_slice(&[34, 2, b'e', b'9']);
        bytes.extend_from_slice(&[40, 0xAC, 0x02]); // 300
        let back = message_from_pb(pb::Message::decode(&bytes[..]).unwrap()).unwrap();
        assert_eq!(back.epoch, "e9");
        assert_eq!(back.offset, 300);
        assert_eq!(back.data, m.data);
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
