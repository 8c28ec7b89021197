//! Multi-node test support: several real gateway processes sharing one Redis — a
//! throwaway `redis-server`, or a Redis Cluster ([`Redis`]) — plus a RESP client to look
//! inside it the way a backend would (the events stream, consumer groups).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use switchboard_router::testsuite::redis_cluster::{slot_of, RedisCluster};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

// Re-exported where the tests have always found them.
pub use crate::redis::{read_entries, redis_cmd, stream_entries, Redis, Resp, Store, StreamEntry};
use crate::{Client, Node};

/// The events stream key when `--events-stream` is not given.
pub const DEFAULT_EVENTS_STREAM: &str = "switchboard:events";

/// A Redis (one server or a cluster) and `nodes` gateway processes routed through it.
pub struct Cluster {
    /// Declared before `redis`: the nodes go first when a cluster is dropped.
    pub nodes: Vec<Node>,
    pub redis: Store,
    /// The key prefix every node of this cluster uses.
    pub prefix: String,
    /// The connection events stream (the configured `--events-stream`, else the default).
    pub events_stream: String,
    /// Every node's arguments (`--redis-url`, `--redis-prefix` and the extra ones).
    args: Vec<String>,
}

impl Cluster {
    /// Starts a `redis-server` and `n` nodes (started concurrently) with `extra` arguments.
    pub async fn start(n: usize, extra: &[&str]) -> Cluster {
        Cluster::start_on(Redis::One, n, extra).await
    }

    /// Starts `n` nodes (concurrently) with `extra` arguments on `redis`: a fresh
    /// `redis-server`, or the binary's shared Redis Cluster.
    pub async fn start_on(redis: Redis, n: usize, extra: &[&str]) -> Cluster {
        Cluster::start_with(Store::start(redis).await, n, extra).await
    }

