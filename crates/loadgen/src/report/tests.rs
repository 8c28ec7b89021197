use super::*;
use crate::stats::{encode, Histo};
use clap::Parser;

fn common(args: &[&str]) -> Common {
    let mut v = vec!["lg"];
    v.extend_from_slice(args);
    v.push("idle");
    v.push("--connections");
    v.push("1");
    crate::cli::Cli::try_parse_from(v).unwrap().common
}

fn info(rate: Option<f64>) -> RunInfo {
    RunInfo {
        mode: "direct",
        protocol: "switchboard",
        label: Some("t".into()),
        started_unix_ms: 1,
        duration_s: 2.0,
        processes: 2,
        rate_target: rate,
    }
}

fn part(lat: &[u64], sent: u64, delivered: u64, lost: u64) -> Partial {
    let h = Histo::default();
    for v in lat {
        h.record(*v);
    }
    let mut closes = BTreeMap::new();
    closes.insert("1006".to_owned(), 1);
    Partial {
        attempted: 10,
        established: 9,
        failed: 1,
        failures: [("refused".to_owned(), 1)].into(),
        handshake: encode(&h.snapshot()),
        latency: encode(&h.snapshot()),
        send_lag: encode(&h.snapshot()),
        setup_start_us: 1_000_000,
        setup_end_us: 2_000_000,
        send_start_us: 3_000_000,
        send_end_us: 5_000_000,
        sent,
        acked: sent,
        delivered,
        lost,
        closes,
        timeline: vec![Point {
            unix_s: 7,
            connected: 9,
            sent: 3,
            ..Point::default()
        }],
        ..Partial::default()
    }
}

#[test]
fn partials_merge_into_one_result() {
    let parts = [part(&[100, 200], 50, 50, 0), part(&[300, 400], 50, 49, 1)];
    let r = merge(&info(Some(50.0)), &parts, &common(&[])).unwrap();
    assert_eq!(r.connections.attempted, 20);
    assert_eq!(r.connections.established, 18);
    assert_eq!(r.connections.failures.get("refused"), Some(&2));
    assert_eq!(r.connections.connect_per_s, 18.0); // 18 in 1 s
    let m = r.messages.as_ref().unwrap();
    assert_eq!((m.sent, m.delivered, m.lost), (100, 99, 1));
    assert_eq!(m.rate_achieved, 50.0); // 100 in 2 s
    let l = r.latency_us.as_ref().unwrap();
    assert_eq!(l.count, 4);
    assert!((399..=401).contains(&l.max), "{l:?}");
    assert_eq!(r.send_lag_us.as_ref().map(|s| s.count), Some(4));
    assert!(r.summary().contains("send_lag_us: p50="));
    assert_eq!(r.closes.get("1006"), Some(&2));
    assert_eq!(r.timeline.len(), 1);
    assert_eq!((r.timeline[0].connected, r.timeline[0].sent), (18, 6));
    assert!(r.checks.is_empty() && r.ok());
    let json = serde_json::to_value(&r).unwrap();
    assert!(json.get("fanout").is_none());
    assert_eq!(json["label"], "t");
}

#[test]
fn checks_pass_and_fail() {
    let parts = [part(&[100], 10, 9, 1)];
    let c = common(&[
        "--max-lost",
        "0",
        "--max-abnormal-closes",
        "1",
        "--min-delivered-ratio",
        "0.95",
        "--max-failed-connects",
        "0",
    ]);
    let r = merge(&info(Some(5.0)), &parts, &c).unwrap();
    let by: BTreeMap<_, _> = r.checks.iter().map(|c| (c.name, c.ok)).collect();
    assert!(!by["max_lost"]);
    assert!(by["max_abnormal_closes"]);
    assert!(!by["min_delivered_ratio"]); // 0.9
    assert!(!by["max_failed_connects"]);
    assert!(!r.ok());
    assert!(r
        .summary()
        .contains("check max_lost: value=1 limit=0 FAILED"));
}

#[test]
fn fanout_counts_merge_across_processes() {
    let mut a = part(&[], 3, 0, 0);
    let mut b = part(&[], 0, 0, 0);
    a.fanout = Some(FanoutPartial {
        subscribers: 2,
        counts: vec![2, 2, 1],
        last_us: vec![10, 20, 30],
        acked: Some(vec![true, true, true]),
    });
    b.fanout = Some(FanoutPartial {
        subscribers: 1,
        counts: vec![1, 0, 1],
        last_us: vec![15, 0, 5],
        acked: None,
    });
    let r = merge(&info(Some(1.0)), &[a, b], &common(&[])).unwrap();
    let f = r.fanout.as_ref().unwrap();
    assert_eq!((f.messages, f.complete, f.subscribers), (3, 1, 3));
    assert_eq!(f.last_recipient_us.count, 1);
    assert!((15..=16).contains(&f.last_recipient_us.max));
    // message 1 missed one subscriber, message 2 missed one.
    assert_eq!(r.messages.as_ref().unwrap().lost, 2);
}
