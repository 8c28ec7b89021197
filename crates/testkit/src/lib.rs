//! The gateway's test support, shared by every test binary of `crates/gateway/tests/`
//! (each one reads `use switchboard_testkit as support;`): spawns the real `switchboard`
//! binary on port 0, mints tokens, and drives it with real WebSocket and HTTP clients.
//!
//! # Layout
//! - this file: a node ([`start`], [`Node`]), tokens, shared helpers.
//! - `client`: the WebSocket [`Client`] (JSON and protobuf frames, replies, rooms).
//! - `api`: a keep-alive server-API client, metrics and process memory, `since`.
//! - [`metrics`]: samples of `/metrics`, their sums and single values.
//! - [`cluster`]: several nodes on one Redis or a Redis Cluster.
//! - [`redis`]: the Redis behind a cluster and a tiny RESP client.
//! - [`proxy`]: a TCP fault proxy in front of Redis.
//! - [`refused`]: starts that must fail.
//! - `backends`: the [`backend_tests!`] and [`on_both_redis!`] test macros.

mod api;
mod backends;
mod client;
pub mod cluster;
pub mod metrics;
pub mod proxy;
pub mod redis;
pub mod refused;

pub use api::{connect_since, position, ApiClient};
pub use client::{Client, Refused, Ws};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const SECRET: &str = "test-secret-0123456789-abcdefghij";
pub const API_KEY: &str = "test-api-key-0123456789";
/// How long any single expected event may take.
pub const WAIT: Duration = Duration::from_secs(5);

/// The gateway's clock (`now_ms` compares with a message's `ts`).
pub use switchboard_proto::clock::{now_ms, now_secs};

/// The `switchboard` binary under test. Cargo builds it into `target/<profile>/` before
/// it runs the gateway's integration tests, whose binaries are in `target/<profile>/deps/`.
pub fn gateway_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary runs from target/<profile>/deps/");
    let bin = profile_dir.join(format!("switchboard{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run the gateway's tests with `cargo test -p switchboard-gateway`",
        bin.display()
    );
    bin
}

/// A running gateway process; killed on drop.
pub struct Node {
    pub child: Child,
    pub public: SocketAddr,
    pub internal: SocketAddr,
    pub node_id: String,
}

/// Starts a node with the test secret and API key plus `args`.
pub async fn start(args: &[&str]) -> Node {
    start_env(args, &[]).await
}

/// Starts a node with extra environment variables.
pub async fn start_env(args: &[&str], env: &[(&str, &str)]) -> Node {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let node_id = format!(
        "t{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    spawn_node(&node_id, "127.0.0.1:0", args, env).await
}

/// Spawns `switchboard serve` as `node_id` on the public address `listen` (internal port
/// 0) with the test secret and API key, and waits for its `listening …` line.
pub async fn spawn_node(node_id: &str, listen: &str, args: &[&str], env: &[(&str, &str)]) -> Node {
    // `SWITCHBOARD_TEST_LOG=switchboard=debug,switchboard_router=debug cargo test …`
    // shows the nodes' debug logs (on stderr, with the test's output).
    let log_level = std::env::var("SWITCHBOARD_TEST_LOG").unwrap_or_else(|_| "warn".into());
    let mut cmd = Command::new(gateway_bin());
    cmd.arg("serve")
        .args(["--listen", listen, "--admin-listen", "127.0.0.1:0"])
        .args(["--node-id", node_id, "--log-level", &log_level])
        .args(args)
        .env_clear()
        .env("SWITCHBOARD_JWT_SECRET", SECRET)
        .env("SWITCHBOARD_API_KEY", API_KEY)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn switchboard");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if line.contains("listening public=") {
                return line;
            }
        }
        panic!("switchboard {node_id} exited before listening");
    })
    .await
    .expect("switchboard did not print its listening line in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let addr = |key: &str| -> SocketAddr {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .expect("address in listening line")
            .parse()
            .expect("socket address")
    };
    Node {
        public: addr("public="),
        internal: addr("internal="),
        child,
        node_id: node_id.to_owned(),
    }
}

