//! `subscribe` / `unsubscribe` replies in both encodings, their rejections, and resuming a
//! room with `since`.

use super::*;

// --- subscribe / unsubscribe ------------------------------------------------------------

#[tokio::test]
async fn subscribe_and_unsubscribe_replies_json() {
    let node = support::start(&[]).await;
    let (mut a, _) = node.connect("alice").await;
    let (mut b, _) = node.connect("bob").await;

    a.send(json!({"type": "subscribe", "id": 1, "channel": "room:lobby"}))
        .await;
    let reply = a.recv().await;
    assert_eq!(reply["type"], "reply");
    assert_eq!(reply["id"], 1);
    assert_eq!(reply["ok"], true);
    assert!(is_epoch(reply["epoch"].as_str().unwrap()), "{reply}");
    assert_eq!(reply["offset"], 0, "an empty room");
    assert!(
        reply.get("recovered").is_none(),
        "no since, no recovered: {reply}"
    );
    assert!(reply.get("error").is_none(), "{reply}");
    assert_eq!(
        a.recv().await,
        json!({"type": "presence", "channel": "room:lobby", "user": "alice", "event": "join"})
    );

    // Subscribed: bob's publish arrives.
    b.send(json!({"type": "publish", "id": 1, "channel": "room:lobby", "data": 1}))
        .await;
    assert_eq!(b.reply(1).await["offset"], 1);
    let m = a.recv().await;
    assert_eq!(
        (m["type"].as_str(), m["offset"].as_u64()),
        (Some("message"), Some(1))
    );

    a.send(json!({"type": "unsubscribe", "id": 2, "channel": "room:lobby"}))
        .await;
    assert_eq!(
        a.recv().await,
        json!({"type": "reply", "id": 2, "ok": true})
    );

    // Unsubscribed: nothing more.
    b.send(json!({"type": "publish", "id": 2, "channel": "room:lobby", "data": 2}))
        .await;
    assert_eq!(b.reply(2).await["offset"], 2);
    a.expect_silence(QUIET).await;

    a.send(json!({"type": "unsubscribe", "id": 3, "channel": "room:lobby"}))
        .await;
    let r = a.recv().await;
    assert_eq!(
        (r["id"].as_u64(), r["ok"].as_bool()),
        (Some(3), Some(false))
    );
    assert_eq!(r["error"]["code"], "not_subscribed", "{r}");

    // Subscribing again reports the room's current position.
    let again = a.subscribe(4, "room:lobby").await;
    assert_eq!(again["ok"], true);
    assert_eq!(again["offset"], 2);
    assert_eq!(again["epoch"], reply["epoch"]);
}

#[tokio::test]
async fn subscribe_and_unsubscribe_replies_proto() {
    let node = support::start(&[]).await;
    let mut a = node.connect_proto("alice").await;
    assert!(matches!(a.recv_pb().await, Kind::Welcome(_)));
    let (mut b, _) = node.connect("bob").await;

    let reply = pb_join_room(&mut a, 11, "room:lobby", "alice").await;
    assert!(is_epoch(&reply.epoch), "{reply:?}");
    assert_eq!(reply.offset, 0);
    assert_eq!(reply.recovered, None);
    assert_eq!(reply.error, None);

    b.send(json!({"type": "publish", "id": 1, "channel": "room:lobby", "data": 1}))
        .await;
    assert_eq!(b.reply(1).await["ok"], true);
    assert_eq!(pb_message(&mut a).await.offset, 1);

    a.send_pb(Kind::Unsubscribe(pb::Unsubscribe {
        id: 12,
        channel: "room:lobby".into(),
    }))
    .await;
    assert_eq!(
        a.next_pb_reply().await,
        pb::Reply {
            id: 12,
            ok: true,
            ..Default::default()
        }
    );
    b.send(json!({"type": "publish", "id": 2, "channel": "room:lobby", "data": 2}))
        .await;
    assert_eq!(b.reply(2).await["ok"], true);
    a.expect_silence(QUIET).await;

    a.send_pb(Kind::Unsubscribe(pb::Unsubscribe {
        id: 13,
        channel: "room:lobby".into(),
    }))
    .await;
    let r = a.next_pb_reply().await;
    assert_eq!((r.id, r.ok), (13, false));
    assert_eq!(r.error.unwrap().code, "not_subscribed");
}

