//! End-to-end: the load generator against real gateways — one node on the embedded
//! backplane, and two nodes on a Redis started for the test — checking the ready line, the
//! result JSON and the exit status (0, and 1 when loss is real).

mod support;

use std::thread::sleep;
use std::time::Duration;

use support::{args, common, loadgen, Node, Redis};

#[test]
fn idle_and_storm_open_count_and_close() {
    let node = Node::start(None, &[]);
    let c = common(&[&node]);

    let r = loadgen(
        &args(
            &c,
            &["idle", "--connections", "30", "--hold-seconds", "0.3"],
        ),
        || {},
    );
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.ready_line(), "ready connections=30 failed=0");
    assert_eq!(r.json["mode"], "idle");
    assert_eq!(r.n(&["connections", "established"]), 30);
    assert_eq!(r.n(&["connections", "handshake_us", "count"]), 30);
    assert_eq!(
        r.json["closes"],
        serde_json::json!({}),
        "our own 1000 closes are not listed"
    );
    assert!(r.json.get("messages").is_none());

    // Two worker processes: one ready line for both, counts summed.
    let r = loadgen(
        &args(
            &c,
            &[
                "idle",
                "--connections",
                "30",
                "--hold-seconds",
                "0.2",
                "--processes",
                "2",
            ],
        ),
        || {},
    );
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.ready_line(), "ready connections=30 failed=0");
    assert_eq!(r.n(&["processes"]), 2);
    assert_eq!(r.n(&["connections", "attempted"]), 30);

    let r = loadgen(
        &args(&c, &["storm", "--connections", "40", "--concurrency", "10"]),
        || {},
    );
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.ready_line(), "ready connections=40 failed=0");
    assert_eq!(r.n(&["connections", "handshake_us", "count"]), 40);
    assert!(r.json["connections"]["connect_per_s"].as_f64().unwrap() > 0.0);

    // A wrong secret: every upgrade is refused with 401, and the check fails.
    let mut bad = c.clone();
    let i = bad.iter().position(|a| a == "--jwt-secret").unwrap();
    bad[i + 1] = "not-the-secret-not-the-secret-0000".into();
    let r = loadgen(
        &args(
            &bad,
            &["storm", "--connections", "5", "--max-failed-connects", "0"],
        ),
        || {},
    );
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert_eq!(r.ready_line(), "ready connections=0 failed=5");
    assert_eq!(r.n(&["connections", "failures", "http_401"]), 5);
}

#[test]
fn direct_over_ws_and_api_delivers_everything() {
    let node = Node::start(None, &[]);
    let c = common(&[&node]);
    let checks = [
        "--max-lost",
        "0",
        "--max-duplicates",
        "0",
        "--max-out-of-order",
        "0",
        "--min-delivered-ratio",
        "1",
    ];
    let direct = |extra: &[&str]| {
        let mut a = vec!["direct", "--pairs", "8", "--rate", "200", "--duration", "1"];
        a.extend_from_slice(extra);
        a.extend_from_slice(&checks);
        loadgen(&args(&c, &a), || {})
    };
    let r = direct(&["--via", "ws"]);
    assert_eq!(r.ready_line(), "ready connections=16 failed=0");
    r.assert_all_delivered(200);
    assert_eq!(r.json["checks"].as_array().unwrap().len(), 4);
    assert!(r.json["timeline"].as_array().unwrap().len() >= 2);

    let r = direct(&["--via", "api"]);
    assert_eq!(r.ready_line(), "ready connections=8 failed=0");
    r.assert_all_delivered(200);

    let r = direct(&["--via", "api", "--batch", "10"]);
    r.assert_all_delivered(200);

    let r = direct(&["--via", "ws", "--processes", "2", "--payload-bytes", "300"]);
    assert_eq!(r.ready_line(), "ready connections=16 failed=0");
    assert_eq!(r.n(&["processes"]), 2);
    r.assert_all_delivered(200);
}

#[test]
fn failed_publishes_are_counted_and_fail_the_checks() {
    let node = Node::start(None, &[]);
    let mut c = common(&[&node]);
    let i = c.iter().position(|a| a == "--api-key").unwrap();
    c[i + 1] = "wrong-api-key-wrong-api-key".into();
    let r = loadgen(
        &args(
            &c,
            &[
                "direct",
                "--pairs",
                "4",
                "--rate",
                "100",
                "--duration",
                "0.5",
                "--via",
                "api",
                "--settle-seconds",
                "0.5",
                "--min-delivered-ratio",
                "1",
                "--max-lost",
                "0",
            ],
        ),
        || {},
    );
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert_eq!(r.n(&["messages", "sent"]), 50);
    assert_eq!(r.n(&["messages", "send_failed"]), 50);
    assert_eq!(r.n(&["messages", "acked"]), 0);
    assert_eq!(r.n(&["messages", "delivered"]), 0);
    assert_eq!(
        r.n(&["messages", "lost"]),
        0,
        "nothing was acked, so nothing is lost"
    );
    let checks = r.json["checks"].as_array().unwrap();
    let ratio = checks
        .iter()
        .find(|c| c["name"] == "min_delivered_ratio")
        .unwrap();
    assert_eq!(ratio["ok"], false);
    let line = r
        .stdout
        .lines()
        .find(|l| l.starts_with("check min_delivered_ratio:"));
    assert!(line.unwrap().ends_with("FAILED"), "{}", r.stdout);
}

