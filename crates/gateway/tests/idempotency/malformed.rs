//! Malformed keys: 400 `bad_request` on the server API (per item in a batch), `bad_frame`
//! on a socket (which stays open); nothing is published by a refused publish.

use super::*;

use bytes::Bytes;
use prost::Message as _;
use switchboard_proto::pb;
use switchboard_proto::pb::frame::Kind;
use tokio_tungstenite::tungstenite::Message;

use crate::support::API_KEY;

/// Keys that are strings but break the rule (1–64 of `[A-Za-z0-9_.:-]`); `/` is the
/// separator of a key's sender scope and must be refused too.
fn bad_strings() -> Vec<String> {
    vec![
        String::new(),
        "k".repeat(65),
        "a b".into(),
        "ü".into(),
        "a/b".into(),
        "k\n".into(),
        "k\u{0}".into(),
    ]
}

/// Keys that are not strings at all.
fn bad_types() -> Vec<Value> {
    vec![json!(1), json!(["a"]), json!({"k": "v"}), json!(true)]
}

/// Every key the rule allows, at both length bounds.
fn good_keys() -> Vec<String> {
    vec![
        "k".into(),
        "k".repeat(64),
        "AZaz09_.:-".into(),
        "0f8fad5b-d9cb-469f-a165-70867728950e".into(),
    ]
}

fn assert_bad_request(status: u16, body: &Value, what: &str) {
    assert_eq!(status, 400, "{what}: {body}");
    assert_eq!(body["error"], "bad_request", "{what}: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: every error has a message: {body}"
    );
}

