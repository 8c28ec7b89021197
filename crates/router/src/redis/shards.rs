//! The sharded subscriber: one SSUBSCRIBE connection per primary, carrying the shard
//! channels (`P{ch}`) of the channels this node holds whose slots that primary serves.
//!
//! - `subscribe` sends SSUBSCRIBE on the owner's connection and waits for Redis to
//!   confirm; messages arrive on that connection's reader task and go to the node's sink
//!   right there ([`Dispatch`]), with no task hop.
//! - A subscriber that breaks (Redis gone, failover), a slot that moves (Redis sends
//!   `sunsubscribe` for its channels), or a probe that does not come back marks the
//!   channels involved *interrupted*; the reconcile task refreshes the slot map,
//!   subscribes them on their owner again, and once Redis confirmed, tells the sink,
//!   which repairs them from history ([`NodeSink::channels_interrupted`]).
//! - Every half probe interval the node publishes a probe through each shard (to a
//!   channel in one of that shard's slots) and judges each shard by its probes: down when
//!   one Redis accepted is not back one interval later, forced to reconnect when it is
//!   two intervals late. The backplane is up when every shard is.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::client::{Client, Cmd, Conn, Error, PushHandler, Value};
use super::frames::{self, Inbound};
use super::keys::Keys;
use crate::{NodeSink, ShardStatus};

/// One wanted shard channel.
struct Want {
    /// The subscriber Redis confirmed it on.
    on: Option<u64>,
    /// The subscriber an SSUBSCRIBE for it is in flight on.
    sent_on: Option<u64>,
    /// Live delivery may have missed messages: report once confirmed again.
    interrupted: bool,
    /// A liveness probe channel (not reported to the sink).
    probe: bool,
    waiters: Vec<oneshot::Sender<Result<(), Error>>>,
}

impl Want {
    fn new(probe: bool) -> Want {
        Want {
            on: None,
            sent_on: None,
            interrupted: false,
            probe,
            waiters: Vec::new(),
        }
    }
}

/// A command of a subscriber whose answer has not arrived.
enum Pending {
    Subscribe(VecDeque<String>),
    /// With whoever waits for Redis to confirm.
    Unsubscribe(VecDeque<String>, Option<oneshot::Sender<()>>),
}

/// Probe bookkeeping of one subscriber, shared with its reader task.
#[derive(Default)]
struct Probes {
    sent: AtomicU64,
    seen: AtomicU64,
}

struct Sub {
    id: u64,
    addr: String,
    conn: Conn,
    pending: VecDeque<Pending>,
    probes: Arc<Probes>,
    /// The shard index when it was opened (metrics).
    shard: usize,
    /// The probe channel of this shard and whether its probes come back.
    probe_channel: String,
    probe_slot: u16,
    up: bool,
    /// The oldest probe Redis accepted that has not come back, and when.
    missing: Option<(u64, Instant)>,
    accepted: bool,
    last_forced: Instant,
    /// When the current probe channel was chosen or lost its confirmation: when the
    /// subscriber opened, or when the probe moved with its slot. Redis gets two
    /// intervals to confirm it before the subscriber is reconnected.
    probe_since: Instant,
}

#[derive(Default)]
struct State {
    wanted: HashMap<String, Want>,
    subs: HashMap<String, Sub>,
    /// Wanted channels not confirmed anywhere.
    unconfirmed: usize,
    /// Channels to (re)subscribe on the next reconcile pass.
    dirty: Vec<String>,
    /// Subscribers opened per shard index (the first one is not a reconnect).
    opened: Vec<u64>,
}

