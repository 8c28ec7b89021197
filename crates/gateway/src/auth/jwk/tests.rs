//! JWK → verification key, and the authenticator over a JWKS (with the set injected: the
//! fetching is tested through the binary in `tests/jwks/`).

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;
use crate::auth::{install_crypto_provider, AuthError, Authenticator, Jwks, JwksPolicy};

const NOW: u64 = 1_763_800_000;

macro_rules! key {
    ($name:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/", $name)).as_bytes()
    };
}

fn rsa() -> EncodingKey {
    EncodingKey::from_rsa_pem(key!("rsa.key")).expect("rsa.key")
}

/// The public JWK of `key` for `alg`, with `kid` and `extra` members (null removes one).
fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str, extra: Value) -> Value {
    install_crypto_provider();
    let mut v = serde_json::to_value(Jwk::from_encoding_key(key, alg).expect("jwk")).expect("json");
    v["kid"] = json!(kid);
    for (k, x) in extra.as_object().expect("object") {
        if x.is_null() {
            v.as_object_mut().expect("object").remove(k);
        } else {
            v[k] = x.clone();
        }
    }
    v
}

fn set(keys: &[Value]) -> KeySet {
    KeySet::parse(json!({ "keys": keys }).to_string().as_bytes()).expect("a JWKS")
}

fn signing_keys() -> Vec<(Algorithm, EncodingKey)> {
    vec![
        (Algorithm::RS256, rsa()),
        (Algorithm::RS384, rsa()),
        (Algorithm::RS512, rsa()),
        (Algorithm::PS256, rsa()),
        (Algorithm::PS512, rsa()),
        (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(key!("ec256.key")).expect("ec256.key"),
        ),
        (
            Algorithm::ES384,
            EncodingKey::from_ec_pem(key!("ec384.key")).expect("ec384.key"),
        ),
        (
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(key!("ed25519.key")).expect("ed25519.key"),
        ),
    ]
}

fn token(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    install_crypto_provider();
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).expect("sign")
}

fn alice() -> Value {
    json!({"sub": "alice", "exp": NOW + 600, "iat": NOW})
}

fn authenticator(
    keys: KeySet,
    only: Option<Algorithm>,
    aud: Option<&str>,
    iss: Option<&str>,
) -> Authenticator {
    let policy = JwksPolicy {
        min: Duration::from_secs(60),
        max: Duration::from_secs(3600),
    };
    let jwks = Jwks::new("https://idp.example.com/jwks", policy, false).expect("url");
    jwks.set_keys(keys);
    Authenticator::with_jwks(Arc::new(jwks), only, aud, iss).expect("authenticator")
}

#[track_caller]
fn assert_invalid(result: Result<crate::auth::Claims, AuthError>, why: &str) {
    match result {
        Err(AuthError::Invalid(reason)) => {
            assert!(reason.contains(why), "{reason:?} lacks {why:?}")
        }
        other => panic!("expected invalid_token ({why}), got {other:?}"),
    }
}

#[test]
fn every_public_key_algorithm_converts_and_verifies() {
    for (alg, key) in signing_keys() {
        let kid = format!("{alg:?}");
        let keys = set(&[jwk(&key, alg, &kid, json!({"use": "sig"}))]);
        assert_eq!(keys.len(), 1, "{alg:?}: {:?}", keys.skipped);
        assert!(keys.get(&kid).is_some_and(|k| k.algorithms == [alg]));
        let auth = authenticator(keys, None, None, None);
        let claims = auth
            .verify_at(&token(alg, &key, Some(&kid), &alice()), NOW)
            .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(claims.sub, "alice");
    }
}

#[test]
fn a_key_without_alg_verifies_every_algorithm_of_its_type() {
    let keys = set(&[jwk(&rsa(), Algorithm::RS256, "r", json!({"alg": null}))]);
    assert_eq!(keys.get("r").map(|k| k.algorithms.len()), Some(6));
    let auth = authenticator(keys, None, None, None);
    for alg in [Algorithm::RS256, Algorithm::RS512, Algorithm::PS384] {
        assert!(auth
            .verify_at(&token(alg, &rsa(), Some("r"), &alice()), NOW)
            .is_ok());
    }
    // `--jwt-algorithm RS256` narrows it.
    let keys = set(&[jwk(&rsa(), Algorithm::RS256, "r", json!({"alg": null}))]);
    let auth = authenticator(keys, Some(Algorithm::RS256), None, None);
    assert!(auth
        .verify_at(&token(Algorithm::RS256, &rsa(), Some("r"), &alice()), NOW)
        .is_ok());
    assert_invalid(
        auth.verify_at(&token(Algorithm::RS512, &rsa(), Some("r"), &alice()), NOW),
        "not the configured RS256",
    );
}

