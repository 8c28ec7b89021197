//! The reply of a publish Redis ran is lost: the fault proxy (crates/testkit/src/proxy.rs,
//! `cut_reply_after`) forwards the keyed publish to Redis and then cuts the node's
//! connection before the answer. The node cannot know whether the message was stored and
//! answers 503 `unavailable` (the client frame: a reply with `unavailable`); the retry with
//! the same key answers the first publish's position (`duplicate: true`) and the channel
//! holds one copy — for a user channel (history) and a room without history.

use super::*;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::support::cluster::poll;
use crate::support::proxy::FaultProxy;
use switchboard_router::testsuite::redis_server::RedisServer;

/// A key no other publish uses: the proxy cuts the connection that sends it.
fn unique_key(what: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Cut-and-retry rounds per channel.
const ROUNDS: u64 = 50;

/// A node whose Redis connections all go through `proxy`.
async fn node_behind(proxy: &FaultProxy) -> Node {
    support::start(&[
        "--redis-url",
        &proxy.url(),
        "--redis-timeout-ms",
        "1000",
        "--probe-interval-ms",
        "200",
    ])
    .await
}

/// Waits until `/readyz` answers 200 (the node got over its broken connection).
async fn ready(node: &Node) {
    poll(Duration::from_secs(10), "/readyz answers 200", || async {
        let (status, body) = node.get_internal("/readyz").await;
        (status == 200)
            .then_some(())
            .ok_or(format!("{status} {body}"))
    })
    .await;
}

/// One keyed publish to a user channel (history) and one to a room without: Redis then
/// holds both keyed scripts. A cut fresh `EVALSHA` would be answered `NOSCRIPT` — run
/// nothing — and its retry would rightly be a first publish, not the duplicate the tests
/// here are about.
async fn load_keyed_scripts(node: &Node) {
    for channel in ["user:warm-up", "room:warm-up"] {
        let (status, body) = publish_keyed(node, channel, &unique_key("warm"), json!(0)).await;
        answered(status, &body, false);
    }
}

/// One round on `channel`: a keyed publish whose reply is cut must answer 503
/// `unavailable`; its retry (after the node is ready again) must answer `duplicate` at
/// `want` (the position the cut publish took). Returns how many retries answered 503
/// before one got through.
async fn cut_and_retry(
    node: &Node,
    proxy: &FaultProxy,
    channel: &str,
    round: u64,
    want: &(String, u64),
) -> u32 {
    let key = unique_key("cut");
    let cuts = proxy.cuts();
    proxy.cut_reply_after(key.as_bytes());
    let (status, body) =
        publish_keyed(node, channel, &key, json!({"round": round, "try": 1})).await;
    assert_eq!(proxy.cuts(), cuts + 1, "the publish went through the proxy");
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
    ready(node).await;
    let mut refused = 0;
    loop {
        let (status, body) =
            publish_keyed(node, channel, &key, json!({"round": round, "try": 2})).await;
        if status == 503 && refused < 5 {
            refused += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        assert_eq!(
            answered(status, &body, true),
            *want,
            "round {round} on {channel}: the retry answers the cut publish's position"
        );
        return refused;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_whose_reply_was_cut_is_stored_once_and_its_retry_answers_it() {
    let redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .expect("start redis-server");
    let proxy = FaultProxy::start(redis.port).await;
    let node = node_behind(&proxy).await;
    load_keyed_scripts(&node).await;
    let (mut rita, welcome) = node.connect("rita").await;
    let (epoch, _) = position(&welcome);
    let (mut sam, _) = node.connect("sam").await;
    join(&mut sam, 1, "room:plain").await;
    // The room's epoch, from a first (unkeyed) message.
    let (status, first) = node
        .api(
            "POST",
            "/v1/publish",
            Some(json!({"channel": "room:plain", "data": 0})),
        )
        .await;
    let room_at = answered(status, &first, false);
    expect_message(&mut sam, "room:plain").await;

    let started = Instant::now();
    let mut refused_retries = 0;
    for round in 1..=ROUNDS {
        let want = (epoch.clone(), round);
        refused_retries += cut_and_retry(&node, &proxy, "user:rita", round, &want).await;
        let m = expect_message(&mut rita, "user:rita").await;
        assert_eq!(
            (position(&m), &m["data"]),
            (want, &json!({"round": round, "try": 1}))
        );

        let want = (room_at.0.clone(), room_at.1 + round);
        refused_retries += cut_and_retry(&node, &proxy, "room:plain", round, &want).await;
        let m = expect_message(&mut sam, "room:plain").await;
        assert_eq!(
            (position(&m), &m["data"]),
            (want, &json!({"round": round, "try": 1}))
        );
    }
    let took = started.elapsed();
    // Nothing was delivered twice; what the channels hold: the user's history, and the
    // room's numbering (read from one more publish).
    rita.expect_silence(QUIET).await;
    sam.expect_silence(QUIET).await;
    let kept = history(&node, "user:rita").await;
    let (status, next) = node
        .api(
            "POST",
            "/v1/publish",
            Some(json!({"channel": "room:plain", "data": "end"})),
        )
        .await;
    let room_stored = answered(status, &next, false).1 - room_at.1 - 1;
    let duplicates = (kept.len() as u64 + room_stored).saturating_sub(2 * ROUNDS);
    println!(
        "measured: {} cut-and-retry rounds ({ROUNDS} on a user channel with history, {ROUNDS} on a room without) in {took:?}: {} stored, {duplicates} duplicates; {refused_retries} retries answered 503 before one got through",
        2 * ROUNDS,
        kept.len() as u64 + room_stored,
    );
    assert_eq!(
        kept.iter()
            .map(|m| m["offset"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        (1..=ROUNDS).collect::<Vec<_>>()
    );
    assert!(kept.iter().all(|m| m["data"]["try"] == 1), "{kept:?}");
    assert_eq!(
        room_stored, ROUNDS,
        "the room numbered one message per round"
    );
    assert_eq!(duplicates, 0);
    assert_eq!(proxy.cuts() as u64, 2 * ROUNDS);
}

/// The same for the other kinds of publish: a client frame (its reply says
/// `unavailable`; the retry from a new connection answers the first position) and a
/// `/v1/batch` (each item says `unavailable`; the retried batch answers every first
/// position).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_and_batch_publishes_whose_reply_was_cut_are_stored_once() {
    let redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .expect("start redis-server");
    let proxy = FaultProxy::start(redis.port).await;
    let node = node_behind(&proxy).await;
    load_keyed_scripts(&node).await;
    let (mut rita, welcome) = node.connect("rita").await;
    let (epoch, _) = position(&welcome);

    // A client frame.
    let (mut tom, _) = node.connect("tom").await;
    let key = unique_key("cut-client");
    proxy.cut_reply_after(key.as_bytes());
    let reply = client_publish(&mut tom, 1, "user:rita", &key, json!("once")).await;
    assert_eq!(proxy.cuts(), 1);
    assert_eq!(
        (reply["ok"].as_bool(), reply["error"]["code"].as_str()),
        (Some(false), Some("unavailable")),
        "{reply}"
    );
    ready(&node).await;
    tom.close().await;
    let (mut tom, _) = node.connect("tom").await;
    let retry = client_publish(&mut tom, 1, "user:rita", &key, json!("twice")).await;
    assert_eq!(
        (retry["ok"].as_bool(), position(&retry)),
        (Some(true), (epoch.clone(), 1)),
        "{retry}"
    );
    assert_eq!(expect_message(&mut rita, "user:rita").await["data"], "once");

    // A batch: the cut key is the first item's; the second item rides the same write.
    let (k1, k2) = (unique_key("cut-batch"), unique_key("cut-batch"));
    let body = json!({"messages": [
        {"channel": "user:rita", "data": "b1", "idempotency_key": k1},
        {"channel": "user:rita", "data": "b2", "idempotency_key": k2},
    ]});
    proxy.cut_reply_after(k1.as_bytes());
    let (status, cut) = node.api("POST", "/v1/batch", Some(body.clone())).await;
    assert_eq!(proxy.cuts(), 2);
    assert_eq!(status, 200, "{cut}");
    for r in cut["results"].as_array().expect("results") {
        assert_eq!(r["error"]["code"], "unavailable", "{cut}");
    }
    ready(&node).await;
    let (status, again) = node.api("POST", "/v1/batch", Some(body)).await;
    assert_eq!(status, 200, "{again}");
    let r = again["results"].as_array().expect("results");
    assert_eq!(
        (position(&r[0]), position(&r[1])),
        ((epoch.clone(), 2), (epoch.clone(), 3)),
        "{again}"
    );
    assert!(r.iter().all(|r| r["duplicate"] == true), "{again}");
    assert_eq!(expect_message(&mut rita, "user:rita").await["data"], "b1");
    assert_eq!(expect_message(&mut rita, "user:rita").await["data"], "b2");
    rita.expect_silence(QUIET).await;
    assert_eq!(history_offsets(&node, "user:rita").await, [1, 2, 3]);
}
