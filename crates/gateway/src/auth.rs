//! Client authentication with JWTs (PROTOCOL.md §3).
//!
//! - [`token_from_request`] finds the token: `Authorization: Bearer <jwt>` first, else the
//!   `token` query parameter (for browsers, which cannot set headers on a WebSocket).
//! - [`Authenticator::verify`] checks it: the header `alg` must be the configured one (so no
//!   `none` and no HS/RS confusion) or, with a JWKS (`--jwt-jwks-url`, `auth/jwks.rs`), one
//!   the key named by the token's `kid` is for (never HS* or `none`), the signature, `exp` (required, no leeway: a token is
//!   expired from its `exp` second on), `nbf` and `iat` (honoured with [`LEEWAY_SECS`] of
//!   clock skew), `sub` (required, a valid user id), and `aud`/`iss` (required and checked
//!   when configured; ignored otherwise).
//! - [`Claims`] carries what the token allows: channel patterns to subscribe to and publish
//!   on, and RPC method patterns (absent = any method).
//!
//! - [`Authenticator::authenticate`] is `verify` for requests: with a JWKS, a token whose
//!   `kid` is unknown first triggers one (rate-limited) refresh of the key set.
//!
//! # Layout
//! - this file: the checks, static keys (`--jwt-secret`, `--jwt-public-key`).
//! - `auth/jwk.rs`: a JWKS document → verification keys by `kid`, each key checked once.
//! - `auth/jwks.rs`: the cached set of `--jwt-jwks-url`: startup, background refresh,
//!   refresh on unknown `kid`, last good set kept on failure.
//! - `auth/fetch.rs`: the HTTP(S) `GET` of the document.
//!
//! Errors never contain the token or claim values.

use std::sync::{Arc, Once};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde::Deserialize;
use switchboard_proto::channel::{any_matches, is_valid_user_id};
use switchboard_proto::clock::now_secs;

use crate::http::query::query_values;

mod fetch;
mod jwk;
mod jwks;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use jwks::{Jwks, Policy as JwksPolicy};

/// Clock skew tolerated for `nbf` and `iat`, in seconds. `exp` gets none.
pub const LEEWAY_SECS: u64 = 30;

/// Longest token accepted, in bytes; longer ones are rejected before any parsing.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Installs jsonwebtoken's RustCrypto backend as its process-wide crypto provider. Call it
/// at startup; it is idempotent and [`Authenticator::new`] calls it too.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // An error means a provider is already installed; that one stays.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    });
}

/// Why a token was refused. Every variant maps to HTTP 401 before the upgrade, with
/// [`AuthError::code`] as the JSON `error`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token in the request.
    #[error("no token: send Authorization: Bearer <jwt> or ?token=<jwt>")]
    Missing,
    /// Malformed, forged, not yet valid or not for us; the text says which check failed.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The token's `exp` has passed.
    #[error("token expired")]
    Expired,
}

impl AuthError {
    /// The protocol error code: `missing_token`, `invalid_token` or `token_expired`.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing_token",
            AuthError::Invalid(_) => "invalid_token",
            AuthError::Expired => "token_expired",
        }
    }
}

fn invalid(reason: &str) -> AuthError {
    AuthError::Invalid(reason.to_owned())
}

/// What a valid token allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// The user id (a valid `user:<id>` suffix).
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Patterns of channels the user may subscribe to (exact name or prefix ending in `*`).
    pub channels: Vec<String>,
    /// Patterns of channels the user may publish to (`user:*` allows direct messages).
    pub publish: Vec<String>,
    /// Patterns of RPC methods the user may call; `None` (no claim) = any method.
    pub rpc: Option<Vec<String>>,
}

impl Claims {
    /// Whether the user may subscribe to `channel`.
    pub fn can_subscribe(&self, channel: &str) -> bool {
        any_matches(&self.channels, channel)
    }

    /// Whether the user may publish to `channel`.
    pub fn can_publish(&self, channel: &str) -> bool {
        any_matches(&self.publish, channel)
    }

    /// Whether the user may call RPC `method` (any method when the token has no `rpc` claim).
    pub fn can_call(&self, method: &str) -> bool {
        self.rpc.as_ref().is_none_or(|rpc| any_matches(rpc, method))
    }
}

/// The claims as found in the token, before our checks.
#[derive(Deserialize)]
struct RawClaims {
    sub: Option<String>,
    exp: Option<serde_json::Number>,
    nbf: Option<serde_json::Number>,
    iat: Option<serde_json::Number>,
    channels: Option<Vec<String>>,
    publish: Option<Vec<String>>,
    rpc: Option<Vec<String>>,
}

