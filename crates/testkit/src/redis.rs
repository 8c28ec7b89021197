//! The Redis behind a test's nodes — one `redis-server` of the test's own, or a Redis
//! Cluster — and a tiny RESP client to look inside it the way a backend would (the
//! events stream, consumer groups), on either: on a cluster each command goes to the
//! node serving its key's slot.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream as StdTcpStream;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use switchboard_router::testsuite::redis_cluster::{RedisCluster, RespValue};
use switchboard_router::testsuite::redis_server::RedisServer;

/// Which Redis a test runs on (see [`crate::cluster::Cluster::start_on`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Redis {
    /// One `redis-server` of the test's own, without persistence.
    One,
    /// The test binary's shared Redis Cluster (3 primaries with a replica each, started
    /// on first use); every test keeps to its own key prefix, so tests share it safely.
    /// Tests that break Redis bring a cluster of their own ([`Store::Cluster`]).
    Cluster,
}

/// A running Redis that a test's nodes share.
pub enum Store {
    One(RedisServer),
    Cluster(Arc<RedisCluster>),
}

impl Store {
    /// Starts (or, for the shared cluster, joins) the Redis that `redis` names.
    pub async fn start(redis: Redis) -> Store {
        tokio::task::spawn_blocking(move || match redis {
            Redis::One => Store::One(RedisServer::start()),
            Redis::Cluster => Store::Cluster(shared_cluster()),
        })
        .await
        .expect("start Redis")
    }

    /// The `--redis-url` of the nodes.
    pub fn url(&self) -> String {
        match self {
            Store::One(server) => server.url(),
            Store::Cluster(cluster) => cluster.url(),
        }
    }

    /// The Redis Cluster; panics on one Redis.
    pub fn cluster(&self) -> &Arc<RedisCluster> {
        match self {
            Store::Cluster(cluster) => cluster,
            Store::One(_) => panic!("this test runs on one redis-server, not a Redis Cluster"),
        }
    }

    /// Runs one command, on a cluster on the node that serves its key (see
    /// [`command_key`]). Blocking, like the rest of this client.
    pub fn cmd(&self, args: &[&str]) -> Resp {
        match self {
            Store::One(server) => redis_cmd(server.port, args),
            Store::Cluster(cluster) => {
                let mut client = cluster.client();
                Resp::from(client.cmd(command_key(args), args))
            }
        }
    }
}

/// The binary's shared Redis Cluster. Never dropped: its launcher stops the nodes when
/// the test process exits (it watches its stdin).
fn shared_cluster() -> Arc<RedisCluster> {
    static SHARED: OnceLock<Arc<RedisCluster>> = OnceLock::new();
    SHARED
        .get_or_init(|| Arc::new(RedisCluster::start()))
        .clone()
}

/// The key that decides where a command runs on a Redis Cluster: the stream of `XGROUP`
/// and `XINFO`, the first stream after `STREAMS` of `XREAD`/`XREADGROUP`, the first key
/// of `EVAL`/`EVALSHA`, else the first argument ("" — any node — for commands without one).
pub fn command_key<'a>(args: &[&'a str]) -> &'a str {
    let name = args
        .first()
        .map(|a| a.to_ascii_uppercase())
        .unwrap_or_default();
    let at = |i: usize| args.get(i).copied().unwrap_or("");
    match name.as_str() {
        "XGROUP" | "XINFO" => at(2),
        "XREAD" | "XREADGROUP" => args
            .iter()
            .position(|a| a.eq_ignore_ascii_case("STREAMS"))
            .map_or("", |i| at(i + 1)),
        "EVAL" | "EVALSHA" => at(3),
        "PING" | "INFO" | "CLUSTER" | "DBSIZE" => "",
        _ => at(1),
    }
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

    /// The elements of an array (either nil is empty); panics otherwise.
    pub fn items(&self) -> &[Resp] {
        match self {
            Resp::Array(Some(v)) => v,
            Resp::Array(None) | Resp::Bulk(None) => &[],
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

/// The cluster client's replies (it does not tell the two nils apart: nil is `Bulk(None)`).
impl From<RespValue> for Resp {
    fn from(v: RespValue) -> Resp {
        match v {
            RespValue::Simple(s) => Resp::Simple(s),
            RespValue::Error(e) => Resp::Error(e),
            RespValue::Int(i) => Resp::Int(i),
            RespValue::Bulk(b) => Resp::Bulk(Some(b)),
            RespValue::Array(items) => {
                Resp::Array(Some(items.into_iter().map(Resp::from).collect()))
            }
            RespValue::Nil => Resp::Bulk(None),
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
