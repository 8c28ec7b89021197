//! Forwarding to backends (docs/protocol.md §4b, issue 6): `rpc` frames routed to real HTTP
//! upstreams started by the tests, in both encodings, with the identity headers and
//! `traceparent`, the answer mapping, timeouts, retries, balancing, circuit breakers, the
//! per-connection in-flight cap, cancellation, and the route configuration.
//!
//! # Layout
//! - this file: helpers shared by the tests (a node with a route config, `rpc` frames in
//!   both encodings, reading replies and error codes, Prometheus samples).
//! - [`upstream`]: the programmable fake upstream (a hyper 1 server on port 0).
//! - [`forwarding`]: success in both encodings, the forwarded request (body, identity
//!   headers, `traceparent`), the answer mapping and its errors, route order.
//! - [`access`]: `bad_frame`, `forbidden` by the `rpc` claim, `no_route`, the in-flight
//!   cap, cancellation when the socket closes.
//! - [`retries`]: retries only on idempotent routes, only after retryable failures, at most
//!   `retries` extra attempts.
//! - [`balancing`]: round robin and least in-flight across two upstreams.
//! - [`breaker`]: the per-upstream circuit: opening, failing fast, the half-open probe.
//! - [`load`]: 1,000 concurrent calls from 100 connections.
//! - [`config`]: invalid routes exit 64 listing every problem; the flag and env forms.

use switchboard_testkit as support;

mod access;
mod balancing;
mod breaker;
mod config;
mod forwarding;
mod load;
mod retries;
mod upstream;

use std::time::Duration;

use serde_json::{json, Value};
use support::metrics::{metric_one, metric_sum, samples};
use support::{binary_payload, json_payload, start_with_config, write_config, Client, Node};
use switchboard_proto::pb;
use tokio_tungstenite::tungstenite::Message;

/// One `[[routes]]` table: `method` → `upstreams`, plus extra `key = value` lines.
fn route(method: &str, upstreams: &[&str], extra: &[&str]) -> String {
    let urls: Vec<String> = upstreams.iter().map(|u| format!("{u:?}")).collect();
    let mut t = format!(
        "[[routes]]\nmethod = {method:?}\nupstreams = [{}]\n",
        urls.join(", ")
    );
    for line in extra {
        t.push_str(line);
        t.push('\n');
    }
    t.push('\n');
    t
}

/// A JSON `rpc` frame.
fn rpc(id: u64, method: &str, data: Value) -> Value {
    json!({"type": "rpc", "id": id, "method": method, "data": data})
}

/// Sends an `rpc` and returns its reply (other frames skipped).
async fn call(client: &mut Client, id: u64, method: &str, data: Value) -> Value {
    client.send(rpc(id, method, data)).await;
    client.reply(id).await
}

/// The `data` of a successful reply; panics with the reply otherwise.
fn ok_data(reply: &Value) -> Value {
    assert_eq!(reply["type"], "reply", "{reply}");
    assert_eq!(reply["ok"], true, "expected a successful reply: {reply}");
    assert!(reply.get("error").is_none(), "{reply}");
    reply["data"].clone()
}

/// The error code of a failed reply; panics with the reply otherwise. The message must be
/// a non-empty string.
fn error_code(reply: &Value) -> String {
    assert_eq!(reply["type"], "reply", "{reply}");
    assert_eq!(reply["ok"], false, "expected a failed reply: {reply}");
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "error without a message: {reply}");
    reply["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("error without a code: {reply}"))
        .to_owned()
}

// --- protobuf -----------------------------------------------------------------------------

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn length_delimited(field: u32, bytes: &[u8], out: &mut Vec<u8>) {
    varint(u64::from(field << 3 | 2), out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// A protobuf `Frame{rpc: Rpc{id, method, data, traceparent}}`, encoded by hand so the
/// test does not depend on how the generated struct spells the optional field 4.
fn pb_rpc(id: u64, method: &str, data: Option<pb::Payload>, traceparent: Option<&str>) -> Message {
    use prost::Message as _;
    let mut rpc = Vec::new();
    varint(1 << 3, &mut rpc);
    varint(id, &mut rpc);
    length_delimited(2, method.as_bytes(), &mut rpc);
    if let Some(data) = data {
        length_delimited(3, &data.encode_to_vec(), &mut rpc);
    }
    if let Some(tp) = traceparent {
        length_delimited(4, tp.as_bytes(), &mut rpc);
    }
    let mut frame = Vec::new();
    length_delimited(7, &rpc, &mut frame);
    Message::Binary(frame.into())
}

// --- metrics ------------------------------------------------------------------------------

/// Waits (bounded) until the circuit-state gauge of `upstream` on `route` is `state`.
async fn wait_circuit(node: &Node, route: &str, upstream: &str, state: f64) {
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        let text = node.metrics_text().await;
        let now: Vec<f64> = samples(&text, "switchboard_rpc_circuit_state")
            .into_iter()
            .filter(|(l, _)| {
                l.get("route").map(String::as_str) == Some(route)
                    && l.get("upstream").map(String::as_str) == Some(upstream)
            })
            .map(|(_, v)| v)
            .collect();
        if now == [state] {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "switchboard_rpc_circuit_state{{route={route:?},upstream={upstream:?}}} is {now:?}, \
             expected {state}; all: {:?}",
            samples(&text, "switchboard_rpc_circuit_state")
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
