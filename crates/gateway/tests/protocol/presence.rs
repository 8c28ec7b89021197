//! `presence` join and leave frames in both encodings.

use super::*;

fn presence(channel: &str, user: &str, event: &str) -> Value {
    json!({"type": "presence", "channel": channel, "user": user, "event": event})
}

#[tokio::test]
async fn presence_join_and_leave_json() {
    let node = support::start(&[]).await;
    let (mut a, _) = node.connect("alice").await;
    join_room(&mut a, 1, "room:p", "alice").await;

    // Bob's first connection joins.
    let (mut b1, _) = node.connect("bob").await;
    join_room(&mut b1, 1, "room:p", "bob").await;
    assert_eq!(a.recv().await, presence("room:p", "bob", "join"));

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
    assert_eq!(a.recv().await, presence("room:p", "bob", "leave"));

    // Join then unsubscribe: join, leave.
    let (mut c, _) = node.connect("carol").await;
    join_room(&mut c, 1, "room:p", "carol").await;
    assert_eq!(a.recv().await, presence("room:p", "carol", "join"));
    c.send(json!({"type": "unsubscribe", "id": 2, "channel": "room:p"}))
        .await;
    assert_eq!(
        c.recv().await,
        json!({"type": "reply", "id": 2, "ok": true})
    );
    assert_eq!(a.recv().await, presence("room:p", "carol", "leave"));
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
    join_room(&mut b1, 1, "room:p", "bob").await;
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
