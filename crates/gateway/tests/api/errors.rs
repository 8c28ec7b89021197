//! The API key and bad requests: JSON error bodies with their status and code.

use super::*;

use bytes::Bytes;
use serde_json::json;

use crate::support::API_KEY;

#[tokio::test]
async fn api_key_is_required() {
    let node = support::start(&[]).await;
    let body = Bytes::from(json!({"channel": "user:alice", "data": 1}).to_string());
    let cases: [&[(&str, &str)]; 4] = [
        &[],
        &[("authorization", "Bearer wrong-key")],
        &[("authorization", API_KEY)],
        &[("authorization", "Basic dGVzdDp0ZXN0")],
    ];
    for headers in cases {
        let (status, raw) = node
            .http(node.internal, "POST", "/v1/publish", headers, body.clone())
            .await;
        let res: Value = serde_json::from_slice(&raw).expect("JSON error body");
        assert_error(status, &res, 401, "unauthorized");
    }
    let (status, raw) = node
        .http(node.internal, "GET", "/v1/nodes", &[], Bytes::new())
        .await;
    assert_error(
        status,
        &serde_json::from_slice(&raw).unwrap(),
        401,
        "unauthorized",
    );
    // Nothing was published.
    let (_, res) = node.api("GET", "/v1/history/user:alice", None).await;
    assert_eq!(res["messages"], json!([]));
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let node = support::start(&["--max-message-bytes", "1024"]).await;
    let (mut a, _) = node.connect("alice").await;
    let key = format!("Bearer {API_KEY}");
    let auth: &[(&str, &str)] = &[
        ("authorization", &key),
        ("content-type", "application/json"),
    ];
    let raw = |body: &'static str| Bytes::from_static(body.as_bytes());

    // Unknown endpoint, wrong method.
    let (status, res) = node.api("GET", "/v1/nope", None).await;
    assert_eq!(status, 404, "{res}");
    assert!(
        res["error"].is_string() && res["message"].is_string(),
        "{res}"
    );
    for (method, path) in [
        ("GET", "/v1/publish"),
        ("PUT", "/v1/broadcast"),
        ("DELETE", "/v1/users/alice"),
        ("GET", "/v1/users/alice/disconnect"),
        ("POST", "/v1/nodes"),
    ] {
        let (status, res) = node.api(method, path, None).await;
        assert_eq!(status, 405, "{method} {path}: {res}");
        assert!(
            res["error"].is_string() && res["message"].is_string(),
            "{res}"
        );
    }

    // Bodies.
    for body in ["{nope", "", "[]", "{\"channel\":\"user:alice\",\"data\":1"] {
        let (status, bytes) = node
            .http(node.internal, "POST", "/v1/publish", auth, raw(body))
            .await;
        let res: Value = serde_json::from_slice(&bytes).expect("JSON error body");
        assert_error(status, &res, 400, "bad_request");
    }
    for body in [
        json!({"channel": "user:alice"}),
        json!({"data": 1}),
        json!({"channel": "user:alice", "data": 1, "data_b64": "AA=="}),
        json!({"channel": "user:alice", "data_b64": "***"}),
        json!({"channel": "user:alice", "data": 1, "from": "not a user id!"}),
    ] {
        let (status, res) = node.api("POST", "/v1/publish", Some(body.clone())).await;
        assert_error(status, &res, 400, "bad_request");
    }
    for channel in ["nonamespace", "room:has space", "chat:unknown", "user:", ""] {
        let (status, res) = node
            .api(
                "POST",
                "/v1/publish",
                Some(json!({"channel": channel, "data": 1})),
            )
            .await;
        assert_error(status, &res, 400, "bad_channel");
    }
    let (status, res) = node
        .api(
            "POST",
            "/v1/broadcast",
            Some(json!({"channels": [], "data": 1})),
        )
        .await;
    assert_error(status, &res, 400, "bad_request");

    // Size: data over --max-message-bytes is 413; just under is fine.
    let big = "x".repeat(1100);
    let (status, res) = node
        .api(
            "POST",
            "/v1/publish",
            Some(json!({"channel": "user:alice", "data": big})),
        )
        .await;
    assert_error(status, &res, 413, "too_large");
    let (status, res) = node
        .api(
            "POST",
            "/v1/broadcast",
            Some(json!({"channels": ["user:alice"], "data": big})),
        )
        .await;
    assert_error(status, &res, 413, "too_large");
    a.expect_silence(QUIET).await;

    let fits = "y".repeat(1000);
    let res = publish(&node, json!({"channel": "user:alice", "data": fits})).await;
    assert_eq!(res["offset"], 1, "rejected publishes took no offset");
    let m = a.recv().await;
    assert_eq!(m["data"].as_str().map(str::len), Some(1000));
    a.expect_silence(QUIET).await;
}
