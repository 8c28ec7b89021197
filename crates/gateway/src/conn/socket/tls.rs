//! Non-blocking I/O through a rustls session over a shared `TcpStream`: the same
//! `try_write`/`try_read` contract as the plain socket, for the outbound queue (any task)
//! and the frame reader (the connection's task). The session's lock is never held across
//! an await, and never while taking the outbound queue's lock (the queue takes it inside
//! its own: one order).

use std::io::{self, IoSlice, Read, Write};
use std::sync::{Mutex, MutexGuard};

use rustls::ServerConnection;
use tokio::io::ReadBuf;
use tokio::net::TcpStream;

pub(super) fn lock(session: &Mutex<ServerConnection>) -> MutexGuard<'_, ServerConnection> {
    session.lock().unwrap_or_else(|e| e.into_inner())
}

/// The socket as a `Write` that never waits.
struct TryWriter<'a>(&'a TcpStream);

impl Write for TryWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The socket as a `Read` that never waits.
struct TryReader<'a>(&'a TcpStream);

impl Read for TryReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

/// Writes the session's encrypted bytes until none are left (`Ok`) or the socket takes
/// no more (`WouldBlock`).
pub(super) fn flush(tcp: &TcpStream, session: &mut ServerConnection) -> io::Result<()> {
    while session.wants_write() {
        match session.write_tls(&mut TryWriter(tcp)) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Encrypts what the session takes of `bufs` (nothing while earlier encrypted bytes wait:
/// `WouldBlock`) and writes what the socket takes. Returns the plaintext bytes taken.
pub(super) fn try_write_vectored(
    tcp: &TcpStream,
    session: &Mutex<ServerConnection>,
    bufs: &[IoSlice<'_>],
) -> io::Result<usize> {
    let mut s = lock(session);
    flush(tcp, &mut s)?;
    // Bounded by the session's buffer limit (64 KiB by default); never 0 here, as the
    // buffer is empty.
    let taken = s.writer().write_vectored(bufs)?;
    match flush(tcp, &mut s) {
        Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
        _ => Ok(taken),
    }
}

/// Whether decrypted bytes (or the peer's close) are waiting to be read.
pub(super) fn has_plaintext(session: &mut ServerConnection) -> bool {
    match session.process_new_packets() {
        Ok(state) => state.plaintext_bytes_to_read() > 0 || state.peer_has_closed(),
        // The reader reports it.
        Err(_) => true,
    }
}

/// Reads decrypted bytes into `buf`: what the session holds, else what the socket has
/// (`WouldBlock` when it has nothing). Filling nothing is the end of the stream: a
/// `close_notify`, or a TCP end without one (most browsers send none).
pub(super) fn try_read(
    tcp: &TcpStream,
    session: &Mutex<ServerConnection>,
    buf: &mut ReadBuf<'_>,
) -> io::Result<()> {
    let mut s = lock(session);
    loop {
        match s.reader().read(buf.initialize_unfilled()) {
            Ok(n) => {
                buf.advance(n);
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        // 0 bytes is the TCP end: the next `reader().read` says how (clean or not).
        s.read_tls(&mut TryReader(tcp))?;
        let processed = s.process_new_packets();
        // Alerts, key updates: written now when the socket takes them, else with the
        // next write (best effort, as the connection's task does not wait to write them).
        let _ = flush(tcp, &mut s);
        if let Err(e) = processed {
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }
}
