//! Volume: 10,000 server-API publishes round-robin over three nodes to 200 users; nothing
//! lost, nothing duplicated.

use super::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::time::Instant;

use crate::support::cluster::{next_before, Cluster, Next};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_publishes_round_robin_lose_and_duplicate_nothing() {
    const USERS: usize = 200;
    const TOTAL: usize = 10_000;
    const PER_USER: u64 = (TOTAL / USERS) as u64;
    const PUBLISHERS: usize = 12;
    let c = Cluster::start(3, &[]).await;

    // 200 users spread over the 3 nodes.
    let clients = futures_util::future::join_all((0..USERS).map(|u| {
        let node = &c.nodes[u % 3];
        async move {
            let (client, welcome) = node.connect(&format!("vol{u}")).await;
            let (epoch, top) = position(&welcome);
            assert_eq!(top, 0, "{welcome}");
            (client, epoch)
        }
    }))
    .await;
    let epochs: Vec<String> = clients.iter().map(|(_, e)| e.clone()).collect();

    // Receivers: each user reads its 50 messages, then watches for extras.
    let published_all = Arc::new(AtomicBool::new(false));
    let mut receivers = Vec::new();
    for (u, (mut client, epoch)) in clients.into_iter().enumerate() {
        let published_all = published_all.clone();
        receivers.push(tokio::spawn(async move {
            let who = format!("vol{u}");
            let channel = format!("user:{who}");
            let deadline = Instant::now() + Duration::from_secs(40);
            let mut got: Vec<(u64, u64)> = Vec::new();
            while (got.len() as u64) < PER_USER {
                match next_before(&mut client, deadline, &who).await {
                    Next::Frame(m) => {
                        assert_eq!(m["type"], "message", "{who}: {m}");
                        assert_eq!(m["channel"], channel.as_str(), "{who}: {m}");
                        let (e, offset) = position(&m);
                        assert_eq!(e, epoch, "{who}: epoch changed: {m}");
                        got.push((offset, m["data"]["i"].as_u64().expect("data.i")));
                    }
                    other => panic!(
                        "{who}: {other:?} after {} of {PER_USER} messages",
                        got.len()
                    ),
                }
            }
            let got_all = Instant::now();
            // Duplicates would arrive after the last one; wait until every publish
            // was answered, then a grace period.
            while !published_all.load(Ordering::SeqCst) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            match next_before(&mut client, Instant::now() + QUIET, &who).await {
                Next::Deadline => {}
                other => panic!("{who}: more than {PER_USER} messages: {other:?}"),
            }
            (got, got_all)
        }));
    }

    // Publishers: message i goes through node i % 3 to user i % 200.
    let started = Instant::now();
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let apis: Vec<_> = c.nodes.iter().map(Node::api_client).collect();
        publishers.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for i in (p..TOTAL).step_by(PUBLISHERS) {
                let user = i % USERS;
                let answer = apis[i % 3]
                    .publish(&format!("user:vol{user}"), json!({"i": i}))
                    .await;
                assert_eq!(
                    (&answer["online"], &answer["nodes"]),
                    (&json!(true), &json!(1)),
                    "message {i} to vol{user}: {answer}"
                );
                answers.push((user, position(&answer), i as u64));
            }
            answers
        }));
    }
    let mut answered: Vec<BTreeMap<u64, u64>> = vec![BTreeMap::new(); USERS];
    for p in publishers {
        for (user, (epoch, offset), i) in join_task(p).await {
            assert_eq!(epoch, epochs[user], "vol{user}: epoch of message {i}");
            let dup = answered[user].insert(offset, i);
            assert!(dup.is_none(), "vol{user}: offset {offset} assigned twice");
        }
    }
    let publish_time = started.elapsed();
    published_all.store(true, Ordering::SeqCst);

    let mut last_delivery = started;
    let mut delivered = 0usize;
    for (u, r) in receivers.into_iter().enumerate() {
        let (got, done) = join_task(r).await;
        last_delivery = last_delivery.max(done);
        let offsets: Vec<u64> = got.iter().map(|(o, _)| *o).collect();
        assert_eq!(
            offsets,
            (1..=PER_USER).collect::<Vec<_>>(),
            "vol{u}: offsets must be 1..={PER_USER} in order"
        );
        let want: BTreeMap<u64, u64> = got.iter().copied().collect();
        assert_eq!(want, answered[u], "vol{u}: offset → message");
        let expected: BTreeSet<u64> = (u..TOTAL).step_by(USERS).map(|i| i as u64).collect();
        let seen: BTreeSet<u64> = got.iter().map(|(_, i)| *i).collect();
        assert_eq!(seen, expected, "vol{u}: exactly its messages");
        delivered += got.len();
    }
    assert_eq!(delivered, TOTAL);
    let secs = publish_time.as_secs_f64();
    println!(
        "volume: {TOTAL} publishes over 3 nodes to {USERS} users with {PUBLISHERS} \
         concurrent publishers in {:.2} s ({:.0}/s); all delivered within {:.2} s; \
         0 lost, 0 duplicated",
        secs,
        TOTAL as f64 / secs,
        (last_delivery - started).as_secs_f64(),
    );
}
