//! One connection as the rest of the node sees it: identity, outbound queue and the
//! per-channel delivery cursors that keep every channel in offset order, without
//! duplicates, across replay and live delivery.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use switchboard_proto::{Encoding, Message, ServerFrame, StreamPosition};
use tokio_util::sync::CancellationToken;

use crate::metrics as m;
use crate::ws::outbound::{Item, Outbound, Pushed};

/// A message on its way to many connections, encoded at most once per encoding.
pub struct Delivery {
    pub message: Arc<Message>,
    json: OnceLock<Bytes>,
    proto: OnceLock<Bytes>,
}

impl Delivery {
    pub fn new(message: Arc<Message>) -> Delivery {
        Delivery {
            message,
            json: OnceLock::new(),
            proto: OnceLock::new(),
        }
    }

    pub fn encoded(&self, encoding: Encoding) -> Bytes {
        let cell = match encoding {
            Encoding::Json => &self.json,
            Encoding::Proto => &self.proto,
        };
        cell.get_or_init(|| encoding.encode(&ServerFrame::Message(self.message.clone())))
            .clone()
    }
}

/// Room for a message's envelope when pacing a replay.
const REPLAY_OVERHEAD: usize = 512;

/// Live messages held per channel while a subscription is being set up.
const MAX_PENDING: usize = 4096;

/// Where a connection stands in one channel.
struct Cursor {
    epoch: String,
    offset: u64,
    /// While a subscription is being set up, live messages wait here so that they come
    /// after the replayed history.
    pending: Option<Vec<Arc<Message>>>,
}

pub struct ConnHandle {
    /// Node-local numeric id (index keys).
    pub id: u64,
    /// The id clients and the API see (`c-…`).
    pub conn_id: String,
    pub user: String,
    pub encoding: Encoding,
    pub since_ms: u64,
    pub outbound: Outbound,
    /// Token expiry (seconds since the Unix epoch); a `refresh` moves it.
    pub expires_at: AtomicU64,
    /// RPC calls of this connection in flight (`--rpc-max-inflight`).
    pub rpc_inflight: AtomicUsize,
    /// Cancelled when the socket goes: in-flight RPC calls stop and drop their upstream
    /// requests.
    pub cancel: CancellationToken,
    cursors: Mutex<HashMap<String, Cursor>>,
}

impl ConnHandle {
    pub fn new(
        id: u64,
        conn_id: String,
        user: String,
        encoding: Encoding,
        since_ms: u64,
        outbound: Outbound,
        expires_at: u64,
    ) -> ConnHandle {
        ConnHandle {
            id,
            conn_id,
            user,
            encoding,
            since_ms,
            outbound,
            expires_at: AtomicU64::new(expires_at),
            rpc_inflight: AtomicUsize::new(0),
            cancel: CancellationToken::new(),
            cursors: Mutex::new(HashMap::new()),
        }
    }

