//! One run: validate the flags, decide the processes, run the shard(s), merge, report.
//!
//! [`Ctx`] is what every mode gets: the resolved targets, the source addresses, the token
//! minter, the API clients and the process's [`Stats`]. [`Ctl`] is the start/stop plumbing:
//! a mode reports the end of its setup phase with [`Ctl::ready`] and gets back the common
//! start time, which the parent hands out after every worker is ready.

use std::net::IpAddr;
use std::ops::Range;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::api::Api;
use crate::cli::{ChannelKind, Cli, Command, Common, Protocol, Via};
use crate::conn::{self, ConnectError, Dial, Endpoint, Opened};
use crate::payload::now_us;
use crate::proto::{ApiAuth, Pos};
use crate::report::{self, RunInfo};
use crate::stats::{Partial, Stats};
use crate::token::Minter;
use crate::{addr, modes, pace, workers};

/// Most connections one process gets when `--processes` is not given.
pub const CONNS_PER_PROCESS: u64 = 15_000;

/// What a worker process (or the in-process run) is given.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    pub cli: Cli,
    pub run_id: String,
    pub shard: usize,
    pub processes: usize,
    /// Source addresses; connection i binds sources[i % len].
    pub sources: Vec<IpAddr>,
    /// Bind them for every target (else only for loopback targets).
    pub sources_everywhere: bool,
}

/// End of a setup phase.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Ready {
    pub established: u64,
    pub failed: u64,
}

/// Start/stop plumbing of one process.
pub struct Ctl {
    pub stop: CancellationToken,
    ready_tx: Option<oneshot::Sender<Ready>>,
    go_rx: Option<oneshot::Receiver<u64>>,
}

impl Ctl {
    pub fn new(stop: CancellationToken) -> (Self, oneshot::Receiver<Ready>, oneshot::Sender<u64>) {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (go_tx, go_rx) = oneshot::channel();
        let ctl = Ctl {
            stop,
            ready_tx: Some(ready_tx),
            go_rx: Some(go_rx),
        };
        (ctl, ready_rx, go_tx)
    }

    /// Reports the end of the setup phase and waits for the common start time (unix µs);
    /// `None` when the run was stopped first.
    pub async fn ready(&mut self, r: Ready) -> Option<u64> {
        if let Some(tx) = self.ready_tx.take() {
            let _ = tx.send(r);
        }
        let rx = self.go_rx.take()?;
        tokio::select! {
            t0 = rx => t0.ok(),
            _ = self.stop.cancelled() => None,
        }
    }
}

/// What every mode gets.
pub struct Ctx {
    pub common: Common,
    pub protocol: Protocol,
    pub run_id: String,
    pub shard: usize,
    pub processes: usize,
    pub endpoints: Vec<Endpoint>,
    sources: Vec<IpAddr>,
    sources_everywhere: bool,
    minter: Option<Minter>,
    pub api: Option<Api>,
    pub auth: ApiAuth,
    pub stats: Arc<Stats>,
    pub timeout: Duration,
    pub stop: CancellationToken,
}

impl Ctx {
    /// `<prefix>-<run>-<role><i>`.
    pub fn user(&self, role: &str, i: u64) -> String {
        format!("{}-{}-{role}{i}", self.common.user_prefix, self.run_id)
    }

    /// Opens connection `idx` (global index: picks the source address) to
    /// `endpoints[target % len]` as `user`, minting a fresh token.
    pub async fn open(
        &self,
        idx: u64,
        target: usize,
        user: &str,
        since: Option<&Pos>,
        rcvbuf: Option<u32>,
    ) -> Result<Opened, ConnectError> {
        let endpoint = &self.endpoints[target % self.endpoints.len()];
        let source = if self.sources.is_empty()
            || !(self.sources_everywhere || endpoint.addr.ip().is_loopback())
        {
            None
        } else {
            Some(self.sources[(idx % self.sources.len() as u64) as usize])
        };
        let token = match &self.minter {
            Some(m) => Some(
                m.mint(user)
                    .map_err(|e| ConnectError::Token(e.to_string()))?,
            ),
            None => None,
        };
        let key = self.auth.pusher_key.as_deref().unwrap_or_default();
        conn::open(Dial {
            endpoint,
            source,
            protocol: self.protocol,
            upgrade: self.protocol.upgrade(user, token, since, key),
            user,
            rcvbuf,
            timeout: self.timeout,
        })
        .await
    }

    /// Sleeps until the unix time `at_us` with the run's `--timer`; false when stopped first.
    pub async fn sleep_until(&self, at_us: u64) -> bool {
        pace::sleep_until_unix(at_us, self.common.timer, &self.stop).await
    }

    /// This process's slice of `0..n`.
    pub fn shard_range(&self, n: u64) -> Range<u64> {
        shard_range(n, self.shard, self.processes)
    }

    /// Progress on stderr (unless --quiet).
    pub fn progress(&self, msg: &str) {
        if !self.common.quiet {
            if self.processes > 1 {
                eprintln!("[loadgen w{}] {msg}", self.shard);
            } else {
                eprintln!("[loadgen] {msg}");
            }
        }
    }
}

