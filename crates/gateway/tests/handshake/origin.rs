//! The `Origin` check: same origin by default, an allow-list, or `*`.

use super::*;

#[tokio::test]
async fn origin_defaults_to_same_origin_only() {
    let node = support::start(&[]).await;
    let q = with_token(&support::token("alice"));
    accepted(&node, &q, &[], "alice").await;
    let same = format!("http://{}", node.public);
    accepted(&node, &q, &[("origin", &same)], "alice").await;
    for foreign in [
        "https://evil.example".to_owned(),
        format!("http://127.0.0.1:{}", node.public.port() + 1),
        // Host names are compared as written; the scheme is not (behind a TLS
        // terminator the node cannot know it), as in gorilla/websocket.
        format!("http://localhost:{}", node.public.port()),
        "null".to_owned(),
    ] {
        refused(
            &node,
            &q,
            &[("origin", &foreign)],
            403,
            "origin_not_allowed",
        )
        .await;
    }
    let rejected = node
        .metric(
            "switchboard_handshake_rejected_total",
            r#"reason="origin_not_allowed""#,
        )
        .await;
    assert_eq!(rejected, 4.0);
}

#[tokio::test]
async fn origin_allow_list_admits_only_listed_origins() {
    let node = support::start(&["--allowed-origins", "https://app.example.com"]).await;
    let q = with_token(&support::token("alice"));
    accepted(&node, &q, &[("origin", "https://app.example.com")], "alice").await;
    for other in [
        "https://evil.example".to_owned(),
        "http://app.example.com".to_owned(),
        "https://app.example.com.evil.example".to_owned(),
        format!("http://{}", node.public),
    ] {
        refused(&node, &q, &[("origin", &other)], 403, "origin_not_allowed").await;
    }
}

#[tokio::test]
async fn origin_star_admits_any_origin() {
    let node = support::start(&["--allowed-origins", "*"]).await;
    let q = with_token(&support::token("alice"));
    for origin in ["https://evil.example", "http://localhost:3000", "null"] {
        accepted(&node, &q, &[("origin", origin)], "alice").await;
    }
}
