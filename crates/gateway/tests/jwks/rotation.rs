//! Keys change while the node runs: rotation, unknown `kid`s, floods of them, outages.

use super::*;

/// The provider publishes a new key and withdraws the old one: after the next refresh
/// (driven by `Cache-Control: max-age`), old tokens are refused and new ones accepted,
/// with no restart.
#[tokio::test]
async fn rotation_without_restart() {
    let server = JwksServer::start(keys(&[TestKey::Rsa.jwk("2024-a")], 1)).await;
    let node = node(
        &server,
        &[
            "--jwt-jwks-min-refresh-seconds",
            "1",
            "--jwt-jwks-max-refresh-seconds",
            "2",
        ],
    )
    .await;
    let old = TestKey::Rsa.sign(Algorithm::RS256, Some("2024-a"), &claims(json!({})));
    let new = TestKey::Ec256.sign(Algorithm::ES256, Some("2024-b"), &claims(json!({})));
    assert!(admits(&node, &old).await, "the current key's token");

    // Both keys during the overlap, as providers do.
    server.set(keys(
        &[TestKey::Rsa.jwk("2024-a"), TestKey::Ec256.jwk("2024-b")],
        1,
    ));
    eventually(Duration::from_secs(5), "the new key is used", || {
        admits(&node, &new)
    })
    .await;
    assert!(admits(&node, &old).await, "the old key still published");

    // The old key withdrawn: its tokens stop working after the next refresh.
    server.set(keys(&[TestKey::Ec256.jwk("2024-b")], 1));
    eventually(Duration::from_secs(5), "the old key is dropped", || async {
        !admits(&node, &old).await
    })
    .await;
    assert!(admits(&node, &new).await);
    assert_eq!(node.metric("switchboard_jwks_keys", "").await, 1.0);
    let scheduled = node
        .metric(
            "switchboard_jwks_refresh_total",
            r#"trigger="scheduled",result="ok""#,
        )
        .await;
    assert!(scheduled >= 1.0, "{}", node.metrics_text().await);
}