/// Runs the binary to completion with `args` (for config errors and `token`). Killed if
/// the future is dropped first (a caller's timeout when it serves instead of exiting).
pub async fn run_binary(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(gateway_bin())
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run switchboard")
}

/// Signs `claims` with the test secret (HS256).
pub fn sign(claims: &Value) -> String {
    sign_with(claims, jsonwebtoken::Algorithm::HS256, SECRET.as_bytes())
}

pub fn sign_with(claims: &Value, alg: jsonwebtoken::Algorithm, secret: &[u8]) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(secret);
    jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), claims, &key).expect("sign")
}

/// A token for `sub` that may subscribe to and publish on `room:*` and DM `user:*`.
pub fn token(sub: &str) -> String {
    sign(&json!({
        "sub": sub,
        "exp": now_secs() + 3600,
        "channels": ["room:*"],
        "publish": ["room:*", "user:*"],
    }))
}

impl Node {
    pub fn ws_url(&self, query: &str) -> String {
        if query.is_empty() {
            format!("ws://{}/ws", self.public)
        } else {
            format!("ws://{}/ws?{query}", self.public)
        }
    }

    /// Connects as `sub` (JSON) and returns the client with its welcome frame.
    pub async fn connect(&self, sub: &str) -> (Client, Value) {
        self.connect_token(&token(sub)).await
    }

    /// Connects with `query` and extra headers; `Err` holds a refused upgrade.
    pub async fn connect_query(
        &self,
        query: &str,
        headers: &[(&str, &str)],
    ) -> Result<Client, Refused> {
        let mut req = self.ws_url(query).into_client_request().expect("request");
        let mut proto = false;
        for (k, v) in headers {
            if k.eq_ignore_ascii_case("sec-websocket-protocol")
                && v.contains("switchboard.v1.proto")
            {
                proto = !v.contains("switchboard.v1.json") || v.find("proto") < v.find("json");
            }
            req.headers_mut().insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => Ok(Client { ws, proto }),
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
                let status = res.status().as_u16();
                let body = res
                    .body()
                    .as_ref()
                    .and_then(|b| serde_json::from_slice(b).ok())
                    .unwrap_or(Value::Null);
                Err(Refused { status, body })
            }
            Err(e) => panic!("websocket connect failed: {e}"),
        }
    }

    /// Connects with the protobuf subprotocol as `sub`.
    pub async fn connect_proto(&self, sub: &str) -> Client {
        self.connect_query(
            &format!("token={}", token(sub)),
            &[("sec-websocket-protocol", "switchboard.v1.proto")],
        )
        .await
        .expect("connect proto")
    }

    /// Calls the server API with the test key. Returns status and JSON body.
    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, bytes) = self
            .http(
                self.internal,
                method,
                path,
                &[
                    ("authorization", &format!("Bearer {API_KEY}")),
                    ("content-type", "application/json"),
                ],
                body.map(|b| Bytes::from(b.to_string())).unwrap_or_default(),
            )
            .await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// A raw HTTP request to `addr`.
    pub async fn http(
        &self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> (u16, Bytes) {
        let client: HttpClient<_, Full<Bytes>> =
            HttpClient::builder(TokioExecutor::new()).build_http();
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = tokio::time::timeout(WAIT, client.request(req.body(Full::new(body)).unwrap()))
            .await
            .expect("http request timed out")
            .expect("http request");
        let status = res.status().as_u16();
        let body = res.into_body().collect().await.expect("body").to_bytes();
        (status, body)
    }

    /// GET on the internal port without the API key (healthz, readyz, metrics).
    pub async fn get_internal(&self, path: &str) -> (u16, String) {
        let (s, b) = self
            .http(self.internal, "GET", path, &[], Bytes::new())
            .await;
        (s, String::from_utf8_lossy(&b).into_owned())
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let pid = self.child.id().expect("running") as i32;
        // SAFETY-free: use the kill command to avoid a libc dependency.
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill");
    }
}

