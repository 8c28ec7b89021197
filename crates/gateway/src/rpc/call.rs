//! One call: the forwarded request (`POST`, JSON `{"method","data"}`, identity headers and
//! `traceparent`), attempts through the balancer and the circuit breakers, retries of
//! idempotent routes with jittered exponential backoff, and the answer → reply mapping
//! (docs/protocol.md §4b).

use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use rand::Rng as _;
use switchboard_proto::{ErrorCode, Payload};
use tokio::time::Instant;

use super::breaker::Permit;
use super::client::Attempt;
use super::trace::Trace;
use super::{Request, Route, Rpc, Upstream};
use crate::conn::ConnHandle;

/// First retry waits up to this long; each next one twice as long …
const BACKOFF_BASE: Duration = Duration::from_millis(50);
/// … up to this.
const BACKOFF_CAP: Duration = Duration::from_secs(1);

const USER: HeaderName = HeaderName::from_static("x-switchboard-user");
const CONN: HeaderName = HeaderName::from_static("x-switchboard-conn");
const NODE: HeaderName = HeaderName::from_static("x-switchboard-node");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// An upstream chosen for one attempt; its breaker permit and in-flight count are given
/// back on drop (an attempt dropped without an answer abandons a probe).
struct Pick<'a> {
    upstream: &'a Upstream,
    permit: Permit,
    answered: bool,
}

impl Pick<'_> {
    /// Reports the attempt's result to the upstream's circuit breaker.
    fn finish(mut self, route: &Route, attempt: &Attempt) {
        self.answered = true;
        let breaker = &self.upstream.breaker;
        if !attempt.is_failure() {
            breaker.success(self.permit);
        } else if breaker.failure(self.permit) {
            tracing::warn!(
                route = %route.name,
                upstream = %self.upstream.url,
                "circuit opened after upstream failures"
            );
        }
    }
}

impl Drop for Pick<'_> {
    fn drop(&mut self) {
        self.upstream.inflight.fetch_sub(1, Ordering::AcqRel);
        if !self.answered {
            self.upstream.breaker.abandon(self.permit);
        }
    }
}

impl Route {
    /// The upstream for the next attempt: the balancer's order, skipping open circuits.
    /// `None` when every circuit is open.
    fn pick(&self) -> Option<Pick<'_>> {
        let inflight: Vec<usize> = self
            .upstreams
            .iter()
            .map(|u| u.inflight.load(Ordering::Acquire))
            .collect();
        self.balancer.order(&inflight).into_iter().find_map(|i| {
            let upstream = &self.upstreams[i];
            let permit = upstream.breaker.acquire()?;
            upstream.inflight.fetch_add(1, Ordering::AcqRel);
            Some(Pick {
                upstream,
                permit,
                answered: false,
            })
        })
    }

    /// The reply error for an attempt's result, or the data.
    fn answer(&self, attempt: Attempt) -> Result<Payload, (ErrorCode, String)> {
        match attempt {
            Attempt::Data(data) => Ok(data),
            Attempt::BadBody(message) => Err((ErrorCode::UpstreamError, message)),
            Attempt::Status(status) => Err((
                ErrorCode::UpstreamError,
                format!("upstream answered {status}"),
            )),
            Attempt::Timeout => Err((
                ErrorCode::UpstreamTimeout,
                format!(
                    "upstream did not answer within {} ms",
                    self.timeout.as_millis()
                ),
            )),
            Attempt::Transport { message, .. } => Err((ErrorCode::UpstreamUnavailable, message)),
        }
    }
}

