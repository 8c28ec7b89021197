//! Backplane frames on the shard channels, and the stored form of a message (its
//! protobuf without `epoch`/`offset`, which the stream's entry id and the channel's meta
//! give back).
//!
//! A delivery is flat — `D<epoch> <offset> <message>`, where `<offset>` may be a stream
//! entry id `0-<offset>` — so that the publish scripts only concatenate; every other
//! frame is a `pb::BackplaneFrame` (whose first byte, a field tag, is never `D`).

use std::sync::Arc;

use bytes::Bytes;
use prost::Message as _;
use switchboard_proto::binary::message_from_pb;
use switchboard_proto::frames::PresenceEvent;
use switchboard_proto::{pb, Message};

/// A decoded backplane frame.
#[derive(Debug)]
pub(super) enum Inbound {
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

/// The offset in a delivery or a publish answer: `N` or a stream entry id `0-N`.
pub(super) fn offset(token: &[u8]) -> Option<u64> {
    let digits = token.strip_prefix(b"0-").unwrap_or(token);
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Decodes a frame; `None` for anything malformed (counted and dropped by the caller).
pub(super) fn decode(bytes: &[u8]) -> Option<Inbound> {
    use pb::backplane_frame::Kind;
    if let Some(rest) = bytes.strip_prefix(b"D") {
        let space = rest.iter().position(|&b| b == b' ')?;
        let (epoch, rest) = (&rest[..space], &rest[space + 1..]);
        let space = rest.iter().position(|&b| b == b' ')?;
        let (offset_token, template) = (&rest[..space], &rest[space + 1..]);
        let epoch = std::str::from_utf8(epoch).ok()?;
        let m = stored_message(template, epoch, offset(offset_token)?).ok()?;
        return Some(Inbound::Deliver(Arc::new(m)));
    }
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

pub(super) fn probe(node: &str, seq: u64) -> Bytes {
    encode(pb::backplane_frame::Kind::Probe(pb::Probe {
        node: node.to_owned(),
        seq,
    }))
}

pub(super) fn disconnect(user: &str, code: u16, reason: &str) -> Bytes {
    encode(pb::backplane_frame::Kind::Disconnect(pb::DisconnectUser {
        user: user.to_owned(),
        code: u32::from(code),
        reason: reason.to_owned(),
    }))
}

/// A message without its epoch and offset: what a stream stores, and what the publish
/// scripts complete.
pub(super) fn message_template(m: &Message) -> Bytes {
    let mut pb = pb::Message::from(m);
    pb.epoch.clear();
    pb.offset = 0;
    Bytes::from(pb.encode_to_vec())
}

/// A delivery frame as the publish scripts build it.
#[cfg(test)]
pub(super) fn delivery(template: &[u8], epoch: &str, offset: &str) -> Vec<u8> {
    let mut out = format!("D{epoch} {offset} ").into_bytes();
    out.extend_from_slice(template);
    out
}

/// A message read back from its stored form (a stream entry, a live frame).
pub(super) fn stored_message(template: &[u8], epoch: &str, offset: u64) -> Result<Message, String> {
    let mut pb = pb::Message::decode(template).map_err(|e| e.to_string())?;
    pb.epoch = epoch.to_owned();
    pb.offset = offset;
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

    /// A stored message (without epoch and offset) plus the two is the whole message.
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
        // A template holding spaces and a `D`: only the first two spaces separate.
        let mut m = message();
        m.data = Payload::Binary(Bytes::from_static(b"D x y "));
        for token in ["7", "0-7"] {
            let frame = delivery(&message_template(&m), "e1", token);
            match decode(&frame) {
                Some(Inbound::Deliver(got)) => {
                    assert_eq!((got.epoch.as_str(), got.offset), ("e1", 7));
                    assert_eq!(got.channel, "user:a");
                    assert_eq!(got.data, m.data);
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(decode(b"De1 x tail").is_none(), "a bad offset");
        assert!(decode(b"De1").is_none(), "no offset");
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
