//! The internal listener: the server API (docs/protocol.md §6: publish, broadcast, users,
//! disconnect, presence, history and nodes, plus `batch`, many publishes in one request),
//! the operational endpoints and the OpenAPI document (docs/openapi.json) describing them
//! all. JSON by default; `application/x-protobuf` bodies (and `Accept`) use the `api.proto`
//! messages. Errors are always JSON.
//!
//! # Layout
//! - [`routes`]: the route table, matched by [`handle`] and checked against the document.
//! - `publish`, `batch`: the publishing endpoints; `query`: users, disconnect, presence,
//!   history, nodes; `ops`: health, readiness, metrics and the document.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::Value;
use switchboard_proto::channel::Channel;
use switchboard_router::RouterError;

use crate::http::{error, json_value, protobuf, Body};
use crate::metrics as m;
use crate::node::Node;

mod batch;
mod ops;
#[cfg(test)]
mod proptests;
mod publish;
mod query;
pub mod routes;

use batch::batch;
use publish::{broadcast, publish};
use query::{disconnect, history, nodes, presence, user};
use routes::{Endpoint, Lookup};

const PROTOBUF: &str = "application/x-protobuf";
/// Most channels one broadcast may name.
const MAX_BROADCAST_CHANNELS: usize = 10_000;
/// Default and largest `limit` of a history read.
const HISTORY_DEFAULT: usize = 100;
const HISTORY_MAX: usize = 10_000;

/// An API failure: status, `error` code and message.
pub struct ApiError(StatusCode, &'static str, String);

impl ApiError {
    fn bad(code: &'static str, msg: impl Into<String>) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, code, msg.into())
    }
}

impl From<RouterError> for ApiError {
    fn from(e: RouterError) -> ApiError {
        match e {
            RouterError::BadRequest(m) => ApiError::bad("bad_request", m),
            RouterError::Unavailable(m) => {
                ApiError(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m)
            }
        }
    }
}

type ApiResult = Result<Response<Body>, ApiError>;

/// Whether the answer is protobuf.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Proto,
}

fn wants(headers: &HeaderMap, name: header::HeaderName) -> bool {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(PROTOBUF))
}

/// Answers one request to the internal port: the server API (`/v1/*`, the API key
/// required except for the OpenAPI document) and the operational endpoints.
pub async fn handle(node: &Arc<Node>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let found = routes::lookup(req.method(), &path);
    let api = path.starts_with("/v1/");
    let (endpoint, needs_key) = match &found {
        Lookup::Found(r, _) | Lookup::WrongMethod(r, _) => (r.endpoint.label(), r.auth),
        Lookup::NotFound => ("other", api),
    };
    let allow = match &found {
        Lookup::WrongMethod(_, allow) => HeaderValue::from_str(allow).ok(),
        _ => None,
    };
    let res = match needs_key.then(|| authorize(node, req.headers())) {
        Some(Err(e)) => Err(e),
        _ => dispatch(node, req, found).await,
    };
    let mut res = res.unwrap_or_else(|ApiError(status, code, msg)| error(status, code, &msg));
    if let (StatusCode::METHOD_NOT_ALLOWED, Some(allow)) = (res.status(), allow) {
        res.headers_mut().insert(header::ALLOW, allow);
    }
    if api {
        metrics::counter!(m::API_REQUESTS, "endpoint" => endpoint, "status" => res.status().as_str().to_owned())
            .increment(1);
    }
    res
}

