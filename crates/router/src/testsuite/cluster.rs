//! Registry, leases, presence, cross-node disconnect and shutdown.

use std::time::Duration;

use switchboard_proto::frames::PresenceEvent;
use tokio::time::Instant;

use super::{conn, grace, json, now_ms, publish, start_cluster, unique, ClusterFactory};
use super::{PresenceRecord, LONG_LEASE};
use crate::{HistoryPolicies, NodeStatus, PresenceInfo};

fn event(channel: &str, user: &str, event: PresenceEvent) -> PresenceRecord {
    PresenceRecord {
        channel: channel.to_owned(),
        user: user.to_owned(),
        event,
    }
}

/// Connections are visible cluster-wide; nodes report their heartbeat status.
pub async fn case_registry(factory: &dyn ClusterFactory) {
    let started_ms = now_ms();
    let nodes = start_cluster(factory, 2, HistoryPolicies::default(), LONG_LEASE).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let user = unique("reg");

    assert!(a.router.connections(&user).await.unwrap().is_empty());
    let on_a = conn(&user, "c-1", &a.id);
    let on_b = conn(&user, "c-2", &b.id);
    a.router.register(on_a.clone(), 0).await.unwrap();
    b.router.register(on_b.clone(), 0).await.unwrap();
    let mut seen = b.router.connections(&user).await.unwrap();
    seen.sort_by(|x, y| x.conn_id.cmp(&y.conn_id));
    assert_eq!(
        seen,
        [on_a.clone(), on_b.clone()],
        "both connections, as registered"
    );

    a.router.unregister(&user, "c-1").await.unwrap();
    let seen = b.router.connections(&user).await.unwrap();
    assert_eq!(seen, [on_b], "c-1 was unregistered");
    b.router.unregister(&user, "c-2").await.unwrap();
    assert!(a.router.connections(&user).await.unwrap().is_empty());

    let a_status = NodeStatus {
        connections: 3,
        draining: false,
    };
    let b_status = NodeStatus {
        connections: 5,
        draining: true,
    };
    a.router.heartbeat(a_status).await.unwrap();
    b.router.heartbeat(b_status).await.unwrap();
    let listed = a.router.nodes().await.unwrap();
    for (node, status) in [(a, a_status), (b, b_status)] {
        let info = listed
            .iter()
            .find(|n| n.node == node.id)
            .unwrap_or_else(|| panic!("node {} missing from nodes(): {listed:?}", node.id));
        assert_eq!(
            info.connections, status.connections,
            "{}: connections",
            node.id
        );
        assert_eq!(info.draining, status.draining, "{}: draining", node.id);
        assert!(
            info.since_ms + 1000 >= started_ms && info.since_ms <= now_ms() + 1000,
            "{}: since_ms {} is not the start time",
            node.id,
            info.since_ms
        );
    }
    assert_eq!(listed.len(), 2, "only the two started nodes: {listed:?}");
}

