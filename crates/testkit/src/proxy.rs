//! A TCP fault proxy for backplane fault tests: listens on a free loopback port and
//! forwards every connection to an upstream port (a `redis-server`), until told to break
//! some of them.
//!
//! - [`FaultProxy::blackhole_subscribers`]: every connection that has sent a
//!   `SUBSCRIBE`-family command (now or later, while the mode is on) stops forwarding in
//!   both directions without being closed — a wedged TCP path, the failure a pub/sub
//!   liveness probe exists for. The `SUBSCRIBE` that trips it is swallowed too.
//! - [`FaultProxy::heal`]: new connections flow normally again; connections already
//!   black-holed stay wedged (their owner has to give up on them and reconnect).
//! - [`FaultProxy::cut_reply_after`]: the next connection to send a given pattern (a
//!   unique idempotency key, say) has that data delivered to Redis, and then its client
//!   hears nothing more and is closed: the reply to a command Redis ran is lost.
//!
//! Dropping the proxy closes everything it holds.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The command names that make a connection a subscriber (matched case-insensitively;
/// `UNSUBSCRIBE`, `PSUBSCRIBE` and `SSUBSCRIBE` contain it too).
const SUBSCRIBE: &[u8] = b"SUBSCRIBE";

/// One proxied connection.
struct Conn {
    /// Has sent a SUBSCRIBE-family command.
    subscriber: AtomicBool,
    /// Wedged: nothing is forwarded any more, in either direction.
    blackholed: AtomicBool,
    /// Closes both sockets (proxy dropped).
    close: CancellationToken,
    /// Cut: Redis got the pattern; nothing more reaches the client, which is closed.
    cut: AtomicBool,
}

#[derive(Default)]
struct Mode {
    blackhole_subscribers: bool,
    /// Armed [`FaultProxy::cut_reply_after`]: the pattern that cuts the next connection.
    cut_after: Option<Vec<u8>>,
}

struct State {
    upstream: SocketAddr,
    mode: Mutex<Mode>,
    conns: Mutex<Vec<Arc<Conn>>>,
    accepted: AtomicUsize,
    /// Connections cut by [`FaultProxy::cut_reply_after`].
    cuts: AtomicUsize,
    /// Cancelled when the proxy is dropped: every task ends, every socket closes.
    stop: CancellationToken,
}

impl State {
    fn mode(&self) -> std::sync::MutexGuard<'_, Mode> {
        self.mode.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A fault-injecting TCP proxy on `127.0.0.1:<port>`.
pub struct FaultProxy {
    pub port: u16,
    state: Arc<State>,
}

impl FaultProxy {
    /// Starts a proxy forwarding to `127.0.0.1:<upstream_port>`.
    pub async fn start(upstream_port: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fault proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let state = Arc::new(State {
            upstream: SocketAddr::from(([127, 0, 0, 1], upstream_port)),
            mode: Mutex::new(Mode::default()),
            conns: Mutex::new(Vec::new()),
            accepted: AtomicUsize::new(0),
            cuts: AtomicUsize::new(0),
            stop: CancellationToken::new(),
        });
        tokio::spawn(accept_loop(listener, state.clone()));
        FaultProxy { port, state }
    }

    /// `redis://127.0.0.1:<proxy port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Black-holes every connection that has sent (or, while the mode is on, sends) a
    /// SUBSCRIBE-family command. Returns how many connections were black-holed at once.
    pub fn blackhole_subscribers(&self) -> usize {
        self.state.mode().blackhole_subscribers = true;
        let mut n = 0;
        for conn in self.state.conns().iter() {
            if conn.subscriber.load(Ordering::SeqCst) && !conn.close.is_cancelled() {
                conn.blackholed.store(true, Ordering::SeqCst);
                n += 1;
            }
        }
        n
    }

    /// New connections (and connections not black-holed yet) flow normally again.
    /// Connections already black-holed stay wedged.
    pub fn heal(&self) {
        self.state.mode().blackhole_subscribers = false;
    }

    /// How many connections are black-holed now (open and wedged).
    pub fn blackholed(&self) -> usize {
        self.state
            .conns()
            .iter()
            .filter(|c| c.blackholed.load(Ordering::SeqCst) && !c.close.is_cancelled())
            .count()
    }

    /// Arms a one-shot cut: the next client→server data containing `pattern` (matched
    /// exactly, also across two reads) is forwarded to Redis with whatever the client sends
    /// right after it (the rest of that write), then the upstream side is half-closed and
    /// read to its end — so Redis runs every command it got — while the client receives
    /// nothing more and sees its connection end as soon as Redis answered. Other
    /// connections are untouched; the mode disarms itself once it fired.
    pub fn cut_reply_after(&self, pattern: &[u8]) {
        assert!(!pattern.is_empty(), "an empty pattern would cut anything");
        self.state.mode().cut_after = Some(pattern.to_vec());
    }

