//! A write buffer that exists only while there is something to write.
//!
//! `tokio::io::BufWriter` allocates its whole capacity up front and keeps it for the
//! connection's life: 64 KiB per socket, most of them idle. This writer collects the frames
//! of one batch into a `Vec` that grows on demand and is released once the batch has
//! reached the socket, so an idle connection holds no write buffer at all.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::AsyncWrite;

pub struct LazyBufWriter<W> {
    inner: W,
    buf: Vec<u8>,
    /// How much of `buf` already reached `inner`.
    written: usize,
    /// Most bytes buffered before they are written out; larger writes go straight through.
    cap: usize,
}

impl<W: AsyncWrite + Unpin> LazyBufWriter<W> {
    pub fn new(inner: W, cap: usize) -> Self {
        LazyBufWriter {
            inner,
            buf: Vec::new(),
            written: 0,
            cap,
        }
    }

    /// Bytes held right now (0 when idle).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.buf.capacity()
    }

    /// Writes the buffer out, then gives its memory back.
    fn poll_write_buf(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buf = Vec::new();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for LazyBufWriter<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.buf.len() + data.len() > this.cap {
            ready!(this.poll_write_buf(cx))?;
        }
        if data.len() >= this.cap {
            return Pin::new(&mut this.inner).poll_write(cx, data);
        }
        this.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_buf(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_buf(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn buffers_until_flush_and_then_holds_nothing() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut w = LazyBufWriter::new(a, 1024);
        assert_eq!(w.held(), 0, "nothing allocated before the first write");
        w.write_all(b"hello ").await.unwrap();
        w.write_all(b"world").await.unwrap();
        assert!(w.held() > 0);
        let mut probe = [0u8; 1];
        let early =
            tokio::time::timeout(std::time::Duration::from_millis(20), b.read(&mut probe)).await;
        assert!(early.is_err(), "nothing reaches the peer before the flush");
        w.flush().await.unwrap();
        assert_eq!(w.held(), 0, "the buffer is released after the flush");
        let mut got = [0u8; 11];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello world");
    }

    #[tokio::test]
    async fn large_writes_and_overflows_keep_the_byte_order() {
        let (a, mut b) = tokio::io::duplex(64);
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            b.read_to_end(&mut all).await.unwrap();
            all
        });
        let mut w = LazyBufWriter::new(a, 100);
        let mut want = Vec::new();
        for i in 0..50u8 {
            let chunk = vec![i; (i as usize * 7) % 250 + 1];
            w.write_all(&chunk).await.unwrap();
            want.extend_from_slice(&chunk);
        }
        w.shutdown().await.unwrap();
        assert_eq!(w.held(), 0);
        drop(w);
        assert_eq!(reader.await.unwrap(), want);
    }
}
