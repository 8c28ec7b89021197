//! `fanout`: N subscribers (`…-f<i>`, round-robin over the targets) subscribe to one channel;
//! after every reply, `ready`; then M messages are published to it at a rate, through the API
//! or one publisher socket (`…-p0`, process 0 only). Per message: the time until the last
//! subscriber got it (max over subscribers of receive − scheduled time, merged across
//! processes by `report`); per delivery: the latency histogram.
//!
//! `--slow K` (process 0): K more subscribers (`…-w<i>`) with SO_RCVBUF 4096 that stop
//! reading after their subscribe reply; at the end they drain their socket and report the
//! close code they find (expected 4008, slow consumer) in `slow.closes`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::bits::Bits;
use super::session::{self, Peer, Reconnect, Spec};
use super::{close_all, publish, Setup};
use crate::cli::{FanoutArgs, Via};
use crate::conn::{self, new_writer, Control, Ended, Writer};
use crate::payload::{self, now_us};
use crate::proto::{switchboard, Incoming};
use crate::run::{Ctl, Ctx, Ready};
use crate::stats::{FanoutPartial, Partial, SlowPartial, Stats};

/// The subscribe request id.
const SUB_ID: u64 = 1;
/// Longest a slow subscriber drains its socket at the end, and how long it may stay silent
/// before it counts as still open.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
const DRAIN_IDLE: Duration = Duration::from_secs(2);

struct FanState {
    counts: Vec<AtomicU32>,
    last_us: Vec<AtomicU64>,
    acked: Vec<AtomicBool>,
    stats: Arc<Stats>,
}

impl FanState {
    fn ack(&self, m: u64) {
        if let Some(a) = self.acked.get(m as usize) {
            if !a.swap(true, Relaxed) {
                self.stats.acked.fetch_add(1, Relaxed);
            }
        }
    }
}

/// A subscriber: first copies per message are counted, later ones are duplicates.
struct Subscriber {
    st: Arc<FanState>,
    channel: Arc<str>,
    seen: Bits,
    highest: Option<u64>,
}

impl Peer for Subscriber {
    fn on_text(&mut self, text: &[u8], recv_us: u64) -> Control {
        let Incoming::Delivery { payload, .. } = switchboard::classify(text) else {
            return Control::Continue;
        };
        let lat = recv_us.saturating_sub(payload.t);
        let s = &self.st.stats;
        s.latency.record(lat);
        let q = payload.q;
        if self.seen.set(q) {
            s.duplicated.fetch_add(1, Relaxed);
            return Control::Continue;
        }
        s.delivered.fetch_add(1, Relaxed);
        if self.highest.is_some_and(|h| q < h) {
            s.out_of_order.fetch_add(1, Relaxed);
        }
        self.highest = self.highest.max(Some(q));
        if let (Some(c), Some(l)) = (
            self.st.counts.get(q as usize),
            self.st.last_us.get(q as usize),
        ) {
            c.fetch_add(1, Relaxed);
            l.fetch_max(lat, Relaxed);
        }
        Control::Continue
    }
    fn subscribe_frame(&self) -> Option<String> {
        Some(switchboard::subscribe(SUB_ID, &self.channel))
    }
    fn on_subscribe_text(&mut self, text: &[u8], _: u64) -> Option<Result<(), String>> {
        subscribe_answer(text)
    }
}

fn subscribe_answer(text: &[u8]) -> Option<Result<(), String>> {
    match switchboard::classify(text) {
        Incoming::Reply { id: SUB_ID, ok } => Some(if ok {
            Ok(())
        } else {
            Err("subscribe_refused".into())
        }),
        _ => None,
    }
}

/// The publisher socket's reader: replies (id = message) are acks.
struct Publisher {
    st: Arc<FanState>,
}

impl Peer for Publisher {
    fn on_text(&mut self, text: &[u8], _: u64) -> Control {
        match switchboard::classify(text) {
            Incoming::Reply { id, ok: true } => self.st.ack(id),
            Incoming::Reply { ok: false, .. } => {
                self.st.stats.send_failed.fetch_add(1, Relaxed);
            }
            _ => {}
        }
        Control::Continue
    }
}

