//! The static key (`--jwt-secret`, `--jwt-public-key`) an [`Authenticator`](super::Authenticator)
//! verifies with, checked against the algorithm once, at startup.

use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

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

/// Builds and checks the decoding key, so a bad key fails at startup, not per token.
pub(super) fn decoding_key(
    algorithm: Algorithm,
    key: VerifyKey<'_>,
) -> Result<DecodingKey, KeyError> {
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
