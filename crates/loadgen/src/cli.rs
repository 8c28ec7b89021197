//! The command line (the loadgen interface contract; README.md documents every flag).
//!
//! Every struct is also `serde`, so the parent process hands the parsed command to its worker
//! processes verbatim. The common flags are global: they may come before or after the
//! subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::pace::Timer;

/// Load generator for Switchboard and its peers (Socket.IO, plain ws, Pusher/Sockudo).
#[derive(Parser, Clone, Debug, Serialize, Deserialize)]
#[command(name = "switchboard-loadgen", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: Command,
}

/// Wire format of the system under test.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Switchboard v1 JSON (`/ws`, JWT, server API `/v1/publish`).
    Switchboard,
    /// Socket.IO 4 (`/socket.io/?EIO=4&transport=websocket`), publish `POST /publish`.
    Socketio,
    /// Plain WebSocket peer (`/?user=`), publish `POST /publish`.
    Plain,
    /// Pusher protocol 7 (Sockudo), signed `POST /apps/<id>/events`.
    Pusher,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Switchboard => "switchboard",
            Protocol::Socketio => "socketio",
            Protocol::Plain => "plain",
            Protocol::Pusher => "pusher",
        }
    }
}

/// How messages are published.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// Over a WebSocket (`publish` frames; switchboard only).
    Ws,
    /// Over HTTP through `--api`.
    Api,
}

/// Which channel a `direct` pair's messages travel on.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// The recipient's personal channel `user:<recipient>` (no subscribe; history by default).
    #[default]
    User,
    /// A room of the pair's own, `<room-namespace>:<prefix>-<run>-p<pair>`, that the recipient
    /// subscribes to (rooms keep no history unless the gateway is configured to).
    Room,
}

/// The default of `direct --room-namespace`.
pub const DEFAULT_ROOM_NAMESPACE: &str = "room";

/// Flags of every subcommand.
#[derive(Args, Clone, Debug, Serialize, Deserialize)]
pub struct Common {
    /// Wire format: switchboard, socketio, plain or pusher.
    #[arg(long, value_enum, default_value = "switchboard", global = true)]
    pub protocol: Protocol,
    /// Public WebSocket addresses HOST:PORT, one per node (comma-separated). Connection i
    /// goes to targets[i % len].
    #[arg(long, value_delimiter = ',', global = true, env = "LOADGEN_TARGETS")]
    pub targets: Vec<String>,
    /// HTTP base URLs used to publish, comma-separated (switchboard: the internal port,
    /// e.g. http://127.0.0.1:9091). A recipient on targets[k] gets its messages through
    /// api[(k+1) % len].
    #[arg(long, value_delimiter = ',', global = true, env = "LOADGEN_API")]
    pub api: Vec<String>,
    /// HTTP/1.1 keep-alive connections per API URL (per process), used concurrently.
    #[arg(long, default_value_t = 4, global = true)]
    pub api_connections: usize,
    /// Bearer key of the switchboard server API.
    #[arg(long, global = true, env = "LOADGEN_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// HS256 secret; one token is minted per connection (sub = user id, exp = now + 3600).
    #[arg(
        long,
        global = true,
        env = "LOADGEN_JWT_SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,
    /// Pusher app id (pusher protocol).
    #[arg(long, global = true)]
    pub pusher_app_id: Option<String>,
    /// Pusher app key (pusher protocol).
    #[arg(long, global = true)]
    pub pusher_key: Option<String>,
    /// Pusher app secret (pusher protocol).
    #[arg(
        long,
        global = true,
        env = "LOADGEN_PUSHER_SECRET",
        hide_env_values = true
    )]
    pub pusher_secret: Option<String>,
    /// User id prefix: users are <prefix>-<run>-<role><i>.
    #[arg(long, default_value = "lg", global = true)]
    pub user_prefix: String,
    /// Run id used in user ids (default: 6 random characters, so runs never collide).
    #[arg(long, global = true)]
    pub run_id: Option<String>,
    /// Local addresses to bind before connecting: A-B range (127.0.0.1-127.0.0.40) or a
    /// comma list. Default: enough 127.0.0.x addresses when a target is loopback.
    #[arg(long, global = true)]
    pub source_ips: Option<String>,
    /// Worker processes (default: ceil(total connections / 15000)).
    #[arg(long, global = true)]
    pub processes: Option<usize>,
    /// Write the result object to this file.
    #[arg(long, global = true)]
    pub json: Option<PathBuf>,
    /// Free text copied into the result's "label".
    #[arg(long, global = true)]
    pub label: Option<String>,
    /// Timeout of one connection setup (TCP connect + upgrade + first frame), ms.
    #[arg(long, default_value_t = 10_000, global = true)]
    pub connect_timeout_ms: u64,
    /// No progress lines on stderr.
    #[arg(long, global = true)]
    pub quiet: bool,
    /// How sends wait for their scheduled time: precise (a pacer thread, µs), or for
    /// comparison spin (tokio workers busy-wait the last 2.5 ms) and tokio (1 ms timer).
    #[arg(long, value_enum, default_value = "precise", global = true)]
    pub timer: Timer,
    /// Check: at most N messages lost (exit 1 beyond).
    #[arg(long, global = true)]
    pub max_lost: Option<u64>,
    /// Check: at most N duplicated deliveries.
    #[arg(long, global = true)]
    pub max_duplicates: Option<u64>,
    /// Check: at most N out-of-order deliveries.
    #[arg(long, global = true)]
    pub max_out_of_order: Option<u64>,
    /// Check: at most N abnormal closes (1006: no close frame).
    #[arg(long, global = true)]
    pub max_abnormal_closes: Option<u64>,
    /// Check: delivered / expected deliveries at least F (0..=1).
    #[arg(long, global = true)]
    pub min_delivered_ratio: Option<f64>,
    /// Check: at most N failed connection attempts in the setup phase.
    #[arg(long, global = true)]
    pub max_failed_connects: Option<u64>,
}

