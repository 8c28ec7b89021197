//! A small Redis client written for the backplane's hot path, for one Redis, a
//! Sentinel-managed primary and Redis Cluster alike.
//!
//! Why not fred (measured: BENCHMARKS.md, 91.6 → 45.8 µs per message): fred flushes its write buffer every
//! time its queue is momentarily empty (1.04 `writev` per message even when a
//! `/v1/batch` issued 100 publishes at once), makes two task hops per command and arms a
//! timer per command, and its sharded subscriber neither pipelines SSUBSCRIBE nor
//! resubscribes after a slot moves. Here a command is encoded into its connection's
//! buffer by the caller, every command that is ready in the same scheduler pass shares
//! one `write`, replies complete their callers straight from the reader task, and the
//! subscriber's pushes are handled on its reader task.
//!
//! # Layout
//! - [`resp`]: RESP2 encoding and incremental parsing.
//! - [`slot`]: hash slots (CRC16) and per-slot tags.
//! - [`config`]: the URL forms and connection settings.
//! - [`connect`]: TCP, TLS and the handshake (AUTH, SELECT, CLIENT SETNAME).
//! - [`conn`]: one pipelined connection (writer and reader tasks).
//! - [`topology`]: the slot map (CLUSTER SHARDS / SLOTS).
//! - `discover`: Sentinel discovery, the slot map, the fail-fast startup checks.
//! - `call`: running commands — routing by slot, lanes, MOVED/ASK/TRYAGAIN, NOSCRIPT,
//!   replicated writes, pipelines.
//! - this file: [`Client`] — connecting, the connections per primary and lane, the
//!   topology and its refresh.

mod call;
pub mod config;
pub mod conn;
pub mod connect;
mod discover;
pub mod resp;
pub mod slot;
pub mod topology;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

pub use config::{ClientConfig, Deployment};
pub use conn::{Conn, Mode, PushHandler};
pub use resp::{Cmd, Lane, Value};
pub use slot::{slot, tag_for};
pub use topology::{Shard, Topology};

use connect::Handshake;
use discover::{cluster_topology, discover};

/// What can go wrong talking to Redis.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Io(String),
    #[error("no reply from Redis within the command timeout")]
    Timeout,
    #[error("the Redis connection closed")]
    Closed,
    /// An error reply.
    #[error("Redis answered: {0}")]
    Redis(String),
    #[error("Redis protocol error: {0}")]
    Protocol(String),
    #[error("Redis refused the credentials: {0}")]
    Auth(String),
    #[error("{0}")]
    Config(String),
    /// No primary serves the slot right now (a failover in progress), or none answers.
    #[error("{0}")]
    Unavailable(String),
}

impl Error {
    /// Whether the command certainly did not run (safe to send again).
    fn not_sent(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }
}

/// A Lua script, run with EVALSHA (loaded on NOSCRIPT).
#[derive(Clone, Debug)]
pub struct Script {
    pub sha: String,
    pub body: Arc<str>,
}

impl Script {
    pub fn new(body: &str) -> Script {
        use sha1::{Digest, Sha1};
        Script {
            sha: hex::encode(Sha1::digest(body.as_bytes())),
            body: Arc::from(body),
        }
    }

    /// `EVALSHA sha numkeys keys… ` — add the arguments with [`Cmd::arg`].
    pub fn cmd(&self, keys: &[&[u8]]) -> Cmd {
        let mut cmd = Cmd::new("EVALSHA").arg(&self.sha).int(keys.len());
        for k in keys {
            cmd = cmd.key(k);
        }
        cmd.script = Some(self.body.clone());
        cmd
    }
}

/// Attempts per command across redirections and TRYAGAIN.
const MAX_REDIRECTS: u32 = 8;
/// A refresh of the slot map is not repeated sooner than this.
const REFRESH_GAP: Duration = Duration::from_millis(100);
/// The slot map is re-read this often anyway (replicas coming and going, failovers the
/// node did not notice through an error).
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// Held while one caller connects to an address (on a lane); the others wait on it.
type ConnectLock = Arc<tokio::sync::Mutex<()>>;

