//! `CLUSTER NODES` as data, and the check that a cluster is settled.

use std::collections::BTreeSet;

use super::resp::{cmd_once, RespValue};

/// One line of `CLUSTER NODES`, as one node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterNode {
    pub id: String,
    pub port: u16,
    /// `myself`, `master`, `slave`, `fail?`, `fail`, `handshake`, `noaddr`, …
    pub flags: Vec<String>,
    /// The id of its primary, for a replica.
    pub primary_id: Option<String>,
    /// Whether the cluster bus link to it is up (always true for `myself`).
    pub connected: bool,
    /// The slot ranges it serves, inclusive, in order.
    pub slots: Vec<(u16, u16)>,
    /// Slots being migrated to or imported from another node (`[slot->-id]`, `[slot-<-id]`).
    pub open_slots: Vec<u16>,
}

impl ClusterNode {
    pub fn is_primary(&self) -> bool {
        self.has_flag("master")
    }

    pub fn is_myself(&self) -> bool {
        self.has_flag("myself")
    }

    /// Flagged `fail` or `fail?` (PFAIL).
    pub fn is_failing(&self) -> bool {
        self.has_flag("fail") || self.has_flag("fail?")
    }

    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    pub fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(a, b)| a <= slot && slot <= b)
    }
}

/// Parses a `CLUSTER NODES` reply; `None` when it is not one.
pub(super) fn parse_nodes(text: &str) -> Option<Vec<ClusterNode>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(parse_line)
        .collect()
}

// <id> <ip:port@cport[,hostname]> <flags> <primary> <ping> <pong> <epoch> <link> <slot>…
fn parse_line(line: &str) -> Option<ClusterNode> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 8 {
        return None;
    }
    let addr = fields[1].split(['@', ',']).next()?;
    let port = addr.rsplit(':').next()?.parse().ok()?;
    let mut slots = Vec::new();
    let mut open_slots = Vec::new();
    for s in &fields[8..] {
        if let Some(open) = s.strip_prefix('[') {
            open_slots.push(open.split('-').next()?.parse().ok()?);
        } else if let Some((a, b)) = s.split_once('-') {
            slots.push((a.parse().ok()?, b.parse().ok()?));
        } else {
            let one = s.parse().ok()?;
            slots.push((one, one));
        }
    }
    Some(ClusterNode {
        id: fields[0].to_owned(),
        port,
        flags: fields[2].split(',').map(str::to_owned).collect(),
        primary_id: (fields[3] != "-").then(|| fields[3].to_owned()),
        connected: fields[7] == "connected",
        slots,
        open_slots,
    })
}

/// `CLUSTER NODES` as `port` sees it.
pub(super) fn nodes_seen_by(port: u16) -> Result<Vec<ClusterNode>, String> {
    let reply = cmd_once(port, &["CLUSTER", "NODES"]).map_err(|e| format!("node {port}: {e}"))?;
    match reply {
        RespValue::Bulk(b) => parse_nodes(&String::from_utf8_lossy(&b))
            .ok_or_else(|| format!("node {port}: unreadable CLUSTER NODES")),
        other => Err(format!("node {port}: CLUSTER NODES answered {other:?}")),
    }
}

/// One `field:value` of an INFO-style reply (`CLUSTER INFO`, `INFO replication`).
pub(super) fn info_field(port: u16, args: &[&str], field: &str) -> Result<String, String> {
    let reply = cmd_once(port, args).map_err(|e| format!("node {port}: {e}"))?;
    let RespValue::Bulk(b) = reply else {
        return Err(format!("node {port}: {args:?} answered {reply:?}"));
    };
    String::from_utf8_lossy(&b)
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':').map(str::to_owned))
        .ok_or_else(|| format!("node {port}: no {field} in {args:?}"))
}

/// Ok when the cluster is settled as the `live` nodes see it: each reports cluster_state:ok
/// with all 16384 slots assigned and ok; they agree on who serves every slot and on the
/// role and primary of every live node; every slot is served by a live node; no live node
/// sees another live node failing or disconnected; no slot is being migrated; every live
/// replica's replication link is up. Err says the first thing that is not so.
pub(super) fn check_settled(live: &[u16]) -> Result<(), String> {
    if live.is_empty() {
        return Err("no live node".into());
    }
    let live_set: BTreeSet<u16> = live.iter().copied().collect();
    let mut agreed: Option<(u16, Vec<String>)> = None;
    let mut replicas = Vec::new();
    for &port in live {
        for (field, want) in [
            ("cluster_state", "ok"),
            ("cluster_slots_assigned", "16384"),
            ("cluster_slots_ok", "16384"),
        ] {
            let got = info_field(port, &["CLUSTER", "INFO"], field)?;
            if got != want {
                return Err(format!("node {port}: {field}:{got}"));
            }
        }
        let nodes = nodes_seen_by(port)?;
        let mut view = Vec::new();
        for n in &nodes {
            if !n.open_slots.is_empty() {
                return Err(format!(
                    "node {port}: {} has open slots {:?}",
                    n.port, n.open_slots
                ));
            }
            for &(a, b) in &n.slots {
                if !live_set.contains(&n.port) {
                    return Err(format!(
                        "node {port}: slots {a}-{b} on {} (not live)",
                        n.port
                    ));
                }
                view.push(format!("{a}-{b} {}", n.id));
            }
            if live_set.contains(&n.port) {
                if n.is_failing() || !n.connected || n.has_flag("handshake") {
                    return Err(format!(
                        "node {port} sees {} as {} ({})",
                        n.port,
                        n.flags.join(","),
                        if n.connected {
                            "connected"
                        } else {
                            "disconnected"
                        }
                    ));
                }
                let role = n.primary_id.as_deref().unwrap_or("primary");
                view.push(format!("{} {} {role}", n.port, n.id));
                if n.is_myself() && !n.is_primary() {
                    replicas.push(port);
                }
            }
        }
        view.sort();
        match &agreed {
            None => agreed = Some((port, view)),
            Some((first, seen)) if *seen != view => {
                return Err(format!(
                    "nodes {first} and {port} do not agree on CLUSTER NODES"
                ));
            }
            Some(_) => {}
        }
    }
    for port in replicas {
        let link = info_field(port, &["INFO", "replication"], "master_link_status")?;
        if link != "up" {
            return Err(format!("replica {port}: master_link_status:{link}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 [5461-<-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 slave,fail 67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 1426238316232 1426238315000 5 disconnected
824fe116063bc5fcf9f4ffd895bc17aee7731ac3 127.0.0.1:30006@31006 master - 0 1426238316232 3 connected 10923 10924-16383
";

    #[test]
    fn parses_cluster_nodes() {
        let nodes = parse_nodes(NODES).unwrap();
        assert_eq!(nodes.len(), 5);
        assert_eq!(nodes[0].port, 30004);
        assert!(!nodes[0].is_primary());
        assert_eq!(nodes[0].primary_id.as_deref(), Some(nodes[2].id.as_str()));
        assert!(nodes[2].is_myself() && nodes[2].is_primary());
        assert_eq!(nodes[2].slots, vec![(0, 5460)]);
        assert_eq!(nodes[2].open_slots, vec![5461]);
        assert!(nodes[3].is_failing() && !nodes[3].connected);
        assert_eq!(nodes[4].slots, vec![(10923, 10923), (10924, 16383)]);
        assert!(nodes[4].serves(16383) && !nodes[4].serves(10922));
        assert!(parse_nodes("garbage").is_none());
    }
}
