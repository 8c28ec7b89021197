//! A page served from a foreign origin is refused when an allow-list is set, while the
//! allowed origin connects.

use crate::{assert_demo_served, free_port, origin, scenario, start_on, ws};

#[tokio::test]
async fn a_foreign_origin_is_refused() {
    crate::preflight();
    // Node 1 allows only its own origin, so its port must be known before it starts.
    let port = free_port();
    let allowed = format!("http://127.0.0.1:{port}");
    let guarded = start_on(
        &format!("127.0.0.1:{port}"),
        &["--demo", "--allowed-origins", &allowed],
    )
    .await;
    assert_eq!(origin(&guarded), allowed);
    // Node 2 serves the same demo from another origin (it has no allow-list itself).
    let foreign = crate::support::start(&["--demo"]).await;
    assert_demo_served(&foreign).await;

    let result = scenario(
        "origin-refused",
        &[
            "--ws".into(),
            ws(&guarded),
            "--node".into(),
            guarded.node_id.clone(),
            "--allowed-origin".into(),
            allowed.clone(),
            "--foreign-origin".into(),
            origin(&foreign),
        ],
    )
    .await;
    assert_eq!(
        result["foreign"]["bare_websocket"]["opened"], false,
        "{result}"
    );
    assert!(
        result["foreign"]["console_403"].as_u64() > Some(0),
        "{result}"
    );

    // The node counted the refusals (the page's attempts and the bare socket) as
    // origin_not_allowed.
    let refused = guarded
        .metric(
            "switchboard_handshake_rejected_total",
            "reason=\"origin_not_allowed\"",
        )
        .await;
    assert!(refused >= 2.0, "refusals counted: {refused}");
}
