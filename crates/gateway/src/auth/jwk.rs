//! One JSON Web Key Set (RFC 7517) turned into verification keys, by `kid`.
//!
//! Every key is checked once, when the set is fetched, never per token:
//! - only signature keys: `use` absent or `sig`; `key_ops`, when present, includes `verify`;
//! - only public keys of the algorithms we verify: `RSA` (RS256/384/512, PS256/384/512; at
//!   least 2048 bits), `EC` on `P-256` (ES256) or `P-384` (ES384), `OKP` on `Ed25519`
//!   (EdDSA). Symmetric (`oct`) keys are never used: a JWKS is public;
//! - the key's `alg`, when present, must be one its `kty`/`crv` can do, and becomes the only
//!   algorithm it verifies; without `alg` the key verifies every algorithm of its type;
//! - a `kid` is required (tokens select their key by it) and must be unique.
//!
//! A key that fails a check is skipped (and named in the set's `skipped` list); one bad
//! key never hides the good ones.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

/// Largest number of keys read from one set (providers publish two or three).
pub const MAX_KEYS: usize = 100;

/// The RSA algorithms a key of `kty` `RSA` may verify.
const RSA_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// One usable key of a set.
#[derive(Clone)]
pub struct Key {
    /// The algorithms this key verifies: its `alg`, or every algorithm of its type.
    pub algorithms: Vec<Algorithm>,
    pub key: DecodingKey,
}

impl Key {
    /// Whether a token with header `alg` may be verified with this key.
    pub fn allows(&self, alg: Algorithm) -> bool {
        self.algorithms.contains(&alg)
    }
}

/// The usable keys of one JWKS document, by `kid`.
#[derive(Clone, Default)]
pub struct KeySet {
    pub keys: HashMap<String, Key>,
    /// Why each unusable key was skipped (`kid` or position, and the reason), for the log.
    pub skipped: Vec<String>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kids: Vec<&String> = self.keys.keys().collect();
        kids.sort();
        f.debug_struct("KeySet")
            .field("kids", &kids)
            .field("skipped", &self.skipped)
            .finish()
    }
}

impl KeySet {
    pub fn get(&self, kid: &str) -> Option<&Key> {
        self.keys.get(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Parses a JWKS document (`{"keys": [...]}`). Fails only when the document itself is
    /// not a JWKS; unusable keys are skipped and listed in `skipped`.
    pub fn parse(body: &[u8]) -> Result<KeySet, String> {
        #[derive(Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let doc: Document = serde_json::from_slice(body)
            .map_err(|e| format!("not a JWKS document ({{\"keys\": [...]}}): {e}"))?;
        if doc.keys.len() > MAX_KEYS {
            return Err(format!(
                "the set has {} keys, more than {MAX_KEYS}",
                doc.keys.len()
            ));
        }
        let mut set = KeySet::default();
        for (i, value) in doc.keys.into_iter().enumerate() {
            let jwk: Result<Jwk, _> = serde_json::from_value(value);
            let (name, result) = match jwk {
                Ok(jwk) => (
                    jwk.kid
                        .as_deref()
                        .map_or_else(|| format!("key {i}"), |kid| format!("kid {kid:?}")),
                    convert(&jwk).map(|key| (jwk.kid.clone().unwrap_or_default(), key)),
                ),
                Err(e) => (format!("key {i}"), Err(format!("malformed: {e}"))),
            };
            match result {
                Ok((kid, _)) if set.keys.contains_key(&kid) => {
                    // Two keys under one kid: neither can be trusted to be the one meant.
                    set.keys.remove(&kid);
                    set.skipped.push(format!("{name}: duplicate kid"));
                }
                Ok((kid, key)) => {
                    set.keys.insert(kid, key);
                }
                Err(reason) => set.skipped.push(format!("{name}: {reason}")),
            }
        }
        Ok(set)
    }
}

/// The members of a JWK we read (RFC 7517 §4, RFC 7518 §6); others are ignored.
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    alg: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
    /// Private members: a JWKS that publishes one is a provider's mistake; refuse the key.
    d: Option<serde::de::IgnoredAny>,
}

/// Checks one JWK and builds its verification key.
fn convert(jwk: &Jwk) -> Result<Key, String> {
    if jwk.kid.as_deref().is_none_or(str::is_empty) {
        return Err("no kid (tokens select their key by kid)".into());
    }
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return Err("not a signature key (use is not \"sig\")".into());
    }
    if jwk
        .key_ops
        .as_ref()
        .is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
    {
        return Err("key_ops does not include \"verify\"".into());
    }
    if jwk.d.is_some() {
        return Err("a private key (has \"d\"); only public keys are used".into());
    }
    let alg = match jwk.alg.as_deref() {
        None => None,
        Some(name) => Some(
            name.parse::<Algorithm>()
                .map_err(|_| format!("alg {name:?} is not a signature algorithm we verify"))?,
        ),
    };
    let field = |value: &Option<String>, name: &str| -> Result<Vec<u8>, String> {
        let text = value.as_deref().ok_or_else(|| format!("missing {name}"))?;
        URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .map_err(|_| format!("{name} is not base64url"))
    };
    let (algorithms, key) = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("RSA", _) => {
            let n = field(&jwk.n, "n")?;
            let e = field(&jwk.e, "e")?;
            let significant = n.iter().skip_while(|b| **b == 0).count();
            if significant < 256 {
                return Err("the RSA key is shorter than 2048 bits".into());
            }
            if e.is_empty() {
                return Err("empty RSA exponent".into());
            }
            (
                RSA_ALGORITHMS.to_vec(),
                DecodingKey::from_rsa_raw_components(&n, &e),
            )
        }
        ("EC", Some(crv @ ("P-256" | "P-384"))) => {
            let (alg, len) = if crv == "P-256" {
                (Algorithm::ES256, 32)
            } else {
                (Algorithm::ES384, 48)
            };
            let x = field(&jwk.x, "x")?;
            let y = field(&jwk.y, "y")?;
            if x.len() != len || y.len() != len {
                return Err(format!("{crv} coordinates must be {len} bytes"));
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (vec![alg], DecodingKey::from_ec_der(&point))
        }
        ("EC", crv) => return Err(format!("EC curve {crv:?} is not supported (P-256, P-384)")),
        ("OKP", Some("Ed25519")) => {
            let x = field(&jwk.x, "x")?;
            if x.len() != 32 {
                return Err("an Ed25519 key is 32 bytes".into());
            }
            (vec![Algorithm::EdDSA], DecodingKey::from_ed_der(&x))
        }
        ("OKP", crv) => return Err(format!("OKP curve {crv:?} is not supported (Ed25519)")),
        ("oct", _) => return Err("a symmetric (oct) key; a JWKS only lends public keys".into()),
        (kty, _) => return Err(format!("kty {kty:?} is not supported (RSA, EC, OKP)")),
    };
    let algorithms = match alg {
        None => algorithms,
        Some(alg) if algorithms.contains(&alg) => vec![alg],
        Some(alg) => {
            return Err(format!(
                "alg {alg:?} does not match the key type {:?}{}",
                jwk.kty,
                jwk.crv
                    .as_deref()
                    .map(|c| format!(" / {c}"))
                    .unwrap_or_default()
            ))
        }
    };
    // Building a verifier parses the key: a point off its curve fails here, not per token.
    jsonwebtoken::crypto::verify("AA", b"probe", &key, algorithms[0])
        .map_err(|_| "the key cannot be parsed (not a valid public key)".to_owned())?;
    Ok(Key { algorithms, key })
}

#[cfg(test)]
mod tests;
