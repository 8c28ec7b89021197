//! The read endpoints and disconnect: users, presence, history, nodes.

use prost::Message as _;
use serde::Deserialize;
use serde_json::{json, value::RawValue, Value};
use switchboard_proto::channel::is_valid_user_id;
use switchboard_proto::{json as pjson, pb, StreamPosition};

use super::{
    answer, check_channel, json_body, ApiError, ApiResult, Format, HISTORY_DEFAULT, HISTORY_MAX,
};
use crate::http::query::query_param;
use crate::node::Node;

fn check_user(id: &str) -> Result<(), ApiError> {
    if is_valid_user_id(id) {
        Ok(())
    } else {
        Err(ApiError::bad("bad_request", "invalid user id"))
    }
}

pub(super) async fn user(node: &Node, id: &str, format: Format) -> ApiResult {
    check_user(id)?;
    let conns = node.router.connections(id).await?;
    let list: Vec<Value> = conns
        .iter()
        .map(|c| json!({"conn_id": c.conn_id, "node": c.node, "since_ms": c.since_ms}))
        .collect();
    answer(
        format,
        &json!({"online": !conns.is_empty(), "connections": list}),
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
    /// A JSON number: `4003.0` is the integer 4003 too (as JSON Schema reads it).
    code: Option<serde_json::Number>,
    reason: Option<String>,
}

/// A close code given as a JSON number; integral values only.
fn close_code(n: &serde_json::Number) -> Result<u32, ApiError> {
    n.as_u64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(f))
                .map(|f| f as u64)
        })
        .and_then(|c| u32::try_from(c).ok())
        .ok_or_else(|| ApiError::bad("bad_request", "`code` must be 1000 or 3000-4999"))
}

pub(super) async fn disconnect(
    node: &Node,
    id: &str,
    body: &[u8],
    proto: bool,
    format: Format,
) -> ApiResult {
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
        let d: DisconnectJson = json_body(body)?;
        (d.code.map(|n| close_code(&n)).transpose()?, d.reason)
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
    answer(format, &json!({"connections": n}), || {
        pb::DisconnectResponse {
            connections: n as u32,
        }
        .encode_to_vec()
    })
}

pub(super) async fn presence(node: &Node, channel: &str, format: Format) -> ApiResult {
    check_channel(node, channel)?;
    let p = node.router.presence(channel).await?;
    answer(
        format,
        &json!({"channel": channel, "users": p.users, "connections": p.connections}),
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

pub(super) async fn history(
    node: &Node,
    channel: &str,
    query: Option<&str>,
    format: Format,
) -> ApiResult {
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
        &json!({"epoch": read.epoch, "offset": read.offset, "recovered": read.recovered, "messages": messages}),
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

pub(super) async fn nodes(node: &Node, format: Format) -> ApiResult {
    let list = node.router.nodes().await?;
    let json_list: Vec<Value> = list
        .iter()
        .map(|n| json!({"node": n.node, "connections": n.connections, "draining": n.draining, "since_ms": n.since_ms}))
        .collect();
    answer(format, &json!({"nodes": json_list}), || {
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