/// A client for one deployment; cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClientConfig,
    topology: RwLock<Arc<Topology>>,
    /// Subscribers of topology changes (the shard subscribers follow slot moves).
    changes: watch::Sender<Arc<Topology>>,
    /// Counts command connections opened: a server that is back wakes the subscribers'
    /// reconnects at once instead of at their next backoff.
    connected: watch::Sender<u64>,
    conns: Mutex<HashMap<(String, Lane), Conn>>,
    /// One connect at a time per address and lane.
    connecting: Mutex<HashMap<(String, Lane), ConnectLock>>,
    refresh: tokio::sync::Mutex<Instant>,
    name: String,
}

impl Client {
    /// Connects and checks the deployment: every seed, Sentinel or server is tried in
    /// turn; fails with a message naming each one's problem when none works, when a
    /// `redis-cluster://` URL points at a server without cluster mode, when the cluster
    /// is not `cluster_state:ok` or when a slot has no primary.
    pub async fn connect(config: ClientConfig) -> Result<Client, Error> {
        let name = if config.name.is_empty() {
            String::new()
        } else {
            format!("switchboard:{}", config.name)
        };
        let topology = discover(&config, &name, true).await?;
        let (changes, _) = watch::channel(topology.clone());
        let (connected, _) = watch::channel(0);
        let client = Client {
            inner: Arc::new(Inner {
                config,
                topology: RwLock::new(topology.clone()),
                changes,
                connected,
                conns: Mutex::new(HashMap::new()),
                connecting: Mutex::new(HashMap::new()),
                refresh: tokio::sync::Mutex::new(Instant::now()),
                name,
            }),
        };
        for shard in topology.shards.iter().filter(|s| s.serving) {
            client.conn(&shard.primary).await?;
        }
        Ok(client)
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The current slot map.
    pub fn topology(&self) -> Arc<Topology> {
        self.inner
            .topology
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Follows changes of the slot map.
    pub fn watch(&self) -> watch::Receiver<Arc<Topology>> {
        self.inner.changes.subscribe()
    }

    /// Changes whenever a command connection was opened (a server is reachable again).
    pub fn watch_connects(&self) -> watch::Receiver<u64> {
        self.inner.connected.subscribe()
    }

    fn set_topology(&self, t: Topology) {
        let t = Arc::new(t);
        {
            let mut cur = self
                .inner
                .topology
                .write()
                .unwrap_or_else(|e| e.into_inner());
            if **cur == *t {
                return;
            }
            *cur = t.clone();
        }
        tracing::info!(
            shards = t.shards.len(),
            uncovered = t.uncovered(),
            "redis topology changed"
        );
        self.inner.changes.send_replace(t);
    }

    /// Whether every primary has a live command connection.
    pub fn is_connected(&self) -> bool {
        let t = self.topology();
        let conns = self.inner.conns.lock().unwrap_or_else(|e| e.into_inner());
        t.uncovered() == 0
            && t.shards.iter().filter(|s| s.serving).all(|s| {
                conns
                    .get(&(s.primary.clone(), Lane::Main))
                    .is_some_and(|c| !c.is_broken())
            })
    }

    /// The main command connection to `addr`, connecting when there is none.
    pub async fn conn(&self, addr: &str) -> Result<Conn, Error> {
        self.conn_on(addr, Lane::Main).await
    }

    /// The command connection of `lane` to `addr`, connecting when there is none.
    pub async fn conn_on(&self, addr: &str, lane: Lane) -> Result<Conn, Error> {
        if let Some(c) = self.live_conn(addr, lane) {
            return Ok(c);
        }
        let key = (addr.to_owned(), lane);
        let lock = {
            let mut m = self
                .inner
                .connecting
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            m.entry(key.clone()).or_default().clone()
        };
        let _guard = lock.lock().await;
        if let Some(c) = self.live_conn(addr, lane) {
            return Ok(c);
        }
        if matches!(self.inner.config.deployment, Deployment::Sentinel { .. }) {
            // Only to the master the Sentinels name now: the address of a master that
            // went away may belong to another server by the time we reconnect.
            let now = discover(&self.inner.config, &self.inner.name, false).await?;
            let master = now.shards.first().map(|s| s.primary.clone());
            self.set_topology((*now).clone());
            if master.as_deref() != Some(addr) {
                return Err(Error::Unavailable(format!(
                    "{addr} is not the master any more (the Sentinels name {})",
                    master.unwrap_or_default()
                )));
            }
        }
        let handshake = Handshake::data(&self.inner.config, &self.inner.name);
        let conn = connect::open(addr, &self.inner.config, &handshake, Mode::Commands).await?;
        self.inner
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, conn.clone());
        self.inner.connected.send_modify(|n| *n += 1);
        Ok(conn)
    }

    fn live_conn(&self, addr: &str, lane: Lane) -> Option<Conn> {
        let conns = self.inner.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns
            .get(&(addr.to_owned(), lane))
            .filter(|c| !c.is_broken())
            .cloned()
    }

    /// A new subscriber connection to `addr` whose pushes go to `handler`.
    pub async fn subscriber(
        &self,
        addr: &str,
        handler: Arc<dyn PushHandler>,
    ) -> Result<Conn, Error> {
        let name = format!("{}:sub", self.inner.name);
        let name = if self.inner.name.is_empty() {
            ""
        } else {
            &name
        };
        let handshake = Handshake::data(&self.inner.config, name);
        connect::open(
            addr,
            &self.inner.config,
            &handshake,
            Mode::Subscriber(handler),
        )
        .await
    }

    /// Re-reads the slot map soon (in the background, at most every [`REFRESH_GAP`]).
    pub fn schedule_refresh(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            let _ = this.refresh().await;
        });
    }

    /// Re-reads the slot map now (unless another refresh just did).
    pub async fn refresh(&self) -> Result<(), Error> {
        let mut last = self.inner.refresh.lock().await;
        if last.elapsed() < REFRESH_GAP {
            return Ok(());
        }
        let result = self.rediscover().await;
        *last = Instant::now();
        match result {
            Ok(t) => {
                self.set_topology(t);
                Ok(())
            }
            Err(e) => {
                tracing::debug!(error = %e, "redis topology refresh failed");
                Err(e)
            }
        }
    }

    async fn rediscover(&self) -> Result<Topology, Error> {
        let config = &self.inner.config;
        match &config.deployment {
            Deployment::Cluster { seeds } => {
                // Known primaries first (their connections are open), then the seeds.
                let mut addrs: Vec<String> = self
                    .topology()
                    .shards
                    .iter()
                    .map(|s| s.primary.clone())
                    .collect();
                addrs.extend(seeds.iter().cloned());
                let mut last = Error::Unavailable("no cluster node answered".into());
                for addr in addrs {
                    let conn = match self.conn(&addr).await {
                        Ok(c) => c,
                        Err(e) => {
                            last = e;
                            continue;
                        }
                    };
                    match cluster_topology(&conn, config).await {
                        Ok(t) if t.shards.iter().any(|s| s.serving) => return Ok(t),
                        Ok(_) => {}
                        Err(e) => last = e,
                    }
                }
                Err(last)
            }
            Deployment::Single(_) => Ok((*self.topology()).clone()),
            Deployment::Sentinel { .. } => discover(config, &self.inner.name, false)
                .await
                .map(|t| (*t).clone()),
        }
    }
}

fn text(e: &[u8]) -> String {
    String::from_utf8_lossy(e).into_owned()
}