pub async fn run(ctx: Arc<Ctx>, mut ctl: Ctl, a: &FanoutArgs) -> Partial {
    let range = ctx.shard_range(a.subscribers);
    let m = a.messages as usize;
    let st = Arc::new(FanState {
        counts: (0..m).map(|_| AtomicU32::new(0)).collect(),
        last_us: (0..m).map(|_| AtomicU64::new(0)).collect(),
        acked: (0..m).map(|_| AtomicBool::new(false)).collect(),
        stats: ctx.stats.clone(),
    });
    let publishes = ctx.shard == 0;
    if publishes {
        ctx.stats.scheduled.store(a.messages, Relaxed);
    }
    let channel: Arc<str> = a.channel.as_str().into();
    let k = ctx.endpoints.len() as u64;
    let no_reconnect = Reconnect {
        enabled: false,
        max_ms: 0,
    };
    let setup = Setup::new(a.concurrency.div_ceil(ctx.processes));
    let closing = CancellationToken::new();
    let (mut writers, mut tasks, mut spawned) = (Vec::new(), JoinSet::new(), 0u64);
    let spec = |idx: u64, home: u64, user: String, writer: &Writer| Spec {
        idx,
        home: home as usize,
        user,
        writer: writer.clone(),
        generation: None,
        reconnect: no_reconnect,
        closing: closing.clone(),
    };
    let mut publisher: Option<(Writer, watch::Receiver<u64>)> = None;
    if publishes && a.via == Via::Ws {
        if let Some(slot) = setup.slot(&ctx).await {
            let w = new_writer();
            let (tx, rx) = watch::channel(0);
            let mut s = spec(a.subscribers + a.slow, 0, ctx.user("p", 0), &w);
            s.generation = Some(tx);
            let peer = Publisher { st: st.clone() };
            let c = ctx.clone();
            tasks.spawn(async move {
                session::run(c, s, slot, peer).await;
            });
            writers.push(w.clone());
            publisher = Some((w, rx));
            spawned += 1;
        }
    }
    for i in range.clone() {
        let Some(slot) = setup.slot(&ctx).await else {
            break;
        };
        let w = new_writer();
        let s = spec(i, i % k, ctx.user("f", i), &w);
        let peer = Subscriber {
            st: st.clone(),
            channel: channel.clone(),
            seen: Bits::with_len(a.messages),
            highest: None,
        };
        let c = ctx.clone();
        tasks.spawn(async move {
            session::run(c, s, slot, peer).await;
        });
        writers.push(w);
        spawned += 1;
    }
    let mut slow = JoinSet::new();
    if publishes {
        for i in 0..a.slow {
            let (ctx, channel) = (ctx.clone(), channel.clone());
            let idx = a.subscribers + i;
            slow.spawn(async move { slow_subscriber(&ctx, idx, i, &channel).await });
        }
    }
    let setup_end = setup.wait(&ctx, spawned).await;
    // Slow subscribers park after subscribing: collect them as they finish their setup.
    let mut parked = Vec::new();
    while let Some(r) = slow.join_next().await {
        if let Ok(Some(p)) = r {
            parked.push(p);
        }
    }
    let s = &ctx.stats;
    let ready = Ready {
        established: s.established.load(Relaxed),
        failed: s.failed.load(Relaxed),
    };
    let publisher_up = match &publisher {
        Some((w, _)) => w.lock().await.is_some(),
        None => false,
    };
    let subscribed = ready.established - u64::from(publisher_up) - parked.len() as u64;
    ctx.progress(&format!("setup done: {subscribed} subscribed"));
    let mut send_end = 0;
    let t0 = ctl.ready(ready).await;
    if let Some(t0) = t0 {
        if publishes {
            send_end = publish_all(&ctx, &st, &channel, publisher.take(), t0, a).await;
        }
        let end = t0 + (a.messages as f64 * 1e6 / a.rate) as u64;
        ctx.sleep_until(end).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(a.settle_seconds);
        let done = |st: &FanState| {
            st.counts
                .iter()
                .all(|c| u64::from(c.load(Relaxed)) >= subscribed)
                && (!publishes
                    || s.sent.load(Relaxed) <= s.acked.load(Relaxed) + s.send_failed.load(Relaxed))
        };
        while !done(&st) && !ctx.stop.is_cancelled() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    closing.cancel();
    close_all(&ctx, &writers, tasks).await;
    let slow_part = drain_slow(parked, publishes.then_some(a.slow)).await;
    let mut p = ctx.stats.partial();
    p.setup_start_us = setup.start_us;
    p.setup_end_us = setup_end;
    if let Some(t0) = t0.filter(|_| publishes) {
        p.send_start_us = t0;
        p.send_end_us = send_end.max(t0);
    }
    p.unconfirmed = p.sent.saturating_sub(p.acked + p.send_failed);
    p.fanout = Some(FanoutPartial {
        subscribers: subscribed,
        counts: st.counts.iter().map(|c| c.load(Relaxed)).collect(),
        last_us: st.last_us.iter().map(|c| c.load(Relaxed)).collect(),
        acked: publishes.then(|| st.acked.iter().map(|c| c.load(Relaxed)).collect()),
    });
    p.slow = slow_part;
    p
}

/// Publishes the M messages on schedule; returns when the last one went out.
async fn publish_all(
    ctx: &Arc<Ctx>,
    st: &Arc<FanState>,
    channel: &str,
    publisher: Option<(Writer, watch::Receiver<u64>)>,
    t0: u64,
    a: &FanoutArgs,
) -> u64 {
    let mut last = t0;
    for m in 0..a.messages {
        let at = t0 + (m as f64 * 1e6 / a.rate) as u64;
        if !ctx.sleep_until(at).await {
            break;
        }
        ctx.stats.send_started(at);
        let body = payload::build(0, m, at, a.payload_bytes);
        match (&publisher, &ctx.api) {
            (Some((w, _)), _) => {
                let frame = switchboard::publish_frame(m, channel, &body);
                if conn::send(w, frame.into_bytes()).await.is_err() {
                    break; // the publisher socket is gone
                }
                ctx.stats.sent.fetch_add(1, Relaxed);
            }
            (None, Some(api)) => {
                let st = st.clone();
                publish::fanout_one(ctx, api, channel, &body, move || st.ack(m));
            }
            (None, None) => break,
        }
        last = now_us();
    }
    last
}

/// A slow subscriber after its setup: its socket is not read until the end.
struct Parked {
    read: conn::WsRead,
    writer: Writer,
}

async fn slow_subscriber(ctx: &Ctx, idx: u64, i: u64, channel: &str) -> Option<Parked> {
    let k = ctx.endpoints.len();
    let user = ctx.user("w", i);
    ctx.stats.attempted.fetch_add(1, Relaxed);
    let mut o = match ctx.open(idx, i as usize % k, &user, None, Some(4096)).await {
        Ok(o) => o,
        Err(e) => {
            ctx.stats.fail(format!("slow_{}", e.kind()));
            return None;
        }
    };
    let writer = new_writer();
    *writer.lock().await = Some(o.write);
    let frame = switchboard::subscribe(SUB_ID, channel);
    conn::send(&writer, frame.into_bytes()).await.ok()?;
    let mut ok = false;
    let ended = conn::read_loop(&mut o.read, &writer, |t, _| match subscribe_answer(t) {
        Some(r) => {
            ok = r.is_ok();
            Control::Stop
        }
        None => Control::Continue,
    })
    .await;
    if ended != Ended::Stopped || !ok {
        ctx.stats.fail("slow_subscribe".into());
        return None;
    }
    ctx.stats.established.fetch_add(1, Relaxed);
    Some(Parked {
        read: o.read,
        writer,
    })
}

/// Reads what the slow subscribers' sockets hold, up to the close, and tallies the codes.
async fn drain_slow(parked: Vec<Parked>, slow: Option<u64>) -> Option<SlowPartial> {
    let slow = slow.filter(|n| *n > 0)?;
    let mut set = JoinSet::new();
    for mut p in parked {
        set.spawn(async move {
            let r = tokio::time::timeout(
                DRAIN_TIMEOUT,
                conn::drain(&mut p.read, &p.writer, DRAIN_IDLE),
            )
            .await;
            match r {
                Ok(Some(Ended::Closed(c))) => c.to_string(),
                Ok(Some(Ended::Abnormal)) => "1006".into(),
                Ok(Some(_)) => "local".into(),
                Ok(None) | Err(_) => "open".into(),
            }
        });
    }
    let mut closes = BTreeMap::new();
    while let Some(r) = set.join_next().await {
        *closes
            .entry(r.unwrap_or_else(|_| "error".into()))
            .or_default() += 1;
    }
    Some(SlowPartial {
        connections: slow,
        closes,
    })
}
