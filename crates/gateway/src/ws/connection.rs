//! One WebSocket from the 101 to the last cleanup: splits the socket, runs the writer
//! task and the reader (with the session) and unregisters everything at the end.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use fastwebsockets::{OpCode, Role};
use hyper_util::rt::TokioIo;
use switchboard_proto::{close, Encoding, ErrorCode, ServerFrame};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::handshake::Accepted;
use super::lazy_buf::LazyBufWriter;
use super::outbound::{CloseRequest, Outbound};
use super::reader::{self, End};
use super::writer::{self, Signals, WriterConfig};
use crate::conn::ConnHandle;
use crate::metrics as m;
use crate::node::{now_ms, Node};
use crate::session::Session;

/// How long a server-initiated close waits for the peer's close frame.
const CLOSE_HANDSHAKE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

pub async fn run(
    node: Arc<Node>,
    upgrade: fastwebsockets::upgrade::UpgradeFut,
    accepted: Accepted,
) {
    let Accepted {
        claims,
        encoding,
        since,
        admission,
        ..
    } = accepted;
    let _admission = admission;
    let cfg = &node.config;
    let ws = match tokio::time::timeout(cfg.handshake_timeout, upgrade).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
        Err(_) => {
            tracing::debug!("upgrade timed out");
            return;
        }
    };
    let io: TokioIo<hyper::upgrade::Upgraded> = ws.into_inner();
    let (r, w) = tokio::io::split(io);
    let (mut rd, mut wr) =
        fastwebsockets::after_handshake_split(r, LazyBufWriter::new(w, 64 * 1024), Role::Server);
    rd.set_auto_close(false);
    rd.set_auto_pong(false);
    rd.set_max_message_size(cfg.max_message_bytes.saturating_add(1));
    wr.set_writev(false);

    let (id, conn_id) = node.next_conn_id();
    let conn = Arc::new(ConnHandle::new(
        id,
        conn_id,
        claims.sub.clone(),
        encoding,
        now_ms(),
        Outbound::new(cfg.outbound_queue_frames, cfg.outbound_queue_bytes),
        claims.exp,
    ));
    metrics::gauge!(m::CONNECTIONS).increment(1.0);
    metrics::counter!(m::CONNECTIONS_TOTAL).increment(1);
    tracing::debug!(conn = %conn.conn_id, user = %conn.user, "connected");

    let base = Instant::now();
    let last_seen = Arc::new(AtomicU64::new(0));
    let reader_done = CancellationToken::new();
    let writer_done = CancellationToken::new();
    let writer = {
        let conn = conn.clone();
        let cfg = WriterConfig {
            opcode: match encoding {
                Encoding::Json => OpCode::Text,
                Encoding::Proto => OpCode::Binary,
            },
            heartbeat: cfg.heartbeat,
            idle_timeout: cfg.idle_timeout(),
            write_timeout: cfg.idle_timeout().max(std::time::Duration::from_secs(5)),
        };
        let sig = Signals {
            last_seen: last_seen.clone(),
            base,
            reader_done: reader_done.clone(),
            shutdown: node.shutdown.clone(),
        };
        let writer_done = writer_done.clone();
        node.tracker.spawn(async move {
            let code = writer::run(wr, conn, cfg, sig).await;
            writer_done.cancel();
            code
        })
    };

    let mut session = Session::new(node.clone(), conn.clone(), claims);
    let opened = tokio::select! {
        r = session.open(since) => r,
        _ = writer_done.cancelled() => Ok(()),
    };
    if let Err(e) = opened {
        tracing::warn!(conn = %conn.conn_id, error = %e, "could not open the session");
        conn.send(&ServerFrame::error(
            ErrorCode::Unavailable,
            "backplane unavailable",
        ));
        conn.outbound.close(
            CloseRequest {
                code: close::TRY_AGAIN_LATER,
                reason: "backplane unavailable".into(),
                send_frame: true,
            },
            true,
        );
    } else {
        let end = tokio::select! {
            end = reader::run(&mut rd, &mut session, &conn, cfg.max_message_bytes, &last_seen, base) => Some(end),
            _ = writer_done.cancelled() => None,
        };
        // The socket is going: in-flight RPC calls stop (their replies could not be sent).
        conn.cancel.cancel();
        if let Some(end) = end {
            // A close the server decided on (limits, bad input) is preceded by what was
            // already queued: replies and the `error` frame that says why (PROTOCOL.md §4).
            let flush = matches!(end, End::Close(_));
            let request = match end {
                End::PeerClose(code) => CloseRequest {
                    code: if code == 1005 { close::NORMAL } else { code },
                    reason: String::new(),
                    send_frame: true,
                },
                End::Eof => CloseRequest {
                    code: 1006,
                    reason: String::new(),
                    send_frame: false,
                },
                End::Close(req) => req,
            };
            conn.outbound.close(request, flush);
            if flush {
                // The closing handshake (RFC 6455 §7.1.1): read and drop what the peer still
                // sends until it answers our close. Closing the socket with its data unread
                // would send a TCP reset, and the peer could lose our close frame and code.
                tokio::select! {
                    _ = reader::discard_until_close(&mut rd) => {}
                    _ = writer_done.cancelled() => {}
                    _ = tokio::time::sleep(CLOSE_HANDSHAKE_GRACE) => {}
                }
            }
        }
    }
    conn.cancel.cancel();
    reader_done.cancel();
    let code = writer.await.unwrap_or(1006);
    drop(rd);
    session.close().await;
    metrics::gauge!(m::CONNECTIONS).decrement(1.0);
    metrics::counter!(m::DISCONNECTS, "code" => m::close_code_label(code)).increment(1);
    tracing::debug!(conn = %conn.conn_id, code, "disconnected");
}
