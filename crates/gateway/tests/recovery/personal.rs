//! The personal channel: resuming with `?since=`, another epoch or an offset beyond the top,
//! and the inbox with its acks.

use super::*;

on_memory_and_cluster!(personal_channel_resumes_with_since);
async fn personal_channel_resumes_with_since(backplane: Backplane) {
    let env = Env::start(backplane, &[]).await;
    let node = env.node();
    let (alice, welcome) = node.connect("alice").await;
    assert!(
        welcome.get("recovered").is_none(),
        "no since, no recovered: {welcome}"
    );
    let (epoch, offset) = position(&welcome);
    assert_eq!(offset, 0);
    alice.close().await;
    node.wait_offline("alice").await;

    publish_numbered(env.api(), "user:alice", &epoch, offset, 50).await;

    let (mut alice, welcome) = connect_since(node, "alice", Some((&epoch, offset))).await;
    assert_eq!(welcome["recovered"], true, "{welcome}");
    assert_eq!(position(&welcome), (epoch.clone(), 50), "{welcome}");
    expect_messages(&mut alice, "user:alice", &epoch, 1, 50).await;
    alice.expect_silence(QUIET).await;

    // Resuming from the middle replays only the rest.
    alice.close().await;
    node.wait_offline("alice").await;
    let (mut alice, welcome) = connect_since(node, "alice", Some((&epoch, 45))).await;
    assert_eq!(welcome["recovered"], true, "{welcome}");
    expect_messages(&mut alice, "user:alice", &epoch, 46, 5).await;
    alice.expect_silence(QUIET).await;
}

on_memory_and_cluster!(since_in_another_epoch_or_beyond_the_top_is_not_recovered);
async fn since_in_another_epoch_or_beyond_the_top_is_not_recovered(backplane: Backplane) {
    let env = Env::start(backplane, &[]).await;
    let node = env.node();
    let api = env.api().api_client();
    let first = api.publish("user:bob", json!({"n": 1})).await;
    assert_eq!(first["online"], false, "{first}");
    let (epoch, _) = position(&first);
    publish_numbered(env.api(), "user:bob", &epoch, 1, 2).await;

    for (since_epoch, since_offset) in [
        ("e0nope", 1),
        (epoch.as_str(), 4),
        (epoch.as_str(), u64::MAX),
    ] {
        let (mut bob, welcome) =
            connect_since(node, "bob", Some((since_epoch, since_offset))).await;
        assert_eq!(
            welcome["recovered"], false,
            "since {since_epoch}:{since_offset}: {welcome}"
        );
        assert_eq!(position(&welcome), (epoch.clone(), 3), "{welcome}");
        bob.expect_silence(QUIET).await;
        bob.close().await;
        node.wait_offline("bob").await;
    }

    // At the top exactly nothing is missing.
    let (mut bob, welcome) = connect_since(node, "bob", Some((&epoch, 3))).await;
    assert_eq!(welcome["recovered"], true, "{welcome}");
    bob.expect_silence(QUIET).await;
    bob.close().await;

    // A malformed `since` is refused before the upgrade.
    let refused = node
        .connect_query(
            &format!("token={}&since=no-offset", support::token("bob")),
            &[],
        )
        .await
        .err()
        .expect("a malformed since must be refused");
    assert_eq!(refused.status, 400);
    assert_eq!(refused.body["error"], "bad_request", "{:?}", refused.body);
}

on_memory_and_cluster!(inbox_delivers_after_the_last_ack);
async fn inbox_delivers_after_the_last_ack(backplane: Backplane) {
    let env = Env::start(backplane, &[]).await;
    let node = env.node();
    let api = env.api().api_client();
    let first = api.publish("user:carol", json!({"n": 1})).await;
    assert_eq!(
        (&first["online"], &first["nodes"]),
        (&json!(false), &json!(0)),
        "{first}"
    );
    let (epoch, _) = position(&first);
    publish_numbered(env.api(), "user:carol", &epoch, 1, 4).await;

    // Never acked: the whole inbox.
    let (mut carol, welcome) = connect_since(node, "carol", None).await;
    assert!(welcome.get("recovered").is_none(), "{welcome}");
    assert_eq!(position(&welcome), (epoch.clone(), 5), "{welcome}");
    expect_messages(&mut carol, "user:carol", &epoch, 1, 5).await;
    carol.expect_silence(QUIET).await;
    carol
        .send(json!({"type": "ack", "channel": "user:carol", "offset": 3}))
        .await;
    // Acking another user's channel is an error and changes nothing.
    carol
        .send(json!({"type": "ack", "channel": "user:dave", "offset": 5}))
        .await;
    let error = carol.recv().await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["code"], "bad_channel", "{error}");
    carol.round_trip(1).await;
    carol.close().await;
    node.wait_offline("carol").await;

    // Acked up to 3: only 4 and 5 come back.
    let (mut carol, _) = connect_since(node, "carol", None).await;
    expect_messages(&mut carol, "user:carol", &epoch, 4, 2).await;
    carol.expect_silence(QUIET).await;
    // An ack never moves backwards.
    carol
        .send(json!({"type": "ack", "channel": "user:carol", "offset": 1, "epoch": epoch}))
        .await;
    carol.round_trip(2).await;
    carol.close().await;
    node.wait_offline("carol").await;

    let (mut carol, _) = connect_since(node, "carol", None).await;
    expect_messages(&mut carol, "user:carol", &epoch, 4, 2).await;
    carol.expect_silence(QUIET).await;
    carol
        .send(json!({"type": "ack", "channel": "user:carol", "offset": 5}))
        .await;
    carol.round_trip(3).await;
    carol.close().await;
    node.wait_offline("carol").await;

    // Everything acked: nothing is replayed, and new messages still are.
    let (mut carol, welcome) = connect_since(node, "carol", None).await;
    assert_eq!(position(&welcome), (epoch.clone(), 5), "{welcome}");
    carol.expect_silence(QUIET).await;
    carol.close().await;
    node.wait_offline("carol").await;
    publish_numbered(env.api(), "user:carol", &epoch, 5, 1).await;
    let (mut carol, _) = connect_since(node, "carol", None).await;
    expect_messages(&mut carol, "user:carol", &epoch, 6, 1).await;
    carol.expect_silence(QUIET).await;
}

on_memory_and_cluster!(an_inbox_larger_than_the_outbound_queue_is_still_delivered);
/// A replay is not live traffic: a connecting client has had no chance to be slow, so
/// an inbox larger than the outbound queue must still arrive (not end in 4008).
async fn an_inbox_larger_than_the_outbound_queue_is_still_delivered(backplane: Backplane) {
    let env = Env::start(backplane, &["--outbound-queue-frames", "64"]).await;
    let node = env.node();
    let first = node
        .api_client()
        .publish("user:frank", json!({"n": 1}))
        .await;
    let (epoch, _) = position(&first);
    publish_numbered(env.api(), "user:frank", &epoch, 1, 99).await;

    let mut frank = node
        .connect_query(&format!("token={}", support::token("frank")), &[])
        .await
        .expect("connect");
    let welcome = frank.recv().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(position(&welcome), (epoch.clone(), 100), "{welcome}");
    expect_messages(&mut frank, "user:frank", &epoch, 1, 100).await;
    frank.expect_silence(QUIET).await;
    frank.close().await;
    node.wait_offline("frank").await;

    let (mut frank, welcome) = connect_since(node, "frank", Some((&epoch, 0))).await;
    assert_eq!(welcome["recovered"], true, "{welcome}");
    expect_messages(&mut frank, "user:frank", &epoch, 1, 100).await;
    frank.expect_silence(QUIET).await;
}
