//! The reading half of the connection's task: waits for the socket to become readable,
//! reads frames, reassembles fragmented messages under the size limit of the whole
//! message, validates UTF-8, answers pings and hands each message to its [`Handler`]: the
//! session (or, development only, the echo). `read_frame` is only called once bytes are
//! there, and never raced except by the end of the connection (`driver`).

use bytes::BytesMut;
use fastwebsockets::{OpCode, Payload, WebSocketError, WebSocketRead};
use switchboard_proto::{close, Encoding, ErrorCode};
use tokio::io::AsyncRead;

use super::driver::Driver;
use crate::conn::outbound::{CloseRequest, Item, Kind};
use crate::conn::socket::SocketReader;
use crate::conn::ConnHandle;
use crate::session::Session;

/// What a connection does with each complete message. The reader has checked everything
/// WebSocket (framing, the message size limit, UTF-8 of text) before it calls this.
pub trait Handler {
    /// Handles one message (`op` is `Text` or `Binary`); a close request ends the
    /// connection.
    async fn message(&mut self, op: OpCode, bytes: BytesMut) -> Option<CloseRequest>;
}

impl Handler for Session {
    async fn message(&mut self, op: OpCode, bytes: BytesMut) -> Option<CloseRequest> {
        let expected = match self.encoding() {
            Encoding::Json => OpCode::Text,
            Encoding::Proto => OpCode::Binary,
        };
        if op != expected {
            let what = if expected == OpCode::Text {
                "text"
            } else {
                "binary"
            };
            self.error(
                ErrorCode::BadFrame,
                &format!("this subprotocol uses {what} frames"),
            );
            // A frame of the wrong kind is a bad frame like any other (docs/protocol.md §4).
            return self.bad_frame();
        }
        self.handle(&bytes).await
    }
}

/// How the reader stopped.
#[derive(Debug)]
pub enum End {
    /// The peer sent a close frame with this code (1005 when it had none).
    PeerClose(u16),
    /// The transport ended without a close frame.
    Eof,
    /// The server decided to close (protocol error, limits, session).
    Close(CloseRequest),
    /// The connection is over: the socket failed, or the peer did not answer our close.
    Over,
}

/// A fragmented message being reassembled.
struct Partial {
    op: OpCode,
    buf: BytesMut,
    /// How many bytes at the start of `buf` are known to be UTF-8 (text messages): each
    /// fragment is checked as it arrives, so invalid text fails fast (RFC 6455 §8.1)
    /// instead of after the last fragment, and no byte is checked twice.
    utf8_checked: usize,
}

impl Partial {
    fn new(op: OpCode, buf: BytesMut) -> Partial {
        Partial {
            op,
            buf,
            utf8_checked: 0,
        }
    }

    /// Whether the text so far can still be UTF-8: valid, except perhaps for a character
    /// that the next fragment finishes. Always true for binary messages.
    fn text_so_far_ok(&mut self) -> bool {
        if self.op != OpCode::Text {
            return true;
        }
        match std::str::from_utf8(&self.buf[self.utf8_checked..]) {
            Ok(_) => {
                self.utf8_checked = self.buf.len();
                true
            }
            Err(e) => {
                self.utf8_checked += e.valid_up_to();
                e.error_len().is_none()
            }
        }
    }
}

fn invalid_utf8() -> End {
    End::Close(CloseRequest::new(close::INVALID_PAYLOAD, "invalid UTF-8"))
}

/// A frame's payload as an owned buffer (without a copy when it is one already).
fn owned(payload: Payload<'_>) -> BytesMut {
    match payload {
        Payload::Bytes(b) => b,
        other => BytesMut::from(&other[..]),
    }
}

