//! The server API's keyed publishes: `/v1/publish` (JSON and protobuf), every item of
//! `/v1/batch`, `/v1/broadcast` per channel, and retries racing each other.

use super::*;

use bytes::Bytes;
use prost::Message as _;
use switchboard_proto::pb;

use crate::support::API_KEY;

/// A retry of `/v1/publish` answers the first position with `duplicate: true`; the
/// recipient gets one message and history holds one copy. Another key is the next
/// offset; the same key on another channel is a message of its own.
async fn a_retried_api_publish_is_stored_and_delivered_once(backend: Backend) {
    let s = Scene::start(backend, &[]).await;
    let node = &s.node;
    let (mut alice, _) = node.connect("alice").await;

    let (status, first) = publish_keyed(node, "user:alice", "order-1", json!({"n": 1})).await;
    let at = answered(status, &first, false);
    assert_eq!(
        (first["online"].as_bool(), first["nodes"].as_u64()),
        (Some(true), Some(1))
    );
    for n in 2..=3 {
        // The retry's data differs: the first publish's is the one kept.
        let (status, again) = publish_keyed(node, "user:alice", "order-1", json!({"n": n})).await;
        assert_eq!(answered(status, &again, true), at, "{again}");
        assert_eq!(
            (&again["online"], &again["nodes"], &again["channel"]),
            (&first["online"], &first["nodes"], &first["channel"]),
            "a duplicate answers the first publish's online/nodes: {again}"
        );
    }
    let m = expect_message(&mut alice, "user:alice").await;
    assert_eq!((position(&m), &m["data"]), (at.clone(), &json!({"n": 1})));
    alice.expect_silence(QUIET).await;
    let kept = history(node, "user:alice").await;
    assert_eq!(kept.len(), 1, "one copy in history: {kept:?}");
    assert_eq!(kept[0]["data"], json!({"n": 1}));

    let (status, other) = publish_keyed(node, "user:alice", "order-2", json!({"n": 4})).await;
    assert_eq!(answered(status, &other, false), (at.0.clone(), at.1 + 1));
    assert_eq!(
        expect_message(&mut alice, "user:alice").await["data"],
        json!({"n": 4})
    );

    // The same key on other channels: new messages (keys are per channel).
    let (status, bob) = publish_keyed(node, "user:bob", "order-1", json!({"n": 5})).await;
    assert_eq!(answered(status, &bob, false).1, 1, "{bob}");
    let (status, room) = publish_keyed(node, "room:hist-a", "order-1", json!({"n": 6})).await;
    assert_eq!(answered(status, &room, false).1, 1, "{room}");
    assert_eq!(history_offsets(node, "user:bob").await, [1]);
    assert_eq!(history_offsets(node, "room:hist-a").await, [1]);
    assert_eq!(history_offsets(node, "user:alice").await, [at.1, at.1 + 1]);
    alice.expect_silence(QUIET).await;
}
on_both_backends!(a_retried_api_publish_is_stored_and_delivered_once);

