//! Cursors: replay then live without duplicates, paced replays, gap holds and repairs.

use super::*;
use switchboard_proto::Payload;

fn msg(channel: &str, epoch: &str, offset: u64) -> Arc<Message> {
    Arc::new(Message {
        channel: channel.into(),
        id: format!("m-{offset}"),
        from: None,
        epoch: epoch.into(),
        offset,
        ts: 0,
        data: Payload::Json(Arc::from("1")),
    })
}

fn conn(frames: usize) -> ConnHandle {
    ConnHandle::new(
        1,
        "c-1".into(),
        "alice".into(),
        Encoding::Json,
        0,
        Outbound::new(frames, 1 << 20),
        u64::MAX,
    )
}

/// Offsets of the message frames queued so far (draining the queue).
fn queued(c: &ConnHandle) -> Vec<u64> {
    let mut items = Vec::new();
    c.outbound.take(&mut items, usize::MAX);
    items
        .iter()
        .filter_map(|i| {
            let v: serde_json::Value = serde_json::from_slice(&i.data).ok()?;
            (v["type"] == "message").then(|| v["offset"].as_u64().unwrap_or(0))
        })
        .collect()
}

fn pong() -> ServerFrame {
    ServerFrame::Pong { id: None }
}

#[tokio::test]
async fn live_messages_during_a_replay_come_after_it_without_duplicates() {
    let c = conn(1024);
    c.begin("room:a");
    // Live messages arrive while the history read is in flight; 2 and 3 are also
    // in the replay.
    for o in [2, 3, 4] {
        c.deliver(&Delivery::new(msg("room:a", "e", o)));
    }
    assert!(queued(&c).is_empty(), "nothing is sent before the reply");
    let replay = [msg("room:a", "e", 2), msg("room:a", "e", 3)];
    c.open("room:a", &StreamPosition::new("e", 1), &pong(), &replay)
        .await;
    assert_eq!(queued(&c), [2, 3, 4]);
    // Live again: duplicates and old offsets are dropped, new ones pass.
    for o in [4, 3, 5] {
        c.deliver(&Delivery::new(msg("room:a", "e", o)));
    }
    assert_eq!(queued(&c), [5]);
    // A new epoch is followed.
    c.deliver(&Delivery::new(msg("room:a", "f", 1)));
    assert_eq!(queued(&c), [1]);
}

#[tokio::test]
async fn a_replay_larger_than_the_queue_is_paced_not_a_slow_consumer() {
    let c = Arc::new(conn(8));
    c.begin("user:alice");
    let replay: Vec<_> = (1..=100).map(|o| msg("user:alice", "e", o)).collect();
    let opener = {
        let c = c.clone();
        tokio::spawn(async move {
            c.open("user:alice", &StreamPosition::new("e", 0), &pong(), &replay)
                .await
        })
    };
    let mut got = Vec::new();
    while got.len() < 100 {
        got.extend(queued(&c));
        tokio::task::yield_now().await;
    }
    opener.await.unwrap();
    assert_eq!(got, (1..=100).collect::<Vec<_>>());
    assert!(c.outbound.close_request().is_none(), "no 4008 for a replay");
}

#[tokio::test]
async fn a_gap_holds_the_channel_until_the_repair_fills_it() {
    let c = conn(1024);
    c.begin("user:alice");
    c.open("user:alice", &StreamPosition::new("e", 5), &pong(), &[])
        .await;
    assert!(!c.deliver(&Delivery::new(msg("user:alice", "e", 6))));
    assert_eq!(queued(&c), [6]);
    // 7 was lost on the backplane; 8 reveals the gap.
    assert!(c.deliver(&Delivery::new(msg("user:alice", "e", 8))));
    assert!(!c.deliver(&Delivery::new(msg("user:alice", "e", 9))));
    assert!(queued(&c).is_empty(), "held until repaired");
    assert_eq!(c.hold("user:alice"), None, "already held");
    assert_eq!(
        c.held_position("user:alice"),
        Some(StreamPosition::new("e", 6))
    );
    assert!(c.live_channels().is_empty());
    c.release(
        "user:alice",
        &[msg("user:alice", "e", 7), msg("user:alice", "e", 8)],
    )
    .await;
    assert_eq!(queued(&c), [7, 8, 9]);
    assert_eq!(c.live_channels(), ["user:alice"]);
    // A sweep after the backplane came back holds live channels.
    assert_eq!(c.hold("user:alice"), Some(StreamPosition::new("e", 9)));
    c.release("user:alice", &[]).await;
    assert!(!c.deliver(&Delivery::new(msg("user:alice", "e", 10))));
    assert_eq!(queued(&c), [10]);
}

#[tokio::test]
async fn messages_of_untracked_channels_are_ignored() {
    let c = conn(16);
    c.deliver(&Delivery::new(msg("room:x", "e", 1)));
    assert!(queued(&c).is_empty());
    c.begin("room:x");
    assert!(c.end("room:x"));
    c.deliver(&Delivery::new(msg("room:x", "e", 2)));
    assert!(queued(&c).is_empty());
}

/// A message with another id at the offset delivered last is no duplicate: history
/// diverged (a failover lost a delivered write and gave its offset to this one). Live,
/// the channel is held for the repair, marked diverged; the same message again is a
/// plain duplicate.
#[tokio::test]
async fn another_message_at_the_last_offset_is_a_divergence_not_a_duplicate() {
    let c = conn(1024);
    c.begin("user:alice");
    c.open("user:alice", &StreamPosition::new("e", 3), &pong(), &[])
        .await;
    let four = msg("user:alice", "e", 4);
    assert!(!c.deliver(&Delivery::new(four.clone())));
    assert!(
        !c.deliver(&Delivery::new(four.clone())),
        "the same message again"
    );
    assert_eq!(queued(&c), [4]);
    let mut other = (*four).clone();
    other.id = "m-other".into();
    assert!(
        c.deliver(&Delivery::new(Arc::new(other))),
        "another message at offset 4: held for the repair"
    );
    let held = c.held("user:alice").expect("held");
    assert!(held.diverged);
    assert_eq!(held.position, StreamPosition::new("e", 4));
    assert_eq!(held.last_id, id_hash("m-4"));
    assert!(queued(&c).is_empty(), "nothing more is delivered");
}

/// A repair whose replay holds another message at the offset delivered last does not
/// release the channel.
#[tokio::test]
async fn a_replay_that_diverges_keeps_the_channel_held() {
    let c = conn(1024);
    c.begin("user:alice");
    c.open(
        "user:alice",
        &StreamPosition::new("e", 0),
        &pong(),
        &[msg("user:alice", "e", 1)],
    )
    .await;
    assert_eq!(queued(&c), [1]);
    assert!(c.hold("user:alice").is_some());
    let mut other = (*msg("user:alice", "e", 1)).clone();
    other.id = "m-rewritten".into();
    assert!(!c.release("user:alice", &[Arc::new(other)]).await);
    assert!(c.held("user:alice").expect("still held").diverged);
    assert!(queued(&c).is_empty());
}
