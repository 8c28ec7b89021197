//! One connection's life: the setup attempt (counted in `connections`), an optional
//! subscribe, the read loop, the close (recorded by code), and — with `--reconnect` — new
//! connections after `goaway.reconnect_ms` (capped) or a jittered 100–500 ms, resuming with
//! the peer's `since`, rotating over the targets when one refuses, and sending first what
//! the peer asks to send again (unanswered keyed publishes). No client-side dedupe.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::Slot;
use crate::conn::{self, Control, Ended, Writer};
use crate::proto::{Established, Pos};
use crate::run::Ctx;

/// What a connection does with what it reads.
pub trait Peer: Send + 'static {
    /// A text frame after setup, read at `recv_us` (unix µs).
    fn on_text(&mut self, text: &[u8], recv_us: u64) -> Control;
    /// Established (`first`: the setup attempt; else a reconnect).
    fn on_established(&mut self, _est: &Established, _first: bool) {}
    /// The position to resume from on a reconnect.
    fn since(&self) -> Option<Pos> {
        None
    }
    /// The last `goaway.reconnect_ms` seen (taken).
    fn take_goaway(&mut self) -> Option<u64> {
        None
    }
    /// Frames to send first on a new connection after a reconnect (publishes the old one
    /// left unanswered), before anything else can be written there.
    fn resend(&mut self) -> Vec<String> {
        Vec::new()
    }
    /// A frame to send right after setup whose answer completes the setup (subscribe).
    fn subscribe_frame(&self) -> Option<String> {
        None
    }
    /// Feeds a frame (read at `recv_us`) while waiting for that answer: None = keep
    /// waiting, Some(Ok) = done, Some(Err(kind)) = refused.
    fn on_subscribe_text(&mut self, _text: &[u8], _recv_us: u64) -> Option<Result<(), String>> {
        Some(Ok(()))
    }
}

/// How a session reconnects.
#[derive(Clone, Copy, Debug)]
pub struct Reconnect {
    pub enabled: bool,
    pub max_ms: u64,
}

/// A connection to run.
pub struct Spec {
    /// Global connection index (source address choice).
    pub idx: u64,
    /// Home target index.
    pub home: usize,
    pub user: String,
    pub writer: Writer,
    /// Bumped after every (re)connect; dropped when the session ends for good.
    pub generation: Option<watch::Sender<u64>>,
    pub reconnect: Reconnect,
    /// No more reconnects once cancelled (the end of the run).
    pub closing: CancellationToken,
}

fn jitter_ms() -> u64 {
    rand::rng().random_range(100..=500)
}

/// Runs the connection until it ends for good; returns the peer.
pub async fn run<P: Peer>(ctx: Arc<Ctx>, spec: Spec, mut slot: Slot, mut peer: P) -> P {
    let stats = &ctx.stats;
    stats.attempted.fetch_add(1, Relaxed);
    let started = Instant::now();
    let opened = ctx.open(spec.idx, spec.home, &spec.user, None, None).await;
    let mut opened = match opened {
        Ok(o) => o,
        Err(e) => {
            stats.fail(e.kind());
            return peer;
        }
    };
    let handshake_us = started.elapsed().as_micros() as u64;
    *spec.writer.lock().await = Some(opened.write);
    if let Err(kind) = subscribe(&mut opened.read, &spec.writer, &mut peer).await {
        stats.fail(kind);
        conn::close(&spec.writer, 1000).await;
        spec.writer.lock().await.take();
        return peer;
    }
    stats.handshake.record(handshake_us);
    stats.established.fetch_add(1, Relaxed);
    peer.on_established(&opened.est, true);
    slot.finish();
    let mut generation = 0u64;
    let mut read = opened.read;
    loop {
        stats.connected.fetch_add(1, Relaxed);
        generation += 1;
        if let Some(g) = &spec.generation {
            let _ = g.send(generation);
        }
        let ended = conn::read_loop(&mut read, &spec.writer, |t, at| peer.on_text(t, at)).await;
        stats.connected.fetch_sub(1, Relaxed);
        spec.writer.lock().await.take();
        if let Some(code) = ended.code() {
            stats.close(code);
        }
        let goaway = peer.take_goaway();
        if !spec.reconnect.enabled || spec.closing.is_cancelled() || ended == Ended::Local {
            return peer;
        }
        let mut delay = goaway.map_or_else(jitter_ms, |ms| ms.min(spec.reconnect.max_ms));
        let mut tries = 0usize;
        let next = loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(delay)) => {}
                _ = spec.closing.cancelled() => return peer,
            }
            let since = peer.since();
            let target = spec.home + tries;
            match ctx
                .open(spec.idx, target, &spec.user, since.as_ref(), None)
                .await
            {
                Ok(o) => break o,
                Err(e) => {
                    stats.fail_reconnect(e.kind());
                    tries += 1;
                    delay = jitter_ms();
                }
            }
        };
        stats.reconnects.fetch_add(1, Relaxed);
        if next.est.recovered == Some(false) {
            stats.recovery_failed.fetch_add(1, Relaxed);
        }
        {
            // Under the lock: the sender's next scheduled message cannot overtake these.
            let mut w = spec.writer.lock().await;
            let ws = w.insert(next.write);
            for frame in peer.resend() {
                if ws
                    .write_frame(conn::text_frame(frame.into_bytes()))
                    .await
                    .is_err()
                {
                    break;
                }
                stats.resent.fetch_add(1, Relaxed);
            }
        }
        read = next.read;
        if let Err(kind) = subscribe(&mut read, &spec.writer, &mut peer).await {
            stats.fail_reconnect(kind);
            spec.writer.lock().await.take();
            return peer;
        }
        peer.on_established(&next.est, false);
    }
}

/// Sends the peer's subscribe frame (if any) and reads until its answer.
async fn subscribe<P: Peer>(
    read: &mut conn::WsRead,
    writer: &Writer,
    peer: &mut P,
) -> Result<(), String> {
    let Some(frame) = peer.subscribe_frame() else {
        return Ok(());
    };
    conn::send(writer, frame.into_bytes())
        .await
        .map_err(|_| "subscribe_write".to_owned())?;
    let mut result = Err("subscribe_no_answer".to_owned());
    let ended = conn::read_loop(read, writer, |t, at| match peer.on_subscribe_text(t, at) {
        None => Control::Continue,
        Some(r) => {
            result = r;
            Control::Stop
        }
    })
    .await;
    match ended {
        Ended::Stopped => result,
        Ended::Closed(c) => Err(format!("closed_{c}")),
        _ => Err("eof".into()),
    }
}
