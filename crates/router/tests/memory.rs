//! The shared router behaviour suite against the in-process [`MemoryCluster`], one test
//! per case. Needs the `testsuite` feature:
//! `cargo test -p switchboard-router --features testsuite`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use switchboard_router::memory::MemoryCluster;
use switchboard_router::testsuite::ClusterFactory;
use switchboard_router::{HistoryPolicies, Router};

/// Every cluster is a fresh [`MemoryCluster`] with nodes `node-0`, `node-1`, …
struct MemoryFactory;

#[async_trait]
impl ClusterFactory for MemoryFactory {
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

switchboard_router::router_testsuite!(MemoryFactory);
