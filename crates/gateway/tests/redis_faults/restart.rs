//! Redis killed (SIGKILL) and restarted: without persistence the node answers 503 while
//! it is down and sends clients whose epoch is gone a `resync` frame, keeping their
//! sockets open; with `appendfsync always` no acknowledged publish is lost.

use super::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_without_data_answers_503_then_resyncs_clients_without_closing() {
    let mut redis = RedisServer::start();
    let node = start_node(&redis.url()).await;
    wait_readyz(&node, 200, Duration::from_secs(5), "ready at start").await;
    let api = node.api_client();
    let (mut alice, welcome) = node.connect("alice").await;
    let (epoch1, _) = position(&welcome);
    for n in 1..=3u64 {
        let (status, body, _) = publish(&api, "user:alice", json!({"n": n})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(position(&body), (epoch1.clone(), n), "{body}");
        let msg = expect_message(&mut alice, "user:alice", support::WAIT).await;
        assert_eq!(position(&msg), (epoch1.clone(), n), "{msg}");
    }

    blocking(|| redis.kill());
    let detected = wait_readyz(
        &node,
        503,
        TIMEOUT * 2 + PROBE * 2 + SLACK,
        "/readyz turns 503 after Redis is killed",
    )
    .await;
    println!("measured: /readyz 503 {detected:?} after the kill");
    let bound = TIMEOUT + SLACK;
    for i in 0..4 {
        let channel = if i % 2 == 0 {
            "user:alice"
        } else {
            "room:down"
        };
        let (status, body, took) = publish(&api, channel, json!({"down": i})).await;
        assert_eq!(
            status, 503,
            "publish to {channel} while Redis is down must be 503: {body}"
        );
        assert_eq!(body["error"], "unavailable", "{body}");
        assert!(
            took <= bound,
            "publish while Redis is down took {took:?} (> {bound:?})"
        );
        let (status, body) = node.get_internal("/readyz").await;
        assert_eq!(status, 503, "/readyz while Redis is down: {body}");
    }

    blocking(|| redis.restart());
    let back = wait_readyz(
        &node,
        200,
        Duration::from_secs(5),
        "ready again after Redis restarted",
    )
    .await;
    println!("measured: ready {back:?} after Redis restarted (no persistence)");

    // Alice's inbox epoch is gone: she is told on the open socket (never a silent gap,
    // never a close).
    let resync = match next_before(&mut alice, Instant::now() + support::WAIT).await {
        Next::Frame(v) if v["type"] == "resync" => v,
        other => panic!("expected resync after the restart, got {other:?}"),
    };
    assert_eq!(resync["channel"], "user:alice", "{resync}");
    let (epoch2, top) = position(&resync);
    assert_ne!(
        epoch2, epoch1,
        "a channel that lost its history gets a new epoch: {resync}"
    );

    let (status, body, _) = publish(&api, "user:alice", json!({"n": "after"})).await;
    assert_eq!(status, 200, "publish after the restart: {body}");
    assert_eq!(position(&body), (epoch2.clone(), top + 1), "{body}");
    let msg = expect_message(&mut alice, "user:alice", support::WAIT).await;
    assert_eq!(position(&msg), (epoch2.clone(), top + 1), "{msg}");
    assert_eq!(msg["data"], json!({"n": "after"}), "{msg}");
    expect_quiet(&mut alice, "alice").await;

    // A resume from the lost epoch (a client that missed the resync) is told too.
    let (_again, welcome) = connect_since(&node, "alice", Some((epoch1.as_str(), 3))).await;
    assert_eq!(
        welcome["recovered"], false,
        "resuming into a lost epoch: {welcome}"
    );
    assert_eq!(position(&welcome), (epoch2, top + 1), "{welcome}");
}

/// One publish of the AOF test.
#[derive(Debug, Clone)]
struct Attempt {
    publisher: u64,
    i: u64,
    status: u16,
    body: Value,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_with_aof_loses_no_acknowledged_message() {
    const PUBLISHERS: u64 = 4;
    /// Acknowledged publishes before the kill, and after the restart.
    const BEFORE: usize = 150;
    const AFTER: usize = 150;
    /// 503 answers seen before Redis is restarted.
    const FAILURES: usize = 16;

    let redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let node = start_node(&redis.url()).await;
    let mut bob = Follower::connect(&node, "bob").await;

    let attempts = Arc::new(Mutex::new(Vec::<Attempt>::new()));
    let acked = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let api = node.api_client();
        let (attempts, acked, failed, stop) = (
            attempts.clone(),
            acked.clone(),
            failed.clone(),
            stop.clone(),
        );
        publishers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let (status, body, _) = publish(&api, "user:bob", json!({"p": p, "i": i})).await;
                match status {
                    200 => acked.fetch_add(1, Ordering::SeqCst),
                    _ => failed.fetch_add(1, Ordering::SeqCst),
                };
                attempts.lock().unwrap().push(Attempt {
                    publisher: p,
                    i,
                    status,
                    body,
                });
                if status != 200 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                i += 1;
            }
        }));
    }
    // The fault runs concurrently with the publishers and with bob's reading: kill in
    // the middle of the stream, restart once the node noticed and publishes were
    // refused, stop after enough more were acknowledged.
    let reconnects_before = reconnects(&node).await;
    let fault_done = AtomicBool::new(false);
    let fault = async {
        let mut redis = redis;
        let count = |c: &Arc<AtomicUsize>| c.load(Ordering::SeqCst);
        poll(
            Duration::from_secs(15),
            "acknowledged before the kill",
            || async {
                let n = count(&acked);
                (n >= BEFORE)
                    .then_some(())
                    .ok_or(format!("{n} acknowledged"))
            },
        )
        .await;
        blocking(|| redis.kill());
        let failed_at_kill = count(&failed);
        wait_readyz(
            &node,
            503,
            Duration::from_secs(3),
            "not ready after the kill",
        )
        .await;
        poll(
            Duration::from_secs(10),
            "refused while Redis is down",
            || async {
                let n = count(&failed) - failed_at_kill;
                (n >= FAILURES).then_some(()).ok_or(format!("{n} refused"))
            },
        )
        .await;
        blocking(|| redis.restart());
        let back = wait_readyz(
            &node,
            200,
            Duration::from_secs(5),
            "ready after the restart",
        )
        .await;
        println!("measured: ready {back:?} after Redis restarted (appendfsync always)");
        let acked_at_restart = count(&acked);
        poll(
            Duration::from_secs(15),
            "acknowledged after the restart",
            || async {
                let n = count(&acked) - acked_at_restart;
                (n >= AFTER)
                    .then_some(())
                    .ok_or(format!("{n} acknowledged"))
            },
        )
        .await;
        stop.store(true, Ordering::SeqCst);
        fault_done.store(true, Ordering::SeqCst);
        redis
    };
    let reader = async {
        while !fault_done.load(Ordering::SeqCst) {
            bob.step(Instant::now() + Duration::from_millis(100)).await;
        }
    };
    let (_redis, ()) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(fault, reader)
    })
    .await
    .expect("the fault sequence did not finish within 30 s");
    for p in publishers {
        p.await.expect("publisher");
    }
    let attempts = attempts.lock().unwrap().clone();
    for a in &attempts {
        assert!(
            a.status == 200 || (a.status == 503 && a.body["error"] == "unavailable"),
            "publish answers are 200 or 503 unavailable: {a:?}"
        );
    }
    let ok: Vec<&Attempt> = attempts.iter().filter(|a| a.status == 200).collect();
    let refused = attempts.len() - ok.len();
    assert!(
        refused >= FAILURES,
        "the kill refused only {refused} publishes"
    );
    let epoch = position(&ok[0].body).0;
    for a in &ok {
        assert_eq!(
            position(&a.body).0,
            epoch,
            "Redis restarted from its AOF: the epoch must survive ({a:?})"
        );
    }
    let top = ok.iter().map(|a| position(&a.body).1).max().unwrap();
    let got_up_to = Instant::now() + Duration::from_secs(10);
    while bob.last.0 != epoch || bob.last.1 < top {
        assert!(
            bob.step(got_up_to).await,
            "bob did not receive up to offset {top} within 10 s: last {:?}, kicks {:?}",
            bob.last,
            bob.kicks
        );
    }
    expect_quiet(&mut bob.client, "bob").await;

    // In order, no duplicates, no gap: exactly offsets 1..=n of one epoch.
    let offsets: Vec<u64> = bob.got.iter().map(|m| position(m).1).collect();
    let n = offsets.len() as u64;
    assert!(
        bob.got.iter().all(|m| position(m).0 == epoch),
        "a message of another epoch arrived"
    );
    assert_eq!(
        offsets,
        (1..=n).collect::<Vec<_>>(),
        "bob's offsets must be 1..={n} in order without duplicates (kicks {:?})",
        bob.kicks
    );
    // Every acknowledged publish arrived, with its data, at its offset.
    for a in &ok {
        let (_, offset) = position(&a.body);
        let msg = &bob.got[(offset - 1) as usize];
        assert_eq!(
            msg["data"],
            json!({"p": a.publisher, "i": a.i}),
            "acknowledged publish {a:?} vs delivered {msg}"
        );
    }
    assert!(
        bob.resumes.iter().all(|r| *r),
        "a resume answered recovered:false although Redis kept its data: {:?}",
        bob.kicks
    );
    let reconnects_after = reconnects(&node).await;
    assert!(
        reconnects_after > reconnects_before,
        "the node did not count a backplane reconnect ({reconnects_before} -> {reconnects_after})"
    );
    let stored_but_refused = n as usize - ok.len();
    println!(
        "measured: AOF restart: {} acknowledged (0 lost), {refused} refused ({stored_but_refused} of them stored anyway), {} kicks of bob",
        ok.len(),
        bob.kicks.len()
    );
}
