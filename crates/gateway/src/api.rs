//! The server API on the internal listener (PROTOCOL.md §6): publish, broadcast, users,
//! disconnect, presence, history and nodes. JSON by default; `application/x-protobuf`
//! bodies (and `Accept`) use the `api.proto` messages. Errors are always JSON.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use prost::Message as _;
use serde::Deserialize;
use serde_json::{json, value::RawValue, Value};
use switchboard_proto::channel::{is_valid_user_id, Channel, ROOM_NAMESPACE, USER_NAMESPACE};
use switchboard_proto::{binary, json as pjson, pb, Payload, StreamPosition};
use switchboard_router::{PublishOutcome, PublishRequest, RouterError};

use crate::http::{error, json_value, protobuf, Body};
use crate::metrics as m;
use crate::node::Node;
use crate::ws::query_param;

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
        .map(crate::ws::percent_decode)
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
    let limit = node.config.max_message_bytes + 64 * 1024;
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
    let known = ch.namespace == USER_NAMESPACE
        || ch.namespace == ROOM_NAMESPACE
        || node.config.namespaces.iter().any(|n| n == ch.namespace);
    if known {
        Ok(())
    } else {
        Err(ApiError::bad(
            "bad_channel",
            format!("unknown namespace `{}`", ch.namespace),
        ))
    }
}

#[derive(Deserialize)]
struct PublishJson<'a> {
    channel: Option<String>,
    channels: Option<Vec<String>>,
    #[serde(default, borrow, deserialize_with = "present")]
    data: Option<&'a RawValue>,
    data_b64: Option<String>,
    from: Option<String>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// A decoded publish or broadcast body.
struct PublishBody {
    channels: Vec<String>,
    data: Payload,
    from: Option<String>,
}

fn decode_publish(
    node: &Node,
    body: &[u8],
    proto: bool,
    many: bool,
) -> Result<PublishBody, ApiError> {
    let decoded = if proto {
        let (channels, data, from) = if many {
            let b = pb::BroadcastRequest::decode(body)
                .map_err(|e| ApiError::bad("bad_request", e.to_string()))?;
            (b.channels, b.data, b.from)
        } else {
            let p = pb::PublishRequest::decode(body)
                .map_err(|e| ApiError::bad("bad_request", e.to_string()))?;
            (vec![p.channel], p.data, p.from)
        };
        PublishBody {
            channels,
            data: binary::payload_from_pb(data).map_err(|m| ApiError::bad("bad_request", m))?,
            from: (!from.is_empty()).then_some(from),
        }
    } else {
        let j: PublishJson<'_> = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad("bad_request", format!("invalid JSON body: {e}")))?;
        let channels = if many {
            j.channels
                .ok_or_else(|| ApiError::bad("bad_request", "`channels` is required"))?
        } else {
            vec![j
                .channel
                .ok_or_else(|| ApiError::bad("bad_request", "`channel` is required"))?]
        };
        let data = match (j.data, j.data_b64) {
            (Some(d), None) => Payload::Json(Arc::from(d.get())),
            (None, Some(b)) => {
                use base64::Engine as _;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b.as_bytes())
                    .map_err(|_| ApiError::bad("bad_request", "`data_b64` is not valid base64"))?;
                Payload::Binary(Bytes::from(bytes))
            }
            (Some(_), Some(_)) => {
                return Err(ApiError::bad(
                    "bad_request",
                    "`data` and `data_b64` are mutually exclusive",
                ))
            }
            (None, None) => return Err(ApiError::bad("bad_request", "`data` is required")),
        };
        PublishBody {
            channels,
            data,
            from: j.from,
        }
    };
    if decoded.data.len() > node.config.max_message_bytes {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "`data` is larger than {} bytes",
                node.config.max_message_bytes
            ),
        ));
    }
    if let Some(from) = &decoded.from {
        if !is_valid_user_id(from) {
            return Err(ApiError::bad(
                "bad_request",
                "`from` must be a valid user id",
            ));
        }
    }
    Ok(decoded)
}

