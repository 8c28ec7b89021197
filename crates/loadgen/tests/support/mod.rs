//! Test support: a real gateway (`target/debug/switchboard`, built on first use when
//! missing) on port 0, a `redis-server` on a free port, and the load generator binary run
//! with `--json` so the result object can be checked.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const SECRET: &str = "dev-secret-change-me-0123456789abcdef";
pub const API_KEY: &str = "dev-api-key-for-the-loadgen-tests";

pub fn loadgen_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_switchboard-loadgen"))
}

/// `target/debug/switchboard` next to the load generator; built once when missing.
pub fn gateway_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let bin = loadgen_bin().with_file_name("switchboard");
            if !bin.exists() {
                let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
                let ok = Command::new(cargo)
                    .args(["build", "-p", "switchboard-gateway"])
                    .status()
                    .expect("cargo build -p switchboard-gateway")
                    .success();
                assert!(ok && bin.exists(), "could not build {}", bin.display());
            }
            bin
        })
        .clone()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A redis-server on a free port, killed on drop.
pub struct Redis {
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

impl Redis {
    pub fn start() -> Redis {
        let dir = std::env::temp_dir().join(format!("lg-redis-{}", rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        for _ in 0..10 {
            let port = free_port();
            let mut child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server must be installed (make deps)");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
                if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                    let _ = s.write_all(b"PING\r\n");
                    let mut buf = [0u8; 7];
                    if s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n" {
                        return Redis { port, child, dir };
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not start");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rand_suffix() -> String {
    static N: Mutex<u32> = Mutex::new(0);
    let mut n = N.lock().unwrap();
    *n += 1;
    format!("{}-{}", std::process::id(), *n)
}

/// One gateway node on port 0, killed on drop.
pub struct Node {
    pub public: String,
    pub internal: String,
    child: Child,
}

impl Node {
    /// Starts a node (embedded backplane without `redis`), waits for /readyz 200.
    pub fn start(redis: Option<&Redis>, extra: &[&str]) -> Node {
        let mut cmd = Command::new(gateway_bin());
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--rate-limit",
            "0",
            "--namespaces",
            "feed",
            "--log-level",
            "warn",
        ])
        .args(extra)
        .env("SWITCHBOARD_JWT_SECRET", SECRET)
        .env("SWITCHBOARD_API_KEY", API_KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        if let Some(r) = redis {
            cmd.args(["--redis-url", &r.url()]);
        }
        let mut child = cmd.spawn().expect("start the gateway");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening public=").nth(1) {
                    if let Some(tx) = tx.take() {
                        let mut parts = rest.split_whitespace();
                        let public = parts.next().unwrap_or_default().to_owned();
                        let internal = parts
                            .next()
                            .and_then(|p| p.strip_prefix("internal="))
                            .unwrap_or_default()
                            .to_owned();
                        let _ = tx.send((public, internal));
                    }
                }
            }
        });
        let (public, internal) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the gateway printed no listening line");
        let node = Node {
            public,
            internal,
            child,
        };
        node.wait_ready();
        node
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if http_get_status(&self.internal, "/readyz") == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("node {} not ready", self.internal);
    }

    pub fn api_url(&self) -> String {
        format!("http://{}", self.internal)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM (a drain); waits for the exit and returns its status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM failed");
        self.child.wait().unwrap().code()
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn http_get_status(addr: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The common flags for these nodes.
pub fn common(nodes: &[&Node]) -> Vec<String> {
    let targets: Vec<&str> = nodes.iter().map(|n| n.public.as_str()).collect();
    let apis: Vec<String> = nodes.iter().map(|n| n.api_url()).collect();
    [
        "--targets",
        &targets.join(","),
        "--api",
        &apis.join(","),
        "--jwt-secret",
        SECRET,
        "--api-key",
        API_KEY,
        "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A finished load generator run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub json: Value,
}

impl Run {
    pub fn ready_line(&self) -> &str {
        let ready: Vec<&str> = self
            .stdout
            .lines()
            .filter(|l| l.starts_with("ready "))
            .collect();
        assert_eq!(ready.len(), 1, "exactly one ready line: {}", self.stdout);
        ready[0]
    }

    /// `json[a][b]…` as u64 (0 when absent).
    pub fn n(&self, path: &[&str]) -> u64 {
        let mut v = &self.json;
        for p in path {
            v = &v[*p];
        }
        v.as_u64().unwrap_or(0)
    }

    /// Exit 0; all `n` messages scheduled, sent, acked and delivered once, in order, each
    /// with a latency and a send lag; no recovery failed.
    pub fn assert_all_delivered(&self, n: u64) {
        assert_eq!(self.code, 0, "{}", self.stdout);
        for k in ["scheduled", "sent", "acked", "delivered"] {
            assert_eq!(self.n(&["messages", k]), n, "{k}: {}", self.stdout);
        }
        for k in [
            "lost",
            "duplicated",
            "out_of_order",
            "send_failed",
            "unconfirmed",
        ] {
            assert_eq!(self.n(&["messages", k]), 0, "{k}: {}", self.stdout);
        }
        assert_eq!(self.n(&["latency_us", "count"]), n);
        assert_eq!(self.n(&["send_lag_us", "count"]), n);
        assert_eq!(self.n(&["recovery_failed"]), 0);
    }
}

/// Runs the load generator to the end. `during` runs once the ready line was printed.
pub fn loadgen(args: &[String], during: impl FnOnce()) -> Run {
    let json = std::env::temp_dir().join(format!("lg-result-{}.json", rand_suffix()));
    let mut child = Command::new(loadgen_bin())
        .args(args)
        .arg("--json")
        .arg(&json)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    let mut during = Some(during);
    for line in lines.by_ref() {
        let line = line.unwrap();
        stdout.push_str(&line);
        stdout.push('\n');
        if line.starts_with("ready ") {
            if let Some(f) = during.take() {
                f();
            }
        }
    }
    let status = child.wait().unwrap();
    let code = status.code().unwrap_or(-1);
    let result = std::fs::read_to_string(&json)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let _ = std::fs::remove_file(&json);
    Run {
        code,
        stdout,
        json: result,
    }
}

/// Builds an argument list.
pub fn args(common: &[String], rest: &[&str]) -> Vec<String> {
    rest.iter()
        .map(|s| s.to_string())
        .chain(common.iter().cloned())
        .collect()
}
