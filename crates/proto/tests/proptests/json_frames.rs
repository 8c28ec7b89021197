//! The `switchboard.v1.json` client decoder (docs/protocol.md §4): every input is a frame,
//! `bad_frame` or `unknown_type`.

use proptest::prelude::*;
use serde_json::{Map, Value};
use switchboard_proto::json::decode_client;
use switchboard_proto::{ClientFrame, DecodeError, ErrorCode};

use crate::gen::{self, any_string, json_value, model, odd_number_text, CLIENT_TYPES};

/// The documented outcomes: a frame, or `bad_frame` / `unknown_type` with a message.
fn decode(bytes: &[u8]) -> Result<ClientFrame, DecodeError> {
    let r = decode_client(bytes);
    if let Err(e) = &r {
        assert!(
            matches!(e.code, ErrorCode::BadFrame | ErrorCode::UnknownType),
            "undocumented code {:?} for {:?}",
            e.code,
            String::from_utf8_lossy(bytes)
        );
        assert!(!e.message.is_empty());
    }
    r
}

fn type_of(frame: &ClientFrame) -> &'static str {
    match frame {
        ClientFrame::Subscribe { .. } => "subscribe",
        ClientFrame::Unsubscribe { .. } => "unsubscribe",
        ClientFrame::Publish { .. } => "publish",
        ClientFrame::Ack { .. } => "ack",
        ClientFrame::Refresh { .. } => "refresh",
        ClientFrame::Ping { .. } => "ping",
        ClientFrame::Rpc { .. } => "rpc",
        #[allow(unreachable_patterns)]
        _ => "other",
    }
}

/// An object's text with one member's value replaced by raw JSON text (for number literals
/// that a `serde_json::Value` cannot hold).
fn with_raw(obj: &Map<String, Value>, key: &str, raw: &str) -> String {
    let mut parts: Vec<String> = obj
        .iter()
        .filter(|(k, _)| k.as_str() != key)
        .map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), v))
        .collect();
    parts.push(format!("{}:{raw}", Value::from(key)));
    format!("{{{}}}", parts.join(","))
}

/// Members a client frame may carry, each with the JSON type the decoder wants
/// (`idempotency_key`: docs/protocol.md §5, a malformed one is `bad_frame`).
const FIELDS: &[&str] = &[
    "type",
    "id",
    "channel",
    "since",
    "data",
    "data_b64",
    "offset",
    "epoch",
    "token",
    "method",
    "traceparent",
    "idempotency_key",
];

proptest! {
    #![proptest_config(gen::config(512))]

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn arbitrary_text(text in any_string(256)) {
        let _ = decode(text.as_bytes());
    }
}

