//! The writer side of a socket: drains the outbound queue in batches (coalesced into one
//! flush), sends server pings, detects dead peers, ends connections whose token expired,
//! and finishes every connection with the close frame it was asked to send.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fastwebsockets::{Frame, OpCode, Payload, WebSocketWrite};
use switchboard_proto::{close, ErrorCode, ServerFrame};
use tokio::io::AsyncWrite;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;

use super::outbound::{CloseRequest, Item};
use crate::conn::ConnHandle;
use crate::metrics as m;
use crate::node::{now_ms, now_secs};

/// Largest batch written before one flush.
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// How long the close handshake may take before the socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

pub struct WriterConfig {
    pub opcode: OpCode,
    pub heartbeat: Duration,
    pub idle_timeout: Duration,
    /// A write that makes no progress for this long ends the connection.
    pub write_timeout: Duration,
}

pub struct Signals {
    /// Idle clock: milliseconds since `base` when the peer last sent anything.
    pub last_seen: Arc<AtomicU64>,
    pub base: Instant,
    /// Cancelled when the reader has stopped.
    pub reader_done: CancellationToken,
    /// Cancelled when the node stops hard.
    pub shutdown: CancellationToken,
}

/// Runs until the connection is closed; returns the close code sent (or 1006 when
/// none could be sent).
pub async fn run<S: AsyncWrite + Unpin>(
    mut ws: WebSocketWrite<S>,
    conn: Arc<ConnHandle>,
    cfg: WriterConfig,
    sig: Signals,
) -> u16 {
    let mut ping = tokio::time::interval_at(Instant::now() + cfg.heartbeat, cfg.heartbeat);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch: Vec<Item> = Vec::new();
    loop {
        let close = conn.outbound.take(&mut batch, MAX_BATCH_BYTES);
        if !batch.is_empty() {
            let written =
                timeout(cfg.write_timeout, write_batch(&mut ws, cfg.opcode, &batch)).await;
            batch.clear();
            match written {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return 1006,
                Err(_) => {
                    tracing::debug!(conn = %conn.conn_id, "write timed out");
                    return conn.outbound.close_request().map_or(1006, |c| c.code);
                }
            }
            if close.is_none() {
                continue;
            }
        }
        if let Some(req) = close {
            return finish(&mut ws, req, &sig).await;
        }
        let expiry = expiry_deadline(conn.expires_at());
        tokio::select! {
            _ = conn.outbound.notified() => {}
            _ = ping.tick() => {
                let now = sig.base.elapsed().as_millis() as u64;
                let idle_ms = now.saturating_sub(sig.last_seen.load(Ordering::Relaxed));
                if idle_ms >= cfg.idle_timeout.as_millis() as u64 {
                    conn.outbound.close(CloseRequest {
                        code: close::GOING_AWAY,
                        reason: "heartbeat timeout".into(),
                        send_frame: true,
                    }, false);
                    continue;
                }
                let frame = Frame::new(true, OpCode::Ping, None, Payload::Borrowed(&[]));
                let sent = timeout(cfg.write_timeout, async {
                    ws.write_frame(frame).await?;
                    ws.flush().await
                })
                .await;
                if !matches!(sent, Ok(Ok(()))) {
                    return 1006;
                }
            }
            _ = sleep_until(expiry) => {
                if conn.expires_at() <= now_secs() {
                    conn.send(&ServerFrame::error(ErrorCode::TokenExpired, "token expired"));
                    conn.outbound.close(CloseRequest {
                        code: close::TOKEN_EXPIRED,
                        reason: "token expired".into(),
                        send_frame: true,
                    }, true);
                }
            }
            _ = sig.shutdown.cancelled() => {
                conn.outbound.close(CloseRequest {
                    code: close::GOING_AWAY,
                    reason: "shutting down".into(),
                    send_frame: true,
                }, false);
            }
        }
    }
}

fn expiry_deadline(expires_at: u64) -> Instant {
    let left = expires_at.saturating_sub(now_secs());
    // Wake at the second the token expires (at most a day ahead; re-armed every loop).
    Instant::now() + Duration::from_secs(left.min(86_400)) + Duration::from_millis(5)
}

async fn write_batch<S: AsyncWrite + Unpin>(
    ws: &mut WebSocketWrite<S>,
    opcode: OpCode,
    batch: &[Item],
) -> Result<(), fastwebsockets::WebSocketError> {
    let mut delivered = 0u64;
    for item in batch {
        let op = if item.pong { OpCode::Pong } else { opcode };
        ws.write_frame(Frame::new(true, op, None, Payload::Borrowed(&item.data)))
            .await?;
        if item.published_ms.is_some() {
            delivered += 1;
        }
    }
    ws.flush().await?;
    if delivered > 0 {
        metrics::counter!(m::MESSAGES_DELIVERED).increment(delivered);
        let now = now_ms();
        let histogram = metrics::histogram!(m::DELIVERY_LATENCY);
        for ts in batch.iter().filter_map(|i| i.published_ms) {
            histogram.record(now.saturating_sub(ts) as f64 / 1000.0);
        }
    }
    Ok(())
}

