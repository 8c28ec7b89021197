//! The bounded outbound queue of one connection: encoded frames waiting for the writer.
//!
//! Bounded by frames and bytes; passing either bound marks the connection a slow
//! consumer: pending frames are dropped and the writer closes with 4008. Producers never
//! block (the hub fans out from the backplane thread of control).

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use switchboard_proto::close;
use tokio::sync::Notify;

/// One encoded frame for the writer.
#[derive(Debug)]
pub struct Item {
    pub data: Bytes,
    /// For messages: when the publish was accepted (ms since the Unix epoch), to observe
    /// delivery latency once written.
    pub published_ms: Option<u64>,
    /// Pongs answer client pings and are written as control frames.
    pub pong: bool,
}

/// Why and how the connection is being closed by the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseRequest {
    pub code: u16,
    pub reason: String,
    /// When false, no close frame can be sent (the peer is gone).
    pub send_frame: bool,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Item>,
    bytes: usize,
    close: Option<CloseRequest>,
    /// Whether pending items are still written before the close frame.
    flush_before_close: bool,
}

/// Outcome of a push.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Pushed {
    Queued,
    /// The connection is closing; the frame was dropped.
    Closed,
    /// This push passed the bound: the connection is now closing with 4008.
    Overflow,
}

pub struct Outbound {
    queue: Mutex<Queue>,
    notify: Notify,
    /// Signalled whenever the writer takes frames (or a close is requested), for
    /// producers that pace themselves (replays).
    drained: Notify,
    max_frames: usize,
    max_bytes: usize,
}

impl Outbound {
    pub fn new(max_frames: usize, max_bytes: usize) -> Outbound {
        Outbound {
            queue: Mutex::new(Queue::default()),
            notify: Notify::new(),
            drained: Notify::new(),
            max_frames: max_frames.max(1),
            max_bytes: max_bytes.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame; never blocks.
    pub fn push(&self, item: Item) -> Pushed {
        let mut q = self.lock();
        if q.close.is_some() {
            return Pushed::Closed;
        }
        if q.items.len() >= self.max_frames || q.bytes + item.data.len() > self.max_bytes {
            q.items.clear();
            q.bytes = 0;
            q.close = Some(CloseRequest {
                code: close::SLOW_CONSUMER,
                reason: "slow consumer".into(),
                send_frame: true,
            });
            q.flush_before_close = false;
            drop(q);
            self.notify.notify_one();
            self.drained.notify_waiters();
            return Pushed::Overflow;
        }
        q.bytes += item.data.len();
        q.items.push_back(item);
        drop(q);
        self.notify.notify_one();
        Pushed::Queued
    }

    /// Asks the writer to close. The first request wins. With `flush` the frames queued so
    /// far are written first (a drain's `goaway`); without, they are dropped.
    pub fn close(&self, request: CloseRequest, flush: bool) -> bool {
        let mut q = self.lock();
        if q.close.is_some() {
            return false;
        }
        if !flush {
            q.items.clear();
            q.bytes = 0;
        }
        q.close = Some(request);
        q.flush_before_close = flush;
        drop(q);
        self.notify.notify_one();
        self.drained.notify_waiters();
        true
    }

    /// Waits until `bytes` more fit in three quarters of both bounds (or the queue is
    /// empty). Returns false once the connection is closing.
    pub async fn wait_room(&self, bytes: usize) -> bool {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            {
                let q = self.lock();
                if q.close.is_some() {
                    return false;
                }
                let fits = q.items.len() < (self.max_frames * 3 / 4).max(1)
                    && q.bytes + bytes <= self.max_bytes * 3 / 4;
                if fits || q.items.is_empty() {
                    return true;
                }
            }
            drained.await;
        }
    }

    /// The close request, if any.
    pub fn close_request(&self) -> Option<CloseRequest> {
        self.lock().close.clone()
    }

    /// Wakes the writer without queuing anything (e.g. the token expiry changed).
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// Waits for work.
    pub async fn notified(&self) {
        self.notify.notified().await
    }

    /// Moves up to `max_bytes` of pending frames into `out` (at least one frame when any is
    /// pending). Returns the close request once nothing more is to be written before it.
    pub fn take(&self, out: &mut Vec<Item>, max_bytes: usize) -> Option<CloseRequest> {
        let mut q = self.lock();
        let mut taken = 0;
        while let Some(front) = q.items.front() {
            if taken > 0 && taken + front.data.len() > max_bytes {
                break;
            }
            let item = q.items.pop_front().expect("front exists");
            taken += item.data.len();
            q.bytes -= item.data.len();
            out.push(item);
        }
        let close = if q.items.is_empty() {
            q.close.clone()
        } else {
            None
        };
        drop(q);
        if taken > 0 {
            self.drained.notify_waiters();
        }
        close
    }

    /// Pending frames and bytes.
    #[cfg(test)]
    pub fn len(&self) -> (usize, usize) {
        let q = self.lock();
        (q.items.len(), q.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: usize) -> Item {
        Item {
            data: Bytes::from(vec![b'x'; n]),
            published_ms: None,
            pong: false,
        }
    }

    #[test]
    fn bounded_by_frames_and_bytes() {
        let q = Outbound::new(3, 1000);
        assert_eq!(q.push(item(1)), Pushed::Queued);
        assert_eq!(q.push(item(1)), Pushed::Queued);
        assert_eq!(q.push(item(1)), Pushed::Queued);
        assert_eq!(q.push(item(1)), Pushed::Overflow);
        assert_eq!(q.len(), (0, 0));
        assert_eq!(q.push(item(1)), Pushed::Closed);
        let mut out = Vec::new();
        assert_eq!(q.take(&mut out, 100).unwrap().code, close::SLOW_CONSUMER);

        let q = Outbound::new(100, 10);
        assert_eq!(q.push(item(6)), Pushed::Queued);
        assert_eq!(q.push(item(5)), Pushed::Overflow);
    }

    #[test]
    fn take_batches_and_flushes_before_close() {
        let q = Outbound::new(100, 10_000);
        for _ in 0..5 {
            q.push(item(100));
        }
        q.close(
            CloseRequest {
                code: 1012,
                reason: "draining".into(),
                send_frame: true,
            },
            true,
        );
        let mut out = Vec::new();
        assert!(q.take(&mut out, 250).is_none());
        assert_eq!(out.len(), 2);
        out.clear();
        assert!(q.take(&mut out, 10_000).is_some());
        assert_eq!(out.len(), 3);
        // The first close wins.
        assert!(!q.close(
            CloseRequest {
                code: 4003,
                reason: String::new(),
                send_frame: true
            },
            false
        ));
    }
}
