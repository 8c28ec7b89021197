//! [`RecordingSink`]: a [`NodeSink`] that records every call and lets cases wait for them.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use switchboard_proto::frames::PresenceEvent;
use switchboard_proto::Message;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::NodeSink;

/// How long a case waits for something that must arrive (deliveries may be asynchronous).
pub const WAIT: Duration = Duration::from_secs(5);
/// How long a case waits before asserting that something did NOT arrive.
pub const GRACE: Duration = Duration::from_millis(200);

/// One presence event a sink received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceRecord {
    pub channel: String,
    pub user: String,
    pub event: PresenceEvent,
}

/// One `disconnect_user` call a sink received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisconnectRecord {
    pub user: String,
    pub code: u16,
    pub reason: String,
}

#[derive(Default)]
struct Recorded {
    messages: Vec<Arc<Message>>,
    presence: Vec<PresenceRecord>,
    disconnects: Vec<DisconnectRecord>,
    backplane: Vec<bool>,
    interrupted: Vec<String>,
    /// What `disconnect_user` answers per user (0 when unset).
    disconnect_counts: HashMap<String, usize>,
}

/// A [`NodeSink`] that records deliveries, presence events, disconnect calls and backplane
/// state changes, with helpers that wait (up to [`WAIT`]) until they arrived.
pub struct RecordingSink {
    node: String,
    recorded: Mutex<Recorded>,
    changed: Notify,
}

impl RecordingSink {
    /// A sink for node `node` (the id only appears in failure messages).
    pub fn new(node: impl Into<String>) -> Arc<RecordingSink> {
        Arc::new(RecordingSink {
            node: node.into(),
            recorded: Mutex::new(Recorded::default()),
            changed: Notify::new(),
        })
    }

    /// The node this sink belongs to.
    pub fn node(&self) -> &str {
        &self.node
    }

    fn lock(&self) -> MutexGuard<'_, Recorded> {
        self.recorded.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, f: impl FnOnce(&mut Recorded)) {
        f(&mut self.lock());
        self.changed.notify_waiters();
    }

    /// Makes `disconnect_user(user, ..)` answer `count` (the connections this node "holds").
    pub fn set_disconnect_count(&self, user: &str, count: usize) {
        self.lock().disconnect_counts.insert(user.to_owned(), count);
    }

    /// Messages delivered so far on `channel`, in delivery order.
    pub fn messages(&self, channel: &str) -> Vec<Arc<Message>> {
        self.lock()
            .messages
            .iter()
            .filter(|m| m.channel == channel)
            .cloned()
            .collect()
    }

    /// Presence events received so far on `channel`, in order.
    pub fn presence_events(&self, channel: &str) -> Vec<PresenceRecord> {
        self.lock()
            .presence
            .iter()
            .filter(|p| p.channel == channel)
            .cloned()
            .collect()
    }

    /// `disconnect_user` calls received so far.
    pub fn disconnects(&self) -> Vec<DisconnectRecord> {
        self.lock().disconnects.clone()
    }

    /// `backplane_state` calls received so far.
    pub fn backplane_states(&self) -> Vec<bool> {
        self.lock().backplane.clone()
    }

    /// Channels reported by `channels_interrupted` so far, in order.
    pub fn interrupted(&self) -> Vec<String> {
        self.lock().interrupted.clone()
    }

    /// Waits until `check` returns `Some`, re-checking after every recorded call; panics
    /// naming `what` after [`WAIT`].
    pub async fn wait_for<T>(&self, what: &str, mut check: impl FnMut(&Self) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(found) = check(self) {
                return found;
            }
            if within(deadline, changed).await.is_none() {
                if let Some(found) = check(self) {
                    return found;
                }
                panic!("node {}: {what} did not happen within {WAIT:?}", self.node);
            }
        }
    }

    /// Waits until at least `n` messages were delivered on `channel`; returns them all.
    pub async fn wait_messages(&self, channel: &str, n: usize) -> Vec<Arc<Message>> {
        let what = format!("{n} deliveries on {channel}");
        self.wait_for(&what, |s| {
            let got = s.messages(channel);
            (got.len() >= n).then_some(got)
        })
        .await
    }

    /// Waits until at least `n` presence events arrived on `channel`; returns them all.
    pub async fn wait_presence(&self, channel: &str, n: usize) -> Vec<PresenceRecord> {
        let what = format!("{n} presence events on {channel}");
        self.wait_for(&what, |s| {
            let got = s.presence_events(channel);
            (got.len() >= n).then_some(got)
        })
        .await
    }
}

async fn within<F: Future>(deadline: Instant, fut: F) -> Option<F::Output> {
    tokio::time::timeout_at(deadline, fut).await.ok()
}

/// Waits [`GRACE`]: call before asserting that something did not arrive.
pub async fn grace() {
    tokio::time::sleep(GRACE).await;
}

impl NodeSink for RecordingSink {
    fn deliver(&self, message: Arc<Message>) {
        self.record(|r| r.messages.push(message));
    }

    fn presence(&self, channel: &str, user: &str, event: PresenceEvent) {
        self.record(|r| {
            r.presence.push(PresenceRecord {
                channel: channel.to_owned(),
                user: user.to_owned(),
                event,
            });
        });
    }

    fn disconnect_user(&self, user: &str, code: u16, reason: &str) -> usize {
        let mut count = 0;
        self.record(|r| {
            r.disconnects.push(DisconnectRecord {
                user: user.to_owned(),
                code,
                reason: reason.to_owned(),
            });
            count = r.disconnect_counts.get(user).copied().unwrap_or(0);
        });
        count
    }

    fn backplane_state(&self, up: bool) {
        self.record(|r| r.backplane.push(up));
    }

    fn channels_interrupted(&self, channels: &[String]) {
        self.record(|r| r.interrupted.extend(channels.iter().cloned()));
    }
}
