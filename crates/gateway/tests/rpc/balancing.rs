//! Balancing across two upstreams: `round_robin` rotates, `least_inflight` sends calls to
//! the upstream with the fewest in flight.

use super::upstream::{Answer, Upstream};
use super::*;

#[tokio::test]
async fn round_robin_spreads_calls_evenly() {
    let a = Upstream::start(|r| Answer::json(json!({"by": "a", "data": r.data()}))).await;
    let b = Upstream::start(|r| Answer::json(json!({"by": "b", "data": r.data()}))).await;
    let node = start_with_config(
        &route(
            "rr.*",
            &[&a.url(), &b.url()],
            &["balance = \"round_robin\""],
        ),
        &[],
    )
    .await;
    let (mut c, _) = node.connect("alice").await;

    // Sequential calls alternate.
    let mut by = Vec::new();
    for id in 1..=4 {
        let data = ok_data(&call(&mut c, id, "rr.op", json!(id)).await);
        assert_eq!(data["data"], id, "{data}");
        by.push(data["by"].as_str().unwrap().to_owned());
    }
    assert!(
        by.windows(2).all(|w| w[0] != w[1]),
        "round robin alternates: {by:?}"
    );

    // Concurrent calls too: 10 more, 5 each.
    for id in 5..=14 {
        c.send(rpc(id, "rr.op", json!(id))).await;
    }
    for _ in 5..=14 {
        ok_data(&c.recv().await);
    }
    assert_eq!((a.hits(), b.hits()), (7, 7), "14 calls over two upstreams");
}

#[tokio::test]
async fn round_robin_is_the_default() {
    let a = Upstream::echo().await;
    let b = Upstream::echo().await;
    let node = start_with_config(&route("rr.*", &[&a.url(), &b.url()], &[]), &[]).await;
    let (mut c, _) = node.connect("alice").await;
    for id in 1..=10 {
        ok_data(&call(&mut c, id, "rr.op", json!(id)).await);
    }
    assert_eq!((a.hits(), b.hits()), (5, 5));
}

#[tokio::test]
async fn least_inflight_avoids_the_busy_upstream() {
    // `slow` holds every call until released; `fast` answers at once.
    let slow =
        Upstream::start(|r| Answer::json(json!({"by": "slow", "data": r.data()})).held()).await;
    let fast = Upstream::start(|r| Answer::json(json!({"by": "fast", "data": r.data()}))).await;
    let node = start_with_config(
        &route(
            "li.*",
            &[&slow.url(), &fast.url()],
            &["balance = \"least_inflight\"", "timeout_ms = 10000"],
        ),
        &[],
    )
    .await;
    let (mut c, _) = node.connect("alice").await;

    // One call at a time reaches an upstream; a call on `fast` is answered before the next.
    for id in 1..=10u64 {
        c.send(rpc(id, "li.op", json!(id))).await;
        up_total(&slow, &fast, id as usize).await;
        if fast.received().last().is_some_and(|r| r.data() == id) {
            let data = ok_data(&c.reply(id).await);
            assert_eq!(data, json!({"by": "fast", "data": id}));
        }
    }
    let (s, f) = (slow.hits(), fast.hits());
    assert!(
        s <= 2 && f >= 8,
        "least_inflight keeps away from the upstream holding calls: slow {s}, fast {f}"
    );

    slow.release();
    for _ in 0..s {
        let r = c.recv().await;
        assert_eq!(ok_data(&r)["by"], "slow", "{r}");
    }
}

/// Waits until the two upstreams have received `n` requests together.
async fn up_total(a: &Upstream, b: &Upstream, n: usize) {
    let deadline = tokio::time::Instant::now() + support::WAIT;
    while a.hits() + b.hits() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "call {n} reached no upstream (hits {} + {})",
            a.hits(),
            b.hits()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
