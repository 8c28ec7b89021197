//! Every frame of PROTOCOL.md §4 in both encodings: JSON text frames
//! (`switchboard.v1.json`) and protobuf binary frames (`switchboard.v1.proto`), plus
//! delivery across encodings, presence, direct messages and the rejections of §2.

mod support;

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Value};
use support::{Client, Node};
use switchboard_proto::pb;
use switchboard_proto::pb::frame::Kind;

/// How long "nothing else arrives" is watched for.
const QUIET: Duration = Duration::from_millis(200);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// PROTOCOL.md §5: an epoch is a non-empty string of `[A-Za-z0-9_-]`.
fn is_epoch(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A token for `sub` with the default grants of `support::token` overridden by `extra`.
fn token_with(sub: &str, extra: Value) -> String {
    let mut claims = json!({
        "sub": sub,
        "exp": support::now_secs() + 3600,
        "channels": ["room:*"],
        "publish": ["room:*", "user:*"],
    });
    for (k, v) in extra.as_object().expect("extra claims are an object") {
        claims[k] = v.clone();
    }
    support::sign(&claims)
}

fn json_payload(text: &str) -> Option<pb::Payload> {
    Some(pb::Payload {
        kind: Some(pb::payload::Kind::Json(text.to_owned())),
    })
}

fn binary_payload(bytes: &'static [u8]) -> Option<pb::Payload> {
    Some(pb::Payload {
        kind: Some(pb::payload::Kind::Binary(Bytes::from_static(bytes))),
    })
}

fn pb_subscribe(id: u64, channel: &str) -> Kind {
    Kind::Subscribe(pb::Subscribe {
        id,
        channel: channel.into(),
        since: None,
    })
}

fn pb_publish(id: u64, channel: &str, data: Option<pb::Payload>) -> Kind {
    Kind::Publish(pb::Publish {
        id,
        channel: channel.into(),
        data,
    })
}

/// The next protobuf frame, which must be a reply.
async fn pb_reply(c: &mut Client) -> pb::Reply {
    match c.recv_pb().await {
        Kind::Reply(r) => r,
        other => panic!("expected a reply, got {other:?}"),
    }
}

/// The next protobuf frame, which must be a message.
async fn pb_message(c: &mut Client) -> pb::Message {
    match c.recv_pb().await {
        Kind::Message(m) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// The next protobuf frame, which must be a presence event.
async fn pb_presence(c: &mut Client) -> pb::Presence {
    match c.recv_pb().await {
        Kind::Presence(p) => p,
        other => panic!("expected a presence frame, got {other:?}"),
    }
}

/// Subscribes a JSON client and consumes the reply and its own `join`.
async fn join_room(c: &mut Client, id: u64, channel: &str, user: &str) -> Value {
    let reply = c.subscribe(id, channel).await;
    assert_eq!(reply["ok"], true, "subscribe {channel}: {reply}");
    let own = c.recv().await;
    assert_eq!(
        own,
        json!({"type": "presence", "channel": channel, "user": user, "event": "join"})
    );
    reply
}

/// Subscribes a protobuf client and consumes the reply and its own `join`.
async fn pb_join_room(c: &mut Client, id: u64, channel: &str, user: &str) -> pb::Reply {
    c.send_pb(pb_subscribe(id, channel)).await;
    let reply = pb_reply(c).await;
    assert!(reply.ok, "subscribe {channel}: {reply:?}");
    assert_eq!(reply.id, id);
    let own = pb_presence(c).await;
    assert_eq!(
        own,
        pb::Presence {
            channel: channel.into(),
            user: user.into(),
            event: "join".into()
        }
    );
    reply
}

/// Asserts the JSON client is alive and has nothing queued: a ping is answered next.
async fn assert_alive(c: &mut Client, id: u64) {
    c.send(json!({"type": "ping", "id": id})).await;
    assert_eq!(c.recv().await, json!({"type": "pong", "id": id}));
}

/// Same for a protobuf client.
async fn pb_assert_alive(c: &mut Client, id: u64) {
    c.send_pb(Kind::Ping(pb::Ping { id })).await;
    assert_eq!(c.recv_pb().await, Kind::Pong(pb::Pong { id }));
}

async fn api_publish(node: &Node, channel: &str, data: Value) -> Value {
    let (status, body) = node
        .api(
            "POST",
            "/v1/publish",
            Some(json!({"channel": channel, "data": data})),
        )
        .await;
    assert_eq!(status, 200, "publish: {body}");
    body
}

// --- welcome ----------------------------------------------------------------------------

#[tokio::test]
async fn welcome_json_has_every_field() {
    let node = support::start(&["--heartbeat-ms", "7000"]).await;
    let (_a, w) = node.connect("alice").await;
    let obj = w.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "channel",
            "conn_id",
            "epoch",
            "heartbeat_ms",
            "node",
            "offset",
            "type",
            "user"
        ],
        "welcome without since has no `recovered`: {w}"
    );
    assert!(w["conn_id"].as_str().unwrap().starts_with("c-"), "{w}");
    assert_eq!(w["user"], "alice");
    assert_eq!(w["node"], node.node_id.as_str());
    assert_eq!(w["heartbeat_ms"], 7000);
    assert_eq!(w["channel"], "user:alice");
    assert!(is_epoch(w["epoch"].as_str().unwrap()), "{w}");
    assert_eq!(w["offset"], 0);

    let (_a2, w2) = node.connect("alice").await;
    assert_ne!(
        w2["conn_id"], w["conn_id"],
        "each connection has its own id"
    );
    assert_eq!(w2["epoch"], w["epoch"], "same user channel, same epoch");
}

#[tokio::test]
async fn welcome_proto_has_every_field() {
    let node = support::start(&[]).await;
    let (_a, w) = node.connect_proto_token(&support::token("alice")).await;
    assert!(w.conn_id.starts_with("c-"), "{w:?}");
    assert_eq!(w.user, "alice");
    assert_eq!(w.node, node.node_id);
    assert_eq!(w.heartbeat_ms, 25_000, "the default heartbeat");
    assert_eq!(w.channel, "user:alice");
    assert!(is_epoch(&w.epoch), "{w:?}");
    assert_eq!(w.offset, 0);
    assert_eq!(w.recovered, None, "no `recovered` without since");
}

#[tokio::test]
async fn welcome_offset_and_recovered_follow_the_inbox_json() {
    let node = support::start(&[]).await;
    let first = api_publish(&node, "user:alice", json!({"n": 1})).await;
    api_publish(&node, "user:alice", json!({"n": 2})).await;
    let epoch = first["epoch"].as_str().unwrap().to_owned();

    // Without since: the whole inbox after the welcome, which names the newest offset.
    let (mut a, w) = node.connect("alice").await;
    assert_eq!(w["offset"], 2);
    assert_eq!(w["epoch"], epoch.as_str());
    assert!(w.get("recovered").is_none(), "{w}");
    for n in 1..=2 {
        let m = a.recv().await;
        assert_eq!(m["type"], "message");
        assert_eq!(m["offset"], n);
        assert_eq!(m["data"], json!({"n": n}));
    }
    a.expect_silence(QUIET).await;

    // With since: what follows it, and `recovered:true`.
    let mut r = node
        .connect_query(
            &format!("token={}&since={epoch}:1", support::token("alice")),
            &[],
        )
        .await
        .expect("resume");
    let w = r.recv().await;
    assert_eq!(w["type"], "welcome");
    assert_eq!(w["recovered"], true, "{w}");
    assert_eq!(w["offset"], 2);
    let m = r.recv().await;
    assert_eq!(
        (m["type"].as_str(), m["offset"].as_u64()),
        (Some("message"), Some(2))
    );
    r.expect_silence(QUIET).await;

    // A foreign epoch cannot be resumed: `recovered:false`, never a silent gap.
    let mut g = node
        .connect_query(
            &format!("token={}&since=other:1", support::token("alice")),
            &[],
        )
        .await
        .expect("resume");
    let w = g.recv().await;
    assert_eq!(w["type"], "welcome");
    assert_eq!(w["recovered"], false, "{w}");
    assert_eq!(w["offset"], 2);
    assert_eq!(w["epoch"], epoch.as_str());
}

#[tokio::test]
async fn welcome_recovered_is_set_with_since_proto() {
    let node = support::start(&[]).await;
    let first = api_publish(&node, "user:alice", json!("one")).await;
    api_publish(&node, "user:alice", json!("two")).await;
    let epoch = first["epoch"].as_str().unwrap();
    let mut c = node
        .connect_query(
            &format!("token={}&since={epoch}:1", support::token("alice")),
            &[("sec-websocket-protocol", "switchboard.v1.proto")],
        )
        .await
        .expect("resume");
    let Kind::Welcome(w) = c.recv_pb().await else {
        panic!("first frame must be welcome");
    };
    assert_eq!(w.recovered, Some(true));
    assert_eq!((w.epoch.as_str(), w.offset), (epoch, 2));
    let m = pb_message(&mut c).await;
    assert_eq!(m.offset, 2);
    assert_eq!(m.data, json_payload("\"two\""));
    c.expect_silence(QUIET).await;
}

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
        pb_reply(&mut a).await,
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
    let r = pb_reply(&mut a).await;
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
    let r = pb_reply(&mut p).await;
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
    assert_eq!(
        join_room(&mut m, 2, "room:open-1", "mallory").await["ok"],
        true
    );

    let (mut a, _) = node.connect("alice").await;
    join_room(&mut a, 1, "room:lobby", "alice").await;
    a.send(json!({"type": "publish", "id": 2, "channel": "room:lobby", "data": "x"}))
        .await;
    assert_eq!(a.reply(2).await["ok"], true);
    m.expect_silence(QUIET).await;
}

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
    let sub = join_room(&mut a, 1, "room:lobby", "alice").await;
    join_room(&mut b, 1, "room:lobby", "bob").await;
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
    join_room(&mut a, 1, "room:lobby", "alice").await;
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
    let r = pb_reply(&mut e).await;
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

