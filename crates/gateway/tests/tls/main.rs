//! TLS on the node's own listeners (`--tls-cert`/`--tls-key`), with certificates made at
//! test time (rcgen): `wss://` clients, certificate reloads while connections stay open,
//! plain HTTP and TLS 1.1 on the TLS port, bad settings (exit 64) and the internal
//! listener with `--admin-tls`.
//!
//! # Layout
//! - this file: certificates, files and `wss://` clients shared by the tests.
//! - [`serving`]: what clients see: welcome and messages, TLS 1.2, bursts, the internal
//!   listener, plain HTTP and TLS 1.1 refused.
//! - [`reload`]: certificate reloads and failed reloads.
//! - [`config`]: bad or partial settings exit 64 before binding.

use switchboard_testkit as support;

mod config;
mod memory;
mod reload;
mod serving;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use support::{token, Node, WAIT};

pub type Wss = WebSocketStream<TlsStream<TcpStream>>;

/// A self-signed certificate for `localhost` and its key, as PEM and DER.
pub struct Cert {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Cert {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Cert {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("rcgen");
        Cert {
            cert_pem: made.cert.pem(),
            key_pem: made.key_pair.serialize_pem(),
            der: made.cert.der().clone(),
        }
    }
}

/// A directory of its own under the system's temporary directory, removed on drop.
pub struct Dir(pub PathBuf);

impl Dir {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Dir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sb-tls-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Dir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `name` at once (a rename), as cert-manager and certbot do.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        let tmp = self.path(&format!(".{name}.tmp"));
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, &path).expect("rename");
        path
    }

    /// `cert.pem` and `key.pem` of `cert`.
    pub fn install(&self, cert: &Cert) -> (PathBuf, PathBuf) {
        (
            self.write("cert.pem", &cert.cert_pem),
            self.write("key.pem", &cert.key_pem),
        )
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// Starts a node serving `cert` on its public listener, plus `args`.
pub async fn start_tls(dir: &Dir, cert: &Cert, args: &[&str]) -> Node {
    let (cert_path, key_path) = dir.install(cert);
    let mut all = vec![
        "--tls-cert",
        path_str(&cert_path),
        "--tls-key",
        path_str(&key_path),
    ];
    all.extend_from_slice(args);
    support::start(&all).await
}

/// A client configuration that trusts `roots` only, for the given TLS versions.
pub fn client_config(
    roots: &[&Cert],
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for cert in roots {
        store.add(cert.der.clone()).expect("root");
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec(), b"h2".to_vec()];
    Arc::new(config)
}

/// TLS 1.3 and 1.2, trusting `roots`.
pub fn trusting(roots: &[&Cert]) -> Arc<ClientConfig> {
    client_config(roots, rustls::ALL_VERSIONS)
}

/// A TLS connection to `addr` as `localhost`.
pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("name");
    tokio::time::timeout(WAIT, TlsConnector::from(config).connect(name, tcp))
        .await
        .expect("TLS handshake timed out")
}

/// A `wss://` client of `sub` over `config`, with its welcome frame.
pub async fn wss(node: &Node, sub: &str, config: Arc<ClientConfig>) -> (Wss, Value) {
    let tls = tls_connect(node.public, config)
        .await
        .expect("TLS handshake");
    let url = format!(
        "wss://localhost:{}/ws?token={}",
        node.public.port(),
        token(sub)
    );
    let req = url.into_client_request().expect("request");
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(req, tls))
        .await
        .expect("upgrade timed out")
        .expect("upgrade");
    let welcome = recv(&mut ws).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (ws, welcome)
}

/// The certificate the server presented on `ws`.
pub fn presented(ws: &Wss) -> CertificateDer<'static> {
    let (_, session) = ws.get_ref().get_ref();
    session.peer_certificates().expect("peer certificates")[0].clone()
}

/// The next JSON frame (pings and room presence frames skipped).
pub async fn recv(ws: &mut Wss) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("timed out waiting for a frame");
        match msg {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).expect("JSON");
                if v["type"] != "presence" {
                    return v;
                }
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Sends one JSON frame.
pub async fn send(ws: &mut Wss, frame: Value) {
    use futures_util::SinkExt;
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .expect("send");
}

/// Waits until `series` on the node's `/metrics` reaches `at_least`.
pub async fn wait_metric(node: &Node, series: &str, at_least: f64) {
    let reached = tokio::time::timeout(WAIT, async {
        loop {
            if node.metric_value(series).await.unwrap_or(0.0) >= at_least {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await;
    assert!(reached.is_ok(), "{series} did not reach {at_least}");
}
