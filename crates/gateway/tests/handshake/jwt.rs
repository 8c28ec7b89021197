//! The JWT matrix: missing, garbage, expired and not-yet-valid tokens, `alg: none`, wrong keys
//! and algorithms, missing claims, audience and issuer, header or query.

use super::*;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

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
    let missing = node
        .metric(
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
    let expired = node
        .metric(
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
