//! Send scheduling with sub-millisecond precision.
//!
//! tokio's timer has 1 ms granularity (a deadline is rounded up to the next millisecond tick
//! and the driver parks in `epoll_wait` with a millisecond timeout), so a send scheduled with
//! `tokio::time::sleep` starts 0–2 ms late, and that lateness lands in the measured latency.
//! [`sleep_until_unix`] with [`Timer::Precise`] (the default) waits in two steps:
//!
//! 1. the pacer: one thread per process holding every waiting deadline in a heap. It sleeps
//!    on a futex with an hrtimer timeout (its timer slack lowered from 50 µs to 1 ns through
//!    `/proc/<tid>/timerslack_ns`) until [`SPIN`] before the next wake-up, spins the rest,
//!    and wakes the task [`LEAD`] before its deadline — about what the hop to a parked tokio
//!    worker takes;
//! 2. the task yields (`yield_now`, so the worker keeps reading sockets) until the unix clock
//!    reaches the deadline: a send never starts early.
//!
//! No thread spins while a gap is long, so the cost is a few wake-ups per message. README.md
//! ("Send scheduling") has the measured alternatives and why this one won.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::payload::now_us;

/// The pacer sleeps until this long before a wake-up and spins the rest: with 1 ns of timer
/// slack its futex sleep ends 25–40 µs late at the median on this kind of VM (p90 35–70 µs;
/// with the default 50 µs slack: 80–90 µs).
pub const SPIN: Duration = Duration::from_micros(30);
/// The pacer wakes a task this long before its deadline (the waker's hop to a parked tokio
/// worker, 10–30 µs here); the task yields for whatever is left.
pub const LEAD: Duration = Duration::from_micros(30);
/// `Timer::Spin`: tokio's timer until this long before the deadline (it fires up to ~2 ms
/// late), then `yield_now` until the deadline.
pub const COARSE_MARGIN: Duration = Duration::from_micros(2_500);

/// How the send schedule waits (`--timer`).
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Timer {
    /// The pacer thread (hrtimer sleep, a short spin), then a short yield in the task.
    #[default]
    Precise,
    /// tokio's timer to 2.5 ms before, then `yield_now` until the deadline: a tokio worker
    /// busy for 2.5 ms per message (for comparison).
    Spin,
    /// tokio's timer alone: 1 ms granularity (how the load generator worked before).
    Tokio,
}

impl Timer {
    pub fn name(self) -> &'static str {
        match self {
            Timer::Precise => "precise",
            Timer::Spin => "spin",
            Timer::Tokio => "tokio",
        }
    }
}

/// Sleeps until the unix time `at_us` (µs); false when `stop` came first. Never returns
/// `true` before `now_us() >= at_us`.
pub async fn sleep_until_unix(at_us: u64, timer: Timer, stop: &CancellationToken) -> bool {
    let now = now_us();
    if at_us <= now {
        return !stop.is_cancelled();
    }
    tokio::select! {
        _ = wait(at_us, now, timer) => true,
        _ = stop.cancelled() => false,
    }
}

async fn wait(at_us: u64, now: u64, timer: Timer) {
    let left = Duration::from_micros(at_us - now);
    match timer {
        Timer::Precise => pacer().sleep_until(Instant::now() + left).await,
        Timer::Spin if left > COARSE_MARGIN => {
            tokio::time::sleep(left.saturating_sub(COARSE_MARGIN)).await
        }
        Timer::Spin => {}
        Timer::Tokio => tokio::time::sleep(left).await,
    }
    while now_us() < at_us {
        tokio::task::yield_now().await;
    }
}

/// The process's pacer (its thread starts on first use).
pub fn pacer() -> &'static Pacer {
    static PACER: OnceLock<Pacer> = OnceLock::new();
    PACER.get_or_init(Pacer::start)
}

/// A thread that wakes tasks at precise instants (see the module documentation).
pub struct Pacer {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when a new earliest deadline arrives.
    cv: Condvar,
    /// Set with the signal, so a spinning pacer notices it too.
    earlier: AtomicBool,
    /// The pacer thread's id (0 until it started): the self-test reads its CPU time.
    tid: AtomicU32,
    /// The timer slack the pacer thread runs with, ns (0 until known).
    slack_ns: AtomicU32,
}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Entry>,
    seq: u64,
}

/// One registered wake-up; the heap is a min-heap by (deadline, registration order).
struct Entry {
    at: Instant,
    seq: u64,
    slot: Arc<Mutex<Slot>>,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

#[derive(Default)]
struct Slot {
    waker: Option<Waker>,
    fired: bool,
    /// The future was dropped: nothing to wake.
    cancelled: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pacer {
    fn start() -> Pacer {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            cv: Condvar::new(),
            earlier: AtomicBool::new(false),
            tid: AtomicU32::new(0),
            slack_ns: AtomicU32::new(0),
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("loadgen-pacer".into())
            .spawn(move || run(&s))
            .expect("spawning the pacer thread");
        Pacer { shared }
    }

    /// Completes at `deadline` − [`LEAD`] (or later; never before that).
    pub fn sleep_until(&self, deadline: Instant) -> PacedSleep<'_> {
        PacedSleep {
            pacer: self,
            at: deadline.checked_sub(LEAD).unwrap_or(deadline),
            slot: None,
        }
    }

