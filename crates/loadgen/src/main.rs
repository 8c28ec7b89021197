//! `switchboard-loadgen`: a load generator for what k6 cannot reach (100k+ sockets, open-loop
//! publishing, latency histograms merged across worker processes).
//!
//! # Layout
//!
//! - `cli`     — the command line (the interface contract; serde so workers get it verbatim).
//!
//! More modules land with the modes; see README.md for the flags and the result JSON.

use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    eprintln!(
        "switchboard-loadgen: {:?} over {} is not implemented yet",
        cli.command,
        cli.common.protocol.name()
    );
    ExitCode::from(2)
}
