//! A programmable HTTP/1 upstream on a free loopback port (hyper 1 server), standing in for
//! the backend services the gateway forwards RPC calls to.
//!
//! Each test gives it a behaviour: a function from the request it received to an
//! [`Answer`] (status, body, content type, a delay, or "hold until released"). It records
//! every request (method, path, headers, body), counts requests in flight, and notices when
//! a request's handler is dropped before it answered — what hyper does when the client
//! closes the connection mid-request, i.e. when the gateway cancels a call.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::support::WAIT;

/// One request as the upstream received it.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    /// 1-based arrival order at this upstream.
    pub hit: usize,
}

impl Received {
    /// The body as JSON; panics with the raw body when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "the upstream received a non-JSON body ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The `data` the client sent (the body's `data` key).
    pub fn data(&self) -> Value {
        self.json()["data"].clone()
    }

    /// Header `name` as text; panics (listing every header) when it is missing.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("the upstream request has no {name}: {:?}", self.headers))
            .to_str()
            .expect("header is ASCII")
    }
}

/// What the upstream answers to one request.
#[derive(Clone, Debug)]
pub struct Answer {
    status: u16,
    body: Bytes,
    content_type: Option<&'static str>,
    delay: Duration,
    hold: bool,
}

impl Answer {
    /// 200 with `value` as a JSON body.
    pub fn json(value: Value) -> Self {
        Self::raw(200, Some("application/json"), value.to_string())
    }

    /// `status` with a small JSON error body.
    pub fn status(status: u16) -> Self {
        Self::raw(
            status,
            Some("application/json"),
            json!({"error": format!("fake upstream says {status}")}).to_string(),
        )
    }

    /// Any status, content type and body.
    pub fn raw(status: u16, content_type: Option<&'static str>, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            body: body.into(),
            content_type,
            delay: Duration::ZERO,
            hold: false,
        }
    }

    /// Answers only after `delay`.
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Answers only once [`Upstream::release`] was called (at once if it already was).
    pub fn held(mut self) -> Self {
        self.hold = true;
        self
    }
}

type Behaviour = Arc<dyn Fn(&Received) -> Answer + Send + Sync>;

struct State {
    behaviour: Mutex<Behaviour>,
    received: Mutex<Vec<Received>>,
    hits: AtomicUsize,
    inflight: AtomicUsize,
    max_inflight: AtomicUsize,
    /// Requests whose handler was dropped before answering (the client went away).
    dropped: AtomicUsize,
    /// Opened by `release`; held answers wait for it.
    gate: watch::Sender<bool>,
}

/// Counts a request in flight; on drop, records whether it answered or was cancelled.
struct Flight {
    state: Arc<State>,
    answered: bool,
}

impl Flight {
    fn new(state: &Arc<State>) -> Self {
        let now = state.inflight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_inflight.fetch_max(now, Ordering::SeqCst);
        Self {
            state: state.clone(),
            answered: false,
        }
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        self.state.inflight.fetch_sub(1, Ordering::SeqCst);
        if !self.answered {
            self.state.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A running fake upstream; stops accepting when dropped.
pub struct Upstream {
    pub addr: SocketAddr,
    state: Arc<State>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Upstream {
    /// Starts an upstream answering every request with `behaviour`.
    pub async fn start(behaviour: impl Fn(&Received) -> Answer + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream address");
        let state = Arc::new(State {
            behaviour: Mutex::new(Arc::new(behaviour)),
            received: Mutex::new(Vec::new()),
            hits: AtomicUsize::new(0),
            inflight: AtomicUsize::new(0),
            max_inflight: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
            gate: watch::Sender::new(false),
        });
        let accept_state = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = accept_state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(state.clone(), req));
                    // An error here is the gateway closing the connection mid-request.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            state,
            accept,
        }
    }

    /// An upstream answering 200 with the `data` it was sent, as-is.
    pub async fn echo() -> Self {
        Self::start(|r| Answer::json(r.data())).await
    }

    /// The URL to configure: `http://<addr>/rpc`.
    pub fn url(&self) -> String {
        format!("http://{}/rpc", self.addr)
    }

    /// Replaces the behaviour for requests arriving from now on.
    pub fn set(&self, behaviour: impl Fn(&Received) -> Answer + Send + Sync + 'static) {
        *self.state.behaviour.lock().unwrap() = Arc::new(behaviour);
    }

    /// Lets every held answer (now and later) go.
    pub fn release(&self) {
        self.state.gate.send_replace(true);
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// Requests being handled right now.
    pub fn inflight(&self) -> usize {
        self.state.inflight.load(Ordering::SeqCst)
    }

    /// The most requests ever handled at once.
    pub fn max_inflight(&self) -> usize {
        self.state.max_inflight.load(Ordering::SeqCst)
    }

    /// Requests abandoned by the client before the upstream answered.
    pub fn dropped(&self) -> usize {
        self.state.dropped.load(Ordering::SeqCst)
    }

    /// Every request received so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// The only request received; panics unless there was exactly one.
    pub fn only(&self) -> Received {
        let all = self.received();
        assert_eq!(
            all.len(),
            1,
            "expected exactly one upstream request: {all:#?}"
        );
        all.into_iter().next().unwrap()
    }

    /// Waits (bounded by `support::WAIT`) until `pred` holds; panics naming `what`.
    pub async fn wait(&self, what: &str, pred: impl Fn(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !pred(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "upstream {}: timed out waiting for {what} (hits {}, in flight {}, dropped {})",
                self.addr,
                self.hits(),
                self.inflight(),
                self.dropped()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut flight = Flight::new(&state);
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let received = {
        let mut all = state.received.lock().unwrap();
        let hit = state.hits.fetch_add(1, Ordering::SeqCst) + 1;
        let r = Received {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            headers: parts.headers,
            body,
            hit,
        };
        all.push(r.clone());
        r
    };
    let behaviour = state.behaviour.lock().unwrap().clone();
    let answer = behaviour(&received);
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    if answer.hold {
        let mut gate = state.gate.subscribe();
        let _ = gate.wait_for(|open| *open).await;
    }
    let mut res = Response::builder().status(answer.status);
    if let Some(ct) = answer.content_type {
        res = res.header("content-type", ct);
    }
    flight.answered = true;
    Ok(res.body(Full::new(answer.body)).expect("response"))
}

/// A URL on a loopback port where nothing listens (connection refused).
pub fn refused_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}/rpc")
}
