//! The registry after faults: a node whose lease lapsed while its sockets stayed open
//! delivers what it missed, and a connection refused during a freeze leaves no ghost.

use super::*;

/// When a node's lease lapses while its sockets stay open — Redis frozen or unreachable
/// for longer than the lease, or the node itself stalled — the cluster reaps its registry
/// entries. Its subscriptions follow its Redis connections, not the registry, so its
/// users keep receiving everything, in order, while they are out of the registry; the
/// node writes its entries back on its next heartbeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reaped_node_keeps_delivering_and_registers_again() {
    let redis = RedisServer::start();
    let node = start_node_with(&redis.url(), &["--lease-seconds", "3"]).await;
    let api = node.api_client();
    let (mut frank, welcome) = node.connect("frank").await;
    let (epoch, _) = position(&welcome);
    let (status, body, _) = publish(&api, "user:frank", json!({"n": 1})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["online"], true, "{body}");
    expect_message(&mut frank, "user:frank", support::WAIT).await;

    // The lease lapses (what a freeze longer than the lease leaves behind): the node's
    // own reaper removes its entries within a probe interval — once the reaper has seen a
    // whole lease of successful heartbeats (a reaper waits that long after it starts or
    // after the lease shard was unreachable, so that no live node is reaped for a
    // deadline it could not renew). The node's next heartbeat renews the deadline, so it
    // is lapsed again on every try until the reaper got it.
    let mut published = 1;
    poll(
        Duration::from_secs(8),
        "the registry loses frank (reaped)",
        || {
            published += 1;
            let n = published;
            let api = &api;
            let node = &node;
            let port = redis.port;
            async move {
                let lapsed = redis_cmd(port, &["ZADD", "sb:{nodes}", "XX", "1", &node.node_id])
                    .expect("ZADD");
                assert_eq!(
                    lapsed,
                    Resp::Int(0),
                    "the node was in (or back in) the live set"
                );
                let (status, body, _) = publish(api, "user:frank", json!({"n": n})).await;
                assert_eq!(status, 200, "{body}");
                tokio::time::sleep(PROBE).await;
                let (status, user) = node.api("GET", "/v1/users/frank", None).await;
                assert_eq!(status, 200, "{user}");
                if user["online"] == false {
                    Ok(())
                } else {
                    Err(user.to_string())
                }
            }
        },
    )
    .await;
    // Published while frank is out of the registry: still delivered live.
    for _ in 0..3 {
        published += 1;
        let (status, body, _) = publish(&api, "user:frank", json!({"n": published})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["nodes"], 1,
            "routed to frank's node while reaped: {body}"
        );
    }
    for next in 2..=published {
        let msg = match next_before(&mut frank, Instant::now() + support::WAIT).await {
            Next::Frame(v) if v["type"] == "message" => v,
            other => panic!("message {next} of user:frank never arrived: got {other:?}"),
        };
        assert_eq!(
            position(&msg),
            (epoch.clone(), next),
            "frank's messages in order while the node was reaped: {msg}"
        );
    }
    poll(
        Duration::from_secs(5),
        "the node registers frank again",
        || async {
            let (status, body) = node.api("GET", "/v1/users/frank", None).await;
            assert_eq!(status, 200, "{body}");
            if body["online"] == true {
                Ok(())
            } else {
                Err(body.to_string())
            }
        },
    )
    .await;
}

/// A WebSocket that connects while Redis is frozen is refused within the command
/// timeout (`error` unavailable, close 1013) — and its registration, which reached
/// Redis only after the node gave up on it, must not leave the user online forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_refused_while_redis_is_frozen_leaves_no_ghost() {
    let redis = RedisServer::start();
    let node = start_node(&redis.url()).await;
    let (status, body) = node.api("GET", "/v1/users/ghost", None).await;
    assert_eq!((status, &body["online"]), (200, &json!(false)), "{body}");
    // Redis knows the registration script (a first connection loaded it).
    let (warm, _) = node.connect("warm").await;
    warm.close().await;
    node.wait_offline("warm").await;

    redis.signal("STOP");
    let started = Instant::now();
    let mut ghost = node
        .connect_query(&format!("token={}", support::token("ghost")), &[])
        .await
        .expect("the upgrade itself does not need Redis");
    let frame = match next_before(&mut ghost, started + support::WAIT).await {
        Next::Frame(v) => v,
        other => panic!("expected an error frame while Redis is frozen, got {other:?}"),
    };
    assert_eq!(frame["type"], "error", "{frame}");
    assert_eq!(frame["code"], "unavailable", "{frame}");
    match next_before(&mut ghost, started + support::WAIT).await {
        Next::Closed(code, _) => assert_eq!(code, 1013, "close code while Redis is frozen"),
        other => panic!("expected close 1013, got {other:?}"),
    }
    let took = started.elapsed();
    redis.signal("CONT");
    println!("measured: a connect while Redis is frozen was refused in {took:?}");
    assert!(
        took <= TIMEOUT + SLACK,
        "refusing a connection while Redis is frozen took {took:?}"
    );

    wait_readyz(&node, 200, Duration::from_secs(5), "ready after SIGCONT").await;
    // Once Redis has run what was queued during the freeze, ghost is offline, and stays so.
    let deadline = Instant::now() + QUIET;
    while Instant::now() < deadline {
        let (status, body) = node.api("GET", "/v1/users/ghost", None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["online"], false,
            "a connection refused during the freeze is registered after all: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
