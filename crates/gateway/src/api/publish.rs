//! `POST /v1/publish` and `POST /v1/broadcast`, and the message checks `/v1/batch` shares.

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use prost::Message as _;
use serde::Deserialize;
use serde_json::{json, value::RawValue, Value};
use switchboard_proto::channel::is_valid_user_id;
use switchboard_proto::model::{is_valid_idempotency_key, IDEMPOTENCY_KEY_RULE};
use switchboard_proto::{binary, pb, Payload};
use switchboard_router::{PublishOutcome, PublishRequest};

use super::{
    answer, check_channel, json_body, ApiError, ApiResult, Format, MAX_BROADCAST_CHANNELS,
};
use crate::metrics as m;
use crate::node::Node;

#[derive(Deserialize)]
pub(super) struct PublishJson<'a> {
    pub(super) channel: Option<String>,
    channels: Option<Vec<String>>,
    #[serde(default, borrow, deserialize_with = "present")]
    pub(super) data: Option<&'a RawValue>,
    pub(super) data_b64: Option<String>,
    pub(super) from: Option<String>,
    pub(super) idempotency_key: Option<String>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// A decoded publish or broadcast body.
struct PublishBody {
    channels: Vec<String>,
    data: Payload,
    from: Option<String>,
    /// Validated; for a broadcast, one key for each of its channels.
    key: Option<String>,
}

/// An optional idempotency key of a body, which must follow the contract's rule. In
/// protobuf bodies (`proto`) the empty string is none: proto3 has no absent strings.
pub(super) fn check_key(key: Option<String>, proto: bool) -> Result<Option<String>, ApiError> {
    match key {
        None => Ok(None),
        Some(k) if proto && k.is_empty() => Ok(None),
        Some(k) if is_valid_idempotency_key(&k) => Ok(Some(k)),
        Some(_) => Err(ApiError::bad("bad_request", IDEMPOTENCY_KEY_RULE)),
    }
}

fn decode_publish(
    node: &Node,
    body: &[u8],
    proto: bool,
    many: bool,
) -> Result<PublishBody, ApiError> {
    let decoded = if proto {
        let (channels, data, from, key) = if many {
            let b = pb::BroadcastRequest::decode(body)
                .map_err(|e| ApiError::bad("bad_request", e.to_string()))?;
            (b.channels, b.data, b.from, b.idempotency_key)
        } else {
            let p = pb::PublishRequest::decode(body)
                .map_err(|e| ApiError::bad("bad_request", e.to_string()))?;
            (vec![p.channel], p.data, p.from, p.idempotency_key)
        };
        PublishBody {
            channels,
            data: binary::payload_from_pb(data).map_err(|m| ApiError::bad("bad_request", m))?,
            from: (!from.is_empty()).then_some(from),
            key: check_key(Some(key), true)?,
        }
    } else {
        let j: PublishJson<'_> = json_body(body)?;
        let channels = if many {
            j.channels
                .ok_or_else(|| ApiError::bad("bad_request", "`channels` is required"))?
        } else {
            vec![j
                .channel
                .ok_or_else(|| ApiError::bad("bad_request", "`channel` is required"))?]
        };
        let data = payload_from_json(j.data, j.data_b64)?;
        PublishBody {
            channels,
            data,
            from: j.from,
            key: check_key(j.idempotency_key, false)?,
        }
    };
    check_data(node, &decoded.data, decoded.from.as_deref())?;
    Ok(decoded)
}

/// The payload of a JSON body: `data` (any JSON value) or `data_b64` (bytes).
pub(super) fn payload_from_json(
    data: Option<&RawValue>,
    data_b64: Option<String>,
) -> Result<Payload, ApiError> {
    match (data, data_b64) {
        (Some(d), None) => Ok(Payload::Json(Arc::from(d.get()))),
        (None, Some(b)) => {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b.as_bytes())
                .map_err(|_| ApiError::bad("bad_request", "`data_b64` is not valid base64"))?;
            Ok(Payload::Binary(Bytes::from(bytes)))
        }
        (Some(_), Some(_)) => Err(ApiError::bad(
            "bad_request",
            "`data` and `data_b64` are mutually exclusive",
        )),
        (None, None) => Err(ApiError::bad("bad_request", "`data` is required")),
    }
}

