//! Bad input is a tested path (docs/protocol.md §4, §7): every error code and close code a
//! single node can produce, each triggered by the input that causes it. Every test also
//! checks that a bystander in the same room saw nothing of it and that the node still
//! serves others.
//!
//! `too_large` is not tested here: a client cannot reach it. The session answers it when a
//! publish's `data` is longer than `--max-message-bytes`, but `data` travels inside the
//! client's message (JSON text, base64 that only shrinks when decoded, or a protobuf field
//! next to the frame's type), and any message longer than `--max-message-bytes` is closed
//! with 1009 by the reader before the session sees it.
//!
//! # Layout
//! - this file: raw frames and the scene (an offender and a bystander in one room) shared by
//!   the tests.
//! - [`bad_frames`]: error frames after which the connection stays open; the bad-frame limit
//!   (4400).
//! - [`failed_replies`]: requests answered with an error reply.
//! - [`closes`]: close codes 1009, 1007, 1002, 4029 and 1000, and all of them on one node.

use switchboard_testkit as support;

mod bad_frames;
mod closes;
mod failed_replies;

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{json, Value};
use support::{raw_frame, Client, Node};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use tokio_tungstenite::tungstenite::Message;

const ROOM: &str = "room:lobby";
/// How long a bystander must stay quiet.
const QUIET: Duration = Duration::from_millis(200);

// ---- raw frames -------------------------------------------------------------------------

/// A text frame; `fin: false` starts a fragmented message.
fn text(fin: bool, payload: impl Into<Bytes>) -> Message {
    raw_frame(OpCode::Data(Data::Text), fin, payload)
}

/// A continuation frame.
fn cont(fin: bool, payload: impl Into<Bytes>) -> Message {
    raw_frame(OpCode::Data(Data::Continue), fin, payload)
}

fn control(ctl: Control, payload: impl Into<Bytes>) -> Message {
    raw_frame(OpCode::Control(ctl), true, payload)
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