// --- presence ---------------------------------------------------------------------------

fn presence(channel: &str, user: &str, event: &str) -> Value {
    json!({"type": "presence", "channel": channel, "user": user, "event": event})
}

#[tokio::test]
async fn presence_join_and_leave_json() {
    let node = support::start(&[]).await;
    let (mut a, _) = node.connect("alice").await;
    join_room(&mut a, 1, "room:p", "alice").await;

    // Bob's first connection joins.
    let (mut b1, _) = node.connect("bob").await;
    join_room(&mut b1, 1, "room:p", "bob").await;
    assert_eq!(a.recv().await, presence("room:p", "bob", "join"));

    // His second connection is not a second join, for anyone.
    let (mut b2, _) = node.connect("bob").await;
    assert_eq!(b2.subscribe(1, "room:p").await["ok"], true);
    a.expect_silence(QUIET).await;
    b1.expect_silence(Duration::ZERO).await;
    b2.expect_silence(Duration::ZERO).await;

    // One of two connections leaving is not a leave.
    b1.send(json!({"type": "unsubscribe", "id": 2, "channel": "room:p"}))
        .await;
    assert_eq!(
        b1.recv().await,
        json!({"type": "reply", "id": 2, "ok": true})
    );
    a.expect_silence(QUIET).await;

    // The last one going away is.
    b2.close().await;
    assert_eq!(a.recv().await, presence("room:p", "bob", "leave"));

    // Join then unsubscribe: join, leave.
    let (mut c, _) = node.connect("carol").await;
    join_room(&mut c, 1, "room:p", "carol").await;
    assert_eq!(a.recv().await, presence("room:p", "carol", "join"));
    c.send(json!({"type": "unsubscribe", "id": 2, "channel": "room:p"}))
        .await;
    assert_eq!(
        c.recv().await,
        json!({"type": "reply", "id": 2, "ok": true})
    );
    assert_eq!(a.recv().await, presence("room:p", "carol", "leave"));
    c.expect_silence(QUIET).await;
    a.expect_silence(Duration::ZERO).await;
    // Other rooms are not told.
    b1.expect_silence(Duration::ZERO).await;
}

