//! The publish path: one script on the channel's slot numbers the message, appends it
//! (channels with history) and SPUBLISHes it, atomically — so every node receives a
//! channel's messages in offset order, whoever published them.
//!
//! Where the channel's primary has a replica online, `WAIT` goes out in the same
//! pipeline and the publish is acknowledged only once a replica has the message: a
//! primary killed after answering loses no acknowledged message (its promoted replica
//! has them all). If no replica confirms within the wait (a replica that just died),
//! the message is acknowledged anyway — it is stored and was delivered — and counted
//! as unreplicated: semi-synchronous replication, as MySQL does it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use switchboard_proto::channel::Channel;
use switchboard_proto::Message;

use super::client::{Cmd, Deployment, Lane, Value};
use super::{frames, now_ms, unavailable, value_str, Inner};
use crate::types::{PublishOutcome, PublishRequest, RouterError};
use crate::Result;

/// What the publish script answered.
struct Stored {
    epoch: String,
    offset: u64,
    /// SPUBLISH's answer: how many nodes got it live.
    receivers: Option<u64>,
    /// The idempotency key was seen: this is the first publish's answer.
    duplicate: bool,
}

fn parse(v: Value) -> Result<Stored> {
    let parts = v.into_array();
    if parts.len() < 3 {
        return Err(RouterError::Unavailable("unexpected publish answer".into()));
    }
    let receivers = parts[2].as_int().unwrap_or(-1);
    // An offset (numbered channels) or a stream entry id `0-<offset>` (history).
    let offset = match &parts[1] {
        Value::Int(o) => u64::try_from(*o).ok(),
        other => other.as_bytes().and_then(|b| frames::offset(b)),
    };
    Ok(Stored {
        epoch: value_str(&parts[0]),
        offset: offset
            .ok_or_else(|| RouterError::Unavailable("unexpected publish answer".into()))?,
        receivers: u64::try_from(receivers).ok(),
        duplicate: parts.get(3).and_then(Value::as_int) == Some(1),
    })
}

impl Inner {
    /// Replicas that must have a write to `slot` before it is acknowledged.
    fn replica_acks(&self, slot: u16) -> u32 {
        if let Some(n) = self.settings.replica_acks {
            return n;
        }
        if matches!(self.config.deployment, Deployment::Single(_)) {
            return 0;
        }
        let Some(client) = self.client.get() else {
            return 0;
        };
        let t = client.topology();
        t.shard_of(slot)
            .map_or(0, |i| u32::from(t.shards[i].replicas > 0))
    }
}

/// A publish ready to send: the message (without its position yet) and its script call.
struct Prepared {
    message: Message,
    cmd: Cmd,
    slot: u16,
    acks: u32,
}

