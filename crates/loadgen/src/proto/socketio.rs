//! Socket.IO 4 over Engine.IO 4, WebSocket transport only.
//!
//! Engine.IO packet types are one leading digit: `0` open (`0{"sid":…,"pingInterval":…}`),
//! `1` close, `2` ping, `3` pong, `4` message. A Socket.IO packet rides in a `4`: `40` connect
//! (the client sends `40`, the server answers `40{"sid":…}` = established), `41` disconnect,
//! `42[event, …args]` an event, `44{…}` a connect error. Deliveries are `42["msg",<payload>]`.

use std::borrow::Cow;

use serde_json::value::RawValue;

use super::{Established, Incoming, Step, Upgrade};
use crate::payload::{self, Payload};

pub fn upgrade(user: &str) -> Upgrade {
    Upgrade {
        path: format!(
            "/socket.io/?EIO=4&transport=websocket&user={}",
            query_escape(user)
        ),
        bearer: None,
        subprotocol: None,
    }
}

pub fn setup_step(text: &[u8]) -> Step {
    match text {
        [b'0', ..] => Step::Send("40".into()),
        [b'4', b'0', ..] => Step::Done(Established::default()),
        [b'4', b'4', ..] => Step::Fail("connect_error".into()),
        b"2" => Step::Send("3".into()),
        [b'1', ..] | [b'4', b'1', ..] => Step::Fail("disconnected".into()),
        _ => Step::Wait,
    }
}

pub fn classify(text: &[u8]) -> Incoming<'_> {
    match text {
        b"2" => Incoming::Answer("3"),
        [b'4', b'2', rest @ ..] => match event(rest) {
            Some(("msg", payload)) => Incoming::Delivery {
                channel: None,
                payload,
                pos: None,
            },
            _ => Incoming::Other,
        },
        _ => Incoming::Other,
    }
}

/// Parses `[event, payload, …]` (after an optional namespace `/nsp,` and ack id, which the
/// default namespace without acks does not have).
fn event(args: &[u8]) -> Option<(&'static str, Payload)> {
    let items: Vec<&RawValue> = serde_json::from_slice(args).ok()?;
    let name: Cow<str> = serde_json::from_str(items.first()?.get()).ok()?;
    if name != "msg" {
        return None;
    }
    let p = payload::parse(items.get(1)?.get().as_bytes())?;
    Some(("msg", p))
}

/// Percent-encodes what is not unreserved (user ids are plain ASCII in practice).
pub fn query_escape(s: &str) -> Cow<'_, str> {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
    {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_is_open_then_connect() {
        let open = br#"0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        assert_eq!(setup_step(open), Step::Send("40".into()));
        assert_eq!(setup_step(b"2"), Step::Send("3".into()));
        assert_eq!(
            setup_step(br#"40{"sid":"xyz"}"#),
            Step::Done(Established::default())
        );
        assert_eq!(
            setup_step(br#"44{"message":"no"}"#),
            Step::Fail("connect_error".into())
        );
    }

    #[test]
    fn events_pings_and_others() {
        assert_eq!(classify(b"2"), Incoming::Answer("3"));
        let m = br#"42["msg",{"s":3,"q":9,"t":100,"p":"xx"}]"#;
        assert_eq!(
            classify(m),
            Incoming::Delivery {
                channel: None,
                payload: Payload { s: 3, q: 9, t: 100 },
                pos: None
            }
        );
        assert_eq!(
            classify(br#"42["other",{"s":3,"q":9,"t":1}]"#),
            Incoming::Other
        );
        assert_eq!(classify(br#"42["msg","text"]"#), Incoming::Other);
        assert_eq!(classify(b"41"), Incoming::Other);
    }

    #[test]
    fn upgrade_path_carries_the_user() {
        assert_eq!(
            upgrade("lg-ab1-r7").path,
            "/socket.io/?EIO=4&transport=websocket&user=lg-ab1-r7"
        );
        assert_eq!(query_escape("a b&c"), "a%20b%26c");
    }
}
