//! Publish outcomes, user and room routing, ordering under concurrency, message fields.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use switchboard_proto::model::is_valid_epoch;
use switchboard_proto::{Message, Payload};

use super::{
    conn, grace, json, now_ms, offsets, publish, start_cluster, unique, ClusterFactory, TestNode,
    LONG_LEASE,
};
use crate::{HistoryPolicies, PublishRequest, RouterError};

/// A user channel without connections: stored, not routed; offsets 1..=N.
pub async fn case_user_publish_offline(factory: &dyn ClusterFactory) {
    let nodes = start_cluster(factory, 1, HistoryPolicies::default(), LONG_LEASE).await;
    let a = &nodes[0];
    let channel = format!("user:{}", unique("offline"));
    let mut sent = Vec::new();
    for n in 1..=5 {
        let out = publish(a, &channel, Some("sender"), json(n)).await;
        assert!(!out.online, "publish to an offline user reported online");
        assert_eq!(out.nodes, 0, "publish to an offline user was routed");
        assert_eq!(out.message.offset, n, "offsets must be 1..=N");
        sent.push(out.message);
    }
    let epoch = &sent[0].epoch;
    assert!(sent.iter().all(|m| &m.epoch == epoch), "epoch changed");
    let pos = a.router.position(&channel).await.unwrap();
    assert_eq!(
        (&pos.epoch, pos.offset),
        (epoch, 5),
        "position() is not the top"
    );
    let read = a.router.read(&channel, None, 100).await.unwrap();
    assert!(read.recovered, "read(None) must be recovered");
    assert_eq!((&read.epoch, read.offset), (epoch, 5));
    assert_eq!(
        read.messages, sent,
        "read(None) must return every message in order"
    );
    grace().await;
    assert!(
        a.sink.messages(&channel).is_empty(),
        "offline message delivered"
    );
}

/// A user channel reaches exactly the nodes holding the user's connections.
pub async fn case_user_publish_online(factory: &dyn ClusterFactory) {
    let nodes = start_cluster(factory, 2, HistoryPolicies::default(), LONG_LEASE).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let user = unique("online");
    let channel = format!("user:{user}");
    b.router
        .register(conn(&user, "c-b", &b.id), 0)
        .await
        .unwrap();

    let out = publish(a, &channel, None, json(1)).await;
    assert!(out.online, "user with a connection on B reported offline");
    assert_eq!(out.nodes, 1, "must be routed to B only");
    let got = b.sink.wait_messages(&channel, 1).await;
    assert_eq!(got[0].id, out.message.id);
    grace().await;
    assert!(
        a.sink.messages(&channel).is_empty(),
        "A holds no connection of the user"
    );
    assert_eq!(b.sink.messages(&channel).len(), 1, "B got a duplicate");

    a.router
        .register(conn(&user, "c-a", &a.id), 0)
        .await
        .unwrap();
    let out = publish(a, &channel, None, json(2)).await;
    assert!(out.online);
    assert_eq!(out.nodes, 2, "connections on A and B: routed to both");
    // B already holds the first message: wait for this one, not for "at least one".
    for node in [a, b] {
        let id = &out.message.id;
        node.sink
            .wait_for(&format!("delivery of {id} on {channel}"), |s| {
                s.messages(&channel)
                    .iter()
                    .any(|m| m.id == *id)
                    .then_some(())
            })
            .await;
    }
}

/// Rooms reach exactly the nodes that subscribed, the publishing node included only then.
pub async fn case_room_routing(factory: &dyn ClusterFactory) {
    let nodes = start_cluster(factory, 3, HistoryPolicies::default(), LONG_LEASE).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let room = format!("room:{}", unique("routing"));
    b.router.subscribe_room(&room).await.unwrap();
    c.router.subscribe_room(&room).await.unwrap();

    let nobody = format!("room:{}", unique("empty"));
    let empty = publish(a, &nobody, None, json(0)).await;
    assert!(
        !empty.online && empty.nodes == 0,
        "a room nobody subscribes is offline"
    );

    let first = publish(a, &room, None, json(1)).await;
    assert!(first.online, "a room with subscribers is online");
    assert_eq!(first.nodes, 2, "B and C subscribed");
    b.sink.wait_messages(&room, 1).await;
    c.sink.wait_messages(&room, 1).await;

    b.router.unsubscribe_room(&room).await.unwrap();
    let second = publish(a, &room, None, json(2)).await;
    assert_eq!(second.nodes, 1, "only C is still subscribed");
    let got = c.sink.wait_messages(&room, 2).await;
    assert_eq!(offsets(&got), [1, 2]);
    grace().await;
    assert!(a.sink.messages(&room).is_empty(), "A never subscribed");
    assert_eq!(offsets(&b.sink.messages(&room)), [1], "B unsubscribed");

    a.router.subscribe_room(&room).await.unwrap();
    let third = publish(a, &room, None, json(3)).await;
    assert_eq!(third.nodes, 2, "A and C subscribed");
    let got = a.sink.wait_messages(&room, 1).await;
    assert_eq!(
        got[0].id, third.message.id,
        "a subscribed publisher receives its own"
    );
}