    fn cursors(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cursor>> {
        self.cursors.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn expires_at(&self) -> u64 {
        self.expires_at.load(Ordering::Relaxed)
    }

    /// Queues an encoded control frame (reply, error, presence, welcome).
    pub fn send(&self, frame: &ServerFrame) -> Pushed {
        self.push(self.encoding.encode(frame), None)
    }

    /// Queues an already-encoded control frame (shared presence frames).
    pub fn push_control(&self, data: Bytes) -> Pushed {
        self.push(data, None)
    }

    fn push(&self, data: Bytes, published_ms: Option<u64>) -> Pushed {
        let pushed = self.outbound.push(Item {
            data,
            published_ms,
            pong: false,
        });
        if pushed == Pushed::Overflow {
            metrics::counter!(m::SLOW_CONSUMER_DISCONNECTS).increment(1);
        }
        pushed
    }

    /// Closes the connection as a slow consumer (4008).
    pub fn overflow(&self) {
        let request = crate::ws::outbound::CloseRequest {
            code: switchboard_proto::close::SLOW_CONSUMER,
            reason: "slow consumer".into(),
            send_frame: true,
        };
        if self.outbound.close(request, false) {
            metrics::counter!(m::SLOW_CONSUMER_DISCONNECTS).increment(1);
        }
    }

    /// Starts tracking `channel`; live messages are held until [`ConnHandle::open`].
    pub fn begin(&self, channel: &str) {
        self.cursors().insert(
            channel.to_owned(),
            Cursor {
                epoch: String::new(),
                offset: 0,
                pending: Some(Vec::new()),
            },
        );
    }

    /// Whether the connection tracks `channel`.
    pub fn tracks(&self, channel: &str) -> bool {
        self.cursors().contains_key(channel)
    }

    /// Stops tracking `channel`; returns whether it was tracked.
    pub fn end(&self, channel: &str) -> bool {
        self.cursors().remove(channel).is_some()
    }

    /// Completes a subscription: queues `first` (the reply or welcome), then `replay` in
    /// order — paced by the outbound queue, so a replay larger than the queue is not a
    /// slow consumer — then the live messages that arrived meanwhile, skipping anything
    /// at or before what was already sent.
    pub async fn open(
        &self,
        channel: &str,
        start: &StreamPosition,
        first: &ServerFrame,
        replay: &[Arc<Message>],
    ) {
        {
            let mut cursors = self.cursors();
            let Some(cursor) = cursors.get_mut(channel) else {
                return;
            };
            cursor.epoch.clone_from(&start.epoch);
            cursor.offset = start.offset;
            self.push(self.encoding.encode(first), None);
        }
        self.release(channel, replay).await;
    }

    /// Holds live delivery of `channel` for a repair (live messages wait); returns where
    /// the connection stands, or `None` when the channel is not tracked or already held.
    pub fn hold(&self, channel: &str) -> Option<StreamPosition> {
        let mut cursors = self.cursors();
        let cursor = cursors.get_mut(channel)?;
        if cursor.pending.is_some() {
            return None;
        }
        cursor.pending = Some(Vec::new());
        Some(StreamPosition::new(cursor.epoch.clone(), cursor.offset))
    }

    /// Where the connection stands in a held channel.
    pub fn held_position(&self, channel: &str) -> Option<StreamPosition> {
        let cursors = self.cursors();
        let cursor = cursors.get(channel)?;
        cursor.pending.as_ref()?;
        Some(StreamPosition::new(cursor.epoch.clone(), cursor.offset))
    }

    /// The channels delivering live now (not held).
    #[cfg(test)]
    pub fn live_channels(&self) -> Vec<String> {
        self.cursors()
            .iter()
            .filter(|(_, c)| c.pending.is_none())
            .map(|(ch, _)| ch.clone())
            .collect()
    }

    /// Queues `replay` in order (paced by the outbound queue), then the live messages held
    /// meanwhile, and delivers live again. Duplicates are dropped by offset.
    pub async fn release(&self, channel: &str, replay: &[Arc<Message>]) {
        for msg in replay {
            if !self
                .outbound
                .wait_room(msg.data.len() + REPLAY_OVERHEAD)
                .await
            {
                return;
            }
            let mut cursors = self.cursors();
            let Some(cursor) = cursors.get_mut(channel) else {
                return;
            };
            self.accept(cursor, msg);
        }
        let mut cursors = self.cursors();
        let Some(cursor) = cursors.get_mut(channel) else {
            return;
        };
        let pending = cursor.pending.take().unwrap_or_default();
        for msg in &pending {
            self.accept(cursor, msg);
        }
    }

    /// Delivers a live message of a channel this connection tracks. Returns true when
    /// the message came after a gap in offsets: the channel is then held, and the caller
    /// must have it repaired from history (see `repair`).
    pub fn deliver(&self, delivery: &Delivery) -> bool {
        let msg = &delivery.message;
        let mut cursors = self.cursors();
        let Some(cursor) = cursors.get_mut(&msg.channel) else {
            return false;
        };
        if let Some(pending) = &mut cursor.pending {
            if pending.len() >= MAX_PENDING {
                drop(cursors);
                self.overflow();
                return false;
            }
            pending.push(msg.clone());
            return false;
        }
        if msg.epoch == cursor.epoch && msg.offset > cursor.offset + 1 {
            metrics::counter!(m::DELIVERY_GAPS).increment(1);
            cursor.pending = Some(vec![msg.clone()]);
            return true;
        }
        if self.admit(cursor, msg) {
            self.push(delivery.encoded(self.encoding), Some(msg.ts));
        }
        false
    }

    fn accept(&self, cursor: &mut Cursor, msg: &Arc<Message>) {
        if self.admit(cursor, msg) {
            let data = self.encoding.encode(&ServerFrame::Message(msg.clone()));
            self.push(data, Some(msg.ts));
        }
    }

    /// Offset bookkeeping: drops duplicates, notes gaps, follows a new epoch.
    fn admit(&self, cursor: &mut Cursor, msg: &Message) -> bool {
        if msg.epoch == cursor.epoch {
            if msg.offset <= cursor.offset {
                return false;
            }
            if msg.offset > cursor.offset + 1 {
                tracing::debug!(
                    conn = %self.conn_id,
                    expected = cursor.offset + 1,
                    got = msg.offset,
                    "offset gap accepted (history does not have it)"
                );
            }
        } else {
            cursor.epoch.clone_from(&msg.epoch);
        }
        cursor.offset = msg.offset;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_proto::Payload;

    fn msg(channel: &str, epoch: &str, offset: u64) -> Arc<Message> {
        Arc::new(Message {
            channel: channel.into(),
            id: format!("m-{offset}"),
            from: None,
            epoch: epoch.into(),
            offset,
            ts: 0,
            data: Payload::Json(Arc::from("1")),
        })
    }

    fn conn(frames: usize) -> ConnHandle {
        ConnHandle::new(
            1,
            "c-1".into(),
            "alice".into(),
            Encoding::Json,
            0,
            Outbound::new(frames, 1 << 20),
            u64::MAX,
        )
    }

    /// Offsets of the message frames queued so far (draining the queue).
    fn queued(c: &ConnHandle) -> Vec<u64> {
        let mut items = Vec::new();
        c.outbound.take(&mut items, usize::MAX);
        items
            .iter()
            .filter_map(|i| {
                let v: serde_json::Value = serde_json::from_slice(&i.data).ok()?;
                (v["type"] == "message").then(|| v["offset"].as_u64().unwrap_or(0))
            })
            .collect()
    }

    fn pong() -> ServerFrame {
        ServerFrame::Pong { id: None }
    }

    #[tokio::test]
    async fn live_messages_during_a_replay_come_after_it_without_duplicates() {
        let c = conn(1024);
        c.begin("room:a");
        // Live messages arrive while the history read is in flight; 2 and 3 are also
        // in the replay.
        for o in [2, 3, 4] {
            c.deliver(&Delivery::new(msg("room:a", "e", o)));
        }
        assert!(queued(&c).is_empty(), "nothing is sent before the reply");
        let replay = [msg("room:a", "e", 2), msg("room:a", "e", 3)];
        c.open("room:a", &StreamPosition::new("e", 1), &pong(), &replay)
            .await;
        assert_eq!(queued(&c), [2, 3, 4]);
        // Live again: duplicates and old offsets are dropped, new ones pass.
        for o in [4, 3, 5] {
            c.deliver(&Delivery::new(msg("room:a", "e", o)));
        }
        assert_eq!(queued(&c), [5]);
        // A new epoch is followed.
        c.deliver(&Delivery::new(msg("room:a", "f", 1)));
        assert_eq!(queued(&c), [1]);
    }

    #[tokio::test]
    async fn a_replay_larger_than_the_queue_is_paced_not_a_slow_consumer() {
        let c = Arc::new(conn(8));
        c.begin("user:alice");
        let replay: Vec<_> = (1..=100).map(|o| msg("user:alice", "e", o)).collect();
        let opener = {
            let c = c.clone();
            tokio::spawn(async move {
                c.open("user:alice", &StreamPosition::new("e", 0), &pong(), &replay)
                    .await
            })
        };
        let mut got = Vec::new();
        while got.len() < 100 {
            got.extend(queued(&c));
            tokio::task::yield_now().await;
        }
        opener.await.unwrap();
        assert_eq!(got, (1..=100).collect::<Vec<_>>());
        assert!(c.outbound.close_request().is_none(), "no 4008 for a replay");
    }

    #[tokio::test]
    async fn a_gap_holds_the_channel_until_the_repair_fills_it() {
        let c = conn(1024);
        c.begin("user:alice");
        c.open("user:alice", &StreamPosition::new("e", 5), &pong(), &[])
            .await;
        assert!(!c.deliver(&Delivery::new(msg("user:alice", "e", 6))));
        assert_eq!(queued(&c), [6]);
        // 7 was lost on the backplane; 8 reveals the gap.
        assert!(c.deliver(&Delivery::new(msg("user:alice", "e", 8))));
        assert!(!c.deliver(&Delivery::new(msg("user:alice", "e", 9))));
        assert!(queued(&c).is_empty(), "held until repaired");
        assert_eq!(c.hold("user:alice"), None, "already held");
        assert_eq!(
            c.held_position("user:alice"),
            Some(StreamPosition::new("e", 6))
        );
        assert!(c.live_channels().is_empty());
        c.release(
            "user:alice",
            &[msg("user:alice", "e", 7), msg("user:alice", "e", 8)],
        )
        .await;
        assert_eq!(queued(&c), [7, 8, 9]);
        assert_eq!(c.live_channels(), ["user:alice"]);
        // A sweep after the backplane came back holds live channels.
        assert_eq!(c.hold("user:alice"), Some(StreamPosition::new("e", 9)));
        c.release("user:alice", &[]).await;
        assert!(!c.deliver(&Delivery::new(msg("user:alice", "e", 10))));
        assert_eq!(queued(&c), [10]);
    }

    #[tokio::test]
    async fn messages_of_untracked_channels_are_ignored() {
        let c = conn(16);
        c.deliver(&Delivery::new(msg("room:x", "e", 1)));
        assert!(queued(&c).is_empty());
        c.begin("room:x");
        assert!(c.end("room:x"));
        c.deliver(&Delivery::new(msg("room:x", "e", 2)));
        assert!(queued(&c).is_empty());
    }
}
