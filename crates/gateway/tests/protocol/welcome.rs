//! The `welcome` frame in both encodings: every field, its offset and `recovered`.

use super::*;

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
