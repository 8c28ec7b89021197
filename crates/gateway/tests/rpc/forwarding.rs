//! Success in both encodings, the forwarded request (method, body, identity headers,
//! `traceparent`), how upstream answers map to replies and error codes, concurrency of the
//! calls of one connection, and route order and names.

use super::upstream::{refused_url, Answer, Upstream};
use super::*;

use base64::Engine as _;

/// `00-<32 hex>-<16 hex>-01` with non-zero ids; returns (trace id, span id).
fn parse_traceparent(tp: &str) -> (String, String) {
    let parts: Vec<&str> = tp.split('-').collect();
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && s.bytes().any(|b| b != b'0')
    };
    assert!(
        parts.len() == 4
            && parts[0] == "00"
            && hex(parts[1], 32)
            && hex(parts[2], 16)
            && parts[3] == "01",
        "not a valid W3C traceparent `00-<32 hex>-<16 hex>-01`: {tp:?}"
    );
    (parts[1].to_owned(), parts[2].to_owned())
}

#[tokio::test]
async fn json_call_reaches_the_upstream_with_identity_headers_and_its_answer_comes_back() {
    let up = Upstream::start(|r| Answer::json(json!({"order": "o-17", "got": r.data()}))).await;
    let node = start_with_config(&route("orders.*", &[&up.url()], &[]), &[]).await;
    let (mut alice, welcome) = node.connect("alice").await;

    let data = json!({"sku": "A1", "qty": 2, "note": "héllo ✓", "tags": [null, true, 1.5]});
    let reply = call(&mut alice, 6, "orders.create", data.clone()).await;
    assert_eq!(
        reply,
        json!({"type": "reply", "id": 6, "ok": true, "data": {"order": "o-17", "got": data}})
    );

    let req = up.only();
    assert_eq!(req.method, "POST", "{req:?}");
    assert_eq!(req.path, "/rpc", "the upstream URL's path is used: {req:?}");
    assert!(
        req.header("content-type").starts_with("application/json"),
        "{req:?}"
    );
    assert_eq!(
        req.json(),
        json!({"method": "orders.create", "data": data}),
        "forwarded body"
    );
    assert_eq!(req.header("x-switchboard-user"), "alice");
    assert_eq!(
        req.header("x-switchboard-conn"),
        welcome["conn_id"].as_str().expect("conn_id"),
        "the conn id of the welcome"
    );
    assert_eq!(req.header("x-switchboard-node"), node.node_id);
    assert_eq!(req.header("x-switchboard-node"), welcome["node"]);
    parse_traceparent(req.header("traceparent"));
}

#[tokio::test]
async fn protobuf_calls_forward_json_data_and_binary_data_as_data_b64() {
    let up = Upstream::start(|r| {
        let body = r.json();
        Answer::json(json!({"method": body["method"], "seen": body}))
    })
    .await;
    let node = start_with_config(&route("orders.*", &[&up.url()], &[]), &[]).await;
    let (mut p, welcome) = node.connect_proto_token(&support::token("bob")).await;

    // JSON data: forwarded as `data`, the answer comes back as Payload.json.
    p.send_raw(pb_rpc(
        1,
        "orders.create",
        json_payload(r#"{"sku":"B2","n":[1,2]}"#),
        None,
    ))
    .await;
    let r = p.pb_reply(1).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(r.error, None, "{r:?}");
    let Some(pb::payload::Kind::Json(text)) = r.data.and_then(|d| d.kind) else {
        panic!("an upstream JSON answer reaches protobuf clients as Payload.json");
    };
    let answer: Value = serde_json::from_str(&text).expect("Payload.json is JSON");
    assert_eq!(
        answer["seen"],
        json!({"method": "orders.create", "data": {"sku": "B2", "n": [1, 2]}})
    );
    let req = &up.received()[0];
    assert_eq!(req.header("x-switchboard-user"), "bob");
    assert_eq!(req.header("x-switchboard-conn"), welcome.conn_id);
    assert_eq!(req.header("x-switchboard-node"), welcome.node);
    parse_traceparent(req.header("traceparent"));

    // Binary data: forwarded as `data_b64`, without `data`.
    let bytes: &[u8] = b"\x00\x9f\xffbin\n";
    p.send_raw(pb_rpc(2, "orders.upload", binary_payload(bytes), None))
        .await;
    let r = p.pb_reply(2).await;
    assert!(r.ok, "{r:?}");
    let body = up.received()[1].json();
    assert_eq!(body["method"], "orders.upload", "{body}");
    assert!(
        body.get("data").is_none(),
        "binary payloads are sent as data_b64 instead of data: {body}"
    );
    let b64 = body["data_b64"]
        .as_str()
        .unwrap_or_else(|| panic!("no data_b64: {body}"));
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("standard base64"),
        bytes
    );
}

