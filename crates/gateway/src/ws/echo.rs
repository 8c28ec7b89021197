//! Development only (`--dev-echo`): `GET /echo` on the public port, a WebSocket that sends
//! every message back as it came (text as text, binary as binary). It exists for the
//! Autobahn conformance check (`make check-autobahn`), so it is a connection of the
//! production stack with only the session swapped for the echo: the upgrade's checks
//! (draining, `Origin`, `--max-connections`) but the token and the subprotocol, the same
//! frame reader and its limits (`--max-message-bytes`, UTF-8, control frames, close codes),
//! the same outbound queue and its bounds (`--outbound-queue-*`, 4008), the same closing
//! handshake and, through the hub, the sweeper's heartbeat, idle close and write timeout,
//! and the drain. There is no token: never turn it on in production.

use std::sync::Arc;

use bytes::BytesMut;
use fastwebsockets::OpCode;
use http::{Request, Response};
use switchboard_proto::{clock, Encoding};

use super::driver::Driver;
use super::handshake::{admit, check_upgrade, switch};
use super::reader::{self, Handler};
use super::rejection::rejected;
use super::task::{finish, frame_reader, take_socket};
use crate::conn::outbound::{CloseRequest, Item, Kind, Outbound};
use crate::conn::ConnHandle;
use crate::http::Body;
use crate::node::{Admission, Node};

/// The user of every echo connection: not a valid user id, so no channel reaches it.
const ECHO_USER: &str = "(dev echo)";

/// Answers `GET /echo` (only routed with `--dev-echo`).
pub fn upgrade<B>(node: &Arc<Node>, mut req: Request<B>) -> Response<Body> {
    let admission = match check_upgrade(node, &req).and_then(|()| admit(node)) {
        Ok(a) => a,
        Err(r) => return rejected(r),
    };
    let node2 = node.clone();
    switch(&mut req, None, |upgraded| {
        node.tracker.spawn(async move {
            let Some((socket, early)) = take_socket(&node2, upgraded).await else {
                return;
            };
            serve(node2, socket, early, admission).await;
        });
    })
}

async fn serve(
    node: Arc<Node>,
    socket: crate::conn::socket::Socket,
    early: bytes::Bytes,
    admission: Admission,
) {
    let _admission = admission;
    let cfg = &node.config;
    let mut rd = frame_reader(&socket, &early, cfg.max_message_bytes);
    drop(early);
    let (id, conn_id) = node.next_conn_id();
    let outbound = Outbound::new(cfg.outbound_queue_frames, cfg.outbound_queue_bytes);
    outbound.attach(socket.clone());
    let conn = Arc::new(ConnHandle::new(
        id,
        conn_id,
        ECHO_USER.to_owned(),
        Encoding::Json,
        clock::now_ms(),
        outbound,
        u64::MAX,
    ));
    // In the hub for the sweeper (heartbeat, idle close, write timeout) and the drain.
    node.hub.add(&conn);
    tracing::debug!(conn = %conn.conn_id, "echo connected");
    let mut driver = Driver::new(&conn, &socket);
    let mut echo = Echo(&conn);
    let end = reader::run(
        &mut driver,
        &mut rd,
        &mut echo,
        &conn,
        cfg.max_message_bytes,
    )
    .await;
    finish(&mut driver, &conn, &mut rd, end).await;
    let code = conn.outbound.finish();
    drop(driver);
    socket.close(super::driver::CLOSE_GRACE).await;
    node.hub.remove(&conn);
    tracing::debug!(conn = %conn.conn_id, code, "echo disconnected");
}

/// Sends each message back through the connection's outbound queue.
struct Echo<'a>(&'a ConnHandle);

impl Handler for Echo<'_> {
    async fn message(&mut self, op: OpCode, bytes: BytesMut) -> Option<CloseRequest> {
        let kind = if op == OpCode::Text {
            Kind::Text
        } else {
            Kind::Binary
        };
        // Past the queue's bounds the queue itself closes the connection (4008).
        self.0.outbound.push(Item {
            data: bytes.freeze(),
            published_ms: None,
            kind,
        });
        None
    }
}