#[tokio::test]
async fn subscribing_to_user_or_invalid_channels_is_bad_channel() {
    let node = support::start(&[]).await;
    let (mut a, _) = node.connect("alice").await;
    for (id, channel) in [
        (1, "user:alice"),
        (2, "user:bob"),
        (3, "nonamespace"),
        (4, "room:has space"),
        (5, "chat:unknown-namespace"),
    ] {
        let r = a.subscribe(id, channel).await;
        assert_eq!(r["ok"], false, "{channel}: {r}");
        assert_eq!(r["error"]["code"], "bad_channel", "{channel}: {r}");
        assert!(r["error"]["message"].is_string(), "{r}");
    }
    a.expect_silence(QUIET).await;

    let mut p = node.connect_proto("bob").await;
    assert!(matches!(p.recv_pb().await, Kind::Welcome(_)));
    p.send_pb(pb_subscribe(9, "user:bob")).await;
    let r = p.next_pb_reply().await;
    assert_eq!((r.id, r.ok), (9, false));
    assert_eq!(r.error.unwrap().code, "bad_channel");
    p.expect_silence(QUIET).await;
}

#[tokio::test]
async fn subscribing_without_permission_is_forbidden() {
    let node = support::start(&[]).await;
    let t = token_with("mallory", json!({"channels": ["room:open*"]}));
    let (mut m, _) = node.connect_token(&t).await;
    let r = m.subscribe(1, "room:lobby").await;
    assert_eq!(r["ok"], false);
    assert_eq!(r["error"]["code"], "forbidden", "{r}");
    assert_eq!(m.join_room(2, "room:open-1", "mallory").await["ok"], true);

    let (mut a, _) = node.connect("alice").await;
    a.join_room(1, "room:lobby", "alice").await;
    a.send(json!({"type": "publish", "id": 2, "channel": "room:lobby", "data": "x"}))
        .await;
    assert_eq!(a.reply(2).await["ok"], true);
    m.expect_silence(QUIET).await;
}

// --- resume of a room -------------------------------------------------------------------

#[tokio::test]
async fn room_subscribe_with_since_replays_then_goes_live_json() {
    let node = support::start(&["--history", "room:h*=100/3600"]).await;
    let mut epoch = String::new();
    for n in 1..=3 {
        epoch = api_publish(&node, "room:h", json!(n)).await["epoch"]
            .as_str()
            .unwrap()
            .to_owned();
    }
    let (mut a, _) = node.connect("alice").await;
    a.send(json!({"type": "subscribe", "id": 1, "channel": "room:h", "since": {"epoch": epoch, "offset": 1}}))
        .await;
    assert_eq!(
        a.recv().await,
        json!({"type": "reply", "id": 1, "ok": true, "epoch": epoch, "offset": 3, "recovered": true})
    );
    for n in 2..=3 {
        let m = a.recv().await;
        assert_eq!(
            (m["type"].as_str(), m["offset"].as_u64()),
            (Some("message"), Some(n))
        );
        assert_eq!(m["data"], n);
    }
    assert_eq!(a.recv().await["type"], "presence");
    api_publish(&node, "room:h", json!(4)).await;
    assert_eq!(a.recv().await["offset"], 4, "live after the replay, no gap");
    a.expect_silence(QUIET).await;

    // The string form of since, with a foreign epoch: `recovered:false`, no replay.
    let (mut b, _) = node.connect("bob").await;
    b.send(json!({"type": "subscribe", "id": 2, "channel": "room:h", "since": "gone:1"}))
        .await;
    assert_eq!(
        b.recv().await,
        json!({"type": "reply", "id": 2, "ok": true, "epoch": epoch, "offset": 4, "recovered": false})
    );
    assert_eq!(b.recv().await["type"], "presence");
    b.expect_silence(QUIET).await;
}

#[tokio::test]
async fn room_subscribe_with_since_replays_proto() {
    let node = support::start(&["--history", "room:h*=100/3600"]).await;
    let epoch = api_publish(&node, "room:h", json!("a")).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    api_publish(&node, "room:h", json!("b")).await;
    let (mut p, _) = node.connect_proto_token(&support::token("bob")).await;
    p.send_pb(Kind::Subscribe(pb::Subscribe {
        id: 5,
        channel: "room:h".into(),
        since: Some(pb::StreamPosition {
            epoch: epoch.clone(),
            offset: 0,
        }),
    }))
    .await;
    assert_eq!(
        p.next_pb_reply().await,
        pb::Reply {
            id: 5,
            ok: true,
            epoch: epoch.clone(),
            offset: 2,
            recovered: Some(true),
            ..Default::default()
        }
    );
    assert_eq!(pb_message(&mut p).await.data, json_payload("\"a\""));
    assert_eq!(pb_message(&mut p).await.data, json_payload("\"b\""));
    assert_eq!(pb_presence(&mut p).await.event, "join");
    p.expect_silence(QUIET).await;
}
