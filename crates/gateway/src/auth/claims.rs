//! What a valid token allows ([`Claims`]), and the claims as the token spells them.

use serde::Deserialize;
use switchboard_proto::channel::any_matches;

use super::AuthError;

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
pub(super) struct RawClaims {
    pub(super) sub: Option<String>,
    pub(super) exp: Option<serde_json::Number>,
    pub(super) nbf: Option<serde_json::Number>,
    pub(super) iat: Option<serde_json::Number>,
    pub(super) channels: Option<Vec<String>>,
    pub(super) publish: Option<Vec<String>>,
    pub(super) rpc: Option<Vec<String>>,
}

/// A NumericDate (seconds, possibly fractional) as whole seconds.
pub(super) fn numeric_date(
    n: Option<serde_json::Number>,
    claim: &str,
) -> Result<Option<u64>, AuthError> {
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
