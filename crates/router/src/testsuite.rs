//! The behaviour suite every router implementation must pass (memory and Redis).
//!
//! An implementation provides a [`ClusterFactory`] and either calls [`run_all`] or expands
//! [`router_testsuite!`](crate::router_testsuite) to get one `#[tokio::test]` per case:
//!
//! ```text
//! switchboard_router::router_testsuite!(MyFactory::new());
//! ```
//!
//! Deliveries may be asynchronous: cases wait (up to [`WAIT`]) for what must arrive and
//! give [`GRACE`] to what must not. Every case uses fresh, random channel and user names,
//! so cases may share a backend.
//!
//! # Layout
//! - this file: [`ClusterFactory`], [`run_all`], the test macro and the case helpers.
//! - `sink`: [`RecordingSink`], the [`NodeSink`](crate::NodeSink) that cases observe.
//! - `routing`: publish outcomes, user and room routing, ordering, message fields.
//! - `streams`: history reads and recovery, trimming by count and age, acks.
//! - `idempotency`: idempotent publishes (keys, races, windows, batches).
//! - `cluster`: registry, leases, presence, cross-node disconnect, shutdown.
//! - `user_cap`: the per-user connection cap of `register`.

mod cluster;
mod idempotency;
pub mod redis_cluster;
pub mod redis_server;
mod routing;
mod sink;
mod streams;
mod user_cap;

use std::any::Any;
use std::collections::HashSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use switchboard_proto::Payload;

use crate::{ConnInfo, HistoryPolicies, PublishOutcome, PublishRequest, Router};

pub use self::cluster::{
    case_disconnect_user, case_lease_expiry, case_presence, case_registry, case_shutdown,
};
pub use self::idempotency::{
    case_idempotency_window_and_batches, case_idempotent_publish, case_idempotent_publish_races,
};
pub use self::routing::{
    case_empty_channel_rejected, case_message_fields, case_ordering, case_room_routing,
    case_user_publish_offline, case_user_publish_online,
};
pub use self::sink::{grace, DisconnectRecord, PresenceRecord, RecordingSink, GRACE, WAIT};
pub use self::streams::{
    case_acks, case_age_trimming, case_count_trimming, case_no_history_rooms, case_read_recovery,
    case_reset_epoch,
};
pub use self::user_cap::{case_user_cap, case_user_cap_concurrent, case_user_cap_dead_node};

/// Builds the clusters the cases run against.
#[async_trait]
pub trait ClusterFactory: Send + Sync {
    /// A fresh, isolated cluster of `nodes` nodes that share state, NOT yet started.
    /// Node ids must be unique; `lease` is the registry lease.
    async fn cluster(
        &self,
        nodes: usize,
        policies: HistoryPolicies,
        lease: Duration,
    ) -> Vec<(String, Arc<dyn Router>)>;
}

/// Expands to one `#[tokio::test]` per case, each building its factory with `$factory`
/// (an expression, evaluated inside the async test, so it may `.await`).
/// The `@`-arms are internal: they hold the single list of cases.
#[macro_export]
macro_rules! router_testsuite {
    (@cases $mode:ident $factory:expr) => {
        $crate::router_testsuite!(@$mode $factory;
            case_user_publish_offline,
            case_user_publish_online,
            case_room_routing,
            case_ordering,
            case_message_fields,
            case_empty_channel_rejected,
            case_read_recovery,
            case_count_trimming,
            case_age_trimming,
            case_no_history_rooms,
            case_acks,
            case_reset_epoch,
            case_idempotent_publish,
            case_idempotent_publish_races,
            case_idempotency_window_and_batches,
            case_registry,
            case_lease_expiry,
            case_presence,
            case_disconnect_user,
            case_shutdown,
            case_user_cap,
            case_user_cap_concurrent,
            case_user_cap_dead_node,
        );
    };
    (@tests $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let factory = $factory;
                $crate::testsuite::$case(&factory).await;
            }
        )*
    };
    (@run $factory:expr; $($case:ident),* $(,)?) => {
        $(
            $crate::testsuite::run_case(
                stringify!($case),
                $crate::testsuite::$case($factory),
            )
            .await;
        )*
    };
    ($factory:expr) => {
        $crate::router_testsuite!(@cases tests $factory);
    };
}

