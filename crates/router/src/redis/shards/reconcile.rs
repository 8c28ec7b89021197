//! The reconcile task: opens a subscriber per serving primary, keeps each one's probe
//! channel in a slot it serves, and (re)subscribes dirty channels on their owners, after
//! a subscriber broke, a slot moved or the slot map changed.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::time::Instant;

use super::dispatch::{lost, Dispatch};
use super::{send_subscribe, Inner, Pending, Probes, State, Sub, Want};
use crate::redis::client::{Cmd, Error};

pub(super) async fn reconcile_loop(inner: Arc<Inner>) {
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
            _ = tokio::time::sleep(crate::redis::client::REFRESH_EVERY) => {
                inner.refresh.store(true, Ordering::SeqCst);
            }
            _ = inner.stopped.cancelled() => return,
        }
        if reconcile(&inner).await {
            attempt = 0;
        } else {
            attempt += 1;
            let wait = crate::redis::client::connect::backoff(attempt);
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
pub(super) async fn reconcile(inner: &Arc<Inner>) -> bool {
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
fn probe_slot(shard: &crate::redis::client::Shard) -> u16 {
    shard
        .ranges
        .iter()
        .map(|&(_, last)| last)
        .max()
        .unwrap_or(0)
}

/// Keeps each subscriber's probe channel in a slot its primary serves (slots move), and
/// drops probe channels no subscriber uses any more.
fn probe_channels(inner: &Inner, st: &mut State, topology: &crate::redis::client::Topology) {
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
