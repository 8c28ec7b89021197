//! The registry after faults: a node whose lease lapsed while its sockets stayed open
//! delivers what it missed, and a connection refused during a freeze leaves no ghost.

use super::*;

/// When a node's lease lapses while its sockets stay open — Redis frozen or unreachable
/// for longer than the lease, or the node itself stalled — the cluster reaps its registry
/// entries. Until the node re-registers, publishes to its users are stored but routed
/// nowhere; once it is back it must deliver them from the streams, not wait for the next
/// message to reveal the gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reaped_node_delivers_what_was_published_while_it_was_unregistered() {
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
    // own reaper removes it within a probe interval.
    let lapsed =
        redis_cmd(redis.port, &["ZADD", "sb:nodes", "XX", "1", &node.node_id]).expect("ZADD");
    assert_eq!(lapsed, Resp::Int(0), "the node was in the live set");
    let (answer, _) = poll(
        Duration::from_secs(3),
        "a publish finds frank offline",
        || async {
            let (status, body, _) = publish(&api, "user:frank", json!({"n": "while reaped"})).await;
            assert_eq!(status, 200, "{body}");
            if body["online"] == false {
                Ok(body)
            } else {
                Err(body.to_string())
            }
        },
    )
    .await;
    let (_, missed) = position(&answer);

    // Every message up to the one routed nowhere reaches frank, in order, without
    // another publish to reveal the gap.
    let mut next = 2;
    loop {
        let msg = match next_before(&mut frank, Instant::now() + support::WAIT).await {
            Next::Frame(v) if v["type"] == "message" => v,
            other => panic!(
                "message {next} of user:frank (published while the node was out of the \
                 registry; {missed} is the last) never arrived: got {other:?}"
            ),
        };
        assert_eq!(
            position(&msg),
            (epoch.clone(), next),
            "frank's messages in order after the node was reaped: {msg}"
        );
        if next == missed {
            break;
        }
        next += 1;
    }
    let (status, body) = node.api("GET", "/v1/users/frank", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["online"], true, "the node re-registered frank: {body}");
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
