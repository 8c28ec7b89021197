//! `publish` and `message` frames: room delivery in both encodings, publish permissions, and
//! direct messages to every connection of a user.

use super::*;
use std::collections::HashMap;

// --- publish and message frames ---------------------------------------------------------

/// Reads frames until `n` messages and the replies to `ids` arrived (presence skipped).
async fn collect(c: &mut Client, n: usize, ids: &[u64]) -> (Vec<Value>, HashMap<u64, Value>) {
    let mut messages = Vec::new();
    let mut replies = HashMap::new();
    while messages.len() < n || replies.len() < ids.len() {
        let v = c.recv().await;
        match v["type"].as_str() {
            Some("message") => messages.push(v),
            Some("reply") => {
                let id = v["id"].as_u64().expect("reply id");
                assert!(ids.contains(&id), "unexpected reply {v}");
                replies.insert(id, v);
            }
            Some("presence") => {}
            _ => panic!("unexpected frame {v}"),
        }
    }
    (messages, replies)
}

#[tokio::test]
async fn room_message_reaches_every_subscriber_json() {
    let node = support::start(&[]).await;
    let (mut a, _) = node.connect("alice").await;
    let (mut b, _) = node.connect("bob").await;
    let (mut c, _) = node.connect("carol").await;
    let sub = a.join_room(1, "room:lobby", "alice").await;
    b.join_room(1, "room:lobby", "bob").await;
    assert_eq!(
        a.recv().await,
        json!({"type": "presence", "channel": "room:lobby", "user": "bob", "event": "join"})
    );
    let epoch = sub["epoch"].as_str().unwrap().to_owned();

    let before = now_ms();
    for i in 0..3u64 {
        b.send(json!({"type": "publish", "id": 10 + i, "channel": "room:lobby", "data": {"n": i, "s": "é"}}))
            .await;
    }
    let (bob_msgs, replies) = collect(&mut b, 3, &[10, 11, 12]).await;
    let (alice_msgs, _) = collect(&mut a, 3, &[]).await;
    let after = now_ms();

    for i in 0..3u64 {
        let r = &replies[&(10 + i)];
        assert_eq!(
            *r,
            json!({"type": "reply", "id": 10 + i, "ok": true, "epoch": epoch, "offset": i + 1})
        );
    }
    for (who, msgs) in [("alice", &alice_msgs), ("bob (the publisher)", &bob_msgs)] {
        for (i, m) in msgs.iter().enumerate() {
            let i = i as u64;
            assert_eq!(m["channel"], "room:lobby", "{who}: {m}");
            assert_eq!(m["from"], "bob", "{who}: {m}");
            assert_eq!(m["epoch"], epoch.as_str(), "{who}: {m}");
            assert_eq!(m["offset"], i + 1, "{who}: contiguous offsets: {m}");
            assert_eq!(m["data"], json!({"n": i, "s": "é"}), "{who}: {m}");
            assert!(m["id"].as_str().unwrap().starts_with("m-"), "{m}");
            let ts = m["ts"].as_u64().expect("ts");
            assert!(
                before <= ts && ts <= after,
                "ts {ts} not in [{before}, {after}]"
            );
            assert!(m.get("data_b64").is_none(), "{m}");
        }
    }
    let ids: Vec<&Value> = alice_msgs.iter().map(|m| &m["id"]).collect();
    assert_eq!(ids, bob_msgs.iter().map(|m| &m["id"]).collect::<Vec<_>>());
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
        "ids are unique"
    );
    c.expect_silence(QUIET).await;
    a.expect_silence(Duration::ZERO).await;
}

#[tokio::test]
async fn room_message_reaches_every_subscriber_proto() {
    let node = support::start(&[]).await;
    let mut a = node.connect_proto("alice").await;
    assert!(matches!(a.recv_pb().await, Kind::Welcome(_)));
    let mut b = node.connect_proto("bob").await;
    assert!(matches!(b.recv_pb().await, Kind::Welcome(_)));
    let sub = pb_join_room(&mut a, 1, "room:lobby", "alice").await;
    pb_join_room(&mut b, 1, "room:lobby", "bob").await;
    assert_eq!(pb_presence(&mut a).await.user, "bob");

    let before = now_ms();
    b.send_pb(pb_publish(
        20,
        "room:lobby",
        binary_payload(b"\x00\x01\xff"),
    ))
    .await;
    b.send_pb(pb_publish(21, "room:lobby", json_payload("[1,2]")))
        .await;
    let mut bob_msgs = Vec::new();
    let mut replies = Vec::new();
    while bob_msgs.len() < 2 || replies.len() < 2 {
        match b.recv_pb().await {
            Kind::Message(m) => bob_msgs.push(m),
            Kind::Reply(r) => replies.push(r),
            other => panic!("unexpected {other:?}"),
        }
    }
    let alice_msgs = vec![pb_message(&mut a).await, pb_message(&mut a).await];
    let after = now_ms();

    replies.sort_by_key(|r| r.id);
    for (i, r) in replies.iter().enumerate() {
        assert_eq!(
            *r,
            pb::Reply {
                id: 20 + i as u64,
                ok: true,
                epoch: sub.epoch.clone(),
                offset: i as u64 + 1,
                ..Default::default()
            }
        );
    }
    let payloads = [binary_payload(b"\x00\x01\xff"), json_payload("[1,2]")];
    for msgs in [&alice_msgs, &bob_msgs] {
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(m.channel, "room:lobby");
            assert_eq!(m.from, "bob");
            assert_eq!(m.epoch, sub.epoch);
            assert_eq!(m.offset, i as u64 + 1);
            assert!(m.id.starts_with("m-"), "{m:?}");
            assert!(before <= m.ts && m.ts <= after, "{m:?}");
            assert_eq!(m.data, payloads[i]);
        }
    }
    assert_eq!(alice_msgs[0].id, bob_msgs[0].id);
    assert_ne!(alice_msgs[0].id, alice_msgs[1].id);
    a.expect_silence(QUIET).await;
}

