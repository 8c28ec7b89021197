//! The key and channel layout, in one place. Every key one script touches shares one
//! hash tag, so each script runs on one slot of a Redis Cluster (and the same layout
//! serves one Redis and Sentinel):
//!
//! | key (`P` = prefix, e.g. `sb:`) | type | what |
//! |---|---|---|
//! | `P{ch}:m` | hash | `e` epoch, `w` 1 once the stream was written, `o` newest offset (channels without history), `r` when to refresh the TTLs (ms) |
//! | `P{ch}:s` | stream | history: entry id `0-<offset>`, fields `d` (the message without epoch/offset, protobuf) and `t` (ms) |
//! | `P{ch}:i:<key>` | string | an idempotency key within its window (`PX`): the first publish's `"<epoch> <offset> <receivers>"` |
//! | `P{ch}` | shard channel | live delivery of `ch`, SSUBSCRIBEd by every node that holds it |
//! | `P{user:u}:c` | hash | registry: conn id → `"<node> <since_ms>"` |
//! | `P{user:u}:a` | string | the inbox ack, `"<epoch> <offset>"` |
//! | `P{room:r}:p` / `P{room:r}:pu` | hash | presence: conn → `"<user> <node>"` / user → connection count |
//! | `P{node:n}:c` / `P{node:n}:p` | set | what a dead node leaves to clean up: `"<user> <conn>"` / `"<room> <conn> <user>"` |
//! | `P{nodes}` / `P{nodes}:reaping` | sorted set | node → lease deadline (ms, Redis clock) / node → reaper's claim deadline |
//! | `P{nodes}:status` | hash | node → `"<connections> <draining 0/1> <since_ms>"` |
//! | `P{<tag>}:probe:<node>` | shard channel | a node's liveness probe through one shard (`<tag>` hashes to one of its slots) |
//!
//! The connection events stream (`switchboard:events` by default) is one key of its own.

use super::client::{slot, tag_for};

/// Names keys and channels under a prefix.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    fn tagged(&self, tag: &str, suffix: &str) -> String {
        let mut k = String::with_capacity(self.prefix.len() + tag.len() + suffix.len() + 3);
        k.push_str(&self.prefix);
        k.push('{');
        k.push_str(tag);
        k.push('}');
        k.push_str(suffix);
        k
    }

    /// The hash slot of everything belonging to channel `ch`.
    pub fn slot(&self, ch: &str) -> u16 {
        slot(ch.as_bytes())
    }

    /// The hash slot of a key or shard channel.
    pub fn slot_of_key(&self, key: &str) -> u16 {
        slot(key.as_bytes())
    }

    pub fn meta(&self, ch: &str) -> String {
        self.tagged(ch, ":m")
    }

    pub fn stream(&self, ch: &str) -> String {
        self.tagged(ch, ":s")
    }

    /// An idempotency key of `ch` (validated and scoped by the caller).
    pub fn idempotency(&self, ch: &str, key: &str) -> String {
        self.tagged(ch, &format!(":i:{key}"))
    }

    /// The shard channel carrying `ch`'s live messages (and a room's presence, a user's
    /// disconnects).
    pub fn live(&self, ch: &str) -> String {
        self.tagged(ch, "")
    }

    /// The channel a shard channel name belongs to (`None` for probes and strangers).
    pub fn channel_of<'a>(&self, live: &'a str) -> Option<&'a str> {
        live.strip_prefix(self.prefix.as_str())?
            .strip_prefix('{')?
            .strip_suffix('}')
    }

    pub fn registry(&self, user_channel: &str) -> String {
        self.tagged(user_channel, ":c")
    }

    pub fn ack(&self, user_channel: &str) -> String {
        self.tagged(user_channel, ":a")
    }

    pub fn presence(&self, room: &str) -> String {
        self.tagged(room, ":p")
    }

    pub fn presence_users(&self, room: &str) -> String {
        self.tagged(room, ":pu")
    }

    pub fn node_conns(&self, node: &str) -> String {
        self.tagged(&format!("node:{node}"), ":c")
    }

    pub fn node_presence(&self, node: &str) -> String {
        self.tagged(&format!("node:{node}"), ":p")
    }

    pub fn nodes(&self) -> String {
        self.tagged("nodes", "")
    }

    pub fn reaping(&self) -> String {
        self.tagged("nodes", ":reaping")
    }

    pub fn status(&self) -> String {
        self.tagged("nodes", ":status")
    }

    /// This node's probe channel in `slot`.
    pub fn probe(&self, slot: u16, node: &str) -> String {
        self.tagged(tag_for(slot), &format!(":probe:{node}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channels_keys_share_its_slot() {
        let k = Keys::new("sb:");
        let ch = "user:alice";
        let s = k.slot(ch);
        for key in [
            k.meta(ch),
            k.stream(ch),
            k.idempotency(ch, "k-1/bob"),
            k.live(ch),
            k.registry(ch),
            k.ack(ch),
        ] {
            assert_eq!(slot(key.as_bytes()), s, "{key}");
        }
        assert_eq!(k.meta(ch), "sb:{user:alice}:m");
        assert_eq!(k.channel_of(&k.live(ch)), Some(ch));
        assert_eq!(k.channel_of("other:{x}"), None);
        let room = "room:lobby";
        assert_eq!(
            slot(k.presence(room).as_bytes()),
            slot(k.presence_users(room).as_bytes())
        );
        assert_eq!(slot(k.presence(room).as_bytes()), k.slot(room));
        assert_eq!(slot(k.nodes().as_bytes()), slot(k.status().as_bytes()));
        assert_eq!(slot(k.nodes().as_bytes()), slot(k.reaping().as_bytes()));
        assert_eq!(
            slot(k.node_conns("n1").as_bytes()),
            slot(k.node_presence("n1").as_bytes())
        );
        assert_eq!(slot(k.probe(777, "n1").as_bytes()), 777);
    }
}
