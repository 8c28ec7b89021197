//! Merges flags/env (already merged by clap), the TOML file and the defaults, checks every
//! value and collects every problem before giving up.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, AlgorithmFamily};
use switchboard_router::HistoryPolicies;

use super::file::{self, FileSettings};
use super::routes;
use super::values::{self, HMAC_ALGORITHMS, PUBLIC_KEY_ALGORITHMS};
use super::{cli_value, Config, ConfigErrors, LogFormat, ServeArgs};
use crate::auth::{Authenticator, Jwks, JwksPolicy, VerifyKey};

/// Builds the config; `errors` may already hold problems (an unreadable file).
pub(super) fn build(
    args: &ServeArgs,
    file_text: Option<&str>,
    mut errors: Vec<String>,
) -> Result<Config, ConfigErrors> {
    let file_label = args
        .config
        .as_ref()
        .map_or_else(|| "config file".to_owned(), |p| p.display().to_string());
    let file = file_text.map_or_else(FileSettings::default, |text| {
        file::parse(text, &file_label, &mut errors)
    });
    let mut l = Loader {
        args,
        file,
        file_label,
        errors,
        warnings: Vec::new(),
    };

    let listen = l.get("listen", default_addr(8080), values::socket_addr);
    let admin_listen = l.get("admin_listen", default_addr(9090), values::socket_addr);
    if listen.port() != 0
        && listen.port() == admin_listen.port()
        && (listen.ip() == admin_listen.ip()
            || listen.ip().is_unspecified()
            || admin_listen.ip().is_unspecified())
    {
        l.errors.push(format!(
            "--listen {listen} and --admin-listen {admin_listen} must use different ports"
        ));
    }
    let redis_url = l.opt("redis_url", values::redis_url);
    let redis_prefix = l.get("redis_prefix", "sb:".to_owned(), values::redis_prefix);
    let redis_timeout = Duration::from_millis(l.int("redis_timeout_ms", 2000, 100, 60_000));
    let probe_interval = Duration::from_millis(l.int("probe_interval_ms", 1000, 100, 10_000));
    let redis_replica_acks = l
        .opt("redis_replica_acks", values::replica_acks)
        .unwrap_or(None);
    let events_stream = l.get(
        "events_stream",
        "switchboard:events".to_owned(),
        values::redis_key,
    );
    let node_id = l
        .opt("node_id", values::node_id)
        .unwrap_or_else(values::default_node_id);
    let jwt = l.jwt();

    let api_keys = l
        .list("api_key", |items| Ok(values::api_keys(items)))
        .unwrap_or_default();
    if api_keys.is_empty() {
        l.warnings
            .push("no --api-key: the server API is closed (every /v1 request gets 401)".into());
    } else if api_keys.iter().any(|k| k.len() < 16) {
        l.warnings
            .push("an --api-key is shorter than 16 characters; use long random keys".into());
    }
    let allowed_origins = l.list("allowed_origins", values::origins);
    if allowed_origins.as_deref() == Some(&["*".to_owned()][..]) {
        l.warnings
            .push("--allowed-origins \"*\": any web page may open connections".into());
    }

    let drain = Duration::from_secs(l.int("drain_seconds", 10, 0, 3600));
    let lease = Duration::from_secs(l.int("lease_seconds", 10, 2, 300));
    let max_message_bytes = l.int("max_message_bytes", 65536, 16, 64 << 20);
    let heartbeat_ms = l.int("heartbeat_ms", 25_000, 1000, 600_000);
    let handshake_timeout =
        Duration::from_millis(l.int("handshake_timeout_ms", 10_000, 100, 600_000));
    let idle_timeout_ms = l.int("idle_timeout_ms", 0, 0, 3_600_000);
    if idle_timeout_ms != 0 && idle_timeout_ms < heartbeat_ms {
        l.errors.push(format!(
            "--idle-timeout-ms {idle_timeout_ms} is shorter than --heartbeat-ms {heartbeat_ms} \
             (use 0 for 2 × heartbeat)"
        ));
    }
    let max_connections = l.int("max_connections", 100_000, 1, 10_000_000);
    let max_connections_per_user = l.int("max_connections_per_user", 64, 0, 1_000_000);
    let max_subscriptions = l.int("max_subscriptions", 256, 1, 100_000);
    let outbound_queue_frames = l.int("outbound_queue_frames", 1024, 1, 1_000_000);
    let outbound_queue_bytes = l.int("outbound_queue_bytes", 4 << 20, 16, 1 << 30);
    if outbound_queue_bytes < max_message_bytes {
        l.errors.push(format!(
            "--outbound-queue-bytes {outbound_queue_bytes} is smaller than --max-message-bytes \
             {max_message_bytes}"
        ));
    }
    let rate_limit = l.int("rate_limit", 100, 0, 1_000_000);
    let rate_limit_burst = l.int("rate_limit_burst", 200, 0, 10_000_000);
    if rate_limit > 0 && rate_limit_burst == 0 {
        l.errors
            .push("--rate-limit-burst must be at least 1 when --rate-limit is on".into());
    }
    let bad_frame_limit = l.int("bad_frame_limit", 10, 1, 100_000);
    let bad_frame_window = Duration::from_secs(l.int("bad_frame_window_seconds", 60, 1, 3600));
    let idempotency_window =
        Duration::from_secs(l.int("idempotency_window_seconds", 300, 1, 86_400));

    let history_rules =
        match cli_value(l.args, "history").filter(|v| v.iter().any(|i| !i.trim().is_empty())) {
            Some(raw) => values::history_compact(&raw.join(",")).unwrap_or_else(|problems| {
                let label = label("history", Origin::Cli, &l.file_label);
                l.errors
                    .extend(problems.into_iter().map(|p| format!("{label}: {p}")));
                Vec::new()
            }),
            None => l.file.history.take().unwrap_or_default(),
        };
    let namespaces = l.list("namespaces", values::namespaces).unwrap_or_default();
    let presence_namespaces = l
        .list("presence_namespaces", values::namespaces)
        .unwrap_or_default();
    for ns in presence_namespaces
        .iter()
        .filter(|ns| !namespaces.contains(ns))
    {
        l.errors.push(format!(
            "presence_namespaces: {ns:?} is not one of the configured --namespaces"
        ));
    }
    let log_format = l.get("log_format", LogFormat::Text, values::log_format);
    let log_level = l.get("log_level", "info".to_owned(), values::log_level);
    let demo = l.get("demo", false, values::bool);
    let dev_echo = l.get("dev_echo", false, values::bool);
    if dev_echo {
        l.warnings.push(
            "--dev-echo: GET /echo accepts WebSockets without a token (development only)".into(),
        );
    }
    let rpc_max_inflight = l.int("rpc_max_inflight", 16, 1, 10_000);
    let worker_threads = l.int("worker_threads", 0, 0, 1024);
    let mut located = std::mem::take(&mut l.file.routes);
    if let Some(items) = cli_value(l.args, "rpc_route") {
        let label = "--rpc-route / SWITCHBOARD_RPC_ROUTES";
        located.extend(routes::from_compact(&items, label, &mut l.errors));
    }
    routes::check_names(&located, &mut l.errors);
    let tls = l.tls();
    let routes = located.into_iter().map(|(_, route)| route).collect();

    let Loader {
        errors, warnings, ..
    } = l;
    let Some(jwt) = jwt.filter(|_| errors.is_empty()) else {
        return Err(ConfigErrors(errors));
    };
    Ok(Config {
        listen,
        admin_listen,
        redis_url,
        redis_prefix,
        redis_timeout,
        probe_interval,
        redis_replica_acks,
        events_stream,
        node_id,
        auth: jwt.auth,
        jwt_secret: jwt.secret,
        jwt_algorithm: jwt.algorithm,
        jwt_audience: jwt.audience,
        jwt_issuer: jwt.issuer,
        jwt_jwks_url: jwt.jwks_url,
        api_keys,
        allowed_origins,
        drain,
        lease,
        max_message_bytes: to_usize(max_message_bytes),
        heartbeat: Duration::from_millis(heartbeat_ms),
        handshake_timeout,
        idle_timeout: Duration::from_millis(idle_timeout_ms),
        max_connections: to_usize(max_connections),
        max_connections_per_user: to_usize(max_connections_per_user),
        max_subscriptions: to_usize(max_subscriptions),
        outbound_queue_frames: to_usize(outbound_queue_frames),
        outbound_queue_bytes: to_usize(outbound_queue_bytes),
        rate_limit_per_sec: to_u32(rate_limit),
        rate_limit_burst: to_u32(rate_limit_burst),
        bad_frame_limit: to_u32(bad_frame_limit),
        bad_frame_window,
        idempotency_window,
        history: HistoryPolicies::new(history_rules),
        namespaces,
        presence_namespaces,
        log_format,
        log_level,
        demo,
        dev_echo,
        rpc_max_inflight: to_usize(rpc_max_inflight),
        worker_threads: to_usize(worker_threads),
        routes,
        tls,
        warnings,
    })
}

