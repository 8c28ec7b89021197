//! A primary SIGKILLed under load: a Redis Cluster with AOF `appendfsync always` on every
//! node, three gateway nodes, users on every shard, publishers through the server API
//! and WebSocket clients at a steady rate. One primary is killed and its replica
//! promoted; the nodes must follow within `cluster-node-timeout` + 5 s, no acknowledged
//! message may be lost (each delivered once, in order, and in history), and resumes
//! afterwards recover — or say they cannot where writes were really lost, never a silent
//! gap.

use super::*;
use std::collections::{BTreeMap, HashMap};

use support::cluster::{Cluster, Store};

use crate::traffic::{Attempt, Ledger, Plan, Publishers, Recipient};
use crate::verify;

/// Users, spread evenly over the primaries.
const USERS: usize = 12;
/// Messages per second of each of the six publishers (3 API, 3 WebSocket).
const RATE: u32 = 60;
/// Traffic before the kill, and after every node is ready again.
const STEADY: Duration = Duration::from_secs(3);

/// Publishes to the killed shard after the kill: failures (and their reasons), the
/// window they span, and when publishes succeeded again.
struct Window {
    failures: usize,
    reasons: BTreeMap<String, usize>,
    first_failure: Option<Instant>,
    last_failure: Option<Instant>,
    ok_again: Option<Instant>,
}

fn window(attempts: &[Attempt], affected: &[String], killed: Instant) -> Window {
    let mine: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| affected.contains(&a.channel) && a.ended >= killed)
        .collect();
    let failed: Vec<&&Attempt> = mine.iter().filter(|a| a.result.is_err()).collect();
    let mut reasons = BTreeMap::new();
    for a in &failed {
        let why = a.result.clone().err().unwrap_or_default();
        *reasons
            .entry(format!("{} {why}", a.via.split('@').next().unwrap_or("")))
            .or_insert(0) += 1;
    }
    let last_failure = failed.iter().map(|a| a.started).max();
    let ok_again = mine
        .iter()
        .filter(|a| a.result.is_ok() && last_failure.is_none_or(|l| a.started > l))
        .map(|a| a.ended)
        .min();
    Window {
        failures: failed.len(),
        reasons,
        first_failure: failed.iter().map(|a| a.started).min(),
        last_failure,
        ok_again,
    }
}

