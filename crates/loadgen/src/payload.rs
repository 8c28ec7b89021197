//! The message payload and the clock.
//!
//! `{"s":<pair or publisher index>,"q":<seq from 0>,"t":<scheduled unix µs>,"p":"<padding>"}`,
//! padded so the JSON is about `--payload-bytes` long. `t` is the *scheduled* send time, so a
//! late sender does not hide its lateness (no coordinated omission); senders and receivers
//! share the host clock.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

/// Microseconds since the Unix epoch (0 before 1970).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Builds the payload JSON for sender/publisher `s`, sequence `q`, scheduled at `t_us`,
/// padded with `x` to about `size` bytes (never shorter than the fields need).
pub fn build(s: u64, q: u64, t_us: u64, size: usize) -> String {
    let mut out = String::with_capacity(size.max(48));
    out.push_str("{\"s\":");
    out.push_str(&s.to_string());
    out.push_str(",\"q\":");
    out.push_str(&q.to_string());
    out.push_str(",\"t\":");
    out.push_str(&t_us.to_string());
    out.push_str(",\"p\":\"");
    let pad = size.saturating_sub(out.len() + 2);
    out.extend(std::iter::repeat_n('x', pad));
    out.push_str("\"}");
    out
}

/// The fields a receiver needs (the padding is skipped).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub struct Payload {
    pub s: u64,
    pub q: u64,
    pub t: u64,
}

/// Parses a payload; `None` for anything else (foreign messages are ignored).
pub fn parse(json: &[u8]) -> Option<Payload> {
    serde_json::from_slice(json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_padded_to_size_and_round_trips() {
        let p = build(7, 42, 1_763_800_000_123_456, 64);
        assert_eq!(p.len(), 64);
        assert!(p.starts_with(r#"{"s":7,"q":42,"t":1763800000123456,"p":"x"#));
        let v: serde_json::Value = serde_json::from_str(&p).unwrap();
        assert_eq!(v["p"].as_str().unwrap().len(), 64 - 42);
        assert_eq!(
            parse(p.as_bytes()),
            Some(Payload {
                s: 7,
                q: 42,
                t: 1_763_800_000_123_456
            })
        );
    }

    #[test]
    fn payload_never_shorter_than_its_fields() {
        let p = build(123_456, 789, 1, 8);
        assert_eq!(p, r#"{"s":123456,"q":789,"t":1,"p":""}"#);
        assert_eq!(build(0, 0, 0, 1000).len(), 1000);
    }

    #[test]
    fn foreign_json_is_not_a_payload() {
        assert_eq!(parse(br#"{"text":"hi"}"#), None);
        assert_eq!(parse(b"not json"), None);
    }
}
