//! Client `publish` frames with a key (JSON and protobuf): the retry's reply has the
//! first position, from the same connection or a new one; keys are scoped per sender
//! (each user, the server API), never per connection.

use super::*;

use switchboard_proto::pb;
use switchboard_proto::pb::frame::Kind;

/// A protobuf `publish` with a key; returns the reply's `(ok, epoch, offset)`.
async fn publish_pb(c: &mut Client, id: u64, channel: &str, key: &str) -> (bool, String, u64) {
    c.send_pb(Kind::Publish(pb::Publish {
        id,
        channel: channel.into(),
        data: Some(pb::Payload {
            kind: Some(pb::payload::Kind::Binary(bytes::Bytes::from_static(
                b"\x01",
            ))),
        }),
        idempotency_key: key.into(),
    }))
    .await;
    match c
        .recv_pb_until(|k| matches!(k, Kind::Reply(r) if r.id == id))
        .await
    {
        Kind::Reply(r) => (r.ok, r.epoch, r.offset),
        _ => unreachable!(),
    }
}

/// A JSON retry (same connection, then a new one after a reconnect: what the browser
/// client does with a publish that got no answer) is answered with the first position;
/// the room's other member gets one message, history holds one copy, and the publish is
/// counted once.
async fn a_retried_client_publish_is_answered_with_the_first_offset(backend: Backend) {
    let s = Scene::start(backend, &[]).await;
    let node = &s.node;
    let room = "room:hist-lobby";
    let (mut bob, _) = node.connect("bob").await;
    join(&mut bob, 1, room).await;
    let (mut alice, _) = node.connect("alice").await;
    join(&mut alice, 1, room).await;
    bob.recv_until(|f| f["type"] == "presence").await; // alice's join
    let counted = publishes_total(node).await;

    let first = client_publish(&mut alice, 2, room, "m-1", json!("hi")).await;
    assert_eq!(first["ok"], true, "{first}");
    let at = position(&first);
    let again = client_publish(&mut alice, 3, room, "m-1", json!("hi?")).await;
    assert_eq!(
        (again["ok"].as_bool(), position(&again)),
        (Some(true), at.clone()),
        "{again}"
    );

    // A new connection of the same user retries: the same scope.
    alice.close().await;
    let (mut alice, _) = node.connect("alice").await;
    let retried = client_publish(&mut alice, 1, room, "m-1", json!("hi!")).await;
    assert_eq!(position(&retried), at, "{retried}");

    let m = expect_message(&mut bob, room).await;
    assert_eq!(
        (position(&m), &m["data"], &m["from"]),
        (at.clone(), &json!("hi"), &json!("alice"))
    );
    // alice left and came back without subscribing: presence only.
    let rest: Vec<Value> = drain(&mut bob).await;
    assert!(
        rest.iter().all(|f| f["type"] == "presence"),
        "bob gets no second copy: {rest:?}"
    );
    assert_eq!(history_offsets(node, room).await, [at.1]);
    assert_eq!(
        publishes_total(node).await - counted,
        1.0,
        "switchboard_publishes_total counts a message once, not its retries"
    );

    // A direct message retried: one copy in bob's inbox.
    let dm = client_publish(&mut alice, 2, "user:bob", "dm-1", json!("psst")).await;
    let dm_again = client_publish(&mut alice, 3, "user:bob", "dm-1", json!("psst")).await;
    assert_eq!(position(&dm_again), position(&dm));
    assert_eq!(expect_message(&mut bob, "user:bob").await["data"], "psst");
    bob.expect_silence(QUIET).await;
    assert_eq!(history_offsets(node, "user:bob").await, [position(&dm).1]);
}
on_both_backends!(a_retried_client_publish_is_answered_with_the_first_offset);

/// Frames until [`QUIET`] passes without one.
async fn drain(c: &mut Client) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(QUIET, c.recv()).await {
            Ok(v) => out.push(v),
            Err(_) => return out,
        }
    }
}

