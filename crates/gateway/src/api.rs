//! The server API on the internal listener (PROTOCOL.md §6): publish, broadcast, users,
//! disconnect, presence, history and nodes, plus `batch` (many publishes in one request). JSON by default; `application/x-protobuf`
//! bodies (and `Accept`) use the `api.proto` messages. Errors are always JSON.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::Value;
use switchboard_proto::channel::Channel;
use switchboard_router::RouterError;

use crate::http::{error, json_value, protobuf, Body};
use crate::metrics as m;
use crate::node::Node;

mod batch;
#[cfg(test)]
mod proptests;
mod publish;
mod query;

use batch::batch;
use publish::{broadcast, publish};
use query::{disconnect, history, nodes, presence, user};

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

/// Answers one `/v1/*` request.
pub async fn handle(node: &Arc<Node>, req: Request<Incoming>) -> Response<Body> {
    let endpoint = endpoint_name(req.uri().path());
    let res = match authorize(node, req.headers()) {
        Err(e) => Err(e),
        Ok(()) => route(node, req).await,
    };
    let res = res.unwrap_or_else(|ApiError(status, code, msg)| error(status, code, &msg));
    metrics::counter!(m::API_REQUESTS, "endpoint" => endpoint, "status" => res.status().as_str().to_owned())
        .increment(1);
    res
}

fn endpoint_name(path: &str) -> &'static str {
    let mut parts = path.trim_start_matches("/v1/").split('/');
    match (parts.next(), parts.nth(1)) {
        (Some("publish"), _) => "publish",
        (Some("broadcast"), _) => "broadcast",
        (Some("batch"), _) => "batch",
        (Some("users"), Some("disconnect")) => "disconnect",
        (Some("users"), _) => "users",
        (Some("presence"), _) => "presence",
        (Some("history"), _) => "history",
        (Some("nodes"), _) => "nodes",
        _ => "other",
    }
}

fn authorize(node: &Node, headers: &HeaderMap) -> Result<(), ApiError> {
    let unauthorized = |m: &str| ApiError(StatusCode::UNAUTHORIZED, "unauthorized", m.into());
    if node.config.api_keys.is_empty() {
        return Err(unauthorized(
            "the server API is disabled: no --api-key is configured",
        ));
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
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

async fn route(node: &Arc<Node>, req: Request<Incoming>) -> ApiResult {
    let format =
        if wants(req.headers(), header::ACCEPT) || wants(req.headers(), header::CONTENT_TYPE) {
            Format::Proto
        } else {
            Format::Json
        };
    let proto_body = wants(req.headers(), header::CONTENT_TYPE);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let segments: Vec<String> = path
        .trim_start_matches("/v1/")
        .split('/')
        .map(crate::http::query::percent_decode)
        .collect();
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let not_allowed = || {
        ApiError(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not allowed here"),
        )
    };
    match seg.as_slice() {
        ["publish"] if method == Method::POST => {
            let body = read_body(node, req).await?;
            publish(node, &body, proto_body, format).await
        }
        ["broadcast"] if method == Method::POST => {
            let body = read_body(node, req).await?;
            broadcast(node, &body, proto_body, format).await
        }
        ["batch"] if method == Method::POST => {
            let body = read_body_limited(req, batch::MAX_BATCH_BODY).await?;
            batch(node, &body, proto_body, format).await
        }
        ["users", id] if method == Method::GET => user(node, id, format).await,
        ["users", id, "disconnect"] if method == Method::POST => {
            let id = id.to_string();
            let body = read_body(node, req).await?;
            disconnect(node, &id, &body, proto_body, format).await
        }
        ["presence", channel] if method == Method::GET => presence(node, channel, format).await,
        ["history", channel] if method == Method::GET => {
            history(node, channel, query.as_deref(), format).await
        }
        ["nodes"] if method == Method::GET => nodes(node, format).await,
        ["publish"]
        | ["broadcast"]
        | ["batch"]
        | ["users", _]
        | ["users", _, "disconnect"]
        | ["presence", _]
        | ["history", _]
        | ["nodes"] => Err(not_allowed()),
        _ => Err(ApiError(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such endpoint: {path}"),
        )),
    }
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

fn answer(format: Format, value: Value, pb: impl FnOnce() -> Vec<u8>) -> ApiResult {
    Ok(match format {
        Format::Json => json_value(StatusCode::OK, &value),
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