/// Concurrent publishes from two nodes: contiguous offsets, delivered in order everywhere.
pub async fn case_ordering(factory: &dyn ClusterFactory) {
    const COUNT: u64 = 200;
    let nodes = start_cluster(factory, 2, HistoryPolicies::default(), LONG_LEASE).await;
    let user = unique("order");
    let user_channel = format!("user:{user}");
    let room = format!("room:{}", unique("order"));
    for node in &nodes {
        let conn_id = format!("c-{}", node.id);
        node.router
            .register(conn(&user, &conn_id, &node.id), 0)
            .await
            .unwrap();
        node.router.subscribe_room(&room).await.unwrap();
    }

    let mut tasks = Vec::new();
    for i in 0..COUNT {
        let router = Arc::clone(&nodes[(i % 2) as usize].router);
        for channel in [user_channel.clone(), room.clone()] {
            let router = Arc::clone(&router);
            tasks.push(tokio::spawn(async move {
                let request = PublishRequest {
                    channel,
                    from: None,
                    data: json(i),
                    idempotency: None,
                };
                router.publish(request).await.map(|o| o.message)
            }));
        }
    }
    let mut published: Vec<Arc<Message>> = Vec::new();
    for task in tasks {
        let message = task.await.expect("publish task panicked");
        published.push(message.expect("concurrent publish failed"));
    }

    for channel in [&user_channel, &room] {
        let mut got: Vec<u64> = published
            .iter()
            .filter(|m| &m.channel == channel)
            .map(|m| m.offset)
            .collect();
        got.sort_unstable();
        let expected: Vec<u64> = (1..=COUNT).collect();
        assert_eq!(
            got, expected,
            "{channel}: offsets must be unique and contiguous"
        );
        for node in &nodes {
            let delivered = node.sink.wait_messages(channel, COUNT as usize).await;
            assert!(
                delivered.windows(2).all(|w| w[0].offset < w[1].offset),
                "{channel} on {}: not in strictly increasing offset order: {:?}",
                node.id,
                offsets(&delivered)
            );
        }
    }
    grace().await;
    for node in &nodes {
        for channel in [&user_channel, &room] {
            let n = node.sink.messages(channel).len();
            assert_eq!(n, COUNT as usize, "{channel} on {}: duplicates", node.id);
        }
    }
}

/// Ids, timestamps, senders, channels, epochs and payloads as published.
pub async fn case_message_fields(factory: &dyn ClusterFactory) {
    let nodes = start_cluster(factory, 2, HistoryPolicies::default(), LONG_LEASE).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let user = unique("fields");
    let user_channel = format!("user:{user}");
    let room = format!("room:{}", unique("fields"));
    b.router
        .register(conn(&user, "c-1", &b.id), 0)
        .await
        .unwrap();
    b.router.subscribe_room(&room).await.unwrap();

    let text = Payload::json(r#"{"text":"héllo","list":[1,2.5,null]}"#).unwrap();
    let bytes = Payload::Binary(Bytes::from_static(&[0, 159, 146, 150, 255, b'\n']));
    let cases: [(&str, Option<&str>, Payload); 3] = [
        (&room, Some("alice"), text.clone()),
        (&user_channel, None, bytes.clone()),
        (&user_channel, Some("bob"), text),
    ];
    let before = now_ms();
    let mut ids = HashSet::new();
    for (channel, from, data) in cases {
        let out = publish(a, channel, from, data.clone()).await;
        let m = &out.message;
        let after = now_ms();
        assert!(
            m.id.starts_with("m-") && m.id.len() > 2,
            "bad id {:?}",
            m.id
        );
        assert!(ids.insert(m.id.clone()), "duplicate id {}", m.id);
        assert!(
            m.ts + 1000 >= before && m.ts <= after + 1000,
            "ts {} not within [{before}, {after}]",
            m.ts
        );
        assert_eq!(m.channel, channel);
        assert_eq!(m.from.as_deref(), from, "from must be preserved");
        assert_eq!(m.data, data, "payload must be preserved");
        assert!(is_valid_epoch(&m.epoch), "bad epoch {:?}", m.epoch);
        let delivered = b.sink.wait_for("the delivery", |s| {
            s.messages(channel).into_iter().find(|d| d.id == m.id)
        });
        assert_eq!(
            &*delivered.await,
            &**m,
            "delivered message differs from the outcome"
        );
    }
    let read = a.router.read(&user_channel, None, 10).await.unwrap();
    let stored: Vec<&Payload> = read.messages.iter().map(|m| &m.data).collect();
    assert_eq!(
        stored.first(),
        Some(&&bytes),
        "binary payload must be stored as is"
    );

    for i in 0..50 {
        let channel = if i % 2 == 0 { &room } else { &user_channel };
        let out = publish(&nodes[i % 2], channel, None, json(i as u64)).await;
        assert!(
            ids.insert(out.message.id.clone()),
            "duplicate id {}",
            out.message.id
        );
    }
}

/// Publishing to an empty channel name is a bad request.
pub async fn case_empty_channel_rejected(factory: &dyn ClusterFactory) {
    let nodes: Vec<TestNode> =
        start_cluster(factory, 1, HistoryPolicies::default(), LONG_LEASE).await;
    let request = PublishRequest {
        channel: String::new(),
        from: None,
        data: json(1),
        idempotency: None,
    };
    match nodes[0].router.publish(request).await {
        Err(RouterError::BadRequest(_)) => {}
        other => panic!("publish to \"\" must be BadRequest, got {other:?}"),
    }
}
