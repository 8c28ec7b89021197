//! RESP2: commands encoded once into bytes, replies and pushes parsed incrementally from
//! a read buffer without copying bulk strings (they are slices of the buffer).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

/// A reply (or a pub/sub push) from Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Nil,
    Int(i64),
    /// `+OK`
    Simple(Bytes),
    /// `-ERR …`: an error reply (the command failed; the connection is fine).
    Error(Bytes),
    Bulk(Bytes),
    Array(Vec<Value>),
}

impl Value {
    /// The bytes of a bulk or simple string.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Value::Bulk(b) | Value::Simple(b) => Some(b),
            _ => None,
        }
    }

    /// The text of a bulk or simple string (lossy), or an integer's digits.
    pub fn to_text(&self) -> String {
        match self {
            Value::Bulk(b) | Value::Simple(b) | Value::Error(b) => {
                String::from_utf8_lossy(b).into_owned()
            }
            Value::Int(i) => i.to_string(),
            _ => String::new(),
        }
    }

    /// An integer, or a string holding one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bulk(b) | Value::Simple(b) => std::str::from_utf8(b).ok()?.parse().ok(),
            _ => None,
        }
    }

    pub fn into_array(self) -> Vec<Value> {
        match self {
            Value::Array(a) => a,
            Value::Nil => Vec::new(),
            other => vec![other],
        }
    }

    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }

    /// The message of an error reply.
    pub fn error(&self) -> Option<&[u8]> {
        match self {
            Value::Error(e) => Some(e),
            _ => None,
        }
    }
}

/// A command, encoded once (retries and redirections resend the same bytes).
#[derive(Clone, Debug)]
pub struct Cmd {
    args: usize,
    body: Vec<u8>,
    /// The hash slot of the command's keys (`None`: any node, e.g. PING).
    pub slot: Option<u16>,
    /// Whether running it twice is harmless (reads; retried after a broken connection).
    pub idempotent: bool,
    /// For EVALSHA: the script's body, loaded when the server answers NOSCRIPT.
    pub script: Option<Arc<str>>,
}

impl Cmd {
    pub fn new(name: &str) -> Cmd {
        let mut cmd = Cmd {
            args: 0,
            body: Vec::with_capacity(64),
            slot: None,
            idempotent: false,
            script: None,
        };
        cmd.push(name.as_bytes());
        cmd
    }

    fn push(&mut self, arg: &[u8]) {
        use std::io::Write as _;
        self.args += 1;
        let _ = write!(self.body, "${}\r\n", arg.len());
        self.body.extend_from_slice(arg);
        self.body.extend_from_slice(b"\r\n");
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl AsRef<[u8]>) -> Cmd {
        self.push(arg.as_ref());
        self
    }

    /// Adds an integer argument.
    pub fn int(mut self, n: impl itoa::Integer) -> Cmd {
        let mut buf = itoa::Buffer::new();
        self.push(buf.format(n).as_bytes());
        self
    }

    /// Adds a key argument; the command is routed to the key's slot.
    pub fn key(mut self, key: impl AsRef<[u8]>) -> Cmd {
        let key = key.as_ref();
        self.slot.get_or_insert(super::slot(key));
        self.push(key);
        self
    }

    /// Routes the command to `slot` (for commands whose keys are in their arguments,
    /// e.g. SPUBLISH's shard channel).
    pub fn in_slot(mut self, slot: u16) -> Cmd {
        self.slot = Some(slot);
        self
    }

    /// Marks the command safe to send again.
    pub fn idempotent(mut self) -> Cmd {
        self.idempotent = true;
        self
    }

    /// Appends the encoded command to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut buf = itoa::Buffer::new();
        out.push(b'*');
        out.extend_from_slice(buf.format(self.args).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
    }
}

/// The input is not RESP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

/// Deepest nesting accepted (Redis replies are shallow; this bounds recursion).
const MAX_DEPTH: usize = 16;

/// Takes one complete value off the front of `buf`; `Ok(None)` when more bytes are needed.
pub fn parse(buf: &mut BytesMut) -> Result<Option<Value>, ProtocolError> {
    let Some(end) = scan(buf, 0, 0)? else {
        return Ok(None);
    };
    let frame = buf.split_to(end).freeze();
    let mut pos = 0;
    Ok(Some(build(&frame, &mut pos)))
}

