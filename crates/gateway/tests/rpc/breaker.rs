//! The per-upstream circuit breaker: `breaker_failures` consecutive failures (transport
//! errors, timeouts, 5xx — not 4xx) open it for `breaker_open_ms`, during which calls fail
//! fast with `upstream_unavailable`; then exactly one half-open probe closes it again on
//! success or reopens it on failure. `switchboard_rpc_circuit_state`: 0 closed, 1 open,
//! 2 half-open.

use super::upstream::{Answer, Upstream};
use super::*;

/// Sends `n` calls (ids from `first`) that must each fail fast with
/// `upstream_unavailable`: every one well under the route's timeout (it never waited on
/// the upstream) and the fastest under 50 ms.
async fn expect_fail_fast(c: &mut Client, first: u64, n: u64, method: &str) {
    let mut times = Vec::new();
    for id in first..first + n {
        let started = tokio::time::Instant::now();
        let r = call(c, id, method, json!({})).await;
        times.push(started.elapsed());
        assert_eq!(
            error_code(&r),
            "upstream_unavailable",
            "an open circuit: {r}"
        );
    }
    let best = times.iter().min().unwrap();
    assert!(
        *best < Duration::from_millis(50) && times.iter().all(|t| *t < Duration::from_millis(250)),
        "an open circuit answers at once: {times:?}"
    );
}

/// The half-open probe: its id, and its reply when that already arrived.
struct Probe {
    id: u64,
    reply: Option<Value>,
}

impl Probe {
    async fn reply(self, c: &mut Client) -> Value {
        match self.reply {
            Some(r) => r,
            None => c.reply(self.id).await,
        }
    }
}

/// Sends calls (ids from `*next`) until one reaches `up` (whose hits were `hits`): the
/// half-open probe. Calls before it must fail fast without reaching the upstream.
async fn send_until_probe(c: &mut Client, next: &mut u64, up: &Upstream, hits: usize) -> Probe {
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no half-open probe reached the upstream within {:?}",
            support::WAIT
        );
        let id = *next;
        *next += 1;
        c.send(rpc(id, "brk.op", json!({}))).await;
        tokio::select! {
            r = c.reply(id) => {
                if up.hits() > hits {
                    return Probe { id, reply: Some(r) };
                }
                assert_eq!(error_code(&r), "upstream_unavailable", "while open: {r}");
                // Polling interval while waiting for breaker_open_ms to pass.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            () = up.wait("the probe", |u| u.hits() > hits) => return Probe { id, reply: None },
        }
    }
}

#[tokio::test]
async fn the_circuit_opens_fails_fast_and_a_healthy_probe_closes_it() {
    let up = Upstream::start(|_| Answer::json(json!("late")).after(Duration::from_secs(5))).await;
    let url = up.url();
    let node = start_with_config(
        &route(
            "brk.*",
            &[&url],
            &[
                "name = \"brk\"",
                "timeout_ms = 300",
                "breaker_failures = 3",
                "breaker_open_ms = 1000",
            ],
        ),
        &[],
    )
    .await;
    let (mut c, _) = node.connect("alice").await;
    for id in 1..=3 {
        let r = call(&mut c, id, "brk.op", json!({})).await;
        assert_eq!(error_code(&r), "upstream_timeout", "failure {id}: {r}");
    }
    let opened = tokio::time::Instant::now();
    assert_eq!(up.hits(), 3);
    wait_circuit(&node, "brk", &url, 1.0).await;

    // While open: fast, and the upstream (which would time out) is not contacted.
    expect_fail_fast(&mut c, 4, 5, "brk.op").await;
    assert_eq!(up.hits(), 3, "an open circuit sends nothing upstream");

    // After breaker_open_ms, exactly one probe goes through; hold it to look at it.
    up.set(|_| Answer::json(json!("healthy")).held());
    let mut next = 9;
    let probe = send_until_probe(&mut c, &mut next, &up, 3).await;
    let waited = opened.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "the probe came {waited:?} after opening, before breaker_open_ms = 1000"
    );
    wait_circuit(&node, "brk", &url, 2.0).await;
    expect_fail_fast(&mut c, next, 3, "brk.op").await;
    assert_eq!(up.hits(), 4, "only one probe while half-open");

    up.release();
    assert_eq!(ok_data(&probe.reply(&mut c).await), "healthy");
    wait_circuit(&node, "brk", &url, 0.0).await;
    for id in 100..103 {
        assert_eq!(
            ok_data(&call(&mut c, id, "brk.op", json!({})).await),
            "healthy"
        );
    }
    assert_eq!(up.hits(), 7);
}

