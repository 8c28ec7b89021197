//! The queue on its own (no socket: frames wait until taken) and against a real loopback
//! socket read by a client-role fastwebsockets peer.

use std::time::Duration;

use fastwebsockets::{OpCode, Role, WebSocket};
use tokio::net::TcpStream;

use super::write::header;
use super::*;
use crate::conn::socket;

fn item(n: usize) -> Item {
    Item {
        data: Bytes::from(vec![b'x'; n]),
        published_ms: None,
        kind: Kind::Text,
    }
}

fn text(s: &str) -> Item {
    Item {
        data: Bytes::copy_from_slice(s.as_bytes()),
        published_ms: None,
        kind: Kind::Text,
    }
}

fn request(code: u16, reason: &str) -> CloseRequest {
    CloseRequest::new(code, reason)
}

#[test]
fn bounded_by_frames_and_bytes() {
    let q = Outbound::new(3, 1000);
    assert_eq!(q.push(item(1)), Pushed::Queued);
    assert_eq!(q.push(item(1)), Pushed::Queued);
    assert_eq!(q.push(item(1)), Pushed::Queued);
    assert_eq!(q.push(item(1)), Pushed::Overflow);
    assert_eq!(q.len(), (0, 0));
    assert_eq!(q.push(item(1)), Pushed::Closed);
    let mut out = Vec::new();
    assert_eq!(q.take(&mut out, 100).unwrap().code, close::SLOW_CONSUMER);

    let q = Outbound::new(100, 10);
    assert_eq!(q.push(item(6)), Pushed::Queued);
    assert_eq!(q.push(item(5)), Pushed::Overflow);
}

#[test]
fn take_batches_and_flushes_before_close() {
    let q = Outbound::new(100, 10_000);
    for _ in 0..5 {
        q.push(item(100));
    }
    q.close(request(1012, "draining"), true);
    let mut out = Vec::new();
    assert!(q.take(&mut out, 250).is_none());
    assert_eq!(out.len(), 2);
    out.clear();
    assert!(q.take(&mut out, 10_000).is_some());
    assert_eq!(out.len(), 3);
    // The first close wins.
    assert!(!q.close(request(4003, ""), false));
}

/// A drain's close waits for the message being handled: its reply goes out first.
#[test]
fn a_close_after_the_message_waits_for_its_reply() {
    let q = Outbound::new(100, 10_000);
    q.begin_message();
    assert!(q.close_after_message(request(1012, "draining")));
    assert!(!q.is_closing(), "deferred while the message is handled");
    assert!(
        !q.close_after_message(request(4003, "")),
        "the first close wins"
    );
    assert_eq!(
        q.push(text("reply")),
        Pushed::Queued,
        "the reply still goes out"
    );
    let deferred = q.end_message().expect("the close waited");
    assert_eq!(deferred.code, 1012);
    assert!(q.close(deferred, true));
    assert!(q.is_closing());
    let mut out = Vec::new();
    assert_eq!(
        q.take(&mut out, 10_000).map(|e| e.code),
        Some(1012),
        "the close frame is next"
    );
    assert_eq!(out.len(), 1, "after the reply");
    assert_eq!(&out[0].data[..], b"reply");

    // Between messages it closes at once.
    let q = Outbound::new(100, 10_000);
    q.begin_message();
    assert!(q.end_message().is_none());
    assert!(q.close_after_message(request(1012, "draining")));
    assert!(q.is_closing());
    assert!(q.end_message().is_none());
}

#[test]
fn headers_follow_rfc_6455_lengths() {
    assert_eq!(header(Kind::Text, 5).0[..2], [0x81, 5]);
    assert_eq!(header(Kind::Ping, 0).0[..2], [0x89, 0]);
    assert_eq!(header(Kind::Binary, 126).0[..4], [0x82, 126, 0, 126]);
    assert_eq!(header(Kind::Close, 65_535).0[..4], [0x88, 126, 0xff, 0xff]);
    let (h, n) = header(Kind::Pong, 65_536);
    assert_eq!((h[..2].to_vec(), n), (vec![0x8a, 127], 10));
    assert_eq!(h[2..10], 65_536u64.to_be_bytes());
}

/// A queue attached to one end of a loopback connection, and a WebSocket client on the
/// other end.
async fn attached(frames: usize, bytes: usize) -> (Outbound, WebSocket<TcpStream>) {
    let (server, client) = socket::pair().await;
    let q = Outbound::new(frames, bytes);
    q.attach(server);
    let mut peer = WebSocket::after_handshake(client, Role::Client);
    peer.set_auto_pong(false);
    peer.set_auto_close(false);
    (q, peer)
}

async fn next(peer: &mut WebSocket<TcpStream>) -> (OpCode, Vec<u8>) {
    let frame = tokio::time::timeout(Duration::from_secs(10), peer.read_frame())
        .await
        .expect("a frame in time")
        .expect("read frame");
    (frame.opcode, frame.payload.to_vec())
}

