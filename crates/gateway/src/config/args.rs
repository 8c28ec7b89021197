//! The raw settings from the command line and the environment (clap), before the file
//! and the defaults are applied by `build`.

use std::fmt;
use std::path::PathBuf;

/// Settings with one value, by TOML key. The flag is the key with dashes (`--admin-listen`),
/// the variable `SWITCHBOARD_` + the key in capitals (`SWITCHBOARD_ADMIN_LISTEN`).
pub(super) const SCALAR_KEYS: &[&str] = &[
    "listen",
    "admin_listen",
    "redis_url",
    "redis_prefix",
    "redis_timeout_ms",
    "probe_interval_ms",
    "redis_replica_acks",
    "events_stream",
    "node_id",
    "jwt_secret",
    "jwt_public_key",
    "jwt_algorithm",
    "jwt_audience",
    "jwt_issuer",
    "jwt_jwks_url",
    "jwt_jwks_min_refresh_seconds",
    "jwt_jwks_max_refresh_seconds",
    "jwt_jwks_allow_start_without_keys",
    "drain_seconds",
    "lease_seconds",
    "max_message_bytes",
    "heartbeat_ms",
    "handshake_timeout_ms",
    "idle_timeout_ms",
    "max_connections",
    "max_connections_per_user",
    "max_subscriptions",
    "outbound_queue_frames",
    "outbound_queue_bytes",
    "rate_limit",
    "rate_limit_burst",
    "bad_frame_limit",
    "bad_frame_window_seconds",
    "idempotency_window_seconds",
    "log_format",
    "log_level",
    "demo",
    "dev_echo",
    "rpc_max_inflight",
    "worker_threads",
    "tls_cert",
    "tls_key",
    "admin_tls",
    "tls_reload_interval_ms",
];

/// Settings that take a list: comma-separated text, a repeated flag or a TOML array.
pub(super) const LIST_KEYS: &[&str] = &[
    "api_key",
    "allowed_origins",
    "namespaces",
    "presence_namespaces",
];

