//! The protobuf variant of the API: `application/x-protobuf` requests and answers, and the
//! `Accept` header.

use super::*;

use base64::Engine as _;
use bytes::Bytes;
use prost::Message as _;
use serde_json::json;
use switchboard_proto::pb;

use crate::support::API_KEY;

#[tokio::test]
async fn protobuf_publish_answers_protobuf() {
    let node = support::start(&[]).await;
    let (mut a, _) = node.connect("alice").await;
    let key = format!("Bearer {API_KEY}");
    let headers: &[(&str, &str)] = &[
        ("authorization", &key),
        ("content-type", "application/x-protobuf"),
    ];
    let req = pb::PublishRequest {
        channel: "user:alice".into(),
        data: Some(pb::Payload {
            kind: Some(pb::payload::Kind::Binary(Bytes::from_static(b"\x00\xffpb"))),
        }),
        from: "backend".into(),
        ..Default::default()
    };
    let (status, body) = node
        .http(
            node.internal,
            "POST",
            "/v1/publish",
            headers,
            Bytes::from(req.encode_to_vec()),
        )
        .await;
    assert_eq!(status, 200, "{body:?}");
    let res = pb::PublishResult::decode(body).expect("a protobuf PublishResult");
    assert_eq!(res.channel, "user:alice");
    assert_eq!(res.offset, 1);
    assert!(res.online);
    assert_eq!(res.nodes, 1);
    assert!(!res.epoch.is_empty());
    assert_eq!(res.error, None);

    let m = a.recv().await;
    assert_eq!(m["from"], "backend");
    assert_eq!(m["epoch"], res.epoch.as_str());
    let b64 = m["data_b64"]
        .as_str()
        .expect("binary reaches JSON as data_b64");
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
        b"\x00\xffpb"
    );

    // JSON text in a protobuf body reaches JSON clients as `data`.
    let req = pb::PublishRequest {
        channel: "user:alice".into(),
        data: Some(pb::Payload {
            kind: Some(pb::payload::Kind::Json(r#"{"k":"v"}"#.into())),
        }),
        from: String::new(),
        ..Default::default()
    };
    let (status, body) = node
        .http(
            node.internal,
            "POST",
            "/v1/publish",
            headers,
            Bytes::from(req.encode_to_vec()),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(pb::PublishResult::decode(body).unwrap().offset, 2);
    let m = a.recv().await;
    assert_eq!(m["data"], json!({"k": "v"}));
    assert!(m.get("from").is_none(), "{m}");

    // A protobuf body that is not a PublishRequest: a JSON error.
    let (status, body) = node
        .http(
            node.internal,
            "POST",
            "/v1/publish",
            headers,
            Bytes::from_static(b"\xff\xff"),
        )
        .await;
    let res: Value = serde_json::from_slice(&body).expect("errors are JSON");
    assert_error(status, &res, 400, "bad_request");
    a.expect_silence(QUIET).await;
}

#[tokio::test]
async fn protobuf_broadcast_and_accept_header() {
    let node = support::start(&[]).await;
    let (_a, w) = node.connect("alice").await;
    let key = format!("Bearer {API_KEY}");
    let req = pb::BroadcastRequest {
        channels: vec!["user:alice".into(), "bad channel".into()],
        data: Some(pb::Payload {
            kind: Some(pb::payload::Kind::Json("1".into())),
        }),
        from: String::new(),
        ..Default::default()
    };
    let (status, body) = node
        .http(
            node.internal,
            "POST",
            "/v1/broadcast",
            &[
                ("authorization", &key),
                ("content-type", "application/x-protobuf"),
            ],
            Bytes::from(req.encode_to_vec()),
        )
        .await;
    assert_eq!(status, 200);
    let res = pb::BroadcastResponse::decode(body).expect("BroadcastResponse");
    assert_eq!(res.results.len(), 2);
    assert_eq!(
        (
            res.results[0].channel.as_str(),
            res.results[0].offset,
            res.results[0].online
        ),
        ("user:alice", 1, true)
    );
    assert_eq!(res.results[0].error, None);
    assert_eq!(res.results[1].channel, "bad channel");
    assert_eq!(res.results[1].error.as_ref().unwrap().code, "bad_channel");

    // `Accept: application/x-protobuf` on a GET.
    let (status, body) = node
        .http(
            node.internal,
            "GET",
            "/v1/users/alice",
            &[
                ("authorization", &key),
                ("accept", "application/x-protobuf"),
            ],
            Bytes::new(),
        )
        .await;
    assert_eq!(status, 200);
    let res = pb::UserResponse::decode(body).expect("UserResponse");
    assert!(res.online);
    assert_eq!(res.connections.len(), 1);
    assert_eq!(res.connections[0].conn_id, w["conn_id"].as_str().unwrap());
    assert_eq!(res.connections[0].node, node.node_id);
}