/// The JWT part of [`Config`].
struct Jwt {
    auth: Arc<Authenticator>,
    secret: Option<String>,
    algorithm: Option<Algorithm>,
    jwks_url: Option<String>,
    audience: Option<String>,
    issuer: Option<String>,
}

/// Largest PEM file read (public keys are a few KiB at most).
const MAX_PEM_BYTES: u64 = 64 * 1024;

fn default_addr(port: u16) -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], port))
}

// Values were range-checked against bounds below u32::MAX.
fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn to_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[derive(Clone, Copy)]
enum Origin {
    Cli,
    File,
}

/// Where a value came from, for messages: `--listen / SWITCHBOARD_LISTEN` or `<file>: listen`.
fn label(key: &str, origin: Origin, file_label: &str) -> String {
    match origin {
        Origin::Cli => format!(
            "--{} / SWITCHBOARD_{}",
            key.replace('_', "-"),
            key.to_ascii_uppercase()
        ),
        Origin::File => format!("{file_label}: {key}"),
    }
}

struct Loader<'a> {
    args: &'a ServeArgs,
    file: FileSettings,
    file_label: String,
    errors: Vec<String>,
    warnings: Vec<String>,
}

impl Loader<'_> {
    /// The raw items of `key` from the highest-priority source that has it. An empty value
    /// counts as unset (`SWITCHBOARD_REDIS_URL=` in a compose file means "no Redis").
    fn raw(&self, key: &str) -> Option<(Vec<String>, Origin)> {
        let set = |items: &Vec<String>| items.iter().any(|i| !i.trim().is_empty());
        match cli_value(self.args, key).filter(set) {
            Some(items) => Some((items, Origin::Cli)),
            None => self
                .file
                .values
                .get(key)
                .filter(|items| set(items))
                .map(|v| (v.clone(), Origin::File)),
        }
    }

    fn label(&self, key: &str) -> String {
        let origin = self.raw(key).map_or(Origin::Cli, |(_, origin)| origin);
        label(key, origin, &self.file_label)
    }

    fn problem(&mut self, key: &str, origin: Origin, message: impl std::fmt::Display) {
        let label = label(key, origin, &self.file_label);
        self.errors.push(format!("{label}: {message}"));
    }

    /// The parsed value of `key`, `None` when unset or bad (bad is recorded).
    fn opt<T>(
        &mut self,
        key: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let (items, origin) = self.raw(key)?;
        match parse(&items.join(",")) {
            Ok(v) => Some(v),
            Err(e) => {
                self.problem(key, origin, e);
                None
            }
        }
    }

    fn get<T>(
        &mut self,
        key: &'static str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> T {
        self.opt(key, parse).unwrap_or(default)
    }

    fn int(&mut self, key: &'static str, default: u64, min: u64, max: u64) -> u64 {
        self.get(key, default, |s| values::int(s, min, max))
    }

    fn list<T>(
        &mut self,
        key: &'static str,
        parse: impl FnOnce(&[String]) -> Result<T, Vec<String>>,
    ) -> Option<T> {
        let (items, origin) = self.raw(key)?;
        match parse(&items) {
            Ok(v) => Some(v),
            Err(problems) => {
                for p in problems {
                    self.problem(key, origin, p);
                }
                None
            }
        }
    }

    /// A string setting, as given (secrets are not trimmed).
    fn text(&self, key: &'static str) -> Option<String> {
        self.raw(key).map(|(items, _)| items.join(","))
    }

    fn trimmed(&self, key: &'static str) -> Option<String> {
        self.text(key).map(|s| s.trim().to_owned())
    }

    /// Secret or public key, algorithm, audience and issuer, checked together.
    fn jwt(&mut self) -> Option<Jwt> {
        let secret = self.text("jwt_secret");
        let public_key = self.trimmed("jwt_public_key");
        let algorithm_set = self.raw("jwt_algorithm").is_some();
        let algorithm = self.opt("jwt_algorithm", values::algorithm);
        let audience = self.trimmed("jwt_audience");
        let issuer = self.trimmed("jwt_issuer");
        let jwks_url = self.trimmed("jwt_jwks_url");
        let jwks_policy = JwksPolicy {
            min: Duration::from_secs(self.int("jwt_jwks_min_refresh_seconds", 60, 1, 3600)),
            max: Duration::from_secs(self.int("jwt_jwks_max_refresh_seconds", 86_400, 1, 604_800)),
        };
        let allow_start_without_keys =
            self.get("jwt_jwks_allow_start_without_keys", false, values::bool);
        if algorithm_set && algorithm.is_none() {
            // Already reported.
            return None;
        }
        if let Some(url) = jwks_url {
            if secret.is_some() || public_key.is_some() {
                self.errors.push(
                    "set only one of --jwt-secret, --jwt-public-key and --jwt-jwks-url".into(),
                );
                return None;
            }
            return self.jwks(
                url,
                jwks_policy,
                allow_start_without_keys,
                algorithm,
                audience,
                issuer,
            );
        }

        let (algorithm, pem) = match (&secret, &public_key) {
            (None, None) => {
                self.errors.push(
                    "set --jwt-secret, --jwt-public-key or --jwt-jwks-url (SWITCHBOARD_JWT_SECRET \
                     / SWITCHBOARD_JWT_PUBLIC_KEY / SWITCHBOARD_JWT_JWKS_URL) to verify client \
                     tokens"
                        .into(),
                );
                return None;
            }
            (Some(_), Some(_)) => {
                self.errors.push(
                    "set only one of --jwt-secret, --jwt-public-key and --jwt-jwks-url".into(),
                );
                return None;
            }
            (Some(secret), None) => {
                let algorithm = algorithm.unwrap_or(Algorithm::HS256);
                if algorithm.family() != AlgorithmFamily::Hmac {
                    self.errors.push(format!(
                        "--jwt-algorithm {algorithm:?} needs --jwt-public-key; with --jwt-secret \
                         use {HMAC_ALGORITHMS}"
                    ));
                    return None;
                }
                if secret.len() < 32 {
                    self.warnings.push(
                        "--jwt-secret is shorter than 32 bytes; use a long random secret".into(),
                    );
                }
                (algorithm, None)
            }
            (None, Some(path)) => {
                let Some(algorithm) = algorithm else {
                    self.errors.push(format!(
                        "--jwt-algorithm is required with --jwt-public-key ({PUBLIC_KEY_ALGORITHMS})"
                    ));
                    return None;
                };
                if algorithm.family() == AlgorithmFamily::Hmac {
                    self.errors.push(format!(
                        "--jwt-algorithm {algorithm:?} needs --jwt-secret; with --jwt-public-key \
                         use {PUBLIC_KEY_ALGORITHMS}"
                    ));
                    return None;
                }
                let pem = if path.starts_with("-----BEGIN") {
                    path.clone().into_bytes()
                } else {
                    match super::read_limited(path.as_ref(), MAX_PEM_BYTES) {
                        Ok(pem) => pem,
                        Err(e) => {
                            let label = self.label("jwt_public_key");
                            self.errors
                                .push(format!("{label}: cannot read {path}: {e}"));
                            return None;
                        }
                    }
                };
                (algorithm, Some(pem))
            }
        };

        let key = match (&secret, &pem) {
            (_, Some(pem)) => VerifyKey::PublicKeyPem(pem),
            (Some(secret), None) => VerifyKey::Secret(secret.as_bytes()),
            (None, None) => return None,
        };
        match Authenticator::new(algorithm, key, audience.as_deref(), issuer.as_deref()) {
            Ok(auth) => Some(Jwt {
                auth: Arc::new(auth),
                secret,
                algorithm: Some(algorithm),
                jwks_url: None,
                audience,
                issuer,
            }),
            Err(e) => {
                let key = if pem.is_some() {
                    "jwt_public_key"
                } else {
                    "jwt_secret"
                };
                let label = self.label(key);
                self.errors.push(format!("{label}: {e}"));
                None
            }
        }
    }

    /// `--jwt-jwks-url` and its settings. The keys are fetched later, at startup.
    fn jwks(
        &mut self,
        url: String,
        policy: JwksPolicy,
        allow_start_without_keys: bool,
        algorithm: Option<Algorithm>,
        audience: Option<String>,
        issuer: Option<String>,
    ) -> Option<Jwt> {
        if policy.max < policy.min {
            self.errors.push(format!(
                "--jwt-jwks-max-refresh-seconds {} is shorter than \
                 --jwt-jwks-min-refresh-seconds {}",
                policy.max.as_secs(),
                policy.min.as_secs()
            ));
            return None;
        }
        let jwks = match Jwks::new(&url, policy, allow_start_without_keys) {
            Ok(jwks) => jwks,
            Err(e) => {
                let label = self.label("jwt_jwks_url");
                self.errors.push(format!("{label}: {e}"));
                return None;
            }
        };
        if jwks.is_plain_http() {
            self.warnings.push(
                "--jwt-jwks-url uses http://: keys fetched without TLS can be replaced in \
                 transit; use https:// outside local testing"
                    .into(),
            );
        }
        if algorithm.is_some_and(|alg| alg.family() == AlgorithmFamily::Hmac) {
            self.errors.push(format!(
                "--jwt-algorithm {algorithm:?} cannot be used with --jwt-jwks-url \
                 ({PUBLIC_KEY_ALGORITHMS}, or unset for any the keys are for)"
            ));
            return None;
        }
        match Authenticator::with_jwks(
            Arc::new(jwks),
            algorithm,
            audience.as_deref(),
            issuer.as_deref(),
        ) {
            Ok(auth) => Some(Jwt {
                auth: Arc::new(auth),
                secret: None,
                algorithm,
                jwks_url: Some(url),
                audience,
                issuer,
            }),
            Err(e) => {
                let label = self.label("jwt_algorithm");
                self.errors.push(format!("{label}: {e}"));
                None
            }
        }
    }
}

