//! The transport under one WebSocket: the raw `TcpStream` that hyper upgraded, shared
//! between the connection's task (which reads) and whoever writes to the client (the
//! outbound queue, from any task: `try_write` when the socket is writable).
//!
//! After the 101, hyper's `Upgraded` is downcast back to the `TcpStream` it wraps, so reads
//! and writes are plain non-blocking socket calls; the bytes hyper had already read past
//! the request (a client may send its first frame without waiting for the 101) are handed
//! to the frame reader first. A TLS listener would not fit `try_write` from any task (the
//! TLS session is state to share): it would give the outbound queue a writer task that
//! owns the stream, and keep everything above this file as it is.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpStream;

/// One client's TCP socket; cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct Socket(Arc<TcpStream>);

impl Socket {
    pub fn new(stream: TcpStream) -> Socket {
        Socket(Arc::new(stream))
    }

    /// The socket hyper upgraded and the bytes it had read past the request.
    pub fn from_upgraded(upgraded: hyper::upgrade::Upgraded) -> Option<(Socket, Bytes)> {
        let parts = upgraded.downcast::<TokioIo<TcpStream>>().ok()?;
        Some((Socket::new(parts.io.into_inner()), parts.read_buf))
    }

    /// Writes what the socket takes now, without waiting.
    pub fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    /// Waits until the socket may take more bytes.
    #[cfg(test)]
    pub async fn writable(&self) -> io::Result<()> {
        self.0.writable().await
    }

    /// Ready when the socket may take more bytes. Keeps one waker (the connection's task),
    /// in the socket's registration: a future polling it holds no waiter of its own.
    pub fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_write_ready(cx)
    }

    /// Ready when the socket has bytes (or an end) to read; as `poll_write_ready`.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_read_ready(cx)
    }

    /// The read side, for the frame reader.
    pub fn reader(&self) -> SocketReader {
        SocketReader(self.0.clone())
    }
}

/// The read side of a [`Socket`] as an `AsyncRead`.
pub struct SocketReader(Arc<TcpStream>);

impl AsyncRead for SocketReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read_buf(buf) {
                Ok(_) => return Poll::Ready(Ok(())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
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
