//! Many nodes behave as one (issue 3): real multi-process clusters — one `redis-server`
//! and three gateway processes per test — for cross-node direct messages, room fan-out,
//! presence, the cluster-wide server API, a 10,000-message volume run, users hopping
//! between nodes, a SIGKILLed node, and the connection events stream read with a
//! consumer group.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{json, Value};
use support::cluster::{next_before, poll, read_entries, Cluster, Next, Resp};
use support::{Client, Node};
use tokio::time::Instant;

/// How long "nothing else arrives" is watched for.
const QUIET: Duration = Duration::from_millis(300);

/// Awaits a spawned task, re-raising its panic with the original message.
async fn join<T>(task: tokio::task::JoinHandle<T>) -> T {
    match task.await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// `(epoch, offset)` of a welcome, reply or message.
fn position(v: &Value) -> (String, u64) {
    let epoch = v["epoch"]
        .as_str()
        .unwrap_or_else(|| panic!("no epoch: {v}"));
    let offset = v["offset"]
        .as_u64()
        .unwrap_or_else(|| panic!("no offset: {v}"));
    (epoch.to_owned(), offset)
}

/// Connects as `user`, resuming the personal channel from `since` when given.
async fn connect_since(node: &Node, user: &str, since: Option<(&str, u64)>) -> (Client, Value) {
    let mut query = format!("token={}", support::token(user));
    if let Some((epoch, offset)) = since {
        query.push_str(&format!("&since={epoch}:{offset}"));
    }
    let mut client = node
        .connect_query(&query, &[])
        .await
        .unwrap_or_else(|r| panic!("{user} refused by {}: {r:?}", node.node_id));
    let welcome = client.recv().await;
    assert_eq!(welcome["type"], "welcome", "{user}: {welcome}");
    (client, welcome)
}

/// The next frame must be exactly `expected`.
async fn expect_frame(client: &mut Client, who: &str, expected: Value) {
    let got = client.recv().await;
    assert_eq!(got, expected, "{who}: unexpected frame");
}

fn presence(room: &str, user: &str, event: &str) -> Value {
    json!({"type": "presence", "channel": room, "user": user, "event": event})
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

// --- 1. Direct messages -------------------------------------------------------------

#[tokio::test]
async fn a_direct_message_crosses_nodes_once() {
    let c = Cluster::start(3, &[]).await;
    let (mut alice, welcome) = c.nodes[0].connect("alice").await;
    assert_eq!(welcome["node"], c.nodes[0].node_id, "{welcome}");
    let (epoch, top) = position(&welcome);
    assert_eq!(top, 0, "{welcome}");
    let (mut bob, welcome) = c.nodes[2].connect("bob").await;
    assert_eq!(welcome["node"], c.nodes[2].node_id, "{welcome}");

    bob.send(json!({"type": "publish", "id": 1, "channel": "user:alice", "data": {"text": "hi"}}))
        .await;
    let reply = bob.recv().await;
    assert_eq!(reply["type"], "reply", "{reply}");
    assert_eq!(reply["ok"], true, "bob's DM to alice: {reply}");
    assert_eq!(position(&reply), (epoch.clone(), 1), "{reply}");
    let msg = alice.recv().await;
    check_message(
        &msg,
        "alice",
        "user:alice",
        &epoch,
        1,
        &json!({"text": "hi"}),
    );
    assert_eq!(msg["from"], "bob", "from is set by the server: {msg}");
    alice.expect_silence(QUIET).await;
    bob.expect_silence(QUIET).await;

    // A second connection of alice on node 2: a server-API publish through node 3 is
    // routed to both nodes and each connection receives it once.
    let (mut alice2, welcome) = connect_since(&c.nodes[1], "alice", Some((&epoch, 1))).await;
    assert_eq!(welcome["recovered"], true, "{welcome}");
    let answer = c.nodes[2]
        .api_client()
        .publish("user:alice", json!({"n": 2}))
        .await;
    assert_eq!(position(&answer), (epoch.clone(), 2), "{answer}");
    assert_eq!(
        (&answer["online"], &answer["nodes"]),
        (&json!(true), &json!(2)),
        "alice is on two nodes: {answer}"
    );
    for (who, client) in [("alice@1", &mut alice), ("alice@2", &mut alice2)] {
        let msg = client.recv().await;
        check_message(&msg, who, "user:alice", &epoch, 2, &json!({"n": 2}));
        assert!(
            msg.get("from").is_none(),
            "API publishes carry no from: {msg}"
        );
        client.expect_silence(QUIET).await;
    }
    bob.expect_silence(Duration::ZERO).await;
}

// --- 2. Room fan-out ----------------------------------------------------------------

#[tokio::test]
async fn a_room_message_reaches_every_subscriber_on_every_node_once() {
    let c = Cluster::start(3, &[]).await;
    let room = "room:fanout";
    // Two subscribers on node 1, one on node 2, one on node 3.
    let placement = [("fa", 0), ("fd", 0), ("fb", 1), ("fc", 2)];
    let mut subs: Vec<(&str, Client)> = Vec::new();
    for (user, n) in &placement {
        let (mut client, _) = c.nodes[*n].connect(user).await;
        subscribe(&mut client, user, 1, room).await;
        subs.push((user, client));
        // Every subscriber so far (the new one included) sees the join.
        for (who, client) in &mut subs {
            expect_frame(client, who, presence(room, user, "join")).await;
        }
    }

    // A client publish on node 1, then (once it was answered) a server-API publish
    // through node 2. The publisher's own copy may come before or after its reply.
    let mut early = Vec::new();
    subs[0]
        .1
        .send(json!({"type": "publish", "id": 7, "channel": room, "data": {"n": 1}}))
        .await;
    loop {
        let frame = subs[0].1.recv().await;
        if frame["type"] == "reply" {
            assert_eq!(frame["id"], 7, "{frame}");
            assert_eq!(frame["ok"], true, "fa's publish: {frame}");
            assert_eq!(frame["offset"], 1, "{frame}");
            break;
        }
        early.push(frame);
    }
    let answer = c.nodes[1].api_client().publish(room, json!({"n": 2})).await;
    assert_eq!(answer["offset"], 2, "{answer}");
    assert_eq!(
        (&answer["online"], &answer["nodes"]),
        (&json!(true), &json!(3)),
        "the room has subscribers on 3 nodes: {answer}"
    );
    for (who, client) in &mut subs {
        let mut got = if *who == "fa" {
            std::mem::take(&mut early)
        } else {
            Vec::new()
        };
        while got.len() < 2 {
            let frame = client.recv().await;
            got.push(frame);
        }
        for frame in &got {
            assert_eq!(frame["type"], "message", "{who}: {frame}");
            assert_eq!(frame["channel"], room, "{who}: {frame}");
        }
        assert_eq!(got[0]["offset"], 1, "{who}: {}", got[0]);
        assert_eq!(got[0]["data"], json!({"n": 1}), "{who}: {}", got[0]);
        assert_eq!(got[0]["from"], "fa", "{who}: {}", got[0]);
        assert_eq!(got[1]["offset"], 2, "{who}: {}", got[1]);
        assert_eq!(got[1]["data"], json!({"n": 2}), "{who}: {}", got[1]);
        assert!(got[1].get("from").is_none(), "{who}: {}", got[1]);
    }
    // Nothing more: no copy from another node.
    for (_, client) in &mut subs {
        client.expect_silence(QUIET).await;
    }
}

// --- 3. Presence --------------------------------------------------------------------

#[tokio::test]
async fn presence_spans_nodes() {
    let c = Cluster::start(3, &[]).await;
    let room = "room:presence";
    let (mut alice, _) = c.nodes[0].connect("alice").await;
    subscribe(&mut alice, "alice", 1, room).await;
    expect_frame(&mut alice, "alice", presence(room, "alice", "join")).await;

    let (mut bob1, _) = c.nodes[1].connect("bob").await;
    subscribe(&mut bob1, "bob@2", 1, room).await;
    expect_frame(&mut bob1, "bob@2", presence(room, "bob", "join")).await;
    expect_frame(&mut alice, "alice", presence(room, "bob", "join")).await;

    // bob's second connection (node 3) is not a join: nobody hears of it.
    let (mut bob2, _) = c.nodes[2].connect("bob").await;
    subscribe(&mut bob2, "bob@3", 1, room).await;
    wait_presence(&c.nodes[2], room, &["alice", "bob"], 3).await;
    for node in &c.nodes {
        assert_eq!(
            presence_of(node, room).await,
            (vec!["alice".to_owned(), "bob".to_owned()], 3),
            "presence on {}",
            node.node_id
        );
    }

    let (mut carol, _) = c.nodes[2].connect("carol").await;
    subscribe(&mut carol, "carol", 1, room).await;
    for (who, client) in [
        ("carol", &mut carol),
        ("alice", &mut alice),
        ("bob@2", &mut bob1),
        ("bob@3", &mut bob2),
    ] {
        expect_frame(client, who, presence(room, "carol", "join")).await;
    }
    wait_presence(&c.nodes[0], room, &["alice", "bob", "carol"], 4).await;

    // bob leaves on node 2 but stays on node 3: no leave frame.
    bob1.send(json!({"type": "unsubscribe", "id": 2, "channel": room}))
        .await;
    let reply = bob1.recv().await;
    assert_eq!(
        (&reply["id"], &reply["ok"]),
        (&json!(2), &json!(true)),
        "{reply}"
    );
    wait_presence(&c.nodes[1], room, &["alice", "bob", "carol"], 3).await;

    // bob's last connection goes (socket closed, no unsubscribe): everyone left hears it.
    bob2.close().await;
    for (who, client) in [("alice", &mut alice), ("carol", &mut carol)] {
        expect_frame(client, who, presence(room, "bob", "leave")).await;
    }
    wait_presence(&c.nodes[1], room, &["alice", "carol"], 2).await;

    carol.close().await;
    expect_frame(&mut alice, "alice", presence(room, "carol", "leave")).await;
    wait_presence(&c.nodes[2], room, &["alice"], 1).await;
    alice.expect_silence(QUIET).await;
    // bob's first connection unsubscribed: it hears nothing of the room any more.
    bob1.expect_silence(QUIET).await;
}

// --- 4. Server API ------------------------------------------------------------------

#[tokio::test]
async fn the_server_api_sees_the_whole_cluster() {
    // A short lease makes heartbeats (and their connection counts) frequent.
    let c = Cluster::start(3, &["--lease-seconds", "3"]).await;
    let ids = c.node_ids();

    // /v1/nodes from any node lists the three live nodes.
    for node in &c.nodes {
        let (status, body) = node.api("GET", "/v1/nodes", None).await;
        assert_eq!(status, 200, "{body}");
        let mut listed: Vec<String> = body["nodes"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|n| {
                assert_eq!(n["draining"], false, "{n}");
                assert!(n["since_ms"].as_u64().is_some_and(|s| s > 0), "{n}");
                n["node"].as_str().expect("node").to_owned()
            })
            .collect();
        listed.sort();
        let mut want = ids.clone();
        want.sort();
        assert_eq!(listed, want, "/v1/nodes on {}: {body}", node.node_id);
    }

    // alice on nodes 2 and 3, seen from node 1.
    let (mut a2, w2) = c.nodes[1].connect("alice").await;
    let (epoch, _) = position(&w2);
    let (mut a3, w3) = connect_since(&c.nodes[2], "alice", Some((&epoch, 0))).await;
    let mut want = vec![
        (w2["conn_id"].as_str().unwrap().to_owned(), ids[1].clone()),
        (w3["conn_id"].as_str().unwrap().to_owned(), ids[2].clone()),
    ];
    want.sort();
    assert_eq!(
        user_of(&c.nodes[0], "alice").await,
        (true, want),
        "alice's connections seen from node 1"
    );
    assert_eq!(user_of(&c.nodes[0], "nobody").await, (false, vec![]));

    // Node status: each node's heartbeat reports its connection count.
    poll(
        Duration::from_secs(5),
        "/v1/nodes connection counts",
        || async {
            let (_, body) = c.nodes[0].api("GET", "/v1/nodes", None).await;
            let counts: HashMap<String, u64> = body["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|n| {
                    (
                        n["node"].as_str().unwrap_or_default().to_owned(),
                        n["connections"].as_u64().unwrap_or(99),
                    )
                })
                .collect();
            let want: HashMap<String, u64> = [
                (ids[0].clone(), 0),
                (ids[1].clone(), 1),
                (ids[2].clone(), 1),
            ]
            .into();
            if counts == want {
                Ok(())
            } else {
                Err(body.to_string())
            }
        },
    )
    .await;

    // History of alice's channel from any node.
    let api = c.nodes[0].api_client();
    for n in 1..=3u64 {
        let answer = api.publish("user:alice", json!({"n": n})).await;
        assert_eq!(answer["nodes"], 2, "{answer}");
    }
    for node in &c.nodes {
        let (status, body) = node.api("GET", "/v1/history/user:alice", None).await;
        assert_eq!(status, 200, "history on {}: {body}", node.node_id);
        assert_eq!(position(&body), (epoch.clone(), 3), "{body}");
        let messages = body["messages"].as_array().expect("messages");
        assert_eq!(messages.len(), 3, "history on {}: {body}", node.node_id);
        for (i, m) in messages.iter().enumerate() {
            let n = i as u64 + 1;
            check_message(m, &node.node_id, "user:alice", &epoch, n, &json!({"n": n}));
        }
        let (status, body) = node
            .api(
                "GET",
                &format!("/v1/history/user:alice?since={epoch}:2"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["recovered"], true, "{body}");
        assert_eq!(body["messages"].as_array().map(Vec::len), Some(1), "{body}");
    }
    for (who, client) in [("alice@2", &mut a2), ("alice@3", &mut a3)] {
        for n in 1..=3u64 {
            let msg = client.recv().await;
            check_message(&msg, who, "user:alice", &epoch, n, &json!({"n": n}));
        }
    }

    // A disconnect through node 1 closes the sockets on nodes 2 and 3.
    let (status, body) = c.nodes[0]
        .api(
            "POST",
            "/v1/users/alice/disconnect",
            Some(json!({"code": 4003, "reason": "kicked"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"connections": 2}));
    for (who, client) in [("alice@2", &mut a2), ("alice@3", &mut a3)] {
        let (code, reason, before) = client.expect_close().await;
        assert_eq!((code, reason.as_str()), (4003, "kicked"), "{who}");
        assert!(
            before.is_empty(),
            "{who}: nothing before the close: {before:?}"
        );
    }
    for node in &c.nodes {
        poll(
            Duration::from_secs(5),
            "alice offline everywhere",
            || async {
                match user_of(node, "alice").await {
                    (false, _) => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
    }
}

// --- 5. Volume ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_publishes_round_robin_lose_and_duplicate_nothing() {
    const USERS: usize = 200;
    const TOTAL: usize = 10_000;
    const PER_USER: u64 = (TOTAL / USERS) as u64;
    const PUBLISHERS: usize = 12;
    let c = Cluster::start(3, &[]).await;

    // 200 users spread over the 3 nodes.
    let clients = futures_util::future::join_all((0..USERS).map(|u| {
        let node = &c.nodes[u % 3];
        async move {
            let (client, welcome) = node.connect(&format!("vol{u}")).await;
            let (epoch, top) = position(&welcome);
            assert_eq!(top, 0, "{welcome}");
            (client, epoch)
        }
    }))
    .await;
    let epochs: Vec<String> = clients.iter().map(|(_, e)| e.clone()).collect();

    // Receivers: each user reads its 50 messages, then watches for extras.
    let published_all = Arc::new(AtomicBool::new(false));
    let mut receivers = Vec::new();
    for (u, (mut client, epoch)) in clients.into_iter().enumerate() {
        let published_all = published_all.clone();
        receivers.push(tokio::spawn(async move {
            let who = format!("vol{u}");
            let channel = format!("user:{who}");
            let deadline = Instant::now() + Duration::from_secs(40);
            let mut got: Vec<(u64, u64)> = Vec::new();
            while (got.len() as u64) < PER_USER {
                match next_before(&mut client, deadline, &who).await {
                    Next::Frame(m) => {
                        assert_eq!(m["type"], "message", "{who}: {m}");
                        assert_eq!(m["channel"], channel.as_str(), "{who}: {m}");
                        let (e, offset) = position(&m);
                        assert_eq!(e, epoch, "{who}: epoch changed: {m}");
                        got.push((offset, m["data"]["i"].as_u64().expect("data.i")));
                    }
                    other => panic!(
                        "{who}: {other:?} after {} of {PER_USER} messages",
                        got.len()
                    ),
                }
            }
            let got_all = Instant::now();
            // Duplicates would arrive after the last one; wait until every publish
            // was answered, then a grace period.
            while !published_all.load(Ordering::SeqCst) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            match next_before(&mut client, Instant::now() + QUIET, &who).await {
                Next::Deadline => {}
                other => panic!("{who}: more than {PER_USER} messages: {other:?}"),
            }
            (got, got_all)
        }));
    }

    // Publishers: message i goes through node i % 3 to user i % 200.
    let started = Instant::now();
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let apis: Vec<_> = c.nodes.iter().map(Node::api_client).collect();
        publishers.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for i in (p..TOTAL).step_by(PUBLISHERS) {
                let user = i % USERS;
                let answer = apis[i % 3]
                    .publish(&format!("user:vol{user}"), json!({"i": i}))
                    .await;
                assert_eq!(
                    (&answer["online"], &answer["nodes"]),
                    (&json!(true), &json!(1)),
                    "message {i} to vol{user}: {answer}"
                );
                answers.push((user, position(&answer), i as u64));
            }
            answers
        }));
    }
    let mut answered: Vec<BTreeMap<u64, u64>> = vec![BTreeMap::new(); USERS];
    for p in publishers {
        for (user, (epoch, offset), i) in join(p).await {
            assert_eq!(epoch, epochs[user], "vol{user}: epoch of message {i}");
            let dup = answered[user].insert(offset, i);
            assert!(dup.is_none(), "vol{user}: offset {offset} assigned twice");
        }
    }
    let publish_time = started.elapsed();
    published_all.store(true, Ordering::SeqCst);

    let mut last_delivery = started;
    let mut delivered = 0usize;
    for (u, r) in receivers.into_iter().enumerate() {
        let (got, done) = join(r).await;
        last_delivery = last_delivery.max(done);
        let offsets: Vec<u64> = got.iter().map(|(o, _)| *o).collect();
        assert_eq!(
            offsets,
            (1..=PER_USER).collect::<Vec<_>>(),
            "vol{u}: offsets must be 1..={PER_USER} in order"
        );
        let want: BTreeMap<u64, u64> = got.iter().copied().collect();
        assert_eq!(want, answered[u], "vol{u}: offset → message");
        let expected: BTreeSet<u64> = (u..TOTAL).step_by(USERS).map(|i| i as u64).collect();
        let seen: BTreeSet<u64> = got.iter().map(|(_, i)| *i).collect();
        assert_eq!(seen, expected, "vol{u}: exactly its messages");
        delivered += got.len();
    }
    assert_eq!(delivered, TOTAL);
    let secs = publish_time.as_secs_f64();
    println!(
        "volume: {TOTAL} publishes over 3 nodes to {USERS} users with {PUBLISHERS} \
         concurrent publishers in {:.2} s ({:.0}/s); all delivered within {:.2} s; \
         0 lost, 0 duplicated",
        secs,
        TOTAL as f64 / secs,
        (last_delivery - started).as_secs_f64(),
    );
}

// --- 6. Migration race --------------------------------------------------------------

/// What one hopping user observed.
#[derive(Default)]
struct Hops {
    /// offset → data of the first delivery.
    seen: BTreeMap<u64, Value>,
    hops: usize,
    /// Deliveries of an offset already seen on an earlier connection (allowed: the
    /// client dedupes by offset).
    redelivered: usize,
    /// Contract violations (duplicates or gaps within one connection, failed resumes).
    violations: Vec<String>,
}

/// One hopping user's client state.
struct Hopper {
    who: String,
    channel: String,
    epoch: String,
    /// The last offset seen (what a reconnect resumes from).
    last: u64,
    /// The last offset seen on the current connection.
    conn_last: u64,
    node: usize,
    out: Hops,
}

impl Hopper {
    /// Reads frames until `until`; false when the connection was closed by the server.
    async fn read_until(&mut self, client: &mut Client, until: Instant, node_id: &str) -> bool {
        loop {
            match next_before(client, until, &self.who).await {
                Next::Frame(m) => self.take(&m, node_id),
                Next::Deadline => return true,
                Next::Closed(code, reason) => {
                    self.out
                        .violations
                        .push(format!("on {node_id}: closed {code} {reason}"));
                    return false;
                }
            }
        }
    }

    fn take(&mut self, m: &Value, node_id: &str) {
        if m["type"] != "message" || m["channel"] != self.channel.as_str() {
            self.out
                .violations
                .push(format!("on {node_id}: unexpected frame {m}"));
            return;
        }
        let (epoch, offset) = position(m);
        if epoch != self.epoch {
            self.out.violations.push(format!("epoch changed: {m}"));
        }
        if offset != self.conn_last + 1 {
            self.out.violations.push(format!(
                "on {node_id}: offset {offset} after {} in one connection",
                self.conn_last
            ));
        }
        self.conn_last = self.conn_last.max(offset);
        self.last = self.last.max(offset);
        if self.out.seen.insert(offset, m["data"].clone()).is_some() {
            self.out.redelivered += 1;
        }
    }
}

/// Hops between the nodes (every 0–2 s) until `stop`, then reads until everything
/// published to the user arrived.
async fn hop_user(
    c: Arc<Cluster>,
    mut h: Hopper,
    mut client: Client,
    seed: u64,
    stop: Instant,
    published_all: Arc<AtomicBool>,
    published: Arc<AtomicU64>,
) -> Hops {
    let mut rng = StdRng::seed_from_u64(seed);
    while Instant::now() < stop {
        let dwell = Duration::from_millis(rng.random_range(0..=2000));
        let until = (Instant::now() + dwell).min(stop);
        let id = c.nodes[h.node].node_id.clone();
        if !h.read_until(&mut client, until, &id).await {
            return h.out;
        }
        if Instant::now() >= stop {
            break;
        }
        client.close().await;
        h.node = (h.node + rng.random_range(1..=2)) % 3;
        let (next, welcome) =
            connect_since(&c.nodes[h.node], &h.who, Some((&h.epoch, h.last))).await;
        if welcome["recovered"] != true || welcome["epoch"] != h.epoch.as_str() {
            h.out
                .violations
                .push(format!("resume from {} failed: {welcome}", h.last));
        }
        client = next;
        h.conn_last = h.last;
        h.out.hops += 1;
    }
    // The end: everything published must arrive on the last connection.
    let id = c.nodes[h.node].node_id.clone();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(published_all.load(Ordering::SeqCst) && h.last >= published.load(Ordering::SeqCst)) {
        if Instant::now() >= deadline {
            h.out.violations.push(format!(
                "gave up waiting at offset {} of {}",
                h.last,
                published.load(Ordering::SeqCst)
            ));
            return h.out;
        }
        let until = (Instant::now() + Duration::from_millis(100)).min(deadline);
        if !h.read_until(&mut client, until, &id).await {
            return h.out;
        }
    }
    // Nothing after the last one (a duplicate or a stray frame would show here).
    h.read_until(&mut client, Instant::now() + QUIET, &id).await;
    client.close().await;
    h.out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_hopping_between_nodes_lose_and_duplicate_nothing() {
    const USERS: usize = 20;
    const RUN: Duration = Duration::from_secs(12);
    let c = Arc::new(Cluster::start(3, &[]).await);
    let seed: u64 = rand::rng().random();
    println!("migration seed {seed}");

    // Every user connects once before anything is published.
    let mut first = Vec::new();
    for u in 0..USERS {
        let who = format!("hop{u}");
        let (client, welcome) = c.nodes[u % 3].connect(&who).await;
        let (epoch, top) = position(&welcome);
        assert_eq!(top, 0, "{welcome}");
        let hopper = Hopper {
            channel: format!("user:{who}"),
            who,
            epoch,
            last: 0,
            conn_last: 0,
            node: u % 3,
            out: Hops::default(),
        };
        first.push((hopper, client));
    }

    let stop = Instant::now() + RUN;
    let published_all = Arc::new(AtomicBool::new(false));
    let published: Vec<Arc<AtomicU64>> = (0..USERS).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let users: Vec<_> = first
        .into_iter()
        .enumerate()
        .map(|(u, (hopper, client))| {
            tokio::spawn(hop_user(
                c.clone(),
                hopper,
                client,
                seed ^ (u as u64 + 1),
                stop,
                published_all.clone(),
                published[u].clone(),
            ))
        })
        .collect();

    // Publishers: random users through random nodes until the run ends.
    let answers: Arc<Mutex<Vec<BTreeMap<u64, Value>>>> =
        Arc::new(Mutex::new(vec![BTreeMap::new(); USERS]));
    let count = Arc::new(AtomicUsize::new(0));
    let mut publishers = Vec::new();
    for p in 0..2u64 {
        let apis: Vec<_> = c.nodes.iter().map(Node::api_client).collect();
        let answers = answers.clone();
        let published = published.clone();
        let count = count.clone();
        publishers.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed.wrapping_add(1000 + p));
            while Instant::now() < stop {
                let u = rng.random_range(0..USERS);
                let k = count.fetch_add(1, Ordering::SeqCst);
                let data = json!({"k": k});
                let answer = apis[rng.random_range(0..3)]
                    .publish(&format!("user:hop{u}"), data.clone())
                    .await;
                let (_, offset) = position(&answer);
                {
                    let mut answers = answers.lock().unwrap();
                    assert!(
                        answers[u].insert(offset, data).is_none(),
                        "hop{u}: offset {offset} assigned twice"
                    );
                    published[u].fetch_max(offset, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(rng.random_range(2..=8))).await;
            }
        }));
    }
    for p in publishers {
        join(p).await;
    }
    published_all.store(true, Ordering::SeqCst);

    let answers = answers.lock().unwrap().clone();
    let mut total_hops = 0;
    let mut redelivered = 0;
    let mut problems = Vec::new();
    for (u, user) in users.into_iter().enumerate() {
        let h = join(user).await;
        total_hops += h.hops;
        redelivered += h.redelivered;
        let want: Vec<u64> = (1..=answers[u].len() as u64).collect();
        let offsets: Vec<u64> = answers[u].keys().copied().collect();
        assert_eq!(offsets, want, "hop{u}: publish offsets are contiguous");
        if h.seen != answers[u] {
            let missing: Vec<_> = answers[u]
                .keys()
                .filter(|o| !h.seen.contains_key(o))
                .collect();
            problems.push(format!(
                "hop{u}: saw {} distinct of {} published; missing {missing:?}",
                h.seen.len(),
                answers[u].len()
            ));
        }
        for v in h.violations {
            problems.push(format!("hop{u}: {v}"));
        }
    }
    let total = count.load(Ordering::SeqCst);
    println!(
        "migration: {USERS} users, {total_hops} hops in {RUN:?}, {total} messages, \
         {redelivered} re-deliveries across connections, {} problems",
        problems.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        total_hops >= USERS * 5,
        "too few hops to mean anything: {total_hops}"
    );
}

