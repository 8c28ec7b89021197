//! Subprotocol negotiation on the upgrade.

use super::*;

use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn subprotocols_are_negotiated() {
    let node = support::start(&[]).await;
    let q = with_token(&support::token("alice"));
    let proto_header = |res: &Response| {
        res.headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    // None offered: JSON, no header.
    let res = accepted(&node, &q, &[], "alice").await;
    assert_eq!(proto_header(&res), None);
    // JSON offered: echoed.
    let res = accepted(
        &node,
        &q,
        &[("sec-websocket-protocol", "switchboard.v1.json")],
        "alice",
    )
    .await;
    assert_eq!(proto_header(&res).as_deref(), Some("switchboard.v1.json"));
    // Unknown ones are skipped when a known one follows.
    let res = accepted(
        &node,
        &q,
        &[("sec-websocket-protocol", "chat, switchboard.v1.json")],
        "alice",
    )
    .await;
    assert_eq!(proto_header(&res).as_deref(), Some("switchboard.v1.json"));
    // Protobuf: echoed, and the welcome arrives as a binary frame.
    let (ws, res) = upgrade(
        &node,
        &q,
        &[("sec-websocket-protocol", "switchboard.v1.proto")],
    )
    .await
    .expect("proto upgrade");
    assert_eq!(proto_header(&res).as_deref(), Some("switchboard.v1.proto"));
    let mut client = support::Client { ws, proto: true };
    match client.next().await {
        Some(Message::Binary(b)) => assert!(!b.is_empty()),
        other => panic!("expected a binary welcome, got {other:?}"),
    }
    // Only unknown ones: 400.
    refused(
        &node,
        &q,
        &[("sec-websocket-protocol", "chat")],
        400,
        "unsupported_subprotocol",
    )
    .await;
    refused(
        &node,
        &q,
        &[("sec-websocket-protocol", "chat, switchboard.v2.json")],
        400,
        "unsupported_subprotocol",
    )
    .await;
}