// --- Protobuf frames and custom tokens (protocol.rs, api.rs) -------------------------

impl Node {
    /// Connects (JSON) with an explicit token and returns the client with its welcome.
    pub async fn connect_token(&self, token: &str) -> (Client, Value) {
        let mut c = self
            .connect_query(&format!("token={token}"), &[])
            .await
            .expect("connect");
        let welcome = c.recv().await;
        assert_eq!(
            welcome["type"], "welcome",
            "first frame must be welcome: {welcome}"
        );
        (c, welcome)
    }

    /// Connects with the protobuf subprotocol and an explicit token; returns the client
    /// with its welcome.
    pub async fn connect_proto_token(
        &self,
        token: &str,
    ) -> (Client, switchboard_proto::pb::Welcome) {
        let mut c = self
            .connect_query(
                &format!("token={token}"),
                &[("sec-websocket-protocol", "switchboard.v1.proto")],
            )
            .await
            .expect("connect proto");
        match c.recv_pb().await {
            switchboard_proto::pb::frame::Kind::Welcome(w) => (c, w),
            other => panic!("first frame must be welcome, got {other:?}"),
        }
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics_text(&self) -> String {
        let (status, text) = self.get_internal("/metrics").await;
        assert_eq!(status, 200, "/metrics: {text}");
        text
    }
}

// --- Shared by several test binaries ------------------------------------------------

/// The JSON `presence` frame of `user` on `channel` (`event`: "join" or "leave").
pub fn presence_frame(channel: &str, user: &str, event: &str) -> Value {
    json!({"type": "presence", "channel": channel, "user": user, "event": event})
}

/// A protobuf payload holding JSON text.
pub fn json_payload(text: &str) -> Option<switchboard_proto::pb::Payload> {
    use switchboard_proto::pb::{payload::Kind, Payload};
    Some(Payload {
        kind: Some(Kind::Json(text.to_owned())),
    })
}

/// A protobuf payload holding bytes.
pub fn binary_payload(bytes: &[u8]) -> Option<switchboard_proto::pb::Payload> {
    use switchboard_proto::pb::{payload::Kind, Payload};
    Some(Payload {
        kind: Some(Kind::Binary(Bytes::copy_from_slice(bytes))),
    })
}

/// Any WebSocket frame, exactly as given (tungstenite only masks it).
pub fn raw_frame(opcode: OpCode, fin: bool, payload: impl Into<Bytes>) -> Message {
    let header = FrameHeader {
        is_final: fin,
        opcode,
        ..FrameHeader::default()
    };
    Message::Frame(Frame::from_payload(header, payload.into()))
}

/// Awaits a spawned task, re-raising its panic with the original message.
pub async fn join_task<T>(task: tokio::task::JoinHandle<T>) -> T {
    match task.await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// A free loopback port (bound and released; for a process that must be told its port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Writes `toml` to a fresh file in the temp dir (for `--config`).
pub fn write_config(toml: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "switchboard-test-{}-{}.toml",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::write(&path, toml).expect("write config");
    path
}

/// Starts a node with `toml` as its `--config` file (and extra flags).
pub async fn start_with_config(toml: &str, args: &[&str]) -> Node {
    let path = write_config(toml);
    let mut all = vec!["--config", path.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    let node = start(&all).await;
    let _ = std::fs::remove_file(&path);
    node
}

/// Runs `switchboard serve` on port 0 (public and internal) with `args` and `env` to its
/// exit, for starts that must fail; `None` when it is still running after `within` (it is
/// killed then).
pub async fn serve_to_exit(
    args: &[&str],
    env: &[(&str, &str)],
    within: Duration,
) -> Option<std::process::Output> {
    let mut all = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ];
    all.extend_from_slice(args);
    tokio::time::timeout(within, run_binary(&all, env))
        .await
        .ok()
}
