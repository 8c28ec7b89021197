//! The routes without the API key: `/healthz`, `/readyz`, `/metrics` (docs/protocol.md §1, §8)
//! and the OpenAPI document of the whole internal port, `GET /v1/openapi.json`.

use http::{header, HeaderValue, Response, StatusCode};

use crate::http::{json, Body};
use crate::metrics as m;
use crate::node::Node;

/// docs/openapi.json, embedded in the binary.
pub(super) const OPENAPI: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/openapi.json"
));

pub(super) fn openapi() -> Response<Body> {
    json(StatusCode::OK, OPENAPI)
}

pub(super) fn healthz() -> Response<Body> {
    json(StatusCode::OK, r#"{"ok":true}"#)
}

pub(super) fn readyz(node: &Node) -> Response<Body> {
    if node.is_draining() {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"ready":false,"reason":"draining"}"#,
        )
    } else if !node.router.is_up() {
        let down: Vec<String> = node
            .router
            .stats()
            .shards
            .iter()
            .filter(|s| !s.up)
            .map(|s| format!("shard {} ({})", s.index, s.primary))
            .collect();
        let reason = if down.is_empty() {
            "backplane down".to_owned()
        } else {
            format!("backplane down: {}", down.join(", "))
        };
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"ready": false, "reason": reason}).to_string(),
        )
    } else {
        json(StatusCode::OK, r#"{"ready":true}"#)
    }
}

pub(super) fn metrics(node: &Node) -> Response<Body> {
    m::record_backplane(&node.router.stats());
    let mut res = Response::new(Body::from(node.metrics.render()));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    res
}
