//! History and recovery (PROTOCOL.md §5): resuming the personal channel with `?since=`,
//! the inbox and its acks, room history with `subscribe` + `since`, trimming, rooms
//! without history, and ordering while live messages race a replay.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{Client, Node};

/// How long "nothing else arrives" is watched for.
const QUIET: Duration = Duration::from_millis(300);

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

/// Connects as `user` resuming from `since` (`None`: no `since` at all).
async fn connect_since(node: &Node, user: &str, since: Option<(&str, u64)>) -> (Client, Value) {
    let mut query = format!("token={}", support::token(user));
    if let Some((epoch, offset)) = since {
        query.push_str(&format!("&since={epoch}:{offset}"));
    }
    let mut client = node.connect_query(&query, &[]).await.expect("connect");
    let welcome = client.recv().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (client, welcome)
}

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

#[tokio::test]
async fn personal_channel_resumes_with_since() {
    let node = support::start(&[]).await;
    let (alice, welcome) = node.connect("alice").await;
    assert!(
        welcome.get("recovered").is_none(),
        "no since, no recovered: {welcome}"
    );
    let (epoch, offset) = position(&welcome);
    assert_eq!(offset, 0);
    alice.close().await;
    node.wait_offline("alice").await;

    publish_numbered(&node, "user:alice", &epoch, offset, 50).await;

    let (mut alice, welcome) = connect_since(&node, "alice", Some((&epoch, offset))).await;
    assert_eq!(welcome["recovered"], true, "{welcome}");
    assert_eq!(position(&welcome), (epoch.clone(), 50), "{welcome}");
    expect_messages(&mut alice, "user:alice", &epoch, 1, 50).await;
    alice.expect_silence(QUIET).await;

    // Resuming from the middle replays only the rest.
    alice.close().await;
    node.wait_offline("alice").await;
    let (mut alice, welcome) = connect_since(&node, "alice", Some((&epoch, 45))).await;
    assert_eq!(welcome["recovered"], true, "{welcome}");
    expect_messages(&mut alice, "user:alice", &epoch, 46, 5).await;
    alice.expect_silence(QUIET).await;
}

#[tokio::test]
async fn since_in_another_epoch_or_beyond_the_top_is_not_recovered() {
    let node = support::start(&[]).await;
    let api = node.api_client();
    let first = api.publish("user:bob", json!({"n": 1})).await;
    assert_eq!(first["online"], false, "{first}");
    let (epoch, _) = position(&first);
    publish_numbered(&node, "user:bob", &epoch, 1, 2).await;

    for (since_epoch, since_offset) in [
        ("e0nope", 1),
        (epoch.as_str(), 4),
        (epoch.as_str(), u64::MAX),
    ] {
        let (mut bob, welcome) =
            connect_since(&node, "bob", Some((since_epoch, since_offset))).await;
        assert_eq!(
            welcome["recovered"], false,
            "since {since_epoch}:{since_offset}: {welcome}"
        );
        assert_eq!(position(&welcome), (epoch.clone(), 3), "{welcome}");
        bob.expect_silence(QUIET).await;
        bob.close().await;
        node.wait_offline("bob").await;
    }

    // At the top exactly nothing is missing.
    let (mut bob, welcome) = connect_since(&node, "bob", Some((&epoch, 3))).await;
    assert_eq!(welcome["recovered"], true, "{welcome}");
    bob.expect_silence(QUIET).await;
    bob.close().await;

    // A malformed `since` is refused before the upgrade.
    let refused = node
        .connect_query(
            &format!("token={}&since=no-offset", support::token("bob")),
            &[],
        )
        .await
        .err()
        .expect("a malformed since must be refused");
    assert_eq!(refused.status, 400);
    assert_eq!(refused.body["error"], "bad_request", "{:?}", refused.body);
}