#[tokio::test]
async fn presence_join_and_leave_proto() {
    let node = support::start(&[]).await;
    let mut a = node.connect_proto("alice").await;
    assert!(matches!(a.recv_pb().await, Kind::Welcome(_)));
    pb_join_room(&mut a, 1, "room:p", "alice").await;

    let (mut b1, _) = node.connect("bob").await;
    join_room(&mut b1, 1, "room:p", "bob").await;
    let (mut b2, _) = node.connect("bob").await;
    assert_eq!(b2.subscribe(1, "room:p").await["ok"], true);
    assert_eq!(
        pb_presence(&mut a).await,
        pb::Presence {
            channel: "room:p".into(),
            user: "bob".into(),
            event: "join".into()
        }
    );
    a.expect_silence(QUIET).await;

    b1.close().await;
    a.expect_silence(QUIET).await;
    b2.close().await;
    assert_eq!(
        pb_presence(&mut a).await,
        pb::Presence {
            channel: "room:p".into(),
            user: "bob".into(),
            event: "leave".into()
        }
    );
    a.expect_silence(QUIET).await;
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

// --- ack, refresh, ping, rpc ------------------------------------------------------------

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
        pb_reply(&mut p).await,
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
    }))
    .await;
    let r = pb_reply(&mut p).await;
    assert_eq!((r.id, r.ok), (3, false));
    assert_eq!(r.error.unwrap().code, "forbidden");
    p.send_pb(Kind::Rpc(pb::Rpc {
        id: 4,
        method: "billing.charge".into(),
        data: None,
    }))
    .await;
    let r = pb_reply(&mut p).await;
    assert_eq!((r.id, r.ok), (4, false));
    assert_eq!(r.error.unwrap().code, "no_route");
}