    /// How many connections [`FaultProxy::cut_reply_after`] cut so far.
    pub fn cuts(&self) -> usize {
        self.state.cuts.load(Ordering::SeqCst)
    }

    /// How many connections the proxy accepted so far.
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.state.stop.cancel();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        let client = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
            _ = state.stop.cancelled() => return,
        };
        state.accepted.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(proxy_conn(client, state.clone()));
    }
}

async fn proxy_conn(client: TcpStream, state: Arc<State>) {
    let Ok(upstream) = TcpStream::connect(state.upstream).await else {
        return; // the client sees its connection closed, like a refused upstream
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let conn = Arc::new(Conn {
        subscriber: AtomicBool::new(false),
        blackholed: AtomicBool::new(false),
        close: state.stop.child_token(),
        cut: AtomicBool::new(false),
    });
    {
        let mut conns = state.conns();
        conns.retain(|c| !c.close.is_cancelled());
        conns.push(conn.clone());
    }
    let (client_rd, client_wr) = client.into_split();
    let (up_rd, up_wr) = upstream.into_split();
    let to_server = pump(client_rd, up_wr, conn.clone(), state.clone(), true);
    let to_client = pump(up_rd, client_wr, conn.clone(), state.clone(), false);
    tokio::select! {
        _ = async { tokio::join!(to_server, to_client) } => {}
        _ = conn.close.cancelled() => {}
    }
    // Both halves are dropped here: the sockets close.
    conn.close.cancel();
}

/// Copies `from` to `to` until EOF, an error or the black hole; a black-holed pump
/// parks (holding both sockets open) until the connection is closed by the proxy.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    conn: Arc<Conn>,
    state: Arc<State>,
    client_to_server: bool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    // The tail of the previous chunk, so that a command name split across reads is seen.
    let mut tail: Vec<u8> = Vec::new();
    // The same for the cut pattern.
    let mut cut_tail: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if !client_to_server && conn.cut.load(Ordering::SeqCst) {
            // Redis answered what it got: the client hears none of it.
            return drain_after_cut(from, to).await;
        }
        if client_to_server && cut_here(&conn, &state, &mut cut_tail, &buf[..n]) {
            return cut(from, to, &buf[..n]).await;
        }
        if client_to_server && !conn.subscriber.load(Ordering::SeqCst) {
            let mut window = std::mem::take(&mut tail);
            window.extend_from_slice(&buf[..n]);
            if contains_ignore_case(&window, SUBSCRIBE) {
                conn.subscriber.store(true, Ordering::SeqCst);
                if state.mode().blackhole_subscribers {
                    conn.blackholed.store(true, Ordering::SeqCst);
                }
            }
            let keep = window.len().saturating_sub(SUBSCRIBE.len() - 1);
            tail = window.split_off(keep);
        }
        if conn.blackholed.load(Ordering::SeqCst) {
            // Swallow this chunk and everything after it, without closing.
            conn.close.cancelled().await;
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    if conn.blackholed.load(Ordering::SeqCst) {
        conn.close.cancelled().await;
        return;
    }
    // Half-close towards the other side, like a transparent TCP relay.
    let _ = to.shutdown().await;
}

/// Whether this chunk (with the previous one's tail) completes the armed cut pattern;
/// if so the mode is disarmed and the connection marked cut (before anything of it goes
/// upstream, so that no reply to it can reach the client).
fn cut_here(conn: &Conn, state: &State, cut_tail: &mut Vec<u8>, chunk: &[u8]) -> bool {
    let mut mode = state.mode();
    let Some(pattern) = mode.cut_after.as_deref() else {
        cut_tail.clear();
        return false;
    };
    let mut window = std::mem::take(cut_tail);
    window.extend_from_slice(chunk);
    if window.windows(pattern.len()).any(|w| w == pattern) {
        mode.cut_after = None;
        conn.cut.store(true, Ordering::SeqCst);
        state.cuts.fetch_add(1, Ordering::SeqCst);
        return true;
    }
    let keep = window.len().saturating_sub(pattern.len() - 1);
    *cut_tail = window.split_off(keep);
    false
}

/// Client→server side of a cut: forwards `chunk` and what the client sends within a
/// moment after it (the rest of the same write, should a read have split it), then
/// half-closes towards Redis, which runs all of it and closes its side.
async fn cut(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, chunk: &[u8]) {
    if to.write_all(chunk).await.is_err() {
        return;
    }
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(Ok(n)) =
        tokio::time::timeout(std::time::Duration::from_millis(20), from.read(&mut buf)).await
    {
        if n == 0 || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
    // `from` is dropped here: with the client writer dropped too, the client's socket
    // closes.
}

/// Server→client side of a cut: closes towards the client at once and reads Redis's
/// answers to their end without forwarding them.
async fn drain_after_cut(mut from: OwnedReadHalf, mut to: OwnedWriteHalf) {
    let _ = to.shutdown().await;
    drop(to);
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}
