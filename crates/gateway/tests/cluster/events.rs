//! The connection events stream read with a consumer group: connects and disconnects,
//! at-least-once until acked.

use super::*;

use crate::support::cluster::{read_entries, Cluster, Redis, Resp};
use crate::support::on_both_redis;

on_both_redis!(connection_events_are_read_with_a_consumer_group);
async fn connection_events_are_read_with_a_consumer_group(redis: Redis) {
    let stream = "backend:events";
    let c = Cluster::start_on(redis, 3, &["--events-stream", stream]).await;
    assert_eq!(c.events_stream, stream);
    assert_eq!(
        c.redis_cmd(&["XGROUP", "CREATE", stream, "workers", "$", "MKSTREAM"]),
        Resp::Simple("OK".into())
    );
    let before_ms = support::now_secs() * 1000 - 1000;

    let mut clients = Vec::new();
    let mut expected: Vec<(&str, String, String, &str)> = Vec::new();
    for (i, user) in ["ev0", "ev1", "ev2"].into_iter().enumerate() {
        let (client, welcome) = c.nodes[i].connect(user).await;
        let conn = welcome["conn_id"].as_str().unwrap().to_owned();
        expected.push(("connect", user.to_owned(), conn, ""));
        clients.push((user, i, client));
    }
    let (user2, n2, ev2) = clients.pop().unwrap();
    for (user, i, client) in clients {
        client.close().await;
        c.nodes[i].wait_offline(user).await;
        let conn = expected.iter().find(|e| e.1 == user).unwrap().2.clone();
        expected.push(("disconnect", user.to_owned(), conn, "closed"));
    }

    let read_new = |consumer: &str| {
        c.redis_cmd(&[
            "XREADGROUP",
            "GROUP",
            "workers",
            consumer,
            "COUNT",
            "100",
            "STREAMS",
            stream,
            ">",
        ])
    };
    let check = |entries: &[support::cluster::StreamEntry],
                 want: &[(&str, String, String, &str)]| {
        let mut got: Vec<(String, String, String, String)> = Vec::new();
        for e in entries {
            for f in ["type", "user", "conn", "node", "ts"] {
                assert!(!e.get(f).is_empty(), "{f} missing in {e:?}");
            }
            let ts: u64 = e.get("ts").parse().expect("ts in ms");
            assert!(
                ts >= before_ms && ts <= support::now_secs() * 1000 + 1000,
                "{e:?}"
            );
            let conn = e.get("conn");
            let (user, node) = (e.get("user"), e.get("node"));
            let i = ["ev0", "ev1", "ev2"]
                .iter()
                .position(|u| *u == user)
                .expect("a test user");
            assert_eq!(node, c.nodes[i].node_id, "{e:?}");
            got.push((
                e.get("type").into(),
                user.into(),
                conn.into(),
                e.get("reason").into(),
            ));
        }
        let mut got_sorted = got.clone();
        got_sorted.sort();
        let mut want: Vec<(String, String, String, String)> = want
            .iter()
            .map(|(t, u, c, r)| (t.to_string(), u.clone(), c.clone(), r.to_string()))
            .collect();
        want.sort();
        assert_eq!(got_sorted, want, "events read: {entries:?}");
        // Per connection, the connect comes first.
        for (t, _, conn, _) in &got {
            if t == "disconnect" {
                let d = got.iter().position(|g| &g.2 == conn && g.0 == "disconnect");
                let c = got.iter().position(|g| &g.2 == conn && g.0 == "connect");
                assert!(c < d, "connect before disconnect for {conn}: {got:?}");
            }
        }
    };

    let entries = read_entries(&read_new("w1"));
    check(&entries, &expected);
    let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();

    // Until acked they stay pending: at-least-once, redelivered to the consumer.
    let pending = c.redis_cmd(&["XPENDING", stream, "workers"]);
    assert_eq!(pending.items()[0], Resp::Int(5), "{pending:?}");
    let again = read_entries(&c.redis_cmd(&[
        "XREADGROUP",
        "GROUP",
        "workers",
        "w1",
        "STREAMS",
        stream,
        "0",
    ]));
    assert_eq!(
        again.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ids,
        "pending entries are redelivered"
    );
    let mut ack = vec!["XACK", stream, "workers"];
    ack.extend(&ids);
    assert_eq!(c.redis_cmd(&ack), Resp::Int(5));
    assert!(read_entries(&c.redis_cmd(&[
        "XREADGROUP",
        "GROUP",
        "workers",
        "w1",
        "STREAMS",
        stream,
        "0",
    ]))
    .is_empty());
    assert!(read_entries(&read_new("w2")).is_empty(), "nothing new");

    // One more disconnect: exactly one new entry, for another consumer of the group.
    let conn2 = expected.iter().find(|e| e.1 == user2).unwrap().2.clone();
    ev2.close().await;
    c.nodes[n2].wait_offline(user2).await;
    let entries = read_entries(&read_new("w2"));
    check(
        &entries,
        &[("disconnect", user2.to_owned(), conn2, "closed")],
    );
    assert_eq!(
        c.redis_cmd(&["XACK", stream, "workers", &entries[0].id]),
        Resp::Int(1)
    );
    let pending = c.redis_cmd(&["XPENDING", stream, "workers"]);
    assert_eq!(pending.items()[0], Resp::Int(0), "{pending:?}");
}
