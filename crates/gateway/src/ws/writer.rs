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
