//! History reads and recovery, trimming by count and by age, channels without history,
//! inbox acks.

use std::time::Duration;

use switchboard_proto::StreamPosition;

use super::{json, offsets, publish, start_cluster, unique, ClusterFactory, LONG_LEASE};
use crate::{HistoryPolicies, HistoryPolicy};

/// `since` at the top, in the middle, in another epoch, beyond the top; `limit`.
pub async fn case_read_recovery(factory: &dyn ClusterFactory) {
    let nodes = start_cluster(factory, 2, HistoryPolicies::default(), LONG_LEASE).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let channel = format!("user:{}", unique("recovery"));

    let fresh = a.router.position(&channel).await.unwrap();
    assert_eq!(fresh.offset, 0, "a fresh channel starts at offset 0");
    let read = b.router.read(&channel, Some(&fresh), 10).await.unwrap();
    assert!(
        read.recovered && read.messages.is_empty(),
        "fresh channel: nothing missing"
    );
    assert_eq!(
        read.epoch, fresh.epoch,
        "the epoch must be stable across nodes"
    );

    for n in 1..=10 {
        publish(&nodes[(n % 2) as usize], &channel, None, json(n)).await;
    }
    let top = b.router.position(&channel).await.unwrap();
    assert_eq!(top, StreamPosition::new(fresh.epoch.clone(), 10));
    let at = |offset| StreamPosition::new(top.epoch.clone(), offset);

    let read = a.router.read(&channel, Some(&top), 100).await.unwrap();
    assert!(read.recovered, "since at the top must be recovered");
    assert!(read.messages.is_empty(), "nothing after the top");
    assert_eq!((read.epoch.as_str(), read.offset), (top.epoch.as_str(), 10));

    let read = a.router.read(&channel, Some(&at(4)), 100).await.unwrap();
    assert!(read.recovered, "since in the middle must be recovered");
    assert_eq!(offsets(&read.messages), [5, 6, 7, 8, 9, 10]);

    let read = a.router.read(&channel, Some(&at(4)), 2).await.unwrap();
    assert!(read.recovered, "a limit is not a gap");
    assert_eq!(
        offsets(&read.messages),
        [5, 6],
        "limit must be respected, oldest first"
    );
    let read = a.router.read(&channel, None, 3).await.unwrap();
    assert!(read.recovered);
    assert_eq!(offsets(&read.messages), [1, 2, 3]);

    let other = StreamPosition::new(format!("{}x", top.epoch), 4);
    let read = a.router.read(&channel, Some(&other), 100).await.unwrap();
    assert!(!read.recovered, "another epoch must not be recovered");
    assert_eq!(read.epoch, top.epoch, "read reports the current epoch");

    let read = a.router.read(&channel, Some(&at(11)), 100).await.unwrap();
    assert!(
        !read.recovered,
        "an offset beyond the top must not be recovered"
    );
    let read = a
        .router
        .read(&channel, Some(&at(u64::MAX)), 100)
        .await
        .unwrap();
    assert!(
        !read.recovered,
        "u64::MAX beyond the top must not be recovered"
    );
}

/// A room keeping 3 messages: older `since` values are gaps.
pub async fn case_count_trimming(factory: &dyn ClusterFactory) {
    let short = HistoryPolicy {
        max_len: 3,
        max_age: Duration::from_secs(3600),
    };
    let policies = HistoryPolicies::new(vec![("room:short*".into(), short)]);
    let nodes = start_cluster(factory, 1, policies, LONG_LEASE).await;
    let a = &nodes[0];
    let room = unique("room:short");
    for n in 1..=10 {
        publish(a, &room, None, json(n)).await;
    }
    let epoch = a.router.position(&room).await.unwrap().epoch;
    let at = |offset| StreamPosition::new(epoch.clone(), offset);

    let read = a.router.read(&room, None, 100).await.unwrap();
    assert_eq!(
        offsets(&read.messages),
        [8, 9, 10],
        "only the newest 3 are kept"
    );
    let read = a.router.read(&room, Some(&at(2)), 100).await.unwrap();
    assert!(!read.recovered, "offsets 3..=7 were trimmed: not recovered");
    let read = a.router.read(&room, Some(&at(6)), 100).await.unwrap();
    assert!(!read.recovered, "offset 7 was trimmed: not recovered");
    let read = a.router.read(&room, Some(&at(7)), 100).await.unwrap();
    assert!(read.recovered, "everything after 7 is retained");
    assert_eq!(offsets(&read.messages), [8, 9, 10]);
}

/// A room keeping messages for 1 s: after that they are gone and old `since` is a gap.
pub async fn case_age_trimming(factory: &dyn ClusterFactory) {
    let aged = HistoryPolicy {
        max_len: 100,
        max_age: Duration::from_secs(1),
    };
    let policies = HistoryPolicies::new(vec![("room:aged*".into(), aged)]);
    let nodes = start_cluster(factory, 1, policies, LONG_LEASE).await;
    let a = &nodes[0];
    let room = unique("room:aged");
    for n in 1..=3 {
        publish(a, &room, None, json(n)).await;
    }
    let epoch = a.router.position(&room).await.unwrap().epoch;
    let at = |offset| StreamPosition::new(epoch.clone(), offset);
    let read = a.router.read(&room, Some(&at(0)), 100).await.unwrap();
    assert!(read.recovered);
    assert_eq!(offsets(&read.messages), [1, 2, 3]);

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let read = a.router.read(&room, None, 100).await.unwrap();
    assert!(
        read.messages.is_empty(),
        "messages older than max_age were returned"
    );
    let read = a.router.read(&room, Some(&at(1)), 100).await.unwrap();
    assert!(!read.recovered, "2 and 3 expired: not recovered");
    let read = a.router.read(&room, Some(&at(3)), 100).await.unwrap();
    assert!(read.recovered, "nothing after the top is missing");
    assert!(read.messages.is_empty());

    publish(a, &room, None, json(4)).await;
    let read = a.router.read(&room, Some(&at(3)), 100).await.unwrap();
    assert!(read.recovered);
    assert_eq!(offsets(&read.messages), [4]);
    let read = a.router.read(&room, Some(&at(0)), 100).await.unwrap();
    assert!(!read.recovered, "1..=3 expired: not recovered");
    assert!(
        offsets(&read.messages).iter().all(|&o| o > 3),
        "expired message returned"
    );
}

