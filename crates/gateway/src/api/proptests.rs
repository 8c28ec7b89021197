//! Property tests of the server API's body and query parsing (issue 13, item 5): any body
//! for publish, broadcast, batch and disconnect, in JSON and protobuf, and any `since` /
//! `limit` on history, is answered 200 or with a documented 4xx (docs/protocol.md §6: 400
//! `bad_request` / `bad_channel`, 413 `too_large`) whose JSON body is `{"error","message"}`;
//! never a panic, never a 5xx. The handlers run against a started embedded backplane.

// Request messages are built with `..Default::default()` so these tests keep compiling when
// the schema gains fields (added fields are optional by the contract).
#![allow(clippy::needless_update)]

use std::sync::Arc;

use base64::Engine as _;
use http::StatusCode;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use prost::Message as _;
use serde_json::{json, Map, Value};
use switchboard_proto::pb;

use super::{ApiError, ApiResult, Format};
use crate::config::ServeArgs;
use crate::node::testing::runtime_and_node;
use crate::node::Node;

mod reads;

/// The test node's `--max-message-bytes`, small so that `too_large` is reached.
const MAX: usize = 256;

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

fn setup() -> (tokio::runtime::Runtime, Arc<Node>) {
    runtime_and_node(ServeArgs {
        max_message_bytes: Some(MAX.to_string()),
        ..ServeArgs::default()
    })
}

/// The answer as (status, error code): a documented one, with the documented body.
fn outcome(r: ApiResult) -> (StatusCode, &'static str) {
    match r {
        Ok(res) => {
            assert_eq!(res.status(), StatusCode::OK);
            (StatusCode::OK, "")
        }
        Err(ApiError(status, code, message)) => {
            let documented = matches!(
                (status.as_u16(), code),
                (400, "bad_request" | "bad_channel") | (413, "too_large")
            );
            assert!(documented, "undocumented answer {status} {code}: {message}");
            assert!(!message.is_empty());
            let res = crate::http::error(status, code, &message);
            assert_eq!(res.status(), status);
            let body = futures_util::FutureExt::now_or_never(http_body_util::BodyExt::collect(
                res.into_body(),
            ))
            .expect("a full body is ready")
            .expect("infallible")
            .to_bytes();
            let v: Value = serde_json::from_slice(&body).expect("the error body is JSON");
            assert_eq!(v, json!({"error": code, "message": message}));
            (status, code)
        }
    }
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
        "\\PC{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(("\\PC{0,8}", inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Channel names: valid ones of known and unknown namespaces, and broken ones.
fn channel() -> impl Strategy<Value = String> {
    prop_oneof![
        "(room|user):[A-Za-z0-9_.:@=-]{1,20}",
        "[a-z]{1,6}:[a-z]{1,6}",
        "\\PC{0,12}",
        "room:[a-z]{250,260}",
    ]
}

/// A user id or `from`: valid, or not.
fn user_id() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z0-9_.@=-]{1,12}", "\\PC{0,12}", "[a-z]{250,255}"]
}

/// What a publish carries: `data`, `data_b64` (valid base64 or not), both or neither.
#[derive(Clone, Debug)]
enum Body {
    Data(Value),
    B64(String),
    Both(Value, String),
    Neither,
}

fn body() -> impl Strategy<Value = Body> {
    let b64 = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300)
            .prop_map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
        "[A-Za-z0-9+/=!_-]{0,12}",
    ];
    prop_oneof![
        4 => json_value().prop_map(Body::Data),
        1 => "x{200,300}".prop_map(|s| Body::Data(Value::String(s))),
        2 => b64.clone().prop_map(Body::B64),
        1 => (json_value(), b64).prop_map(|(d, b)| Body::Both(d, b)),
        1 => Just(Body::Neither),
    ]
}

impl Body {
    fn fill(&self, o: &mut Map<String, Value>) {
        match self {
            Body::Data(d) => {
                o.insert("data".into(), d.clone());
            }
            Body::B64(b) => {
                o.insert("data_b64".into(), b.clone().into());
            }
            Body::Both(d, b) => {
                o.insert("data".into(), d.clone());
                o.insert("data_b64".into(), b.clone().into());
            }
            Body::Neither => {}
        }
    }

