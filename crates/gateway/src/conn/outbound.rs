//! The outbound side of one connection: frames on their way to the client, written to the
//! socket at once when it takes them, queued only when it does not ("cork").
//!
//! Whoever produces a frame (the hub delivering a message, the session replying, the
//! sweeper pinging) writes it with a non-blocking `try_write` when nothing is queued before
//! it. What the socket does not take waits in the queue, and the connection's own task
//! writes the queue out as the socket becomes writable (`flush`). A large fan-out queues
//! first and writes in chunks (`push_deferred`, then `flush`). The lock is held across each
//! write, so frames reach the socket in the order they were pushed; the close frame is the
//! last one. Frames are written with writev: a header on the stack and the shared encoded
//! payload, never copied into a per-socket buffer.
//!
//! The queue is bounded by frames and bytes; passing either bound marks the connection a
//! slow consumer: pending frames are dropped and it closes with 4008. Producers never block.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use bytes::{BufMut, Bytes, BytesMut};
use switchboard_proto::close;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::socket::Socket;

/// What kind of WebSocket frame an item is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Binary,
    Ping,
    /// Answers a client's ping.
    Pong,
    Close,
}

/// One frame for the client: its payload (shared between recipients) and its kind.
#[derive(Debug)]
pub struct Item {
    pub data: Bytes,
    /// For messages: when the publish was accepted (ms since the Unix epoch), to observe
    /// delivery latency once written.
    pub published_ms: Option<u64>,
    pub kind: Kind,
}

/// Why and how the connection is being closed by the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseRequest {
    pub code: u16,
    pub reason: String,
    /// When false, no close frame can be sent (the peer is gone).
    pub send_frame: bool,
}

impl CloseRequest {
    /// A close with a close frame carrying `code` and `reason`.
    pub fn new(code: u16, reason: impl Into<String>) -> CloseRequest {
        CloseRequest {
            code,
            reason: reason.into(),
            send_frame: true,
        }
    }

    /// A close after the peer went (`code` is only recorded): no close frame is sent.
    pub fn peer_gone(code: u16) -> CloseRequest {
        CloseRequest {
            code,
            reason: String::new(),
            send_frame: false,
        }
    }
}

/// Outcome of a push.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Pushed {
    /// Written or queued.
    Queued,
    /// The connection is closing; the frame was dropped.
    Closed,
    /// This push passed the bound: the connection is now closing with 4008.
    Overflow,
}

/// How the writing ended.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct Ended {
    /// The close code sent (or meant), 1006 when the socket failed.
    pub code: u16,
    /// Whether the close frame went out (then the peer's close may still be read).
    pub close_sent: bool,
}

/// Who writes the queue out.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
enum Writer {
    /// Nothing queued: a producer writes directly.
    #[default]
    Idle,
    /// A fan-out queued frames and will `flush` them.
    Scheduled,
    /// The socket did not take everything: the connection's task waits until it is
    /// writable and flushes.
    Backlog,
}

/// Largest write of queued frames in one system call.
const MAX_WRITE: usize = 256 * 1024;
/// Most frames in one writev.
const MAX_SLICES: usize = 32;
/// Longest close reason sent (the frame payload must stay ≤ 125 bytes).
const MAX_REASON: usize = 120;

#[derive(Default)]
struct State {
    items: VecDeque<Item>,
    /// Payload bytes queued.
    bytes: usize,
    /// Bytes of the first item (header included) already on the wire.
    head_sent: usize,
    writer: Writer,
    close: Option<CloseRequest>,
    /// The connection's task is handling a client message (`begin_message`).
    handling: bool,
    /// A close asked for with [`Outbound::close_after_message`] while it was: queued
    /// once the message is answered (boxed: idle connections carry 8 bytes for it).
    deferred: Option<Box<CloseRequest>>,
    ended: Option<Ended>,
    /// Since when the queue waits for a socket that takes nothing (the write timeout).
    stalled_since: Option<Instant>,
    /// `None` until attached (tests queue without a socket) and after the end.
    socket: Option<Socket>,
    /// An event for the connection's task (a backlog formed, a close was requested, the
    /// writing ended) that it has not seen yet, and its waker. (A `Notify` would put a
    /// waiter of 80 bytes in every idle connection's task.)
    event: bool,
    waker: Option<Waker>,
}

pub struct Outbound {
    state: Mutex<State>,
    /// Signalled whenever queued frames are written or dropped, for producers that pace
    /// themselves (replays).
    drained: Notify,
    max_frames: usize,
    max_bytes: usize,
}

fn close_item(req: &CloseRequest) -> Item {
    let mut end = req.reason.len().min(MAX_REASON);
    while !req.reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut data = BytesMut::with_capacity(2 + end);
    data.put_u16(req.code);
    data.put_slice(&req.reason.as_bytes()[..end]);
    Item {
        data: data.freeze(),
        published_ms: None,
        kind: Kind::Close,
    }
}

