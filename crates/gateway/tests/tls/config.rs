//! Bad or partial TLS settings are configuration errors: exit 64 before binding, every
//! problem reported at once, no key material in the message.

use crate::support::{serve_to_exit, SECRET};
use crate::*;

async fn refused(args: &[&str]) -> String {
    let out = serve_to_exit(args, &[("SWITCHBOARD_JWT_SECRET", SECRET)], WAIT)
        .await
        .expect("the node must exit, not serve");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
    assert!(stderr.contains("invalid configuration"), "{stderr}");
    assert!(!stderr.contains("PRIVATE KEY"), "{stderr}");
    stderr
}

#[tokio::test]
async fn bad_or_partial_tls_settings_exit_64() {
    let dir = Dir::new();
    let (a, b) = (Cert::new(), Cert::new());
    let (cert, key) = dir.install(&a);
    let (cert, key) = (path_str(&cert), path_str(&key));
    let other_key = dir.write("other-key.pem", &b.key_pem);
    let garbage = dir.write("garbage.pem", "not a certificate\n");
    let missing = dir.path("missing.pem");

    let e = refused(&["--tls-cert", cert]).await;
    assert!(e.contains("--tls-cert needs --tls-key"), "{e}");
    let e = refused(&["--tls-key", key]).await;
    assert!(e.contains("--tls-key needs --tls-cert"), "{e}");
    let e = refused(&["--admin-tls"]).await;
    assert!(e.contains("--admin-tls needs --tls-cert"), "{e}");
    let e = refused(&["--tls-cert", cert, "--tls-key", path_str(&other_key)]).await;
    assert!(e.contains("is not the key of the certificate"), "{e}");
    let e = refused(&["--tls-cert", path_str(&garbage), "--tls-key", key]).await;
    assert!(e.contains("no CERTIFICATE"), "{e}");
    let e = refused(&["--tls-cert", cert, "--tls-key", path_str(&garbage)]).await;
    assert!(e.contains("no PEM private key"), "{e}");
    let e = refused(&["--tls-cert", path_str(&missing), "--tls-key", key]).await;
    assert!(e.contains("cannot read"), "{e}");
    let e = refused(&[
        "--tls-cert",
        cert,
        "--tls-key",
        key,
        "--tls-reload-interval-ms",
        "5",
    ])
    .await;
    assert!(e.contains("--tls-reload-interval-ms"), "{e}");

    // Reported together with the other problems.
    let e = refused(&[
        "--tls-cert",
        cert,
        "--tls-key",
        path_str(&other_key),
        "--heartbeat-ms",
        "5",
    ])
    .await;
    assert!(e.contains("is not the key of the certificate"), "{e}");
    assert!(e.contains("--heartbeat-ms"), "{e}");
}

#[tokio::test]
async fn the_settings_come_from_the_environment_too() {
    let dir = Dir::new();
    let cert = Cert::new();
    let (cert_path, key_path) = dir.install(&cert);
    let node = crate::support::start_env(
        &[],
        &[
            ("SWITCHBOARD_TLS_CERT", path_str(&cert_path)),
            ("SWITCHBOARD_TLS_KEY", path_str(&key_path)),
        ],
    )
    .await;
    let (ws, _) = wss(&node, "erin", trusting(&[&cert])).await;
    assert_eq!(presented(&ws), cert.der);
}
