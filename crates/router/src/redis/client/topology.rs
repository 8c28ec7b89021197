//! Which primary serves which hash slot: one shard holding every slot for one Redis (or
//! the master Sentinel names), or the shards of a Redis Cluster read from
//! `CLUSTER SHARDS` (Redis 7) or `CLUSTER SLOTS` (older servers, some managed services).

use super::resp::Value;
use super::slot::SLOTS;
use super::Error;

/// One primary and the slots it serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    /// `host:port` of the primary.
    pub primary: String,
    /// The primary's cluster node id (empty outside a cluster).
    pub id: String,
    /// Replicas that are online.
    pub replicas: usize,
    /// Inclusive slot ranges.
    pub ranges: Vec<(u16, u16)>,
    /// Whether the primary is online. A shard whose primary failed stays in the map
    /// (its slots unserved until a replica is promoted), so that shard indexes — metric
    /// labels — do not move during a failover.
    pub serving: bool,
}

/// The slot map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// Ordered by the first slot each serves, so that a shard keeps its index across a
    /// failover (the promoted replica serves the same slots).
    pub shards: Vec<Shard>,
    /// Slot → index in `shards` (`NONE` when no primary serves it).
    owner: Vec<u16>,
    pub cluster: bool,
}

const NONE: u16 = u16::MAX;

impl Topology {
    /// One Redis serving every slot.
    pub fn single(primary: String, replicas: usize) -> Topology {
        Topology::build(
            vec![Shard {
                primary,
                id: String::new(),
                replicas,
                ranges: vec![(0, SLOTS as u16 - 1)],
                serving: true,
            }],
            false,
        )
    }

    fn build(mut shards: Vec<Shard>, cluster: bool) -> Topology {
        for s in &mut shards {
            s.ranges.sort_unstable();
        }
        shards.retain(|s| !s.ranges.is_empty());
        shards.sort_by_key(|s| s.ranges[0].0);
        let mut owner = vec![NONE; SLOTS];
        for (i, s) in shards.iter().enumerate().filter(|(_, s)| s.serving) {
            for &(a, b) in &s.ranges {
                for slot in a..=b.min(SLOTS as u16 - 1) {
                    owner[slot as usize] = i as u16;
                }
            }
        }
        Topology {
            shards,
            owner,
            cluster,
        }
    }

    /// The shard serving `slot`.
    pub fn shard_of(&self, slot: u16) -> Option<usize> {
        match self.owner.get(slot as usize) {
            Some(&i) if i != NONE => Some(i as usize),
            _ => None,
        }
    }

    /// The primary serving `slot`.
    pub fn primary_of(&self, slot: u16) -> Option<&str> {
        self.shard_of(slot).map(|i| self.shards[i].primary.as_str())
    }

    /// How many slots no primary serves.
    pub fn uncovered(&self) -> usize {
        self.owner.iter().filter(|&&o| o == NONE).count()
    }

    /// The map after a `MOVED slot addr`: that slot now belongs to `addr`.
    pub fn with_moved(&self, slot: u16, addr: &str) -> Topology {
        let mut shards = self.shards.clone();
        for s in &mut shards {
            s.ranges = remove_slot(&s.ranges, slot);
        }
        match shards.iter_mut().find(|s| s.primary == addr) {
            Some(s) => s.ranges.push((slot, slot)),
            None => shards.push(Shard {
                primary: addr.to_owned(),
                id: String::new(),
                replicas: 0,
                ranges: vec![(slot, slot)],
                serving: true,
            }),
        }
        Topology::build(shards, self.cluster)
    }