/// How to run a gateway node. Every value is optional and raw: [`Config::load`] applies the
/// file and the defaults and checks everything.
#[derive(clap::Args, Clone, Default)]
pub struct ServeArgs {
    /// TOML file with settings; keys are the setting names in snake_case (listen,
    /// admin_listen, jwt_secret, …, plus [[history]] and [[routes]] tables). Flags and env
    /// beat the file.
    #[arg(long, env = "SWITCHBOARD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Public address (GET /ws). Port 0 = any free port. Default: 0.0.0.0:8080.
    #[arg(long, env = "SWITCHBOARD_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Internal address (server API /v1, /metrics, /healthz, /readyz). Port 0 = any free port.
    /// Default: 0.0.0.0:9090.
    #[arg(long, env = "SWITCHBOARD_ADMIN_LISTEN", value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// Redis backplane: redis://host:port/db (one Redis; rediss:// with TLS),
    /// redis+sentinel://host:port/db?sentinelServiceName=NAME (Sentinel) or
    /// redis-cluster://host:port?node=host:port&node=host:port (Redis Cluster: seed nodes).
    /// Default: none = embedded in-process backplane (single node).
    #[arg(
        long,
        env = "SWITCHBOARD_REDIS_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and pub/sub channel of this cluster. Default: sb:.
    #[arg(long, env = "SWITCHBOARD_REDIS_PREFIX", value_name = "PREFIX")]
    pub redis_prefix: Option<String>,
    /// Timeout of every Redis command, 100..=60000 ms (an API call answers 503 after it).
    /// Default: 2000.
    #[arg(long, env = "SWITCHBOARD_REDIS_TIMEOUT_MS", value_name = "MS")]
    pub redis_timeout_ms: Option<String>,
    /// Pub/sub liveness probe interval, 100..=10000 ms; a link without a probe back for
    /// two intervals is declared down and reconnected. Default: 1000.
    #[arg(long, env = "SWITCHBOARD_PROBE_INTERVAL_MS", value_name = "MS")]
    pub probe_interval_ms: Option<String>,
    /// Replicas that must confirm a stored message (Redis WAIT) before its publish is
    /// acknowledged: `auto` (one, where the primary has a replica online, on Redis Cluster
    /// and Sentinel; none on one Redis) or 0..=5. Default: auto.
    #[arg(long, env = "SWITCHBOARD_REDIS_REPLICA_ACKS", value_name = "N")]
    pub redis_replica_acks: Option<String>,
    /// Redis stream receiving every connect and disconnect (read it with a consumer
    /// group). Default: switchboard:events.
    #[arg(long, env = "SWITCHBOARD_EVENTS_STREAM", value_name = "KEY")]
    pub events_stream: Option<String>,
    /// Unique node name, [A-Za-z0-9_.-]{1,64}. Default: hostname + "-" + 6 random characters.
    #[arg(long, env = "SWITCHBOARD_NODE_ID", value_name = "ID")]
    pub node_id: Option<String>,
    /// HMAC key for client JWTs (HS256/384/512). Prefer the env variable: flags are visible
    /// in the process list. Exactly one of --jwt-secret, --jwt-public-key and
    /// --jwt-jwks-url is required. Default: none.
    #[arg(
        long,
        env = "SWITCHBOARD_JWT_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,
    /// PEM file with the public key for RS*/ES*/EdDSA JWTs (the PEM text itself is accepted
    /// too). Requires --jwt-algorithm. Default: none.
    #[arg(long, env = "SWITCHBOARD_JWT_PUBLIC_KEY", value_name = "PEM_FILE")]
    pub jwt_public_key: Option<String>,
    /// JWT algorithm. Default: HS256 with --jwt-secret; required with --jwt-public-key
    /// (RS256, RS384, RS512, ES256, ES384 or EdDSA); with --jwt-jwks-url, optional: the
    /// only algorithm accepted (default: whichever each key is for).
    #[arg(long, env = "SWITCHBOARD_JWT_ALGORITHM", value_name = "ALG")]
    pub jwt_algorithm: Option<String>,
    /// When set, tokens must carry this `aud`. Default: none (aud not checked).
    #[arg(long, env = "SWITCHBOARD_JWT_AUDIENCE", value_name = "AUD")]
    pub jwt_audience: Option<String>,
    /// When set, tokens must carry this `iss`. Default: none (iss not checked).
    #[arg(long, env = "SWITCHBOARD_JWT_ISSUER", value_name = "ISS")]
    pub jwt_issuer: Option<String>,
    /// JWKS URL of your identity provider (https://; http:// only for local testing):
    /// tokens are verified with the key their `kid` names, for the algorithm that key is
    /// for (RS*, PS*, ES256, ES384, EdDSA; never HS*). Instead of --jwt-secret and
    /// --jwt-public-key; --jwt-algorithm, if set, is the only algorithm accepted.
    /// Default: none.
    #[arg(long, env = "SWITCHBOARD_JWT_JWKS_URL", value_name = "URL")]
    pub jwt_jwks_url: Option<String>,
    /// Shortest time a fetched key set is kept (a shorter Cache-Control max-age is raised
    /// to it), and the least time between two fetches caused by tokens with an unknown
    /// kid, 1..=3600 s. Default: 60.
    #[arg(
        long,
        env = "SWITCHBOARD_JWT_JWKS_MIN_REFRESH_SECONDS",
        value_name = "SECONDS"
    )]
    pub jwt_jwks_min_refresh_seconds: Option<String>,
    /// Longest time a fetched key set is kept before it is fetched again (a longer
    /// Cache-Control max-age is cut to it), min..=604800 s. Default: 86400.
    #[arg(
        long,
        env = "SWITCHBOARD_JWT_JWKS_MAX_REFRESH_SECONDS",
        value_name = "SECONDS"
    )]
    pub jwt_jwks_max_refresh_seconds: Option<String>,
    /// Start even when the first fetch of --jwt-jwks-url fails (every token is refused
    /// until a fetch succeeds). Default: false = exit 1 when the first fetch fails.
    #[arg(long, env = "SWITCHBOARD_JWT_JWKS_ALLOW_START_WITHOUT_KEYS", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub jwt_jwks_allow_start_without_keys: Option<String>,
    /// Bearer key of the server API /v1/* (repeatable or comma-separated, for rotation).
    /// Default: none = the server API is closed, every /v1 request gets 401. Use long random
    /// keys (32+ characters).
    #[arg(
        long,
        env = "SWITCHBOARD_API_KEY",
        value_name = "KEY",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_key: Option<Vec<String>>,
    /// Comma-separated exact browser origins allowed to open /ws, like
    /// https://app.example.com, or "*" alone for any. Default: unset = requests without
    /// Origin, and those whose Origin is the request's own host (same origin).
    #[arg(long, env = "SWITCHBOARD_ALLOWED_ORIGINS", value_name = "ORIGINS")]
    pub allowed_origins: Option<String>,
    /// How long a SIGTERM drain spreads its closes over, 0..=3600. Default: 10.
    #[arg(long, env = "SWITCHBOARD_DRAIN_SECONDS", value_name = "SECONDS")]
    pub drain_seconds: Option<String>,
    /// Registry/presence lease of this node, 2..=300; a dead node's users are gone after at
    /// most this + 1 s. Default: 10.
    #[arg(long, env = "SWITCHBOARD_LEASE_SECONDS", value_name = "SECONDS")]
    pub lease_seconds: Option<String>,
    /// Largest client message, all fragments together, 16..=67108864 bytes (bigger closes
    /// with 1009). Default: 65536.
    #[arg(long, env = "SWITCHBOARD_MAX_MESSAGE_BYTES", value_name = "BYTES")]
    pub max_message_bytes: Option<String>,
    /// Interval of server pings, 1000..=600000 ms. Default: 25000.
    #[arg(long, env = "SWITCHBOARD_HEARTBEAT_MS", value_name = "MS")]
    pub heartbeat_ms: Option<String>,
    /// Time allowed for the HTTP upgrade request, 100..=600000 ms. Default: 10000.
    #[arg(long, env = "SWITCHBOARD_HANDSHAKE_TIMEOUT_MS", value_name = "MS")]
    pub handshake_timeout_ms: Option<String>,
    /// A connection that sends nothing (not even a pong) for this long is closed; 0 or
    /// heartbeat..=3600000 ms. Default: 0 = 2 × heartbeat.
    #[arg(long, env = "SWITCHBOARD_IDLE_TIMEOUT_MS", value_name = "MS")]
    pub idle_timeout_ms: Option<String>,
    /// Most WebSocket connections on this node; more get 503 before the upgrade,
    /// 1..=10000000. Default: 100000.
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<String>,
    /// Most live WebSocket connections of one user (JWT `sub`) in the whole cluster; one
    /// more gets 429 too_many_connections before the upgrade, 0..=1000000; 0 = no cap.
    /// Default: 64.
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS_PER_USER", value_name = "N")]
    pub max_connections_per_user: Option<String>,
    /// Most room subscriptions per connection, 1..=100000. Default: 256.
    #[arg(long, env = "SWITCHBOARD_MAX_SUBSCRIPTIONS", value_name = "N")]
    pub max_subscriptions: Option<String>,
    /// Most frames waiting to be written to one client before it is closed as a slow
    /// consumer (4008), 1..=1000000. Default: 1024.
    #[arg(long, env = "SWITCHBOARD_OUTBOUND_QUEUE_FRAMES", value_name = "N")]
    pub outbound_queue_frames: Option<String>,
    /// Most bytes waiting to be written to one client (4008 beyond), at least
    /// --max-message-bytes and at most 1073741824. Default: 4194304.
    #[arg(long, env = "SWITCHBOARD_OUTBOUND_QUEUE_BYTES", value_name = "BYTES")]
    pub outbound_queue_bytes: Option<String>,
    /// Sustained client messages per second per connection (4029 beyond), 0..=1000000;
    /// 0 = no limit. Default: 100.
    #[arg(long, env = "SWITCHBOARD_RATE_LIMIT", value_name = "PER_SEC")]
    pub rate_limit: Option<String>,
    /// Client messages a connection may send in a burst above the rate, 0..=10000000
    /// (at least 1 when the rate limit is on). Default: 200.
    #[arg(long, env = "SWITCHBOARD_RATE_LIMIT_BURST", value_name = "N")]
    pub rate_limit_burst: Option<String>,
    /// Bad frames tolerated per window; one more closes with 4400, 1..=100000. Default: 10.
    #[arg(long, env = "SWITCHBOARD_BAD_FRAME_LIMIT", value_name = "N")]
    pub bad_frame_limit: Option<String>,
    /// The window of --bad-frame-limit, 1..=3600 s. Default: 60.
    #[arg(
        long,
        env = "SWITCHBOARD_BAD_FRAME_WINDOW_SECONDS",
        value_name = "SECONDS"
    )]
    pub bad_frame_window_seconds: Option<String>,
    /// How long an idempotency key is remembered per channel: a publish with the same key
    /// within it is answered with the first one's position and not stored again,
    /// 1..=86400 s. Default: 300.
    #[arg(
        long,
        env = "SWITCHBOARD_IDEMPOTENCY_WINDOW_SECONDS",
        value_name = "SECONDS"
    )]
    pub idempotency_window_seconds: Option<String>,
    /// Channel history rules, first match wins: pattern=max_messages/max_age_seconds,
    /// comma-separated (e.g. "room:chat*=100/3600"); replaces the file's [[history]] tables.
    /// Default: user channels keep 1000 messages or 24 h, other channels none.
    #[arg(long, env = "SWITCHBOARD_HISTORY", value_name = "RULES")]
    pub history: Option<String>,
    /// Extra channel namespaces besides user and room, comma-separated [a-z0-9_-]+.
    /// Default: none.
    #[arg(long, env = "SWITCHBOARD_NAMESPACES", value_name = "LIST")]
    pub namespaces: Option<String>,
    /// Extra namespaces (from --namespaces) whose subscribers get presence frames and a
    /// presence list like rooms do. `room` always has presence; other namespaces are plain
    /// feeds without join/leave traffic (cheap fan-out to many subscribers). Default: none.
    #[arg(long, env = "SWITCHBOARD_PRESENCE_NAMESPACES", value_name = "LIST")]
    pub presence_namespaces: Option<String>,
    /// Tokio worker threads, 0..=1024; 0 = one per CPU available to the process (its
    /// cgroup/affinity limit). Set it to the pod's CPU limit on Kubernetes. Default: 0.
    #[arg(long, env = "SWITCHBOARD_WORKER_THREADS", value_name = "N")]
    pub worker_threads: Option<String>,
    /// Log format: text or json. Default: text.
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Log filter (tracing EnvFilter syntax), e.g. info or switchboard=debug,warn.
    /// Default: info.
    #[arg(long, env = "SWITCHBOARD_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Serve the static demo page on the public port. Default: false.
    #[arg(long, env = "SWITCHBOARD_DEMO", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", require_equals = true)]
    pub demo: Option<String>,
    /// Development only: also serve GET /echo on the public port, a WebSocket without a
    /// token that sends every message back through the connection's own reader, writer
    /// and limits (the Autobahn conformance check, `make check-autobahn`). Never in
    /// production. Default: false.
    #[arg(long, env = "SWITCHBOARD_DEV_ECHO", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", require_equals = true)]
    pub dev_echo: Option<String>,
    /// Most RPC calls one connection may have in flight; one more is answered
    /// `too_many_requests` at once. 1..=10000. Default: 16.
    #[arg(long, env = "SWITCHBOARD_RPC_MAX_INFLIGHT", value_name = "N")]
    pub rpc_max_inflight: Option<String>,
    /// RPC route PATTERN=URL[,URL…] (repeatable; in the env variable separate routes with
    /// `;`), e.g. "orders.*=http://127.0.0.1:7001/rpc". Every other route setting takes its
    /// default (use the file's [[routes]] tables for more); these routes come after the
    /// file's. Default: none (every call answers no_route).
    #[arg(
        long = "rpc-route",
        env = "SWITCHBOARD_RPC_ROUTES",
        value_name = "PATTERN=URL[,URL…]",
        value_delimiter = ';'
    )]
    pub rpc_route: Option<Vec<String>>,
    /// PEM file with the certificate chain (leaf first) to serve the public listener with
    /// TLS (wss://); requires --tls-key. Reloaded when the file changes. Default: none
    /// (plain ws://).
    #[arg(long, env = "SWITCHBOARD_TLS_CERT", value_name = "PEM_FILE")]
    pub tls_cert: Option<String>,
    /// PEM file with the private key of --tls-cert (PKCS#8, PKCS#1 or SEC1). Default: none.
    #[arg(long, env = "SWITCHBOARD_TLS_KEY", value_name = "PEM_FILE")]
    pub tls_key: Option<String>,
    /// Also serve the internal listener (server API, /metrics, /healthz, /readyz) with
    /// the TLS certificate. Requires --tls-cert. Default: false.
    #[arg(long, env = "SWITCHBOARD_ADMIN_TLS", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", require_equals = true)]
    pub admin_tls: Option<String>,
    /// How often the TLS files are checked for a change, 100..=3600000 ms. Default: 5000.
    #[arg(long, env = "SWITCHBOARD_TLS_RELOAD_INTERVAL_MS", value_name = "MS")]
    pub tls_reload_interval_ms: Option<String>,
}

