//! Requests answered with an error reply: bad channel names, channels outside the claims,
//! unsubscribing without a subscription.

use super::*;

#[tokio::test]
async fn bad_channel_names_are_rejected() {
    let mut s = scene(&[]).await;
    let too_long = format!("room:{}", "x".repeat(252));
    assert_eq!(too_long.len(), 257);
    let bad = [
        "room:a b",
        "room:lob/by",
        "room:é",
        "lobby",
        ":lobby",
        "room:",
        "",
        too_long.as_str(),
        "chat:lobby",
    ];
    let mut id = 0;
    for name in bad {
        id += 1;
        s.alice
            .send(json!({"type": "subscribe", "id": id, "channel": name}))
            .await;
        expect_reply_error(&mut s.alice, id, "bad_channel").await;
        id += 1;
        s.alice
            .send(json!({"type": "publish", "id": id, "channel": name, "data": "x"}))
            .await;
        expect_reply_error(&mut s.alice, id, "bad_channel").await;
        id += 1;
        s.alice
            .send(json!({"type": "unsubscribe", "id": id, "channel": name}))
            .await;
        expect_reply_error(&mut s.alice, id, "bad_channel").await;
    }
    // Personal channels arrive without subscribing.
    s.alice
        .send(json!({"type": "subscribe", "id": 100, "channel": "user:alice"}))
        .await;
    expect_reply_error(&mut s.alice, 100, "bad_channel").await;
    // 256 bytes is the longest valid name.
    let longest = format!("room:{}", "x".repeat(251));
    assert_eq!(s.alice.subscribe(101, &longest).await["ok"], true);
    expect_pong(&mut s.alice, 102).await;
    s.nothing_was_published().await;
    s.finish().await;
}

#[tokio::test]
async fn subscribe_and_publish_outside_the_claims_are_forbidden() {
    let node = support::start(&[]).await;
    let (mut bob, _) = node.connect("bob").await;
    assert_eq!(bob.subscribe(1, "room:secret").await["ok"], true);
    let token = support::sign(&json!({
        "sub": "mallory",
        "exp": support::now_secs() + 600,
        "channels": ["room:lobby"],
        "publish": ["room:lobby"],
    }));
    let mut mallory = node
        .connect_query(&format!("token={token}"), &[])
        .await
        .expect("connect");
    assert_eq!(next_frame(&mut mallory).await["type"], "welcome");

    mallory
        .send(json!({"type": "subscribe", "id": 1, "channel": "room:secret"}))
        .await;
    expect_reply_error(&mut mallory, 1, "forbidden").await;
    mallory
        .send(json!({"type": "publish", "id": 2, "channel": "room:secret", "data": "leak"}))
        .await;
    expect_reply_error(&mut mallory, 2, "forbidden").await;
    // No `user:*` publish claim: no direct messages.
    mallory
        .send(json!({"type": "publish", "id": 3, "channel": "user:bob", "data": "dm"}))
        .await;
    expect_reply_error(&mut mallory, 3, "forbidden").await;
    // What the claims allow still works.
    assert_eq!(mallory.subscribe(4, "room:lobby").await["ok"], true);
    expect_pong(&mut mallory, 5).await;

    bystander_saw_nothing(&mut bob).await;
    let (status, body) = node.api("GET", "/v1/history/user:bob", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["messages"], json!([]), "a forbidden DM was stored");
    let (status, body) = node.api("GET", "/v1/presence/room:secret", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["users"], json!(["bob"]));
    node_still_serves(&node).await;
}

#[tokio::test]
async fn unsubscribe_without_subscription_is_not_subscribed() {
    let mut s = scene(&[]).await;
    s.alice
        .send(json!({"type": "unsubscribe", "id": 1, "channel": "room:elsewhere"}))
        .await;
    expect_reply_error(&mut s.alice, 1, "not_subscribed").await;
    s.alice
        .send(json!({"type": "unsubscribe", "id": 2, "channel": ROOM}))
        .await;
    assert_eq!(s.alice.reply(2).await["ok"], true);
    s.alice
        .send(json!({"type": "unsubscribe", "id": 3, "channel": ROOM}))
        .await;
    expect_reply_error(&mut s.alice, 3, "not_subscribed").await;
    expect_pong(&mut s.alice, 4).await;
    let leave = s.bob.recv_until(|v| v["type"] == "presence").await;
    assert_eq!(leave["event"], "leave");
    s.finish().await;
}
