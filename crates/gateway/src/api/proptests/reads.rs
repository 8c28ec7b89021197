//! The read endpoints' inputs and disconnect: path segments, history's `since` / `limit`,
//! disconnect bodies.

use http::StatusCode;
use proptest::prelude::*;
use prost::Message as _;
use serde_json::{Map, Value};
use switchboard_proto::pb;

use super::{channel, channel_error, outcome, runner, setup, user_id, Format, OK};

/// `code` and `reason` of a disconnect: 200 exactly for 1000 or 3000-4999 and a reason of
/// at most 120 bytes; a bad user id is `bad_request`.
#[test]
fn disconnect_bodies() {
    let (rt, node) = setup();
    let strategy = (
        proptest::option::of(prop_oneof![0u64..6000, any::<u64>()]),
        proptest::option::of(prop_oneof!["\\PC{0,130}", "[a-z]{115,125}"]),
        user_id(),
    );
    runner(256)
        .run(&strategy, |(code, reason, user)| {
            let mut o = Map::new();
            if let Some(c) = code {
                o.insert("code".into(), c.into());
            }
            if let Some(r) = &reason {
                o.insert("reason".into(), r.clone().into());
            }
            let got = outcome(rt.block_on(crate::api::query::disconnect(
                &node,
                &user,
                Value::Object(o).to_string().as_bytes(),
                false,
                Format::Json,
            )));
            let code_ok = code.is_none_or(|c| c == 1000 || (3000..=4999).contains(&c));
            let reason_ok = reason.as_ref().is_none_or(|r| r.len() <= 120);
            let want =
                if !switchboard_proto::channel::is_valid_user_id(&user) || !code_ok || !reason_ok {
                    (StatusCode::BAD_REQUEST, "bad_request")
                } else {
                    OK
                };
            prop_assert_eq!(got, want);

            // The same in protobuf, where 0 and "" mean absent.
            if let Ok(pcode) = u32::try_from(code.unwrap_or(0)) {
                let req = pb::DisconnectRequest {
                    code: pcode,
                    reason: reason.clone().unwrap_or_default(),
                    ..Default::default()
                };
                let got = outcome(rt.block_on(crate::api::query::disconnect(
                    &node,
                    &user,
                    &req.encode_to_vec(),
                    true,
                    Format::Proto,
                )));
                let code = if pcode == 0 { 4003 } else { pcode };
                let code_ok = code == 1000 || (3000..=4999).contains(&code);
                let valid = switchboard_proto::channel::is_valid_user_id(&user);
                let want = if valid && code_ok && reason_ok {
                    OK
                } else {
                    (StatusCode::BAD_REQUEST, "bad_request")
                };
                prop_assert_eq!(got, want);
            }
            Ok(())
        })
        .unwrap();
}

/// `since` and `limit` of `GET /v1/history`, as any percent-encoded text: 200 exactly
/// when `since` is `<epoch>:<offset>` and `limit` is 1 to 10000.
#[test]
fn history_queries() {
    let (rt, node) = setup();
    let value = prop_oneof![
        "\\PC{0,16}",
        "[A-Za-z0-9_-]{1,8}:[0-9]{1,21}",
        "[+-]?[0-9]{1,6}",
    ];
    let strategy = (
        proptest::option::of(value.clone()),
        proptest::option::of(value),
    );
    runner(256)
        .run(&strategy, |(since, limit)| {
            let mut q = vec!["x=1".to_owned()];
            if let Some(s) = &since {
                q.push(format!(
                    "since={}",
                    crate::http::query::tests::encode_uri_component(s)
                ));
            }
            if let Some(l) = &limit {
                q.push(format!(
                    "limit={}",
                    crate::http::query::tests::encode_uri_component(l)
                ));
            }
            let q = q.join("&");
            let got = outcome(rt.block_on(crate::api::query::history(
                &node,
                "user:alice",
                Some(&q),
                Format::Json,
            )));
            let since_ok = since
                .as_deref()
                .is_none_or(|s| switchboard_proto::StreamPosition::parse(s).is_some());
            let limit_ok = limit
                .as_deref()
                .is_none_or(|l| l.parse::<usize>().is_ok_and(|n| (1..=10_000).contains(&n)));
            let want = if since_ok && limit_ok {
                OK
            } else {
                (StatusCode::BAD_REQUEST, "bad_request")
            };
            prop_assert_eq!(got, want, "{}", q);
            Ok(())
        })
        .unwrap();
}

/// Path segments (`/v1/users/{id}`, `/v1/presence/{channel}`, `/v1/history/{channel}`) as
/// any text, percent-encoded the way `route` decodes them: 200 for a valid id or channel,
/// else 400 `bad_request` / `bad_channel`.
#[test]
fn path_segments() {
    let (rt, node) = setup();
    let segment = prop_oneof![
        "\\PC{0,16}",
        channel(),
        user_id(),
        prop::collection::vec(any::<u8>(), 0..12)
            .prop_map(|b| b.iter().map(|b| format!("%{b:02X}")).collect()),
    ];
    runner(256)
        .run(&segment, |raw| {
            let encoded = crate::http::query::tests::encode_uri_component(&raw);
            let seg = crate::http::query::percent_decode(&encoded);
            let user_ok = switchboard_proto::channel::is_valid_user_id(&seg);
            let got = rt.block_on(async {
                (
                    outcome(crate::api::query::user(&node, &seg, Format::Json).await),
                    outcome(crate::api::query::presence(&node, &seg, Format::Json).await),
                    outcome(crate::api::query::history(&node, &seg, None, Format::Proto).await),
                )
            });
            let want_user = if user_ok {
                OK
            } else {
                (StatusCode::BAD_REQUEST, "bad_request")
            };
            let want_channel = channel_error(&seg).unwrap_or(OK);
            prop_assert_eq!(got, (want_user, want_channel, want_channel));
            Ok(())
        })
        .unwrap();
}
