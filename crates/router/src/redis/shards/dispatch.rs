//! What a subscriber's reader task does with each value it reads: messages go to the
//! node's sink on that task; confirmations, drops and refusals update the state.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use tokio::time::Instant;

use super::{Inner, Pending, Probes, Sub};
use crate::redis::client::{PushHandler, Value};
use crate::redis::frames::{self, Inbound};

/// What the reader task of one subscriber does with each value it reads.
pub(super) struct Dispatch {
    pub(super) id: u64,
    pub(super) inner: Weak<Inner>,
    pub(super) probes: Arc<Probes>,
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

pub(super) fn confirmed(inner: &Inner, sub_id: u64, live: &str) {
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
pub(super) fn pop_pending(sub: &mut Sub, live: &str, subscribe: bool) -> bool {
    let Some(front) = sub.pending.front_mut() else {
        return false;
    };
    let ((Pending::Subscribe(list), true) | (Pending::Unsubscribe(list, _), false)) =
        (front, subscribe)
    else {
        return false;
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

pub(super) fn unsubscribed(inner: &Inner, sub_id: u64, live: &str) {
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
pub(super) fn refused(inner: &Inner, sub_id: u64) {
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
pub(super) fn lost(inner: &Inner, sub_id: u64) {
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
