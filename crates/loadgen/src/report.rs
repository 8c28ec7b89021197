//! Merges the partial results of all processes into the result object (the JSON of the
//! interface contract), prints the human summary and evaluates the `--max-*` checks.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{json, Value};

use crate::cli::Common;
use crate::stats::{decode, new_hist, FanoutPartial, Partial, Point, SlowPartial, Stat};

/// What the merge needs besides the partials.
#[derive(Clone, Debug)]
pub struct RunInfo {
    pub mode: &'static str,
    pub protocol: &'static str,
    pub label: Option<String>,
    pub started_unix_ms: u64,
    pub duration_s: f64,
    pub processes: usize,
    /// Modes that send messages: the target rate (msg/s).
    pub rate_target: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Connections {
    pub attempted: u64,
    pub established: u64,
    pub failed: u64,
    pub failures: BTreeMap<String, u64>,
    pub connect_per_s: f64,
    pub handshake_us: Stat,
}

#[derive(Debug, Default, Serialize)]
pub struct Messages {
    pub scheduled: u64,
    pub sent: u64,
    pub acked: u64,
    pub send_failed: u64,
    /// Sent again after a reconnect because the first copy got no answer (`--reconnect`).
    pub resent: u64,
    pub unconfirmed: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub rate_target: f64,
    pub rate_achieved: f64,
}

#[derive(Debug, Serialize)]
pub struct Fanout {
    pub messages: u64,
    /// Messages that reached every subscriber (the ones `last_recipient_us` covers).
    pub complete: u64,
    pub subscribers: u64,
    pub last_recipient_us: Stat,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub limit: Value,
    pub value: Value,
    pub ok: bool,
}

impl std::fmt::Display for Check {
    /// The summary line: `check <name>: value=<v> limit=<l> ok|FAILED`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = if self.ok { "ok" } else { "FAILED" };
        write!(
            f,
            "check {}: value={} limit={} {verdict}",
            self.name, self.value, self.limit
        )
    }
}

/// The result object.
#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: &'static str,
    pub protocol: &'static str,
    pub label: Option<String>,
    pub started_unix_ms: u64,
    pub duration_s: f64,
    pub processes: usize,
    pub connections: Connections,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<Messages>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<Stat>,
    /// Send start − scheduled time (the tool's own lateness, part of `latency_us`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_lag_us: Option<Stat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fanout: Option<Fanout>,
    pub closes: BTreeMap<String, u64>,
    pub recovery_failed: u64,
    pub reconnects: u64,
    pub timeline: Vec<Point>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow: Option<SlowPartial>,
    pub checks: Vec<Check>,
}

