//! One WebSocket connection: bind a source address, TCP connect, HTTP/1.1 upgrade, the
//! protocol's setup conversation; then the read loop every mode shares.
//!
//! fastwebsockets reads are not cancel-safe (a frame header is consumed before its payload
//! has arrived), so a connection's reader is never raced in a `select!`: it runs in its own
//! task until the connection ends, and everything that writes (pongs, publishes, the final
//! close) goes through the shared [`Writer`]. Per connection that is one task, one 8 KiB read
//! buffer and one small mutex; no other buffers.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use bytes::{Buf, Bytes};
use fastwebsockets::WebSocketWrite;
use fastwebsockets::{FragmentCollectorRead, Frame, OpCode, Payload, Role, WebSocketError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpSocket;

pub use crate::addr::Endpoint;
use crate::cli::Protocol;
use crate::payload::now_us;
use crate::proto::{Established, Step, Upgrade};

pub type WsRead = FragmentCollectorRead<Prefixed<OwnedReadHalf>>;
pub type WsWrite = WebSocketWrite<OwnedWriteHalf>;
/// A connection's write half, shared by its reader (pongs, close echoes), its sender
/// (publishes) and the shutdown. `None` while disconnected.
pub type Writer = Arc<tokio::sync::Mutex<Option<WsWrite>>>;

/// Longest HTTP upgrade answer head we accept.
const MAX_HEAD: usize = 16 * 1024;
/// How long a close frame may take to write before the connection is given up.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

pub fn new_writer() -> Writer {
    Arc::new(tokio::sync::Mutex::new(None))
}

/// Why a connection attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("timed out")]
    Timeout,
    #[error("HTTP {0} instead of 101")]
    Http(u16),
    #[error("closed with {0} during setup")]
    Closed(u16),
    #[error("connection ended during setup")]
    Eof,
    #[error("refused by the server: {0}")]
    Refused(String),
    #[error("websocket: {0}")]
    Ws(String),
    #[error("token: {0}")]
    Token(String),
}

impl ConnectError {
    /// The failure kind reported in `connections.failures`.
    pub fn kind(&self) -> String {
        match self {
            ConnectError::Io(e) => io_kind(e).to_owned(),
            ConnectError::Timeout => "timeout".into(),
            ConnectError::Http(s) => format!("http_{s}"),
            ConnectError::Closed(c) => format!("closed_{c}"),
            ConnectError::Eof => "eof".into(),
            ConnectError::Refused(k) => k.clone(),
            ConnectError::Ws(_) => "ws_protocol".into(),
            ConnectError::Token(_) => "token".into(),
        }
    }
}

fn io_kind(e: &io::Error) -> &'static str {
    use io::ErrorKind as K;
    match e.raw_os_error() {
        Some(23 | 24) => return "too_many_files",
        Some(99) => return "addr_unavailable",
        _ => {}
    }
    match e.kind() {
        K::ConnectionRefused => "refused",
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => "reset",
        K::TimedOut => "timeout",
        K::AddrNotAvailable | K::AddrInUse => "addr_unavailable",
        K::UnexpectedEof => "eof",
        _ => "io",
    }
}

impl From<WebSocketError> for ConnectError {
    fn from(e: WebSocketError) -> Self {
        match e {
            WebSocketError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                ConnectError::Eof
            }
            WebSocketError::IoError(e) => ConnectError::Io(e),
            WebSocketError::UnexpectedEOF => ConnectError::Eof,
            other => ConnectError::Ws(other.to_string()),
        }
    }
}

/// One connection attempt.
#[derive(Debug)]
pub struct Dial<'a> {
    pub endpoint: &'a Endpoint,
    pub source: Option<IpAddr>,
    pub protocol: Protocol,
    pub upgrade: Upgrade,
    pub user: &'a str,
    /// SO_RCVBUF before connecting (slow subscribers).
    pub rcvbuf: Option<u32>,
    /// For the whole attempt: connect, upgrade and setup.
    pub timeout: Duration,
}

/// An established connection.
pub struct Opened {
    pub read: WsRead,
    pub write: WsWrite,
    pub est: Established,
}

/// Connects, upgrades and runs the setup conversation, all within `dial.timeout`.
pub async fn open(dial: Dial<'_>) -> Result<Opened, ConnectError> {
    tokio::time::timeout(dial.timeout, open_inner(&dial))
        .await
        .map_err(|_| ConnectError::Timeout)?
}

