//! The shared suite on memory (one test per case, in `shared_suite`), and memory-specific
//! behaviour.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use switchboard_proto::frames::PresenceEvent;

use super::{MemoryCluster, MemoryRouter};
use crate::testsuite::{conn, json, ClusterFactory, RecordingSink};
use crate::{
    Backplane, History, HistoryPolicies, HistoryPolicy, Presence, PublishRequest, Registry, Router,
    RouterError,
};

struct Factory;

#[async_trait]
impl ClusterFactory for Factory {
    async fn cluster(
        &self,
        nodes: usize,
        policies: HistoryPolicies,
        lease: Duration,
    ) -> Vec<(String, Arc<dyn Router>)> {
        let cluster = MemoryCluster::new(policies, lease);
        (0..nodes)
            .map(|i| {
                let id = format!("node-{i}");
                let router: Arc<dyn Router> = cluster.node(id.clone());
                (id, router)
            })
            .collect()
    }
}

/// The shared behaviour suite on memory, one test per case
/// (`memory::tests::shared_suite::case_…`).
mod shared_suite {
    use super::Factory;

    crate::router_testsuite!(Factory);
}

const LEASE: Duration = Duration::from_secs(10);

async fn started(router: &Arc<MemoryRouter>) -> Arc<RecordingSink> {
    let sink = RecordingSink::new(router.node_id());
    router.start(sink.clone()).await.unwrap();
    sink
}

#[tokio::test(start_paused = true)]
async fn lease_expiry_emits_leave_and_stops_delivery() {
    let cluster = MemoryCluster::new(HistoryPolicies::default(), LEASE);
    let (a, b) = (cluster.node("a"), cluster.node("b"));
    let sink_a = started(&a).await;
    let sink_b = started(&b).await;
    a.subscribe_room("room:r").await.unwrap();
    b.subscribe_room("room:r").await.unwrap();
    b.register(conn("u", "c1", "b"), 0).await.unwrap();
    assert!(b.join("room:r", "u", "c1").await.unwrap());

    tokio::time::advance(LEASE.saturating_sub(Duration::from_millis(1))).await;
    a.heartbeat(Default::default()).await.unwrap();
    assert_eq!(a.nodes().await.unwrap().len(), 2, "B is within its lease");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(a.nodes().await.unwrap().len(), 1, "B's lease ran out");
    assert!(a.connections("u").await.unwrap().is_empty());
    assert!(a.presence("room:r").await.unwrap().users.is_empty());
    let events = sink_a.presence_events("room:r");
    assert_eq!(events.last().map(|e| e.event), Some(PresenceEvent::Leave));
    assert_eq!(
        sink_b.presence_events("room:r").len(),
        1,
        "dead B got only the join"
    );

    let out = a
        .publish(PublishRequest {
            channel: "room:r".into(),
            from: None,
            data: json(1),
            idempotency: None,
        })
        .await
        .unwrap();
    assert_eq!(out.nodes, 1, "a dead node gets no deliveries");

    // A late heartbeat revives B, but its purged entries stay gone.
    b.heartbeat(Default::default()).await.unwrap();
    assert_eq!(a.nodes().await.unwrap().len(), 2);
    assert!(a.connections("u").await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn age_trimming_follows_paused_time() {
    let policy = HistoryPolicy {
        max_len: 10,
        max_age: Duration::from_secs(60),
    };
    let policies = HistoryPolicies::new(vec![("room:*".into(), policy)]);
    let a = MemoryCluster::standalone("a", policies, LEASE);
    started(&a).await;
    let publish = |n| {
        a.publish(PublishRequest {
            channel: "room:x".into(),
            from: None,
            data: json(n),
            idempotency: None,
        })
    };
    publish(1).await.unwrap();
    tokio::time::advance(Duration::from_secs(30)).await;
    publish(2).await.unwrap();
    tokio::time::advance(Duration::from_secs(31)).await;
    let read = a.read("room:x", None, 10).await.unwrap();
    assert_eq!(read.messages.len(), 1, "message 1 is 61 s old");
    assert_eq!(read.messages[0].offset, 2);
}

#[tokio::test]
async fn rejects_bad_input_without_panicking() {
    let cluster = MemoryCluster::new(HistoryPolicies::default(), LEASE);
    let a = cluster.node("a");
    let not_started = a.register(conn("u", "c1", "a"), 0).await;
    assert!(matches!(not_started, Err(RouterError::Unavailable(_))));
    let publish = a
        .publish(PublishRequest {
            channel: "room:x".into(),
            from: None,
            data: json(1),
            idempotency: None,
        })
        .await;
    assert!(matches!(publish, Err(RouterError::Unavailable(_))));

    started(&a).await;
    let foreign = a.register(conn("u", "c1", "b"), 0).await;
    assert!(matches!(foreign, Err(RouterError::BadRequest(_))));
    let empty = a.register(conn("", "c1", "a"), 0).await;
    assert!(matches!(empty, Err(RouterError::BadRequest(_))));
    assert!(matches!(
        a.read("", None, 1).await,
        Err(RouterError::BadRequest(_))
    ));
    assert!(matches!(
        a.subscribe_room("").await,
        Err(RouterError::BadRequest(_))
    ));
    assert!(!a.leave("room:none", "u", "c1").await.unwrap());
    a.unregister("nobody", "none").await.unwrap();
    a.unsubscribe_room("room:none").await.unwrap();

    // `user:` with no id is just an offline user channel.
    let out = a
        .publish(PublishRequest {
            channel: "user:".into(),
            from: None,
            data: json(1),
            idempotency: None,
        })
        .await
        .unwrap();
    assert!(!out.online);
}

#[tokio::test]
async fn restart_after_shutdown() {
    let a = MemoryCluster::standalone("a", HistoryPolicies::default(), LEASE);
    assert!(!a.is_up());
    started(&a).await;
    a.shutdown().await;
    assert!(!a.is_up());
    assert!(a.nodes().await.unwrap().is_empty());
    let sink = started(&a).await;
    a.register(conn("u", "c1", "a"), 0).await.unwrap();
    let out = a
        .publish(PublishRequest {
            channel: "user:u".into(),
            from: None,
            data: json(1),
            idempotency: None,
        })
        .await
        .unwrap();
    assert_eq!(out.nodes, 1);
    assert_eq!(
        sink.messages("user:u").len(),
        1,
        "memory delivers synchronously"
    );
}
