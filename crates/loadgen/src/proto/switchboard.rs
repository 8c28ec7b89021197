//! Switchboard v1 JSON (docs/protocol.md): `GET /ws` with a bearer JWT and the
//! `switchboard.v1.json` subprotocol; `welcome` first; `message`, `reply`, `goaway`.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{json_str, ApiAuth, ApiCall, Established, Incoming, Pos, Step, Upgrade};
use crate::payload;

pub const SUBPROTOCOL: &str = "switchboard.v1.json";

/// The fields of any server frame that the load generator reads.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    ty: Cow<'a, str>,
    #[serde(borrow, default)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    epoch: Option<Cow<'a, str>>,
    #[serde(default)]
    offset: Option<u64>,
    /// Numeric in `reply`, a string in `message`.
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(default)]
    ok: Option<bool>,
    #[serde(default)]
    reconnect_ms: Option<u64>,
    #[serde(default)]
    recovered: Option<bool>,
    #[serde(borrow, default)]
    code: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

pub fn upgrade(token: Option<String>, since: Option<&Pos>) -> Upgrade {
    let path = match since {
        Some(p) => format!("/ws?since={}:{}", p.epoch, p.offset),
        None => "/ws".to_owned(),
    };
    Upgrade {
        path,
        bearer: token,
        subprotocol: Some(SUBPROTOCOL),
    }
}

pub fn setup_step(text: &[u8]) -> Step {
    let Ok(f) = serde_json::from_slice::<Frame>(text) else {
        return Step::Fail("bad_welcome".into());
    };
    match f.ty.as_ref() {
        "welcome" => Step::Done(Established {
            pos: f.epoch.map(|e| Pos {
                epoch: e.into_owned(),
                offset: f.offset.unwrap_or(0),
            }),
            recovered: f.recovered,
        }),
        "error" => Step::Fail(format!("error_{}", f.code.as_deref().unwrap_or("unknown"))),
        _ => Step::Fail("bad_welcome".into()),
    }
}

pub fn classify(text: &[u8]) -> Incoming<'_> {
    let Ok(f) = serde_json::from_slice::<Frame>(text) else {
        return Incoming::Other;
    };
    match f.ty.as_ref() {
        "message" => {
            let Some(payload) = f.data.and_then(|d| payload::parse(d.get().as_bytes())) else {
                return Incoming::Other;
            };
            let pos = match (f.epoch, f.offset) {
                (Some(e), Some(o)) => Some((e, o)),
                _ => None,
            };
            Incoming::Delivery {
                channel: f.channel,
                payload,
                pos,
            }
        }
        "reply" => match f.id.and_then(|id| id.get().parse::<u64>().ok()) {
            Some(id) => Incoming::Reply {
                id,
                ok: f.ok.unwrap_or(false),
            },
            None => Incoming::Other,
        },
        "goaway" => Incoming::Goaway {
            reconnect_ms: f.reconnect_ms,
        },
        _ => Incoming::Other,
    }
}

/// `{"type":"subscribe","id":…,"channel":…}`.
pub fn subscribe(id: u64, channel: &str) -> String {
    subscribe_since(id, channel, None)
}

/// A subscribe that resumes after `since` when given:
/// `{"type":"subscribe","id":…,"channel":…,"since":{"epoch":…,"offset":…}}`.
pub fn subscribe_since(id: u64, channel: &str, since: Option<&Pos>) -> String {
    let since = since.map_or_else(String::new, |p| {
        format!(
            r#","since":{{"epoch":{},"offset":{}}}"#,
            json_str(&p.epoch),
            p.offset
        )
    });
    format!(
        r#"{{"type":"subscribe","id":{id},"channel":{}{since}}}"#,
        json_str(channel)
    )
}

/// A `reply` with what a subscribe's answer carries besides `ok`.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    pub id: u64,
    pub ok: bool,
    /// The channel's newest position (`epoch`, `offset`), when present.
    pub pos: Option<Pos>,
    /// Present when the subscribe asked to resume with `since`.
    pub recovered: Option<bool>,
}

