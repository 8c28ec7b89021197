//! `direct`: pairs of sender → recipient on user channels or rooms, open loop.
//!
//! Message j (0 ≤ j < rate × duration) goes from pair j % N as its sequence j / N, scheduled
//! at t0 + j / rate. Recipient i (`…-r<i>`) is on targets[i % k]; in `ws` mode sender i
//! (`…-s<i>`) is on targets[(i+1) % k] and publishes over its socket, in `api` mode the
//! messages go through `publish`. A process owns whole pairs, so it counts acks and
//! deliveries of the same messages and reports `lost` itself.
//!
//! `--channel room`: pair i's channel is `<ns>:<prefix>-<run>-p<i>` instead of
//! `user:<recipient>`; the recipient subscribes to it after its welcome (the pair is set up
//! once the reply is ok) and, after a reconnect, subscribes again with `since` = the last
//! position it saw there.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::bits::Bits;
use super::session::{self, Peer, Reconnect, Spec};
use super::{close_all, publish, Setup};
use crate::cli::{DirectArgs, Via};
use crate::conn::{self, new_writer, Control, SendError, Writer};
use crate::payload::{self, now_us};
use crate::proto::{switchboard, Established, Incoming, Pos};
use crate::run::{Ctl, Ctx, Ready};
use crate::stats::{Partial, Stats};
use sender::{send_ws, Sender};

#[derive(Default)]
struct Pair {
    delivered: Bits,
    acked: Bits,
    highest: Option<u64>,
    /// With `--reconnect`: keyed publishes written and not answered yet (sequence →
    /// frame), sent again first on the sender's next connection.
    unanswered: BTreeMap<u64, String>,
}

/// The subscribe request id of a recipient's room.
const SUB_ID: u64 = 1;

/// Acks and deliveries of this process's pairs.
pub struct DirectState {
    /// All pairs of the run (N) and messages of the run (rate × duration).
    pub n: u64,
    pub total: u64,
    lo: u64,
    pairs: Vec<Mutex<Pair>>,
    /// Pair g's channel is this + g: `user:<prefix>-<run>-r` (the recipient's personal
    /// channel) or, with `--channel room`, `<ns>:<prefix>-<run>-p`.
    channel_prefix: String,
    rooms: bool,
    stats: Arc<Stats>,
}

impl DirectState {
    /// The state of pairs `range` of the run `a` (users `<prefix>-<run>-…`).
    pub fn new(
        a: &DirectArgs,
        range: Range<u64>,
        prefix: &str,
        run: &str,
        stats: Arc<Stats>,
    ) -> Self {
        let ns = a.room_namespace();
        DirectState {
            n: a.pairs,
            total: (a.rate * a.duration).round() as u64,
            lo: range.start,
            pairs: range.map(|_| Mutex::default()).collect(),
            channel_prefix: match ns {
                Some(ns) => format!("{ns}:{prefix}-{run}-p"),
                None => format!("user:{prefix}-{run}-r"),
            },
            rooms: ns.is_some(),
            stats,
        }
    }

    /// Whether the pairs talk in rooms (else on the recipients' user channels).
    pub fn rooms(&self) -> bool {
        self.rooms
    }

    /// The channel pair `g`'s messages are published to.
    pub fn channel(&self, g: u64) -> String {
        format!("{}{g}", self.channel_prefix)
    }

