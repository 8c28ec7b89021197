//! Live messages racing a replay (a room resume, a reconnect with `since`): neither
//! duplicated nor reordered.

use super::*;

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

// On the embedded backplane only: on Redis a subscriber's own `join` comes back through
// Redis pub/sub and may arrive after the `unsubscribe` this test sends right behind each
// `subscribe`, and is then dropped, so "one own join per subscribe" holds only where
// presence is delivered synchronously. The room replay racing live messages on Redis
// Cluster is covered by `redis_cluster::reshard` (rooms with history, slots moving).
#[tokio::test]
async fn live_messages_racing_a_room_resume_are_neither_duplicated_nor_reordered() {
    let env = start_with_config(
        Backplane::Memory,
        "rate_limit = 0\n[[history]]\npattern = \"room:hist*\"\nmax_messages = 10000\nmax_age_seconds = 3600\n",
    )
    .await;
    let node = env.node();
    let channel = "room:hist-race";
    let (mut alice, _) = node.connect("alice").await;
    let (epoch, _) = position(&subscribe_since(&mut alice, 1, channel, None).await);
    expect_own_join(&mut alice, "alice", channel).await;
    unsubscribe(&mut alice, 2, channel).await;
    publish_numbered(env.api(), channel, &epoch, 0, 20).await;

    // Resume again and again while the publishers run: each round subscribes with
    // `since` = the last offset read and unsubscribes at once, so every round's replay
    // meets live messages. Everything read, round after round, must be one sequence.
    let publishers = Publishers::start(env.api(), channel, RACE_PUBLISHERS, RACE_PER_PUBLISHER);
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

on_memory_and_cluster!(
    live_messages_racing_a_reconnect_with_since_are_neither_duplicated_nor_reordered
);
async fn live_messages_racing_a_reconnect_with_since_are_neither_duplicated_nor_reordered(
    backplane: Backplane,
) {
    let env = Env::start(backplane, &[]).await;
    let node = env.node();
    let channel = "user:alice";
    let (alice, welcome) = node.connect("alice").await;
    let (epoch, _) = position(&welcome);
    alice.close().await;
    node.wait_offline("alice").await;
    publish_numbered(env.api(), channel, &epoch, 0, 10).await;

    // Fewer than the inbox's 1,000 messages of history, so every resume recovers.
    let publishers = Publishers::start(env.api(), channel, RACE_PUBLISHERS, RACE_PER_PUBLISHER);
    let total = 10 + RACE_PUBLISHERS * RACE_PER_PUBLISHER;
    let mut f = Follower::new(channel, &epoch, 0);
    let mut rounds = 0;
    loop {
        let running = publishers.running();
        let (mut alice, welcome) = connect_since(node, "alice", Some((&epoch, f.last))).await;
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
