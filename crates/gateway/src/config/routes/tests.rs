//! Route configuration tests: defaults, the flag/env form after the file's tables, and that
//! every bad route is reported together with the others.

use clap::{Args, FromArgMatches};

use super::super::{Config, ConfigErrors, ServeArgs};
use super::*;

fn load(flags: &[&str], file: &str) -> Result<Config, ConfigErrors> {
    let argv = [
        "switchboard",
        "--jwt-secret=routes-test-secret-0123456789abcdef",
    ]
    .into_iter()
    .chain(flags.iter().copied());
    let matches = ServeArgs::augment_args(clap::Command::new("switchboard"))
        .try_get_matches_from(argv)
        .expect("flags parse");
    let args = ServeArgs::from_arg_matches(&matches).expect("flags map to ServeArgs");
    Config::from_parts(&args, Some(file))
}

#[test]
fn defaults_and_every_key() {
    let c = load(&[], "").expect("valid");
    assert_eq!((c.rpc_max_inflight, c.routes.len()), (16, 0));
    let file = r#"
        rpc_max_inflight = 3
        [[routes]]
        method = "orders.*"
        upstreams = ["http://127.0.0.1:7001/rpc"]
        [[routes]]
        name = "billing"
        method = "billing.charge"
        upstreams = ["http://a:1/x", "http://b/"]
        timeout_ms = 250
        idempotent = true
        retries = 2
        balance = "least_inflight"
        breaker_failures = 3
        breaker_open_ms = 10
    "#;
    let c = load(&[], file).expect("valid");
    assert_eq!(c.rpc_max_inflight, 3);
    let (a, b) = (&c.routes[0], &c.routes[1]);
    assert_eq!(
        (a.name.as_str(), a.method.as_str()),
        ("orders.*", "orders.*")
    );
    assert_eq!(a.upstreams[0].url, "http://127.0.0.1:7001/rpc");
    assert_eq!(a.timeout, Duration::from_millis(5000));
    assert_eq!(
        (a.idempotent, a.retries, a.balance),
        (false, 0, Balance::RoundRobin)
    );
    assert_eq!(
        (a.breaker_failures, a.breaker_open),
        (5, Duration::from_secs(10))
    );
    assert_eq!(b.name, "billing");
    assert_eq!(b.upstreams.len(), 2);
    assert_eq!(b.timeout, Duration::from_millis(250));
    assert_eq!(
        (b.idempotent, b.retries, b.balance),
        (true, 2, Balance::LeastInflight)
    );
    assert_eq!(
        (b.breaker_failures, b.breaker_open),
        (3, Duration::from_millis(10))
    );
}

#[test]
fn flag_routes_come_after_the_file_routes() {
    let file = "[[routes]]\nmethod = \"a.*\"\nupstreams = [\"http://f:1/\"]\n";
    let c = load(
        &[
            "--rpc-route=b.*=http://x:1/rpc,http://y:2/rpc;c=http://z:3/",
            "--rpc-route",
            "*=http://w:4/",
        ],
        file,
    )
    .expect("valid");
    let names: Vec<&str> = c.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["a.*", "b.*", "c", "*"]);
    assert_eq!(c.routes[1].upstreams.len(), 2);
    assert_eq!(c.routes[3].upstreams[0].url, "http://w:4/");
    assert_eq!(c.routes[1].timeout, Duration::from_millis(5000));
}

