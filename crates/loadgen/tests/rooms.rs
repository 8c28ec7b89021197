//! End-to-end: `direct --channel room` against real gateways — one node on the embedded
//! backplane, two nodes on a Redis started for the test — over the senders' sockets and the
//! server API, in `room:` and in a presence-free `feed:` namespace, and across a drain with
//! `--reconnect` (rooms with history resume with `subscribe` + `since`; without history the
//! gap is counted as lost).

mod support;

use std::thread::sleep;
use std::time::Duration;

use support::{args, common, loadgen, Node, Redis, Run};

const CHECKS: [&str; 8] = [
    "--max-lost",
    "0",
    "--max-duplicates",
    "0",
    "--max-out-of-order",
    "0",
    "--min-delivered-ratio",
    "1",
];

fn direct_rooms(c: &[String], extra: &[&str]) -> Run {
    let mut a = vec![
        "direct",
        "--channel",
        "room",
        "--pairs",
        "8",
        "--rate",
        "200",
        "--duration",
        "1",
    ];
    a.extend_from_slice(extra);
    a.extend_from_slice(&CHECKS);
    loadgen(&args(c, &a), || {})
}

#[test]
fn rooms_on_one_node() {
    let node = Node::start(None, &[]);
    let c = common(&[&node]);

    let r = direct_rooms(&c, &["--via", "api"]);
    assert_eq!(r.ready_line(), "ready connections=8 failed=0");
    r.assert_all_delivered(200);

    let r = direct_rooms(&c, &["--via", "ws"]);
    assert_eq!(r.ready_line(), "ready connections=16 failed=0");
    r.assert_all_delivered(200);

    let r = direct_rooms(&c, &["--via", "api", "--batch", "10"]);
    r.assert_all_delivered(200);

    // A presence-free namespace (the nodes run with --namespaces feed); the ws senders'
    // tokens allow it.
    let r = direct_rooms(&c, &["--via", "ws", "--room-namespace", "feed"]);
    r.assert_all_delivered(200);

    // A namespace the gateway does not know: every subscribe is refused, nobody is ready.
    let r = loadgen(
        &args(
            &c,
            &[
                "direct",
                "--channel",
                "room",
                "--room-namespace",
                "chat",
                "--pairs",
                "3",
                "--rate",
                "10",
                "--duration",
                "0.2",
                "--via",
                "api",
                "--settle-seconds",
                "0.2",
                "--max-failed-connects",
                "0",
            ],
        ),
        || {},
    );
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert_eq!(r.ready_line(), "ready connections=0 failed=3");
    assert_eq!(
        r.n(&["connections", "failures", "subscribe_refused"]),
        3,
        "{}",
        r.stdout
    );
}

#[test]
fn rooms_across_two_nodes_on_redis() {
    let redis = Redis::start();
    let n0 = Node::start(Some(&redis), &[]);
    let n1 = Node::start(Some(&redis), &[]);
    let c = common(&[&n0, &n1]);

    // Recipient i on node i % 2, its messages through the other node's API.
    let r = direct_rooms(&c, &["--via", "api"]);
    assert_eq!(r.ready_line(), "ready connections=8 failed=0");
    r.assert_all_delivered(200);

    // Sender i on node (i + 1) % 2.
    let r = direct_rooms(&c, &["--via", "ws", "--processes", "2"]);
    assert_eq!(r.ready_line(), "ready connections=16 failed=0");
    r.assert_all_delivered(200);
}

/// Two nodes on Redis (rooms with history or not), `--reconnect`; node 1 drains 1.2 s after
/// `ready`.
fn drained(history: bool) -> Run {
    let redis = Redis::start();
    let mut opts = vec!["--drain-seconds", "2"];
    if history {
        opts.extend(["--history", "room:*=10000/3600"]);
    }
    let n0 = Node::start(Some(&redis), &opts);
    let mut n1 = Node::start(Some(&redis), &opts);
    let c = common(&[&n0, &n1]);
    let a = args(
        &c,
        &[
            "direct",
            "--channel",
            "room",
            "--reconnect",
            "--pairs",
            "10",
            "--rate",
            "100",
            "--duration",
            "4",
            "--settle-seconds",
            "5",
            "--max-lost",
            "0",
            "--max-duplicates",
            "0",
        ],
    );
    let r = loadgen(&a, || {
        sleep(Duration::from_millis(1200));
        assert_eq!(n1.terminate(), Some(0), "a clean drain exits 0");
    });
    // 5 recipients and 5 senders were on node 1: closed with 1012, back on node 0.
    assert_eq!(r.n(&["closes", "1012"]), 10, "{}", r.stdout);
    assert_eq!(r.n(&["reconnects"]), 10, "{}", r.stdout);
    assert_eq!(r.n(&["messages", "acked"]), 400, "{}", r.stdout);
    assert_eq!(r.n(&["messages", "duplicated"]), 0);
    r
}

#[test]
fn rooms_with_history_resume_after_a_drain() {
    let r = drained(true);
    assert_eq!(r.code, 0, "{}", r.stdout);
    // The recipients' rooms resumed from their last position: nothing missing.
    assert_eq!(r.n(&["messages", "delivered"]), 400, "{}", r.stdout);
    assert_eq!(r.n(&["messages", "lost"]), 0);
    assert_eq!(r.n(&["recovery_failed"]), 0, "{}", r.stdout);
}

#[test]
fn rooms_without_history_lose_what_came_during_a_reconnect() {
    let r = drained(false);
    // What was published while a recipient was away is gone, and counted: lost, and the
    // resubscribes' recovered:false.
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.n(&["messages", "lost"]) > 0, "{}", r.stdout);
    assert!(r.n(&["recovery_failed"]) > 0, "{}", r.stdout);
    assert_eq!(
        r.n(&["messages", "delivered"]) + r.n(&["messages", "lost"]),
        400,
        "{}",
        r.stdout
    );
}
