//! A throwaway Redis Cluster on free loopback ports, for tests (never 6379 or 7001…).
//!
//! [`RedisCluster::start`] runs `deploy/redis-cluster.sh start … --watch-stdin` (the same
//! launcher as `make cluster REDIS=cluster` and `tools/cluster.py`): 3 primaries with one
//! replica each, no persistence, `cluster-node-timeout` 2000 ms. The launcher stays alive
//! holding the nodes as its children and stops them all when its stdin closes, so no node
//! outlives the test process, whether the test passes, panics or the process is killed.
//! Drop stops everything and removes the directory.
//!
//! The API is blocking (std threads and sockets), like [`RedisServer`]'s: from an async test
//! call the waits in `tokio::task::spawn_blocking` or on a multi-thread runtime. A
//! `RedisCluster` is `Send + Sync`: share it (`Arc`, scoped threads) with writer threads.
//!
//! [`RedisServer`]: super::redis_server::RedisServer
//!
//! ```text
//! let cluster = RedisCluster::start();
//! let url = cluster.url();                    // redis-cluster://127.0.0.1:p1?node=…
//! let owner = cluster.primary_of_slot(slot_of("{room:a}"));
//! cluster.kill(owner);
//! let promoted = cluster.wait_failover(owner, Duration::from_secs(20));
//! cluster.restart(owner);                     // comes back as a replica of `promoted`
//! cluster.wait_ok(Duration::from_secs(20));
//! ```
//!
//! # Layout
//! - this file: start and stop, URLs, topology queries, faults and waits.
//! - `launcher`: runs `deploy/redis-cluster.sh` and talks to it (start, restart, stop).
//! - `resp`: [`RespValue`], a blocking RESP connection, [`slot_of`], [`ClusterClient`].
//! - `topology`: [`ClusterNode`] (`CLUSTER NODES` parsed) and the "settled" check.
//! - `reshard`: [`ReshardHandle`] (`redis-cli --cluster reshard` in the background) and
//!   `migrate_slot`, one slot moved step by step.

mod launcher;
mod reshard;
mod resp;
mod topology;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use self::launcher::{free_ports, fresh_dir, launch, require_tools, Launcher, PORT_TAKEN};

pub use self::reshard::ReshardHandle;
pub use self::resp::{cmd_once, slot_of, ClusterClient, RespConn, RespValue};
pub use self::topology::ClusterNode;

/// How a cluster is started; [`ClusterOptions::default`] is what [`RedisCluster::start`] uses.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Primaries (at least 3, as `redis-cli --cluster create` requires). Default 3.
    pub primaries: usize,
    /// Replicas of each primary. Default 1.
    pub replicas: usize,
    /// `cluster-node-timeout`: how long until a silent node is failed over. Default 2 s.
    pub node_timeout: Duration,
    /// More `redis-server` arguments, after the defaults `--save "" --appendonly no`.
    pub redis_args: Vec<String>,
    /// A password every node requires (`--requirepass`) and replicas use towards their
    /// primary (`--masterauth`). The helpers here authenticate with it, `redis-cli` gets it
    /// through `REDISCLI_AUTH`, and [`RedisCluster::url`] carries it. Default none.
    pub password: Option<String>,
}

impl Default for ClusterOptions {
    fn default() -> ClusterOptions {
        ClusterOptions {
            primaries: 3,
            replicas: 1,
            node_timeout: Duration::from_millis(2000),
            redis_args: Vec::new(),
            password: None,
        }
    }
}

/// A running Redis Cluster; stopped, and its directory removed, on drop.
pub struct RedisCluster {
    dir: PathBuf,
    /// Client ports in the launcher's order; node ids are stable across restarts.
    ports: Vec<u16>,
    ids: Vec<String>,
    options: ClusterOptions,
    /// The launcher (`--watch-stdin`): the nodes' parent; closing its stdin stops them.
    launcher: Mutex<Launcher>,
    /// What each killed primary served when it was killed (for `wait_failover`).
    killed_slots: Mutex<HashMap<u16, Vec<(u16, u16)>>>,
}