#[derive(Subcommand, Clone, Debug, Serialize, Deserialize)]
pub enum Command {
    /// Open N connections, hold them (answering pings), close them with 1000.
    Idle(IdleArgs),
    /// Connection storm: fresh JWT, connect, upgrade, first frame, as fast as allowed.
    Storm(StormArgs),
    /// Pairs of sender → recipient on user channels (or rooms), open-loop at an aggregate rate.
    Direct(DirectArgs),
    /// N subscribers of one channel; M messages published to it.
    Fanout(FanoutArgs),
    /// This tool's measurement floor here: scheduling error, loopback round trip, CPU.
    Selftest(SelftestArgs),
    /// Internal: a worker process (reads its job from stdin).
    #[command(hide = true)]
    Worker,
}

#[derive(Args, Clone, Debug, Serialize, Deserialize)]
pub struct IdleArgs {
    /// Connections to open.
    #[arg(long)]
    pub connections: u64,
    /// New connections per second, "R" or "R/s" (0 = as fast as --concurrency allows).
    #[arg(long, default_value = "0", value_parser = parse_rate)]
    pub connect_rate: f64,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Hold the connections this long, then close (default: until SIGTERM/SIGINT).
    #[arg(long)]
    pub hold_seconds: Option<f64>,
}

#[derive(Args, Clone, Debug, Serialize, Deserialize)]
pub struct StormArgs {
    /// Connections to open.
    #[arg(long)]
    pub connections: u64,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Keep the connections open this long after the storm before closing them.
    #[arg(long, default_value_t = 0.0)]
    pub hold_seconds: f64,
}

#[derive(Args, Clone, Debug, Serialize, Deserialize)]
pub struct DirectArgs {
    /// Sender/recipient pairs.
    #[arg(long)]
    pub pairs: u64,
    /// Aggregate messages per second over all pairs.
    #[arg(long, value_parser = parse_rate)]
    pub rate: f64,
    /// Seconds of sending.
    #[arg(long)]
    pub duration: f64,
    /// Publish over the senders' sockets (ws, switchboard only) or through --api.
    #[arg(long, value_enum, default_value = "ws")]
    pub via: Via,
    /// The channel of pair g: user = the recipient's `user:` channel; room = a room of the
    /// pair's own (`<room-namespace>:<prefix>-<run>-p<g>`) the recipient subscribes to
    /// (switchboard only).
    #[arg(long, value_enum, default_value = "user")]
    pub channel: ChannelKind,
    /// Namespace of the pairs' rooms with --channel room (default: room; another one, e.g.
    /// a presence-free feed, needs --namespaces on the gateway).
    #[arg(long)]
    pub room_namespace: Option<String>,
    /// Messages per API request (> 1 uses POST /v1/batch; switchboard only).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Longest a due message waits for its batch to fill, ms.
    #[arg(long, default_value_t = 5)]
    pub batch_linger_ms: u64,
    /// Approximate size of each payload JSON in bytes.
    #[arg(long, default_value_t = 64)]
    pub payload_bytes: usize,
    /// Reconnect closed connections, resuming recipients with ?since (switchboard only).
    #[arg(long)]
    pub reconnect: bool,
    /// After the last message: wait at most this long for outstanding deliveries.
    #[arg(long, default_value_t = 3.0)]
    pub settle_seconds: f64,
    /// Cap of goaway.reconnect_ms before a reconnect.
    #[arg(long, default_value_t = 5000)]
    pub max_reconnect_ms: u64,
    /// Connection attempts in flight at once during setup.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
}

