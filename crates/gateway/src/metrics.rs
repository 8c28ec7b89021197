//! Metric names (docs/protocol.md §8) and the Prometheus recorder. Every name used anywhere in
//! the gateway is a constant here; labels never carry user ids or channel names.
//!
//! The exporter only shows a series once it was touched, so `install` sets every series that
//! the alerts (`deploy/prometheus/alerts.yml`) and the dashboard (`grafana/`) read to zero,
//! for every value of its label that the code can produce. It also exports the standard
//! `process_*` metrics (CPU, RSS, fds, threads), refreshed every few seconds.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use switchboard_proto::{close, ErrorCode};

/// Gauge: open WebSocket connections on this node.
pub const CONNECTIONS: &str = "switchboard_connections";
/// Counter: accepted WebSocket connections.
pub const CONNECTIONS_TOTAL: &str = "switchboard_connections_total";
/// Counter `{reason}`: upgrades refused before the handshake completed.
pub const HANDSHAKE_REJECTED: &str = "switchboard_handshake_rejected_total";
/// Counter `{code}`: closed connections by close code.
pub const DISCONNECTS: &str = "switchboard_disconnects_total";
/// Counter: frames received from clients.
pub const MESSAGES_RECEIVED: &str = "switchboard_messages_received_total";
/// Counter: messages written to client sockets.
pub const MESSAGES_DELIVERED: &str = "switchboard_messages_delivered_total";
/// Histogram: publish accepted → written to the socket, in seconds.
pub const DELIVERY_LATENCY: &str = "switchboard_delivery_latency_seconds";
/// Gauge 0/1: the backplane can route.
pub const BACKPLANE_UP: &str = "switchboard_backplane_up";
/// Counter: backplane reconnects.
pub const BACKPLANE_RECONNECTS: &str = "switchboard_backplane_reconnects_total";
/// Per backplane shard (label `shard`: its index in the slot map; one shard for one Redis).
pub const SHARD_UP: &str = "switchboard_backplane_shard_up";
pub const SHARD_SUBSCRIPTIONS: &str = "switchboard_backplane_shard_subscriptions";
pub const SHARD_RECONNECTS: &str = "switchboard_backplane_shard_reconnects_total";
pub const SHARD_REPLICAS: &str = "switchboard_backplane_shard_replicas";
/// 1 for the shard's current primary (labels `shard`, `primary` = host:port), 0 for the
/// ones it had before.
pub const SHARD_INFO: &str = "switchboard_backplane_shard_info";
pub const UNREPLICATED: &str = "switchboard_backplane_unreplicated_total";
/// Counter: connections closed with 4008.
pub const SLOW_CONSUMER_DISCONNECTS: &str = "switchboard_slow_consumer_disconnects_total";
/// Counter `{result}`: resume attempts (`recovered`, `not_recovered`).
pub const RECOVERY: &str = "switchboard_recovery_total";
/// Counter `{code}`: `error` frames and failed replies sent to clients.
pub const CLIENT_ERRORS: &str = "switchboard_client_errors_total";
/// Counter `{endpoint,status}`: server API requests.
pub const API_REQUESTS: &str = "switchboard_api_requests_total";
/// Counter: publishes accepted (client and server API).
pub const PUBLISHES: &str = "switchboard_publishes_total";
/// Gauge 0/1: the node is draining.
pub const DRAINING: &str = "switchboard_draining";
/// Counter: live messages that arrived after a gap in offsets.
pub const DELIVERY_GAPS: &str = "switchboard_delivery_gaps_total";
/// Counter: `resync` frames sent (history a live connection depended on was lost).
pub const RESYNCS: &str = "switchboard_resyncs_total";
/// Counter `{route,result}`: RPC calls by result (`ok`, `no_route`, `forbidden`,
/// `too_many_requests`, `upstream_timeout`, `upstream_unavailable`, `upstream_error`,
/// `cancelled`); `route` is the route name, empty for `no_route`.
pub const RPC_CALLS: &str = "switchboard_rpc_calls_total";
/// Histogram `{route,upstream}`: duration of each upstream attempt, in seconds.
pub const RPC_UPSTREAM_LATENCY: &str = "switchboard_rpc_upstream_latency_seconds";
/// Gauge `{route,upstream}`: circuit state, 0 closed, 1 open, 2 half-open.
pub const RPC_CIRCUIT_STATE: &str = "switchboard_rpc_circuit_state";
/// Counter `{route}`: extra attempts of idempotent calls.
pub const RPC_RETRIES: &str = "switchboard_rpc_retries_total";
/// Gauge: the node's `--max-connections` (set by `record_max_connections`), for "near the cap" alerts.
pub const MAX_CONNECTIONS: &str = "switchboard_max_connections";
/// Counter `{result}`: certificate reloads after the TLS files changed (`ok`, `error`:
/// the previous certificate stays).
pub const TLS_RELOADS: &str = "switchboard_tls_reloads_total";
/// Counter: TLS handshakes that failed (plain HTTP on the TLS port, no common version or
/// cipher, timeouts).
pub const TLS_HANDSHAKE_FAILURES: &str = "switchboard_tls_handshake_failures_total";
/// Counter `{trigger,result}`: fetches of `--jwt-jwks-url` (`trigger`: `startup`,
/// `scheduled`, `unknown_kid`; `result`: `ok`, `error`). Only with a JWKS.
pub const JWKS_REFRESH: &str = "switchboard_jwks_refresh_total";
/// Gauge: usable keys in the current JWKS set (the last good fetch's).
pub const JWKS_KEYS: &str = "switchboard_jwks_keys";
/// Gauge: Unix time of the last good JWKS fetch (its age: `time() - this`).
pub const JWKS_LAST_SUCCESS: &str = "switchboard_jwks_last_success_timestamp_seconds";
/// Gauge `{version}`: always 1; the running build.
pub const BUILD_INFO: &str = "switchboard_build_info";

