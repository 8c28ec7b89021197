//! Bad input is a tested path (PROTOCOL.md §4, §7): every error code and close code a
//! single node can produce, each triggered by the input that causes it. Every test also
//! checks that a bystander in the same room saw nothing of it and that the node still
//! serves others.
//!
//! `too_large` is not tested here: a client cannot reach it. The session answers it when a
//! publish's `data` is longer than `--max-message-bytes`, but `data` travels inside the
//! client's message (JSON text, base64 that only shrinks when decoded, or a protobuf field
//! next to the frame's type), and any message longer than `--max-message-bytes` is closed
//! with 1009 by the reader before the session sees it.

mod support;

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{json, Value};
use support::{Client, Node};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

const ROOM: &str = "room:lobby";
/// How long a bystander must stay quiet.
const QUIET: Duration = Duration::from_millis(200);

// ---- raw frames -------------------------------------------------------------------------

/// Any frame, exactly as given (tungstenite only masks it).
fn raw(opcode: OpCode, fin: bool, payload: impl Into<Bytes>) -> Message {
    let header = FrameHeader {
        is_final: fin,
        opcode,
        ..FrameHeader::default()
    };
    Message::Frame(Frame::from_payload(header, payload.into()))
}

/// A text frame; `fin: false` starts a fragmented message.
fn text(fin: bool, payload: impl Into<Bytes>) -> Message {
    raw(OpCode::Data(Data::Text), fin, payload)
}

/// A continuation frame.
fn cont(fin: bool, payload: impl Into<Bytes>) -> Message {
    raw(OpCode::Data(Data::Continue), fin, payload)
}

fn control(ctl: Control, payload: impl Into<Bytes>) -> Message {
    raw(OpCode::Control(ctl), true, payload)
}

/// A close frame payload: the code, big-endian, then the reason bytes.
fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

/// A publish to `ROOM` of exactly `len` bytes (its `data` is a string of `x`).
fn publish_of_len(id: u64, len: usize) -> String {
    let head = format!(r#"{{"type":"publish","id":{id},"channel":"{ROOM}","data":""#);
    let tail = r#""}"#;
    let frame = format!("{head}{}{tail}", "x".repeat(len - head.len() - tail.len()));
    assert_eq!(frame.len(), len);
    serde_json::from_str::<Value>(&frame).expect("valid JSON");
    frame
}

// ---- the scene: an offender and a bystander in one room -----------------------------------

/// A node, the bystander `bob` and the offender `alice`, both subscribed to `ROOM`.
struct Scene {
    node: Node,
    bob: Client,
    alice: Client,
}

async fn scene(args: &[&str]) -> Scene {
    let node = support::start(args).await;
    let (mut bob, _) = node.connect("bob").await;
    assert_eq!(bob.subscribe(1, ROOM).await["ok"], true);
    let (mut alice, _) = node.connect("alice").await;
    assert_eq!(alice.subscribe(1, ROOM).await["ok"], true);
    let join = bob
        .recv_until(|v| v["type"] == "presence" && v["user"] == "alice")
        .await;
    assert_eq!(join["event"], "join");
    Scene { node, bob, alice }
}

/// The next frame that is not a presence frame.
async fn next_frame(c: &mut Client) -> Value {
    c.recv_until(|v| v["type"] != "presence").await
}

/// The next frame must be an `error` frame with `code`.
async fn expect_error(c: &mut Client, code: &str) {
    let v = next_frame(c).await;
    assert_eq!(v["type"], "error", "expected an error frame: {v}");
    assert_eq!(v["code"], code, "{v}");
    assert!(v["message"].is_string(), "{v}");
}

/// The next frame must be a failed reply to `id` with `code`.
async fn expect_reply_error(c: &mut Client, id: u64, code: &str) {
    let v = next_frame(c).await;
    assert_eq!(v["type"], "reply", "expected a reply: {v}");
    assert_eq!(v["id"], id, "{v}");
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
}

/// The connection is open and in order: a ping is answered next.
async fn expect_pong(c: &mut Client, id: u64) {
    c.send(json!({"type": "ping", "id": id})).await;
    let v = next_frame(c).await;
    assert_eq!(v, json!({"type": "pong", "id": id}));
}

/// The server's close: its code and the JSON data frames before it (presence left out).
async fn close_of(c: &mut Client) -> (u16, Vec<Value>) {
    let (code, _reason, before) = c.expect_close().await;
    let frames = before
        .into_iter()
        .map(|m| match m {
            Message::Text(t) => serde_json::from_str::<Value>(&t).expect("JSON"),
            other => panic!("unexpected frame before the close: {other:?}"),
        })
        .filter(|v| v["type"] != "presence")
        .collect();
    (code, frames)
}

/// Asserts a close with `code` and no data frame before it.
async fn expect_bare_close(c: &mut Client, code: u16) {
    let (got, frames) = close_of(c).await;
    assert_eq!(got, code, "close code (frames before: {frames:?})");
    assert!(frames.is_empty(), "frames before the close: {frames:?}");
}

/// The bystander received nothing but presence, and still gets answers.
async fn bystander_saw_nothing(bob: &mut Client) {
    loop {
        match tokio::time::timeout(QUIET, bob.ws.next()).await {
            Err(_) => break,
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).expect("JSON");
                assert_eq!(v["type"], "presence", "the bystander saw {v}");
            }
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(other) => panic!("the bystander saw {other:?}"),
        }
    }
    expect_pong(bob, 900).await;
}