pub(super) struct Shards {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    keys: Keys,
    node: String,
    sink: OnceLock<Arc<dyn NodeSink>>,
    state: Mutex<State>,
    wake: Notify,
    stopped: CancellationToken,
    probe_interval: Duration,
    timeout: Duration,
    next_id: AtomicU64,
    up: AtomicBool,
    refresh: AtomicBool,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Shards {
    pub fn new(
        client: Client,
        keys: Keys,
        node: String,
        probe_interval: Duration,
        timeout: Duration,
    ) -> Shards {
        Shards {
            inner: Arc::new(Inner {
                client,
                keys,
                node,
                sink: OnceLock::new(),
                state: Mutex::new(State::default()),
                wake: Notify::new(),
                stopped: CancellationToken::new(),
                probe_interval,
                timeout,
                next_id: AtomicU64::new(1),
                up: AtomicBool::new(false),
                refresh: AtomicBool::new(false),
            }),
        }
    }

    /// Opens a subscriber per shard, starts the reconcile and probe tasks and waits until
    /// a probe made the round trip through every shard (fails fast otherwise).
    pub async fn start(&self, sink: Arc<dyn NodeSink>) -> Result<(), Error> {
        let _ = self.inner.sink.set(sink);
        reconcile(&self.inner).await;
        tokio::spawn(reconcile_loop(self.inner.clone()));
        let deadline = Instant::now() + self.inner.timeout * 2;
        loop {
            probe_round(&self.inner).await;
            if judge(&self.inner) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Unavailable(
                    "no pub/sub round trip through every Redis shard".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts the probe watchdog (after `start`).
    pub fn spawn_watchdog(&self) {
        tokio::spawn(watchdog(self.inner.clone()));
    }

    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::SeqCst)
    }

    pub fn stop(&self) {
        self.inner.stopped.cancel();
        let subs: Vec<Conn> = self
            .inner
            .lock()
            .subs
            .values()
            .map(|s| s.conn.clone())
            .collect();
        for c in subs {
            c.close(Error::Closed);
        }
    }

    /// Subscribes the shard channel `live` and waits until Redis confirmed it.
    pub async fn subscribe(&self, live: &str) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.inner.lock();
            let st = &mut *st;
            if !st.wanted.contains_key(live) {
                st.wanted.insert(live.to_owned(), Want::new(false));
                st.unconfirmed += 1;
            }
            let want = st.wanted.get_mut(live).expect("inserted above");
            if want.on.is_some() {
                return Ok(());
            }
            want.waiters.push(tx);
            if want.sent_on.is_none() && !send_subscribe(&self.inner, st, live) {
                st.dirty.push(live.to_owned());
                self.inner.wake.notify_one();
            }
        }
        match tokio::time::timeout(self.inner.timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => {
                self.unsubscribe(live);
                Err(Error::Timeout)
            }
        }
    }

    /// [`Shards::subscribe`] for an owned name (to collect many futures).
    pub async fn subscribe_owned(&self, live: String) -> Result<(), Error> {
        self.subscribe(&live).await
    }

    /// Stops receiving the shard channel `live` (Redis confirms in the background).
    pub fn unsubscribe(&self, live: &str) {
        self.unsubscribe_inner(live);
    }

    /// Stops receiving the shard channel `live` and waits until Redis confirmed it (at
    /// most the command timeout).
    pub async fn unsubscribe_confirmed(&self, live: &str) {
        if let Some(rx) = self.unsubscribe_inner(live) {
            let _ = tokio::time::timeout(self.inner.timeout, rx).await;
        }
    }

    fn unsubscribe_inner(&self, live: &str) -> Option<oneshot::Receiver<()>> {
        let mut st = self.inner.lock();
        let want = st.wanted.remove(live)?;
        if want.on.is_none() {
            st.unconfirmed -= 1;
        }
        for w in want.waiters {
            let _ = w.send(Err(Error::Closed));
        }
        let mut confirmed = None;
        for id in [want.on, want.sent_on].into_iter().flatten() {
            if let Some(sub) = st.subs.values_mut().find(|s| s.id == id) {
                if sub.conn.send(&Cmd::new("SUNSUBSCRIBE").arg(live)).is_ok() {
                    let (tx, rx) = oneshot::channel();
                    confirmed = Some(rx);
                    sub.pending.push_back(Pending::Unsubscribe(
                        VecDeque::from([live.to_owned()]),
                        Some(tx),
                    ));
                }
            }
        }
        confirmed
    }

