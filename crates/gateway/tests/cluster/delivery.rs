//! Delivery across nodes: a direct message to a user on another node (and to both of a user's
//! connections), and a room message to subscribers on every node, each exactly once.

use super::*;

use crate::support::cluster::{Cluster, Redis};
use crate::support::on_both_redis;

// --- 1. Direct messages -------------------------------------------------------------

on_both_redis!(a_direct_message_crosses_nodes_once);
async fn a_direct_message_crosses_nodes_once(redis: Redis) {
    let c = Cluster::start_on(redis, 3, &[]).await;
    let (mut alice, welcome) = c.nodes[0].connect("alice").await;
    assert_eq!(welcome["node"], c.nodes[0].node_id, "{welcome}");
    let (epoch, top) = position(&welcome);
    assert_eq!(top, 0, "{welcome}");
    let (mut bob, welcome) = c.nodes[2].connect("bob").await;
    assert_eq!(welcome["node"], c.nodes[2].node_id, "{welcome}");

    bob.send(json!({"type": "publish", "id": 1, "channel": "user:alice", "data": {"text": "hi"}}))
        .await;
    let reply = bob.recv().await;
    assert_eq!(reply["type"], "reply", "{reply}");
    assert_eq!(reply["ok"], true, "bob's DM to alice: {reply}");
    assert_eq!(position(&reply), (epoch.clone(), 1), "{reply}");
    let msg = alice.recv().await;
    check_message(
        &msg,
        "alice",
        "user:alice",
        &epoch,
        1,
        &json!({"text": "hi"}),
    );
    assert_eq!(msg["from"], "bob", "from is set by the server: {msg}");
    alice.expect_silence(QUIET).await;
    bob.expect_silence(QUIET).await;

    // A second connection of alice on node 2: a server-API publish through node 3 is
    // routed to both nodes and each connection receives it once.
    let (mut alice2, welcome) = connect_since(&c.nodes[1], "alice", Some((&epoch, 1))).await;
    assert_eq!(welcome["recovered"], true, "{welcome}");
    let answer = c.nodes[2]
        .api_client()
        .publish("user:alice", json!({"n": 2}))
        .await;
    assert_eq!(position(&answer), (epoch.clone(), 2), "{answer}");
    assert_eq!(
        (&answer["online"], &answer["nodes"]),
        (&json!(true), &json!(2)),
        "alice is on two nodes: {answer}"
    );
    for (who, client) in [("alice@1", &mut alice), ("alice@2", &mut alice2)] {
        let msg = client.recv().await;
        check_message(&msg, who, "user:alice", &epoch, 2, &json!({"n": 2}));
        assert!(
            msg.get("from").is_none(),
            "API publishes carry no from: {msg}"
        );
        client.expect_silence(QUIET).await;
    }
    bob.expect_silence(Duration::ZERO).await;
}

// --- 2. Room fan-out ----------------------------------------------------------------

on_both_redis!(a_room_message_reaches_every_subscriber_on_every_node_once);
async fn a_room_message_reaches_every_subscriber_on_every_node_once(redis: Redis) {
    let c = Cluster::start_on(redis, 3, &[]).await;
    let room = "room:fanout";
    // Two subscribers on node 1, one on node 2, one on node 3.
    let placement = [("fa", 0), ("fd", 0), ("fb", 1), ("fc", 2)];
    let mut subs: Vec<(&str, Client)> = Vec::new();
    for (user, n) in &placement {
        let (mut client, _) = c.nodes[*n].connect(user).await;
        subscribe(&mut client, user, 1, room).await;
        subs.push((user, client));
        // Every subscriber so far (the new one included) sees the join.
        for (who, client) in &mut subs {
            expect_frame(client, who, presence_frame(room, user, "join")).await;
        }
    }

    // A client publish on node 1, then (once it was answered) a server-API publish
    // through node 2. The publisher's own copy may come before or after its reply.
    let mut early = Vec::new();
    subs[0]
        .1
        .send(json!({"type": "publish", "id": 7, "channel": room, "data": {"n": 1}}))
        .await;
    loop {
        let frame = subs[0].1.recv().await;
        if frame["type"] == "reply" {
            assert_eq!(frame["id"], 7, "{frame}");
            assert_eq!(frame["ok"], true, "fa's publish: {frame}");
            assert_eq!(frame["offset"], 1, "{frame}");
            break;
        }
        early.push(frame);
    }
    let answer = c.nodes[1].api_client().publish(room, json!({"n": 2})).await;
    assert_eq!(answer["offset"], 2, "{answer}");
    assert_eq!(
        (&answer["online"], &answer["nodes"]),
        (&json!(true), &json!(3)),
        "the room has subscribers on 3 nodes: {answer}"
    );
    for (who, client) in &mut subs {
        let mut got = if *who == "fa" {
            std::mem::take(&mut early)
        } else {
            Vec::new()
        };
        while got.len() < 2 {
            let frame = client.recv().await;
            got.push(frame);
        }
        for frame in &got {
            assert_eq!(frame["type"], "message", "{who}: {frame}");
            assert_eq!(frame["channel"], room, "{who}: {frame}");
        }
        assert_eq!(got[0]["offset"], 1, "{who}: {}", got[0]);
        assert_eq!(got[0]["data"], json!({"n": 1}), "{who}: {}", got[0]);
        assert_eq!(got[0]["from"], "fa", "{who}: {}", got[0]);
        assert_eq!(got[1]["offset"], 2, "{who}: {}", got[1]);
        assert_eq!(got[1]["data"], json!({"n": 2}), "{who}: {}", got[1]);
        assert!(got[1].get("from").is_none(), "{who}: {}", got[1]);
    }
    // Nothing more: no copy from another node.
    for (_, client) in &mut subs {
        client.expect_silence(QUIET).await;
    }
}
