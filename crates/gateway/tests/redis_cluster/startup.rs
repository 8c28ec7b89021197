//! Deployments the node refuses at startup, before binding a port: a `redis-cluster://`
//! URL that points at a plain `redis-server`, seeds nobody listens on, a cluster with
//! slots no primary serves (removed with `CLUSTER DELSLOTS`, or held by a primary that
//! died without a replica to take over) — exit status 1 and a message naming the
//! problem — and a malformed URL (exit 64, invalid configuration).

use super::*;

use support::free_port;
use support::refused::{assert_refused, run_with_url};
use switchboard_router::testsuite::redis_server::RedisServer;

#[tokio::test]
async fn a_cluster_url_to_a_plain_redis_server_is_refused() {
    let server = blocking(RedisServer::start).await;
    let url = format!("redis-cluster://127.0.0.1:{}", server.port);
    assert_refused(
        "redis-cluster:// to a plain redis-server",
        run_with_url(&url).await,
        1,
        &[
            "not a Redis Cluster node",
            &format!("127.0.0.1:{}", server.port),
        ],
    );
}

#[tokio::test]
async fn unreachable_seeds_are_refused() {
    let (a, b) = (free_port(), free_port());
    let url = format!("redis-cluster://127.0.0.1:{a}?node=127.0.0.1:{b}");
    assert_refused(
        "seeds nobody listens on",
        run_with_url(&url).await,
        1,
        &[
            "no Redis Cluster seed answered",
            &format!("127.0.0.1:{a}"),
            &format!("127.0.0.1:{b}"),
        ],
    );
}

#[tokio::test]
async fn malformed_cluster_urls_are_invalid_configuration() {
    for (url, says) in [
        ("redis-cluster://127.0.0.1:7000?node=nope", "node=nope"),
        ("redis-cluster://127.0.0.1:7000/3", "only database 0"),
        (
            "redis-cluster://127.0.0.1:7000?bogus=1",
            "unknown URL parameter",
        ),
    ] {
        assert_refused(
            url,
            run_with_url(url).await,
            64,
            &["invalid configuration", "redis", says],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_slots_nobody_serves_is_refused() {
    // Three primaries without replicas: nobody takes over a dead one's slots.
    let redis = own_cluster(3, 0, &[]).await;
    let url = redis.url();
    let owner = redis.primary_of_slot(0);

    // Slots removed from their primary.
    let reply = redis.cmd(owner, &["CLUSTER", "DELSLOTSRANGE", "0", "99"]);
    assert!(reply.is_ok(), "DELSLOTSRANGE: {reply:?}");
    assert_refused(
        "100 slots without a primary (CLUSTER DELSLOTSRANGE)",
        run_with_url(&url).await,
        1,
        &["Redis Cluster", "not ready", "cluster_state:fail"],
    );
    let reply = redis.cmd(owner, &["CLUSTER", "ADDSLOTSRANGE", "0", "99"]);
    assert!(reply.is_ok(), "ADDSLOTSRANGE: {reply:?}");
    blocking({
        let redis = redis.clone();
        move || redis.wait_ok(Duration::from_secs(30))
    })
    .await;

    // A primary dead with no replica to promote: once the others mark it failed, the
    // cluster is down for its slots.
    let victim = redis.primaries()[2];
    let survivor = redis.primaries()[0];
    blocking({
        let redis = redis.clone();
        move || redis.kill(victim)
    })
    .await;
    poll(
        Duration::from_secs(30),
        "the cluster marks the dead primary failed",
        || {
            let redis = redis.clone();
            async move {
                let info = redis.cmd(survivor, &["CLUSTER", "INFO"]).text();
                if info.contains("cluster_state:fail") {
                    Ok(())
                } else {
                    Err(info.lines().next().unwrap_or_default().to_owned())
                }
            }
        },
    )
    .await;
    assert_refused(
        "a dead primary without a replica",
        run_with_url(&url).await,
        1,
        &["Redis Cluster", "cluster_state:fail"],
    );
}
