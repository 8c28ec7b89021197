//! Recovery results counted in `switchboard_recovery_total`.

use super::*;

#[tokio::test]
async fn recovery_results_are_counted_in_metrics() {
    let node = support::start(&[]).await;
    let (alice, welcome) = node.connect("alice").await;
    let (epoch, _) = position(&welcome);
    alice.close().await;

    let (alice, welcome) = connect_since(&node, "alice", Some((&epoch, 0))).await;
    assert_eq!(welcome["recovered"], true, "{welcome}");
    alice.close().await;
    for since in [("e0nope", 0), (epoch.as_str(), 7)] {
        let (alice, welcome) = connect_since(&node, "alice", Some(since)).await;
        assert_eq!(welcome["recovered"], false, "{welcome}");
        alice.close().await;
    }
    let (mut alice, _) = node.connect("alice").await;
    let reply = subscribe_since(&mut alice, 1, "room:m", Some(("e0nope", 0))).await;
    assert_eq!(reply["recovered"], false, "{reply}");

    assert_eq!(
        node.metric_value("switchboard_recovery_total{result=\"recovered\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        node.metric_value("switchboard_recovery_total{result=\"not_recovered\"}")
            .await,
        Some(3.0)
    );
}
