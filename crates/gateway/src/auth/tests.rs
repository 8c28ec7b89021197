//! The JWT rule matrix of docs/protocol.md §3, against a fixed clock (`verify_at(token, NOW)`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{HeaderMap, HeaderValue};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;

const NOW: u64 = 1_763_800_000;
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

macro_rules! key {
    ($name:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/", $name))
    };
}

fn sign_with(header: &Header, key: &EncodingKey, claims: &Value) -> String {
    install_crypto_provider();
    jsonwebtoken::encode(header, claims, key).expect("test token encodes")
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    sign_with(&Header::new(alg), key, claims)
}

fn hs(claims: &Value) -> String {
    sign(Algorithm::HS256, &EncodingKey::from_secret(SECRET), claims)
}

fn hmac(alg: Algorithm) -> Authenticator {
    Authenticator::new(alg, VerifyKey::Secret(SECRET), None, None).expect("hmac authenticator")
}

fn public(alg: Algorithm, pem: &str) -> Result<Authenticator, KeyError> {
    Authenticator::new(alg, VerifyKey::PublicKeyPem(pem.as_bytes()), None, None)
}

fn alice() -> Value {
    json!({"sub": "alice", "exp": NOW + 600, "iat": NOW})
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    if let Some(map) = claims.as_object_mut() {
        map.remove(key);
    }
    claims
}

#[track_caller]
fn assert_invalid(result: Result<Claims, AuthError>, token: &str) {
    match result {
        Err(e @ AuthError::Invalid(_)) => {
            assert_eq!(e.code(), "invalid_token");
            assert!(
                !token.is_empty() && !e.to_string().contains(token),
                "message leaks the token"
            );
        }
        other => panic!("expected invalid_token, got {other:?}"),
    }
}

#[test]
fn hmac_algorithms_verify() {
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let token = sign(alg, &EncodingKey::from_secret(SECRET), &alice());
        let claims = hmac(alg).verify_at(&token, NOW).expect("valid token");
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.exp, NOW + 600);
        assert!(claims.channels.is_empty() && claims.publish.is_empty() && claims.rpc.is_none());
    }
}

#[test]
fn public_key_algorithms_verify() {
    let cases = [
        (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(key!("rsa.key").as_bytes()),
            key!("rsa.pub"),
        ),
        (
            Algorithm::RS512,
            EncodingKey::from_rsa_pem(key!("rsa.key").as_bytes()),
            key!("rsa.pub"),
        ),
        (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(key!("ec256.key").as_bytes()),
            key!("ec256.pub"),
        ),
        (
            Algorithm::ES384,
            EncodingKey::from_ec_pem(key!("ec384.key").as_bytes()),
            key!("ec384.pub"),
        ),
        (
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(key!("ed25519.key").as_bytes()),
            key!("ed25519.pub"),
        ),
    ];
    for (alg, signing, pem) in cases {
        let token = sign(alg, &signing.expect("test private key"), &alice());
        let auth = public(alg, pem).expect("public key loads");
        assert_eq!(
            auth.verify_at(&token, NOW).expect("valid token").sub,
            "alice"
        );
    }
}

#[test]
fn missing_and_garbage_tokens() {
    let auth = hmac(Algorithm::HS256);
    assert_eq!(auth.verify_at("", NOW), Err(AuthError::Missing));
    assert_eq!(AuthError::Missing.code(), "missing_token");
    for garbage in [
        "abc",
        "a.b.c",
        "..",
        "e30.e30.",
        "é.é.é",
        "Bearer x",
        &"a".repeat(MAX_TOKEN_LEN + 1),
    ] {
        assert_invalid(auth.verify_at(garbage, NOW), garbage);
    }
    let valid = hs(&alice());
    let truncated = &valid[..valid.len() - 3];
    assert_invalid(auth.verify_at(truncated, NOW), truncated);
}

#[test]
fn expiry_is_exact() {
    let auth = hmac(Algorithm::HS256);
    let token = hs(&with(alice(), "exp", json!(NOW + 1)));
    assert!(auth.verify_at(&token, NOW).is_ok());
    let err = auth.verify_at(&token, NOW + 1).unwrap_err();
    assert_eq!(err, AuthError::Expired);
    assert_eq!(err.code(), "token_expired");
    assert_eq!(auth.verify_at(&token, NOW + 1000), Err(AuthError::Expired));
    // The real clock: a token that expired in 2020.
    let old = hs(&json!({"sub": "alice", "exp": 1_600_000_000u64}));
    assert_eq!(auth.verify(&old), Err(AuthError::Expired));
    // Fractional NumericDate.
    let frac = hs(&json!({"sub": "alice", "exp": (NOW + 10) as f64 + 0.5}));
    assert_eq!(auth.verify_at(&frac, NOW).map(|c| c.exp), Ok(NOW + 10));
}

