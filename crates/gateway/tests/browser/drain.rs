//! A page survives a node drain: connected to node 1 (with both nodes in its list), it
//! follows the `goaway` to node 2 while another client (a WebSocket on node 2) keeps
//! publishing numbered messages to its room, and ends up with every message exactly
//! once, in order.

use std::time::Duration;

use serde_json::json;

use crate::support::cluster::Cluster;
use crate::support::Client;
use crate::{assert_demo_served, origin, ws, Scenario};

/// Messages published before the SIGTERM, during the drain, and after node 1 exited.
const BEFORE: u64 = 10;
const DURING: u64 = 30;
const AFTER: u64 = 10;
const EVERY: Duration = Duration::from_millis(40);

/// Publishes tick `seq` to the room from the ticker's socket and checks its offset.
async fn publish(ticker: &mut Client, seq: u64) {
    ticker
        .send(json!({
            "type": "publish",
            "id": seq,
            "channel": "room:e2e-drain",
            "data": {"seq": seq, "text": format!("tick {seq}")},
        }))
        .await;
    let reply = ticker.reply(seq).await;
    assert_eq!(reply["ok"], true, "publish tick {seq}: {reply}");
    assert_eq!(
        reply["offset"], seq,
        "tick {seq} is the room's offset {seq}: {reply}"
    );
}

#[tokio::test]
async fn a_page_survives_a_node_drain() {
    crate::preflight();
    let mut cluster = Cluster::start(
        2,
        &[
            "--demo",
            "--history",
            "room:*=100/3600",
            "--allowed-origins",
            "*",
            "--drain-seconds",
            "2",
        ],
    )
    .await;
    let (first, second) = (&cluster.nodes[0], &cluster.nodes[1]);
    assert_demo_served(second).await;
    let (first_id, second_id) = (first.node_id.clone(), second.node_id.clone());

    // The page is served by node 2 (it stays up: a page's origin is usually not the
    // node it talks to) and lists node 1 first.
    let mut run = Scenario::spawn(
        "drain",
        &[
            "--origin".into(),
            origin(second),
            "--nodes".into(),
            format!("{},{}", ws(first), ws(second)),
            "--first-node".into(),
            first_id.clone(),
            "--second-node".into(),
            second_id.clone(),
            "--room".into(),
            "e2e-drain".into(),
            "--user".into(),
            "dana".into(),
        ],
    );
    match run.next_json().await {
        Some(ready) if ready["ready"] == true => {}
        // It ended before getting ready: `result` reports its error.
        other => {
            let result = run.result().await;
            panic!("scenario drain ended before it was ready: {other:?} {result}");
        }
    }
    let (mut ticker, _) = second.connect("ticker").await;

    let mut seq = 0;
    while seq < BEFORE {
        seq += 1;
        publish(&mut ticker, seq).await;
        tokio::time::sleep(EVERY).await;
    }
    first.sigterm();
    while seq < BEFORE + DURING {
        seq += 1;
        publish(&mut ticker, seq).await;
        tokio::time::sleep(EVERY).await;
    }
    let exit = tokio::time::timeout(Duration::from_secs(10), cluster.nodes[0].child.wait())
        .await
        .expect("node 1 did not finish its drain within 10 s")
        .expect("wait for node 1");
    assert!(exit.success(), "node 1 exits cleanly after a drain: {exit}");
    while seq < BEFORE + DURING + AFTER {
        seq += 1;
        publish(&mut ticker, seq).await;
        tokio::time::sleep(EVERY).await;
    }
    run.send_line(&json!({ "expect": seq }).to_string()).await;
    let result = run.result().await;

    assert_eq!(result["count"], seq, "{result}");
    assert_eq!(
        result["froms"],
        json!(["ticker"]),
        "the sender of every tick"
    );
    let ticks: Vec<u64> = serde_json::from_value(result["ticks"].clone()).expect("ticks");
    assert_eq!(
        ticks,
        (1..=seq).collect::<Vec<_>>(),
        "every tick once, in order"
    );
    let offsets: Vec<u64> = serde_json::from_value(result["offsets"].clone()).expect("offsets");
    assert_eq!(offsets, (1..=seq).collect::<Vec<_>>(), "offsets 1..={seq}");
    let on = |status: &serde_json::Value, id: &str| {
        status["node"] == id || status["text"].as_str().is_some_and(|t| t.contains(id))
    };
    assert!(on(&result["first_status"], &first_id), "{result}");
    assert!(on(&result["final_status"], &second_id), "{result}");
    assert!(
        result["status_log"]
            .as_array()
            .is_some_and(|l| l.len() >= 2),
        "the page's status changed on the way: {result}"
    );
    // Node 2 took the page's resume (personal channel and room, with `since`) and could
    // serve it from the history; nothing was unrecoverable.
    let second = &cluster.nodes[1];
    let recovery = "switchboard_recovery_total";
    let recovered = second.metric(recovery, "result=\"recovered\"").await;
    assert!(recovered >= 1.0, "resumes recovered on node 2: {recovered}");
    let lost = second.metric(recovery, "result=\"not_recovered\"").await;
    assert_eq!(lost, 0.0, "resumes not recovered on node 2");
}
