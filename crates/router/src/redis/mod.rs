//! The Redis router: many nodes behave as one.
//!
//! - Registry: `user → {conn: node}` hashes, node leases in a sorted set scored by the
//!   lease deadline (Redis clock); every node reaps expired nodes, atomically, emitting
//!   synthetic disconnect events and presence leaves.
//! - Publish: one Lua script numbers the message `(epoch, offset)`, appends it to the
//!   channel's stream (bounded by count and age), looks up the target nodes and
//!   PUBLISHes the frame to their node channels (users) or to the room channel (rooms).
//! - Subscriber: a dedicated connection subscribed to this node's channel and to the
//!   channels of rooms with local members; fred resubscribes after a reconnect, and a
//!   probe published to our own node channel every interval detects a wedged link.
//!   When the link was down the node's sink is told, and it repairs from the streams.
//! - Connection events: every connect and disconnect is appended to a stream
//!   (default `switchboard:events`) for backends to read with a consumer group.
//!
//! # Layout
//! - [`scripts`]: the Lua scripts and the key layout.
//! - [`frames`]: backplane frames built and decoded in Rust.
//! - [`link`]: the subscriber session (dispatch, probe, watchdog, reaper).
//! - `registry`, `streams`, `presence`: the trait implementations besides
//!   [`Backplane`], which is in this file.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use fred::clients::{Client, SubscriberClient};
use fred::interfaces::{ClientLike, PubsubInterface};
use fred::types::config::{Config, ConnectionConfig, PerformanceConfig, ReconnectPolicy};
use fred::types::{Builder, Value};
use rand::distr::Alphanumeric;
use rand::Rng as _;
use switchboard_proto::channel::Channel;
use switchboard_proto::Message;

use crate::types::{ConnInfo, NodeStatus, PublishOutcome, PublishRequest, RouterError};
use crate::{Backplane, HistoryPolicies, NodeSink, Registry, Result};

mod frames;
mod link;
mod presence;
mod registry;
mod scripts;
mod streams;

use scripts::Scripts;

/// How a Redis router connects and behaves. Every field documents its default.
#[derive(Clone, Debug)]
pub struct RedisSettings {
    /// `redis://[user:pass@]host:port/db`, `rediss://…`, or a Sentinel URL
    /// `redis+sentinel://host:26379/db?sentinelServiceName=mymaster` (also spelled
    /// `redis-sentinel://`; more sentinels with `&node=host:port`).
    pub url: String,
    /// This node's id.
    pub node_id: String,
    /// Prefix of every key and pub/sub channel. Default `sb:`.
    pub prefix: String,
    /// The connection events stream. Default `switchboard:events`.
    pub events_stream: String,
    /// Approximate bound of the events stream. Default 1,000,000 entries.
    pub events_maxlen: u64,
    /// Registry lease. Default 10 s.
    pub lease: Duration,
    /// Pub/sub liveness probe interval; a link is declared broken after two intervals
    /// without our own probe. Default 1 s.
    pub probe_interval: Duration,
    /// Timeout of every Redis command. Default 2 s.
    pub command_timeout: Duration,
    /// Which channels keep history.
    pub policies: HistoryPolicies,
}

impl RedisSettings {
    pub fn new(url: impl Into<String>, node_id: impl Into<String>) -> RedisSettings {
        RedisSettings {
            url: url.into(),
            node_id: node_id.into(),
            prefix: "sb:".into(),
            events_stream: "switchboard:events".into(),
            events_maxlen: 1_000_000,
            lease: Duration::from_secs(10),
            probe_interval: Duration::from_secs(1),
            command_timeout: Duration::from_secs(2),
            policies: HistoryPolicies::default(),
        }
    }
}

/// Meta keys of channels without history live this long after their last use.
const META_TTL_MIN: Duration = Duration::from_secs(24 * 3600);
/// The inbox ack lives this long after it was written.
const ACK_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

fn unavailable(e: fred::error::Error) -> RouterError {
    RouterError::Unavailable(e.to_string())
}

fn random_string(n: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn value_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_string(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Integer(i) => i.to_string(),
        other => other.as_string().unwrap_or_default(),
    }
}

fn value_u64(v: &Value) -> u64 {
    match v {
        Value::Integer(i) => u64::try_from(*i).unwrap_or(0),
        other => value_str(other).parse().unwrap_or(0),
    }
}

/// What this node holds, to re-register after its entries were reaped or Redis lost
/// its data.
#[derive(Default)]
struct Local {
    conns: HashMap<String, ConnInfo>,
    /// (room, user, conn)
    presence: HashSet<(String, String, String)>,
}

