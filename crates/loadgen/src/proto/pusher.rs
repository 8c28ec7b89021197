//! Pusher protocol 7 (Sockudo and other Pusher-compatible servers).
//!
//! `GET /app/<key>?protocol=7&client=loadgen&version=1.0`; the server sends
//! `pusher:connection_established`; the client subscribes to `user-<id>` and the connection
//! is established at `pusher_internal:subscription_succeeded`. `pusher:ping` is answered with
//! `pusher:pong`. Deliveries are `{"event":"msg","channel":…,"data":"<payload JSON string>"}`.
//! Publishing is `POST /apps/<id>/events` signed with HMAC-SHA256 over
//! `"POST\n<path>\n<sorted query without auth_signature>"`.

use std::borrow::Cow;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::Sha256;

use super::{json_str, ApiAuth, ApiCall, Established, Incoming, Step, Upgrade};
use crate::payload;

pub const PONG: &str = r#"{"event":"pusher:pong","data":{}}"#;

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow, default)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// The personal channel of `user`.
pub fn channel(user: &str) -> String {
    format!("user-{user}")
}

pub fn upgrade(key: &str) -> Upgrade {
    Upgrade {
        path: format!("/app/{key}?protocol=7&client=loadgen&version=1.0"),
        bearer: None,
        subprotocol: None,
    }
}

pub fn setup_step(text: &[u8], user: &str) -> Step {
    let Ok(e) = serde_json::from_slice::<Event>(text) else {
        return Step::Fail("bad_frame".into());
    };
    match e.event.as_ref() {
        "pusher:connection_established" => Step::Send(format!(
            r#"{{"event":"pusher:subscribe","data":{{"channel":{}}}}}"#,
            json_str(&channel(user))
        )),
        "pusher_internal:subscription_succeeded" => Step::Done(Established::default()),
        "pusher:ping" => Step::Send(PONG.into()),
        "pusher:error" | "pusher:subscription_error" => Step::Fail("pusher_error".into()),
        _ => Step::Wait,
    }
}

pub fn classify(text: &[u8]) -> Incoming<'_> {
    let Ok(e) = serde_json::from_slice::<Event>(text) else {
        return Incoming::Other;
    };
    match e.event.as_ref() {
        "pusher:ping" => Incoming::Answer(PONG),
        "msg" => {
            // `data` is the payload JSON as a string (some servers pass objects through).
            let Some(raw) = e.data else {
                return Incoming::Other;
            };
            let parsed = match serde_json::from_str::<Cow<str>>(raw.get()) {
                Ok(s) => payload::parse(s.as_bytes()),
                Err(_) => payload::parse(raw.get().as_bytes()),
            };
            match parsed {
                Some(payload) => Incoming::Delivery {
                    channel: e.channel,
                    payload,
                    pos: None,
                },
                None => Incoming::Other,
            }
        }
        _ => Incoming::Other,
    }
}

/// Lower-case hex MD5 of `body`.
pub fn body_md5(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// The signed query string (`auth_key`, `auth_timestamp`, `auth_version`, `body_md5`,
/// `auth_signature`) of `POST <path>` with `body`.
pub fn signed_query(path: &str, key: &str, secret: &str, body: &[u8], timestamp: u64) -> String {
    // Sorted by key, as the signature requires.
    let query = format!(
        "auth_key={key}&auth_timestamp={timestamp}&auth_version=1.0&body_md5={}",
        body_md5(body)
    );
    let to_sign = format!("POST\n{path}\n{query}");
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(to_sign.as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    format!("{query}&auth_signature={signature}")
}

/// `POST /apps/<id>/events` of `payload` (JSON) to `user-<user>`, signed at `now_us`.
pub fn publish(auth: &ApiAuth, user: &str, payload: &str, now_us: u64) -> ApiCall {
    let app_id = auth.pusher_app_id.as_deref().unwrap_or_default();
    let path = format!("/apps/{app_id}/events");
    let body = format!(
        r#"{{"name":"msg","channels":[{}],"data":{}}}"#,
        json_str(&channel(user)),
        json_str(payload)
    );
    let query = signed_query(
        &path,
        auth.pusher_key.as_deref().unwrap_or_default(),
        auth.pusher_secret.as_deref().unwrap_or_default(),
        body.as_bytes(),
        now_us / 1_000_000,
    );
    ApiCall {
        path: format!("{path}?{query}"),
        body,
        bearer: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::Payload;

    /// The worked example of the Pusher HTTP API reference ("Generating authentication
    /// signatures").
    #[test]
    fn signature_matches_the_published_example() {
        let body = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        assert_eq!(body_md5(body), "ec365a775a4cd0599faeb73354201b6f");
        let q = signed_query(
            "/apps/3/events",
            "278d425bdf160c739803",
            "7ad3773142a6692b25b8",
            body,
            1353088179,
        );
        assert_eq!(
            q,
            "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0\
             &body_md5=ec365a775a4cd0599faeb73354201b6f\
             &auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
    }

    #[test]
    fn publish_request_shape() {
        let auth = ApiAuth {
            pusher_app_id: Some("app1".into()),
            pusher_key: Some("key1".into()),
            pusher_secret: Some("sec".into()),
            ..ApiAuth::default()
        };
        let c = publish(&auth, "u1", r#"{"s":1}"#, 1_700_000_000_000_000);
        assert!(c.path.starts_with(
            "/apps/app1/events?auth_key=key1&auth_timestamp=1700000000&auth_version=1.0&body_md5="
        ));
        assert_eq!(
            c.body,
            r#"{"name":"msg","channels":["user-u1"],"data":"{\"s\":1}"}"#
        );
    }

    #[test]
    fn setup_and_deliveries() {
        let est = br#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.2\",\"activity_timeout\":120}"}"#;
        assert_eq!(
            setup_step(est, "u1"),
            Step::Send(r#"{"event":"pusher:subscribe","data":{"channel":"user-u1"}}"#.into())
        );
        let ok = br#"{"event":"pusher_internal:subscription_succeeded","channel":"user-u1","data":"{}"}"#;
        assert_eq!(setup_step(ok, "u1"), Step::Done(Established::default()));
        assert_eq!(
            classify(br#"{"event":"pusher:ping","data":{}}"#),
            Incoming::Answer(PONG)
        );
        let m = br#"{"event":"msg","channel":"user-u1","data":"{\"s\":2,\"q\":5,\"t\":9,\"p\":\"x\"}"}"#;
        assert_eq!(
            classify(m),
            Incoming::Delivery {
                channel: Some(Cow::Borrowed("user-u1")),
                payload: Payload { s: 2, q: 5, t: 9 },
                pos: None
            }
        );
    }
}
