//! One connection as the rest of the node sees it: identity, outbound queue and the
//! per-channel delivery cursors that keep every channel in offset order, without
//! duplicates, across replay and live delivery.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use switchboard_proto::{clock, Encoding, Message, ServerFrame, StreamPosition};
use tokio_util::sync::CancellationToken;

use super::cursor::{drop_older_epochs, Cursor, Cursors, Delivered, Held, Released, Sequence};
use super::delivery::{id_hash, Delivery};
use crate::conn::outbound::{Item, Kind, Outbound, Pushed};
use crate::metrics as m;

/// Room for a message's envelope when pacing a replay.
const REPLAY_OVERHEAD: usize = 512;

/// Live messages held per channel while a subscription is being set up.
const MAX_PENDING: usize = 4096;

pub struct ConnHandle {
    /// Node-local numeric id (index keys).
    pub id: u64,
    /// The id clients and the API see (`c-…`).
    pub conn_id: String,
    pub user: String,
    /// The personal channel's name (`user:<id>`).
    personal: Box<str>,
    pub encoding: Encoding,
    pub since_ms: u64,
    pub outbound: Outbound,
    /// Token expiry (seconds since the Unix epoch); a `refresh` moves it.
    pub expires_at: AtomicU64,
    /// When the peer last sent anything (`clock::mono_ms`), for the idle close.
    pub last_seen: AtomicU64,
    /// When the connection started (`clock::mono_ms`): its phase in the heartbeat sweep.
    pub born_ms: u64,
    /// RPC calls of this connection in flight (`--rpc-max-inflight`).
    pub rpc_inflight: AtomicUsize,
    /// Cancelled when the socket goes: in-flight RPC calls stop and drop their upstream
    /// requests. Created by the first call.
    cancel: OnceLock<CancellationToken>,
    cursors: Mutex<Cursors>,
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
        let now = clock::mono_ms();
        ConnHandle {
            id,
            conn_id,
            personal: switchboard_proto::channel::user_channel(&user).into_boxed_str(),
            user,
            encoding,
            since_ms,
            outbound,
            expires_at: AtomicU64::new(expires_at),
            last_seen: AtomicU64::new(now),
            born_ms: now,
            rpc_inflight: AtomicUsize::new(0),
            cancel: OnceLock::new(),
            cursors: Mutex::new(Cursors::default()),
        }
    }

    fn cursors(&self) -> std::sync::MutexGuard<'_, Cursors> {
        self.cursors.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn expires_at(&self) -> u64 {
        self.expires_at.load(Ordering::Relaxed)
    }

    /// Notes that the peer sent something (the idle clock).
    pub fn seen(&self) {
        self.last_seen.store(clock::mono_ms(), Ordering::Relaxed);
    }

    /// The token in-flight RPC calls watch: cancelled when the socket goes.
    pub fn rpc_cancel(&self) -> &CancellationToken {
        self.cancel.get_or_init(CancellationToken::new)
    }

    /// Stops this connection's in-flight RPC calls (the socket is going).
    pub fn cancel_rpc(&self) {
        if let Some(token) = self.cancel.get() {
            token.cancel();
        }
    }

    fn kind(&self) -> Kind {
        match self.encoding {
            Encoding::Json => Kind::Text,
            Encoding::Proto => Kind::Binary,
        }
    }

    /// Queues an encoded control frame (reply, error, presence, welcome).
    pub fn send(&self, frame: &ServerFrame) -> Pushed {
        self.push(self.encoding.encode(frame), None)
    }

    /// Queues an already-encoded control frame (shared presence frames).
    pub fn push_control(&self, data: Bytes) -> Pushed {
        self.push(data, None)
    }

    /// Queues an already-encoded control frame for a later `outbound.flush` (a large
    /// fan-out); returns whether the caller must flush.
    pub fn push_control_deferred(&self, data: Bytes) -> bool {
        self.push_item(self.item(data, None), true).1
    }

    fn item(&self, data: Bytes, published_ms: Option<u64>) -> Item {
        Item {
            data,
            published_ms,
            kind: self.kind(),
        }
    }

    fn push(&self, data: Bytes, published_ms: Option<u64>) -> Pushed {
        self.push_item(self.item(data, published_ms), false).0
    }

    fn push_item(&self, item: Item, deferred: bool) -> (Pushed, bool) {
        let (pushed, flush) = if deferred {
            self.outbound.push_deferred(item)
        } else {
            (self.outbound.push(item), false)
        };
        if pushed == Pushed::Overflow {
            m::hot().slow_consumers.increment(1);
        }
        (pushed, flush)
    }

    /// Closes the connection as a slow consumer (4008).
    pub fn overflow(&self) {
        let request = crate::conn::outbound::CloseRequest::new(
            switchboard_proto::close::SLOW_CONSUMER,
            "slow consumer",
        );
        if self.outbound.close(request, false) {
            m::hot().slow_consumers.increment(1);
        }
    }

    /// Starts tracking `channel`; live messages are held until [`ConnHandle::open`].
    pub fn begin(&self, channel: &str) {
        let cursor = Cursor {
            pending: Some(Vec::new()),
            ..Cursor::default()
        };
        let mut cursors = self.cursors();
        if channel == &*self.personal {
            cursors.personal = Some(cursor);
        } else {
            cursors.rooms.insert(channel.into(), cursor);
        }
    }

    /// Runs `f` on the cursor of `channel`, if tracked.
    fn with_cursor<T>(&self, channel: &str, f: impl FnOnce(&mut Cursor) -> T) -> Option<T> {
        let mut cursors = self.cursors();
        let cursor = if channel == &*self.personal {
            cursors.personal.as_mut()
        } else {
            cursors.rooms.get_mut(channel)
        };
        cursor.map(f)
    }

    /// Whether the connection tracks `channel`.
    pub fn tracks(&self, channel: &str) -> bool {
        self.with_cursor(channel, |_| ()).is_some()
    }

    /// Stops tracking `channel`; returns whether it was tracked.
    pub fn end(&self, channel: &str) -> bool {
        let mut cursors = self.cursors();
        if channel == &*self.personal {
            return cursors.personal.take().is_some();
        }
        let removed = cursors.rooms.remove(channel).is_some();
        if cursors.rooms.is_empty() && cursors.rooms.capacity() > 0 {
            cursors.rooms = HashMap::new();
        }
        removed
    }

    /// Completes a subscription: queues `first` (the reply or welcome), then `replay` in
    /// order — paced by the outbound queue, so a replay larger than the queue is not a
    /// slow consumer — then the live messages that arrived meanwhile, skipping anything
    /// at or before what was already sent. Anything but [`Released::Live`] leaves the
    /// channel held: the caller has it repaired.
    pub async fn open(
        &self,
        channel: &str,
        start: &StreamPosition,
        first: &ServerFrame,
        replay: &[Arc<Message>],
    ) -> Released {
        self.restart(channel, start, first, replay).await
    }

    /// Moves a held channel to `position` after history the connection depended on was
    /// lost (docs/protocol.md §5): queues the `resync` frame, then `replay` (the messages after
    /// `position`), then the live messages held meanwhile. Live messages of an older
    /// epoch than `position`'s are dropped: the client reloads what came before.
    pub async fn resync(
        &self,
        channel: &str,
        position: &StreamPosition,
        replay: &[Arc<Message>],
    ) -> Released {
        let frame = ServerFrame::Resync {
            channel: channel.to_owned(),
            position: position.clone(),
        };
        m::hot().resyncs.increment(1);
        self.restart(channel, position, &frame, replay).await
    }

    /// Sets the cursor of `channel` to `start`, forgetting the message delivered last,
    /// queues `first` and releases `replay` and the held live messages.
    async fn restart(
        &self,
        channel: &str,
        start: &StreamPosition,
        first: &ServerFrame,
        replay: &[Arc<Message>],
    ) -> Released {
        let tracked = self.with_cursor(channel, |cursor| {
            cursor.epoch.clone_from(&start.epoch);
            cursor.offset = start.offset;
            cursor.last_id = 0;
            cursor.diverged = false;
            if let Some(pending) = &mut cursor.pending {
                drop_older_epochs(pending, &start.epoch);
            }
            self.push(self.encoding.encode(first), None);
        });
        if tracked.is_none() {
            return Released::Live;
        }
        self.release(channel, replay).await
    }

    /// Holds live delivery of `channel` for a repair (live messages wait); returns where
    /// the connection stands, or `None` when the channel is not tracked or already held.
    pub fn hold(&self, channel: &str) -> Option<StreamPosition> {
        self.with_cursor(channel, |cursor| {
            if cursor.pending.is_some() {
                return None;
            }
            cursor.pending = Some(Vec::new());
            Some(StreamPosition::new(cursor.epoch.clone(), cursor.offset))
        })
        .flatten()
    }

    /// Where the connection stands in a held channel.
    #[cfg(test)]
    pub fn held_position(&self, channel: &str) -> Option<StreamPosition> {
        self.held(channel).map(|h| h.position)
    }

    /// Where the connection stands in a held channel, with what it knows of the message
    /// delivered last.
    pub fn held(&self, channel: &str) -> Option<Held> {
        self.with_cursor(channel, |cursor| {
            cursor.pending.as_ref()?;
            Some(Held {
                position: StreamPosition::new(cursor.epoch.clone(), cursor.offset),
                last_id: cursor.last_id,
                diverged: cursor.diverged,
            })
        })
        .flatten()
    }

    /// The channels delivering live now (not held).
    #[cfg(test)]
    pub fn live_channels(&self) -> Vec<String> {
        let cursors = self.cursors();
        let personal = cursors
            .personal
            .as_ref()
            .map(|c| (&*self.personal, c))
            .into_iter();
        let rooms = cursors.rooms.iter().map(|(ch, c)| (&**ch, c));
        personal
            .chain(rooms)
            .filter(|(_, c)| c.pending.is_none())
            .map(|(ch, _)| ch.to_owned())
            .collect()
    }

    /// Queues `replay` in order (paced by the outbound queue), then the live messages held
    /// meanwhile, and delivers live again. Duplicates are dropped by offset. Stops, with
    /// the channel still held, at a message that shows history diverged (another message
    /// at the offset delivered last) or restarted (another epoch).
    pub async fn release(&self, channel: &str, replay: &[Arc<Message>]) -> Released {
        for msg in replay {
            if !self
                .outbound
                .wait_room(msg.data.len() + REPLAY_OVERHEAD)
                .await
            {
                return Released::Live;
            }
            let checked = self.with_cursor(channel, |cursor| {
                let seq = self.check_sequence(cursor, msg, id_hash(&msg.id));
                match seq {
                    Sequence::Accept => {
                        let data = self.encoding.encode(&ServerFrame::Message(msg.clone()));
                        self.push(data, Some(msg.ts));
                    }
                    Sequence::Diverged => cursor.diverged = true,
                    Sequence::Duplicate | Sequence::Epoch => {}
                }
                seq
            });
            match checked {
                None => return Released::Live,
                Some(Sequence::Diverged) => return Released::Diverged,
                Some(Sequence::Epoch) => return Released::Epoch,
                Some(_) => {}
            }
        }
        self.with_cursor(channel, |cursor| {
            let pending = cursor.pending.take().unwrap_or_default();
            for (i, delivery) in pending.iter().enumerate() {
                match self.check_sequence(cursor, &delivery.message, delivery.id_hash) {
                    Sequence::Accept => {
                        self.push(delivery.encoded(self.encoding), Some(delivery.message.ts));
                    }
                    Sequence::Duplicate => {}
                    Sequence::Diverged => {
                        cursor.pending = Some(pending[i..].to_vec());
                        cursor.diverged = true;
                        return Released::Diverged;
                    }
                    Sequence::Epoch => {
                        cursor.pending = Some(pending[i..].to_vec());
                        return Released::Epoch;
                    }
                }
            }
            Released::Live
        })
        .unwrap_or(Released::Live)
    }

    /// Delivers a live message of a channel this connection tracks. Returns true when
    /// the message came after a gap in offsets: the channel is then held, and the caller
    /// must have it repaired from history (see `repair`).
    #[cfg(test)]
    pub fn deliver(&self, delivery: &Arc<Delivery>) -> bool {
        self.deliver_as(delivery, false).gap
    }

    /// [`ConnHandle::deliver`]; with `deferred` the frame is only queued, and
    /// `Delivered::flush` says whether the caller must flush the outbound queue.
    pub fn deliver_as(&self, delivery: &Arc<Delivery>, deferred: bool) -> Delivered {
        let msg = &delivery.message;
        let mut cursors = self.cursors();
        let cursor = if *msg.channel == *self.personal {
            cursors.personal.as_mut()
        } else {
            cursors.rooms.get_mut(msg.channel.as_str())
        };
        let Some(cursor) = cursor else {
            return Delivered::default();
        };
        if let Some(pending) = &mut cursor.pending {
            if pending.len() >= MAX_PENDING {
                drop(cursors);
                self.overflow();
                return Delivered::default();
            }
            pending.push(delivery.clone());
            return Delivered::default();
        }
        if msg.epoch == cursor.epoch && msg.offset > cursor.offset + 1 {
            m::hot().delivery_gaps.increment(1);
            cursor.pending = Some(vec![delivery.clone()]);
            return Delivered {
                gap: true,
                flush: false,
            };
        }
        match self.check_sequence(cursor, msg, delivery.id_hash) {
            Sequence::Accept => {}
            Sequence::Duplicate => return Delivered::default(),
            Sequence::Diverged | Sequence::Epoch => {
                // Held like a gap; the repair resyncs the client (after a divergence it
                // starts a new epoch first).
                cursor.pending = Some(vec![delivery.clone()]);
                cursor.diverged = cursor.diverged || msg.epoch == cursor.epoch;
                return Delivered {
                    gap: true,
                    flush: false,
                };
            }
        }
        // Pushed under the cursors' lock: two deliveries to this connection reach its
        // queue in the order they were accepted.
        let item = self.item(delivery.encoded(self.encoding), Some(msg.ts));
        let (_, flush) = self.push_item(item, deferred);
        Delivered { gap: false, flush }
    }

    /// Offset bookkeeping: drops duplicates, notes gaps, stops at another epoch, and
    /// tells another message at the offset delivered last from a duplicate of it.
    fn check_sequence(&self, cursor: &mut Cursor, msg: &Message, id: u64) -> Sequence {
        if msg.epoch != cursor.epoch {
            tracing::debug!(
                conn = %self.conn_id,
                channel = %msg.channel,
                "a message of another epoch: the channel restarted"
            );
            return Sequence::Epoch;
        }
        if msg.offset == cursor.offset && cursor.last_id != 0 && id != cursor.last_id {
            tracing::warn!(
                conn = %self.conn_id,
                channel = %msg.channel,
                offset = msg.offset,
                "another message at an offset already delivered: history diverged"
            );
            return Sequence::Diverged;
        }
        if msg.offset <= cursor.offset {
            return Sequence::Duplicate;
        }
        if msg.offset > cursor.offset + 1 {
            tracing::debug!(
                conn = %self.conn_id,
                expected = cursor.offset + 1,
                got = msg.offset,
                "offset gap accepted (history does not have it)"
            );
        }
        cursor.offset = msg.offset;
        cursor.last_id = id;
        Sequence::Accept
    }
}

#[cfg(test)]
mod tests;
