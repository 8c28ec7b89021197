//! Client JWTs: one HS256 token per connection.
//!
//! Claims: `sub` = user id, `iat` = now, `exp` = now + 3600, `channels` = `room:*`, `feed:*`,
//! `publish` = `room:*`, `user:*`, `feed:*`.

use std::sync::Once;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// Lifetime of a minted token, seconds.
pub const TTL_SECS: u64 = 3600;

/// Installs jsonwebtoken's RustCrypto provider (jsonwebtoken 11 needs one before any
/// signing); idempotent.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // An error means a provider is already installed; that one stays.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    });
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
    channels: [&'static str; 2],
    publish: [&'static str; 3],
}

/// Signs tokens with one HMAC secret.
pub struct Minter {
    key: EncodingKey,
    header: Header,
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Minter(HS256)")
    }
}

impl Minter {
    pub fn new(secret: &str) -> Self {
        install_crypto_provider();
        Self {
            key: EncodingKey::from_secret(secret.as_bytes()),
            header: Header::new(Algorithm::HS256),
        }
    }

    /// A fresh token for `sub`.
    pub fn mint(&self, sub: &str) -> Result<String, jsonwebtoken::errors::Error> {
        let now = crate::payload::now_us() / 1_000_000;
        let claims = Claims {
            sub,
            iat: now,
            exp: now + TTL_SECS,
            channels: ["room:*", "feed:*"],
            publish: ["room:*", "user:*", "feed:*"],
        };
        jsonwebtoken::encode(&self.header, &claims, &self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    #[test]
    fn minted_tokens_verify_with_the_secret() {
        let m = Minter::new("s3cret-s3cret-s3cret-s3cret-0123");
        let t = m.mint("lg-abc-r1").unwrap();
        let data = jsonwebtoken::decode::<serde_json::Value>(
            &t,
            &DecodingKey::from_secret(b"s3cret-s3cret-s3cret-s3cret-0123"),
            &Validation::new(Algorithm::HS256),
        )
        .unwrap();
        assert_eq!(data.claims["sub"], "lg-abc-r1");
        assert_eq!(data.claims["publish"][1], "user:*");
        let exp = data.claims["exp"].as_u64().unwrap();
        assert_eq!(exp - data.claims["iat"].as_u64().unwrap(), TTL_SECS);
    }
}
