//! History and recovery (docs/protocol.md §5): resuming the personal channel with `?since=`,
//! the inbox and its acks, room history with `subscribe` + `since`, trimming, rooms
//! without history, and ordering while live messages race a replay.
//!
//! Most tests run twice ([`on_memory_and_cluster!`]): on one node with the embedded
//! backplane (`…::on_memory`), and on two nodes of a Redis Cluster (`…::on_redis_cluster`)
//! where clients connect to one node and the server-API publishes go through the other,
//! so history, acks and replays come from Redis streams spread over three shards.
//!
//! # Layout
//! - this file: helpers shared by the tests (positions, connecting and subscribing with
//!   `since`, the test's nodes on either backplane, a node with a config file).
//! - [`personal`]: the personal channel with `?since=`, and the inbox with its acks.
//! - [`rooms`]: room history with `subscribe` + `since`, trimming, rooms without history.
//! - [`races`]: live messages racing a replay.
//! - [`metrics`]: recovery results in `/metrics`.

use switchboard_testkit as support;

mod metrics;
mod personal;
mod races;
mod rooms;

use std::time::Duration;

use serde_json::{json, Value};
use support::cluster::{Cluster, Redis};
use support::{connect_since, position, Client, Node};

/// Where a test's history lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backplane {
    /// One node, embedded in-process backplane.
    Memory,
    /// Two nodes on the test binary's shared Redis Cluster.
    RedisCluster,
}

/// [`support::backend_tests!`] on the embedded backplane (`…::on_memory`) and on a Redis
/// Cluster (`…::on_redis_cluster`): the body takes a [`Backplane`].
macro_rules! on_memory_and_cluster {
    ($(#[$attr:meta])? $name:ident) => {
        support::backend_tests!($(#[$attr])? $name:
            on_memory => $crate::Backplane::Memory,
            on_redis_cluster => $crate::Backplane::RedisCluster,
        );
    };
}
use on_memory_and_cluster;

/// A test's nodes: the one its clients connect to and the one its server-API calls go
/// through — the same node on the embedded backplane, two nodes of a Redis Cluster.
struct Env {
    single: Option<Node>,
    cluster: Option<Cluster>,
}

impl Env {
    async fn start(backplane: Backplane, args: &[&str]) -> Env {
        match backplane {
            Backplane::Memory => Env {
                single: Some(support::start(args).await),
                cluster: None,
            },
            Backplane::RedisCluster => Env {
                single: None,
                cluster: Some(Cluster::start_on(Redis::Cluster, 2, args).await),
            },
        }
    }

    /// The node clients connect to.
    fn node(&self) -> &Node {
        match (&self.single, &self.cluster) {
            (Some(node), _) => node,
            (None, Some(c)) => &c.nodes[0],
            (None, None) => unreachable!("an Env has nodes"),
        }
    }

    /// The node server-API publishes go through.
    fn api(&self) -> &Node {
        match &self.cluster {
            Some(c) => &c.nodes[1],
            None => self.node(),
        }
    }
}

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

/// Starts the test's nodes with `toml` as their `--config` file.
async fn start_with_config(backplane: Backplane, toml: &str) -> Env {
    let path = support::write_config(toml);
    let env = Env::start(backplane, &["--config", path.to_str().expect("utf-8 path")]).await;
    let _ = std::fs::remove_file(&path);
    env
}
