//! Presence spans nodes: joins and leaves are per user, not per connection, and every node's
//! `/v1/presence` agrees.

use super::*;

use crate::support::cluster::{Cluster, Redis};
use crate::support::on_both_redis;

on_both_redis!(presence_spans_nodes);
async fn presence_spans_nodes(redis: Redis) {
    let c = Cluster::start_on(redis, 3, &[]).await;
    let room = "room:presence";
    let (mut alice, _) = c.nodes[0].connect("alice").await;
    subscribe(&mut alice, "alice", 1, room).await;
    expect_frame(&mut alice, "alice", presence_frame(room, "alice", "join")).await;

    let (mut bob1, _) = c.nodes[1].connect("bob").await;
    subscribe(&mut bob1, "bob@2", 1, room).await;
    expect_frame(&mut bob1, "bob@2", presence_frame(room, "bob", "join")).await;
    expect_frame(&mut alice, "alice", presence_frame(room, "bob", "join")).await;

    // bob's second connection (node 3) is not a join: nobody hears of it.
    let (mut bob2, _) = c.nodes[2].connect("bob").await;
    subscribe(&mut bob2, "bob@3", 1, room).await;
    wait_presence(&c.nodes[2], room, &["alice", "bob"], 3).await;
    for node in &c.nodes {
        assert_eq!(
            presence_of(node, room).await,
            (vec!["alice".to_owned(), "bob".to_owned()], 3),
            "presence on {}",
            node.node_id
        );
    }

    let (mut carol, _) = c.nodes[2].connect("carol").await;
    subscribe(&mut carol, "carol", 1, room).await;
    for (who, client) in [
        ("carol", &mut carol),
        ("alice", &mut alice),
        ("bob@2", &mut bob1),
        ("bob@3", &mut bob2),
    ] {
        expect_frame(client, who, presence_frame(room, "carol", "join")).await;
    }
    wait_presence(&c.nodes[0], room, &["alice", "bob", "carol"], 4).await;

    // bob leaves on node 2 but stays on node 3: no leave frame.
    bob1.send(json!({"type": "unsubscribe", "id": 2, "channel": room}))
        .await;
    let reply = bob1.recv().await;
    assert_eq!(
        (&reply["id"], &reply["ok"]),
        (&json!(2), &json!(true)),
        "{reply}"
    );
    wait_presence(&c.nodes[1], room, &["alice", "bob", "carol"], 3).await;

    // bob's last connection goes (socket closed, no unsubscribe): everyone left hears it.
    bob2.close().await;
    for (who, client) in [("alice", &mut alice), ("carol", &mut carol)] {
        expect_frame(client, who, presence_frame(room, "bob", "leave")).await;
    }
    wait_presence(&c.nodes[1], room, &["alice", "carol"], 2).await;

    carol.close().await;
    expect_frame(&mut alice, "alice", presence_frame(room, "carol", "leave")).await;
    wait_presence(&c.nodes[2], room, &["alice"], 1).await;
    alice.expect_silence(QUIET).await;
    // bob's first connection unsubscribed: it hears nothing of the room any more.
    bob1.expect_silence(QUIET).await;
}