/// A NumericDate (seconds, possibly fractional) as whole seconds.
fn numeric_date(n: Option<serde_json::Number>, claim: &str) -> Result<Option<u64>, AuthError> {
    let Some(n) = n else { return Ok(None) };
    if let Some(secs) = n.as_u64() {
        return Ok(Some(secs));
    }
    match n.as_f64() {
        // `as` saturates; the value is finite and non-negative here.
        Some(f) if f.is_finite() && f >= 0.0 => Ok(Some(f.floor() as u64)),
        _ => Err(AuthError::Invalid(format!(
            "{claim} claim must be a non-negative number"
        ))),
    }
}

/// The key an [`Authenticator`] verifies signatures with.
#[derive(Clone, Copy, Debug)]
pub enum VerifyKey<'a> {
    /// HMAC secret (HS256/384/512).
    Secret(&'a [u8]),
    /// PEM public key (RS*, ES256/ES384, EdDSA): SPKI `PUBLIC KEY`, or PKCS#1 for RSA.
    PublicKeyPem(&'a [u8]),
}

/// A key that cannot verify tokens of the configured algorithm.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

/// Verifies client tokens against one key and algorithm, or the keys of a JWKS. Cheap to
/// share (`Arc`).
#[derive(Debug)]
pub struct Authenticator {
    keys: Keys,
    /// One validation per algorithm a token may use (aud/iss/required claims are the same).
    validations: Vec<(Algorithm, Validation)>,
}

#[derive(Debug)]
enum Keys {
    /// `--jwt-secret` or `--jwt-public-key`: one key, one algorithm.
    Static {
        algorithm: Algorithm,
        key: DecodingKey,
    },
    /// `--jwt-jwks-url`: the token's `kid` picks the key, the key decides the algorithms.
    /// `only`: `--jwt-algorithm`, when given, further restricts them.
    Jwks {
        set: Arc<Jwks>,
        only: Option<Algorithm>,
    },
}

/// Every algorithm a JWKS key may be for (never HS*: a JWKS is public).
const JWKS_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

fn validation(algorithm: Algorithm, audience: Option<&str>, issuer: Option<&str>) -> Validation {
    let mut validation = Validation::new(algorithm);
    // Time claims are checked in `verify_at`, against a clock the caller can set.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.leeway = 0;
    let mut required = vec!["exp", "sub"];
    // Without a configured audience a token's `aud` is ignored rather than rejected.
    validation.validate_aud = audience.is_some();
    if let Some(audience) = audience {
        validation.set_audience(&[audience]);
        required.push("aud");
    }
    if let Some(issuer) = issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    validation.set_required_spec_claims(&required);
    validation
}

impl Authenticator {
    /// An authenticator for `algorithm` tokens signed with `key`. `audience` and `issuer`,
    /// when given, become required claims with exactly these values.
    pub fn new(
        algorithm: Algorithm,
        key: VerifyKey<'_>,
        audience: Option<&str>,
        issuer: Option<&str>,
    ) -> Result<Authenticator, KeyError> {
        install_crypto_provider();
        let key = decoding_key(algorithm, key)?;
        Ok(Authenticator {
            keys: Keys::Static { algorithm, key },
            validations: vec![(algorithm, validation(algorithm, audience, issuer))],
        })
    }

    /// An authenticator for tokens signed with the keys of `set`, selected by `kid`;
    /// `only`, when given, is the one algorithm accepted (it must be a public-key one).
    pub fn with_jwks(
        set: Arc<Jwks>,
        only: Option<Algorithm>,
        audience: Option<&str>,
        issuer: Option<&str>,
    ) -> Result<Authenticator, KeyError> {
        install_crypto_provider();
        if only.is_some_and(|alg| !JWKS_ALGORITHMS.contains(&alg)) {
            return Err(KeyError(format!(
                "{only:?} cannot be used with a JWKS (public-key algorithms only)"
            )));
        }
        let validations = JWKS_ALGORITHMS
            .iter()
            .filter(|alg| only.is_none_or(|only| only == **alg))
            .map(|alg| (*alg, validation(*alg, audience, issuer)))
            .collect();
        Ok(Authenticator {
            keys: Keys::Jwks { set, only },
            validations,
        })
    }

    /// Loads what must be there before the node serves: with a JWKS, its first fetch
    /// (an error unless starting without keys is allowed), then its background refresh.
    /// Nothing to do for a static key.
    pub async fn start(&self) -> Result<(), String> {
        match &self.keys {
            Keys::Jwks { set, .. } => set.start().await,
            Keys::Static { .. } => Ok(()),
        }
    }

    /// [`Authenticator::verify`] for a request: with a JWKS, a token whose `kid` is not in
    /// the set triggers one refresh (at most one per min interval, node-wide) and is
    /// checked again after it.
    pub async fn authenticate(&self, token: &str) -> Result<Claims, AuthError> {
        let result = self.verify(token);
        if let (Err(AuthError::Invalid(_)), Keys::Jwks { set, .. }) = (&result, &self.keys) {
            // Only a well-formed header whose kid the set lacks is worth a fetch.
            let unknown = token.len() <= MAX_TOKEN_LEN
                && jsonwebtoken::decode_header(token)
                    .ok()
                    .and_then(|h| h.kid)
                    .is_some_and(|kid| set.current().get(&kid).is_none());
            if unknown && set.refresh_for_unknown_kid().await {
                return self.verify(token);
            }
        }
        result
    }

    /// Checks `token` now. See the module docs for the rules.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        self.verify_at(token, now_secs())
    }

    /// Checks `token` as if the time were `now` (seconds since the Unix epoch).
    pub fn verify_at(&self, token: &str, now: u64) -> Result<Claims, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(invalid("token is too long"));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("malformed token header (or unsupported alg such as none)"))?;
        if header.crit.as_ref().is_some_and(|crit| !crit.is_empty()) {
            return Err(invalid("unsupported critical header parameters (crit)"));
        }
        let snapshot;
        let key = match &self.keys {
            Keys::Static { algorithm, key } => {
                if header.alg != *algorithm {
                    return Err(AuthError::Invalid(format!(
                        "token algorithm {:?} is not the configured {algorithm:?}",
                        header.alg
                    )));
                }
                key
            }
            Keys::Jwks { set, only } => {
                if !JWKS_ALGORITHMS.contains(&header.alg) {
                    return Err(AuthError::Invalid(format!(
                        "token algorithm {:?} is not accepted with a JWKS (public-key \
                         algorithms only)",
                        header.alg
                    )));
                }
                if let Some(only) = only.filter(|only| *only != header.alg) {
                    return Err(AuthError::Invalid(format!(
                        "token algorithm {:?} is not the configured {only:?}",
                        header.alg
                    )));
                }
                let kid = header
                    .kid
                    .as_deref()
                    .ok_or_else(|| invalid("the token has no kid (a JWKS key is chosen by kid)"))?;
                snapshot = set.current();
                let key = snapshot
                    .get(kid)
                    .ok_or_else(|| invalid("no key with the token's kid in the JWKS"))?;
                if !key.allows(header.alg) {
                    return Err(AuthError::Invalid(format!(
                        "the key named by the token's kid is not for {:?} (its kty, crv or alg)",
                        header.alg
                    )));
                }
                &key.key
            }
        };
        let validation = self
            .validations
            .iter()
            .find(|(alg, _)| *alg == header.alg)
            .map(|(_, v)| v)
            .ok_or_else(|| invalid("algorithm not allowed"))?;
        let raw = jsonwebtoken::decode::<RawClaims>(token, key, validation)
            .map_err(|e| map_error(e.kind()))?
            .claims;

        let sub = raw.sub.unwrap_or_default();
        if !is_valid_user_id(&sub) {
            return Err(invalid(
                "sub claim is not a valid user id ([A-Za-z0-9_.:@=-], 1 to 251 bytes)",
            ));
        }
        let exp = numeric_date(raw.exp, "exp")?.ok_or_else(|| invalid("missing exp claim"))?;
        if now >= exp {
            return Err(AuthError::Expired);
        }
        if numeric_date(raw.nbf, "nbf")?.is_some_and(|nbf| nbf > now.saturating_add(LEEWAY_SECS)) {
            return Err(invalid("token is not valid yet (nbf)"));
        }
        if numeric_date(raw.iat, "iat")?.is_some_and(|iat| iat > now.saturating_add(LEEWAY_SECS)) {
            return Err(invalid("token is issued in the future (iat)"));
        }
        Ok(Claims {
            sub,
            exp,
            channels: raw.channels.unwrap_or_default(),
            publish: raw.publish.unwrap_or_default(),
            rpc: raw.rpc,
        })
    }
}