// --- across encodings -------------------------------------------------------------------

#[tokio::test]
async fn proto_binary_reaches_json_as_data_b64() {
    let node = support::start(&[]).await;
    let (mut j, _) = node.connect("alice").await;
    join_room(&mut j, 1, "room:x", "alice").await;
    let (mut p, _) = node.connect_proto_token(&support::token("bob")).await;
    pb_join_room(&mut p, 1, "room:x", "bob").await;
    assert_eq!(j.recv().await["event"], "join");

    let bytes: &'static [u8] = b"\x00\x9f\xffbin\n";
    p.send_pb(pb_publish(2, "room:x", binary_payload(bytes)))
        .await;
    let m = j.recv().await;
    assert_eq!(m["type"], "message");
    assert_eq!(m["from"], "bob");
    assert!(
        m.get("data").is_none(),
        "binary payloads have no `data`: {m}"
    );
    let b64 = m["data_b64"].as_str().expect("data_b64");
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
        bytes
    );
}

#[tokio::test]
async fn json_value_reaches_proto_as_its_utf8_text() {
    let node = support::start(&[]).await;
    let (mut j, _) = node.connect("alice").await;
    let (mut p, _) = node.connect_proto_token(&support::token("bob")).await;
    pb_join_room(&mut p, 1, "room:x", "bob").await;

    let data = json!({"text": "héllo ✓", "n": [1, 2.5, null, true]});
    j.send(json!({"type": "publish", "id": 2, "channel": "room:x", "data": data}))
        .await;
    assert_eq!(j.reply(2).await["ok"], true);
    let m = pb_message(&mut p).await;
    assert_eq!(m.from, "alice");
    let Some(pb::payload::Kind::Json(text)) = m.data.and_then(|d| d.kind) else {
        panic!("a JSON value reaches protobuf clients as Payload.json");
    };
    assert_eq!(text.as_bytes(), data.to_string().as_bytes());
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), data);

    // A DM too, and a scalar value.
    j.send(json!({"type": "publish", "id": 3, "channel": "user:bob", "data": "just a string"}))
        .await;
    assert_eq!(j.reply(3).await["ok"], true);
    let m = pb_message(&mut p).await;
    assert_eq!(m.channel, "user:bob");
    assert_eq!(m.data, json_payload("\"just a string\""));
}

#[tokio::test]
async fn proto_json_payload_reaches_json_as_data() {
    let node = support::start(&[]).await;
    let (mut j, _) = node.connect("alice").await;
    join_room(&mut j, 1, "room:x", "alice").await;
    let (mut p, _) = node.connect_proto_token(&support::token("bob")).await;

    p.send_pb(pb_publish(
        2,
        "room:x",
        json_payload(r#"{"k":[1,"two",{"x":null}]}"#),
    ))
    .await;
    assert!(pb_reply(&mut p).await.ok);
    let m = j.recv_until(|v| v["type"] == "message").await;
    assert_eq!(m["data"], json!({"k": [1, "two", {"x": null}]}));
    assert!(m.get("data_b64").is_none(), "{m}");

    // Invalid JSON in Payload.json is a bad frame, never delivered.
    p.send_pb(pb_publish(3, "room:x", json_payload("{nope")))
        .await;
    let Kind::Error(e) = p.recv_pb().await else {
        panic!("expected an error frame");
    };
    assert_eq!(e.code, "bad_frame");
    j.expect_silence(QUIET).await;
}

// --- errors and goaway ------------------------------------------------------------------

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_connection_stays_open() {
    let node = support::start(&[]).await;
    let (mut a, _) = node.connect("alice").await;
    a.send_raw(tokio_tungstenite::tungstenite::Message::Text("nope".into()))
        .await;
    let e = a.recv().await;
    assert_eq!(e["type"], "error");
    assert_eq!(e["code"], "bad_frame", "{e}");
    assert!(e["message"].is_string(), "{e}");
    a.send(json!({"type": "dance", "id": 1})).await;
    let e = a.recv().await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("unknown_type"))
    );
    a.send(json!({"type": "publish", "id": 2, "channel": "room:x"}))
        .await;
    assert_eq!(a.recv().await["code"], "bad_frame", "publish without data");
    assert_alive(&mut a, 3).await;

    let (mut p, _) = node.connect_proto_token(&support::token("bob")).await;
    p.send_raw(tokio_tungstenite::tungstenite::Message::Binary(
        Bytes::from_static(b"\xff\xff\xff"),
    ))
    .await;
    let Kind::Error(e) = p.recv_pb().await else {
        panic!("expected an error frame");
    };
    assert_eq!(e.code, "bad_frame");
    assert!(!e.message.is_empty());
    // A server frame sent by a client is an unknown type.
    p.send_pb(Kind::Pong(pb::Pong { id: 1 })).await;
    let Kind::Error(e) = p.recv_pb().await else {
        panic!("expected an error frame");
    };
    assert_eq!(e.code, "unknown_type");
    pb_assert_alive(&mut p, 4).await;
}