#[tokio::test]
async fn inbox_delivers_after_the_last_ack() {
    let node = support::start(&[]).await;
    let api = node.api_client();
    let first = api.publish("user:carol", json!({"n": 1})).await;
    assert_eq!(
        (&first["online"], &first["nodes"]),
        (&json!(false), &json!(0)),
        "{first}"
    );
    let (epoch, _) = position(&first);
    publish_numbered(&node, "user:carol", &epoch, 1, 4).await;

    // Never acked: the whole inbox.
    let (mut carol, welcome) = connect_since(&node, "carol", None).await;
    assert!(welcome.get("recovered").is_none(), "{welcome}");
    assert_eq!(position(&welcome), (epoch.clone(), 5), "{welcome}");
    expect_messages(&mut carol, "user:carol", &epoch, 1, 5).await;
    carol.expect_silence(QUIET).await;
    carol
        .send(json!({"type": "ack", "channel": "user:carol", "offset": 3}))
        .await;
    // Acking another user's channel is an error and changes nothing.
    carol
        .send(json!({"type": "ack", "channel": "user:dave", "offset": 5}))
        .await;
    let error = carol.recv().await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["code"], "bad_channel", "{error}");
    round_trip(&mut carol, 1).await;
    carol.close().await;
    node.wait_offline("carol").await;

    // Acked up to 3: only 4 and 5 come back.
    let (mut carol, _) = connect_since(&node, "carol", None).await;
    expect_messages(&mut carol, "user:carol", &epoch, 4, 2).await;
    carol.expect_silence(QUIET).await;
    // An ack never moves backwards.
    carol
        .send(json!({"type": "ack", "channel": "user:carol", "offset": 1, "epoch": epoch}))
        .await;
    round_trip(&mut carol, 2).await;
    carol.close().await;
    node.wait_offline("carol").await;

    let (mut carol, _) = connect_since(&node, "carol", None).await;
    expect_messages(&mut carol, "user:carol", &epoch, 4, 2).await;
    carol.expect_silence(QUIET).await;
    carol
        .send(json!({"type": "ack", "channel": "user:carol", "offset": 5}))
        .await;
    round_trip(&mut carol, 3).await;
    carol.close().await;
    node.wait_offline("carol").await;

    // Everything acked: nothing is replayed, and new messages still are.
    let (mut carol, welcome) = connect_since(&node, "carol", None).await;
    assert_eq!(position(&welcome), (epoch.clone(), 5), "{welcome}");
    carol.expect_silence(QUIET).await;
    carol.close().await;
    node.wait_offline("carol").await;
    publish_numbered(&node, "user:carol", &epoch, 5, 1).await;
    let (mut carol, _) = connect_since(&node, "carol", None).await;
    expect_messages(&mut carol, "user:carol", &epoch, 6, 1).await;
    carol.expect_silence(QUIET).await;
}

/// A replay is not live traffic: a connecting client has had no chance to be slow, so
/// an inbox larger than the outbound queue must still arrive (not end in 4008).
#[tokio::test]
async fn an_inbox_larger_than_the_outbound_queue_is_still_delivered() {
    let node = support::start(&["--outbound-queue-frames", "64"]).await;
    let first = node
        .api_client()
        .publish("user:frank", json!({"n": 1}))
        .await;
    let (epoch, _) = position(&first);
    publish_numbered(&node, "user:frank", &epoch, 1, 99).await;

    let mut frank = node
        .connect_query(&format!("token={}", support::token("frank")), &[])
        .await
        .expect("connect");
    let welcome = frank.recv().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(position(&welcome), (epoch.clone(), 100), "{welcome}");
    expect_messages(&mut frank, "user:frank", &epoch, 1, 100).await;
    frank.expect_silence(QUIET).await;
    frank.close().await;
    node.wait_offline("frank").await;

    let (mut frank, welcome) = connect_since(&node, "frank", Some((&epoch, 0))).await;
    assert_eq!(welcome["recovered"], true, "{welcome}");
    expect_messages(&mut frank, "user:frank", &epoch, 1, 100).await;
    frank.expect_silence(QUIET).await;
}

