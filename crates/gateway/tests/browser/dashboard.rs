//! The dashboard chart receives every point the feeder publishes: the page is on node 2,
//! the feeder publishes through node 1's server API.

use crate::support::cluster::Cluster;
use crate::support::API_KEY;
use crate::{api, assert_demo_served, origin, scenario, ws};

const POINTS: u64 = 20;

#[tokio::test]
async fn the_dashboard_receives_every_point() {
    crate::preflight();
    let cluster = Cluster::start(2, &["--demo"]).await;
    let (feeder_node, page_node) = (&cluster.nodes[0], &cluster.nodes[1]);
    assert_demo_served(page_node).await;

    let result = scenario(
        "dashboard",
        &[
            "--origin".into(),
            origin(page_node),
            "--nodes".into(),
            ws(page_node),
            "--node".into(),
            page_node.node_id.clone(),
            "--api".into(),
            api(feeder_node),
            "--key".into(),
            API_KEY.into(),
            "--count".into(),
            POINTS.to_string(),
            "--interval-ms".into(),
            "100".into(),
        ],
    )
    .await;
    assert_eq!(result["points_before"], 0, "{result}");
    assert_eq!(result["points"], POINTS, "{result}");
    assert_eq!(result["feeder_exit"], 0, "{result}");
}
