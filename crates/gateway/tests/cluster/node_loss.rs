//! A node dies: a SIGKILLed node's users go offline (synthetic disconnects, presence leaves)
//! and recover elsewhere; a node restarted under the same id drops its previous connections.

use super::*;
use std::collections::BTreeSet;

use tokio::time::Instant;

use crate::support::cluster::{Cluster, Redis};
use crate::support::on_both_redis;

on_both_redis!(a_sigkilled_nodes_users_go_offline_and_recover_elsewhere);
async fn a_sigkilled_nodes_users_go_offline_and_recover_elsewhere(redis: Redis) {
    const LEASE: Duration = Duration::from_secs(2);
    let mut c = Cluster::start_on(redis, 3, &["--lease-seconds", "2"]).await;
    let room = "room:crash";
    let (mut w0, _) = c.nodes[0].connect("kw0").await;
    subscribe(&mut w0, "kw0", 1, room).await;
    expect_frame(&mut w0, "kw0", presence_frame(room, "kw0", "join")).await;
    let (mut w1, _) = c.nodes[1].connect("kw1").await;
    subscribe(&mut w1, "kw1", 1, room).await;
    for (who, w) in [("kw1", &mut w1), ("kw0", &mut w0)] {
        expect_frame(w, who, presence_frame(room, "kw1", "join")).await;
    }
    // The victims live on node 3.
    let victims = ["kv0", "kv1"];
    let mut conns = Vec::new();
    let mut epochs = Vec::new();
    // Kept open until the node dies under them.
    let mut doomed = Vec::new();
    for v in victims {
        let (mut client, welcome) = c.nodes[2].connect(v).await;
        epochs.push(position(&welcome).0);
        conns.push(welcome["conn_id"].as_str().unwrap().to_owned());
        subscribe(&mut client, v, 1, room).await;
        for (who, w) in [("kw0", &mut w0), ("kw1", &mut w1)] {
            expect_frame(w, who, presence_frame(room, v, "join")).await;
        }
        doomed.push(client);
    }
    wait_presence(&c.nodes[0], room, &["kv0", "kv1", "kw0", "kw1"], 4).await;

    // Two messages each while alive (delivered; the victims resume after them).
    let api = c.nodes[0].api_client();
    for (i, v) in victims.iter().enumerate() {
        for n in 1..=2u64 {
            let a = api.publish(&format!("user:{v}"), json!({"n": n})).await;
            assert_eq!(position(&a), (epochs[i].clone(), n), "{a}");
        }
    }

    let dead = c.nodes[2].node_id.clone();
    c.kill(2).await;
    let killed = Instant::now();
    // Messages while the dead node still holds its lease, and after it was reaped.
    let api1 = c.nodes[1].api_client();
    for v in victims {
        api1.publish(&format!("user:{v}"), json!({"n": 3})).await;
    }

    let budget = LEASE + Duration::from_secs(2);
    for v in victims {
        let left = budget.saturating_sub(killed.elapsed());
        poll(left, &format!("{v} offline after SIGKILL"), || async {
            match user_of(&c.nodes[0], v).await {
                (false, _) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    }
    let offline_after = killed.elapsed();
    drop(doomed);
    wait_presence(&c.nodes[1], room, &["kw0", "kw1"], 2).await;
    let presence_after = killed.elapsed();
    assert!(
        presence_after <= budget,
        "presence cleared after {presence_after:?} (lease {LEASE:?})"
    );
    println!(
        "sigkill: users offline after {:.2} s, presence gone after {:.2} s (lease {} s)",
        offline_after.as_secs_f64(),
        presence_after.as_secs_f64(),
        LEASE.as_secs()
    );

    // The witnesses hear both leaves (in any order), once.
    for (who, w) in [("kw0", &mut w0), ("kw1", &mut w1)] {
        let mut left = BTreeSet::new();
        for _ in 0..2 {
            let f = w.recv().await;
            assert_eq!(
                (&f["type"], &f["channel"], &f["event"]),
                (&json!("presence"), &json!(room), &json!("leave")),
                "{who}: {f}"
            );
            left.insert(f["user"].as_str().unwrap().to_owned());
        }
        assert_eq!(
            left,
            victims.iter().map(|v| v.to_string()).collect(),
            "{who}"
        );
    }

    // The events stream has their synthetic disconnects.
    let events = c.events();
    for (v, conn) in victims.iter().zip(&conns) {
        let synthetic: Vec<_> = events
            .iter()
            .filter(|e| e.get("type") == "disconnect" && e.get("conn") == conn.as_str())
            .collect();
        assert_eq!(
            synthetic.len(),
            1,
            "{v}: one disconnect for {conn}: {events:?}"
        );
        let e = synthetic[0];
        assert_eq!(
            (
                e.get("user"),
                e.get("node"),
                e.get("synthetic"),
                e.get("reason")
            ),
            (*v, dead.as_str(), "1", "node_lost"),
            "{e:?}"
        );
        assert!(e.get("ts").parse::<u64>().is_ok(), "{e:?}");
    }

    // /v1/nodes no longer lists the dead node.
    let (_, body) = c.nodes[0].api("GET", "/v1/nodes", None).await;
    let listed: BTreeSet<&str> = body["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["node"].as_str().unwrap())
        .collect();
    let want: BTreeSet<&str> = [c.nodes[0].node_id.as_str(), c.nodes[1].node_id.as_str()].into();
    assert_eq!(listed, want, "{body}");

    // More messages while they are offline.
    for v in victims {
        let a = api1.publish(&format!("user:{v}"), json!({"n": 4})).await;
        assert_eq!(
            (&a["online"], &a["nodes"]),
            (&json!(false), &json!(0)),
            "{a}"
        );
    }
    // They come back on the survivors and recover everything after offset 2.
    for (i, v) in victims.iter().enumerate() {
        let (mut client, welcome) = connect_since(&c.nodes[i], v, Some((&epochs[i], 2))).await;
        assert_eq!(welcome["recovered"], true, "{v}: {welcome}");
        assert_eq!(position(&welcome), (epochs[i].clone(), 4), "{v}: {welcome}");
        for n in 3..=4u64 {
            let m = client.recv().await;
            check_message(&m, v, &format!("user:{v}"), &epochs[i], n, &json!({"n": n}));
        }
        client.expect_silence(QUIET).await;
    }
    w0.expect_silence(Duration::ZERO).await;
    w1.expect_silence(Duration::ZERO).await;
}

on_both_redis!(a_node_restarted_under_the_same_id_drops_its_previous_connections);
/// A node that crashes and comes back at once under the same id (a StatefulSet pod, a
/// systemd restart) renews its lease before it expires: the connections and presence of
/// its previous life must still go, and its new connections must not be confused with
/// them (connection ids restart from 1 in a new process).
async fn a_node_restarted_under_the_same_id_drops_its_previous_connections(redis: Redis) {
    const LEASE: Duration = Duration::from_secs(2);
    let mut c = Cluster::start_on(redis, 3, &["--lease-seconds", "2"]).await;
    let room = "room:reborn";
    let (mut w, _) = c.nodes[0].connect("rw").await;
    subscribe(&mut w, "rw", 1, room).await;
    expect_frame(&mut w, "rw", presence_frame(room, "rw", "join")).await;
    let (mut ghost, welcome) = c.nodes[2].connect("ghost").await;
    let ghost_conn = welcome["conn_id"].as_str().unwrap().to_owned();
    subscribe(&mut ghost, "ghost", 1, room).await;
    expect_frame(&mut w, "rw", presence_frame(room, "ghost", "join")).await;

    let id = c.nodes[2].node_id.clone();
    c.kill(2).await;
    let killed = Instant::now();
    drop(ghost);
    c.revive(2).await;
    let restarted_after = killed.elapsed();

    // A new user on the restarted node joins the room (its connection id may repeat the
    // ghost's): everyone hears the join.
    let (mut fresh, welcome) = c.nodes[2].connect("fresh").await;
    assert_eq!(welcome["node"], id.as_str(), "{welcome}");
    assert_ne!(
        welcome["conn_id"], ghost_conn,
        "connection ids must not repeat across restarts (events consumers key on them)"
    );
    subscribe(&mut fresh, "fresh", 1, room).await;
    expect_frame(&mut fresh, "fresh", presence_frame(room, "fresh", "join")).await;

    let budget = LEASE + Duration::from_secs(2);
    let what = format!(
        "ghost offline after its node restarted under the same id (restart took {restarted_after:?})"
    );
    poll(budget.saturating_sub(killed.elapsed()), &what, || async {
        match user_of(&c.nodes[0], "ghost").await {
            (false, _) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    println!(
        "same-id restart: node back after {:.2} s, ghost offline after {:.2} s",
        restarted_after.as_secs_f64(),
        killed.elapsed().as_secs_f64()
    );
    wait_presence(&c.nodes[1], room, &["fresh", "rw"], 2).await;
    let mut frames = vec![w.recv().await, w.recv().await];
    frames.sort_by_key(|f| f["user"].as_str().unwrap_or_default().to_owned());
    assert_eq!(
        frames,
        [
            presence_frame(room, "fresh", "join"),
            presence_frame(room, "ghost", "leave")
        ],
        "rw hears the fresh join and the ghost's leave"
    );
    let disconnects: Vec<_> = c
        .events()
        .into_iter()
        .filter(|e| e.get("type") == "disconnect" && e.get("user") == "ghost")
        .collect();
    assert_eq!(disconnects.len(), 1, "{disconnects:?}");
    assert_eq!(disconnects[0].get("conn"), ghost_conn, "{disconnects:?}");
    assert_eq!(disconnects[0].get("synthetic"), "1", "{disconnects:?}");
    w.expect_silence(QUIET).await;
}