#[tokio::test]
async fn drain_sends_goaway_then_1012_in_both_encodings() {
    let node = support::start(&["--drain-seconds", "1"]).await;
    let (mut j, _) = node.connect("alice").await;
    let (mut p, _) = node.connect_proto_token(&support::token("bob")).await;
    node.sigterm();

    let (code, _, before) = j.expect_close().await;
    assert_eq!(code, 1012);
    assert_eq!(before.len(), 1, "exactly the goaway: {before:?}");
    let tokio_tungstenite::tungstenite::Message::Text(t) = &before[0] else {
        panic!("goaway must be a text frame: {before:?}");
    };
    let g: Value = serde_json::from_str(t).unwrap();
    assert_eq!(g["type"], "goaway");
    assert_eq!(g["reason"], "draining");
    assert!(g["reconnect_ms"].as_u64().is_some_and(|ms| ms > 0), "{g}");

    let (code, _, before) = p.expect_close().await;
    assert_eq!(code, 1012);
    assert_eq!(before.len(), 1, "exactly the goaway: {before:?}");
    let tokio_tungstenite::tungstenite::Message::Binary(b) = &before[0] else {
        panic!("goaway must be a binary frame: {before:?}");
    };
    use prost::Message as _;
    let Some(Kind::Goaway(g)) = pb::Frame::decode(b.clone()).unwrap().kind else {
        panic!("expected goaway");
    };
    assert_eq!(g.reason, "draining");
    assert!(g.reconnect_ms > 0);
}

// --- resume of a room, subprotocol negotiation ------------------------------------------

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
        pb_reply(&mut p).await,
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

#[tokio::test]
async fn subprotocol_negotiation() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let node = support::start(&[]).await;
    let url = node.ws_url(&format!("token={}", support::token("alice")));
    for (offered, chosen) in [
        ("switchboard.v1.json", "switchboard.v1.json"),
        ("switchboard.v1.proto", "switchboard.v1.proto"),
        (
            "chat, switchboard.v1.proto, switchboard.v1.json",
            "switchboard.v1.proto",
        ),
    ] {
        let mut req = url.as_str().into_client_request().unwrap();
        req.headers_mut()
            .insert("sec-websocket-protocol", offered.parse().unwrap());
        let (mut ws, res) = tokio_tungstenite::connect_async(req)
            .await
            .expect("upgrade");
        assert_eq!(
            res.headers()["sec-websocket-protocol"],
            chosen,
            "offered {offered}"
        );
        let first = tokio::time::timeout(support::WAIT, futures_util::StreamExt::next(&mut ws))
            .await
            .expect("welcome")
            .expect("frame")
            .expect("frame");
        match chosen {
            "switchboard.v1.json" => assert!(first.is_text(), "{first:?}"),
            _ => assert!(first.is_binary(), "{first:?}"),
        }
    }
    // None offered: JSON, no header.
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut().remove("sec-websocket-protocol");
    let (_, res) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgrade");
    assert!(res.headers().get("sec-websocket-protocol").is_none());

    let refused = node
        .connect_query(
            &format!("token={}", support::token("alice")),
            &[("sec-websocket-protocol", "chat, superchat")],
        )
        .await
        .err()
        .expect("only unknown subprotocols are refused");
    assert_eq!(refused.status, 400);
    assert_eq!(refused.body["error"], "unsupported_subprotocol");
    assert!(refused.body["message"].is_string());
}
