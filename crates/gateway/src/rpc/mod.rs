//! RPC forwarding (docs/protocol.md §4b): a client's `rpc` frame is routed by its method to a
//! backend over HTTP, and the backend's answer comes back as the `reply`.
//!
//! # Layout
//!
//! - this file: the route table compiled from the configuration ([`Rpc`], [`Route`]), the
//!   checks a call passes before it runs (method, `rpc` claim, route, per-connection
//!   in-flight cap) and the task that runs it — concurrently with the connection's reader,
//!   cancelled when the socket goes.
//! - `call.rs`: one call: headers and body, attempts through the balancer and the circuit
//!   breakers, retries with jittered backoff, the answer → reply mapping.
//! - `client.rs`: the node's pooled HTTP client; one attempt under one deadline.
//! - `breaker.rs`: the circuit breaker of one upstream.
//! - `balance.rs`: which upstream an attempt tries first.
//! - `trace.rs`: the W3C `traceparent` sent upstream.

mod balance;
mod breaker;
mod call;
mod client;
mod trace;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use switchboard_proto::channel::pattern_matches;
use switchboard_proto::frames::ReplyOk;
use switchboard_proto::{ErrorCode, Payload, Reply, ServerFrame};
use tokio_util::task::TaskTracker;

use self::balance::Balancer;
use self::breaker::Breaker;
use self::client::HttpClient;
use crate::auth::Claims;
use crate::config::{Config, RouteConfig};
use crate::conn::ConnHandle;
use crate::metrics as m;

/// The `result` label values of `switchboard_rpc_calls_total`.
const RESULTS: [&str; 8] = [
    "ok",
    "no_route",
    "forbidden",
    "too_many_requests",
    "upstream_timeout",
    "upstream_unavailable",
    "upstream_error",
    "cancelled",
];

/// The node's RPC forwarding: routes, the HTTP client and the per-connection cap. Built
/// once at startup.
pub struct Rpc {
    /// In configuration order: the first route whose pattern matches serves the call.
    routes: Vec<Arc<Route>>,
    client: HttpClient,
    /// Sent upstream as `X-Switchboard-Node`.
    node_id: String,
    /// Calls one connection may have in flight (`too_many_requests` beyond).
    max_inflight: usize,
}

/// One route, compiled: its upstreams with their breakers and in-flight counts, and its
/// metric handles (labels fixed at startup: route name and upstream URL as configured).
pub struct Route {
    name: String,
    pattern: String,
    upstreams: Vec<Upstream>,
    /// Per attempt.
    timeout: Duration,
    /// Extra attempts; always 0 for routes that are not idempotent.
    retries: u32,
    balancer: Balancer,
    /// `switchboard_rpc_calls_total{route,result}`, indexed like [`RESULTS`] (`no_route`
    /// stays zero: it is counted with `route=""`).
    calls: Vec<metrics::Counter>,
    /// `switchboard_rpc_retries_total{route}`.
    retried: metrics::Counter,
}

struct Upstream {
    url: String,
    uri: http::Uri,
    breaker: Breaker,
    /// Attempts in flight (for `least_inflight`).
    inflight: AtomicUsize,
    /// `switchboard_rpc_upstream_latency_seconds{route,upstream}`.
    latency: metrics::Histogram,
}

/// What an `rpc` frame asks for.
#[derive(Clone, Debug)]
pub struct Request {
    pub id: Option<u64>,
    pub method: String,
    pub data: Payload,
    /// The client's `traceparent`, continued when valid.
    pub traceparent: Option<String>,
}