    /// Parses a `CLUSTER SHARDS` reply. Shards whose primary is not online stay, not
    /// serving (their slots are uncovered until a replica is promoted).
    pub fn from_shards(reply: Value, tls: bool) -> Result<Topology, Error> {
        let mut shards = Vec::new();
        for shard in reply.into_array() {
            let fields = pairs(shard);
            let mut ranges = Vec::new();
            let mut primary = None;
            let mut failed_primary = None;
            let mut replicas = 0;
            for (k, v) in fields {
                match k.as_str() {
                    "slots" => {
                        let bounds: Vec<i64> =
                            v.into_array().iter().filter_map(Value::as_int).collect();
                        for pair in bounds.chunks_exact(2) {
                            ranges.push((slot_number(pair[0])?, slot_number(pair[1])?));
                        }
                    }
                    "nodes" => {
                        for node in v.into_array() {
                            let n = NodeInfo::parse(node, tls);
                            match (n.role.as_str(), n.health.as_str()) {
                                ("master", "online") => primary = Some(n),
                                ("master", _) => failed_primary = Some(n),
                                ("replica", "online") => replicas += 1,
                                _ => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
            let serving = primary.is_some();
            if let Some(p) = primary.or(failed_primary).filter(|p| !p.addr.is_empty()) {
                shards.push(Shard {
                    primary: p.addr,
                    id: p.id,
                    replicas,
                    ranges,
                    serving,
                });
            }
        }
        Ok(Topology::build(merge(shards), true))
    }

    /// Parses a `CLUSTER SLOTS` reply.
    pub fn from_slots(reply: Value) -> Result<Topology, Error> {
        let mut shards: Vec<Shard> = Vec::new();
        for range in reply.into_array() {
            let mut items = range.into_array().into_iter();
            let (Some(a), Some(b), Some(primary)) = (items.next(), items.next(), items.next())
            else {
                return Err(Error::Protocol("short CLUSTER SLOTS entry".into()));
            };
            let a = slot_number(a.as_int().unwrap_or(-1))?;
            let b = slot_number(b.as_int().unwrap_or(-1))?;
            let replicas = items.count();
            let p = primary.into_array();
            let host = p.first().map(Value::to_text).unwrap_or_default();
            let port = p.get(1).and_then(Value::as_int).unwrap_or(0);
            let id = p.get(2).map(Value::to_text).unwrap_or_default();
            if host.is_empty() || port <= 0 {
                continue;
            }
            shards.push(Shard {
                primary: join_host_port(&host, port),
                id,
                replicas,
                ranges: vec![(a, b)],
                serving: true,
            });
        }
        Ok(Topology::build(merge(shards), true))
    }
}

fn slot_number(n: i64) -> Result<u16, Error> {
    u16::try_from(n)
        .ok()
        .filter(|&s| (s as usize) < SLOTS)
        .ok_or_else(|| Error::Protocol(format!("slot {n} out of range")))
}

/// Merges entries of the same primary (CLUSTER SLOTS lists one per range).
fn merge(shards: Vec<Shard>) -> Vec<Shard> {
    let mut out: Vec<Shard> = Vec::new();
    for s in shards {
        match out.iter_mut().find(|o| o.primary == s.primary) {
            Some(o) => {
                o.ranges.extend(s.ranges);
                o.replicas = o.replicas.max(s.replicas);
            }
            None => out.push(s),
        }
    }
    out
}

fn remove_slot(ranges: &[(u16, u16)], slot: u16) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    for &(a, b) in ranges {
        if slot < a || slot > b {
            out.push((a, b));
            continue;
        }
        if a < slot {
            out.push((a, slot - 1));
        }
        if slot < b {
            out.push((slot + 1, b));
        }
    }
    out
}

/// `host:port`, with brackets around IPv6 hosts.
pub fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A flat `[k1, v1, k2, v2, …]` reply (RESP2 maps) as pairs.
fn pairs(v: Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut it = v.into_array().into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k.to_text(), v));
    }
    out
}

struct NodeInfo {
    id: String,
    addr: String,
    role: String,
    health: String,
}

impl NodeInfo {
    fn parse(v: Value, tls: bool) -> NodeInfo {
        let (mut id, mut ip, mut endpoint) = (String::new(), String::new(), String::new());
        let (mut port, mut tls_port) = (0, 0);
        let (mut role, mut health) = (String::new(), String::new());
        for (k, v) in pairs(v) {
            match k.as_str() {
                "id" => id = v.to_text(),
                "ip" => ip = v.to_text(),
                "endpoint" => endpoint = v.to_text(),
                "port" => port = v.as_int().unwrap_or(0),
                "tls-port" => tls_port = v.as_int().unwrap_or(0),
                "role" => role = v.to_text(),
                "health" => health = v.to_text(),
                _ => {}
            }
        }
        let host = if endpoint.is_empty() || endpoint == "?" {
            ip
        } else {
            endpoint
        };
        let port = if tls && tls_port > 0 { tls_port } else { port };
        let addr = if host.is_empty() || port <= 0 {
            String::new()
        } else {
            join_host_port(&host, port)
        };
        NodeInfo {
            id,
            addr,
            role,
            health,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn bulk(s: &str) -> Value {
        Value::Bulk(Bytes::from(s.to_owned()))
    }

    fn node(id: &str, port: i64, role: &str, health: &str) -> Value {
        Value::Array(vec![
            bulk("id"),
            bulk(id),
            bulk("port"),
            Value::Int(port),
            bulk("ip"),
            bulk("127.0.0.1"),
            bulk("endpoint"),
            bulk("127.0.0.1"),
            bulk("role"),
            bulk(role),
            bulk("health"),
            bulk(health),
        ])
    }

    fn shard(slots: &[i64], nodes: Vec<Value>) -> Value {
        Value::Array(vec![
            bulk("slots"),
            Value::Array(slots.iter().map(|&s| Value::Int(s)).collect()),
            bulk("nodes"),
            Value::Array(nodes),
        ])
    }

    #[test]
    fn cluster_shards_map_every_slot_to_its_online_primary() {
        let reply = Value::Array(vec![
            shard(
                &[10923, 16383],
                vec![
                    node("c", 7003, "master", "online"),
                    node("f", 7006, "replica", "online"),
                ],
            ),
            shard(
                &[0, 5460],
                vec![
                    node("a", 7001, "master", "online"),
                    node("d", 7004, "replica", "failed"),
                ],
            ),
            shard(
                &[5461, 10922],
                vec![
                    node("b", 7002, "master", "failed"),
                    node("e", 7005, "replica", "online"),
                ],
            ),
        ]);
        let t = Topology::from_shards(reply, false).unwrap();
        assert_eq!(
            t.shards.len(),
            3,
            "the shard whose primary failed keeps its index"
        );
        assert_eq!(t.shards[0].primary, "127.0.0.1:7001");
        assert_eq!(t.shards[0].replicas, 0);
        assert!(!t.shards[1].serving, "its primary failed");
        assert_eq!(t.shards[1].replicas, 1);
        assert_eq!(t.shards[2].id, "c");
        assert_eq!(t.shards[2].replicas, 1);
        assert_eq!(t.primary_of(0), Some("127.0.0.1:7001"));
        assert_eq!(t.primary_of(16383), Some("127.0.0.1:7003"));
        assert_eq!(t.primary_of(6000), None);
        assert_eq!(t.uncovered(), 10922 - 5461 + 1);
    }

    #[test]
    fn moved_reassigns_one_slot() {
        let t = Topology::single("a:1".into(), 0).with_moved(7, "b:2");
        assert_eq!(t.primary_of(7), Some("b:2"));
        assert_eq!(t.primary_of(6), Some("a:1"));
        assert_eq!(t.primary_of(8), Some("a:1"));
        assert_eq!(t.uncovered(), 0);
        assert_eq!(t.shards[0].ranges, vec![(0, 6), (8, 16383)]);
    }

    #[test]
    fn cluster_slots_reply() {
        let entry = |a: i64, b: i64, port: i64| {
            Value::Array(vec![
                Value::Int(a),
                Value::Int(b),
                Value::Array(vec![bulk("::1"), Value::Int(port), bulk("id")]),
            ])
        };
        let reply = Value::Array(vec![
            entry(0, 99, 1),
            entry(100, 16383, 2),
            entry(50, 60, 1),
        ]);
        let t = Topology::from_slots(reply).unwrap();
        assert_eq!(t.shards.len(), 2);
        assert_eq!(t.primary_of(55), Some("[::1]:1"));
    }
}
