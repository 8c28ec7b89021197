//! Publishing over HTTP on the schedule: direct messages to user channels or the pairs' rooms
//! (one request per message, or `/v1/batch` requests of up to `--batch` messages per API
//! URL, flushed when full or when the oldest waited `--batch-linger-ms`) and fan-out
//! messages to one channel.
//!
//! Acked = 2xx (per item for batches); an error answer or a request that could not be sent
//! is `send_failed`; a connection that broke before the answer leaves it unconfirmed.

use std::ops::Range;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::direct::DirectState;
use crate::api::{Api, Outcome};
use crate::cli::DirectArgs;
use crate::payload::{self, now_us};
use crate::proto::{switchboard, ApiCall};
use crate::run::Ctx;
use crate::stats::Stats;

/// One message waiting in a batch.
struct Item {
    g: u64,
    q: u64,
    channel: String,
    payload: String,
}

/// Sends the direct messages of pairs `range` through the API; returns when the last was
/// handed to a connection (unix µs).
pub async fn direct(
    ctx: &Arc<Ctx>,
    st: &Arc<DirectState>,
    range: Range<u64>,
    t0: u64,
    a: &DirectArgs,
) -> u64 {
    let Some(api) = ctx.api.clone() else {
        return t0;
    };
    let k = ctx.endpoints.len() as u64;
    let linger_us = a.batch_linger_ms * 1000;
    let mut pending: Vec<(u64, Vec<Item>)> = (0..api.len()).map(|_| (0, Vec::new())).collect();
    let mut last = t0;
    // Messages in schedule order: sequence q of every pair, then q + 1.
    let per_pair = range.clone().map(|g| st.count(g)).max().unwrap_or(0);
    let mut msgs = (0..per_pair)
        .flat_map(|q| range.clone().map(move |g| (g, q)))
        .filter(|&(g, q)| q < st.count(g))
        .peekable();
    loop {
        let next_at = msgs.peek().map(|&(g, q)| st.at(t0, a.rate, g, q));
        let flush_at = pending
            .iter()
            .filter(|(_, items)| !items.is_empty())
            .map(|(first, _)| first + linger_us)
            .min();
        let Some(wake) = [next_at, flush_at].into_iter().flatten().min() else {
            break;
        };
        if !ctx.sleep_until(wake).await {
            break;
        }
        let now = now_us();
        for (u, (first, items)) in pending.iter_mut().enumerate() {
            if !items.is_empty() && *first + linger_us <= now {
                send_batch(ctx, st, &api, u, std::mem::take(items));
                last = now_us();
            }
        }
        while let Some(&(g, q)) = msgs.peek() {
            let at = st.at(t0, a.rate, g, q);
            if at > now {
                break;
            }
            msgs.next();
            ctx.stats.send_started(at);
            let u = (((g % k) + 1) % api.len() as u64) as usize;
            let body = payload::build(g, q, at, a.payload_bytes);
            if a.batch <= 1 {
                let call = if st.rooms() {
                    switchboard::publish(&ctx.auth, &st.channel(g), &body)
                } else {
                    ctx.protocol
                        .publish_to_user(&ctx.auth, &ctx.user("r", g), &body)
                };
                send_one(&ctx.stats, st, &api, u, call, g, q);
            } else {
                let (first, items) = &mut pending[u];
                if items.is_empty() {
                    *first = now;
                }
                items.push(Item {
                    g,
                    q,
                    channel: st.channel(g),
                    payload: body,
                });
                if items.len() >= a.batch {
                    send_batch(ctx, st, &api, u, std::mem::take(items));
                }
            }
            last = now_us();
        }
    }
    for (u, (_, items)) in pending.into_iter().enumerate() {
        if !items.is_empty() && !ctx.stop.is_cancelled() {
            send_batch(ctx, st, &api, u, items);
            last = now_us();
        }
    }
    last
}

fn send_one(
    stats: &Arc<Stats>,
    st: &Arc<DirectState>,
    api: &Api,
    u: usize,
    call: ApiCall,
    g: u64,
    q: u64,
) {
    stats.sent.fetch_add(1, Relaxed);
    let (st, stats) = (st.clone(), stats.clone());
    api.submit(
        u,
        g,
        call,
        Box::new(move |o| match o {
            Outcome::Status(s, _) if (200..300).contains(&s) => st.ack(g, q),
            Outcome::Status(..) | Outcome::NotSent => {
                stats.send_failed.fetch_add(1, Relaxed);
            }
            Outcome::NoAnswer => {}
        }),
    );
}

fn send_batch(ctx: &Ctx, st: &Arc<DirectState>, api: &Api, u: usize, items: Vec<Item>) {
    let stats = ctx.stats.clone();
    stats.sent.fetch_add(items.len() as u64, Relaxed);
    let call = switchboard::batch(
        &ctx.auth,
        items
            .iter()
            .map(|i| (i.channel.as_str(), i.payload.as_str())),
    );
    let keys: Vec<(u64, u64)> = items.iter().map(|i| (i.g, i.q)).collect();
    let st = st.clone();
    // One connection per URL for batches: a batch holds many pairs, and batches on
    // concurrent connections could reorder a pair's messages.
    api.submit(
        u,
        0,
        call,
        Box::new(move |o| {
            let results = match &o {
                Outcome::Status(200, body) => switchboard::batch_results(body),
                Outcome::NoAnswer => return,
                _ => None,
            };
            let results = results.unwrap_or_default();
            for (i, (g, q)) in keys.into_iter().enumerate() {
                if results.get(i).copied().unwrap_or(false) {
                    st.ack(g, q);
                } else {
                    stats.send_failed.fetch_add(1, Relaxed);
                }
            }
        }),
    );
}

/// Publishes a fan-out message (payload JSON) to `channel` through the first API URL and
/// its first connection (so the messages reach the channel in order); `on_ack` on 2xx.
pub fn fanout_one(
    ctx: &Ctx,
    api: &Api,
    channel: &str,
    payload: &str,
    on_ack: impl FnOnce() + Send + 'static,
) {
    let stats = ctx.stats.clone();
    stats.sent.fetch_add(1, Relaxed);
    let call = switchboard::publish(&ctx.auth, channel, payload);
    api.submit(
        0,
        0,
        call,
        Box::new(move |o| match o {
            Outcome::Status(s, _) if (200..300).contains(&s) => on_ack(),
            Outcome::Status(..) | Outcome::NotSent => {
                stats.send_failed.fetch_add(1, Relaxed);
            }
            Outcome::NoAnswer => {}
        }),
    );
}