    /// Every shard of the current slot map with its subscriber's state.
    pub fn status(&self) -> Vec<ShardStatus> {
        let topology = self.inner.client.topology();
        let st = self.inner.lock();
        let mut counts: HashMap<u64, usize> = HashMap::new();
        for w in st.wanted.values() {
            if let (Some(id), false) = (w.on, w.probe) {
                *counts.entry(id).or_default() += 1;
            }
        }
        topology
            .shards
            .iter()
            .enumerate()
            .map(|(index, shard)| {
                let sub = st.subs.get(&shard.primary);
                ShardStatus {
                    index,
                    primary: shard.primary.clone(),
                    up: sub.is_some_and(|s| s.up),
                    subscriptions: sub.and_then(|s| counts.get(&s.id)).copied().unwrap_or(0),
                    reconnects: st.opened.get(index).map_or(0, |n| n.saturating_sub(1)),
                    replicas: shard.replicas,
                }
            })
            .collect()
    }
}

/// Sends SSUBSCRIBE for `live` on its owner's subscriber, if there is one. Returns
/// false when there is none yet (the reconcile task opens it).
fn send_subscribe(inner: &Inner, st: &mut State, live: &str) -> bool {
    let topology = inner.client.topology();
    let Some(owner) = topology.primary_of(inner.keys.slot_of_key(live)) else {
        return false;
    };
    let Some(sub) = st.subs.get_mut(owner) else {
        return false;
    };
    if sub.conn.send(&Cmd::new("SSUBSCRIBE").arg(live)).is_err() {
        return false;
    }
    sub.pending
        .push_back(Pending::Subscribe(VecDeque::from([live.to_owned()])));
    let id = sub.id;
    if let Some(w) = st.wanted.get_mut(live) {
        w.sent_on = Some(id);
    }
    true
}

/// What the reader task of one subscriber does with each value it reads.
struct Dispatch {
    id: u64,
    inner: Weak<Inner>,
    probes: Arc<Probes>,
}

impl PushHandler for Dispatch {
    fn push(&self, value: Value) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        let items = match value {
            Value::Array(items) => items,
            Value::Error(e) => {
                // A refused SSUBSCRIBE (MOVED during a slot move, CLUSTERDOWN…).
                tracing::debug!(error = %String::from_utf8_lossy(&e), "subscribe refused");
                refused(&inner, self.id);
                return;
            }
            _ => return,
        };
        let kind = items.first().and_then(Value::as_bytes).cloned();
        match kind.as_deref() {
            Some(b"smessage") | Some(b"message") => {
                if let Some(payload) = items.get(2).and_then(Value::as_bytes) {
                    self.deliver(&inner, payload);
                }
            }
            Some(b"ssubscribe") => {
                if let Some(ch) = items.get(1) {
                    confirmed(&inner, self.id, &ch.to_text());
                }
            }
            Some(b"sunsubscribe") => {
                if let Some(ch) = items.get(1) {
                    unsubscribed(&inner, self.id, &ch.to_text());
                }
            }
            _ => {}
        }
    }
}

impl Dispatch {
    fn deliver(&self, inner: &Inner, payload: &Bytes) {
        let Some(frame) = frames::decode(payload) else {
            tracing::warn!("malformed backplane frame dropped");
            return;
        };
        let Some(sink) = inner.sink.get() else {
            return;
        };
        match frame {
            Inbound::Deliver(m) => sink.deliver(m),
            Inbound::Presence {
                channel,
                user,
                event,
            } => sink.presence(&channel, &user, event),
            Inbound::Disconnect { user, code, reason } => {
                sink.disconnect_user(&user, code, &reason);
            }
            Inbound::Probe { node, seq } => {
                if node == inner.node {
                    self.probes.seen.fetch_max(seq, Ordering::SeqCst);
                }
            }
        }
    }
}

fn confirmed(inner: &Inner, sub_id: u64, live: &str) {
    let mut report = None;
    let waiters = {
        let mut st = inner.lock();
        if let Some(sub) = st.subs.values_mut().find(|s| s.id == sub_id) {
            pop_pending(sub, live, true);
        }
        let Some(want) = st.wanted.get_mut(live) else {
            return;
        };
        if want.on.is_some() || want.sent_on != Some(sub_id) {
            return;
        }
        want.on = Some(sub_id);
        want.sent_on = None;
        if want.interrupted && !want.probe {
            report = inner.keys.channel_of(live).map(str::to_owned);
        }
        want.interrupted = false;
        let waiters = std::mem::take(&mut want.waiters);
        st.unconfirmed -= 1;
        waiters
    };
    for w in waiters {
        let _ = w.send(Ok(()));
    }
    if let (Some(ch), Some(sink)) = (report, inner.sink.get()) {
        sink.channels_interrupted(&[ch]);
    }
}