#[test]
fn nbf_and_iat_have_leeway() {
    let auth = hmac(Algorithm::HS256);
    let ok = hs(&with(alice(), "nbf", json!(NOW + LEEWAY_SECS)));
    assert!(auth.verify_at(&ok, NOW).is_ok());
    let early = hs(&with(alice(), "nbf", json!(NOW + LEEWAY_SECS + 1)));
    assert_invalid(auth.verify_at(&early, NOW), &early);
    let skewed = hs(&with(alice(), "iat", json!(NOW + 10)));
    assert!(auth.verify_at(&skewed, NOW).is_ok());
    let future = hs(&with(alice(), "iat", json!(NOW + 3600)));
    assert_invalid(auth.verify_at(&future, NOW), &future);
    let negative = hs(&with(alice(), "nbf", json!(-5)));
    assert_invalid(auth.verify_at(&negative, NOW), &negative);
}

#[test]
fn alg_none_is_rejected() {
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let auth = hmac(Algorithm::HS256);
    for header in [
        json!({"alg": "none", "typ": "JWT"}),
        json!({"alg": "None"}),
        json!({"typ": "JWT"}),
    ] {
        let unsigned = format!("{}.{}.", b64(&header), b64(&alice()));
        assert_invalid(auth.verify_at(&unsigned, NOW), &unsigned);
        let with_sig = format!("{unsigned}c2ln");
        assert_invalid(auth.verify_at(&with_sig, NOW), &with_sig);
    }
}

#[test]
fn other_algorithms_are_rejected() {
    let hs512 = sign(
        Algorithm::HS512,
        &EncodingKey::from_secret(SECRET),
        &alice(),
    );
    assert_invalid(hmac(Algorithm::HS256).verify_at(&hs512, NOW), &hs512);
    let es256 = public(Algorithm::ES256, key!("ec256.pub")).expect("ec key");
    let rs = EncodingKey::from_rsa_pem(key!("rsa.key").as_bytes()).expect("rsa key");
    let rs256 = sign(Algorithm::RS256, &rs, &alice());
    assert_invalid(es256.verify_at(&rs256, NOW), &rs256);
}

#[test]
fn hs_rs_confusion_is_impossible() {
    // The classic attack: HMAC-sign with the public key's PEM bytes as the secret.
    let rs256 = public(Algorithm::RS256, key!("rsa.pub")).expect("rsa key");
    let forged = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(key!("rsa.pub").as_bytes()),
        &alice(),
    );
    assert_invalid(rs256.verify_at(&forged, NOW), &forged);
    // Even with the header claiming RS256 over an HMAC signature.
    let mut parts: Vec<&str> = forged.split('.').collect();
    let rs_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#);
    parts[0] = &rs_header;
    let relabeled = parts.join(".");
    assert_invalid(rs256.verify_at(&relabeled, NOW), &relabeled);
    // And an HMAC authenticator cannot be given a public key at all.
    let pem = VerifyKey::PublicKeyPem(key!("rsa.pub").as_bytes());
    assert!(Authenticator::new(Algorithm::HS256, pem, None, None).is_err());
}

#[test]
fn wrong_keys_are_rejected() {
    let other = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another secret, not ours"),
        &alice(),
    );
    let err = hmac(Algorithm::HS256).verify_at(&other, NOW).unwrap_err();
    assert_eq!(err, AuthError::Invalid("bad signature".into()));
    let rs = EncodingKey::from_rsa_pem(key!("rsa-other.key").as_bytes()).expect("rsa key");
    let token = sign(Algorithm::RS256, &rs, &alice());
    let auth = public(Algorithm::RS256, key!("rsa.pub")).expect("rsa key");
    assert_invalid(auth.verify_at(&token, NOW), &token);
    // A valid token with a tampered payload.
    let good = hs(&alice());
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[1] = URL_SAFE_NO_PAD.encode(with(alice(), "sub", json!("mallory")).to_string());
    let tampered = parts.join(".");
    assert_invalid(hmac(Algorithm::HS256).verify_at(&tampered, NOW), &tampered);
}

#[test]
fn sub_and_exp_are_required() {
    let auth = hmac(Algorithm::HS256);
    let cases = [
        without(alice(), "sub"),
        with(alice(), "sub", json!("")),
        with(alice(), "sub", json!("a b")),
        with(alice(), "sub", json!(42)),
        with(alice(), "sub", json!("x".repeat(300))),
        without(alice(), "exp"),
        with(alice(), "exp", json!("tomorrow")),
        with(alice(), "exp", json!(-1)),
        with(alice(), "exp", Value::Null),
    ];
    for claims in cases {
        let token = hs(&claims);
        assert_invalid(auth.verify_at(&token, NOW), &token);
    }
}

