//! Multi-process runs. The parent re-executes itself (`current_exe() worker`) once per
//! shard; the line protocol over the pipes is:
//!
//! - parent → worker stdin: the [`Job`] as one JSON line; later `go <t0 unix µs>` (start
//!   sending at t0) and `stop` (SIGINT/SIGTERM at the parent). EOF on stdin also stops.
//! - worker stdout → parent: `ready {"established":…,"failed":…}` at the end of its setup
//!   phase, then `result <Partial JSON>` at the end. Progress goes to the inherited stderr.
//!
//! The parent prints the single `ready connections=… failed=…` line once every worker is
//! ready, then releases them all with the same t0.

use std::process::{ExitCode, Stdio};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::payload::now_us;
use crate::run::{self, Ctl, Job, Ready};
use crate::stats::Partial;

/// How far ahead of "now" the parent sets the common start, µs.
const GO_AHEAD_US: u64 = 50_000;

enum Msg {
    Ready(Ready),
    Result(Box<Partial>),
    Exited(String),
}

/// Runs `job.processes` workers and returns their partial results.
pub async fn run_parent(job: &Job, stop: CancellationToken) -> Result<Vec<Partial>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let n = job.processes;
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Msg)>();
    let mut stdins: Vec<ChildStdin> = Vec::with_capacity(n);
    let mut children = Vec::with_capacity(n);
    for shard in 0..n {
        let mut child = Command::new(&exe)
            .arg("worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("spawning worker {shard}: {e}"))?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        let mut line = serde_json::to_string(&Job {
            shard,
            ..job.clone()
        })
        .map_err(|e| e.to_string())?;
        line.push('\n');
        stdin
            .write_all(line.as_bytes())
            .await
            .map_err(|e| format!("worker {shard}: {e}"))?;
        stdins.push(stdin);
        let stdout = child.stdout.take().expect("piped stdout");
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                let msg = if let Some(j) = l.strip_prefix("ready ") {
                    serde_json::from_str(j).map(Msg::Ready)
                } else if let Some(j) = l.strip_prefix("result ") {
                    serde_json::from_str(j).map(|p| Msg::Result(Box::new(p)))
                } else {
                    continue;
                };
                match msg {
                    Ok(m) => {
                        let _ = tx.send((shard, m));
                    }
                    Err(e) => {
                        let _ = tx.send((shard, Msg::Exited(format!("bad line: {e}"))));
                    }
                }
            }
            let _ = tx.send((shard, Msg::Exited("exited".into())));
        });
        children.push(child);
    }
    drop(tx);

    let mut ready = vec![None::<Ready>; n];
    let mut results: Vec<Option<Partial>> = vec![None; n];
    let mut released = false;
    let mut stopped = false;
    loop {
        if results.iter().all(Option::is_some) {
            break;
        }
        let (shard, msg) = tokio::select! {
            m = rx.recv() => match m {
                Some(m) => m,
                None => break,
            },
            _ = stop.cancelled(), if !stopped => {
                stopped = true;
                broadcast(&mut stdins, "stop\n").await;
                continue;
            }
        };
        match msg {
            Msg::Ready(r) => {
                ready[shard] = Some(r);
                if !released && ready.iter().all(Option::is_some) {
                    released = true;
                    let total = ready.iter().flatten().fold(Ready::default(), |a, r| Ready {
                        established: a.established + r.established,
                        failed: a.failed + r.failed,
                    });
                    run::print_ready(total);
                    broadcast(&mut stdins, &format!("go {}\n", now_us() + GO_AHEAD_US)).await;
                }
            }
            Msg::Result(p) => results[shard] = Some(*p),
            Msg::Exited(why) if results[shard].is_none() => {
                broadcast(&mut stdins, "stop\n").await;
                return Err(format!("worker {shard} ended without a result ({why})"));
            }
            Msg::Exited(_) => {}
        }
    }
    // EOF on their stdin lets the workers' stdin readers (blocking threads) finish.
    drop(stdins);
    for mut c in children {
        let _ = c.wait().await;
    }
    results
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.ok_or_else(|| format!("worker {i} sent no result")))
        .collect()
}

async fn broadcast(stdins: &mut [ChildStdin], line: &str) {
    for s in stdins.iter_mut() {
        let _ = s.write_all(line.as_bytes()).await;
        let _ = s.flush().await;
    }
}

fn emit(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// `switchboard-loadgen worker`: one shard, driven over stdin/stdout.
pub fn worker_main() -> ExitCode {
    let rt = run::runtime();
    let code = rt.block_on(async {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        let job: Job = match lines.next_line().await {
            Ok(Some(l)) => match serde_json::from_str(&l) {
                Ok(j) => j,
                Err(e) => {
                    eprintln!("switchboard-loadgen worker: bad job: {e}");
                    return ExitCode::from(2);
                }
            },
            _ => {
                eprintln!("switchboard-loadgen worker: no job on stdin (internal command)");
                return ExitCode::from(2);
            }
        };
        let stop = CancellationToken::new();
        run::stop_on_signals(stop.clone());
        let (ctl, ready_rx, go_tx) = Ctl::new(stop.clone());
        tokio::spawn(async move {
            if let Ok(r) = ready_rx.await {
                emit(&format!(
                    "ready {}",
                    serde_json::to_string(&r).unwrap_or_default()
                ));
            }
        });
        let stop2 = stop.clone();
        tokio::spawn(async move {
            let mut go_tx = Some(go_tx);
            loop {
                match lines.next_line().await {
                    Ok(Some(l)) if l.starts_with("go ") => {
                        if let (Some(tx), Ok(t0)) = (go_tx.take(), l[3..].trim().parse()) {
                            let _ = tx.send(t0);
                        }
                    }
                    Ok(Some(l)) if l.trim() == "stop" => stop2.cancel(),
                    Ok(Some(_)) => {}
                    _ => {
                        stop2.cancel();
                        return;
                    }
                }
            }
        });
        match run::run_shard(job, ctl).await {
            Ok(p) => {
                emit(&format!(
                    "result {}",
                    serde_json::to_string(&p).unwrap_or_default()
                ));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("switchboard-loadgen worker: {e}");
                ExitCode::from(2)
            }
        }
    });
    // The stdin reader is a blocking read that cannot be cancelled: do not wait for it.
    rt.shutdown_background();
    code
}
