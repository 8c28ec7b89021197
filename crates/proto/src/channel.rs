//! Channel names (`<namespace>:<name>`) and authorization patterns (docs/protocol.md §2).

use thiserror::Error;

/// Longest channel name in bytes.
pub const MAX_CHANNEL_LEN: usize = 256;

/// The namespace of personal channels (`user:<id>`).
pub const USER_NAMESPACE: &str = "user";
/// The namespace of group channels (`room:<name>`).
pub const ROOM_NAMESPACE: &str = "room";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ChannelError {
    #[error("channel name is empty")]
    Empty,
    #[error("channel name is longer than {MAX_CHANNEL_LEN} bytes")]
    TooLong,
    #[error("channel name must be <namespace>:<name>")]
    NoNamespace,
    #[error("channel name may only contain [A-Za-z0-9_.:@=-]")]
    BadCharacter,
}

/// A syntactically valid channel name split into namespace and name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Channel<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
}

impl<'a> Channel<'a> {
    pub fn parse(s: &'a str) -> Result<Channel<'a>, ChannelError> {
        if s.is_empty() {
            return Err(ChannelError::Empty);
        }
        if s.len() > MAX_CHANNEL_LEN {
            return Err(ChannelError::TooLong);
        }
        if !s.bytes().all(is_channel_byte) {
            return Err(ChannelError::BadCharacter);
        }
        match s.split_once(':') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() => Ok(Channel {
                namespace: ns,
                name,
            }),
            _ => Err(ChannelError::NoNamespace),
        }
    }

    /// The user id of a `user:<id>` channel.
    pub fn user(&self) -> Option<&'a str> {
        (self.namespace == USER_NAMESPACE).then_some(self.name)
    }
}

fn is_channel_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'@' | b'=' | b'-')
}

/// A user id must be usable inside a channel name.
pub fn is_valid_user_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() < MAX_CHANNEL_LEN - USER_NAMESPACE.len()
        && id.bytes().all(is_channel_byte)
}

/// The personal channel of `user`.
pub fn user_channel(user: &str) -> String {
    format!("{USER_NAMESPACE}:{user}")
}

/// Whether `pattern` (an exact name, or a prefix ending in `*`) matches `channel`.
pub fn pattern_matches(pattern: &str, channel: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => channel.starts_with(prefix),
        None => pattern == channel,
    }
}

/// Whether any of `patterns` matches `channel`.
pub fn any_matches<S: AsRef<str>>(patterns: &[S], channel: &str) -> bool {
    patterns
        .iter()
        .any(|p| pattern_matches(p.as_ref(), channel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_names() {
        let c = Channel::parse("room:lobby").unwrap();
        assert_eq!((c.namespace, c.name), ("room", "lobby"));
        assert_eq!(Channel::parse("user:a@b.c").unwrap().user(), Some("a@b.c"));
        assert_eq!(Channel::parse("room:a:b").unwrap().name, "a:b");
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(Channel::parse(""), Err(ChannelError::Empty));
        assert_eq!(Channel::parse("lobby"), Err(ChannelError::NoNamespace));
        assert_eq!(Channel::parse(":x"), Err(ChannelError::NoNamespace));
        assert_eq!(Channel::parse("room:"), Err(ChannelError::NoNamespace));
        assert_eq!(Channel::parse("room:a b"), Err(ChannelError::BadCharacter));
        assert_eq!(Channel::parse("room:é"), Err(ChannelError::BadCharacter));
        let long = format!("room:{}", "x".repeat(252));
        assert_eq!(Channel::parse(&long), Err(ChannelError::TooLong));
        assert!(Channel::parse(&long[..256]).is_ok());
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("room:*", "room:lobby"));
        assert!(pattern_matches("*", "user:x"));
        assert!(pattern_matches("room:lobby", "room:lobby"));
        assert!(!pattern_matches("room:lobby", "room:lobby2"));
        assert!(!pattern_matches("room:a*", "room:b"));
        assert!(any_matches(&["x", "user:*"], "user:bob"));
        assert!(!any_matches::<&str>(&[], "user:bob"));
    }
}
