//! The shared router behaviour suite against a real Redis Cluster: three primaries with
//! a replica each (`deploy/redis-cluster.sh` through the test support), shared by every
//! case (each case uses its own key prefix). Needs the `testsuite` feature and
//! `redis-server` / `redis-cli`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use switchboard_router::testsuite::redis_cluster::RedisCluster;
use switchboard_router::testsuite::{redis_routers, ClusterFactory};
use switchboard_router::{HistoryPolicies, Router};

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
        redis_routers(&url, nodes, policies, lease)
    }
}

switchboard_router::router_testsuite!(ClusterBackend);