#[test]
fn every_route_problem_is_reported_together() {
    let file = r#"
        [[routes]]
        method = "orders.*"
        upstreams = ["http://127.0.0.1:7001/rpc"]
        retries = 2
        [[routes]]
        method = "or*ders"
        upstreams = ["https://secure:443/rpc", "ftp://x/", "not a url"]
        [[routes]]
        method = "a"
        upstreams = ["http://a/"]
        timeout = 5
        balance = "random"
        timeout_ms = 0
        [[routes]]
        name = "dup"
        method = "b"
        upstreams = ["http://b/"]
        [[routes]]
        name = "dup"
        method = "c"
        upstreams = []
        [[routes]]
        name = "dup"
        method = "d"
        upstreams = ["http://d/"]
    "#;
    let e = load(&["--rpc-route=x", "--rpc-route=dup=http://e/"], file)
        .expect_err("invalid")
        .0;
    let has = |needle: &str| e.iter().any(|l| l.contains(needle));
    assert!(
        has("config file: routes[0]: retries = 2 needs idempotent = true"),
        "{e:#?}"
    );
    assert!(
        has("routes[1]: method: \"or*ders\" is not a method pattern"),
        "{e:#?}"
    );
    assert!(
        has("https:// upstreams are not supported yet (the gateway has no TLS client)"),
        "{e:#?}"
    );
    assert!(has("\"ftp://x/\" must be an http:// URL"), "{e:#?}");
    assert!(has("\"not a url\" is not a URL"), "{e:#?}");
    assert!(has("routes[2]: unknown key \"timeout\""), "{e:#?}");
    assert!(
        has("routes[2]: balance: \"random\" is not a balancing policy"),
        "{e:#?}"
    );
    assert!(
        has("routes[2]: timeout_ms must be a whole number in 1..=600000"),
        "{e:#?}"
    );
    assert!(
        has("routes[4]: upstreams: 0 URLs (allowed: 1..=64)"),
        "{e:#?}"
    );
    // routes[4] is bad in another way too; its name is checked all the same.
    assert!(
        has("routes[4]: route name \"dup\" is already used by config file: routes[3]"),
        "{e:#?}"
    );
    assert!(
        has("routes[5]: route name \"dup\" is already used by config file: routes[3]"),
        "{e:#?}"
    );
    assert!(
        has("--rpc-route / SWITCHBOARD_RPC_ROUTES: \"x\" is not a route"),
        "{e:#?}"
    );
    assert!(
        has("\"dup=http://e/\": route name \"dup\" is already used by config file: routes[3]"),
        "{e:#?}"
    );
    assert_eq!(e.len(), 13, "{e:#?}");
}

#[test]
fn a_bad_route_with_a_used_name_gets_both_messages() {
    let file = r#"
        [[routes]]
        method = "orders.*"
        upstreams = ["http://127.0.0.1:7001/rpc"]
        [[routes]]
        name = "orders.*"
        method = "orders.get"
        upstreams = ["http://127.0.0.1:7002/rpc"]
        retries = 1
        [[routes]]
        method = "orders.*"
        upstreams = ["ftp://x/"]
    "#;
    let e = load(&["--rpc-route=orders.*=nope"], file)
        .expect_err("invalid")
        .0;
    let used = "route name \"orders.*\" is already used by config file: routes[0] (names must \
                be unique; set name = \"…\")";
    assert_eq!(
        e,
        [
            "config file: routes[1]: retries = 1 needs idempotent = true (only idempotent calls \
             may be retried)"
                .to_owned(),
            "config file: routes[2]: upstreams: \"ftp://x/\" must be an http:// URL like \
             http://127.0.0.1:7001/rpc"
                .to_owned(),
            "--rpc-route / SWITCHBOARD_RPC_ROUTES: \"orders.*=nope\": \"nope\" must be an \
             http:// URL like http://127.0.0.1:7001/rpc"
                .to_owned(),
            format!("config file: routes[1]: {used}"),
            format!("config file: routes[2]: {used}"),
            format!("--rpc-route / SWITCHBOARD_RPC_ROUTES: \"orders.*=nope\": {used}"),
        ]
    );
}

#[test]
fn single_values() {
    for ok in ["orders.create", "orders.*", "*", "a/b:c", "x-"] {
        assert!(method_pattern(ok).is_ok(), "{ok}");
    }
    for bad in ["", "a b", "**", "a*b", "é"] {
        assert!(method_pattern(bad).is_err(), "{bad}");
    }
    assert!(upstream_url(" http://127.0.0.1:7001/rpc?x=1 ").is_ok());
    for bad in [
        "http://",
        "http://u:p@h/",
        "http://h:0/",
        "h:80",
        "HTTPS://h/",
    ] {
        assert!(upstream_url(bad).is_err(), "{bad}");
    }
    let e = load(&["--rpc-max-inflight=0"], "")
        .expect_err("out of range")
        .0;
    assert_eq!(e, ["--rpc-max-inflight / SWITCHBOARD_RPC_MAX_INFLIGHT: 0 is out of range (allowed: 1..=10000)"]);
    let e = load(&[], "routes = 1\n[x]\n").expect_err("bad").0;
    assert_eq!(e.len(), 2, "{e:?}");
}
