//! What an idempotency key costs (issue 13: memory bounded and documented): in Redis,
//! `MEMORY USAGE` of one key and `used_memory` over 10,000; in the embedded backplane,
//! the node's RSS growth over 100,000 keyed publishes. Printed as `measured:` lines;
//! the assertions are loose bounds that catch a key costing far more than documented.

use super::*;

/// A UUID-shaped key (36 characters), distinct for every `n`.
fn uuid_key(n: u64) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        n,
        n % 0xffff,
        n % 0xfff,
        n % 0xfff,
        n.wrapping_mul(0x9e37_79b9)
    )
}

/// `count` keyed publishes to `channel` (no history, no subscriber: the keys are all
/// that grows) through `/v1/batch`, keys `uuid_key(from..from + count)`.
async fn keyed_batches(node: &Node, channel: &str, from: u64, count: u64, keyed: bool) {
    let api = node.api_client();
    for start in (from..from + count).step_by(1000) {
        let messages: Vec<Value> = (start..(start + 1000).min(from + count))
            .map(|n| {
                if keyed {
                    json!({"channel": channel, "data": 1, "idempotency_key": uuid_key(n)})
                } else {
                    json!({"channel": channel, "data": 1})
                }
            })
            .collect();
        let (status, body) = api
            .call("POST", "/v1/batch", Some(json!({ "messages": messages })))
            .await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body["results"]
                .as_array()
                .expect("results")
                .iter()
                .all(|r| r.get("error").is_none() && r.get("duplicate").is_none()),
            "every key is new and stored"
        );
    }
}

/// `INFO memory`'s `used_memory`.
fn used_memory(redis: &crate::support::cluster::Store) -> i64 {
    let info = redis.cmd(&["INFO", "memory"]).text();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory in INFO memory")
}

#[tokio::test]
async fn a_key_in_redis_costs_one_string_with_the_window_as_ttl() {
    let s = Scene::start(Backend::Redis, &[]).await;
    let redis = s.redis.as_ref().expect("redis");
    let (mut bob, _) = s.node.connect("bob").await;
    let uuid = uuid_key(7);
    assert_eq!(uuid.len(), 36);
    let reply = client_publish(&mut bob, 1, "user:alice", &uuid, json!("hi")).await;
    let (epoch, offset) = position(&reply);
    // The default prefix, the channel's hash tag, the key in bob's scope.
    let key = format!("sb:{{user:alice}}:i:{uuid}/bob");
    assert_eq!(
        redis.cmd(&["GET", &key]).text(),
        format!("{epoch} 0-{offset} 0"),
        "the first publish's epoch, stream entry id and receivers"
    );
    let ttl = redis.cmd(&["PTTL", &key]).int();
    assert!(
        (295_000..=300_000).contains(&ttl),
        "the key expires with the window (300 s): PTTL {ttl}"
    );
    let usage = redis.cmd(&["MEMORY", "USAGE", &key]).int();
    println!(
        "measured: MEMORY USAGE {key} (value {:?}) = {usage} bytes",
        redis.cmd(&["GET", &key]).text()
    );
    assert!(usage > 0 && usage <= 200, "MEMORY USAGE {usage}");

    // Many keys, with their expiry entries and the keyspace's growth.
    const N: u64 = 10_000;
    let before = used_memory(redis);
    keyed_batches(&s.node, "room:plain", 1_000_000, N, true).await;
    let after = used_memory(redis);
    let keys = redis.cmd(&["DBSIZE"]).int();
    let per_key = (after - before) as f64 / N as f64;
    println!(
        "measured: {N} keys sb:{{room:plain}}:i:<36 chars> add {} bytes of used_memory: {per_key:.0} bytes per key (DBSIZE {keys})",
        after - before
    );
    assert!(per_key < 400.0, "{per_key} bytes per key");
}

#[tokio::test]
async fn a_key_in_the_embedded_backplane_costs_a_few_hundred_bytes() {
    let s = Scene::start(Backend::Embedded, &[]).await;
    // Warm up the allocator and the node's buffers with unkeyed publishes of the same
    // shape, which keep nothing (a room without history and without subscribers).
    keyed_batches(&s.node, "room:plain", 0, 20_000, false).await;
    let before = s.node.rss_kib();
    const N: u64 = 100_000;
    keyed_batches(&s.node, "room:plain", 0, N, true).await;
    let after = s.node.rss_kib();
    let per_key = (after.saturating_sub(before) * 1024) as f64 / N as f64;
    println!(
        "measured: {N} keys (room:plain, 36-char keys) grow the embedded node's RSS by {} KiB: {per_key:.0} bytes per key",
        after.saturating_sub(before)
    );
    // A retry of the first is still a duplicate: the keys are really held.
    let (status, body) = publish_keyed(&s.node, "room:plain", &uuid_key(0), json!(1)).await;
    answered(status, &body, true);
    assert!(per_key < 1024.0, "{per_key} bytes per key");
}
