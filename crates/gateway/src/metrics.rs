//! Metric names (PROTOCOL.md §8) and the Prometheus recorder. Every name used anywhere in
//! the gateway is a constant here; labels never carry user ids or channel names.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

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

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the global recorder and describes every metric.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(DELIVERY_LATENCY.into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(RPC_UPSTREAM_LATENCY.into()), LATENCY_BUCKETS)?
        .install_recorder()?;
    describe();
    // Make the always-present series visible from the first scrape.
    metrics::gauge!(CONNECTIONS).set(0.0);
    metrics::counter!(CONNECTIONS_TOTAL).absolute(0);
    metrics::counter!(MESSAGES_RECEIVED).absolute(0);
    metrics::counter!(MESSAGES_DELIVERED).absolute(0);
    metrics::counter!(BACKPLANE_RECONNECTS).absolute(0);
    metrics::counter!(SLOW_CONSUMER_DISCONNECTS).absolute(0);
    metrics::gauge!(DRAINING).set(0.0);
    Ok(handle)
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
}
