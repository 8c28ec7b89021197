//! The shared router behaviour suite against a real Redis Cluster: three primaries with
//! a replica each (`deploy/redis-cluster.sh` through the test support), shared by every
//! case (each case uses its own key prefix). Needs the `testsuite` feature and
//! `redis-server` / `redis-cli`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use switchboard_router::testsuite::redis_cluster::RedisCluster;
use switchboard_router::testsuite::ClusterFactory;
use switchboard_router::{HistoryPolicies, RedisRouter, RedisSettings, Router};

/// One Redis Cluster for the whole test binary (starting one takes seconds).
fn cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(RedisCluster::start)
}

struct ClusterBackend;

#[async_trait]
impl ClusterFactory for ClusterBackend {
    async fn cluster(
        &self,
        nodes: usize,
        policies: HistoryPolicies,
        lease: Duration,
    ) -> Vec<(String, Arc<dyn Router>)> {
        let url = tokio::task::block_in_place(|| cluster().url());
        let prefix = format!("t{}:", rand_suffix());
        (0..nodes)
            .map(|i| {
                let id = format!("node-{i}");
                let mut s = RedisSettings::new(url.clone(), id.clone());
                s.prefix = prefix.clone();
                s.events_stream = format!("{prefix}events");
                s.policies = policies.clone();
                s.lease = lease;
                s.probe_interval = Duration::from_millis(250);
                let router: Arc<dyn Router> = RedisRouter::new(s).expect("settings");
                (id, router)
            })
            .collect()
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

switchboard_router::router_testsuite!(ClusterBackend);
