//! The server-frame encoders: whatever the strings and bodies, a JSON client reads back a
//! JSON object with the same values, and a protobuf client the same message.

use std::sync::Arc;

use base64::Engine as _;
use proptest::prelude::*;
use prost::Message as _;
use serde_json::Value;
use switchboard_proto::frames::{PresenceEvent, Reply, ReplyOk, ServerFrame};
use switchboard_proto::{binary, json, pb, ErrorCode, Message, Payload, StreamPosition, Welcome};

use crate::gen::{self, any_string, message};

fn parse(bytes: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(bytes).expect("the encoder writes valid JSON");
    assert!(v.is_object(), "a frame is an object: {v}");
    v
}

/// What a JSON client sees of a payload: the JSON value, or the bytes of `data_b64`.
fn assert_payload(v: &Value, p: &Payload) {
    match p {
        Payload::Json(text) => {
            let want: Value = serde_json::from_str(text).unwrap();
            assert_eq!(v["data"], want);
            assert!(v.get("data_b64").is_none());
        }
        Payload::Binary(b) => {
            let got = base64::engine::general_purpose::STANDARD
                .decode(v["data_b64"].as_str().expect("data_b64 is a string"))
                .unwrap();
            assert_eq!(&got[..], &b[..]);
            assert!(v.get("data").is_none());
        }
    }
}

proptest! {
    #![proptest_config(gen::config(256))]

    #[test]
    fn messages_round_trip(m in message()) {
        let frame = ServerFrame::Message(Arc::new(m.clone()));
        let v = parse(&json::encode_server(&frame));
        prop_assert_eq!(&v["type"], "message");
        prop_assert_eq!(&v["channel"], m.channel.as_str());
        prop_assert_eq!(v.get("from").and_then(Value::as_str), m.from.as_deref());
        prop_assert_eq!(&v["id"], m.id.as_str());
        prop_assert_eq!(&v["epoch"], m.epoch.as_str());
        prop_assert_eq!(v["offset"].as_u64(), Some(m.offset));
        prop_assert_eq!(v["ts"].as_u64(), Some(m.ts));
        assert_payload(&v, &m.data);
        let api: Value = serde_json::from_str(json::message_to_json(&m).get()).unwrap();
        prop_assert_eq!(api, v);

        let pbf = pb::Frame::decode(binary::encode_server(&frame)).expect("valid protobuf");
        let Some(pb::frame::Kind::Message(pm)) = pbf.kind else {
            return Err(TestCaseError::fail("not a message frame"));
        };
        prop_assert_eq!(binary::message_from_pb(pm).unwrap(), m);
    }

    #[test]
    fn other_frames_are_valid_json(
        s in any_string(24),
        t in any_string(24),
        n in any::<u64>(),
        id in proptest::option::of(any::<u64>()),
        flag in proptest::option::of(any::<bool>()),
        data in proptest::option::of(gen::data()),
    ) {
        let welcome = Welcome {
            conn_id: s.clone(),
            user: t.clone(),
            node: s.clone(),
            heartbeat_ms: n,
            channel: t.clone(),
            epoch: s.clone(),
            offset: n,
            recovered: flag,
        };
        let v = parse(&json::encode_server(&ServerFrame::Welcome(welcome)));
        prop_assert_eq!((&v["user"], v["offset"].as_u64()), (&Value::from(t.as_str()), Some(n)));
        prop_assert_eq!(v.get("recovered").and_then(Value::as_bool), flag);

        let ok = ReplyOk {
            position: flag.map(|_| StreamPosition::new(s.clone(), n)),
            recovered: flag,
            data: data.as_ref().map(gen::Data::payload),
        };
        let v = parse(&json::encode_server(&ServerFrame::Reply(Reply::ok(id, ok))));
        prop_assert_eq!(v.get("id").and_then(Value::as_u64), id);
        prop_assert_eq!(&v["ok"], true);
        if let Some(d) = &data {
            assert_payload(&v, &d.payload());
        }
        let v = parse(&json::encode_server(&ServerFrame::Reply(Reply::err(id, ErrorCode::Forbidden, t.clone()))));
        prop_assert_eq!(&v["error"]["message"], t.as_str());

        for frame in [
            ServerFrame::Presence { channel: s.clone(), user: t.clone(), event: PresenceEvent::Leave },
            ServerFrame::Pong { id },
            ServerFrame::Goaway { reason: s.clone(), reconnect_ms: n },
            ServerFrame::error(ErrorCode::BadFrame, t.clone()),
        ] {
            let v = parse(&json::encode_server(&frame));
            prop_assert!(v["type"].is_string());
            prop_assert!(pb::Frame::decode(binary::encode_server(&frame)).unwrap().kind.is_some());
        }
    }
}

/// A message as stored: its protobuf form read back with an arbitrary JSON payload text is
/// a message or an error string, never a panic.
#[test]
fn stored_messages_with_bad_payloads() {
    let mut m = pb::Message::from(&Message {
        channel: "room:a".into(),
        id: "m-1".into(),
        from: None,
        epoch: "e".into(),
        offset: 1,
        ts: 1,
        data: Payload::Json(Arc::from("1")),
    });
    for text in ["", "{", "1 2", "\u{0}", "[]"] {
        m.data = Some(pb::Payload {
            kind: Some(pb::payload::Kind::Json(text.into())),
        });
        let r = binary::message_from_pb(m.clone());
        assert_eq!(r.is_ok(), text == "[]", "{text:?}");
    }
    m.data = None;
    assert!(binary::message_from_pb(m).is_err());
}
