//! Every frame of docs/protocol.md §4 in both encodings: JSON text frames
//! (`switchboard.v1.json`) and protobuf binary frames (`switchboard.v1.proto`), plus
//! delivery across encodings, presence, direct messages and the rejections of §2.
//!
//! # Layout
//! - this file: helpers shared by the tests (tokens, protobuf frames, joining rooms, liveness
//!   checks, API publishes).
//! - [`welcome`]: the `welcome` frame.
//! - [`subscribe`]: `subscribe` / `unsubscribe` and their rejections; resuming a room with
//!   `since`.
//! - [`messages`]: `publish` and `message` frames; direct messages.
//! - [`presence`]: `presence` join and leave frames.
//! - [`control`]: `ack`, `refresh`, `ping` and `rpc`.
//! - [`encodings`]: delivery across encodings; subprotocol negotiation.
//! - [`errors`]: `error` frames and `goaway`.

use switchboard_testkit as support;

mod control;
mod encodings;
mod errors;
mod messages;
mod presence;
mod subscribe;
mod welcome;

use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use support::{binary_payload, json_payload, now_ms, Client, Node};
use switchboard_proto::pb;
use switchboard_proto::pb::frame::Kind;

/// How long "nothing else arrives" is watched for.
const QUIET: Duration = Duration::from_millis(200);

/// docs/protocol.md §5: an epoch is a non-empty string of `[A-Za-z0-9_-]`.
fn is_epoch(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A token for `sub` with the default grants of `support::token` overridden by `extra`.
fn token_with(sub: &str, extra: Value) -> String {
    let mut claims = json!({
        "sub": sub,
        "exp": support::now_secs() + 3600,
        "channels": ["room:*"],
        "publish": ["room:*", "user:*"],
    });
    for (k, v) in extra.as_object().expect("extra claims are an object") {
        claims[k] = v.clone();
    }
    support::sign(&claims)
}

fn pb_subscribe(id: u64, channel: &str) -> Kind {
    Kind::Subscribe(pb::Subscribe {
        id,
        channel: channel.into(),
        since: None,
    })
}

fn pb_publish(id: u64, channel: &str, data: Option<pb::Payload>) -> Kind {
    Kind::Publish(pb::Publish {
        id,
        channel: channel.into(),
        data,
        ..Default::default()
    })
}

/// The next protobuf frame, which must be a message.
async fn pb_message(c: &mut Client) -> pb::Message {
    match c.recv_pb().await {
        Kind::Message(m) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// The next protobuf frame, which must be a presence event.
async fn pb_presence(c: &mut Client) -> pb::Presence {
    match c.recv_pb().await {
        Kind::Presence(p) => p,
        other => panic!("expected a presence frame, got {other:?}"),
    }
}

/// Subscribes a protobuf client and consumes the reply and its own `join`.
async fn pb_join_room(c: &mut Client, id: u64, channel: &str, user: &str) -> pb::Reply {
    c.send_pb(pb_subscribe(id, channel)).await;
    let reply = c.next_pb_reply().await;
    assert!(reply.ok, "subscribe {channel}: {reply:?}");
    assert_eq!(reply.id, id);
    let own = pb_presence(c).await;
    assert_eq!(
        own,
        pb::Presence {
            channel: channel.into(),
            user: user.into(),
            event: "join".into()
        }
    );
    reply
}

/// Asserts the JSON client is alive and has nothing queued: a ping is answered next.
async fn assert_alive(c: &mut Client, id: u64) {
    c.send(json!({"type": "ping", "id": id})).await;
    assert_eq!(c.recv().await, json!({"type": "pong", "id": id}));
}

/// Same for a protobuf client.
async fn pb_assert_alive(c: &mut Client, id: u64) {
    c.send_pb(Kind::Ping(pb::Ping { id })).await;
    assert_eq!(c.recv_pb().await, Kind::Pong(pb::Pong { id }));
}

async fn api_publish(node: &Node, channel: &str, data: Value) -> Value {
    let (status, body) = node
        .api(
            "POST",
            "/v1/publish",
            Some(json!({"channel": channel, "data": data})),
        )
        .await;
    assert_eq!(status, 200, "publish: {body}");
    body
}
