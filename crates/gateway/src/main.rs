//! `switchboard`: a horizontally scaled WebSocket gateway node.
//!
//! # Layout
//! Dependencies run one way: a module names only modules below it in this list (the
//! clocks are `switchboard_proto::clock`).
//! - `cli`: the command line. `server`: listeners, the internal endpoints, the SIGTERM
//!   drain.
//! - `api`: the server API (`/v1/*`). `web`: with `--demo`, the browser client, the demo
//!   app and its development endpoints on the public port.
//! - `ws`: the WebSocket upgrade (`handshake`, `registration`, `rejection`) and one task
//!   per socket (`task`, reading with `reader`, writing any backlog with `driver`);
//!   `echo` is the development echo (`--dev-echo`).
//! - `session`: what a client's frames mean (subscribe, publish, ack, refresh, …).
//! - `node`: what the listeners, connections and API share (config, router, hub, RPC,
//!   the connection slots, the drain flag).
//! - `sweeper`: heartbeats, idle closes and token expiry of every connection (one task).
//!   `rpc`: RPC forwarding to backends (routes, HTTP client, retries, circuit breakers).
//! - `hub`: the node's index of connections, the sink the router delivers into; `repair`:
//!   channels re-read from history after a gap or an outage.
//! - `token`: development tokens. `config`: env and TOML settings, validated before
//!   binding.
//! - `auth`: JWT verification (docs/protocol.md §3). `tls`: `--tls-cert`/`--tls-key` on the
//!   listeners, and their reload.
//! - `conn`: one connection below its task: the handle the node holds (`handle`), its
//!   delivery cursors (`cursor`), a message encoded once for many (`delivery`), the
//!   outbound queue (`outbound`) and the socket (`socket`).
//! - `http`: response helpers and query-string decoding. `metrics`: metric names and the
//!   Prometheus recorder. `files`: files read under a size limit.
//!
//! A message from user A to user B on another node: `session::Session::publish` → the
//! router (`switchboard_router::Backplane::publish`; with Redis, the publish script, then
//! the subscriber's dispatch on B's node) → `hub::Hub::deliver` →
//! `conn::ConnHandle::deliver_as` → `conn::outbound::Outbound::push` (written to B's
//! socket, or queued when it is full).

mod api;
mod auth;
mod cli;
mod config;
mod conn;
mod files;
mod http;
mod hub;
mod metrics;
mod node;
mod repair;
mod rpc;
mod server;
mod session;
mod sweeper;
mod tls;
mod token;
mod web;
mod ws;

use std::process::ExitCode;

use clap::Parser as _;

use crate::cli::{Cli, Command};
use crate::config::{Config, LogFormat};

/// Exit status for invalid configuration (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

// The system allocator (glibc). mimalloc was the global allocator until the hot-path
// rework: with one task per connection and no per-write buffers the gateway allocates
// little per message, its CPU advantage no longer shows (W2 API at 5,000 msg/s, same
// run: 202 µs with it, 197 µs without), and it keeps freed memory committed: a fresh
// node's first 5,000 idle connections cost 11.5 KiB each with it, 3.9 KiB without.

fn main() -> ExitCode {
    let cli = Cli::parse();
    auth::install_crypto_provider();
    match cli.into_command() {
        Command::Token(args) => match token::run(&args) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("switchboard token: {e:#}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Serve(args) => {
            let config = match Config::load(&args) {
                Ok(c) => c,
                Err(errors) => {
                    eprintln!("switchboard: invalid configuration:\n{errors}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            init_tracing(&config);
            for warning in &config.warnings {
                tracing::warn!("{warning}");
            }
            match serve(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("switchboard: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.worker_threads > 0 {
        builder.worker_threads(config.worker_threads);
    }
    let runtime = builder.enable_all().build()?;
    runtime.block_on(async move {
        let handle = metrics::install()?;
        server::run(config, handle).await
    })
}

fn init_tracing(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
