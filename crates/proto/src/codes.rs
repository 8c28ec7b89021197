//! Error codes (docs/protocol.md §4, §4b) and WebSocket close codes (§7).

/// The `code` of an `error` frame or of a failed `reply`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    BadFrame,
    UnknownType,
    Forbidden,
    BadChannel,
    TooLarge,
    RateLimited,
    NotSubscribed,
    TokenExpired,
    Unavailable,
    InvalidToken,
    Internal,
    NoRoute,
    UpstreamTimeout,
    UpstreamUnavailable,
    UpstreamError,
    TooManyRequests,
    AlreadySubscribed,
    LimitExceeded,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::BadChannel => "bad_channel",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::NotSubscribed => "not_subscribed",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::Internal => "internal",
            ErrorCode::NoRoute => "no_route",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
            ErrorCode::UpstreamUnavailable => "upstream_unavailable",
            ErrorCode::UpstreamError => "upstream_error",
            ErrorCode::TooManyRequests => "too_many_requests",
            ErrorCode::AlreadySubscribed => "already_subscribed",
            ErrorCode::LimitExceeded => "limit_exceeded",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// WebSocket close codes used by Switchboard (docs/protocol.md §7).
pub mod close {
    /// Normal close.
    pub const NORMAL: u16 = 1000;
    /// Going away (server shutting down without a drain).
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Invalid UTF-8 in a text message.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A message larger than `--max-message-bytes`.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// Internal error.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// Service restart: sent during a drain, after `goaway`.
    pub const SERVICE_RESTART: u16 = 1012;
    /// Try again later: node overloaded.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// Token expired.
    pub const TOKEN_EXPIRED: u16 = 4001;
    /// Disconnected by the server API, or forbidden.
    pub const FORBIDDEN: u16 = 4003;
    /// Slow consumer: the outbound queue passed its bound.
    pub const SLOW_CONSUMER: u16 = 4008;
    /// Rate limited.
    pub const RATE_LIMITED: u16 = 4029;
    /// Too many bad frames.
    pub const TOO_MANY_BAD_FRAMES: u16 = 4400;
}