    /// The expected failure of the body's data, if any.
    fn error(&self) -> Option<(StatusCode, &'static str)> {
        let bad = Some((StatusCode::BAD_REQUEST, "bad_request"));
        let len = match self {
            Body::Data(d) => d.to_string().len(),
            Body::B64(b) => match base64::engine::general_purpose::STANDARD.decode(b) {
                Ok(bytes) => bytes.len(),
                Err(_) => return bad,
            },
            Body::Both(..) | Body::Neither => return bad,
        };
        (len > MAX).then_some((StatusCode::PAYLOAD_TOO_LARGE, "too_large"))
    }
}

fn channel_error(ch: &str) -> Option<(StatusCode, &'static str)> {
    let ok = switchboard_proto::channel::Channel::parse(ch)
        .is_ok_and(|c| c.namespace == "room" || c.namespace == "user");
    (!ok).then_some((StatusCode::BAD_REQUEST, "bad_channel"))
}

fn from_error(from: &Option<String>) -> Option<(StatusCode, &'static str)> {
    from.as_deref()
        .is_some_and(|f| !switchboard_proto::channel::is_valid_user_id(f))
        .then_some((StatusCode::BAD_REQUEST, "bad_request"))
}

const OK: (StatusCode, &str) = (StatusCode::OK, "");

/// Publish bodies built from parts: the answer is exactly the first broken rule's.
#[test]
fn publish_json_bodies() {
    let (rt, node) = setup();
    let strategy = (
        proptest::option::of(channel()),
        body(),
        proptest::option::of(user_id()),
    );
    runner(256)
        .run(&strategy, |(ch, body, from)| {
            let mut o = Map::new();
            if let Some(ch) = &ch {
                o.insert("channel".into(), ch.clone().into());
            }
            body.fill(&mut o);
            if let Some(f) = &from {
                o.insert("from".into(), f.clone().into());
            }
            let bytes = Value::Object(o).to_string();
            let got = outcome(rt.block_on(super::publish::publish(
                &node,
                bytes.as_bytes(),
                false,
                Format::Json,
            )));
            let want = match &ch {
                None => Some((StatusCode::BAD_REQUEST, "bad_request")),
                Some(ch) => body
                    .error()
                    .or_else(|| from_error(&from))
                    .or_else(|| channel_error(ch)),
            };
            prop_assert_eq!(got, want.unwrap_or(OK));
            Ok(())
        })
        .unwrap();
}

/// The same in protobuf (`PublishRequest`; an empty `from` is none).
#[test]
fn publish_proto_bodies() {
    let (rt, node) = setup();
    let data = prop_oneof![
        json_value().prop_map(|v| Some(pb::payload::Kind::Json(v.to_string()))),
        "\\PC{0,8}".prop_map(|s| Some(pb::payload::Kind::Json(s))),
        prop::collection::vec(any::<u8>(), 0..300)
            .prop_map(|b| Some(pb::payload::Kind::Binary(b.into()))),
        Just(None),
    ];
    let strategy = (channel(), data, prop_oneof![Just(String::new()), user_id()]);
    runner(256)
        .run(&strategy, |(ch, kind, from)| {
            let req = pb::PublishRequest {
                channel: ch.clone(),
                data: kind.clone().map(|k| pb::Payload { kind: Some(k) }),
                from: from.clone(),
                ..Default::default()
            };
            let got = outcome(rt.block_on(super::publish::publish(
                &node,
                &req.encode_to_vec(),
                true,
                Format::Proto,
            )));
            let data_error = match &kind {
                None => Some((StatusCode::BAD_REQUEST, "bad_request")),
                Some(pb::payload::Kind::Json(t)) => match switchboard_proto::Payload::json(t) {
                    Err(_) => Some((StatusCode::BAD_REQUEST, "bad_request")),
                    Ok(p) => {
                        (p.len() > MAX).then_some((StatusCode::PAYLOAD_TOO_LARGE, "too_large"))
                    }
                },
                Some(pb::payload::Kind::Binary(b)) => {
                    (b.len() > MAX).then_some((StatusCode::PAYLOAD_TOO_LARGE, "too_large"))
                }
            };
            let from = (!from.is_empty()).then_some(from);
            let want = data_error
                .or_else(|| from_error(&from))
                .or_else(|| channel_error(&ch));
            prop_assert_eq!(got, want.unwrap_or(OK));
            Ok(())
        })
        .unwrap();
}