#[tokio::test]
async fn a_failed_probe_reopens_the_circuit_and_4xx_are_not_failures() {
    let up = Upstream::start(|_| Answer::status(404)).await;
    let url = up.url();
    let node = start_with_config(
        &route(
            "brk.*",
            &[&url],
            &[
                "name = \"brk\"",
                "breaker_failures = 2",
                "breaker_open_ms = 400",
            ],
        ),
        &[],
    )
    .await;
    let (mut c, _) = node.connect("alice").await;
    for id in 1..=4 {
        let r = call(&mut c, id, "brk.op", json!({})).await;
        assert_eq!(error_code(&r), "upstream_error", "{r}");
    }
    assert_eq!(up.hits(), 4, "4xx answers do not open the circuit");
    wait_circuit(&node, "brk", &url, 0.0).await;

    up.set(|_| Answer::status(500));
    for id in 5..=6 {
        let r = call(&mut c, id, "brk.op", json!({})).await;
        assert_eq!(error_code(&r), "upstream_error", "{r}");
    }
    wait_circuit(&node, "brk", &url, 1.0).await;
    expect_fail_fast(&mut c, 7, 2, "brk.op").await;
    assert_eq!(up.hits(), 6);

    // The probe fails (500): open again at once.
    let mut next = 9;
    let probe = send_until_probe(&mut c, &mut next, &up, 6).await;
    let r = probe.reply(&mut c).await;
    assert_eq!(
        error_code(&r),
        "upstream_error",
        "the probe's own answer: {r}"
    );
    wait_circuit(&node, "brk", &url, 1.0).await;
    expect_fail_fast(&mut c, next, 2, "brk.op").await;
    next += 2;
    assert_eq!(up.hits(), 7);

    // A healthy probe closes it.
    up.set(|_| Answer::json(json!("back")));
    let probe = send_until_probe(&mut c, &mut next, &up, 7).await;
    assert_eq!(ok_data(&probe.reply(&mut c).await), "back");
    wait_circuit(&node, "brk", &url, 0.0).await;
    assert_eq!(
        ok_data(&call(&mut c, next, "brk.op", json!({})).await),
        "back"
    );
}

#[tokio::test]
async fn an_open_upstream_is_skipped_and_all_open_is_unavailable_at_once() {
    let bad = Upstream::start(|_| Answer::status(500)).await;
    let good = Upstream::start(|_| Answer::json(json!("good"))).await;
    let (bad_url, good_url) = (bad.url(), good.url());
    let node = start_with_config(
        &route(
            "brk.*",
            &[&bad_url, &good_url],
            &["name = \"brk\"", "breaker_failures = 2"],
        ),
        &[],
    )
    .await;
    let (mut c, _) = node.connect("alice").await;
    let mut errors = 0;
    for id in 1..=10 {
        let r = call(&mut c, id, "brk.op", json!({})).await;
        if r["ok"] == false {
            assert_eq!(error_code(&r), "upstream_error", "{r}");
            errors += 1;
        }
    }
    assert_eq!(
        (errors, bad.hits(), good.hits()),
        (2, 2, 8),
        "(errors, bad hits, good hits): the bad upstream is skipped once open"
    );
    wait_circuit(&node, "brk", &bad_url, 1.0).await;
    wait_circuit(&node, "brk", &good_url, 0.0).await;

    good.set(|_| Answer::status(503));
    for id in 11..=12 {
        let r = call(&mut c, id, "brk.op", json!({})).await;
        assert_eq!(error_code(&r), "upstream_error", "{r}");
    }
    wait_circuit(&node, "brk", &good_url, 1.0).await;
    expect_fail_fast(&mut c, 13, 3, "brk.op").await;
    assert_eq!(
        (bad.hits(), good.hits()),
        (2, 10),
        "nothing is sent while every circuit is open"
    );
}

#[tokio::test]
async fn connection_errors_open_the_circuit_too() {
    let dead = super::upstream::refused_url();
    let node = start_with_config(
        &route(
            "brk.*",
            &[&dead],
            &["name = \"brk\"", "breaker_failures = 2"],
        ),
        &[],
    )
    .await;
    let (mut c, _) = node.connect("alice").await;
    for id in 1..=2 {
        let r = call(&mut c, id, "brk.op", json!({})).await;
        assert_eq!(error_code(&r), "upstream_unavailable", "refused: {r}");
    }
    wait_circuit(&node, "brk", &dead, 1.0).await;
    expect_fail_fast(&mut c, 3, 2, "brk.op").await;
}