pub struct RedisRouter {
    inner: Arc<Inner>,
}

struct Inner {
    settings: RedisSettings,
    client: Client,
    subscriber: SubscriberClient,
    scripts: Scripts,
    sink: OnceLock<Arc<dyn NodeSink>>,
    local: Mutex<Local>,
    /// Whether the pub/sub link is healthy (probes come back).
    link_up: AtomicBool,
    /// This node's registry entries were lost (reaped after its lease lapsed, or Redis
    /// lost its data) and are not all written back yet. The link is not declared up
    /// while it is set: publishes to local users were routed nowhere meanwhile, and the
    /// link coming up is what makes the node repair its channels from the streams.
    reregister: AtomicBool,
    started: AtomicBool,
    stopped: tokio::sync::Notify,
    is_stopped: AtomicBool,
    heartbeats: AtomicU64,
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
    /// Builds the clients (nothing connects until [`Backplane::start`]).
    pub fn new(settings: RedisSettings) -> Result<Arc<RedisRouter>> {
        let url = settings
            .url
            .replacen("redis+sentinel://", "redis-sentinel://", 1)
            .replacen("rediss+sentinel://", "rediss-sentinel://", 1);
        let config = Config::from_url(&url)
            .map_err(|e| RouterError::BadRequest(format!("invalid Redis URL: {e}")))?;
        let timeout = settings.command_timeout;
        let build = |capacity: usize| {
            let mut b = Builder::from_config(config.clone());
            b.with_performance_config(|p: &mut PerformanceConfig| {
                p.default_command_timeout = timeout;
                p.broadcast_channel_capacity = capacity;
            })
            .with_connection_config(|c: &mut ConnectionConfig| {
                c.connection_timeout = timeout;
                c.internal_command_timeout = timeout;
                c.max_command_attempts = 1;
                c.unresponsive.max_timeout = Some(timeout * 2);
                c.unresponsive.interval = (timeout / 2).max(Duration::from_millis(100));
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2));
            b
        };
        let client = build(1024)
            .build()
            .map_err(|e| RouterError::BadRequest(e.to_string()))?;
        // The subscriber's broadcast buffer holds what arrives while the dispatcher is
        // busy; a lag is detected and repaired, but a large buffer makes it rare.
        let subscriber = build(1 << 16)
            .build_subscriber_client()
            .map_err(|e| RouterError::BadRequest(e.to_string()))?;
        Ok(Arc::new(RedisRouter {
            inner: Arc::new(Inner {
                settings,
                client,
                subscriber,
                scripts: Scripts::new(),
                sink: OnceLock::new(),
                local: Mutex::new(Local::default()),
                link_up: AtomicBool::new(false),
                reregister: AtomicBool::new(false),
                started: AtomicBool::new(false),
                stopped: tokio::sync::Notify::new(),
                is_stopped: AtomicBool::new(false),
                heartbeats: AtomicU64::new(0),
                clock_offset_ms: AtomicI64::new(i64::MIN),
                clock_base: std::time::Instant::now(),
                id_tag: random_string(6),
                next_id: AtomicU64::new(0),
                since_ms: now_ms(),
            }),
        }))
    }
}

impl Inner {
    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}:{name}", self.settings.prefix)
    }

    fn node_channel(&self, node: &str) -> String {
        self.key("n", node)
    }

    fn room_channel(&self, room: &str) -> String {
        self.key("r", room)
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
        if self.started.load(Ordering::SeqCst) && !self.is_stopped.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(RouterError::Unavailable("the router is not started".into()))
        }
    }

    fn history_args(&self, channel: &str) -> (u64, u64, u64) {
        let policy = self.settings.policies.for_channel(channel);
        let (max_len, max_age) = if policy.keeps_history() {
            (policy.max_len as u64, policy.max_age.as_millis() as u64)
        } else {
            (0, 0)
        };
        let meta_ttl = policy.max_age.max(META_TTL_MIN).as_millis() as u64;
        (max_len, max_age, meta_ttl)
    }

    async fn eval(
        &self,
        script: &fred::types::scripts::Script,
        keys: Vec<String>,
        args: Vec<Value>,
    ) -> Result<Value> {
        script
            .evalsha_with_reload::<Value, _, _>(&self.client, keys, args)
            .await
            .map_err(unavailable)
    }
}

