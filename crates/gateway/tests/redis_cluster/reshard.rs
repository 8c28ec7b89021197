//! Slots moving under the nodes: `redis-cli --cluster reshard` moves the slots of users
//! and a room with history from one primary to another while publishers keep going —
//! nothing lost or duplicated, per-channel order kept, and the nodes' shard
//! subscriptions follow (messages published after the move reach the moved channels'
//! recipients) — and, deterministically, one user's slot moved step by step
//! (`migrate_slot`) between two publishes.

use super::*;
use std::collections::{BTreeSet, HashMap};

use serde_json::json;
use support::cluster::{Cluster, Store};
use support::metrics::samples;
use switchboard_router::testsuite::redis_cluster::slot_of;

use crate::traffic::{Ledger, Plan, Publishers, Recipient};
use crate::verify;

/// Slots `redis-cli --cluster reshard` moves: the source's lowest ones.
const MOVED_SLOTS: usize = 200;
/// Messages per second of each of the six publishers (3 API, 3 WebSocket).
const RATE: u32 = 40;
/// Traffic before the reshard starts and after it ended.
const STEADY: Duration = Duration::from_secs(3);
const HISTORY: &str = "room:*=1000/3600";

/// `n` channels `make(i)` whose slots are in `slots`.
fn channels_in(slots: &BTreeSet<u16>, n: usize, make: impl Fn(usize) -> String) -> Vec<String> {
    (0..)
        .map(make)
        .filter(|ch| slots.contains(&slot_of(ch)))
        .take(n)
        .collect()
}

