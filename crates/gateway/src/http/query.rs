//! Query strings and percent-decoding: the one rule for every value the node reads from a
//! URL (`token` and `since` on `GET /ws`, `since` and `limit` on `GET /v1/history`, the
//! demo's parameters, and the server API's path segments).
//!
//! Until issue 13 the token and the other parameters were decoded by two functions that
//! disagreed (`+`, and escapes like `%+1`); see the regression test below.

/// Percent-decodes `s` (RFC 3986 §2.1, as the WHATWG URL Standard's percent-decode): `%`
/// followed by two hex digits (either case) is that byte; any other `%` stays a literal `%`
/// (`%zz`, a trailing `%4`, `%+1`: no error, like browsers). `+` is left as it is: in a
/// query string it means a space, which [`query_values`] handles before calling this; in a
/// path it is a plain `+`. The bytes are then read as UTF-8, every invalid sequence
/// replaced by U+FFFD, so decoding never fails: a replaced value fails its own check later
/// (a malformed `since`, an invalid token).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) => hex(h).zip(hex(l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The value of one hex digit (only `[0-9A-Fa-f]`, unlike `from_str_radix`, which also
/// takes a sign).
fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes one name or value of a query string the way browsers' `URLSearchParams` does
/// (WHATWG application/x-www-form-urlencoded): `+` is a space, then [`percent_decode`].
/// Both browser encoders round-trip: `URLSearchParams` writes a space as `+`,
/// `encodeURIComponent` writes it as `%20` and a `+` as `%2B`.
pub fn form_decode(s: &str) -> String {
    if s.contains('+') {
        percent_decode(&s.replace('+', " "))
    } else {
        percent_decode(s)
    }
}

/// Every value of parameter `name` in `query` (the part after `?`), in order, decoded with
/// [`form_decode`] (names are decoded too, as `URLSearchParams` does). A pair without `=`
/// has the empty value; empty pairs (`a=1&&b=2`) are skipped.
pub fn query_values<'a>(
    query: Option<&'a str>,
    name: &'a str,
) -> impl Iterator<Item = String> + 'a {
    query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter_map(move |pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(k) == name).then(|| form_decode(v))
        })
}

/// The first value of parameter `name` in `query`, like `URLSearchParams.get`.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query_values(query, name).next()
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    /// JavaScript's `encodeURIComponent`: all but `A-Za-z0-9-_.!~*'()` as `%XX` of its UTF-8.
    pub(crate) fn encode_uri_component(s: &str) -> String {
        encode(s, b"-_.!~*'()", false)
    }

    /// `URLSearchParams`' serializer (WHATWG application/x-www-form-urlencoded): a space is
    /// `+`, all but `A-Za-z0-9*-._` is `%XX`.
    pub(crate) fn encode_form(s: &str) -> String {
        encode(s, b"*-._", true)
    }

    fn encode(s: &str, keep: &[u8], plus: bool) -> String {
        let mut out = String::with_capacity(s.len());
        for &b in s.as_bytes() {
            if b.is_ascii_alphanumeric() || keep.contains(&b) {
                out.push(char::from(b));
            } else if plus && b == b' ' {
                out.push('+');
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    /// Any string, controls, `%`, `+`, `&`, `=` and non-ASCII included.
    fn any_string() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::collection::vec(any::<char>(), 0..40).prop_map(String::from_iter),
            "[%+&= a-f0-9é]{0,20}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        /// What either browser encoder writes decodes back, as a value and as a name.
        #[test]
        fn browser_encodings_round_trip(s in any_string(), name in any_string()) {
            prop_assume!(!name.is_empty() && name != "a");
            for enc in [encode_uri_component, encode_form] {
                prop_assert_eq!(form_decode(&enc(&s)), s.clone());
                let q = format!("a=1&{}={}&{}=second", enc(&name), enc(&s), enc(&name));
                prop_assert_eq!(query_param(Some(&q), &name), Some(s.clone()));
            }
            prop_assert_eq!(percent_decode(&encode_uri_component(&s)), s.clone());
        }

        /// Text without a `%` followed by two hex digits decodes to itself (`+` a space in
        /// a query), and decoding never makes a string longer (an invalid byte came from a
        /// 3-byte escape; U+FFFD is 3 bytes).
        #[test]
        fn decoding_only_touches_escapes(s in any_string()) {
            let out = percent_decode(&s);
            prop_assert!(out.len() <= s.len());
            let b = s.as_bytes();
            let escapes = (0..b.len()).any(|i| {
                b[i] == b'%' && b.len() > i + 2 && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()
            });
            if !escapes {
                prop_assert_eq!(&out, &s);
                prop_assert_eq!(form_decode(&s), s.replace('+', " "));
            }
        }
    }

    #[test]
    fn query_params() {
        assert_eq!(
            query_param(Some("a=1&since=e1%3A5"), "since").as_deref(),
            Some("e1:5")
        );
        assert_eq!(query_param(Some("since"), "since").as_deref(), Some(""));
        assert_eq!(query_param(Some("x=%zz%"), "x").as_deref(), Some("%zz%"));
        assert_eq!(query_param(Some("x=1&x=2"), "x").as_deref(), Some("1"));
        assert_eq!(
            query_param(Some("%73ince=e:1"), "since").as_deref(),
            Some("e:1")
        );
        assert_eq!(query_param(Some("&&a=1"), "a").as_deref(), Some("1"));
        assert_eq!(query_param(Some("a=1"), ""), None);
        assert_eq!(query_param(None, "since"), None);
    }

    #[test]
    fn percent_decoding_rules() {
        assert_eq!(percent_decode("a%20b%2Bc%2bd"), "a b+c+d");
        assert_eq!(percent_decode("a+b"), "a+b");
        assert_eq!(form_decode("a+b%2B"), "a b+");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%4g%g4"), "%4g%g4");
        assert_eq!(percent_decode("%+1%-1%+f"), "%+1%-1%+f");
        assert_eq!(percent_decode("%%41"), "%A");
        assert_eq!(percent_decode("%C3%A9"), "é");
        assert_eq!(percent_decode("%FFx%C3"), "\u{FFFD}x\u{FFFD}");
        assert_eq!(percent_decode("é%"), "é%");
    }
}