/// Any bytes, any JSON value, and valid bodies with one member replaced by any value, for
/// every endpoint that reads a body, in both formats: 200 or a documented 4xx.
#[test]
fn any_body_on_every_endpoint() {
    let (rt, node) = setup();
    let valid = json!({
        "channel": "room:a",
        "channels": ["room:a", "user:b"],
        "data": {"text": "hi"},
        "messages": [{"channel": "room:a", "data": 1}],
        "code": 4003,
        "reason": "bye",
    });
    const MEMBERS: &[&str] = &[
        "channel",
        "channels",
        "data",
        "data_b64",
        "from",
        "messages",
        "code",
        "reason",
        "idempotency_key",
    ];
    let strategy = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        (prop::sample::select(MEMBERS), json_value()).prop_map(move |(k, v)| {
            let mut o = valid.clone();
            o[k] = v;
            o.to_string().into_bytes()
        }),
    ];
    runner(256)
        .run(&(strategy, any::<bool>()), |(bytes, proto)| {
            let format = if proto { Format::Proto } else { Format::Json };
            rt.block_on(async {
                outcome(super::publish::publish(&node, &bytes, proto, format).await);
                outcome(super::publish::broadcast(&node, &bytes, proto, format).await);
                outcome(super::batch::batch(&node, &bytes, proto, format).await);
                outcome(super::query::disconnect(&node, "alice", &bytes, proto, format).await);
            });
            Ok(())
        })
        .unwrap();
}

/// Protobuf bodies of every request type, cut short or with a byte changed.
#[test]
fn damaged_protobuf_bodies() {
    let (rt, node) = setup();
    let payload = Some(pb::Payload {
        kind: Some(pb::payload::Kind::Json("{\"a\":1}".into())),
    });
    let publish = pb::PublishRequest {
        channel: "room:a".into(),
        data: payload.clone(),
        from: "bob".into(),
        ..Default::default()
    };
    let bodies = [
        publish.encode_to_vec(),
        pb::BroadcastRequest {
            channels: vec!["room:a".into(), "user:b".into()],
            data: payload,
            from: "bob".into(),
            ..Default::default()
        }
        .encode_to_vec(),
        pb::BatchRequest {
            messages: vec![publish.clone(), publish],
            ..Default::default()
        }
        .encode_to_vec(),
        pb::DisconnectRequest {
            code: 4003,
            reason: "bye".into(),
            ..Default::default()
        }
        .encode_to_vec(),
    ];
    let strategy = (
        0..bodies.len(),
        any::<prop::sample::Index>(),
        any::<u8>(),
        any::<bool>(),
    );
    runner(256)
        .run(&strategy, |(which, at, b, cut)| {
            let mut bytes = bodies[which].clone();
            let i = at.index(bytes.len());
            if cut {
                bytes.truncate(i);
            } else {
                bytes[i] = b;
            }
            rt.block_on(async {
                let f = Format::Proto;
                outcome(super::publish::publish(&node, &bytes, true, f).await);
                outcome(super::publish::broadcast(&node, &bytes, true, f).await);
                outcome(super::batch::batch(&node, &bytes, true, f).await);
                outcome(super::query::disconnect(&node, "alice", &bytes, true, f).await);
            });
            Ok(())
        })
        .unwrap();
}

/// Broadcast and batch answer every item on its own: a bad item is an error entry, not a
/// failed request.
#[test]
fn broadcast_and_batch_items() {
    let (rt, node) = setup();
    let strategy = (prop::collection::vec(channel(), 1..8), body());
    runner(128)
        .run(&strategy, |(channels, body)| {
            let mut o = Map::new();
            o.insert("channels".into(), json!(channels));
            body.fill(&mut o);
            let got = outcome(rt.block_on(super::publish::broadcast(
                &node,
                Value::Object(o).to_string().as_bytes(),
                false,
                Format::Json,
            )));
            prop_assert_eq!(got, body.error().unwrap_or(OK));

            let items: Vec<Value> = channels
                .iter()
                .map(|ch| {
                    let mut o = Map::new();
                    o.insert("channel".into(), ch.clone().into());
                    body.fill(&mut o);
                    Value::Object(o)
                })
                .collect();
            let got = outcome(rt.block_on(super::batch::batch(
                &node,
                json!({ "messages": items }).to_string().as_bytes(),
                false,
                Format::Json,
            )));
            prop_assert_eq!(got, OK);
            Ok(())
        })
        .unwrap();
}
