//! Idempotent publishes (docs/protocol.md §5): a key seen within its window answers the first
//! outcome and stores nothing; the check is atomic with the store.

use std::time::Duration;

use super::{conn, grace, json, offsets, start_cluster, unique, ClusterFactory, LONG_LEASE};
use crate::{HistoryPolicies, HistoryPolicy, Idempotency, PublishOutcome, PublishRequest, Router};

fn keyed(channel: &str, n: u64, key: &str, window: Duration) -> PublishRequest {
    PublishRequest {
        channel: channel.to_owned(),
        from: None,
        data: json(n),
        idempotency: Some(Idempotency {
            key: key.to_owned(),
            window,
        }),
    }
}

async fn publish(router: &dyn Router, request: PublishRequest) -> PublishOutcome {
    let channel = request.channel.clone();
    router
        .publish(request)
        .await
        .unwrap_or_else(|e| panic!("keyed publish on {channel} failed: {e}"))
}

const WINDOW: Duration = Duration::from_secs(300);

/// A retry with the same key, through any node, answers the first outcome; the message
/// is stored and delivered once. Keys are per channel; another key is another message.
pub async fn case_idempotent_publish(factory: &dyn ClusterFactory) {
    let nodes = start_cluster(factory, 2, HistoryPolicies::default(), LONG_LEASE).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let user = unique("idem");
    let channel = format!("user:{user}");
    b.router
        .register(conn(&user, "c-1", &b.id), 0)
        .await
        .unwrap();

    let first = publish(a.router.as_ref(), keyed(&channel, 1, "k-1", WINDOW)).await;
    assert!(!first.duplicate, "a key's first publish is no duplicate");
    assert_eq!(first.message.offset, 1);
    assert!(first.online && first.nodes == 1, "{first:?}");
    for router in [&a.router, &b.router] {
        let again = publish(router.as_ref(), keyed(&channel, 99, "k-1", WINDOW)).await;
        assert!(again.duplicate, "the same key again must be a duplicate");
        assert_eq!(again.message.position(), first.message.position());
        assert_eq!((again.online, again.nodes), (first.online, first.nodes));
    }
    let other = publish(a.router.as_ref(), keyed(&channel, 2, "k-2", WINDOW)).await;
    assert!(!other.duplicate);
    assert_eq!(other.message.offset, 2, "another key is another message");
    let elsewhere = format!("user:{}", unique("idem-other"));
    let out = publish(a.router.as_ref(), keyed(&elsewhere, 3, "k-1", WINDOW)).await;
    assert!(!out.duplicate, "keys are per channel");

    assert_eq!(offsets(&b.sink.wait_messages(&channel, 2).await), [1, 2]);
    grace().await;
    assert_eq!(
        b.sink.messages(&channel).len(),
        2,
        "a duplicate was delivered"
    );
    let read = a.router.read(&channel, None, 100).await.unwrap();
    assert_eq!(offsets(&read.messages), [1, 2], "a duplicate was stored");
    assert_eq!(read.messages[0].data, json(1), "the first payload stays");
}

/// Concurrent publishes with one key (a retry racing its original) store one message,
/// and every one of them answers its position — on a room with history and on one
/// without (numbered only).
pub async fn case_idempotent_publish_races(factory: &dyn ClusterFactory) {
    let room = format!("room:{}", unique("idem-hist"));
    let kept = HistoryPolicy {
        max_len: 100,
        max_age: Duration::from_secs(3600),
    };
    let policies = HistoryPolicies::new(vec![(room.clone(), kept)]);
    let nodes = start_cluster(factory, 2, policies, LONG_LEASE).await;
    let plain = format!("room:{}", unique("idem-plain"));
    for channel in [&room, &plain] {
        let racers = (0..16u64).map(|n| {
            let router = nodes[(n % 2) as usize].router.clone();
            let request = keyed(channel, n, "race", WINDOW);
            async move { publish(router.as_ref(), request).await }
        });
        let outcomes = futures_util::future::join_all(racers).await;
        let originals = outcomes.iter().filter(|o| !o.duplicate).count();
        assert_eq!(originals, 1, "{channel}: exactly one publish may store");
        let position = outcomes[0].message.position();
        assert!(
            outcomes.iter().all(|o| o.message.position() == position),
            "{channel}: every racer answers the one position"
        );
        let next = publish(
            nodes[0].router.as_ref(),
            keyed(channel, 100, "next", WINDOW),
        )
        .await;
        assert_eq!(
            next.message.offset,
            position.offset + 1,
            "{channel}: one offset used"
        );
    }
    let read = nodes[1].router.read(&room, None, 100).await.unwrap();
    assert_eq!(offsets(&read.messages), [1, 2]);
}

/// After the window a key is new again; batches number keyed items in order (the second
/// of two with one key is the first's duplicate).
pub async fn case_idempotency_window_and_batches(factory: &dyn ClusterFactory) {
    let nodes = start_cluster(factory, 1, HistoryPolicies::default(), LONG_LEASE).await;
    let router = nodes[0].router.as_ref();
    let channel = format!("user:{}", unique("idem-window"));
    let short = Duration::from_millis(300);
    let first = publish(router, keyed(&channel, 1, "w", short)).await;
    let retry = publish(router, keyed(&channel, 1, "w", short)).await;
    assert!(retry.duplicate && retry.message.offset == first.message.offset);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let late = publish(router, keyed(&channel, 1, "w", short)).await;
    assert!(!late.duplicate, "a retry after the window is a new message");
    assert_eq!(late.message.offset, first.message.offset + 1);

    let batch = vec![
        keyed(&channel, 10, "b-1", WINDOW),
        keyed(&channel, 11, "b-1", WINDOW),
        keyed(&channel, 12, "b-2", WINDOW),
    ];
    let results: Vec<PublishOutcome> = router
        .publish_many(batch)
        .await
        .into_iter()
        .map(|r| r.expect("batch item"))
        .collect();
    let at = late.message.offset;
    assert_eq!(
        results
            .iter()
            .map(|o| (o.message.offset, o.duplicate))
            .collect::<Vec<_>>(),
        [(at + 1, false), (at + 1, true), (at + 2, false)]
    );
}