/// Parses a `reply` frame with a numeric id (None for anything else).
pub fn reply(text: &[u8]) -> Option<Reply> {
    let f = serde_json::from_slice::<Frame>(text).ok()?;
    if f.ty != "reply" {
        return None;
    }
    Some(Reply {
        id: f.id?.get().parse().ok()?,
        ok: f.ok.unwrap_or(false),
        pos: f.epoch.map(|e| Pos {
            epoch: e.into_owned(),
            offset: f.offset.unwrap_or(0),
        }),
        recovered: f.recovered,
    })
}

/// `{"type":"publish","id":…,"channel":…,"data":…}` (`payload` is JSON).
pub fn publish_frame(id: u64, channel: &str, payload: &str) -> String {
    format!(
        r#"{{"type":"publish","id":{id},"channel":{},"data":{payload}}}"#,
        json_str(channel)
    )
}

/// [`publish_frame`] with `"idempotency_key":"m<id>"`: sent again after a reconnect, the
/// same message is answered with its first offset instead of being stored twice (keys are
/// scoped per sender, and a sender numbers its messages once per run).
pub fn keyed_publish_frame(id: u64, channel: &str, payload: &str) -> String {
    format!(
        r#"{{"type":"publish","id":{id},"channel":{},"idempotency_key":"m{id}","data":{payload}}}"#,
        json_str(channel)
    )
}

/// `POST /v1/publish` of `payload` (JSON) to `channel`.
pub fn publish(auth: &ApiAuth, channel: &str, payload: &str) -> ApiCall {
    ApiCall {
        path: "/v1/publish".into(),
        body: format!(r#"{{"channel":{},"data":{payload}}}"#, json_str(channel)),
        bearer: auth.api_key.clone(),
    }
}

/// `POST /v1/batch` of `(channel, payload JSON)` items.
pub fn batch<'a>(auth: &ApiAuth, items: impl Iterator<Item = (&'a str, &'a str)>) -> ApiCall {
    let mut body = String::from(r#"{"messages":["#);
    for (i, (channel, payload)) in items.enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            r#"{{"channel":{},"data":{payload}}}"#,
            json_str(channel)
        ));
    }
    body.push_str("]}");
    ApiCall {
        path: "/v1/batch".into(),
        body,
        bearer: auth.api_key.clone(),
    }
}

#[derive(Deserialize)]
struct BatchAnswer {
    results: Vec<serde_json::Value>,
}