/// `/v1/publish` and `/v1/broadcast` refuse a bad key with 400 `bad_request` and publish
/// nothing; `/v1/batch` refuses the item (the others are published), or the whole body
/// when the key is not even a string (like any other mistyped field).
async fn api_refuses_malformed_keys(backend: Backend) {
    let s = Scene::start(backend, &[]).await;
    let node = &s.node;
    let (mut jo, _) = node.connect("jo").await;
    let mut keys: Vec<Value> = bad_strings().into_iter().map(Value::from).collect();
    keys.extend(bad_types());
    for key in &keys {
        let (status, body) = node
            .api(
                "POST",
                "/v1/publish",
                Some(json!({"channel": "user:jo", "data": 1, "idempotency_key": key})),
            )
            .await;
        assert_bad_request(status, &body, &format!("publish with key {key}"));
        let (status, body) = node
            .api(
                "POST",
                "/v1/broadcast",
                Some(json!({"channels": ["user:jo", "room:hist-m"], "data": 1, "idempotency_key": key})),
            )
            .await;
        assert_bad_request(status, &body, &format!("broadcast with key {key}"));
    }
    for key in bad_types() {
        let (status, body) = node
            .api(
                "POST",
                "/v1/batch",
                Some(json!({"messages": [
                    {"channel": "user:jo", "data": 1},
                    {"channel": "user:jo", "data": 2, "idempotency_key": key},
                ]})),
            )
            .await;
        assert_bad_request(status, &body, &format!("batch with a key {key}"));
    }
    jo.expect_silence(QUIET).await;
    assert_eq!(history_offsets(node, "user:jo").await, Vec::<u64>::new());
    assert_eq!(
        history_offsets(node, "room:hist-m").await,
        Vec::<u64>::new()
    );

    // In a batch, each bad string key fails its own item only.
    let mut messages =
        vec![json!({"channel": "user:jo", "data": "first", "idempotency_key": "ok-1"})];
    for key in bad_strings() {
        messages.push(json!({"channel": "user:jo", "data": "bad", "idempotency_key": key}));
    }
    messages.push(json!({"channel": "user:jo", "data": "last", "idempotency_key": "ok-2"}));
    let (status, res) = node
        .api("POST", "/v1/batch", Some(json!({ "messages": messages })))
        .await;
    assert_eq!(status, 200, "{res}");
    let results = res["results"].as_array().expect("results");
    assert_eq!(results.len(), messages.len());
    let last = results.len() - 1;
    assert_eq!(position(&results[0]).1, 1, "{res}");
    assert_eq!(position(&results[last]).1, 2, "{res}");
    for (i, r) in results[1..last].iter().enumerate() {
        assert_eq!(r["error"]["code"], "bad_request", "item {}: {r}", i + 1);
        assert_eq!(r["channel"], "user:jo", "item {}: {r}", i + 1);
        assert!(r.get("offset").is_none(), "item {}: {r}", i + 1);
    }
    assert_eq!(expect_message(&mut jo, "user:jo").await["data"], "first");
    assert_eq!(expect_message(&mut jo, "user:jo").await["data"], "last");
    jo.expect_silence(QUIET).await;

    // The rule's edges are accepted, on every endpoint.
    for key in good_keys() {
        let (status, body) = publish_keyed(node, "room:hist-ok", &key, json!(1)).await;
        answered(status, &body, false);
        let (status, body) = node
            .api(
                "POST",
                "/v1/broadcast",
                Some(json!({"channels": ["room:hist-ok"], "data": 1, "idempotency_key": key})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["results"][0]["duplicate"], true, "{key}: {body}");
    }
    // `null` is no key.
    let (status, body) = node
        .api(
            "POST",
            "/v1/publish",
            Some(json!({"channel": "room:hist-ok", "data": 1, "idempotency_key": null})),
        )
        .await;
    answered(status, &body, false);

    // Protobuf bodies: the same rule (the empty string is proto3's "no key").
    let bearer = format!("Bearer {API_KEY}");
    for key in bad_strings().into_iter().filter(|k| !k.is_empty()) {
        let req = pb::PublishRequest {
            channel: "user:jo".into(),
            data: Some(pb::Payload {
                kind: Some(pb::payload::Kind::Json("1".into())),
            }),
            idempotency_key: key.clone(),
            ..Default::default()
        };
        let (status, body) = node
            .http(
                node.internal,
                "POST",
                "/v1/publish",
                &[
                    ("authorization", &bearer),
                    ("content-type", "application/x-protobuf"),
                    ("accept", "application/json"),
                ],
                Bytes::from(req.encode_to_vec()),
            )
            .await;
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        assert_bad_request(status, &body, &format!("protobuf publish with key {key:?}"));
    }
    assert_eq!(history_offsets(node, "user:jo").await, [1, 2]);
}
on_both_backends!(api_refuses_malformed_keys);

/// A JSON `publish` with a bad key gets `error` `bad_frame`; the connection stays open,
/// nothing is published, and a good key works afterwards.
#[tokio::test]
async fn json_frames_with_malformed_keys_get_bad_frame() {
    let s = Scene::start(Backend::Embedded, &[]).await;
    let node = &s.node;
    let (mut kim, _) = node.connect("kim").await;
    let mut keys: Vec<Value> = bad_strings().into_iter().map(Value::from).collect();
    keys.extend(bad_types());
    // Past the default bad-frame limit (10): a connection per batch of keys.
    for chunk in keys.chunks(5) {
        let (mut lee, _) = node.connect("lee").await;
        for (i, key) in chunk.iter().enumerate() {
            lee.send(json!({
                "type": "publish", "id": 10 + i, "channel": "user:kim", "data": 1,
                "idempotency_key": key,
            }))
            .await;
            let v = lee.recv().await;
            assert_eq!(
                (v["type"].as_str(), v["code"].as_str()),
                (Some("error"), Some("bad_frame")),
                "key {key}: {v}"
            );
            assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
            lee.send(json!({"type": "ping", "id": 100 + i})).await;
            let pong = lee.recv().await;
            assert_eq!(pong["type"], "pong", "the connection stays open: {pong}");
        }
        let ok = client_publish(&mut lee, 99, "user:kim", "fine", json!("ok")).await;
        assert_eq!(ok["ok"], true, "{ok}");
    }
    assert_eq!(expect_message(&mut kim, "user:kim").await["data"], "ok");
    kim.expect_silence(QUIET).await;
    assert_eq!(history(node, "user:kim").await.len(), 1);
}

/// A protobuf `Publish` with a bad key gets `Error` `bad_frame`; the connection stays
/// open and nothing is published.
#[tokio::test]
async fn protobuf_frames_with_malformed_keys_get_bad_frame() {
    let s = Scene::start(Backend::Embedded, &[]).await;
    let node = &s.node;
    let mut lee = node.connect_proto("lee").await;
    assert!(matches!(lee.recv_pb().await, Kind::Welcome(_)));
    for (i, key) in bad_strings()
        .into_iter()
        .filter(|k| !k.is_empty())
        .enumerate()
    {
        let id = 10 + i as u64;
        lee.send_pb(Kind::Publish(pb::Publish {
            id,
            channel: "user:kim".into(),
            data: Some(pb::Payload {
                kind: Some(pb::payload::Kind::Json("1".into())),
            }),
            idempotency_key: key.clone(),
        }))
        .await;
        match lee.recv_pb().await {
            Kind::Error(e) => assert_eq!(e.code, "bad_frame", "{key:?}: {e:?}"),
            other => panic!("{key:?}: expected an error frame, got {other:?}"),
        }
        lee.send_pb(Kind::Ping(pb::Ping { id })).await;
        assert!(
            matches!(lee.recv_pb().await, Kind::Pong(p) if p.id == id),
            "the connection stays open"
        );
    }
    // Keys in a protobuf frame that is not valid UTF-8: refused by the decoder.
    let mut raw = pb::Frame {
        kind: Some(Kind::Publish(pb::Publish {
            id: 50,
            channel: "user:kim".into(),
            data: Some(pb::Payload {
                kind: Some(pb::payload::Kind::Json("1".into())),
            }),
            idempotency_key: "KEY".into(),
        })),
    }
    .encode_to_vec();
    let at = raw
        .windows(3)
        .position(|w| w == b"KEY")
        .expect("the key in the encoding");
    raw[at] = 0xff;
    lee.send_raw(Message::Binary(raw.into())).await;
    match lee.recv_pb().await {
        Kind::Error(e) => assert_eq!(e.code, "bad_frame", "{e:?}"),
        other => panic!("expected an error frame, got {other:?}"),
    }
    assert_eq!(history(node, "user:kim").await.len(), 0);
}
