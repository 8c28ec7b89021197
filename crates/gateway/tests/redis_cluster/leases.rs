//! The node leases live in one slot (`<prefix>{nodes}`): a failover of the primary that
//! serves it stops every node's heartbeat at once. Nodes that are alive the whole time,
//! with every socket open, must not be reaped when Redis comes back (no synthetic
//! `node_lost` disconnects in the events stream, no user going offline), as long as the
//! failover is shorter than the lease (6 s here; the failover takes about 4 s with the
//! node timeout of 2 s).

use super::*;

use support::cluster::{Cluster, Store};
use switchboard_router::testsuite::redis_cluster::slot_of;

// Fails today: the lease deadlines in Redis keep running while nobody can renew them;
// the first node whose heartbeat goes through after the failover finds the others'
// deadlines passed and reaps them (see the commit that added this test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_of_the_lease_shard_reaps_no_live_node() {
    let redis = own_cluster(3, 1, &[]).await;
    let c = Cluster::start_with(Store::Cluster(redis.clone()), 3, &["--lease-seconds", "6"]).await;
    wait_all_ready(&c.nodes, Duration::from_secs(20)).await;
    let mut clients = Vec::new();
    for (i, node) in c.nodes.iter().enumerate() {
        clients.push(node.connect(&format!("lease{i}")).await.0);
    }
    let victim = redis.primary_of_slot(slot_of("nodes"));
    // Worst case within the lease: the kill comes just before the nodes' next heartbeat
    // (every lease / 3 = 2 s), right after one renewed their leases.
    let leases = format!("{}{{nodes}}", c.prefix);
    let node0 = c.nodes[0].node_id.clone();
    let deadline = || c.redis_cmd(&["ZSCORE", &leases, &node0]).text();
    let first = deadline();
    poll(
        Duration::from_secs(10),
        "a heartbeat renews the lease",
        || async {
            if deadline() != first {
                Ok(())
            } else {
                Err(first.clone())
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let killed = Instant::now();
    blocking({
        let redis = redis.clone();
        move || redis.kill(victim)
    })
    .await;
    blocking({
        let redis = redis.clone();
        move || redis.wait_failover(victim, Duration::from_secs(60))
    })
    .await;
    let failover = killed.elapsed();
    wait_all_ready(&c.nodes, Duration::from_secs(30)).await;
    // A whole lease after the failover: any reap has happened by then.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let reaped = c.synthetic_disconnects();
    println!(
        "measured: the lease shard failed over in {:.2} s (lease 6 s); synthetic \
         disconnects {reaped:?}",
        failover.as_secs_f64()
    );
    assert!(reaped.is_empty(), "live nodes were reaped: {reaped:?}");
    for (i, node) in c.nodes.iter().enumerate() {
        let (status, body) = node.api("GET", &format!("/v1/users/lease{i}"), None).await;
        assert_eq!(
            (status, &body["online"]),
            (200, &serde_json::json!(true)),
            "{body}"
        );
    }
    drop(clients);
}
