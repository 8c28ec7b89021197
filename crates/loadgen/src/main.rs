//! `switchboard-loadgen`: a load generator for what k6 cannot reach (100k+ sockets, open-loop
//! publishing without coordinated omission, latency histograms merged across processes).
//! README.md documents every subcommand, flag and the result JSON.
//!
//! # Layout
//!
//! - `cli`      — the command line (the interface contract; serde so workers get it verbatim).
//! - `run`      — validation, process count, the per-process context (`Ctx`) and start/stop
//!   plumbing (`Ctl`), the run of one shard.
//! - `workers`  — multi-process: the parent spawns itself as workers over stdin/stdout pipes.
//! - `addr`     — resolved targets and source addresses (`--source-ips`).
//! - `conn`     — one WebSocket: bind, TCP, upgrade, setup, the shared read loop.
//! - `proto/`   — wire formats: switchboard, socketio, plain, pusher (frames, publish calls).
//! - `modes/`   — idle and storm, direct, fanout; the reconnecting session; HTTP publishing
//!   on the schedule.
//! - `api`      — HTTP/1.1 keep-alive publishing clients (a few connections per URL).
//! - `stats`    — counters, close codes, histograms, timeline; the per-process `Partial`.
//! - `report`   — merges partials into the result JSON, the summary and the checks.
//! - `pace`     — send scheduling with µs precision (the pacer thread).
//! - `selftest` — the tool's own floor: scheduling error, loopback round trips, CPU.
//! - `payload`  — the message payload and the clock; `token` — client JWTs.

use std::process::ExitCode;

use clap::Parser;

mod addr;
mod api;
mod cli;
mod conn;
mod modes;
mod pace;
mod payload;
mod proto;
mod report;
mod run;
mod selftest;
mod stats;
mod token;
mod workers;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // A few hundred sockets per worker need more than the usual soft limit of 1024.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    match cli.command {
        cli::Command::Worker => workers::worker_main(),
        cli::Command::Selftest(_) => selftest::main(cli),
        _ => run::main(cli),
    }
}
