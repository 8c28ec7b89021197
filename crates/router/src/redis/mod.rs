//! The Redis router: many nodes behave as one, on one Redis, a Sentinel-managed primary
//! or a Redis Cluster — one code path and one key layout for all three.
//!
//! - Live delivery: sharded pub/sub. Every node SSUBSCRIBEs the shard channel of each
//!   channel it holds (`P{user:alice}` for a user with a local connection,
//!   `P{room:lobby}` for a room with a local subscriber), on one subscriber connection
//!   per primary. A publish SPUBLISHes to the channel's shard channel, which lives in
//!   the same slot as the channel's keys: nothing is broadcast to every Redis node, and
//!   SPUBLISH's answer is the number of nodes that got it.
//! - Publish: one Lua script on the channel's slot numbers the message `(epoch,
//!   offset)`, appends it to the channel's stream (channels with history) and publishes
//!   it. Where the primary has a replica, the append is acknowledged (and published) only
//!   once `WAIT` says a replica has it, so a failover loses no acknowledged message.
//! - Registry: `user → {conn: node}` hashes (for the API and `online`); node leases in a
//!   sorted set scored by the lease deadline (Redis clock); any node reaps an expired
//!   node — its connections (with synthetic disconnect events) and presence (with leave
//!   frames) — one slot-local step at a time.
//! - Connection events: every connect and disconnect is appended to a stream (default
//!   `switchboard:events`) for backends to read with a consumer group.
//!
//! # Layout
//! - [`client`]: the Redis client (connections, pipelining, slots, redirections).
//! - [`keys`]: the key and channel layout. [`scripts`]: the Lua scripts.
//! - [`frames`]: backplane frames and the stored form of a message.
//! - [`shards`]: the sharded subscriber (dispatch, resubscription, probes).
//! - `publish`, `registry`, `reaper`, `streams`, `presence`: the trait implementations
//!   besides the rest of [`Backplane`], which is in this file.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use rand::distr::Alphanumeric;
use rand::Rng as _;
use tokio_util::sync::CancellationToken;

use crate::types::{
    BackplaneStats, ConnInfo, NodeStatus, PublishOutcome, PublishRequest, RouterError, ShardStatus,
};
use crate::{Backplane, HistoryPolicies, NodeSink, Registry, Result};

pub mod client;
mod frames;
pub mod keys;
mod presence;
mod publish;
mod reaper;
mod registry;
mod scripts;
pub mod shards;
mod streams;

use client::{Client, ClientConfig, Cmd, Value};
use keys::Keys;
use scripts::Scripts;

/// Default [`RedisSettings::prefix`]; the gateway's `--redis-prefix` default too.
pub const DEFAULT_PREFIX: &str = "sb:";
/// Default [`RedisSettings::events_stream`]; the gateway's `--events-stream` default too.
pub const DEFAULT_EVENTS_STREAM: &str = "switchboard:events";
/// Default [`RedisSettings::lease`] in seconds; the gateway's `--lease-seconds` default too.
pub const DEFAULT_LEASE_SECS: u64 = 10;
/// Default [`RedisSettings::probe_interval`] in milliseconds; the gateway's
/// `--probe-interval-ms` default too.
pub const DEFAULT_PROBE_INTERVAL_MS: u64 = 1000;
/// Default [`RedisSettings::command_timeout`] in milliseconds; the gateway's
/// `--redis-timeout-ms` default too.
pub const DEFAULT_COMMAND_TIMEOUT_MS: u64 = 2000;