pub async fn run(
    driver: &mut Driver<'_>,
    rd: &mut WebSocketRead<SocketReader>,
    handler: &mut impl Handler,
    conn: &ConnHandle,
    max_bytes: usize,
) -> End {
    let mut partial: Option<Partial> = None;
    let mut no_send = |_| async { Ok::<(), std::io::Error>(()) };
    loop {
        if !rd.has_buffered() {
            // Idle: no read buffer, and a cancel-safe wait.
            rd.release_idle_buffer();
            match driver.readable().await {
                None => return End::Over,
                Some(Err(_)) => return End::Eof,
                Some(Ok(())) => {}
            }
        }
        let frame = match driver.run(Box::pin(rd.read_frame(&mut no_send))).await {
            None => return End::Over,
            Some(Err(e)) => return from_error(e),
            Some(Ok(f)) => f,
        };
        conn.seen();
        // RFC 6455 §5.5: control frames carry at most 125 bytes (fastwebsockets only
        // checks pings).
        let control = matches!(frame.opcode, OpCode::Close | OpCode::Ping | OpCode::Pong);
        if control && frame.payload.len() > 125 {
            return protocol("control frame longer than 125 bytes");
        }
        let message = match frame.opcode {
            OpCode::Text | OpCode::Binary => {
                if partial.is_some() {
                    return protocol("new message before the previous one ended");
                }
                let mut message = Partial::new(frame.opcode, owned(frame.payload));
                if !frame.fin {
                    if !message.text_so_far_ok() {
                        return invalid_utf8();
                    }
                    partial = Some(message);
                    continue;
                }
                message
            }
            OpCode::Continuation => {
                let Some(mut message) = partial.take() else {
                    return protocol("continuation without a message");
                };
                if message.buf.len() + frame.payload.len() > max_bytes {
                    return End::Close(CloseRequest::new(
                        close::MESSAGE_TOO_BIG,
                        "message too big",
                    ));
                }
                message.buf.extend_from_slice(&frame.payload);
                if !frame.fin {
                    if !message.text_so_far_ok() {
                        return invalid_utf8();
                    }
                    partial = Some(message);
                    continue;
                }
                message
            }
            OpCode::Close => return peer_close(&frame.payload),
            OpCode::Ping => {
                conn.outbound.push(Item {
                    data: owned(frame.payload).freeze(),
                    published_ms: None,
                    kind: Kind::Pong,
                });
                continue;
            }
            OpCode::Pong => continue,
        };
        let Partial {
            op,
            buf: bytes,
            utf8_checked,
        } = message;
        if op == OpCode::Text && std::str::from_utf8(&bytes[utf8_checked..]).is_err() {
            return invalid_utf8();
        }
        if conn.outbound.is_closing() {
            // Our close is out or queued: what the peer sends until it answers it is not
            // handled (a publish stored now could not be answered).
            continue;
        }
        // Boxed: the session's work is large state that an idle connection need not carry.
        conn.outbound.begin_message();
        let handled = driver.run(Box::pin(handler.message(op, bytes))).await;
        let deferred = conn.outbound.end_message();
        match handled {
            None => return End::Over,
            Some(Some(close)) => return End::Close(close),
            Some(None) => {}
        }
        if let Some(close) = deferred {
            return End::Close(close);
        }
    }
}

/// After the server decided to close: reads and drops frames until the peer's close
/// frame, the end of the stream or a frame that cannot be read.
pub async fn discard_until_close<S: AsyncRead + Unpin>(rd: &mut WebSocketRead<S>) {
    let mut no_send = |_| async { Ok::<(), std::io::Error>(()) };
    while let Ok(frame) = rd.read_frame(&mut no_send).await {
        if frame.opcode == OpCode::Close {
            return;
        }
    }
}

fn protocol(reason: &str) -> End {
    End::Close(CloseRequest::new(close::PROTOCOL_ERROR, reason))
}

fn from_error(e: WebSocketError) -> End {
    match e {
        WebSocketError::InvalidUTF8 => invalid_utf8(),
        WebSocketError::FrameTooLarge => {
            End::Close(CloseRequest::new(close::MESSAGE_TOO_BIG, "message too big"))
        }
        WebSocketError::UnexpectedEOF
        | WebSocketError::IoError(_)
        | WebSocketError::ConnectionClosed => End::Eof,
        other => protocol(&other.to_string()),
    }
}

/// Validates a received close frame (RFC 6455 §5.5.1, §7.4).
fn peer_close(payload: &[u8]) -> End {
    match payload.len() {
        0 => End::PeerClose(1005),
        1 => protocol("close frame with a 1-byte payload"),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if std::str::from_utf8(&payload[2..]).is_err() {
                return invalid_utf8();
            }
            let allowed = matches!(code, 1000..=1003 | 1007..=1011 | 1012..=1014 | 3000..=4999);
            if allowed {
                End::PeerClose(code)
            } else {
                protocol("invalid close code")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `fragments` of a text message; the verdict after each.
    fn verdicts(fragments: &[&[u8]]) -> Vec<bool> {
        let mut message = Partial::new(OpCode::Text, BytesMut::new());
        fragments
            .iter()
            .map(|f| {
                message.buf.extend_from_slice(f);
                message.text_so_far_ok()
            })
            .collect()
    }

    #[test]
    fn text_fails_as_soon_as_a_fragment_cannot_become_utf8() {
        // A character split across fragments waits for its end.
        assert_eq!(verdicts(&[b"price \xe2", b"\x82", b"\xac 5"]), [true; 3]);
        // 0xF4 0x90 is past U+10FFFF: invalid before the character ends.
        assert_eq!(verdicts(&[b"ok", b"\xf4\x90"]), [true, false]);
        // A stray continuation byte, and a lead byte followed by ASCII.
        assert_eq!(verdicts(&[b"\x80"]), [false]);
        assert_eq!(verdicts(&[b"\xe2\x82", b"A"]), [true, false]);
    }

    #[test]
    fn checked_bytes_are_not_checked_again() {
        let mut message = Partial::new(OpCode::Text, BytesMut::from(&b"abc\xe2\x82"[..]));
        assert!(message.text_so_far_ok());
        assert_eq!(message.utf8_checked, 3, "the unfinished character waits");
        message.buf.extend_from_slice(b"\xacdef");
        assert!(message.text_so_far_ok());
        assert_eq!(message.utf8_checked, message.buf.len());
    }

    #[test]
    fn binary_is_never_checked() {
        let mut message = Partial::new(OpCode::Binary, BytesMut::from(&b"\xff\xfe"[..]));
        assert!(message.text_so_far_ok());
    }
}
