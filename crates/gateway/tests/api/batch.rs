//! `POST /v1/batch`: many publishes in one request, answered item by item in request
//! order; offsets follow request order per channel; bad items fail alone.

use super::*;

use bytes::Bytes;
use prost::Message as _;
use serde_json::json;
use switchboard_proto::pb;

use crate::support::API_KEY;

#[tokio::test]
async fn batch_publishes_in_order_and_answers_each_item() {
    let node = support::start(&[]).await;
    let (mut a, _) = node.connect("alice").await;
    let mut messages: Vec<Value> = (0..300)
        .map(|i| json!({"channel": if i % 3 == 0 { "user:bob" } else { "user:alice" }, "data": {"n": i}}))
        .collect();
    messages.push(json!({"channel": "bad channel", "data": 1}));
    messages.push(json!({"channel": "user:alice"}));
    messages.push(json!({"channel": "user:alice", "data": 1, "from": "not valid!"}));
    messages.push(json!({"channel": "feed:x", "data": 1}));
    messages.push(json!({"data": 1}));
    let (status, res) = node
        .api("POST", "/v1/batch", Some(json!({ "messages": messages })))
        .await;
    assert_eq!(status, 200, "{res}");
    let results = res["results"].as_array().expect("results");
    assert_eq!(results.len(), 305, "one result per item");
    let (mut alice, mut bob) = (0, 0);
    for (i, r) in results[..300].iter().enumerate() {
        // Offsets follow request order within each channel.
        let want = if i % 3 == 0 {
            bob += 1;
            ("user:bob", bob, false)
        } else {
            alice += 1;
            ("user:alice", alice, true)
        };
        assert_eq!(
            (
                r["channel"].as_str(),
                r["offset"].as_u64(),
                r["online"].as_bool()
            ),
            (Some(want.0), Some(want.1), Some(want.2)),
            "item {i}: {r}"
        );
    }
    let codes: Vec<&str> = results[300..]
        .iter()
        .map(|r| r["error"]["code"].as_str().unwrap_or("none"))
        .collect();
    assert_eq!(
        codes,
        [
            "bad_channel",
            "bad_request",
            "bad_request",
            "bad_channel",
            "bad_request"
        ]
    );
    assert_eq!(results[300]["channel"], "bad channel");
    for n in (0..300).filter(|i| i % 3 != 0) {
        let m = a.recv().await;
        assert_eq!(
            m["data"],
            json!({"n": n}),
            "alice gets her 200 messages in order"
        );
    }
    a.expect_silence(QUIET).await;
    let (_b, w) = node.connect("bob").await;
    assert_eq!(w["offset"], 100, "bob's 100 messages are in his inbox");
}

#[tokio::test]
async fn batch_rejects_bad_bodies_as_a_whole() {
    let node = support::start(&["--max-message-bytes", "1024"]).await;
    for (body, code) in [
        (json!({}), "bad_request"),
        (json!({"messages": []}), "bad_request"),
        (json!({"messages": "x"}), "bad_request"),
    ] {
        let (status, res) = node.api("POST", "/v1/batch", Some(body)).await;
        assert_error(status, &res, 400, code);
    }
    let many: Vec<Value> = (0..1001)
        .map(|_| json!({"channel": "user:a", "data": 1}))
        .collect();
    let (status, res) = node
        .api("POST", "/v1/batch", Some(json!({ "messages": many })))
        .await;
    assert_error(status, &res, 400, "bad_request");
    // One oversized item fails alone (413-worthy data is an item error here).
    let big = "x".repeat(2000);
    let (status, res) = node
        .api(
            "POST",
            "/v1/batch",
            Some(json!({"messages": [{"channel": "user:a", "data": big}, {"channel": "user:a", "data": 2}]})),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["results"][0]["error"]["code"], "too_large");
    assert_eq!(res["results"][1]["offset"], 1);
    let (status, res) = node.api("GET", "/v1/batch", None).await;
    assert_error(status, &res, 405, "method_not_allowed");
    // A body over 8 MiB is refused before parsing.
    let huge = "y".repeat(9 * 1024 * 1024);
    let (status, res) = node
        .api(
            "POST",
            "/v1/batch",
            Some(json!({"messages": [{"channel": "user:a", "data": huge}]})),
        )
        .await;
    assert_error(status, &res, 413, "too_large");
}

#[tokio::test]
async fn protobuf_batch() {
    let node = support::start(&[]).await;
    let key = format!("Bearer {API_KEY}");
    let headers: &[(&str, &str)] = &[
        ("authorization", &key),
        ("content-type", "application/x-protobuf"),
    ];
    let item = |channel: &str, text: &str| pb::PublishRequest {
        channel: channel.into(),
        data: Some(pb::Payload {
            kind: Some(pb::payload::Kind::Binary(Bytes::from(text.to_owned()))),
        }),
        from: String::new(),
        ..Default::default()
    };
    let req = pb::BatchRequest {
        messages: vec![
            item("user:alice", "1"),
            item("nope", "2"),
            item("user:alice", "3"),
        ],
    };
    let (status, body) = node
        .http(
            node.internal,
            "POST",
            "/v1/batch",
            headers,
            Bytes::from(req.encode_to_vec()),
        )
        .await;
    assert_eq!(status, 200, "{body:?}");
    let res = pb::BatchResponse::decode(body).expect("a protobuf BatchResponse");
    let got: Vec<(u64, Option<String>)> = res
        .results
        .iter()
        .map(|r| (r.offset, r.error.as_ref().map(|e| e.code.clone())))
        .collect();
    assert_eq!(got, [(1, None), (0, Some("bad_channel".into())), (2, None)]);
}