impl State {
    /// Tells the connection's task that something happened.
    fn notify(&mut self) {
        self.event = true;
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Drops what is queued, except a frame already partly on the wire (the stream would
    /// be corrupt without its end).
    fn drop_queue(&mut self) {
        let keep = if self.head_sent > 0 {
            self.items.pop_front()
        } else {
            None
        };
        self.items.clear();
        self.bytes = 0;
        if let Some(item) = keep {
            if item.kind != Kind::Close {
                self.bytes = item.data.len();
            }
            self.items.push_back(item);
        }
    }

    fn end(&mut self, ended: Ended) {
        self.ended = Some(ended);
        self.items = VecDeque::new();
        self.bytes = 0;
        self.head_sent = 0;
        self.stalled_since = None;
    }
}

impl Outbound {
    /// A queue without a socket (frames wait until taken; see `attach`).
    pub fn new(max_frames: usize, max_bytes: usize) -> Outbound {
        Outbound {
            state: Mutex::new(State::default()),
            drained: Notify::new(),
            max_frames: max_frames.max(1),
            max_bytes: max_bytes.max(1),
        }
    }

    /// Gives the queue its socket; anything queued meanwhile is written now.
    pub fn attach(&self, socket: Socket) {
        let mut st = self.lock();
        st.socket = Some(socket);
        if st.ended.is_none() && !st.items.is_empty() {
            self.write(&mut st);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the queue; wakes the connection's task when a backlog formed or the writing
    /// ended.
    fn write(&self, st: &mut State) {
        let before = (st.items.len(), st.head_sent);
        let formed = st.write_queue();
        if formed || st.ended.is_some() {
            st.notify();
        }
        if (st.items.len(), st.head_sent) != before {
            self.drained.notify_waiters();
        }
    }

    /// Writes a frame now when nothing waits before it and the socket takes it, else
    /// queues it. Never blocks.
    pub fn push(&self, item: Item) -> Pushed {
        let mut st = self.lock();
        let pushed = self.enqueue(&mut st, item);
        if pushed == Pushed::Queued && st.writer == Writer::Idle {
            self.write(&mut st);
        }
        pushed
    }

    /// Queues a frame for a later `flush` (a fan-out writes its recipients in chunks).
    /// Returns whether the caller must call `flush` (nobody else will write it).
    pub fn push_deferred(&self, item: Item) -> (Pushed, bool) {
        let mut st = self.lock();
        let pushed = self.enqueue(&mut st, item);
        let mine = pushed == Pushed::Queued && st.writer == Writer::Idle && st.socket.is_some();
        if mine {
            st.writer = Writer::Scheduled;
        }
        (pushed, mine)
    }

    fn enqueue(&self, st: &mut State, item: Item) -> Pushed {
        if st.close.is_some() {
            return Pushed::Closed;
        }
        let control = item.kind == Kind::Ping;
        if !control
            && (st.items.len() >= self.max_frames || st.bytes + item.data.len() > self.max_bytes)
        {
            st.drop_queue();
            self.close_locked(st, CloseRequest::new(close::SLOW_CONSUMER, "slow consumer"));
            return Pushed::Overflow;
        }
        st.bytes += item.data.len();
        st.items.push_back(item);
        Pushed::Queued
    }

    /// Writes what is queued as far as the socket takes it.
    pub fn flush(&self) {
        let mut st = self.lock();
        if st.ended.is_none() {
            self.write(&mut st);
        }
    }

    /// Asks for the close. The first request wins. With `flush` the frames queued so far
    /// are written first (a drain's `goaway`); without, they are dropped.
    pub fn close(&self, request: CloseRequest, flush: bool) -> bool {
        let mut st = self.lock();
        if st.close.is_some() || st.ended.is_some() {
            return false;
        }
        if !flush {
            st.drop_queue();
        }
        self.close_locked(&mut st, request);
        true
    }

    fn close_locked(&self, st: &mut State, request: CloseRequest) {
        if request.send_frame {
            let item = close_item(&request);
            st.items.push_back(item);
            st.close = Some(request);
            if st.writer == Writer::Idle {
                self.write(st);
            }
        } else {
            let code = request.code;
            st.close = Some(request);
            st.end(Ended {
                code,
                close_sent: false,
            });
        }
        st.notify();
        self.drained.notify_waiters();
    }

    /// Waits until `bytes` more fit in three quarters of both bounds (or the queue is
    /// empty). Returns false once the connection is closing.
    pub async fn wait_room(&self, bytes: usize) -> bool {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            {
                let st = self.lock();
                if st.close.is_some() || st.ended.is_some() {
                    return false;
                }
                let fits = st.items.len() < (self.max_frames * 3 / 4).max(1)
                    && st.bytes + bytes <= self.max_bytes * 3 / 4;
                if fits || st.items.is_empty() {
                    return true;
                }
            }
            drained.await;
        }
    }

    /// The close request, if any.
    #[cfg(test)]
    pub fn close_request(&self) -> Option<CloseRequest> {
        self.lock().close.clone()
    }

    /// How the writing ended, once it has.
    pub fn ended(&self) -> Option<Ended> {
        self.lock().ended
    }

    /// How the writing ended (if it has), and whether the connection's task must wait for
    /// writability and `flush`.
    /// The connection's task starts handling a client message: a close asked for with
    /// [`Outbound::close_after_message`] waits until the message is answered.
    pub fn begin_message(&self) {
        self.lock().handling = true;
    }

    /// The message is answered (its reply queued). Returns the close asked for meanwhile,
    /// which the task now carries out (after the reply).
    pub fn end_message(&self) -> Option<CloseRequest> {
        let mut st = self.lock();
        st.handling = false;
        st.deferred.take().map(|b| *b)
    }

    /// Closes, after the client message being handled (if any) is answered: a sender's
    /// publishes read before the close are stored or refused, and answered, before the
    /// close frame — so a client that reconnects elsewhere cannot have them stored out of
    /// its send order. Returns false when the connection is already closing.
    pub fn close_after_message(&self, request: CloseRequest) -> bool {
        let mut st = self.lock();
        if st.close.is_some() || st.ended.is_some() || st.deferred.is_some() {
            return false;
        }
        if st.handling {
            st.deferred = Some(Box::new(request));
            return true;
        }
        self.close_locked(&mut st, request);
        true
    }

    /// Whether a close was requested (our close frame is queued or out, or the writing
    /// ended): client messages read from now on are not handled.
    pub fn is_closing(&self) -> bool {
        let st = self.lock();
        st.close.is_some() || st.ended.is_some()
    }

    pub fn status(&self) -> (Option<Ended>, bool) {
        let st = self.lock();
        (st.ended, st.writer == Writer::Backlog && st.ended.is_none())
    }

    /// Ready once an event (backlog, close request, end) happened since the last time it
    /// was; for the connection's task only (one waker).
    pub fn poll_event(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = self.lock();
        if std::mem::take(&mut st.event) {
            return Poll::Ready(());
        }
        if !st.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            st.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Ends a queue whose socket took nothing for `timeout`. Returns whether it did.
    pub fn expire_stalled(&self, now: Instant, timeout: std::time::Duration) -> bool {
        let mut st = self.lock();
        let stalled = st.ended.is_none() && st.stalled_since.is_some_and(|t| now >= t + timeout);
        if stalled {
            let code = st.close.as_ref().map_or(1006, |c| c.code);
            st.end(Ended {
                code,
                close_sent: false,
            });
            st.notify();
            drop(st);
            self.drained.notify_waiters();
        }
        stalled
    }

    /// The end of the connection: lets go of the socket and of anything still queued, and
    /// returns the close code to report (1006 when none could be sent).
    pub fn finish(&self) -> u16 {
        let mut st = self.lock();
        st.socket = None;
        let code = match st.ended {
            Some(e) => e.code,
            None => st.close.as_ref().map_or(1006, |c| c.code),
        };
        if st.close.is_none() {
            st.close = Some(CloseRequest::peer_gone(code));
        }
        if st.ended.is_none() {
            st.end(Ended {
                code,
                close_sent: false,
            });
        }
        drop(st);
        self.drained.notify_waiters();
        code
    }

    /// Moves up to `max_bytes` of pending frames into `out` (at least one frame when any is
    /// pending), as a writer would. Returns the close request once nothing more is to be
    /// written before it (the close frame itself is not returned).
    #[cfg(test)]
    pub fn take(&self, out: &mut Vec<Item>, max_bytes: usize) -> Option<CloseRequest> {
        let mut st = self.lock();
        let mut taken = 0;
        while let Some(front) = st.items.front() {
            if front.kind == Kind::Close || (taken > 0 && taken + front.data.len() > max_bytes) {
                break;
            }
            let item = st.items.pop_front().expect("front exists");
            taken += item.data.len();
            st.bytes -= item.data.len();
            out.push(item);
        }
        let close = match st.items.front() {
            None if st.ended.is_some() => st.close.clone(),
            Some(front) if front.kind == Kind::Close => st.close.clone(),
            _ => None,
        };
        drop(st);
        if taken > 0 {
            self.drained.notify_waiters();
        }
        close
    }

    /// Pending frames (the close frame not counted) and bytes.
    #[cfg(test)]
    pub fn len(&self) -> (usize, usize) {
        let st = self.lock();
        let frames = st.items.iter().filter(|i| i.kind != Kind::Close).count();
        (frames, st.bytes)
    }
}

mod write;

#[cfg(test)]
mod tests;