/// Runs every case in turn; panics naming the first case that fails.
pub async fn run_all(factory: &dyn ClusterFactory) {
    crate::router_testsuite!(@cases run factory);
}

/// Runs one case, turning its panic into one that names the case.
#[doc(hidden)]
pub async fn run_case(name: &str, case: impl Future<Output = ()>) {
    if let Err(panic) = (CatchUnwind(Box::pin(case))).await {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("(non-string panic)");
        panic!("router testsuite case `{name}` failed: {why}");
    }
}

/// Resolves to `Err(payload)` when polling the inner future panics.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

// --- helpers shared by the cases ----------------------------------------------------------

/// `nodes` Redis routers (not started) on `url`, sharing a fresh key prefix and events
/// stream, probing every 250 ms: what a Redis-backed [`ClusterFactory`] returns.
pub fn redis_routers(
    url: &str,
    nodes: usize,
    policies: HistoryPolicies,
    lease: Duration,
) -> Vec<(String, Arc<dyn Router>)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let prefix = format!(
        "t{}-{}:",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    (0..nodes)
        .map(|i| {
            let id = format!("node-{i}");
            let mut s = crate::RedisSettings::new(url, id.clone());
            s.prefix = prefix.clone();
            s.events_stream = format!("{prefix}events");
            s.policies = policies.clone();
            s.lease = lease;
            s.probe_interval = Duration::from_millis(250);
            let router: Arc<dyn Router> = crate::RedisRouter::new(s).expect("settings");
            (id, router)
        })
        .collect()
}

/// A lease long enough that no node expires during a case that does not heartbeat.
pub const LONG_LEASE: Duration = Duration::from_secs(60);

/// One started node of a case's cluster.
pub struct TestNode {
    pub id: String,
    pub router: Arc<dyn Router>,
    pub sink: Arc<RecordingSink>,
}

/// Builds a cluster with `factory` and starts every node with its own [`RecordingSink`].
pub async fn start_cluster(
    factory: &dyn ClusterFactory,
    nodes: usize,
    policies: HistoryPolicies,
    lease: Duration,
) -> Vec<TestNode> {
    let cluster = factory.cluster(nodes, policies, lease).await;
    assert_eq!(
        cluster.len(),
        nodes,
        "factory returned the wrong node count"
    );
    let ids: HashSet<&str> = cluster.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), nodes, "factory returned duplicate node ids");
    let mut started = Vec::with_capacity(nodes);
    for (id, router) in cluster {
        assert!(!router.is_up(), "node {id} is up before start");
        let sink = RecordingSink::new(id.clone());
        router
            .start(sink.clone())
            .await
            .unwrap_or_else(|e| panic!("node {id} failed to start: {e}"));
        assert!(router.is_up(), "node {id} is not up after start");
        started.push(TestNode { id, router, sink });
    }
    started
}

/// `prefix` plus a random suffix: names that no other case (or run) uses.
pub fn unique(prefix: &str) -> String {
    use rand::Rng;
    let suffix: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(10)
        .map(char::from)
        .collect();
    format!("{prefix}-{suffix}")
}

/// A JSON payload `{"n":<n>}`.
pub fn json(n: u64) -> Payload {
    Payload::Json(Arc::from(format!("{{\"n\":{n}}}")))
}

/// A connection record of `user` on `node`, accepted now.
pub fn conn(user: &str, conn_id: &str, node: &str) -> ConnInfo {
    ConnInfo {
        conn_id: conn_id.to_owned(),
        user: user.to_owned(),
        node: node.to_owned(),
        since_ms: now_ms(),
    }
}

pub use switchboard_proto::clock::now_ms;

/// Publishes `data` on `channel` through `node`, panicking on error.
pub async fn publish(
    node: &TestNode,
    channel: &str,
    from: Option<&str>,
    data: Payload,
) -> PublishOutcome {
    node.router
        .publish(PublishRequest {
            channel: channel.to_owned(),
            from: from.map(str::to_owned),
            data,
            idempotency: None,
        })
        .await
        .unwrap_or_else(|e| panic!("publish on {channel} through {} failed: {e}", node.id))
}

/// The offsets of `messages`, in order.
pub fn offsets(messages: &[Arc<switchboard_proto::Message>]) -> Vec<u64> {
    messages.iter().map(|m| m.offset).collect()
}
