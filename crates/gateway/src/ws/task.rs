//! One WebSocket from the 101 to the last cleanup, in one task: takes the raw socket back
//! (plain or TLS) from hyper and the registry entry over from the handshake, opens the session, reads and
//! handles frames (writing any backlog while it waits), runs the closing handshake and
//! unregisters everything at the end.
//!
//! What an idle connection holds: this task (waiting for the socket to become readable, no
//! read buffer, no timer), its `ConnHandle` (identity, cursors, an empty outbound queue)
//! and the session state (claims, rooms). Writes happen on whichever task produces the
//! frame; heartbeats, the idle close and token expiry are the node's `sweeper`.

use std::sync::Arc;

use fastwebsockets::Role;
use switchboard_proto::{clock, close, Encoding, ErrorCode, ServerFrame, StreamPosition};

use super::driver::Driver;
use super::reader::{self, End};
use super::registration::Registration;
use crate::auth::Claims;
use crate::conn::outbound::{CloseRequest, Outbound};
use crate::conn::socket::{Socket, SocketReader};
use crate::conn::ConnHandle;
use crate::metrics as m;
use crate::node::{Admission, Node};
use crate::session::Session;

/// What a successful handshake hands to the connection.
pub struct Accepted {
    pub claims: Claims,
    pub encoding: Encoding,
    pub subprotocol: Option<&'static str>,
    pub since: Option<StreamPosition>,
    pub admission: Admission,
    /// The connection's id and registry entry, written before the 101.
    pub registration: Registration,
}

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
        registration,
        ..
    } = accepted;
    let Some((socket, early)) = take_socket(&node, upgrade).await else {
        return;
    };
    let new = registration.take_over();
    let outbound = Outbound::new(
        node.config.outbound_queue_frames,
        node.config.outbound_queue_bytes,
    );
    outbound.attach(socket.clone());
    let conn = Arc::new(ConnHandle::new(
        new.id,
        new.conn_id,
        new.user,
        encoding,
        new.since_ms,
        outbound,
        claims.exp,
    ));
    // A task of its own, without the upgrade's state: what an open connection keeps.
    let tracker = node.tracker.clone();
    tracker.spawn(serve(
        node,
        socket,
        early,
        conn,
        new.registered,
        claims,
        since,
        admission,
    ));
}

/// Waits for the upgrade (under the handshake timeout) and takes the raw socket back from
/// hyper, with the bytes it had read past the request.
pub(super) async fn take_socket(
    node: &Node,
    upgrade: fastwebsockets::upgrade::UpgradeFut,
) -> Option<(Socket, bytes::Bytes)> {
    let ws = match tokio::time::timeout(node.config.handshake_timeout, upgrade).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "upgrade failed");
            return None;
        }
        Err(_) => {
            tracing::debug!("upgrade timed out");
            return None;
        }
    };
    let taken = Socket::from_upgraded(ws.into_inner().into_inner());
    if taken.is_none() {
        tracing::warn!("the upgraded connection is not a TCP stream");
    }
    taken
}

/// The frame reader of an upgraded socket: control frames are left to the reader (which
/// answers them through the outbound queue), messages are limited to `max_message_bytes`
/// and the bytes hyper had read past the request come first.
pub(super) fn frame_reader(
    socket: &Socket,
    early: &[u8],
    max_message_bytes: usize,
) -> fastwebsockets::WebSocketRead<SocketReader> {
    let (mut rd, _) =
        fastwebsockets::after_handshake_split(socket.reader(), tokio::io::sink(), Role::Server);
    rd.set_auto_close(false);
    rd.set_auto_pong(false);
    rd.set_max_message_size(max_message_bytes.saturating_add(1));
    rd.prepend_buffered(early);
    rd
}

/// Serves an upgraded connection until it is closed. (A plain `fn` returning an `async
/// move` block: the block uses its captures in place, where an `async fn` would keep its
/// arguments twice, as captures and as locals, in every idle connection's task.)
/// `registered`: whether the handshake could register the connection (when not, it is
/// told so and closed).
#[allow(clippy::manual_async_fn, clippy::too_many_arguments)]
fn serve(
    node: Arc<Node>,
    socket: Socket,
    early: bytes::Bytes,
    conn: Arc<ConnHandle>,
    registered: bool,
    claims: crate::auth::Claims,
    since: Option<switchboard_proto::StreamPosition>,
    admission: crate::node::Admission,
) -> impl std::future::Future<Output = ()> {
    async move {
        let _admission = admission;
        let cfg = &node.config;
        let mut rd = frame_reader(&socket, &early, cfg.max_message_bytes);
        drop(early);

        m::hot().connections.increment(1.0);
        m::hot().connections_total.increment(1);
        tracing::debug!(conn = %conn.conn_id, user = %conn.user, "connected");

        let mut session = Session::new(node.clone(), conn.clone(), claims, registered);
        let mut driver = Driver::new(&conn, &socket);
        let mut watched = None;
        // Not registered: the handshake logged why.
        let opened = if registered {
            let opened = driver.run(Box::pin(session.open(since))).await;
            opened.map(|r| r.map_err(Some))
        } else {
            Some(Err(None))
        };
        match opened {
            None => {}
            Some(Err(e)) => {
                if let Some(e) = e {
                    tracing::warn!(conn = %conn.conn_id, error = %e, "could not open the session");
                }
                conn.send(&ServerFrame::error(
                    ErrorCode::Unavailable,
                    "backplane unavailable",
                ));
                conn.outbound.close(
                    CloseRequest::new(close::TRY_AGAIN_LATER, "backplane unavailable"),
                    true,
                );
                Box::pin(driver.wait_written()).await;
            }
            Some(Ok(())) => {
                let exp = conn.expires_at();
                node.sweeper.watch(conn.id, exp);
                watched = Some(exp);
                let end = reader::run(
                    &mut driver,
                    &mut rd,
                    &mut session,
                    &conn,
                    cfg.max_message_bytes,
                )
                .await;
                // The socket is going: in-flight RPC calls stop (their replies could not be sent).
                conn.cancel_rpc();
                Box::pin(finish(&mut driver, &conn, &mut rd, end)).await;
            }
        }
        conn.cancel_rpc();
        let code = conn.outbound.finish();
        drop(driver);
        drop(rd);
        // With TLS, what the session still holds (our close frame) goes out first.
        Box::pin(socket.close(super::driver::CLOSE_GRACE)).await;
        drop(socket);
        Box::pin(session.close()).await;
        if let Some(exp) = watched {
            // A refresh may have moved it since.
            node.sweeper.forget(conn.id, exp);
            node.sweeper.forget(conn.id, conn.expires_at());
        }
        m::hot().connections.decrement(1.0);
        metrics::counter!(m::DISCONNECTS, "code" => m::close_code_label(code)).increment(1);
        let lived_ms = clock::now_ms().saturating_sub(conn.since_ms);
        tracing::debug!(conn = %conn.conn_id, code, lived_ms, "disconnected");
    }
}

