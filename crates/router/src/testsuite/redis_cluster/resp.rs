//! A tiny blocking RESP2 client on `std::net::TcpStream`, the key → slot hash of Redis
//! Cluster, and a client that routes a key to its slot's owner (following MOVED and ASK).

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long one reply may take (a SIGSTOPped node answers nothing).
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A RESP2 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RespValue {
    /// A simple string (`+OK`).
    Simple(String),
    /// An error reply (`-MOVED 3999 127.0.0.1:7002`), without the `-`.
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Array(Vec<RespValue>),
    /// The nil bulk string or the nil array.
    Nil,
}

impl RespValue {
    /// The value as text (simple, bulk or integer); panics otherwise.
    pub fn text(&self) -> String {
        match self {
            RespValue::Simple(s) => s.clone(),
            RespValue::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
            RespValue::Int(i) => i.to_string(),
            other => panic!("expected a string reply, got {other:?}"),
        }
    }

    /// The integer; panics on anything else.
    pub fn int(&self) -> i64 {
        match self {
            RespValue::Int(i) => *i,
            other => panic!("expected an integer reply, got {other:?}"),
        }
    }

    /// The elements of an array (nil is empty); panics on anything else.
    pub fn items(&self) -> &[RespValue] {
        match self {
            RespValue::Array(v) => v,
            RespValue::Nil => &[],
            other => panic!("expected an array reply, got {other:?}"),
        }
    }

    /// The error text, when this is an error reply.
    pub fn error(&self) -> Option<&str> {
        match self {
            RespValue::Error(e) => Some(e),
            _ => None,
        }
    }

    /// Whether this is `+OK`.
    pub fn is_ok(&self) -> bool {
        matches!(self, RespValue::Simple(s) if s == "OK")
    }
}

/// One connection to one node.
pub struct RespConn {
    reader: BufReader<TcpStream>,
}

impl RespConn {
    /// Connects to the node on `port`, authenticating when its cluster was started with a
    /// password ([`ClusterOptions::password`](super::ClusterOptions::password)).
    pub fn connect(port: u16) -> io::Result<RespConn> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let mut conn = RespConn {
            reader: BufReader::new(stream),
        };
        if let Some(password) = password_of(port) {
            let reply = conn.cmd(&["AUTH", password.as_str()])?;
            if !reply.is_ok() {
                return Err(bad(format!("AUTH on {port}: {reply:?}")));
            }
        }
        Ok(conn)
    }

    /// Sends one command and reads its reply (error replies are values, not `Err`).
    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> io::Result<RespValue> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            let a = a.as_ref();
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.reader.get_mut().write_all(&out)?;
        read_value(&mut self.reader)
    }
}

/// Passwords of the nodes of clusters started with one, by port (ports are unique within
/// a test process, and every helper here connects through [`RespConn::connect`]).
fn passwords() -> &'static Mutex<HashMap<u16, String>> {
    static PASSWORDS: OnceLock<Mutex<HashMap<u16, String>>> = OnceLock::new();
    PASSWORDS.get_or_init(Default::default)
}

/// Makes every connection to `ports` authenticate with `password` first.
pub(super) fn set_password(ports: &[u16], password: &str) {
    let mut map = passwords().lock().unwrap_or_else(|e| e.into_inner());
    for &p in ports {
        map.insert(p, password.to_owned());
    }
}

fn password_of(port: u16) -> Option<String> {
    passwords()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&port)
        .cloned()
}

/// One command on a fresh connection to `port`.
pub fn cmd_once<A: AsRef<[u8]>>(port: u16, args: &[A]) -> io::Result<RespValue> {
    RespConn::connect(port)?.cmd(args)
}

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    if !line.ends_with("\r\n") {
        return Err(bad(format!("truncated reply line {line:?}")));
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

fn read_value(r: &mut impl BufRead) -> io::Result<RespValue> {
    let line = read_line(r)?;
    let Some(kind) = line.chars().next() else {
        return Err(bad("empty reply line"));
    };
    let rest = &line[1..];
    let number = || {
        rest.parse::<i64>()
            .map_err(|_| bad(format!("bad number {rest:?}")))
    };
    Ok(match kind {
        '+' => RespValue::Simple(rest.to_owned()),
        '-' => RespValue::Error(rest.to_owned()),
        ':' => RespValue::Int(number()?),
        '$' => match usize::try_from(number()?) {
            Err(_) => RespValue::Nil,
            Ok(n) => {
                let mut buf = vec![0u8; n + 2];
                r.read_exact(&mut buf)?;
                buf.truncate(n);
                RespValue::Bulk(buf)
            }
        },
        '*' => match usize::try_from(number()?) {
            Err(_) => RespValue::Nil,
            Ok(n) => RespValue::Array((0..n).map(|_| read_value(r)).collect::<Result<_, _>>()?),
        },
        _ => return Err(bad(format!("unexpected reply line {line:?}"))),
    })
}

/// The hash slot of `key`, exactly as Redis Cluster computes it: CRC16-CCITT (XMODEM) mod
/// 16384 of the key, or of the part between the first `{` and the next `}` when that part
/// is not empty (`{user:alice}:inbox` → `user:alice`; `a{}b` and `{}{x}` hash whole).
pub fn slot_of(key: impl AsRef<[u8]>) -> u16 {
    let key = key.as_ref();
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let tag = &key[open + 1..];
            let len = tag.iter().position(|&b| b == b'}')?;
            (len > 0).then(|| &tag[..len])
        })
        .unwrap_or(key);
    crc16(hashed) % 16384
}

