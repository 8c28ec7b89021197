//! The per-shard probes: every half probe interval a probe goes through each shard and
//! each shard is judged by the probes that came back; the backplane is up when every
//! shard is.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::time::Instant;

use super::{Inner, Probes};
use crate::redis::client::{Cmd, Error};
use crate::redis::frames;

/// Publishes one probe through every subscriber whose probe channel is confirmed.
pub(super) async fn probe_round(inner: &Inner) {
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
/// up: a subscriber per primary, every slot served, every probe back, no subscription
/// lost or unconfirmed for longer than a probe interval.
pub(super) fn judge(inner: &Inner) -> bool {
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
    // Subscriptions in flight for less than an interval (connection churn subscribes
    // rooms all the time) do not count; lost or stuck ones do.
    all_up &= st.unconfirmed == 0 || !st.wanted.values().any(|w| w.holds_back(interval));
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

pub(super) async fn watchdog(inner: Arc<Inner>) {
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
