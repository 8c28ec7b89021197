//! Multi-node test support: one throwaway `redis-server` and several real gateway
//! processes sharing it, plus a tiny RESP client to look inside Redis (the events
//! stream, consumer groups) the way a backend would.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream as StdTcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use switchboard_router::testsuite::redis_server::RedisServer;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::{Client, Node};

/// The events stream key when `--events-stream` is not given.
pub const DEFAULT_EVENTS_STREAM: &str = "switchboard:events";

/// A Redis server and `nodes` gateway processes routed through it.
pub struct Cluster {
    /// Declared before `redis`: the nodes go first when a cluster is dropped.
    pub nodes: Vec<Node>,
    pub redis: RedisServer,
    /// The key prefix every node of this cluster uses.
    pub prefix: String,
    /// The connection events stream (the configured `--events-stream`, else the default).
    pub events_stream: String,
    /// Every node's arguments (`--redis-url`, `--redis-prefix` and the extra ones).
    args: Vec<String>,
}

impl Cluster {
    /// Starts a Redis and `n` nodes (started concurrently) with `extra` arguments.
    pub async fn start(n: usize, extra: &[&str]) -> Cluster {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let redis = RedisServer::start();
        let prefix = format!(
            "sbt{}-{}:",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut args: Vec<String> = vec![
            "--redis-url".into(),
            redis.url(),
            "--redis-prefix".into(),
            prefix.clone(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let events_stream = extra
            .iter()
            .position(|a| *a == "--events-stream")
            .and_then(|i| extra.get(i + 1))
            .map_or_else(|| DEFAULT_EVENTS_STREAM.to_owned(), |s| s.to_string());
        let mut cluster = Cluster {
            redis,
            nodes: Vec::new(),
            prefix,
            events_stream,
            args,
        };
        let started = futures_util::future::join_all((0..n).map(|_| cluster.start_node())).await;
        cluster.nodes = started;
        cluster
    }

    /// Starts one more node of this cluster (not added to `nodes`).
    pub async fn start_node(&self) -> Node {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        super::start(&args).await
    }

    /// The ids of the running nodes, in order.
    pub fn node_ids(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.node_id.clone()).collect()
    }

    /// SIGKILLs node `i` (no drain, no clean-up: its registry entries stay until its lease
    /// expires) and waits for the process to be gone. The `Node` stays in `nodes`.
    pub async fn kill(&mut self, i: usize) {
        kill(&mut self.nodes[i]).await;
    }

    /// SIGKILLs node `i` and starts a fresh node (a new node id) in its place.
    pub async fn restart(&mut self, i: usize) {
        kill(&mut self.nodes[i]).await;
        self.nodes[i] = self.start_node().await;
    }

    /// Starts node `i` (killed before) again under the same node id, as a StatefulSet
    /// pod or a systemd unit comes back.
    pub async fn revive(&mut self, i: usize) {
        let id = self.nodes[i].node_id.clone();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.nodes[i] = start_named(&id, &args).await;
    }

    /// Runs one Redis command on a fresh connection.
    pub fn redis_cmd(&self, args: &[&str]) -> Resp {
        redis_cmd(self.redis.port, args)
    }

    /// Every entry of the events stream, oldest first.
    pub fn events(&self) -> Vec<StreamEntry> {
        let reply = self.redis_cmd(&["XRANGE", &self.events_stream, "-", "+"]);
        stream_entries(&reply)
    }
}

/// Starts a node with an explicit `--node-id` (`support::start` picks a fresh one).
pub async fn start_named(node_id: &str, args: &[&str]) -> Node {
    super::spawn_node(node_id, "127.0.0.1:0", args, &[]).await
}

/// SIGKILLs a node's process and reaps it.
pub async fn kill(node: &mut Node) {
    node.child.start_kill().expect("SIGKILL the node");
    tokio::time::timeout(Duration::from_secs(5), node.child.wait())
        .await
        .expect("the killed node did not exit")
        .expect("wait for the killed node");
}

// --- A minimal RESP client ----------------------------------------------------------

/// A RESP2 value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    /// `None` is the nil bulk string.
    Bulk(Option<Vec<u8>>),
    /// `None` is the nil array.
    Array(Option<Vec<Resp>>),
}

impl Resp {
    /// The value as text (simple, bulk, integer); panics otherwise.
    pub fn text(&self) -> String {
        match self {
            Resp::Simple(s) => s.clone(),
            Resp::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
            Resp::Int(i) => i.to_string(),
            other => panic!("expected a string reply, got {other:?}"),
        }
    }

    /// The elements of an array (a nil array is empty); panics otherwise.
    pub fn items(&self) -> &[Resp] {
        match self {
            Resp::Array(Some(v)) => v,
            Resp::Array(None) => &[],
            other => panic!("expected an array reply, got {other:?}"),
        }
    }

