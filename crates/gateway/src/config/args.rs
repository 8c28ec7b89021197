//! The settings table: every gateway setting declared once — field, flag, env variable,
//! value name, kind (range and default), doc, and whether it is secret, repeatable or a
//! file key. `config/settings.rs` says what the table makes of it.

use std::path::PathBuf;

use switchboard_router::redis::{
    DEFAULT_COMMAND_TIMEOUT_MS, DEFAULT_EVENTS_STREAM, DEFAULT_LEASE_SECS, DEFAULT_PREFIX,
    DEFAULT_PROBE_INTERVAL_MS,
};

use super::settings::{boolean, int, list, settings, special, text, unset, Field, Setting};

settings! {
    /// TOML file with settings: the file keys below, plus `[[history]]` and `[[routes]]`
    /// tables. Flags and env beat the file.
    config: PathBuf, "--config", SWITCHBOARD_CONFIG, FILE = special("none"), in_file: false;

    /// Public address (`GET /ws`); port 0 = any free port.
    listen: String, "--listen", SWITCHBOARD_LISTEN, ADDR = text("0.0.0.0:8080");

    /// Internal address (server API `/v1/*`, `/metrics`, `/healthz`, `/readyz`); port 0 =
    /// any free port.
    admin_listen: String, "--admin-listen", SWITCHBOARD_ADMIN_LISTEN, ADDR =
        text("0.0.0.0:9090");

    /// Redis backplane: `redis://host:port/db` (one Redis; `rediss://` with TLS),
    /// `redis+sentinel://host:port/db?sentinelServiceName=NAME` (Sentinel) or
    /// `redis-cluster://host:port?node=host:port&node=host:port` (Redis Cluster: seed
    /// nodes); `user:pass@` for passwords/ACL users, `?tlsCaFile=PATH` for a private CA.
    redis_url: String, "--redis-url", SWITCHBOARD_REDIS_URL, URL =
        unset("unset = embedded in-process backplane (one node)"),
        secret: true, see: Some("[Redis Cluster](#redis-cluster)");

    /// Prefix of every Redis key and pub/sub channel of this cluster (several clusters can
    /// share a Redis); no `{` or `}`.
    redis_prefix: String, "--redis-prefix", SWITCHBOARD_REDIS_PREFIX, PREFIX =
        text(DEFAULT_PREFIX);

    /// Timeout of every Redis command, in ms; API calls answer 503 after it.
    redis_timeout_ms: String, "--redis-timeout-ms", SWITCHBOARD_REDIS_TIMEOUT_MS, MS =
        int(100, 60_000, DEFAULT_COMMAND_TIMEOUT_MS);

    /// Pub/sub liveness probe interval per shard, in ms: a probe not back one interval after
    /// Redis took it = shard down, two = reconnect.
    probe_interval_ms: String, "--probe-interval-ms", SWITCHBOARD_PROBE_INTERVAL_MS, MS =
        int(100, 10_000, DEFAULT_PROBE_INTERVAL_MS);

    /// Replicas that must have a stored message (Redis `WAIT`) before its publish is
    /// acknowledged: `auto` = one where the primary has a replica online (Redis Cluster,
    /// Sentinel), none on one Redis; or 0 to 5.
    redis_replica_acks: String, "--redis-replica-acks", SWITCHBOARD_REDIS_REPLICA_ACKS, N =
        text("auto");

    /// Redis stream receiving every connect and disconnect (read it with a consumer group).
    events_stream: String, "--events-stream", SWITCHBOARD_EVENTS_STREAM, KEY =
        text(DEFAULT_EVENTS_STREAM);

    /// Unique node name, `[A-Za-z0-9_.-]{1,64}`; two live nodes must never share one (a node
    /// starting under an id reaps that id's previous life, so a restarted pod with a stable
    /// name cleans up after its crash at once).
    node_id: String, "--node-id", SWITCHBOARD_NODE_ID, ID =
        unset("hostname + \"-\" + 6 random characters");

    /// HMAC key for client JWTs (HS256/384/512). Prefer the env variable: flags are visible
    /// in the process list. Exactly one of `--jwt-secret`, `--jwt-public-key` and
    /// `--jwt-jwks-url` is required.
    jwt_secret: String, "--jwt-secret", SWITCHBOARD_JWT_SECRET, SECRET = unset("none"),
        secret: true;

    /// PEM file with the public key for RS256/384/512, ES256/384 or EdDSA JWTs (the PEM
    /// text itself is accepted too); requires `--jwt-algorithm`.
    jwt_public_key: String, "--jwt-public-key", SWITCHBOARD_JWT_PUBLIC_KEY, PEM_FILE =
        unset("none");

    /// JWT algorithm: required with `--jwt-public-key` (RS256, RS384, RS512, ES256, ES384
    /// or EdDSA); the token's `alg` must equal it. With `--jwt-jwks-url`, optional: the
    /// only algorithm accepted (unset: whichever each key is for).
    jwt_algorithm: String, "--jwt-algorithm", SWITCHBOARD_JWT_ALGORITHM, ALG =
        unset("HS256 with `--jwt-secret`");

    /// When set, tokens must carry this `aud`.
    jwt_audience: String, "--jwt-audience", SWITCHBOARD_JWT_AUDIENCE, AUD =
        unset("none (`aud` not checked)");

    /// When set, tokens must carry this `iss`.
    jwt_issuer: String, "--jwt-issuer", SWITCHBOARD_JWT_ISSUER, ISS =
        unset("none (`iss` not checked)");

    /// JWKS URL of your identity provider (`https://`; `http://` only for local testing,
    /// with a warning): tokens are verified with the key their `kid` names, for the
    /// algorithm that key is for (`RS*`, `PS*`, ES256, ES384, EdDSA; never `HS*`). Instead of
    /// `--jwt-secret` and `--jwt-public-key`.
    jwt_jwks_url: String, "--jwt-jwks-url", SWITCHBOARD_JWT_JWKS_URL, URL = unset("none"),
        see: Some("[Tokens from an identity provider](#tokens-from-an-identity-provider-jwks)");

    /// Shortest time in seconds a fetched key set is kept (a smaller `Cache-Control:
    /// max-age`, or none, is raised to it), and the least time between two fetches caused
    /// by tokens with an unknown `kid`.
    jwt_jwks_min_refresh_seconds: String, "--jwt-jwks-min-refresh-seconds",
        SWITCHBOARD_JWT_JWKS_MIN_REFRESH_SECONDS, SECONDS = int(1, 3600, 60);

    /// Longest time in seconds a fetched key set is kept before it is fetched again (a
    /// longer `Cache-Control: max-age` is cut to it); at least
    /// `--jwt-jwks-min-refresh-seconds`.
    jwt_jwks_max_refresh_seconds: String, "--jwt-jwks-max-refresh-seconds",
        SWITCHBOARD_JWT_JWKS_MAX_REFRESH_SECONDS, SECONDS = int(1, 604_800, 86_400);

    /// Start even when the first fetch of `--jwt-jwks-url` fails (every token is refused
    /// until a fetch succeeds); without it the node exits 1 when the first fetch fails.
    jwt_jwks_allow_start_without_keys: String, "--jwt-jwks-allow-start-without-keys",
        SWITCHBOARD_JWT_JWKS_ALLOW_START_WITHOUT_KEYS, BOOL = boolean(false);

    /// Bearer key of the server API `/v1/*` (repeatable or comma-separated, for rotation);
    /// use long random keys (32+ characters).
    api_key: Vec<String>, "--api-key", SWITCHBOARD_API_KEY, KEY =
        list("none = the server API is closed, every `/v1` request gets 401"),
        secret: true, repeat: Some(',');

    /// Comma-separated exact browser origins allowed to open `/ws`, like
    /// `https://app.example.com`, or `*` alone for any.
    allowed_origins: String, "--allowed-origins", SWITCHBOARD_ALLOWED_ORIGINS, ORIGINS =
        list("unset = requests without `Origin`, and those from the request's own host");

    /// How long a SIGTERM drain spreads its closes over, in seconds.
    drain_seconds: String, "--drain-seconds", SWITCHBOARD_DRAIN_SECONDS, SECONDS =
        int(0, 3600, 10);

    /// Registry/presence lease of this node, in seconds; a dead node's users are gone after
    /// at most this + 1 s.
    lease_seconds: String, "--lease-seconds", SWITCHBOARD_LEASE_SECONDS, SECONDS =
        int(2, 300, DEFAULT_LEASE_SECS);

    /// Largest client message in bytes, all fragments together (bigger closes with 1009).
    max_message_bytes: String, "--max-message-bytes", SWITCHBOARD_MAX_MESSAGE_BYTES, BYTES =
        int(16, 67_108_864, 65_536);

    /// Interval of server pings in ms (`welcome.heartbeat_ms`).
    heartbeat_ms: String, "--heartbeat-ms", SWITCHBOARD_HEARTBEAT_MS, MS =
        int(1000, 600_000, 25_000);

    /// Time allowed for the HTTP upgrade request and the upgrade itself, in ms.
    handshake_timeout_ms: String, "--handshake-timeout-ms", SWITCHBOARD_HANDSHAKE_TIMEOUT_MS,
        MS = int(100, 600_000, 10_000);

    /// A connection that sends nothing (not even a pong) for this long, in ms, is closed;
    /// 0 = 2 × heartbeat, else at least `--heartbeat-ms`.
    idle_timeout_ms: String, "--idle-timeout-ms", SWITCHBOARD_IDLE_TIMEOUT_MS, MS =
        int(0, 3_600_000, 0);

    /// Most WebSocket connections on this node; more get 503 `over_capacity` before the
    /// upgrade.
    max_connections: String, "--max-connections", SWITCHBOARD_MAX_CONNECTIONS, N =
        int(1, 10_000_000, 100_000);

    /// Most live WebSocket connections of one user (JWT `sub`) in the whole cluster; one
    /// more gets 429 `too_many_connections` before the upgrade; 0 = no cap.
    max_connections_per_user: String, "--max-connections-per-user",
        SWITCHBOARD_MAX_CONNECTIONS_PER_USER, N = int(0, 1_000_000, 64),
        see: Some("[the protocol in short](#the-protocol-in-short)");

    /// Most room subscriptions per connection (`limit_exceeded` beyond).
    max_subscriptions: String, "--max-subscriptions", SWITCHBOARD_MAX_SUBSCRIPTIONS, N =
        int(1, 100_000, 256);

    /// Most frames waiting to be written to one client before it is closed as a slow
    /// consumer (4008).
    outbound_queue_frames: String, "--outbound-queue-frames", SWITCHBOARD_OUTBOUND_QUEUE_FRAMES,
        N = int(1, 1_000_000, 1024);

    /// Most bytes waiting to be written to one client (4008 beyond); at least
    /// `--max-message-bytes`.
    outbound_queue_bytes: String, "--outbound-queue-bytes", SWITCHBOARD_OUTBOUND_QUEUE_BYTES,
        BYTES = int(16, 1_073_741_824, 4_194_304);

    /// Sustained client messages per second per connection (4029 beyond); 0 = no limit.
    rate_limit: String, "--rate-limit", SWITCHBOARD_RATE_LIMIT, PER_SEC =
        int(0, 1_000_000, 100);

    /// Client messages a connection may send in a burst above the rate (at least 1 when the
    /// rate limit is on).
    rate_limit_burst: String, "--rate-limit-burst", SWITCHBOARD_RATE_LIMIT_BURST, N =
        int(0, 10_000_000, 200);

    /// Bad frames tolerated per window; one more closes with 4400.
    bad_frame_limit: String, "--bad-frame-limit", SWITCHBOARD_BAD_FRAME_LIMIT, N =
        int(1, 100_000, 10);

    /// The window of `--bad-frame-limit`, in seconds.
    bad_frame_window_seconds: String, "--bad-frame-window-seconds",
        SWITCHBOARD_BAD_FRAME_WINDOW_SECONDS, SECONDS = int(1, 3600, 60);

    /// How long a publish's `idempotency_key` is remembered per channel, in seconds: a
    /// publish with the same key within it is answered with the first one's position and
    /// not stored again.
    idempotency_window_seconds: String, "--idempotency-window-seconds",
        SWITCHBOARD_IDEMPOTENCY_WINDOW_SECONDS, SECONDS = int(1, 86_400, 300),
        see: Some("[Idempotent publishes](#idempotent-publishes)");

    /// Channel history rules, first match wins: `pattern=max_messages/max_age_seconds`,
    /// comma-separated (e.g. `room:chat*=100/3600`); replaces the file's `[[history]]`
    /// tables.
    history: String, "--history", SWITCHBOARD_HISTORY, RULES =
        special("user channels keep 1000 messages or 24 h, other channels none");

    /// Extra channel namespaces besides `user` and `room`, comma-separated `[a-z0-9_-]+`.
    namespaces: String, "--namespaces", SWITCHBOARD_NAMESPACES, LIST = list("none");

    /// Extra namespaces (each one of `--namespaces`) whose subscribers get presence frames
    /// and a presence list like rooms do; the others are plain feeds without join/leave
    /// traffic (cheap fan-out to many subscribers).
    presence_namespaces: String, "--presence-namespaces", SWITCHBOARD_PRESENCE_NAMESPACES,
        LIST = list("none");

    /// Tokio worker threads; 0 = one per CPU available to the process (its cgroup/affinity
    /// limit). Set it to the pod's CPU limit on Kubernetes.
    worker_threads: String, "--worker-threads", SWITCHBOARD_WORKER_THREADS, N =
        int(0, 1024, 0);

    /// Log format: `text` or `json` (stderr).
    log_format: String, "--log-format", SWITCHBOARD_LOG_FORMAT, FORMAT = text("text");

    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `switchboard=debug,warn`.
    log_level: String, "--log-level", SWITCHBOARD_LOG_LEVEL, FILTER = text("info");

    /// Serve the demo app, `/switchboard.js` and the development-only `/demo/token` on the
    /// public port (never in production).
    demo: String, "--demo", SWITCHBOARD_DEMO, BOOL = boolean(false);

    /// Development only: also serve `GET /echo` on the public port, a WebSocket without a
    /// token that sends every message back through the connection's own reader, writer and
    /// limits (the Autobahn conformance check, `make check-autobahn`). Never in production.
    dev_echo: String, "--dev-echo", SWITCHBOARD_DEV_ECHO, BOOL = boolean(false),
        see: Some("[WebSocket conformance](#websocket-conformance-autobahn)");

    /// Most RPC calls one connection may have in flight; one more is answered
    /// `too_many_requests` at once.
    rpc_max_inflight: String, "--rpc-max-inflight", SWITCHBOARD_RPC_MAX_INFLIGHT, N =
        int(1, 10_000, 16);

    /// RPC route `PATTERN=URL[,URL…]`, e.g. `orders.*=http://127.0.0.1:7001/rpc`;
    /// repeatable (in the env variable, separate routes with `;`). Every other route setting
    /// takes its default (use the file's `[[routes]]` tables for more); these routes come
    /// after the file's.
    rpc_route: Vec<String>, "--rpc-route", SWITCHBOARD_RPC_ROUTES, ROUTE =
        special("none (every call answers `no_route`)"),
        in_file: false, repeat: Some(';'),
        see: Some("[Forwarding to backends](#forwarding-to-backends-rpc)");

    /// PEM file with the certificate chain (leaf first) to serve the public listener with
    /// TLS (`wss://`); requires `--tls-key`. Reloaded when the file changes.
    tls_cert: String, "--tls-cert", SWITCHBOARD_TLS_CERT, PEM_FILE =
        unset("none (plain `ws://`)"),
        see: Some("[Serving wss:// from one node](#serving-wss-from-one-node)");

    /// PEM file with the private key of `--tls-cert` (PKCS#8, PKCS#1 or SEC1); a key of
    /// another certificate is a configuration error.
    tls_key: String, "--tls-key", SWITCHBOARD_TLS_KEY, PEM_FILE = unset("none");

    /// Also serve the internal listener (server API, `/metrics`, `/healthz`, `/readyz`)
    /// with the TLS certificate; requires `--tls-cert`.
    admin_tls: String, "--admin-tls", SWITCHBOARD_ADMIN_TLS, BOOL = boolean(false);

    /// How often the TLS files are checked for a change, in ms.
    tls_reload_interval_ms: String, "--tls-reload-interval-ms",
        SWITCHBOARD_TLS_RELOAD_INTERVAL_MS, MS = int(100, 3_600_000, 5000);
}