impl Loader<'_> {
    /// The TLS files, both or neither, loaded and checked now: a bad or mismatched pair
    /// is a configuration error like any other.
    fn tls(&mut self) -> Option<crate::tls::TlsFiles> {
        let cert = self.trimmed("tls_cert");
        let key = self.trimmed("tls_key");
        let admin = self.get("admin_tls", false, values::bool);
        let reload_ms = self.int("tls_reload_interval_ms", 5000, 100, 3_600_000);
        let (cert, key) = match (cert, key) {
            (Some(cert), Some(key)) => (cert, key),
            (None, None) => {
                if admin {
                    self.errors
                        .push("--admin-tls needs --tls-cert and --tls-key".into());
                }
                return None;
            }
            (Some(_), None) => {
                self.errors.push(
                    "--tls-cert needs --tls-key (SWITCHBOARD_TLS_KEY), the certificate's \
                     private key"
                        .into(),
                );
                return None;
            }
            (None, Some(_)) => {
                self.errors.push(
                    "--tls-key needs --tls-cert (SWITCHBOARD_TLS_CERT), the certificate chain"
                        .into(),
                );
                return None;
            }
        };
        match crate::tls::load(cert.as_ref(), key.as_ref()) {
            Ok(loaded) => Some(crate::tls::TlsFiles {
                cert: cert.into(),
                key: key.into(),
                admin,
                reload_interval: Duration::from_millis(reload_ms),
                loaded,
            }),
            Err(e) => {
                self.errors.push(format!("--tls-cert / --tls-key: {e}"));
                None
            }
        }
    }
}