/// The protobuf frame's key is the same key as the JSON frame's (one scope per user,
/// whatever the encoding); the empty key is no key.
async fn protobuf_client_publishes_are_keyed_too(backend: Backend) {
    let s = Scene::start(backend, &[]).await;
    let node = &s.node;
    let room = "room:hist-pb";
    let mut alice = node.connect_proto("alice").await;
    assert!(matches!(alice.recv_pb().await, Kind::Welcome(_)));

    let (ok, epoch, offset) = publish_pb(&mut alice, 1, room, "p-1").await;
    assert!(ok);
    assert_eq!(
        publish_pb(&mut alice, 2, room, "p-1").await,
        (true, epoch.clone(), offset)
    );
    assert_eq!(
        publish_pb(&mut alice, 3, room, "").await,
        (true, epoch.clone(), offset + 1)
    );
    assert_eq!(
        publish_pb(&mut alice, 4, room, "").await,
        (true, epoch.clone(), offset + 2)
    );

    // The same user on JSON with the protobuf frame's key: a retry of it.
    let (mut json_alice, _) = node.connect("alice").await;
    let retry = client_publish(&mut json_alice, 1, room, "p-1", json!("x")).await;
    assert_eq!(position(&retry), (epoch, offset), "{retry}");
    assert_eq!(
        history_offsets(node, room).await,
        [offset, offset + 1, offset + 2]
    );
}
on_both_backends!(protobuf_client_publishes_are_keyed_too);

/// Two users using the same key on one room publish two messages, and the server API
/// using it too publishes a third: keys are per sender. Each sender's retry answers its
/// own first position.
async fn keys_are_scoped_per_sender(backend: Backend) {
    let s = Scene::start(backend, &[]).await;
    let node = &s.node;
    let room = "room:hist-shared";
    let (mut watcher, _) = node.connect("watcher").await;
    join(&mut watcher, 1, room).await;
    let (mut alice, _) = node.connect("alice").await;
    let (mut bob, _) = node.connect("bob").await;

    let a1 = position(&client_publish(&mut alice, 1, room, "k-1", json!("from alice")).await);
    let b1 = position(&client_publish(&mut bob, 1, room, "k-1", json!("from bob")).await);
    let (status, api) = publish_keyed(node, room, "k-1", json!("from the api")).await;
    let s1 = answered(status, &api, false);
    assert_eq!(
        (a1.1 + 1, a1.1 + 2),
        (b1.1, s1.1),
        "three senders, three messages"
    );
    // The API's `from` does not make its publish a user's.
    let (status, api_as_alice) = node
        .api(
            "POST",
            "/v1/publish",
            Some(json!({"channel": room, "data": "as alice", "from": "alice", "idempotency_key": "k-1"})),
        )
        .await;
    assert_eq!(answered(status, &api_as_alice, true), s1, "{api_as_alice}");

    assert_eq!(
        position(&client_publish(&mut alice, 2, room, "k-1", json!("?")).await),
        a1
    );
    assert_eq!(
        position(&client_publish(&mut bob, 2, room, "k-1", json!("?")).await),
        b1
    );
    let (status, api_again) = publish_keyed(node, room, "k-1", json!("?")).await;
    assert_eq!(answered(status, &api_again, true), s1);

    let got: Vec<Value> = [
        expect_message(&mut watcher, room).await,
        expect_message(&mut watcher, room).await,
        expect_message(&mut watcher, room).await,
    ]
    .into();
    let data: Vec<&Value> = got.iter().map(|m| &m["data"]).collect();
    assert_eq!(
        data,
        [
            &json!("from alice"),
            &json!("from bob"),
            &json!("from the api")
        ]
    );
    watcher.expect_silence(QUIET).await;
    assert_eq!(history_offsets(node, room).await, [a1.1, b1.1, s1.1]);
}
on_both_backends!(keys_are_scoped_per_sender);

/// A retry reaching another node (a browser reconnecting through a load balancer, a
/// backend's next attempt) is a retry all the same: the key lives in Redis, on the
/// channel's slot, not in the node that saw the first publish.
#[tokio::test]
async fn a_retry_through_another_node_answers_the_first_position() {
    let cluster = crate::support::cluster::Cluster::start(2, &["--history", HISTORY]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let room = "room:hist-two-nodes";
    let (mut watcher, _) = b.connect("watcher").await;
    join(&mut watcher, 1, room).await;

    let (mut alice, _) = a.connect("alice").await;
    let first = position(&client_publish(&mut alice, 1, room, "n-1", json!("one")).await);
    alice.close().await;
    let (mut alice, _) = b.connect("alice").await;
    let retry = client_publish(&mut alice, 1, room, "n-1", json!("one?")).await;
    assert_eq!(position(&retry), first, "{retry}");

    let (status, api_first) = publish_keyed(a, room, "n-1", json!("api")).await;
    let api_at = answered(status, &api_first, false);
    let (status, api_retry) = publish_keyed(b, room, "n-1", json!("api?")).await;
    assert_eq!(answered(status, &api_retry, true), api_at);

    assert_eq!(expect_message(&mut watcher, room).await["data"], "one");
    assert_eq!(expect_message(&mut watcher, room).await["data"], "api");
    watcher.expect_silence(QUIET).await;
    assert_eq!(history_offsets(b, room).await, [first.1, api_at.1]);
}