/// Slice `shard` of `processes` of `0..n`.
pub fn shard_range(n: u64, shard: usize, processes: usize) -> Range<u64> {
    let (s, p) = (shard as u64, processes.max(1) as u64);
    (n * s / p)..(n * (s + 1) / p)
}

/// Connections a run opens (for `--processes` auto and the source addresses).
pub fn total_connections(cmd: &Command) -> u64 {
    match cmd {
        Command::Idle(a) => a.connections,
        Command::Storm(a) => a.connections,
        Command::Direct(a) => a.pairs * if a.via == Via::Ws { 2 } else { 1 },
        Command::Fanout(a) => a.subscribers + a.slow + u64::from(a.via == Via::Ws),
        Command::Selftest(_) | Command::Worker => 0,
    }
}

/// The namespace of `direct --channel room`'s rooms (the tokens must allow it).
fn room_namespace(cmd: &Command) -> Option<&str> {
    match cmd {
        Command::Direct(a) => a.room_namespace(),
        _ => None,
    }
}

/// A channel namespace as the gateway accepts it in `--namespaces`: `[a-z0-9_-]+`.
fn valid_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Every flag problem at once (empty = fine).
pub fn validate(cli: &Cli) -> Vec<String> {
    let c = &cli.common;
    let mut errs = Vec::new();
    if let Command::Selftest(a) = &cli.command {
        if a.rates.iter().any(|r| *r <= 0.0) || a.rtt_rate <= 0.0 || a.rtt_pairs == 0 {
            errs.push("selftest needs rates and --rtt-pairs > 0".into());
        }
        if a.tasks == 0 || a.seconds <= 0.0 || a.rtt_seconds <= 0.0 {
            errs.push("selftest needs --tasks, --seconds and --rtt-seconds > 0".into());
        }
        return errs;
    }
    if c.targets.is_empty() {
        errs.push("--targets is required".to_owned());
    }
    let sb = c.protocol == Protocol::Switchboard;
    if sb && c.jwt_secret.is_none() {
        errs.push("--jwt-secret is required with --protocol switchboard".into());
    }
    if c.protocol == Protocol::Pusher && c.pusher_key.is_none() {
        errs.push("--pusher-key is required with --protocol pusher".into());
    }
    let needs_api = match &cli.command {
        Command::Direct(a) => {
            if a.pairs == 0 || a.rate <= 0.0 || a.duration <= 0.0 {
                errs.push("direct needs --pairs, --rate and --duration > 0".into());
            }
            if a.via == Via::Ws && !sb {
                errs.push("--via ws needs --protocol switchboard (peers publish over HTTP)".into());
            }
            if a.reconnect && !sb {
                errs.push("--reconnect needs --protocol switchboard".into());
            }
            if a.batch == 0 || (a.batch > 1 && (!sb || a.via != Via::Api)) {
                errs.push("--batch > 1 needs --via api and --protocol switchboard".into());
            }
            if a.channel == ChannelKind::Room && !sb {
                errs.push("--channel room needs --protocol switchboard".into());
            }
            match (&a.room_namespace, a.channel) {
                (Some(_), ChannelKind::User) => {
                    errs.push("--room-namespace needs --channel room".into());
                }
                (Some(ns), ChannelKind::Room) if !valid_namespace(ns) || ns == "user" => {
                    errs.push(format!(
                        "--room-namespace {ns:?}: expected [a-z0-9_-]+ other than `user` \
                         (room, or a namespace of the gateway's --namespaces)"
                    ));
                }
                _ => {}
            }
            a.via == Via::Api
        }
        Command::Fanout(a) => {
            if !sb {
                errs.push("fanout needs --protocol switchboard".into());
            }
            if a.subscribers == 0 || a.messages == 0 || a.rate <= 0.0 {
                errs.push("fanout needs --subscribers, --messages and --rate > 0".into());
            }
            a.via == Via::Api
        }
        Command::Idle(_) | Command::Storm(_) | Command::Selftest(_) | Command::Worker => false,
    };
    if needs_api {
        if c.api.is_empty() {
            errs.push("--api is required to publish over HTTP".into());
        }
        if sb && c.api_key.is_none() {
            errs.push("--api-key is required to publish over the switchboard server API".into());
        }
        if c.protocol == Protocol::Pusher
            && (c.pusher_app_id.is_none() || c.pusher_secret.is_none())
        {
            errs.push("--pusher-app-id and --pusher-secret are required to publish".into());
        }
    }
    if c.processes == Some(0) {
        errs.push("--processes must be at least 1".into());
    }
    errs
}

fn random_run_id() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..6)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs the whole load test (parent side); the exit status of the contract.
pub fn main(cli: Cli) -> ExitCode {
    let errs = validate(&cli);
    if !errs.is_empty() {
        for e in errs {
            eprintln!("switchboard-loadgen: {e}");
        }
        return ExitCode::from(2);
    }
    runtime().block_on(async move {
        match run(cli).await {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("switchboard-loadgen: {e}");
                ExitCode::from(2)
            }
        }
    })
}