/// The node is ready and a newcomer can chat.
async fn node_still_serves(node: &Node) {
    let (status, body) = node.get_internal("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"ready": true})
    );
    let (mut carol, welcome) = node.connect("carol").await;
    assert_eq!(welcome["user"], "carol");
    assert_eq!(carol.subscribe(1, "room:after").await["ok"], true);
    carol
        .send(json!({"type": "publish", "id": 2, "channel": "room:after", "data": "still here"}))
        .await;
    let msg = carol.recv_until(|v| v["type"] == "message").await;
    assert_eq!(msg["data"], "still here");
    assert_eq!(msg["from"], "carol");
    assert_eq!(carol.reply(2).await["ok"], true);
}

impl Scene {
    /// The bystander saw nothing and the node still serves.
    async fn finish(mut self) {
        bystander_saw_nothing(&mut self.bob).await;
        node_still_serves(&self.node).await;
    }

    /// Alice publishes a marker; it must be the room's first message and bob's next frame,
    /// so nothing that came before reached the room.
    async fn nothing_was_published(&mut self) {
        self.alice
            .send(json!({"type": "publish", "id": 77, "channel": ROOM, "data": "marker"}))
            .await;
        let msg = next_frame(&mut self.bob).await;
        assert_eq!(msg["type"], "message", "{msg}");
        assert_eq!(msg["data"], "marker", "{msg}");
        assert_eq!(
            msg["offset"], 1,
            "an earlier message reached the room: {msg}"
        );
        assert_eq!(self.alice.reply(77).await["ok"], true);
    }
}

// ---- error frames: the connection stays open ---------------------------------------------

