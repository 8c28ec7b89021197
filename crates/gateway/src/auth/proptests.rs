//! Property tests of token verification (issue 13, item 5): any token text, any header
//! (`alg` of every spelling, `none`, other members of any type), any claims, signed or
//! forged, is refused with a documented code (docs/protocol.md §3: `missing_token`,
//! `invalid_token`, `token_expired`, answered 401 before the upgrade) unless it is a valid
//! token of the configured algorithm; never a panic, and the message never quotes it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::*;
use crate::http::query::query_param;

const NOW: u64 = 1_763_800_000;
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const RSA_PUB: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/rsa.pub"));

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn hs256() -> Authenticator {
    Authenticator::new(Algorithm::HS256, VerifyKey::Secret(SECRET), None, None).unwrap()
}

fn rs256() -> Authenticator {
    Authenticator::new(
        Algorithm::RS256,
        VerifyKey::PublicKeyPem(RSA_PUB.as_bytes()),
        None,
        None,
    )
    .unwrap()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// `header.claims.signature`, HMAC-SHA256-signed with `secret`.
fn signed(header: &Value, claims: &Value, secret: &[u8]) -> String {
    install_crypto_provider();
    let message = format!("{}.{}", b64(header), b64(claims));
    let sig = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(secret),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{message}.{sig}")
}

/// The result, checked to be a documented refusal when it is one.
fn verify(auth: &Authenticator, token: &str) -> Result<Claims, AuthError> {
    let r = auth.verify_at(token, NOW);
    if let Err(e) = &r {
        assert!(matches!(
            e.code(),
            "missing_token" | "invalid_token" | "token_expired"
        ));
        assert!(
            token.len() < 16 || !e.to_string().contains(token),
            "the message quotes the token"
        );
    }
    r
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (0.0..4e9f64).prop_map(Value::from),
        "\\PC{0,10}".prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-z]{1,4}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// `alg` values: every spelling attackers try, and any string.
fn alg() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(
            &[
                "HS256", "HS384", "HS512", "hs256", "Hs256", "HS256 ", "none", "None", "NONE",
                "nOnE", "", "RS256", "ES256", "EdDSA", "PS256", "ES512", "RSA-OAEP",
            ][..]
        )
        .prop_map(Value::from),
        "\\PC{0,8}".prop_map(Value::from),
        json_value(),
    ]
}

/// Header members besides `alg`, with values of any type.
fn header_members() -> impl Strategy<Value = Vec<(String, Value)>> {
    let name = prop_oneof![
        prop::sample::select(
            &["typ", "cty", "kid", "crit", "jku", "jwk", "x5u", "x5c", "x5t", "b64", "zip"][..]
        )
        .prop_map(str::to_owned),
        "[a-z]{1,5}",
    ];
    let value = prop_oneof![
        json_value(),
        Just(json!("JWT")),
        Just(json!([])),
        Just(json!(["exp"])),
    ];
    prop::collection::vec((name, value), 0..4)
}

/// Claims: alice's valid ones (maybe expired), with members replaced by any value.
fn claims() -> impl Strategy<Value = (Value, bool)> {
    let member = prop::sample::select(
        &[
            "sub", "exp", "nbf", "iat", "channels", "publish", "rpc", "aud", "iss",
        ][..],
    );
    (
        any::<bool>(),
        prop::collection::vec((member, json_value()), 0..3),
    )
        .prop_map(|(expired, replaced)| {
            let exp = if expired { NOW - 1 } else { NOW + 600 };
            let mut c = json!({"sub": "alice", "exp": exp, "iat": NOW - 10});
            let touched = !replaced.is_empty();
            for (k, v) in replaced {
                c[k] = v;
            }
            (c, expired && !touched)
        })
}

