//! `POST /v1/batch` across the cluster: one request whose messages go to users on every
//! node — on a Redis Cluster, to channels on every shard — is answered item by item in
//! request order, numbers each channel's messages in request order, and delivers each
//! message once to its recipient's node.

use super::*;
use std::collections::HashMap;

use crate::support::cluster::{Cluster, Redis};
use crate::support::on_both_redis;

/// Users, spread over the nodes (and the shards).
const USERS: usize = 6;
/// Messages in the batch.
const MESSAGES: usize = 300;

on_both_redis!(a_batch_spans_every_node_and_shard_in_request_order);
async fn a_batch_spans_every_node_and_shard_in_request_order(redis: Redis) {
    let c = Cluster::start_on(redis, 3, &[]).await;
    let channels = c.channels_on_every_shard(USERS, |i| format!("user:batch{i}"));
    if redis == Redis::Cluster {
        let mut shards: Vec<u16> = channels.iter().map(|ch| c.primary_of(ch)).collect();
        shards.sort_unstable();
        shards.dedup();
        assert_eq!(shards.len(), 3, "{channels:?} reach every primary");
    }
    let mut clients = Vec::new();
    for (i, channel) in channels.iter().enumerate() {
        let user = channel.strip_prefix("user:").expect("a user channel");
        let (client, welcome) = c.nodes[i % 3].connect(user).await;
        assert_eq!(welcome["offset"], 0, "{welcome}");
        clients.push((user.to_owned(), position(&welcome).0, client));
    }

    // The channels interleave irregularly, so that every pipelined burst mixes shards.
    let target = |i: usize| (i * 7 + i / USERS) % USERS;
    let messages: Vec<Value> = (0..MESSAGES)
        .map(|i| json!({"channel": channels[target(i)], "data": {"i": i}}))
        .collect();
    let (status, body) = c.nodes[0]
        .api("POST", "/v1/batch", Some(json!({ "messages": messages })))
        .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), MESSAGES, "one result per message");
    let mut sent: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, r) in results.iter().enumerate() {
        let u = target(i);
        let mine = sent.entry(u).or_default();
        mine.push(i);
        assert_eq!(r["channel"], channels[u].as_str(), "item {i}: {r}");
        assert_eq!(
            position(r),
            (clients[u].1.clone(), mine.len() as u64),
            "item {i}: offsets follow request order per channel: {r}"
        );
        assert_eq!(
            (&r["online"], &r["nodes"]),
            (&json!(true), &json!(1)),
            "item {i}: {r}"
        );
    }

    for (u, (user, epoch, client)) in clients.iter_mut().enumerate() {
        let channel = &channels[u];
        for (n, i) in sent[&u].iter().enumerate() {
            let msg = client.recv().await;
            check_message(&msg, user, channel, epoch, n as u64 + 1, &json!({"i": i}));
        }
        client.expect_silence(QUIET).await;
    }
}