#[tokio::test]
async fn a_writable_socket_gets_frames_at_once_without_a_queue() {
    let (q, mut peer) = attached(4, 1 << 20).await;
    // Far more than the 4-frame bound: each write goes out directly.
    for i in 0..100 {
        assert_eq!(q.push(text(&format!("m{i}"))), Pushed::Queued);
        assert_eq!(q.len(), (0, 0), "nothing waits when the socket takes it");
    }
    q.push(Item {
        data: Bytes::new(),
        published_ms: None,
        kind: Kind::Ping,
    });
    for i in 0..100 {
        assert_eq!(
            next(&mut peer).await,
            (OpCode::Text, format!("m{i}").into_bytes())
        );
    }
    assert_eq!(next(&mut peer).await, (OpCode::Ping, vec![]));
    assert!(q.close(request(1000, "bye"), true));
    let (op, payload) = next(&mut peer).await;
    assert_eq!(op, OpCode::Close);
    assert_eq!(&payload[..2], &1000u16.to_be_bytes());
    assert_eq!(&payload[2..], b"bye");
    assert_eq!(
        q.ended(),
        Some(Ended {
            code: 1000,
            close_sent: true
        })
    );
}

#[tokio::test]
async fn a_full_socket_queues_then_flushes_in_order_and_a_deferred_push_waits() {
    let (q, mut peer) = attached(100_000, 1 << 30).await;
    // Fill the socket buffers: the peer does not read yet.
    let big = "y".repeat(64 * 1024);
    let mut n = 0;
    while !q.status().1 {
        q.push(text(&format!("{n}:{big}")));
        n += 1;
        assert!(n < 10_000, "the socket never filled");
    }
    let (queued, _) = q.len();
    assert!(queued >= 1);
    // A deferred push behind a backlog needs no flush of its own.
    assert_eq!(q.push_deferred(text("last")), (Pushed::Queued, false));
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        loop {
            let (op, payload) = next(&mut peer).await;
            assert_eq!(op, OpCode::Text);
            let s = String::from_utf8(payload).unwrap();
            if s == "last" {
                return got;
            }
            got.push(s.split(':').next().unwrap().parse::<usize>().unwrap());
        }
    });
    // What the connection's task does: wait for writability, flush.
    let server = q.lock().socket.clone().expect("socket");
    while q.status().1 {
        server.writable().await.unwrap();
        q.flush();
    }
    assert_eq!(reader.await.unwrap(), (0..n).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_deferred_push_to_an_idle_socket_is_written_by_flush() {
    let (q, mut peer) = attached(4, 1 << 20).await;
    assert_eq!(q.push_deferred(text("a")), (Pushed::Queued, true));
    assert_eq!(q.push_deferred(text("b")), (Pushed::Queued, false));
    // Later pushes queue behind the deferred ones.
    assert_eq!(q.push(text("c")), Pushed::Queued);
    assert_eq!(q.len().0, 3);
    q.flush();
    assert_eq!(q.len().0, 0);
    for s in ["a", "b", "c"] {
        assert_eq!(next(&mut peer).await, (OpCode::Text, s.as_bytes().to_vec()));
    }
}

#[tokio::test]
async fn a_close_without_flush_drops_the_queue_but_finishes_a_started_frame() {
    let (q, mut peer) = attached(100_000, 1 << 30).await;
    let big = "z".repeat(256 * 1024);
    while !q.status().1 {
        q.push(text(&big));
    }
    q.push(text("dropped"));
    assert!(q.close(request(4008, "slow consumer"), false));
    let server = q.lock().socket.clone().expect("socket");
    let reader = tokio::spawn(async move {
        loop {
            let (op, payload) = next(&mut peer).await;
            match op {
                OpCode::Text => assert_eq!(payload.len(), big.len(), "whole frames only"),
                OpCode::Close => return u16::from_be_bytes([payload[0], payload[1]]),
                other => panic!("unexpected {other:?}"),
            }
        }
    });
    while q.ended().is_none() {
        server.writable().await.unwrap();
        q.flush();
    }
    assert_eq!(reader.await.unwrap(), 4008);
}

#[tokio::test]
async fn a_stalled_socket_ends_after_the_write_timeout() {
    let (q, _peer) = attached(100_000, 1 << 30).await;
    let big = "s".repeat(256 * 1024);
    while !q.status().1 {
        q.push(text(&big));
    }
    let now = Instant::now();
    assert!(!q.expire_stalled(now, Duration::from_secs(60)));
    assert!(q.expire_stalled(now + Duration::from_secs(61), Duration::from_secs(60)));
    assert_eq!(
        q.ended(),
        Some(Ended {
            code: 1006,
            close_sent: false
        })
    );
    assert_eq!(q.finish(), 1006);
}
