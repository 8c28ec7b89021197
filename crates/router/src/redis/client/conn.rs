//! One pipelined connection to one Redis server.
//!
//! Callers append their encoded command to a shared write buffer and wait for the reply;
//! no task is spawned per command. A writer task flushes the buffer: when woken it first
//! yields once, so every task that is ready at that moment (other HTTP requests, the rest
//! of a batch) adds its command before the write — one `write` carries them all, with no
//! timer and no fixed delay. A reader task parses replies and completes the waiters in
//! order (command connections) or hands every value to a push handler on its own task
//! (subscriber connections: the backplane's deliveries run right there, no hop).
//!
//! A connection never recovers: on an I/O error, a protocol error or a reply older than
//! the command timeout (Redis frozen or unreachable) it fails every waiter and is marked
//! broken; its owner connects a new one.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::resp::{self, Cmd, Value};
use super::Error;

pub type Reader = Box<dyn AsyncRead + Send + Unpin>;
pub type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// Receives every value a subscriber connection reads, on the reader task.
pub trait PushHandler: Send + Sync + 'static {
    fn push(&self, value: Value);
}

/// How a connection treats what it reads.
pub enum Mode {
    /// Replies complete the waiting commands in order.
    Commands,
    /// Everything goes to the handler (SSUBSCRIBE confirmations, messages, pongs).
    Subscriber(Arc<dyn PushHandler>),
}

/// Where one reply goes.
enum Reply {
    One(oneshot::Sender<Result<Value, Error>>),
    /// One reply for several callers (the `WAIT` closing a write batch).
    Shared(Vec<oneshot::Sender<Result<Value, Error>>>),
    Slot(Arc<Batch>, usize),
    /// Read and dropped (the `ASKING` before a redirected command).
    Discard,
}

struct Waiter {
    /// When the command was queued: a reply older than the timeout breaks the connection.
    at: Instant,
    reply: Reply,
}

impl Reply {
    fn complete(self, result: Result<Value, Error>) {
        match self {
            Reply::One(tx) => {
                let _ = tx.send(result);
            }
            Reply::Shared(txs) => {
                for tx in txs {
                    let _ = tx.send(result.clone());
                }
            }
            Reply::Slot(batch, i) => batch.complete(i, result),
            Reply::Discard => {}
        }
    }
}

/// The replies of a pipeline so far, and how many are still missing.
type Collected = (Vec<Option<Result<Value, Error>>>, usize);

/// Replies of a pipeline of commands, delivered together with one wake-up.
pub struct Batch {
    results: Mutex<Collected>,
    done: Notify,
}

impl Batch {
    fn new(n: usize) -> Arc<Batch> {
        Arc::new(Batch {
            results: Mutex::new(((0..n).map(|_| None).collect(), n)),
            done: Notify::new(),
        })
    }

    fn complete(&self, i: usize, result: Result<Value, Error>) {
        let mut r = self.results.lock().unwrap_or_else(|e| e.into_inner());
        if r.0[i].is_none() {
            r.0[i] = Some(result);
            r.1 -= 1;
            if r.1 == 0 {
                self.done.notify_one();
            }
        }
    }

    /// Waits for every reply.
    pub async fn wait(&self) -> Vec<Result<Value, Error>> {
        loop {
            {
                let mut r = self.results.lock().unwrap_or_else(|e| e.into_inner());
                if r.1 == 0 {
                    return std::mem::take(&mut r.0)
                        .into_iter()
                        .map(|x| x.unwrap_or(Err(Error::Closed)))
                        .collect();
                }
            }
            self.done.notified().await;
        }
    }
}

#[derive(Default)]
struct State {
    out: Vec<u8>,
    waiters: VecDeque<Waiter>,
    /// The writer was woken and has not taken the buffer yet.
    scheduled: bool,
    broken: Option<Error>,
    /// Writes sent that wait for replicas: the writer follows them with one
    /// `WAIT <acks> <ms>` whose answer goes to every one of them (group commit: a
    /// `WAIT` per write would hold the connection a replication round trip each).
    wait: Option<(u32, u64)>,
    wait_waiters: Vec<oneshot::Sender<Result<Value, Error>>>,
    /// A `WAIT` is out and not answered: the writes sent meanwhile go out at once (Redis
    /// runs them once that `WAIT` returns) and the next `WAIT`, for all of them, goes out
    /// when its answer comes back.
    wait_in_flight: bool,
}

struct Inner {
    addr: String,
    state: Mutex<State>,
    wake: Notify,
    broken: CancellationToken,
    timeout: Duration,
    /// Yield once before each write so that ready tasks join the batch.
    batch: bool,
}