/// This node's shard subscriptions, by primary port (from `/metrics`).
async fn subscriptions(node: &support::Node) -> HashMap<u16, u64> {
    let text = node.metrics_text().await;
    let count_of_shard: HashMap<String, u64> =
        samples(&text, "switchboard_backplane_shard_subscriptions")
            .into_iter()
            .filter_map(|(labels, value)| Some((labels.get("shard")?.clone(), value as u64)))
            .collect();
    samples(&text, "switchboard_backplane_shard_info")
        .into_iter()
        .filter(|(_, value)| *value == 1.0)
        .filter_map(|(labels, _)| {
            let port = labels.get("primary")?.rsplit(':').next()?.parse().ok()?;
            let count = count_of_shard.get(labels.get("shard")?).copied();
            Some((port, count.unwrap_or(0)))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_while_publishing_loses_duplicates_and_reorders_nothing() {
    let redis = own_cluster(3, 1, &[]).await;
    let extra = ["--rate-limit", "0", "--history", HISTORY];
    let c = Cluster::start_with(Store::Cluster(redis.clone()), 3, &extra).await;
    wait_all_ready(&c.nodes, Duration::from_secs(20)).await;

    // What moves: the lowest slots of the first primary, to the second.
    let primaries = redis.primaries();
    let (from, to) = (primaries[0], primaries[1]);
    let moving: BTreeSet<u16> = redis
        .slots_of(from)
        .iter()
        .flat_map(|&(a, b)| a..=b)
        .take(MOVED_SLOTS)
        .collect();
    let mut users = channels_in(&moving, 3, |i| format!("user:mv{i}"));
    let mut rooms = channels_in(&moving, 1, |i| format!("room:mv{i}"));
    let moved: Vec<String> = users.iter().chain(&rooms).cloned().collect();
    users.extend(c.channels_on_every_shard(3, |i| format!("user:st{i}")));
    rooms.extend(c.channels_on_every_shard(1, |i| format!("room:st{i}")));
    for ch in &moved {
        assert_eq!(c.primary_of(ch), from, "{ch} starts on {from}");
    }

    let mut recipients = Vec::new();
    for (i, ch) in users.iter().enumerate() {
        let user = ch.strip_prefix("user:").unwrap();
        recipients.push(Recipient::start(&c.nodes[i % 3], user, &rooms).await);
    }
    let ledger = Ledger::default();
    let plan = Plan {
        channels: users.iter().chain(&rooms).cloned().collect(),
        rate: RATE,
    };
    let started = Instant::now();
    let publishers = Publishers::start(&c, &plan, &ledger).await;
    tokio::time::sleep(STEADY).await;
    let before: Vec<HashMap<u16, u64>> = {
        let mut v = Vec::new();
        for node in &c.nodes {
            v.push(subscriptions(node).await);
        }
        v
    };

    let mut reconnects_before = Vec::new();
    for node in &c.nodes {
        reconnects_before.push(reconnects(node).await);
    }
    let readiness = Readiness::watch(&c.nodes);
    let reshard_started = Instant::now();
    blocking({
        let redis = redis.clone();
        move || {
            redis
                .reshard(from, to, MOVED_SLOTS)
                .wait(Duration::from_secs(180))
        }
    })
    .await;
    let reshard_done = Instant::now();
    for ch in &moved {
        assert_eq!(c.primary_of(ch), to, "{ch} moved to {to}");
    }
    tokio::time::sleep(STEADY).await;
    publishers.stop().await;
    let stopped = Instant::now();
    readiness.stop.cancel();
    let mut after = Vec::new();
    let mut reconnects_after = Vec::new();
    for node in &c.nodes {
        after.push(subscriptions(node).await);
        reconnects_after.push(reconnects(node).await);
    }

    let attempts = ledger.attempts();
    let seen = verify::collect(recipients, &ledger.acked(), Duration::from_secs(30)).await;
    let report = verify::deliveries(&attempts, &seen);
    let mut violations = report.violations.clone();
    let all: Vec<String> = plan.channels.clone();
    violations.extend(verify::acked_in_history(&c.nodes[2], &all, &attempts).await);
    verify::resumes(&c, &users).await;

    // The subscriptions followed: after the move, every moved channel got messages that
    // were acknowledged (and, by the checks above, delivered to every recipient).
    for ch in &moved {
        let after = attempts
            .iter()
            .filter(|a| &a.channel == ch && a.started > reshard_done && a.result.is_ok())
            .count();
        assert!(
            after > 0,
            "no acknowledged publish to {ch} after the reshard"
        );
    }
    let during: Vec<_> = attempts
        .iter()
        .filter(|a| a.started >= reshard_started && a.started <= reshard_done)
        .collect();
    let failed: Vec<String> = during
        .iter()
        .filter_map(|a| {
            a.result
                .clone()
                .err()
                .map(|e| format!("{} {}: {e}", a.via, a.channel))
        })
        .collect();
    let secs = secs_since(started, stopped);
    println!(
        "measured: reshard of {MOVED_SLOTS} slots ({} of our channels) from {from} to {to} took \
         {:.2} s; {} publishes during it, {} failed {failed:?}",
        moved.len(),
        secs_since(reshard_started, reshard_done),
        during.len(),
        failed.len()
    );
    println!(
        "measured: {} publishes in {secs:.1} s ({:.0}/s); {}",
        attempts.len(),
        attempts.len() as f64 / secs,
        report.summary()
    );
    for e in &report.events {
        println!("  {e}");
    }
    for (i, node) in c.nodes.iter().enumerate() {
        println!(
            "measured: {} shard subscriptions by primary before {:?}, after {:?}",
            node.node_id, before[i], after[i]
        );
    }
    let (down, up) = readiness.outage_after(reshard_started);
    println!(
        "measured: (backplane down/up, shard reconnects) per node {reconnects_before:?} -> \
         {reconnects_after:?}; some node not ready from {:?} s to {:?} s after the reshard \
         started",
        down.map(|t| secs_since(reshard_started, t)),
        up.map(|t| secs_since(reshard_started, t))
    );
    assert!(
        violations.is_empty(),
        "{} violations:\n{}",
        violations.len(),
        violations.join("\n")
    );
    // The probe channels stay put (they live in each shard's highest slot) and moved
    // channels are subscribed again where they went: no subscriber is reconnected. (A
    // node may still count as not ready for a moment while one of its channels is being
    // subscribed on its new owner: "subscribed" is what readiness means.)
    let shard_reconnects = |v: &[(u64, u64)]| v.iter().map(|r| r.1).collect::<Vec<_>>();
    assert_eq!(
        shard_reconnects(&reconnects_after),
        shard_reconnects(&reconnects_before),
        "the reshard reconnected a subscriber"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_slot_migrated_step_by_step_keeps_delivering() {
    let redis = own_cluster(3, 1, &[]).await;
    let c = Cluster::start_with(Store::Cluster(redis.clone()), 3, &[]).await;
    let channel = "user:migrant";
    let from = c.primary_of(channel);
    let to = *redis
        .primaries()
        .iter()
        .find(|&&p| p != from)
        .expect("another primary");
    let (mut client, welcome) = c.nodes[0].connect("migrant").await;
    let (epoch, _) = support::position(&welcome);
    let subscribed_on = |want: u16| {
        let node = &c.nodes[0];
        async move {
            let subs = subscriptions(node).await;
            match subs.get(&want) {
                Some(1) => Ok(()),
                _ => Err(format!("{subs:?}")),
            }
        }
    };
    poll(
        Duration::from_secs(10),
        "subscribed on the first owner",
        || subscribed_on(from),
    )
    .await;

    let api = c.nodes[1].api_client();
    for n in 1..=10u64 {
        let a = api.publish(channel, json!({"n": n})).await;
        assert_eq!(support::position(&a), (epoch.clone(), n), "{a}");
    }
    let moved_at = Instant::now();
    blocking({
        let redis = redis.clone();
        move || redis.migrate_slot(slot_of(channel), to)
    })
    .await;
    let migrated = moved_at.elapsed();
    let (_, took) = poll(
        Duration::from_secs(15),
        "the subscription followed the slot",
        || subscribed_on(to),
    )
    .await;
    println!(
        "measured: slot {} of {channel} migrated from {from} to {to} in {:.2} s; node 1's \
         subscription followed {:.2} s after",
        slot_of(channel),
        migrated.as_secs_f64(),
        took.as_secs_f64()
    );
    let api = c.nodes[2].api_client();
    for n in 11..=20u64 {
        let a = api.publish(channel, json!({"n": n})).await;
        assert_eq!(support::position(&a), (epoch.clone(), n), "{a}");
        assert_eq!(
            (&a["online"], &a["nodes"]),
            (&json!(true), &json!(1)),
            "{a}"
        );
    }
    for n in 1..=20u64 {
        let m = client.recv().await;
        assert_eq!(m["type"], "message", "{m}");
        assert_eq!(support::position(&m), (epoch.clone(), n), "{m}");
        assert_eq!(m["data"], json!({"n": n}), "{m}");
    }
    client.expect_silence(Duration::from_millis(300)).await;
    let (e, kept) = verify::history(&c.nodes[2], channel).await;
    assert_eq!((e, kept.len()), (epoch, 20));
}
