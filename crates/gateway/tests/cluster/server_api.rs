//! The server API of any node sees the whole cluster: `/v1/nodes`, `/v1/users`, history, and
//! a disconnect that closes sockets on other nodes.

use super::*;
use std::collections::HashMap;

use crate::support::cluster::{Cluster, Redis};
use crate::support::on_both_redis;

on_both_redis!(the_server_api_sees_the_whole_cluster);
async fn the_server_api_sees_the_whole_cluster(redis: Redis) {
    // A short lease makes heartbeats (and their connection counts) frequent.
    let c = Cluster::start_on(redis, 3, &["--lease-seconds", "3"]).await;
    let ids = c.node_ids();

    // /v1/nodes from any node lists the three live nodes.
    for node in &c.nodes {
        let (status, body) = node.api("GET", "/v1/nodes", None).await;
        assert_eq!(status, 200, "{body}");
        let mut listed: Vec<String> = body["nodes"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|n| {
                assert_eq!(n["draining"], false, "{n}");
                assert!(n["since_ms"].as_u64().is_some_and(|s| s > 0), "{n}");
                n["node"].as_str().expect("node").to_owned()
            })
            .collect();
        listed.sort();
        let mut want = ids.clone();
        want.sort();
        assert_eq!(listed, want, "/v1/nodes on {}: {body}", node.node_id);
    }

    // alice on nodes 2 and 3, seen from node 1.
    let (mut a2, w2) = c.nodes[1].connect("alice").await;
    let (epoch, _) = position(&w2);
    let (mut a3, w3) = connect_since(&c.nodes[2], "alice", Some((&epoch, 0))).await;
    let mut want = vec![
        (w2["conn_id"].as_str().unwrap().to_owned(), ids[1].clone()),
        (w3["conn_id"].as_str().unwrap().to_owned(), ids[2].clone()),
    ];
    want.sort();
    assert_eq!(
        user_of(&c.nodes[0], "alice").await,
        (true, want),
        "alice's connections seen from node 1"
    );
    assert_eq!(user_of(&c.nodes[0], "nobody").await, (false, vec![]));

    // Node status: each node's heartbeat reports its connection count.
    poll(
        Duration::from_secs(5),
        "/v1/nodes connection counts",
        || async {
            let (_, body) = c.nodes[0].api("GET", "/v1/nodes", None).await;
            let counts: HashMap<String, u64> = body["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|n| {
                    (
                        n["node"].as_str().unwrap_or_default().to_owned(),
                        n["connections"].as_u64().unwrap_or(99),
                    )
                })
                .collect();
            let want: HashMap<String, u64> = [
                (ids[0].clone(), 0),
                (ids[1].clone(), 1),
                (ids[2].clone(), 1),
            ]
            .into();
            if counts == want {
                Ok(())
            } else {
                Err(body.to_string())
            }
        },
    )
    .await;

    // History of alice's channel from any node.
    let api = c.nodes[0].api_client();
    for n in 1..=3u64 {
        let answer = api.publish("user:alice", json!({"n": n})).await;
        assert_eq!(answer["nodes"], 2, "{answer}");
    }
    for node in &c.nodes {
        let (status, body) = node.api("GET", "/v1/history/user:alice", None).await;
        assert_eq!(status, 200, "history on {}: {body}", node.node_id);
        assert_eq!(position(&body), (epoch.clone(), 3), "{body}");
        let messages = body["messages"].as_array().expect("messages");
        assert_eq!(messages.len(), 3, "history on {}: {body}", node.node_id);
        for (i, m) in messages.iter().enumerate() {
            let n = i as u64 + 1;
            check_message(m, &node.node_id, "user:alice", &epoch, n, &json!({"n": n}));
        }
        let (status, body) = node
            .api(
                "GET",
                &format!("/v1/history/user:alice?since={epoch}:2"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["recovered"], true, "{body}");
        assert_eq!(body["messages"].as_array().map(Vec::len), Some(1), "{body}");
    }
    for (who, client) in [("alice@2", &mut a2), ("alice@3", &mut a3)] {
        for n in 1..=3u64 {
            let msg = client.recv().await;
            check_message(&msg, who, "user:alice", &epoch, n, &json!({"n": n}));
        }
    }

    // A disconnect through node 1 closes the sockets on nodes 2 and 3.
    let (status, body) = c.nodes[0]
        .api(
            "POST",
            "/v1/users/alice/disconnect",
            Some(json!({"code": 4003, "reason": "kicked"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"connections": 2}));
    for (who, client) in [("alice@2", &mut a2), ("alice@3", &mut a3)] {
        let (code, reason, before) = client.expect_close().await;
        assert_eq!((code, reason.as_str()), (4003, "kicked"), "{who}");
        assert!(
            before.is_empty(),
            "{who}: nothing before the close: {before:?}"
        );
    }
    for node in &c.nodes {
        poll(
            Duration::from_secs(5),
            "alice offline everywhere",
            || async {
                match user_of(node, "alice").await {
                    (false, _) => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
    }
}
