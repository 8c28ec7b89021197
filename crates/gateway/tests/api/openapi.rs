//! `GET /v1/openapi.json` (docs/openapi.json, served without the API key), `Allow` on 405,
//! and the regressions Schemathesis found (tools/checks/api_fuzz.py, `make api-fuzz`).

use super::*;

use bytes::Bytes;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const DOC: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/openapi.json"
));

/// One raw HTTP/1.1 exchange; the whole answer, head and body, lowercased.
async fn raw(node: &Node, request: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(node.internal).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(support::WAIT, s.read_to_end(&mut out))
        .await
        .expect("answer in time")
        .unwrap();
    String::from_utf8_lossy(&out).to_lowercase()
}

#[tokio::test]
async fn the_document_is_served_without_the_api_key() {
    let node = support::start(&[]).await;
    for headers in [&[][..], &[("authorization", "Bearer wrong-key")][..]] {
        let (status, body) = node
            .http(
                node.internal,
                "GET",
                "/v1/openapi.json",
                headers,
                Bytes::new(),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(body, DOC.as_bytes(), "the embedded docs/openapi.json");
    }
    let doc: Value = serde_json::from_str(DOC).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    // Every other /v1 route still needs the key.
    let (status, raw_body) = node
        .http(node.internal, "GET", "/v1/nodes", &[], Bytes::new())
        .await;
    assert_error(
        status,
        &serde_json::from_slice(&raw_body).unwrap(),
        401,
        "unauthorized",
    );
}

#[tokio::test]
async fn other_methods_get_405_with_allow() {
    let node = support::start(&[]).await;
    let auth = format!("authorization: Bearer {}\r\n", support::API_KEY);
    for (method, path, allow) in [
        ("PUT", "/v1/openapi.json", "get"),
        ("POST", "/healthz", "get"),
        ("DELETE", "/v1/publish", "post"),
        ("GET", "/v1/users/alice/disconnect", "post"),
    ] {
        let answer = raw(
            &node,
            &format!("{method} {path} HTTP/1.1\r\nhost: x\r\n{auth}connection: close\r\ncontent-length: 0\r\n\r\n"),
        )
        .await;
        assert!(
            answer.starts_with("http/1.1 405"),
            "{method} {path}: {answer}"
        );
        assert!(
            answer.contains(&format!("\r\nallow: {allow}\r\n")),
            "{method} {path}: {answer}"
        );
        assert!(
            answer.contains(r#""error":"method_not_allowed""#),
            "{answer}"
        );
    }
    // An unknown path outside /v1 is 404 whatever the method.
    let answer = raw(
        &node,
        "POST /nope HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("http/1.1 404"), "{answer}");
}

/// Schemathesis: serde read a struct from a JSON array of its fields in order, so
/// `[null, null]` disconnected a user with the defaults and `["user:alice", null, 1]`
/// published. Bodies (and batch items) must be objects.
#[tokio::test]
async fn array_bodies_are_refused() {
    let node = support::start(&[]).await;
    let (mut alice, _) = node.connect("alice").await;
    for (path, body) in [
        ("/v1/users/alice/disconnect", json!([null, null])),
        ("/v1/users/alice/disconnect", json!([4000, "bye"])),
        ("/v1/publish", json!(["user:alice", null, 1])),
        ("/v1/broadcast", json!(["user:alice", ["user:alice"], 1])),
        ("/v1/batch", json!([[["user:alice", null, 1]]])),
        ("/v1/batch", json!({"messages": [["user:alice", null, 1]]})),
    ] {
        let (status, res) = node.api("POST", path, Some(body.clone())).await;
        assert_error(status, &res, 400, "bad_request");
        assert!(
            res["message"].as_str().unwrap().contains("a JSON object"),
            "{body}: {res}"
        );
    }
    alice.expect_silence(QUIET).await;
    let (_, res) = node.api("GET", "/v1/history/user:alice", None).await;
    assert_eq!(res["messages"], json!([]), "nothing was published");
}

/// Schemathesis: JSON has one number type and JSON Schema calls 4001.0 an integer, but
/// the node refused it as a close code (serde's u32 takes no float).
#[tokio::test]
async fn an_integral_float_is_a_close_code() {
    let node = support::start(&[]).await;
    let (mut alice, _) = node.connect("alice").await;
    for code in [
        json!(4001.5),
        json!(-4001.0),
        json!(1e300),
        json!(4294971297.0),
    ] {
        let (status, res) = node
            .api(
                "POST",
                "/v1/users/alice/disconnect",
                Some(json!({ "code": code })),
            )
            .await;
        assert_error(status, &res, 400, "bad_request");
    }
    alice.expect_silence(QUIET).await;
    let (status, res) = node
        .api(
            "POST",
            "/v1/users/alice/disconnect",
            Some(json!({"code": 4001.0})),
        )
        .await;
    assert_eq!((status, &res), (200, &json!({"connections": 1})));
    let (code, _, _) = alice.expect_close().await;
    assert_eq!(code, 4001);
}

/// Schemathesis: a broadcast body had the publish limit (the message + 64 KiB), so the
/// documented 10,000 channels did not fit with names longer than about 10 bytes.
#[tokio::test]
async fn a_broadcast_to_10000_channels_fits() {
    let node = support::start(&[]).await;
    let channels: Vec<String> = (0..10_000)
        .map(|i| format!("room:broadcast-{i:05}-padding-to-40-bytes"))
        .collect();
    let (status, res) = node
        .api(
            "POST",
            "/v1/broadcast",
            Some(json!({"channels": channels, "data": {"n": 1}})),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let results = res["results"].as_array().unwrap();
    assert_eq!(results.len(), 10_000);
    assert!(
        results.iter().all(|r| r["offset"] == 1),
        "every channel published once"
    );
    // One more channel is refused for its count, not its size.
    let mut over = channels;
    over.push("room:one-too-many".into());
    let (status, res) = node
        .api(
            "POST",
            "/v1/broadcast",
            Some(json!({"channels": over, "data": 1})),
        )
        .await;
    assert_error(status, &res, 400, "bad_request");
}
