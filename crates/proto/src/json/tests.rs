use super::*;
use crate::frames::{PresenceEvent, Reply, Welcome};

fn dec(s: &str) -> Result<ClientFrame, DecodeError> {
    decode_client(s.as_bytes())
}

#[test]
fn publish_idempotency_keys() {
    match dec(r#"{"type":"publish","channel":"room:x","data":1,"idempotency_key":"a-Z_0.9:x"}"#) {
        Ok(ClientFrame::Publish {
            idempotency_key, ..
        }) => {
            assert_eq!(idempotency_key.as_deref(), Some("a-Z_0.9:x"))
        }
        other => panic!("{other:?}"),
    }
    let long = "k".repeat(64);
    let frame =
        format!(r#"{{"type":"publish","channel":"room:x","data":1,"idempotency_key":"{long}"}}"#);
    assert!(dec(&frame).is_ok());
    for bad in [r#""""#, r#""a b""#, r#""ü""#, r#""a/b""#, "1", r#"["a"]"#] {
        let frame =
            format!(r#"{{"type":"publish","channel":"room:x","data":1,"idempotency_key":{bad}}}"#);
        let err = dec(&frame).expect_err(bad);
        assert_eq!(err.code, ErrorCode::BadFrame, "{bad}: {err:?}");
    }
    let too_long =
        format!(r#"{{"type":"publish","channel":"room:x","data":1,"idempotency_key":"{long}k"}}"#);
    assert_eq!(dec(&too_long).unwrap_err().code, ErrorCode::BadFrame);
}

#[test]
fn encodes_resync() {
    let frame = ServerFrame::Resync {
        channel: "room:lobby".into(),
        position: StreamPosition::new("e2", 7),
    };
    let v: serde_json::Value = serde_json::from_slice(&encode_server(&frame)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"type":"resync","channel":"room:lobby","epoch":"e2","offset":7})
    );
}

#[test]
fn decodes_every_client_frame() {
    assert_eq!(
        dec(r#"{"type":"subscribe","id":1,"channel":"room:lobby","since":{"epoch":"e1","offset":41}}"#).unwrap(),
        ClientFrame::Subscribe { id: Some(1), channel: "room:lobby".into(), since: Some(StreamPosition::new("e1", 41)) }
    );
    assert_eq!(
        dec(r#"{"type":"unsubscribe","id":2,"channel":"room:lobby"}"#).unwrap(),
        ClientFrame::Unsubscribe {
            id: Some(2),
            channel: "room:lobby".into()
        }
    );
    assert_eq!(
        dec(r#"{"type":"publish","id":3,"channel":"room:lobby","data":{"text":"hi"}}"#).unwrap(),
        ClientFrame::Publish {
            id: Some(3),
            channel: "room:lobby".into(),
            data: Payload::Json(Arc::from(r#"{"text":"hi"}"#)),
            idempotency_key: None,
        }
    );
    assert_eq!(
        dec(r#"{"type":"publish","channel":"room:x","data":null}"#).unwrap(),
        ClientFrame::Publish {
            id: None,
            channel: "room:x".into(),
            data: Payload::Json(Arc::from("null")),
            idempotency_key: None,
        }
    );
    assert_eq!(
        dec(r#"{"type":"publish","channel":"room:x","data_b64":"AAE="}"#).unwrap(),
        ClientFrame::Publish {
            id: None,
            channel: "room:x".into(),
            data: Payload::Binary(Bytes::from_static(&[0, 1])),
            idempotency_key: None,
        }
    );
    assert_eq!(
        dec(r#"{"type":"ack","channel":"user:alice","offset":17}"#).unwrap(),
        ClientFrame::Ack {
            channel: "user:alice".into(),
            offset: 17,
            epoch: None
        }
    );
    assert_eq!(
        dec(r#"{"type":"refresh","id":4,"token":"t"}"#).unwrap(),
        ClientFrame::Refresh {
            id: Some(4),
            token: "t".into()
        }
    );
    assert_eq!(
        dec(r#"{"type":"ping","id":5}"#).unwrap(),
        ClientFrame::Ping { id: Some(5) }
    );
    assert_eq!(
        dec(r#"{"type":"rpc","id":6,"method":"orders.create","data":{"sku":"A1"}}"#).unwrap(),
        ClientFrame::Rpc {
            id: Some(6),
            method: "orders.create".into(),
            data: Payload::Json(Arc::from(r#"{"sku":"A1"}"#)),
            traceparent: None,
        }
    );
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert_eq!(
        dec(&format!(
            r#"{{"type":"rpc","method":"m","traceparent":"{tp}"}}"#
        ))
        .unwrap(),
        ClientFrame::Rpc {
            id: None,
            method: "m".into(),
            data: Payload::Json(Arc::from("null")),
            traceparent: Some(tp.into()),
        }
    );
    assert!(matches!(
        dec(r#"{"type":"rpc","method":"m","traceparent":7}"#).unwrap(),
        ClientFrame::Rpc {
            traceparent: None,
            ..
        }
    ));
}

#[test]
fn decode_errors() {
    let bad = |s: &str| dec(s).unwrap_err().code;
    assert_eq!(bad("nope"), ErrorCode::BadFrame);
    assert_eq!(bad("[]"), ErrorCode::BadFrame);
    assert_eq!(bad(r#"{"id":1}"#), ErrorCode::BadFrame);
    assert_eq!(bad(r#"{"type":"subscribe"}"#), ErrorCode::BadFrame);
    assert_eq!(
        bad(r#"{"type":"publish","channel":"room:x"}"#),
        ErrorCode::BadFrame
    );
    assert_eq!(
        bad(r#"{"type":"publish","channel":"room:x","data_b64":"!!"}"#),
        ErrorCode::BadFrame
    );
    assert_eq!(
        bad(r#"{"type":"subscribe","channel":"room:x","since":{"epoch":"a b","offset":1}}"#),
        ErrorCode::BadFrame
    );
    assert_eq!(bad(r#"{"type":"ping","id":-1}"#), ErrorCode::BadFrame);
    assert_eq!(bad(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
}

#[test]
fn encodes_server_frames() {
    let m = Message {
        channel: "room:lobby".into(),
        id: "m-1".into(),
        from: Some("bob".into()),
        epoch: "e1".into(),
        offset: 42,
        ts: 7,
        data: Payload::Json(Arc::from(r#"{"text":"hi \"x\""}"#)),
    };
    let text = encode_server(&ServerFrame::Message(Arc::new(m.clone())));
    let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["from"], "bob");
    assert_eq!(v["offset"], 42);
    assert_eq!(v["data"]["text"], "hi \"x\"");

    let bin = Message {
        data: Payload::Binary(Bytes::from_static(&[0, 1])),
        from: None,
        ..m
    };
    let v: serde_json::Value =
        serde_json::from_slice(&encode_server(&ServerFrame::Message(Arc::new(bin)))).unwrap();
    assert_eq!(v["data_b64"], "AAE=");
    assert!(v.get("from").is_none());

    let w = Welcome {
        conn_id: "c-1".into(),
        user: "alice".into(),
        node: "gw".into(),
        heartbeat_ms: 25000,
        channel: "user:alice".into(),
        epoch: "e9".into(),
        offset: 17,
        recovered: None,
    };
    let v: serde_json::Value =
        serde_json::from_slice(&encode_server(&ServerFrame::Welcome(w))).unwrap();
    assert_eq!(v["type"], "welcome");
    assert!(v.get("recovered").is_none());

    let r = Reply::err(Some(3), ErrorCode::Forbidden, "no \u{1} way");
    let v: serde_json::Value =
        serde_json::from_slice(&encode_server(&ServerFrame::Reply(r))).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"]["code"], "forbidden");

    let p = ServerFrame::Presence {
        channel: "room:a".into(),
        user: "bob".into(),
        event: PresenceEvent::Join,
    };
    let v: serde_json::Value = serde_json::from_slice(&encode_server(&p)).unwrap();
    assert_eq!(v["event"], "join");
}
