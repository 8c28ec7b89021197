//! Two pages chat through two different gateway nodes of one Redis cluster.

use crate::support::cluster::Cluster;
use crate::{assert_demo_served, origin, scenario, strings, ws};

#[tokio::test]
async fn two_pages_chat_through_two_nodes() {
    crate::preflight();
    let cluster = Cluster::start(2, &["--demo", "--history", "room:*=100/3600"]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    assert_demo_served(a).await;

    let result = scenario(
        "chat-two-nodes",
        &[
            "--a-origin".into(),
            origin(a),
            "--a-ws".into(),
            ws(a),
            "--a-node".into(),
            a.node_id.clone(),
            "--b-origin".into(),
            origin(b),
            "--b-ws".into(),
            ws(b),
            "--b-node".into(),
            b.node_id.clone(),
            "--room".into(),
            "e2e-chat".into(),
            "--user-a".into(),
            "alice".into(),
            "--user-b".into(),
            "bob".into(),
        ],
    )
    .await;

    for (side, node) in [("a", a), ("b", b)] {
        let page = &result[side];
        let status = &page["status"];
        assert!(
            status["node"] == node.node_id.as_str()
                || status["text"]
                    .as_str()
                    .is_some_and(|t| t.contains(&node.node_id)),
            "page {side} must be on {}: {status}",
            node.node_id
        );
        let mut presence = strings(&page["presence"]);
        presence.sort();
        presence.dedup();
        assert_eq!(presence, ["alice", "bob"], "presence on page {side}");
        let messages = page["messages"].as_array().expect("messages");
        let hello = messages
            .iter()
            .find(|m| {
                m["text"]
                    .as_str()
                    .unwrap_or("")
                    .contains("hello from alice")
            })
            .unwrap_or_else(|| panic!("page {side} lacks alice's message: {page}"));
        assert_eq!(hello["from"], "alice", "{page}");
        let reply = messages
            .iter()
            .find(|m| m["text"].as_str().unwrap_or("").contains("bob here"))
            .unwrap_or_else(|| panic!("page {side} lacks bob's message: {page}"));
        assert_eq!(reply["from"], "bob", "{page}");
        assert_eq!(
            reply["offset"].as_u64(),
            hello["offset"].as_u64().map(|o| o + 1),
            "bob's answer is the room's next offset: {page}"
        );
    }

    // The room's history (kept in Redis) holds both, in order, whichever node is asked.
    let (status, history) = b
        .api("GET", "/v1/history/room:e2e-chat?limit=10", None)
        .await;
    assert_eq!(status, 200, "{history}");
    let from: Vec<_> = history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["from"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(from, ["alice", "bob"], "{history}");
}