/// How a Redis router connects and behaves. Every field documents its default.
#[derive(Clone, Debug)]
pub struct RedisSettings {
    /// `redis://[user:pass@]host:port/db`, `rediss://…`, a Sentinel URL
    /// `redis+sentinel://host:26379/db?sentinelServiceName=mymaster` (also spelled
    /// `redis-sentinel://`; more sentinels with `&node=host:port`) or a Redis Cluster
    /// `redis-cluster://host:port?node=host:port&node=host:port` (seed nodes).
    pub url: String,
    /// This node's id.
    pub node_id: String,
    /// Prefix of every key and pub/sub channel. Default [`DEFAULT_PREFIX`] (`sb:`).
    pub prefix: String,
    /// The connection events stream. Default [`DEFAULT_EVENTS_STREAM`].
    pub events_stream: String,
    /// Approximate bound of the events stream. Default 1,000,000 entries.
    pub events_maxlen: u64,
    /// Registry lease. Default [`DEFAULT_LEASE_SECS`] (10 s).
    pub lease: Duration,
    /// Pub/sub liveness probe interval; a shard is declared down when a probe is not
    /// back one interval after Redis accepted it. Default [`DEFAULT_PROBE_INTERVAL_MS`] (1 s).
    pub probe_interval: Duration,
    /// Timeout of every Redis command. Default [`DEFAULT_COMMAND_TIMEOUT_MS`] (2 s).
    pub command_timeout: Duration,
    /// Replicas that must have a message (`WAIT`) before its publish is acknowledged.
    /// `None` (default): one on Redis Cluster and Sentinel when the primary has a
    /// replica online, none on one Redis.
    pub replica_acks: Option<u32>,
    /// Which channels keep history.
    pub policies: HistoryPolicies,
}

impl RedisSettings {
    pub fn new(url: impl Into<String>, node_id: impl Into<String>) -> RedisSettings {
        RedisSettings {
            url: url.into(),
            node_id: node_id.into(),
            prefix: DEFAULT_PREFIX.into(),
            events_stream: DEFAULT_EVENTS_STREAM.into(),
            events_maxlen: 1_000_000,
            lease: Duration::from_secs(DEFAULT_LEASE_SECS),
            probe_interval: Duration::from_millis(DEFAULT_PROBE_INTERVAL_MS),
            command_timeout: Duration::from_millis(DEFAULT_COMMAND_TIMEOUT_MS),
            replica_acks: None,
            policies: HistoryPolicies::default(),
        }
    }
}

/// Keys of channels live this long after they were last renewed (at least twice the
/// history's age bound; renewed once half of it passed).
const KEY_TTL_MIN: Duration = Duration::from_secs(2 * 24 * 3600);
/// The inbox ack lives this long after it was written.
const ACK_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

fn unavailable(e: client::Error) -> RouterError {
    RouterError::Unavailable(e.to_string())
}