#[async_trait]
impl Backplane for RedisRouter {
    async fn start(&self, sink: Arc<dyn NodeSink>) -> Result<()> {
        let inner = &self.inner;
        if inner.sink.set(sink).is_err() {
            return Err(RouterError::BadRequest("already started".into()));
        }
        inner.client.init().await.map_err(unavailable)?;
        link::reap_previous_life(inner).await?;
        inner.subscriber.init().await.map_err(unavailable)?;
        inner
            .subscriber
            .subscribe(inner.node_channel(&inner.settings.node_id))
            .await
            .map_err(unavailable)?;
        inner.started.store(true, Ordering::SeqCst);
        link::spawn(inner.clone());
        // Fail fast unless a probe makes the round trip through pub/sub.
        link::first_probe(inner).await?;
        // Join the live set at once (the node's own heartbeats keep it there).
        Registry::heartbeat(self, NodeStatus::default()).await
    }

    async fn publish(&self, request: PublishRequest) -> Result<PublishOutcome> {
        let inner = &self.inner;
        inner.ensure_started()?;
        let channel =
            Channel::parse(&request.channel).map_err(|e| RouterError::BadRequest(e.to_string()))?;
        let user = channel.user().map(str::to_owned);
        let n = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut message = Message {
            channel: request.channel,
            id: format!("m-{}{n:x}", inner.id_tag),
            from: request.from,
            epoch: String::new(),
            offset: 0,
            ts: now_ms(),
            data: request.data,
        };
        let (max_len, max_age, meta_ttl) = inner.history_args(&message.channel);
        let template: Bytes = frames::message_template(&message);
        let user_key = inner.key("u", user.as_deref().unwrap_or(""));
        let deadline_ms = inner.redis_deadline_ms(inner.settings.command_timeout);
        let v = inner
            .eval(
                &inner.scripts.publish,
                vec![
                    inner.key("m", &message.channel),
                    inner.key("s", &message.channel),
                    user_key,
                ],
                vec![
                    Value::Bytes(template),
                    max_len.to_string().into(),
                    max_age.to_string().into(),
                    meta_ttl.to_string().into(),
                    random_string(10).into(),
                    (if user.is_some() { "u" } else { "r" }).into(),
                    inner.room_channel(&message.channel).into(),
                    inner.key("n", "").into(),
                    deadline_ms.to_string().into(),
                ],
            )
            .await?;
        let parts = v.into_array();
        if parts.len() < 4 {
            return Err(RouterError::Unavailable("unexpected publish answer".into()));
        }
        message.epoch = value_str(&parts[0]);
        message.offset = value_u64(&parts[1]);
        Ok(PublishOutcome {
            message: Arc::new(message),
            nodes: u32::try_from(value_u64(&parts[2])).unwrap_or(u32::MAX),
            online: value_u64(&parts[3]) == 1,
        })
    }

    async fn subscribe_room(&self, channel: &str) -> Result<()> {
        self.inner.ensure_started()?;
        self.inner
            .subscriber
            .subscribe(self.inner.room_channel(channel))
            .await
            .map_err(unavailable)
    }

    async fn unsubscribe_room(&self, channel: &str) -> Result<()> {
        self.inner
            .subscriber
            .unsubscribe(self.inner.room_channel(channel))
            .await
            .map_err(unavailable)
    }

    async fn disconnect_user(&self, user: &str, code: u16, reason: &str) -> Result<usize> {
        let inner = &self.inner;
        inner.ensure_started()?;
        let v = inner
            .eval(
                &inner.scripts.disconnect,
                vec![inner.key("u", user)],
                vec![
                    Value::Bytes(frames::disconnect(user, code, reason)),
                    inner.key("n", "").into(),
                ],
            )
            .await?;
        Ok(value_u64(&v) as usize)
    }

    fn is_up(&self) -> bool {
        let inner = &self.inner;
        inner.started.load(Ordering::SeqCst)
            && !inner.is_stopped.load(Ordering::SeqCst)
            && inner.link_up.load(Ordering::SeqCst)
            && inner.client.is_connected()
    }

    async fn shutdown(&self) {
        let inner = &self.inner;
        if inner.is_stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        inner.stopped.notify_waiters();
        let (conns, presence) = {
            let mut local = inner.local();
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
            let _ = self.unregister_inner(&conn.user, &conn.conn_id).await;
        }
        let node = &inner.settings.node_id;
        let _: std::result::Result<Value, _> = fred::interfaces::SortedSetsInterface::zrem(
            &inner.client,
            self.nodes_key(),
            node.as_str(),
        )
        .await;
        let _ = inner.subscriber.quit().await;
        let _ = inner.client.quit().await;
    }
}