#[tokio::test]
async fn publishing_without_permission_is_forbidden_and_delivers_nothing() {
    let node = support::start(&[]).await;
    let (mut a, _) = node.connect("alice").await;
    let (mut b, _) = node.connect("bob").await;
    a.join_room(1, "room:lobby", "alice").await;
    let t = token_with("mallory", json!({"publish": ["room:own"]}));
    let (mut m, _) = node.connect_token(&t).await;

    for (id, channel) in [(1, "room:lobby"), (2, "user:bob"), (3, "user:alice")] {
        m.send(json!({"type": "publish", "id": id, "channel": channel, "data": "spam"}))
            .await;
        let r = m.recv().await;
        assert_eq!(r["type"], "reply", "{r}");
        assert_eq!(
            (r["id"].as_u64(), r["ok"].as_bool()),
            (Some(id), Some(false))
        );
        assert_eq!(r["error"]["code"], "forbidden", "{channel}: {r}");
        assert!(r["error"]["message"].is_string(), "{r}");
        assert!(r.get("offset").is_none(), "{r}");
    }
    // A token without `publish` may not publish anywhere.
    let t = support::sign(
        &json!({"sub": "eve", "exp": support::now_secs() + 60, "channels": ["room:*"]}),
    );
    let mut e = node.connect_proto_token(&t).await.0;
    e.send_pb(pb_publish(4, "room:lobby", json_payload("1")))
        .await;
    let r = e.next_pb_reply().await;
    assert_eq!((r.id, r.ok), (4, false));
    assert_eq!(r.error.unwrap().code, "forbidden");

    a.expect_silence(QUIET).await;
    b.expect_silence(Duration::ZERO).await;
    // Nothing was stored either: the room and the inboxes are still at offset 0.
    let (_, h) = node.api("GET", "/v1/history/user:bob", None).await;
    assert_eq!(h["messages"], json!([]), "{h}");
    m.send(json!({"type": "publish", "id": 5, "channel": "room:own", "data": 1}))
        .await;
    assert_eq!(m.reply(5).await["offset"], 1);
    a.send(json!({"type": "publish", "id": 6, "channel": "room:lobby", "data": 1}))
        .await;
    assert_eq!(
        a.reply(6).await["offset"],
        1,
        "rejected publishes took no offset"
    );
}

// --- direct messages --------------------------------------------------------------------

#[tokio::test]
async fn dm_reaches_every_connection_of_the_user() {
    let node = support::start(&[]).await;
    let (mut a, _) = node.connect("alice").await;
    let (mut b1, w1) = node.connect("bob").await;
    let (mut b2, w2) = node.connect_proto_token(&support::token("bob")).await;
    let (mut c, _) = node.connect("carol").await;
    assert_eq!(w1["epoch"], w2.epoch.as_str());

    // `from` is set by the server from the token, whatever the client claims.
    a.send(json!({"type": "publish", "id": 7, "channel": "user:bob", "from": "admin", "data": {"hi": "bob"}}))
        .await;
    let r = a.recv().await;
    assert_eq!(
        r,
        json!({"type": "reply", "id": 7, "ok": true, "epoch": w2.epoch, "offset": 1})
    );

    let m = b1.recv().await;
    assert_eq!(m["type"], "message");
    assert_eq!(m["channel"], "user:bob");
    assert_eq!(m["from"], "alice");
    assert_eq!(m["offset"], 1);
    assert_eq!(m["epoch"], w2.epoch.as_str());
    assert_eq!(m["data"], json!({"hi": "bob"}));

    let p = pb_message(&mut b2).await;
    assert_eq!(p.channel, "user:bob");
    assert_eq!(p.from, "alice");
    assert_eq!(p.offset, 1);
    assert_eq!(p.id, m["id"].as_str().unwrap());
    assert_eq!(p.data, json_payload(r#"{"hi":"bob"}"#));

    // The sender is not bob: she gets no copy; nobody else does either. No presence.
    a.expect_silence(QUIET).await;
    c.expect_silence(Duration::ZERO).await;
    b1.expect_silence(Duration::ZERO).await;
    b2.expect_silence(Duration::ZERO).await;
}