#[tokio::test]
async fn room_with_history_resumes_with_since() {
    let node = start_with_config(
        "room-history",
        "[[history]]\npattern = \"room:hist*\"\nmax_messages = 100\nmax_age_seconds = 3600\n",
    )
    .await;
    let (mut alice, _) = node.connect("alice").await;
    let reply = subscribe_since(&mut alice, 1, "room:hist1", None).await;
    assert!(
        reply.get("recovered").is_none(),
        "no since, no recovered: {reply}"
    );
    let (epoch, offset) = position(&reply);
    assert_eq!(offset, 0);
    expect_own_join(&mut alice, "alice", "room:hist1").await;
    unsubscribe(&mut alice, 2, "room:hist1").await;

    publish_numbered(&node, "room:hist1", &epoch, 0, 20).await;
    alice.expect_silence(QUIET).await;

    let reply = subscribe_since(&mut alice, 3, "room:hist1", Some((&epoch, 0))).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    assert_eq!(position(&reply), (epoch.clone(), 20), "{reply}");
    expect_messages(&mut alice, "room:hist1", &epoch, 1, 20).await;
    expect_own_join(&mut alice, "alice", "room:hist1").await;
    alice.expect_silence(QUIET).await;

    // Live messages continue the same sequence.
    publish_numbered(&node, "room:hist1", &epoch, 20, 1).await;
    expect_messages(&mut alice, "room:hist1", &epoch, 21, 1).await;

    // Resuming from the middle.
    unsubscribe(&mut alice, 4, "room:hist1").await;
    let reply = subscribe_since(&mut alice, 5, "room:hist1", Some((&epoch, 17))).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    expect_messages(&mut alice, "room:hist1", &epoch, 18, 4).await;
    expect_own_join(&mut alice, "alice", "room:hist1").await;
    alice.expect_silence(QUIET).await;
}

#[tokio::test]
async fn room_history_trimmed_by_count_is_not_recovered() {
    let node = start_with_config(
        "room-trim",
        "[[history]]\npattern = \"room:hist*\"\nmax_messages = 5\nmax_age_seconds = 3600\n",
    )
    .await;
    let (mut alice, _) = node.connect("alice").await;
    let (epoch, _) = position(&subscribe_since(&mut alice, 1, "room:hist-trim", None).await);
    expect_own_join(&mut alice, "alice", "room:hist-trim").await;
    unsubscribe(&mut alice, 2, "room:hist-trim").await;
    publish_numbered(&node, "room:hist-trim", &epoch, 0, 20).await;

    // Only 16..=20 are kept: 0 and 14 would need trimmed messages.
    let mut id = 3;
    for since in [0, 14] {
        let reply = subscribe_since(&mut alice, id, "room:hist-trim", Some((&epoch, since))).await;
        assert_eq!(reply["recovered"], false, "since {since}: {reply}");
        assert_eq!(position(&reply), (epoch.clone(), 20), "{reply}");
        expect_own_join(&mut alice, "alice", "room:hist-trim").await;
        alice.expect_silence(QUIET).await;
        unsubscribe(&mut alice, id + 1, "room:hist-trim").await;
        id += 2;
    }
    let reply = subscribe_since(&mut alice, id, "room:hist-trim", Some((&epoch, 15))).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    expect_messages(&mut alice, "room:hist-trim", &epoch, 16, 5).await;
    expect_own_join(&mut alice, "alice", "room:hist-trim").await;
    alice.expect_silence(QUIET).await;
}

#[tokio::test]
async fn room_without_history_recovers_only_at_the_top() {
    let node = support::start(&[]).await;
    let (mut alice, _) = node.connect("alice").await;
    let (epoch, _) = position(&subscribe_since(&mut alice, 1, "room:plain", None).await);
    expect_own_join(&mut alice, "alice", "room:plain").await;
    publish_numbered(&node, "room:plain", &epoch, 0, 3).await;
    expect_messages(&mut alice, "room:plain", &epoch, 1, 3).await;
    unsubscribe(&mut alice, 2, "room:plain").await;

    let reply = subscribe_since(&mut alice, 3, "room:plain", Some((&epoch, 3))).await;
    assert_eq!(
        reply["recovered"], true,
        "at the top nothing is missing: {reply}"
    );
    assert_eq!(position(&reply), (epoch.clone(), 3), "{reply}");
    expect_own_join(&mut alice, "alice", "room:plain").await;
    alice.expect_silence(QUIET).await;
    unsubscribe(&mut alice, 4, "room:plain").await;

    let mut id = 5;
    for (since_epoch, since_offset) in [(epoch.as_str(), 1), (epoch.as_str(), 0), ("e0nope", 3)] {
        let reply = subscribe_since(
            &mut alice,
            id,
            "room:plain",
            Some((since_epoch, since_offset)),
        )
        .await;
        assert_eq!(
            reply["recovered"], false,
            "since {since_epoch}:{since_offset}: {reply}"
        );
        assert_eq!(position(&reply), (epoch.clone(), 3), "{reply}");
        expect_own_join(&mut alice, "alice", "room:plain").await;
        alice.expect_silence(QUIET).await;
        unsubscribe(&mut alice, id + 1, "room:plain").await;
        id += 2;
    }
}

