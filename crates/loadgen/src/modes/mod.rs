//! The four modes and what they share: opening many connections under a concurrency limit,
//! the reconnecting session loop (`session`), the final close and the progress line.
//!
//! - `idle`    — idle and storm: open, hold (answering pings), close with 1000.
//! - `direct`  — sender → recipient pairs on user channels or rooms (ws or API publishing).
//! - `fanout`  — N subscribers of one channel, one publisher, optional slow subscribers.
//! - `session` — one connection's life: setup, reads, closes, reconnects with `since`.
//! - `bits`    — a growable bit set (delivered / acked sequences).

pub mod bits;
pub mod direct;
pub mod fanout;
pub mod idle;
pub mod publish;
pub mod session;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::conn::{self, Writer};
use crate::payload::now_us;
use crate::run::Ctx;

/// How long the final close waits for the servers' close frames.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// Close frames written at once during the final close.
const CLOSE_BATCH: usize = 512;

/// The setup phase: a concurrency limit for attempts in flight, and a count of finished
/// attempts the mode waits for before it reports ready.
#[derive(Clone)]
pub struct Setup {
    limit: Arc<Semaphore>,
    finished: Arc<Semaphore>,
    pub start_us: u64,
}

impl Setup {
    pub fn new(concurrency: usize) -> Self {
        Setup {
            limit: Arc::new(Semaphore::new(concurrency.max(1))),
            finished: Arc::new(Semaphore::new(0)),
            start_us: now_us(),
        }
    }

    /// Waits for an attempt slot (None when stopped).
    pub async fn slot(&self, ctx: &Ctx) -> Option<Slot> {
        tokio::select! {
            p = self.limit.clone().acquire_owned() => Some(Slot {
                permit: p.ok(),
                finished: Some(self.finished.clone()),
            }),
            _ = ctx.stop.cancelled() => None,
        }
    }

    /// Waits until `n` attempts finished (or the run is stopped); returns the end time.
    pub async fn wait(&self, ctx: &Ctx, n: u64) -> u64 {
        let mut left = n;
        while left > 0 {
            let take = left.min(u64::from(u32::MAX >> 4)) as u32;
            tokio::select! {
                p = self.finished.acquire_many(take) => {
                    if let Ok(p) = p { p.forget(); }
                }
                _ = ctx.stop.cancelled() => break,
            }
            left -= u64::from(take);
        }
        now_us()
    }
}

/// One setup attempt's slot: released when the attempt finished, either way.
pub struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    finished: Option<Arc<Semaphore>>,
}

impl Slot {
    pub fn finish(&mut self) {
        self.permit.take();
        if let Some(f) = self.finished.take() {
            f.add_permits(1);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Closes every connection with 1000 (a few hundred at a time) and waits a bounded time for
/// the connection tasks to see the servers' answers.
pub async fn close_all(ctx: &Ctx, writers: &[Writer], mut tasks: JoinSet<()>) {
    let start = std::time::Instant::now();
    for chunk in writers.chunks(CLOSE_BATCH) {
        let mut set = JoinSet::new();
        for w in chunk {
            let w = w.clone();
            set.spawn(async move {
                conn::close(&w, 1000).await;
            });
        }
        while set.join_next().await.is_some() {}
    }
    let written = start.elapsed();
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    ctx.progress(&format!(
        "closed {} connections: close frames written in {:.2} s, {} not answered after {:.2} s",
        writers.len(),
        written.as_secs_f64(),
        tasks.len(),
        start.elapsed().as_secs_f64()
    ));
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

/// A progress line on stderr every 2 s.
pub async fn progress(ctx: Arc<Ctx>) {
    let s = &ctx.stats;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        ctx.progress(&format!(
            "connected={} established={} failed={} sent={} acked={} delivered={} closes={} reconnects={}",
            s.connected.load(Relaxed),
            s.established.load(Relaxed),
            s.failed.load(Relaxed),
            s.sent.load(Relaxed),
            s.acked.load(Relaxed),
            s.delivered.load(Relaxed),
            s.closes_total.load(Relaxed),
            s.reconnects.load(Relaxed),
        ));
    }
}
