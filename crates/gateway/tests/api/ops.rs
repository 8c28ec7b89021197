//! The operational endpoints: `/healthz`, `/readyz` and `/metrics` (docs/protocol.md §1, §8).

use super::*;

use bytes::Bytes;
use serde_json::json;

use crate::support::metrics::metric_first;
use crate::support::API_KEY;

#[tokio::test]
async fn health_and_readiness() {
    let node = support::start(&[]).await;
    let (status, _) = node.get_internal("/healthz").await;
    assert_eq!(status, 200);
    let (status, body) = node.get_internal("/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"ready": true})
    );
    // The API is not on the public port.
    let (status, _) = node
        .http(
            node.public,
            "GET",
            "/v1/nodes",
            &[("authorization", &format!("Bearer {API_KEY}"))],
            Bytes::new(),
        )
        .await;
    assert_eq!(status, 404);
}

const STARTUP_METRICS: [&str; 7] = [
    "switchboard_connections",
    "switchboard_connections_total",
    "switchboard_messages_received_total",
    "switchboard_messages_delivered_total",
    "switchboard_backplane_up",
    "switchboard_backplane_reconnects_total",
    "switchboard_slow_consumer_disconnects_total",
];

#[tokio::test]
async fn metrics_exist_from_startup() {
    let node = support::start(&[]).await;
    let text = node.metrics_text().await;
    for name in STARTUP_METRICS {
        assert!(
            metric_first(&text, name, &[]).is_some(),
            "{name} missing:\n{text}"
        );
    }
    assert_eq!(
        metric_first(&text, "switchboard_backplane_up", &[]),
        Some(1.0)
    );
    assert_eq!(
        metric_first(&text, "switchboard_connections", &[]),
        Some(0.0)
    );
    assert_eq!(
        metric_first(&text, "switchboard_connections_total", &[]),
        Some(0.0)
    );
}

#[tokio::test]
async fn metrics_follow_traffic() {
    let node = support::start(&[]).await;
    // A refused upgrade.
    let refused = node.connect_query("", &[]).await.err().expect("refused");
    assert_eq!(refused.status, 401);
    // Traffic: a room message delivered twice, a DM.
    let (mut a, w) = node.connect("alice").await;
    let (mut b, _) = node.connect("bob").await;
    a.join_room(1, "room:m", "alice").await;
    b.join_room(1, "room:m", "bob").await;
    a.send(json!({"type": "publish", "id": 2, "channel": "room:m", "data": 1}))
        .await;
    b.recv_until(|v| v["type"] == "message").await;
    a.recv_until(|v| v["type"] == "message").await;
    // A resume with since, and a disconnect with 4003.
    let epoch = w["epoch"].as_str().unwrap();
    let mut r = node
        .connect_query(
            &format!("token={}&since={epoch}:0", support::token("carol")),
            &[],
        )
        .await
        .expect("resume");
    assert_eq!(
        r.recv().await["recovered"],
        false,
        "carol's epoch is not alice's"
    );
    let (_, res) = node.api("POST", "/v1/users/bob/disconnect", None).await;
    assert_eq!(res["connections"], 1);
    assert_eq!(b.expect_close().await.0, 4003);
    let (c, cw) = node.connect("carol").await;
    let cep = cw["epoch"].as_str().unwrap().to_owned();
    c.close().await;
    let mut r2 = node
        .connect_query(
            &format!("token={}&since={cep}:0", support::token("carol")),
            &[],
        )
        .await
        .expect("resume");
    assert_eq!(r2.recv().await["recovered"], true);

    // Counters settle after the sockets close; poll until they show.
    let deadline = tokio::time::Instant::now() + support::WAIT;
    let text = loop {
        let text = node.metrics_text().await;
        let closed = metric_first(&text, "switchboard_disconnects_total", &[("code", "4003")]);
        let timed = metric_first(&text, "switchboard_delivery_latency_seconds_count", &[]);
        if closed == Some(1.0) && timed.is_some_and(|n| n >= 2.0) {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics never settled:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    for name in STARTUP_METRICS {
        assert!(
            metric_first(&text, name, &[]).is_some(),
            "{name} missing:\n{text}"
        );
    }
    assert_eq!(
        metric_first(
            &text,
            "switchboard_handshake_rejected_total",
            &[("reason", "missing_token")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric_first(
            &text,
            "switchboard_recovery_total",
            &[("result", "recovered")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric_first(
            &text,
            "switchboard_recovery_total",
            &[("result", "not_recovered")]
        ),
        Some(1.0)
    );
    assert!(
        text.contains("switchboard_delivery_latency_seconds_bucket{"),
        "{text}"
    );
    assert_eq!(
        metric_first(&text, "switchboard_connections_total", &[]),
        Some(5.0),
        "{text}"
    );
    assert!(metric_first(&text, "switchboard_messages_received_total", &[]).unwrap() >= 3.0);
    assert!(metric_first(&text, "switchboard_messages_delivered_total", &[]).unwrap() >= 2.0);
    // Labels never carry user ids or channel names.
    for secret in ["alice", "bob", "carol", "room:m"] {
        assert!(!text.contains(secret), "{secret} leaked into metrics");
    }
}
