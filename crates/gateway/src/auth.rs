//! Client authentication with JWTs (docs/protocol.md §3).
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
//! - this file: the checks, and where the token is found in a request.
//! - `auth/claims.rs`: [`Claims`], and the claims as the token spells them.
//! - `auth/key.rs`: static keys (`--jwt-secret`, `--jwt-public-key`), checked at startup.
//! - `auth/jwk.rs`: a JWKS document → verification keys by `kid`, each key checked once.
//! - `auth/jwks.rs`: the cached set of `--jwt-jwks-url`: startup, background refresh,
//!   refresh on unknown `kid`, last good set kept on failure.
//! - `auth/fetch.rs`: the HTTP(S) `GET` of the document.
//!
//! Errors never contain the token or claim values.

use std::sync::{Arc, Once};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use switchboard_proto::channel::is_valid_user_id;
use switchboard_proto::clock::now_secs;

use crate::http::query::query_values;

mod claims;
mod fetch;
mod jwk;
mod jwks;
mod key;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use claims::Claims;
use claims::{numeric_date, RawClaims};
pub use jwks::{Jwks, Policy as JwksPolicy};
use key::decoding_key;
pub use key::{KeyError, VerifyKey};

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

/// The request's token: `Authorization: Bearer <jwt>` (scheme case-insensitive) first, else
/// the first non-empty `token` query parameter, decoded like every query parameter
/// ([`crate::http::query`]). `query` is the part after `?`, without it.
pub fn token_from_request(headers: &http::HeaderMap, query: Option<&str>) -> Option<String> {
    crate::http::bearer(headers)
        .next()
        .map(str::to_owned)
        .or_else(|| query_values(query, "token").find(|t| !t.is_empty()))
}
