//! 1,000 concurrent calls from 100 connections, all answered, each with its own data.

use super::upstream::{Answer, Upstream};
use super::*;

const CONNECTIONS: u64 = 100;
const CALLS: u64 = 10;

/// Echoes `data` after a few milliseconds that vary per call, so replies interleave.
fn echo_jittered(r: &super::upstream::Received) -> Answer {
    let data = r.data();
    let n = data["conn"].as_u64().unwrap_or(0) * 7 + data["n"].as_u64().unwrap_or(0) * 3;
    Answer::json(json!({"echo": data})).after(Duration::from_millis(n % 20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_calls_from_a_hundred_connections() {
    let a = Upstream::start(echo_jittered).await;
    let b = Upstream::start(echo_jittered).await;
    let node = std::sync::Arc::new(
        start_with_config(&route("load.*", &[&a.url(), &b.url()], &[]), &[]).await,
    );
    let started = tokio::time::Instant::now();

    let mut tasks = tokio::task::JoinSet::new();
    for conn in 0..CONNECTIONS {
        let node = node.clone();
        tasks.spawn(async move {
            let (mut c, _) = node.connect(&format!("user{conn}")).await;
            for n in 0..CALLS {
                let data = json!({"conn": conn, "n": n, "pad": "x".repeat(n as usize * 10)});
                c.send(rpc(n + 1, "load.echo", data)).await;
            }
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..CALLS {
                let r = c.recv().await;
                let id = r["id"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("conn {conn}: reply without id: {r}"));
                assert!(
                    (1..=CALLS).contains(&id) && seen.insert(id),
                    "conn {conn}: unexpected or repeated reply id: {r}"
                );
                let n = id - 1;
                assert_eq!(
                    ok_data(&r),
                    json!({"echo": {"conn": conn, "n": n, "pad": "x".repeat(n as usize * 10)}}),
                    "conn {conn}: reply {id} carries another call's data"
                );
            }
            c.close().await;
            seen.len() as u64
        });
    }
    let mut answered = 0;
    while let Some(done) = tasks.join_next().await {
        answered += done.expect("a connection task panicked");
    }
    assert_eq!(answered, CONNECTIONS * CALLS);
    assert_eq!(
        (a.hits(), b.hits()),
        (500, 500),
        "one upstream request per call, spread by round robin"
    );
    assert!(
        a.max_inflight() > 1 && b.max_inflight() > 1,
        "calls ran concurrently (max in flight {} / {})",
        a.max_inflight(),
        b.max_inflight()
    );
    let text = node.metrics_text().await;
    assert_eq!(
        metric_sum(&text, "switchboard_rpc_calls_total", &[("route", "load.*")]),
        1000.0
    );
    eprintln!(
        "1000 rpc calls over 100 connections: {:?}",
        started.elapsed()
    );
}
