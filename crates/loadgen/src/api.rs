//! HTTP publishing: per API URL a few HTTP/1.1 keep-alive connections (`--api-connections`)
//! running requests concurrently. A request goes to the connection its key picks (the pair or
//! the channel), and one connection runs its requests one after the other, so messages to
//! one channel stay in order (concurrent connections would reorder them, and a reorder must
//! mean a server bug). A broken connection is reopened for the next request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

use crate::proto::ApiCall;

/// How one request ended.
#[derive(Debug)]
pub enum Outcome {
    /// An HTTP answer: status and body.
    Status(u16, Bytes),
    /// Never sent (no connection could be opened): a failed publish.
    NotSent,
    /// Sent, but the connection broke before the answer: unconfirmed.
    NoAnswer,
}

/// Called with the outcome of a request (on the connection's task; keep it short).
pub type Done = Box<dyn FnOnce(Outcome) + Send>;

struct Job {
    call: ApiCall,
    done: Done,
}

/// A parsed `--api` URL.
#[derive(Debug)]
struct Target {
    addr: SocketAddr,
    host: String,
    /// Path prefix of the base URL, without the trailing slash.
    base: String,
    /// The first problem with this URL was printed.
    warned: AtomicBool,
}

impl Target {
    /// Prints the first problem with this URL on stderr (later ones only count).
    fn warn(&self, what: &str) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            eprintln!(
                "[loadgen] api {}: {what} (later errors are only counted)",
                self.host
            );
        }
    }
}

async fn parse(url: &str) -> Result<Target, String> {
    let uri: http::Uri = url
        .trim()
        .parse()
        .map_err(|e| format!("--api {url:?}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("--api {url:?}: only http:// URLs are supported"));
    }
    let auth = uri
        .authority()
        .ok_or_else(|| format!("--api {url:?}: no host"))?;
    let host = if auth.port().is_some() {
        auth.as_str().to_owned()
    } else {
        format!("{}:80", auth.host())
    };
    let addr = tokio::net::lookup_host(&host)
        .await
        .map_err(|e| format!("--api {url:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("--api {url:?}: no address"))?;
    Ok(Target {
        addr,
        host: auth.as_str().to_owned(),
        base: uri.path().trim_end_matches('/').to_owned(),
        warned: AtomicBool::new(false),
    })
}

/// The publishing clients of every `--api` URL.
#[derive(Clone)]
pub struct Api {
    /// Per URL, one queue per connection.
    queues: Vec<Vec<mpsc::UnboundedSender<Job>>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Api({} urls)", self.queues.len())
    }
}

impl Api {
    /// Resolves the URLs and starts `conns` connection tasks per URL (connections open on
    /// first use).
    pub async fn start(urls: &[String], conns: usize) -> Result<Api, String> {
        let mut queues = Vec::new();
        for url in urls {
            let target = Arc::new(parse(url).await?);
            let mut conn_queues = Vec::new();
            for _ in 0..conns.max(1) {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(worker(target.clone(), rx));
                conn_queues.push(tx);
            }
            queues.push(conn_queues);
        }
        Ok(Api { queues })
    }

    pub fn len(&self) -> usize {
        self.queues.len()
    }

    /// Queues `call` on URL `index` (modulo the number of URLs), on the connection `key`
    /// picks (requests with the same key run in order).
    pub fn submit(&self, index: usize, key: u64, call: ApiCall, done: Done) {
        let conns = &self.queues[index % self.queues.len()];
        let q = &conns[(key % conns.len() as u64) as usize];
        if let Err(mpsc::error::SendError(job)) = q.send(Job { call, done }) {
            (job.done)(Outcome::NotSent);
        }
    }
}

async fn connect(t: &Target) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = tokio::net::TcpStream::connect(t.addr)
        .await
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn worker(t: Arc<Target>, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut conn: Option<SendRequest<Full<Bytes>>> = None;
    while let Some(job) = rx.recv().await {
        if conn.as_ref().is_none_or(|c| c.is_closed()) {
            conn = None;
            match connect(&t).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    t.warn(&format!("connect: {e}"));
                    (job.done)(Outcome::NotSent);
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected above");
        if let Err(e) = c.ready().await {
            conn = None;
            t.warn(&e.to_string());
            (job.done)(Outcome::NotSent);
            continue;
        }
        let mut req = hyper::Request::post(format!("{}{}", t.base, job.call.path))
            .header(hyper::header::HOST, &t.host)
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(b) = &job.call.bearer {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {b}"));
        }
        let req = match req.body(Full::new(Bytes::from(job.call.body))) {
            Ok(r) => r,
            Err(e) => {
                t.warn(&e.to_string());
                (job.done)(Outcome::NotSent);
                continue;
            }
        };
        match c.send_request(req).await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                match resp.into_body().collect().await {
                    Ok(body) => {
                        let body = body.to_bytes();
                        if !(200..300).contains(&status) {
                            t.warn(&format!(
                                "HTTP {status}: {}",
                                String::from_utf8_lossy(&body)
                            ));
                        }
                        (job.done)(Outcome::Status(status, body))
                    }
                    Err(e) => {
                        conn = None;
                        t.warn(&e.to_string());
                        (job.done)(Outcome::NoAnswer);
                    }
                }
            }
            Err(e) => {
                conn = None;
                t.warn(&e.to_string());
                (job.done)(Outcome::NoAnswer);
            }
        }
    }
}
