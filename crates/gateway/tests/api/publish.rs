//! `POST /v1/publish` to offline users, online users and rooms, and `POST /v1/broadcast`.

use super::*;

use serde_json::json;

#[tokio::test]
async fn publish_to_an_offline_user_lands_in_the_inbox() {
    let node = support::start(&[]).await;
    let res = publish(&node, json!({"channel": "user:alice", "data": {"n": 1}})).await;
    assert_eq!(res["channel"], "user:alice");
    assert_eq!(res["online"], false);
    assert_eq!(res["nodes"], 0);
    assert_eq!(res["offset"], 1);
    let epoch = res["epoch"].as_str().expect("epoch").to_owned();
    assert!(!epoch.is_empty());

    let (mut a, w) = node.connect("alice").await;
    assert_eq!(w["offset"], 1);
    assert_eq!(w["epoch"], epoch.as_str());
    let m = a.recv().await;
    assert_eq!(m["type"], "message");
    assert_eq!(m["channel"], "user:alice");
    assert_eq!(m["epoch"], epoch.as_str());
    assert_eq!(m["offset"], 1);
    assert_eq!(m["data"], json!({"n": 1}));
    assert!(
        m.get("from").is_none(),
        "no `from` unless the body sets one: {m}"
    );
    a.expect_silence(QUIET).await;
}

#[tokio::test]
async fn publish_to_an_online_user_is_delivered_live_with_from() {
    let node = support::start(&[]).await;
    let (mut a1, _) = node.connect("alice").await;
    let (mut a2, _) = node.connect("alice").await;
    let (mut b, _) = node.connect("bob").await;
    let before = now_ms();
    let res = publish(
        &node,
        json!({"channel": "user:alice", "data": [1, "x"], "from": "billing"}),
    )
    .await;
    assert_eq!(res["online"], true);
    assert_eq!(res["nodes"], 1, "two connections, one node");
    assert_eq!(res["offset"], 1);
    for a in [&mut a1, &mut a2] {
        let m = a.recv().await;
        assert_eq!(m["type"], "message");
        assert_eq!(m["from"], "billing");
        assert_eq!(m["data"], json!([1, "x"]));
        assert_eq!(m["offset"], 1);
        assert_eq!(m["epoch"], res["epoch"]);
        assert!(m["ts"].as_u64().unwrap() >= before);
    }
    b.expect_silence(QUIET).await;

    // `data_b64` publishes bytes.
    let res = publish(&node, json!({"channel": "user:alice", "data_b64": "AAH/"})).await;
    assert_eq!(res["offset"], 2);
    let m = a1.recv().await;
    assert_eq!(m["data_b64"], "AAH/");
    assert!(m.get("from").is_none(), "{m}");
}

#[tokio::test]
async fn publish_to_a_room() {
    let node = support::start(&[]).await;
    let (mut a, _) = node.connect("alice").await;
    let (mut b, _) = node.connect("bob").await;
    a.join_room(1, "room:news", "alice").await;
    let res = publish(&node, json!({"channel": "room:news", "data": "headline"})).await;
    assert_eq!(res["channel"], "room:news");
    assert_eq!(res["offset"], 1);
    assert_eq!(res["nodes"], 1);
    assert!(res["online"].is_boolean(), "{res}");
    let m = a.recv().await;
    assert_eq!(m["type"], "message");
    assert_eq!(m["channel"], "room:news");
    assert_eq!(m["data"], "headline");
    assert!(m.get("from").is_none(), "{m}");
    b.expect_silence(QUIET).await;

    // A room nobody listens to: stored position moves, routed nowhere.
    let res = publish(&node, json!({"channel": "room:empty", "data": 1})).await;
    assert_eq!(
        (res["offset"].as_u64(), res["nodes"].as_u64()),
        (Some(1), Some(0))
    );
    a.expect_silence(Duration::ZERO).await;
}

#[tokio::test]
async fn broadcast_answers_one_result_per_channel() {
    let node = support::start(&[]).await;
    let (mut a, _) = node.connect("alice").await;
    let (mut c, _) = node.connect("carol").await;
    c.join_room(1, "room:b", "carol").await;
    let (status, res) = node
        .api(
            "POST",
            "/v1/broadcast",
            Some(json!({
                "channels": ["user:alice", "user:bob", "room:b", "bad channel", "user:alice"],
                "data": {"all": true},
                "from": "ops",
            })),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let results = res["results"].as_array().expect("results");
    assert_eq!(results.len(), 5, "{res}");
    let summary = |r: &Value| {
        (
            r["channel"].as_str().map(str::to_owned),
            r["offset"].as_u64(),
            r["online"].as_bool(),
            r["nodes"].as_u64(),
        )
    };
    assert_eq!(
        summary(&results[0]),
        (Some("user:alice".into()), Some(1), Some(true), Some(1))
    );
    assert_eq!(
        summary(&results[1]),
        (Some("user:bob".into()), Some(1), Some(false), Some(0))
    );
    assert_eq!(
        (
            summary(&results[2]).0,
            summary(&results[2]).1,
            summary(&results[2]).3
        ),
        (Some("room:b".into()), Some(1), Some(1))
    );
    assert_eq!(results[3]["channel"], "bad channel");
    assert_eq!(results[3]["error"]["code"], "bad_channel", "{res}");
    assert!(results[3]["error"]["message"].is_string());
    assert!(results[3].get("offset").is_none(), "{res}");
    assert_eq!(
        summary(&results[4]),
        (Some("user:alice".into()), Some(2), Some(true), Some(1))
    );
    for r in [&results[0], &results[1], &results[2], &results[4]] {
        assert!(r.get("error").is_none(), "{r}");
        assert!(r["epoch"].as_str().is_some_and(|e| !e.is_empty()), "{r}");
    }

    for offset in [1, 2] {
        let m = a.recv().await;
        assert_eq!(
            (m["offset"].as_u64(), m["from"].as_str()),
            (Some(offset), Some("ops"))
        );
        assert_eq!(m["data"], json!({"all": true}));
    }
    let m = c.recv().await;
    assert_eq!(
        (m["channel"].as_str(), m["from"].as_str()),
        (Some("room:b"), Some("ops"))
    );
    a.expect_silence(QUIET).await;
    c.expect_silence(Duration::ZERO).await;
    // Bob was offline: his copy waits in the inbox.
    let (mut b, w) = node.connect("bob").await;
    assert_eq!(w["offset"], 1);
    assert_eq!(b.recv().await["data"], json!({"all": true}));
}
