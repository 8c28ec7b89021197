//! `rediss://` to a `redis-server` that only speaks TLS (`--port 0 --tls-port …`), its
//! certificate (SAN IP:127.0.0.1) signed by a throwaway CA: trusted with `?tlsCaFile=`,
//! a direct message crosses two nodes; a certificate from another CA, or no extra CA at
//! all (the public web PKI roots only), is refused at startup.

use super::*;

use support::refused::{assert_refused, run_with_url};

/// A TLS-only server and its files (`ca.pem`, `other.pem`, `server.pem`).
struct TlsRedis {
    dir: TempDir,
    server: Server,
}

fn start_tls_redis() -> TlsRedis {
    let dir = TempDir::new("redis-tls");
    make_ca(&dir.0, "ca");
    make_ca(&dir.0, "other");
    make_server_cert(&dir.0, "ca");
    let port = free_port();
    let (cert, key, ca) = (
        dir.display("server.pem"),
        dir.display("server.key"),
        dir.display("ca.pem"),
    );
    let tls_port = port.to_string();
    let server = Server::start(
        &dir.0,
        port,
        &[
            "--port",
            "0",
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "no",
        ],
    );
    TlsRedis { dir, server }
}

#[tokio::test]
async fn a_direct_message_crosses_two_nodes_over_tls() {
    let redis = tokio::task::spawn_blocking(start_tls_redis)
        .await
        .expect("start a TLS redis-server");
    let url = format!(
        "rediss://127.0.0.1:{}?tlsCaFile={}",
        redis.server.port,
        redis.dir.display("ca.pem")
    );
    let (a, b) = two_nodes(&url).await;
    for node in [&a, &b] {
        let (status, body) = node.get_internal("/readyz").await;
        assert_eq!(status, 200, "{body}");
    }
    direct_message_across(&a, &b).await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let redis = tokio::task::spawn_blocking(start_tls_redis)
        .await
        .expect("start a TLS redis-server");
    let port = redis.server.port;
    let other = format!(
        "rediss://127.0.0.1:{port}?tlsCaFile={}",
        redis.dir.display("other.pem")
    );
    assert_refused(
        "a server certificate from another CA",
        run_with_url(&other).await,
        1,
        &[
            &format!("TLS handshake with 127.0.0.1:{port}"),
            "certificate",
        ],
    );
    assert_refused(
        "no tlsCaFile (web PKI roots only)",
        run_with_url(&format!("rediss://127.0.0.1:{port}")).await,
        1,
        &[
            &format!("TLS handshake with 127.0.0.1:{port}"),
            "certificate",
        ],
    );
    // A CA file that is not there is a configuration error (exit 64, nothing tried).
    let missing = redis.dir.display("missing.pem");
    assert_refused(
        "a tlsCaFile that does not exist",
        run_with_url(&format!("rediss://127.0.0.1:{port}?tlsCaFile={missing}")).await,
        64,
        &["invalid configuration", &missing],
    );
}
