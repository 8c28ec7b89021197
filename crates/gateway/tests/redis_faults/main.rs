//! Redis faults (issue 3): what nodes do when their Redis is killed and restarted with or
//! without its data, when it freezes (SIGSTOP), when only the subscriber connection is
//! wedged (a TCP fault proxy), when Sentinel fails over to a replica, and what the
//! registry looks like afterwards. Every test runs its own `redis-server` (and proxy or
//! sentinel) on free ports and real gateway processes; timing numbers are printed as
//! `measured: …` lines (`--nocapture`).
//!
//! # Layout
//! - this file: settings and helpers shared by the tests (nodes, polling, frames, a tiny
//!   RESP client).
//! - [`restart`]: Redis killed and restarted, without persistence and with
//!   `appendfsync always`.
//! - [`at_scale`]: the same under 500 connections over 3 nodes: resync, no closes.
//! - [`freeze`]: Redis SIGSTOPped: API latency, pings, broadcast.
//! - [`blackhole`]: only the subscriber connection black-holed (crates/testkit/src/proxy.rs).
//! - [`sentinel`]: master + replica + sentinel, master SIGKILLed.
//! - [`registry`]: a node reaped while its sockets stay open; no ghost connection
//!   after a freeze.

use switchboard_testkit as support;

mod at_scale;
mod blackhole;
mod freeze;
mod registry;
mod restart;
mod sentinel;

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use support::cluster::poll;
use support::{connect_since, position, ApiClient, Client, Node};
use switchboard_router::testsuite::redis_server::RedisServer;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// `--redis-timeout-ms` of every node here.
const TIMEOUT: Duration = Duration::from_millis(500);
/// `--probe-interval-ms` of every node here.
const PROBE: Duration = Duration::from_millis(200);
/// Scheduling slack for a loaded 2-core machine running tests in parallel.
const SLACK: Duration = Duration::from_millis(500);
/// How long "nothing else arrives" is watched for.
const QUIET: Duration = Duration::from_millis(300);

async fn start_node(redis_url: &str) -> Node {
    start_node_with(redis_url, &[]).await
}

async fn start_node_with(redis_url: &str, extra: &[&str]) -> Node {
    let timeout = TIMEOUT.as_millis().to_string();
    let probe = PROBE.as_millis().to_string();
    let mut args = vec![
        "--redis-url",
        redis_url,
        "--redis-timeout-ms",
        &timeout,
        "--probe-interval-ms",
        &probe,
    ];
    args.extend_from_slice(extra);
    support::start(&args).await
}

/// Runs blocking process control (kill, restart) without stalling the runtime.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Waits until `/readyz` answers `want` (200 or 503); returns how long it took.
async fn wait_readyz(node: &Node, want: u16, within: Duration, what: &str) -> Duration {
    poll(within, what, || async {
        let (status, body) = node.get_internal("/readyz").await;
        if status == want {
            Ok(())
        } else {
            Err(format!("{status} {body}"))
        }
    })
    .await
    .1
}

/// `POST /v1/publish`, timed. Returns status, body and latency.
async fn publish(api: &ApiClient, channel: &str, data: Value) -> (u16, Value, Duration) {
    let started = Instant::now();
    let (status, body) = api
        .call(
            "POST",
            "/v1/publish",
            Some(json!({"channel": channel, "data": data})),
        )
        .await;
    (status, body, started.elapsed())
}

/// What arrived on a socket before a deadline.
#[derive(Debug)]
enum Next {
    Frame(Value),
    Closed(u16, String),
    Deadline,
}

/// The next JSON frame before `deadline` (WebSocket pings and pongs skipped).
async fn next_before(client: &mut Client, deadline: Instant) -> Next {
    loop {
        let Ok(msg) = tokio::time::timeout_at(deadline, client.ws.next()).await else {
            return Next::Deadline;
        };
        match msg {
            Some(Ok(Message::Text(t))) => {
                return Next::Frame(serde_json::from_str(&t).expect("server sent invalid JSON"))
            }
            Some(Ok(Message::Ping(_))) | Some(Ok(Message::Pong(_))) => {}
            Some(Ok(Message::Close(Some(f)))) => {
                return Next::Closed(u16::from(f.code), f.reason.to_string())
            }
            Some(Ok(Message::Close(None))) => return Next::Closed(1005, String::new()),
            Some(Ok(other)) => panic!("unexpected websocket message {other:?}"),
            Some(Err(e)) => return Next::Closed(1006, format!("transport error: {e}")),
            None => return Next::Closed(1006, "stream ended".into()),
        }
    }
}

