//! `idle` and `storm`: open N connections (each with a fresh token), report ready, hold them
//! answering pings (idle: `--hold-seconds` or until SIGTERM/SIGINT), close them with 1000.
//! Closes by the server during the hold are recorded by code. The storm is the same run with
//! only a concurrency limit; its connects/s is established / wall time of the setup phase.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::session::{self, Peer, Reconnect, Spec};
use super::{close_all, Setup};
use crate::cli::{IdleArgs, StormArgs};
use crate::conn::{new_writer, Control};
use crate::proto::Incoming;
use crate::run::{Ctl, Ctx, Ready};
use crate::stats::Partial;

/// Answers text-level pings; ignores everything else.
struct Quiet {
    protocol: crate::cli::Protocol,
}

impl Peer for Quiet {
    fn on_text(&mut self, text: &[u8], _: u64) -> Control {
        match self.protocol.classify(text) {
            Incoming::Answer(a) => Control::Answer(a),
            _ => Control::Continue,
        }
    }
}

pub async fn run_idle(ctx: Arc<Ctx>, ctl: Ctl, a: &IdleArgs) -> Partial {
    let rate = a.connect_rate / ctx.processes as f64;
    let concurrency = a.concurrency.div_ceil(ctx.processes);
    hold(
        ctx,
        ctl,
        a.connections,
        concurrency,
        rate,
        a.hold_seconds,
        "i",
    )
    .await
}

pub async fn run_storm(ctx: Arc<Ctx>, ctl: Ctl, a: &StormArgs) -> Partial {
    let concurrency = a.concurrency.div_ceil(ctx.processes);
    hold(
        ctx,
        ctl,
        a.connections,
        concurrency,
        0.0,
        Some(a.hold_seconds),
        "c",
    )
    .await
}

async fn hold(
    ctx: Arc<Ctx>,
    mut ctl: Ctl,
    total: u64,
    concurrency: usize,
    rate: f64,
    hold_s: Option<f64>,
    role: &str,
) -> Partial {
    let range = ctx.shard_range(total);
    let setup = Setup::new(concurrency);
    let closing = tokio_util::sync::CancellationToken::new();
    let mut writers = Vec::with_capacity((range.end - range.start) as usize);
    let mut tasks = JoinSet::new();
    let begin = tokio::time::Instant::now();
    let mut spawned = 0u64;
    for i in range.clone() {
        if rate > 0.0 {
            let at = begin + Duration::from_secs_f64(spawned as f64 / rate);
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = ctx.stop.cancelled() => break,
            }
        }
        let Some(slot) = setup.slot(&ctx).await else {
            break;
        };
        let writer = new_writer();
        writers.push(writer.clone());
        let spec = Spec {
            idx: i,
            home: (i % ctx.endpoints.len() as u64) as usize,
            user: ctx.user(role, i),
            writer,
            generation: None,
            reconnect: Reconnect {
                enabled: false,
                max_ms: 0,
            },
            closing: closing.clone(),
        };
        let peer = Quiet {
            protocol: ctx.protocol,
        };
        let c = ctx.clone();
        tasks.spawn(async move {
            session::run(c, spec, slot, peer).await;
        });
        spawned += 1;
    }
    let setup_end = setup.wait(&ctx, spawned).await;
    let s = &ctx.stats;
    let ready = Ready {
        established: s.established.load(std::sync::atomic::Ordering::Relaxed),
        failed: s.failed.load(std::sync::atomic::Ordering::Relaxed),
    };
    ctx.progress(&format!(
        "setup done: {} established, {} failed in {:.2} s",
        ready.established,
        ready.failed,
        (setup_end - setup.start_us) as f64 / 1e6
    ));
    if ctl.ready(ready).await.is_some() {
        match hold_s {
            Some(secs) => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs_f64(secs.max(0.0))) => {}
                    _ = ctx.stop.cancelled() => {}
                }
            }
            None => ctx.stop.cancelled().await,
        }
    }
    closing.cancel();
    close_all(&ctx, &writers, tasks).await;
    let mut p = ctx.stats.partial();
    p.setup_start_us = setup.start_us;
    p.setup_end_us = setup_end;
    p
}
