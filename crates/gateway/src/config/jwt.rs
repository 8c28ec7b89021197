//! The token verification settings (secret, public key or JWKS URL, algorithm, audience,
//! issuer), checked together.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, AlgorithmFamily};

use super::loader::Loader;
use super::values::{self, HMAC_ALGORITHMS, PUBLIC_KEY_ALGORITHMS};
use crate::auth::{Authenticator, Jwks, JwksPolicy, VerifyKey};

/// The JWT part of [`Config`].
pub(super) struct Jwt {
    pub(super) auth: Arc<Authenticator>,
    pub(super) secret: Option<String>,
    pub(super) algorithm: Option<Algorithm>,
    pub(super) jwks_url: Option<String>,
    pub(super) audience: Option<String>,
    pub(super) issuer: Option<String>,
}

/// Largest PEM file read (public keys are a few KiB at most).
const MAX_PEM_BYTES: u64 = 64 * 1024;

impl Loader<'_> {
    /// Secret or public key, algorithm, audience and issuer, checked together.
    pub(super) fn jwt(&mut self) -> Option<Jwt> {
        let secret = self.text("jwt_secret");
        let public_key = self.trimmed("jwt_public_key");
        let algorithm_set = self.raw("jwt_algorithm").is_some();
        let algorithm = self.opt("jwt_algorithm", values::algorithm);
        let audience = self.trimmed("jwt_audience");
        let issuer = self.trimmed("jwt_issuer");
        let jwks_url = self.trimmed("jwt_jwks_url");
        let jwks_policy = JwksPolicy {
            min: Duration::from_secs(self.int("jwt_jwks_min_refresh_seconds")),
            max: Duration::from_secs(self.int("jwt_jwks_max_refresh_seconds")),
        };
        let allow_start_without_keys = self.get("jwt_jwks_allow_start_without_keys", values::bool);
        if algorithm_set && algorithm.is_none() {
            // Already reported.
            return None;
        }
        if let Some(url) = jwks_url {
            if secret.is_some() || public_key.is_some() {
                self.errors.push(
                    "set only one of --jwt-secret, --jwt-public-key and --jwt-jwks-url".into(),
                );
                return None;
            }
            return self.jwks(
                url,
                jwks_policy,
                allow_start_without_keys,
                algorithm,
                audience,
                issuer,
            );
        }

        let (algorithm, pem) = match (&secret, &public_key) {
            (None, None) => {
                self.errors.push(
                    "set --jwt-secret, --jwt-public-key or --jwt-jwks-url (SWITCHBOARD_JWT_SECRET \
                     / SWITCHBOARD_JWT_PUBLIC_KEY / SWITCHBOARD_JWT_JWKS_URL) to verify client \
                     tokens"
                        .into(),
                );
                return None;
            }
            (Some(_), Some(_)) => {
                self.errors.push(
                    "set only one of --jwt-secret, --jwt-public-key and --jwt-jwks-url".into(),
                );
                return None;
            }
            (Some(secret), None) => {
                let algorithm = algorithm.unwrap_or(Algorithm::HS256);
                if algorithm.family() != AlgorithmFamily::Hmac {
                    self.errors.push(format!(
                        "--jwt-algorithm {algorithm:?} needs --jwt-public-key; with --jwt-secret \
                         use {HMAC_ALGORITHMS}"
                    ));
                    return None;
                }
                if secret.len() < 32 {
                    self.warnings.push(
                        "--jwt-secret is shorter than 32 bytes; use a long random secret".into(),
                    );
                }
                (algorithm, None)
            }
            (None, Some(path)) => {
                let Some(algorithm) = algorithm else {
                    self.errors.push(format!(
                        "--jwt-algorithm is required with --jwt-public-key ({PUBLIC_KEY_ALGORITHMS})"
                    ));
                    return None;
                };
                if algorithm.family() == AlgorithmFamily::Hmac {
                    self.errors.push(format!(
                        "--jwt-algorithm {algorithm:?} needs --jwt-secret; with --jwt-public-key \
                         use {PUBLIC_KEY_ALGORITHMS}"
                    ));
                    return None;
                }
                let pem = if path.starts_with("-----BEGIN") {
                    path.clone().into_bytes()
                } else {
                    match super::read_limited(path.as_ref(), MAX_PEM_BYTES) {
                        Ok(pem) => pem,
                        Err(e) => {
                            let label = self.label("jwt_public_key");
                            self.errors
                                .push(format!("{label}: cannot read {path}: {e}"));
                            return None;
                        }
                    }
                };
                (algorithm, Some(pem))
            }
        };

        let key = match (&secret, &pem) {
            (_, Some(pem)) => VerifyKey::PublicKeyPem(pem),
            (Some(secret), None) => VerifyKey::Secret(secret.as_bytes()),
            (None, None) => return None,
        };
        match Authenticator::new(algorithm, key, audience.as_deref(), issuer.as_deref()) {
            Ok(auth) => Some(Jwt {
                auth: Arc::new(auth),
                secret,
                algorithm: Some(algorithm),
                jwks_url: None,
                audience,
                issuer,
            }),
            Err(e) => {
                let key = if pem.is_some() {
                    "jwt_public_key"
                } else {
                    "jwt_secret"
                };
                let label = self.label(key);
                self.errors.push(format!("{label}: {e}"));
                None
            }
        }
    }

    /// `--jwt-jwks-url` and its settings. The keys are fetched later, at startup.
    fn jwks(
        &mut self,
        url: String,
        policy: JwksPolicy,
        allow_start_without_keys: bool,
        algorithm: Option<Algorithm>,
        audience: Option<String>,
        issuer: Option<String>,
    ) -> Option<Jwt> {
        if policy.max < policy.min {
            self.errors.push(format!(
                "--jwt-jwks-max-refresh-seconds {} is shorter than \
                 --jwt-jwks-min-refresh-seconds {}",
                policy.max.as_secs(),
                policy.min.as_secs()
            ));
            return None;
        }
        let jwks = match Jwks::new(&url, policy, allow_start_without_keys) {
            Ok(jwks) => jwks,
            Err(e) => {
                let label = self.label("jwt_jwks_url");
                self.errors.push(format!("{label}: {e}"));
                return None;
            }
        };
        if jwks.is_plain_http() {
            self.warnings.push(
                "--jwt-jwks-url uses http://: keys fetched without TLS can be replaced in \
                 transit; use https:// outside local testing"
                    .into(),
            );
        }
        if algorithm.is_some_and(|alg| alg.family() == AlgorithmFamily::Hmac) {
            self.errors.push(format!(
                "--jwt-algorithm {algorithm:?} cannot be used with --jwt-jwks-url \
                 ({PUBLIC_KEY_ALGORITHMS}, or unset for any the keys are for)"
            ));
            return None;
        }
        match Authenticator::with_jwks(
            Arc::new(jwks),
            algorithm,
            audience.as_deref(),
            issuer.as_deref(),
        ) {
            Ok(auth) => Some(Jwt {
                auth: Arc::new(auth),
                secret: None,
                algorithm,
                jwks_url: Some(url),
                audience,
                issuer,
            }),
            Err(e) => {
                let label = self.label("jwt_algorithm");
                self.errors.push(format!("{label}: {e}"));
                None
            }
        }
    }
}