proptest! {
    #![proptest_config(config(512))]

    /// Any text, three dot-separated segments of any text or base64: refused.
    #[test]
    fn arbitrary_tokens(
        text in "\\PC{0,80}",
        segments in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..5),
    ) {
        let auth = hs256();
        prop_assert!(verify(&auth, &text).is_err());
        let b64: Vec<String> = segments.iter().map(|s| URL_SAFE_NO_PAD.encode(s)).collect();
        prop_assert!(verify(&auth, &b64.join(".")).is_err());
        let raw: Vec<String> = segments.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect();
        prop_assert!(verify(&auth, &raw.join(".")).is_err());
        prop_assert_eq!(verify(&auth, ""), Err(AuthError::Missing));
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Any header, correctly HMAC-signed: only `"alg":"HS256"` (the configured one) can pass.
    #[test]
    fn headers_signed_with_the_secret(alg in alg(), members in header_members(), (claims, expired) in claims()) {
        let mut header = Map::new();
        header.insert("alg".into(), alg.clone());
        for (k, v) in members {
            if k != "alg" {
                header.insert(k, v);
            }
        }
        let token = signed(&Value::Object(header), &claims, SECRET);
        match verify(&hs256(), &token) {
            Ok(c) => {
                prop_assert_eq!(&alg, "HS256");
                prop_assert!(is_valid_user_id(&c.sub));
                prop_assert_eq!(c.sub, claims["sub"].as_str().unwrap());
                prop_assert!(c.exp > NOW);
            }
            Err(AuthError::Expired) => {
                prop_assert_eq!(&alg, "HS256");
                prop_assert!(expired || claims.get("exp") != Some(&json!(NOW + 600)));
            }
            Err(e) => prop_assert_eq!(e.code(), "invalid_token"),
        }
    }

    /// `sub` as any string, in an otherwise valid token: accepted exactly when it is a
    /// valid user id (it names the user's channel).
    #[test]
    fn subjects(sub in prop_oneof!["\\PC{0,12}", "[A-Za-z0-9_.:@=-]{1,12}", "[a-z]{248,255}"]) {
        let claims = json!({"sub": sub, "exp": NOW + 600});
        let r = verify(&hs256(), &signed(&json!({"alg": "HS256"}), &claims, SECRET));
        let accepted = r.is_ok();
        match r {
            Ok(c) => prop_assert_eq!(c.sub, sub.clone()),
            Err(e) => prop_assert_eq!(e.code(), "invalid_token"),
        }
        prop_assert_eq!(accepted, is_valid_user_id(&sub));
    }

    /// `none` and unsigned tokens, HMAC signatures with the wrong secret, and HS/RS
    /// confusion (a public key used as an HMAC secret): refused as `invalid_token`.
    #[test]
    fn forged_tokens(alg in alg(), (claims, _) in claims(), secret in prop::collection::vec(any::<u8>(), 1..40)) {
        let header = json!({"alg": alg, "typ": "JWT"});
        let unsigned = format!("{}.{}.", b64(&header), b64(&claims));
        let hs = hs256();
        let rs = rs256();
        for auth in [&hs, &rs] {
            let e = verify(auth, &unsigned).unwrap_err();
            prop_assert_eq!(e.code(), "invalid_token");
        }
        prop_assume!(secret != SECRET);
        let e = verify(&hs, &signed(&header, &claims, &secret)).unwrap_err();
        prop_assert_eq!(e.code(), "invalid_token");
        for h in [json!({"alg": "HS256"}), json!({"alg": "RS256"}), header] {
            let e = verify(&rs, &signed(&h, &claims, RSA_PUB.as_bytes())).unwrap_err();
            prop_assert_eq!(e.code(), "invalid_token");
        }
    }
}

// `?token=` and `?since=` are read by one query decoder (`http::query`).
proptest! {
    #![proptest_config(config(512))]

    /// Any raw text, however broken its escapes, decodes (no panic) the same way for
    /// `token` and for `since`.
    #[test]
    fn token_and_since_agree(raw in "[^&#]{0,40}") {
        let token = token_from_request(&http::HeaderMap::new(), Some(&format!("token={raw}")));
        let since = query_param(Some(&format!("since={raw}")), "since");
        prop_assert_eq!(token, since.filter(|s| !s.is_empty()));
    }
}

/// Regression (issue 13): `auth::percent_decode` (for `?token=`) and
/// `ws::handshake::percent_decode` (for `?since=` and the API) decoded these
/// differently: the first kept `+`, the second made it a space; the second read escapes
/// through `u8::from_str_radix`, which accepts a sign, so `%+1x` was "\u{1}x" as a
/// `since` but "%+1x" as a `token`. Now one rule decodes both: `+` is a space, and `%`
/// not followed by two hex digits is a literal `%`, so both read "% 1x".
#[test]
fn token_and_since_decode_one_way() {
    let headers = http::HeaderMap::new();
    for (raw, want) in [
        ("a+b", "a b"),
        ("%+1x", "% 1x"),
        ("%2B%2b", "++"),
        ("e1%3A+5", "e1: 5"),
    ] {
        let token = token_from_request(&headers, Some(&format!("token={raw}")));
        let since = query_param(Some(&format!("since={raw}")), "since");
        assert_eq!(token.as_deref(), Some(want), "token={raw}");
        assert_eq!(since.as_deref(), Some(want), "since={raw}");
    }
}