#[tokio::test]
async fn traceparent_is_new_per_call_or_continues_the_clients_trace() {
    let up = Upstream::echo().await;
    let node = start_with_config(&route("t.*", &[&up.url()], &[]), &[]).await;
    let (mut c, _) = node.connect("alice").await;

    for id in 1..=2 {
        ok_data(&call(&mut c, id, "t.a", json!(id)).await);
    }
    let client_trace = "0af7651916cd43dd8448eb211c80319c";
    let client_span = "b7ad6b7169203331";
    let mut frame = rpc(3, "t.a", json!(3));
    frame["traceparent"] = json!(format!("00-{client_trace}-{client_span}-01"));
    c.send(frame).await;
    ok_data(&c.reply(3).await);
    let mut frame = rpc(4, "t.a", json!(4));
    frame["traceparent"] = json!("00-not-a-trace-01");
    c.send(frame).await;
    ok_data(&c.reply(4).await);

    let (mut p, _) = node.connect_proto_token(&support::token("bob")).await;
    p.send_raw(pb_rpc(
        5,
        "t.a",
        json_payload("5"),
        Some(&format!("00-{client_trace}-{client_span}-01")),
    ))
    .await;
    assert!(p.pb_reply(5).await.ok);

    let got: Vec<(String, String)> = up
        .received()
        .iter()
        .map(|r| parse_traceparent(r.header("traceparent")))
        .collect();
    assert_eq!(got.len(), 5, "{got:?}");
    assert_ne!(got[0].0, got[1].0, "a new trace id per call: {got:?}");
    for (i, who) in [(2, "JSON"), (4, "protobuf")] {
        assert_eq!(
            got[i].0, client_trace,
            "a {who} client's valid traceparent continues its trace: {got:?}"
        );
        assert_ne!(got[i].1, client_span, "with a new span id: {got:?}");
    }
    assert!(
        ![got[0].0.as_str(), got[1].0.as_str(), client_trace].contains(&got[3].0.as_str()),
        "an invalid client traceparent is replaced by a new trace: {got:?}"
    );
}

