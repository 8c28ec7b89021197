//! Idle memory per connection, TLS against plain TCP (`#[ignore]`: a measurement, not a
//! check). Run against a release build:
//!
//! ```text
//! cargo build --release -p switchboard-gateway --bin switchboard
//! SWITCHBOARD_BENCH_BIN=target/release/switchboard SWITCHBOARD_BENCH_CONNS=2000 \
//!   cargo test -p switchboard-gateway --test tls -- --ignored --nocapture idle_memory
//! ```
//!
//! Method (as W1 "on a fresh node" in BENCHMARKS.md): a fresh node per transport, VmRSS
//! 1 s after it is ready and 3 s after the connections are established (each has read its
//! welcome); the difference ÷ the connections.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::{token, SECRET};
use crate::*;

async fn spawn(args: &[&str]) -> (Child, SocketAddr) {
    let bin = std::env::var("SWITCHBOARD_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_switchboard").to_owned());
    let mut child = Command::new(bin)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(["--log-level", "warn", "--max-connections-per-user", "0"])
        .args(args)
        .env_clear()
        .env("SWITCHBOARD_JWT_SECRET", SECRET)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    while let Some(line) = lines.next_line().await.expect("stdout") {
        if let Some(rest) = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("public="))
        {
            return (child, rest.parse().expect("address"));
        }
    }
    panic!("no listening line");
}

fn rss_kib(child: &Child) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id().unwrap())).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Opens `n` connections (100 at a time) and returns them, each past its welcome.
async fn open<T: Send + 'static>(
    n: usize,
    connect: impl Fn(usize) -> tokio::task::JoinHandle<T>,
) -> Vec<T> {
    let mut all = Vec::with_capacity(n);
    for start in (0..n).step_by(100) {
        let batch: Vec<_> = (start..(start + 100).min(n)).map(&connect).collect();
        for h in batch {
            all.push(h.await.expect("connect"));
        }
    }
    all
}

async fn measure(label: &str, tls: Option<(&Dir, &Cert)>, n: usize) {
    let paths = tls.map(|(dir, cert)| dir.install(cert));
    let mut args = Vec::new();
    if let Some((c, k)) = &paths {
        args = vec!["--tls-cert", path_str(c), "--tls-key", path_str(k)];
    }
    let (child, addr) = spawn(&args).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_kib(&child);
    let held: Vec<Box<dyn std::any::Any + Send>> = match tls {
        Some((_, cert)) => {
            let config = trusting(&[cert]);
            open(n, |i| {
                let config = config.clone();
                tokio::spawn(async move {
                    let tls = tls_connect(addr, config).await.expect("TLS");
                    let url = format!(
                        "wss://localhost:{}/ws?token={}",
                        addr.port(),
                        token(&format!("u{i}"))
                    );
                    let (mut ws, _) =
                        tokio_tungstenite::client_async(url.into_client_request().unwrap(), tls)
                            .await
                            .expect("upgrade");
                    assert_eq!(recv(&mut ws).await["type"], "welcome");
                    Box::new(ws) as Box<dyn std::any::Any + Send>
                })
            })
            .await
        }
        None => {
            open(n, |i| {
                tokio::spawn(async move {
                    let url = format!("ws://{addr}/ws?token={}", token(&format!("u{i}")));
                    let (mut ws, _) = tokio_tungstenite::connect_async(url)
                        .await
                        .expect("upgrade");
                    use futures_util::StreamExt;
                    let first = ws.next().await.expect("frame").expect("frame");
                    assert!(first.to_text().unwrap().contains("welcome"));
                    Box::new(ws) as Box<dyn std::any::Any + Send>
                })
            })
            .await
        }
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kib(&child);
    let per = (after.saturating_sub(before)) as f64 / n as f64;
    println!(
        "{label}: {n} idle connections, VmRSS {before} KiB -> {after} KiB: {per:.2} KiB per connection"
    );
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; see the module docs"]
async fn idle_memory() {
    let n = std::env::var("SWITCHBOARD_BENCH_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let (dir, cert) = (Dir::new(), Cert::new());
    measure("plain TCP", None, n).await;
    measure("TLS 1.3", Some((&dir, &cert)), n).await;
}