/// Handles of the metrics touched per message or per connection, looked up once (a
/// `metrics::counter!(NAME)` on the hot path hashes the name and locks the registry).
pub struct Hot {
    pub connections: Gauge,
    pub connections_total: Counter,
    pub messages_received: Counter,
    pub delivered: Counter,
    pub delivery_latency: Histogram,
    pub delivery_gaps: Counter,
    pub resyncs: Counter,
    pub slow_consumers: Counter,
    pub publishes: Counter,
}

static HOT: OnceLock<Hot> = OnceLock::new();

/// The hot-path handles. They bind to the recorder installed when first called:
/// `install` calls it right after installing the Prometheus recorder.
pub fn hot() -> &'static Hot {
    HOT.get_or_init(|| Hot {
        connections: metrics::gauge!(CONNECTIONS),
        connections_total: metrics::counter!(CONNECTIONS_TOTAL),
        messages_received: metrics::counter!(MESSAGES_RECEIVED),
        delivered: metrics::counter!(MESSAGES_DELIVERED),
        delivery_latency: metrics::histogram!(DELIVERY_LATENCY),
        delivery_gaps: metrics::counter!(DELIVERY_GAPS),
        resyncs: metrics::counter!(RESYNCS),
        slow_consumers: metrics::counter!(SLOW_CONSUMER_DISCONNECTS),
        publishes: metrics::counter!(PUBLISHES),
    })
}

/// Every `reason` of `HANDSHAKE_REJECTED` (`ws::handshake`, `ws::registration` and
/// `auth::AuthError::code`).
pub const HANDSHAKE_REASONS: &[&str] = &[
    "upgrade_required",
    "draining",
    "origin_not_allowed",
    "unsupported_subprotocol",
    "bad_request",
    "over_capacity",
    "missing_token",
    "invalid_token",
    "token_expired",
    "too_many_connections",
    "internal",
];
/// Every `result` of `RECOVERY`.
pub const RECOVERY_RESULTS: &[&str] = &["recovered", "not_recovered"];
/// The close codes the server sends (docs/protocol.md §7) and 1006 (no close frame): the `code`
/// values of `DISCONNECTS`, present from the start. Any other code (a client's or a
/// backend's choice) is counted as `other`, so peers cannot mint new series.
const CLOSE_CODES: &[u16] = &[
    close::NORMAL,
    close::GOING_AWAY,
    close::PROTOCOL_ERROR,
    1006,
    close::INVALID_PAYLOAD,
    close::MESSAGE_TOO_BIG,
    close::INTERNAL_ERROR,
    close::SERVICE_RESTART,
    close::TRY_AGAIN_LATER,
    close::TOKEN_EXPIRED,
    close::FORBIDDEN,
    close::SLOW_CONSUMER,
    close::RATE_LIMITED,
    close::TOO_MANY_BAD_FRAMES,
];
/// The `code` label of `DISCONNECTS` for a close code: the code itself when it is one of
/// [`CLOSE_CODES`], else `other`.
pub fn close_code_label(code: u16) -> String {
    if CLOSE_CODES.contains(&code) {
        code.to_string()
    } else {
        "other".to_owned()
    }
}