/// Per item of a `/v1/batch` 200 answer: accepted (no `error`) or not. `None` when the body
/// is not a batch answer.
pub fn batch_results(body: &[u8]) -> Option<Vec<bool>> {
    let a: BatchAnswer = serde_json::from_slice(body).ok()?;
    Some(
        a.results
            .iter()
            .map(|r| r.get("error").is_none() && r.get("epoch").is_some())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welcome_gives_the_position_and_recovery() {
        let w = br#"{"type":"welcome","conn_id":"c-1","user":"a","node":"n","heartbeat_ms":25000,"channel":"user:a","epoch":"e9","offset":17,"recovered":false}"#;
        assert_eq!(
            setup_step(w),
            Step::Done(Established {
                pos: Some(Pos {
                    epoch: "e9".into(),
                    offset: 17
                }),
                recovered: Some(false)
            })
        );
        assert_eq!(
            setup_step(br#"{"type":"error","code":"unavailable"}"#),
            Step::Fail("error_unavailable".into())
        );
    }

    #[test]
    fn frames_are_classified() {
        let m = br#"{"type":"message","channel":"user:a","id":"m-1","epoch":"e1","offset":5,"ts":1,"data":{"s":1,"q":2,"t":3,"p":"xx"}}"#;
        match classify(m) {
            Incoming::Delivery {
                channel,
                payload,
                pos,
            } => {
                assert_eq!(channel.as_deref(), Some("user:a"));
                assert_eq!((payload.s, payload.q, payload.t), (1, 2, 3));
                assert_eq!(pos, Some((Cow::Borrowed("e1"), 5)));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            classify(br#"{"type":"reply","id":7,"ok":true,"epoch":"e","offset":1}"#),
            Incoming::Reply { id: 7, ok: true }
        );
        assert_eq!(
            classify(br#"{"type":"reply","id":8,"ok":false,"error":{"code":"forbidden"}}"#),
            Incoming::Reply { id: 8, ok: false }
        );
        assert_eq!(
            classify(br#"{"type":"goaway","reason":"draining","reconnect_ms":1834}"#),
            Incoming::Goaway {
                reconnect_ms: Some(1834)
            }
        );
        assert_eq!(
            classify(br#"{"type":"message","channel":"room:x","data":{"text":"hi"}}"#),
            Incoming::Other
        );
    }

    #[test]
    fn subscribe_frames_with_and_without_since() {
        assert_eq!(
            subscribe(1, "room:a"),
            r#"{"type":"subscribe","id":1,"channel":"room:a"}"#
        );
        let p = Pos {
            epoch: "e1".into(),
            offset: 41,
        };
        assert_eq!(
            subscribe_since(1, "feed:lg-x-p3", Some(&p)),
            r#"{"type":"subscribe","id":1,"channel":"feed:lg-x-p3","since":{"epoch":"e1","offset":41}}"#
        );
        let v: serde_json::Value =
            serde_json::from_str(&subscribe_since(2, "room:b", Some(&p))).unwrap();
        assert_eq!(v["since"]["offset"], 41);
    }

    #[test]
    fn subscribe_replies_and_presence() {
        assert_eq!(
            reply(
                br#"{"type":"reply","id":1,"ok":true,"epoch":"e1","offset":42,"recovered":false}"#
            ),
            Some(Reply {
                id: 1,
                ok: true,
                pos: Some(Pos {
                    epoch: "e1".into(),
                    offset: 42
                }),
                recovered: Some(false)
            })
        );
        assert_eq!(
            reply(
                br#"{"type":"reply","id":1,"ok":false,"error":{"code":"forbidden","message":"x"}}"#
            ),
            Some(Reply {
                id: 1,
                ok: false,
                pos: None,
                recovered: None
            })
        );
        let presence = br#"{"type":"presence","channel":"room:lobby","user":"bob","event":"join"}"#;
        assert_eq!(reply(presence), None);
        assert_eq!(classify(presence), Incoming::Other);
        assert_eq!(reply(br#"{"type":"message","id":"m-1"}"#), None);
    }

    #[test]
    fn publish_and_batch_bodies() {
        assert_eq!(
            publish_frame(3, "user:b", r#"{"q":1}"#),
            r#"{"type":"publish","id":3,"channel":"user:b","data":{"q":1}}"#
        );
        assert_eq!(
            keyed_publish_frame(3, "user:b", r#"{"q":1}"#),
            r#"{"type":"publish","id":3,"channel":"user:b","idempotency_key":"m3","data":{"q":1}}"#
        );
        let auth = ApiAuth {
            api_key: Some("k".into()),
            ..ApiAuth::default()
        };
        let c = batch(&auth, [("user:a", "1"), ("user:b", "2")].into_iter());
        assert_eq!(c.path, "/v1/batch");
        assert_eq!(
            c.body,
            r#"{"messages":[{"channel":"user:a","data":1},{"channel":"user:b","data":2}]}"#
        );
        let ans = br#"{"results":[{"channel":"user:a","epoch":"e","offset":1,"online":true,"nodes":1},{"channel":"user:b","error":{"code":"bad_channel","message":"x"}}]}"#;
        assert_eq!(batch_results(ans), Some(vec![true, false]));
        assert_eq!(batch_results(b"{}"), None);
    }
}