/// The closing handshake after the reader stopped.
pub(super) async fn finish(
    driver: &mut Driver<'_>,
    conn: &ConnHandle,
    rd: &mut fastwebsockets::WebSocketRead<SocketReader>,
    end: End,
) {
    match end {
        End::Over => {}
        End::Eof => {
            conn.outbound.close(CloseRequest::peer_gone(1006), false);
        }
        // Our close frame answers theirs (unless ours went first).
        End::PeerClose(code) => {
            conn.outbound.close(
                CloseRequest::new(if code == 1005 { close::NORMAL } else { code }, ""),
                false,
            );
            driver.wait_written().await;
        }
        // A close the server decided on (limits, bad input) is preceded by what was
        // already queued: replies and the `error` frame that says why (docs/protocol.md §4).
        End::Close(request) => {
            conn.outbound.close(request, true);
            // The closing handshake (RFC 6455 §7.1.1): read and drop what the peer still
            // sends until it answers our close. Closing the socket with its data unread
            // would send a TCP reset, and the peer could lose our close frame and code.
            driver.arm_grace();
            driver.run(reader::discard_until_close(rd)).await;
            driver.wait_written().await;
        }
    }
}

#[cfg(test)]
mod tests {
    //! What an idle connection costs in the node's memory, as sizes the compiler knows
    //! (the task's future is allocated once per connection).

    use super::*;
    use crate::auth::Claims;
    use crate::config::{Config, ServeArgs};
    use crate::hub::Hub;

    fn node() -> Arc<Node> {
        let args = ServeArgs {
            jwt_secret: Some("size-unit-test-secret-0123456789abcdef".into()),
            node_id: Some("gw-t".into()),
            ..ServeArgs::default()
        };
        let config = Config::from_parts(&args, None).expect("valid config");
        let router = switchboard_router::memory::MemoryCluster::standalone(
            "gw-t".to_owned(),
            config.history.clone(),
            config.lease,
        );
        let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle();
        Arc::new(Node::new(config, router, Arc::new(Hub::new().0), handle))
    }

    fn claims() -> Claims {
        Claims {
            sub: "alice".into(),
            exp: u64::MAX,
            channels: Vec::new(),
            publish: Vec::new(),
            rpc: None,
        }
    }

    #[tokio::test]
    async fn an_idle_connection_is_small() {
        let node = node();
        let mut req = http::Request::builder()
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-version", "13")
            .body(())
            .unwrap();
        let (_, upgrade) = fastwebsockets::upgrade::upgrade(&mut req).expect("upgrade");
        let accepted = Accepted {
            claims: claims(),
            encoding: switchboard_proto::Encoding::Json,
            subprotocol: None,
            since: None,
            admission: node.admit().expect("a slot"),
            // Not started, the router refuses: an entry that is not registered.
            registration: crate::ws::registration::register(&node, "alice")
                .await
                .expect("no cap refusal"),
        };
        let task = run(node.clone(), upgrade, accepted);
        let (socket, _client) = crate::conn::socket::pair().await;
        let admission = node.admit().expect("a slot");
        let conn = Arc::new(ConnHandle::new(
            1,
            "c-1".into(),
            "alice".into(),
            switchboard_proto::Encoding::Json,
            clock::now_ms(),
            Outbound::new(1, 1024),
            u64::MAX,
        ));
        let served = serve(
            node,
            socket,
            bytes::Bytes::new(),
            conn,
            true,
            claims(),
            None,
            admission,
        );
        let sizes = [
            ("connection task", std::mem::size_of_val(&served)),
            ("upgrade task", std::mem::size_of_val(&task)),
            ("ConnHandle", std::mem::size_of::<ConnHandle>()),
            ("Session", std::mem::size_of::<Session>()),
        ];
        eprintln!("{sizes:?}");
        assert!(sizes[0].1 <= 4096, "{sizes:?}");
    }
}
