//! Calls that never reach an upstream (`bad_frame`, `forbidden` by the `rpc` claim,
//! `no_route`, `too_many_requests` over the per-connection in-flight cap) and calls whose
//! socket closes while the upstream works on them (cancelled).

use super::upstream::{Answer, Upstream};
use super::*;

/// A token for `sub` limited to the RPC methods `rpc`.
fn token_with_rpc(sub: &str, rpc: &[&str]) -> String {
    support::sign(&json!({
        "sub": sub,
        "exp": support::now_secs() + 3600,
        "channels": ["room:*"],
        "publish": ["room:*"],
        "rpc": rpc,
    }))
}

#[tokio::test]
async fn an_empty_method_is_bad_frame() {
    let up = Upstream::echo().await;
    let node = start_with_config(&route("*", &[&up.url()], &[]), &[]).await;
    let (mut c, _) = node.connect("alice").await;
    let r = call(&mut c, 1, "", json!({})).await;
    assert_eq!(error_code(&r), "bad_frame", "{r}");
    // The connection stays usable.
    assert_eq!(ok_data(&call(&mut c, 2, "x", json!("y")).await), "y");
    assert_eq!(up.hits(), 1, "the empty method never reached the upstream");
}

#[tokio::test]
async fn the_rpc_claim_limits_the_methods_a_user_may_call() {
    let up = Upstream::echo().await;
    let node = start_with_config(&route("orders.*", &[&up.url()], &[]), &[]).await;
    let t = token_with_rpc("bob", &["orders.read", "billing.*"]);

    let (mut c, _) = node.connect_token(&t).await;
    let r = call(&mut c, 1, "orders.create", json!({})).await;
    assert_eq!(error_code(&r), "forbidden", "{r}");
    assert_eq!(
        ok_data(&call(&mut c, 2, "orders.read", json!({"n": 2})).await),
        json!({"n": 2})
    );
    let r = call(&mut c, 3, "billing.charge", json!({})).await;
    assert_eq!(error_code(&r), "no_route", "allowed but unrouted: {r}");

    let (mut p, _) = node.connect_proto_token(&t).await;
    p.send_raw(pb_rpc(4, "orders.delete", json_payload("{}"), None))
        .await;
    let r = p.pb_reply(4).await;
    assert!(!r.ok, "{r:?}");
    assert_eq!(r.error.map(|e| e.code).as_deref(), Some("forbidden"));

    // An empty claim allows nothing; no claim allows everything.
    let (mut none, _) = node.connect_token(&token_with_rpc("carol", &[])).await;
    let r = call(&mut none, 5, "orders.read", json!({})).await;
    assert_eq!(error_code(&r), "forbidden", "rpc: [] allows nothing: {r}");
    let (mut any, _) = node.connect("dave").await;
    ok_data(&call(&mut any, 6, "orders.create", json!({})).await);

    let methods: Vec<String> = up
        .received()
        .iter()
        .map(|r| r.json()["method"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        methods,
        ["orders.read", "orders.create"],
        "forbidden calls never reach the upstream"
    );
}

#[tokio::test]
async fn a_method_without_a_route_is_no_route() {
    let up = Upstream::echo().await;
    let toml = format!(
        "{}{}",
        route("orders.*", &[&up.url()], &[]),
        route("users.get", &[&up.url()], &[])
    );
    let node = start_with_config(&toml, &[]).await;
    let (mut c, _) = node.connect("alice").await;
    for (id, method) in [(1, "payments.charge"), (2, "orders"), (3, "users.get2")] {
        let r = call(&mut c, id, method, json!({})).await;
        assert_eq!(error_code(&r), "no_route", "{method}: {r}");
    }
    ok_data(&call(&mut c, 4, "orders.x", json!({})).await);
    ok_data(&call(&mut c, 5, "users.get", json!({})).await);
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn more_calls_in_flight_than_the_cap_get_too_many_requests_at_once() {
    let up = Upstream::start(|r| Answer::json(r.data()).held()).await;
    let toml = format!(
        "rpc_max_inflight = 2\n\n{}",
        route("slow.*", &[&up.url()], &["timeout_ms = 10000"])
    );
    let node = start_with_config(&toml, &[]).await;
    let (mut c, _) = node.connect("alice").await;
    c.send(rpc(1, "slow.a", json!(1))).await;
    c.send(rpc(2, "slow.a", json!(2))).await;
    up.wait("two calls in flight", |u| u.inflight() == 2).await;

    let started = tokio::time::Instant::now();
    let r = call(&mut c, 3, "slow.a", json!(3)).await;
    assert_eq!(error_code(&r), "too_many_requests", "{r}");
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "answered at once, not after a slot freed: {:?}",
        started.elapsed()
    );

    // The cap is per connection: another connection still gets through.
    let (mut other, _) = node.connect("bob").await;
    other.send(rpc(1, "slow.b", json!("b"))).await;
    up.wait("bob's call in flight", |u| u.inflight() == 3).await;

    up.release();
    let mut got = vec![c.recv().await, c.recv().await];
    got.sort_by_key(|r| r["id"].as_u64());
    assert_eq!(
        (ok_data(&got[0]), ok_data(&got[1])),
        (json!(1), json!(2)),
        "{got:?}"
    );
    assert_eq!(ok_data(&other.reply(1).await), "b");
    // Slots are freed when calls end.
    ok_data(&call(&mut c, 4, "slow.a", json!(4)).await);
    assert_eq!(up.hits(), 4, "the refused call never reached the upstream");
}

#[tokio::test]
async fn a_socket_closed_mid_call_cancels_the_upstream_request() {
    // Never released: the only way these requests end is being dropped.
    let up = Upstream::start(|r| Answer::json(r.data()).held()).await;
    let node =
        start_with_config(&route("slow.*", &[&up.url()], &["timeout_ms = 15000"]), &[]).await;

    // A clean close (close frame).
    let (mut a, _) = node.connect("alice").await;
    a.send(rpc(1, "slow.op", json!({}))).await;
    up.wait("alice's call in flight", |u| u.inflight() == 1)
        .await;
    a.close().await;
    up.wait(
        "the upstream to see alice's request dropped after her socket closed",
        |u| u.dropped() == 1 && u.inflight() == 0,
    )
    .await;

    // An abrupt close (the TCP connection just goes away).
    let (mut b, _) = node.connect("bob").await;
    b.send(rpc(1, "slow.op", json!({}))).await;
    b.send(rpc(2, "slow.op", json!({}))).await;
    up.wait("bob's two calls in flight", |u| u.inflight() == 2)
        .await;
    drop(b);
    up.wait(
        "the upstream to see bob's requests dropped after his connection vanished",
        |u| u.dropped() == 3 && u.inflight() == 0,
    )
    .await;
    assert_eq!(up.hits(), 3);
}
