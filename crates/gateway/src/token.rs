//! `switchboard token`: mints a development JWT with the node's own HMAC key.
//!
//! The command takes the same configuration sources as `serve` (flags, env, `--config`) and
//! loads the whole [`Config`], so it fails exactly when the node would refuse to start and
//! signs with exactly the key, algorithm, audience and issuer the node verifies with. Only
//! HMAC keys can sign: with `--jwt-public-key` the private key lives with your identity
//! provider, and the command refuses. Every error of [`run`] is a usage or configuration
//! error (main exits 64).

use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header};
use serde::Serialize;
use switchboard_proto::channel::is_valid_user_id;

use switchboard_proto::clock::now_secs;

use crate::auth::install_crypto_provider;
use crate::config::{channel_pattern, Config, ServeArgs};

/// Longest `--ttl`: ten years.
const MAX_TTL_SECS: u64 = 10 * 365 * 24 * 3600;

/// Arguments of `switchboard token`.
#[derive(clap::Args, Clone, Debug)]
pub struct TokenArgs {
    /// User id: the `sub` claim (channel characters [A-Za-z0-9_.:@=-]).
    #[arg(long, value_name = "USER")]
    pub sub: String,
    /// Channel patterns the user may subscribe to, like 'room:*' (repeatable,
    /// comma-separated). Default: none.
    #[arg(long, value_name = "PATTERNS", value_delimiter = ',')]
    pub channels: Vec<String>,
    /// Channel patterns the user may publish to, like 'room:*' or 'user:*' (repeatable,
    /// comma-separated). Default: none.
    #[arg(long, value_name = "PATTERNS", value_delimiter = ',')]
    pub publish: Vec<String>,
    /// RPC method patterns the user may call, like 'orders.*' (repeatable,
    /// comma-separated). Default: no `rpc` claim = any method.
    #[arg(long, value_name = "PATTERNS", value_delimiter = ',')]
    pub rpc: Option<Vec<String>>,
    /// Lifetime in seconds (`exp` = now + ttl), 1..=315360000.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub ttl: u64,
    /// The node's configuration (only the JWT settings matter, but all are checked).
    #[command(
        flatten,
        next_help_heading = "Node configuration (all checked; the JWT settings are used)"
    )]
    pub config: ServeArgs,
}

/// Runs `switchboard token`: returns the signed token, which main prints alone on one line.
pub fn run(args: &TokenArgs) -> anyhow::Result<String> {
    install_crypto_provider();
    let config = Config::load(&args.config)?;
    let rpc = args.rpc.as_deref().map(trimmed);
    let token = mint(
        &config,
        &args.sub,
        &trimmed(&args.channels),
        &trimmed(&args.publish),
        rpc.as_deref(),
        Duration::from_secs(args.ttl),
    )
    .map_err(anyhow::Error::msg)?;
    Ok(token)
}

fn trimmed(items: &[String]) -> Vec<String> {
    items
        .iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The claims `mint` signs.
#[derive(Serialize)]
struct MintClaims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    channels: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    publish: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    rpc: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
}