#[test]
fn the_token_alg_must_be_one_its_key_is_for() {
    let ec = EncodingKey::from_ec_pem(key!("ec256.key")).expect("ec256.key");
    let keys = set(&[
        jwk(&rsa(), Algorithm::RS256, "rsa", json!({})),
        jwk(&ec, Algorithm::ES256, "ec", json!({})),
    ]);
    let auth = authenticator(keys, None, None, None);
    // An RS512 token for a key published as RS256 only.
    assert_invalid(
        auth.verify_at(&token(Algorithm::RS512, &rsa(), Some("rsa"), &alice()), NOW),
        "is not for RS512",
    );
    // An ES256 token that names the RSA key, and the other way round.
    assert_invalid(
        auth.verify_at(&token(Algorithm::ES256, &ec, Some("rsa"), &alice()), NOW),
        "is not for ES256",
    );
    assert_invalid(
        auth.verify_at(&token(Algorithm::RS256, &rsa(), Some("ec"), &alice()), NOW),
        "is not for RS256",
    );
    // Signed by another key under a known kid.
    let other = EncodingKey::from_rsa_pem(key!("rsa-other.key")).expect("rsa-other.key");
    assert_invalid(
        auth.verify_at(&token(Algorithm::RS256, &other, Some("rsa"), &alice()), NOW),
        "bad signature",
    );
}

#[test]
fn hmac_none_and_kidless_tokens_are_refused() {
    let keys = set(&[jwk(&rsa(), Algorithm::RS256, "rsa", json!({}))]);
    let auth = authenticator(keys, None, None, None);
    // HS256 "signed" with the public key's bytes (its PEM), the classic algorithm
    // confusion, or with any other secret.
    for secret in [
        key!("rsa.pub").to_vec(),
        b"any secret at all 0123456789abcdef".to_vec(),
    ] {
        let forged = token(
            Algorithm::HS256,
            &EncodingKey::from_secret(&secret),
            Some("rsa"),
            &alice(),
        );
        assert_invalid(auth.verify_at(&forged, NOW), "not accepted with a JWKS");
    }
    let body = URL_SAFE_NO_PAD.encode(alice().to_string());
    for header in [
        r#"{"alg":"none","kid":"rsa"}"#,
        r#"{"alg":"HS512","kid":"rsa"}"#,
    ] {
        let forged = format!("{}.{body}.", URL_SAFE_NO_PAD.encode(header));
        assert!(matches!(
            auth.verify_at(&forged, NOW),
            Err(AuthError::Invalid(_))
        ));
    }
    assert_invalid(
        auth.verify_at(&token(Algorithm::RS256, &rsa(), None, &alice()), NOW),
        "no kid",
    );
    assert_invalid(
        auth.verify_at(
            &token(Algorithm::RS256, &rsa(), Some("nope"), &alice()),
            NOW,
        ),
        "no key with the token's kid",
    );
}

#[test]
fn audience_and_issuer_apply_to_jwks_tokens() {
    let keys = set(&[jwk(&rsa(), Algorithm::RS256, "rsa", json!({}))]);
    let auth = authenticator(
        keys,
        None,
        Some("switchboard"),
        Some("https://idp.example.com/"),
    );
    let good = json!({"sub": "alice", "exp": NOW + 600, "aud": "switchboard", "iss": "https://idp.example.com/"});
    assert!(auth
        .verify_at(&token(Algorithm::RS256, &rsa(), Some("rsa"), &good), NOW)
        .is_ok());
    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!("other");
    assert_invalid(
        auth.verify_at(
            &token(Algorithm::RS256, &rsa(), Some("rsa"), &wrong_aud),
            NOW,
        ),
        "aud",
    );
    let mut wrong_iss = good.clone();
    wrong_iss["iss"] = json!("https://evil.example.com/");
    assert_invalid(
        auth.verify_at(
            &token(Algorithm::RS256, &rsa(), Some("rsa"), &wrong_iss),
            NOW,
        ),
        "iss",
    );
    let expired = json!({"sub": "alice", "exp": NOW - 1, "aud": "switchboard", "iss": "https://idp.example.com/"});
    assert_eq!(
        auth.verify_at(&token(Algorithm::RS256, &rsa(), Some("rsa"), &expired), NOW),
        Err(AuthError::Expired)
    );
}