fn prepare(inner: &Inner, request: PublishRequest) -> Result<Prepared> {
    Channel::parse(&request.channel).map_err(|e| RouterError::BadRequest(e.to_string()))?;
    let n = inner.next_id.fetch_add(1, Ordering::Relaxed);
    let message = Message {
        channel: request.channel,
        id: format!("m-{}{n:x}", inner.id_tag),
        from: request.from,
        epoch: String::new(),
        offset: 0,
        ts: now_ms(),
        data: request.data,
    };
    let keys = &inner.keys;
    let ch = message.channel.as_str();
    let slot = keys.slot(ch);
    let (max_len, _, ttl) = inner.history_args(ch);
    let template = frames::message_template(&message);
    let live = keys.live(ch);
    let deadline = inner
        .redis_deadline_ms(inner.settings.command_timeout)
        .max(0);
    let meta = keys.meta(ch);
    let idem = request.idempotency.as_ref().map(|i| {
        (
            keys.idempotency(ch, &i.key),
            i.window.as_millis().max(1) as i64,
        )
    });
    let scripts = &inner.scripts;
    let (cmd, acks) = if max_len > 0 {
        let stream = keys.stream(ch);
        let (script, with_key) = match &idem {
            Some((key, _)) => (&scripts.publish_keyed, Some(key.as_bytes())),
            None => (&scripts.publish, None),
        };
        let mut names = vec![meta.as_bytes(), stream.as_bytes()];
        names.extend(with_key);
        let cmd = script
            .cmd(&names)
            .arg(&template)
            .int(max_len)
            .int(ttl)
            .int(message.ts)
            .arg(epoch_candidate(&message))
            .arg(&live)
            .int(deadline);
        let cmd = with_window(cmd, idem.as_ref());
        let acks = inner.replica_acks(slot);
        let cmd = if acks > 0 {
            cmd.on(Lane::Replicated)
        } else {
            cmd
        };
        (cmd, acks)
    } else {
        // Nothing is stored: nothing for a replica to keep (an idempotency key is
        // only worth what the channel's numbering is).
        let (script, with_key) = match &idem {
            Some((key, _)) => (&scripts.number_keyed, Some(key.as_bytes())),
            None => (&scripts.number, None),
        };
        let mut names = vec![meta.as_bytes()];
        names.extend(with_key);
        let cmd = script
            .cmd(&names)
            .arg(&template)
            .int(ttl)
            .int(message.ts)
            .arg(epoch_candidate(&message))
            .arg(&live)
            .int(deadline);
        (with_window(cmd, idem.as_ref()), 0)
    };
    Ok(Prepared {
        message,
        cmd,
        slot,
        acks,
    })
}

/// A keyed script's last argument: the window (ms).
fn with_window(cmd: Cmd, idem: Option<&(String, i64)>) -> Cmd {
    match idem {
        Some((_, window)) => cmd.int(*window),
        None => cmd,
    }
}

/// The epoch a channel gets if this message starts one: the message id without its
/// `m-` (a random per-process tag and a counter: unique, and `[A-Za-z0-9]`).
fn epoch_candidate(message: &Message) -> &str {
    message.id.strip_prefix("m-").unwrap_or(&message.id)
}

fn outcome(mut message: Message, stored: Stored) -> PublishOutcome {
    message.epoch = stored.epoch;
    message.offset = stored.offset;
    let receivers = stored.receivers.unwrap_or(0);
    PublishOutcome {
        message: Arc::new(message),
        nodes: u32::try_from(receivers).unwrap_or(u32::MAX),
        online: receivers > 0,
        duplicate: stored.duplicate,
    }
}

/// Longest a publish waits for a replica (`WAIT`): replication on a healthy link takes
/// a millisecond or two; a replica this late is as good as gone for the acknowledgement.
const WAIT_MAX: std::time::Duration = std::time::Duration::from_millis(200);

/// How long a publish waits for its replicas.
fn wait_ms(inner: &Inner) -> u64 {
    (inner.settings.command_timeout / 2)
        .min(WAIT_MAX)
        .as_millis() as u64
}

/// `WAIT acks` on the primary of `slot`, as a command to pipeline after the writes (on
/// the replicated lane: a slow `WAIT` holds up no probe, read or registration).
fn wait_cmd(inner: &Inner, acks: u32, slot: u16) -> Cmd {
    Cmd::new("WAIT")
        .int(acks)
        .int(wait_ms(inner))
        .in_slot(slot)
        .on(Lane::Replicated)
}

/// Counts a publish that no replica confirmed in time, re-reads the slot map (the
/// replica may be gone: `auto` stops waiting for it), and logs at most every 10 s.
fn unreplicated(inner: &Inner, channel: &str, replicated: Option<i64>, acks: u32) {
    if replicated.unwrap_or(0) >= i64::from(acks) {
        return;
    }
    let n = UNREPLICATED.fetch_add(1, Ordering::Relaxed) + 1;
    if let Some(client) = inner.client.get() {
        client.schedule_refresh();
    }
    static LAST_LOG_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = now_ms();
    let last = LAST_LOG_MS.load(Ordering::Relaxed);
    if now.saturating_sub(last) >= 10_000
        && LAST_LOG_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            channel = %channel,
            unreplicated_total = n,
            "no Redis replica confirmed a message in time; acknowledged unreplicated"
        );
    }
}