/// CRC16-CCITT, XMODEM variant (polynomial 0x1021, initial value 0).
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A client for keyed commands that finds each key's node itself, as `redis-cli -c` does:
/// it follows MOVED (and remembers the owner), follows ASK once with ASKING, and retries
/// TRYAGAIN, CLUSTERDOWN, LOADING and lost connections for up to [`ClusterClient::patience`].
/// Owns its connections: give each thread its own (`RedisCluster::client`).
pub struct ClusterClient {
    seeds: Vec<u16>,
    next_seed: usize,
    owners: HashMap<u16, u16>,
    conns: HashMap<u16, RespConn>,
    /// How long one command may keep retrying (default 15 s).
    pub patience: Duration,
    /// MOVED replies followed so far.
    pub moved: u64,
    /// ASK replies followed so far.
    pub asked: u64,
}

impl ClusterClient {
    /// A client that starts at `seeds` (any nodes of the cluster).
    pub fn new(seeds: Vec<u16>) -> ClusterClient {
        assert!(!seeds.is_empty(), "a cluster client needs a seed node");
        ClusterClient {
            seeds,
            next_seed: 0,
            owners: HashMap::new(),
            conns: HashMap::new(),
            patience: Duration::from_secs(15),
            moved: 0,
            asked: 0,
        }
    }

    /// Runs `args` (whose keys all hash to the slot of `key`) on the node serving `key`.
    /// Error replies other than redirects and transient ones are returned as values;
    /// panics when no node answers within the patience.
    pub fn cmd<A: AsRef<[u8]>>(&mut self, key: impl AsRef<[u8]>, args: &[A]) -> RespValue {
        let slot = slot_of(key);
        let deadline = Instant::now() + self.patience;
        let mut port = self.owner_guess(slot);
        let mut asking = false;
        loop {
            let reply = self.send(port, asking, args);
            asking = false;
            let transient = match &reply {
                Ok(RespValue::Error(e)) => {
                    if let Some(to) = redirect(e, "MOVED ") {
                        self.moved += 1;
                        self.owners.insert(slot, to);
                        port = to;
                        continue;
                    }
                    if let Some(to) = redirect(e, "ASK ") {
                        self.asked += 1;
                        port = to;
                        asking = true;
                        continue;
                    }
                    ["TRYAGAIN", "CLUSTERDOWN", "LOADING"]
                        .iter()
                        .any(|t| e.starts_with(t))
                }
                Ok(_) => false,
                Err(_) => {
                    self.conns.remove(&port);
                    self.owners.remove(&slot);
                    true
                }
            };
            let lost = reply.is_err();
            match reply {
                Ok(value) if !transient || Instant::now() > deadline => return value,
                Err(e) if Instant::now() > deadline => {
                    panic!(
                        "slot {slot}: no node answered within {:?}: {e}",
                        self.patience
                    )
                }
                _ => {}
            }
            std::thread::sleep(Duration::from_millis(50));
            port = if lost {
                self.seed()
            } else {
                self.owner_guess(slot)
            };
        }
    }

    fn owner_guess(&mut self, slot: u16) -> u16 {
        match self.owners.get(&slot) {
            Some(&port) => port,
            None => self.seed(),
        }
    }

    fn seed(&mut self) -> u16 {
        let port = self.seeds[self.next_seed % self.seeds.len()];
        self.next_seed += 1;
        port
    }

    fn send<A: AsRef<[u8]>>(
        &mut self,
        port: u16,
        asking: bool,
        args: &[A],
    ) -> io::Result<RespValue> {
        let conn = match self.conns.entry(port) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(RespConn::connect(port)?),
        };
        if asking {
            let reply = conn.cmd(&["ASKING"])?;
            if !reply.is_ok() {
                return Ok(reply);
            }
        }
        conn.cmd(args)
    }
}

/// The port of a `MOVED <slot> <host>:<port>` / `ASK …` error.
fn redirect(error: &str, kind: &str) -> Option<u16> {
    let target = error.strip_prefix(kind)?.split(' ').nth(1)?;
    target.rsplit(':').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_is_xmodem() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
    }

    #[test]
    fn slots_of_known_keys() {
        // From the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(slot_of("foo"), 12182);
        assert_eq!(slot_of("somekey"), 11058);
        assert_eq!(slot_of(""), 0);
    }

    #[test]
    fn hash_tags() {
        assert_eq!(slot_of("{user1000}.following"), slot_of("user1000"));
        assert_eq!(slot_of("foo{bar}{zap}"), slot_of("bar"));
        assert_eq!(slot_of("foo{{bar}}zap"), slot_of("{bar"));
        assert_eq!(slot_of("foo{}{bar}"), slot_of("foo{}{bar}".as_bytes()));
        assert_ne!(slot_of("foo{}{bar}"), slot_of("bar"));
        assert_eq!(slot_of("{}"), crc16(b"{}") % 16384);
        assert_eq!(slot_of("a{b"), crc16(b"a{b") % 16384);
    }

    #[test]
    fn redirects() {
        assert_eq!(redirect("MOVED 3999 127.0.0.1:6381", "MOVED "), Some(6381));
        assert_eq!(redirect("ASK 3999 127.0.0.1:6382", "ASK "), Some(6382));
        assert_eq!(redirect("ASK 3999 127.0.0.1:6382", "MOVED "), None);
    }

    #[test]
    fn parses_replies() {
        let mut r = &b"*3\r\n$3\r\nfoo\r\n$-1\r\n:7\r\n-ERR no\r\n*-1\r\n"[..];
        assert_eq!(
            read_value(&mut r).unwrap(),
            RespValue::Array(vec![
                RespValue::Bulk(b"foo".to_vec()),
                RespValue::Nil,
                RespValue::Int(7)
            ])
        );
        assert_eq!(read_value(&mut r).unwrap().error(), Some("ERR no"));
        assert_eq!(read_value(&mut r).unwrap(), RespValue::Nil);
        assert!(read_value(&mut r).is_err());
    }
}
