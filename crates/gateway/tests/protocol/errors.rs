//! `error` frames for bad input (the connection stays open), and `goaway` before a drain
//! closes with 1012, in both encodings.

use super::*;

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_connection_stays_open() {
    let node = support::start(&[]).await;
    let (mut a, _) = node.connect("alice").await;
    a.send_raw(tokio_tungstenite::tungstenite::Message::Text("nope".into()))
        .await;
    let e = a.recv().await;
    assert_eq!(e["type"], "error");
    assert_eq!(e["code"], "bad_frame", "{e}");
    assert!(e["message"].is_string(), "{e}");
    a.send(json!({"type": "dance", "id": 1})).await;
    let e = a.recv().await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("unknown_type"))
    );
    a.send(json!({"type": "publish", "id": 2, "channel": "room:x"}))
        .await;
    assert_eq!(a.recv().await["code"], "bad_frame", "publish without data");
    assert_alive(&mut a, 3).await;

    let (mut p, _) = node.connect_proto_token(&support::token("bob")).await;
    p.send_raw(tokio_tungstenite::tungstenite::Message::Binary(
        Bytes::from_static(b"\xff\xff\xff"),
    ))
    .await;
    let Kind::Error(e) = p.recv_pb().await else {
        panic!("expected an error frame");
    };
    assert_eq!(e.code, "bad_frame");
    assert!(!e.message.is_empty());
    // A server frame sent by a client is an unknown type.
    p.send_pb(Kind::Pong(pb::Pong { id: 1 })).await;
    let Kind::Error(e) = p.recv_pb().await else {
        panic!("expected an error frame");
    };
    assert_eq!(e.code, "unknown_type");
    pb_assert_alive(&mut p, 4).await;
}

#[tokio::test]
async fn drain_sends_goaway_then_1012_in_both_encodings() {
    let node = support::start(&["--drain-seconds", "1"]).await;
    let (mut j, _) = node.connect("alice").await;
    let (mut p, _) = node.connect_proto_token(&support::token("bob")).await;
    node.sigterm();

    let (code, _, before) = j.expect_close().await;
    assert_eq!(code, 1012);
    assert_eq!(before.len(), 1, "exactly the goaway: {before:?}");
    let tokio_tungstenite::tungstenite::Message::Text(t) = &before[0] else {
        panic!("goaway must be a text frame: {before:?}");
    };
    let g: Value = serde_json::from_str(t).unwrap();
    assert_eq!(g["type"], "goaway");
    assert_eq!(g["reason"], "draining");
    assert!(g["reconnect_ms"].as_u64().is_some_and(|ms| ms > 0), "{g}");

    let (code, _, before) = p.expect_close().await;
    assert_eq!(code, 1012);
    assert_eq!(before.len(), 1, "exactly the goaway: {before:?}");
    let tokio_tungstenite::tungstenite::Message::Binary(b) = &before[0] else {
        panic!("goaway must be a binary frame: {before:?}");
    };
    use prost::Message as _;
    let Some(Kind::Goaway(g)) = pb::Frame::decode(b.clone()).unwrap().kind else {
        panic!("expected goaway");
    };
    assert_eq!(g.reason, "draining");
    assert!(g.reconnect_ms > 0);
}
