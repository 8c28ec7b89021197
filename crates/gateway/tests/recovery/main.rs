//! History and recovery (PROTOCOL.md §5): resuming the personal channel with `?since=`,
//! the inbox and its acks, room history with `subscribe` + `since`, trimming, rooms
//! without history, and ordering while live messages race a replay.
//!
//! # Layout
//! - this file: helpers shared by the tests (positions, connecting and subscribing with
//!   `since`, a node with a config file).
//! - [`personal`]: the personal channel with `?since=`, and the inbox with its acks.
//! - [`rooms`]: room history with `subscribe` + `since`, trimming, rooms without history.
//! - [`races`]: live messages racing a replay.
//! - [`metrics`]: recovery results in `/metrics`.

#[path = "../support/mod.rs"]
mod support;

mod metrics;
mod personal;
mod races;
mod rooms;

use std::time::Duration;

use serde_json::{json, Value};
use support::{connect_since, position, Client, Node};

/// How long "nothing else arrives" is watched for.
const QUIET: Duration = Duration::from_millis(300);

/// Receives exactly `n` messages of `channel`, checking that they are the offsets
/// `first..first + n` of `epoch` with data `{"n": <offset>}`, in order.
async fn expect_messages(client: &mut Client, channel: &str, epoch: &str, first: u64, n: u64) {
    for offset in first..first + n {
        let msg = client.recv().await;
        assert_eq!(msg["type"], "message", "expected message {offset}: {msg}");
        assert_eq!(msg["channel"], channel, "{msg}");
        assert_eq!(position(&msg), (epoch.to_owned(), offset), "{msg}");
        assert_eq!(msg["data"], json!({"n": offset}), "{msg}");
    }
}

/// Publishes `{"n": <offset>}` to `channel` `count` times through the server API,
/// checking the offsets continue from `after` in `epoch`.
async fn publish_numbered(node: &Node, channel: &str, epoch: &str, after: u64, count: u64) {
    let api = node.api_client();
    for offset in after + 1..=after + count {
        let answer = api.publish(channel, json!({"n": offset})).await;
        assert_eq!(position(&answer), (epoch.to_owned(), offset), "{answer}");
    }
}

/// Subscribes with an optional `since` and returns the reply (frames before it are
/// not expected: the caller's connection is otherwise quiet).
async fn subscribe_since(
    client: &mut Client,
    id: u64,
    channel: &str,
    since: Option<(&str, u64)>,
) -> Value {
    let mut frame = json!({"type": "subscribe", "id": id, "channel": channel});
    if let Some((epoch, offset)) = since {
        frame["since"] = json!({"epoch": epoch, "offset": offset});
    }
    client.send(frame).await;
    let reply = client.recv().await;
    assert_eq!(reply["type"], "reply", "{reply}");
    assert_eq!(reply["id"], id, "{reply}");
    assert_eq!(reply["ok"], true, "{reply}");
    reply
}

async fn unsubscribe(client: &mut Client, id: u64, channel: &str) {
    client
        .send(json!({"type": "unsubscribe", "id": id, "channel": channel}))
        .await;
    let reply = client.reply(id).await;
    assert_eq!(reply["ok"], true, "{reply}");
}

/// The subscriber's own presence `join`, which follows its subscribe reply and replay.
async fn expect_own_join(client: &mut Client, user: &str, channel: &str) {
    let frame = client.recv().await;
    assert_eq!(
        frame,
        json!({"type": "presence", "channel": channel, "user": user, "event": "join"})
    );
}

/// Sends a `ping` and waits for its `pong`: everything sent before was handled.
async fn round_trip(client: &mut Client, id: u64) {
    client.send(json!({"type": "ping", "id": id})).await;
    let pong = client.recv().await;
    assert_eq!(pong, json!({"type": "pong", "id": id}));
}

/// Starts a node with `toml` as its `--config` file.
async fn start_with_config(name: &str, toml: &str) -> Node {
    let path = std::env::temp_dir().join(format!(
        "switchboard-recovery-{}-{name}.toml",
        std::process::id()
    ));
    std::fs::write(&path, toml).expect("write config");
    let node = support::start(&["--config", path.to_str().expect("utf-8 path")]).await;
    let _ = std::fs::remove_file(&path);
    node
}
