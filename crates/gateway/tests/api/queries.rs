//! `/v1/users` and disconnecting a user, `/v1/presence`, `/v1/history` and `/v1/nodes`.

use super::*;

use serde_json::json;

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
    a1.join_room(1, "room:lobby", "alice").await;
    assert_eq!(a2.subscribe(1, "room:lobby").await["ok"], true);
    b.join_room(1, "room:lobby", "bob").await;
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