/// Rooms without history still number their messages; only `since` at the top recovers.
pub async fn case_no_history_rooms(factory: &dyn ClusterFactory) {
    let nodes = start_cluster(factory, 2, HistoryPolicies::default(), LONG_LEASE).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let room = format!("room:{}", unique("plain"));
    b.router.subscribe_room(&room).await.unwrap();
    for n in 1..=5 {
        let out = publish(a, &room, None, json(n)).await;
        assert_eq!(
            out.message.offset, n,
            "rooms without history still get offsets"
        );
    }
    assert_eq!(
        offsets(&b.sink.wait_messages(&room, 5).await),
        [1, 2, 3, 4, 5]
    );
    let top = a.router.position(&room).await.unwrap();
    assert_eq!(top.offset, 5);

    let read = b.router.read(&room, Some(&top), 100).await.unwrap();
    assert!(read.recovered, "since at the top misses nothing");
    assert!(read.messages.is_empty());
    assert_eq!((read.epoch.as_str(), read.offset), (top.epoch.as_str(), 5));
    let before = StreamPosition::new(top.epoch.clone(), 4);
    let read = b.router.read(&room, Some(&before), 100).await.unwrap();
    assert!(!read.recovered, "offset 5 is not retained: not recovered");
    assert!(
        read.messages.is_empty(),
        "a room without history returned messages"
    );
    let read = b.router.read(&room, None, 100).await.unwrap();
    assert!(read.messages.is_empty());
}

/// Acks only move forward within an epoch; a new epoch replaces.
pub async fn case_acks(factory: &dyn ClusterFactory) {
    let nodes = start_cluster(factory, 2, HistoryPolicies::default(), LONG_LEASE).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let user = unique("acker");
    let epoch = a
        .router
        .position(&format!("user:{user}"))
        .await
        .unwrap()
        .epoch;

    assert_eq!(
        a.router.acked(&user).await.unwrap(),
        None,
        "unknown user has no ack"
    );
    a.router
        .ack(&user, &StreamPosition::new(epoch.clone(), 5))
        .await
        .unwrap();
    b.router
        .ack(&user, &StreamPosition::new(epoch.clone(), 3))
        .await
        .unwrap();
    let acked = b.router.acked(&user).await.unwrap();
    assert_eq!(
        acked,
        Some(StreamPosition::new(epoch.clone(), 5)),
        "acks moved back"
    );

    let newer = format!("{epoch}n");
    a.router
        .ack(&user, &StreamPosition::new(newer.clone(), 2))
        .await
        .unwrap();
    let acked = a.router.acked(&user).await.unwrap();
    assert_eq!(
        acked,
        Some(StreamPosition::new(newer, 2)),
        "a new epoch replaces"
    );
    let stranger = unique("stranger");
    assert_eq!(b.router.acked(&stranger).await.unwrap(), None);
}

/// A diverged history starts a new epoch (once): resumes from the old one are not
/// recovered, the retained messages and new ones are the new epoch's, offsets go on.
pub async fn case_reset_epoch(factory: &dyn ClusterFactory) {
    let nodes = start_cluster(factory, 2, HistoryPolicies::default(), LONG_LEASE).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let channel = format!("user:{}", unique("diverged"));
    for n in 1..=3 {
        publish(a, &channel, None, json(n)).await;
    }
    let old = a.router.position(&channel).await.unwrap();
    assert_eq!(old.offset, 3);
    b.router.reset_epoch(&channel, &old.epoch).await.unwrap();
    let new = a.router.position(&channel).await.unwrap();
    assert_ne!(new.epoch, old.epoch, "a new epoch");
    // A second reset of the old epoch (another node found the same divergence) is a no-op.
    a.router.reset_epoch(&channel, &old.epoch).await.unwrap();
    assert_eq!(a.router.position(&channel).await.unwrap(), new);
    let read = b
        .router
        .read(
            &channel,
            Some(&StreamPosition::new(old.epoch.clone(), 2)),
            100,
        )
        .await
        .unwrap();
    assert!(
        !read.recovered,
        "a resume from the diverged epoch is not recovered"
    );
    assert_eq!(read.epoch, new.epoch);
    assert!(
        read.messages.iter().all(|m| m.epoch == new.epoch),
        "retained messages are the new epoch's"
    );
    let out = publish(a, &channel, None, json(4)).await;
    assert_eq!(out.message.epoch, new.epoch);
    assert_eq!(
        out.message.offset,
        new.offset + 1,
        "offsets go on in the new epoch"
    );
    let read = b
        .router
        .read(
            &channel,
            Some(&StreamPosition::new(new.epoch.clone(), new.offset)),
            100,
        )
        .await
        .unwrap();
    assert!(read.recovered);
    assert_eq!(offsets(&read.messages), [new.offset + 1]);
}
