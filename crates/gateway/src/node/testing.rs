//! A started node for unit tests: the embedded backplane, no listeners.

use std::sync::Arc;

use switchboard_router::Backplane as _;

use super::Node;
use crate::config::{Config, ServeArgs};
use crate::hub::Hub;

/// The HMAC secret test nodes verify tokens with.
pub const SECRET: &str = "unit-test-secret-0123456789abcdef";
/// The server API key of test nodes.
pub const API_KEY: &str = "unit-test-api-key";

/// A node with `args` (the secret, API key and node id filled in when unset), its
/// embedded backplane started, on the current tokio runtime.
pub async fn started(mut args: ServeArgs) -> Arc<Node> {
    args.jwt_secret.get_or_insert_with(|| SECRET.into());
    args.api_key.get_or_insert_with(|| vec![API_KEY.into()]);
    args.node_id.get_or_insert_with(|| "gw-t".into());
    let config = Config::from_parts(&args, None).expect("valid test config");
    let router = switchboard_router::memory::MemoryCluster::standalone(
        config.node_id.clone(),
        config.history.clone(),
        config.lease,
    );
    let hub = Arc::new(Hub::new().0);
    router
        .start(hub.clone())
        .await
        .expect("the embedded backplane starts");
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .build_recorder()
        .handle();
    Arc::new(Node::new(config, router, hub, handle))
}

/// A current-thread runtime and a [`started`] node on it, for tests that are not async
/// (property tests drive each case with `block_on`).
pub fn runtime_and_node(args: ServeArgs) -> (tokio::runtime::Runtime, Arc<Node>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let node = rt.block_on(started(args));
    (rt, node)
}