impl Rpc {
    /// Runs one call to its end (the caller drops it when the connection goes).
    pub(super) async fn call(
        &self,
        route: &Route,
        conn: &ConnHandle,
        request: &Request,
    ) -> Result<Payload, (ErrorCode, String)> {
        let body = request_body(&request.method, &request.data);
        let trace = Trace::for_call(request.traceparent.as_deref());
        let mut headers = HeaderMap::with_capacity(5);
        for (name, value) in [
            (USER, conn.user.as_str()),
            (CONN, conn.conn_id.as_str()),
            (NODE, self.node_id.as_str()),
        ] {
            // User, connection and node ids are checked [A-Za-z0-9_.:@=-] strings.
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        }
        let mut last = None;
        for attempt in 0..=route.retries {
            if attempt > 0 {
                route.retried.increment(1);
                tokio::time::sleep(backoff(attempt - 1)).await;
            }
            let Some(pick) = route.pick() else {
                return match last {
                    // Retries found every circuit open: the last failure says more.
                    Some(last) => route.answer(last),
                    None => Err((
                        ErrorCode::UpstreamUnavailable,
                        "the circuit is open for every upstream of this method; try again later"
                            .into(),
                    )),
                };
            };
            if let Ok(value) = HeaderValue::from_str(&trace.traceparent()) {
                headers.insert(TRACEPARENT, value);
            }
            let started = Instant::now();
            let result = self
                .client
                .post(
                    &pick.upstream.uri,
                    &headers,
                    body.clone(),
                    started + route.timeout,
                )
                .await;
            pick.upstream
                .latency
                .record(started.elapsed().as_secs_f64());
            if !matches!(result, Attempt::Data(_)) {
                tracing::debug!(
                    route = %route.name,
                    upstream = %pick.upstream.url,
                    result = ?result,
                    "upstream attempt failed"
                );
            }
            pick.finish(route, &result);
            if result.is_retryable() && attempt < route.retries {
                last = Some(result);
                continue;
            }
            return route.answer(result);
        }
        // The loop always returns: its last attempt is never retried.
        Err((ErrorCode::Internal, "no attempt was made".into()))
    }
}

/// `{"method":"…","data":<the client's JSON as-is>}`; a protobuf client's binary payload
/// goes as `"data_b64"`.
fn request_body(method: &str, data: &Payload) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + method.len() + 32);
    out.extend_from_slice(b"{\"method\":");
    out.extend_from_slice(
        serde_json::to_string(method)
            .unwrap_or_else(|_| "\"\"".into())
            .as_bytes(),
    );
    match data {
        Payload::Json(text) => {
            out.extend_from_slice(b",\"data\":");
            out.extend_from_slice(text.as_bytes());
        }
        Payload::Binary(bytes) => {
            out.extend_from_slice(b",\"data_b64\":\"");
            out.extend_from_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(bytes)
                    .as_bytes(),
            );
            out.push(b'"');
        }
    }
    out.push(b'}');
    Bytes::from(out)
}

/// Full jitter: a random wait in `0..=min(cap, base × 2^retry)`.
fn backoff(retry: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32 << retry.min(16))
        .min(BACKOFF_CAP);
    let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=ms))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn the_request_body_carries_the_data_as_is() {
        let json = Payload::Json(Arc::from(r#"{"sku":"A1","n":[1,2.50]}"#));
        let body = request_body("orders.\"create\"", &json);
        assert_eq!(
            &body[..],
            br#"{"method":"orders.\"create\"","data":{"sku":"A1","n":[1,2.50]}}"#
        );
        let binary = Payload::Binary(Bytes::from_static(&[0, 1, 255]));
        let body = request_body("m", &binary);
        assert_eq!(&body[..], br#"{"method":"m","data_b64":"AAH/"}"#);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["data_b64"], "AAH/");
    }

    #[test]
    fn backoff_is_jittered_exponential_and_capped() {
        for retry in 0..20 {
            let ceiling = (50u64 << retry.min(16)).min(1000);
            for _ in 0..50 {
                let d = backoff(retry).as_millis() as u64;
                assert!(d <= ceiling, "retry {retry}: {d} > {ceiling}");
            }
        }
        let waits: Vec<u128> = (0..50).map(|_| backoff(5).as_millis()).collect();
        assert!(waits.iter().any(|w| *w != waits[0]), "jittered");
    }
}