/// The next frame, which must be a message on `channel`; panics on anything else.
async fn expect_message(client: &mut Client, channel: &str, within: Duration) -> Value {
    match next_before(client, Instant::now() + within).await {
        Next::Frame(v) if v["type"] == "message" && v["channel"] == channel => v,
        other => panic!("expected a message on {channel}, got {other:?}"),
    }
}

/// Asserts that no data frame arrives within [`QUIET`].
async fn expect_quiet(client: &mut Client, who: &str) {
    match next_before(client, Instant::now() + QUIET).await {
        Next::Deadline => {}
        other => panic!("{who}: expected nothing more, got {other:?}"),
    }
}

/// A user's personal channel followed across kicks: resumes with `since` after a close
/// and records every message (offset order and duplicates are checked by the caller).
struct Follower<'a> {
    node: &'a Node,
    user: String,
    client: Client,
    /// The last position delivered (the welcome's when nothing arrived yet).
    last: (String, u64),
    got: Vec<Value>,
    /// Every goaway/close seen, in order.
    kicks: Vec<String>,
    /// `recovered` of every resume.
    resumes: Vec<bool>,
}

impl<'a> Follower<'a> {
    async fn connect(node: &'a Node, user: &str) -> Follower<'a> {
        let (client, welcome) = connect_since(node, user, None).await;
        Follower {
            node,
            user: user.to_owned(),
            client,
            last: position(&welcome),
            got: Vec::new(),
            kicks: Vec::new(),
            resumes: Vec::new(),
        }
    }

    fn channel(&self) -> String {
        format!("user:{}", self.user)
    }

    /// Handles one frame (or reconnects after a close). Returns false at the deadline.
    async fn step(&mut self, deadline: Instant) -> bool {
        match next_before(&mut self.client, deadline).await {
            Next::Deadline => return false,
            Next::Frame(v) if v["type"] == "message" => {
                assert_eq!(v["channel"], self.channel(), "{v}");
                self.last = position(&v);
                self.got.push(v);
            }
            Next::Frame(v) if v["type"] == "goaway" => self.kicks.push(format!("goaway {v}")),
            Next::Frame(_) => {}
            Next::Closed(code, reason) => {
                self.kicks.push(format!("close {code} {reason}"));
                let (client, welcome) = connect_since(
                    self.node,
                    &self.user,
                    Some((self.last.0.as_str(), self.last.1)),
                )
                .await;
                self.resumes.push(welcome["recovered"] == true);
                if welcome["recovered"] != true {
                    // The stream lost something: continue from where it stands now.
                    self.last = position(&welcome);
                }
                self.client = client;
            }
        }
        true
    }
}

/// `switchboard_backplane_reconnects_total` (absent = 0).
async fn reconnects(node: &Node) -> f64 {
    node.metric_value("switchboard_backplane_reconnects_total")
        .await
        .unwrap_or(0.0)
}

// --- A tiny RESP client (sentinel queries, WAIT, registry pokes) ---------------------

/// A reply of the tiny RESP client below.
#[derive(Debug, Clone, PartialEq)]
enum Resp {
    Text(String),
    Error(String),
    Int(i64),
    Nil,
    Array(Vec<Resp>),
}

impl Resp {
    fn text(&self) -> String {
        match self {
            Resp::Text(s) => s.clone(),
            Resp::Int(i) => i.to_string(),
            other => format!("{other:?}"),
        }
    }
}

fn read_resp(r: &mut impl BufRead) -> std::io::Result<Resp> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let line = line.trim_end_matches("\r\n");
    if line.is_empty() {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let (kind, rest) = line.split_at(1);
    let n = || rest.parse::<i64>().unwrap_or(-1);
    Ok(match kind {
        "+" => Resp::Text(rest.to_owned()),
        "-" => Resp::Error(rest.to_owned()),
        ":" => Resp::Int(n()),
        "$" | "*" if n() < 0 => Resp::Nil,
        "$" => {
            let mut buf = vec![0u8; n() as usize + 2];
            r.read_exact(&mut buf)?;
            buf.truncate(buf.len() - 2);
            Resp::Text(String::from_utf8_lossy(&buf).into_owned())
        }
        "*" => Resp::Array((0..n()).map(|_| read_resp(r)).collect::<Result<_, _>>()?),
        _ => Resp::Error(format!("unparsable reply {line:?}")),
    })
}

/// One command on a fresh connection to `127.0.0.1:port`.
fn redis_cmd(port: u16, args: &[&str]) -> std::io::Result<Resp> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(out.as_bytes())?;
    read_resp(&mut BufReader::new(s))
}