#[test]
fn audience_and_issuer_when_configured() {
    let auth = Authenticator::new(
        Algorithm::HS256,
        VerifyKey::Secret(SECRET),
        Some("switchboard"),
        Some("https://id.example.com"),
    )
    .expect("authenticator");
    let good = with(
        with(alice(), "aud", json!("switchboard")),
        "iss",
        json!("https://id.example.com"),
    );
    assert!(auth.verify_at(&hs(&good), NOW).is_ok());
    let aud_list = with(good.clone(), "aud", json!(["other", "switchboard"]));
    assert!(auth.verify_at(&hs(&aud_list), NOW).is_ok());
    for bad in [
        without(good.clone(), "aud"),
        with(good.clone(), "aud", json!("other")),
        with(good.clone(), "aud", json!(["other"])),
        without(good.clone(), "iss"),
        with(good.clone(), "iss", json!("https://evil.example.com")),
    ] {
        let token = hs(&bad);
        assert_invalid(auth.verify_at(&token, NOW), &token);
    }
    // Not configured: aud and iss are ignored.
    assert!(hmac(Algorithm::HS256)
        .verify_at(&hs(&with(alice(), "aud", json!("any"))), NOW)
        .is_ok());
}

#[test]
fn claims_are_parsed_and_checked() {
    let claims = json!({
        "sub": "alice", "exp": NOW + 60,
        "channels": ["room:*", "news"], "publish": ["room:chat"], "rpc": ["orders.*"],
        "extra": {"ignored": true},
    });
    let c = hmac(Algorithm::HS256)
        .verify_at(&hs(&claims), NOW)
        .expect("valid");
    assert_eq!(c.channels, ["room:*", "news"]);
    assert!(c.can_subscribe("room:lobby") && c.can_subscribe("news") && !c.can_subscribe("newsx"));
    assert!(
        c.can_publish("room:chat") && !c.can_publish("room:lobby") && !c.can_publish("user:bob")
    );
    assert!(c.can_call("orders.create") && !c.can_call("users.delete"));

    let open = hmac(Algorithm::HS256)
        .verify_at(&hs(&alice()), NOW)
        .expect("valid");
    assert!(open.can_call("anything") && !open.can_subscribe("room:lobby"));
    let closed = hs(&with(alice(), "rpc", json!([])));
    assert!(!hmac(Algorithm::HS256)
        .verify_at(&closed, NOW)
        .expect("valid")
        .can_call("x"));

    let bad = hs(&with(alice(), "channels", json!("room:*")));
    assert_invalid(hmac(Algorithm::HS256).verify_at(&bad, NOW), &bad);
}

#[test]
fn unsupported_critical_headers_are_rejected() {
    let mut header = Header::new(Algorithm::HS256);
    header.crit = Some(vec!["exp".into()]);
    let token = sign_with(&header, &EncodingKey::from_secret(SECRET), &alice());
    assert_invalid(hmac(Algorithm::HS256).verify_at(&token, NOW), &token);
}

#[test]
fn bad_keys_fail_at_startup() {
    let secret =
        |alg, s: &[u8]| Authenticator::new(alg, VerifyKey::Secret(s), None, None).map(|_| ());
    assert!(secret(Algorithm::HS256, b"").is_err());
    assert!(secret(Algorithm::RS256, SECRET).is_err());
    for (alg, pem) in [
        (Algorithm::RS256, "not a pem"),
        (Algorithm::RS256, key!("ec256.pub")),
        (Algorithm::RS256, key!("rsa.key")),
        (Algorithm::ES256, key!("ec384.pub")),
        (Algorithm::ES384, key!("ec256.pub")),
        (Algorithm::ES256, key!("ed25519.pub")),
        (Algorithm::EdDSA, key!("rsa.pub")),
        (Algorithm::EdDSA, key!("ed25519.key")),
        (Algorithm::PS256, key!("rsa.pub")),
        (
            Algorithm::ES256,
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        ),
    ] {
        assert!(public(alg, pem).is_err(), "{alg:?} accepted a bad key");
    }
}

#[test]
fn crypto_provider_install_is_idempotent() {
    install_crypto_provider();
    install_crypto_provider();
    assert!(hmac(Algorithm::HS256).verify_at(&hs(&alice()), NOW).is_ok());
}

#[test]
fn token_from_header_or_query() {
    let mut headers = HeaderMap::new();
    assert_eq!(token_from_request(&headers, None), None);
    assert_eq!(token_from_request(&headers, Some("a=1&token=&b=2")), None);
    assert_eq!(
        token_from_request(&headers, Some("a=1&token=x.y%2Ez&b=2")).as_deref(),
        Some("x.y.z")
    );
    assert_eq!(token_from_request(&headers, Some("mytoken=no")), None);
    assert_eq!(
        token_from_request(&headers, Some("token=%zz%4")).as_deref(),
        Some("%zz%4")
    );

    headers.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_static("Basic dXNlcjpwYXNz"),
    );
    assert_eq!(
        token_from_request(&headers, Some("token=q")).as_deref(),
        Some("q")
    );
    headers.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_static("bearer  h.h.h "),
    );
    assert_eq!(token_from_request(&headers, None).as_deref(), Some("h.h.h"));
    // The header wins over the query.
    assert_eq!(
        token_from_request(&headers, Some("token=q")).as_deref(),
        Some("h.h.h")
    );
    headers.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_static("Bearer "),
    );
    assert_eq!(
        token_from_request(&headers, Some("token=q")).as_deref(),
        Some("q")
    );
}