proptest! {
    #![proptest_config(gen::config(256))]

    /// Any JSON value: only an object whose `type` is a string can be anything but
    /// `bad_frame`; `unknown_type` only for a type we do not know; a frame only for a type we
    /// know, carrying the value's fields.
    #[test]
    fn arbitrary_json_values(v in json_value()) {
        let r = decode(v.to_string().as_bytes());
        let ty = v.as_object().and_then(|o| o.get("type")).and_then(Value::as_str);
        match (&r, ty) {
            (Err(e), None) => prop_assert_eq!(e.code, ErrorCode::BadFrame),
            (Err(e), Some(t)) if e.code == ErrorCode::UnknownType => {
                prop_assert!(!CLIENT_TYPES.contains(&t))
            }
            (Err(_), Some(_)) => {}
            (Ok(f), t) => {
                prop_assert_eq!(Some(type_of(f)), t);
                if t != Some("ack") {
                    prop_assert_eq!(f.id(), v.get("id").and_then(Value::as_u64));
                }
            }
        }
    }

    /// Objects whose members have the names the decoder reads but any values.
    #[test]
    fn known_members_with_any_values(
        ty in prop::sample::select(CLIENT_TYPES),
        members in prop::collection::vec((prop::sample::select(&FIELDS[1..]), json_value()), 0..6),
    ) {
        let mut o = Map::new();
        o.insert("type".into(), ty.into());
        o.extend(members.into_iter().map(|(k, v)| (k.to_owned(), v)));
        if let Ok(f) = decode(Value::Object(o).to_string().as_bytes()) {
            prop_assert_eq!(type_of(&f), ty);
        }
    }

    /// Valid frames decode to exactly what was sent.
    #[test]
    fn valid_frames_round_trip(m in model()) {
        let text = Value::Object(m.to_json()).to_string();
        let f = decode(text.as_bytes()).expect("a valid frame decodes");
        m.assert_decoded(&f, false);
    }

    /// A valid frame with a `type` we do not know is `unknown_type`.
    #[test]
    fn unknown_types(m in model(), ty in any_string(40)) {
        prop_assume!(!CLIENT_TYPES.contains(&ty.as_str()));
        let mut o = m.to_json();
        o.insert("type".into(), ty.into());
        let e = decode(Value::Object(o).to_string().as_bytes()).unwrap_err();
        prop_assert_eq!(e.code, ErrorCode::UnknownType);
        prop_assert!(e.message.len() < 120, "the message quotes the type truncated");
    }

    /// A valid frame with one member's value replaced by any JSON value: a frame of the same
    /// type, or `bad_frame` (never `unknown_type`: the type is still known).
    #[test]
    fn mutated_member(m in model(), field in prop::sample::select(&FIELDS[1..]), v in json_value()) {
        let mut o = m.to_json();
        o.insert(field.into(), v);
        match decode(Value::Object(o).to_string().as_bytes()) {
            Ok(f) => prop_assert_eq!(type_of(&f), m.type_name()),
            Err(e) => prop_assert_eq!(e.code, ErrorCode::BadFrame),
        }
    }

    /// Numbers out of `u64` (negative, fractional, too large, exponents) in `id` or
    /// `offset`, and where a number is wanted inside `since`, are `bad_frame`.
    #[test]
    fn numbers_out_of_range(m in model(), n in odd_number_text(), field in prop::sample::select(&["id", "offset"][..])) {
        prop_assume!(n.parse::<u64>().is_err());
        let o = m.to_json();
        let text = with_raw(&o, field, &n);
        let r = decode(text.as_bytes());
        prop_assert_eq!(r.unwrap_err().code, ErrorCode::BadFrame, "{}", text);
        let since = format!(r#"{{"type":"subscribe","channel":"room:a","since":{{"epoch":"e","offset":{n}}}}}"#);
        prop_assert_eq!(decode(since.as_bytes()).unwrap_err().code, ErrorCode::BadFrame);
    }

    /// A member nested far deeper than serde's recursion limit.
    #[test]
    fn deep_nesting(m in model(), depth in 100usize..2000, field in prop::sample::select(FIELDS)) {
        let raw = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let _ = decode(with_raw(&m.to_json(), field, &raw).as_bytes());
        let unclosed = format!("{{\"type\":\"publish\",\"channel\":\"room:a\",\"data\":{}", "{\"a\":".repeat(depth));
        prop_assert_eq!(decode(unclosed.as_bytes()).unwrap_err().code, ErrorCode::BadFrame);
    }

    /// Byte-level damage to a valid frame: cut short, a byte replaced (often invalid UTF-8),
    /// a byte inserted.
    #[test]
    fn damaged_bytes(m in model(), at in any::<prop::sample::Index>(), b in any::<u8>()) {
        let text = Value::Object(m.to_json()).to_string().into_bytes();
        let i = at.index(text.len());
        let _ = decode(&text[..i]);
        let mut replaced = text.clone();
        replaced[i] = b;
        let _ = decode(&replaced);
        let mut inserted = text.clone();
        inserted.insert(i, b);
        let _ = decode(&inserted);
        // An object cut before its closing brace is never a frame.
        prop_assert_eq!(decode(&text[..i]).unwrap_err().code, ErrorCode::BadFrame);
    }

    /// `since` and `epoch` strings of any shape: a frame only when the epoch is valid.
    #[test]
    fn since_strings(since in any_string(80)) {
        let text = serde_json::json!({"type": "subscribe", "channel": "room:a", "since": since}).to_string();
        match decode(text.as_bytes()) {
            Ok(ClientFrame::Subscribe { since: Some(p), .. }) => {
                prop_assert!(switchboard_proto::model::is_valid_epoch(&p.epoch));
                let prefix = format!("{}:", p.epoch);
                prop_assert!(since.starts_with(&prefix));
            }
            Ok(f) => prop_assert!(false, "decoded as {:?}", f),
            Err(e) => prop_assert_eq!(e.code, ErrorCode::BadFrame),
        }
    }
}