impl DirectArgs {
    /// The namespace of the pairs' rooms with `--channel room`; None with user channels.
    pub fn room_namespace(&self) -> Option<&str> {
        (self.channel == ChannelKind::Room).then(|| {
            self.room_namespace
                .as_deref()
                .unwrap_or(DEFAULT_ROOM_NAMESPACE)
        })
    }
}

#[derive(Args, Clone, Debug, Serialize, Deserialize)]
pub struct FanoutArgs {
    /// Subscribers of the channel.
    #[arg(long)]
    pub subscribers: u64,
    /// The channel (extra namespaces need --namespaces on the gateway).
    #[arg(long, default_value = "feed:bench")]
    pub channel: String,
    /// Messages to publish.
    #[arg(long)]
    pub messages: u64,
    /// Messages per second.
    #[arg(long, value_parser = parse_rate)]
    pub rate: f64,
    /// Publish through --api (POST /v1/publish) or one extra publisher socket.
    #[arg(long, value_enum, default_value = "api")]
    pub via: Via,
    /// Extra subscribers with SO_RCVBUF 4096 that never read (expected close: 4008).
    #[arg(long, default_value_t = 0)]
    pub slow: u64,
    /// After the last message: wait at most this long for outstanding deliveries.
    #[arg(long, default_value_t = 3.0)]
    pub settle_seconds: f64,
    /// Approximate size of each payload JSON in bytes.
    #[arg(long, default_value_t = 64)]
    pub payload_bytes: usize,
    /// Connection attempts in flight at once during setup.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
}

#[derive(Args, Clone, Debug, Serialize, Deserialize)]
pub struct SelftestArgs {
    /// Rates of the scheduling test, msg/s (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,20000", value_parser = parse_rate)]
    pub rates: Vec<f64>,
    /// Seconds of the scheduling test per rate.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Schedule loops running at once (`direct --via ws` runs one per pair).
    #[arg(long, default_value_t = 100)]
    pub tasks: u64,
    /// Rate of the loopback round trips, msg/s.
    #[arg(long, default_value = "2000", value_parser = parse_rate)]
    pub rtt_rate: f64,
    /// Sender → recipient pairs of the loopback round trips.
    #[arg(long, default_value_t = 20)]
    pub rtt_pairs: u64,
    /// Seconds of each loopback round trip run (ws, then api).
    #[arg(long, default_value_t = 3.0)]
    pub rtt_seconds: f64,
}

/// Parses "R" or "R/s" into a non-negative rate.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let v = s.trim().trim_end_matches("/s");
    match v.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err(format!("not a rate: {s:?} (expected R or R/s, R >= 0)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_and_without_unit() {
        assert_eq!(parse_rate("500"), Ok(500.0));
        assert_eq!(parse_rate("2.5/s"), Ok(2.5));
        assert!(parse_rate("-1").is_err());
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn common_flags_work_before_and_after_the_subcommand() {
        let a = Cli::try_parse_from([
            "lg",
            "--targets",
            "127.0.0.1:1,127.0.0.1:2",
            "idle",
            "--connections",
            "3",
            "--protocol",
            "plain",
        ])
        .unwrap();
        assert_eq!(a.common.targets.len(), 2);
        assert_eq!(a.common.protocol, Protocol::Plain);
        assert!(matches!(
            a.command,
            Command::Idle(IdleArgs { connections: 3, .. })
        ));
    }
}
