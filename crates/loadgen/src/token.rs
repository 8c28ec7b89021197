//! Client JWTs: one HS256 token per connection.
//!
//! Claims: `sub` = user id, `iat` = now, `exp` = now + 3600, `channels` = `room:*`, `feed:*`,
//! `publish` = `room:*`, `user:*`, `feed:*`; an extra namespace (`direct --room-namespace`)
//! adds `<ns>:*` to both.

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

/// Subscribe patterns every token carries.
const CHANNELS: [&str; 2] = ["room:*", "feed:*"];
/// Publish patterns every token carries.
const PUBLISH: [&str; 3] = ["room:*", "user:*", "feed:*"];

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
    channels: &'a [String],
    publish: &'a [String],
}

/// Signs tokens with one HMAC secret.
pub struct Minter {
    key: EncodingKey,
    header: Header,
    channels: Vec<String>,
    publish: Vec<String>,
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Minter(HS256)")
    }
}

impl Minter {
    /// A minter whose tokens may also subscribe and publish to `<namespace>:*` when given.
    pub fn new(secret: &str, namespace: Option<&str>) -> Self {
        install_crypto_provider();
        let mut channels: Vec<String> = CHANNELS.iter().map(|p| p.to_string()).collect();
        let mut publish: Vec<String> = PUBLISH.iter().map(|p| p.to_string()).collect();
        if let Some(ns) = namespace {
            let pattern = format!("{ns}:*");
            for list in [&mut channels, &mut publish] {
                if !list.contains(&pattern) {
                    list.push(pattern.clone());
                }
            }
        }
        Self {
            key: EncodingKey::from_secret(secret.as_bytes()),
            header: Header::new(Algorithm::HS256),
            channels,
            publish,
        }
    }

    /// A fresh token for `sub`.
    pub fn mint(&self, sub: &str) -> Result<String, jsonwebtoken::errors::Error> {
        let now = crate::payload::now_us() / 1_000_000;
        let claims = Claims {
            sub,
            iat: now,
            exp: now + TTL_SECS,
            channels: &self.channels,
            publish: &self.publish,
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
        let m = Minter::new("s3cret-s3cret-s3cret-s3cret-0123", None);
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

    const SECRET: &str = "s3cret-s3cret-s3cret-s3cret-0123";

    fn claims(m: &Minter) -> serde_json::Value {
        let t = m.mint("u").unwrap();
        jsonwebtoken::decode::<serde_json::Value>(
            &t,
            &DecodingKey::from_secret(SECRET.as_bytes()),
            &Validation::new(Algorithm::HS256),
        )
        .unwrap()
        .claims
    }

    #[test]
    fn a_room_namespace_is_added_to_both_lists_once() {
        let c = claims(&Minter::new(SECRET, None));
        assert_eq!(c["channels"], serde_json::json!(["room:*", "feed:*"]));
        assert_eq!(
            c["publish"],
            serde_json::json!(["room:*", "user:*", "feed:*"])
        );
        let c = claims(&Minter::new(SECRET, Some("chat")));
        assert_eq!(
            c["channels"],
            serde_json::json!(["room:*", "feed:*", "chat:*"])
        );
        assert_eq!(
            c["publish"],
            serde_json::json!(["room:*", "user:*", "feed:*", "chat:*"])
        );
        let c = claims(&Minter::new(SECRET, Some("feed")));
        assert_eq!(c["channels"], serde_json::json!(["room:*", "feed:*"]));
    }
}
