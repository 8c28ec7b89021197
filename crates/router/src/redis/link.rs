//! The subscriber session: dispatches backplane frames to the node's sink, probes the
//! pub/sub link through our own node channel every half probe interval, declares it down
//! when a probe Redis accepted is not back one interval later (so a wedge is seen within
//! two intervals), forces a reconnect when it is two intervals late, declares the link
//! up again when every accepted probe came back, and reaps nodes whose lease expired.
//!
//! Every transition from down to up is reported to the sink with
//! `backplane_state(true)`: messages may have been missed meanwhile, and the node
//! repairs them from the streams.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::time::Instant;

use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use fred::types::Value;
use tokio::sync::broadcast::error::RecvError;

use super::frames::{self, Inbound};
use super::Inner;
use crate::{Result, RouterError};

/// Probe bookkeeping shared by the dispatcher and the watchdog.
#[derive(Default)]
pub(super) struct Probes {
    pub sent: AtomicU64,
    pub seen: AtomicU64,
}

/// Starts the dispatcher, the reconnect watcher and the watchdog/reaper tasks.
pub(super) fn spawn(inner: Arc<Inner>) {
    let probes = Arc::new(Probes::default());
    tokio::spawn(dispatch(inner.clone(), probes.clone()));
    tokio::spawn(watch_reconnects(inner.clone()));
    tokio::spawn(watchdog(inner, probes));
}

/// The payload of a pub/sub message (fred hands out UTF-8 payloads as strings).
fn value_bytes(v: &Value) -> Option<bytes::Bytes> {
    match v {
        Value::Bytes(b) => Some(b.clone()),
        Value::String(s) => Some(bytes::Bytes::copy_from_slice(s.as_bytes())),
        _ => None,
    }
}

fn sink(inner: &Inner) -> Option<&Arc<dyn crate::NodeSink>> {
    inner.sink.get()
}

/// Marks the link down (once) and tells the sink.
pub(super) fn down(inner: &Inner, why: &str) {
    if inner.link_up.swap(false, Ordering::SeqCst) {
        tracing::warn!(reason = why, "backplane link down");
        if let Some(s) = sink(inner) {
            s.backplane_state(false);
        }
    }
}

/// Marks the link up (once) and tells the sink, which repairs gaps.
fn up(inner: &Inner) {
    if !inner.link_up.swap(true, Ordering::SeqCst) {
        tracing::info!("backplane link up");
        if let Some(s) = sink(inner) {
            s.backplane_state(true);
        }
    }
}

async fn dispatch(inner: Arc<Inner>, probes: Arc<Probes>) {
    let mut rx = inner.subscriber.message_rx();
    let own = inner.settings.node_id.clone();
    loop {
        let msg = tokio::select! {
            m = rx.recv() => m,
            _ = inner.stopped.notified() => return,
        };
        let msg = match msg {
            Ok(m) => m,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(dropped = n, "backplane receiver lagged");
                down(&inner, "receiver lagged");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let Some(bytes) = value_bytes(&msg.value) else {
            continue;
        };
        let Some(frame) = frames::decode(&bytes) else {
            tracing::warn!(channel = %msg.channel, "malformed backplane frame dropped");
            continue;
        };
        let Some(sink) = sink(&inner) else { continue };
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
                if node == own {
                    probes.seen.fetch_max(seq, Ordering::SeqCst);
                }
            }
        }
    }
}

/// A reconnect of the subscriber means pub/sub messages may have been lost in between.
async fn watch_reconnects(inner: Arc<Inner>) {
    let mut reconnects = inner.subscriber.reconnect_rx();
    let mut errors = inner.subscriber.error_rx();
    // fred resubscribes every tracked channel after a reconnect.
    let _resubscriber = inner.subscriber.manage_subscriptions();
    loop {
        tokio::select! {
            r = reconnects.recv() => match r {
                Ok(_) => down(&inner, "subscriber reconnected"),
                Err(RecvError::Lagged(_)) => down(&inner, "subscriber reconnected"),
                Err(RecvError::Closed) => return,
            },
            e = errors.recv() => match e {
                Ok((e, _)) => {
                    tracing::warn!(error = %e, "subscriber connection error");
                    down(&inner, "subscriber error");
                }
                Err(RecvError::Lagged(_)) => down(&inner, "subscriber error"),
                Err(RecvError::Closed) => return,
            },
            _ = inner.stopped.notified() => return,
        }
    }
}

async fn send_probe(inner: &Inner, seq: u64) -> Result<()> {
    let channel = inner.node_channel(&inner.settings.node_id);
    let _: i64 = inner
        .client
        .publish(
            channel,
            Value::Bytes(frames::probe(&inner.settings.node_id, seq)),
        )
        .await
        .map_err(super::unavailable)?;
    Ok(())
}