fn outcome_json(o: &PublishOutcome) -> Value {
    json!({
        "channel": o.message.channel,
        "epoch": o.message.epoch,
        "offset": o.message.offset,
        "online": o.online,
        "nodes": o.nodes,
    })
}

fn outcome_pb(o: &PublishOutcome) -> pb::PublishResult {
    pb::PublishResult {
        channel: o.message.channel.clone(),
        epoch: o.message.epoch.clone(),
        offset: o.message.offset,
        online: o.online,
        nodes: o.nodes,
        error: None,
    }
}

async fn publish(node: &Node, body: &[u8], proto: bool, format: Format) -> ApiResult {
    let b = decode_publish(node, body, proto, false)?;
    let channel = b.channels.into_iter().next().unwrap_or_default();
    check_channel(node, &channel)?;
    let o = node
        .router
        .publish(PublishRequest {
            channel,
            from: b.from,
            data: b.data,
        })
        .await?;
    metrics::counter!(m::PUBLISHES).increment(1);
    answer(format, outcome_json(&o), || outcome_pb(&o).encode_to_vec())
}

async fn broadcast(node: &Node, body: &[u8], proto: bool, format: Format) -> ApiResult {
    let b = decode_publish(node, body, proto, true)?;
    if b.channels.is_empty() || b.channels.len() > MAX_BROADCAST_CHANNELS {
        return Err(ApiError::bad(
            "bad_request",
            format!("`channels` must name 1 to {MAX_BROADCAST_CHANNELS} channels"),
        ));
    }
    let mut json_results = Vec::with_capacity(b.channels.len());
    let mut pb_results = Vec::with_capacity(b.channels.len());
    // Channels are independent: publish them concurrently (pipelined on one Redis
    // connection), so that the call answers within one command timeout, not one per
    // channel.
    let (from, data) = (&b.from, &b.data);
    let results =
        futures_util::future::join_all(b.channels.into_iter().map(|channel| async move {
            let result = match check_channel(node, &channel) {
                Err(e) => Err(e),
                Ok(()) => node
                    .router
                    .publish(PublishRequest {
                        channel: channel.clone(),
                        from: from.clone(),
                        data: data.clone(),
                    })
                    .await
                    .map_err(ApiError::from),
            };
            (channel, result)
        }))
        .await;
    for (channel, result) in results {
        match result {
            Ok(o) => {
                metrics::counter!(m::PUBLISHES).increment(1);
                json_results.push(outcome_json(&o));
                pb_results.push(outcome_pb(&o));
            }
            Err(ApiError(_, code, message)) => {
                json_results
                    .push(json!({"channel": channel, "error": {"code": code, "message": message}}));
                pb_results.push(pb::PublishResult {
                    channel,
                    error: Some(pb::ErrorBody {
                        code: code.into(),
                        message,
                    }),
                    ..Default::default()
                });
            }
        }
    }
    answer(format, json!({ "results": json_results }), || {
        pb::BroadcastResponse {
            results: pb_results,
        }
        .encode_to_vec()
    })
}

fn check_user(id: &str) -> Result<(), ApiError> {
    if is_valid_user_id(id) {
        Ok(())
    } else {
        Err(ApiError::bad("bad_request", "invalid user id"))
    }
}

async fn user(node: &Node, id: &str, format: Format) -> ApiResult {
    check_user(id)?;
    let conns = node.router.connections(id).await?;
    let list: Vec<Value> = conns
        .iter()
        .map(|c| json!({"conn_id": c.conn_id, "node": c.node, "since_ms": c.since_ms}))
        .collect();
    answer(
        format,
        json!({"online": !conns.is_empty(), "connections": list}),
        || {
            pb::UserResponse {
                online: !conns.is_empty(),
                connections: conns
                    .iter()
                    .map(|c| pb::ConnectionInfo {
                        conn_id: c.conn_id.clone(),
                        node: c.node.clone(),
                        since_ms: c.since_ms,
                    })
                    .collect(),
            }
            .encode_to_vec()
        },
    )
}

