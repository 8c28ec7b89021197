//! Only the subscriber connection black-holed (crates/testkit/src/proxy.rs): the probe detects it,
//! the node reconnects, and repairs from the streams what it missed.

use super::*;
use crate::support::proxy::FaultProxy;

/// Publishes `{"n": k}` (k = how many were sent before + 1), which must answer 200 in
/// `epoch` at the next offset; records `(offset, data)` in `sent`. Returns the offset.
async fn publish_next(
    api: &ApiClient,
    channel: &str,
    epoch: &str,
    sent: &mut Vec<(u64, Value)>,
) -> u64 {
    let data = json!({"n": sent.len() + 1});
    let (status, body, _) = publish(api, channel, data.clone()).await;
    assert_eq!(status, 200, "publish {data} to {channel}: {body}");
    let (e, offset) = position(&body);
    assert_eq!(e, epoch, "{body}");
    if let Some((last, _)) = sent.last() {
        assert_eq!(offset, last + 1, "offsets grow by one: {body}");
    }
    sent.push((offset, data));
    offset
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholed_subscriber_is_detected_and_repaired_without_loss() {
    let redis = RedisServer::start();
    let proxy = FaultProxy::start(redis.port).await;
    // `behind` reaches Redis through the proxy; `direct` does not.
    let behind = start_node(&proxy.url()).await;
    let direct = start_node(&redis.url()).await;
    let via_direct = direct.api_client();
    let via_behind = behind.api_client();
    let (mut dave, welcome) = behind.connect("dave").await;
    let (epoch, _) = position(&welcome);
    let mut sent: Vec<(u64, Value)> = Vec::new();
    for _ in 0..3 {
        let offset = publish_next(&via_direct, "user:dave", &epoch, &mut sent).await;
        let msg = expect_message(&mut dave, "user:dave", support::WAIT).await;
        assert_eq!(position(&msg), (epoch.clone(), offset), "{msg}");
    }
    let reconnects_before = reconnects(&behind).await;
    assert_eq!(
        behind.metric_value("switchboard_backplane_up").await,
        Some(1.0)
    );

    let wedged = proxy.blackhole_subscribers();
    assert_eq!(
        wedged, 1,
        "exactly the node's subscriber connection is black-holed"
    );
    let detected = wait_readyz(
        &behind,
        503,
        PROBE * 2 + SLACK,
        "/readyz turns 503 once the subscriber is black-holed",
    )
    .await;
    println!(
        "measured: black-holed subscriber detected in {detected:?} (probe interval {PROBE:?})"
    );
    assert_eq!(
        behind.metric_value("switchboard_backplane_up").await,
        Some(0.0),
        "switchboard_backplane_up while the subscriber is black-holed"
    );
    let (status, body) = direct.get_internal("/readyz").await;
    assert_eq!(
        status, 200,
        "the node not behind the proxy stays ready: {body}"
    );

    // Published while dave's node cannot hear: through the other node and through the
    // wedged node's own command connection (which still works).
    for k in 0..20 {
        let api = if k % 2 == 0 { &via_direct } else { &via_behind };
        publish_next(api, "user:dave", &epoch, &mut sent).await;
    }
    // The node keeps trying: its forced reconnects are black-holed too, and it stays
    // unready meanwhile.
    poll(
        PROBE * 4 + SLACK * 2,
        "the node reconnects its subscriber (black-holed again)",
        || async {
            let n = proxy.blackholed();
            (n >= 2).then_some(()).ok_or(format!("{n} black-holed"))
        },
    )
    .await;
    let (status, body) = behind.get_internal("/readyz").await;
    assert_eq!(
        status, 503,
        "/readyz while every subscriber is black-holed: {body}"
    );

    proxy.heal();
    let back = wait_readyz(
        &behind,
        200,
        Duration::from_secs(5),
        "ready after the black hole healed",
    )
    .await;
    println!("measured: ready {back:?} after the black hole healed");
    for _ in 0..3 {
        publish_next(&via_direct, "user:dave", &epoch, &mut sent).await;
    }
    for (offset, data) in &sent[3..] {
        let msg = expect_message(&mut dave, "user:dave", support::WAIT).await;
        assert_eq!(
            position(&msg),
            (epoch.clone(), *offset),
            "dave's messages in order, none lost: {msg}"
        );
        assert_eq!(&msg["data"], data, "{msg}");
    }
    expect_quiet(&mut dave, "dave").await;
    let reconnects_after = reconnects(&behind).await;
    assert!(
        reconnects_after > reconnects_before,
        "switchboard_backplane_reconnects_total did not increase ({reconnects_before} -> {reconnects_after})"
    );
    assert_eq!(
        behind.metric_value("switchboard_backplane_up").await,
        Some(1.0)
    );
}
