//! The node's HTTP client for upstream calls: hyper-util's pooled client (HTTP/1.1 with
//! keep-alive), built once. One [`HttpClient::post`] is one attempt under one deadline:
//! connect, request, answer head and body. Bodies are read up to `--max-message-bytes`,
//! never more. Dropping the future drops the request, and hyper closes that connection.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, CONTENT_TYPE};
use http::{HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body as _;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use switchboard_proto::Payload;
use tokio::time::Instant;

/// How long an idle pooled connection to an upstream is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// The result of one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// A 2xx answer with a JSON body (an empty body is `null`).
    Data(Payload),
    /// A 2xx answer whose body cannot be relayed (not JSON, too large).
    BadBody(String),
    /// A non-2xx answer.
    Status(u16),
    /// No complete answer before the deadline.
    Timeout,
    /// Connection refused or reset, DNS, a broken answer… `connect`: no connection was made.
    Transport { connect: bool, message: String },
}

impl Attempt {
    /// Whether it counts against the upstream's circuit: transport errors, timeouts and
    /// 5xx answers (4xx answers are the caller's problem, not the upstream's).
    pub fn is_failure(&self) -> bool {
        match self {
            Attempt::Transport { .. } | Attempt::Timeout => true,
            Attempt::Status(s) => *s >= 500,
            Attempt::Data(_) | Attempt::BadBody(_) => false,
        }
    }

    /// Whether an idempotent call may try again: connect errors, timeouts, 502/503/504.
    pub fn is_retryable(&self) -> bool {
        match self {
            Attempt::Transport { connect, .. } => *connect,
            Attempt::Timeout => true,
            Attempt::Status(s) => matches!(s, 502..=504),
            Attempt::Data(_) | Attempt::BadBody(_) => false,
        }
    }
}

pub struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
    /// Largest upstream answer body relayed (`--max-message-bytes`).
    max_body: usize,
}

impl HttpClient {
    pub fn new(max_body: usize) -> HttpClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .build(connector);
        HttpClient { client, max_body }
    }

    /// `POST uri` with `headers` and the JSON `body`, all of it before `deadline`.
    pub async fn post(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
        deadline: Instant,
    ) -> Attempt {
        let mut request = Request::post(uri.clone());
        if let Some(h) = request.headers_mut() {
            h.clone_from(headers);
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let request = match request.body(Full::new(body)) {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Transport {
                    connect: false,
                    message: format!("cannot build the request: {e}"),
                }
            }
        };
        let response = match tokio::time::timeout_at(deadline, self.client.request(request)).await {
            Err(_) => return Attempt::Timeout,
            Ok(Err(e)) => {
                return Attempt::Transport {
                    connect: e.is_connect(),
                    message: describe(&e),
                }
            }
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        // The exact length when the answer declares one (`Content-Length`).
        let declared = response.body().size_hint().exact();
        let too_large = declared.is_some_and(|n| n > self.max_body as u64);
        let body = Limited::new(response.into_body(), self.max_body);
        if !status.is_success() {
            if !too_large {
                // Read (and drop) a small error body so the connection can be reused.
                let _ = tokio::time::timeout_at(deadline, body.collect()).await;
            }
            return Attempt::Status(status.as_u16());
        }
        if too_large {
            return self.too_large();
        }
        let bytes = match tokio::time::timeout_at(deadline, body.collect()).await {
            Err(_) => return Attempt::Timeout,
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return self.too_large(),
            Ok(Err(e)) => {
                return Attempt::Transport {
                    connect: false,
                    message: format!("the upstream answer broke off: {}", root(&*e)),
                }
            }
            Ok(Ok(collected)) => collected.to_bytes(),
        };
        let Ok(text) = std::str::from_utf8(&bytes) else {
            return Attempt::BadBody(format!(
                "upstream answered {} with a body that is not JSON (not UTF-8)",
                status.as_u16()
            ));
        };
        if text.trim().is_empty() {
            return Attempt::Data(Payload::Json("null".into()));
        }
        match Payload::json(text) {
            Ok(p) => Attempt::Data(p),
            Err(_) => Attempt::BadBody(format!(
                "upstream answered {} with a body that is not JSON",
                status.as_u16()
            )),
        }
    }

    fn too_large(&self) -> Attempt {
        Attempt::BadBody(format!(
            "the upstream answer is larger than {} bytes",
            self.max_body
        ))
    }
}

/// A short cause for the client: "connection refused", "connection reset", ….
fn describe(e: &hyper_util::client::legacy::Error) -> String {
    let cause = root(e);
    if e.is_connect() {
        format!("cannot connect to the upstream: {cause}")
    } else {
        format!("the upstream connection failed: {cause}")
    }
}

/// The innermost error's message (an `io::Error` kind is named plainly).
fn root(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    match cur
        .downcast_ref::<std::io::Error>()
        .map(std::io::Error::kind)
    {
        Some(std::io::ErrorKind::ConnectionRefused) => "connection refused".into(),
        Some(std::io::ErrorKind::ConnectionReset) => "connection reset".into(),
        Some(std::io::ErrorKind::ConnectionAborted) => "connection aborted".into(),
        _ => cur.to_string(),
    }
}
