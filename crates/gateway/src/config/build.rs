//! Merges flags/env (already merged by clap), the TOML file and the defaults, checks every
//! value and collects every problem before giving up.

use std::time::Duration;

use switchboard_router::HistoryPolicies;

use super::file::{self, FileSettings};
use super::loader::{label, Loader, Origin};
use super::routes;
use super::values;
use super::{cli_value, Config, ConfigErrors, ServeArgs};

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

    let listen = l.get("listen", values::socket_addr);
    let admin_listen = l.get("admin_listen", values::socket_addr);
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
    let redis_prefix = l.get("redis_prefix", values::redis_prefix);
    let redis_timeout = Duration::from_millis(l.int("redis_timeout_ms"));
    let probe_interval = Duration::from_millis(l.int("probe_interval_ms"));
    let redis_replica_acks = l.get("redis_replica_acks", values::replica_acks);
    let events_stream = l.get("events_stream", values::redis_key);
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

    let drain = Duration::from_secs(l.int("drain_seconds"));
    let lease = Duration::from_secs(l.int("lease_seconds"));
    let max_message_bytes = l.int("max_message_bytes");
    let heartbeat_ms = l.int("heartbeat_ms");
    let handshake_timeout = Duration::from_millis(l.int("handshake_timeout_ms"));
    let idle_timeout_ms = l.int("idle_timeout_ms");
    if idle_timeout_ms != 0 && idle_timeout_ms < heartbeat_ms {
        l.errors.push(format!(
            "--idle-timeout-ms {idle_timeout_ms} is shorter than --heartbeat-ms {heartbeat_ms} \
             (use 0 for 2 × heartbeat)"
        ));
    }
    let max_connections = l.int("max_connections");
    let max_connections_per_user = l.int("max_connections_per_user");
    let max_subscriptions = l.int("max_subscriptions");
    let outbound_queue_frames = l.int("outbound_queue_frames");
    let outbound_queue_bytes = l.int("outbound_queue_bytes");
    if outbound_queue_bytes < max_message_bytes {
        l.errors.push(format!(
            "--outbound-queue-bytes {outbound_queue_bytes} is smaller than --max-message-bytes \
             {max_message_bytes}"
        ));
    }
    let rate_limit = l.int("rate_limit");
    let rate_limit_burst = l.int("rate_limit_burst");
    if rate_limit > 0 && rate_limit_burst == 0 {
        l.errors
            .push("--rate-limit-burst must be at least 1 when --rate-limit is on".into());
    }
    let bad_frame_limit = l.int("bad_frame_limit");
    let bad_frame_window = Duration::from_secs(l.int("bad_frame_window_seconds"));
    let idempotency_window = Duration::from_secs(l.int("idempotency_window_seconds"));

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
    let log_format = l.get("log_format", values::log_format);
    let log_level = l.get("log_level", values::log_level);
    let demo = l.get("demo", values::bool);
    let dev_echo = l.get("dev_echo", values::bool);
    if dev_echo {
        l.warnings.push(
            "--dev-echo: GET /echo accepts WebSockets without a token (development only)".into(),
        );
    }
    let rpc_max_inflight = l.int("rpc_max_inflight");
    let worker_threads = l.int("worker_threads");
    let mut located = std::mem::take(&mut l.file.routes);
    if let Some(items) = cli_value(l.args, "rpc_route") {
        let label = "--rpc-route / SWITCHBOARD_RPC_ROUTES";
        located.extend(routes::from_compact(&items, label, &mut l.errors));
    }
    routes::check_names(&located, &mut l.errors);
    let tls = l.tls();
    let routes = located.into_iter().filter_map(|r| r.route).collect();

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

// Values were range-checked against bounds below u32::MAX.
fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn to_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Loader<'_> {
    /// The TLS files, both or neither, loaded and checked now: a bad or mismatched pair
    /// is a configuration error like any other.
    fn tls(&mut self) -> Option<crate::tls::TlsFiles> {
        let cert = self.trimmed("tls_cert");
        let key = self.trimmed("tls_key");
        let admin = self.get("admin_tls", values::bool);
        let reload_ms = self.int("tls_reload_interval_ms");
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
