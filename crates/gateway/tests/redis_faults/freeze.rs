//! Redis frozen (SIGSTOP): no server-API call blocks past the command timeout, pings
//! are still answered, and the service is back within seconds of SIGCONT.

use super::*;
use futures_util::SinkExt;

/// The server-API calls issued while Redis is frozen: (endpoint, method, path, body).
/// Broadcast has its own test below (it waits one timeout per channel).
fn api_calls() -> Vec<(&'static str, &'static str, &'static str, Option<Value>)> {
    vec![
        (
            "publish user",
            "POST",
            "/v1/publish",
            Some(json!({"channel": "user:carol", "data": {"frozen": true}})),
        ),
        (
            "publish room",
            "POST",
            "/v1/publish",
            Some(json!({"channel": "room:frozen", "data": 1})),
        ),
        ("users", "GET", "/v1/users/carol", None),
        (
            "disconnect",
            "POST",
            "/v1/users/nobody/disconnect",
            Some(json!({})),
        ),
        ("presence", "GET", "/v1/presence/room:frozen", None),
        ("history", "GET", "/v1/history/user:carol", None),
        ("nodes", "GET", "/v1/nodes", None),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_frozen_blocks_no_api_call_past_its_timeout() {
    const FROZEN: Duration = Duration::from_secs(5);
    let redis = RedisServer::start();
    let node = start_node(&redis.url()).await;
    let api = node.api_client();
    let (mut carol, _) = node.connect("carol").await;
    let (status, body, _) = publish(&api, "user:carol", json!({"n": 1})).await;
    assert_eq!(status, 200, "{body}");
    expect_message(&mut carol, "user:carol", support::WAIT).await;

    redis.signal("STOP");
    let frozen_at = Instant::now();
    let thawed_at = frozen_at + FROZEN;

    // Three workers call every endpoint in turn until the freeze ends.
    let mut workers = Vec::new();
    for w in 0..3usize {
        let api = node.api_client();
        workers.push(tokio::spawn(async move {
            let calls = api_calls();
            let mut seen = Vec::new();
            let mut k = w;
            while Instant::now() + TIMEOUT < thawed_at {
                let (name, method, path, body) = calls[k % calls.len()].clone();
                let started = Instant::now();
                let (status, answer) = api.call(method, path, body).await;
                seen.push((name, status, started.elapsed(), answer));
                k += 1;
            }
            seen
        }));
    }
    // Meanwhile carol (who publishes nothing) pings: WebSocket pings and JSON pings.
    let mut ws_rtt = Duration::ZERO;
    let mut json_rtt = Duration::ZERO;
    let mut pings = 0u32;
    while Instant::now() + PROBE < thawed_at {
        pings += 1;
        let payload = format!("p{pings}");
        let started = Instant::now();
        carol
            .ws
            .send(Message::Ping(payload.clone().into_bytes().into()))
            .await
            .expect("send ping");
        loop {
            let msg = tokio::time::timeout_at(started + support::WAIT, carol.ws.next())
                .await
                .unwrap_or_else(|_| panic!("WebSocket ping {pings} not answered within 5 s"));
            match msg {
                Some(Ok(Message::Pong(p))) if p[..] == *payload.as_bytes() => break,
                Some(Ok(Message::Close(f))) => panic!("carol closed while Redis is frozen: {f:?}"),
                Some(Ok(_)) => {}
                other => panic!("carol's socket failed: {other:?}"),
            }
        }
        ws_rtt = ws_rtt.max(started.elapsed());
        let started = Instant::now();
        carol.send(json!({"type": "ping", "id": pings})).await;
        loop {
            match next_before(&mut carol, started + support::WAIT).await {
                Next::Frame(v) if v["type"] == "pong" && v["id"] == pings => break,
                Next::Frame(_) => {}
                other => panic!("JSON ping {pings} not answered: {other:?}"),
            }
        }
        json_rtt = json_rtt.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = node.get_internal("/readyz").await;
    assert_eq!(status, 503, "/readyz while Redis is frozen: {body}");
    let mut calls = Vec::new();
    for w in workers {
        calls.extend(w.await.expect("worker"));
    }
    tokio::time::sleep_until(thawed_at).await;
    redis.signal("CONT");
    let back = wait_readyz(&node, 200, Duration::from_secs(10), "ready after SIGCONT").await;

    let bound = TIMEOUT + SLACK;
    let max = calls.iter().map(|c| c.2).max().unwrap_or_default();
    let mut by_endpoint: Vec<(&str, Duration)> = Vec::new();
    for (name, _, took, _) in &calls {
        match by_endpoint.iter_mut().find(|(n, _)| n == name) {
            Some((_, d)) => *d = (*d).max(*took),
            None => by_endpoint.push((name, *took)),
        }
    }
    println!(
        "measured: SIGSTOP {FROZEN:?}: {} API calls, max latency {max:?} (per endpoint {by_endpoint:?}); {pings} pings, max WebSocket ping RTT {ws_rtt:?}, max JSON ping RTT {json_rtt:?}; ready {back:?} after SIGCONT",
        calls.len()
    );
    let refused = calls.iter().filter(|c| c.1 == 503).count();
    assert!(
        refused > 0,
        "no API call was refused: was Redis frozen? {calls:?}"
    );
    for (name, status, took, answer) in &calls {
        assert!(
            *took <= bound,
            "{name} took {took:?} while Redis was frozen (bound {bound:?}): {status} {answer}"
        );
        assert!(
            *status == 200 || *status == 503,
            "{name} answered {status}: {answer}"
        );
        if *status == 503 {
            assert_eq!(answer["error"], "unavailable", "{name}: {answer}");
        }
    }
    let ping_bound = Duration::from_millis(400);
    assert!(ws_rtt <= ping_bound, "a WebSocket ping took {ws_rtt:?}");
    assert!(json_rtt <= ping_bound, "a JSON ping took {json_rtt:?}");

    // Back: publishing works and is delivered — and nothing that was answered 503 during
    // the freeze comes first (its command reached Redis, but only after its deadline).
    assert!(
        back <= Duration::from_secs(5),
        "ready only {back:?} after SIGCONT"
    );
    let (status, body, _) = publish(&api, "user:carol", json!({"thawed": true})).await;
    assert_eq!(status, 200, "publish after SIGCONT: {body}");
    let want = position(&body);
    let deadline = Instant::now() + support::WAIT;
    let mut last = 1;
    let mut refused_but_delivered = 0;
    loop {
        match next_before(&mut carol, deadline).await {
            Next::Frame(v) if v["type"] == "message" => {
                let (_, offset) = position(&v);
                assert_eq!(offset, last + 1, "carol's offsets in order, no gap: {v}");
                last = offset;
                if position(&v) == want {
                    assert_eq!(v["data"], json!({"thawed": true}), "{v}");
                    break;
                }
                assert_eq!(v["data"], json!({"frozen": true}), "{v}");
                refused_but_delivered += 1;
                // Checked below, with the count.
            }
            Next::Frame(_) => {}
            other => panic!("expected the message published after SIGCONT, got {other:?}"),
        }
    }
    let refused_user = calls
        .iter()
        .filter(|c| c.0 == "publish user" && c.1 == 503)
        .count();
    println!(
        "measured: {refused_user} publishes to carol answered 503 during the freeze, \
         {refused_but_delivered} of them ran anyway after SIGCONT and were delivered"
    );
    assert_eq!(
        refused_but_delivered, 0,
        "publishes answered 503 while Redis was frozen were stored and delivered once it \
         woke up (a 503 must mean not stored)"
    );
}

/// A broadcast is one API call: while Redis is frozen it must answer within one command
/// timeout, not one timeout per channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_frozen_broadcast_answers_within_one_timeout() {
    let redis = RedisServer::start();
    let node = start_node(&redis.url()).await;
    let api = node.api_client();
    let channels = ["room:b1", "room:b2", "user:b3", "user:b4"];
    let body = json!({"channels": channels, "data": 1});
    let (status, answer) = api.call("POST", "/v1/broadcast", Some(body.clone())).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["results"]
            .as_array()
            .is_some_and(|r| r.len() == channels.len() && r.iter().all(|r| r["offset"] == 1)),
        "broadcast before the freeze: {answer}"
    );

    redis.signal("STOP");
    let started = Instant::now();
    let (status, answer) = api.call("POST", "/v1/broadcast", Some(body)).await;
    let took = started.elapsed();
    redis.signal("CONT");
    println!(
        "measured: broadcast to {} channels while Redis is frozen took {took:?}",
        channels.len()
    );
    assert_eq!(status, 200, "{answer}");
    let results = answer["results"].as_array().expect("results");
    assert_eq!(results.len(), channels.len(), "{answer}");
    for r in results {
        assert_eq!(r["error"]["code"], "unavailable", "{answer}");
    }
    let bound = TIMEOUT + SLACK;
    assert!(
        took <= bound,
        "a broadcast to {} channels took {took:?} while Redis was frozen (bound {bound:?}): \
         it waits one command timeout per channel, one after the other",
        channels.len()
    );
}
