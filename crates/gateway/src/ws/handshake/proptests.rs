//! Property tests of the handshake's query string (issue 13, item 5): `since` and `token`
//! as any text, however encoded, are accepted or refused with the documented answer
//! (docs/protocol.md §3, §5: 400 `bad_request` for a malformed `since`, 401 `missing_token` /
//! `invalid_token` / `token_expired`), never a panic.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, StatusCode};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use switchboard_proto::StreamPosition;

use super::{check, Checked, Rejected};
use crate::config::ServeArgs;
use crate::http::query::tests::{encode_form, encode_uri_component};
use crate::node::testing::runtime_and_node;
use crate::node::Node;

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

fn setup() -> (tokio::runtime::Runtime, Arc<Node>, String) {
    let (rt, node) = runtime_and_node(ServeArgs::default());
    let token = crate::token::mint(
        &node.config,
        "alice",
        &[],
        &[],
        None,
        Duration::from_secs(3600),
    )
    .expect("a test token");
    (rt, node, token)
}

/// `GET /ws?<query>` as a WebSocket upgrade; `None` when `http` refuses the URI.
fn handshake(node: &Arc<Node>, query: &str) -> Option<Result<Checked, Rejected>> {
    let req = Request::builder()
        .uri(format!("/ws?{query}"))
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "13")
        .body(())
        .ok()?;
    // With a static key (never a JWKS here) the token check completes without waiting.
    let verify = |u: super::Unverified| {
        futures_util::FutureExt::now_or_never(u.verify(node)).expect("a static key never waits")
    };
    Some(check(node, &req).and_then(verify))
}

/// A refusal is one of the documented ones for a query string.
fn assert_documented(r: &Rejected) {
    let ok = matches!(
        (r.status, r.code),
        (StatusCode::BAD_REQUEST, "bad_request")
            | (
                StatusCode::UNAUTHORIZED,
                "missing_token" | "invalid_token" | "token_expired"
            )
    );
    assert!(
        ok,
        "undocumented refusal {} {}: {}",
        r.status, r.code, r.message
    );
    assert!(!r.message.is_empty());
}

/// The encoders a browser may use, and one that escapes every byte (any case).
fn encoder() -> impl Strategy<Value = fn(&str) -> String> {
    prop_oneof![
        Just(encode_uri_component as fn(&str) -> String),
        Just(encode_form as fn(&str) -> String),
        Just((|s: &str| s.bytes().map(|b| format!("%{b:02x}")).collect()) as fn(&str) -> String),
    ]
}

/// `since` as any text: accepted exactly when it is `<epoch>:<offset>`, as that position.
#[test]
fn since_values() {
    let (_rt, node, token) = setup();
    let since = prop_oneof![
        prop::collection::vec(any::<char>(), 0..24).prop_map(String::from_iter),
        "[A-Za-z0-9_+ -]{0,6}:[+-]?[0-9]{0,22}",
        "[A-Za-z0-9_-]{60,70}:[0-9]{1,3}",
    ];
    runner(256)
        .run(&(since, encoder()), |(since, enc)| {
            let q = format!("since={}&token={token}", enc(&since));
            let r = handshake(&node, &q).expect("an encoded query is a valid URI");
            match (r, StreamPosition::parse(&since)) {
                (Ok(a), Some(p)) => prop_assert_eq!(a.since, Some(p)),
                (Err(r), None) => {
                    assert_documented(&r);
                    prop_assert_eq!((r.status, r.code), (StatusCode::BAD_REQUEST, "bad_request"));
                }
                (Ok(a), None) => prop_assert!(false, "{since:?} accepted as {:?}", a.since),
                (Err(r), Some(_)) => prop_assert!(false, "{since:?} refused: {}", r.message),
            }
            Ok(())
        })
        .unwrap();
}

/// `token` as any text is refused with 401 (`missing_token` when empty); the real token,
/// with any of its characters escaped, is accepted.
#[test]
fn token_values() {
    let (_rt, node, token) = setup();
    let text = prop::collection::vec(any::<char>(), 0..64).prop_map(String::from_iter);
    let escapes = prop::collection::vec(any::<bool>(), token.len());
    runner(256)
        .run(&(text, encoder(), escapes), |(text, enc, escapes)| {
            let r = handshake(&node, &format!("token={}", enc(&text))).expect("valid URI");
            let r = r.err().expect("an arbitrary token is refused");
            assert_documented(&r);
            let want = if text.is_empty() {
                "missing_token"
            } else {
                "invalid_token"
            };
            prop_assert_eq!((r.status, r.code), (StatusCode::UNAUTHORIZED, want));
            prop_assert!(
                text.len() < 8 || !r.message.contains(&text),
                "the message quotes the token"
            );

            let escaped: String = token
                .bytes()
                .zip(escapes)
                .map(|(b, e)| {
                    if e {
                        format!("%{b:02X}")
                    } else {
                        char::from(b).to_string()
                    }
                })
                .collect();
            let a = handshake(&node, &format!("a=b&token=&token={escaped}")).expect("valid URI");
            let sub = a.map(|a| a.claims.sub).ok();
            prop_assert_eq!(sub.as_deref(), Some("alice"));
            Ok(())
        })
        .unwrap();
}

/// Any query string the URI parser lets through: accepted, or a documented refusal.
#[test]
fn raw_query_strings() {
    let (_rt, node, token) = setup();
    let query = "[A-Za-z0-9%+=&._~:-]{0,60}";
    runner(512)
        .run(&(query, any::<bool>()), |(query, with_token)| {
            let q = if with_token {
                format!("{query}&token={token}")
            } else {
                query
            };
            if let Some(Err(r)) = handshake(&node, &q) {
                assert_documented(&r);
            }
            Ok(())
        })
        .unwrap();
}