/// The protobuf API (publish and batch) shares the JSON API's scope: a protobuf retry of
/// a JSON publish is its duplicate (`PublishResult.duplicate`), and the empty key
/// (proto3's "absent") is no key at all.
async fn protobuf_api_publishes_are_keyed_too(backend: Backend) {
    let s = Scene::start(backend, &[]).await;
    let node = &s.node;
    let (status, first) = publish_keyed(node, "room:hist-pb", "pb-1", json!("a")).await;
    let at = answered(status, &first, false);
    let publish_pb = |key: &str| {
        let req = pb::PublishRequest {
            channel: "room:hist-pb".into(),
            data: Some(pb::Payload {
                kind: Some(pb::payload::Kind::Json(r#""b""#.into())),
            }),
            idempotency_key: key.into(),
            ..Default::default()
        };
        let bearer = format!("Bearer {API_KEY}");
        async move {
            let (status, body) = node
                .http(
                    node.internal,
                    "POST",
                    "/v1/publish",
                    &[
                        ("authorization", &bearer),
                        ("content-type", "application/x-protobuf"),
                    ],
                    Bytes::from(req.encode_to_vec()),
                )
                .await;
            assert_eq!(status, 200, "{body:?}");
            pb::PublishResult::decode(body).expect("a protobuf PublishResult")
        }
    };
    let again = publish_pb("pb-1").await;
    assert!(again.duplicate, "{again:?}");
    assert_eq!((again.epoch.clone(), again.offset), at);
    for n in 1..=2 {
        let unkeyed = publish_pb("").await;
        assert!(!unkeyed.duplicate, "an empty key is no key: {unkeyed:?}");
        assert_eq!(unkeyed.offset, at.1 + n);
    }
    let fresh = publish_pb("pb-2").await;
    assert!(!fresh.duplicate);
    assert_eq!(fresh.offset, at.1 + 3);
    // A protobuf batch: the retry of a JSON publish, a bad key failing its item alone.
    let item = |key: &str| pb::PublishRequest {
        channel: "room:hist-pb".into(),
        data: Some(pb::Payload {
            kind: Some(pb::payload::Kind::Json("1".into())),
        }),
        idempotency_key: key.into(),
        ..Default::default()
    };
    let batch = pb::BatchRequest {
        messages: vec![item("pb-1"), item("a b"), item("pb-2")],
    };
    let bearer = format!("Bearer {API_KEY}");
    let (status, body) = node
        .http(
            node.internal,
            "POST",
            "/v1/batch",
            &[
                ("authorization", &bearer),
                ("content-type", "application/x-protobuf"),
            ],
            Bytes::from(batch.encode_to_vec()),
        )
        .await;
    assert_eq!(status, 200, "{body:?}");
    let results = pb::BatchResponse::decode(body)
        .expect("a BatchResponse")
        .results;
    assert!(
        results[0].duplicate && results[0].offset == at.1,
        "{results:?}"
    );
    let error = results[1].error.as_ref().expect("the bad key's item fails");
    assert_eq!(error.code, "bad_request", "{results:?}");
    assert!(
        results[2].duplicate && results[2].offset == fresh.offset,
        "{results:?}"
    );
    assert_eq!(
        history_offsets(node, "room:hist-pb").await,
        [at.1, at.1 + 1, at.1 + 2, at.1 + 3]
    );
}
on_both_backends!(protobuf_api_publishes_are_keyed_too);

/// Sixteen concurrent publishes with one key: exactly one is stored, every answer is
/// its position (the check is atomic with the store).
async fn racing_retries_store_one_message(backend: Backend) {
    let s = Scene::start(backend, &[]).await;
    let api = s.node.api_client();
    let calls = (0..16).map(|n| {
        let api = &api;
        async move {
            api.call(
                "POST",
                "/v1/publish",
                Some(json!({"channel": "user:carol", "data": {"n": n}, "idempotency_key": "race"})),
            )
            .await
        }
    });
    let answers = futures_util::future::join_all(calls).await;
    let firsts = answers
        .iter()
        .filter(|(_, b)| b.get("duplicate").is_none())
        .count();
    assert_eq!(
        firsts, 1,
        "exactly one publish is not a duplicate: {answers:?}"
    );
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(position(body), position(&answers[0].1), "{body}");
    }
    assert_eq!(history(&s.node, "user:carol").await.len(), 1);
}
on_both_backends!(racing_retries_store_one_message);

/// `/v1/batch`: each item is keyed on its own; an item repeating an earlier item's key on
/// the same channel is its duplicate; retrying the whole batch answers every first
/// position again and stores nothing.
async fn batch_items_are_keyed_each(backend: Backend) {
    let s = Scene::start(backend, &[]).await;
    let node = &s.node;
    let (mut dan, _) = node.connect("dan").await;
    let body = json!({"messages": [
        {"channel": "user:dan", "data": 1, "idempotency_key": "b-1"},
        {"channel": "user:dan", "data": 2, "idempotency_key": "b-1"},
        {"channel": "user:dan", "data": 3, "idempotency_key": "b-2"},
        {"channel": "room:hist-b", "data": 4, "idempotency_key": "b-1"},
        {"channel": "user:dan", "data": 5},
    ]});
    let (status, first) = node.api("POST", "/v1/batch", Some(body.clone())).await;
    assert_eq!(status, 200, "{first}");
    let r = first["results"].as_array().expect("results");
    let offsets: Vec<u64> = r.iter().map(|r| position(r).1).collect();
    assert_eq!(offsets, [1, 1, 2, 1, 3], "{first}");
    let dups: Vec<bool> = r.iter().map(|r| r["duplicate"] == true).collect();
    assert_eq!(dups, [false, true, false, false, false], "{first}");
    assert_eq!(position(&r[1]), position(&r[0]));
    for want in [1, 3, 5] {
        assert_eq!(expect_message(&mut dan, "user:dan").await["data"], want);
    }
    dan.expect_silence(QUIET).await;

    let (status, again) = node.api("POST", "/v1/batch", Some(body)).await;
    assert_eq!(status, 200, "{again}");
    let r2 = again["results"].as_array().expect("results");
    for i in 0..4 {
        assert_eq!(position(&r2[i]), position(&r[i]), "item {i}: {again}");
        assert_eq!(r2[i]["duplicate"], true, "item {i}: {again}");
    }
    assert_eq!(
        position(&r2[4]).1,
        4,
        "the unkeyed item is a new message: {again}"
    );
    assert_eq!(expect_message(&mut dan, "user:dan").await["data"], 5);
    dan.expect_silence(QUIET).await;
    assert_eq!(history_offsets(node, "user:dan").await, [1, 2, 3, 4]);
    assert_eq!(history_offsets(node, "room:hist-b").await, [1]);
}
on_both_backends!(batch_items_are_keyed_each);

/// `/v1/broadcast` with a key: the key applies per channel; the whole broadcast retried
/// answers the same positions, all duplicates; a `/v1/publish` with the key to one of its
/// channels is the broadcast's duplicate there (one scope: the server API).
async fn broadcast_is_keyed_per_channel(backend: Backend) {
    let s = Scene::start(backend, &[]).await;
    let node = &s.node;
    let (mut erin, _) = node.connect("erin").await;
    publish_keyed(node, "user:erin", "earlier", json!(0)).await;
    expect_message(&mut erin, "user:erin").await;
    let channels = ["user:erin", "user:frank", "room:hist-c", "room:plain"];
    let body = json!({"channels": channels, "data": "hello", "idempotency_key": "bc-1"});
    let (status, first) = node.api("POST", "/v1/broadcast", Some(body.clone())).await;
    assert_eq!(status, 200, "{first}");
    let r = first["results"].as_array().expect("results").clone();
    let offsets: Vec<u64> = r.iter().map(|r| position(r).1).collect();
    assert_eq!(offsets, [2, 1, 1, 1], "{first}");
    assert!(r.iter().all(|r| r.get("duplicate").is_none()), "{first}");
    assert_eq!(
        expect_message(&mut erin, "user:erin").await["data"],
        "hello"
    );

    for _ in 0..2 {
        let (status, again) = node.api("POST", "/v1/broadcast", Some(body.clone())).await;
        assert_eq!(status, 200, "{again}");
        let r2 = again["results"].as_array().expect("results");
        assert_eq!(r2.len(), r.len());
        for (a, b) in r.iter().zip(r2) {
            assert_eq!((position(a), &a["channel"]), (position(b), &b["channel"]));
            assert_eq!(b["duplicate"], true, "{again}");
        }
    }
    let (status, single) = publish_keyed(node, "user:frank", "bc-1", json!("again")).await;
    assert_eq!(answered(status, &single, true), position(&r[1]));
    // A broadcast with the key over a new channel list: new channels get new messages,
    // the others are duplicates.
    let (status, mixed) = node
        .api(
            "POST",
            "/v1/broadcast",
            Some(json!({"channels": ["user:erin", "user:gina"], "data": "x", "idempotency_key": "bc-1"})),
        )
        .await;
    assert_eq!(status, 200, "{mixed}");
    assert_eq!(mixed["results"][0]["duplicate"], true, "{mixed}");
    assert_eq!(position(&mixed["results"][0]), position(&r[0]));
    assert!(mixed["results"][1].get("duplicate").is_none(), "{mixed}");
    erin.expect_silence(QUIET).await;
    assert_eq!(history_offsets(node, "user:erin").await, [1, 2]);
    assert_eq!(history_offsets(node, "user:frank").await, [1]);
    assert_eq!(history_offsets(node, "room:hist-c").await, [1]);
    assert_eq!(history_offsets(node, "user:gina").await, [1]);
}
on_both_backends!(broadcast_is_keyed_per_channel);