/// Removes `live` from the oldest pending command of its kind; returns whether it was
/// there (an answer to our own command, not a server-initiated one).
fn pop_pending(sub: &mut Sub, live: &str, subscribe: bool) -> bool {
    let Some(front) = sub.pending.front_mut() else {
        return false;
    };
    let list = match (front, subscribe) {
        (Pending::Subscribe(l), true) | (Pending::Unsubscribe(l, _), false) => l,
        _ => return false,
    };
    let Some(pos) = list.iter().position(|c| c == live) else {
        return false;
    };
    list.remove(pos);
    if list.is_empty() {
        if let Some(Pending::Unsubscribe(_, Some(tx))) = sub.pending.pop_front() {
            let _ = tx.send(());
        }
    }
    true
}

fn unsubscribed(inner: &Inner, sub_id: u64, live: &str) {
    let mut st = inner.lock();
    if let Some(sub) = st.subs.values_mut().find(|s| s.id == sub_id) {
        if pop_pending(sub, live, false) {
            return;
        }
    }
    // Redis dropped the subscription itself: the slot moved to another primary.
    let Some(want) = st.wanted.get_mut(live) else {
        return;
    };
    if want.on == Some(sub_id) {
        want.on = None;
        want.interrupted = true;
        let probe = want.probe;
        st.unconfirmed += 1;
        st.dirty.push(live.to_owned());
        if probe {
            // The probe moves to another slot of the shard: give it time to be confirmed.
            if let Some(sub) = st.subs.values_mut().find(|s| s.id == sub_id) {
                sub.probe_since = Instant::now();
            }
        }
        inner.refresh.store(true, Ordering::SeqCst);
        drop(st);
        inner.wake.notify_one();
    }
}

/// The oldest pending command of subscriber `sub_id` was refused.
fn refused(inner: &Inner, sub_id: u64) {
    let mut st = inner.lock();
    let Some(sub) = st.subs.values_mut().find(|s| s.id == sub_id) else {
        return;
    };
    let Some(Pending::Subscribe(channels)) = sub.pending.pop_front() else {
        // A refused SUNSUBSCRIBE: nothing to redo.
        return;
    };
    for ch in channels {
        if let Some(w) = st.wanted.get_mut(&ch) {
            if w.sent_on == Some(sub_id) {
                w.sent_on = None;
                st.dirty.push(ch);
            }
        }
    }
    inner.refresh.store(true, Ordering::SeqCst);
    drop(st);
    inner.wake.notify_one();
}

/// A subscriber connection broke: its channels are interrupted.
fn lost(inner: &Inner, sub_id: u64) {
    let mut st = inner.lock();
    let Some(addr) = st
        .subs
        .iter()
        .find(|(_, s)| s.id == sub_id)
        .map(|(a, _)| a.clone())
    else {
        return;
    };
    st.subs.remove(&addr);
    let mut dirty = Vec::new();
    let mut newly_unconfirmed = 0;
    for (ch, w) in st.wanted.iter_mut() {
        if w.on == Some(sub_id) {
            w.on = None;
            w.interrupted = true;
            newly_unconfirmed += 1;
            dirty.push(ch.clone());
        } else if w.sent_on == Some(sub_id) {
            w.sent_on = None;
            w.interrupted = true;
            dirty.push(ch.clone());
        }
    }
    st.unconfirmed += newly_unconfirmed;
    st.dirty.extend(dirty);
    inner.refresh.store(true, Ordering::SeqCst);
    drop(st);
    tracing::warn!(redis = %addr, "backplane subscriber lost; resubscribing");
    inner.wake.notify_one();
}