    /// The pacer thread's id, once it runs.
    pub fn tid(&self) -> Option<u32> {
        Some(self.shared.tid.load(Relaxed)).filter(|t| *t != 0)
    }

    /// The timer slack of the pacer thread, ns (`None` until it is known).
    pub fn slack_ns(&self) -> Option<u32> {
        Some(self.shared.slack_ns.load(Relaxed)).filter(|t| *t != 0)
    }
}

/// The pacer's part of a wait (from [`Pacer::sleep_until`]).
pub struct PacedSleep<'a> {
    pacer: &'a Pacer,
    at: Instant,
    slot: Option<Arc<Mutex<Slot>>>,
}

impl Future for PacedSleep<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(slot) = &self.slot {
            let mut s = lock(slot);
            if s.fired {
                return Poll::Ready(());
            }
            if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                s.waker = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
        if Instant::now() >= self.at {
            return Poll::Ready(());
        }
        let slot = Arc::new(Mutex::new(Slot {
            waker: Some(cx.waker().clone()),
            ..Slot::default()
        }));
        let sh = &self.pacer.shared;
        let mut q = lock(&sh.queue);
        q.seq += 1;
        let seq = q.seq;
        let first = q.heap.peek().is_none_or(|e| self.at < e.at);
        q.heap.push(Entry {
            at: self.at,
            seq,
            slot: slot.clone(),
        });
        drop(q);
        if first {
            sh.earlier.store(true, Relaxed);
            sh.cv.notify_one();
        }
        self.slot = Some(slot);
        Poll::Pending
    }
}

impl Drop for PacedSleep<'_> {
    fn drop(&mut self) {
        if let Some(slot) = &self.slot {
            let mut s = lock(slot);
            s.cancelled = true;
            s.waker = None;
        }
    }
}

/// The pacer thread: sleep, spin, wake what is due; forever (it dies with the process).
fn run(sh: &Shared) {
    sh.tid.store(thread_id().unwrap_or(0), Relaxed);
    sh.slack_ns.store(lower_timer_slack(), Relaxed);
    let mut due: Vec<Arc<Mutex<Slot>>> = Vec::new();
    // Woke tasks since the last sleep: the next wait blocks at least briefly (below).
    let mut woke = false;
    let mut q = lock(&sh.queue);
    loop {
        let now = Instant::now();
        while q.heap.peek().is_some_and(|e| e.at <= now) {
            due.push(q.heap.pop().expect("peeked").slot);
        }
        if !due.is_empty() {
            drop(q);
            for slot in due.drain(..) {
                let mut s = lock(&slot);
                s.fired = true;
                let w = s.waker.take().filter(|_| !s.cancelled);
                drop(s);
                if let Some(w) = w {
                    w.wake();
                    woke = true;
                }
            }
            q = lock(&sh.queue);
            continue;
        }
        let Some(next) = q.heap.peek().map(|e| e.at) else {
            sh.earlier.store(false, Relaxed);
            woke = false;
            q = sh.cv.wait(q).unwrap_or_else(|p| p.into_inner());
            continue;
        };
        let left = next - now;
        sh.earlier.store(false, Relaxed);
        // A worker just woken may be queued on this CPU: spinning right away would keep it
        // waiting for the rest of the pacer's time slice (milliseconds) whenever deadlines
        // are closer than SPIN. Block once instead; the wake-ups then come in batches.
        if left > SPIN || woke {
            let sleep = left.saturating_sub(SPIN).max(Duration::from_micros(1));
            woke = false;
            q = sh
                .cv
                .wait_timeout(q, sleep)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            continue;
        }
        drop(q);
        // A busy loop, kept short. Not sched_yield: under EEVDF every yield pushes the
        // yielder's deadline out by a whole slice, and a pacer yielding thousands of times a
        // second on a busy machine is then passed over for many slices.
        while Instant::now() < next && !sh.earlier.load(Relaxed) {
            std::hint::spin_loop();
        }
        q = lock(&sh.queue);
    }
}

/// This thread's id, from the `/proc/thread-self` link (`<pid>/task/<tid>`).
pub fn thread_id() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// Sets this thread's timer slack to 1 ns (default 50 µs: a futex timeout may fire that
/// late); returns the slack in effect, ns (0 when unknown).
fn lower_timer_slack() -> u32 {
    let Some(tid) = thread_id() else { return 0 };
    let path = format!("/proc/{tid}/timerslack_ns");
    let _ = std::fs::write(&path, "1");
    std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
