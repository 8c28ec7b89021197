//! The plain WebSocket peer (`ws` + ioredis): `GET /?user=<id>`, `{"type":"hello"}` first,
//! then text frames that are exactly the payload JSON.

use super::socketio::query_escape;
use super::{Established, Incoming, Step, Upgrade};
use crate::payload;

pub fn upgrade(user: &str) -> Upgrade {
    Upgrade {
        path: format!("/?user={}", query_escape(user)),
        bearer: None,
        subprotocol: None,
    }
}

pub fn setup_step(text: &[u8]) -> Step {
    #[derive(serde::Deserialize)]
    struct Hello<'a> {
        #[serde(rename = "type")]
        ty: &'a str,
    }
    match serde_json::from_slice::<Hello>(text) {
        Ok(h) if h.ty == "hello" => Step::Done(Established::default()),
        _ => Step::Fail("bad_hello".into()),
    }
}

pub fn classify(text: &[u8]) -> Incoming<'_> {
    match payload::parse(text) {
        Some(payload) => Incoming::Delivery {
            channel: None,
            payload,
            pos: None,
        },
        None => Incoming::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::Payload;

    #[test]
    fn hello_then_raw_payloads() {
        assert_eq!(
            setup_step(br#"{"type":"hello"}"#),
            Step::Done(Established::default())
        );
        assert_eq!(setup_step(b"{}"), Step::Fail("bad_hello".into()));
        assert_eq!(
            classify(br#"{"s":1,"q":2,"t":3,"p":""}"#),
            Incoming::Delivery {
                channel: None,
                payload: Payload { s: 1, q: 2, t: 3 },
                pos: None
            }
        );
        assert_eq!(upgrade("u1").path, "/?user=u1");
    }
}