fn authorize(node: &Node, headers: &HeaderMap) -> Result<(), ApiError> {
    let unauthorized = |m: &str| ApiError(StatusCode::UNAUTHORIZED, "unauthorized", m.into());
    if node.config.api_keys.is_empty() {
        return Err(unauthorized(
            "the server API is disabled: no --api-key is configured",
        ));
    }
    // The first Bearer credentials, as for a WebSocket's token (scheme in any case).
    let given = crate::http::bearer(headers)
        .next()
        .ok_or_else(|| unauthorized("pass `Authorization: Bearer <api-key>`"))?;
    if node
        .config
        .api_keys
        .iter()
        .any(|k| constant_time_eq(k.as_bytes(), given.as_bytes()))
    {
        Ok(())
    } else {
        Err(unauthorized("unknown API key"))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn dispatch(node: &Arc<Node>, req: Request<Incoming>, found: Lookup) -> ApiResult {
    let (route, params) = match found {
        Lookup::Found(route, params) => (route, params),
        Lookup::WrongMethod(..) => {
            return Err(ApiError(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{} is not allowed here", req.method()),
            ))
        }
        Lookup::NotFound => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no such endpoint: {}", req.uri().path()),
            ))
        }
    };
    let format =
        if wants(req.headers(), header::ACCEPT) || wants(req.headers(), header::CONTENT_TYPE) {
            Format::Proto
        } else {
            Format::Json
        };
    let proto_body = wants(req.headers(), header::CONTENT_TYPE);
    let param = params.first().map(String::as_str).unwrap_or_default();
    match route.endpoint {
        Endpoint::Publish => {
            let body = read_body(node, req).await?;
            publish(node, &body, proto_body, format).await
        }
        Endpoint::Broadcast => {
            let body = read_body_limited(req, broadcast_body_limit(node)).await?;
            broadcast(node, &body, proto_body, format).await
        }
        Endpoint::Batch => {
            let body = read_body_limited(req, batch::MAX_BATCH_BODY).await?;
            batch(node, &body, proto_body, format).await
        }
        Endpoint::User => user(node, param, format).await,
        Endpoint::Disconnect => {
            let body = read_body(node, req).await?;
            disconnect(node, param, &body, proto_body, format).await
        }
        Endpoint::Presence => presence(node, param, format).await,
        Endpoint::History => history(node, param, req.uri().query(), format).await,
        Endpoint::Nodes => nodes(node, format).await,
        Endpoint::OpenApi => Ok(ops::openapi()),
        Endpoint::Healthz => Ok(ops::healthz()),
        Endpoint::Readyz => Ok(ops::readyz(node)),
        Endpoint::Metrics => Ok(ops::metrics(node)),
    }
}

/// A broadcast body: the message, and up to [`MAX_BROADCAST_CHANNELS`] names of up to
/// `MAX_CHANNEL_LEN` bytes, quoted and comma-separated. (It was the publish limit, 128 KiB
/// by default: 10,000 channels of 12 bytes did not fit. Found by Schemathesis.)
fn broadcast_body_limit(node: &Node) -> usize {
    node.config.max_message_bytes
        + 64 * 1024
        + MAX_BROADCAST_CHANNELS * (switchboard_proto::channel::MAX_CHANNEL_LEN + 3)
}

async fn read_body(node: &Node, req: Request<Incoming>) -> Result<Bytes, ApiError> {
    read_body_limited(req, node.config.max_message_bytes + 64 * 1024).await
}

async fn read_body_limited(req: Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the body is larger than {limit} bytes"),
            ))
        }
        Err(e) => Err(ApiError::bad(
            "bad_request",
            format!("could not read the body: {e}"),
        )),
    }
}

/// Decodes a JSON body, which must be an object (serde would also read a struct from an
/// array of its fields in order: `[null, null]` was a valid disconnect body).
fn json_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice::<Object<T>>(body)
        .map(|o| o.0)
        .map_err(|e| ApiError::bad("bad_request", format!("invalid JSON body: {e}")))
}

/// A value that only deserializes from a JSON object (a body, or an item of a batch).
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = Object<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Object<T>, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Object)
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

/// A 200 answer in the request's format; every handler ends with it (hence the `Result`).
#[allow(clippy::unnecessary_wraps)]
fn answer(format: Format, value: &Value, pb: impl FnOnce() -> Vec<u8>) -> ApiResult {
    Ok(match format {
        Format::Json => json_value(StatusCode::OK, value),
        Format::Proto => protobuf(StatusCode::OK, pb()),
    })
}

/// Validates a channel for this node's namespaces.
fn check_channel(node: &Node, name: &str) -> Result<(), ApiError> {
    let ch = Channel::parse(name).map_err(|e| ApiError::bad("bad_channel", e.to_string()))?;
    if node.config.knows_namespace(ch.namespace) {
        Ok(())
    } else {
        Err(ApiError::bad(
            "bad_channel",
            format!("unknown namespace `{}`", ch.namespace),
        ))
    }
}
