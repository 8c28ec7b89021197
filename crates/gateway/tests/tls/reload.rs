//! Certificate reloads: new handshakes get the new certificate, open connections stay
//! open and keep receiving; a change that does not load keeps the old certificate.

use serde_json::json;

use crate::*;

const OK: &str = "switchboard_tls_reloads_total{result=\"ok\"}";
const ERROR: &str = "switchboard_tls_reloads_total{result=\"error\"}";

#[tokio::test]
async fn a_reload_switches_certificates_for_new_connections_while_old_ones_stay_open() {
    let dir = Dir::new();
    let (a, b) = (Cert::new(), Cert::new());
    let node = start_tls(&dir, &a, &["--tls-reload-interval-ms", "100"]).await;
    let (mut old, _) = wss(&node, "alice", trusting(&[&a])).await;
    assert_eq!(presented(&old), a.der);
    send(
        &mut old,
        json!({"type": "subscribe", "id": 1, "channel": "room:r"}),
    )
    .await;
    assert_eq!(recv(&mut old).await["ok"], true);
    assert_eq!(node.metric_value(OK).await, Some(0.0));

    // Renewed: both files replaced.
    dir.install(&b);
    wait_metric(&node, OK, 1.0).await;
    let (new, _) = wss(&node, "bob", trusting(&[&a, &b])).await;
    assert_eq!(presented(&new), b.der);
    assert!(
        tls_connect(node.public, trusting(&[&a])).await.is_err(),
        "a client trusting only the old certificate must fail now"
    );

    // The connection made before the reload is still open and still served.
    node.api_client()
        .publish("room:r", json!("after the reload"))
        .await;
    let msg = recv(&mut old).await;
    assert_eq!(msg["data"], "after the reload", "{msg}");
    send(&mut old, json!({"type": "ping", "id": 2})).await;
    assert_eq!(recv(&mut old).await["type"], "pong");
    assert_eq!(node.metric_value(ERROR).await, Some(0.0));
}

#[tokio::test]
async fn a_reload_that_fails_keeps_the_previous_certificate() {
    let dir = Dir::new();
    let (a, b) = (Cert::new(), Cert::new());
    let node = start_tls(&dir, &a, &["--tls-reload-interval-ms", "100"]).await;
    let (mut old, _) = wss(&node, "alice", trusting(&[&a])).await;

    // The new certificate is there, its key not yet: a mismatched pair.
    dir.write("cert.pem", &b.cert_pem);
    wait_metric(&node, ERROR, 1.0).await;
    let (still_a, _) = wss(&node, "bob", trusting(&[&a, &b])).await;
    assert_eq!(presented(&still_a), a.der);

    // A half-written key.
    dir.write("key.pem", &b.key_pem[..b.key_pem.len() / 2]);
    wait_metric(&node, ERROR, 2.0).await;
    let (still_a, _) = wss(&node, "carol", trusting(&[&a, &b])).await;
    assert_eq!(presented(&still_a), a.der);

    // A missing file.
    std::fs::remove_file(dir.path("key.pem")).expect("remove");
    wait_metric(&node, ERROR, 3.0).await;

    // The whole key arrives: the reload succeeds.
    dir.write("key.pem", &b.key_pem);
    wait_metric(&node, OK, 1.0).await;
    let (now_b, _) = wss(&node, "dave", trusting(&[&a, &b])).await;
    assert_eq!(presented(&now_b), b.der);
    send(&mut old, json!({"type": "ping", "id": 1})).await;
    assert_eq!(recv(&mut old).await["type"], "pong");
}