impl Route {
    fn new(config: &RouteConfig) -> Route {
        let name = config.name.clone();
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| {
                let labels = [("route", name.clone()), ("upstream", u.url.clone())];
                Upstream {
                    url: u.url.clone(),
                    uri: u.uri.clone(),
                    breaker: Breaker::new(
                        config.breaker_failures,
                        config.breaker_open,
                        metrics::gauge!(m::RPC_CIRCUIT_STATE, &labels),
                    ),
                    inflight: AtomicUsize::new(0),
                    latency: metrics::histogram!(m::RPC_UPSTREAM_LATENCY, &labels),
                }
            })
            .collect();
        Route {
            calls: RESULTS
                .iter()
                .map(|r| metrics::counter!(m::RPC_CALLS, "route" => name.clone(), "result" => *r))
                .collect(),
            retried: metrics::counter!(m::RPC_RETRIES, "route" => name.clone()),
            pattern: config.method.clone(),
            upstreams,
            timeout: config.timeout,
            retries: if config.idempotent { config.retries } else { 0 },
            balancer: Balancer::new(config.balance),
            name,
        }
    }

    fn matches(&self, method: &str) -> bool {
        pattern_matches(&self.pattern, method)
    }

    /// Counts a call's `result`.
    fn count(&self, result: &str) {
        if let Some(i) = RESULTS.iter().position(|r| *r == result) {
            self.calls[i].increment(1);
        }
    }
}

/// Counts a call that has no route to carry its name.
fn count_unrouted(result: &'static str) {
    metrics::counter!(m::RPC_CALLS, "route" => "", "result" => result).increment(1);
}

/// One of a connection's in-flight calls; released on drop.
struct Slot(Arc<ConnHandle>);

impl Slot {
    fn take(conn: &Arc<ConnHandle>, max: usize) -> Option<Slot> {
        conn.rpc_inflight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(conn.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.rpc_inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Rpc {
    pub fn new(config: &Config) -> Rpc {
        Rpc {
            routes: config
                .routes
                .iter()
                .map(|r| Arc::new(Route::new(r)))
                .collect(),
            client: HttpClient::new(config.max_message_bytes),
            node_id: config.node_id.clone(),
            max_inflight: config.rpc_max_inflight,
        }
    }

    /// The first route whose pattern matches `method`.
    pub fn route(&self, method: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.matches(method))
    }

    /// Checks a call and starts it on `tracker`; its reply is queued on `conn` when it
    /// ends (replies may come out of order: they carry the id). `Err` is the reply to send
    /// at once: `bad_frame`, `forbidden`, `no_route` or `too_many_requests`.
    pub fn dispatch(
        self: &Arc<Self>,
        tracker: &TaskTracker,
        conn: &Arc<ConnHandle>,
        claims: &Claims,
        request: Request,
    ) -> Result<(), (ErrorCode, String)> {
        let method = &request.method;
        if method.is_empty() {
            return Err((ErrorCode::BadFrame, "`method` is empty".into()));
        }
        let route = self.route(method);
        if !claims.can_call(method) {
            match route {
                Some(route) => route.count("forbidden"),
                None => count_unrouted("forbidden"),
            }
            return Err((
                ErrorCode::Forbidden,
                format!("not allowed to call {method}"),
            ));
        }
        let Some(route) = route.cloned() else {
            count_unrouted("no_route");
            return Err((ErrorCode::NoRoute, format!("no route for method {method}")));
        };
        let Some(slot) = Slot::take(conn, self.max_inflight) else {
            route.count("too_many_requests");
            return Err((
                ErrorCode::TooManyRequests,
                format!(
                    "more than {} calls of this connection in flight",
                    self.max_inflight
                ),
            ));
        };
        let this = self.clone();
        let conn = conn.clone();
        tracker.spawn(async move {
            let outcome = tokio::select! {
                biased;
                () = conn.rpc_cancel().cancelled() => None,
                result = this.call(&route, &conn, &request) => Some(result),
            };
            // Free the slot before the reply: a client may send its next call on it.
            drop(slot);
            let reply = match outcome {
                None => {
                    route.count("cancelled");
                    return;
                }
                Some(Ok(data)) => {
                    route.count("ok");
                    let ok = ReplyOk {
                        data: Some(data),
                        ..ReplyOk::default()
                    };
                    Reply::ok(request.id, ok)
                }
                Some(Err((code, message))) => {
                    route.count(code.as_str());
                    metrics::counter!(m::CLIENT_ERRORS, "code" => code.as_str()).increment(1);
                    Reply::err(request.id, code, message)
                }
            };
            conn.send(&ServerFrame::Reply(reply));
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests;
