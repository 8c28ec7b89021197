//! `--jwt-jwks-url` through the binary, against a local JWKS server whose answer the test
//! controls (and whose fetches it counts).
//!
//! # Layout
//! - this file: the JWKS server, keys as JWKs, token minting, node start-up and checks.
//! - [`rotation`]: keys rotated without a restart, an unknown `kid` (one refresh, then
//!   refused), a flood of random `kid`s (bounded fetches), the endpoint down (last good set
//!   kept, metrics say so).
//! - [`rejections`]: a key with the wrong `alg`, `alg: none`, HS256 signed with a public
//!   key's bytes, `aud`/`iss`.
//! - [`startup`]: the first fetch fails → exit 1 (unless allowed), bad settings → exit 64.

use switchboard_testkit as support;

mod rejections;
mod rotation;
mod startup;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use support::{now_secs, Node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the JWKS server answers.
#[derive(Clone, Debug)]
enum Answer {
    /// 200 with this body and `Cache-Control` header.
    Keys { body: String, cache_control: String },
    /// This status and a short body.
    Status(u16),
    /// Close the connection without answering.
    Hang,
}

/// A JWKS endpoint on 127.0.0.1 (a free port), one HTTP/1.1 answer per connection.
struct JwksServer {
    port: u16,
    answer: Arc<Mutex<Answer>>,
    fetches: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JwksServer {
    async fn start(answer: Answer) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let answer = Arc::new(Mutex::new(answer));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (a, f) = (answer.clone(), fetches.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (a, f) = (a.clone(), f.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                        if head.first() == Some(&0x16) {
                            // A TLS ClientHello: answer like a plain HTTP server does.
                            let bad = b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n";
                            let _ = socket.write_all(bad).await;
                            return;
                        }
                    }
                    f.fetch_add(1, Ordering::SeqCst);
                    let answer = a.lock().unwrap().clone();
                    let response = match answer {
                        Answer::Keys {
                            body,
                            cache_control,
                        } => format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                             Cache-Control: {cache_control}\r\nContent-Length: {}\r\n\
                             Connection: close\r\n\r\n{body}",
                            body.len()
                        ),
                        Answer::Status(code) => format!(
                            "HTTP/1.1 {code} Oops\r\nContent-Length: 4\r\nConnection: close\r\n\r\noops"
                        ),
                        Answer::Hang => return,
                    };
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        JwksServer {
            port,
            answer,
            fetches,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/.well-known/jwks.json", self.port)
    }

    fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// A test key: its private half signs, its public JWK is published.
#[derive(Clone, Copy, Debug)]
enum TestKey {
    Rsa,
    RsaOther,
    Ec256,
    Ec384,
    Ed25519,
}

impl TestKey {
    fn file(self) -> &'static str {
        match self {
            TestKey::Rsa => "rsa.key",
            TestKey::RsaOther => "rsa-other.key",
            TestKey::Ec256 => "ec256.key",
            TestKey::Ec384 => "ec384.key",
            TestKey::Ed25519 => "ed25519.key",
        }
    }

    fn alg(self) -> Algorithm {
        match self {
            TestKey::Rsa | TestKey::RsaOther => Algorithm::RS256,
            TestKey::Ec256 => Algorithm::ES256,
            TestKey::Ec384 => Algorithm::ES384,
            TestKey::Ed25519 => Algorithm::EdDSA,
        }
    }

    fn encoding(self) -> EncodingKey {
        let pem = std::fs::read(format!(
            "{}/tests/keys/{}",
            env!("CARGO_MANIFEST_DIR"),
            self.file()
        ))
        .expect("test key");
        match self {
            TestKey::Rsa | TestKey::RsaOther => EncodingKey::from_rsa_pem(&pem),
            TestKey::Ec256 | TestKey::Ec384 => EncodingKey::from_ec_pem(&pem),
            TestKey::Ed25519 => EncodingKey::from_ed_pem(&pem),
        }
        .expect("private key")
    }

    /// The public JWK under `kid`, with its `alg` and `use: sig`.
    fn jwk(self, kid: &str) -> Value {
        install_crypto();
        let jwk = Jwk::from_encoding_key(&self.encoding(), self.alg()).expect("jwk");
        let mut v = serde_json::to_value(jwk).expect("json");
        v["kid"] = json!(kid);
        v["use"] = json!("sig");
        v
    }

    /// A token signed with this key for `alg`, naming `kid`.
    fn sign(self, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        install_crypto();
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding()).expect("sign")
    }
}

fn install_crypto() {
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
}

/// A 200 answer with these JWKs and `Cache-Control: max-age=<max_age>`.
fn keys(jwks: &[Value], max_age: u64) -> Answer {
    Answer::Keys {
        body: json!({ "keys": jwks }).to_string(),
        cache_control: format!("public, max-age={max_age}"),
    }
}

/// Claims for `alice`, valid for an hour, plus `extra` (null removes a claim).
fn claims(extra: Value) -> Value {
    let mut c = json!({"sub": "alice", "exp": now_secs() + 3600, "channels": ["room:*"]});
    for (k, v) in extra.as_object().expect("object") {
        if v.is_null() {
            c.as_object_mut().expect("object").remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

/// A node verifying tokens with `server`'s keys (no `--jwt-secret`), plus `args`.
async fn node(server: &JwksServer, args: &[&str]) -> Node {
    let url = server.url();
    let mut all = vec!["--jwt-jwks-url", url.as_str()];
    all.extend_from_slice(args);
    support::start_env(&all, &[("SWITCHBOARD_JWT_SECRET", "")]).await
}

/// Whether the upgrade with `token` is accepted; a refusal must be 401 `invalid_token`.
async fn admits(node: &Node, token: &str) -> bool {
    match node.connect_query(&format!("token={token}"), &[]).await {
        Ok(mut c) => {
            let welcome = c.recv().await;
            assert_eq!(welcome["type"], "welcome", "{welcome}");
            assert_eq!(welcome["user"], "alice", "{welcome}");
            c.close().await;
            true
        }
        Err(r) => {
            assert_eq!(r.status, 401, "{:?}", r.body);
            assert_eq!(r.body["error"], "invalid_token", "{:?}", r.body);
            false
        }
    }
}

#[track_caller]
fn assert_refused(admitted: bool, what: &str) {
    assert!(!admitted, "{what} was accepted");
}

/// Polls `check` every 100 ms until it holds, for at most `within`.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
