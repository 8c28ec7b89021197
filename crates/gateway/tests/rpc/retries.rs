//! Retries: only on routes marked idempotent, only after connect errors, timeouts and
//! 502/503/504, and at most `retries` extra attempts. Counted by the upstream's hits (a
//! reply is final, so the hits after it are all the attempts there will be).

use super::upstream::{refused_url, Answer, Upstream};
use super::*;

const RETRIES: &str = "switchboard_rpc_retries_total";

#[tokio::test]
async fn a_non_idempotent_route_is_tried_once() {
    let up = Upstream::start(|_| Answer::status(503)).await;
    let node = start_with_config(&route("pay.*", &[&up.url()], &[]), &[]).await;
    let (mut c, _) = node.connect("alice").await;
    let r = call(&mut c, 1, "pay.charge", json!({})).await;
    assert_eq!(error_code(&r), "upstream_error", "{r}");
    assert_eq!(up.hits(), 1, "a non-idempotent call is never repeated");

    // Not even after a connect error: half the calls go to the dead upstream and fail.
    let live = Upstream::echo().await;
    let node = start_with_config(&route("pay.*", &[&refused_url(), &live.url()], &[]), &[]).await;
    let (mut c, _) = node.connect("alice").await;
    let mut codes = Vec::new();
    for id in 1..=4 {
        let r = call(&mut c, id, "pay.charge", json!(id)).await;
        codes.push(if r["ok"] == true {
            "ok".to_owned()
        } else {
            error_code(&r)
        });
    }
    codes.sort();
    assert_eq!(
        codes,
        ["ok", "ok", "upstream_unavailable", "upstream_unavailable"],
        "round robin over [dead, live] without retries"
    );
    assert_eq!(live.hits(), 2);
}

#[tokio::test]
async fn an_idempotent_route_stops_after_retries_extra_attempts() {
    let up = Upstream::start(|_| Answer::status(503)).await;
    let node = start_with_config(
        &route(
            "read.*",
            &[&up.url()],
            &["name = \"reads\"", "idempotent = true", "retries = 2"],
        ),
        &[],
    )
    .await;
    let (mut c, _) = node.connect("alice").await;
    let r = call(&mut c, 1, "read.page", json!({})).await;
    assert_eq!(error_code(&r), "upstream_error", "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("503"),
        "{r}"
    );
    assert_eq!(up.hits(), 3, "1 attempt + retries = 2");
    let text = node.metrics_text().await;
    assert_eq!(
        metric_one(&text, RETRIES, &[("route", "reads")]),
        2.0,
        "{RETRIES}"
    );
}

#[tokio::test]
async fn a_retry_after_502_503_504_or_a_timeout_can_succeed() {
    // Odd hits fail in turn with 502, 503, 504 and a timeout; even hits succeed.
    let up = Upstream::start(|r| match r.hit {
        1 => Answer::status(502),
        3 => Answer::status(503),
        5 => Answer::status(504),
        7 => Answer::json(json!("too late")).after(Duration::from_secs(3)),
        _ => Answer::json(json!({"hit": r.hit, "data": r.data()})),
    })
    .await;
    let node = start_with_config(
        &route(
            "read.*",
            &[&up.url()],
            &[
                "name = \"reads\"",
                "idempotent = true",
                "retries = 2",
                "timeout_ms = 300",
            ],
        ),
        &[],
    )
    .await;
    let (mut c, _) = node.connect("alice").await;
    for (id, failure) in [(1u64, "502"), (2, "503"), (3, "504"), (4, "a timeout")] {
        let r = call(&mut c, id, "read.page", json!(id)).await;
        assert_eq!(
            ok_data(&r),
            json!({"hit": 2 * id, "data": id}),
            "the 2nd attempt after {failure} answers: {r}"
        );
        assert_eq!(up.hits() as u64, 2 * id, "no third attempt after a success");
    }
    let text = node.metrics_text().await;
    assert_eq!(metric_one(&text, RETRIES, &[("route", "reads")]), 4.0);
}

#[tokio::test]
async fn other_answers_are_never_retried() {
    let up = Upstream::start(|r| match r.json()["method"].as_str().unwrap_or_default() {
        "read.500" => Answer::status(500),
        "read.404" => Answer::status(404),
        "read.429" => Answer::status(429),
        "read.text" => Answer::raw(200, Some("text/plain"), "not json"),
        other => panic!("unexpected method {other}"),
    })
    .await;
    let node = start_with_config(
        &route(
            "read.*",
            &[&up.url()],
            &["idempotent = true", "retries = 2"],
        ),
        &[],
    )
    .await;
    let (mut c, _) = node.connect("alice").await;
    for (i, method) in ["read.500", "read.404", "read.429", "read.text"]
        .into_iter()
        .enumerate()
    {
        let r = call(&mut c, i as u64 + 1, method, json!({})).await;
        assert_eq!(error_code(&r), "upstream_error", "{method}: {r}");
        assert_eq!(up.hits(), i + 1, "{method} is not retried");
    }
}

#[tokio::test]
async fn connect_errors_are_retried_on_the_next_upstream() {
    let live = Upstream::echo().await;
    let node = start_with_config(
        &route(
            "read.*",
            &[&refused_url(), &live.url()],
            &["name = \"reads\"", "idempotent = true", "retries = 1"],
        ),
        &[],
    )
    .await;
    let (mut c, _) = node.connect("alice").await;
    for id in 1..=6 {
        let r = call(&mut c, id, "read.page", json!(id)).await;
        assert_eq!(
            ok_data(&r),
            json!(id),
            "the retry reaches the live upstream: {r}"
        );
    }
    assert_eq!(live.hits(), 6);
    let text = node.metrics_text().await;
    assert!(
        metric_one(&text, RETRIES, &[("route", "reads")]) >= 1.0,
        "retries are counted: {:?}",
        samples(&text, RETRIES)
    );
}
