//! TLS on the node's own listeners (`--tls-cert`/`--tls-key`): rustls, TLS 1.2 and 1.3
//! only, ALPN `http/1.1`. The certificate is reloaded when its files change (cert-manager,
//! Let's Encrypt renewals): new handshakes get the new one, open connections keep theirs.
//! A change that does not load (a half-written file, a key of another certificate) keeps
//! the old certificate, with a warning and `switchboard_tls_reloads_total{result="error"}`.
//!
//! The encrypted WebSocket itself is `conn::socket` (the session is taken back from
//! hyper after the upgrade, like the plain `TcpStream`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio_util::sync::CancellationToken;

use crate::metrics as m;

/// Largest certificate chain or key file read.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// The cryptography of the listeners: ring, as the Redis client's (aws-lc-rs needs cmake to
/// build). Its lack of post-quantum key exchange means browsers agree on X25519.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            #[allow(deprecated)]
            let provider = rustls::crypto::ring::default_provider();
            Arc::new(provider)
        })
        .clone()
}

/// The certificate files and what they held when last loaded.
#[derive(Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Also serve the internal listener (server API, metrics, health) with TLS.
    pub admin: bool,
    /// How often the files are checked for a change.
    pub reload_interval: Duration,
    /// Loaded when the configuration was checked (before any port is bound).
    pub loaded: Loaded,
}

impl fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsFiles")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("admin", &self.admin)
            .field("reload_interval", &self.reload_interval)
            .finish_non_exhaustive()
    }
}

/// A certificate chain and its key, checked to belong together, and the file contents
/// they came from (to notice a change).
#[derive(Clone)]
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    contents: (Vec<u8>, Vec<u8>),
}

/// Reads and checks a certificate chain file and a private key file (PEM). The error is a
/// sentence for the configuration report or the reload warning.
pub fn load(cert: &Path, key: &Path) -> Result<Loaded, String> {
    let read = |path: &Path| {
        crate::files::read_limited(path, MAX_PEM_BYTES)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let contents = (read(cert)?, read(key)?);
    let key = parse(&contents.0, &contents.1, cert, key)?;
    Ok(Loaded {
        key: Arc::new(key),
        contents,
    })
}

fn parse(cert_pem: &[u8], key_pem: &[u8], cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no CERTIFICATE in the file", cert.display()));
    }
    let private = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("{}: no PEM private key: {e}", key.display()))?;
    CertifiedKey::from_der(chain, private, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => format!(
            "{} is not the key of the certificate in {}",
            key.display(),
            cert.display()
        ),
        e => format!("{}: unusable private key: {e}", key.display()),
    })
}

/// The certificate new handshakes get; swapped by a reload.
#[derive(Debug)]
pub struct Certs {
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certs {
    pub fn new(key: Arc<CertifiedKey>) -> Arc<Certs> {
        Arc::new(Certs {
            current: RwLock::new(key),
        })
    }

    fn set(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = key;
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// The listeners' TLS configuration: TLS 1.2 and 1.3, ALPN `http/1.1`, the certificate
/// from `certs`.
pub fn server_config(certs: Arc<Certs>) -> anyhow::Result<Arc<ServerConfig>> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What the watcher last saw in the files.
#[derive(PartialEq, Eq)]
enum Seen {
    Contents((Vec<u8>, Vec<u8>)),
    Unreadable(String),
}

/// Checks the files every `reload_interval` and swaps the certificate when they changed
/// and load; until `stop`. A failure is reported once per distinct state of the files.
pub async fn watch(files: TlsFiles, certs: Arc<Certs>, stop: CancellationToken) {
    let mut seen = Seen::Contents(files.loaded.contents.clone());
    let mut tick = tokio::time::interval(files.reload_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let (cert, key) = (files.cert.clone(), files.key.clone());
        let read = tokio::task::spawn_blocking(move || {
            let read = |p: &Path| crate::files::read_limited(p, MAX_PEM_BYTES);
            match (read(&cert), read(&key)) {
                (Ok(c), Ok(k)) => Seen::Contents((c, k)),
                (Err(e), _) => Seen::Unreadable(format!("cannot read {}: {e}", cert.display())),
                (_, Err(e)) => Seen::Unreadable(format!("cannot read {}: {e}", key.display())),
            }
        })
        .await;
        let Ok(now) = read else { continue };
        if now == seen {
            continue;
        }
        let result = match &now {
            Seen::Unreadable(e) => Err(e.clone()),
            Seen::Contents((c, k)) => parse(c, k, &files.cert, &files.key),
        };
        seen = now;
        match result {
            Ok(key) => {
                certs.set(Arc::new(key));
                metrics::counter!(m::TLS_RELOADS, "result" => "ok").increment(1);
                tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                metrics::counter!(m::TLS_RELOADS, "result" => "error").increment(1);
                tracing::warn!(error = %e, "TLS certificate not reloaded; keeping the previous one");
            }
        }
    }
}
