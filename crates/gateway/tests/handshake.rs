//! The upgrade of `GET /ws` over real HTTP (PROTOCOL.md §1, §3, §4): every refusal is an
//! HTTP error with a JSON `{"error","message"}` body before the 101, the JWT matrix,
//! Origin, subprotocols, the connection cap, metrics of rejections, and the configuration
//! checks of the binary.

mod support;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use support::{now_secs, Node, Refused};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Response;
use tokio_tungstenite::tungstenite::Message;

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

/// The value of the counter line `name{…label…}` in the metrics text (0 when absent).
async fn counter(node: &Node, name: &str, label: &str) -> f64 {
    let (status, text) = node.get_internal("/metrics").await;
    assert_eq!(status, 200);
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

// ---- the JWT matrix ------------------------------------------------------------------------

#[tokio::test]
async fn missing_token_is_401_missing_token() {
    let node = support::start(&[]).await;
    refused(&node, "", &[], 401, "missing_token").await;
    refused(&node, "token=", &[], 401, "missing_token").await;
    refused(
        &node,
        "",
        &[("authorization", "Bearer ")],
        401,
        "missing_token",
    )
    .await;
    let missing = counter(
        &node,
        "switchboard_handshake_rejected_total",
        r#"reason="missing_token""#,
    )
    .await;
    assert_eq!(missing, 3.0);
}

#[tokio::test]
async fn garbage_token_is_401_invalid_token() {
    let node = support::start(&[]).await;
    for garbage in ["garbage", "a.b.c", "e30.e30.", "%FF%FE"] {
        refused(&node, &with_token(garbage), &[], 401, "invalid_token").await;
    }
}

#[tokio::test]
async fn expired_token_is_401_token_expired() {
    let node = support::start(&[]).await;
    let token = support::sign(&claims(json!({"exp": now_secs() - 10})));
    refused(&node, &with_token(&token), &[], 401, "token_expired").await;
    let expired = counter(
        &node,
        "switchboard_handshake_rejected_total",
        r#"reason="token_expired""#,
    )
    .await;
    assert_eq!(expired, 1.0);
}

#[tokio::test]
async fn future_nbf_is_401_invalid_token() {
    let node = support::start(&[]).await;
    let future = support::sign(&claims(json!({"nbf": now_secs() + 3600})));
    refused(&node, &with_token(&future), &[], 401, "invalid_token").await;
    let future_iat = support::sign(&claims(json!({"iat": now_secs() + 3600})));
    refused(&node, &with_token(&future_iat), &[], 401, "invalid_token").await;
    // Within the leeway, a little clock skew is fine.
    let skewed = support::sign(&claims(
        json!({"nbf": now_secs() + 5, "iat": now_secs() + 5}),
    ));
    accepted(&node, &with_token(&skewed), &[], "alice").await;
}

#[tokio::test]
async fn alg_none_is_401_invalid_token() {
    let node = support::start(&[]).await;
    let body = URL_SAFE_NO_PAD.encode(claims(json!({})).to_string());
    for header in [
        r#"{"alg":"none","typ":"JWT"}"#,
        r#"{"alg":"None","typ":"JWT"}"#,
        r#"{"alg":"NONE"}"#,
    ] {
        let token = format!("{}.{body}.", URL_SAFE_NO_PAD.encode(header));
        refused(&node, &with_token(&token), &[], 401, "invalid_token").await;
    }
    // The same claims, signed, are fine: it is the missing signature that fails.
    accepted(
        &node,
        &with_token(&support::sign(&claims(json!({})))),
        &[],
        "alice",
    )
    .await;
}

#[tokio::test]
async fn wrong_key_or_algorithm_is_401_invalid_token() {
    let node = support::start(&[]).await;
    let c = claims(json!({}));
    let other = support::sign_with(&c, Algorithm::HS256, b"another-secret-0123456789-abcdefg");
    refused(&node, &with_token(&other), &[], 401, "invalid_token").await;
    // The right secret with another HMAC algorithm than the configured HS256.
    let hs512 = support::sign_with(&c, Algorithm::HS512, support::SECRET.as_bytes());
    refused(&node, &with_token(&hs512), &[], 401, "invalid_token").await;
    // A tampered payload keeps the signature of the original.
    let good = support::sign(&c);
    let parts: Vec<&str> = good.split('.').collect();
    let forged = URL_SAFE_NO_PAD.encode(claims(json!({"sub": "root"})).to_string());
    let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
    refused(&node, &with_token(&tampered), &[], 401, "invalid_token").await;
}

#[tokio::test]
async fn missing_required_claims_are_401_invalid_token() {
    let node = support::start(&[]).await;
    let no_sub = support::sign(&claims(json!({"sub": null})));
    refused(&node, &with_token(&no_sub), &[], 401, "invalid_token").await;
    let empty_sub = support::sign(&claims(json!({"sub": ""})));
    refused(&node, &with_token(&empty_sub), &[], 401, "invalid_token").await;
    let bad_sub = support::sign(&claims(json!({"sub": "a b"})));
    refused(&node, &with_token(&bad_sub), &[], 401, "invalid_token").await;
    let no_exp = support::sign(&claims(json!({"exp": null})));
    refused(&node, &with_token(&no_exp), &[], 401, "invalid_token").await;
}

#[tokio::test]
async fn rs256_node_refuses_hs256_signed_with_its_public_key() {
    let node = support::start_env(
        &[
            "--jwt-public-key",
            &key_path("rsa.pub"),
            "--jwt-algorithm",
            "RS256",
        ],
        // The support default secret would conflict with the public key.
        &[("SWITCHBOARD_JWT_SECRET", "")],
    )
    .await;
    let c = claims(json!({}));
    // HS/RS confusion: the public key PEM used as an HMAC secret.
    let confused = support::sign_with(&c, Algorithm::HS256, &read_key("rsa.pub"));
    refused(&node, &with_token(&confused), &[], 401, "invalid_token").await;
    // The test HMAC secret means nothing here either.
    refused(
        &node,
        &with_token(&support::sign(&c)),
        &[],
        401,
        "invalid_token",
    )
    .await;
    // Signed by another RSA key.
    let other = sign_rs256(&c, "rsa-other.key");
    refused(&node, &with_token(&other), &[], 401, "invalid_token").await;
    // RS512 with the right key is not the configured algorithm.
    let key = EncodingKey::from_rsa_pem(&read_key("rsa.key")).unwrap();
    let rs512 = jsonwebtoken::encode(&Header::new(Algorithm::RS512), &c, &key).unwrap();
    refused(&node, &with_token(&rs512), &[], 401, "invalid_token").await;
    // The real thing.
    accepted(&node, &with_token(&sign_rs256(&c, "rsa.key")), &[], "alice").await;
}

#[tokio::test]
async fn audience_and_issuer_are_required_when_configured() {
    let node = support::start(&["--jwt-audience", "api", "--jwt-issuer", "auth"]).await;
    let token = |extra: Value| with_token(&support::sign(&claims(extra)));
    refused(
        &node,
        &token(json!({"aud": "web", "iss": "auth"})),
        &[],
        401,
        "invalid_token",
    )
    .await;
    refused(
        &node,
        &token(json!({"aud": "api", "iss": "evil"})),
        &[],
        401,
        "invalid_token",
    )
    .await;
    refused(
        &node,
        &token(json!({"iss": "auth"})),
        &[],
        401,
        "invalid_token",
    )
    .await;
    refused(
        &node,
        &token(json!({"aud": "api"})),
        &[],
        401,
        "invalid_token",
    )
    .await;
    accepted(
        &node,
        &token(json!({"aud": "api", "iss": "auth"})),
        &[],
        "alice",
    )
    .await;
    // `aud` may be a list that contains ours.
    accepted(
        &node,
        &token(json!({"aud": ["web", "api"], "iss": "auth"})),
        &[],
        "alice",
    )
    .await;
}

#[tokio::test]
async fn token_in_bearer_header_or_query() {
    let node = support::start(&[]).await;
    let bob = support::token("bob");
    let bearer = format!("Bearer {bob}");
    accepted(&node, "", &[("authorization", &bearer)], "bob").await;
    let lower = format!("bearer {bob}");
    accepted(&node, "", &[("authorization", &lower)], "bob").await;
    accepted(&node, &with_token(&support::token("carol")), &[], "carol").await;
    // The header wins over the query parameter.
    accepted(
        &node,
        &with_token(&support::token("carol")),
        &[("authorization", &bearer)],
        "bob",
    )
    .await;
    let bad = format!("Bearer {}", "x.y.z");
    refused(&node, "", &[("authorization", &bad)], 401, "invalid_token").await;
}

// ---- Origin -----------------------------------------------------------------------------

#[tokio::test]
async fn origin_defaults_to_same_origin_only() {
    let node = support::start(&[]).await;
    let q = with_token(&support::token("alice"));
    accepted(&node, &q, &[], "alice").await;
    let same = format!("http://{}", node.public);
    accepted(&node, &q, &[("origin", &same)], "alice").await;
    for foreign in [
        "https://evil.example".to_owned(),
        format!("http://127.0.0.1:{}", node.public.port() + 1),
        // Host names are compared as written; the scheme is not (behind a TLS
        // terminator the node cannot know it), as in gorilla/websocket.
        format!("http://localhost:{}", node.public.port()),
        "null".to_owned(),
    ] {
        refused(
            &node,
            &q,
            &[("origin", &foreign)],
            403,
            "origin_not_allowed",
        )
        .await;
    }
    let rejected = counter(
        &node,
        "switchboard_handshake_rejected_total",
        r#"reason="origin_not_allowed""#,
    )
    .await;
    assert_eq!(rejected, 4.0);
}

#[tokio::test]
async fn origin_allow_list_admits_only_listed_origins() {
    let node = support::start(&["--allowed-origins", "https://app.example.com"]).await;
    let q = with_token(&support::token("alice"));
    accepted(&node, &q, &[("origin", "https://app.example.com")], "alice").await;
    for other in [
        "https://evil.example".to_owned(),
        "http://app.example.com".to_owned(),
        "https://app.example.com.evil.example".to_owned(),
        format!("http://{}", node.public),
    ] {
        refused(&node, &q, &[("origin", &other)], 403, "origin_not_allowed").await;
    }
}

#[tokio::test]
async fn origin_star_admits_any_origin() {
    let node = support::start(&["--allowed-origins", "*"]).await;
    let q = with_token(&support::token("alice"));
    for origin in ["https://evil.example", "http://localhost:3000", "null"] {
        accepted(&node, &q, &[("origin", origin)], "alice").await;
    }
}

// ---- subprotocols -------------------------------------------------------------------------

#[tokio::test]
async fn subprotocols_are_negotiated() {
    let node = support::start(&[]).await;
    let q = with_token(&support::token("alice"));
    let proto_header = |res: &Response| {
        res.headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    // None offered: JSON, no header.
    let res = accepted(&node, &q, &[], "alice").await;
    assert_eq!(proto_header(&res), None);
    // JSON offered: echoed.
    let res = accepted(
        &node,
        &q,
        &[("sec-websocket-protocol", "switchboard.v1.json")],
        "alice",
    )
    .await;
    assert_eq!(proto_header(&res).as_deref(), Some("switchboard.v1.json"));
    // Unknown ones are skipped when a known one follows.
    let res = accepted(
        &node,
        &q,
        &[("sec-websocket-protocol", "chat, switchboard.v1.json")],
        "alice",
    )
    .await;
    assert_eq!(proto_header(&res).as_deref(), Some("switchboard.v1.json"));
    // Protobuf: echoed, and the welcome arrives as a binary frame.
    let (ws, res) = upgrade(
        &node,
        &q,
        &[("sec-websocket-protocol", "switchboard.v1.proto")],
    )
    .await
    .expect("proto upgrade");
    assert_eq!(proto_header(&res).as_deref(), Some("switchboard.v1.proto"));
    let mut client = support::Client { ws, proto: true };
    match client.next().await {
        Some(Message::Binary(b)) => assert!(!b.is_empty()),
        other => panic!("expected a binary welcome, got {other:?}"),
    }
    // Only unknown ones: 400.
    refused(
        &node,
        &q,
        &[("sec-websocket-protocol", "chat")],
        400,
        "unsupported_subprotocol",
    )
    .await;
    refused(
        &node,
        &q,
        &[("sec-websocket-protocol", "chat, switchboard.v2.json")],
        400,
        "unsupported_subprotocol",
    )
    .await;
}

// ---- limits and malformed requests -----------------------------------------------------------

#[tokio::test]
async fn connection_cap_answers_503_until_a_slot_frees() {
    let node = support::start(&["--max-connections", "2"]).await;
    let (first, _) = node.connect("alice").await;
    let (_second, _) = node.connect("bob").await;
    let q = with_token(&support::token("carol"));
    refused(&node, &q, &[], 503, "over_capacity").await;
    let over = counter(
        &node,
        "switchboard_handshake_rejected_total",
        r#"reason="over_capacity""#,
    )
    .await;
    assert_eq!(over, 1.0);
    first.close().await;
    // The slot is released once the server has cleaned the connection up.
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        match upgrade(&node, &q, &[]).await {
            Ok(_) => break,
            Err(r) => {
                assert_eq!(r.status, 503, "{:?}", r.body);
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no slot was freed after a close"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test]
async fn plain_get_without_upgrade_is_a_json_error() {
    let node = support::start(&[]).await;
    let token = support::token("alice");
    let (status, body) = node
        .http(
            node.public,
            "GET",
            &format!("/ws?token={token}"),
            &[],
            Default::default(),
        )
        .await;
    assert_eq!(status, 426, "{}", String::from_utf8_lossy(&body));
    let body: Value = serde_json::from_slice(&body).expect("JSON body");
    assert_eq!(body["error"], "upgrade_required");
    assert!(body["message"].is_string());
    let (status, body) = node
        .http(node.public, "POST", "/ws", &[], Default::default())
        .await;
    assert_eq!(status, 405);
    let body: Value = serde_json::from_slice(&body).expect("JSON body");
    assert_eq!(body["error"], "method_not_allowed");
}

#[tokio::test]
async fn garbage_since_is_400() {
    let node = support::start(&[]).await;
    let token = support::token("alice");
    for since in ["garbage", "e1", "e1:x", ":5", "e%201:5"] {
        refused(
            &node,
            &format!("token={token}&since={since}"),
            &[],
            400,
            "bad_request",
        )
        .await;
    }
    // A well-formed one is accepted.
    let (mut c, _) = upgrade(&node, &format!("token={token}&since=e1:0"), &[])
        .await
        .map(|(ws, res)| (support::Client { ws, proto: false }, res))
        .expect("since accepted");
    let welcome = c.recv().await;
    assert_eq!(welcome["type"], "welcome");
    assert!(welcome["recovered"].is_boolean(), "{welcome}");
}

// ---- the binary: configuration errors and `switchboard token` ---------------------------------

#[tokio::test]
async fn invalid_configuration_exits_64_listing_every_problem() {
    let out = support::run_binary(
        &[
            "serve",
            "--listen",
            "nope",
            "--max-message-bytes",
            "abc",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        &[],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "stderr: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "nothing may be served: {:?}",
        out.stdout
    );
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("switchboard: invalid configuration"))
        .collect();
    assert_eq!(problems.len(), 3, "one line per problem: {stderr}");
    assert!(problems.iter().any(|l| l.contains("--listen")), "{stderr}");
    assert!(
        problems.iter().any(|l| l.contains("--max-message-bytes")),
        "{stderr}"
    );
    assert!(
        problems.iter().any(|l| l.contains("--jwt-secret")),
        "{stderr}"
    );
}

#[tokio::test]
async fn token_command_prints_one_jwt_the_node_accepts() {
    let out = support::run_binary(
        &["token", "--sub", "alice", "--ttl", "60"],
        &[("SWITCHBOARD_JWT_SECRET", support::SECRET)],
    )
    .await;
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout:?}");
    assert!(stdout.ends_with('\n'));
    let token = lines[0];
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("base64url")).unwrap();
    assert_eq!(payload["sub"], "alice");
    let exp = payload["exp"].as_u64().expect("exp");
    assert!(
        (now_secs() + 50..=now_secs() + 70).contains(&exp),
        "{payload}"
    );

    let node = support::start(&[]).await;
    accepted(&node, &with_token(token), &[], "alice").await;
    let bearer = format!("Bearer {token}");
    accepted(&node, "", &[("authorization", &bearer)], "alice").await;
}
