//! The call flow against real HTTP upstreams started on port 0 in the test: routing,
//! the checks before a call, the forwarded request, the answer mapping, retries, the
//! circuit breaker and cancellation. (The end-to-end tests over a WebSocket live in
//! `tests/rpc/`.)

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request as HttpRequest, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use switchboard_proto::{Encoding, ErrorCode, Payload};
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use super::{Request, Rpc};
use crate::auth::Claims;
use crate::config::{Config, ServeArgs};
use crate::conn::outbound::Outbound;
use crate::conn::ConnHandle;

/// What the upstream answers to its `n`th request (0-based): status, body, delay.
type Behaviour = dyn Fn(usize) -> (u16, &'static str, Duration) + Send + Sync;

/// A request as the upstream saw it.
struct Seen {
    headers: http::HeaderMap,
    body: Value,
}

struct Upstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    async fn start(
        behaviour: impl Fn(usize) -> (u16, &'static str, Duration) + Send + Sync + 'static,
    ) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let behaviour: Arc<Behaviour> = Arc::new(behaviour);
        let shared = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (seen, behaviour) = (shared.clone(), behaviour.clone());
                let svc = service_fn(move |req: HttpRequest<Incoming>| {
                    let (seen, behaviour) = (seen.clone(), behaviour.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.unwrap().to_bytes();
                        let n = {
                            let mut seen = seen.lock().unwrap();
                            seen.push(Seen {
                                headers: parts.headers,
                                body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                            });
                            seen.len() - 1
                        };
                        let (status, text, delay) = behaviour(n);
                        tokio::time::sleep(delay).await;
                        let response = Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::from_static(text.as_bytes())))
                            .unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc),
                );
            }
        });
        Upstream { addr, seen }
    }

    fn url(&self) -> String {
        format!("http://{}/rpc", self.addr)
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

fn rpc(toml: &str) -> Arc<Rpc> {
    let args = ServeArgs {
        jwt_secret: Some("rpc-unit-test-secret-0123456789abcdef".into()),
        node_id: Some("gw-t".into()),
        max_message_bytes: Some("1024".into()),
        ..ServeArgs::default()
    };
    let config = Config::from_parts(&args, Some(toml)).expect("valid config");
    Arc::new(Rpc::new(&config))
}

fn conn() -> Arc<ConnHandle> {
    Arc::new(ConnHandle::new(
        1,
        "c-gw-t-x-1".into(),
        "alice".into(),
        Encoding::Json,
        0,
        Outbound::new(1024, 1 << 20),
        u64::MAX,
    ))
}

fn claims(rpc: Option<&[&str]>) -> Claims {
    Claims {
        sub: "alice".into(),
        exp: u64::MAX,
        channels: Vec::new(),
        publish: Vec::new(),
        rpc: rpc.map(|r| r.iter().map(|s| s.to_string()).collect()),
    }
}

fn request(id: u64, method: &str) -> Request {
    Request {
        id: Some(id),
        method: method.into(),
        data: Payload::Json(Arc::from(r#"{"sku":"A1"}"#)),
        traceparent: None,
    }
}

/// The next `n` frames queued on `conn`, as JSON.
async fn frames(conn: &ConnHandle, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut items = Vec::new();
        conn.outbound.take(&mut items, usize::MAX);
        out.extend(
            items
                .iter()
                .map(|i| serde_json::from_slice(&i.data).unwrap()),
        );
        if out.len() >= n {
            return out;
        }
        assert!(tokio::time::Instant::now() < deadline, "only {out:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Runs one call from `alice` and returns its reply.
async fn call(rpc: &Arc<Rpc>, method: &str) -> Value {
    let conn = conn();
    rpc.dispatch(
        &TaskTracker::new(),
        &conn,
        &claims(None),
        request(9, method),
    )
    .expect("dispatched");
    frames(&conn, 1).await.remove(0)
}

fn route(pattern: &str, url: &str, extra: &str) -> String {
    format!("[[routes]]\nmethod = \"{pattern}\"\nupstreams = [\"{url}\"]\n{extra}\n")
}

#[tokio::test]
async fn routes_match_in_order_and_the_first_match_wins() {
    let url = "http://127.0.0.1:9/rpc";
    let toml = [
        route("orders.create", url, "name = \"create\""),
        route("orders.*", url, ""),
        route("*", url, "name = \"rest\""),
    ]
    .concat();
    let rpc = rpc(&toml);
    let name = |m: &str| rpc.route(m).map(|r| r.name.clone());
    assert_eq!(name("orders.create").as_deref(), Some("create"));
    assert_eq!(name("orders.createx").as_deref(), Some("orders.*"));
    assert_eq!(name("orders.").as_deref(), Some("orders.*"));
    assert_eq!(name("orders").as_deref(), Some("rest"));
    assert_eq!(name("billing.charge").as_deref(), Some("rest"));
    let exact_only = self::rpc(&route("a.b", url, ""));
    assert!(exact_only.route("a.b").is_some());
    assert!(exact_only.route("a.bc").is_none() && exact_only.route("a").is_none());
}

#[tokio::test]
async fn the_checks_before_a_call_answer_at_once() {
    let slow = Upstream::start(|_| (200, "{}", Duration::from_secs(30))).await;
    let rpc = rpc(&format!(
        "rpc_max_inflight = 2\n{}",
        route("orders.*", &slow.url(), "")
    ));
    let (tracker, conn) = (TaskTracker::new(), conn());
    let code = |r: Result<(), (ErrorCode, String)>| r.err().map(|e| e.0);
    let call = |c: &Claims, m: &str| rpc.dispatch(&tracker, &conn, c, request(1, m));
    assert_eq!(code(call(&claims(None), "")), Some(ErrorCode::BadFrame));
    let limited = claims(Some(&["billing.*"]));
    assert_eq!(
        code(call(&limited, "orders.create")),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        code(call(&limited, "billing.charge")),
        Some(ErrorCode::NoRoute)
    );
    assert_eq!(code(call(&claims(None), "orders.a")), None);
    assert_eq!(code(call(&claims(None), "orders.b")), None);
    assert_eq!(
        code(call(&claims(None), "orders.c")),
        Some(ErrorCode::TooManyRequests)
    );
    // The socket goes: both calls are cancelled, without replies, and their slots freed.
    while slow.count() < 2 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    conn.cancel_rpc();
    tracker.close();
    tokio::time::timeout(Duration::from_secs(5), tracker.wait())
        .await
        .expect("cancelled calls end at once");
    let mut items = Vec::new();
    conn.outbound.take(&mut items, usize::MAX);
    assert!(items.is_empty(), "no reply for a cancelled call");
    assert_eq!(
        conn.rpc_inflight.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[tokio::test]
async fn the_request_carries_identity_and_trace_and_the_answer_comes_back() {
    let up = Upstream::start(|_| (200, r#"{"order":"o-17"}"#, Duration::ZERO)).await;
    let rpc = rpc(&route("orders.*", &up.url(), ""));
    let (tracker, conn) = (TaskTracker::new(), conn());
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut req = request(6, "orders.create");
    req.traceparent = Some(tp.into());
    rpc.dispatch(&tracker, &conn, &claims(None), req).unwrap();
    let reply = frames(&conn, 1).await.remove(0);
    assert_eq!(reply["type"], "reply");
    assert_eq!(reply["id"], 6);
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["data"]["order"], "o-17");
    let seen = up.seen.lock().unwrap();
    let h = &seen[0].headers;
    assert_eq!(
        seen[0].body,
        serde_json::json!({"method":"orders.create","data":{"sku":"A1"}})
    );
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["x-switchboard-user"], "alice");
    assert_eq!(h["x-switchboard-conn"], "c-gw-t-x-1");
    assert_eq!(h["x-switchboard-node"], "gw-t");
    let sent = h["traceparent"].to_str().unwrap();
    assert!(
        sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{sent}"
    );
    assert!(sent.ends_with("-01") && sent != tp, "{sent}");
}

#[tokio::test]
async fn answers_map_to_reply_codes() {
    let up = Upstream::start(|n| match n {
        0 => (200, "", Duration::ZERO),
        1 => (200, "not json", Duration::ZERO),
        2 => (404, "{}", Duration::ZERO),
        3 => (200, "{}", Duration::from_secs(5)),
        _ => (
            200,
            Box::leak("1".repeat(2000).into_boxed_str()),
            Duration::ZERO,
        ),
    })
    .await;
    let rpc = rpc(&route("m", &up.url(), "timeout_ms = 100"));
    let empty = call(&rpc, "m").await;
    assert_eq!(
        (empty["ok"].as_bool(), &empty["data"]),
        (Some(true), &Value::Null)
    );
    let code = |r: &Value| r["error"]["code"].as_str().unwrap_or_default().to_owned();
    assert_eq!(code(&call(&rpc, "m").await), "upstream_error");
    let r = call(&rpc, "m").await;
    assert_eq!(
        (code(&r), r["error"]["message"].as_str()),
        ("upstream_error".into(), Some("upstream answered 404"))
    );
    assert_eq!(code(&call(&rpc, "m").await), "upstream_timeout");
    let r = call(&rpc, "m").await;
    assert_eq!(
        code(&r),
        "upstream_error",
        "larger than --max-message-bytes: {r}"
    );

    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/", l.local_addr().unwrap())
    };
    let rpc = self::rpc(&route("m", &refused, ""));
    let r = call(&rpc, "m").await;
    assert_eq!(code(&r), "upstream_unavailable", "{r}");
}

#[tokio::test]
async fn only_idempotent_routes_retry_and_they_stop_at_the_count() {
    let up = Upstream::start(|_| (503, "", Duration::ZERO)).await;
    let rpc = rpc(&[
        route("once", &up.url(), ""),
        route(
            "thrice",
            &up.url(),
            "idempotent = true\nretries = 2\nbreaker_failures = 100",
        ),
    ]
    .concat());
    assert_eq!(call(&rpc, "once").await["error"]["code"], "upstream_error");
    assert_eq!(up.count(), 1);
    let r = call(&rpc, "thrice").await;
    assert_eq!(r["error"]["message"], "upstream answered 503");
    assert_eq!(up.count(), 4, "one call and two retries");

    // A 500 is not retried, even on an idempotent route.
    let up = Upstream::start(|_| (500, "", Duration::ZERO)).await;
    let rpc = self::rpc(&route("m", &up.url(), "idempotent = true\nretries = 3"));
    call(&rpc, "m").await;
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn the_circuit_opens_answers_fast_and_closes_after_a_healthy_probe() {
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = healthy.clone();
    let up = Upstream::start(move |_| {
        if flag.load(std::sync::atomic::Ordering::SeqCst) {
            (200, "1", Duration::ZERO)
        } else {
            (500, "", Duration::ZERO)
        }
    })
    .await;
    let rpc = rpc(&route(
        "m",
        &up.url(),
        "breaker_failures = 2\nbreaker_open_ms = 200",
    ));
    for _ in 0..2 {
        assert_eq!(call(&rpc, "m").await["error"]["code"], "upstream_error");
    }
    let r = call(&rpc, "m").await;
    assert_eq!(r["error"]["code"], "upstream_unavailable");
    assert!(r["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("circuit is open"));
    assert_eq!(up.count(), 2, "an open circuit sends nothing upstream");
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(call(&rpc, "m").await["data"], 1, "the probe goes through");
    assert_eq!(call(&rpc, "m").await["data"], 1, "closed again");
    assert_eq!(up.count(), 4);
}

#[tokio::test]
async fn round_robin_spreads_calls_and_skips_open_circuits() {
    let a = Upstream::start(|_| (200, "\"a\"", Duration::ZERO)).await;
    let b = Upstream::start(|_| (503, "", Duration::ZERO)).await;
    let toml = format!(
        "[[routes]]\nmethod = \"m\"\nupstreams = [\"{}\", \"{}\"]\nbreaker_failures = 1\n",
        a.url(),
        b.url()
    );
    let rpc = rpc(&toml);
    let mut answers = Vec::new();
    for _ in 0..6 {
        answers.push(call(&rpc, "m").await);
    }
    assert_eq!(
        (a.count(), b.count()),
        (5, 1),
        "b's circuit opened after its failure"
    );
    assert_eq!(answers.iter().filter(|r| r["ok"] == true).count(), 5);
}
