//! Which channels keep history and how much (docs/protocol.md §5).

use std::time::Duration;

use switchboard_proto::channel::{pattern_matches, USER_NAMESPACE};

/// History bounds of a channel. A channel with `max_len == 0` keeps no history but
/// still numbers its messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryPolicy {
    pub max_len: usize,
    pub max_age: Duration,
}

impl HistoryPolicy {
    pub const NONE: HistoryPolicy = HistoryPolicy {
        max_len: 0,
        max_age: Duration::ZERO,
    };

    pub fn keeps_history(&self) -> bool {
        self.max_len > 0 && !self.max_age.is_zero()
    }
}

/// Default for `user:*`: 1,000 messages or 24 hours.
pub const USER_DEFAULT: HistoryPolicy = HistoryPolicy {
    max_len: 1000,
    max_age: Duration::from_secs(24 * 3600),
};

/// Pattern → policy rules; the first matching rule wins. User channels always keep
/// history: a rule that would give them none is replaced by [`USER_DEFAULT`].
#[derive(Clone, Debug)]
pub struct HistoryPolicies {
    rules: Vec<(String, HistoryPolicy)>,
}

impl Default for HistoryPolicies {
    fn default() -> Self {
        HistoryPolicies::new(Vec::new())
    }
}

impl HistoryPolicies {
    /// `rules` are checked in order before the defaults (`user:*` → [`USER_DEFAULT`],
    /// everything else → none).
    pub fn new(rules: Vec<(String, HistoryPolicy)>) -> Self {
        HistoryPolicies { rules }
    }

    pub fn for_channel(&self, channel: &str) -> HistoryPolicy {
        let is_user = channel
            .strip_prefix(USER_NAMESPACE)
            .is_some_and(|r| r.starts_with(':'));
        let rule = self
            .rules
            .iter()
            .find(|(p, _)| pattern_matches(p, channel))
            .map(|(_, pol)| *pol);
        match rule {
            Some(p) if !is_user || p.keeps_history() => p,
            _ if is_user => USER_DEFAULT,
            _ => HistoryPolicy::NONE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_rules() {
        let p = HistoryPolicies::default();
        assert_eq!(p.for_channel("user:a"), USER_DEFAULT);
        assert!(!p.for_channel("room:a").keeps_history());
        let ten = HistoryPolicy {
            max_len: 10,
            max_age: Duration::from_secs(60),
        };
        let p = HistoryPolicies::new(vec![
            ("room:chat*".into(), ten),
            ("user:*".into(), HistoryPolicy::NONE),
        ]);
        assert_eq!(p.for_channel("room:chat1"), ten);
        assert!(!p.for_channel("room:other").keeps_history());
        assert_eq!(p.for_channel("user:a"), USER_DEFAULT);
    }
}