/// The `code` values of `CLIENT_ERRORS` present from the start.
const ERROR_CODES: &[ErrorCode] = &[
    ErrorCode::BadFrame,
    ErrorCode::UnknownType,
    ErrorCode::Forbidden,
    ErrorCode::BadChannel,
    ErrorCode::TooLarge,
    ErrorCode::RateLimited,
    ErrorCode::NotSubscribed,
    ErrorCode::TokenExpired,
    ErrorCode::Unavailable,
    ErrorCode::InvalidToken,
    ErrorCode::Internal,
    ErrorCode::NoRoute,
    ErrorCode::UpstreamTimeout,
    ErrorCode::UpstreamUnavailable,
    ErrorCode::UpstreamError,
    ErrorCode::TooManyRequests,
    ErrorCode::AlreadySubscribed,
    ErrorCode::LimitExceeded,
];
/// How often the `process_*` metrics are refreshed. Counting `/proc/self/fd` costs about a
/// microsecond per open socket, so not on every scrape of a node with 100k connections.
const PROCESS_INTERVAL: Duration = Duration::from_secs(5);

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the global recorder, describes every metric and sets every series the alerts
/// and the dashboard read to its starting value. Call it inside the Tokio runtime: it spawns
/// the task that refreshes the `process_*` metrics.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(DELIVERY_LATENCY.into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(RPC_UPSTREAM_LATENCY.into()), LATENCY_BUCKETS)?
        .install_recorder()?;
    describe();
    initialise();
    hot();
    let process = metrics_process::Collector::default();
    process.describe();
    process.collect();
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let upkeep = handle.clone();
        runtime.spawn(async move {
            let mut every = tokio::time::interval(PROCESS_INTERVAL);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                process.collect();
                // With `install_recorder` the caller drains the histograms' sample
                // buffers: without a scrape, every delivery's latency sample stayed in
                // memory (the soak saw +20 % RSS in 10 minutes, heaptrack pointed here).
                upkeep.run_upkeep();
            }
        });
    }
    Ok(handle)
}

/// Exports the setting that alerts compare against (`switchboard_max_connections`).
/// Call it once at startup with the node's `--max-connections` (`server::run`).
pub fn record_max_connections(max_connections: usize) {
    metrics::gauge!(MAX_CONNECTIONS).set(max_connections as f64);
}

