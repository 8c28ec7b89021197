//! The node's index of its local connections: by id, by user and by room. It is the
//! [`NodeSink`] the router delivers into, and it never waits on a socket: a delivery
//! writes to each recipient's socket directly when the socket takes it, and queues it
//! otherwise. A large fan-out queues to every recipient first (so each connection's frames
//! stay in order with anything delivered after it), then writes in chunks on the runtime's
//! workers, yielding between chunks: no worker is held for the whole fan-out, other tasks
//! run in between, and every core writes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use switchboard_proto::channel::Channel;
use switchboard_proto::frames::PresenceEvent;
use switchboard_proto::{Encoding, Message, ServerFrame};
use switchboard_router::NodeSink;
use tokio::sync::mpsc;

use crate::conn::outbound::CloseRequest;
use crate::conn::{ConnHandle, Delivery};
use crate::metrics as m;
use crate::repair::Repair;

type ConnMap = HashMap<u64, Arc<ConnHandle>>;

/// Recipients up to which a delivery writes inline, on the caller's task.
const INLINE_FANOUT: usize = 64;
/// Recipients a large fan-out writes between two yields (~1 ms of loopback writes).
const FANOUT_CHUNK: usize = 128;

pub struct Hub {
    conns: RwLock<ConnMap>,
    /// A user's connections (most users have one or two: a small list, not a map).
    users: RwLock<HashMap<Box<str>, Vec<Arc<ConnHandle>>>>,
    rooms: RwLock<HashMap<String, ConnMap>>,
    /// Channels to re-read from history (gaps, backplane outages).
    repairs: mpsc::UnboundedSender<Repair>,
    /// Whether the backplane was reported down since it was last up.
    was_down: AtomicBool,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl Hub {
    /// A hub and the receiving end of its repair requests (see `repair::run`).
    pub fn new() -> (Hub, mpsc::UnboundedReceiver<Repair>) {
        let (repairs, rx) = mpsc::unbounded_channel();
        let hub = Hub {
            conns: RwLock::default(),
            users: RwLock::default(),
            rooms: RwLock::default(),
            repairs,
            was_down: AtomicBool::new(false),
        };
        (hub, rx)
    }

    /// Has a held channel of `conn` repaired from history (see `repair`).
    pub fn repair(&self, conn: Arc<ConnHandle>, channel: String) {
        let _ = self.repairs.send(Repair { conn, channel });
    }

    /// Number of local connections.
    pub fn len(&self) -> usize {
        read(&self.conns).len()
    }

    /// Adds a connection to the id and user indexes.
    pub fn add(&self, conn: &Arc<ConnHandle>) {
        write(&self.conns).insert(conn.id, conn.clone());
        let mut users = write(&self.users);
        match users.get_mut(conn.user.as_str()) {
            Some(list) => list.push(conn.clone()),
            None => {
                users.insert(conn.user.as_str().into(), vec![conn.clone()]);
            }
        }
    }

    /// Removes a connection from every index.
    pub fn remove(&self, conn: &ConnHandle) {
        write(&self.conns).remove(&conn.id);
        let mut users = write(&self.users);
        if let Some(list) = users.get_mut(conn.user.as_str()) {
            list.retain(|c| c.id != conn.id);
            if list.is_empty() {
                users.remove(conn.user.as_str());
            }
        }
    }

    /// Adds `conn` to `room`; returns whether it is the room's first local subscriber.
    pub fn join_room(&self, room: &str, conn: &Arc<ConnHandle>) -> bool {
        let mut rooms = write(&self.rooms);
        let set = rooms.entry(room.to_owned()).or_default();
        set.insert(conn.id, conn.clone());
        set.len() == 1
    }

    /// Removes `conn` from `room`; returns whether the room has no local subscriber left.
    pub fn leave_room(&self, room: &str, conn: &ConnHandle) -> bool {
        let mut rooms = write(&self.rooms);
        let Some(set) = rooms.get_mut(room) else {
            return false;
        };
        if set.remove(&conn.id).is_none() {
            return false;
        }
        if set.is_empty() {
            rooms.remove(room);
            return true;
        }
        false
    }

    /// Every local connection (for a drain).
    pub fn all(&self) -> Vec<Arc<ConnHandle>> {
        read(&self.conns).values().cloned().collect()
    }

    /// The local connections that `pick` selects (the sweeper's heartbeat phases).
    pub fn matching(&self, pick: impl Fn(&ConnHandle) -> bool) -> Vec<Arc<ConnHandle>> {
        read(&self.conns)
            .values()
            .filter(|c| pick(c))
            .cloned()
            .collect()
    }

    /// A local connection by its node-local id.
    pub fn get(&self, id: u64) -> Option<Arc<ConnHandle>> {
        read(&self.conns).get(&id).cloned()
    }

    fn targets(&self, channel: &str) -> Vec<Arc<ConnHandle>> {
        let user = Channel::parse(channel).ok().and_then(|c| c.user());
        match user {
            Some(user) => read(&self.users).get(user).cloned().unwrap_or_default(),
            None => read(&self.rooms)
                .get(channel)
                .map(|s| s.values().cloned().collect())
                .unwrap_or_default(),
        }
    }
}

/// Writes the queues of a large fan-out's recipients: one lane per worker thread takes the
/// next chunk of recipients, writes it and yields, so that other tasks (1:1 traffic, client
/// frames) run between chunks instead of waiting for the whole fan-out. Outside a runtime:
/// at once.
fn flush_in_lanes(conns: Vec<Arc<ConnHandle>>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        conns.iter().for_each(|c| c.outbound.flush());
        return;
    };
    let lanes = runtime
        .metrics()
        .num_workers()
        .min(conns.len().div_ceil(FANOUT_CHUNK));
    let work = Arc::new((conns, AtomicUsize::new(0)));
    for _ in 0..lanes {
        let work = work.clone();
        runtime.spawn(async move {
            let (conns, next) = &*work;
            loop {
                let from = next.fetch_add(FANOUT_CHUNK, Ordering::Relaxed);
                if from >= conns.len() {
                    return;
                }
                let to = (from + FANOUT_CHUNK).min(conns.len());
                conns[from..to].iter().for_each(|c| c.outbound.flush());
                tokio::task::yield_now().await;
            }
        });
    }
}

