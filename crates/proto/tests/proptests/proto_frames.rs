//! The `switchboard.v1.proto` client decoder (docs/protocol.md §4): every input is a frame,
//! `bad_frame` (not a `Frame`, or a bad field) or `unknown_type` (no kind, or a server
//! frame's kind).

use proptest::prelude::*;
use prost::Message as _;
use switchboard_proto::binary::decode_client;
use switchboard_proto::{pb, ClientFrame, DecodeError, Encoding, ErrorCode, Payload};

use crate::gen::{self, model};

fn decode(bytes: &[u8]) -> Result<ClientFrame, DecodeError> {
    let r = decode_client(bytes);
    if let Err(e) = &r {
        assert!(
            matches!(e.code, ErrorCode::BadFrame | ErrorCode::UnknownType),
            "undocumented code {:?} for {bytes:?}",
            e.code
        );
        assert!(!e.message.is_empty());
    }
    r
}

/// A `Publish` frame whose channel (or payload) is `raw`, which need not be UTF-8: encoded
/// with a placeholder of the same length that is then overwritten.
fn publish_with_raw(raw: &[u8], in_channel: bool, json: bool) -> Vec<u8> {
    let placeholder = "\u{7f}".repeat(raw.len());
    let text = if in_channel {
        "1".to_owned()
    } else {
        placeholder.clone()
    };
    let kind = if json {
        pb::payload::Kind::Json(text)
    } else {
        pb::payload::Kind::Binary(text.into_bytes().into())
    };
    let frame = pb::Frame {
        kind: Some(pb::frame::Kind::Publish(pb::Publish {
            id: 1,
            channel: if in_channel {
                placeholder.clone()
            } else {
                "room:a".into()
            },
            data: Some(pb::Payload { kind: Some(kind) }),
            ..Default::default()
        })),
    };
    let mut bytes = frame.encode_to_vec();
    if !raw.is_empty() {
        let at = bytes
            .windows(raw.len())
            .position(|w| w == placeholder.as_bytes())
            .expect("placeholder is encoded as is");
        bytes[at..at + raw.len()].copy_from_slice(raw);
    }
    bytes
}

proptest! {
    #![proptest_config(gen::config(512))]

    /// Any bytes: `bad_frame` exactly when prost cannot read a `Frame`, `unknown_type` when
    /// it holds no client kind.
    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let r = decode(&bytes);
        match pb::Frame::decode(bytes.as_slice()) {
            Err(_) => prop_assert_eq!(r.unwrap_err().code, ErrorCode::BadFrame),
            Ok(pb::Frame { kind: None }) => prop_assert_eq!(r.unwrap_err().code, ErrorCode::UnknownType),
            Ok(_) => {}
        }
    }
}