/// Publishes the backplane's per-shard state (called on every scrape). A shard index
/// that disappeared from the slot map (shards removed by a reshard) reads down.
pub fn record_backplane(stats: &switchboard_router::BackplaneStats) {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static PRIMARIES: Mutex<Option<HashMap<usize, String>>> = Mutex::new(None);
    let mut known = PRIMARIES.lock().unwrap_or_else(|e| e.into_inner());
    let known = known.get_or_insert_with(HashMap::new);
    for s in &stats.shards {
        let shard = s.index.to_string();
        metrics::gauge!(SHARD_UP, "shard" => shard.clone()).set(if s.up { 1.0 } else { 0.0 });
        metrics::gauge!(SHARD_SUBSCRIPTIONS, "shard" => shard.clone()).set(s.subscriptions as f64);
        metrics::gauge!(SHARD_REPLICAS, "shard" => shard.clone()).set(s.replicas as f64);
        metrics::counter!(SHARD_RECONNECTS, "shard" => shard.clone()).absolute(s.reconnects);
        if let Some(old) = known.insert(s.index, s.primary.clone()) {
            if old != s.primary {
                metrics::gauge!(SHARD_INFO, "shard" => shard.clone(), "primary" => old).set(0.0);
            }
        }
        metrics::gauge!(SHARD_INFO, "shard" => shard, "primary" => s.primary.clone()).set(1.0);
    }
    let gone: Vec<usize> = known
        .keys()
        .copied()
        .filter(|i| stats.shards.iter().all(|s| s.index != *i))
        .collect();
    for index in gone {
        let shard = index.to_string();
        metrics::gauge!(SHARD_UP, "shard" => shard.clone()).set(0.0);
        metrics::gauge!(SHARD_SUBSCRIPTIONS, "shard" => shard.clone()).set(0.0);
        if let Some(primary) = known.remove(&index) {
            metrics::gauge!(SHARD_INFO, "shard" => shard, "primary" => primary).set(0.0);
        }
    }
    metrics::counter!(UNREPLICATED).absolute(stats.unreplicated);
}