#[tokio::test]
async fn upstream_answers_map_to_replies() {
    let up = Upstream::start(|r| match r.json()["method"].as_str().unwrap_or_default() {
        "a.empty" => Answer::raw(200, None, ""),
        "a.no_content" => Answer::raw(204, None, ""),
        "a.created" => Answer::raw(201, Some("application/json"), r#"{"id":9}"#),
        "a.scalar" => Answer::json(json!(42)),
        "a.text" => Answer::raw(200, Some("text/plain"), "hello"),
        "a.500" => Answer::status(500),
        "a.404" => Answer::status(404),
        "a.302" => Answer::raw(302, None, ""),
        other => panic!("unexpected method {other}"),
    })
    .await;
    let node = start_with_config(&route("a.*", &[&up.url()], &[]), &[]).await;
    let (mut c, _) = node.connect("alice").await;

    let r = call(&mut c, 1, "a.empty", json!({})).await;
    assert_eq!(
        r,
        json!({"type": "reply", "id": 1, "ok": true, "data": null}),
        "an empty 2xx body is `data: null`"
    );
    let r = call(&mut c, 2, "a.no_content", json!({})).await;
    assert_eq!(
        r,
        json!({"type": "reply", "id": 2, "ok": true, "data": null}),
        "204 is `data: null`"
    );
    let r = call(&mut c, 3, "a.created", json!({})).await;
    assert_eq!(ok_data(&r), json!({"id": 9}), "any 2xx: {r}");
    let r = call(&mut c, 4, "a.scalar", json!({})).await;
    assert_eq!(ok_data(&r), json!(42), "any JSON value: {r}");
    let r = call(&mut c, 5, "a.text", json!({})).await;
    assert_eq!(error_code(&r), "upstream_error", "2xx non-JSON: {r}");
    for (id, method, status) in [
        (6, "a.500", "500"),
        (7, "a.404", "404"),
        (8, "a.302", "302"),
    ] {
        let r = call(&mut c, id, method, json!({})).await;
        assert_eq!(error_code(&r), "upstream_error", "{status}: {r}");
        let message = r["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(status),
            "the message names the status (\"upstream answered {status}\"): {r}"
        );
    }
    assert_eq!(up.hits(), 8, "one attempt each (no retries configured)");
}

#[tokio::test]
async fn a_slow_upstream_is_upstream_timeout() {
    let up = Upstream::start(|_| Answer::json(json!("late")).after(Duration::from_secs(3))).await;
    let node = start_with_config(&route("slow.*", &[&up.url()], &["timeout_ms = 200"]), &[]).await;
    let (mut c, _) = node.connect("alice").await;
    let started = tokio::time::Instant::now();
    let r = call(&mut c, 1, "slow.op", json!({})).await;
    let took = started.elapsed();
    assert_eq!(error_code(&r), "upstream_timeout", "{r}");
    assert!(
        took >= Duration::from_millis(180) && took < Duration::from_millis(2000),
        "answered after {took:?} with timeout_ms = 200"
    );
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn connection_refused_is_upstream_unavailable() {
    let dead = refused_url();
    let node = start_with_config(&route("dead.*", &[&dead], &[]), &[]).await;
    let (mut c, _) = node.connect("alice").await;
    for id in 1..=2 {
        let r = call(&mut c, id, "dead.op", json!({})).await;
        assert_eq!(error_code(&r), "upstream_unavailable", "{r}");
    }
}

#[tokio::test]
async fn calls_run_concurrently_and_replies_are_matched_by_id() {
    let up = Upstream::start(|r| {
        let delay = r.data()["delay_ms"].as_u64().unwrap_or(0);
        Answer::json(r.data()).after(Duration::from_millis(delay))
    })
    .await;
    let node = start_with_config(&route("c.*", &[&up.url()], &[]), &[]).await;
    let (mut c, _) = node.connect("alice").await;
    c.send(rpc(1, "c.slow", json!({"delay_ms": 800}))).await;
    up.wait("the slow call", |u| u.inflight() == 1).await;
    c.send(rpc(2, "c.fast", json!({"delay_ms": 0}))).await;
    let first = c.recv().await;
    assert_eq!(
        (first["id"].as_u64(), ok_data(&first)),
        (Some(2), json!({"delay_ms": 0})),
        "the fast call must not wait behind the slow one: {first}"
    );
    let second = c.recv().await;
    assert_eq!(
        (second["id"].as_u64(), ok_data(&second)),
        (Some(1), json!({"delay_ms": 800})),
        "{second}"
    );
}

#[tokio::test]
async fn the_first_matching_route_wins_and_names_label_the_metrics() {
    let special = Upstream::start(|_| Answer::json(json!("special"))).await;
    let general = Upstream::start(|r| match r.json()["method"].as_str() {
        Some("orders.fail") => Answer::status(500),
        _ => Answer::json(json!("general")),
    })
    .await;
    let toml = format!(
        "{}{}",
        route(
            "orders.special",
            &[&special.url()],
            &["name = \"special-orders\""]
        ),
        route("orders.*", &[&general.url()], &[]),
    );
    let node = start_with_config(&toml, &[]).await;
    let (mut c, _) = node.connect("alice").await;
    assert_eq!(
        ok_data(&call(&mut c, 1, "orders.special", json!({})).await),
        "special"
    );
    assert_eq!(
        ok_data(&call(&mut c, 2, "orders.create", json!({})).await),
        "general"
    );
    assert_eq!(
        ok_data(&call(&mut c, 3, "orders.specialized", json!({})).await),
        "general",
        "an exact pattern matches only itself"
    );
    assert_eq!(
        error_code(&call(&mut c, 4, "orders.fail", json!({})).await),
        "upstream_error"
    );

    let text = node.metrics_text().await;
    let calls = "switchboard_rpc_calls_total";
    assert_eq!(
        metric_sum(&text, calls, &[("route", "special-orders")]),
        1.0,
        "`name` is the route label: {:?}",
        samples(&text, calls)
    );
    assert_eq!(
        metric_sum(&text, calls, &[("route", "orders.*")]),
        3.0,
        "the route label defaults to the method pattern: {:?}",
        samples(&text, calls)
    );
    let results: std::collections::BTreeSet<String> = samples(&text, calls)
        .into_iter()
        .filter(|(l, v)| l["route"] == "orders.*" && *v > 0.0)
        .map(|(l, _)| l.get("result").cloned().unwrap_or_default())
        .collect();
    assert_eq!(
        results.len(),
        2,
        "ok and upstream_error are different results (counted, not zero): {results:?}"
    );
    let latency = "switchboard_rpc_upstream_latency_seconds_count";
    let special_url = special.url();
    let general_url = general.url();
    for (route, url, n) in [
        ("special-orders", special_url.as_str(), 1.0),
        ("orders.*", general_url.as_str(), 3.0),
    ] {
        assert_eq!(
            metric_one(&text, latency, &[("route", route), ("upstream", url)]),
            n,
            "upstream latency observations of {route} / {url}"
        );
    }
}
