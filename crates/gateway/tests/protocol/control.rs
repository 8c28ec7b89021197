//! `ack`, `refresh`, `ping` and `rpc`.

use super::*;

#[tokio::test]
async fn ack_is_accepted_silently_and_moves_the_inbox_json() {
    let node = support::start(&[]).await;
    for n in 1..=3 {
        api_publish(&node, "user:alice", json!(n)).await;
    }
    let (mut a, w) = node.connect("alice").await;
    assert_eq!(w["offset"], 3);
    for n in 1..=3 {
        assert_eq!(a.recv().await["offset"], n);
    }
    a.send(json!({"type": "ack", "channel": "user:alice", "offset": 2}))
        .await;
    a.expect_silence(QUIET).await;
    assert_alive(&mut a, 1).await;
    a.close().await;

    // A new connection without since starts after the ack.
    let (mut a, w) = node.connect("alice").await;
    assert_eq!(w["offset"], 3);
    let m = a.recv().await;
    assert_eq!((m["offset"].as_u64(), &m["data"]), (Some(3), &json!(3)));
    a.expect_silence(QUIET).await;
}

#[tokio::test]
async fn ack_is_accepted_silently_proto() {
    let node = support::start(&[]).await;
    let first = api_publish(&node, "user:alice", json!(1)).await;
    api_publish(&node, "user:alice", json!(2)).await;
    let (mut a, w) = node.connect_proto_token(&support::token("alice")).await;
    assert_eq!(w.offset, 2);
    assert_eq!(pb_message(&mut a).await.offset, 1);
    assert_eq!(pb_message(&mut a).await.offset, 2);
    a.send_pb(Kind::Ack(pb::Ack {
        channel: "user:alice".into(),
        offset: 2,
        epoch: first["epoch"].as_str().unwrap().into(),
    }))
    .await;
    a.expect_silence(QUIET).await;
    pb_assert_alive(&mut a, 3).await;
    a.close().await;

    let (mut a, w) = node.connect_proto_token(&support::token("alice")).await;
    assert_eq!(w.offset, 2);
    a.expect_silence(QUIET).await;
}

#[tokio::test]
async fn refresh_with_a_valid_token_replies_ok() {
    let node = support::start(&[]).await;
    let (mut a, _) = node.connect("alice").await;
    a.send(json!({"type": "refresh", "id": 4, "token": support::token("alice")}))
        .await;
    assert_eq!(
        a.recv().await,
        json!({"type": "reply", "id": 4, "ok": true})
    );

    a.send(json!({"type": "refresh", "id": 5, "token": "not-a-jwt"}))
        .await;
    let r = a.recv().await;
    assert_eq!(
        (r["id"].as_u64(), r["ok"].as_bool()),
        (Some(5), Some(false))
    );
    assert_eq!(r["error"]["code"], "invalid_token", "{r}");

    let expired = support::sign(&json!({"sub": "alice", "exp": support::now_secs() - 3600}));
    a.send(json!({"type": "refresh", "id": 6, "token": expired}))
        .await;
    let r = a.recv().await;
    assert_eq!(r["error"]["code"], "token_expired", "{r}");

    a.send(json!({"type": "refresh", "id": 7, "token": support::token("bob")}))
        .await;
    let r = a.recv().await;
    assert_eq!(
        (r["id"].as_u64(), r["ok"].as_bool()),
        (Some(7), Some(false)),
        "{r}"
    );
    assert_alive(&mut a, 8).await;

    let (mut p, _) = node.connect_proto_token(&support::token("bob")).await;
    p.send_pb(Kind::Refresh(pb::Refresh {
        id: 9,
        token: support::token("bob"),
    }))
    .await;
    assert_eq!(
        p.next_pb_reply().await,
        pb::Reply {
            id: 9,
            ok: true,
            ..Default::default()
        }
    );
}

#[tokio::test]
async fn ping_gets_pong_with_the_id() {
    let node = support::start(&[]).await;
    let (mut a, _) = node.connect("alice").await;
    a.send(json!({"type": "ping", "id": 5})).await;
    assert_eq!(a.recv().await, json!({"type": "pong", "id": 5}));
    a.send(json!({"type": "ping"})).await;
    assert_eq!(a.recv().await, json!({"type": "pong"}));

    let (mut p, _) = node.connect_proto_token(&support::token("bob")).await;
    p.send_pb(Kind::Ping(pb::Ping { id: 42 })).await;
    assert_eq!(p.recv_pb().await, Kind::Pong(pb::Pong { id: 42 }));
}

#[tokio::test]
async fn rpc_without_routes_is_no_route_and_the_claim_limits_methods() {
    let node = support::start(&[]).await;
    let (mut a, _) = node.connect("alice").await;
    a.send(json!({"type": "rpc", "id": 6, "method": "orders.create", "data": {"sku": "A1"}}))
        .await;
    let r = a.recv().await;
    assert_eq!(
        (r["id"].as_u64(), r["ok"].as_bool()),
        (Some(6), Some(false))
    );
    assert_eq!(r["error"]["code"], "no_route", "{r}");
    assert!(r["error"]["message"].is_string());

    let t = token_with("bob", json!({"rpc": ["billing.*"]}));
    let (mut b, _) = node.connect_token(&t).await;
    b.send(json!({"type": "rpc", "id": 1, "method": "orders.create", "data": {}}))
        .await;
    let r = b.recv().await;
    assert_eq!(
        (r["id"].as_u64(), r["ok"].as_bool()),
        (Some(1), Some(false))
    );
    assert_eq!(r["error"]["code"], "forbidden", "{r}");
    b.send(json!({"type": "rpc", "id": 2, "method": "billing.charge", "data": {}}))
        .await;
    assert_eq!(b.recv().await["error"]["code"], "no_route");

    let (mut p, _) = node.connect_proto_token(&t).await;
    p.send_pb(Kind::Rpc(pb::Rpc {
        id: 3,
        method: "orders.create".into(),
        data: json_payload("{}"),
        ..Default::default()
    }))
    .await;
    let r = p.next_pb_reply().await;
    assert_eq!((r.id, r.ok), (3, false));
    assert_eq!(r.error.unwrap().code, "forbidden");
    p.send_pb(Kind::Rpc(pb::Rpc {
        id: 4,
        method: "billing.charge".into(),
        data: None,
        ..Default::default()
    }))
    .await;
    let r = p.next_pb_reply().await;
    assert_eq!((r.id, r.ok), (4, false));
    assert_eq!(r.error.unwrap().code, "no_route");
}
