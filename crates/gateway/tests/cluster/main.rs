//! Many nodes behave as one (issue 3): real multi-process clusters — one `redis-server`
//! and three gateway processes per test — for cross-node direct messages, room fan-out,
//! presence, the cluster-wide server API, a 10,000-message volume run, users hopping
//! between nodes, a SIGKILLed node, and the connection events stream read with a
//! consumer group.
//!
//! The tests marked [`on_both_redis!`](support::on_both_redis) run twice: on a
//! `redis-server` of their own (`…::on_one_redis`) and on a Redis Cluster shared by the
//! binary (`…::on_redis_cluster`: 3 primaries with a replica each, sharded pub/sub, every
//! test under its own key prefix). Volume and migration run on one Redis only (their
//! Redis Cluster counterparts under load are in the `redis_cluster` binary).
//!
//! # Layout
//! - this file: the settings and helpers shared by the tests (positions, connecting with
//!   `since`, rooms, presence and users through the server API).
//! - [`batch`]: one `/v1/batch` to users on every node and shard.
//! - [`delivery`]: a direct message crosses nodes once; a room message reaches every subscriber
//!   on every node once.
//! - [`drain_order`]: a drain answers what it read before closing, under CPU starvation.
//! - [`presence`]: presence joins and leaves span nodes.
//! - [`server_api`]: the server API of any node sees the whole cluster.
//! - [`volume`]: 10,000 publishes round-robin over three nodes.
//! - [`migration`]: users hopping between nodes while publishes race them.
//! - [`node_loss`]: a SIGKILLed node, and a node restarted under the same id.
//! - [`events`]: the connection events stream read with a consumer group.

use switchboard_testkit as support;

mod batch;
mod delivery;
mod drain_order;
mod events;
mod migration;
mod node_loss;
mod presence;
mod server_api;
mod volume;

use std::time::Duration;

use serde_json::{json, Value};
use support::cluster::poll;
use support::{connect_since, join_task, position, presence_frame, Client, Node};

/// How long "nothing else arrives" is watched for.
const QUIET: Duration = Duration::from_millis(300);

/// The next frame must be exactly `expected`.
async fn expect_frame(client: &mut Client, who: &str, expected: Value) {
    let got = client.recv().await;
    assert_eq!(got, expected, "{who}: unexpected frame");
}

/// Subscribes to `room` and checks the reply is the next frame and ok.
async fn subscribe(client: &mut Client, who: &str, id: u64, room: &str) {
    client
        .send(json!({"type": "subscribe", "id": id, "channel": room}))
        .await;
    let reply = client.recv().await;
    assert_eq!(reply["type"], "reply", "{who}: {reply}");
    assert_eq!(reply["id"], id, "{who}: {reply}");
    assert_eq!(reply["ok"], true, "{who} subscribing to {room}: {reply}");
}

/// `GET /v1/presence/{room}` on `node`, as (sorted users, connections).
async fn presence_of(node: &Node, room: &str) -> (Vec<String>, u64) {
    let (status, body) = node.api("GET", &format!("/v1/presence/{room}"), None).await;
    assert_eq!(
        status, 200,
        "presence of {room} on {}: {body}",
        node.node_id
    );
    assert_eq!(body["channel"], room, "{body}");
    let users: Vec<String> = body["users"]
        .as_array()
        .unwrap_or_else(|| panic!("no users: {body}"))
        .iter()
        .map(|u| u.as_str().expect("user ids are strings").to_owned())
        .collect();
    let mut sorted = users.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(users.len(), sorted.len(), "users are de-duplicated: {body}");
    (sorted, body["connections"].as_u64().expect("connections"))
}

/// Polls `node` until the presence of `room` is exactly `users` with `connections`.
async fn wait_presence(node: &Node, room: &str, users: &[&str], connections: u64) -> Duration {
    let mut want: Vec<String> = users.iter().map(|u| u.to_string()).collect();
    want.sort();
    let what = format!(
        "presence of {room} on {} = {want:?} with {connections} connections",
        node.node_id
    );
    poll(Duration::from_secs(5), &what, || {
        let want = want.clone();
        async move {
            let got = presence_of(node, room).await;
            if got == (want, connections) {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        }
    })
    .await
    .1
}

/// `GET /v1/users/{user}` on `node`: (online, [(conn_id, node)]).
async fn user_of(node: &Node, user: &str) -> (bool, Vec<(String, String)>) {
    let (status, body) = node.api("GET", &format!("/v1/users/{user}"), None).await;
    assert_eq!(status, 200, "user {user} on {}: {body}", node.node_id);
    let mut conns: Vec<(String, String)> = body["connections"]
        .as_array()
        .unwrap_or_else(|| panic!("no connections: {body}"))
        .iter()
        .map(|c| {
            assert!(c["since_ms"].as_u64().is_some(), "since_ms: {body}");
            (
                c["conn_id"].as_str().expect("conn_id").to_owned(),
                c["node"].as_str().expect("node").to_owned(),
            )
        })
        .collect();
    conns.sort();
    let online = body["online"].as_bool().expect("online");
    assert_eq!(online, !conns.is_empty(), "online iff connections: {body}");
    (online, conns)
}

/// Checks a user-channel message: channel, position, data and no `from`.
fn check_message(msg: &Value, who: &str, channel: &str, epoch: &str, offset: u64, data: &Value) {
    assert_eq!(
        msg["type"], "message",
        "{who}: expected message {offset}: {msg}"
    );
    assert_eq!(msg["channel"], channel, "{who}: {msg}");
    assert_eq!(
        position(msg),
        (epoch.to_owned(), offset),
        "{who}: position of {msg}"
    );
    assert_eq!(&msg["data"], data, "{who}: data of {msg}");
}
