//! Node configuration (docs/protocol.md §1): every setting is a flag, an environment variable
//! `SWITCHBOARD_<NAME>` and a key of an optional TOML file (`--config FILE`). Flags beat env
//! beat file beat defaults.
//!
//! # Layout
//!
//! - `config/args.rs`: the settings table — every setting declared once (flag, env
//!   variable, file key, kind, range, default, doc, secret or not); it makes [`ServeArgs`]
//!   (the raw flags/env, every one optional).
//! - `config/settings.rs`: what a declaration is, and what is made of it (clap arguments,
//!   `--help` text, the README's settings table).
//! - this file: [`Config`] (the checked result) and [`ConfigErrors`] (every problem at
//!   once, one per line).
//! - `config/build.rs`: merges the sources and checks every value.
//! - `config/loader.rs`: where each raw value comes from, and the typed getters.
//! - `config/jwt.rs`: the token verification settings, checked together.
//! - `config/file.rs`: reads the TOML file.
//! - `config/routes.rs`: RPC routes (`[[routes]]` tables, `--rpc-route`), checked into
//!   [`RouteConfig`]s that `crate::rpc` compiles at startup.
//! - `config/values.rs`: parsers of single values (addresses, origins, patterns, …).
//!
//! Values stay raw strings until [`Config::load`] so that one run reports every bad value
//! (clap would stop at the first) and the process can exit 64 before binding any port.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use switchboard_router::HistoryPolicies;

use crate::auth::Authenticator;

mod args;
mod build;
mod file;
mod jwt;
mod loader;
mod routes;
mod settings;
#[cfg(test)]
mod tests;
mod values;

pub use args::ServeArgs;
use args::{cli_value, SETTINGS};
pub use routes::{Balance, RouteConfig};
use settings::Setting;

pub(crate) use crate::files::read_limited;
pub(crate) use values::channel_pattern;