/// A cheap handle; the connection lives while its tasks run.
#[derive(Clone)]
pub struct Conn {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("addr", &self.inner.addr)
            .finish()
    }
}

/// Largest write buffer kept between flushes (a huge batch gives its memory back).
const KEEP_BUFFER: usize = 256 * 1024;
/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;

impl Conn {
    /// Starts the reader and writer tasks over an established (authenticated) stream.
    pub fn start(
        addr: String,
        reader: Reader,
        writer: Writer,
        mode: Mode,
        timeout: Duration,
        batch: bool,
    ) -> Conn {
        let inner = Arc::new(Inner {
            addr,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            broken: CancellationToken::new(),
            timeout,
            batch,
        });
        tokio::spawn(write_loop(inner.clone(), writer));
        tokio::spawn(read_loop(inner.clone(), reader, mode));
        Conn { inner }
    }

    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    pub fn is_broken(&self) -> bool {
        self.inner.broken.is_cancelled()
    }

    /// Resolves once the connection is broken.
    pub async fn broken(&self) {
        self.inner.broken.cancelled().await
    }

    /// Breaks the connection (e.g. a subscriber whose probes stopped coming back).
    pub fn close(&self, why: Error) {
        fail(&self.inner, why);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues commands with where their replies go, and wakes the writer.
    fn enqueue<'a>(&self, cmds: impl Iterator<Item = (&'a Cmd, Reply)>) -> Result<(), Error> {
        let at = Instant::now();
        self.append(|st| {
            for (cmd, reply) in cmds {
                cmd.encode(&mut st.out);
                st.waiters.push_back(Waiter { at, reply });
            }
        })
    }

    /// Lets `add` append to the write buffer, and wakes the writer unless it already is.
    fn append(&self, add: impl FnOnce(&mut State)) -> Result<(), Error> {
        let mut st = self.lock();
        if let Some(e) = &st.broken {
            return Err(e.clone());
        }
        add(&mut st);
        let wake = !st.scheduled;
        st.scheduled = true;
        drop(st);
        if wake {
            self.inner.wake.notify_one();
        }
        Ok(())
    }

    /// Sends one command and waits for its reply (an error reply is `Ok(Value::Error)`).
    pub async fn call(&self, cmd: &Cmd) -> Result<Value, Error> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(std::iter::once((cmd, Reply::One(tx))))?;
        rx.await.unwrap_or(Err(Error::Closed))
    }

    /// Sends a write and waits for its reply, then for `acks` replicas to have it: the
    /// second result is the answer of the `WAIT` that closes the write's batch (shared
    /// with every write of that batch).
    pub async fn call_replicated(
        &self,
        cmd: &Cmd,
        acks: u32,
        wait_ms: u64,
    ) -> (Result<Value, Error>, Result<Value, Error>) {
        let (tx, rx) = oneshot::channel();
        let (wtx, wrx) = oneshot::channel();
        let at = Instant::now();
        let queued = self.append(|st| {
            cmd.encode(&mut st.out);
            st.waiters.push_back(Waiter {
                at,
                reply: Reply::One(tx),
            });
            st.wait_waiters.push(wtx);
            let (a, ms) = st.wait.unwrap_or((0, 0));
            st.wait = Some((a.max(acks), ms.max(wait_ms)));
        });
        if let Err(e) = queued {
            return (Err(e.clone()), Err(e));
        }
        let written = rx.await.unwrap_or(Err(Error::Closed));
        let replicated = wrx.await.unwrap_or(Err(Error::Closed));
        (written, replicated)
    }

    /// Sends `ASKING` and the command (a redirection during a slot migration).
    pub async fn call_asking(&self, cmd: &Cmd) -> Result<Value, Error> {
        let asking = Cmd::new("ASKING");
        let (tx, rx) = oneshot::channel();
        self.enqueue([(&asking, Reply::Discard), (cmd, Reply::One(tx))].into_iter())?;
        rx.await.unwrap_or(Err(Error::Closed))
    }

    /// Sends commands as one pipeline; the replies come back together, in order.
    pub async fn call_many(&self, cmds: &[&Cmd]) -> Vec<Result<Value, Error>> {
        if cmds.is_empty() {
            return Vec::new();
        }
        let batch = Batch::new(cmds.len());
        let queued = self.enqueue(
            cmds.iter()
                .enumerate()
                .map(|(i, c)| (*c, Reply::Slot(batch.clone(), i))),
        );
        if let Err(e) = queued {
            return cmds.iter().map(|_| Err(e.clone())).collect();
        }
        batch.wait().await
    }

    /// Writes a command whose answer arrives as a push (subscriber connections).
    pub fn send(&self, cmd: &Cmd) -> Result<(), Error> {
        self.append(|st| cmd.encode(&mut st.out))
    }
}