pub(super) async fn publish(inner: &Arc<Inner>, request: PublishRequest) -> Result<PublishOutcome> {
    inner.ensure_started()?;
    let p = prepare(inner, request)?;
    let client = inner.client()?;
    let stored = if p.acks == 0 {
        parse(client.call(&p.cmd).await.map_err(unavailable)?)?
    } else {
        // The append, then the WAIT that closes its write batch on the channel's primary.
        let (written, replicated) = client.call_replicated(&p.cmd, p.acks, wait_ms(inner)).await;
        let stored = parse(written.map_err(unavailable)?)?;
        unreplicated(inner, &p.message.channel, replicated, p.acks);
        stored
    };
    Ok(outcome(p.message, stored))
}

/// Many publishes as one pipeline per primary (plus one WAIT per primary that needs it):
/// a `/v1/batch` of 100 messages is one write and one read on each Redis connection.
pub(super) async fn publish_many(
    inner: &Arc<Inner>,
    requests: Vec<PublishRequest>,
) -> Vec<Result<PublishOutcome>> {
    if let Err(e) = inner.ensure_started() {
        return requests.iter().map(|_| Err(e.clone())).collect();
    }
    let client = match inner.client() {
        Ok(c) => c,
        Err(e) => return requests.iter().map(|_| Err(e.clone())).collect(),
    };
    let prepared: Vec<Result<Prepared>> = requests.into_iter().map(|r| prepare(inner, r)).collect();
    let mut cmds = Vec::with_capacity(prepared.len() + 4);
    // One WAIT per primary, after its writes: the largest ack count any of them needs.
    let topology = client.topology();
    let mut waits: Vec<(usize, u16, u32)> = Vec::new();
    for p in prepared.iter().flatten() {
        cmds.push(p.cmd.clone());
        if p.acks > 0 {
            let shard = topology.shard_of(p.slot).unwrap_or(usize::MAX);
            match waits.iter_mut().find(|(s, _, _)| *s == shard) {
                Some(w) => w.2 = w.2.max(p.acks),
                None => waits.push((shard, p.slot, p.acks)),
            }
        }
    }
    let n_writes = cmds.len();
    for &(_, slot, acks) in &waits {
        cmds.push(wait_cmd(inner, acks, slot));
    }
    let mut replies = client.call_many(&cmds).await;
    let wait_replies: Vec<Option<i64>> = replies
        .split_off(n_writes)
        .into_iter()
        .map(|r| r.ok().and_then(|v| v.as_int()))
        .collect();
    let mut results: Vec<Option<Result<PublishOutcome>>> = Vec::with_capacity(prepared.len());
    let mut replies = replies.into_iter();
    for p in prepared {
        results.push(Some(match p {
            Err(e) => Err(e),
            Ok(p) => {
                let reply = replies.next().unwrap_or(Err(super::client::Error::Closed));
                match reply.map_err(unavailable).and_then(parse) {
                    Err(e) => Err(e),
                    Ok(stored) => {
                        if p.acks > 0 {
                            let shard = topology.shard_of(p.slot).unwrap_or(usize::MAX);
                            let replicated = waits
                                .iter()
                                .position(|(s, _, _)| *s == shard)
                                .and_then(|w| wait_replies.get(w).copied().flatten());
                            unreplicated(inner, &p.message.channel, replicated, p.acks);
                        }
                        Ok(outcome(p.message, stored))
                    }
                }
            }
        }));
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(RouterError::Unavailable("not published".into()))))
        .collect()
}

/// Publishes acknowledged without a replica's confirmation (see the module docs).
pub(super) static UNREPLICATED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
