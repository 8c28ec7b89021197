//! Writing an outbound queue to its socket: frame headers built on the stack, the queued
//! payloads gathered into one writev (no copy into a per-socket buffer), partial writes
//! resumed where they stopped, and every written message counted once.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use switchboard_proto::close;
use tokio::time::Instant;

use super::{Ended, Kind, State, Writer, MAX_SLICES, MAX_WRITE};
use crate::conn::socket::Socket;
use crate::metrics as m;
use switchboard_proto::clock::now_ms;

/// A frame header for `len` payload bytes (server frames are not masked).
pub(super) fn header(kind: Kind, len: usize) -> ([u8; 10], usize) {
    let opcode = match kind {
        Kind::Text => 0x1,
        Kind::Binary => 0x2,
        Kind::Close => 0x8,
        Kind::Ping => 0x9,
        Kind::Pong => 0xA,
    };
    let mut h = [0u8; 10];
    h[0] = 0x80 | opcode;
    if len < 126 {
        h[1] = len as u8;
        (h, 2)
    } else if len <= u16::MAX as usize {
        h[1] = 126;
        h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        (h, 4)
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (h, 10)
    }
}

/// Counts written messages and observes their delivery latency.
fn delivered(published: impl Iterator<Item = u64>) {
    let hot = m::hot();
    let now = now_ms();
    let mut n = 0;
    for ts in published {
        n += 1;
        hot.delivery_latency
            .record(now.saturating_sub(ts) as f64 / 1000.0);
    }
    if n > 0 {
        hot.delivered.increment(n);
    }
}

impl State {
    /// Writes queued frames until the queue is empty or the socket takes no more. Returns
    /// true when a backlog formed (the connection's task must wait for writability).
    pub(super) fn write_queue(&mut self) -> bool {
        let Some(socket) = self.socket.take() else {
            return false;
        };
        let formed = self.write_to(&socket);
        if self.socket.is_none() && self.ended.is_none() {
            self.socket = Some(socket);
        }
        formed
    }

    fn write_to(&mut self, socket: &Socket) -> bool {
        loop {
            if self.items.is_empty() {
                // A TLS session may hold encrypted bytes the socket did not take yet: a
                // backlog like any other (plain TCP: always `Ok`).
                match socket.flush_buffered() {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return self.stall(),
                    Err(_) => {
                        self.fail();
                        return false;
                    }
                }
                self.writer = Writer::Idle;
                self.stalled_since = None;
                if self.items.capacity() > 0 {
                    self.items = VecDeque::new();
                }
                return false;
            }
            let mut headers = [([0u8; 10], 0usize); MAX_SLICES];
            let count = self.items.len().min(MAX_SLICES);
            for (i, item) in self.items.iter().take(count).enumerate() {
                headers[i] = header(item.kind, item.data.len());
            }
            let mut slices = [IoSlice::new(&[]); MAX_SLICES * 2];
            let (mut n, mut total) = (0, 0);
            for (i, item) in self.items.iter().take(count).enumerate() {
                let (h, hlen) = &headers[i];
                let skip = if i == 0 { self.head_sent } else { 0 };
                if i > 0 && total + hlen + item.data.len() > MAX_WRITE {
                    break;
                }
                if skip < *hlen {
                    slices[n] = IoSlice::new(&h[skip..*hlen]);
                    n += 1;
                }
                let from = skip.saturating_sub(*hlen);
                slices[n] = IoSlice::new(&item.data[from..]);
                n += 1;
                total += hlen + item.data.len() - skip;
            }
            match socket.try_write_vectored(&slices[..n]) {
                Ok(0) => {
                    self.fail();
                    return false;
                }
                Ok(written) => {
                    self.stalled_since = None;
                    self.advance(written);
                    if self.ended.is_some() {
                        return false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return self.stall(),
                Err(_) => {
                    self.fail();
                    return false;
                }
            }
        }
    }

    /// The socket took no more: the connection's task waits until it is writable.
    /// Returns whether the backlog formed now.
    fn stall(&mut self) -> bool {
        self.stalled_since.get_or_insert_with(Instant::now);
        let formed = self.writer != Writer::Backlog;
        self.writer = Writer::Backlog;
        formed
    }

    /// Removes `written` bytes' worth of frames from the front of the queue.
    fn advance(&mut self, mut written: usize) {
        let mut published = [0u64; MAX_SLICES];
        let mut count = 0;
        while written > 0 {
            let Some(front) = self.items.front() else {
                break;
            };
            let (_, hlen) = header(front.kind, front.data.len());
            let left = hlen + front.data.len() - self.head_sent;
            if written < left {
                self.head_sent += written;
                break;
            }
            written -= left;
            self.head_sent = 0;
            let item = self.items.pop_front().expect("front exists");
            if item.kind != Kind::Close {
                self.bytes -= item.data.len();
            }
            if let Some(ts) = item.published_ms {
                published[count] = ts;
                count += 1;
            }
            if item.kind == Kind::Close {
                let code = self.close.as_ref().map_or(close::NORMAL, |c| c.code);
                self.end(Ended {
                    code,
                    close_sent: true,
                });
            }
        }
        delivered(published[..count].iter().copied());
    }

    fn fail(&mut self) {
        self.end(Ended {
            code: 1006,
            close_sent: false,
        });
    }
}