    pub fn int(&self) -> i64 {
        match self {
            Resp::Int(i) => *i,
            other => panic!("expected an integer reply, got {other:?}"),
        }
    }
}

/// Runs one command against `127.0.0.1:port` on a fresh connection; panics on I/O
/// errors (a test's Redis must be reachable).
pub fn redis_cmd(port: u16, args: &[&str]) -> Resp {
    let mut stream = StdTcpStream::connect(("127.0.0.1", port)).expect("connect to the test Redis");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    stream.write_all(&out).expect("send a Redis command");
    let mut reader = BufReader::new(stream);
    read_resp(&mut reader)
}

fn read_line(r: &mut impl BufRead) -> String {
    let mut line = String::new();
    r.read_line(&mut line).expect("read a Redis reply");
    assert!(line.ends_with("\r\n"), "truncated Redis reply: {line:?}");
    line.truncate(line.len() - 2);
    line
}

fn read_resp(r: &mut impl BufRead) -> Resp {
    let line = read_line(r);
    let (kind, rest) = line.split_at(1);
    match kind {
        "+" => Resp::Simple(rest.to_owned()),
        "-" => Resp::Error(rest.to_owned()),
        ":" => Resp::Int(rest.parse().expect("integer reply")),
        "$" => {
            let n: i64 = rest.parse().expect("bulk length");
            if n < 0 {
                return Resp::Bulk(None);
            }
            let mut buf = vec![0u8; n as usize + 2];
            r.read_exact(&mut buf).expect("bulk body");
            buf.truncate(n as usize);
            Resp::Bulk(Some(buf))
        }
        "*" => {
            let n: i64 = rest.parse().expect("array length");
            if n < 0 {
                return Resp::Array(None);
            }
            Resp::Array(Some((0..n).map(|_| read_resp(r)).collect()))
        }
        _ => panic!("unexpected Redis reply line: {line:?}"),
    }
}

/// One stream entry: its id and its fields.
#[derive(Clone, Debug)]
pub struct StreamEntry {
    pub id: String,
    pub fields: HashMap<String, String>,
}

impl StreamEntry {
    /// A field's value ("" when absent).
    pub fn get(&self, field: &str) -> &str {
        self.fields.get(field).map_or("", String::as_str)
    }
}

/// The entries of an XRANGE reply (`[[id, [k, v, ...]], ...]`).
pub fn stream_entries(reply: &Resp) -> Vec<StreamEntry> {
    reply
        .items()
        .iter()
        .map(|e| {
            let parts = e.items();
            let kv = parts[1].items();
            StreamEntry {
                id: parts[0].text(),
                fields: kv
                    .chunks_exact(2)
                    .map(|c| (c[0].text(), c[1].text()))
                    .collect(),
            }
        })
        .collect()
}

/// The entries of an XREADGROUP/XREAD reply for one stream (nil = none).
pub fn read_entries(reply: &Resp) -> Vec<StreamEntry> {
    match reply.items().first() {
        None => Vec::new(),
        Some(stream) => stream_entries(&stream.items()[1]),
    }
}

// --- Clients: reading until a deadline -----------------------------------------------

/// What arrived on a socket before a deadline.
#[derive(Debug)]
pub enum Next {
    Frame(Value),
    Deadline,
    Closed(u16, String),
}

/// The next JSON frame before `deadline` (pings and pongs skipped); a close is returned,
/// a transport error panics with `who` in the message.
pub async fn next_before(client: &mut Client, deadline: Instant, who: &str) -> Next {
    loop {
        let msg = match tokio::time::timeout_at(deadline, client.ws.next()).await {
            Err(_) => return Next::Deadline,
            Ok(m) => m,
        };
        match msg {
            Some(Ok(Message::Text(t))) => {
                return Next::Frame(
                    serde_json::from_str(&t)
                        .unwrap_or_else(|e| panic!("{who}: invalid JSON from the server: {e}")),
                )
            }
            Some(Ok(Message::Ping(_))) | Some(Ok(Message::Pong(_))) => continue,
            Some(Ok(Message::Close(f))) => {
                return match f {
                    Some(f) => Next::Closed(u16::from(f.code), f.reason.to_string()),
                    None => Next::Closed(1005, String::new()),
                }
            }
            Some(Ok(other)) => panic!("{who}: unexpected websocket message {other:?}"),
            Some(Err(e)) => panic!("{who}: websocket error: {e}"),
            None => return Next::Closed(1006, "stream ended".into()),
        }
    }
}

/// Polls `check` every 50 ms until it returns `Some` or `within` passes; panics with
/// `what` (and the last observation) on timeout. Returns the value and the time taken.
pub async fn poll<T, F, Fut>(within: Duration, what: &str, mut check: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    let deadline = started + within;
    loop {
        match check().await {
            Ok(v) => return (v, started.elapsed()),
            Err(last) if Instant::now() >= deadline => {
                panic!("{what}: not true within {within:?}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