/// Sends the close frame (when possible) and waits briefly for the peer's close.
async fn finish<S: AsyncWrite + Unpin>(
    ws: &mut WebSocketWrite<S>,
    req: CloseRequest,
    sig: &Signals,
) -> u16 {
    if !req.send_frame {
        return req.code;
    }
    let reason = truncate(&req.reason, 120);
    let sent = timeout(CLOSE_GRACE, async {
        ws.write_frame(Frame::close(req.code, reason.as_bytes()))
            .await?;
        ws.flush().await
    })
    .await;
    if matches!(sent, Ok(Ok(()))) {
        tokio::select! {
            _ = sig.reader_done.cancelled() => {}
            _ = tokio::time::sleep(CLOSE_GRACE) => {}
        }
    }
    req.code
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    //! The writer against an in-memory socket (`tokio::io::duplex`), read by a client-role
    //! fastwebsockets peer. Heartbeat and idle tests run on paused tokio time
    //! (`start_paused`), so production-sized intervals take no real time.

    use fastwebsockets::{Role, WebSocket, WebSocketRead};
    use switchboard_proto::Encoding;
    use tokio::io::{DuplexStream, ReadHalf, WriteHalf};
    use tokio::task::JoinHandle;

    use super::*;
    use crate::ws::outbound::Outbound;

    /// Upper bound for any single expected event (generous: CI machines are busy).
    /// (Paused-time tests advance through it instantly; it must exceed the heartbeat.)
    const WAIT: Duration = Duration::from_secs(120);

    struct Harness {
        conn: Arc<ConnHandle>,
        peer: WebSocket<DuplexStream>,
        writer: JoinHandle<u16>,
        last_seen: Arc<AtomicU64>,
        base: Instant,
        reader_done: CancellationToken,
        shutdown: CancellationToken,
        /// The server's read half stays open for the whole test.
        _read: WebSocketRead<ReadHalf<DuplexStream>>,
    }

    fn conn(expires_at: u64, queue_frames: usize) -> Arc<ConnHandle> {
        Arc::new(ConnHandle::new(
            1,
            "c-test-1".into(),
            "alice".into(),
            Encoding::Json,
            0,
            Outbound::new(queue_frames, 1 << 20),
            expires_at,
        ))
    }

    /// Starts `run` for `conn` with the given heartbeat and idle timeout.
    fn start(conn: Arc<ConnHandle>, heartbeat: Duration, idle_timeout: Duration) -> Harness {
        let (server, client) = tokio::io::duplex(1 << 16);
        let (r, w) = tokio::io::split(server);
        let (read, write): (_, WebSocketWrite<WriteHalf<DuplexStream>>) =
            fastwebsockets::after_handshake_split(r, w, Role::Server);
        let mut peer = WebSocket::after_handshake(client, Role::Client);
        peer.set_auto_pong(false);
        peer.set_auto_close(false);
        let base = Instant::now();
        let last_seen = Arc::new(AtomicU64::new(0));
        let reader_done = CancellationToken::new();
        let shutdown = CancellationToken::new();
        let cfg = WriterConfig {
            opcode: OpCode::Text,
            heartbeat,
            idle_timeout,
            write_timeout: Duration::from_secs(5),
        };
        let sig = Signals {
            last_seen: last_seen.clone(),
            base,
            reader_done: reader_done.clone(),
            shutdown: shutdown.clone(),
        };
        let writer = tokio::spawn(run(write, conn.clone(), cfg, sig));
        Harness {
            conn,
            peer,
            writer,
            last_seen,
            base,
            reader_done,
            shutdown,
            _read: read,
        }
    }

    /// What the peer saw.
    #[derive(Debug, PartialEq)]
    enum Seen {
        Ping,
        Text(serde_json::Value),
        Close(u16, String),
    }

    impl Harness {
        async fn next(&mut self) -> Seen {
            let frame = timeout(WAIT, self.peer.read_frame())
                .await
                .expect("timed out waiting for a frame")
                .expect("read frame");
            match frame.opcode {
                OpCode::Ping => Seen::Ping,
                OpCode::Text => Seen::Text(serde_json::from_slice(&frame.payload).expect("JSON")),
                OpCode::Close => Seen::Close(
                    u16::from_be_bytes([frame.payload[0], frame.payload[1]]),
                    String::from_utf8_lossy(&frame.payload[2..]).into_owned(),
                ),
                other => panic!("unexpected opcode {other:?}"),
            }
        }

        /// Acknowledges the close (as the reader would on the peer's reply) and returns the
        /// code `run` reports.
        async fn finish(self) -> u16 {
            self.reader_done.cancel();
            timeout(WAIT, self.writer)
                .await
                .expect("the writer did not stop")
                .expect("writer task")
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pings_every_heartbeat_and_closes_1001_on_shutdown() {
        let heartbeat = Duration::from_secs(25);
        let mut h = start(
            conn(now_secs() + 3600, 64),
            heartbeat,
            Duration::from_secs(60),
        );
        let started = h.base;
        assert_eq!(h.next().await, Seen::Ping);
        assert!(
            started.elapsed() >= heartbeat,
            "pinged after {:?}",
            started.elapsed()
        );
        assert_eq!(h.next().await, Seen::Ping);
        assert!(started.elapsed() >= heartbeat * 2);
        h.shutdown.cancel();
        assert_eq!(h.next().await, Seen::Close(1001, "shutting down".into()));
        assert_eq!(h.finish().await, 1001);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_is_closed_1001_after_the_idle_timeout() {
        let idle = Duration::from_secs(50);
        let mut h = start(conn(now_secs() + 3600, 64), Duration::from_secs(25), idle);
        let mut pings = 0;
        let close = loop {
            match h.next().await {
                Seen::Ping => pings += 1,
                other => break other,
            }
        };
        assert_eq!(close, Seen::Close(1001, "heartbeat timeout".into()));
        assert!(
            h.base.elapsed() >= idle,
            "closed after {:?}",
            h.base.elapsed()
        );
        assert!(
            (1..=2).contains(&pings),
            "{pings} pings before the idle close"
        );
        assert_eq!(h.finish().await, 1001);
    }

    #[tokio::test(start_paused = true)]
    async fn activity_from_the_peer_keeps_the_connection_open() {
        let mut h = start(
            conn(now_secs() + 3600, 64),
            Duration::from_secs(25),
            Duration::from_secs(50),
        );
        // The reader marks every received frame; do the same every 10 s for 200 s.
        let (last_seen, base) = (h.last_seen.clone(), h.base);
        let marker = tokio::spawn(async move {
            while base.elapsed() < Duration::from_secs(200) {
                last_seen.store(base.elapsed().as_millis() as u64, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        });
        let mut pings = 0;
        while h.base.elapsed() < Duration::from_secs(200) {
            assert_eq!(h.next().await, Seen::Ping, "after {:?}", h.base.elapsed());
            pings += 1;
        }
        assert!(pings >= 7, "{pings} pings in 200 s with a 25 s heartbeat");
        marker.await.expect("marker");
        // Silence from now on: the idle close follows.
        let close = loop {
            match h.next().await {
                Seen::Ping => {}
                other => break other,
            }
        };
        assert_eq!(close, Seen::Close(1001, "heartbeat timeout".into()));
        assert_eq!(h.finish().await, 1001);
    }

    #[tokio::test]
    async fn an_expired_token_gets_the_error_frame_then_4001() {
        // Wall-clock seconds: `expires_at = now` is already expired.
        let mut h = start(
            conn(now_secs(), 64),
            Duration::from_secs(60),
            Duration::from_secs(120),
        );
        match h.next().await {
            Seen::Text(v) => {
                assert_eq!(v["type"], "error", "{v}");
                assert_eq!(v["code"], "token_expired", "{v}");
            }
            other => panic!("expected the token_expired error, got {other:?}"),
        }
        assert_eq!(h.next().await, Seen::Close(4001, "token expired".into()));
        assert_eq!(h.finish().await, 4001);
    }

    #[tokio::test]
    async fn queued_frames_are_written_in_order_before_a_flushing_close() {
        let c = conn(now_secs() + 3600, 64);
        for id in 1..=3 {
            c.send(&ServerFrame::Pong { id: Some(id) });
        }
        c.outbound.close(
            CloseRequest {
                code: close::SERVICE_RESTART,
                reason: "draining".into(),
                send_frame: true,
            },
            true,
        );
        let mut h = start(c, Duration::from_secs(60), Duration::from_secs(120));
        for id in 1..=3 {
            assert_eq!(
                h.next().await,
                Seen::Text(serde_json::json!({"type": "pong", "id": id}))
            );
        }
        assert_eq!(h.next().await, Seen::Close(1012, "draining".into()));
        assert_eq!(h.finish().await, 1012);
    }

    #[tokio::test]
    async fn an_overflowing_queue_is_dropped_and_closed_with_4008() {
        let c = conn(now_secs() + 3600, 2);
        for id in 1..=3 {
            c.send(&ServerFrame::Pong { id: Some(id) });
        }
        let mut h = start(c, Duration::from_secs(60), Duration::from_secs(120));
        assert_eq!(h.next().await, Seen::Close(4008, "slow consumer".into()));
        // Nothing is pushed once closing.
        assert_eq!(
            h.conn.send(&ServerFrame::Pong { id: Some(9) }),
            crate::ws::outbound::Pushed::Closed
        );
        assert_eq!(h.finish().await, 4008);
    }
}