/// A fixed description of a jsonwebtoken failure (its own messages may quote claim values).
fn map_error(kind: &ErrorKind) -> AuthError {
    let reason = match kind {
        ErrorKind::ExpiredSignature => return AuthError::Expired,
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => "algorithm not allowed",
        ErrorKind::InvalidAudience => "wrong audience (aud)",
        ErrorKind::InvalidIssuer => "wrong issuer (iss)",
        ErrorKind::ImmatureSignature => "token is not valid yet (nbf)",
        ErrorKind::MissingRequiredClaim(claim) => {
            return AuthError::Invalid(match claim.as_str() {
                "sub" | "exp" | "aud" | "iss" | "nbf" => {
                    format!("missing or malformed {claim} claim")
                }
                _ => "missing required claim".to_owned(),
            })
        }
        ErrorKind::InvalidClaimFormat(_) => "malformed time claim",
        ErrorKind::Json(_) => {
            "malformed token header or claims (channels, publish and rpc must be arrays of strings)"
        }
        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => "malformed token",
        _ => "token cannot be verified with the configured key",
    };
    invalid(reason)
}

/// Builds and checks the decoding key, so a bad key fails at startup, not per token.
fn decoding_key(algorithm: Algorithm, key: VerifyKey<'_>) -> Result<DecodingKey, KeyError> {
    let fail = |what: &str| Err(KeyError(what.to_owned()));
    let pem = match (algorithm.family(), key) {
        (AlgorithmFamily::Hmac, VerifyKey::Secret([])) => return fail("the HMAC secret is empty"),
        (AlgorithmFamily::Hmac, VerifyKey::Secret(secret)) => {
            return Ok(DecodingKey::from_secret(secret))
        }
        (AlgorithmFamily::Hmac, VerifyKey::PublicKeyPem(_)) => {
            return Err(KeyError(format!(
                "{algorithm:?} needs a secret, not a public key"
            )))
        }
        (_, VerifyKey::Secret(_)) => {
            return Err(KeyError(format!(
                "{algorithm:?} needs a PEM public key, not a secret"
            )))
        }
        (_, VerifyKey::PublicKeyPem(pem)) => pem,
    };
    let utils = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.key_utils;
    let key = match algorithm {
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => {
            let key = DecodingKey::from_rsa_pem(pem)
                .map_err(|_| KeyError("not a PEM RSA public key".into()))?;
            let der = key
                .try_get_as_bytes()
                .map_err(|_| KeyError("not a PEM RSA public key".into()))?;
            // Parse once here (the verifier would parse the DER on every token).
            let (n, e) = (utils.rsa_pub_components_from_public_key)(der)
                .map_err(|_| KeyError("not a valid RSA public key".into()))?;
            if n.len() < 256 {
                return fail("the RSA key is shorter than 2048 bits");
            }
            DecodingKey::from_rsa_raw_components(&n, &e)
        }
        Algorithm::ES256 | Algorithm::ES384 => {
            let key = DecodingKey::from_ec_pem(pem)
                .map_err(|_| KeyError("not a PEM EC public key".into()))?;
            let len = key.try_get_as_bytes().map_or(0, <[u8]>::len);
            match (algorithm, len) {
                (Algorithm::ES256, 65) | (Algorithm::ES384, 97) => key,
                (Algorithm::ES256, _) => return fail("ES256 needs a P-256 public key"),
                _ => return fail("ES384 needs a P-384 public key"),
            }
        }
        Algorithm::EdDSA => {
            let key = DecodingKey::from_ed_pem(pem)
                .map_err(|_| KeyError("not a PEM Ed25519 public key".into()))?;
            if key.try_get_as_bytes().map_or(0, <[u8]>::len) != 32 {
                return fail("EdDSA needs an Ed25519 public key");
            }
            key
        }
        _ => {
            return Err(KeyError(format!(
                "{algorithm:?} is not supported (use RS256, RS384, RS512, ES256, ES384 or EdDSA)"
            )))
        }
    };
    // Building a verifier parses EC/Ed points: a key off its curve fails here.
    jsonwebtoken::crypto::verify("AA", b"probe", &key, algorithm)
        .map_err(|_| KeyError(format!("the key cannot verify {algorithm:?} signatures")))?;
    Ok(key)
}

/// The request's token: `Authorization: Bearer <jwt>` (scheme case-insensitive) first, else
/// the first non-empty `token` query parameter, decoded like every query parameter
/// ([`crate::http::query`]). `query` is the part after `?`, without it.
pub fn token_from_request(headers: &http::HeaderMap, query: Option<&str>) -> Option<String> {
    let bearer = headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            let token = token.trim();
            (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
        });
    bearer.or_else(|| query_values(query, "token").find(|t| !t.is_empty()))
}
