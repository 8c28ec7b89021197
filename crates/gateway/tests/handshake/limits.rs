//! The connection cap and malformed requests (no upgrade, a garbage `since`).

use super::*;
use std::time::Duration;

#[tokio::test]
async fn connection_cap_answers_503_until_a_slot_frees() {
    let node = support::start(&["--max-connections", "2"]).await;
    let (first, _) = node.connect("alice").await;
    let (_second, _) = node.connect("bob").await;
    let q = with_token(&support::token("carol"));
    refused(&node, &q, &[], 503, "over_capacity").await;
    let over = node
        .metric(
            "switchboard_handshake_rejected_total",
            r#"reason="over_capacity""#,
        )
        .await;
    assert_eq!(over, 1.0);
    first.close().await;
    // The slot is released once the server has cleaned the connection up.
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        match upgrade(&node, &q, &[]).await {
            Ok(_) => break,
            Err(r) => {
                assert_eq!(r.status, 503, "{:?}", r.body);
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no slot was freed after a close"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test]
async fn plain_get_without_upgrade_is_a_json_error() {
    let node = support::start(&[]).await;
    let token = support::token("alice");
    let (status, body) = node
        .http(
            node.public,
            "GET",
            &format!("/ws?token={token}"),
            &[],
            Default::default(),
        )
        .await;
    assert_eq!(status, 426, "{}", String::from_utf8_lossy(&body));
    let body: Value = serde_json::from_slice(&body).expect("JSON body");
    assert_eq!(body["error"], "upgrade_required");
    assert!(body["message"].is_string());
    let (status, body) = node
        .http(node.public, "POST", "/ws", &[], Default::default())
        .await;
    assert_eq!(status, 405);
    let body: Value = serde_json::from_slice(&body).expect("JSON body");
    assert_eq!(body["error"], "method_not_allowed");
}

#[tokio::test]
async fn garbage_since_is_400() {
    let node = support::start(&[]).await;
    let token = support::token("alice");
    for since in ["garbage", "e1", "e1:x", ":5", "e%201:5"] {
        refused(
            &node,
            &format!("token={token}&since={since}"),
            &[],
            400,
            "bad_request",
        )
        .await;
    }
    // A well-formed one is accepted.
    let (mut c, _) = upgrade(&node, &format!("token={token}&since=e1:0"), &[])
        .await
        .map(|(ws, res)| (support::Client { ws, proto: false }, res))
        .expect("since accepted");
    let welcome = c.recv().await;
    assert_eq!(welcome["type"], "welcome");
    assert!(welcome["recovered"].is_boolean(), "{welcome}");
}