/// Forwards SIGINT/SIGTERM to `stop`.
pub fn stop_on_signals(stop: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    for kind in [SignalKind::interrupt(), SignalKind::terminate()] {
        let stop = stop.clone();
        if let Ok(mut s) = signal(kind) {
            tokio::spawn(async move {
                while s.recv().await.is_some() {
                    stop.cancel();
                }
            });
        }
    }
}

async fn run(cli: Cli) -> Result<bool, String> {
    let started = now_us();
    let endpoints = addr::resolve(&cli.common.targets).await?;
    let total = total_connections(&cli.command);
    let processes = cli
        .common
        .processes
        .unwrap_or_else(|| total.div_ceil(CONNS_PER_PROCESS).max(1) as usize);
    let (sources, sources_everywhere) = match &cli.common.source_ips {
        Some(spec) => (addr::parse_source_ips(spec)?, true),
        None => (addr::default_source_ips(total, &endpoints), false),
    };
    let run_id = cli.common.run_id.clone().unwrap_or_else(random_run_id);
    let job = Job {
        cli: cli.clone(),
        run_id,
        shard: 0,
        processes,
        sources,
        sources_everywhere,
    };
    let stop = CancellationToken::new();
    stop_on_signals(stop.clone());
    let parts = if processes == 1 {
        let (ctl, ready_rx, go_tx) = Ctl::new(stop.clone());
        tokio::spawn(async move {
            if let Ok(r) = ready_rx.await {
                print_ready(r);
                let _ = go_tx.send(now_us() + 20_000);
            }
        });
        vec![run_shard(job, ctl).await?]
    } else {
        workers::run_parent(&job, stop).await?
    };
    let (mode, rate_target) = match &cli.command {
        Command::Idle(_) => ("idle", None),
        Command::Storm(_) => ("storm", None),
        Command::Direct(a) => ("direct", Some(a.rate)),
        Command::Fanout(a) => ("fanout", Some(a.rate)),
        Command::Selftest(_) | Command::Worker => ("worker", None),
    };
    let info = RunInfo {
        mode,
        protocol: cli.common.protocol.name(),
        label: cli.common.label.clone(),
        started_unix_ms: started / 1000,
        duration_s: now_us().saturating_sub(started) as f64 / 1e6,
        processes,
        rate_target,
    };
    let report = report::merge(&info, &parts, &cli.common)?;
    print!("{}", report.summary());
    if let Some(path) = &cli.common.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(report.ok())
}

/// The one stdout line scripts wait for.
pub fn print_ready(r: Ready) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "ready connections={} failed={}",
        r.established, r.failed
    );
    let _ = out.flush();
}

/// Runs this process's shard of the job.
pub async fn run_shard(job: Job, ctl: Ctl) -> Result<Partial, String> {
    let c = &job.cli.common;
    let needs_api = match &job.cli.command {
        Command::Direct(a) => a.via == Via::Api,
        Command::Fanout(a) => a.via == Via::Api && job.shard == 0,
        _ => false,
    };
    let api = if needs_api {
        Some(Api::start(&c.api, c.api_connections).await?)
    } else {
        None
    };
    let ctx = Arc::new(Ctx {
        common: c.clone(),
        protocol: c.protocol,
        run_id: job.run_id.clone(),
        shard: job.shard,
        processes: job.processes,
        endpoints: addr::resolve(&c.targets).await?,
        sources: job.sources.clone(),
        sources_everywhere: job.sources_everywhere,
        minter: (c.protocol == Protocol::Switchboard)
            .then(|| {
                c.jwt_secret
                    .as_deref()
                    .map(|s| Minter::new(s, room_namespace(&job.cli.command)))
            })
            .flatten(),
        api,
        auth: ApiAuth {
            api_key: c.api_key.clone(),
            pusher_app_id: c.pusher_app_id.clone(),
            pusher_key: c.pusher_key.clone(),
            pusher_secret: c.pusher_secret.clone(),
        },
        stats: Arc::new(Stats::default()),
        timeout: Duration::from_millis(c.connect_timeout_ms.max(1)),
        stop: ctl.stop.clone(),
    });
    let timeline_stop = CancellationToken::new();
    let timeline = tokio::spawn(ctx.stats.clone().run_timeline(timeline_stop.clone()));
    let progress = tokio::spawn(modes::progress(ctx.clone()));
    let mut part = match &job.cli.command {
        Command::Idle(a) => modes::idle::run_idle(ctx.clone(), ctl, a).await,
        Command::Storm(a) => modes::idle::run_storm(ctx.clone(), ctl, a).await,
        Command::Direct(a) => modes::direct::run(ctx.clone(), ctl, a).await,
        Command::Fanout(a) => modes::fanout::run(ctx.clone(), ctl, a).await,
        Command::Selftest(_) | Command::Worker => return Err("not a load mode".into()),
    };
    progress.abort();
    timeline_stop.cancel();
    let _ = timeline.await;
    part.timeline = ctx.stats.partial().timeline;
    Ok(part)
}

#[cfg(test)]
mod tests;
