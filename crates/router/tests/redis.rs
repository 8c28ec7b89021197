//! The shared router behaviour suite against Redis: every test starts its own
//! `redis-server` on a free port. Needs the `testsuite` feature and `redis-server`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use switchboard_router::testsuite::redis_server::RedisServer;
use switchboard_router::testsuite::{redis_routers, ClusterFactory};
use switchboard_router::{HistoryPolicies, Router};

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
        redis_routers(&self.server.url(), nodes, policies, lease)
    }
}

switchboard_router::router_testsuite!(RedisFactory::start());
