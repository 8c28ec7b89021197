//! Idempotent publishes (docs/protocol.md §5, issue 13 item 2), end to end: real nodes on the
//! embedded backplane and on a `redis-server` of the test's own, real WebSocket and HTTP
//! clients. The same key on the same channel (and the same sender's scope) within the
//! window is answered with the first publish's position and neither stored nor delivered
//! again.
//!
//! # Layout
//! - this file: the two backends, a node on either, and helpers (keyed publishes,
//!   history, "nothing else arrives").
//! - [`api`]: `/v1/publish` (JSON and protobuf), `/v1/batch`, `/v1/broadcast`, racing
//!   retries.
//! - [`client`]: client `publish` frames (JSON and protobuf), retries from a new
//!   connection and through another node, keys scoped per sender.
//! - [`window`]: a retry after the window is a new message; the window's bounds.
//! - [`malformed`]: bad keys are `bad_request` / `bad_frame`, and publish nothing.
//! - [`cut_reply`]: the fault proxy cuts Redis's reply after Redis ran the publish; the
//!   retry answers the first offset and the channel holds one copy.
//! - [`cost`]: what a key costs in Redis and in the embedded backplane (`measured:` lines).

use switchboard_testkit as support;

mod api;
mod client;
mod cost;
mod cut_reply;
mod malformed;
mod window;

use std::time::Duration;

use serde_json::{json, Value};
use support::cluster::{Redis, Store};
use support::{position, Client, Node};

/// How long "nothing else arrives" is watched for.
const QUIET: Duration = Duration::from_millis(300);

/// The rooms that keep history on every node here (other rooms keep none).
const HISTORY: &str = "room:hist-*=1000/3600";

/// Where a test's node keeps its channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    /// No `--redis-url`: the in-process backplane.
    Embedded,
    /// One `redis-server` of the test's own.
    Redis,
}

/// One `#[tokio::test]` per backend around `async fn $name(backend: Backend)`.
macro_rules! on_both_backends {
    ($name:ident) => {
        $crate::support::backend_tests!($name:
            on_embedded => $crate::Backend::Embedded,
            on_one_redis => $crate::Backend::Redis,
        );
    };
}
pub(crate) use on_both_backends;

/// A node on a backend (and its Redis, dropped after the node).
struct Scene {
    node: Node,
    redis: Option<Store>,
}

impl Scene {
    /// A node with rooms `room:hist-*` keeping history, plus `extra` arguments.
    async fn start(backend: Backend, extra: &[&str]) -> Scene {
        let redis = match backend {
            Backend::Embedded => None,
            Backend::Redis => Some(Store::start(Redis::One).await),
        };
        let url = redis.as_ref().map(Store::url);
        let mut args = vec!["--history", HISTORY];
        if let Some(url) = &url {
            args.extend(["--redis-url", url.as_str()]);
        }
        args.extend_from_slice(extra);
        Scene {
            node: support::start(&args).await,
            redis,
        }
    }
}

/// `POST /v1/publish` of `data` to `channel` with `key`; returns status and body.
async fn publish_keyed(node: &Node, channel: &str, key: &str, data: Value) -> (u16, Value) {
    node.api(
        "POST",
        "/v1/publish",
        Some(json!({"channel": channel, "data": data, "idempotency_key": key})),
    )
    .await
}

/// Asserts a 200 publish answer that is (or is not) a duplicate; returns its position.
fn answered(status: u16, body: &Value, duplicate: bool) -> (String, u64) {
    assert_eq!(status, 200, "{body}");
    if duplicate {
        assert_eq!(body["duplicate"], true, "a retry is a duplicate: {body}");
    } else {
        assert!(
            body.get("duplicate").is_none(),
            "a first publish carries no `duplicate`: {body}"
        );
    }
    position(body)
}

/// Every message `GET /v1/history/{channel}` holds.
async fn history(node: &Node, channel: &str) -> Vec<Value> {
    let (status, body) = node
        .api("GET", &format!("/v1/history/{channel}?limit=10000"), None)
        .await;
    assert_eq!(status, 200, "history of {channel}: {body}");
    body["messages"].as_array().expect("messages").clone()
}

/// The offsets `channel`'s history holds, oldest first.
async fn history_offsets(node: &Node, channel: &str) -> Vec<u64> {
    history(node, channel)
        .await
        .iter()
        .map(|m| m["offset"].as_u64().expect("offset"))
        .collect()
}

/// The next frame, which must be a message on `channel`.
async fn expect_message(c: &mut Client, channel: &str) -> Value {
    let m = c.recv().await;
    assert_eq!(
        (m["type"].as_str(), m["channel"].as_str()),
        (Some("message"), Some(channel)),
        "{m}"
    );
    m
}

/// Subscribes a JSON client to a room and consumes its own presence `join`.
async fn join(c: &mut Client, id: u64, room: &str) {
    let reply = c.subscribe(id, room).await;
    assert_eq!(reply["ok"], true, "{reply}");
    c.recv_until(|f| f["type"] == "presence").await;
}

/// A JSON client `publish` frame with a key; returns the reply.
async fn client_publish(c: &mut Client, id: u64, channel: &str, key: &str, data: Value) -> Value {
    c.send(json!({
        "type": "publish", "id": id, "channel": channel, "data": data, "idempotency_key": key,
    }))
    .await;
    c.reply(id).await
}

/// `switchboard_publishes_total` (absent = 0).
async fn publishes_total(node: &Node) -> f64 {
    node.metric_value("switchboard_publishes_total")
        .await
        .unwrap_or(0.0)
}