/// At startup: one probe must make the round trip, or the node does not start.
pub(super) async fn first_probe(inner: &Arc<Inner>) -> Result<()> {
    let mut rx = inner.subscriber.message_rx();
    send_probe(inner, 0).await?;
    let own = inner.settings.node_id.clone();
    let wait = async {
        loop {
            match rx.recv().await {
                Ok(m) => {
                    let probe = value_bytes(&m.value).and_then(|b| frames::decode(&b));
                    if let Some(Inbound::Probe { node, .. }) = probe {
                        if node == own {
                            return true;
                        }
                    }
                }
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return false,
            }
        }
    };
    match tokio::time::timeout(inner.settings.command_timeout * 2, wait).await {
        Ok(true) => {
            inner.link_up.store(true, Ordering::SeqCst);
            Ok(())
        }
        _ => Err(RouterError::Unavailable(
            "no pub/sub round trip through Redis".into(),
        )),
    }
}

/// Every half probe interval: judge the link by the probes that came back, send a probe,
/// force a reconnect of a wedged subscriber, and reap dead nodes.
async fn watchdog(inner: Arc<Inner>, probes: Arc<Probes>) {
    let interval = inner.settings.probe_interval;
    // Probes go out every half interval, so that one sent just after a wedge is judged
    // late (one interval) no more than two intervals after the wedge.
    let mut tick = tokio::time::interval(interval / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_forced = Instant::now();
    // The oldest probe that Redis accepted (PUBLISH returned) and that has not come back,
    // with when it was accepted. Probes are judged from acceptance, not from the tick:
    // a PUBLISH queued behind heavy traffic on the command connection is not a wedged
    // subscription.
    let mut missing: Option<(u64, Instant)> = None;
    // Whether the last probe could be published at all (Redis took it in time).
    let mut accepted = true;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = inner.stopped.notified() => return,
        }
        let seen = probes.seen.load(Ordering::SeqCst);
        if missing.is_some_and(|(seq, _)| seen >= seq) {
            missing = None;
        }
        let late = missing.map(|(_, at)| at.elapsed()).unwrap_or_default();
        if late >= interval {
            // Not back one interval after Redis took it: a wedge is seen within two
            // intervals.
            down(&inner, "probe did not come back");
            // Reconnect once it is two intervals late (a reconnect loses what is in
            // flight; a link that is only slow comes back by itself), and not more
            // often than every two intervals.
            if late >= interval * 2 && last_forced.elapsed() >= interval * 2 {
                last_forced = Instant::now();
                let sub = inner.subscriber.clone();
                tokio::spawn(async move {
                    if let Err(e) = sub.force_reconnection().await {
                        tracing::warn!(error = %e, "subscriber reconnect failed");
                    }
                });
            }
        } else if !inner.client.is_connected() {
            down(&inner, "command connection lost");
        } else if !accepted {
            down(&inner, "Redis did not take the probe in time");
        } else if missing.is_none() && !inner.reregister.load(Ordering::SeqCst) {
            // Every probe Redis took came back: the link delivers.
            up(&inner);
        }
        let seq = probes.sent.fetch_add(1, Ordering::SeqCst) + 1;
        accepted = send_probe(&inner, seq).await.is_ok();
        if accepted && missing.is_none() {
            missing = Some((seq, Instant::now()));
        }
        reap(&inner).await;
    }
}

/// At startup, before anything registers: removes what a previous process under this
/// node id left behind (a crash and a restart within the lease), with synthetic
/// disconnects and presence leaves, so that none of it stays online forever.
pub(super) async fn reap_previous_life(inner: &Inner) -> Result<()> {
    let keys = vec![
        format!("{}nodes", inner.settings.prefix),
        inner.settings.events_stream.clone(),
    ];
    let args: Vec<Value> = vec![
        inner.settings.prefix.clone().into(),
        inner.settings.events_maxlen.to_string().into(),
        inner.settings.node_id.clone().into(),
    ];
    inner
        .eval(&inner.scripts.reap, keys, args)
        .await
        .map(|_| ())
}

/// Removes nodes whose lease expired (any node may do it; the script is atomic).
async fn reap(inner: &Inner) {
    let keys = vec![
        format!("{}nodes", inner.settings.prefix),
        inner.settings.events_stream.clone(),
    ];
    let args: Vec<Value> = vec![
        inner.settings.prefix.clone().into(),
        inner.settings.events_maxlen.to_string().into(),
    ];
    match inner.eval(&inner.scripts.reap, keys, args).await {
        Ok(v) => {
            for node in v.into_array() {
                tracing::warn!(node = %super::value_str(&node), "reaped a node whose lease expired");
            }
        }
        Err(e) => tracing::debug!(error = %e, "reap failed"),
    }
}