async fn open_inner(d: &Dial<'_>) -> Result<Opened, ConnectError> {
    let addr = d.endpoint.addr;
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(src) = d.source.filter(|s| s.is_ipv4() == addr.is_ipv4()) {
        sock.bind(SocketAddr::new(src, 0))?;
    }
    if let Some(size) = d.rcvbuf {
        sock.set_recv_buffer_size(size)?;
    }
    let stream = sock.connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut r, mut w) = stream.into_split();

    let key: [u8; 16] = rand::random();
    let key = base64::engine::general_purpose::STANDARD.encode(key);
    let mut req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
         User-Agent: switchboard-loadgen\r\n",
        d.upgrade.path, d.endpoint.host
    );
    if let Some(t) = &d.upgrade.bearer {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(p) = d.upgrade.subprotocol {
        req.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    req.push_str("\r\n");
    w.write_all(req.as_bytes()).await?;

    // Read the answer head; bytes after it already belong to the WebSocket.
    let mut buf = Vec::with_capacity(512);
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|x| x == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(ConnectError::Ws("upgrade answer head too long".into()));
        }
        if r.read_buf(&mut buf).await? == 0 {
            return Err(ConnectError::Eof);
        }
    };
    let status = parse_status(&buf[..head_end])
        .ok_or_else(|| ConnectError::Ws("malformed HTTP status line".into()))?;
    if status != 101 {
        return Err(ConnectError::Http(status));
    }
    let rest = Bytes::copy_from_slice(&buf[head_end..]);
    drop(buf);
    let prefixed = Prefixed {
        prefix: (!rest.is_empty()).then_some(rest),
        inner: r,
    };
    let (mut read, mut write) = fastwebsockets::after_handshake_split(prefixed, w, Role::Client);
    read.set_auto_pong(false);
    read.set_auto_close(false);
    let mut read = FragmentCollectorRead::new(read);
    let est = setup(d.protocol, d.user, &mut read, &mut write).await?;
    Ok(Opened { read, write, est })
}

fn parse_status(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/1."))?;
    parts.next()?.parse().ok()
}

async fn setup(
    protocol: Protocol,
    user: &str,
    read: &mut WsRead,
    write: &mut WsWrite,
) -> Result<Established, ConnectError> {
    loop {
        let frame = read.read_frame(&mut no_obligations).await?;
        match frame.opcode {
            OpCode::Text | OpCode::Binary => match protocol.setup_step(&frame.payload, user) {
                Step::Wait => {}
                Step::Send(text) => write.write_frame(text_frame(text.into_bytes())).await?,
                Step::Done(est) => return Ok(est),
                Step::Fail(kind) => return Err(ConnectError::Refused(kind)),
            },
            OpCode::Ping => {
                let p = frame.payload.to_vec();
                write.write_frame(Frame::pong(Payload::Owned(p))).await?;
            }
            OpCode::Close => return Err(ConnectError::Closed(close_code(&frame.payload))),
            _ => {}
        }
    }
}

/// The send callback of split reads; auto pong/close are off, so it is never called.
fn no_obligations(_: Frame<'_>) -> std::future::Ready<Result<(), io::Error>> {
    std::future::ready(Ok(()))
}

pub fn text_frame(bytes: Vec<u8>) -> Frame<'static> {
    Frame::text(Payload::Owned(bytes))
}

/// The code of a close frame payload (1005 = none given).
pub fn close_code(payload: &[u8]) -> u16 {
    match payload {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 1005,
    }
}

/// What the read loop's handler wants next.
pub enum Control {
    Continue,
    /// Send this text frame back (text-level pings), then continue.
    Answer(&'static str),
    /// Stop reading (the connection stays open).
    Stop,
}

/// How a read loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The server (or a proxy) closed with this code (1005 when the frame had none).
    Closed(u16),
    /// The stream ended or broke without a close frame (recorded as 1006).
    Abnormal,
    /// We had sent a close frame first: our own shutdown.
    Local,
    /// The handler asked to stop.
    Stopped,
}

impl Ended {
    /// The close code to record, if this was not our own close.
    pub fn code(self) -> Option<u16> {
        match self {
            Ended::Closed(c) => Some(c),
            Ended::Abnormal => Some(1006),
            Ended::Local | Ended::Stopped => None,
        }
    }
}

