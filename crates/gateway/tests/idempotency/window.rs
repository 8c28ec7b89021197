//! `--idempotency-window-seconds`: a key is remembered for the window and no longer; the
//! setting's bounds (1 to 86400) are checked before anything is bound.

use super::*;

/// With a 1 s window a retry at once is a duplicate, a retry after it is a new message
/// (stored and delivered), and that new message's key starts a window of its own.
async fn a_retry_after_the_window_is_a_new_message(backend: Backend) {
    let s = Scene::start(backend, &["--idempotency-window-seconds", "1"]).await;
    let node = &s.node;
    let (mut hana, _) = node.connect("hana").await;
    let (status, first) = publish_keyed(node, "user:hana", "w-1", json!(1)).await;
    let at = answered(status, &first, false);
    let (status, again) = publish_keyed(node, "user:hana", "w-1", json!(2)).await;
    assert_eq!(answered(status, &again, true), at);
    assert_eq!(expect_message(&mut hana, "user:hana").await["data"], 1);

    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (status, later) = publish_keyed(node, "user:hana", "w-1", json!(3)).await;
    assert_eq!(
        answered(status, &later, false),
        (at.0.clone(), at.1 + 1),
        "{later}"
    );
    assert_eq!(expect_message(&mut hana, "user:hana").await["data"], 3);
    let (status, later_again) = publish_keyed(node, "user:hana", "w-1", json!(4)).await;
    assert_eq!(
        answered(status, &later_again, true),
        (at.0.clone(), at.1 + 1)
    );

    // A client's key expires the same way.
    let (mut ivan, _) = node.connect("ivan").await;
    let c1 = position(&client_publish(&mut ivan, 1, "user:hana", "w-2", json!(5)).await);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let c2 = position(&client_publish(&mut ivan, 2, "user:hana", "w-2", json!(6)).await);
    assert_eq!(
        c2.1,
        c1.1 + 1,
        "a client's retry after the window is a new message"
    );
    assert_eq!(expect_message(&mut hana, "user:hana").await["data"], 5);
    assert_eq!(expect_message(&mut hana, "user:hana").await["data"], 6);
    hana.expect_silence(QUIET).await;
    assert_eq!(
        history_offsets(node, "user:hana").await,
        [at.1, at.1 + 1, c1.1, c2.1]
    );
}
on_both_backends!(a_retry_after_the_window_is_a_new_message);

/// Runs `serve` with `args` (flag or environment) and expects exit 64 naming the setting.
async fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut env = env.to_vec();
    env.push(("SWITCHBOARD_JWT_SECRET", support::SECRET));
    let out = support::serve_to_exit(args, &env, support::WAIT)
        .await
        .expect("switchboard with an invalid window must exit, not serve");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(64), "{args:?} {env:?}: {stderr}");
    assert!(
        stderr.contains("idempotency_window_seconds")
            || stderr.contains("idempotency-window-seconds"),
        "the message names the setting: {stderr}"
    );
    stderr
}

#[tokio::test]
async fn the_window_must_be_1_to_86400_seconds() {
    for bad in ["0", "86401", "-1", "1.5", "abc"] {
        let flag = format!("--idempotency-window-seconds={bad}");
        let stderr = refused(&[&flag], &[]).await;
        println!("{flag}: {}", stderr.trim());
    }
    refused(&[], &[("SWITCHBOARD_IDEMPOTENCY_WINDOW_SECONDS", "0")]).await;
    refused(&[], &[("SWITCHBOARD_IDEMPOTENCY_WINDOW_SECONDS", "86401")]).await;
    for good in ["1", "86400"] {
        let node = support::start(&["--idempotency-window-seconds", good]).await;
        let (status, body) = publish_keyed(&node, "user:x", "k", json!(1)).await;
        answered(status, &body, false);
        let (status, body) = publish_keyed(&node, "user:x", "k", json!(1)).await;
        answered(status, &body, true);
    }
}
