//! The gateway on a Redis Cluster when the cluster changes under it: a primary SIGKILLed
//! under steady load (its replica promoted), slots resharded while messages flow, and
//! the startup checks that refuse a deployment the backplane cannot use. Every test runs
//! real `redis-server` processes (`deploy/redis-cluster.sh` through the router's test
//! support) and real gateway processes on free ports; timings are printed as
//! `measured: …` lines (`--nocapture`).
//!
//! # Layout
//! - this file: helpers shared by the tests (a cluster of the test's own, blocking work,
//!   readiness).
//! - [`traffic`]: publishers (server API and WebSocket) with a ledger of every
//!   acknowledged message, and recipients that record every frame they get.
//! - [`verify`]: the checks — exactly once, in offset order, no silent gap, in history.
//! - [`failover`]: a primary SIGKILLed under load, with AOF `appendfsync always`.
//! - [`reshard`]: `redis-cli --cluster reshard` while publishing; one user's slot moved
//!   step by step.
//! - [`startup`]: `redis-cluster://` URLs the node must refuse at startup (exit 1, a
//!   clear message, nothing bound), a malformed URL (exit 64) and a wrong password.

use switchboard_testkit as support;

mod failover;
mod leases;
mod lost_writes;
mod reshard;
mod startup;
mod traffic;
mod verify;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::cluster::poll;
use support::metrics::metric_sum;
use support::{join_task, ApiClient, Node};
use switchboard_router::testsuite::redis_cluster::RedisCluster;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Runs blocking work (process control, the cluster's waits) off the runtime's threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    join_task(tokio::task::spawn_blocking(f)).await
}

/// A Redis Cluster of the test's own: `primaries` × (1 + `replicas`) nodes with `args`.
async fn own_cluster(primaries: usize, replicas: usize, args: &[&str]) -> Arc<RedisCluster> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Arc::new(RedisCluster::start_with(primaries, replicas, &args))
    })
    .await
}

/// `/readyz` of `node`: its status, or 0 when it does not answer within 2 s.
async fn readyz(node: &Node) -> u16 {
    let api = node.api_client();
    let call = api.try_call("GET", "/readyz", None);
    match tokio::time::timeout(Duration::from_secs(2), call).await {
        Ok(Ok((status, _))) => status,
        _ => 0,
    }
}

/// Waits until every node answers `/readyz` with 200; returns how long it took.
async fn wait_all_ready(nodes: &[Node], within: Duration) -> Duration {
    poll(within, "every node ready", || async {
        let mut statuses = Vec::new();
        for node in nodes {
            statuses.push(readyz(node).await);
        }
        if statuses.iter().all(|&s| s == 200) {
            Ok(())
        } else {
            Err(format!("{statuses:?}"))
        }
    })
    .await
    .1
}

/// When, and what every node's `/readyz` answered (0: no answer within 2 s).
type Sample = (Instant, Vec<u16>);

/// `/readyz` of every node, sampled every 50 ms: (when, statuses).
pub struct Readiness {
    samples: Arc<Mutex<Vec<Sample>>>,
    pub stop: CancellationToken,
}

impl Readiness {
    pub fn watch(nodes: &[support::Node]) -> Readiness {
        let apis: Vec<ApiClient> = nodes.iter().map(|n| n.api_client()).collect();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (out, stopped) = (samples.clone(), stop.clone());
        tokio::spawn(async move {
            while !stopped.is_cancelled() {
                let at = Instant::now();
                let mut statuses = Vec::new();
                for api in &apis {
                    let call = api.try_call("GET", "/readyz", None);
                    statuses.push(
                        match tokio::time::timeout(Duration::from_secs(2), call).await {
                            Ok(Ok((status, _))) => status,
                            _ => 0,
                        },
                    );
                }
                out.lock().unwrap().push((at, statuses));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Readiness { samples, stop }
    }

    /// The first sample after `t` where some node answered anything but 200 (a node too
    /// busy to answer within 2 s counts as neither), and the first after that where every
    /// node answered 200 again.
    pub fn outage_after(&self, t: Instant) -> (Option<Instant>, Option<Instant>) {
        let samples = self.samples.lock().unwrap();
        let after = samples.iter().filter(|(at, _)| *at >= t);
        let down = after
            .clone()
            .find(|(_, s)| s.iter().any(|&x| x != 200 && x != 0))
            .map(|(at, _)| *at);
        let up = down.and_then(|d| {
            samples
                .iter()
                .filter(|(at, _)| *at > d)
                .find(|(_, s)| s.iter().all(|&x| x == 200))
                .map(|(at, _)| *at)
        });
        (down, up)
    }
}

/// Backplane link flaps and subscriber reconnects of `node`:
/// (`switchboard_backplane_reconnects_total`, the sum of
/// `switchboard_backplane_shard_reconnects_total` over its shards).
async fn reconnects(node: &Node) -> (u64, u64) {
    let text = node.metrics_text().await;
    (
        metric_sum(&text, "switchboard_backplane_reconnects_total", &[]) as u64,
        metric_sum(&text, "switchboard_backplane_shard_reconnects_total", &[]) as u64,
    )
}

/// Seconds since `t`, for `measured:` lines.
fn secs_since(t: Instant, at: Instant) -> f64 {
    at.saturating_duration_since(t).as_secs_f64()
}