/// Reads until the connection ends (or the handler stops), answering pings and echoing the
/// server's close frame. The handler gets each text frame with the time it was read (unix
/// µs, taken as soon as the frame is complete, before any parsing).
pub async fn read_loop(
    read: &mut WsRead,
    writer: &Writer,
    mut on_text: impl FnMut(&[u8], u64) -> Control,
) -> Ended {
    loop {
        let Ok(frame) = read.read_frame(&mut no_obligations).await else {
            return if locally_closed(writer).await {
                Ended::Local
            } else {
                Ended::Abnormal
            };
        };
        match frame.opcode {
            OpCode::Text | OpCode::Binary => match on_text(&frame.payload, now_us()) {
                Control::Continue => {}
                Control::Answer(text) => {
                    let _ = send(writer, text.as_bytes().to_vec()).await;
                }
                Control::Stop => return Ended::Stopped,
            },
            OpCode::Ping => {
                let mut w = writer.lock().await;
                if let Some(ws) = w.as_mut().filter(|ws| !ws.is_closed()) {
                    let pong = Frame::pong(Payload::Owned(frame.payload.to_vec()));
                    let _ = ws.write_frame(pong).await;
                }
            }
            OpCode::Close => {
                let code = close_code(&frame.payload);
                let mut w = writer.lock().await;
                return match w.as_mut() {
                    Some(ws) if ws.is_closed() => Ended::Local,
                    Some(ws) => {
                        let echo = Frame::close_raw(Payload::Owned(frame.payload.to_vec()));
                        let _ =
                            tokio::time::timeout(CLOSE_WRITE_TIMEOUT, ws.write_frame(echo)).await;
                        Ended::Closed(code)
                    }
                    None => Ended::Closed(code),
                };
            }
            _ => {}
        }
    }
}

/// Reads what the socket still holds, up to a close frame. `None` when it stays silent for
/// `idle` (still open). Used once at the end (a cancelled read is not resumed).
pub async fn drain(read: &mut WsRead, writer: &Writer, idle: Duration) -> Option<Ended> {
    loop {
        let frame = match tokio::time::timeout(idle, read.read_frame(&mut no_obligations)).await {
            Err(_) => return None,
            Ok(Err(_)) if locally_closed(writer).await => return Some(Ended::Local),
            Ok(Err(_)) => return Some(Ended::Abnormal),
            Ok(Ok(f)) => f,
        };
        if frame.opcode == OpCode::Close {
            return Some(Ended::Closed(close_code(&frame.payload)));
        }
    }
}

async fn locally_closed(writer: &Writer) -> bool {
    writer.lock().await.as_ref().is_some_and(|w| w.is_closed())
}

/// Why a send did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("not connected")]
    Disconnected,
    #[error("write failed: {0}")]
    Failed(String),
}

/// Sends one text frame.
pub async fn send(writer: &Writer, text: Vec<u8>) -> Result<(), SendError> {
    let mut w = writer.lock().await;
    let Some(ws) = w.as_mut().filter(|ws| !ws.is_closed()) else {
        return Err(SendError::Disconnected);
    };
    ws.write_frame(text_frame(text))
        .await
        .map_err(|e| SendError::Failed(e.to_string()))
}

/// Sends a close frame with `code` (once; bounded in time). Returns whether it was sent.
pub async fn close(writer: &Writer, code: u16) -> bool {
    let mut w = writer.lock().await;
    match w.as_mut().filter(|ws| !ws.is_closed()) {
        Some(ws) => matches!(
            tokio::time::timeout(CLOSE_WRITE_TIMEOUT, ws.write_frame(Frame::close(code, b"")))
                .await,
            Ok(Ok(()))
        ),
        None => false,
    }
}

/// A reader that first yields bytes read past the HTTP head, then the socket.
pub struct Prefixed<R> {
    prefix: Option<Bytes>,
    inner: R,
}

impl<R: AsyncRead + Unpin> AsyncRead for Prefixed<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(p) = self.prefix.as_mut() {
            let n = p.len().min(buf.remaining());
            buf.put_slice(&p[..n]);
            p.advance(n);
            if p.is_empty() {
                self.prefix = None;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_and_close_codes() {
        assert_eq!(
            parse_status(b"HTTP/1.1 101 Switching Protocols\r\n\r\n"),
            Some(101)
        );
        assert_eq!(
            parse_status(b"HTTP/1.1 401 Unauthorized\r\nx: y\r\n\r\n"),
            Some(401)
        );
        assert_eq!(parse_status(b"garbage"), None);
        assert_eq!(close_code(&[0x0f, 0xa8]), 4008);
        assert_eq!(close_code(&[]), 1005);
        assert_eq!(Ended::Abnormal.code(), Some(1006));
        assert_eq!(Ended::Local.code(), None);
    }
}
