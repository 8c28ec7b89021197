//! A failover that really loses writes: the replica is cut off (its primary suddenly
//! wants a password it does not have, and drops its replication link), so a message the
//! primary stores, delivers live and acknowledges — after `WAIT` gave up (counted in
//! `switchboard_backplane_unreplicated_total`), or at once when the slot map already shows
//! no replica online: semi-synchronous either way — never reaches it; then the primary is
//! SIGKILLed and the stale replica promoted. The promoted history lacks that
//! message, and the next message takes its offset. Live connections that had it must be
//! told (`goaway resync`, a resume answered `recovered:false`) — never left with a silent
//! gap or a message dropped as a "duplicate" of the lost one.

use super::*;

use support::cluster::{Cluster, Store};
use switchboard_router::testsuite::redis_cluster::RespConn;

use crate::traffic::{Ledger, Recipient};
use crate::verify;

// The message after the failover reuses the lost message's (epoch, offset): a node whose
// connection had the lost one sees another message at that offset (live, or in the
// repair read from its last offset), starts a new epoch and tells the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_lost_in_a_failover_are_told_never_silent() {
    let redis = own_cluster(3, 1, &[]).await;
    let c = Cluster::start_with(Store::Cluster(redis.clone()), 3, &[]).await;
    wait_all_ready(&c.nodes, Duration::from_secs(20)).await;
    let channel = "user:lw";
    let primary = c.primary_of(channel);
    let replica = redis.replicas_of(primary)[0];
    // The user on two nodes; publishes through the third.
    let recipients = vec![
        Recipient::start(&c.nodes[0], "lw", &[]).await,
        Recipient::start(&c.nodes[1], "lw", &[]).await,
    ];
    let ledger = Ledger::default();
    let api = c.nodes[2].api_client();
    for n in 1..=3 {
        let at = ledger
            .publish(&api, "api", channel, &format!("before-{n}"))
            .await;
        assert_eq!(at.map(|p| p.1), Some(n), "publish {n} before the fault");
    }

    // The replica is cut off; the next message is stored on the primary only. (One
    // connection: it stays authenticated after the password is set.)
    let cut = blocking({
        let redis = redis.clone();
        move || {
            let mut conn = RespConn::connect(primary).expect("connect to the primary");
            let set = conn.cmd(&["CONFIG", "SET", "requirepass", "cut-off"]);
            let kill = conn.cmd(&["CLIENT", "KILL", "TYPE", "replica"]);
            let link = (0..200)
                .map(|_| {
                    std::thread::sleep(Duration::from_millis(50));
                    redis.cmd(replica, &["INFO", "replication"]).text()
                })
                .find(|info| info.contains("master_link_status:down"));
            (set, kill, link.is_some())
        }
    })
    .await;
    assert!(cut.0.as_ref().is_ok_and(|r| r.is_ok()), "{cut:?}");
    assert!(cut.2, "the replica's link stayed up: {cut:?}");
    let lost = ledger.publish(&api, "api", channel, "unreplicated").await;
    assert_eq!(
        lost.as_ref().map(|p| p.1),
        Some(4),
        "acknowledged unreplicated"
    );
    let unreplicated = c.nodes[2]
        .metric_value("switchboard_backplane_unreplicated_total")
        .await;
    for r in &recipients {
        let got = poll(
            Duration::from_secs(10),
            "the unreplicated message delivered",
            || async {
                if r.keys(channel).contains(&"unreplicated".to_owned()) {
                    Ok(())
                } else {
                    Err(format!("{:?}", r.keys(channel)))
                }
            },
        );
        got.await;
    }
    let killed = Instant::now();
    blocking({
        let redis = redis.clone();
        move || redis.kill(primary)
    })
    .await;
    let promoted = blocking({
        let redis = redis.clone();
        move || redis.wait_failover(primary, Duration::from_secs(60))
    })
    .await;
    assert_eq!(promoted, replica, "the stale replica took over");
    println!(
        "measured: replica {replica} (cut off) promoted {:.2} s after \
         primary {primary} was killed; unreplicated publishes on the publishing node: \
         {unreplicated:?}",
        secs_since(killed, Instant::now())
    );

    // The next message, as soon as the shard takes writes again: it gets offset 4 again.
    let mut after = None;
    for attempt in 0..200 {
        after = ledger
            .publish(&api, "api", channel, &format!("after-{attempt}"))
            .await;
        if after.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = after.expect("publishes succeed after the failover");
    println!("measured: the first message after the failover was acknowledged at {after:?}");

    let seen = verify::collect(recipients, &ledger.acked(), Duration::from_secs(10)).await;
    let report = verify::deliveries(&ledger.attempts(), &seen);
    println!("measured: {}", report.summary());
    for e in &report.events {
        println!("  {e}");
    }
    let (epoch, kept) = verify::history(&c.nodes[0], channel).await;
    println!("measured: history after the failover: {epoch} {kept:?}");
    assert!(
        report.violations.is_empty(),
        "{} violations:\n{}",
        report.violations.len(),
        report.violations.join("\n")
    );
    assert!(
        !kept.values().any(|k| k == "unreplicated"),
        "the cut-off replica cannot have the unreplicated message: {kept:?}"
    );
    assert!(report.told >= 2, "both connections were told: {report:?}");
}
