//! The shared router behaviour suite against Redis: every test starts its own
//! `redis-server` on a free port. Needs the `testsuite` feature and `redis-server`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use switchboard_router::testsuite::redis_server::RedisServer;
use switchboard_router::testsuite::ClusterFactory;
use switchboard_router::{HistoryPolicies, RedisRouter, RedisSettings, Router};

struct RedisFactory {
    server: RedisServer,
}

impl RedisFactory {
    fn start() -> RedisFactory {
        RedisFactory {
            server: RedisServer::start(),
        }
    }
}

#[async_trait]
impl ClusterFactory for RedisFactory {
    async fn cluster(
        &self,
        nodes: usize,
        policies: HistoryPolicies,
        lease: Duration,
    ) -> Vec<(String, Arc<dyn Router>)> {
        let prefix = format!("t{}:", rand_suffix());
        (0..nodes)
            .map(|i| {
                let id = format!("node-{i}");
                let mut s = RedisSettings::new(self.server.url(), id.clone());
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

switchboard_router::router_testsuite!(RedisFactory::start());