    fn pair(&self, g: u64) -> Option<std::sync::MutexGuard<'_, Pair>> {
        let i = g.checked_sub(self.lo)? as usize;
        self.pairs
            .get(i)
            .map(|p| p.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Messages of pair `g`.
    pub fn count(&self, g: u64) -> u64 {
        if g >= self.total {
            0
        } else {
            (self.total - g).div_ceil(self.n)
        }
    }

    /// Schedule of message `q` of pair `g` (unix µs), from t0 at `rate`.
    pub fn at(&self, t0: u64, rate: f64, g: u64, q: u64) -> u64 {
        t0 + ((q * self.n + g) as f64 * 1e6 / rate) as u64
    }

    pub fn ack(&self, g: u64, q: u64) {
        if let Some(mut p) = self.pair(g) {
            p.unanswered.remove(&q);
            if !p.acked.set(q) {
                self.stats.acked.fetch_add(1, Relaxed);
            }
        }
    }

    /// Message `q` of pair `g` was refused (an error reply).
    fn refuse(&self, g: u64, q: u64) {
        if let Some(mut p) = self.pair(g) {
            p.unanswered.remove(&q);
        }
        self.stats.send_failed.fetch_add(1, Relaxed);
    }

    /// Keyed message `q` of pair `g` was written; until its answer, a reconnect sends it again.
    fn written(&self, g: u64, q: u64, frame: &str) {
        if let Some(mut p) = self.pair(g) {
            p.unanswered.insert(q, frame.to_owned());
        }
    }

    /// Message `q` of pair `g` was not written after all.
    fn unwritten(&self, g: u64, q: u64) {
        if let Some(mut p) = self.pair(g) {
            p.unanswered.remove(&q);
        }
    }

    /// Pair `g`'s unanswered keyed publishes, oldest first.
    fn unanswered(&self, g: u64) -> Vec<String> {
        self.pair(g)
            .map(|p| p.unanswered.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Message `q` of pair `g`, scheduled at `t`, was read at `recv_us` (unix µs).
    pub fn deliver(&self, g: u64, q: u64, t: u64, recv_us: u64) {
        self.stats.latency.record(recv_us.saturating_sub(t));
        let Some(mut p) = self.pair(g) else { return };
        if p.delivered.set(q) {
            self.stats.duplicated.fetch_add(1, Relaxed);
            return;
        }
        self.stats.delivered.fetch_add(1, Relaxed);
        if p.highest.is_some_and(|h| q < h) {
            self.stats.out_of_order.fetch_add(1, Relaxed);
        }
        p.highest = p.highest.max(Some(q));
    }

    /// Acked but not (yet) delivered.
    pub fn lost(&self) -> u64 {
        self.pairs
            .iter()
            .map(|p| {
                let p = p.lock().unwrap_or_else(|e| e.into_inner());
                p.acked.count_missing_from(&p.delivered)
            })
            .sum()
    }

    /// Every send answered and every acked message delivered.
    fn settled(&self) -> bool {
        let s = &self.stats;
        s.sent.load(Relaxed) <= s.acked.load(Relaxed) + s.send_failed.load(Relaxed)
            && self.lost() == 0
    }
}

/// A recipient's room (`--channel room`).
struct Room {
    channel: String,
    /// The last position seen there (the first subscribe's reply, then deliveries): a
    /// resubscribe after a reconnect resumes after it.
    pos: Option<Pos>,
}

/// A recipient: counts deliveries of its pair, remembers its personal channel position (and
/// its room's).
struct Recipient {
    g: u64,
    st: Arc<DirectState>,
    protocol: crate::cli::Protocol,
    pos: Option<Pos>,
    room: Option<Room>,
    goaway: Option<u64>,
}

/// Moves `pos` to `(epoch, offset)`.
fn advance(pos: &mut Option<Pos>, epoch: Cow<'_, str>, offset: u64) {
    match pos {
        Some(p) if p.epoch == epoch => p.offset = offset,
        _ => {
            *pos = Some(Pos {
                epoch: epoch.into_owned(),
                offset,
            })
        }
    }
}

impl Peer for Recipient {
    fn on_text(&mut self, text: &[u8], recv_us: u64) -> Control {
        match self.protocol.classify(text) {
            Incoming::Delivery {
                channel,
                payload,
                pos,
            } => {
                if let (Some((epoch, offset)), Some(ch)) = (pos, channel) {
                    match &mut self.room {
                        Some(r) if r.channel == ch => advance(&mut r.pos, epoch, offset),
                        _ if ch.starts_with("user:") => advance(&mut self.pos, epoch, offset),
                        _ => {}
                    }
                }
                if payload.s == self.g {
                    self.st.deliver(payload.s, payload.q, payload.t, recv_us);
                }
                Control::Continue
            }
            Incoming::Goaway { reconnect_ms } => {
                self.goaway = reconnect_ms;
                Control::Continue
            }
            Incoming::Answer(a) => Control::Answer(a),
            _ => Control::Continue,
        }
    }
    fn on_established(&mut self, est: &Established, first: bool) {
        if first {
            self.pos = est.pos.clone();
        }
    }
    fn since(&self) -> Option<Pos> {
        self.pos.clone()
    }
    fn take_goaway(&mut self) -> Option<u64> {
        self.goaway.take()
    }
    fn subscribe_frame(&self) -> Option<String> {
        let r = self.room.as_ref()?;
        Some(switchboard::subscribe_since(
            SUB_ID,
            &r.channel,
            r.pos.as_ref(),
        ))
    }
    fn on_subscribe_text(&mut self, text: &[u8], recv_us: u64) -> Option<Result<(), String>> {
        let Some(reply) = switchboard::reply(text).filter(|r| r.id == SUB_ID) else {
            // Before the reply (the gateway sends it first): count what comes as usual.
            self.on_text(text, recv_us);
            return None;
        };
        if !reply.ok {
            return Some(Err("subscribe_refused".into()));
        }
        if reply.recovered == Some(false) {
            self.st.stats.recovery_failed.fetch_add(1, Relaxed);
        }
        if let Some(r) = &mut self.room {
            // Recovered: the replay follows and moves `pos` on; else start from the top.
            if reply.recovered != Some(true) {
                r.pos = reply.pos;
            }
        }
        Some(Ok(()))
    }
}

pub async fn run(ctx: Arc<Ctx>, mut ctl: Ctl, a: &DirectArgs) -> Partial {
    let range = ctx.shard_range(a.pairs);
    let k = ctx.endpoints.len() as u64;
    let st = Arc::new(DirectState::new(
        a,
        range.clone(),
        &ctx.common.user_prefix,
        &ctx.run_id,
        ctx.stats.clone(),
    ));
    let scheduled: u64 = range.clone().map(|g| st.count(g)).sum();
    ctx.stats.scheduled.store(scheduled, Relaxed);
    let reconnect = Reconnect {
        enabled: a.reconnect,
        max_ms: a.max_reconnect_ms,
    };
    let setup = Setup::new(a.concurrency.div_ceil(ctx.processes));
    let closing = CancellationToken::new();
    let mut writers = Vec::new();
    let mut tasks = JoinSet::new();
    let mut senders: Vec<(u64, Writer, watch::Receiver<u64>)> = Vec::new();
    let mut spawned = 0u64;
    'setup: for g in range.clone() {
        for role in ["r", "s"] {
            if role == "s" && a.via == Via::Api {
                continue;
            }
            let Some(slot) = setup.slot(&ctx).await else {
                break 'setup;
            };
            let writer = new_writer();
            writers.push(writer.clone());
            let (home, idx) = if role == "r" {
                (g % k, 2 * g)
            } else {
                ((g + 1) % k, 2 * g + 1)
            };
            let (gen_tx, gen_rx) = watch::channel(0);
            let spec = Spec {
                idx,
                home: home as usize,
                user: ctx.user(role, g),
                writer: writer.clone(),
                generation: Some(gen_tx),
                reconnect,
                closing: closing.clone(),
            };
            let c = ctx.clone();
            if role == "r" {
                let peer = Recipient {
                    g,
                    st: st.clone(),
                    protocol: ctx.protocol,
                    pos: None,
                    room: st.rooms().then(|| Room {
                        channel: st.channel(g),
                        pos: None,
                    }),
                    goaway: None,
                };
                tasks.spawn(async move {
                    session::run(c, spec, slot, peer).await;
                });
            } else {
                senders.push((g, writer, gen_rx));
                let peer = Sender {
                    g,
                    st: st.clone(),
                    goaway: None,
                };
                tasks.spawn(async move {
                    session::run(c, spec, slot, peer).await;
                });
            }
            spawned += 1;
        }
    }
    let setup_end = setup.wait(&ctx, spawned).await;
    let ready = Ready {
        established: ctx.stats.established.load(Relaxed),
        failed: ctx.stats.failed.load(Relaxed),
    };
    ctx.progress(&format!(
        "setup done: {} established, {} failed; sending {} messages",
        ready.established, ready.failed, scheduled
    ));
    let mut send_end = 0;
    let t0 = ctl.ready(ready).await;
    if let Some(t0) = t0 {
        send_end = match a.via {
            Via::Ws => send_ws(&ctx, &st, senders, t0, a).await,
            Via::Api => publish::direct(&ctx, &st, range.clone(), t0, a).await,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(a.settle_seconds);
        while !st.settled() && !ctx.stop.is_cancelled() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    closing.cancel();
    close_all(&ctx, &writers, tasks).await;
    let mut p = ctx.stats.partial();
    p.setup_start_us = setup.start_us;
    p.setup_end_us = setup_end;
    if let Some(t0) = t0 {
        p.send_start_us = t0;
        p.send_end_us = send_end.max(t0);
    }
    p.lost = st.lost();
    p.unconfirmed = p.sent.saturating_sub(p.acked + p.send_failed);
    p
}

mod sender;

#[cfg(test)]
mod tests;