fn random_string(n: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

use switchboard_proto::clock::now_ms;

fn value_str(v: &Value) -> String {
    v.to_text()
}

fn value_u64(v: &Value) -> u64 {
    v.as_int().and_then(|i| u64::try_from(i).ok()).unwrap_or(0)
}

/// What this node holds, to re-register after its entries were reaped or Redis lost
/// its data, and to know when a user's channel is no longer needed here.
#[derive(Default)]
struct Local {
    conns: HashMap<String, ConnInfo>,
    /// Local connections per user (the user's channel is subscribed while > 0).
    users: HashMap<String, usize>,
    /// (room, user, conn)
    presence: HashSet<(String, String, String)>,
}

pub struct RedisRouter {
    inner: Arc<Inner>,
}

struct Inner {
    settings: RedisSettings,
    config: ClientConfig,
    client: OnceLock<Client>,
    shards: OnceLock<shards::Shards>,
    keys: Keys,
    scripts: Scripts,
    sink: OnceLock<Arc<dyn NodeSink>>,
    local: Mutex<Local>,
    /// This node's registry entries were lost (reaped after its lease lapsed, or Redis
    /// lost its data) and are not all written back yet.
    reregister: AtomicBool,
    started: AtomicBool,
    stopped: CancellationToken,
    heartbeats: AtomicU64,
    /// When the last heartbeat renewed the lease ([`Inner::mono_ms`]).
    last_beat_ms: AtomicI64,
    /// Since when every heartbeat succeeded ([`Inner::mono_ms`]; -1: the last one
    /// failed). The reaper waits for a whole lease of them: after the lease shard was
    /// unreachable (a failover, an outage) every live node's deadline has passed, and
    /// each must get the chance to renew before anyone is reaped.
    leases_ok_since_ms: AtomicI64,
    /// The lease lapsed without a heartbeat: this node gave up its users' channels (as
    /// far as the cluster knows, it holds nobody) until a heartbeat succeeds again.
    fenced: AtomicBool,
    /// Redis's clock (ms) minus our monotonic clock ([`Inner::mono_ms`]), measured by
    /// the heartbeats; `i64::MIN` until measured. A publish carries its deadline in
    /// Redis's clock, so that one Redis only gets to after the caller gave up (a frozen
    /// server, a stalled socket) stores nothing: its 503 stays true.
    clock_offset_ms: AtomicI64,
    clock_base: std::time::Instant,
    id_tag: String,
    next_id: AtomicU64,
    since_ms: u64,
}

impl RedisRouter {
    /// Checks the settings (nothing connects until [`Backplane::start`]).
    pub fn new(settings: RedisSettings) -> Result<Arc<RedisRouter>> {
        let mut config = ClientConfig::from_url(&settings.url)
            .map_err(|e| RouterError::BadRequest(format!("invalid Redis URL: {e}")))?;
        config.timeout = settings.command_timeout;
        config.name = settings.node_id.clone();
        if settings.prefix.contains(['{', '}']) {
            return Err(RouterError::BadRequest(
                "the key prefix must not contain `{` or `}` (hash tags)".into(),
            ));
        }
        Ok(Arc::new(RedisRouter {
            inner: Arc::new(Inner {
                keys: Keys::new(&settings.prefix),
                settings,
                config,
                client: OnceLock::new(),
                shards: OnceLock::new(),
                scripts: Scripts::new(),
                sink: OnceLock::new(),
                local: Mutex::new(Local::default()),
                reregister: AtomicBool::new(false),
                started: AtomicBool::new(false),
                stopped: CancellationToken::new(),
                heartbeats: AtomicU64::new(0),
                last_beat_ms: AtomicI64::new(0),
                leases_ok_since_ms: AtomicI64::new(-1),
                fenced: AtomicBool::new(false),
                clock_offset_ms: AtomicI64::new(i64::MIN),
                clock_base: std::time::Instant::now(),
                id_tag: random_string(6),
                next_id: AtomicU64::new(0),
                since_ms: now_ms(),
            }),
        }))
    }

    /// Every shard (one for one Redis) and the state of its subscriber.
    pub fn shard_status(&self) -> Vec<ShardStatus> {
        self.inner
            .shards
            .get()
            .map(|s| s.status())
            .unwrap_or_default()
    }
}

impl Inner {
    fn client(&self) -> Result<&Client> {
        self.client
            .get()
            .ok_or_else(|| RouterError::Unavailable("the router is not started".into()))
    }

    fn shards(&self) -> Result<&shards::Shards> {
        self.shards
            .get()
            .ok_or_else(|| RouterError::Unavailable("the router is not started".into()))
    }

    /// Milliseconds on a clock that never jumps.
    fn mono_ms(&self) -> i64 {
        self.clock_base.elapsed().as_millis() as i64
    }

    /// A deadline `timeout` from now in Redis's clock, or 0 (none) before the clock
    /// offset was measured.
    fn redis_deadline_ms(&self, timeout: Duration) -> i64 {
        match self.clock_offset_ms.load(Ordering::SeqCst) {
            i64::MIN => 0,
            offset => self.mono_ms() + offset + timeout.as_millis() as i64,
        }
    }

    fn local(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ensure_started(&self) -> Result<()> {
        if self.started.load(Ordering::SeqCst) && !self.stopped.is_cancelled() {
            Ok(())
        } else {
            Err(RouterError::Unavailable("the router is not started".into()))
        }
    }

    /// `(max_len, max_age_ms, key_ttl_ms)` of a channel (max_len 0: no history).
    fn history_args(&self, channel: &str) -> (u64, u64, u64) {
        let policy = self.settings.policies.for_channel(channel);
        let (max_len, max_age) = if policy.keeps_history() {
            (policy.max_len as u64, policy.max_age.as_millis() as u64)
        } else {
            (0, 0)
        };
        let ttl = (policy.max_age * 2).max(KEY_TTL_MIN).as_millis() as u64;
        (max_len, max_age, ttl)
    }

    /// Runs a command (scripts: [`client::Script::cmd`] plus their arguments).
    async fn call(&self, cmd: Cmd) -> Result<Value> {
        self.client()?.call(&cmd).await.map_err(unavailable)
    }
}

#[async_trait]
impl Backplane for RedisRouter {
    async fn start(&self, sink: Arc<dyn NodeSink>) -> Result<()> {
        let inner = &self.inner;
        if inner.sink.set(sink.clone()).is_err() {
            return Err(RouterError::BadRequest("already started".into()));
        }
        let client = Client::connect(inner.config.clone())
            .await
            .map_err(|e| match e {
                client::Error::Config(m) => RouterError::BadRequest(m),
                client::Error::Auth(m) => {
                    RouterError::BadRequest(format!("Redis authentication failed: {m}"))
                }
                other => unavailable(other),
            })?;
        let _ = inner.client.set(client.clone());
        inner.last_beat_ms.store(inner.mono_ms(), Ordering::SeqCst);
        reaper::reap_previous_life(inner).await?;
        let shards = shards::Shards::new(
            client,
            inner.keys.clone(),
            inner.settings.node_id.clone(),
            inner.settings.probe_interval,
            inner.settings.command_timeout,
        );
        let _ = inner.shards.set(shards);
        inner.started.store(true, Ordering::SeqCst);
        // Fail fast unless a probe makes the round trip through every shard.
        inner.shards()?.start(sink).await.map_err(unavailable)?;
        inner.shards()?.spawn_watchdog();
        reaper::spawn(inner.clone());
        // Join the live set at once (the node's own heartbeats keep it there).
        Registry::heartbeat(self, NodeStatus::default()).await
    }

    async fn publish(&self, request: PublishRequest) -> Result<PublishOutcome> {
        publish::publish(&self.inner, request).await
    }

    async fn publish_many(&self, requests: Vec<PublishRequest>) -> Vec<Result<PublishOutcome>> {
        publish::publish_many(&self.inner, requests).await
    }

    async fn subscribe_room(&self, channel: &str) -> Result<()> {
        let inner = &self.inner;
        inner.ensure_started()?;
        inner
            .shards()?
            .subscribe(&inner.keys.live(channel))
            .await
            .map_err(unavailable)
    }

    async fn unsubscribe_room(&self, channel: &str) -> Result<()> {
        let inner = &self.inner;
        inner
            .shards()?
            .unsubscribe_confirmed(&inner.keys.live(channel))
            .await;
        Ok(())
    }

    async fn disconnect_user(&self, user: &str, code: u16, reason: &str) -> Result<usize> {
        let inner = &self.inner;
        inner.ensure_started()?;
        let channel = format!("user:{user}");
        let registry = inner.keys.registry(&channel);
        let cmd = inner
            .scripts
            .disconnect
            .cmd(&[registry.as_bytes()])
            .arg(inner.keys.live(&channel))
            .arg(frames::disconnect(user, code, reason));
        let v = inner.client()?.call(&cmd).await.map_err(unavailable)?;
        Ok(value_u64(&v) as usize)
    }

    fn stats(&self) -> BackplaneStats {
        BackplaneStats {
            shards: self.shard_status(),
            unreplicated: publish::UNREPLICATED.load(Ordering::Relaxed),
        }
    }

    fn is_up(&self) -> bool {
        let inner = &self.inner;
        inner.started.load(Ordering::SeqCst)
            && !inner.stopped.is_cancelled()
            && inner.shards.get().is_some_and(|s| s.is_up())
    }

    async fn shutdown(&self) {
        let inner = &self.inner;
        if inner.stopped.is_cancelled() {
            return;
        }
        inner.stopped.cancel();
        let (conns, presence) = {
            let mut local = inner.local();
            local.users.clear();
            (
                std::mem::take(&mut local.conns),
                std::mem::take(&mut local.presence),
            )
        };
        for (room, user, conn) in presence {
            let _ = inner
                .presence_change(presence::Change::Leave, &room, &user, &conn)
                .await;
        }
        for conn in conns.values() {
            let _ = inner.unregister_entry(&conn.user, &conn.conn_id).await;
        }
        let node = &inner.settings.node_id;
        let _ = inner
            .call(Cmd::new("ZREM").key(inner.keys.nodes()).arg(node))
            .await;
        let _ = inner
            .call(Cmd::new("HDEL").key(inner.keys.status()).arg(node))
            .await;
        if let Some(s) = inner.shards.get() {
            s.stop();
        }
    }
}