/// Largest `--config` file read.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The checked configuration of a node. Built once by [`Config::load`], before any port is
/// bound; cheap to clone (the authenticator is shared).
#[derive(Clone)]
pub struct Config {
    /// Public address (`GET /ws`, demo assets).
    pub listen: SocketAddr,
    /// Internal address (server API, metrics, health).
    pub admin_listen: SocketAddr,
    /// Redis backplane URL; `None` = the embedded in-process backplane (single node).
    pub redis_url: Option<String>,
    /// Prefix of the Redis keys and channels (`sb:`).
    pub redis_prefix: String,
    /// Timeout of each Redis command.
    pub redis_timeout: Duration,
    /// Pub/sub liveness probe interval.
    pub probe_interval: Duration,
    /// Replicas that confirm a message before its publish is acknowledged (`None`: auto).
    pub redis_replica_acks: Option<u32>,
    /// The connection events stream.
    pub events_stream: String,
    /// This node's unique name.
    pub node_id: String,
    /// Verifies client JWTs (docs/protocol.md §3).
    pub auth: Arc<Authenticator>,
    /// The HMAC secret, kept so `switchboard token` can sign; `None` with a public key.
    pub jwt_secret: Option<String>,
    /// The configured JWT algorithm; `None` with a JWKS and no `--jwt-algorithm` (each
    /// key's own).
    pub jwt_algorithm: Option<Algorithm>,
    /// Required `aud` of tokens, if configured.
    pub jwt_audience: Option<String>,
    /// Required `iss` of tokens, if configured.
    pub jwt_issuer: Option<String>,
    /// Where the token keys come from (`--jwt-jwks-url`), if a JWKS is used.
    pub jwt_jwks_url: Option<String>,
    /// Accepted bearer keys of the server API. Empty = the API is closed: every `/v1`
    /// request gets 401.
    pub api_keys: Vec<String>,
    /// Allowed browser origins (lowercase `scheme://host[:port]`, or `["*"]`). `None` =
    /// no `Origin` header or same origin only.
    pub allowed_origins: Option<Vec<String>>,
    /// How long a drain spreads its closes over.
    pub drain: Duration,
    /// Registry/presence lease of this node.
    pub lease: Duration,
    /// Largest client message, all fragments together.
    pub max_message_bytes: usize,
    /// Server ping interval.
    pub heartbeat: Duration,
    /// Time allowed for the upgrade request.
    pub handshake_timeout: Duration,
    /// As configured: zero means "2 × heartbeat"; use [`Config::idle_timeout()`].
    pub idle_timeout: Duration,
    /// Global connection cap of this node (503 before the upgrade beyond it).
    pub max_connections: usize,
    /// Cluster-wide cap of one user's live connections (429 before the upgrade beyond
    /// it); 0 = no cap.
    pub max_connections_per_user: usize,
    /// Room subscriptions per connection.
    pub max_subscriptions: usize,
    /// Outbound queue bound per connection, in frames (4008 beyond).
    pub outbound_queue_frames: usize,
    /// Outbound queue bound per connection, in bytes (4008 beyond).
    pub outbound_queue_bytes: usize,
    /// Sustained client messages per second per connection; 0 = no limit.
    pub rate_limit_per_sec: u32,
    /// Burst above the sustained rate.
    pub rate_limit_burst: u32,
    /// Bad frames tolerated per [`Config::bad_frame_window`]; one more closes with 4400.
    pub bad_frame_limit: u32,
    /// Window of the bad-frame count.
    pub bad_frame_window: Duration,
    /// How long an idempotency key is remembered per channel (docs/protocol.md §5).
    pub idempotency_window: Duration,
    /// Channel history rules (file order) over the built-in defaults.
    pub history: HistoryPolicies,
    /// Extra channel namespaces besides `user` and `room`.
    pub namespaces: Vec<String>,
    /// Extra namespaces with presence like rooms (the others are plain feeds).
    pub presence_namespaces: Vec<String>,
    /// Log output format.
    pub log_format: LogFormat,
    /// `tracing_subscriber::EnvFilter` directive (checked).
    pub log_level: String,
    /// Serve the static demo assets on the public port.
    pub demo: bool,
    /// Development only: `GET /echo` on the public port, a WebSocket without a token that
    /// echoes every message through the production reader, writer and limits (`ws::echo`).
    pub dev_echo: bool,
    /// Most RPC calls one connection may have in flight (`too_many_requests` beyond).
    pub rpc_max_inflight: usize,
    /// Tokio worker threads; 0 = one per available CPU.
    pub worker_threads: usize,
    /// RPC routes (docs/protocol.md §4b): the file's `[[routes]]`, then `--rpc-route`s; the
    /// first whose pattern matches a method serves it.
    pub routes: Vec<RouteConfig>,
    /// TLS on the public listener (and the internal one with `admin`); `None` = plain.
    pub tls: Option<crate::tls::TlsFiles>,
    /// Legal but risky choices (short secrets, `*` origins, closed API) to log at startup.
    pub warnings: Vec<String>,
}

impl Config {
    /// Whether channels of `namespace` exist on this node: `user`, `room` and the
    /// configured `--namespaces`.
    pub fn knows_namespace(&self, namespace: &str) -> bool {
        namespace == switchboard_proto::channel::USER_NAMESPACE
            || namespace == switchboard_proto::channel::ROOM_NAMESPACE
            || self.namespaces.iter().any(|n| n == namespace)
    }

    /// Whether subscribers of `namespace` get presence frames: `room` and the configured
    /// `--presence-namespaces`. User channels have none (docs/protocol.md §2).
    pub fn has_presence(&self, namespace: &str) -> bool {
        namespace == switchboard_proto::channel::ROOM_NAMESPACE
            || self.presence_namespaces.iter().any(|n| n == namespace)
    }

    /// Reads the `--config` file (if any) and builds the configuration from it, the
    /// flags/env in `args` and the defaults. Every problem is reported at once.
    pub fn load(args: &ServeArgs) -> Result<Config, ConfigErrors> {
        let Some(path) = &args.config else {
            return Config::from_parts(args, None);
        };
        let text = read_limited(path, MAX_CONFIG_BYTES)
            .and_then(|bytes| String::from_utf8(bytes).map_err(std::io::Error::other));
        match text {
            Ok(text) => Config::from_parts(args, Some(&text)),
            Err(e) => {
                let problem = format!("--config {}: cannot read: {e}", path.display());
                build::build(args, None, vec![problem])
            }
        }
    }

    /// Like [`Config::load`] with the file's text given (`args.config` only names it in
    /// messages): tests use this to stay away from the process environment and disk.
    pub fn from_parts(args: &ServeArgs, file: Option<&str>) -> Result<Config, ConfigErrors> {
        build::build(args, file, Vec::new())
    }