#[derive(Deserialize, Default)]
struct DisconnectJson {
    code: Option<u32>,
    reason: Option<String>,
}

async fn disconnect(node: &Node, id: &str, body: &[u8], proto: bool, format: Format) -> ApiResult {
    check_user(id)?;
    let (code, reason) = if body.iter().all(u8::is_ascii_whitespace) {
        (None, None)
    } else if proto {
        let d = pb::DisconnectRequest::decode(body)
            .map_err(|e| ApiError::bad("bad_request", e.to_string()))?;
        (
            (d.code != 0).then_some(d.code),
            (!d.reason.is_empty()).then_some(d.reason),
        )
    } else {
        let d: DisconnectJson = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad("bad_request", format!("invalid JSON body: {e}")))?;
        (d.code, d.reason)
    };
    let code = code.unwrap_or(u32::from(switchboard_proto::close::FORBIDDEN));
    if !(code == 1000 || (3000..=4999).contains(&code)) {
        return Err(ApiError::bad(
            "bad_request",
            "`code` must be 1000 or 3000-4999",
        ));
    }
    let reason = reason.unwrap_or_else(|| "disconnected".into());
    if reason.len() > 120 {
        return Err(ApiError::bad(
            "bad_request",
            "`reason` must be at most 120 bytes",
        ));
    }
    let n = node
        .router
        .disconnect_user(id, code as u16, &reason)
        .await?;
    answer(format, json!({"connections": n}), || {
        pb::DisconnectResponse {
            connections: n as u32,
        }
        .encode_to_vec()
    })
}

async fn presence(node: &Node, channel: &str, format: Format) -> ApiResult {
    check_channel(node, channel)?;
    let p = node.router.presence(channel).await?;
    answer(
        format,
        json!({"channel": channel, "users": p.users, "connections": p.connections}),
        || {
            pb::PresenceResponse {
                channel: channel.to_owned(),
                users: p.users.clone(),
                connections: p.connections as u32,
            }
            .encode_to_vec()
        },
    )
}

async fn history(node: &Node, channel: &str, query: Option<&str>, format: Format) -> ApiResult {
    check_channel(node, channel)?;
    let since = match query_param(query, "since") {
        None => None,
        Some(s) => Some(
            StreamPosition::parse(&s)
                .ok_or_else(|| ApiError::bad("bad_request", "`since` must be <epoch>:<offset>"))?,
        ),
    };
    let limit = match query_param(query, "limit") {
        None => HISTORY_DEFAULT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=HISTORY_MAX).contains(&n) => n,
            _ => {
                return Err(ApiError::bad(
                    "bad_request",
                    format!("`limit` must be 1 to {HISTORY_MAX}"),
                ))
            }
        },
    };
    let read = node.router.read(channel, since.as_ref(), limit).await?;
    let messages: Vec<Box<RawValue>> = read
        .messages
        .iter()
        .map(|m| pjson::message_to_json(m))
        .collect();
    answer(
        format,
        json!({"epoch": read.epoch, "offset": read.offset, "recovered": read.recovered, "messages": messages}),
        || {
            pb::HistoryResponse {
                epoch: read.epoch.clone(),
                offset: read.offset,
                recovered: read.recovered,
                messages: read
                    .messages
                    .iter()
                    .map(|m| pb::Message::from(m.as_ref()))
                    .collect(),
            }
            .encode_to_vec()
        },
    )
}

async fn nodes(node: &Node, format: Format) -> ApiResult {
    let list = node.router.nodes().await?;
    let json_list: Vec<Value> = list
        .iter()
        .map(|n| json!({"node": n.node, "connections": n.connections, "draining": n.draining, "since_ms": n.since_ms}))
        .collect();
    answer(format, json!({"nodes": json_list}), || {
        pb::NodesResponse {
            nodes: list
                .iter()
                .map(|n| pb::NodeInfo {
                    node: n.node.clone(),
                    connections: n.connections as u32,
                    draining: n.draining,
                    since_ms: n.since_ms,
                })
                .collect(),
        }
        .encode_to_vec()
    })
}