/// Finds the end of the value starting at `pos` (None: incomplete).
fn scan(buf: &[u8], pos: usize, depth: usize) -> Result<Option<usize>, ProtocolError> {
    if depth > MAX_DEPTH {
        return Err(ProtocolError("reply nested too deeply".into()));
    }
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    let Some(line_end) = find_crlf(buf, pos + 1) else {
        return Ok(None);
    };
    let after = line_end + 2;
    match kind {
        b'+' | b'-' | b':' => Ok(Some(after)),
        b'$' => {
            let len = number(&buf[pos + 1..line_end])?;
            if len < 0 {
                return Ok(Some(after));
            }
            let end = after + len as usize + 2;
            if buf.len() < end {
                Ok(None)
            } else if &buf[end - 2..end] != b"\r\n" {
                Err(ProtocolError("bulk string without CRLF".into()))
            } else {
                Ok(Some(end))
            }
        }
        b'*' => {
            let n = number(&buf[pos + 1..line_end])?;
            let mut at = after;
            for _ in 0..n.max(0) {
                match scan(buf, at, depth + 1)? {
                    Some(next) => at = next,
                    None => return Ok(None),
                }
            }
            Ok(Some(at))
        }
        other => Err(ProtocolError(format!(
            "unexpected RESP type byte {other:#x}"
        ))),
    }
}

/// Builds the value at `pos` of a frame known to be complete.
fn build(frame: &Bytes, pos: &mut usize) -> Value {
    let kind = frame[*pos];
    let line_end = find_crlf(frame, *pos + 1).expect("scanned");
    let line = frame.slice(*pos + 1..line_end);
    *pos = line_end + 2;
    match kind {
        b'+' => Value::Simple(line),
        b'-' => Value::Error(line),
        b':' => Value::Int(number(&line).unwrap_or(0)),
        b'$' => {
            let len = number(&line).unwrap_or(-1);
            if len < 0 {
                return Value::Nil;
            }
            let start = *pos;
            *pos += len as usize + 2;
            Value::Bulk(frame.slice(start..start + len as usize))
        }
        _ => {
            let n = number(&line).unwrap_or(-1);
            if n < 0 {
                return Value::Nil;
            }
            let mut items = Vec::with_capacity(n as usize);
            for _ in 0..n {
                items.push(build(frame, pos));
            }
            Value::Array(items)
        }
    }
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let rest = buf.get(from..)?;
    memchr_crlf(rest).map(|i| from + i)
}

fn memchr_crlf(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 1 < buf.len() {
        match buf[i + 1] {
            b'\n' if buf[i] == b'\r' => return Some(i),
            b'\r' => i += 1,
            _ => i += 2,
        }
    }
    None
}

fn number(digits: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ProtocolError("bad number in reply".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8]) -> Vec<Value> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(v) = parse(&mut buf).unwrap() {
            out.push(v);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        out
    }

    #[test]
    fn parses_every_kind() {
        let got = all(b"+OK\r\n-ERR no\r\n:42\r\n$3\r\nabc\r\n$-1\r\n*-1\r\n*2\r\n$1\r\nx\r\n*1\r\n:-7\r\n$0\r\n\r\n");
        assert_eq!(
            got,
            vec![
                Value::Simple(Bytes::from_static(b"OK")),
                Value::Error(Bytes::from_static(b"ERR no")),
                Value::Int(42),
                Value::Bulk(Bytes::from_static(b"abc")),
                Value::Nil,
                Value::Nil,
                Value::Array(vec![
                    Value::Bulk(Bytes::from_static(b"x")),
                    Value::Array(vec![Value::Int(-7)])
                ]),
                Value::Bulk(Bytes::new()),
            ]
        );
    }

    #[test]
    fn binary_bulk_strings_may_hold_crlf() {
        let got = all(b"$4\r\n\r\n\r\n\r\n");
        assert_eq!(got, vec![Value::Bulk(Bytes::from_static(b"\r\n\r\n"))]);
    }

    #[test]
    fn incomplete_input_waits_for_more_at_every_cut() {
        let input: &[u8] = b"*3\r\n$8\r\nsmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n:1\r\n";
        for cut in 0..input.len() {
            let mut buf = BytesMut::from(&input[..cut]);
            let first = parse(&mut buf).unwrap();
            if first.is_some() {
                assert!(cut >= input.len() - 4, "complete at {cut}");
                continue;
            }
            buf.extend_from_slice(&input[cut..]);
            assert!(parse(&mut buf).unwrap().is_some());
            assert_eq!(parse(&mut buf).unwrap(), Some(Value::Int(1)));
        }
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        let mut buf = BytesMut::from(&b"?what\r\n"[..]);
        assert!(parse(&mut buf).is_err());
        let mut buf = BytesMut::from(&b"$x\r\n"[..]);
        assert!(parse(&mut buf).is_err());
        let mut buf = BytesMut::from(&b"$1\r\nab\r\n"[..]);
        assert!(parse(&mut buf).is_err());
    }

    #[test]
    fn commands_encode_as_arrays_of_bulk_strings() {
        let cmd = Cmd::new("SET").key("k").arg("v").int(-5);
        let mut out = Vec::new();
        cmd.encode(&mut out);
        assert_eq!(
            out,
            b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\n-5\r\n"
        );
        assert_eq!(cmd.slot, Some(super::super::slot(b"k")));
    }
}
