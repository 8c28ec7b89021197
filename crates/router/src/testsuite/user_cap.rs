//! The per-user connection cap of `Registry::register`: cluster-wide, atomic under
//! concurrent registrations, freed by unregistering and by a dead node's reaping.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{conn, grace, json, publish, start_cluster, unique, ClusterFactory, LONG_LEASE};
use crate::{HistoryPolicies, NodeStatus, Registration, Router};

/// The ids of `user`'s registered connections, as `node` sees them.
async fn registered(router: &Arc<dyn Router>, user: &str) -> BTreeSet<String> {
    router
        .connections(user)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.conn_id)
        .collect()
}

fn ids(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// A user at the cap is refused on any node, and a refusal writes nothing and routes
/// nothing; re-registering a known id is not refused; 0 is no cap; other users are not
/// affected; unregistering frees a slot.
pub async fn case_user_cap(factory: &dyn ClusterFactory) {
    const CAP: usize = 3;
    let nodes = start_cluster(factory, 2, HistoryPolicies::default(), LONG_LEASE).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let user = unique("capped");
    let other = unique("other");
    for id in ["c-1", "c-2", "c-3"] {
        let r = a.router.register(conn(&user, id, &a.id), CAP).await;
        assert_eq!(r, Ok(Registration::Registered), "{id}: below the cap");
    }
    let r = b.router.register(conn(&user, "c-4", &b.id), CAP).await;
    assert_eq!(r, Ok(Registration::UserAtCap), "the 4th, on another node");
    assert_eq!(
        registered(&b.router, &user).await,
        ids(&["c-1", "c-2", "c-3"]),
        "the refused connection is not registered"
    );
    // B holds no connection of the user: the refusal left it nothing to receive.
    let out = publish(a, &format!("user:{user}"), None, json(1)).await;
    assert_eq!(out.nodes, 1, "routed to A only: {out:?}");
    grace().await;
    assert!(
        b.sink.messages(&out.message.channel).is_empty(),
        "a refused registration routes the user's channel to its node"
    );

    let r = a.router.register(conn(&user, "c-2", &a.id), CAP).await;
    assert_eq!(
        r,
        Ok(Registration::Registered),
        "re-registering a known id at the cap"
    );
    let r = b.router.register(conn(&other, "o-1", &b.id), CAP).await;
    assert_eq!(r, Ok(Registration::Registered), "another user");

    a.router.unregister(&user, "c-2").await.unwrap();
    let r = b.router.register(conn(&user, "c-4", &b.id), CAP).await;
    assert_eq!(
        r,
        Ok(Registration::Registered),
        "unregistering freed a slot"
    );
    let r = b.router.register(conn(&user, "c-5", &b.id), CAP).await;
    assert_eq!(r, Ok(Registration::UserAtCap), "at the cap again");
    let r = b.router.register(conn(&user, "c-5", &b.id), 0).await;
    assert_eq!(r, Ok(Registration::Registered), "0 = no cap");
    let r = a.router.register(conn(&user, "c-6", &a.id), CAP).await;
    assert_eq!(r, Ok(Registration::UserAtCap), "over the cap counts too");
    assert_eq!(
        registered(&a.router, &user).await,
        ids(&["c-1", "c-3", "c-4", "c-5"])
    );
}

/// Many registrations of one user at once, spread over the nodes: exactly the cap of
/// them succeed, and exactly those are registered.
pub async fn case_user_cap_concurrent(factory: &dyn ClusterFactory) {
    const CAP: usize = 5;
    const ATTEMPTS: usize = 20;
    let nodes = start_cluster(factory, 3, HistoryPolicies::default(), LONG_LEASE).await;
    let user = unique("storm");

    let round = |prefix: &'static str, attempts: usize| {
        let tasks: Vec<_> = (0..attempts)
            .map(|i| {
                let node = &nodes[i % nodes.len()];
                let (router, conn) = (
                    node.router.clone(),
                    conn(&user, &format!("{prefix}-{i}"), &node.id),
                );
                tokio::spawn(async move {
                    let id = conn.conn_id.clone();
                    (id, router.register(conn, CAP).await.unwrap())
                })
            })
            .collect();
        async move {
            let mut won = BTreeSet::new();
            for task in tasks {
                let (id, r) = task.await.unwrap();
                if r == Registration::Registered {
                    won.insert(id);
                }
            }
            won
        }
    };

    let won = round("c", ATTEMPTS).await;
    assert_eq!(
        won.len(),
        CAP,
        "{ATTEMPTS} concurrent registrations with cap {CAP}: {won:?}"
    );
    assert_eq!(registered(&nodes[0].router, &user).await, won);

    // Two slots free: of ten more at once, two succeed.
    let freed: Vec<String> = won.iter().take(2).cloned().collect();
    for id in &freed {
        let i: usize = id.trim_start_matches("c-").parse().unwrap();
        nodes[i % nodes.len()]
            .router
            .unregister(&user, id)
            .await
            .unwrap();
    }
    let second = round("d", 10).await;
    assert_eq!(second.len(), 2, "two freed slots: {second:?}");
    let expected: BTreeSet<String> = won
        .iter()
        .filter(|id| !freed.contains(id))
        .chain(&second)
        .cloned()
        .collect();
    assert_eq!(registered(&nodes[1].router, &user).await, expected);
}

/// A dead node's connections stop counting once the registry has removed them (within
/// the lease plus one second): the user may connect again elsewhere.
pub async fn case_user_cap_dead_node(factory: &dyn ClusterFactory) {
    const CAP: usize = 2;
    let lease = Duration::from_secs(1);
    let nodes = start_cluster(factory, 2, HistoryPolicies::default(), lease).await;
    let last_beat = Instant::now();
    let (a, b) = (&nodes[0], &nodes[1]);
    let user = unique("orphan");
    for id in ["b-1", "b-2"] {
        let r = b.router.register(conn(&user, id, &b.id), CAP).await;
        assert_eq!(r, Ok(Registration::Registered), "{id}");
    }
    let r = a.router.register(conn(&user, "a-1", &a.id), CAP).await;
    assert_eq!(r, Ok(Registration::UserAtCap), "B holds the cap");

    // B stops heartbeating; A goes on and, once B's entries are gone, gets the slots.
    let deadline = last_beat + lease + Duration::from_millis(1500);
    loop {
        a.router.heartbeat(NodeStatus::default()).await.unwrap();
        if a.router.connections(&user).await.unwrap().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B's connections outlived its lease + 1 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in ["a-1", "a-2"] {
        let r = a.router.register(conn(&user, id, &a.id), CAP).await;
        assert_eq!(r, Ok(Registration::Registered), "{id} after B's reaping");
    }
    let r = a.router.register(conn(&user, "a-3", &a.id), CAP).await;
    assert_eq!(r, Ok(Registration::UserAtCap), "the cap holds again");
}
