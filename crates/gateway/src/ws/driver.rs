//! How the connection's one task waits. Whatever it awaits (a readable socket, the rest of
//! a frame, the session's work on a message), it also writes the outbound backlog as the
//! socket becomes writable, and it gives up when the writing ended for good (the socket
//! failed or took nothing for the write timeout) or when the peer did not answer our close
//! frame within the grace. The awaited future is never dropped half-way except then, when
//! the connection is over anyway: `read_frame` is not cancel-safe.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::conn::socket::Socket;
use crate::conn::ConnHandle;

/// How long the peer may take to answer our close frame (RFC 6455 §7.1.1) before the
/// socket is dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

pub struct Driver<'a> {
    conn: &'a ConnHandle,
    socket: &'a Socket,
    /// Armed once our close frame is out (or when the server decided to close): the
    /// closing handshake's deadline.
    grace: Option<Pin<Box<Sleep>>>,
    /// Stop as soon as the writing ended (waiting for our close frame to go out).
    until_written: bool,
}

/// Waits for the grace, or forever when none is armed.
async fn expire(grace: &mut Option<Pin<Box<Sleep>>>) {
    match grace {
        Some(sleep) => sleep.await,
        None => std::future::pending().await,
    }
}

impl<'a> Driver<'a> {
    pub fn new(conn: &'a ConnHandle, socket: &'a Socket) -> Driver<'a> {
        Driver {
            conn,
            socket,
            grace: None,
            until_written: false,
        }
    }

    /// Arms the closing handshake's deadline, `CLOSE_GRACE` from now (once).
    pub fn arm_grace(&mut self) {
        if self.grace.is_none() {
            self.grace = Some(Box::pin(tokio::time::sleep_until(
                Instant::now() + CLOSE_GRACE,
            )));
        }
    }

    /// Runs `fut` to its end while writing the backlog. `None` when the connection is over
    /// first. (Its own waits are `poll_*` calls that keep their waker in the socket or the
    /// queue: an idle connection's task holds no waiter structs.)
    pub async fn run<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        let (conn, socket) = (self.conn, self.socket);
        tokio::pin!(fut);
        loop {
            let (ended, backlog) = conn.outbound.status();
            match ended {
                Some(e) if !e.close_sent || self.until_written => return None,
                Some(_) => self.arm_grace(),
                None => {}
            }
            let armed = self.grace.is_some();
            tokio::select! {
                biased;
                out = &mut fut => return Some(out),
                () = poll_fn(|cx| conn.outbound.poll_event(cx)) => {}
                // An error here shows in the write that follows.
                _ = poll_fn(|cx| socket.poll_write_ready(cx)), if backlog => conn.outbound.flush(),
                _ = expire(&mut self.grace), if armed => return None,
            }
        }
    }

    /// Waits until the socket has bytes (or an end) to read, writing the backlog meanwhile.
    pub async fn readable(&mut self) -> Option<std::io::Result<()>> {
        let socket = self.socket;
        self.run(poll_fn(|cx| socket.poll_read_ready(cx))).await
    }

    /// Waits until the writing ended: the close frame is out, or the socket failed or
    /// took nothing for the write timeout (the sweeper ends it then).
    pub async fn wait_written(&mut self) {
        self.until_written = true;
        self.grace = None;
        self.run(std::future::pending::<()>()).await;
    }
}
