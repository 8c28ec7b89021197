//! Startup: the first fetch decides (exit 1 when it fails, unless allowed), and bad JWKS
//! settings are configuration errors (exit 64) before anything is fetched.

use super::*;

/// `switchboard serve` with the JWKS `url` and `args`, run to its exit (at most 20 s).
async fn serve_exits(url: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--jwt-jwks-url", url];
    all.extend_from_slice(args);
    support::serve_to_exit(&all, &[], Duration::from_secs(20))
        .await
        .expect("the node exits instead of serving")
}

#[track_caller]
fn assert_exit(out: &std::process::Output, code: i32, message: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains(message), "{message:?} not in: {stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening"),
        "it listened"
    );
}

/// Nothing listening, a 500, a body that is not a JWKS, and TLS to a plain-HTTP port:
/// each is exit 1 with the reason, before the node listens.
#[tokio::test]
async fn the_first_fetch_failing_is_exit_1() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let out = serve_exits(&format!("http://127.0.0.1:{closed}/jwks"), &[]).await;
    assert_exit(&out, 1, "cannot load the JWT keys of --jwt-jwks-url");
    assert_exit(&out, 1, "cannot connect");

    let server = JwksServer::start(Answer::Status(500)).await;
    assert_exit(&serve_exits(&server.url(), &[]).await, 1, "HTTP status 500");
    server.set(Answer::Keys {
        body: "{\"keys\": \"nope\"}".into(),
        cache_control: "max-age=60".into(),
    });
    assert_exit(
        &serve_exits(&server.url(), &[]).await,
        1,
        "not a JWKS document",
    );
    server.set(keys(
        &[json!({"kty": "RSA", "kid": "short", "n": "AQAB", "e": "AQAB"})],
        60,
    ));
    assert_exit(&serve_exits(&server.url(), &[]).await, 1, "no usable key");
    let https = format!("https://localhost:{}/jwks", server.port);
    assert_exit(&serve_exits(&https, &[]).await, 1, "TLS handshake");
}

/// With `--jwt-jwks-allow-start-without-keys` the node starts anyway, refuses every token
/// until the endpoint answers, then accepts them (the background retries find it).
#[tokio::test]
async fn allowed_to_start_without_keys() {
    let server = JwksServer::start(Answer::Status(503)).await;
    let node = node(
        &server,
        &[
            "--jwt-jwks-allow-start-without-keys",
            "--jwt-jwks-min-refresh-seconds",
            "1",
        ],
    )
    .await;
    let token = TestKey::Rsa.sign(Algorithm::RS256, Some("a"), &claims(json!({})));
    assert_refused(admits(&node, &token).await, "a token with no keys loaded");
    assert_eq!(node.metric("switchboard_jwks_keys", "").await, 0.0);
    assert!(
        node.metric(
            "switchboard_jwks_refresh_total",
            r#"trigger="startup",result="error""#
        )
        .await
            == 1.0
    );

    server.set(keys(&[TestKey::Rsa.jwk("a")], 3600));
    eventually(
        Duration::from_secs(8),
        "keys once the endpoint answers",
        || admits(&node, &token),
    )
    .await;
    assert_eq!(node.metric("switchboard_jwks_keys", "").await, 1.0);
}

/// Bad JWKS settings are configuration errors (exit 64), all reported, nothing fetched.
#[tokio::test]
async fn bad_settings_are_exit_64() {
    let server = JwksServer::start(keys(&[TestKey::Rsa.jwk("a")], 60)).await;
    let url = server.url();
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 4] = [
        (
            &["--jwt-jwks-url", &url],
            &[("SWITCHBOARD_JWT_SECRET", support::SECRET)],
            "set only one of --jwt-secret, --jwt-public-key and --jwt-jwks-url",
        ),
        (
            &["--jwt-jwks-url", "ftp://idp.example.com/jwks"],
            &[],
            "must start with https://",
        ),
        (
            &["--jwt-jwks-url", &url, "--jwt-algorithm", "HS256"],
            &[],
            "cannot be used with --jwt-jwks-url",
        ),
        (
            &[
                "--jwt-jwks-url",
                &url,
                "--jwt-jwks-min-refresh-seconds",
                "120",
                "--jwt-jwks-max-refresh-seconds",
                "60",
            ],
            &[],
            "is shorter than --jwt-jwks-min-refresh-seconds 120",
        ),
    ];
    for (args, env, message) in cases {
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        let out = support::run_binary(&all, env).await;
        assert_exit(&out, 64, message);
    }
    assert_eq!(server.fetches(), 0);

    // `switchboard token` cannot sign for a JWKS node.
    let out = support::run_binary(&["token", "--sub", "alice", "--jwt-jwks-url", &url], &[]).await;
    assert_exit(&out, 64, "get tokens from your identity provider");
}