async fn reconcile_loop(inner: Arc<Inner>) {
    let mut changes = inner.client.watch();
    let mut connects = inner.client.watch_connects();
    let mut attempt = 0u32;
    loop {
        tokio::select! {
            _ = inner.wake.notified() => {}
            r = connects.changed() => {
                if r.is_err() {
                    return;
                }
            }
            r = changes.changed() => {
                if r.is_err() {
                    return;
                }
                moved_channels(&inner);
            }
            _ = tokio::time::sleep(super::client::REFRESH_EVERY) => {
                inner.refresh.store(true, Ordering::SeqCst);
            }
            _ = inner.stopped.cancelled() => return,
        }
        if reconcile(&inner).await {
            attempt = 0;
        } else {
            attempt += 1;
            let wait = super::client::connect::backoff(attempt);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                // The server is reachable again: retry now.
                r = connects.changed() => {
                    if r.is_err() {
                        return;
                    }
                }
                _ = inner.stopped.cancelled() => return,
            }
            inner.wake.notify_one();
        }
    }
}

/// After the slot map changed: channels confirmed on a primary that no longer serves
/// their slot go back to the dirty list (Redis usually says so itself with
/// `sunsubscribe`; this covers a failover, where the old connection just dies).
fn moved_channels(inner: &Inner) {
    let topology = inner.client.topology();
    let mut st = inner.lock();
    let addr_of: HashMap<u64, String> = st.subs.values().map(|s| (s.id, s.addr.clone())).collect();
    let mut moved = Vec::new();
    let mut newly_unconfirmed = 0;
    for (ch, w) in st.wanted.iter_mut() {
        let Some(id) = w.on.or(w.sent_on) else {
            continue;
        };
        let owner = topology.primary_of(inner.keys.slot_of_key(ch));
        if owner != addr_of.get(&id).map(String::as_str) {
            if w.on.is_some() {
                newly_unconfirmed += 1;
            }
            w.on = None;
            w.sent_on = None;
            w.interrupted = true;
            moved.push(ch.clone());
        }
    }
    st.unconfirmed += newly_unconfirmed;
    st.dirty.extend(moved);
    // Subscribers of addresses that serve no slot any more go.
    let primaries: Vec<&str> = topology
        .shards
        .iter()
        .filter(|s| s.serving)
        .map(|s| s.primary.as_str())
        .collect();
    let stale: Vec<String> = st
        .subs
        .keys()
        .filter(|a| !primaries.contains(&a.as_str()))
        .cloned()
        .collect();
    for a in stale {
        if let Some(s) = st.subs.remove(&a) {
            s.conn.close(Error::Closed);
        }
    }
}

/// One pass: refresh the slot map if asked, open a subscriber for every primary, make
/// sure each subscribes its shard's probe channel, and (re)subscribe the dirty channels
/// on their owners. Returns false when something could not be done (retried later).
async fn reconcile(inner: &Arc<Inner>) -> bool {
    let mut ok = true;
    if inner.refresh.swap(false, Ordering::SeqCst) && inner.client.refresh().await.is_err() {
        ok = false;
    }
    let topology = inner.client.topology();
    for (index, shard) in topology.shards.iter().enumerate() {
        if !shard.serving {
            continue;
        }
        let exists = inner.lock().subs.contains_key(&shard.primary);
        if !exists
            && open(inner, index, &shard.primary, probe_slot(shard))
                .await
                .is_err()
        {
            ok = false;
        }
    }
    let mut st = inner.lock();
    probe_channels(inner, &mut st, &topology);
    let dirty = std::mem::take(&mut st.dirty);
    let mut retry = Vec::new();
    for ch in dirty {
        let Some(w) = st.wanted.get(&ch) else {
            continue;
        };
        if w.on.is_some() || w.sent_on.is_some() {
            continue;
        }
        if !send_subscribe(inner, &mut st, &ch) {
            retry.push(ch);
        }
    }
    if !retry.is_empty() {
        ok = false;
        inner.refresh.store(true, Ordering::SeqCst);
    }
    st.dirty.extend(retry);
    ok
}

/// The slot of a shard's probe channel: its highest. `redis-cli --cluster reshard` moves
/// a primary's slots lowest first, so a probe in the lowest slot would move with every
/// slot of a reshard (and stay unconfirmed, the node not ready, all along).
fn probe_slot(shard: &super::client::Shard) -> u16 {
    shard
        .ranges
        .iter()
        .map(|&(_, last)| last)
        .max()
        .unwrap_or(0)
}

