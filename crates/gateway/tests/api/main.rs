//! The server API of docs/protocol.md §6 on the internal port, its errors, the protobuf
//! variant, and the operational endpoints (`/healthz`, `/readyz`, `/metrics`, §1 and §8).
//!
//! # Layout
//! - this file: helpers shared by the tests (publishing, error bodies, polling an endpoint,
//!   joining a room).
//! - [`publish`]: `POST /v1/publish` and `POST /v1/broadcast`.
//! - [`batch`]: `POST /v1/batch`.
//! - [`queries`]: users, disconnect, presence, history, nodes.
//! - [`errors`]: the API key and bad requests.
//! - [`protobuf`]: the protobuf variant of the API.
//! - [`ops`]: `/healthz`, `/readyz` and `/metrics`.
//! - [`openapi`]: `GET /v1/openapi.json`, 405 with `Allow`, what Schemathesis found.

use switchboard_testkit as support;

mod batch;
mod errors;
mod openapi;
mod ops;
mod protobuf;
mod publish;
mod queries;

use std::time::Duration;

use serde_json::Value;
use support::{now_ms, Node};

const QUIET: Duration = Duration::from_millis(200);

async fn publish(node: &Node, body: Value) -> Value {
    let (status, res) = node.api("POST", "/v1/publish", Some(body)).await;
    assert_eq!(status, 200, "publish: {res}");
    res
}

/// Asserts an error answer: status, `error` code, and a `message` string.
fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"], want_code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "every error has a message: {body}"
    );
}

/// Polls `GET path` until `pred` holds (state that settles after a socket closed).
async fn eventually(node: &Node, path: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        let (status, body) = node.api("GET", path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        if pred(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never settled: {body}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
