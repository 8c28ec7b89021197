//! End-to-end: `selftest` measures the tool's own floor (no gateway needed: it starts its
//! own reflector) and reports it as JSON. Only sanity is asserted, never a timing bound:
//! the machine running the tests may be busy.

mod support;

use serde_json::Value;
use support::{args, loadgen};

fn stat_is_sane(s: &Value, count: u64, what: &str) {
    let n = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("{what}.{k}: {s}"));
    assert_eq!(n("count"), count, "{what}: {s}");
    assert!(
        n("p50") >= 1 && n("p50") <= n("p99") && n("p99") <= n("max"),
        "{what}: {s}"
    );
}

#[test]
fn selftest_reports_scheduling_round_trips_and_cpu() {
    let r = loadgen(
        &args(
            &[],
            &[
                "selftest",
                "--rates",
                "500,2000",
                "--seconds",
                "0.5",
                "--tasks",
                "10",
                "--rtt-rate",
                "400",
                "--rtt-pairs",
                "4",
                "--rtt-seconds",
                "0.5",
                "--quiet",
            ],
        ),
        || {},
    );
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.contains("scheduling error"), "{}", r.stdout);
    assert!(r.stdout.contains("loopback round trip"), "{}", r.stdout);
    let j = &r.json;
    assert_eq!(j["mode"], "selftest");
    assert_eq!(j["timer"], "precise");

    let sched = j["schedule"].as_array().expect("schedule");
    assert_eq!(sched.len(), 2);
    for (s, (rate, count)) in sched.iter().zip([(500.0, 250), (2000.0, 1000)]) {
        assert_eq!(s["rate"].as_f64(), Some(rate));
        assert_eq!(s["early"], 0, "a wait ended before its deadline: {s}");
        stat_is_sane(&s["error_us"], count, "error_us");
        eprintln!("scheduling at {rate}/s: {}", s["error_us"]);
        assert!(s["cpu_us_per_msg"].as_f64().is_some_and(|c| c >= 0.0));
    }

    let rtt = j["round_trip"].as_array().expect("round_trip");
    let vias: Vec<&str> = rtt.iter().filter_map(|t| t["via"].as_str()).collect();
    assert_eq!(vias, ["ws", "api"]);
    for t in rtt {
        for k in ["scheduled", "sent", "acked", "delivered"] {
            assert_eq!(t["messages"][k], 200, "{k}: {t}");
        }
        assert_eq!(t["messages"]["lost"], 0, "{t}");
        stat_is_sane(&t["latency_us"], 200, "latency_us");
        stat_is_sane(&t["send_lag_us"], 200, "send_lag_us");
        eprintln!("round trip via {}: {}", t["via"], t["latency_us"]);
        assert!(t["cpu_us_per_msg"].as_f64().is_some_and(|c| c >= 0.0));
    }
    let checks = j["checks"].as_array().expect("checks");
    assert!(checks.iter().all(|c| c["ok"] == true), "{checks:?}");
}

#[test]
fn selftest_rejects_bad_flags_with_exit_2() {
    let r = loadgen(
        &args(
            &[],
            &["selftest", "--rates", "0", "--tasks", "0", "--quiet"],
        ),
        || {},
    );
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert_eq!(r.json, Value::Null);
}