/// Signs a token for `sub` with the HMAC secret of `config`: `iat` = now, `exp` = now +
/// `ttl` (whole seconds, at least 1), the given patterns, and `aud`/`iss` when configured.
/// `rpc: None` leaves the claim out (any method). Fails with a readable message on a
/// public-key configuration or a bad argument.
pub fn mint(
    config: &Config,
    sub: &str,
    channels: &[String],
    publish: &[String],
    rpc: Option<&[String]>,
    ttl: Duration,
) -> Result<String, String> {
    let Some(secret) = config.jwt_secret.as_deref() else {
        if config.jwt_jwks_url.is_some() {
            return Err(
                "only HMAC keys can sign: this node verifies tokens with the keys of \
                 --jwt-jwks-url; get tokens from your identity provider"
                    .to_owned(),
            );
        }
        return Err(format!(
            "only HMAC keys can sign: this node verifies {:?} tokens with --jwt-public-key; \
             sign tokens with the matching private key (your identity provider)",
            config
                .jwt_algorithm
                .unwrap_or(jsonwebtoken::Algorithm::RS256)
        ));
    };
    if !is_valid_user_id(sub) {
        return Err(format!(
            "--sub {sub:?} is not a valid user id ([A-Za-z0-9_.:@=-], 1 to 251 bytes)"
        ));
    }
    let ttl = ttl.as_secs();
    if !(1..=MAX_TTL_SECS).contains(&ttl) {
        return Err(format!("--ttl must be 1..={MAX_TTL_SECS} seconds"));
    }
    let mut problems: Vec<String> = channels
        .iter()
        .chain(publish)
        .filter_map(|p| channel_pattern(p).err())
        .collect();
    for method in rpc.unwrap_or_default() {
        let bare = method.strip_suffix('*').unwrap_or(method);
        if method.is_empty()
            || bare.contains('*')
            || bare.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            problems.push(format!(
                "{method:?} is not a method pattern (exact name, or prefix ending in *)"
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }

    install_crypto_provider();
    let now = now_secs();
    let claims = MintClaims {
        sub,
        iat: now,
        exp: now.saturating_add(ttl),
        channels,
        publish,
        rpc,
        aud: config.jwt_audience.as_deref(),
        iss: config.jwt_issuer.as_deref(),
    };
    let header = Header::new(
        config
            .jwt_algorithm
            .unwrap_or(jsonwebtoken::Algorithm::HS256),
    );
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| format!("cannot sign the token: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthError;

    fn config(extra: &[(&str, &str)]) -> Config {
        let mut args = ServeArgs {
            jwt_secret: Some("token-test-secret-0123456789abcdef".into()),
            ..ServeArgs::default()
        };
        for (key, value) in extra {
            match *key {
                "alg" => args.jwt_algorithm = Some(value.to_string()),
                "aud" => args.jwt_audience = Some(value.to_string()),
                "iss" => args.jwt_issuer = Some(value.to_string()),
                _ => unreachable!("unknown test key"),
            }
        }
        Config::from_parts(&args, None).expect("valid config")
    }

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn minted_tokens_verify() {
        for extra in [
            &[][..],
            &[("alg", "HS512"), ("aud", "sb"), ("iss", "dev")][..],
        ] {
            let config = config(extra);
            let rpc = strings(&["orders.*"]);
            let token = mint(
                &config,
                "alice",
                &strings(&["room:*"]),
                &strings(&["user:*"]),
                Some(&rpc),
                Duration::from_secs(600),
            )
            .expect("minted");
            assert!(!token.contains(char::is_whitespace));
            let claims = config.auth.verify(&token).expect("verifies");
            assert_eq!(claims.sub, "alice");
            assert!(claims.can_subscribe("room:lobby") && claims.can_publish("user:bob"));
            assert!(claims.can_call("orders.create") && !claims.can_call("admin.x"));
        }
    }

    #[test]
    fn ttl_is_honoured() {
        let config = config(&[]);
        let before = now_secs();
        let token = mint(&config, "bob", &[], &[], None, Duration::from_secs(90)).expect("minted");
        let claims = config.auth.verify(&token).expect("verifies");
        assert!(claims.exp >= before + 90 && claims.exp <= now_secs() + 90);
        assert!(claims.rpc.is_none() && claims.channels.is_empty());
        assert_eq!(
            config.auth.verify_at(&token, claims.exp),
            Err(AuthError::Expired)
        );
        assert!(config.auth.verify_at(&token, claims.exp - 1).is_ok());
        assert!(mint(&config, "bob", &[], &[], None, Duration::ZERO).is_err());
        assert!(mint(
            &config,
            "bob",
            &[],
            &[],
            None,
            Duration::from_secs(MAX_TTL_SECS + 1)
        )
        .is_err());
    }

    #[test]
    fn bad_arguments_are_reported() {
        let config = config(&[]);
        assert!(mint(&config, "a b", &[], &[], None, Duration::from_secs(60)).is_err());
        let err = mint(
            &config,
            "a",
            &strings(&["room:*x", "ok:x"]),
            &strings(&["bad pattern"]),
            Some(&strings(&["a*b"])),
            Duration::from_secs(60),
        )
        .unwrap_err();
        assert_eq!(err.lines().count(), 3, "{err}");
    }

    #[test]
    fn public_key_configs_cannot_sign() {
        let args = ServeArgs {
            jwt_public_key: Some(
                include_str!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/keys/ed25519.pub"
                ))
                .into(),
            ),
            jwt_algorithm: Some("EdDSA".into()),
            ..ServeArgs::default()
        };
        let config = Config::from_parts(&args, None).expect("valid config");
        let err = mint(&config, "alice", &[], &[], None, Duration::from_secs(60)).unwrap_err();
        assert!(err.contains("only HMAC keys can sign"), "{err}");
    }

    #[test]
    fn run_uses_the_configuration() {
        let args = TokenArgs {
            sub: "carol".into(),
            channels: strings(&[" room:* ", ""]),
            publish: Vec::new(),
            rpc: None,
            ttl: 60,
            config: ServeArgs {
                jwt_secret: Some("token-test-secret-0123456789abcdef".into()),
                ..ServeArgs::default()
            },
        };
        let token = run(&args).expect("token");
        let claims = config(&[]).auth.verify(&token).expect("verifies");
        assert_eq!(
            (claims.sub.as_str(), claims.channels.as_slice()),
            ("carol", &["room:*".to_owned()][..])
        );
        let no_key = TokenArgs {
            config: ServeArgs::default(),
            ..args
        };
        assert!(run(&no_key).is_err());
    }
}
