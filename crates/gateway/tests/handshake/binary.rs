//! The binary: invalid configuration exits 64 listing every problem, and `switchboard token`
//! prints a JWT the node accepts.

use super::*;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

#[tokio::test]
async fn invalid_configuration_exits_64_listing_every_problem() {
    let out = support::run_binary(
        &[
            "serve",
            "--listen",
            "nope",
            "--max-message-bytes",
            "abc",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        &[],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "stderr: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "nothing may be served: {:?}",
        out.stdout
    );
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("switchboard: invalid configuration"))
        .collect();
    assert_eq!(problems.len(), 3, "one line per problem: {stderr}");
    assert!(problems.iter().any(|l| l.contains("--listen")), "{stderr}");
    assert!(
        problems.iter().any(|l| l.contains("--max-message-bytes")),
        "{stderr}"
    );
    assert!(
        problems.iter().any(|l| l.contains("--jwt-secret")),
        "{stderr}"
    );
}

#[tokio::test]
async fn token_command_prints_one_jwt_the_node_accepts() {
    let out = support::run_binary(
        &["token", "--sub", "alice", "--ttl", "60"],
        &[("SWITCHBOARD_JWT_SECRET", support::SECRET)],
    )
    .await;
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout:?}");
    assert!(stdout.ends_with('\n'));
    let token = lines[0];
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("base64url")).unwrap();
    assert_eq!(payload["sub"], "alice");
    let exp = payload["exp"].as_u64().expect("exp");
    assert!(
        (now_secs() + 50..=now_secs() + 70).contains(&exp),
        "{payload}"
    );

    let node = support::start(&[]).await;
    accepted(&node, &with_token(token), &[], "alice").await;
    let bearer = format!("Bearer {token}");
    accepted(&node, "", &[("authorization", &bearer)], "alice").await;
}
