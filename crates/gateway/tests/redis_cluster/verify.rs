//! What the ledger and the recipients must agree on after a fault: every acknowledged
//! message delivered exactly once to every live recipient of its channel, at the
//! position it was acknowledged with, in offset order; offsets contiguous within an
//! epoch unless the recipient was told (a `resync`, a `goaway resync`, a resume answered
//! `recovered:false`); and every acknowledged message in history.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

use std::time::Duration;

use super::traffic::{Attempt, Recipient, Seen};
use crate::support::cluster::Cluster;
use crate::support::{connect_since, position, Node};

/// Waits (up to `within`) until every recipient got every acknowledged message of its
/// channels, then stops them and returns what each saw: (user, its channels, its
/// record).
pub async fn collect(
    recipients: Vec<Recipient>,
    acked: &[Attempt],
    within: Duration,
) -> Vec<(String, Vec<String>, Vec<Seen>)> {
    let missing = || {
        let mut n = 0;
        for r in &recipients {
            for ch in r.channels() {
                let got: HashSet<String> = r.keys(&ch).into_iter().collect();
                n += acked
                    .iter()
                    .filter(|a| a.channel == ch && !got.contains(&a.key))
                    .count();
            }
        }
        n
    };
    // A recipient told to resync may never get some: the check reports those.
    let _ = tokio::time::timeout(within, async {
        while missing() > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let mut out = Vec::new();
    for r in recipients {
        let channels = r.channels();
        let (user, seen) = r.stop().await;
        out.push((user, channels, seen));
    }
    out
}

/// For every user channel: a resume from its top recovers with nothing to replay, and a
/// fresh one from the start of its epoch replays its whole history. Spread over the
/// nodes.
pub async fn resumes(c: &Cluster, user_channels: &[String]) {
    for (i, ch) in user_channels.iter().enumerate() {
        let user = ch.strip_prefix("user:").expect("a user channel");
        let (epoch, kept) = history(&c.nodes[(i + 1) % c.nodes.len()], ch).await;
        let top = kept.keys().last().copied().unwrap_or(0);
        fresh_resume(&c.nodes[(i + 2) % c.nodes.len()], user, (&epoch, top), &[]).await;
        let all: Vec<String> = kept.values().cloned().collect();
        fresh_resume(&c.nodes[i % c.nodes.len()], user, (&epoch, 0), &all).await;
    }
}

/// The outcome of [`deliveries`].
#[derive(Debug, Default)]
pub struct Report {
    pub violations: Vec<String>,
    /// Acknowledged messages × their recipients.
    pub expected: usize,
    pub delivered: usize,
    /// Messages delivered whose publish was not acknowledged (a 503 after Redis had
    /// stored it): allowed, the publisher would retry.
    pub unacked_delivered: usize,
    /// Acknowledged messages a recipient missed after it was told to resync.
    pub skipped_after_told: usize,
    pub told: usize,
    /// Server-initiated reconnects, and how many of them recovered.
    pub resumes: usize,
    pub recovered: usize,
    /// What the recipients were told and how their connections were closed, in order.
    pub events: Vec<String>,
}

impl Report {
    pub fn summary(&self) -> String {
        format!(
            "{} of {} deliveries of acknowledged messages, {} unacknowledged delivered, \
             {} told to resync ({} acknowledged missed after it), {} resumes ({} recovered), \
             {} violations",
            self.delivered,
            self.expected,
            self.unacked_delivered,
            self.told,
            self.skipped_after_told,
            self.resumes,
            self.recovered,
            self.violations.len()
        )
    }
}

/// Checks every recipient's record against the ledger. `recipients`: (user, the
/// channels it follows, what it saw).
pub fn deliveries(attempts: &[Attempt], recipients: &[(String, Vec<String>, Vec<Seen>)]) -> Report {
    let mut r = Report::default();
    let by_key: HashMap<&str, &Attempt> = attempts.iter().map(|a| (a.key.as_str(), a)).collect();
    for (user, channels, seen) in recipients {
        let mut found: Vec<String> = Vec::new();
        let mut bad = |what: String| found.push(format!("{user}: {what}"));
        // channel → (epoch, offset) last seen, and whether it was told since.
        let mut at: HashMap<&str, (String, u64)> = HashMap::new();
        let mut told: HashSet<&str> = HashSet::new();
        let mut ever_told: HashSet<&str> = HashSet::new();
        let mut got: HashMap<&str, (String, u64, usize)> = HashMap::new();
        for s in seen {
            match s {
                Seen::Start {
                    channel,
                    epoch,
                    offset,
                } => {
                    at.insert(channel, (epoch.clone(), *offset));
                }
                Seen::Told { channel, what } => {
                    r.told += 1;
                    r.events.push(format!("{user}: told ({channel:?}): {what}"));
                    for ch in channels {
                        if channel.as_deref().is_none_or(|c| c == ch) {
                            told.insert(ch);
                            ever_told.insert(ch);
                        }
                    }
                }
                Seen::Resumed { code, recovered } => {
                    r.events.push(format!(
                        "{user}: closed {code}, resumed recovered:{recovered}"
                    ));
                    r.resumes += 1;
                    r.recovered += usize::from(*recovered);
                }
                Seen::Message {
                    channel,
                    epoch,
                    offset,
                    key,
                    conn,
                } => {
                    let ch = channel.as_str();
                    if let Some((e, o)) = at.get(ch) {
                        // Once told, the client reloads the channel: any position goes.
                        let contiguous = e == epoch && *offset == o + 1;
                        if told.contains(ch) {
                        } else if e == epoch && offset <= o {
                            bad(format!(
                                "{ch}: {epoch}:{offset} after {e}:{o}, without being told \
                                 (conn {conn})"
                            ));
                        } else if !contiguous {
                            bad(format!(
                                "{ch}: silent gap, {epoch}:{offset} after {e}:{o} (conn {conn})"
                            ));
                        }
                    }
                    told.remove(ch);
                    at.insert(ch, (epoch.clone(), *offset));
                    match by_key.get(key.as_str()) {
                        None => bad(format!("{ch}: a message nobody published: {key}")),
                        Some(a) if a.channel != *channel => {
                            bad(format!("{key} published to {} arrived on {ch}", a.channel))
                        }
                        Some(a) => match &a.result {
                            Ok((ae, ao)) if (ae, ao) != (epoch, offset) => bad(format!(
                                "{key} acknowledged at {ae}:{ao}, delivered at {epoch}:{offset}"
                            )),
                            Ok(_) => {}
                            Err(_) => r.unacked_delivered += 1,
                        },
                    }
                    if got.insert(key, (epoch.clone(), *offset, *conn)).is_some() {
                        bad(format!("{ch}: {key} delivered twice ({epoch}:{offset})"));
                    }
                }
            }
        }
        for a in attempts.iter().filter(|a| a.result.is_ok()) {
            if !channels.contains(&a.channel) {
                continue;
            }
            r.expected += 1;
            if got.contains_key(a.key.as_str()) {
                r.delivered += 1;
            } else if ever_told.contains(a.channel.as_str()) {
                r.skipped_after_told += 1;
            } else {
                let (e, o) = a.result.clone().unwrap_or_default();
                bad(format!(
                    "{}: acknowledged {} ({e}:{o}, {}) never delivered",
                    a.channel, a.key, a.via
                ));
            }
        }
        r.violations.extend(found);
    }
    r
}

/// `GET /v1/history/{channel}`: (epoch, offset → key), with its own sanity checked.
pub async fn history(node: &Node, channel: &str) -> (String, BTreeMap<u64, String>) {
    let (status, body) = node
        .api("GET", &format!("/v1/history/{channel}?limit=10000"), None)
        .await;
    assert_eq!(status, 200, "history of {channel}: {body}");
    let (epoch, top) = position(&body);
    let messages = body["messages"].as_array().expect("messages");
    let mut out = BTreeMap::new();
    for m in messages {
        let (e, o) = position(m);
        assert_eq!(e, epoch, "history of {channel}: {m}");
        let key = m["data"]["k"].as_str().unwrap_or("?").to_owned();
        assert!(out.insert(o, key).is_none(), "{channel}: offset {o} twice");
    }
    if let (Some((&first, _)), Some((&last, _))) = (out.first_key_value(), out.last_key_value()) {
        assert_eq!(last, top, "history of {channel} ends at its top");
        assert_eq!(
            out.len() as u64,
            last - first + 1,
            "history of {channel} has no holes"
        );
    }
    (epoch, out)
}

/// Every acknowledged message of `channels` is in history at its position.
pub async fn acked_in_history(
    node: &Node,
    channels: &[String],
    attempts: &[Attempt],
) -> Vec<String> {
    let mut violations = Vec::new();
    for channel in channels {
        let (epoch, kept) = history(node, channel).await;
        for a in attempts.iter().filter(|a| &a.channel == channel) {
            let Ok((e, o)) = &a.result else { continue };
            if *e != epoch {
                violations.push(format!(
                    "{channel}: acknowledged {} in epoch {e}, history is epoch {epoch}",
                    a.key
                ));
            } else if kept.get(o) != Some(&a.key) {
                violations.push(format!(
                    "{channel}: acknowledged {} at {o}, history has {:?} there",
                    a.key,
                    kept.get(o)
                ));
            }
        }
    }
    violations
}

/// A fresh resume of `user` from `since` must recover and replay exactly `expected`
/// (keys, in order).
pub async fn fresh_resume(node: &Node, user: &str, since: (&str, u64), expected: &[String]) {
    let (mut client, welcome) = connect_since(node, user, Some(since)).await;
    assert_eq!(
        welcome["recovered"], true,
        "{user} resuming from {since:?}: {welcome}"
    );
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let m: Value = client.recv().await;
        assert_eq!(m["type"], "message", "{user}: {m}");
        got.push(m["data"]["k"].as_str().unwrap_or("?").to_owned());
    }
    assert_eq!(got, expected, "{user}: the replay from {since:?}");
    client.close().await;
}