    /// How long a silent connection lives: the configured idle timeout, or 2 × heartbeat.
    pub fn idle_timeout(&self) -> Duration {
        if self.idle_timeout.is_zero() {
            self.heartbeat.saturating_mul(2)
        } else {
            self.idle_timeout
        }
    }
}

impl fmt::Debug for Config {
    /// Every field but the secrets (the JWT secret, API keys and Redis URL show as
    /// `<redacted>`) and the authenticator. The destructuring makes a new field a compile
    /// error here until it is shown or skipped on purpose.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Config {
            listen,
            admin_listen,
            redis_url,
            redis_prefix,
            redis_timeout,
            probe_interval,
            redis_replica_acks,
            events_stream,
            node_id,
            auth: _,
            jwt_secret,
            jwt_algorithm,
            jwt_audience,
            jwt_issuer,
            jwt_jwks_url,
            api_keys,
            allowed_origins,
            drain,
            lease,
            max_message_bytes,
            heartbeat,
            handshake_timeout,
            idle_timeout: _,
            max_connections,
            max_connections_per_user,
            max_subscriptions,
            outbound_queue_frames,
            outbound_queue_bytes,
            rate_limit_per_sec,
            rate_limit_burst,
            bad_frame_limit,
            bad_frame_window,
            idempotency_window,
            history,
            namespaces,
            presence_namespaces,
            log_format,
            log_level,
            demo,
            dev_echo,
            rpc_max_inflight,
            worker_threads,
            routes,
            tls,
            warnings,
        } = self;
        let redacted = |set: bool| if set { "<redacted>" } else { "<none>" };
        f.debug_struct("Config")
            .field("listen", listen)
            .field("admin_listen", admin_listen)
            .field("redis_url", &redis_url.as_ref().map(|_| "<redacted>"))
            .field("redis_prefix", redis_prefix)
            .field("redis_timeout", redis_timeout)
            .field("probe_interval", probe_interval)
            .field("redis_replica_acks", redis_replica_acks)
            .field("events_stream", events_stream)
            .field("node_id", node_id)
            .field("jwt_secret", &redacted(jwt_secret.is_some()))
            .field("jwt_algorithm", jwt_algorithm)
            .field("jwt_audience", jwt_audience)
            .field("jwt_issuer", jwt_issuer)
            .field("jwt_jwks_url", jwt_jwks_url)
            .field("api_keys", &format_args!("<{} redacted>", api_keys.len()))
            .field("allowed_origins", allowed_origins)
            .field("drain", drain)
            .field("lease", lease)
            .field("max_message_bytes", max_message_bytes)
            .field("heartbeat", heartbeat)
            .field("handshake_timeout", handshake_timeout)
            .field("idle_timeout", &self.idle_timeout())
            .field("max_connections", max_connections)
            .field("max_connections_per_user", max_connections_per_user)
            .field("max_subscriptions", max_subscriptions)
            .field("outbound_queue_frames", outbound_queue_frames)
            .field("outbound_queue_bytes", outbound_queue_bytes)
            .field("rate_limit_per_sec", rate_limit_per_sec)
            .field("rate_limit_burst", rate_limit_burst)
            .field("bad_frame_limit", bad_frame_limit)
            .field("bad_frame_window", bad_frame_window)
            .field("idempotency_window", idempotency_window)
            .field("history", history)
            .field("namespaces", namespaces)
            .field("presence_namespaces", presence_namespaces)
            .field("log_format", log_format)
            .field("log_level", log_level)
            .field("demo", demo)
            .field("dev_echo", dev_echo)
            .field("rpc_max_inflight", rpc_max_inflight)
            .field("worker_threads", worker_threads)
            .field("routes", routes)
            .field("tls", tls)
            .field("warnings", warnings)
            .finish_non_exhaustive()
    }
}

/// The declaration of setting `key`; every key the code reads is declared (a typo fails
/// every test that builds a configuration).
fn declared(key: &str) -> &'static Setting {
    SETTINGS
        .iter()
        .find(|s| s.key == key)
        .unwrap_or_else(|| panic!("setting {key:?} is not declared in config/args.rs"))
}

/// Every configuration problem found, one per line (`Display`). The process prints them
/// all and exits with status 64 before binding any port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(problem)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