/// The size limit of `data` and the shape of `from`.
fn check_data(node: &Node, data: &Payload, from: Option<&str>) -> Result<(), ApiError> {
    if data.len() > node.config.max_message_bytes {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "`data` is larger than {} bytes",
                node.config.max_message_bytes
            ),
        ));
    }
    if from.is_some_and(|f| !is_valid_user_id(f)) {
        return Err(ApiError::bad(
            "bad_request",
            "`from` must be a valid user id",
        ));
    }
    Ok(())
}

/// Checks one message completely (channel, data, from) and makes it a request.
pub(super) fn check_message(
    node: &Node,
    channel: String,
    data: Payload,
    from: Option<String>,
    key: Option<String>,
) -> Result<PublishRequest, ApiError> {
    check_channel(node, &channel)?;
    check_data(node, &data, from.as_deref())?;
    Ok(PublishRequest {
        channel,
        from,
        data,
        idempotency: node.idempotency(key, None),
    })
}

/// Appends one item's answer (broadcast, batch): the publish result, or its error.
pub(super) fn push_result(
    json_results: &mut Vec<Value>,
    pb_results: &mut Vec<pb::PublishResult>,
    channel: String,
    result: Result<PublishOutcome, ApiError>,
) {
    match result {
        Ok(o) => {
            if !o.duplicate {
                m::hot().publishes.increment(1);
            }
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

pub(super) fn outcome_json(o: &PublishOutcome) -> Value {
    let mut v = json!({
        "channel": o.message.channel,
        "epoch": o.message.epoch,
        "offset": o.message.offset,
        "online": o.online,
        "nodes": o.nodes,
    });
    if o.duplicate {
        v["duplicate"] = Value::Bool(true);
    }
    v
}

pub(super) fn outcome_pb(o: &PublishOutcome) -> pb::PublishResult {
    pb::PublishResult {
        channel: o.message.channel.clone(),
        epoch: o.message.epoch.clone(),
        offset: o.message.offset,
        online: o.online,
        nodes: o.nodes,
        error: None,
        duplicate: o.duplicate,
    }
}

pub(super) async fn publish(node: &Node, body: &[u8], proto: bool, format: Format) -> ApiResult {
    let b = decode_publish(node, body, proto, false)?;
    let channel = b.channels.into_iter().next().unwrap_or_default();
    check_channel(node, &channel)?;
    let o = node
        .router
        .publish(PublishRequest {
            channel,
            from: b.from,
            data: b.data,
            idempotency: node.idempotency(b.key, None),
        })
        .await?;
    if !o.duplicate {
        m::hot().publishes.increment(1);
    }
    answer(format, &outcome_json(&o), || outcome_pb(&o).encode_to_vec())
}

pub(super) async fn broadcast(node: &Node, body: &[u8], proto: bool, format: Format) -> ApiResult {
    let b = decode_publish(node, body, proto, true)?;
    if b.channels.is_empty() || b.channels.len() > MAX_BROADCAST_CHANNELS {
        return Err(ApiError::bad(
            "bad_request",
            format!("`channels` must name 1 to {MAX_BROADCAST_CHANNELS} channels"),
        ));
    }
    let mut json_results = Vec::with_capacity(b.channels.len());
    let mut pb_results = Vec::with_capacity(b.channels.len());
    // One call for every valid channel: the router pipelines them, so the call answers
    // within one command timeout, not one per channel.
    let checked: Vec<(String, Result<(), ApiError>)> = b
        .channels
        .into_iter()
        .map(|channel| {
            let ok = check_channel(node, &channel);
            (channel, ok)
        })
        .collect();
    let requests: Vec<PublishRequest> = checked
        .iter()
        .filter(|(_, ok)| ok.is_ok())
        .map(|(channel, _)| PublishRequest {
            channel: channel.clone(),
            from: b.from.clone(),
            data: b.data.clone(),
            idempotency: node.idempotency(b.key.clone(), None),
        })
        .collect();
    let mut published = node.router.publish_many(requests).await.into_iter();
    let results: Vec<(String, Result<PublishOutcome, ApiError>)> = checked
        .into_iter()
        .map(|(channel, ok)| {
            let result = match ok {
                Err(e) => Err(e),
                Ok(()) => published
                    .next()
                    .unwrap_or_else(|| {
                        Err(switchboard_router::RouterError::Unavailable(
                            "not published".into(),
                        ))
                    })
                    .map_err(ApiError::from),
            };
            (channel, result)
        })
        .collect();
    for (channel, result) in results {
        push_result(&mut json_results, &mut pb_results, channel, result);
    }
    answer(format, &json!({ "results": json_results }), || {
        pb::BroadcastResponse {
            results: pb_results,
        }
        .encode_to_vec()
    })
}
