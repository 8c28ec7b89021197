//! Client authentication with JWTs (PROTOCOL.md §3).
//!
//! - [`token_from_request`] finds the token: `Authorization: Bearer <jwt>` first, else the
//!   `token` query parameter (for browsers, which cannot set headers on a WebSocket).
//! - [`Authenticator::verify`] checks it: the header `alg` must be the configured one (so no
//!   `none` and no HS/RS confusion), the signature, `exp` (required, no leeway: a token is
//!   expired from its `exp` second on), `nbf` and `iat` (honoured with [`LEEWAY_SECS`] of
//!   clock skew), `sub` (required, a valid user id), and `aud`/`iss` (required and checked
//!   when configured; ignored otherwise).
//! - [`Claims`] carries what the token allows: channel patterns to subscribe to and publish
//!   on, and RPC method patterns (absent = any method).
//!
//! Errors never contain the token or claim values.

use std::sync::Once;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde::Deserialize;
use switchboard_proto::channel::{any_matches, is_valid_user_id};

use crate::http::query::query_values;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

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

/// Seconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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

/// Verifies client tokens against one key and algorithm. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Authenticator {
    algorithm: Algorithm,
    key: DecodingKey,
    validation: Validation,
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
        Ok(Authenticator {
            algorithm,
            key,
            validation,
        })
    }

    /// Checks `token` now. See the module docs for the rules.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        self.verify_at(token, unix_now())
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
        if header.alg != self.algorithm {
            return Err(AuthError::Invalid(format!(
                "token algorithm {:?} is not the configured {:?}",
                header.alg, self.algorithm
            )));
        }
        if header.crit.as_ref().is_some_and(|crit| !crit.is_empty()) {
            return Err(invalid("unsupported critical header parameters (crit)"));
        }
        let raw = jsonwebtoken::decode::<RawClaims>(token, &self.key, &self.validation)
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