/// Makes every series the alerts and the dashboard use visible from the first scrape.
fn initialise() {
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    metrics::gauge!(CONNECTIONS).set(0.0);
    // Not routing until the router has started (`server::run` sets it to 1 then).
    metrics::gauge!(BACKPLANE_UP).set(0.0);
    metrics::gauge!(DRAINING).set(0.0);
    for name in [
        CONNECTIONS_TOTAL,
        MESSAGES_RECEIVED,
        MESSAGES_DELIVERED,
        BACKPLANE_RECONNECTS,
        SLOW_CONSUMER_DISCONNECTS,
        PUBLISHES,
        DELIVERY_GAPS,
        RESYNCS,
        TLS_HANDSHAKE_FAILURES,
    ] {
        metrics::counter!(name).absolute(0);
    }
    for result in ["ok", "error"] {
        metrics::counter!(TLS_RELOADS, "result" => result).absolute(0);
    }
    for reason in HANDSHAKE_REASONS {
        metrics::counter!(HANDSHAKE_REJECTED, "reason" => *reason).absolute(0);
    }
    for code in CLOSE_CODES {
        metrics::counter!(DISCONNECTS, "code" => code.to_string()).absolute(0);
    }
    metrics::counter!(DISCONNECTS, "code" => "other").absolute(0);
    for result in RECOVERY_RESULTS {
        metrics::counter!(RECOVERY, "result" => *result).absolute(0);
    }
    for code in ERROR_CODES {
        metrics::counter!(CLIENT_ERRORS, "code" => code.as_str()).absolute(0);
    }
    // Registers the histogram so its (empty) buckets are exported before the first delivery.
    let _ = metrics::histogram!(DELIVERY_LATENCY);
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(CONNECTIONS, "Open WebSocket connections on this node");
    describe_counter!(CONNECTIONS_TOTAL, "Accepted WebSocket connections");
    describe_counter!(HANDSHAKE_REJECTED, "Upgrades refused, by reason");
    describe_counter!(DISCONNECTS, "Closed connections, by close code");
    describe_counter!(MESSAGES_RECEIVED, "Frames received from clients");
    describe_counter!(MESSAGES_DELIVERED, "Messages written to client sockets");
    describe_histogram!(
        DELIVERY_LATENCY,
        Unit::Seconds,
        "Publish accepted to written to the socket"
    );
    describe_gauge!(BACKPLANE_UP, "1 when the backplane can route");
    describe_counter!(BACKPLANE_RECONNECTS, "Backplane reconnects");
    describe_gauge!(
        SHARD_UP,
        "1 when this node's subscriber for the shard is connected and its probes come back"
    );
    describe_gauge!(
        SHARD_SUBSCRIPTIONS,
        "Channels this node receives through the shard"
    );
    describe_counter!(
        SHARD_RECONNECTS,
        "Times this node's subscriber for the shard connected again"
    );
    describe_gauge!(SHARD_INFO, "1 for the shard's current primary (host:port)");
    describe_counter!(
        UNREPLICATED,
        "Publishes acknowledged although no Redis replica confirmed them in time"
    );
    describe_counter!(SLOW_CONSUMER_DISCONNECTS, "Connections closed with 4008");
    describe_counter!(RECOVERY, "Resume attempts, by result");
    describe_counter!(CLIENT_ERRORS, "Error frames and failed replies, by code");
    describe_counter!(API_REQUESTS, "Server API requests, by endpoint and status");
    describe_counter!(PUBLISHES, "Publishes accepted");
    describe_gauge!(DRAINING, "1 while the node drains");
    describe_counter!(
        DELIVERY_GAPS,
        "Live messages that arrived after an offset gap"
    );
    describe_counter!(
        RESYNCS,
        "Resync frames sent: history a live connection depended on was lost"
    );
    describe_counter!(RPC_CALLS, "RPC calls, by route and result");
    describe_histogram!(
        RPC_UPSTREAM_LATENCY,
        Unit::Seconds,
        "Duration of each upstream attempt of an RPC call"
    );
    describe_gauge!(
        RPC_CIRCUIT_STATE,
        "Circuit state per route and upstream: 0 closed, 1 open, 2 half-open"
    );
    describe_counter!(
        RPC_RETRIES,
        "Extra attempts of idempotent RPC calls, by route"
    );
    describe_gauge!(MAX_CONNECTIONS, "The node's --max-connections");
    describe_counter!(
        TLS_RELOADS,
        "TLS certificate reloads after a file change, by result (error: the old one stays)"
    );
    describe_counter!(TLS_HANDSHAKE_FAILURES, "TLS handshakes that failed");
    describe_gauge!(BUILD_INFO, "Always 1; the running build's version");
    describe_counter!(
        JWKS_REFRESH,
        "Fetches of the JWKS URL, by trigger and result (errors keep the last good set)"
    );
    describe_gauge!(JWKS_KEYS, "Usable keys in the current JWKS set");
    describe_gauge!(
        JWKS_LAST_SUCCESS,
        Unit::Seconds,
        "Unix time of the last good JWKS fetch"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders what `initialise` exports, with a recorder local to this test.
    fn initial_render() -> String {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(DELIVERY_LATENCY.into()), LATENCY_BUCKETS)
            .unwrap()
            .build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, initialise);
        handle.render()
    }

    #[test]
    fn every_series_the_alerts_read_exists_before_the_first_event() {
        let text = initial_render();
        for series in [
            "switchboard_connections 0",
            "switchboard_connections_total 0",
            "switchboard_backplane_up 0",
            "switchboard_draining 0",
            "switchboard_slow_consumer_disconnects_total 0",
            "switchboard_backplane_reconnects_total 0",
            "switchboard_handshake_rejected_total{reason=\"over_capacity\"} 0",
            "switchboard_handshake_rejected_total{reason=\"invalid_token\"} 0",
            "switchboard_handshake_rejected_total{reason=\"too_many_connections\"} 0",
            "switchboard_disconnects_total{code=\"4008\"} 0",
            "switchboard_disconnects_total{code=\"1006\"} 0",
            "switchboard_recovery_total{result=\"recovered\"} 0",
            "switchboard_recovery_total{result=\"not_recovered\"} 0",
            "switchboard_client_errors_total{code=\"bad_frame\"} 0",
            "switchboard_delivery_latency_seconds_count 0",
        ] {
            assert!(
                text.lines().any(|l| l == series),
                "{series} missing in:\n{text}"
            );
        }
        let buckets = text
            .lines()
            .filter(|l| l.starts_with("switchboard_delivery_latency_seconds_bucket{"))
            .count();
        assert_eq!(buckets, LATENCY_BUCKETS.len() + 1, "{text}");
    }

    #[test]
    fn handshake_reasons_cover_the_auth_errors() {
        use crate::auth::AuthError;
        for e in [
            AuthError::Missing,
            AuthError::Expired,
            AuthError::Invalid(String::new()),
        ] {
            assert!(HANDSHAKE_REASONS.contains(&e.code()), "{}", e.code());
        }
    }
}
