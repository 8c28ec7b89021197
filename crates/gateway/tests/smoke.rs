//! The shortest end-to-end path: connect, subscribe, publish, receive.

use switchboard_testkit as support;

use serde_json::json;

#[tokio::test]
async fn two_clients_chat_in_a_room() {
    let node = support::start(&[]).await;
    let (mut alice, welcome) = node.connect("alice").await;
    assert_eq!(welcome["user"], "alice");
    assert_eq!(welcome["channel"], "user:alice");
    let (mut bob, _) = node.connect("bob").await;
    assert_eq!(alice.subscribe(1, "room:lobby").await["ok"], true);
    assert_eq!(bob.subscribe(1, "room:lobby").await["ok"], true);
    bob.send(json!({"type": "publish", "id": 2, "channel": "room:lobby", "data": {"text": "hi"}}))
        .await;
    let msg = alice.recv_until(|v| v["type"] == "message").await;
    assert_eq!(msg["from"], "bob");
    assert_eq!(msg["data"], json!({"text": "hi"}));
    assert_eq!(msg["offset"], 1);
    let reply = bob.reply(2).await;
    assert_eq!(reply["ok"], true);
    assert_eq!(reply["offset"], 1);
}