impl RedisCluster {
    /// 3 primaries with 1 replica each, no persistence, node timeout 2 s.
    pub fn start() -> RedisCluster {
        RedisCluster::start_opts(&ClusterOptions::default())
    }

    /// `primaries` × (1 + `replicas`) nodes with `extra_redis_args` (e.g.
    /// `&["--appendonly", "yes", "--appendfsync", "always"]`), node timeout 2 s.
    pub fn start_with(
        primaries: usize,
        replicas: usize,
        extra_redis_args: &[&str],
    ) -> RedisCluster {
        RedisCluster::start_opts(&ClusterOptions {
            primaries,
            replicas,
            redis_args: extra_redis_args.iter().map(|s| s.to_string()).collect(),
            ..ClusterOptions::default()
        })
    }

    /// A cluster as `options` say. Tries other ports when one was taken meanwhile; panics
    /// with the launcher's output (node log tails included) when the cluster does not form.
    pub fn start_opts(options: &ClusterOptions) -> RedisCluster {
        require_tools();
        let mut options = options.clone();
        if let Some(password) = &options.password {
            let auth = ["--requirepass", password, "--masterauth", password];
            options
                .redis_args
                .extend(auth.iter().map(|a| a.to_string()));
        }
        let options = &options;
        let nodes = options.primaries * (1 + options.replicas);
        let mut last_error = String::new();
        for _ in 0..5 {
            let dir = fresh_dir();
            let ports = free_ports(2 * nodes);
            let (ports, bus_ports) = ports.split_at(nodes);
            if let Some(password) = &options.password {
                resp::set_password(ports, password);
            }
            match launch(&dir, ports, bus_ports, options) {
                Ok(launcher) => {
                    let ids = ports
                        .iter()
                        .map(|&p| cmd_once(p, &["CLUSTER", "MYID"]).map(|id| id.text()))
                        .collect::<Result<Vec<_>, _>>();
                    // Built first: a panic from here on stops the nodes (Drop).
                    let mut cluster = RedisCluster {
                        dir,
                        ports: ports.to_vec(),
                        ids: Vec::new(),
                        options: options.clone(),
                        launcher: Mutex::new(launcher),
                        killed_slots: Mutex::new(HashMap::new()),
                    };
                    cluster.ids = ids.unwrap_or_else(|e| panic!("CLUSTER MYID: {e}"));
                    return cluster;
                }
                Err((status, error)) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    if status != Some(PORT_TAKEN) {
                        panic!("could not start a Redis Cluster: {error}");
                    }
                    last_error = error;
                }
            }
        }
        panic!("could not start a Redis Cluster (ports kept being taken): {last_error}");
    }

    /// The configured `cluster-node-timeout`.
    pub fn node_timeout(&self) -> Duration {
        self.options.node_timeout
    }

    /// Every node's client port, in start order (the first P were created as primaries).
    pub fn ports(&self) -> Vec<u16> {
        self.ports.clone()
    }

    /// `redis-cluster://127.0.0.1:<p1>?node=127.0.0.1:<p2>&node=…` with every node as a seed
    /// (`redis-cluster://:<password>@…` with a password).
    pub fn url(&self) -> String {
        self.seed_url(self.ports.len())
    }

    /// The URL with only the first `seeds` nodes (at least one) as seeds.
    pub fn seed_url(&self, seeds: usize) -> String {
        let seeds = &self.ports[..seeds.clamp(1, self.ports.len())];
        let rest: Vec<String> = seeds[1..]
            .iter()
            .map(|p| format!("node=127.0.0.1:{p}"))
            .collect();
        let auth = match &self.options.password {
            // Test passwords are plain words: nothing to percent-encode.
            Some(password) => format!(":{password}@"),
            None => String::new(),
        };
        let mut url = format!("redis-cluster://{auth}127.0.0.1:{}", seeds[0]);
        if !rest.is_empty() {
            url = format!("{url}?{}", rest.join("&"));
        }
        url
    }

    /// The directory with the nodes' files (`redis-<port>.log`, `nodes-<port>.conf`, …).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The node id of `port` (stable across restarts).
    pub fn node_id(&self, port: u16) -> &str {
        &self.ids[self.index(port)]
    }

    fn index(&self, port: u16) -> usize {
        self.ports
            .iter()
            .position(|&p| p == port)
            .unwrap_or_else(|| panic!("port {port} is not a node of this cluster"))
    }

    /// The pid of the node on `port` while its process exists (also when SIGSTOPped).
    pub fn pid(&self, port: u16) -> Option<u32> {
        self.index(port);
        let pid = std::fs::read_to_string(self.dir.join(format!("redis-{port}.pid"))).ok()?;
        let pid = pid.trim().parse().ok()?;
        process_state(pid).filter(|s| !matches!(s, 'Z' | 'X'))?;
        Some(pid)
    }

    /// The nodes that run and are not stopped (SIGSTOP): the ones that can answer.
    pub fn live_ports(&self) -> Vec<u16> {
        self.ports
            .iter()
            .copied()
            .filter(|&p| {
                self.pid(p)
                    .and_then(process_state)
                    .is_some_and(|s| !matches!(s, 'T' | 't'))
            })
            .collect()
    }

    // --- commands and topology ------------------------------------------------------

    /// One command on node `port`; error replies are values. Panics when the node does
    /// not answer (use [`cmd_once`] to handle that).
    pub fn cmd<A: AsRef<[u8]>>(&self, port: u16, args: &[A]) -> RespValue {
        cmd_once(port, args).unwrap_or_else(|e| panic!("redis node {port}: {e}"))
    }

    /// A client that routes keyed commands to their slot's node (see [`ClusterClient`]).
    pub fn client(&self) -> ClusterClient {
        ClusterClient::new(self.ports.clone())
    }

    /// `CLUSTER NODES` as the first live node that answers sees it.
    pub fn nodes(&self) -> Vec<ClusterNode> {
        self.live_view()
            .unwrap_or_else(|e| panic!("no node answers CLUSTER NODES: {e}"))
    }

    /// `CLUSTER NODES` as `port` sees it.
    pub fn nodes_seen_by(&self, port: u16) -> Vec<ClusterNode> {
        topology::nodes_seen_by(port).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The ports of the primaries that serve slots, ascending.
    pub fn primaries(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .nodes()
            .iter()
            .filter(|n| n.is_primary() && !n.slots.is_empty())
            .map(|n| n.port)
            .collect();
        ports.sort_unstable();
        ports
    }

    /// The ports of the replicas of `primary` (failing ones included), ascending.
    pub fn replicas_of(&self, primary: u16) -> Vec<u16> {
        let id = self.node_id(primary).to_owned();
        let mut ports: Vec<u16> = self
            .nodes()
            .iter()
            .filter(|n| n.primary_id.as_deref() == Some(id.as_str()))
            .map(|n| n.port)
            .collect();
        ports.sort_unstable();
        ports
    }

    /// The port of the primary that serves `slot`.
    pub fn primary_of_slot(&self, slot: u16) -> u16 {
        self.nodes()
            .iter()
            .find(|n| n.is_primary() && n.serves(slot))
            .map(|n| n.port)
            .unwrap_or_else(|| panic!("no primary serves slot {slot}"))
    }

    /// The slot ranges (inclusive) that `primary` serves.
    pub fn slots_of(&self, primary: u16) -> Vec<(u16, u16)> {
        self.nodes()
            .into_iter()
            .find(|n| n.port == primary)
            .map(|n| n.slots)
            .unwrap_or_default()
    }

    /// Whether the cluster is settled: see [`RedisCluster::wait_ok`].
    pub fn cluster_ok(&self) -> bool {
        topology::check_settled(&self.live_ports()).is_ok()
    }

    /// Waits until every live node reports cluster_state:ok with all slots, they agree on
    /// the slot owners and roles, every slot's owner is live, no slot is mid-migration and
    /// every live replica's link is up. Panics with what is missing after `timeout`.
    pub fn wait_ok(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            match topology::check_settled(&self.live_ports()) {
                Ok(()) => return,
                Err(why) if Instant::now() > deadline => {
                    panic!("Redis Cluster not ok after {timeout:?}: {why}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    // --- faults ---------------------------------------------------------------------

    /// SIGKILLs the node on `port` and waits until its process is gone.
    pub fn kill(&self, port: u16) {
        let pid = self
            .pid(port)
            .unwrap_or_else(|| panic!("node {port} is not running"));
        if let Ok(nodes) = self.live_view() {
            if let Some(n) = nodes.iter().find(|n| n.port == port && n.is_primary()) {
                lock(&self.killed_slots).insert(port, n.slots.clone());
            }
        }
        send_signal(pid, "KILL");
        let deadline = Instant::now() + Duration::from_secs(10);
        while process_state(pid).is_some_and(|s| !matches!(s, 'Z' | 'X')) {
            assert!(
                Instant::now() < deadline,
                "node {port} (pid {pid}) survived SIGKILL"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts the killed node on `port` again: same port, directory, config and node id,
    /// so it rejoins (a primary that was failed over comes back as a replica). Returns when
    /// it accepts connections; [`RedisCluster::wait_ok`] waits for it to rejoin.
    pub fn restart(&self, port: u16) {
        self.index(port);
        lock(&self.launcher)
            .restart(port)
            .unwrap_or_else(|why| panic!("node {port} did not restart: {why}"));
        lock(&self.killed_slots).remove(&port);
    }

    /// Sends `signal` ("STOP", "CONT", "TERM", …) to the node on `port`. After STOP and
    /// CONT, returns once the process is stopped (or running again): signals are delivered
    /// asynchronously, and a test that checks right after must see the effect.
    pub fn signal(&self, port: u16, signal: &str) {
        let pid = self
            .pid(port)
            .unwrap_or_else(|| panic!("node {port} is not running"));
        send_signal(pid, signal);
        let want_stopped = match signal.trim_start_matches("SIG") {
            "STOP" => true,
            "CONT" => false,
            _ => return,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while process_state(pid).is_some_and(|s| matches!(s, 'T' | 't') != want_stopped) {
            assert!(
                Instant::now() < deadline,
                "node {port}: SIG{signal} had no effect"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// After [`kill`](RedisCluster::kill) of a primary: waits until another node serves
    /// every slot the killed one served and the cluster is settled (see `wait_ok`), and
    /// returns that node's port (the promoted replica). Panics after `timeout`.
    pub fn wait_failover(&self, killed_primary: u16, timeout: Duration) -> u16 {
        let slots = lock(&self.killed_slots)
            .get(&killed_primary)
            .cloned()
            .unwrap_or_else(|| panic!("{killed_primary} is not a primary killed by kill()"));
        let deadline = Instant::now() + timeout;
        loop {
            let result = topology::check_settled(&self.live_ports())
                .and_then(|()| self.live_view())
                .and_then(|nodes| {
                    let serves_all = |n: &&ClusterNode| {
                        n.is_primary() && slots.iter().all(|&(a, b)| (a..=b).all(|s| n.serves(s)))
                    };
                    match nodes.iter().find(serves_all) {
                        Some(n) if n.port != killed_primary => Ok(n.port),
                        _ => Err("no other node serves all its slots yet".to_owned()),
                    }
                });
            match result {
                Ok(port) => return port,
                Err(why) if Instant::now() > deadline => panic!(
                    "no failover of {killed_primary} within {timeout:?} \
                     (node timeout {:?}): {why}",
                    self.options.node_timeout
                ),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn live_view(&self) -> Result<Vec<ClusterNode>, String> {
        let mut last = String::from("no live node");
        for port in self.live_ports() {
            match topology::nodes_seen_by(port) {
                Ok(nodes) => return Ok(nodes),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

// Tests share one cluster between threads and tasks.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<RedisCluster>();
};

impl Drop for RedisCluster {
    fn drop(&mut self) {
        let launcher = self.launcher.get_mut().unwrap_or_else(|e| e.into_inner());
        launcher.stop(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The state letter of a process (`R`, `S`, `T`, `Z`, …) from /proc, or None when gone.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

fn send_signal(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{signal} {pid} failed");
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