// --- 7. A node dies -----------------------------------------------------------------

#[tokio::test]
async fn a_sigkilled_nodes_users_go_offline_and_recover_elsewhere() {
    const LEASE: Duration = Duration::from_secs(2);
    let mut c = Cluster::start(3, &["--lease-seconds", "2"]).await;
    let room = "room:crash";
    let (mut w0, _) = c.nodes[0].connect("kw0").await;
    subscribe(&mut w0, "kw0", 1, room).await;
    expect_frame(&mut w0, "kw0", presence(room, "kw0", "join")).await;
    let (mut w1, _) = c.nodes[1].connect("kw1").await;
    subscribe(&mut w1, "kw1", 1, room).await;
    for (who, w) in [("kw1", &mut w1), ("kw0", &mut w0)] {
        expect_frame(w, who, presence(room, "kw1", "join")).await;
    }
    // The victims live on node 3.
    let victims = ["kv0", "kv1"];
    let mut conns = Vec::new();
    let mut epochs = Vec::new();
    // Kept open until the node dies under them.
    let mut doomed = Vec::new();
    for v in victims {
        let (mut client, welcome) = c.nodes[2].connect(v).await;
        epochs.push(position(&welcome).0);
        conns.push(welcome["conn_id"].as_str().unwrap().to_owned());
        subscribe(&mut client, v, 1, room).await;
        for (who, w) in [("kw0", &mut w0), ("kw1", &mut w1)] {
            expect_frame(w, who, presence(room, v, "join")).await;
        }
        doomed.push(client);
    }
    wait_presence(&c.nodes[0], room, &["kv0", "kv1", "kw0", "kw1"], 4).await;

    // Two messages each while alive (delivered; the victims resume after them).
    let api = c.nodes[0].api_client();
    for (i, v) in victims.iter().enumerate() {
        for n in 1..=2u64 {
            let a = api.publish(&format!("user:{v}"), json!({"n": n})).await;
            assert_eq!(position(&a), (epochs[i].clone(), n), "{a}");
        }
    }

    let dead = c.nodes[2].node_id.clone();
    c.kill(2).await;
    let killed = Instant::now();
    // Messages while the dead node still holds its lease, and after it was reaped.
    let api1 = c.nodes[1].api_client();
    for v in victims {
        api1.publish(&format!("user:{v}"), json!({"n": 3})).await;
    }

    let budget = LEASE + Duration::from_secs(2);
    for v in victims {
        let left = budget.saturating_sub(killed.elapsed());
        poll(left, &format!("{v} offline after SIGKILL"), || async {
            match user_of(&c.nodes[0], v).await {
                (false, _) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    }
    let offline_after = killed.elapsed();
    drop(doomed);
    wait_presence(&c.nodes[1], room, &["kw0", "kw1"], 2).await;
    let presence_after = killed.elapsed();
    assert!(
        presence_after <= budget,
        "presence cleared after {presence_after:?} (lease {LEASE:?})"
    );
    println!(
        "sigkill: users offline after {:.2} s, presence gone after {:.2} s (lease {} s)",
        offline_after.as_secs_f64(),
        presence_after.as_secs_f64(),
        LEASE.as_secs()
    );

    // The witnesses hear both leaves (in any order), once.
    for (who, w) in [("kw0", &mut w0), ("kw1", &mut w1)] {
        let mut left = BTreeSet::new();
        for _ in 0..2 {
            let f = w.recv().await;
            assert_eq!(
                (&f["type"], &f["channel"], &f["event"]),
                (&json!("presence"), &json!(room), &json!("leave")),
                "{who}: {f}"
            );
            left.insert(f["user"].as_str().unwrap().to_owned());
        }
        assert_eq!(
            left,
            victims.iter().map(|v| v.to_string()).collect(),
            "{who}"
        );
    }

    // The events stream has their synthetic disconnects.
    let events = c.events();
    for (v, conn) in victims.iter().zip(&conns) {
        let synthetic: Vec<_> = events
            .iter()
            .filter(|e| e.get("type") == "disconnect" && e.get("conn") == conn.as_str())
            .collect();
        assert_eq!(
            synthetic.len(),
            1,
            "{v}: one disconnect for {conn}: {events:?}"
        );
        let e = synthetic[0];
        assert_eq!(
            (
                e.get("user"),
                e.get("node"),
                e.get("synthetic"),
                e.get("reason")
            ),
            (*v, dead.as_str(), "1", "node_lost"),
            "{e:?}"
        );
        assert!(e.get("ts").parse::<u64>().is_ok(), "{e:?}");
    }

    // /v1/nodes no longer lists the dead node.
    let (_, body) = c.nodes[0].api("GET", "/v1/nodes", None).await;
    let listed: BTreeSet<&str> = body["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["node"].as_str().unwrap())
        .collect();
    let want: BTreeSet<&str> = [c.nodes[0].node_id.as_str(), c.nodes[1].node_id.as_str()].into();
    assert_eq!(listed, want, "{body}");

    // More messages while they are offline.
    for v in victims {
        let a = api1.publish(&format!("user:{v}"), json!({"n": 4})).await;
        assert_eq!(
            (&a["online"], &a["nodes"]),
            (&json!(false), &json!(0)),
            "{a}"
        );
    }
    // They come back on the survivors and recover everything after offset 2.
    for (i, v) in victims.iter().enumerate() {
        let (mut client, welcome) = connect_since(&c.nodes[i], v, Some((&epochs[i], 2))).await;
        assert_eq!(welcome["recovered"], true, "{v}: {welcome}");
        assert_eq!(position(&welcome), (epochs[i].clone(), 4), "{v}: {welcome}");
        for n in 3..=4u64 {
            let m = client.recv().await;
            check_message(&m, v, &format!("user:{v}"), &epochs[i], n, &json!({"n": n}));
        }
        client.expect_silence(QUIET).await;
    }
    w0.expect_silence(Duration::ZERO).await;
    w1.expect_silence(Duration::ZERO).await;
}

/// A node that crashes and comes back at once under the same id (a StatefulSet pod, a
/// systemd restart) renews its lease before it expires: the connections and presence of
/// its previous life must still go, and its new connections must not be confused with
/// them (connection ids restart from 1 in a new process).
#[tokio::test]
async fn a_node_restarted_under_the_same_id_drops_its_previous_connections() {
    const LEASE: Duration = Duration::from_secs(2);
    let mut c = Cluster::start(3, &["--lease-seconds", "2"]).await;
    let room = "room:reborn";
    let (mut w, _) = c.nodes[0].connect("rw").await;
    subscribe(&mut w, "rw", 1, room).await;
    expect_frame(&mut w, "rw", presence(room, "rw", "join")).await;
    let (mut ghost, welcome) = c.nodes[2].connect("ghost").await;
    let ghost_conn = welcome["conn_id"].as_str().unwrap().to_owned();
    subscribe(&mut ghost, "ghost", 1, room).await;
    expect_frame(&mut w, "rw", presence(room, "ghost", "join")).await;

    let id = c.nodes[2].node_id.clone();
    c.kill(2).await;
    let killed = Instant::now();
    drop(ghost);
    c.revive(2).await;
    let restarted_after = killed.elapsed();

    // A new user on the restarted node joins the room (its connection id may repeat the
    // ghost's): everyone hears the join.
    let (mut fresh, welcome) = c.nodes[2].connect("fresh").await;
    assert_eq!(welcome["node"], id.as_str(), "{welcome}");
    assert_ne!(
        welcome["conn_id"], ghost_conn,
        "connection ids must not repeat across restarts (events consumers key on them)"
    );
    subscribe(&mut fresh, "fresh", 1, room).await;
    expect_frame(&mut fresh, "fresh", presence(room, "fresh", "join")).await;

    let budget = LEASE + Duration::from_secs(2);
    let what = format!(
        "ghost offline after its node restarted under the same id (restart took {restarted_after:?})"
    );
    poll(budget.saturating_sub(killed.elapsed()), &what, || async {
        match user_of(&c.nodes[0], "ghost").await {
            (false, _) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    println!(
        "same-id restart: node back after {:.2} s, ghost offline after {:.2} s",
        restarted_after.as_secs_f64(),
        killed.elapsed().as_secs_f64()
    );
    wait_presence(&c.nodes[1], room, &["fresh", "rw"], 2).await;
    let mut frames = vec![w.recv().await, w.recv().await];
    frames.sort_by_key(|f| f["user"].as_str().unwrap_or_default().to_owned());
    assert_eq!(
        frames,
        [
            presence(room, "fresh", "join"),
            presence(room, "ghost", "leave")
        ],
        "rw hears the fresh join and the ghost's leave"
    );
    let disconnects: Vec<_> = c
        .events()
        .into_iter()
        .filter(|e| e.get("type") == "disconnect" && e.get("user") == "ghost")
        .collect();
    assert_eq!(disconnects.len(), 1, "{disconnects:?}");
    assert_eq!(disconnects[0].get("conn"), ghost_conn, "{disconnects:?}");
    assert_eq!(disconnects[0].get("synthetic"), "1", "{disconnects:?}");
    w.expect_silence(QUIET).await;
}

// --- 8. Connection events -----------------------------------------------------------

#[tokio::test]
async fn connection_events_are_read_with_a_consumer_group() {
    let stream = "backend:events";
    let c = Cluster::start(3, &["--events-stream", stream]).await;
    assert_eq!(c.events_stream, stream);
    assert_eq!(
        c.redis_cmd(&["XGROUP", "CREATE", stream, "workers", "$", "MKSTREAM"]),
        Resp::Simple("OK".into())
    );
    let before_ms = support::now_secs() * 1000 - 1000;

    let mut clients = Vec::new();
    let mut expected: Vec<(&str, String, String, &str)> = Vec::new();
    for (i, user) in ["ev0", "ev1", "ev2"].into_iter().enumerate() {
        let (client, welcome) = c.nodes[i].connect(user).await;
        let conn = welcome["conn_id"].as_str().unwrap().to_owned();
        expected.push(("connect", user.to_owned(), conn, ""));
        clients.push((user, i, client));
    }
    let (user2, n2, ev2) = clients.pop().unwrap();
    for (user, i, client) in clients {
        client.close().await;
        c.nodes[i].wait_offline(user).await;
        let conn = expected.iter().find(|e| e.1 == user).unwrap().2.clone();
        expected.push(("disconnect", user.to_owned(), conn, "closed"));
    }

    let read_new = |consumer: &str| {
        c.redis_cmd(&[
            "XREADGROUP",
            "GROUP",
            "workers",
            consumer,
            "COUNT",
            "100",
            "STREAMS",
            stream,
            ">",
        ])
    };
    let check = |entries: &[support::cluster::StreamEntry],
                 want: &[(&str, String, String, &str)]| {
        let mut got: Vec<(String, String, String, String)> = Vec::new();
        for e in entries {
            for f in ["type", "user", "conn", "node", "ts"] {
                assert!(!e.get(f).is_empty(), "{f} missing in {e:?}");
            }
            let ts: u64 = e.get("ts").parse().expect("ts in ms");
            assert!(
                ts >= before_ms && ts <= support::now_secs() * 1000 + 1000,
                "{e:?}"
            );
            let conn = e.get("conn");
            let (user, node) = (e.get("user"), e.get("node"));
            let i = ["ev0", "ev1", "ev2"]
                .iter()
                .position(|u| *u == user)
                .expect("a test user");
            assert_eq!(node, c.nodes[i].node_id, "{e:?}");
            got.push((
                e.get("type").into(),
                user.into(),
                conn.into(),
                e.get("reason").into(),
            ));
        }
        let mut got_sorted = got.clone();
        got_sorted.sort();
        let mut want: Vec<(String, String, String, String)> = want
            .iter()
            .map(|(t, u, c, r)| (t.to_string(), u.clone(), c.clone(), r.to_string()))
            .collect();
        want.sort();
        assert_eq!(got_sorted, want, "events read: {entries:?}");
        // Per connection, the connect comes first.
        for (t, _, conn, _) in &got {
            if t == "disconnect" {
                let d = got.iter().position(|g| &g.2 == conn && g.0 == "disconnect");
                let c = got.iter().position(|g| &g.2 == conn && g.0 == "connect");
                assert!(c < d, "connect before disconnect for {conn}: {got:?}");
            }
        }
    };

    let entries = read_entries(&read_new("w1"));
    check(&entries, &expected);
    let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();

    // Until acked they stay pending: at-least-once, redelivered to the consumer.
    let pending = c.redis_cmd(&["XPENDING", stream, "workers"]);
    assert_eq!(pending.items()[0], Resp::Int(5), "{pending:?}");
    let again = read_entries(&c.redis_cmd(&[
        "XREADGROUP",
        "GROUP",
        "workers",
        "w1",
        "STREAMS",
        stream,
        "0",
    ]));
    assert_eq!(
        again.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ids,
        "pending entries are redelivered"
    );
    let mut ack = vec!["XACK", stream, "workers"];
    ack.extend(&ids);
    assert_eq!(c.redis_cmd(&ack), Resp::Int(5));
    assert!(read_entries(&c.redis_cmd(&[
        "XREADGROUP",
        "GROUP",
        "workers",
        "w1",
        "STREAMS",
        stream,
        "0",
    ]))
    .is_empty());
    assert!(read_entries(&read_new("w2")).is_empty(), "nothing new");

    // One more disconnect: exactly one new entry, for another consumer of the group.
    let conn2 = expected.iter().find(|e| e.1 == user2).unwrap().2.clone();
    ev2.close().await;
    c.nodes[n2].wait_offline(user2).await;
    let entries = read_entries(&read_new("w2"));
    check(
        &entries,
        &[("disconnect", user2.to_owned(), conn2, "closed")],
    );
    assert_eq!(
        c.redis_cmd(&["XACK", stream, "workers", &entries[0].id]),
        Resp::Int(1)
    );
    let pending = c.redis_cmd(&["XPENDING", stream, "workers"]);
    assert_eq!(pending.items()[0], Resp::Int(0), "{pending:?}");
}