impl fmt::Debug for ServeArgs {
    /// Like a derived `Debug`, but secrets show as `<redacted>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("ServeArgs");
        s.field("config", &self.config);
        for key in SCALAR_KEYS
            .iter()
            .chain(LIST_KEYS)
            .chain(&["history", "rpc_route"])
        {
            let value = cli_value(self, key);
            match *key {
                "jwt_secret" | "api_key" | "redis_url" => {
                    s.field(key, &value.map(|_| "<redacted>"))
                }
                _ => s.field(key, &value),
            };
        }
        s.finish()
    }
}

/// The raw flag/env value of setting `key`, if given.
pub(super) fn cli_value(args: &ServeArgs, key: &str) -> Option<Vec<String>> {
    let one = |v: &Option<String>| v.clone().map(|v| vec![v]);
    match key {
        "listen" => one(&args.listen),
        "admin_listen" => one(&args.admin_listen),
        "redis_url" => one(&args.redis_url),
        "redis_prefix" => one(&args.redis_prefix),
        "redis_timeout_ms" => one(&args.redis_timeout_ms),
        "probe_interval_ms" => one(&args.probe_interval_ms),
        "redis_replica_acks" => one(&args.redis_replica_acks),
        "events_stream" => one(&args.events_stream),
        "node_id" => one(&args.node_id),
        "jwt_secret" => one(&args.jwt_secret),
        "jwt_public_key" => one(&args.jwt_public_key),
        "jwt_algorithm" => one(&args.jwt_algorithm),
        "jwt_audience" => one(&args.jwt_audience),
        "jwt_issuer" => one(&args.jwt_issuer),
        "jwt_jwks_url" => one(&args.jwt_jwks_url),
        "jwt_jwks_min_refresh_seconds" => one(&args.jwt_jwks_min_refresh_seconds),
        "jwt_jwks_max_refresh_seconds" => one(&args.jwt_jwks_max_refresh_seconds),
        "jwt_jwks_allow_start_without_keys" => one(&args.jwt_jwks_allow_start_without_keys),
        "api_key" => args.api_key.clone(),
        "allowed_origins" => one(&args.allowed_origins),
        "drain_seconds" => one(&args.drain_seconds),
        "lease_seconds" => one(&args.lease_seconds),
        "max_message_bytes" => one(&args.max_message_bytes),
        "heartbeat_ms" => one(&args.heartbeat_ms),
        "handshake_timeout_ms" => one(&args.handshake_timeout_ms),
        "idle_timeout_ms" => one(&args.idle_timeout_ms),
        "max_connections" => one(&args.max_connections),
        "max_connections_per_user" => one(&args.max_connections_per_user),
        "max_subscriptions" => one(&args.max_subscriptions),
        "outbound_queue_frames" => one(&args.outbound_queue_frames),
        "outbound_queue_bytes" => one(&args.outbound_queue_bytes),
        "rate_limit" => one(&args.rate_limit),
        "rate_limit_burst" => one(&args.rate_limit_burst),
        "bad_frame_limit" => one(&args.bad_frame_limit),
        "bad_frame_window_seconds" => one(&args.bad_frame_window_seconds),
        "idempotency_window_seconds" => one(&args.idempotency_window_seconds),
        "history" => one(&args.history),
        "namespaces" => one(&args.namespaces),
        "presence_namespaces" => one(&args.presence_namespaces),
        "log_format" => one(&args.log_format),
        "log_level" => one(&args.log_level),
        "demo" => one(&args.demo),
        "dev_echo" => one(&args.dev_echo),
        "rpc_max_inflight" => one(&args.rpc_max_inflight),
        "worker_threads" => one(&args.worker_threads),
        "rpc_route" => args.rpc_route.clone(),
        "tls_cert" => one(&args.tls_cert),
        "tls_key" => one(&args.tls_key),
        "admin_tls" => one(&args.admin_tls),
        "tls_reload_interval_ms" => one(&args.tls_reload_interval_ms),
        _ => None,
    }
}