/// Keeps each subscriber's probe channel in a slot its primary serves (slots move), and
/// drops probe channels no subscriber uses any more.
fn probe_channels(inner: &Inner, st: &mut State, topology: &super::client::Topology) {
    for (index, shard) in topology.shards.iter().enumerate() {
        if !shard.serving {
            continue;
        }
        let Some(sub) = st.subs.get_mut(&shard.primary) else {
            continue;
        };
        sub.shard = index;
        if topology.primary_of(sub.probe_slot) == Some(shard.primary.as_str()) {
            continue;
        }
        sub.probe_slot = probe_slot(shard);
        sub.probe_channel = inner.keys.probe(sub.probe_slot, &inner.node);
        sub.missing = None;
        sub.probe_since = Instant::now();
        let channel = sub.probe_channel.clone();
        if !st.wanted.contains_key(&channel) {
            st.wanted.insert(channel.clone(), Want::new(true));
            st.unconfirmed += 1;
            st.dirty.push(channel);
        }
    }
    let active: Vec<String> = st.subs.values().map(|s| s.probe_channel.clone()).collect();
    let stale: Vec<String> = st
        .wanted
        .iter()
        .filter(|(ch, w)| w.probe && !active.contains(ch))
        .map(|(ch, _)| ch.clone())
        .collect();
    for ch in stale {
        if let Some(w) = st.wanted.remove(&ch) {
            if w.on.is_none() {
                st.unconfirmed -= 1;
            }
            if let Some(sub) = st.subs.values_mut().find(|s| Some(s.id) == w.on) {
                if sub.conn.send(&Cmd::new("SUNSUBSCRIBE").arg(&ch)).is_ok() {
                    sub.pending
                        .push_back(Pending::Unsubscribe(VecDeque::from([ch.clone()]), None));
                }
            }
        }
    }
}

/// Opens the subscriber of one primary and subscribes its probe channel.
async fn open(inner: &Arc<Inner>, index: usize, addr: &str, probe_slot: u16) -> Result<(), Error> {
    let id = inner.next_id.fetch_add(1, Ordering::SeqCst);
    let probes = Arc::new(Probes::default());
    let handler = Arc::new(Dispatch {
        id,
        inner: Arc::downgrade(inner),
        probes: probes.clone(),
    });
    let conn = match inner.client.subscriber(addr, handler).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(redis = %addr, error = %e, "cannot open a backplane subscriber");
            inner.refresh.store(true, Ordering::SeqCst);
            return Err(e);
        }
    };
    let probe_channel = inner.keys.probe(probe_slot, &inner.node);
    {
        let mut st = inner.lock();
        if let Some(old) = st.subs.remove(addr) {
            old.conn.close(Error::Closed);
        }
        if st.opened.len() <= index {
            st.opened.resize(index + 1, 0);
        }
        st.opened[index] += 1;
        st.subs.insert(
            addr.to_owned(),
            Sub {
                id,
                addr: addr.to_owned(),
                conn: conn.clone(),
                pending: VecDeque::new(),
                probes,
                shard: index,
                probe_channel: probe_channel.clone(),
                probe_slot,
                up: false,
                missing: None,
                accepted: true,
                last_forced: Instant::now(),
                probe_since: Instant::now(),
            },
        );
        // The probe channel, and every wanted channel this primary serves, go out now.
        if !st.wanted.contains_key(&probe_channel) {
            st.wanted.insert(probe_channel.clone(), Want::new(true));
            st.unconfirmed += 1;
        }
        let want = &st.wanted[&probe_channel];
        if want.on.is_none() && want.sent_on.is_none() {
            st.dirty.push(probe_channel);
        }
    }
    // When it breaks, its channels are resubscribed elsewhere.
    let weak = Arc::downgrade(inner);
    tokio::spawn(async move {
        conn.broken().await;
        if let Some(inner) = weak.upgrade() {
            if !inner.stopped.is_cancelled() {
                lost(&inner, id);
            }
        }
    });
    tracing::info!(redis = %addr, shard = index, "backplane subscriber connected");
    Ok(())
}