/// A token naming a `kid` the node has not seen triggers one fetch: accepted when the
/// provider has the key now; refused, without a second fetch within the interval, when
/// it does not.
#[tokio::test]
async fn unknown_kid_refreshes_once_then_refuses() {
    let server = JwksServer::start(keys(&[TestKey::Rsa.jwk("a")], 3600)).await;
    let node = node(&server, &["--jwt-jwks-min-refresh-seconds", "2"]).await;
    assert_eq!(server.fetches(), 1, "the startup fetch");
    let newer = TestKey::Ed25519.sign(Algorithm::EdDSA, Some("b"), &claims(json!({})));
    server.set(keys(
        &[TestKey::Rsa.jwk("a"), TestKey::Ed25519.jwk("b")],
        3600,
    ));

    // Within the interval after the startup fetch: refused, and no fetch.
    assert_refused(
        admits(&node, &newer).await,
        "a kid unknown within the interval",
    );
    assert_eq!(server.fetches(), 1);

    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(admits(&node, &newer).await, "the kid found by one refresh");
    assert_eq!(server.fetches(), 2);

    // A kid the provider does not have either: refused at once (the interval since the
    // last fetch has not passed), then after the interval one fetch, still refused.
    let ghost = TestKey::RsaOther.sign(Algorithm::RS256, Some("ghost"), &claims(json!({})));
    assert_refused(admits(&node, &ghost).await, "an unknown kid");
    assert_eq!(server.fetches(), 2);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_refused(
        admits(&node, &ghost).await,
        "an unknown kid after a refresh",
    );
    assert_refused(admits(&node, &ghost).await, "the same kid again");
    assert_eq!(server.fetches(), 3);
    assert_eq!(
        node.metric("switchboard_jwks_refresh_total", r#"trigger="unknown_kid""#)
            .await,
        2.0
    );
}

/// Forged tokens with random `kid`s (Ed25519: quick to mint), 40 at a time for 3 s: every one refused, and the
/// provider sees the startup fetch plus at most one per interval (2 s), not one per token.
#[tokio::test]
async fn a_flood_of_random_kids_causes_bounded_fetches() {
    let server = JwksServer::start(keys(&[TestKey::Rsa.jwk("a")], 3600)).await;
    let node = Arc::new(node(&server, &["--jwt-jwks-min-refresh-seconds", "2"]).await);
    let start = tokio::time::Instant::now();
    let mut sent = 0usize;
    while start.elapsed() < Duration::from_secs(3) {
        let batch: Vec<_> = (0..40)
            .map(|_| {
                let kid = format!("forged-{:016x}", rand::random::<u64>());
                let token = TestKey::Ed25519.sign(Algorithm::EdDSA, Some(&kid), &claims(json!({})));
                let node = node.clone();
                tokio::spawn(async move { admits(&node, &token).await })
            })
            .collect();
        for task in batch {
            assert_refused(task.await.expect("task"), "a forged kid");
            sent += 1;
        }
    }
    let fetches = server.fetches();
    eprintln!("{sent} forged tokens in 3 s: {fetches} fetches");
    assert!(sent >= 100, "only {sent} tokens sent");
    assert!(
        (2..=3).contains(&fetches),
        "{fetches} fetches for {sent} forged tokens in 3 s"
    );
    // The real key still works, without another fetch.
    let good = TestKey::Rsa.sign(Algorithm::RS256, Some("a"), &claims(json!({})));
    assert!(admits(&node, &good).await);
    assert_eq!(server.fetches(), fetches);
}

/// The endpoint fails (5xx, a hang, a body that is not a JWKS, a set with no usable key):
/// the last good set stays in use, and the metrics and the key count say so.
#[tokio::test]
async fn the_endpoint_down_keeps_the_last_good_set() {
    let server = JwksServer::start(keys(&[TestKey::Ec384.jwk("k")], 1)).await;
    let node = node(
        &server,
        &[
            "--jwt-jwks-min-refresh-seconds",
            "1",
            "--jwt-jwks-max-refresh-seconds",
            "1",
        ],
    )
    .await;
    let token = TestKey::Ec384.sign(Algorithm::ES384, Some("k"), &claims(json!({})));
    assert!(admits(&node, &token).await);
    let last_success = node
        .metric("switchboard_jwks_last_success_timestamp_seconds", "")
        .await;
    assert!(last_success > 0.0);

    let failures = [
        Answer::Status(503),
        Answer::Hang,
        Answer::Keys {
            body: "<html>maintenance</html>".into(),
            cache_control: "no-cache".into(),
        },
        keys(&[json!({"kty": "oct", "kid": "k", "k": "c2VjcmV0"})], 1),
    ];
    let node = &node;
    let errors = || async move {
        node.metric("switchboard_jwks_refresh_total", r#"result="error""#)
            .await
    };
    for failure in failures {
        let before = errors().await;
        server.set(failure.clone());
        eventually(
            Duration::from_secs(8),
            "a failed refresh is counted",
            || async { errors().await > before },
        )
        .await;
        assert!(
            admits(node, &token).await,
            "last good set after {failure:?}"
        );
        assert_eq!(node.metric("switchboard_jwks_keys", "").await, 1.0);
    }
    assert_eq!(
        node.metric("switchboard_jwks_last_success_timestamp_seconds", "")
            .await,
        last_success
    );

    // Back up: a new good fetch.
    server.set(keys(&[TestKey::Ec384.jwk("k")], 1));
    eventually(
        Duration::from_secs(8),
        "a good fetch after the outage",
        || async {
            node.metric("switchboard_jwks_last_success_timestamp_seconds", "")
                .await
                > last_success
        },
    )
    .await;
    assert!(admits(node, &token).await);
}
