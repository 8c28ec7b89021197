//! The self-test's server: the least a switchboard node does for `direct`, on one thread of
//! its own (a current-thread runtime, so its CPU time can be told apart from the client's).
//!
//! - `GET /ws`: upgrade, `welcome` on `user:<sub of the bearer JWT>` (not verified); a
//!   `publish` frame is answered with `reply ok:true` and written as a `message` frame to
//!   the socket of the channel's user, right away, by the task that read it.
//! - `POST /v1/publish` `{"channel":"user:<u>","data":…}`: the same delivery, then 200.
//!
//! No auth, no storage, no queues: a message costs one JSON parse and one socket write here.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocketWrite};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::io::WriteHalf;

use crate::proto::{json_str, switchboard::SUBPROTOCOL};

type Upgraded = TokioIo<hyper::upgrade::Upgraded>;
type Out = Arc<tokio::sync::Mutex<WebSocketWrite<WriteHalf<Upgraded>>>>;
/// User → the write half of their socket.
type Hub = Arc<Mutex<HashMap<String, Out>>>;

/// A running reflector.
#[derive(Debug)]
pub struct Reflector {
    pub addr: SocketAddr,
    /// Its thread (for its CPU time).
    pub tid: Option<u32>,
}

/// Binds 127.0.0.1:0 and serves on a new thread until the process exits.
pub fn start() -> std::io::Result<Reflector> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("selftest-reflector".into())
        .spawn(move || {
            let _ = tx.send(crate::pace::thread_id());
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("reflector runtime");
            rt.block_on(serve(listener));
        })?;
    let tid = rx.recv().ok().flatten();
    Ok(Reflector { addr, tid })
}

async fn serve(listener: std::net::TcpListener) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    let hub = Hub::default();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let hub = hub.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(req, hub.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}

fn answer(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}

async fn handle(mut req: Request<Incoming>, hub: Hub) -> Result<Response<Full<Bytes>>, Infallible> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/ws") => {
            let Some(user) = bearer_sub(&req) else {
                return Ok(answer(StatusCode::UNAUTHORIZED, "{}"));
            };
            let Ok((resp, upgraded)) = fastwebsockets::upgrade::upgrade(&mut req) else {
                return Ok(answer(StatusCode::BAD_REQUEST, "{}"));
            };
            tokio::spawn(async move {
                if let Ok(ws) = upgraded.await {
                    socket(ws.into_inner(), user, hub).await;
                }
            });
            let (mut parts, _) = resp.into_parts();
            parts.headers.insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                header::HeaderValue::from_static(SUBPROTOCOL),
            );
            Ok(Response::from_parts(parts, Full::default()))
        }
        (&Method::POST, "/v1/publish") => {
            let Ok(body) = req.into_body().collect().await else {
                return Ok(answer(StatusCode::BAD_REQUEST, "{}"));
            };
            match serde_json::from_slice::<Publish>(&body.to_bytes()) {
                Ok(p) => {
                    deliver(&hub, &p.channel, p.data).await;
                    Ok(answer(StatusCode::OK, r#"{"epoch":"selftest","offset":0}"#))
                }
                Err(_) => Ok(answer(StatusCode::BAD_REQUEST, "{}")),
            }
        }
        _ => Ok(answer(StatusCode::NOT_FOUND, "{}")),
    }
}

/// The `sub` claim of the bearer JWT (the signature is not checked).
fn bearer_sub<B>(req: &Request<B>) -> Option<String> {
    #[derive(Deserialize)]
    struct Claims {
        sub: String,
    }
    let auth = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let claims = auth.strip_prefix("Bearer ")?.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims)
        .ok()?;
    Some(serde_json::from_slice::<Claims>(&json).ok()?.sub)
}

/// A `publish` frame or a `/v1/publish` body.
#[derive(Deserialize)]
struct Publish<'a> {
    #[serde(default)]
    id: Option<u64>,
    channel: String,
    #[serde(borrow)]
    data: &'a RawValue,
}

async fn socket(io: Upgraded, user: String, hub: Hub) {
    let (r, w) = tokio::io::split(io);
    let (mut rd, wr) = fastwebsockets::after_handshake_split(r, w, Role::Server);
    rd.set_auto_close(false);
    rd.set_auto_pong(false);
    let out: Out = Arc::new(tokio::sync::Mutex::new(wr));
    let welcome = format!(
        r#"{{"type":"welcome","user":{},"channel":{}}}"#,
        json_str(&user),
        json_str(&format!("user:{user}"))
    );
    if write(&out, welcome).await.is_err() {
        return;
    }
    lock(&hub).insert(user.clone(), out.clone());
    loop {
        let Ok(frame) = rd.read_frame(&mut no_obligations).await else {
            break;
        };
        match frame.opcode {
            OpCode::Text => {
                let Ok(p) = serde_json::from_slice::<Publish>(&frame.payload) else {
                    continue;
                };
                if let Some(id) = p.id {
                    let reply = format!(r#"{{"type":"reply","id":{id},"ok":true}}"#);
                    let _ = write(&out, reply).await;
                }
                deliver(&hub, &p.channel, p.data).await;
            }
            OpCode::Close => {
                let echo = Frame::close_raw(Payload::Owned(frame.payload.to_vec()));
                let _ = out.lock().await.write_frame(echo).await;
                break;
            }
            _ => {}
        }
    }
    let mut h = lock(&hub);
    if h.get(&user).is_some_and(|o| Arc::ptr_eq(o, &out)) {
        h.remove(&user);
    }
}

/// Writes a `message` frame to the socket of `channel`'s user (`user:<u>`), if connected.
async fn deliver(hub: &Hub, channel: &str, data: &RawValue) {
    let Some(to) = channel
        .strip_prefix("user:")
        .and_then(|u| lock(hub).get(u).cloned())
    else {
        return;
    };
    let frame = format!(
        r#"{{"type":"message","channel":{},"data":{}}}"#,
        json_str(channel),
        data.get()
    );
    let _ = write(&to, frame).await;
}

async fn write(out: &Out, text: String) -> Result<(), fastwebsockets::WebSocketError> {
    let mut w = out.lock().await;
    w.write_frame(Frame::text(Payload::Owned(text.into_bytes())))
        .await
}

fn lock(hub: &Hub) -> std::sync::MutexGuard<'_, HashMap<String, Out>> {
    hub.lock().unwrap_or_else(|p| p.into_inner())
}

/// Auto pong/close are off, so the read half never has frames to send itself.
fn no_obligations(_: Frame<'_>) -> std::future::Ready<Result<(), std::io::Error>> {
    std::future::ready(Ok(()))
}