/// Publishers racing a reader: `tasks` server-API clients, each publishing `per`
/// messages to `channel` as fast as the node answers.
struct Publishers(Vec<tokio::task::JoinHandle<()>>);

impl Publishers {
    fn start(node: &Node, channel: &str, tasks: u64, per: u64) -> Publishers {
        Publishers(
            (0..tasks)
                .map(|task| {
                    let api = node.api_client();
                    let channel = channel.to_owned();
                    tokio::spawn(async move {
                        for i in 0..per {
                            api.publish(&channel, json!({"task": task, "i": i})).await;
                        }
                    })
                })
                .collect(),
        )
    }

    fn running(&self) -> bool {
        self.0.iter().any(|t| !t.is_finished())
    }

    async fn join(self) {
        for task in self.0 {
            task.await.expect("publisher");
        }
    }
}

/// Where a reader stands in a channel while live traffic races its resumes.
struct Follower {
    channel: &'static str,
    epoch: String,
    /// The newest offset received.
    last: u64,
    /// Message ids seen: none may come twice.
    ids: std::collections::HashSet<String>,
    /// The subscriber's own presence joins seen (room channels).
    joins: u64,
}

impl Follower {
    fn new(channel: &'static str, epoch: &str, last: u64) -> Follower {
        Follower {
            channel,
            epoch: epoch.to_owned(),
            last,
            ids: Default::default(),
            joins: 0,
        }
    }

    /// Checks one frame: a message must continue the sequence after `last` (contiguous,
    /// no duplicate, no reordering); the only other frame allowed is the reader's own
    /// presence join.
    fn check(&mut self, frame: &Value) {
        if frame["type"] == "presence" {
            assert_eq!(
                frame,
                &json!({"type": "presence", "channel": self.channel, "user": "alice", "event": "join"})
            );
            self.joins += 1;
            return;
        }
        assert_eq!(frame["type"], "message", "{frame}");
        assert_eq!(frame["channel"], self.channel, "{frame}");
        let expected = (self.epoch.clone(), self.last + 1);
        assert_eq!(position(frame), expected, "after {}: {frame}", self.last);
        let id = frame["id"].as_str().expect("message id").to_owned();
        assert!(self.ids.insert(id), "message id seen twice: {frame}");
        self.last += 1;
    }
}

/// Publishers in the race tests, and messages each publishes.
const RACE_PUBLISHERS: u64 = 4;
const RACE_PER_PUBLISHER: u64 = 240;

#[tokio::test]
async fn live_messages_racing_a_room_resume_are_neither_duplicated_nor_reordered() {
    let node = start_with_config(
        "room-race",
        "rate_limit = 0\n[[history]]\npattern = \"room:hist*\"\nmax_messages = 10000\nmax_age_seconds = 3600\n",
    )
    .await;
    let channel = "room:hist-race";
    let (mut alice, _) = node.connect("alice").await;
    let (epoch, _) = position(&subscribe_since(&mut alice, 1, channel, None).await);
    expect_own_join(&mut alice, "alice", channel).await;
    unsubscribe(&mut alice, 2, channel).await;
    publish_numbered(&node, channel, &epoch, 0, 20).await;

    // Resume again and again while the publishers run: each round subscribes with
    // `since` = the last offset read and unsubscribes at once, so every round's replay
    // meets live messages. Everything read, round after round, must be one sequence.
    let publishers = Publishers::start(&node, channel, RACE_PUBLISHERS, RACE_PER_PUBLISHER);
    let total = 20 + RACE_PUBLISHERS * RACE_PER_PUBLISHER;
    let mut f = Follower::new(channel, &epoch, 0);
    let mut id = 3;
    let mut rounds = 0;
    loop {
        let running = publishers.running();
        let since = json!({"epoch": epoch, "offset": f.last});
        alice
            .send(json!({"type": "subscribe", "id": id, "channel": channel, "since": since}))
            .await;
        alice
            .send(json!({"type": "unsubscribe", "id": id + 1, "channel": channel}))
            .await;
        let reply = alice.recv().await;
        assert_eq!(
            (&reply["id"], &reply["ok"]),
            (&json!(id), &json!(true)),
            "{reply}"
        );
        assert_eq!(reply["recovered"], true, "round {rounds}: {reply}");
        let (_, top) = position(&reply);
        // The replay up to `top`, live messages after it, the own join; then the
        // unsubscribe reply, after which nothing of the room may come.
        loop {
            let v = alice.recv().await;
            if v["type"] == "reply" {
                assert_eq!((&v["id"], &v["ok"]), (&json!(id + 1), &json!(true)), "{v}");
                break;
            }
            f.check(&v);
        }
        assert!(
            f.last >= top,
            "round {rounds}: the replay stopped at {} < {top}",
            f.last
        );
        rounds += 1;
        assert_eq!(f.joins, rounds, "one own join per subscribe");
        id += 2;
        if !running {
            break;
        }
    }
    publishers.join().await;
    assert!(rounds >= 10, "only {rounds} resumes raced the publishers");
    assert_eq!(f.last, total, "the last round read everything");
    let reply = subscribe_since(&mut alice, id, channel, Some((&epoch, f.last))).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    assert_eq!(position(&reply), (epoch.clone(), total), "{reply}");
    expect_own_join(&mut alice, "alice", channel).await;
    alice.expect_silence(QUIET).await;
}