/// A node that stops heartbeating disappears, with its connections and presence, within
/// the lease plus one second; it gets no more deliveries.
pub async fn case_lease_expiry(factory: &dyn ClusterFactory) {
    let lease = Duration::from_secs(1);
    let nodes = start_cluster(factory, 2, HistoryPolicies::default(), lease).await;
    let last_beat = Instant::now();
    let (a, b) = (&nodes[0], &nodes[1]);
    let user = unique("ghost");
    let room = format!("room:{}", unique("lease"));
    b.router
        .register(conn(&user, "c-b", &b.id), 0)
        .await
        .unwrap();
    b.router.join(&room, &user, "c-b").await.unwrap();
    let listed = a.router.nodes().await.unwrap();
    assert!(
        listed.iter().any(|n| n.node == b.id),
        "B is live after start"
    );
    assert_eq!(a.router.connections(&user).await.unwrap().len(), 1);

    let deadline = last_beat + lease + Duration::from_millis(1500);
    loop {
        a.router.heartbeat(NodeStatus::default()).await.unwrap();
        let listed = a.router.nodes().await.unwrap();
        let b_listed = listed.iter().any(|n| n.node == b.id);
        let conns = a.router.connections(&user).await.unwrap();
        let presence = a.router.presence(&room).await.unwrap();
        if !b_listed && conns.is_empty() && presence.users.is_empty() {
            assert!(listed.iter().any(|n| n.node == a.id), "A kept heartbeating");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B's entries outlived its lease + 1 s: listed={b_listed} conns={conns:?} \
             presence={presence:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = publish(a, &format!("user:{user}"), None, json(1)).await;
    assert!(
        !out.online && out.nodes == 0,
        "routed to an expired node: {out:?}"
    );
    grace().await;
    assert!(
        b.sink.messages(&out.message.channel).is_empty(),
        "expired node got it"
    );
}

/// Join/leave events on first/last connection only; presence de-duplicated.
pub async fn case_presence(factory: &dyn ClusterFactory) {
    let nodes = start_cluster(factory, 3, HistoryPolicies::default(), LONG_LEASE).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let room = format!("room:{}", unique("presence"));
    let zoe = unique("zoe");
    let amy = unique("amy");
    a.router.subscribe_room(&room).await.unwrap();
    b.router.subscribe_room(&room).await.unwrap();

    assert!(
        a.router.join(&room, &zoe, "z-1").await.unwrap(),
        "first connection"
    );
    assert!(
        !b.router.join(&room, &zoe, "z-2").await.unwrap(),
        "second connection"
    );
    for node in [a, b] {
        let got = node.sink.wait_presence(&room, 1).await;
        assert_eq!(got[0], event(&room, &zoe, PresenceEvent::Join));
    }
    assert!(b.router.join(&room, &amy, "a-1").await.unwrap());
    let mut users = vec![amy.clone(), zoe.clone()];
    users.sort();
    let info = c.router.presence(&room).await.unwrap();
    assert_eq!(
        info,
        PresenceInfo {
            users,
            connections: 3
        },
        "sorted, de-duplicated"
    );
    for node in [a, b] {
        node.sink.wait_presence(&room, 2).await;
    }

    assert!(
        !a.router.leave(&room, &zoe, "z-1").await.unwrap(),
        "zoe is still on B"
    );
    assert!(
        !a.router.leave(&room, &zoe, "nope").await.unwrap(),
        "unknown connection"
    );
    grace().await;
    for node in [a, b] {
        let got = node.sink.presence_events(&room);
        assert_eq!(
            got.len(),
            2,
            "{}: only zoe's and amy's joins: {got:?}",
            node.id
        );
    }
    assert!(
        c.sink.presence_events(&room).is_empty(),
        "C is not subscribed"
    );
    assert!(
        b.router.leave(&room, &zoe, "z-2").await.unwrap(),
        "last connection"
    );
    for node in [a, b] {
        let got = node.sink.wait_presence(&room, 3).await;
        assert_eq!(got[2], event(&room, &zoe, PresenceEvent::Leave));
    }
    let info = a.router.presence(&room).await.unwrap();
    assert_eq!(
        info,
        PresenceInfo {
            users: vec![amy],
            connections: 1
        }
    );
    let unknown = format!("room:{}", unique("empty"));
    assert_eq!(
        c.router.presence(&unknown).await.unwrap(),
        PresenceInfo::default()
    );
}

/// `disconnect_user` closes the user's connections on every node and sums the counts.
pub async fn case_disconnect_user(factory: &dyn ClusterFactory) {
    let nodes = start_cluster(factory, 2, HistoryPolicies::default(), LONG_LEASE).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let user = unique("kick");
    a.router
        .register(conn(&user, "c-a", &a.id), 0)
        .await
        .unwrap();
    b.router
        .register(conn(&user, "c-b1", &b.id), 0)
        .await
        .unwrap();
    b.router
        .register(conn(&user, "c-b2", &b.id), 0)
        .await
        .unwrap();
    a.sink.set_disconnect_count(&user, 1);
    b.sink.set_disconnect_count(&user, 2);

    let closed = a
        .router
        .disconnect_user(&user, 4003, "kicked")
        .await
        .unwrap();
    assert_eq!(closed, 3, "1 connection on A + 2 on B");
    for node in [a, b] {
        // Delivery of the request may be asynchronous (Redis pub/sub).
        let call = node
            .sink
            .wait_for(&format!("{} asked to disconnect", node.id), |s| {
                s.disconnects().into_iter().find(|d| d.user == user)
            })
            .await;
        assert_eq!((call.code, call.reason.as_str()), (4003, "kicked"));
    }
    let nobody = unique("nobody");
    assert_eq!(
        b.router
            .disconnect_user(&nobody, 4003, "kicked")
            .await
            .unwrap(),
        0
    );
}

/// After shutdown a node's connections, presence and subscriptions are gone.
pub async fn case_shutdown(factory: &dyn ClusterFactory) {
    let nodes = start_cluster(factory, 2, HistoryPolicies::default(), LONG_LEASE).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let user = unique("leaver");
    let room = format!("room:{}", unique("shutdown"));
    a.router.subscribe_room(&room).await.unwrap();
    b.router.subscribe_room(&room).await.unwrap();
    b.router
        .register(conn(&user, "c-1", &b.id), 0)
        .await
        .unwrap();
    assert!(b.router.join(&room, &user, "c-1").await.unwrap());
    a.sink.wait_presence(&room, 1).await;

    b.router.shutdown().await;
    assert!(!b.router.is_up(), "B is up after shutdown");
    assert!(a.router.is_up(), "A is still up");
    let got = a.sink.wait_presence(&room, 2).await;
    assert_eq!(got[1], event(&room, &user, PresenceEvent::Leave));
    assert!(a.router.connections(&user).await.unwrap().is_empty());
    assert_eq!(
        a.router.presence(&room).await.unwrap(),
        PresenceInfo::default()
    );
    let listed = a.router.nodes().await.unwrap();
    assert!(
        listed.iter().all(|n| n.node != b.id),
        "B still listed: {listed:?}"
    );
    let out = publish(a, &room, None, json(1)).await;
    assert_eq!(out.nodes, 1, "only A is still subscribed");
    let out = publish(a, &format!("user:{user}"), None, json(2)).await;
    assert!(
        !out.online && out.nodes == 0,
        "the user's only connection was on B"
    );
}
