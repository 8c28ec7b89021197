//! Tokens a JWKS must never verify, and `aud`/`iss` on top of it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::*;

/// A set with an RS256 key and an ES256 key; every forgery is 401 `invalid_token`, and
/// none of them (their `kid`s are known) costs a fetch.
#[tokio::test]
async fn wrong_alg_none_and_hs256_with_the_public_key_are_refused() {
    let server = JwksServer::start(keys(
        &[TestKey::Rsa.jwk("rsa"), TestKey::Ec256.jwk("ec")],
        3600,
    ))
    .await;
    let node = node(&server, &[]).await;
    let c = claims(json!({}));
    assert!(admits(&node, &TestKey::Rsa.sign(Algorithm::RS256, Some("rsa"), &c)).await);
    assert!(
        admits(
            &node,
            &TestKey::Ec256.sign(Algorithm::ES256, Some("ec"), &c)
        )
        .await
    );

    // The key says RS256: an RS512 or PS256 token under its kid is refused.
    for alg in [Algorithm::RS512, Algorithm::PS256] {
        let token = TestKey::Rsa.sign(alg, Some("rsa"), &c);
        assert_refused(admits(&node, &token).await, "another alg than the key's");
    }
    // An ES256 token that names the RSA key, and an RS256 one that names the EC key.
    assert_refused(
        admits(
            &node,
            &TestKey::Ec256.sign(Algorithm::ES256, Some("rsa"), &c),
        )
        .await,
        "ES256 under an RSA key",
    );
    assert_refused(
        admits(&node, &TestKey::Rsa.sign(Algorithm::RS256, Some("ec"), &c)).await,
        "RS256 under an EC key",
    );
    // HS256 "signed" with the RSA public key's bytes: its PEM, and its JWK modulus.
    let pem = std::fs::read(format!("{}/tests/keys/rsa.pub", env!("CARGO_MANIFEST_DIR")))
        .expect("rsa.pub");
    let n = TestKey::Rsa.jwk("rsa")["n"]
        .as_str()
        .expect("n")
        .as_bytes()
        .to_vec();
    for secret in [pem, n] {
        let forged = hs256(&secret, "rsa", &c);
        assert_refused(admits(&node, &forged).await, "HS256 with the public key");
    }
    // alg none (with and without a signature), under a known kid.
    let body = URL_SAFE_NO_PAD.encode(c.to_string());
    for header in [
        r#"{"alg":"none","kid":"rsa"}"#,
        r#"{"alg":"none","kid":"ec","typ":"JWT"}"#,
    ] {
        let head = URL_SAFE_NO_PAD.encode(header);
        assert_refused(admits(&node, &format!("{head}.{body}.")).await, "alg none");
        assert_refused(
            admits(&node, &format!("{head}.{body}.c2lnbmF0dXJl")).await,
            "alg none with a signature",
        );
    }
    // No kid at all, and a token signed by another RSA key under the known kid.
    assert_refused(
        admits(&node, &TestKey::Rsa.sign(Algorithm::RS256, None, &c)).await,
        "no kid",
    );
    assert_refused(
        admits(
            &node,
            &TestKey::RsaOther.sign(Algorithm::RS256, Some("rsa"), &c),
        )
        .await,
        "another key's signature",
    );
    assert_eq!(server.fetches(), 1, "known kids never cause a fetch");
}

/// HS256 with a secret, a shape that would verify against `--jwt-secret`: the JWKS node
/// has none, and an `oct` key published in the set is never used.
#[tokio::test]
async fn a_symmetric_key_in_the_set_is_ignored() {
    let secret = b"a-shared-secret-0123456789abcdef";
    let oct =
        json!({"kty": "oct", "kid": "hmac", "alg": "HS256", "k": URL_SAFE_NO_PAD.encode(secret)});
    let server = JwksServer::start(keys(&[TestKey::Rsa.jwk("rsa"), oct], 3600)).await;
    let node = node(&server, &[]).await;
    let token = hs256(secret, "hmac", &claims(json!({})));
    assert_refused(admits(&node, &token).await, "HS256 with an oct key");
    assert_eq!(node.metric("switchboard_jwks_keys", "").await, 1.0);
}

/// `--jwt-audience` and `--jwt-issuer` apply to JWKS tokens as to any other.
#[tokio::test]
async fn audience_and_issuer_with_jwks() {
    let server = JwksServer::start(keys(&[TestKey::Ed25519.jwk("ed")], 3600)).await;
    let node = node(
        &server,
        &[
            "--jwt-audience",
            "switchboard",
            "--jwt-issuer",
            "https://idp.test/",
        ],
    )
    .await;
    let sign = |extra: Value| TestKey::Ed25519.sign(Algorithm::EdDSA, Some("ed"), &claims(extra));
    let good = json!({"aud": "switchboard", "iss": "https://idp.test/"});
    assert!(admits(&node, &sign(good)).await);
    assert!(
        admits(
            &node,
            &sign(json!({"aud": ["other", "switchboard"], "iss": "https://idp.test/"}))
        )
        .await
    );
    for (bad, what) in [
        (
            json!({"aud": "other", "iss": "https://idp.test/"}),
            "wrong aud",
        ),
        (json!({"iss": "https://idp.test/"}), "no aud"),
        (
            json!({"aud": "switchboard", "iss": "https://evil.test/"}),
            "wrong iss",
        ),
        (json!({"aud": "switchboard"}), "no iss"),
    ] {
        assert_refused(admits(&node, &sign(bad)).await, what);
    }
}

/// A token properly signed with HMAC-SHA256 under `secret`, naming `kid`.
fn hs256(secret: &[u8], kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).expect("sign")
}
