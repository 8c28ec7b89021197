//! Opening one connection: TCP (and TLS for `rediss`), then the handshake — `AUTH`,
//! `SELECT`, `CLIENT SETNAME` — before the connection is handed to its tasks.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::config::ClientConfig;
use super::conn::{Conn, Mode, Reader, Writer};
use super::resp::{self, Cmd, Value};
use super::Error;

/// Credentials and options of one connection.
pub struct Handshake<'a> {
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    /// 0 = leave the default database.
    pub database: u32,
    pub name: &'a str,
}

impl<'a> Handshake<'a> {
    /// The handshake of a data node (not a Sentinel).
    pub fn data(config: &'a ClientConfig, name: &'a str) -> Handshake<'a> {
        Handshake {
            username: config.username.as_deref(),
            password: config.password.as_deref(),
            database: if config.is_cluster() {
                0
            } else {
                config.database
            },
            name,
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Connects to `addr`, runs the handshake and starts the connection's tasks.
pub async fn open(
    addr: &str,
    config: &ClientConfig,
    handshake: &Handshake<'_>,
    mode: Mode,
) -> Result<Conn, Error> {
    let timeout = config.timeout;
    let (reader, writer) = tokio::time::timeout(timeout, async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| Error::Io(format!("cannot connect to {addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        match &config.tls {
            None => {
                let mut tcp = tcp;
                hello(&mut tcp, handshake).await?;
                let (r, w) = tcp.into_split();
                Ok::<(Reader, Writer), Error>((Box::new(r), Box::new(w)))
            }
            Some(tls) => {
                let mut stream = tls_connect(addr, tcp, &tls.client).await?;
                hello(&mut stream, handshake).await?;
                let (r, w) = tokio::io::split(stream);
                Ok((Box::new(r) as Reader, Box::new(w) as Writer))
            }
        }
    })
    .await
    .map_err(|_| Error::Io(format!("connecting to {addr} timed out after {timeout:?}")))??;
    Ok(Conn::start(
        addr.to_owned(),
        reader,
        writer,
        mode,
        timeout,
        config.batch,
    ))
}

/// Runs one command on a connection that has no tasks yet.
async fn request(stream: &mut (impl Io + ?Sized), cmd: &Cmd) -> Result<Value, Error> {
    let mut out = Vec::new();
    cmd.encode(&mut out);
    stream
        .write_all(&out)
        .await
        .map_err(|e| Error::Io(e.to_string()))?;
    let mut buf = BytesMut::with_capacity(512);
    loop {
        if let Some(v) = resp::parse(&mut buf).map_err(|e| Error::Protocol(e.0))? {
            return Ok(v);
        }
        let n = stream
            .read_buf(&mut buf)
            .await
            .map_err(|e| Error::Io(e.to_string()))?;
        if n == 0 {
            return Err(Error::Io("connection closed during the handshake".into()));
        }
    }
}

async fn hello(stream: &mut (impl Io + ?Sized), h: &Handshake<'_>) -> Result<(), Error> {
    if let Some(password) = h.password {
        let cmd = match h.username {
            Some(user) => Cmd::new("AUTH").arg(user).arg(password),
            None => Cmd::new("AUTH").arg(password),
        };
        if let Some(e) = request(stream, &cmd).await?.error() {
            return Err(Error::Auth(String::from_utf8_lossy(e).into_owned()));
        }
    }
    if h.database != 0 {
        let reply = request(stream, &Cmd::new("SELECT").int(h.database)).await?;
        if let Some(e) = reply.error() {
            return Err(Error::Config(format!(
                "SELECT {}: {}",
                h.database,
                String::from_utf8_lossy(e)
            )));
        }
    }
    // A server that wants a password answers NOAUTH to the first command that needs one.
    let reply = request(stream, &Cmd::new("PING")).await?;
    if let Some(e) = reply.error() {
        let e = String::from_utf8_lossy(e).into_owned();
        return Err(if e.starts_with("NOAUTH") || e.starts_with("WRONGPASS") {
            Error::Auth(e)
        } else {
            Error::Redis(e)
        });
    }
    if !h.name.is_empty() {
        // Older servers and some proxies refuse it; it only helps operators.
        let _ = request(stream, &Cmd::new("CLIENT").arg("SETNAME").arg(h.name)).await;
    }
    Ok(())
}

/// Opens a connection to a Sentinel (its own credentials, no database).
pub async fn sentinel(
    addr: &str,
    config: &ClientConfig,
    username: Option<&str>,
    password: Option<&str>,
) -> Result<Conn, Error> {
    let handshake = Handshake {
        username,
        password,
        database: 0,
        name: "",
    };
    open(addr, config, &handshake, Mode::Commands).await
}

async fn tls_connect(
    addr: &str,
    tcp: TcpStream,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Error> {
    let connector = tokio_rustls::TlsConnector::from(tls.clone());
    let host = addr
        .rsplit_once(':')
        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
        .unwrap_or(addr);
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| Error::Config(format!("TLS server name {host}: {e}")))?;
    connector
        .connect(name, tcp)
        .await
        .map_err(|e| Error::Io(format!("TLS handshake with {addr}: {e}")))
}

/// The TLS settings: the web PKI roots plus the CA certificates of `ca_file` (PEM).
pub fn tls_config(ca_file: Option<&str>) -> Result<Arc<rustls::ClientConfig>, Error> {
    build_tls_config(ca_file).map_err(Error::Config)
}

fn build_tls_config(ca_file: Option<&str>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let certs =
            CertificateDer::pem_file_iter(path).map_err(|e| format!("TLS CA file {path}: {e}"))?;
        let mut added = 0;
        for cert in certs {
            let cert = cert.map_err(|e| format!("TLS CA file {path}: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("TLS CA file {path}: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!("TLS CA file {path}: no certificate in it"));
        }
    }
    // ring rather than aws-lc-rs: no C toolchain beyond cc (aws-lc needs cmake); its
    // lack of post-quantum key exchange does not matter for a link to Redis.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// How long to wait before reconnection attempt `attempt` (1, 2, …): exponential from
/// 50 ms to 2 s with full jitter, so that many nodes do not reconnect in step.
pub fn backoff(attempt: u32) -> Duration {
    use rand::Rng as _;
    let cap = 50u64.saturating_mul(1 << attempt.min(6)).min(2000);
    Duration::from_millis(rand::rng().random_range(cap / 2..=cap))
}
