//! The browser client and the demo app in real headless Chromium (issue 7): the Rust
//! side starts Redis and gateway nodes (`--demo`), runs one scenario script of
//! `crates/gateway/web/e2e/` per test with Node (the scripts drive Debian's
//! `/usr/bin/chromium` through `playwright-core`), reads the one JSON result line the
//! script prints, and asserts on it. Every demo page the scenarios open is saved as a
//! screenshot in `target/artifacts/screenshots/`.
//!
//! # Layout
//! - this file: preflight (Chromium and the npm packages must be installed: `make deps`),
//!   running a scenario script, nodes on a chosen port.
//! - [`chat`]: two pages chat through two different nodes.
//! - [`drain`]: a page survives a SIGTERM drain of its node and misses nothing.
//! - [`dashboard`]: the dashboard chart receives every point the feeder publishes.
//! - [`origin`]: a page from a foreign origin is refused when an allow-list is set.

use switchboard_testkit as support;

mod chat;
mod dashboard;
mod drain;
mod origin;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use support::{free_port, Node};

/// The Chromium the scenarios drive (Debian's package; never a downloaded browser).
const CHROMIUM: &str = "/usr/bin/chromium";
/// How long one scenario script may run, browser start included.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(60);

/// `crates/gateway/web/e2e`.
fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("web/e2e")
}

/// `target/artifacts/screenshots` (created), next to the build's `tmp/`.
fn screenshots_dir() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is inside the target directory");
    let dir = target.join("artifacts").join("screenshots");
    std::fs::create_dir_all(&dir).expect("create target/artifacts/screenshots");
    dir
}

/// Fails (never skips) when something the browser tests need is not installed.
fn preflight() {
    let mut missing = Vec::new();
    if !Path::new(CHROMIUM).exists() {
        missing.push(format!("{CHROMIUM} (Debian package `chromium`)"));
    }
    if !e2e_dir()
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        missing.push(
            "crates/gateway/web/e2e/node_modules (npm ci --prefix crates/gateway/web/e2e)"
                .to_owned(),
        );
    }
    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .map_or(true, |o| !o.status.success())
    {
        missing.push("node (Node.js 20 or newer)".to_owned());
    }
    assert!(
        missing.is_empty(),
        "the browser tests need {} — run `make deps` to install them",
        missing.join(", ")
    );
}

/// A running scenario script (`node crates/gateway/web/e2e/<name>.mjs …`).
struct Scenario {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: tokio::task::JoinHandle<String>,
    deadline: tokio::time::Instant,
}

impl Scenario {
    /// Starts scenario `name` with `args` (plus `--artifacts`); panics when the
    /// preflight fails.
    fn spawn(name: &str, args: &[String]) -> Scenario {
        preflight();
        let script = e2e_dir().join(format!("{name}.mjs"));
        assert!(
            script.exists(),
            "missing scenario script {}",
            script.display()
        );
        let mut child = Command::new("node")
            .arg(&script)
            .args(args)
            .arg("--artifacts")
            .arg(screenshots_dir())
            .arg("--chromium")
            .arg(CHROMIUM)
            .arg("--timeout-ms")
            .arg(
                SCENARIO_TIMEOUT
                    .saturating_sub(Duration::from_secs(5))
                    .as_millis()
                    .to_string(),
            )
            .current_dir(e2e_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn node (is Node.js installed? run `make deps`)");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let stderr = tokio::spawn(async move {
            let mut all = String::new();
            while let Ok(Some(line)) = stderr.next_line().await {
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        Scenario {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            deadline: tokio::time::Instant::now() + SCENARIO_TIMEOUT,
        }
    }

    /// The next JSON line on the script's stdout (other lines are echoed), or `None`
    /// when it closed its stdout.
    async fn next_json(&mut self) -> Option<Value> {
        loop {
            let line = tokio::time::timeout_at(self.deadline, self.stdout.next_line())
                .await
                .unwrap_or_else(|_| panic!("scenario {} timed out", self.name))
                .expect("read the scenario's stdout")?;
            match serde_json::from_str::<Value>(&line) {
                Ok(v) if v.is_object() => return Some(v),
                _ => println!("[{}] {line}", self.name),
            }
        }
    }

    /// Writes one line to the script's stdin.
    async fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write to the scenario's stdin");
        stdin.flush().await.expect("flush the scenario's stdin");
    }

    /// Waits for the result line and the exit; panics with the script's own error (and
    /// its diagnostics and stderr) when it failed.
    async fn result(mut self) -> Value {
        self.stdin.take();
        let mut result = None;
        while let Some(v) = self.next_json().await {
            if v.get("scenario").is_some() {
                result = Some(v);
            }
        }
        let status = tokio::time::timeout_at(self.deadline, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("scenario {} did not exit", self.name))
            .expect("wait for the scenario");
        let stderr = self.stderr.await.unwrap_or_default();
        let Some(result) = result else {
            panic!(
                "scenario {} printed no result line ({status}); stderr:\n{stderr}",
                self.name
            );
        };
        println!("[{}] {result}", self.name);
        assert!(
            status.success() && result["ok"] == true,
            "scenario {} failed ({status}): {}\ndiagnostics: {:#}\nstderr:\n{stderr}",
            self.name,
            result["error"],
            result["diagnostics"],
        );
        for shot in result["screenshots"].as_array().into_iter().flatten() {
            let path = Path::new(shot.as_str().expect("screenshot path"));
            let len = std::fs::metadata(path).map_or(0, |m| m.len());
            assert!(
                len > 1000,
                "screenshot {} is missing or empty",
                path.display()
            );
        }
        result
    }
}

/// Runs scenario `name` to completion and returns its result line.
async fn scenario(name: &str, args: &[String]) -> Value {
    Scenario::spawn(name, args).result().await
}

/// `http://<public address>`: the origin of the demo pages a node serves.
fn origin(node: &Node) -> String {
    format!("http://{}", node.public)
}

/// `ws://<public address>/ws`.
fn ws(node: &Node) -> String {
    node.ws_url("")
}

/// `http://<internal address>`: the server API.
fn api(node: &Node) -> String {
    format!("http://{}", node.internal)
}

/// Checks that `node` serves the demo (`--demo`): the chat and dashboard pages and the
/// client library.
async fn assert_demo_served(node: &Node) {
    for path in ["/chat.html", "/dashboard.html", "/switchboard.js"] {
        let (status, body) = node
            .http(node.public, "GET", path, &[], Default::default())
            .await;
        assert_eq!(
            status,
            200,
            "GET {path} with --demo: {}",
            String::from_utf8_lossy(&body)
        );
    }
}

/// Starts a node (embedded backplane) listening publicly on `listen`, with `args`.
async fn start_on(listen: &str, args: &[&str]) -> Node {
    let node_id = format!(
        "b{}-{}",
        std::process::id(),
        listen.replace([':', '.'], "-")
    );
    support::spawn_node(&node_id, listen, args, &[]).await
}

/// The string values of a JSON array.
fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap_or_default().to_owned())
        .collect()
}
