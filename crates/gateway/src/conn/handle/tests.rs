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
    // A new epoch is never followed silently: the channel is held for a repair.
    assert!(
        c.deliver(&Delivery::new(msg("room:a", "f", 1))),
        "a new epoch needs a repair"
    );
    assert!(queued(&c).is_empty());
    assert_eq!(c.held_position("room:a"), Some(StreamPosition::new("e", 5)));
}

/// Frames queued so far (draining the queue), as JSON.
fn frames(c: &ConnHandle) -> Vec<serde_json::Value> {
    let mut items = Vec::new();
    c.outbound.take(&mut items, usize::MAX);
    items
        .iter()
        .filter_map(|i| serde_json::from_slice(&i.data).ok())
        .collect()
}

/// A resync: the frame first, then what history has in the new epoch, then the live
/// messages of the new epoch held meanwhile; live messages of the old epoch are dropped
/// (the client reloads what came before), and delivery goes on in the new epoch.
#[tokio::test]
async fn a_resync_moves_the_channel_to_the_new_epoch_without_closing() {
    let c = conn(1024);
    c.begin("room:a");
    let _ = c
        .open(
            "room:a",
            &StreamPosition::new("e", 0),
            &pong(),
            &[msg("room:a", "e", 1)],
        )
        .await;
    assert_eq!(queued(&c), [1]);
    // Redis restarted empty: the channel is held; a late old-epoch message and two of
    // the new epoch arrive while the repair reads history.
    assert!(c.hold("room:a").is_some());
    for m in [
        msg("room:a", "e", 2),
        msg("room:a", "f", 2),
        msg("room:a", "f", 3),
    ] {
        c.deliver(&Delivery::new(m));
    }
    let released = c
        .resync(
            "room:a",
            &StreamPosition::new("f", 0),
            &[msg("room:a", "f", 1), msg("room:a", "f", 2)],
        )
        .await;
    assert_eq!(released, Released::Live);
    let sent = frames(&c);
    assert_eq!(
        sent[0],
        serde_json::json!({"type":"resync","channel":"room:a","epoch":"f","offset":0})
    );
    let delivered: Vec<(String, u64)> = sent[1..]
        .iter()
        .map(|v| {
            (
                v["epoch"].as_str().unwrap().to_owned(),
                v["offset"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        delivered,
        [("f".into(), 1), ("f".into(), 2), ("f".into(), 3)],
        "replay, then held live messages of the new epoch, without duplicates"
    );
    assert!(!c.deliver(&Delivery::new(msg("room:a", "f", 4))));
    assert_eq!(queued(&c), [4], "live again in the new epoch");
    assert!(c.outbound.status().0.is_none(), "the connection stays open");
}

/// A message of a newer epoch held after the resync's own epoch holds the channel again
/// (a second restart during the repair): never followed silently.
#[tokio::test]
async fn a_newer_epoch_during_a_resync_holds_the_channel_again() {
    let c = conn(1024);
    c.begin("user:alice");
    let _ = c
        .open("user:alice", &StreamPosition::new("e", 3), &pong(), &[])
        .await;
    assert!(c.hold("user:alice").is_some());
    for m in [msg("user:alice", "f", 1), msg("user:alice", "g", 1)] {
        c.deliver(&Delivery::new(m));
    }
    let released = c
        .resync("user:alice", &StreamPosition::new("f", 0), &[])
        .await;
    assert_eq!(released, Released::Epoch);
    assert_eq!(
        c.held_position("user:alice"),
        Some(StreamPosition::new("f", 1)),
        "delivered f:1, then held at g:1"
    );
}

#[test]
fn older_epochs_are_dropped_from_what_was_held() {
    let d = |e: &str, o| Delivery::new(msg("room:a", e, o));
    let mut pending = vec![d("e", 5), d("f", 1), d("e", 6), d("f", 2), d("g", 1)];
    drop_older_epochs(&mut pending, "f");
    let kept: Vec<(String, u64)> = pending
        .iter()
        .map(|d| (d.message.epoch.clone(), d.message.offset))
        .collect();
    assert_eq!(kept, [("f".into(), 1), ("f".into(), 2), ("g".into(), 1)]);
    let mut pending = vec![d("e", 5), d("e", 6)];
    drop_older_epochs(&mut pending, "f");
    assert!(pending.is_empty());
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
    assert_eq!(
        c.release("user:alice", &[Arc::new(other)]).await,
        Released::Diverged
    );
    assert!(c.held("user:alice").expect("still held").diverged);
    assert!(queued(&c).is_empty());
}
