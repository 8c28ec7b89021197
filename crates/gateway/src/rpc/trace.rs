//! W3C trace context (`traceparent`, https://www.w3.org/TR/trace-context/): every forwarded
//! call carries `00-<32 hex trace-id>-<16 hex span-id>-<flags>`. A valid `traceparent`
//! sent by the client in its `rpc` frame is continued (same trace id and flags, new span
//! id); otherwise each call starts a new trace (flags `01`, sampled).

use rand::Rng as _;

/// The trace a call belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trace {
    trace_id: [u8; 16],
    flags: u8,
}

impl Trace {
    /// Continues the client's trace when `client` is a valid `traceparent`, else a new one.
    pub fn for_call(client: Option<&str>) -> Trace {
        client.and_then(parse).unwrap_or_else(|| {
            let mut trace_id = [0u8; 16];
            while trace_id == [0; 16] {
                rand::rng().fill(&mut trace_id);
            }
            Trace { trace_id, flags: 1 }
        })
    }

    /// The header for one request of this trace: a new span id each time.
    pub fn traceparent(&self) -> String {
        let mut span_id = [0u8; 8];
        while span_id == [0; 8] {
            rand::rng().fill(&mut span_id);
        }
        let mut out = String::with_capacity(55);
        out.push_str("00-");
        hex(&mut out, &self.trace_id);
        out.push('-');
        hex(&mut out, &span_id);
        out.push('-');
        hex(&mut out, &[self.flags]);
        out
    }
}

fn hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

/// Lowercase hex of exactly `N` bytes.
fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in s.as_bytes().chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// A valid `traceparent`: version `00` with exactly four fields, or a later version
/// (not `ff`) whose first four fields have the version-00 shape; trace and parent ids
/// not all zero.
fn parse(s: &str) -> Option<Trace> {
    let s = s.trim();
    let mut fields = s.splitn(5, '-');
    let version = unhex::<1>(fields.next()?)?[0];
    let trace_id = unhex::<16>(fields.next()?)?;
    let parent_id = unhex::<8>(fields.next()?)?;
    let flags_field = fields.next()?;
    let rest = fields.next();
    let flags = unhex::<1>(flags_field)?[0];
    let shape_ok = match version {
        0 => rest.is_none(),
        0xff => false,
        _ => true,
    };
    (shape_ok && trace_id != [0; 16] && parent_id != [0; 8]).then_some(Trace { trace_id, flags })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn fields(tp: &str) -> Vec<String> {
        tp.split('-').map(str::to_owned).collect()
    }

    #[test]
    fn a_valid_traceparent_is_continued_with_a_new_span() {
        let tp = Trace::for_call(Some(CLIENT)).traceparent();
        let f = fields(&tp);
        assert_eq!(tp.len(), 55, "{tp}");
        assert_eq!(f[0], "00");
        assert_eq!(f[1], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(f[2], "00f067aa0ba902b7", "a new span id");
        assert_eq!(f[2].len(), 16);
        assert_eq!(f[3], "01");
        // Flags are kept; a later version is understood and answered as 00.
        let tp = Trace::for_call(Some(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        ))
        .traceparent();
        assert_eq!(fields(&tp)[3], "00");
        let tp = Trace::for_call(Some(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever",
        ))
        .traceparent();
        assert_eq!(fields(&tp)[..2], ["00", "4bf92f3577b34da6a3ce929d0e0e4736"]);
    }

    #[test]
    fn invalid_traceparents_start_a_new_trace() {
        for bad in [
            "",
            "garbage",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
            let f = fields(&Trace::for_call(Some(bad)).traceparent());
            assert_ne!(f[1], "4bf92f3577b34da6a3ce929d0e0e4736", "{bad:?}");
            assert_eq!(f[3], "01");
        }
    }

    #[test]
    fn new_traces_are_random_and_well_formed() {
        let a = Trace::for_call(None);
        let b = Trace::for_call(None);
        assert_ne!(a, b);
        let tp = a.traceparent();
        assert!(parse(&tp).is_some(), "{tp}");
        assert_eq!(parse(&tp), Some(a));
        assert_ne!(a.traceparent(), tp, "every request gets its own span id");
    }
}
