//! `GET` of the JWKS document: one HTTP/1.1 request on a fresh connection (TLS with the
//! web PKI roots for `https://`), all of it under one deadline, the body read up to
//! [`MAX_BODY`]. Redirects are not followed and no proxy is used: a JWKS URL names the
//! document itself (the provider's discovery document lists it as `jwks_uri`).
//!
//! A fetch runs once a minute at most, so there is no connection pool: hyper's client
//! connection over a `TcpStream` (or `tokio_rustls` stream) is all it needs.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL, HOST, USER_AGENT};
use http::{HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Largest JWKS document read (a set of a few RSA keys is a few KiB).
pub const MAX_BODY: usize = 1024 * 1024;

/// Time allowed for one fetch: connect, TLS, request and the whole body.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// A fetched document and its `Cache-Control: max-age`, if any.
#[derive(Debug)]
pub struct Fetched {
    pub body: Bytes,
    pub max_age: Option<Duration>,
}

/// Where the keys come from: a checked `http(s)://` URL.
pub struct Source {
    uri: Uri,
    host: String,
    port: u16,
    /// `None` for `http://` (local testing only).
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Source {
    /// Checks `url` (`https://…`, or `http://…`) and prepares the TLS settings.
    pub fn new(url: &str) -> Result<Source, String> {
        let uri: Uri = url.parse().map_err(|_| format!("{url:?} is not a URL"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err(format!(
                    "{url:?} must start with https:// (or http:// for testing)"
                ))
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{url:?} has no host"))?;
        if authority.as_str().contains('@') {
            return Err("the URL must not carry credentials (user@host)".into());
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        Ok(Source {
            host: host.to_owned(),
            port,
            tls: https.then(tls_config),
            uri,
        })
    }

    /// Whether the keys travel without TLS (worth a warning outside tests).
    pub fn is_plain_http(&self) -> bool {
        self.tls.is_none()
    }

    /// Fetches the document (status 200 only) under [`FETCH_TIMEOUT`].
    pub async fn fetch(&self) -> Result<Fetched, String> {
        tokio::time::timeout(FETCH_TIMEOUT, self.fetch_now())
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {FETCH_TIMEOUT:?}")))
    }

    async fn fetch_now(&self) -> Result<Fetched, String> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("cannot connect to {}:{}: {e}", self.host, self.port))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => self.request(tcp).await,
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|_| format!("{:?} is not a valid TLS server name", self.host))?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS handshake with {}: {e}", self.host))?;
                self.request(tls).await
            }
        }
    }

    async fn request<S>(&self, io: S) -> Result<Fetched, String>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        let path = self
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let host = self.uri.authority().map_or("", |a| a.as_str());
        let req = Request::get(path)
            .header(HOST, host)
            .header(ACCEPT, "application/jwk-set+json, application/json")
            .header(
                USER_AGENT,
                concat!("switchboard/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("bad request: {e}"))?;
        let exchange = async move {
            let res = sender
                .send_request(req)
                .await
                .map_err(|e| format!("HTTP request: {e}"))?;
            if res.status() != http::StatusCode::OK {
                return Err(format!("HTTP status {}", res.status().as_u16()));
            }
            let max_age = res
                .headers()
                .get_all(CACHE_CONTROL)
                .iter()
                .filter_map(max_age)
                .min();
            let body = Limited::new(res.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| format!("reading the body: {e}"))?
                .to_bytes();
            Ok(Fetched { body, max_age })
        };
        tokio::pin!(exchange);
        // The connection future must be polled for the exchange to progress; it may end
        // (server closes after the body) before the exchange has read what it buffered.
        tokio::select! {
            done = &mut exchange => done,
            conn = conn => match conn {
                Ok(()) => exchange.await,
                Err(e) => Err(format!("HTTP connection: {e}")),
            },
        }
    }
}

/// The freshness lifetime a `Cache-Control` value gives: `max-age=N` seconds, or zero for
/// `no-cache`/`no-store` (refresh as often as allowed). `None` when it says neither.
pub fn max_age(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?;
    let mut found = None;
    for directive in text.split(',') {
        let directive = directive.trim();
        let (name, arg) = directive.split_once('=').unwrap_or((directive, ""));
        let name = name.trim().to_ascii_lowercase();
        match name.as_str() {
            "no-cache" | "no-store" => return Some(Duration::ZERO),
            "max-age" => {
                let secs = arg.trim().trim_matches('"').parse::<u64>().ok()?;
                found = Some(Duration::from_secs(secs));
            }
            _ => {}
        }
    }
    found
}

/// The web PKI roots (webpki-roots, the same as the Redis TLS client), TLS 1.2+, HTTP/1.1.
fn tls_config() -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // ring, like the Redis client (no C toolchain beyond cc); the keys are public, and
    // what TLS guards here is their integrity, not secrecy in the long run.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}