#[tokio::test]
async fn malformed_frames_get_bad_frame_and_the_connection_stays_open() {
    let mut s = scene(&[]).await;
    let bad: Vec<(&str, Message)> =
        vec![
        ("invalid JSON", Message::Text(r#"{"type":"ping""#.into())),
        ("a JSON array", Message::Text(r#"[{"type":"ping"}]"#.into())),
        ("a JSON string", Message::Text(r#""ping""#.into())),
        ("no type", Message::Text(r#"{"id":1,"channel":"room:lobby"}"#.into())),
        (
            "subscribe without channel",
            Message::Text(r#"{"type":"subscribe","id":2}"#.into()),
        ),
        (
            "publish without data",
            Message::Text(r#"{"type":"publish","id":3,"channel":"room:lobby"}"#.into()),
        ),
        (
            "publish with data and data_b64",
            Message::Text(
                r#"{"type":"publish","id":4,"channel":"room:lobby","data":1,"data_b64":"AA=="}"#
                    .into(),
            ),
        ),
        (
            "binary frame on a JSON connection",
            Message::Binary(Bytes::from_static(
                br#"{"type":"publish","id":5,"channel":"room:lobby","data":"bin"}"#,
            )),
        ),
    ];
    for (i, (what, msg)) in bad.into_iter().enumerate() {
        s.alice.send_raw(msg).await;
        let v = next_frame(&mut s.alice).await;
        assert_eq!(v["type"], "error", "{what}: {v}");
        assert_eq!(v["code"], "bad_frame", "{what}: {v}");
        expect_pong(&mut s.alice, 100 + i as u64).await;
    }
    s.nothing_was_published().await;
    s.finish().await;
}

#[tokio::test]
async fn unknown_type_gets_unknown_type_and_the_connection_stays_open() {
    let mut s = scene(&[]).await;
    s.alice
        .send(json!({"type": "teleport", "id": 1, "channel": ROOM, "data": "x"}))
        .await;
    expect_error(&mut s.alice, "unknown_type").await;
    expect_pong(&mut s.alice, 2).await;
    s.nothing_was_published().await;
    s.finish().await;
}

#[tokio::test]
async fn eleventh_bad_frame_in_a_minute_closes_with_4400() {
    let mut s = scene(&[]).await;
    for i in 0..10 {
        s.alice.send_raw(Message::Text("not json".into())).await;
        expect_error(&mut s.alice, "bad_frame").await;
        expect_pong(&mut s.alice, i).await;
    }
    s.alice.send_raw(Message::Text("not json".into())).await;
    let (code, frames) = close_of(&mut s.alice).await;
    assert_eq!(code, 4400);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["code"], "bad_frame");
    s.finish().await;
}

#[tokio::test]
async fn bad_frame_limit_is_configurable() {
    let mut s = scene(&["--bad-frame-limit", "3"]).await;
    for i in 0..3 {
        s.alice.send_raw(Message::Text("[]".into())).await;
        expect_error(&mut s.alice, "bad_frame").await;
        expect_pong(&mut s.alice, i).await;
    }
    s.alice.send_raw(Message::Text("[]".into())).await;
    let (code, frames) = close_of(&mut s.alice).await;
    assert_eq!(code, 4400);
    assert_eq!(frames.len(), 1, "{frames:?}");
    s.finish().await;
}

/// A binary frame on a JSON connection and an unknown type are bad frames too.
#[tokio::test]
async fn every_kind_of_bad_frame_counts_toward_the_limit() {
    let mut s = scene(&["--bad-frame-limit", "3"]).await;
    s.alice
        .send_raw(Message::Binary(Bytes::from_static(b"\x08\x01")))
        .await;
    expect_error(&mut s.alice, "bad_frame").await;
    s.alice.send(json!({"type": "teleport"})).await;
    expect_error(&mut s.alice, "unknown_type").await;
    s.alice.send(json!({"type": "subscribe", "id": 3})).await;
    expect_error(&mut s.alice, "bad_frame").await;
    expect_pong(&mut s.alice, 4).await;
    s.alice
        .send_raw(Message::Binary(Bytes::from_static(b"\x08\x01")))
        .await;
    let (code, frames) = close_of(&mut s.alice).await;
    assert_eq!(
        code, 4400,
        "a binary frame on a JSON connection must count: {frames:?}"
    );
    s.finish().await;
}

/// Failed requests (a `reply` with `ok:false`) are not malformed frames.
#[tokio::test]
async fn failed_requests_do_not_count_as_bad_frames() {
    let mut s = scene(&[]).await;
    for id in 1..=15 {
        s.alice
            .send(json!({"type": "subscribe", "id": id, "channel": "no-namespace"}))
            .await;
        expect_reply_error(&mut s.alice, id, "bad_channel").await;
    }
    expect_pong(&mut s.alice, 16).await;
    s.finish().await;
}

// ---- failed replies -------------------------------------------------------------------------

#[tokio::test]
async fn bad_channel_names_are_rejected() {
    let mut s = scene(&[]).await;
    let too_long = format!("room:{}", "x".repeat(252));
    assert_eq!(too_long.len(), 257);
    let bad = [
        "room:a b",
        "room:lob/by",
        "room:é",
        "lobby",
        ":lobby",
        "room:",
        "",
        too_long.as_str(),
        "chat:lobby",
    ];
    let mut id = 0;
    for name in bad {
        id += 1;
        s.alice
            .send(json!({"type": "subscribe", "id": id, "channel": name}))
            .await;
        expect_reply_error(&mut s.alice, id, "bad_channel").await;
        id += 1;
        s.alice
            .send(json!({"type": "publish", "id": id, "channel": name, "data": "x"}))
            .await;
        expect_reply_error(&mut s.alice, id, "bad_channel").await;
        id += 1;
        s.alice
            .send(json!({"type": "unsubscribe", "id": id, "channel": name}))
            .await;
        expect_reply_error(&mut s.alice, id, "bad_channel").await;
    }
    // Personal channels arrive without subscribing.
    s.alice
        .send(json!({"type": "subscribe", "id": 100, "channel": "user:alice"}))
        .await;
    expect_reply_error(&mut s.alice, 100, "bad_channel").await;
    // 256 bytes is the longest valid name.
    let longest = format!("room:{}", "x".repeat(251));
    assert_eq!(s.alice.subscribe(101, &longest).await["ok"], true);
    expect_pong(&mut s.alice, 102).await;
    s.nothing_was_published().await;
    s.finish().await;
}

#[tokio::test]
async fn subscribe_and_publish_outside_the_claims_are_forbidden() {
    let node = support::start(&[]).await;
    let (mut bob, _) = node.connect("bob").await;
    assert_eq!(bob.subscribe(1, "room:secret").await["ok"], true);
    let token = support::sign(&json!({
        "sub": "mallory",
        "exp": support::now_secs() + 600,
        "channels": ["room:lobby"],
        "publish": ["room:lobby"],
    }));
    let mut mallory = node
        .connect_query(&format!("token={token}"), &[])
        .await
        .expect("connect");
    assert_eq!(next_frame(&mut mallory).await["type"], "welcome");

    mallory
        .send(json!({"type": "subscribe", "id": 1, "channel": "room:secret"}))
        .await;
    expect_reply_error(&mut mallory, 1, "forbidden").await;
    mallory
        .send(json!({"type": "publish", "id": 2, "channel": "room:secret", "data": "leak"}))
        .await;
    expect_reply_error(&mut mallory, 2, "forbidden").await;
    // No `user:*` publish claim: no direct messages.
    mallory
        .send(json!({"type": "publish", "id": 3, "channel": "user:bob", "data": "dm"}))
        .await;
    expect_reply_error(&mut mallory, 3, "forbidden").await;
    // What the claims allow still works.
    assert_eq!(mallory.subscribe(4, "room:lobby").await["ok"], true);
    expect_pong(&mut mallory, 5).await;

    bystander_saw_nothing(&mut bob).await;
    let (status, body) = node.api("GET", "/v1/history/user:bob", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["messages"], json!([]), "a forbidden DM was stored");
    let (status, body) = node.api("GET", "/v1/presence/room:secret", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["users"], json!(["bob"]));
    node_still_serves(&node).await;
}

#[tokio::test]
async fn unsubscribe_without_subscription_is_not_subscribed() {
    let mut s = scene(&[]).await;
    s.alice
        .send(json!({"type": "unsubscribe", "id": 1, "channel": "room:elsewhere"}))
        .await;
    expect_reply_error(&mut s.alice, 1, "not_subscribed").await;
    s.alice
        .send(json!({"type": "unsubscribe", "id": 2, "channel": ROOM}))
        .await;
    assert_eq!(s.alice.reply(2).await["ok"], true);
    s.alice
        .send(json!({"type": "unsubscribe", "id": 3, "channel": ROOM}))
        .await;
    expect_reply_error(&mut s.alice, 3, "not_subscribed").await;
    expect_pong(&mut s.alice, 4).await;
    let leave = s.bob.recv_until(|v| v["type"] == "presence").await;
    assert_eq!(leave["event"], "leave");
    s.finish().await;
}

// ---- 1009: message too big ---------------------------------------------------------------

#[tokio::test]
async fn message_over_the_limit_in_one_frame_closes_with_1009() {
    let mut s = scene(&["--max-message-bytes", "1024"]).await;
    // Exactly the limit is fine.
    s.alice
        .send_raw(Message::Text(publish_of_len(2, 1024).into()))
        .await;
    assert_eq!(s.alice.reply(2).await["ok"], true);
    let msg = next_frame(&mut s.bob).await;
    assert_eq!(msg["type"], "message");
    assert_eq!(msg["offset"], 1);
    // One byte more closes.
    s.alice
        .send_raw(Message::Text(publish_of_len(3, 1025).into()))
        .await;
    expect_bare_close(&mut s.alice, 1009).await;
    s.finish().await;
}

#[tokio::test]
async fn fragmented_message_over_the_limit_closes_with_1009() {
    let mut s = scene(&["--max-message-bytes", "1024"]).await;
    // A complete publish of 1200 bytes in four small fragments.
    let frame = publish_of_len(2, 1200);
    let parts: Vec<&str> = (0..4).map(|i| &frame[i * 300..(i + 1) * 300]).collect();
    s.alice.send_raw(text(false, parts[0].to_owned())).await;
    s.alice.send_raw(cont(false, parts[1].to_owned())).await;
    s.alice.send_raw(cont(false, parts[2].to_owned())).await;
    s.alice.send_raw(cont(true, parts[3].to_owned())).await;
    expect_bare_close(&mut s.alice, 1009).await;

    // A message that never ends is closed as soon as it passes the limit.
    let (mut mallory, _) = s.node.connect("mallory").await;
    mallory.send_raw(text(false, "x".repeat(500))).await;
    for _ in 0..3 {
        mallory.send_raw(cont(false, "x".repeat(500))).await;
    }
    expect_bare_close(&mut mallory, 1009).await;
    s.finish().await;
}

#[tokio::test]
async fn fragmented_message_under_the_limit_is_reassembled() {
    let mut s = scene(&["--max-message-bytes", "1024"]).await;
    let frame = publish_of_len(2, 900);
    s.alice.send_raw(text(false, frame[..300].to_owned())).await;
    s.alice
        .send_raw(cont(false, frame[300..600].to_owned()))
        .await;
    // A ping between fragments is allowed (RFC 6455 §5.4).
    s.alice.send_raw(control(Control::Ping, "mid")).await;
    s.alice.send_raw(cont(true, frame[600..].to_owned())).await;
    let reply = s.alice.reply(2).await;
    assert_eq!(reply["ok"], true, "{reply}");
    let msg = next_frame(&mut s.bob).await;
    assert_eq!(msg["type"], "message");
    let sent: Value = serde_json::from_str(&frame).unwrap();
    assert_eq!(msg["data"], sent["data"]);
    // A multi-byte character split across fragments is valid UTF-8 as a message.
    let ping = r#"{"type":"ping","id":3,"x":"€"}"#.as_bytes();
    let cut = ping.len() - 3; // inside the three bytes of €
    s.alice.send_raw(text(false, ping[..cut].to_vec())).await;
    s.alice.send_raw(cont(true, ping[cut..].to_vec())).await;
    assert_eq!(
        next_frame(&mut s.alice).await,
        json!({"type": "pong", "id": 3})
    );
    s.finish().await;
}

// ---- 1007: invalid UTF-8 ---------------------------------------------------------------

#[tokio::test]
async fn invalid_utf8_text_closes_with_1007() {
    let mut s = scene(&[]).await;
    let bad = b"{\"type\":\"publish\",\"id\":2,\"channel\":\"room:lobby\",\"data\":\"\xff\xfe\"}";
    s.alice.send_raw(text(true, bad.to_vec())).await;
    expect_bare_close(&mut s.alice, 1007).await;

    // The reason of a close frame must be UTF-8 too.
    let (mut mallory, _) = s.node.connect("mallory").await;
    mallory
        .send_raw(control(Control::Close, close_payload(1000, b"\xc3\x28")))
        .await;
    expect_bare_close(&mut mallory, 1007).await;
    s.finish().await;
}

#[tokio::test]
async fn invalid_utf8_split_across_fragments_closes_with_1007() {
    let mut s = scene(&[]).await;
    // Each fragment ends or starts mid-character; together they are not UTF-8.
    let first =
        b"{\"type\":\"publish\",\"id\":2,\"channel\":\"room:lobby\",\"data\":\"\xe2\x82".to_vec();
    s.alice.send_raw(text(false, first)).await;
    s.alice.send_raw(cont(true, b"A\"}".to_vec())).await;
    expect_bare_close(&mut s.alice, 1007).await;
    s.finish().await;
}

// ---- 1002: protocol errors -------------------------------------------------------------

#[tokio::test]
async fn protocol_violations_close_with_1002() {
    let s = scene(&[]).await;
    let ping = r#"{"type":"ping","id":1}"#;
    let cases: Vec<(&str, Vec<Message>)> = vec![
        ("continuation without a start", vec![cont(true, ping)]),
        (
            "new message inside a fragmented one",
            vec![text(false, r#"{"type":"#), text(true, ping)],
        ),
        (
            "binary inside a fragmented text",
            vec![
                text(false, r#"{"type":"#),
                raw(OpCode::Data(Data::Binary), true, "x"),
            ],
        ),
        (
            "close code 1005",
            vec![control(Control::Close, close_payload(1005, b""))],
        ),
        (
            "close code 1006",
            vec![control(Control::Close, close_payload(1006, b""))],
        ),
        (
            "close code 1004",
            vec![control(Control::Close, close_payload(1004, b""))],
        ),
        (
            "close code 1015",
            vec![control(Control::Close, close_payload(1015, b""))],
        ),
        (
            "close code 999",
            vec![control(Control::Close, close_payload(999, b""))],
        ),
        (
            "close code 5000",
            vec![control(Control::Close, close_payload(5000, b""))],
        ),
        (
            "close with a 1-byte payload",
            vec![control(Control::Close, vec![3u8])],
        ),
        (
            "ping with 126 bytes",
            vec![control(Control::Ping, vec![b'p'; 126])],
        ),
        (
            "pong with 126 bytes",
            vec![control(Control::Pong, vec![b'p'; 126])],
        ),
        (
            "close with 126 bytes",
            vec![control(Control::Close, close_payload(1000, &[b'r'; 124]))],
        ),
        (
            "fragmented ping",
            vec![raw(OpCode::Control(Control::Ping), false, "p")],
        ),
        (
            "reserved opcode 0x3",
            vec![raw(OpCode::Data(Data::Reserved(3)), true, ping)],
        ),
        (
            "reserved opcode 0xB",
            vec![raw(OpCode::Control(Control::Reserved(0xB)), true, "")],
        ),
        ("reserved bit 1", vec![rsv(true, false, false)]),
        ("reserved bit 2", vec![rsv(false, true, false)]),
        ("reserved bit 3", vec![rsv(false, false, true)]),
    ];
    for (what, frames) in cases {
        let (mut mallory, _) = s.node.connect("mallory").await;
        for f in frames {
            mallory.send_raw(f).await;
        }
        let (code, before) = tokio::time::timeout(QUIET * 10, close_of(&mut mallory))
            .await
            .unwrap_or_else(|_| panic!("{what}: the connection was not closed"));
        assert_eq!(code, 1002, "{what}: frames before: {before:?}");
        assert!(before.is_empty(), "{what}: frames before: {before:?}");
    }
    s.finish().await;
}

/// A text frame (a valid ping) with reserved bits set.
fn rsv(rsv1: bool, rsv2: bool, rsv3: bool) -> Message {
    let header = FrameHeader {
        is_final: true,
        rsv1,
        rsv2,
        rsv3,
        opcode: OpCode::Data(Data::Text),
        mask: None,
    };
    Message::Frame(Frame::from_payload(
        header,
        Bytes::from_static(br#"{"type":"ping","id":1}"#),
    ))
}

// ---- 4029: rate limit --------------------------------------------------------------------

#[tokio::test]
async fn rate_limit_closes_with_4029_after_a_rate_limited_error() {
    let node = support::start(&["--rate-limit", "5", "--rate-limit-burst", "5"]).await;
    let (mut bob, _) = node.connect("bob").await;
    assert_eq!(bob.subscribe(1, ROOM).await["ok"], true);
    let (mut alice, _) = node.connect("alice").await;
    for id in 1..=50u64 {
        alice
            .send_raw(Message::Text(
                json!({"type": "publish", "id": id, "channel": ROOM, "data": id})
                    .to_string()
                    .into(),
            ))
            .await;
    }
    let (code, frames) = close_of(&mut alice).await;
    assert_eq!(code, 4029, "{frames:?}");
    let (last, replies) = frames
        .split_last()
        .expect("an error frame before the close");
    assert_eq!(last["type"], "error", "{frames:?}");
    assert_eq!(last["code"], "rate_limited", "{frames:?}");
    // The burst of 5 passes (a 6th only if the node stalled for 200 ms and refilled).
    assert!((5..=6).contains(&replies.len()), "{frames:?}");
    for (i, r) in replies.iter().enumerate() {
        assert_eq!(r["type"], "reply", "{frames:?}");
        assert_eq!(r["id"], i as u64 + 1, "{frames:?}");
        assert_eq!(r["ok"], true, "{frames:?}");
    }
    // Bob got exactly the accepted messages, then nothing.
    for i in 0..replies.len() {
        let msg = next_frame(&mut bob).await;
        assert_eq!(msg["type"], "message");
        assert_eq!(msg["data"], i as u64 + 1);
    }
    bystander_saw_nothing(&mut bob).await;
    node_still_serves(&node).await;
}

// ---- 1000: a clean close -------------------------------------------------------------------

#[tokio::test]
async fn client_close_1000_is_echoed() {
    let mut s = scene(&[]).await;
    s.alice
        .send_raw(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        })))
        .await;
    let echo = loop {
        match tokio::time::timeout(support::WAIT, s.alice.ws.next())
            .await
            .expect("timed out waiting for the close echo")
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                assert_eq!(v["type"], "presence", "{v}");
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected the close echo, got {other:?}"),
        }
    };
    let echo = echo.expect("the echo carries a code");
    assert_eq!(u16::from(echo.code), 1000);
    let leave = s.bob.recv_until(|v| v["type"] == "presence").await;
    assert_eq!(leave["user"], "alice");
    assert_eq!(leave["event"], "leave");
    s.finish().await;
}

// ---- all of the above on one node --------------------------------------------------------

/// One node takes every kind of abuse in turn and stays ready; each close is counted.
#[tokio::test]
async fn node_stays_ready_after_every_error() {
    let mut s = scene(&[
        "--max-message-bytes",
        "1024",
        "--bad-frame-limit",
        "2",
        "--rate-limit",
        "5",
        "--rate-limit-burst",
        "5",
    ])
    .await;
    let offences: Vec<(u16, Vec<Message>)> = vec![
        (4400, vec![Message::Text("{".into()); 3]),
        (1009, vec![Message::Text("x".repeat(1025).into())]),
        (1007, vec![text(true, b"\xff".to_vec())]),
        (1002, vec![cont(true, "x")]),
        (4029, vec![Message::Text(r#"{"type":"ping"}"#.into()); 6]),
    ];
    for (code, frames) in &offences {
        let (mut mallory, _) = s.node.connect("mallory").await;
        for f in frames {
            mallory.send_raw(f.clone()).await;
        }
        let (got, before) = close_of(&mut mallory).await;
        assert_eq!(got, *code, "{before:?}");
    }
    s.nothing_was_published().await;
    bystander_saw_nothing(&mut s.bob).await;
    let (status, _) = s.node.get_internal("/healthz").await;
    assert_eq!(status, 200);
    node_still_serves(&s.node).await;
    // Each close is counted once its connection has been cleaned up.
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        let (_, metrics) = s.node.get_internal("/metrics").await;
        let missing: Vec<String> = offences
            .iter()
            .map(|(code, _)| format!("switchboard_disconnects_total{{code=\"{code}\"}} 1"))
            .filter(|line| !metrics.lines().any(|l| l == line))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "missing {missing:?} in:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