proptest! {
    #![proptest_config(gen::config(256))]

    /// Valid frames decode to what was sent (a missing id is 0 on this wire).
    #[test]
    fn valid_frames_round_trip(m in model()) {
        let f = decode(&m.to_proto()).expect("a valid frame decodes");
        m.assert_decoded(&f, true);
        prop_assert_eq!(Encoding::Proto.decode(&m.to_proto()).ok(), Some(f));
    }

    /// A valid frame cut anywhere, or with one byte replaced or inserted.
    #[test]
    fn damaged_frames(m in model(), at in any::<prop::sample::Index>(), b in any::<u8>()) {
        let bytes = m.to_proto();
        let i = at.index(bytes.len());
        let _ = decode(&bytes[..i]);
        let mut replaced = bytes.clone();
        replaced[i] = b;
        let _ = decode(&replaced);
        let mut inserted = bytes.clone();
        inserted.insert(i, b);
        let _ = decode(&inserted);
    }

    /// Varints of 10 and more bytes (too large for 64 bits, or unterminated) in every
    /// position of a frame.
    #[test]
    fn oversized_varints(m in model(), at in any::<prop::sample::Index>(), n in 10usize..16) {
        let bytes = m.to_proto();
        let i = at.index(bytes.len() + 1);
        let mut spliced = bytes[..i].to_vec();
        spliced.extend(std::iter::repeat_n(0xffu8, n));
        spliced.extend_from_slice(&bytes[i..]);
        let _ = decode(&spliced);
        prop_assert_eq!(decode(&[0x08; 1].iter().chain(&[0xff; 10]).copied().collect::<Vec<_>>()).unwrap_err().code, ErrorCode::BadFrame);
    }

    /// Invalid UTF-8 in a string field (channel, JSON payload) is `bad_frame`; any bytes in
    /// a binary payload are the payload, byte for byte.
    #[test]
    fn utf8_in_strings_and_binary_payloads(raw in prop::collection::vec(any::<u8>(), 1..64)) {
        let utf8 = std::str::from_utf8(&raw).is_ok();
        let channel = decode(&publish_with_raw(&raw, true, false));
        prop_assert_eq!(channel.is_ok(), utf8);
        if !utf8 {
            prop_assert_eq!(channel.unwrap_err().code, ErrorCode::BadFrame);
        }
        let json = decode(&publish_with_raw(&raw, false, true));
        if !utf8 {
            prop_assert_eq!(json.unwrap_err().code, ErrorCode::BadFrame);
        }
        match decode(&publish_with_raw(&raw, false, false)) {
            Ok(ClientFrame::Publish { data: Payload::Binary(b), .. }) => prop_assert_eq!(&b[..], &raw[..]),
            other => prop_assert!(false, "binary payload decoded as {:?}", other),
        }
    }

    /// JSON payload text of any shape: valid JSON or `bad_frame`.
    #[test]
    fn json_payload_text(text in gen::any_string(64)) {
        let bytes = pb::Frame {
            kind: Some(pb::frame::Kind::Publish(pb::Publish {
                channel: "room:a".into(),
                data: Some(pb::Payload { kind: Some(pb::payload::Kind::Json(text.clone())) }),
                ..Default::default()
            })),
        }
        .encode_to_vec();
        let valid = serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok();
        match decode(&bytes) {
            Ok(ClientFrame::Publish { data: Payload::Json(t), .. }) => {
                prop_assert!(valid);
                prop_assert_eq!(&*t, text.trim());
            }
            Ok(f) => prop_assert!(false, "decoded as {:?}", f),
            Err(e) => {
                prop_assert!(!valid);
                prop_assert_eq!(e.code, ErrorCode::BadFrame);
            }
        }
    }

    /// A `since` with an epoch outside `[A-Za-z0-9_-]{1,64}` is `bad_frame`.
    #[test]
    fn since_epochs(epoch in gen::any_string(80), offset in any::<u64>()) {
        let bytes = pb::Frame {
            kind: Some(pb::frame::Kind::Subscribe(pb::Subscribe {
                channel: "room:a".into(),
                since: Some(pb::StreamPosition { epoch: epoch.clone(), offset }),
                ..Default::default()
            })),
        }
        .encode_to_vec();
        match decode(&bytes) {
            Ok(_) => prop_assert!(switchboard_proto::model::is_valid_epoch(&epoch)),
            Err(e) => {
                prop_assert!(!switchboard_proto::model::is_valid_epoch(&epoch));
                prop_assert_eq!(e.code, ErrorCode::BadFrame);
            }
        }
    }
}

/// Every server frame kind sent by a client is `unknown_type`.
#[test]
fn server_kinds_from_a_client() {
    use pb::frame::Kind;
    for kind in [
        Kind::Welcome(Default::default()),
        Kind::Message(Default::default()),
        Kind::Reply(Default::default()),
        Kind::Presence(Default::default()),
        Kind::Pong(Default::default()),
        Kind::Goaway(Default::default()),
        Kind::Error(Default::default()),
    ] {
        let bytes = pb::Frame { kind: Some(kind) }.encode_to_vec();
        assert_eq!(decode(&bytes).unwrap_err().code, ErrorCode::UnknownType);
    }
}
