//! Wire formats: the upgrade request, the setup conversation until a connection counts as
//! established, the classification of incoming text frames, and HTTP publishing.
//!
//! - `switchboard` — ours (docs/protocol.md): `/ws`, JWT, `welcome`, `message`, `reply`, `goaway`.
//! - `socketio`    — Socket.IO 4 over Engine.IO 4: `0{…}` → `40` → `40{…}`; `42["msg",…]`.
//! - `plain`       — `{"type":"hello"}`, then frames that are exactly the payload.
//! - `pusher`      — Pusher protocol 7: subscribe to `user-<id>`; signed HTTP events.

pub mod plain;
pub mod pusher;
pub mod socketio;
pub mod switchboard;

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::cli::Protocol;
use crate::payload::Payload;

/// A position in a channel: `(epoch, offset)` (switchboard).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pos {
    pub epoch: String,
    pub offset: u64,
}

/// What the server said when the connection became established.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Established {
    /// Switchboard: the personal channel's newest position (`welcome.epoch/offset`).
    pub pos: Option<Pos>,
    /// Switchboard: `welcome.recovered` (present only when resuming with `since`).
    pub recovered: Option<bool>,
}

/// One step of the setup conversation, for one incoming text frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Not there yet; keep reading.
    Wait,
    /// Send this text frame, then keep reading.
    Send(String),
    /// Established.
    Done(Established),
    /// The server refused; the failure kind.
    Fail(String),
}

/// An incoming text frame after setup.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// A loadgen payload. `pos` is the message's channel position (switchboard).
    Delivery {
        channel: Option<Cow<'a, str>>,
        payload: Payload,
        pos: Option<(Cow<'a, str>, u64)>,
    },
    /// The answer to a request with a numeric id (switchboard `reply`).
    Reply { id: u64, ok: bool },
    /// The server will close this connection soon (switchboard `goaway`).
    Goaway { reconnect_ms: Option<u64> },
    /// A text-level ping: send this text back.
    Answer(&'static str),
    /// Anything else (presence, foreign messages, pongs, errors).
    Other,
}

/// The WebSocket upgrade request of one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upgrade {
    /// Path and query, e.g. `/ws?since=e1:4`.
    pub path: String,
    /// `Authorization: Bearer …`.
    pub bearer: Option<String>,
    /// `Sec-WebSocket-Protocol`.
    pub subprotocol: Option<&'static str>,
}

/// One HTTP publish request (POST, JSON body).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiCall {
    /// Path and query, appended to the API base URL.
    pub path: String,
    pub body: String,
    /// `Authorization: Bearer …`.
    pub bearer: Option<String>,
}

/// Credentials for HTTP publishing.
#[derive(Clone, Debug, Default)]
pub struct ApiAuth {
    pub api_key: Option<String>,
    pub pusher_app_id: Option<String>,
    pub pusher_key: Option<String>,
    pub pusher_secret: Option<String>,
}

impl Protocol {
    /// The upgrade request for `user` (`token` for switchboard, `since` when resuming).
    pub fn upgrade(
        self,
        user: &str,
        token: Option<String>,
        since: Option<&Pos>,
        pusher_key: &str,
    ) -> Upgrade {
        match self {
            Protocol::Switchboard => switchboard::upgrade(token, since),
            Protocol::Socketio => socketio::upgrade(user),
            Protocol::Plain => plain::upgrade(user),
            Protocol::Pusher => pusher::upgrade(pusher_key),
        }
    }

    /// Feeds one incoming text frame of the setup conversation.
    pub fn setup_step(self, text: &[u8], user: &str) -> Step {
        match self {
            Protocol::Switchboard => switchboard::setup_step(text),
            Protocol::Socketio => socketio::setup_step(text),
            Protocol::Plain => plain::setup_step(text),
            Protocol::Pusher => pusher::setup_step(text, user),
        }
    }

    /// Classifies one incoming text frame after setup.
    pub fn classify(self, text: &[u8]) -> Incoming<'_> {
        match self {
            Protocol::Switchboard => switchboard::classify(text),
            Protocol::Socketio => socketio::classify(text),
            Protocol::Plain => plain::classify(text),
            Protocol::Pusher => pusher::classify(text),
        }
    }

    /// The HTTP request that publishes `payload` (JSON) to `user`'s personal channel.
    pub fn publish_to_user(self, auth: &ApiAuth, user: &str, payload: &str) -> ApiCall {
        match self {
            Protocol::Switchboard => switchboard::publish(auth, &format!("user:{user}"), payload),
            Protocol::Socketio | Protocol::Plain => ApiCall {
                path: "/publish".into(),
                body: format!(r#"{{"to":{},"data":{payload}}}"#, json_str(user)),
                bearer: None,
            },
            Protocol::Pusher => pusher::publish(auth, user, payload, crate::payload::now_us()),
        }
    }
}

/// `s` as a JSON string literal.
pub fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_publish_to_user_with_to_and_data() {
        let c = Protocol::Plain.publish_to_user(&ApiAuth::default(), "u1", r#"{"q":1}"#);
        assert_eq!(c.path, "/publish");
        assert_eq!(c.body, r#"{"to":"u1","data":{"q":1}}"#);
        let c = Protocol::Switchboard.publish_to_user(
            &ApiAuth {
                api_key: Some("k".into()),
                ..ApiAuth::default()
            },
            "u1",
            "1",
        );
        assert_eq!(c.path, "/v1/publish");
        assert_eq!(c.body, r#"{"channel":"user:u1","data":1}"#);
        assert_eq!(c.bearer.as_deref(), Some("k"));
    }
}
