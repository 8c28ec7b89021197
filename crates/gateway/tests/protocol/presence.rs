//! `presence` join and leave frames in both encodings.

use super::*;
use crate::support::presence_frame;

#[tokio::test]
async fn presence_join_and_leave_json() {
    let node = support::start(&[]).await;
    let (mut a, _) = node.connect("alice").await;
    a.join_room(1, "room:p", "alice").await;

    // Bob's first connection joins.
    let (mut b1, _) = node.connect("bob").await;
    b1.join_room(1, "room:p", "bob").await;
    assert_eq!(a.recv().await, presence_frame("room:p", "bob", "join"));

    // His second connection is not a second join, for anyone.
    let (mut b2, _) = node.connect("bob").await;
    assert_eq!(b2.subscribe(1, "room:p").await["ok"], true);
    a.expect_silence(QUIET).await;
    b1.expect_silence(Duration::ZERO).await;
    b2.expect_silence(Duration::ZERO).await;

    // One of two connections leaving is not a leave.
    b1.send(json!({"type": "unsubscribe", "id": 2, "channel": "room:p"}))
        .await;
    assert_eq!(
        b1.recv().await,
        json!({"type": "reply", "id": 2, "ok": true})
    );
    a.expect_silence(QUIET).await;

    // The last one going away is.
    b2.close().await;
    assert_eq!(a.recv().await, presence_frame("room:p", "bob", "leave"));

    // Join then unsubscribe: join, leave.
    let (mut c, _) = node.connect("carol").await;
    c.join_room(1, "room:p", "carol").await;
    assert_eq!(a.recv().await, presence_frame("room:p", "carol", "join"));
    c.send(json!({"type": "unsubscribe", "id": 2, "channel": "room:p"}))
        .await;
    assert_eq!(
        c.recv().await,
        json!({"type": "reply", "id": 2, "ok": true})
    );
    assert_eq!(a.recv().await, presence_frame("room:p", "carol", "leave"));
    c.expect_silence(QUIET).await;
    a.expect_silence(Duration::ZERO).await;
    // Other rooms are not told.
    b1.expect_silence(Duration::ZERO).await;
}

#[tokio::test]
async fn presence_join_and_leave_proto() {
    let node = support::start(&[]).await;
    let mut a = node.connect_proto("alice").await;
    assert!(matches!(a.recv_pb().await, Kind::Welcome(_)));
    pb_join_room(&mut a, 1, "room:p", "alice").await;

    let (mut b1, _) = node.connect("bob").await;
    b1.join_room(1, "room:p", "bob").await;
    let (mut b2, _) = node.connect("bob").await;
    assert_eq!(b2.subscribe(1, "room:p").await["ok"], true);
    assert_eq!(
        pb_presence(&mut a).await,
        pb::Presence {
            channel: "room:p".into(),
            user: "bob".into(),
            event: "join".into()
        }
    );
    a.expect_silence(QUIET).await;

    b1.close().await;
    a.expect_silence(QUIET).await;
    b2.close().await;
    assert_eq!(
        pb_presence(&mut a).await,
        pb::Presence {
            channel: "room:p".into(),
            user: "bob".into(),
            event: "leave".into()
        }
    );
    a.expect_silence(QUIET).await;
}

/// Extra namespaces are plain feeds (no presence frames, empty presence list) unless
/// listed in --presence-namespaces; rooms always have presence.
#[tokio::test]
async fn feeds_have_no_presence_unless_configured() {
    let node =
        support::start(&["--namespaces", "feed,team", "--presence-namespaces", "team"]).await;
    let claims = |sub: &str| {
        support::sign(&json!({"sub": sub, "exp": support::now_secs() + 60,
            "channels": ["feed:*", "team:*"], "publish": ["feed:*", "team:*"]}))
    };
    let (mut a, _) = node.connect_token(&claims("alice")).await;
    let (mut b, _) = node.connect_token(&claims("bob")).await;
    for c in [&mut a, &mut b] {
        assert_eq!(c.subscribe(1, "feed:f").await["ok"], true);
    }
    a.expect_silence(QUIET).await;
    b.expect_silence(Duration::ZERO).await;
    let (status, p) = node.api("GET", "/v1/presence/feed:f", None).await;
    assert_eq!(
        (status, p["users"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{p}"
    );
    // Messages still reach every subscriber.
    a.send(json!({"type": "publish", "id": 2, "channel": "feed:f", "data": 7}))
        .await;
    let m = b.recv_until(|f| f["type"] == "message").await;
    assert_eq!(m["data"], 7);

    // A namespace listed in --presence-namespaces behaves like a room.
    assert_eq!(a.subscribe(3, "team:t").await["ok"], true);
    assert_eq!(a.recv().await, presence_frame("team:t", "alice", "join"));
    assert_eq!(b.subscribe(3, "team:t").await["ok"], true);
    assert_eq!(
        a.recv_until(|f| f["type"] == "presence").await,
        presence_frame("team:t", "bob", "join")
    );
}

#[tokio::test]
async fn presence_namespaces_must_be_configured_namespaces() {
    let out = support::run_binary(&["serve", "--presence-namespaces", "feed"], &[]).await;
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("presence_namespaces"), "{err}");
}