#[tokio::test]
async fn live_messages_racing_a_reconnect_with_since_are_neither_duplicated_nor_reordered() {
    let node = support::start(&[]).await;
    let channel = "user:alice";
    let (alice, welcome) = node.connect("alice").await;
    let (epoch, _) = position(&welcome);
    alice.close().await;
    node.wait_offline("alice").await;
    publish_numbered(&node, channel, &epoch, 0, 10).await;

    // Fewer than the inbox's 1,000 messages of history, so every resume recovers.
    let publishers = Publishers::start(&node, channel, RACE_PUBLISHERS, RACE_PER_PUBLISHER);
    let total = 10 + RACE_PUBLISHERS * RACE_PER_PUBLISHER;
    let mut f = Follower::new(channel, &epoch, 0);
    let mut rounds = 0;
    loop {
        let running = publishers.running();
        let (mut alice, welcome) = connect_since(&node, "alice", Some((&epoch, f.last))).await;
        assert_eq!(welcome["recovered"], true, "round {rounds}: {welcome}");
        let (_, top) = position(&welcome);
        // Everything queued before the pong: the replay, then live messages.
        alice.send(json!({"type": "ping", "id": 1})).await;
        loop {
            let v = alice.recv().await;
            if v["type"] == "pong" {
                break;
            }
            f.check(&v);
        }
        assert!(
            f.last >= top,
            "round {rounds}: the replay stopped at {} < {top}",
            f.last
        );
        // Leave mid-stream; the next connection resumes after the last message read.
        alice.close().await;
        rounds += 1;
        if !running {
            break;
        }
    }
    publishers.join().await;
    assert!(rounds >= 10, "only {rounds} resumes raced the publishers");
    assert_eq!(f.last, total, "the last round read everything");
    assert_eq!(f.joins, 0, "personal channels have no presence");
}

#[tokio::test]
async fn recovery_results_are_counted_in_metrics() {
    let node = support::start(&[]).await;
    let (alice, welcome) = node.connect("alice").await;
    let (epoch, _) = position(&welcome);
    alice.close().await;

    let (alice, welcome) = connect_since(&node, "alice", Some((&epoch, 0))).await;
    assert_eq!(welcome["recovered"], true, "{welcome}");
    alice.close().await;
    for since in [("e0nope", 0), (epoch.as_str(), 7)] {
        let (alice, welcome) = connect_since(&node, "alice", Some(since)).await;
        assert_eq!(welcome["recovered"], false, "{welcome}");
        alice.close().await;
    }
    let (mut alice, _) = node.connect("alice").await;
    let reply = subscribe_since(&mut alice, 1, "room:m", Some(("e0nope", 0))).await;
    assert_eq!(reply["recovered"], false, "{reply}");

    assert_eq!(
        node.metric_value("switchboard_recovery_total{result=\"recovered\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        node.metric_value("switchboard_recovery_total{result=\"not_recovered\"}")
            .await,
        Some(3.0)
    );
}
