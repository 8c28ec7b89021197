//! The per-user connection cap (`--max-connections-per-user`): one connection more than
//! the cap is refused with 429 `too_many_connections` before the upgrade, on any node of
//! the cluster (one Redis, or a Redis Cluster); a close frees a slot; other users are not
//! affected.

use super::*;
use support::cluster::{poll, Cluster, Redis};
use support::on_both_redis;

const CAP: &str = "3";

/// How many connections the registry lists for `user`.
async fn listed(node: &Node, user: &str) -> usize {
    let (status, body) = node.api("GET", &format!("/v1/users/{user}"), None).await;
    assert_eq!(status, 200, "{body}");
    body["connections"].as_array().map_or(0, Vec::len)
}

/// Connects as `user` until it is accepted (a closed connection's slot is freed once the
/// node has cleaned it up); every refusal meanwhile must be the cap's.
async fn connect_when_freed(node: &Node, user: &str) -> support::Client {
    let q = with_token(&support::token(user));
    let (client, _) = poll(
        support::WAIT,
        "a closed connection frees a slot",
        || async {
            match upgrade(node, &q, &[]).await {
                Ok((ws, _)) => Ok(support::Client { ws, proto: false }),
                Err(r) => {
                    assert_eq!(r.status, 429, "{:?}", r.body);
                    Err(format!("{:?}", r.body))
                }
            }
        },
    )
    .await;
    client
}

#[tokio::test]
async fn one_connection_over_the_cap_is_429_before_the_upgrade() {
    let node = support::start(&["--max-connections-per-user", CAP]).await;
    let mut alice = Vec::new();
    for _ in 0..3 {
        alice.push(node.connect("alice").await.0);
    }
    let q = with_token(&support::token("alice"));
    let refusal = match upgrade(&node, &q, &[]).await {
        Ok((_, res)) => panic!("the 4th connection was upgraded: {}", res.status()),
        Err(r) => r,
    };
    assert_eq!(refusal.status, 429, "{:?}", refusal.body);
    assert_eq!(refusal.body["error"], "too_many_connections");
    let message = refusal.body["message"].as_str().expect("a message");
    assert!(
        message.contains(CAP),
        "the message names the cap: {message}"
    );
    let rejected = node
        .metric(
            "switchboard_handshake_rejected_total",
            r#"reason="too_many_connections""#,
        )
        .await;
    assert_eq!(rejected, 1.0);
    assert_eq!(
        listed(&node, "alice").await,
        3,
        "the refusal registered nothing"
    );

    // Another user is not affected.
    let (mut bob, welcome) = node.connect("bob").await;
    assert_eq!(welcome["user"], "bob");

    // The three are untouched: each still answers.
    for (i, c) in alice.iter_mut().enumerate() {
        c.send(json!({"type": "ping", "id": i})).await;
        let pong = c.recv().await;
        assert_eq!(pong["type"], "pong", "{pong}");
    }
    bob.send(json!({"type": "ping", "id": 9})).await;
    assert_eq!(bob.recv().await["type"], "pong");

    // A close frees a slot, and only one.
    alice.pop().expect("three").close().await;
    let mut again = connect_when_freed(&node, "alice").await;
    assert_eq!(again.recv().await["type"], "welcome");
    refused(&node, &q, &[], 429, "too_many_connections").await;
    assert_eq!(listed(&node, "alice").await, 3);
}

#[tokio::test]
async fn zero_means_no_cap() {
    let node = support::start(&["--max-connections-per-user", "0"]).await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(node.connect("alice").await.0);
    }
    assert_eq!(listed(&node, "alice").await, 5);
}

on_both_redis!(the_cap_is_cluster_wide);
async fn the_cap_is_cluster_wide(redis: Redis) {
    let cluster = Cluster::start_on(redis, 2, &["--max-connections-per-user", CAP]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let q = with_token(&support::token("alice"));
    let mut held = vec![a.connect("alice").await.0, a.connect("alice").await.0];
    held.push(b.connect("alice").await.0);
    refused(a, &q, &[], 429, "too_many_connections").await;
    refused(b, &q, &[], 429, "too_many_connections").await;
    assert_eq!(listed(b, "alice").await, 3);

    // A slot freed on A is taken on B.
    held.remove(0).close().await;
    let mut on_b = connect_when_freed(b, "alice").await;
    assert_eq!(on_b.recv().await["type"], "welcome");
    refused(a, &q, &[], 429, "too_many_connections").await;
    let (_bob, _) = a.connect("bob").await;

    // Handshakes of one user racing on both nodes: exactly the cap of them get through,
    // and every refusal is counted.
    let refusals = || async {
        let counts = cluster.nodes.iter().map(|n| {
            n.metric(
                "switchboard_handshake_rejected_total",
                r#"reason="too_many_connections""#,
            )
        });
        futures_util::future::join_all(counts)
            .await
            .into_iter()
            .sum::<f64>()
    };
    let refused_before = refusals().await;
    let racers = (0..10).map(|i| {
        let node = &cluster.nodes[i % 2];
        let q = with_token(&support::token("racer"));
        async move { upgrade(node, &q, &[]).await }
    });
    let results = futures_util::future::join_all(racers).await;
    let mut won = Vec::new();
    for r in results {
        match r {
            Ok((ws, _)) => won.push(ws),
            Err(r) => {
                assert_eq!(r.status, 429, "{:?}", r.body);
                assert_eq!(r.body["error"], "too_many_connections");
            }
        }
    }
    assert_eq!(won.len(), 3, "10 racing handshakes with cap {CAP}");
    assert_eq!(listed(a, "racer").await, 3);
    assert_eq!(refusals().await - refused_before, 7.0);
}

/// Runs `switchboard serve` on port 0 with `flags` and `env` to its exit (killed, and
/// the test failed, if it serves instead): (exit status, stdout, stderr).
async fn serve_until_exit(flags: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut all = vec![("SWITCHBOARD_JWT_SECRET", support::SECRET)];
    all.extend_from_slice(env);
    let out = support::serve_to_exit(flags, &all, support::WAIT)
        .await
        .unwrap_or_else(|| panic!("{flags:?} {env:?}: the node started instead of exiting"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_bad_cap_exits_64_naming_the_setting() {
    let label = "--max-connections-per-user / SWITCHBOARD_MAX_CONNECTIONS_PER_USER: ";
    for value in ["-1", "lots", "1000001"] {
        let flag = format!("--max-connections-per-user={value}");
        let (code, stdout, stderr) = serve_until_exit(&[&flag], &[]).await;
        assert_eq!(code, Some(64), "{value}: {stderr}");
        assert!(
            stdout.is_empty(),
            "{value}: nothing may be served: {stdout}"
        );
        assert!(stderr.contains(label), "{value}: {stderr}");
    }
    let env = [("SWITCHBOARD_MAX_CONNECTIONS_PER_USER", "x")];
    let (code, _, stderr) = serve_until_exit(&[], &env).await;
    assert_eq!(code, Some(64), "from the environment: {stderr}");
    assert!(stderr.contains(label), "{stderr}");
}
