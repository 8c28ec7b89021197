//! Room history: resuming with `subscribe` + `since`, trimming by count, and rooms without
//! history.

use super::*;

on_memory_and_cluster!(room_with_history_resumes_with_since);
async fn room_with_history_resumes_with_since(backplane: Backplane) {
    let env = start_with_config(
        backplane,
        "[[history]]\npattern = \"room:hist*\"\nmax_messages = 100\nmax_age_seconds = 3600\n",
    )
    .await;
    let node = env.node();
    let (mut alice, _) = node.connect("alice").await;
    let reply = subscribe_since(&mut alice, 1, "room:hist1", None).await;
    assert!(
        reply.get("recovered").is_none(),
        "no since, no recovered: {reply}"
    );
    let (epoch, offset) = position(&reply);
    assert_eq!(offset, 0);
    expect_own_join(&mut alice, "alice", "room:hist1").await;
    unsubscribe(&mut alice, 2, "room:hist1").await;

    publish_numbered(env.api(), "room:hist1", &epoch, 0, 20).await;
    alice.expect_silence(QUIET).await;

    let reply = subscribe_since(&mut alice, 3, "room:hist1", Some((&epoch, 0))).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    assert_eq!(position(&reply), (epoch.clone(), 20), "{reply}");
    expect_messages(&mut alice, "room:hist1", &epoch, 1, 20).await;
    expect_own_join(&mut alice, "alice", "room:hist1").await;
    alice.expect_silence(QUIET).await;

    // Live messages continue the same sequence.
    publish_numbered(env.api(), "room:hist1", &epoch, 20, 1).await;
    expect_messages(&mut alice, "room:hist1", &epoch, 21, 1).await;

    // Resuming from the middle.
    unsubscribe(&mut alice, 4, "room:hist1").await;
    let reply = subscribe_since(&mut alice, 5, "room:hist1", Some((&epoch, 17))).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    expect_messages(&mut alice, "room:hist1", &epoch, 18, 4).await;
    expect_own_join(&mut alice, "alice", "room:hist1").await;
    alice.expect_silence(QUIET).await;
}

on_memory_and_cluster!(room_history_trimmed_by_count_is_not_recovered);
async fn room_history_trimmed_by_count_is_not_recovered(backplane: Backplane) {
    let env = start_with_config(
        backplane,
        "[[history]]\npattern = \"room:hist*\"\nmax_messages = 5\nmax_age_seconds = 3600\n",
    )
    .await;
    let node = env.node();
    let (mut alice, _) = node.connect("alice").await;
    let (epoch, _) = position(&subscribe_since(&mut alice, 1, "room:hist-trim", None).await);
    expect_own_join(&mut alice, "alice", "room:hist-trim").await;
    unsubscribe(&mut alice, 2, "room:hist-trim").await;
    publish_numbered(env.api(), "room:hist-trim", &epoch, 0, 20).await;

    // Only 16..=20 are kept: 0 and 14 would need trimmed messages.
    let mut id = 3;
    for since in [0, 14] {
        let reply = subscribe_since(&mut alice, id, "room:hist-trim", Some((&epoch, since))).await;
        assert_eq!(reply["recovered"], false, "since {since}: {reply}");
        assert_eq!(position(&reply), (epoch.clone(), 20), "{reply}");
        expect_own_join(&mut alice, "alice", "room:hist-trim").await;
        alice.expect_silence(QUIET).await;
        unsubscribe(&mut alice, id + 1, "room:hist-trim").await;
        id += 2;
    }
    let reply = subscribe_since(&mut alice, id, "room:hist-trim", Some((&epoch, 15))).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    expect_messages(&mut alice, "room:hist-trim", &epoch, 16, 5).await;
    expect_own_join(&mut alice, "alice", "room:hist-trim").await;
    alice.expect_silence(QUIET).await;
}

on_memory_and_cluster!(room_without_history_recovers_only_at_the_top);
async fn room_without_history_recovers_only_at_the_top(backplane: Backplane) {
    let env = Env::start(backplane, &[]).await;
    let node = env.node();
    let (mut alice, _) = node.connect("alice").await;
    let (epoch, _) = position(&subscribe_since(&mut alice, 1, "room:plain", None).await);
    expect_own_join(&mut alice, "alice", "room:plain").await;
    publish_numbered(env.api(), "room:plain", &epoch, 0, 3).await;
    expect_messages(&mut alice, "room:plain", &epoch, 1, 3).await;
    unsubscribe(&mut alice, 2, "room:plain").await;

    let reply = subscribe_since(&mut alice, 3, "room:plain", Some((&epoch, 3))).await;
    assert_eq!(
        reply["recovered"], true,
        "at the top nothing is missing: {reply}"
    );
    assert_eq!(position(&reply), (epoch.clone(), 3), "{reply}");
    expect_own_join(&mut alice, "alice", "room:plain").await;
    alice.expect_silence(QUIET).await;
    unsubscribe(&mut alice, 4, "room:plain").await;

    let mut id = 5;
    for (since_epoch, since_offset) in [(epoch.as_str(), 1), (epoch.as_str(), 0), ("e0nope", 3)] {
        let reply = subscribe_since(
            &mut alice,
            id,
            "room:plain",
            Some((since_epoch, since_offset)),
        )
        .await;
        assert_eq!(
            reply["recovered"], false,
            "since {since_epoch}:{since_offset}: {reply}"
        );
        assert_eq!(position(&reply), (epoch.clone(), 3), "{reply}");
        expect_own_join(&mut alice, "alice", "room:plain").await;
        alice.expect_silence(QUIET).await;
        unsubscribe(&mut alice, id + 1, "room:plain").await;
        id += 2;
    }
}
