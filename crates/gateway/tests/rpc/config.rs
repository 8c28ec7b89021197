//! Route configuration: invalid routes are a startup error (exit 64, every problem listed
//! at once, nothing bound), and the flag / env forms of routes and of the in-flight cap.

use super::upstream::{Answer, Upstream};
use super::*;

/// Runs `switchboard serve` expecting a configuration error; returns the problem lines.
async fn expect_config_error(args: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let mut env = env.to_vec();
    env.push(("SWITCHBOARD_JWT_SECRET", support::SECRET));
    let out = support::serve_to_exit(args, &env, support::WAIT)
        .await
        .expect("switchboard with an invalid config must exit, not serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "stderr: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "nothing may be served: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
        .lines()
        .filter(|l| !l.starts_with("switchboard: invalid configuration") && !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// Asserts that exactly one of `problems` contains `needle`.
fn one_problem_about(problems: &[String], needle: &str, what: &str) {
    let hits = problems.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(
        hits, 1,
        "expected one problem line about {what} (containing {needle:?}): {problems:#?}"
    );
}

#[tokio::test]
async fn invalid_routes_exit_64_listing_every_problem() {
    let toml = [
        route(
            "orders.*",
            &["http://127.0.0.1:7001/rpc"],
            &["name = \"r-retries\"", "retries = 2"],
        ),
        route(
            "pay.*",
            &["ftp://127.0.0.1:7002/rpc"],
            &["name = \"r-url\""],
        ),
        route(
            "us*ers.get",
            &["http://127.0.0.1:7003/rpc"],
            &["name = \"r-pattern\""],
        ),
        route(
            "ok.*",
            &["http://127.0.0.1:7004/rpc"],
            &["name = \"r-balance\"", "balance = \"random\""],
        ),
    ]
    .concat();
    let path = write_config(&toml);
    let problems = expect_config_error(&["--config", path.to_str().unwrap()], &[]).await;
    let _ = std::fs::remove_file(&path);
    assert_eq!(problems.len(), 4, "one line per problem: {problems:#?}");
    one_problem_about(&problems, "retries", "retries without idempotent = true");
    one_problem_about(&problems, "ftp", "an upstream that is not http://");
    one_problem_about(&problems, "us*ers.get", "a `*` that is not at the end");
    one_problem_about(&problems, "random", "an unknown balance");
}

#[tokio::test]
async fn invalid_flag_routes_exit_64() {
    let problems = expect_config_error(
        &[
            "--rpc-route",
            "orders.*",
            "--rpc-route",
            "pay.*=ftp://127.0.0.1:7002/rpc",
            "--rpc-max-inflight",
            "lots",
        ],
        &[],
    )
    .await;
    assert_eq!(problems.len(), 3, "one line per problem: {problems:#?}");
    one_problem_about(&problems, "ftp", "an upstream that is not http://");
    one_problem_about(&problems, "rpc-max-inflight", "a non-numeric cap");
}

#[tokio::test]
async fn routes_given_as_flags_and_env() {
    let a = Upstream::start(|_| Answer::json(json!("a"))).await;
    let b = Upstream::start(|_| Answer::json(json!("b"))).await;
    let c = Upstream::start(|_| Answer::json(json!("c"))).await;

    let flag_ab = format!("flag.*={},{}", a.url(), b.url());
    let flag_c = format!("other.op={}", c.url());
    let node = support::start(&["--rpc-route", &flag_ab, "--rpc-route", &flag_c]).await;
    let (mut client, _) = node.connect("alice").await;
    let mut by = Vec::new();
    for id in 1..=2 {
        by.push(ok_data(&call(&mut client, id, "flag.x", json!({})).await));
    }
    by.sort_by_key(|v| v.to_string());
    assert_eq!(by, [json!("a"), json!("b")], "both upstreams of one flag");
    assert_eq!(
        ok_data(&call(&mut client, 3, "other.op", json!({})).await),
        "c"
    );
    let r = call(&mut client, 4, "other.op2", json!({})).await;
    assert_eq!(error_code(&r), "no_route", "{r}");
    drop(node);

    let env = format!("env.*={};exact.op={},{}", a.url(), b.url(), c.url());
    let node = support::start_env(&[], &[("SWITCHBOARD_RPC_ROUTES", &env)]).await;
    let (mut client, _) = node.connect("alice").await;
    assert_eq!(
        ok_data(&call(&mut client, 1, "env.x", json!({})).await),
        "a"
    );
    let mut by = Vec::new();
    for id in 2..=3 {
        by.push(ok_data(&call(&mut client, id, "exact.op", json!({})).await));
    }
    by.sort_by_key(|v| v.to_string());
    assert_eq!(by, [json!("b"), json!("c")], "routes separated by `;`");
    let r = call(&mut client, 4, "flag.x", json!({})).await;
    assert_eq!(error_code(&r), "no_route", "{r}");
}

#[tokio::test]
async fn the_in_flight_cap_as_flag_and_env() {
    let up = Upstream::start(|r| Answer::json(r.data()).held()).await;
    let routes = format!("slow.*={}", up.url());
    let flag = support::start(&["--rpc-route", &routes, "--rpc-max-inflight", "1"]).await;
    let env = support::start_env(
        &["--rpc-route", &routes],
        &[("SWITCHBOARD_RPC_MAX_INFLIGHT", "1")],
    )
    .await;
    let mut clients = Vec::new();
    for (i, node) in [&flag, &env].into_iter().enumerate() {
        let (mut c, _) = node.connect("alice").await;
        c.send(rpc(1, "slow.op", json!(i))).await;
        up.wait("the first call in flight", |u| u.inflight() == i + 1)
            .await;
        let r = call(&mut c, 2, "slow.op", json!({})).await;
        assert_eq!(error_code(&r), "too_many_requests", "node {i}: {r}");
        clients.push(c);
    }
    up.release();
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(ok_data(&c.reply(1).await), json!(i));
    }
}