#[test]
fn fanout_reaches_every_subscriber() {
    let node = Node::start(None, &[]);
    let c = common(&[&node]);
    for (via, procs) in [("api", "1"), ("ws", "1"), ("api", "2")] {
        let r = loadgen(
            &args(
                &c,
                &[
                    "fanout",
                    "--subscribers",
                    "20",
                    "--messages",
                    "40",
                    "--rate",
                    "100",
                    "--via",
                    via,
                    "--processes",
                    procs,
                    "--max-lost",
                    "0",
                ],
            ),
            || {},
        );
        assert_eq!(r.code, 0, "{via}/{procs}: {}", r.stdout);
        let conns = if via == "ws" { 21 } else { 20 };
        assert_eq!(
            r.ready_line(),
            format!("ready connections={conns} failed=0")
        );
        assert_eq!(r.n(&["messages", "acked"]), 40);
        assert_eq!(r.n(&["messages", "delivered"]), 800);
        assert_eq!(r.n(&["messages", "duplicated"]), 0);
        assert_eq!(r.n(&["messages", "out_of_order"]), 0);
        assert_eq!(r.n(&["fanout", "messages"]), 40);
        assert_eq!(r.n(&["fanout", "complete"]), 40);
        assert_eq!(r.n(&["fanout", "subscribers"]), 20);
        assert_eq!(r.n(&["fanout", "last_recipient_us", "count"]), 40);
        // Only the publishing process sends: its schedule's lateness, once per message.
        assert_eq!(r.n(&["send_lag_us", "count"]), 40);
    }
}

#[test]
fn slow_subscribers_find_the_slow_consumer_close() {
    // A 2 MB outbound queue: ~13 MB of messages overflow it and the loopback buffers of the
    // slow subscriber, while the fast one (even a debug build) never falls 2 MB behind.
    let node = Node::start(
        None,
        &[
            "--outbound-queue-frames",
            "64",
            "--outbound-queue-bytes",
            "2097152",
        ],
    );
    let c = common(&[&node]);
    let r = loadgen(
        &args(
            &c,
            &[
                "fanout",
                "--subscribers",
                "1",
                "--messages",
                "400",
                "--rate",
                "200",
                "--payload-bytes",
                "32000",
                "--slow",
                "1",
                "--max-lost",
                "0",
            ],
        ),
        || {},
    );
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.ready_line(), "ready connections=2 failed=0");
    assert_eq!(
        r.n(&["messages", "delivered"]),
        400,
        "the fast one got everything: {}",
        r.stdout
    );
    assert_eq!(r.n(&["slow", "connections"]), 1);
    assert_eq!(r.n(&["slow", "closes", "4008"]), 1, "{}", r.stdout);
}

fn direct_ws(c: &[String], extra: &[&str]) -> Vec<String> {
    let mut a = vec![
        "direct",
        "--pairs",
        "10",
        "--rate",
        "100",
        "--duration",
        "4",
        "--max-lost",
        "0",
        "--max-duplicates",
        "0",
    ];
    a.extend_from_slice(extra);
    args(c, &a)
}

#[test]
fn a_killed_node_without_reconnect_is_real_loss() {
    let redis = Redis::start();
    let n0 = Node::start(Some(&redis), &[]);
    let mut n1 = Node::start(Some(&redis), &[]);
    let c = common(&[&n0, &n1]);
    let r = loadgen(&direct_ws(&c, &["--settle-seconds", "1"]), || {
        sleep(Duration::from_millis(1200));
        n1.kill();
    });
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert_eq!(r.ready_line(), "ready connections=20 failed=0");
    // Recipients on node 1 are gone: what was acked for them after the kill is lost.
    assert!(r.n(&["messages", "lost"]) > 0, "{}", r.stdout);
    assert_eq!(r.n(&["closes", "1006"]), 10, "{}", r.stdout);
    assert_eq!(r.n(&["reconnects"]), 0);
    let failed = r.json["checks"].as_array().unwrap();
    assert!(failed
        .iter()
        .any(|c| c["name"] == "max_lost" && c["ok"] == false));
}

#[test]
fn a_drained_node_with_reconnect_loses_nothing() {
    let redis = Redis::start();
    let n0 = Node::start(Some(&redis), &["--drain-seconds", "2"]);
    let mut n1 = Node::start(Some(&redis), &["--drain-seconds", "2"]);
    let c = common(&[&n0, &n1]);

    // Fan-out across the two nodes first.
    let r = loadgen(
        &args(
            &c,
            &[
                "fanout",
                "--subscribers",
                "10",
                "--messages",
                "20",
                "--rate",
                "100",
                "--max-lost",
                "0",
            ],
        ),
        || {},
    );
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.n(&["messages", "delivered"]), 200);

    let r = loadgen(
        &direct_ws(&c, &["--reconnect", "--settle-seconds", "5"]),
        || {
            sleep(Duration::from_millis(1200));
            assert_eq!(n1.terminate(), Some(0), "a clean drain exits 0");
        },
    );
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.n(&["messages", "sent"]), 400);
    assert_eq!(r.n(&["messages", "delivered"]), 400);
    assert_eq!(r.n(&["messages", "lost"]), 0);
    assert_eq!(r.n(&["messages", "duplicated"]), 0);
    // The 10 connections of node 1 (5 recipients, 5 senders) were closed with 1012 after a
    // goaway and came back on node 0.
    assert_eq!(r.n(&["closes", "1012"]), 10, "{}", r.stdout);
    assert_eq!(r.n(&["reconnects"]), 10, "{}", r.stdout);
    assert_eq!(r.n(&["recovery_failed"]), 0);
    let timeline = r.json["timeline"].as_array().unwrap();
    let closes: u64 = timeline.iter().map(|p| p["closes"].as_u64().unwrap()).sum();
    assert_eq!(closes, 10);
}