/// The primary that serves the node leases (`<prefix>{nodes}`).
fn owners_of_nodes_key(c: &Cluster) -> u16 {
    c.redis_cluster()
        .primary_of_slot(switchboard_router::testsuite::redis_cluster::slot_of(
            "nodes",
        ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_under_load_loses_no_acknowledged_message() {
    let redis = own_cluster(3, 1, &["--appendonly", "yes", "--appendfsync", "always"]).await;
    let node_timeout = redis.node_timeout();
    let c = Cluster::start_with(Store::Cluster(redis.clone()), 3, &["--rate-limit", "0"]).await;
    wait_all_ready(&c.nodes, Duration::from_secs(20)).await;
    let channels = c.channels_on_every_shard(USERS, |i| format!("user:fo{i}"));
    let owners: HashMap<String, u16> = channels
        .iter()
        .map(|ch| (ch.clone(), c.primary_of(ch)))
        .collect();
    let mut per_primary: BTreeMap<u16, usize> = BTreeMap::new();
    for owner in owners.values() {
        *per_primary.entry(*owner).or_default() += 1;
    }
    assert_eq!(
        per_primary.keys().copied().collect::<Vec<_>>(),
        redis.primaries(),
        "the users' channels hit every primary: {per_primary:?}"
    );
    let mut recipients = Vec::new();
    for (i, ch) in channels.iter().enumerate() {
        let user = ch.strip_prefix("user:").expect("a user channel");
        recipients.push(Recipient::start(&c.nodes[i % 3], user, &[]).await);
    }

    let ledger = Ledger::default();
    let plan = Plan {
        channels: channels.clone(),
        rate: RATE,
    };
    let started = Instant::now();
    let publishers = Publishers::start(&c, &plan, &ledger).await;
    let readiness = Readiness::watch(&c.nodes);
    tokio::time::sleep(STEADY).await;

    let victim = owners[&channels[0]];
    let affected: Vec<String> = channels
        .iter()
        .filter(|ch| owners[*ch] == victim)
        .cloned()
        .collect();
    let leases_on_victim = owners_of_nodes_key(&c) == victim;
    let killed = Instant::now();
    blocking({
        let redis = redis.clone();
        move || redis.kill(victim)
    })
    .await;
    let promoted = blocking({
        let redis = redis.clone();
        move || redis.wait_failover(victim, Duration::from_secs(60))
    })
    .await;
    let promoted_at = Instant::now();
    println!(
        "measured: primary {victim} SIGKILLed; replica {promoted} promoted and the cluster \
         settled {:.2} s later (cluster-node-timeout {:?})",
        secs_since(killed, promoted_at),
        node_timeout
    );

    // The nodes must follow: every node ready, publishes to the killed shard succeed.
    let budget = node_timeout + Duration::from_secs(5);
    let within = budget + Duration::from_secs(20);
    poll(
        within,
        "publishes to the killed shard succeed again",
        || async {
            let w = window(&ledger.attempts(), &affected, killed);
            match (w.first_failure, w.ok_again) {
                (Some(_), Some(_)) => Ok(()),
                _ => Err(format!("{} failures so far", w.failures)),
            }
        },
    )
    .await;
    wait_all_ready(&c.nodes, within).await;
    let ready_again = Instant::now();
    let _ = promoted;
    tokio::time::sleep(STEADY).await;
    publishers.stop().await;
    let stopped = Instant::now();
    readiness.stop.cancel();

    // Everything acknowledged arrives (or its recipient was told to resync).
    let seen = verify::collect(recipients, &ledger.acked(), Duration::from_secs(30)).await;
    let attempts = ledger.attempts();
    let report = verify::deliveries(&attempts, &seen);
    let mut violations = report.violations.clone();
    violations.extend(verify::acked_in_history(&c.nodes[1], &channels, &attempts).await);

    // Resumes after the failover: from the last message seen (nothing to replay), and a
    // fresh one from the start of the epoch (the whole history, acknowledged included).
    verify::resumes(&c, &channels).await;

    let w = window(&attempts, &affected, killed);
    let (down, up) = readiness.outage_after(killed);
    let total = attempts.len();
    let ok = attempts.iter().filter(|a| a.result.is_ok()).count();
    let secs = secs_since(started, stopped);
    println!(
        "measured: {total} publishes in {secs:.1} s ({:.0}/s), {ok} acknowledged; {} to the \
         killed shard failed, from +{:.2} s to +{:.2} s after SIGKILL: {:?}",
        total as f64 / secs,
        w.failures,
        w.first_failure.map_or(f64::NAN, |t| secs_since(killed, t)),
        w.last_failure.map_or(f64::NAN, |t| secs_since(killed, t)),
        w.reasons
    );
    let ok_again = w.ok_again.expect("publishes succeeded again");
    println!(
        "measured: publishes to the killed shard succeed again {:.2} s after SIGKILL \
         ({:.2} s after the promotion settled)",
        secs_since(killed, ok_again),
        ok_again
            .saturating_duration_since(promoted_at)
            .as_secs_f64()
    );
    println!(
        "measured: /readyz not 200 on some node from +{:.2} s, 200 on every node again \
         {:.2} s after SIGKILL",
        down.map_or(f64::NAN, |t| secs_since(killed, t)),
        up.map_or(f64::NAN, |t| secs_since(killed, t)),
    );
    // The victim serves `{nodes}` (the leases) too: heartbeats fail while it is down,
    // and a node whose heartbeat goes through first may reap the others (see leases.rs).
    let reaped = c.synthetic_disconnects();
    println!(
        "measured: the node leases ({{nodes}}) on the killed primary: {leases_on_victim}; \
         synthetic disconnects (live nodes reaped) {}: {reaped:?}",
        reaped.len()
    );
    println!("measured: {}", report.summary());
    for e in &report.events {
        println!("  {e}");
    }
    for node in &c.nodes {
        let reconnects = node
            .metric_value("switchboard_backplane_reconnects_total")
            .await;
        let unreplicated = node
            .metric_value("switchboard_backplane_unreplicated_total")
            .await;
        println!(
            "measured: {} backplane reconnects {reconnects:?}, unreplicated publishes {unreplicated:?}",
            node.node_id
        );
    }

    assert!(
        violations.is_empty(),
        "{} violations:\n{}",
        violations.len(),
        violations.join("\n")
    );
    // Redis needs about the node timeout to promote the replica; the nodes then have
    // the rest of the budget to follow it.
    let followed = ok_again.max(up.unwrap_or(ready_again));
    assert!(
        followed.saturating_duration_since(promoted_at) <= budget,
        "the nodes followed the failover {:.2} s after SIGKILL, {:.2} s after the promotion \
         settled (budget {budget:?})",
        secs_since(killed, followed),
        followed
            .saturating_duration_since(promoted_at)
            .as_secs_f64()
    );
}