    /// Starts `n` nodes (concurrently) with `extra` arguments on a running Redis (a Redis
    /// Cluster of the test's own, say, with persistence or one to break).
    pub async fn start_with(redis: Store, n: usize, extra: &[&str]) -> Cluster {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let prefix = format!(
            "sbt{}-{}:",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut args: Vec<String> = vec![
            "--redis-url".into(),
            redis.url(),
            "--redis-prefix".into(),
            prefix.clone(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let events_stream = extra
            .iter()
            .position(|a| *a == "--events-stream")
            .and_then(|i| extra.get(i + 1))
            .map_or_else(|| DEFAULT_EVENTS_STREAM.to_owned(), |s| s.to_string());
        let mut cluster = Cluster {
            redis,
            nodes: Vec::new(),
            prefix,
            events_stream,
            args,
        };
        let started = futures_util::future::join_all((0..n).map(|_| cluster.start_node())).await;
        cluster.nodes = started;
        cluster
    }

    /// Starts one more node of this cluster (not added to `nodes`).
    pub async fn start_node(&self) -> Node {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        crate::start(&args).await
    }

    /// The ids of the running nodes, in order.
    pub fn node_ids(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.node_id.clone()).collect()
    }

    /// SIGKILLs node `i` (no drain, no clean-up: its registry entries stay until its lease
    /// expires) and waits for the process to be gone. The `Node` stays in `nodes`.
    pub async fn kill(&mut self, i: usize) {
        kill(&mut self.nodes[i]).await;
    }

    /// SIGKILLs node `i` and starts a fresh node (a new node id) in its place.
    pub async fn restart(&mut self, i: usize) {
        kill(&mut self.nodes[i]).await;
        self.nodes[i] = self.start_node().await;
    }

    /// Starts node `i` (killed before) again under the same node id, as a StatefulSet
    /// pod or a systemd unit comes back.
    pub async fn revive(&mut self, i: usize) {
        let id = self.nodes[i].node_id.clone();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.nodes[i] = start_named(&id, &args).await;
    }

    /// Runs one Redis command on a fresh connection (on a Redis Cluster: on the node that
    /// serves the command's key, following redirections). Blocking.
    pub fn redis_cmd(&self, args: &[&str]) -> Resp {
        self.redis.cmd(args)
    }

    /// The Redis Cluster under this cluster's nodes; panics on one Redis.
    pub fn redis_cluster(&self) -> &Arc<RedisCluster> {
        self.redis.cluster()
    }

    /// The nodes' `--redis-url`.
    pub fn redis_url(&self) -> String {
        self.redis.url()
    }

    /// `n` channels from `make(0), make(1), …` (skipping some) whose slots are spread
    /// evenly over every primary of the Redis Cluster, so that a test's traffic reaches
    /// every shard (each of a channel's keys and its shard channel share the channel's
    /// slot); on one Redis simply `make(0..n)`. Blocking.
    pub fn channels_on_every_shard(&self, n: usize, make: impl Fn(usize) -> String) -> Vec<String> {
        let Store::Cluster(cluster) = &self.redis else {
            return (0..n).map(make).collect();
        };
        let primaries = cluster.primaries();
        let nodes = cluster.nodes();
        let owner = |channel: &str| {
            let slot = slot_of(channel);
            nodes
                .iter()
                .filter(|node| node.is_primary() && node.serves(slot))
                .find_map(|node| primaries.iter().position(|&p| p == node.port))
                .unwrap_or_else(|| panic!("no primary serves slot {slot}"))
        };
        let quota = |shard: usize| n / primaries.len() + usize::from(shard < n % primaries.len());
        let mut taken = vec![0; primaries.len()];
        let mut out = Vec::with_capacity(n);
        for i in 0.. {
            if out.len() == n {
                break;
            }
            let channel = make(i);
            let shard = owner(&channel);
            if taken[shard] < quota(shard) {
                taken[shard] += 1;
                out.push(channel);
            }
        }
        out
    }

    /// The port of the primary that serves `channel` (its slot); panics on one Redis.
    /// Blocking.
    pub fn primary_of(&self, channel: &str) -> u16 {
        self.redis_cluster().primary_of_slot(slot_of(channel))
    }

    /// Every entry of the events stream, oldest first.
    pub fn events(&self) -> Vec<StreamEntry> {
        let reply = self.redis_cmd(&["XRANGE", &self.events_stream, "-", "+"]);
        stream_entries(&reply)
    }

    /// The synthetic disconnects in the events stream (users of nodes the reaper took
    /// for dead), as `node user reason`.
    pub fn synthetic_disconnects(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter(|e| e.get("synthetic") == "1")
            .map(|e| format!("{} {} {}", e.get("node"), e.get("user"), e.get("reason")))
            .collect()
    }
}

/// Starts a node with an explicit `--node-id` (`support::start` picks a fresh one).
pub async fn start_named(node_id: &str, args: &[&str]) -> Node {
    crate::spawn_node(node_id, "127.0.0.1:0", args, &[]).await
}

/// SIGKILLs a node's process and reaps it.
pub async fn kill(node: &mut Node) {
    node.child.start_kill().expect("SIGKILL the node");
    tokio::time::timeout(Duration::from_secs(5), node.child.wait())
        .await
        .expect("the killed node did not exit")
        .expect("wait for the killed node");
}

// --- Clients: reading until a deadline -----------------------------------------------

/// What arrived on a socket before a deadline.
#[derive(Debug)]
pub enum Next {
    Frame(Value),
    Deadline,
    Closed(u16, String),
}

/// The next JSON frame before `deadline` (pings and pongs skipped); a close is returned,
/// a transport error panics with `who` in the message.
pub async fn next_before(client: &mut Client, deadline: Instant, who: &str) -> Next {
    loop {
        let Ok(msg) = tokio::time::timeout_at(deadline, client.ws.next()).await else {
            return Next::Deadline;
        };
        match msg {
            Some(Ok(Message::Text(t))) => {
                return Next::Frame(
                    serde_json::from_str(&t)
                        .unwrap_or_else(|e| panic!("{who}: invalid JSON from the server: {e}")),
                )
            }
            Some(Ok(Message::Ping(_))) | Some(Ok(Message::Pong(_))) => continue,
            Some(Ok(Message::Close(f))) => {
                return match f {
                    Some(f) => Next::Closed(u16::from(f.code), f.reason.to_string()),
                    None => Next::Closed(1005, String::new()),
                }
            }
            Some(Ok(other)) => panic!("{who}: unexpected websocket message {other:?}"),
            Some(Err(e)) => panic!("{who}: websocket error: {e}"),
            None => return Next::Closed(1006, "stream ended".into()),
        }
    }
}

/// Polls `check` every 50 ms until it returns `Some` or `within` passes; panics with
/// `what` (and the last observation) on timeout. Returns the value and the time taken.
pub async fn poll<T, F, Fut>(within: Duration, what: &str, mut check: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    let deadline = started + within;
    loop {
        match check().await {
            Ok(v) => return (v, started.elapsed()),
            Err(last) if Instant::now() >= deadline => {
                panic!("{what}: not true within {within:?}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
