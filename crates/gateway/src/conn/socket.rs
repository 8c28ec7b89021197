//! The transport under one WebSocket: the raw `TcpStream` that hyper upgraded, shared
//! between the connection's task (which reads) and whoever writes to the client (the
//! outbound queue, from any task: `try_write` when the socket is writable).
//!
//! After the 101, hyper's `Upgraded` is downcast back to the stream it wraps, so reads and
//! writes are plain non-blocking socket calls; the bytes hyper had already read past the
//! request (a client may send its first frame without waiting for the 101) are handed to
//! the frame reader first.
//!
//! On a TLS listener (`--tls-cert`) the stream is a `tokio_rustls` one: it is taken apart
//! into the same `TcpStream` and the rustls session, which sits behind a lock of its own
//! (`socket/tls.rs`). A write encrypts into the session and writes what the socket takes;
//! encrypted bytes it did not take stay in the session (`flush_buffered` writes them and
//! the queue waits for writability while any are left). The plain-TCP path pays one
//! branch on an `Option` for this.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper_util::rt::TokioIo;
use rustls::ServerConnection;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpStream;

mod tls;

/// One client's socket; cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct Socket(Arc<Transport>);

struct Transport {
    tcp: TcpStream,
    /// The TLS session on a TLS listener (boxed: a plain connection carries 8 bytes).
    tls: Option<Box<Mutex<ServerConnection>>>,
}

impl Socket {
    pub fn new(stream: TcpStream) -> Socket {
        Socket(Arc::new(Transport {
            tcp: stream,
            tls: None,
        }))
    }

    /// A TCP stream whose TLS handshake is done; `session` may hold received plaintext.
    pub fn with_tls(stream: TcpStream, session: ServerConnection) -> Socket {
        Socket(Arc::new(Transport {
            tcp: stream,
            tls: Some(Box::new(Mutex::new(session))),
        }))
    }

    /// The socket hyper upgraded and the bytes it had read past the request.
    pub fn from_upgraded(upgraded: hyper::upgrade::Upgraded) -> Option<(Socket, Bytes)> {
        let upgraded = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => return Some((Socket::new(parts.io.into_inner()), parts.read_buf)),
            Err(upgraded) => upgraded,
        };
        type Tls = TokioIo<tokio_rustls::server::TlsStream<TcpStream>>;
        let parts = upgraded.downcast::<Tls>().ok()?;
        let (tcp, session) = parts.io.into_inner().into_inner();
        Some((Socket::with_tls(tcp, session), parts.read_buf))
    }

    /// Writes what the socket takes now, without waiting.
    pub fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match &self.0.tls {
            None => self.0.tcp.try_write_vectored(bufs),
            Some(session) => tls::try_write_vectored(&self.0.tcp, session, bufs),
        }
    }

    /// Writes the encrypted bytes a TLS session still holds: `Ok` once none are left,
    /// `WouldBlock` while the socket does not take them. Always `Ok` on plain TCP.
    pub fn flush_buffered(&self) -> io::Result<()> {
        match &self.0.tls {
            None => Ok(()),
            Some(session) => tls::flush(&self.0.tcp, &mut tls::lock(session)),
        }
    }

    /// Waits until the socket may take more bytes.
    #[cfg(test)]
    pub async fn writable(&self) -> io::Result<()> {
        self.0.tcp.writable().await
    }

    /// Ready when the socket may take more bytes. Keeps one waker (the connection's task),
    /// in the socket's registration: a future polling it holds no waiter of its own.
    pub fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.tcp.poll_write_ready(cx)
    }

    /// Ready when the socket has bytes (or an end) to read; as `poll_write_ready`. With
    /// TLS, also when the session already holds decrypted bytes.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(session) = &self.0.tls {
            if tls::has_plaintext(&mut tls::lock(session)) {
                return Poll::Ready(Ok(()));
            }
        }
        self.0.tcp.poll_read_ready(cx)
    }

    /// The end of the connection: with TLS, sends `close_notify` and writes what the
    /// session still holds (our close frame may be in it), for at most `within`. Nothing
    /// to do on plain TCP (the kernel sends what it took).
    pub async fn close(&self, within: Duration) {
        if let Some(session) = &self.0.tls {
            tls::lock(session).send_close_notify();
            let flushed = tokio::time::timeout(within, async {
                loop {
                    match self.flush_buffered() {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        _ => return,
                    }
                    if self.0.tcp.writable().await.is_err() {
                        return;
                    }
                }
            });
            let _ = flushed.await;
        }
    }

    /// The read side, for the frame reader.
    pub fn reader(&self) -> SocketReader {
        SocketReader(self.0.clone())
    }
}

/// The read side of a [`Socket`] as an `AsyncRead`.
pub struct SocketReader(Arc<Transport>);

impl AsyncRead for SocketReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let t = &*self.0;
        loop {
            let read = match &t.tls {
                None => t.tcp.try_read_buf(buf).map(|_| ()),
                Some(session) => tls::try_read(&t.tcp, session, buf),
            };
            match read {
                Ok(()) => return Poll::Ready(Ok(())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(t.tcp.poll_read_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// A connected pair of loopback sockets (server side, client side), for tests.
#[cfg(test)]
pub async fn pair() -> (Socket, TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let client = TcpStream::connect(listener.local_addr().expect("addr"))
        .await
        .expect("connect");
    let (server, _) = listener.accept().await.expect("accept");
    (Socket::new(server), client)
}