/// Publishes one probe through every subscriber whose probe channel is confirmed.
async fn probe_round(inner: &Inner) {
    let targets: Vec<(String, String, u16, Arc<Probes>)> = {
        let st = inner.lock();
        st.subs
            .values()
            .filter(|s| {
                st.wanted
                    .get(&s.probe_channel)
                    .is_some_and(|w| w.on == Some(s.id))
            })
            .map(|s| {
                (
                    s.addr.clone(),
                    s.probe_channel.clone(),
                    s.probe_slot,
                    s.probes.clone(),
                )
            })
            .collect()
    };
    let sends = targets
        .into_iter()
        .map(|(addr, channel, slot, probes)| async move {
            let seq = probes.sent.fetch_add(1, Ordering::SeqCst) + 1;
            let cmd = Cmd::new("SPUBLISH")
                .arg(&channel)
                .arg(frames::probe(&inner.node, seq))
                .in_slot(slot);
            let accepted = inner.client.call(&cmd).await.is_ok();
            (addr, seq, accepted)
        });
    let results = futures_util::future::join_all(sends).await;
    let mut st = inner.lock();
    for (addr, seq, accepted) in results {
        if let Some(sub) = st.subs.get_mut(&addr) {
            sub.accepted = accepted;
            if accepted && sub.missing.is_none() {
                sub.missing = Some((seq, Instant::now()));
            }
        }
    }
}

/// Judges every shard by its probes; returns (and publishes) whether the backplane is
/// up: a subscriber per primary, every slot served, every probe back, nothing waiting
/// to be subscribed.
fn judge(inner: &Inner) -> bool {
    let topology = inner.client.topology();
    let interval = inner.probe_interval;
    let mut st = inner.lock();
    let mut all_up = topology.uncovered() == 0 && !topology.shards.is_empty();
    let mut force = Vec::new();
    let probe_confirmed: HashMap<u64, bool> = st
        .subs
        .values()
        .map(|s| {
            let ok = st
                .wanted
                .get(&s.probe_channel)
                .is_some_and(|w| w.on == Some(s.id));
            (s.id, ok)
        })
        .collect();
    for shard in &topology.shards {
        let Some(sub) = st.subs.get_mut(&shard.primary) else {
            all_up = false;
            continue;
        };
        if !probe_confirmed.get(&sub.id).copied().unwrap_or(false) {
            // Redis never confirmed the probe channel: a subscriber that hears nothing
            // (black-holed right away) is reconnected like one whose probes stopped —
            // counted from when this probe channel was chosen, so that a probe that moved
            // with its slot (a reshard) does not reconnect a healthy subscriber.
            sub.up = false;
            all_up = false;
            if sub.probe_since.elapsed() >= interval * 2
                && sub.last_forced.elapsed() >= interval * 2
            {
                sub.last_forced = Instant::now();
                force.push(sub.conn.clone());
            }
            continue;
        }
        let seen = sub.probes.seen.load(Ordering::SeqCst);
        if sub.missing.is_some_and(|(seq, _)| seen >= seq) {
            sub.missing = None;
        }
        let late = sub.missing.map(|(_, at)| at.elapsed()).unwrap_or_default();
        if late >= interval {
            if sub.up {
                tracing::warn!(redis = %sub.addr, "backplane probe did not come back");
            }
            sub.up = false;
            if late >= interval * 2 && sub.last_forced.elapsed() >= interval * 2 {
                sub.last_forced = Instant::now();
                force.push(sub.conn.clone());
            }
        } else if !sub.accepted {
            sub.up = false;
        } else if sub.missing.is_none() && seen > 0 {
            sub.up = true;
        }
        all_up &= sub.up;
    }
    all_up &= st.unconfirmed == 0;
    drop(st);
    for conn in force {
        conn.close(Error::Io("probes stopped coming back".into()));
    }
    let up = all_up && inner.client.is_connected();
    let was = inner.up.swap(up, Ordering::SeqCst);
    if was != up {
        if up {
            tracing::info!("backplane link up");
        } else {
            tracing::warn!("backplane link down");
        }
        if let Some(sink) = inner.sink.get() {
            sink.backplane_state(up);
        }
    }
    up
}

async fn watchdog(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(inner.probe_interval / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = inner.stopped.cancelled() => return,
        }
        judge(&inner);
        probe_round(&inner).await;
    }
}
