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
use switchboard_proto::{Message, StreamPosition};

use crate::types::{
    ConnInfo, HistoryRead, NodeInfo, NodeStatus, PresenceInfo, PublishOutcome, PublishRequest,
    RouterError,
};
use crate::{Backplane, History, HistoryPolicies, NodeSink, Presence, Registry, Result};

mod frames;
mod link;
mod scripts;

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

    async fn register_conn(&self, conn: &ConnInfo) -> Result<()> {
        self.eval(
            &self.scripts.register,
            vec![
                self.key("u", &conn.user),
                self.key("nc", &conn.node),
                self.settings.events_stream.clone(),
            ],
            vec![
                conn.conn_id.clone().into(),
                conn.node.clone().into(),
                conn.since_ms.to_string().into(),
                conn.user.clone().into(),
                self.settings.events_maxlen.to_string().into(),
                self.redis_deadline_ms(self.settings.command_timeout)
                    .to_string()
                    .into(),
            ],
        )
        .await
        .map(|_| ())
    }

    async fn join_room(&self, channel: &str, user: &str, conn_id: &str) -> Result<bool> {
        let node = &self.settings.node_id;
        let v = self
            .eval(
                &self.scripts.join,
                vec![
                    self.key("p", channel),
                    self.key("pu", channel),
                    self.key("np", node),
                ],
                vec![
                    conn_id.into(),
                    user.into(),
                    node.as_str().into(),
                    channel.into(),
                    self.room_channel(channel).into(),
                ],
            )
            .await?;
        Ok(value_u64(&v) == 1)
    }

    /// Re-registers every local connection and presence entry (after this node's
    /// entries were reaped, or Redis restarted without its data). Returns whether every
    /// entry was written.
    async fn resync(&self) -> bool {
        let (conns, presence) = {
            let local = self.local();
            (
                local.conns.values().cloned().collect::<Vec<_>>(),
                local.presence.iter().cloned().collect::<Vec<_>>(),
            )
        };
        tracing::warn!(
            connections = conns.len(),
            presence = presence.len(),
            "registry entries missing; re-registering"
        );
        let mut ok = true;
        for conn in &conns {
            if let Err(e) = self.register_conn(conn).await {
                tracing::warn!(error = %e, "re-register failed");
                ok = false;
            }
        }
        for (room, user, conn) in &presence {
            if let Err(e) = self.join_room(room, user, conn).await {
                tracing::warn!(error = %e, "presence re-join failed");
                ok = false;
            }
        }
        ok
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
            let _ = self.leave_inner(&room, &user, &conn).await;
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

impl RedisRouter {
    async fn unregister_inner(&self, user: &str, conn_id: &str) -> Result<()> {
        let inner = &self.inner;
        let node = &inner.settings.node_id;
        inner
            .eval(
                &inner.scripts.unregister,
                vec![
                    inner.key("u", user),
                    inner.key("nc", node),
                    inner.settings.events_stream.clone(),
                ],
                vec![
                    conn_id.into(),
                    node.as_str().into(),
                    user.into(),
                    inner.settings.events_maxlen.to_string().into(),
                ],
            )
            .await
            .map(|_| ())
    }

    async fn leave_inner(&self, channel: &str, user: &str, conn_id: &str) -> Result<bool> {
        let inner = &self.inner;
        let node = &inner.settings.node_id;
        let v = inner
            .eval(
                &inner.scripts.leave,
                vec![
                    inner.key("p", channel),
                    inner.key("pu", channel),
                    inner.key("np", node),
                ],
                vec![
                    conn_id.into(),
                    user.into(),
                    node.as_str().into(),
                    channel.into(),
                    inner.room_channel(channel).into(),
                ],
            )
            .await?;
        Ok(value_u64(&v) == 1)
    }

    fn nodes_key(&self) -> String {
        format!("{}nodes", self.inner.settings.prefix)
    }
}

#[async_trait]
impl Registry for RedisRouter {
    async fn register(&self, conn: ConnInfo) -> Result<()> {
        let inner = &self.inner;
        inner.ensure_started()?;
        if conn.node != inner.settings.node_id {
            return Err(RouterError::BadRequest(
                "a connection is registered by its own node".into(),
            ));
        }
        if conn.user.is_empty() || conn.conn_id.is_empty() {
            return Err(RouterError::BadRequest(
                "empty user or connection id".into(),
            ));
        }
        if let Err(e) = inner.register_conn(&conn).await {
            // The script may have run with its answer lost or late: take the entry back
            // (the caller gives up on this connection and will not unregister it).
            let this = RedisRouter {
                inner: inner.clone(),
            };
            tokio::spawn(async move {
                let _ = this.unregister_inner(&conn.user, &conn.conn_id).await;
            });
            return Err(e);
        }
        inner.local().conns.insert(conn.conn_id.clone(), conn);
        Ok(())
    }

    async fn unregister(&self, user: &str, conn_id: &str) -> Result<()> {
        self.inner.local().conns.remove(conn_id);
        self.unregister_inner(user, conn_id).await
    }

    async fn connections(&self, user: &str) -> Result<Vec<ConnInfo>> {
        let inner = &self.inner;
        let map: HashMap<String, String> =
            fred::interfaces::HashesInterface::hgetall(&inner.client, inner.key("u", user))
                .await
                .map_err(unavailable)?;
        let mut out: Vec<ConnInfo> = map
            .into_iter()
            .map(|(conn_id, v)| {
                let mut parts = v.split(' ');
                ConnInfo {
                    conn_id,
                    user: user.to_owned(),
                    node: parts.next().unwrap_or_default().to_owned(),
                    since_ms: parts.next().and_then(|s| s.parse().ok()).unwrap_or(0),
                }
            })
            .collect();
        out.sort_by(|a, b| a.conn_id.cmp(&b.conn_id));
        Ok(out)
    }

    async fn heartbeat(&self, status: NodeStatus) -> Result<()> {
        let inner = &self.inner;
        inner.ensure_started()?;
        let node = &inner.settings.node_id;
        let sent_ms = inner.mono_ms();
        let v = inner
            .eval(
                &inner.scripts.heartbeat,
                vec![self.nodes_key(), inner.key("node", node)],
                vec![
                    node.as_str().into(),
                    (inner.settings.lease.as_millis() as u64).to_string().into(),
                    status.connections.to_string().into(),
                    (if status.draining { "1" } else { "0" }).into(),
                    inner.since_ms.to_string().into(),
                ],
            )
            .await?;
        let rtt = inner.mono_ms() - sent_ms;
        let parts = v.into_array();
        let added = parts.first().map(value_u64) == Some(1);
        // The reading's error is half the round trip: after the first one, only quick
        // round trips move the offset.
        if let Some(redis_ms) = parts.get(1).map(value_u64) {
            let quick = rtt <= (inner.settings.command_timeout / 8).as_millis() as i64;
            if quick || inner.clock_offset_ms.load(Ordering::SeqCst) == i64::MIN {
                let offset = redis_ms as i64 - (sent_ms + rtt / 2);
                inner.clock_offset_ms.store(offset, Ordering::SeqCst);
            }
        }
        let first = inner.heartbeats.fetch_add(1, Ordering::SeqCst) == 0;
        if added && !first {
            inner.reregister.store(true, Ordering::SeqCst);
        }
        if inner.reregister.load(Ordering::SeqCst) {
            // Until the entries are back, publishes to local users are stored but routed
            // nowhere: take the link down, and let the watchdog bring it up (the node
            // then repairs every local channel from the streams) once all are written.
            link::down(inner, "registry entries lost");
            if inner.resync().await {
                inner.reregister.store(false, Ordering::SeqCst);
            }
        }
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        let inner = &self.inner;
        let v = inner
            .eval(
                &inner.scripts.nodes,
                vec![self.nodes_key()],
                vec![inner.settings.prefix.clone().into()],
            )
            .await?;
        let parts = v.into_array();
        Ok(parts
            .chunks_exact(4)
            .map(|c| NodeInfo {
                node: value_str(&c[0]),
                connections: value_u64(&c[1]),
                draining: value_u64(&c[2]) == 1,
                since_ms: value_u64(&c[3]),
            })
            .collect())
    }
}

#[async_trait]
impl History for RedisRouter {
    async fn position(&self, channel: &str) -> Result<StreamPosition> {
        let read = self
            .read(channel, Some(&StreamPosition::new("-", u64::MAX)), 0)
            .await?;
        Ok(StreamPosition::new(read.epoch, read.offset))
    }

    async fn read(
        &self,
        channel: &str,
        since: Option<&StreamPosition>,
        limit: usize,
    ) -> Result<HistoryRead> {
        let inner = &self.inner;
        let (_, max_age, meta_ttl) = inner.history_args(channel);
        let (since_epoch, since_offset) = match since {
            Some(p) => (p.epoch.clone(), p.offset),
            None => (String::new(), 0),
        };
        let v = inner
            .eval(
                &inner.scripts.read,
                vec![inner.key("m", channel), inner.key("s", channel)],
                vec![
                    random_string(10).into(),
                    meta_ttl.to_string().into(),
                    since_epoch.into(),
                    since_offset.to_string().into(),
                    limit.min(1_000_000).to_string().into(),
                    max_age.to_string().into(),
                ],
            )
            .await?;
        let parts = v.into_array();
        if parts.len() < 3 {
            return Err(RouterError::Unavailable("unexpected read answer".into()));
        }
        let mut messages = Vec::with_capacity(parts.len() - 3);
        for part in &parts[3..] {
            let bytes = part.as_bytes().unwrap_or_default();
            let pb = <switchboard_proto::pb::Message as prost::Message>::decode(bytes)
                .map_err(|e| RouterError::Unavailable(format!("corrupt history entry: {e}")))?;
            let m = switchboard_proto::binary::message_from_pb(pb)
                .map_err(|e| RouterError::Unavailable(format!("corrupt history entry: {e}")))?;
            messages.push(Arc::new(m));
        }
        Ok(HistoryRead {
            epoch: value_str(&parts[0]),
            offset: value_u64(&parts[1]),
            recovered: value_u64(&parts[2]) == 1,
            messages,
        })
    }

    async fn ack(&self, user: &str, position: &StreamPosition) -> Result<()> {
        let inner = &self.inner;
        inner
            .eval(
                &inner.scripts.ack,
                vec![inner.key("a", user)],
                vec![
                    position.epoch.clone().into(),
                    position.offset.to_string().into(),
                    (ACK_TTL.as_millis() as u64).to_string().into(),
                ],
            )
            .await
            .map(|_| ())
    }

    async fn acked(&self, user: &str) -> Result<Option<StreamPosition>> {
        let inner = &self.inner;
        let v: Option<String> =
            fred::interfaces::KeysInterface::get(&inner.client, inner.key("a", user))
                .await
                .map_err(unavailable)?;
        Ok(v.and_then(|s| {
            let (epoch, offset) = s.split_once(' ')?;
            Some(StreamPosition::new(epoch, offset.parse().ok()?))
        }))
    }
}

#[async_trait]
impl Presence for RedisRouter {
    async fn join(&self, channel: &str, user: &str, conn_id: &str) -> Result<bool> {
        let inner = &self.inner;
        inner.ensure_started()?;
        let first = inner.join_room(channel, user, conn_id).await?;
        inner
            .local()
            .presence
            .insert((channel.to_owned(), user.to_owned(), conn_id.to_owned()));
        Ok(first)
    }

    async fn leave(&self, channel: &str, user: &str, conn_id: &str) -> Result<bool> {
        self.inner.local().presence.remove(&(
            channel.to_owned(),
            user.to_owned(),
            conn_id.to_owned(),
        ));
        self.leave_inner(channel, user, conn_id).await
    }

    async fn presence(&self, channel: &str) -> Result<PresenceInfo> {
        let inner = &self.inner;
        let v = inner
            .eval(
                &inner.scripts.presence,
                vec![inner.key("p", channel), inner.key("pu", channel)],
                Vec::new(),
            )
            .await?;
        let parts = v.into_array();
        let connections = parts.first().map(value_u64).unwrap_or(0);
        let mut users: Vec<String> = parts.iter().skip(1).map(value_str).collect();
        users.sort();
        users.dedup();
        Ok(PresenceInfo { users, connections })
    }
}