impl NodeSink for Hub {
    fn deliver(&self, message: Arc<Message>) {
        let targets = self.targets(&message.channel);
        if targets.is_empty() {
            return;
        }
        let delivery = Delivery::new(message);
        let deferred = targets.len() > INLINE_FANOUT;
        let mut flush = Vec::new();
        for conn in targets {
            let d = conn.deliver_as(&delivery, deferred);
            if d.gap {
                self.repair(conn, delivery.message.channel.clone());
            } else if d.flush {
                flush.push(conn);
            }
        }
        if !flush.is_empty() {
            flush_in_lanes(flush);
        }
    }

    fn presence(&self, channel: &str, user: &str, event: PresenceEvent) {
        let frame = ServerFrame::Presence {
            channel: channel.to_owned(),
            user: user.to_owned(),
            event,
        };
        let mut encoded: [Option<bytes::Bytes>; 2] = [None, None];
        let targets = self.targets(channel);
        let deferred = targets.len() > INLINE_FANOUT;
        let mut flush = Vec::new();
        for conn in targets {
            if !conn.tracks(channel) {
                continue;
            }
            let slot = match conn.encoding {
                Encoding::Json => 0,
                Encoding::Proto => 1,
            };
            let data = encoded[slot]
                .get_or_insert_with(|| conn.encoding.encode(&frame))
                .clone();
            if !deferred {
                conn.push_control(data);
            } else if conn.push_control_deferred(data) {
                flush.push(conn);
            }
        }
        if !flush.is_empty() {
            flush_in_lanes(flush);
        }
    }

    fn disconnect_user(&self, user: &str, code: u16, reason: &str) -> usize {
        let conns = read(&self.users).get(user).cloned().unwrap_or_default();
        for conn in &conns {
            conn.outbound.close(CloseRequest::new(code, reason), false);
        }
        conns.len()
    }

    fn backplane_state(&self, up: bool) {
        metrics::gauge!(m::BACKPLANE_UP).set(if up { 1.0 } else { 0.0 });
        if !up {
            self.was_down.store(true, Ordering::SeqCst);
            tracing::warn!("backplane down");
            return;
        }
        tracing::info!("backplane up");
        if self.was_down.swap(false, Ordering::SeqCst) {
            metrics::counter!(m::BACKPLANE_RECONNECTS).increment(1);
        }
    }

    fn channels_interrupted(&self, channels: &[String]) {
        // Messages may have been lost meanwhile: re-read each channel for every local
        // connection that tracks it.
        for channel in channels {
            for conn in self.targets(channel) {
                if conn.hold(channel).is_some() {
                    self.repair(conn, channel.clone());
                }
            }
        }
    }
}