#[test]
fn unusable_keys_are_skipped_with_a_reason() {
    let ec = EncodingKey::from_ec_pem(key!("ec256.key")).expect("ec256.key");
    let good = jwk(&rsa(), Algorithm::RS256, "good", json!({}));
    let cases = [
        (
            jwk(&rsa(), Algorithm::RS256, "enc", json!({"use": "enc"})),
            "not a signature key",
        ),
        (
            jwk(
                &rsa(),
                Algorithm::RS256,
                "ops",
                json!({"key_ops": ["encrypt"]}),
            ),
            "key_ops",
        ),
        (jwk(&rsa(), Algorithm::RS256, "", json!({})), "no kid"),
        (
            jwk(&rsa(), Algorithm::RS256, "hs", json!({"alg": "HS256"})),
            "does not match",
        ),
        (
            jwk(&rsa(), Algorithm::RS256, "es", json!({"alg": "ES256"})),
            "does not match",
        ),
        (
            jwk(&ec, Algorithm::ES256, "ec-rs", json!({"alg": "RS256"})),
            "does not match",
        ),
        (
            jwk(&ec, Algorithm::ES256, "ec-384", json!({"alg": "ES384"})),
            "does not match",
        ),
        (
            jwk(&rsa(), Algorithm::RS256, "oaep", json!({"alg": "RSA-OAEP"})),
            "not a signature algorithm",
        ),
        (
            jwk(&rsa(), Algorithm::RS256, "priv", json!({"d": "AQAB"})),
            "private key",
        ),
        (
            jwk(
                &rsa(),
                Algorithm::RS256,
                "short",
                json!({"n": URL_SAFE_NO_PAD.encode([0xC5u8; 128])}),
            ),
            "2048 bits",
        ),
        (
            jwk(&ec, Algorithm::ES256, "p521", json!({"crv": "P-521"})),
            "not supported",
        ),
        (
            jwk(
                &ec,
                Algorithm::ES256,
                "xlen",
                json!({"x": URL_SAFE_NO_PAD.encode([1u8; 31])}),
            ),
            "32 bytes",
        ),
        (
            jwk(
                &ec,
                Algorithm::ES256,
                "offcurve",
                json!({"x": URL_SAFE_NO_PAD.encode([1u8; 32]), "y": URL_SAFE_NO_PAD.encode([2u8; 32])}),
            ),
            "cannot be parsed",
        ),
        (
            json!({"kty": "oct", "kid": "oct", "k": "c2VjcmV0"}),
            "symmetric",
        ),
        (json!({"kty": "RSA", "kid": "non"}), "missing n"),
        (
            json!({"kty": "RSA", "kid": "b64", "n": "!!", "e": "AQAB"}),
            "base64url",
        ),
        (json!({"kty": "XYZ", "kid": "xyz"}), "not supported"),
        (json!({"kid": "nokty"}), "malformed"),
        (json!("a string"), "malformed"),
    ];
    for (bad, reason) in cases {
        let keys = set(&[good.clone(), bad.clone()]);
        assert_eq!(keys.len(), 1, "{bad}: {:?}", keys.keys.keys());
        assert!(keys.get("good").is_some());
        assert_eq!(keys.skipped.len(), 1, "{bad}");
        assert!(
            keys.skipped[0].contains(reason),
            "{bad}: {:?}",
            keys.skipped
        );
    }
}

#[test]
fn duplicate_kids_are_both_dropped() {
    let ec = EncodingKey::from_ec_pem(key!("ec256.key")).expect("ec256.key");
    let keys = set(&[
        jwk(&rsa(), Algorithm::RS256, "same", json!({})),
        jwk(&ec, Algorithm::ES256, "same", json!({})),
        jwk(&rsa(), Algorithm::RS256, "other", json!({})),
    ]);
    assert!(keys.get("same").is_none() && keys.get("other").is_some());
    assert!(
        keys.skipped[0].contains("duplicate kid"),
        "{:?}",
        keys.skipped
    );
}

#[test]
fn documents_that_are_not_a_jwks_fail() {
    for body in [&b"not json"[..], b"{}", b"[]", b"{\"keys\": {}}"] {
        assert!(
            KeySet::parse(body).is_err(),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let many: Vec<Value> = (0..=MAX_KEYS)
        .map(|i| json!({"kty": "RSA", "kid": i.to_string()}))
        .collect();
    assert!(KeySet::parse(json!({ "keys": many }).to_string().as_bytes()).is_err());
    let empty = KeySet::parse(b"{\"keys\": []}").expect("empty but valid");
    assert!(empty.is_empty());
}

#[test]
fn cache_control_max_age() {
    use crate::auth::fetch::max_age;
    use http::HeaderValue;
    let secs = |s| Some(Duration::from_secs(s));
    for (value, expected) in [
        ("max-age=3600", secs(3600)),
        (
            "public, max-age=15, stale-while-revalidate=15, stale-if-error=86400",
            secs(15),
        ),
        ("Max-Age=\"600\", must-revalidate", secs(600)),
        ("no-cache", secs(0)),
        ("max-age=600, no-store", secs(0)),
        ("public", None),
        ("max-age=-1", None),
        ("max-age=abc", None),
        ("s-maxage=60", None),
    ] {
        assert_eq!(
            max_age(&HeaderValue::from_static(value)),
            expected,
            "{value}"
        );
    }
}
