//! `POST /v1/batch` (docs/protocol.md §6, an addition to the original contract): many publishes in one request, so a
//! backend pays one HTTP round trip and the node one pipelined burst of Redis scripts for
//! hundreds of messages. Every item is checked and answered on its own, in request order;
//! items for the same channel are published in request order (their offsets follow it),
//! different channels concurrently.

use prost::Message as _;
use serde::Deserialize;
use serde_json::{json, Value};
use switchboard_proto::pb;
use switchboard_router::{PublishOutcome, PublishRequest};

use super::publish::{check_key, check_message, payload_from_json, push_result, PublishJson};
use super::{answer, json_body, ApiError, ApiResult, Format, Object};
use crate::node::Node;

/// Most messages one batch may carry.
pub(super) const MAX_BATCH_MESSAGES: usize = 1000;
/// Largest batch body (each message's data still obeys --max-message-bytes).
pub(super) const MAX_BATCH_BODY: usize = 8 * 1024 * 1024;

#[derive(Deserialize)]
struct BatchJson<'a> {
    #[serde(borrow)]
    messages: Option<Vec<Object<PublishJson<'a>>>>,
}

/// One decoded item, or why it is refused.
type Item = Result<PublishRequest, ApiError>;

fn decode(node: &Node, body: &[u8], proto: bool) -> Result<Vec<(String, Item)>, ApiError> {
    let items: Vec<(String, Item)> = if proto {
        let b = pb::BatchRequest::decode(body)
            .map_err(|e| ApiError::bad("bad_request", e.to_string()))?;
        b.messages
            .into_iter()
            .map(|p| {
                let channel = p.channel.clone();
                let item = switchboard_proto::binary::payload_from_pb(p.data)
                    .map_err(|m| ApiError::bad("bad_request", m))
                    .and_then(|data| {
                        let from = (!p.from.is_empty()).then_some(p.from);
                        let key = check_key(Some(p.idempotency_key), true)?;
                        check_message(node, p.channel, data, from, key)
                    });
                (channel, item)
            })
            .collect()
    } else {
        let j: BatchJson<'_> = json_body(body)?;
        let messages = j
            .messages
            .ok_or_else(|| ApiError::bad("bad_request", "`messages` is required"))?;
        messages
            .into_iter()
            .map(|Object(p)| {
                let channel = p.channel.clone().unwrap_or_default();
                let item = match p.channel {
                    None => Err(ApiError::bad("bad_request", "`channel` is required")),
                    Some(ch) => payload_from_json(p.data, p.data_b64).and_then(|data| {
                        let key = check_key(p.idempotency_key, false)?;
                        check_message(node, ch, data, p.from, key)
                    }),
                };
                (channel, item)
            })
            .collect()
    };
    if items.is_empty() || items.len() > MAX_BATCH_MESSAGES {
        return Err(ApiError::bad(
            "bad_request",
            format!("`messages` must hold 1 to {MAX_BATCH_MESSAGES} messages"),
        ));
    }
    Ok(items)
}

pub(super) async fn batch(node: &Node, body: &[u8], proto: bool, format: Format) -> ApiResult {
    let items = decode(node, body, proto)?;
    let n = items.len();
    // Every valid item in one call: the router pipelines them (a channel's messages keep
    // the request's order).
    let requests: Vec<PublishRequest> = items
        .iter()
        .filter_map(|(_, item)| item.as_ref().ok().cloned())
        .collect();
    let mut published = node.router.publish_many(requests).await.into_iter();
    let results: Vec<Option<Result<PublishOutcome, ApiError>>> = items
        .iter()
        .map(|(_, item)| {
            item.as_ref()
                .ok()
                .and_then(|_| published.next())
                .map(|r| r.map_err(ApiError::from))
        })
        .collect();
    let mut json_results = Vec::with_capacity(n);
    let mut pb_results = Vec::with_capacity(n);
    for ((channel, item), published) in items.into_iter().zip(results) {
        let outcome = match (item, published) {
            (Err(e), _) => Err(e),
            (Ok(_), Some(r)) => r,
            (Ok(_), None) => Err(ApiError::bad("bad_request", "not published")),
        };
        push_result(&mut json_results, &mut pb_results, channel, outcome);
    }
    answer(
        format,
        &json!({ "results": Value::Array(json_results) }),
        || {
            pb::BatchResponse {
                results: pb_results,
            }
            .encode_to_vec()
        },
    )
}
