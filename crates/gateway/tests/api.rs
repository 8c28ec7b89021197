//! The server API of PROTOCOL.md §6 on the internal port, its errors, the protobuf
//! variant, and the operational endpoints (`/healthz`, `/readyz`, `/metrics`, §1 and §8).

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use prost::Message as _;
use serde_json::{json, Value};
use support::{Client, Node, API_KEY};
use switchboard_proto::pb;

const QUIET: Duration = Duration::from_millis(200);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn publish(node: &Node, body: Value) -> Value {
    let (status, res) = node.api("POST", "/v1/publish", Some(body)).await;
    assert_eq!(status, 200, "publish: {res}");
    res
}

/// Asserts an error answer: status, `error` code, and a `message` string.
fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"], want_code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "every error has a message: {body}"
    );
}

/// Polls `GET path` until `pred` holds (state that settles after a socket closed).
async fn eventually(node: &Node, path: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        let (status, body) = node.api("GET", path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        if pred(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never settled: {body}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Subscribes and consumes the reply and the client's own presence `join`.
async fn join_room(c: &mut Client, id: u64, channel: &str) {
    assert_eq!(c.subscribe(id, channel).await["ok"], true);
    let own = c.recv().await;
    assert_eq!(
        (own["type"].as_str(), own["event"].as_str()),
        (Some("presence"), Some("join"))
    );
}

// --- publish ----------------------------------------------------------------------------

#[tokio::test]
async fn publish_to_an_offline_user_lands_in_the_inbox() {
    let node = support::start(&[]).await;
    let res = publish(&node, json!({"channel": "user:alice", "data": {"n": 1}})).await;
    assert_eq!(res["channel"], "user:alice");
    assert_eq!(res["online"], false);
    assert_eq!(res["nodes"], 0);
    assert_eq!(res["offset"], 1);
    let epoch = res["epoch"].as_str().expect("epoch").to_owned();
    assert!(!epoch.is_empty());

    let (mut a, w) = node.connect("alice").await;
    assert_eq!(w["offset"], 1);
    assert_eq!(w["epoch"], epoch.as_str());
    let m = a.recv().await;
    assert_eq!(m["type"], "message");
    assert_eq!(m["channel"], "user:alice");
    assert_eq!(m["epoch"], epoch.as_str());
    assert_eq!(m["offset"], 1);
    assert_eq!(m["data"], json!({"n": 1}));
    assert!(
        m.get("from").is_none(),
        "no `from` unless the body sets one: {m}"
    );
    a.expect_silence(QUIET).await;
}

#[tokio::test]
async fn publish_to_an_online_user_is_delivered_live_with_from() {
    let node = support::start(&[]).await;
    let (mut a1, _) = node.connect("alice").await;
    let (mut a2, _) = node.connect("alice").await;
    let (mut b, _) = node.connect("bob").await;
    let before = now_ms();
    let res = publish(
        &node,
        json!({"channel": "user:alice", "data": [1, "x"], "from": "billing"}),
    )
    .await;
    assert_eq!(res["online"], true);
    assert_eq!(res["nodes"], 1, "two connections, one node");
    assert_eq!(res["offset"], 1);
    for a in [&mut a1, &mut a2] {
        let m = a.recv().await;
        assert_eq!(m["type"], "message");
        assert_eq!(m["from"], "billing");
        assert_eq!(m["data"], json!([1, "x"]));
        assert_eq!(m["offset"], 1);
        assert_eq!(m["epoch"], res["epoch"]);
        assert!(m["ts"].as_u64().unwrap() >= before);
    }
    b.expect_silence(QUIET).await;

    // `data_b64` publishes bytes.
    let res = publish(&node, json!({"channel": "user:alice", "data_b64": "AAH/"})).await;
    assert_eq!(res["offset"], 2);
    let m = a1.recv().await;
    assert_eq!(m["data_b64"], "AAH/");
    assert!(m.get("from").is_none(), "{m}");
}

#[tokio::test]
async fn publish_to_a_room() {
    let node = support::start(&[]).await;
    let (mut a, _) = node.connect("alice").await;
    let (mut b, _) = node.connect("bob").await;
    join_room(&mut a, 1, "room:news").await;
    let res = publish(&node, json!({"channel": "room:news", "data": "headline"})).await;
    assert_eq!(res["channel"], "room:news");
    assert_eq!(res["offset"], 1);
    assert_eq!(res["nodes"], 1);
    assert!(res["online"].is_boolean(), "{res}");
    let m = a.recv().await;
    assert_eq!(m["type"], "message");
    assert_eq!(m["channel"], "room:news");
    assert_eq!(m["data"], "headline");
    assert!(m.get("from").is_none(), "{m}");
    b.expect_silence(QUIET).await;

    // A room nobody listens to: stored position moves, routed nowhere.
    let res = publish(&node, json!({"channel": "room:empty", "data": 1})).await;
    assert_eq!(
        (res["offset"].as_u64(), res["nodes"].as_u64()),
        (Some(1), Some(0))
    );
    a.expect_silence(Duration::ZERO).await;
}

#[tokio::test]
async fn broadcast_answers_one_result_per_channel() {
    let node = support::start(&[]).await;
    let (mut a, _) = node.connect("alice").await;
    let (mut c, _) = node.connect("carol").await;
    join_room(&mut c, 1, "room:b").await;
    let (status, res) = node
        .api(
            "POST",
            "/v1/broadcast",
            Some(json!({
                "channels": ["user:alice", "user:bob", "room:b", "bad channel", "user:alice"],
                "data": {"all": true},
                "from": "ops",
            })),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let results = res["results"].as_array().expect("results");
    assert_eq!(results.len(), 5, "{res}");
    let summary = |r: &Value| {
        (
            r["channel"].as_str().map(str::to_owned),
            r["offset"].as_u64(),
            r["online"].as_bool(),
            r["nodes"].as_u64(),
        )
    };
    assert_eq!(
        summary(&results[0]),
        (Some("user:alice".into()), Some(1), Some(true), Some(1))
    );
    assert_eq!(
        summary(&results[1]),
        (Some("user:bob".into()), Some(1), Some(false), Some(0))
    );
    assert_eq!(
        (
            summary(&results[2]).0,
            summary(&results[2]).1,
            summary(&results[2]).3
        ),
        (Some("room:b".into()), Some(1), Some(1))
    );
    assert_eq!(results[3]["channel"], "bad channel");
    assert_eq!(results[3]["error"]["code"], "bad_channel", "{res}");
    assert!(results[3]["error"]["message"].is_string());
    assert!(results[3].get("offset").is_none(), "{res}");
    assert_eq!(
        summary(&results[4]),
        (Some("user:alice".into()), Some(2), Some(true), Some(1))
    );
    for r in [&results[0], &results[1], &results[2], &results[4]] {
        assert!(r.get("error").is_none(), "{r}");
        assert!(r["epoch"].as_str().is_some_and(|e| !e.is_empty()), "{r}");
    }

    for offset in [1, 2] {
        let m = a.recv().await;
        assert_eq!(
            (m["offset"].as_u64(), m["from"].as_str()),
            (Some(offset), Some("ops"))
        );
        assert_eq!(m["data"], json!({"all": true}));
    }
    let m = c.recv().await;
    assert_eq!(
        (m["channel"].as_str(), m["from"].as_str()),
        (Some("room:b"), Some("ops"))
    );
    a.expect_silence(QUIET).await;
    c.expect_silence(Duration::ZERO).await;
    // Bob was offline: his copy waits in the inbox.
    let (mut b, w) = node.connect("bob").await;
    assert_eq!(w["offset"], 1);
    assert_eq!(b.recv().await["data"], json!({"all": true}));
}

// --- users, disconnect, presence, history, nodes ----------------------------------------

#[tokio::test]
async fn users_endpoint_lists_connections() {
    let node = support::start(&[]).await;
    let (status, res) = node.api("GET", "/v1/users/alice", None).await;
    assert_eq!(status, 200);
    assert_eq!(res, json!({"online": false, "connections": []}));

    let before = now_ms();
    let (_a1, w1) = node.connect("alice").await;
    let (_a2, w2) = node.connect("alice").await;
    let (_b, _) = node.connect("bob").await;
    let after = now_ms();
    let (status, res) = node.api("GET", "/v1/users/alice", None).await;
    assert_eq!(status, 200);
    assert_eq!(res["online"], true);
    let conns = res["connections"].as_array().expect("connections");
    assert_eq!(conns.len(), 2, "{res}");
    let mut ids: Vec<&str> = conns
        .iter()
        .map(|c| c["conn_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut want = [
        w1["conn_id"].as_str().unwrap(),
        w2["conn_id"].as_str().unwrap(),
    ];
    want.sort_unstable();
    assert_eq!(ids, want);
    for c in conns {
        assert_eq!(c["node"], node.node_id.as_str());
        let since = c["since_ms"].as_u64().expect("since_ms");
        assert!(before <= since && since <= after, "{c}");
        assert_eq!(c.as_object().unwrap().len(), 3, "{c}");
    }
}

#[tokio::test]
async fn disconnect_closes_every_socket_of_the_user() {
    let node = support::start(&[]).await;
    let (mut a1, _) = node.connect("alice").await;
    let (mut a2, _) = node.connect_proto_token(&support::token("alice")).await;
    let (mut b, _) = node.connect("bob").await;
    let (mut c, _) = node.connect("carol").await;

    // No body: the default code 4003.
    let (status, res) = node.api("POST", "/v1/users/alice/disconnect", None).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res, json!({"connections": 2}));
    for a in [&mut a1, &mut a2] {
        let (code, _, before) = a.expect_close().await;
        assert_eq!(code, 4003);
        assert!(before.is_empty(), "{before:?}");
    }
    eventually(&node, "/v1/users/alice", |v| v["online"] == false).await;

    // An explicit code and reason.
    let (status, res) = node
        .api(
            "POST",
            "/v1/users/bob/disconnect",
            Some(json!({"code": 4321, "reason": "maintenance"})),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["connections"], 1);
    let (code, reason, _) = b.expect_close().await;
    assert_eq!((code, reason.as_str()), (4321, "maintenance"));

    // Nobody else was touched; an offline user has nothing to close.
    let (_, res) = node
        .api("POST", "/v1/users/nobody/disconnect", Some(json!({})))
        .await;
    assert_eq!(res["connections"], 0);
    c.send(json!({"type": "ping", "id": 1})).await;
    assert_eq!(c.recv().await, json!({"type": "pong", "id": 1}));
    let (_, res) = node.api("GET", "/v1/users/carol", None).await;
    assert_eq!(res["online"], true);

    // A code outside 1000/3000-4999 is refused.
    let (status, res) = node
        .api(
            "POST",
            "/v1/users/carol/disconnect",
            Some(json!({"code": 1006})),
        )
        .await;
    assert_error(status, &res, 400, "bad_request");
    c.expect_silence(QUIET).await;
}

#[tokio::test]
async fn presence_endpoint_dedupes_users() {
    let node = support::start(&[]).await;
    let (status, res) = node.api("GET", "/v1/presence/room:lobby", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        res,
        json!({"channel": "room:lobby", "users": [], "connections": 0})
    );

    let (mut a1, _) = node.connect("alice").await;
    let (mut a2, _) = node.connect("alice").await;
    let (mut b, _) = node.connect("bob").await;
    join_room(&mut a1, 1, "room:lobby").await;
    assert_eq!(a2.subscribe(1, "room:lobby").await["ok"], true);
    join_room(&mut b, 1, "room:lobby").await;
    // A second connection's join settles just after its reply: wait for it.
    let res = eventually(&node, "/v1/presence/room:lobby", |v| v["connections"] == 3).await;
    let mut users: Vec<&str> = res["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    users.sort_unstable();
    assert_eq!(users, ["alice", "bob"], "{res}");
    assert_eq!(res["connections"], 3);
    assert_eq!(res["channel"], "room:lobby");

    b.send(json!({"type": "unsubscribe", "id": 2, "channel": "room:lobby"}))
        .await;
    assert_eq!(b.reply(2).await["ok"], true);
    let (_, res) = node.api("GET", "/v1/presence/room:lobby", None).await;
    assert_eq!(res["users"], json!(["alice"]));
    assert_eq!(res["connections"], 2);

    let (status, res) = node.api("GET", "/v1/presence/nonamespace", None).await;
    assert_error(status, &res, 400, "bad_channel");
}

#[tokio::test]
async fn history_reads_after_since_with_limit() {
    let node = support::start(&["--history", "room:h*=100/3600"]).await;
    let mut epoch = String::new();
    for n in 1..=5 {
        let res = publish(&node, json!({"channel": "room:h", "data": {"n": n}})).await;
        epoch = res["epoch"].as_str().unwrap().to_owned();
    }
    let offsets = |v: &Value| -> Vec<u64> {
        v["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|m| m["offset"].as_u64().unwrap())
            .collect()
    };

    let (status, all) = node.api("GET", "/v1/history/room:h", None).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["epoch"], epoch.as_str());
    assert_eq!(offsets(&all), [1, 2, 3, 4, 5]);
    let m = &all["messages"][0];
    assert_eq!(m["channel"], "room:h");
    assert_eq!(m["data"], json!({"n": 1}));
    assert!(m["id"].is_string() && m["ts"].is_u64(), "{m}");

    let (status, after) = node
        .api("GET", &format!("/v1/history/room:h?since={epoch}:2"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(offsets(&after), [3, 4, 5]);
    assert_eq!(after["messages"][0]["data"], json!({"n": 3}));

    let (_, limited) = node
        .api(
            "GET",
            &format!("/v1/history/room:h?since={epoch}:2&limit=2"),
            None,
        )
        .await;
    assert_eq!(offsets(&limited), [3, 4]);
    let (_, limited) = node.api("GET", "/v1/history/room:h?limit=1", None).await;
    assert_eq!(offsets(&limited), [1]);
    let (_, none) = node
        .api("GET", &format!("/v1/history/room:h?since={epoch}:5"), None)
        .await;
    assert_eq!(offsets(&none), Vec::<u64>::new());

    for bad in [
        "since=nocolon",
        "since=e1:x",
        "since=:3",
        "limit=0",
        "limit=x",
    ] {
        let (status, res) = node
            .api("GET", &format!("/v1/history/room:h?{bad}"), None)
            .await;
        assert_error(status, &res, 400, "bad_request");
    }
    let (status, res) = node.api("GET", "/v1/history/bad%20channel", None).await;
    assert_error(status, &res, 400, "bad_channel");

    // Rooms without a rule keep nothing; user channels keep their inbox.
    publish(&node, json!({"channel": "room:other", "data": 1})).await;
    let (_, res) = node.api("GET", "/v1/history/room:other", None).await;
    assert_eq!(offsets(&res), Vec::<u64>::new());
    publish(&node, json!({"channel": "user:alice", "data": 1})).await;
    let (_, res) = node.api("GET", "/v1/history/user:alice", None).await;
    assert_eq!(offsets(&res), [1]);
}

#[tokio::test]
async fn nodes_lists_this_node() {
    let node = support::start(&[]).await;
    let (status, res) = node.api("GET", "/v1/nodes", None).await;
    assert_eq!(status, 200, "{res}");
    let nodes = res["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 1, "{res}");
    let n = &nodes[0];
    assert_eq!(n["node"], node.node_id.as_str());
    assert_eq!(n["draining"], false);
    assert!(n["connections"].is_u64(), "{n}");
    let since = n["since_ms"].as_u64().expect("since_ms");
    assert!(since <= now_ms() && since > now_ms() - 60_000, "{n}");
}

// --- errors -----------------------------------------------------------------------------

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

// --- protobuf API -----------------------------------------------------------------------

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

// --- health, readiness, metrics ---------------------------------------------------------

#[tokio::test]
async fn health_and_readiness() {
    let node = support::start(&[]).await;
    let (status, _) = node.get_internal("/healthz").await;
    assert_eq!(status, 200);
    let (status, body) = node.get_internal("/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"ready": true})
    );
    // The API is not on the public port.
    let (status, _) = node
        .http(
            node.public,
            "GET",
            "/v1/nodes",
            &[("authorization", &format!("Bearer {API_KEY}"))],
            Bytes::new(),
        )
        .await;
    assert_eq!(status, 404);
}

/// The value of the first sample of `name` whose labels contain `labels`.
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let (series, value) = rest.rsplit_once(' ')?;
        let ok = match series.strip_prefix('{') {
            Some(lbl) => lbl.contains(labels),
            None => series.is_empty() && labels.is_empty(),
        };
        ok.then(|| value.parse().ok()).flatten()
    })
}

const STARTUP_METRICS: [&str; 7] = [
    "switchboard_connections",
    "switchboard_connections_total",
    "switchboard_messages_received_total",
    "switchboard_messages_delivered_total",
    "switchboard_backplane_up",
    "switchboard_backplane_reconnects_total",
    "switchboard_slow_consumer_disconnects_total",
];

#[tokio::test]
async fn metrics_exist_from_startup() {
    let node = support::start(&[]).await;
    let text = node.metrics_text().await;
    for name in STARTUP_METRICS {
        assert!(sample(&text, name, "").is_some(), "{name} missing:\n{text}");
    }
    assert_eq!(sample(&text, "switchboard_backplane_up", ""), Some(1.0));
    assert_eq!(sample(&text, "switchboard_connections", ""), Some(0.0));
    assert_eq!(
        sample(&text, "switchboard_connections_total", ""),
        Some(0.0)
    );
}

#[tokio::test]
async fn metrics_follow_traffic() {
    let node = support::start(&[]).await;
    // A refused upgrade.
    let refused = node.connect_query("", &[]).await.err().expect("refused");
    assert_eq!(refused.status, 401);
    // Traffic: a room message delivered twice, a DM.
    let (mut a, w) = node.connect("alice").await;
    let (mut b, _) = node.connect("bob").await;
    join_room(&mut a, 1, "room:m").await;
    join_room(&mut b, 1, "room:m").await;
    a.send(json!({"type": "publish", "id": 2, "channel": "room:m", "data": 1}))
        .await;
    b.recv_until(|v| v["type"] == "message").await;
    a.recv_until(|v| v["type"] == "message").await;
    // A resume with since, and a disconnect with 4003.
    let epoch = w["epoch"].as_str().unwrap();
    let mut r = node
        .connect_query(
            &format!("token={}&since={epoch}:0", support::token("carol")),
            &[],
        )
        .await
        .expect("resume");
    assert_eq!(
        r.recv().await["recovered"],
        false,
        "carol's epoch is not alice's"
    );
    let (_, res) = node.api("POST", "/v1/users/bob/disconnect", None).await;
    assert_eq!(res["connections"], 1);
    assert_eq!(b.expect_close().await.0, 4003);
    let (c, cw) = node.connect("carol").await;
    let cep = cw["epoch"].as_str().unwrap().to_owned();
    c.close().await;
    let mut r2 = node
        .connect_query(
            &format!("token={}&since={cep}:0", support::token("carol")),
            &[],
        )
        .await
        .expect("resume");
    assert_eq!(r2.recv().await["recovered"], true);

    // Counters settle after the sockets close; poll until they show.
    let deadline = tokio::time::Instant::now() + support::WAIT;
    let text = loop {
        let text = node.metrics_text().await;
        let closed = sample(&text, "switchboard_disconnects_total", "code=\"4003\"");
        let timed = sample(&text, "switchboard_delivery_latency_seconds_count", "");
        if closed == Some(1.0) && timed.is_some_and(|n| n >= 2.0) {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics never settled:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    for name in STARTUP_METRICS {
        assert!(sample(&text, name, "").is_some(), "{name} missing:\n{text}");
    }
    assert_eq!(
        sample(
            &text,
            "switchboard_handshake_rejected_total",
            "reason=\"missing_token\""
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "switchboard_recovery_total", "result=\"recovered\""),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "switchboard_recovery_total",
            "result=\"not_recovered\""
        ),
        Some(1.0)
    );
    assert!(
        text.contains("switchboard_delivery_latency_seconds_bucket{"),
        "{text}"
    );
    assert_eq!(
        sample(&text, "switchboard_connections_total", ""),
        Some(5.0),
        "{text}"
    );
    assert!(sample(&text, "switchboard_messages_received_total", "").unwrap() >= 3.0);
    assert!(sample(&text, "switchboard_messages_delivered_total", "").unwrap() >= 2.0);
    // Labels never carry user ids or channel names.
    for secret in ["alice", "bob", "carol", "room:m"] {
        assert!(!text.contains(secret), "{secret} leaked into metrics");
    }
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