/// Marks the connection broken and fails every waiter (once).
fn fail(inner: &Inner, why: Error) {
    let waiters = {
        let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.broken.is_some() {
            return;
        }
        st.broken = Some(why.clone());
        st.out = Vec::new();
        st.wait = None;
        let mut waiters = std::mem::take(&mut st.waiters);
        let shared = std::mem::take(&mut st.wait_waiters);
        if !shared.is_empty() {
            waiters.push_back(Waiter {
                at: Instant::now(),
                reply: Reply::Shared(shared),
            });
        }
        waiters
    };
    tracing::debug!(addr = %inner.addr, error = %why, "redis connection broken");
    inner.broken.cancel();
    for w in waiters {
        w.reply.complete(Err(why.clone()));
    }
}

async fn write_loop(inner: Arc<Inner>, mut writer: Writer) {
    let mut spare: Vec<u8> = Vec::new();
    // Checks that replies keep coming: a reply older than the timeout means Redis is
    // frozen, gone or wedged, and every waiter gets its error now rather than never.
    let mut tick = tokio::time::interval((inner.timeout / 4).max(Duration::from_millis(20)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = inner.wake.notified() => {}
            _ = tick.tick() => {
                let oldest = {
                    let st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
                    st.waiters.front().map(|w| w.at)
                };
                if oldest.is_some_and(|at| at.elapsed() >= inner.timeout) {
                    fail(&inner, Error::Timeout);
                }
                continue;
            }
            _ = inner.broken.cancelled() => break,
        }
        if inner.batch {
            tokio::task::yield_now().await;
        }
        let mut buf = {
            let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
            st.scheduled = false;
            if !st.wait_in_flight {
                if let Some((acks, ms)) = st.wait.take() {
                    Cmd::new("WAIT").int(acks).int(ms).encode(&mut st.out);
                    let waiters = std::mem::take(&mut st.wait_waiters);
                    st.waiters.push_back(Waiter {
                        at: Instant::now(),
                        reply: Reply::Shared(waiters),
                    });
                    st.wait_in_flight = true;
                }
            }
            std::mem::swap(&mut st.out, &mut spare);
            std::mem::take(&mut spare)
        };
        if buf.is_empty() {
            spare = buf;
            continue;
        }
        let written = tokio::select! {
            r = writer.write_all(&buf) => r,
            _ = inner.broken.cancelled() => break,
        };
        if let Err(e) = written {
            fail(&inner, Error::Io(e.to_string()));
            break;
        }
        buf.clear();
        if buf.capacity() <= KEEP_BUFFER {
            spare = buf;
        }
    }
    let _ = writer.shutdown().await;
}

async fn read_loop(inner: Arc<Inner>, mut reader: Reader, mode: Mode) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut values = Vec::new();
    loop {
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        let n = tokio::select! {
            r = reader.read_buf(&mut buf) => r,
            _ = inner.broken.cancelled() => return,
        };
        match n {
            Ok(0) => {
                fail(&inner, Error::Io("connection closed by the server".into()));
                return;
            }
            Ok(_) => {}
            Err(e) => {
                fail(&inner, Error::Io(e.to_string()));
                return;
            }
        }
        loop {
            match resp::parse(&mut buf) {
                Ok(Some(v)) => values.push(v),
                Ok(None) => break,
                Err(e) => {
                    fail(&inner, Error::Protocol(e.0));
                    return;
                }
            }
        }
        match &mode {
            Mode::Commands => complete(&inner, &mut values),
            Mode::Subscriber(handler) => {
                for v in values.drain(..) {
                    handler.push(v);
                }
            }
        }
    }
}

/// Completes the oldest waiters with `values`, in order.
fn complete(inner: &Inner, values: &mut Vec<Value>) {
    if values.is_empty() {
        return;
    }
    let (replies, wake): (Vec<Reply>, bool) = {
        let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        let n = values.len().min(st.waiters.len());
        let replies: Vec<Reply> = st.waiters.drain(..n).map(|w| w.reply).collect();
        // A `WAIT` answered: the next one (for the writes sent meanwhile) may go.
        let mut wake = false;
        if replies.iter().any(|r| matches!(r, Reply::Shared(_))) {
            st.wait_in_flight = false;
            if st.wait.is_some() && !st.scheduled {
                st.scheduled = true;
                wake = true;
            }
        }
        (replies, wake)
    };
    if wake {
        inner.wake.notify_one();
    }
    if replies.len() < values.len() {
        fail(inner, Error::Protocol("a reply nobody asked for".into()));
    }
    for (reply, value) in replies.into_iter().zip(values.drain(..)) {
        reply.complete(Ok(value));
    }
    values.clear();
}

#[cfg(test)]
mod tests;
