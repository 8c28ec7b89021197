//! Channel names (docs/protocol.md §2): any string is a channel or one precise `ChannelError`
//! (which the gateway answers as `bad_channel`); valid names split and join back.

use proptest::prelude::*;
use switchboard_proto::channel::{
    any_matches, is_valid_user_id, user_channel, Channel, ChannelError, MAX_CHANNEL_LEN,
};

use crate::gen::{self, any_string};

fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_.:@=-".contains(&b)
}

/// Strings mostly made of channel characters, so that every rule gets reached.
fn channelish() -> impl Strategy<Value = String> {
    prop_oneof![
        any_string(40),
        "[A-Za-z0-9_.:@=-]{0,300}",
        "[a-z]{1,4}:[A-Za-z0-9_.:@=-]{245,255}",
        "[a-z:]{0,6}[A-Za-z0-9_.:@=-]{0,20}[ é/\u{0}%*]?[A-Za-z0-9_.:@=-]{0,5}",
    ]
}

proptest! {
    #![proptest_config(gen::config(512))]

    /// The error is the first rule broken, in the documented order.
    #[test]
    fn any_string_is_a_channel_or_one_error(s in channelish()) {
        let want = if s.is_empty() {
            Err(ChannelError::Empty)
        } else if s.len() > MAX_CHANNEL_LEN {
            Err(ChannelError::TooLong)
        } else if !s.bytes().all(allowed) {
            Err(ChannelError::BadCharacter)
        } else if s.starts_with(':') || !s.contains(':') || s.ends_with(':') && s.matches(':').count() == 1 {
            Err(ChannelError::NoNamespace)
        } else {
            Ok(())
        };
        let got = Channel::parse(&s);
        prop_assert_eq!(got.as_ref().err(), want.as_ref().err());
        prop_assert_eq!(got.is_ok(), want.is_ok());
        if let Ok(c) = got {
            prop_assert!(!c.namespace.is_empty() && !c.name.is_empty());
            prop_assert!(!c.namespace.contains(':'));
            prop_assert_eq!(format!("{}:{}", c.namespace, c.name), s.clone());
            prop_assert_eq!(c.user().is_some(), c.namespace == "user");
        }
        // Patterns never panic on any pair.
        let _ = any_matches(&[s.as_str(), "*", "room:*"], &s);
    }

    /// Valid names round-trip through their parts.
    #[test]
    fn valid_names_round_trip(ns in "[A-Za-z0-9_.@=-]{1,20}", name in "[A-Za-z0-9_.:@=-]{1,235}") {
        let s = format!("{ns}:{name}");
        let c = Channel::parse(&s).expect("valid");
        prop_assert_eq!((c.namespace, c.name), (ns.as_str(), name.as_str()));
    }

    /// Every valid user id makes a valid personal channel naming that user.
    #[test]
    fn user_ids(id in prop_oneof![any_string(20), "[A-Za-z0-9_.:@=-]{1,260}"]) {
        let ch = user_channel(&id);
        let user = Channel::parse(&ch).ok().and_then(|c| c.user());
        prop_assert_eq!(user, is_valid_user_id(&id).then_some(id.as_str()));
    }
}
