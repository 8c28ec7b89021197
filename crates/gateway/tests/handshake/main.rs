//! The upgrade of `GET /ws` over real HTTP (docs/protocol.md §1, §3, §4): every refusal is an
//! HTTP error with a JSON `{"error","message"}` body before the 101, the JWT matrix,
//! Origin, subprotocols, the connection caps (per node and per user), metrics of
//! rejections, and the configuration checks of the binary.
//!
//! # Layout
//! - this file: helpers shared by the tests (keys, claims, raw upgrades, refused/accepted
//!   checks, counters).
//! - [`jwt`]: the JWT matrix.
//! - [`origin`]: the `Origin` check.
//! - [`subprotocols`]: subprotocol negotiation.
//! - [`limits`]: the connection cap and malformed requests.
//! - [`user_cap`]: the per-user connection cap, on one node and cluster-wide.
//! - [`binary`]: configuration errors of the binary and `switchboard token`.

use switchboard_testkit as support;

mod binary;
mod jwt;
mod limits;
mod origin;
mod subprotocols;
mod user_cap;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use support::{now_secs, Node, Refused};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Response;

/// A path under `tests/keys/`.
fn key_path(name: &str) -> String {
    format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn read_key(name: &str) -> Vec<u8> {
    std::fs::read(key_path(name)).expect("test key")
}

/// Claims valid for an hour, plus `extra`.
fn claims(extra: Value) -> Value {
    let mut c = json!({"sub": "alice", "exp": now_secs() + 3600, "channels": ["room:*"]});
    for (k, v) in extra.as_object().expect("object") {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn sign_rs256(claims: &Value, private_key: &str) -> String {
    let key = EncodingKey::from_rsa_pem(&read_key(private_key)).expect("RSA private key");
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).expect("sign")
}

/// Upgrades with `query` and `headers`; the 101 response, or the refusal.
async fn upgrade(
    node: &Node,
    query: &str,
    headers: &[(&str, &str)],
) -> Result<(support::Ws, Response), Refused> {
    let mut req = node.ws_url(query).into_client_request().expect("request");
    for (k, v) in headers {
        req.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok(pair) => Ok(pair),
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            let status = res.status().as_u16();
            let body = res.body().as_deref().unwrap_or_default();
            let body = serde_json::from_slice(body).unwrap_or_else(|_| {
                panic!(
                    "refusal body is not JSON: {}",
                    String::from_utf8_lossy(body)
                )
            });
            Err(Refused { status, body })
        }
        Err(e) => panic!("websocket connect failed: {e}"),
    }
}

/// Asserts that the upgrade is refused with `status` and the JSON error `code`.
async fn refused(node: &Node, query: &str, headers: &[(&str, &str)], status: u16, code: &str) {
    match upgrade(node, query, headers).await {
        Ok((_, res)) => panic!("expected {status} {code}, got {}", res.status()),
        Err(r) => {
            assert_eq!(r.status, status, "{:?}", r.body);
            assert_eq!(r.body["error"], code, "{:?}", r.body);
            assert!(r.body["message"].is_string(), "{:?}", r.body);
        }
    }
}

/// Asserts a 101 and a welcome for `user` (JSON).
async fn accepted(node: &Node, query: &str, headers: &[(&str, &str)], user: &str) -> Response {
    let (ws, res) = match upgrade(node, query, headers).await {
        Ok(pair) => pair,
        Err(r) => panic!("expected 101, got {} {:?}", r.status, r.body),
    };
    assert_eq!(res.status(), 101);
    let mut client = support::Client { ws, proto: false };
    let welcome = client.recv().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["user"], user, "{welcome}");
    res
}

fn with_token(token: &str) -> String {
    format!("token={token}")
}