fn add_map(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Merges the partials (one per process) into the result.
pub fn merge(info: &RunInfo, parts: &[Partial], common: &Common) -> Result<Report, String> {
    let mut handshake = new_hist();
    let mut latency = new_hist();
    let mut send_lag = new_hist();
    let mut failures = BTreeMap::new();
    let mut closes = BTreeMap::new();
    let mut m = Messages::default();
    let (mut attempted, mut established, mut failed) = (0, 0, 0);
    let (mut recovery_failed, mut reconnects) = (0, 0);
    let (mut setup0, mut setup1, mut send0, mut send1) = (u64::MAX, 0, u64::MAX, 0);
    let mut timeline: BTreeMap<u64, Point> = BTreeMap::new();
    let mut slow: Option<SlowPartial> = None;
    for p in parts {
        handshake
            .add(decode(&p.handshake)?)
            .map_err(|e| format!("{e:?}"))?;
        latency
            .add(decode(&p.latency)?)
            .map_err(|e| format!("{e:?}"))?;
        send_lag
            .add(decode(&p.send_lag)?)
            .map_err(|e| format!("{e:?}"))?;
        add_map(&mut failures, &p.failures);
        add_map(&mut closes, &p.closes);
        attempted += p.attempted;
        established += p.established;
        failed += p.failed;
        recovery_failed += p.recovery_failed;
        reconnects += p.reconnects;
        if p.setup_end_us > 0 {
            setup0 = setup0.min(p.setup_start_us);
            setup1 = setup1.max(p.setup_end_us);
        }
        if p.send_start_us > 0 {
            send0 = send0.min(p.send_start_us);
            send1 = send1.max(p.send_end_us);
        }
        m.scheduled += p.scheduled;
        m.sent += p.sent;
        m.acked += p.acked;
        m.send_failed += p.send_failed;
        m.resent += p.resent;
        m.unconfirmed += p.unconfirmed;
        m.delivered += p.delivered;
        m.lost += p.lost;
        m.duplicated += p.duplicated;
        m.out_of_order += p.out_of_order;
        for pt in &p.timeline {
            let e = timeline.entry(pt.unix_s).or_insert_with(|| Point {
                unix_s: pt.unix_s,
                ..Point::default()
            });
            e.connected += pt.connected;
            e.reconnects += pt.reconnects;
            e.closes += pt.closes;
            e.sent += pt.sent;
            e.delivered += pt.delivered;
        }
        if let Some(s) = &p.slow {
            let into = slow.get_or_insert_with(SlowPartial::default);
            into.connections += s.connections;
            add_map(&mut into.closes, &s.closes);
        }
    }
    let setup_s = setup1.saturating_sub(setup0) as f64 / 1e6;
    let fanout = merge_fanout(parts, &mut m);
    if let Some(rate) = info.rate_target {
        m.rate_target = rate;
        let send_s = send1.saturating_sub(send0) as f64 / 1e6;
        m.rate_achieved = if send_s > 0.0 {
            round2(m.sent as f64 / send_s)
        } else {
            0.0
        };
    }
    let expected = match &fanout {
        Some(f) => m.sent * f.subscribers,
        None => m.sent,
    };
    let messages = info.rate_target.map(|_| m);
    let mut report = Report {
        mode: info.mode,
        protocol: info.protocol,
        label: info.label.clone(),
        started_unix_ms: info.started_unix_ms,
        duration_s: round2(info.duration_s),
        processes: info.processes,
        connections: Connections {
            attempted,
            established,
            failed,
            failures,
            connect_per_s: if setup_s > 0.0 {
                round2(established as f64 / setup_s)
            } else {
                0.0
            },
            handshake_us: Stat::of(&handshake),
        },
        latency_us: messages.as_ref().map(|_| Stat::of(&latency)),
        send_lag_us: messages.as_ref().map(|_| Stat::of(&send_lag)),
        messages,
        fanout,
        closes,
        recovery_failed,
        reconnects,
        timeline: timeline.into_values().collect(),
        slow,
        checks: Vec::new(),
    };
    report.checks = checks(&report, common, expected);
    Ok(report)
}

/// Fan-out: per message counts summed and last-recipient times maxed over the processes;
/// `lost` = for every acked message, the subscribers that never got it.
fn merge_fanout(parts: &[Partial], m: &mut Messages) -> Option<Fanout> {
    let fs: Vec<&FanoutPartial> = parts.iter().filter_map(|p| p.fanout.as_ref()).collect();
    let n = fs.iter().map(|f| f.counts.len()).max()?;
    let subscribers: u64 = fs.iter().map(|f| f.subscribers).sum();
    let mut counts = vec![0u64; n];
    let mut last = vec![0u64; n];
    let mut acked = vec![false; n];
    for f in &fs {
        for (i, c) in f.counts.iter().enumerate() {
            counts[i] += u64::from(*c);
        }
        for (i, l) in f.last_us.iter().enumerate() {
            last[i] = last[i].max(*l);
        }
        if let Some(a) = &f.acked {
            for (i, x) in a.iter().enumerate() {
                acked[i] |= *x;
            }
        }
    }
    let mut hist = new_hist();
    let mut complete = 0;
    m.lost = 0;
    for i in 0..n {
        if acked[i] {
            m.lost += subscribers.saturating_sub(counts[i]);
        }
        if subscribers > 0 && counts[i] >= subscribers {
            complete += 1;
            hist.saturating_record(last[i].max(1));
        }
    }
    Some(Fanout {
        messages: n as u64,
        complete,
        subscribers,
        last_recipient_us: Stat::of(&hist),
    })
}

fn checks(r: &Report, c: &Common, expected: u64) -> Vec<Check> {
    let m = r.messages.as_ref();
    let get = |f: fn(&Messages) -> u64| m.map_or(0, f);
    let mut out = Vec::new();
    let mut max = |name, limit: Option<u64>, value: u64| {
        if let Some(limit) = limit {
            out.push(Check {
                name,
                limit: json!(limit),
                value: json!(value),
                ok: value <= limit,
            });
        }
    };
    max("max_lost", c.max_lost, get(|m| m.lost));
    max("max_duplicates", c.max_duplicates, get(|m| m.duplicated));
    max(
        "max_out_of_order",
        c.max_out_of_order,
        get(|m| m.out_of_order),
    );
    let abnormal = r.closes.get("1006").copied().unwrap_or(0);
    max("max_abnormal_closes", c.max_abnormal_closes, abnormal);
    max(
        "max_failed_connects",
        c.max_failed_connects,
        r.connections.failed,
    );
    if let Some(min) = c.min_delivered_ratio {
        let delivered = get(|m| m.delivered);
        let ratio = if expected > 0 {
            delivered as f64 / expected as f64
        } else {
            0.0
        };
        out.push(Check {
            name: "min_delivered_ratio",
            limit: json!(min),
            value: json!((ratio * 1e6).round() / 1e6),
            ok: ratio >= min,
        });
    }
    out
}

impl Report {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// The human summary (stdout).
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let c = &self.connections;
        let _ = writeln!(
            s,
            "{} {}{}: {} processes, {:.2} s",
            self.mode,
            self.protocol,
            self.label
                .as_deref()
                .map(|l| format!(" [{l}]"))
                .unwrap_or_default(),
            self.processes,
            self.duration_s
        );
        let _ = writeln!(
            s,
            "connections: attempted={} established={} failed={} connect_per_s={}{}",
            c.attempted,
            c.established,
            c.failed,
            c.connect_per_s,
            kv(&c.failures, " failures:")
        );
        let _ = writeln!(s, "handshake_us: {}", stat(&c.handshake_us));
        if let Some(m) = &self.messages {
            let _ = writeln!(
                s,
                "messages: scheduled={} sent={} acked={} send_failed={} resent={} \
                 unconfirmed={} delivered={} lost={} duplicated={} out_of_order={} \
                 rate={}/{} msg/s",
                m.scheduled,
                m.sent,
                m.acked,
                m.send_failed,
                m.resent,
                m.unconfirmed,
                m.delivered,
                m.lost,
                m.duplicated,
                m.out_of_order,
                m.rate_achieved,
                m.rate_target
            );
        }
        if let Some(l) = &self.latency_us {
            let _ = writeln!(s, "latency_us: {}", stat(l));
        }
        if let Some(l) = &self.send_lag_us {
            let _ = writeln!(s, "send_lag_us: {}", stat(l));
        }
        if let Some(f) = &self.fanout {
            let _ = writeln!(
                s,
                "fanout: messages={} complete={} subscribers={} last_recipient_us: {}",
                f.messages,
                f.complete,
                f.subscribers,
                stat(&f.last_recipient_us)
            );
        }
        let _ = writeln!(
            s,
            "closes:{} reconnects={} recovery_failed={}",
            if self.closes.is_empty() {
                " none".to_owned()
            } else {
                kv(&self.closes, "")
            },
            self.reconnects,
            self.recovery_failed
        );
        if let Some(sl) = &self.slow {
            let _ = writeln!(
                s,
                "slow: connections={}{}",
                sl.connections,
                kv(&sl.closes, " closes:")
            );
        }
        for ch in &self.checks {
            let _ = writeln!(s, "{ch}");
        }
        s
    }
}

fn kv(m: &BTreeMap<String, u64>, prefix: &str) -> String {
    if m.is_empty() {
        return String::new();
    }
    let items: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{prefix} {}", items.join(" "))
}

fn stat(s: &Stat) -> String {
    format!(
        "p50={} p90={} p99={} p999={} max={} mean={} count={}",
        s.p50, s.p90, s.p99, s.p999, s.max, s.mean, s.count
    )
}

#[cfg(test)]
mod tests;
