//! A connection's life and the node's: slow consumers (4008), heartbeats and dead peers,
//! token expiry and refresh (4001), and the SIGTERM drain (`goaway`, 1012, exit 0).

use switchboard_testkit as support;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use support::{Client, Node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const SLOW_CONSUMER: &str = "switchboard_slow_consumer_disconnects_total";

/// Connects with an explicit token and returns the client with its welcome.
async fn connect_with(node: &Node, token: &str) -> (Client, Value) {
    let mut client = node
        .connect_query(&format!("token={token}"), &[])
        .await
        .expect("connect");
    let welcome = client.recv().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (client, welcome)
}

/// A token for `sub` expiring `secs` seconds from now (negative: already expired).
fn token_expiring_in(sub: &str, secs: i64) -> String {
    support::sign(&json!({
        "sub": sub,
        "exp": support::now_secs() as i64 + secs,
        "channels": ["room:*"],
        "publish": ["room:*"],
    }))
}

fn text_json(msg: &Message) -> Value {
    match msg {
        Message::Text(t) => serde_json::from_str(t).expect("JSON text frame"),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

// --- Slow consumers -----------------------------------------------------------------

#[tokio::test]
async fn a_slow_consumer_is_closed_with_4008_and_memory_stays_bounded() {
    let node = support::start(&[
        "--outbound-queue-frames",
        "64",
        "--outbound-queue-bytes",
        "65536",
    ])
    .await;
    let (mut slow, _) = node.connect("slow").await;
    assert_eq!(slow.subscribe(1, "room:flood").await["ok"], true);
    let (mut fast, _) = node.connect("fast").await;
    assert_eq!(fast.subscribe(1, "room:flood").await["ok"], true);
    assert_eq!(node.metric_value(SLOW_CONSUMER).await, Some(0.0));
    let rss_before = node.rss_kib();

    // The fast subscriber reads everything until the end marker.
    let reader = tokio::spawn(async move {
        let mut offsets = Vec::new();
        loop {
            let v = fast.recv().await;
            match v["type"].as_str() {
                Some("presence") => assert_eq!(v["channel"], "room:flood", "{v}"),
                Some("message") if v["data"]["end"] == true => return (fast, offsets),
                Some("message") => offsets.push(v["offset"].as_u64().expect("offset")),
                _ => panic!("unexpected frame: {v}"),
            }
        }
    });

    // The slow one reads nothing: once the socket buffers are full its queue overflows.
    let api = node.api_client();
    let pad = "x".repeat(1000);
    let mut published = 0u64;
    while node.metric_value(SLOW_CONSUMER).await < Some(1.0) {
        assert!(
            published < 60_000,
            "no 4008 after {published} messages of 1 KB to a reader that never reads"
        );
        for _ in 0..250 {
            published += 1;
            let answer = api
                .publish("room:flood", json!({"n": published, "pad": pad}))
                .await;
            assert_eq!(answer["offset"], published, "{answer}");
        }
    }
    api.publish("room:flood", json!({"end": true})).await;
    let (mut fast, offsets) = reader.await.expect("fast reader");
    assert_eq!(
        offsets,
        (1..=published).collect::<Vec<_>>(),
        "the fast subscriber must get every message, in order"
    );
    let rss_after = node.rss_kib();
    assert!(
        rss_after < rss_before + 100 * 1024,
        "gateway RSS grew from {rss_before} KiB to {rss_after} KiB while flooding a slow consumer"
    );

    // What reached the slow socket before the cut is a prefix; then comes 4008.
    let (code, reason, before) = slow.expect_close().await;
    assert_eq!((code, reason.as_str()), (4008, "slow consumer"));
    let mut received = Vec::new();
    for frame in &before {
        let v = text_json(frame);
        match v["type"].as_str() {
            Some("presence") => assert_eq!(v["channel"], "room:flood", "{v}"),
            Some("message") => received.push(v["offset"].as_u64().expect("offset")),
            _ => panic!("unexpected frame before the close: {v}"),
        }
    }
    let k = received.len() as u64;
    assert!(k < published, "the slow consumer got everything ({k})");
    assert_eq!(received, (1..=k).collect::<Vec<_>>(), "a prefix, in order");
    assert!(node.metric_value(SLOW_CONSUMER).await >= Some(1.0));
    // The fast subscriber is unaffected.
    fast.round_trip(9).await;
}

// --- Heartbeats ---------------------------------------------------------------------

/// A WebSocket client on a bare TCP socket: it completes the upgrade and afterwards only
/// ever reads, so it never answers a ping (a dead peer, as far as the server can tell).
struct RawWs {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawWs {
    async fn connect(node: &Node, sub: &str) -> RawWs {
        let mut stream = TcpStream::connect(node.public).await.expect("tcp connect");
        let request = format!(
            "GET /ws?token={} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            support::token(sub),
            node.public
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut raw = RawWs {
            stream,
            buf: Vec::new(),
        };
        let end = loop {
            if let Some(i) = raw.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(raw.fill().await, "EOF during the handshake");
        };
        let head = String::from_utf8_lossy(&raw.buf[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        raw.buf.drain(..end);
        raw
    }

    /// Reads more bytes; false on EOF (or a reset).
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next frame as (opcode, payload); `None` at EOF.
    async fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if let Some((len, header)) = self.frame_len() {
                if self.buf.len() >= header + len {
                    let opcode = self.buf[0] & 0x0f;
                    let payload = self.buf[header..header + len].to_vec();
                    self.buf.drain(..header + len);
                    return Some((opcode, payload));
                }
            }
            if !self.fill().await {
                assert!(self.buf.is_empty(), "EOF inside a frame");
                return None;
            }
        }
    }

    /// Payload length and header length of the buffered frame, once known.
    fn frame_len(&self) -> Option<(usize, usize)> {
        let b = &self.buf;
        if b.len() < 2 {
            return None;
        }
        assert_eq!(b[1] & 0x80, 0, "server frames must not be masked");
        match b[1] & 0x7f {
            126 if b.len() >= 4 => Some((u16::from_be_bytes([b[2], b[3]]) as usize, 4)),
            127 if b.len() >= 10 => {
                let len = u64::from_be_bytes(b[2..10].try_into().unwrap());
                Some((len as usize, 10))
            }
            126 | 127 => None,
            n => Some((n as usize, 2)),
        }
    }
}

#[tokio::test]
async fn a_peer_that_never_answers_pings_is_closed_after_two_heartbeats() {
    let node = support::start(&["--heartbeat-ms", "1000"]).await;
    let started = Instant::now();
    let mut raw = RawWs::connect(&node, "ghost").await;
    let mut pings = 0;
    let mut welcome = None;
    let mut close = None;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(8), raw.frame())
            .await
            .expect("the server kept a dead peer's socket open for 8 s");
        let Some((opcode, payload)) = frame else {
            break;
        };
        assert!(close.is_none(), "a frame after the close frame: {opcode}");
        match opcode {
            0x1 => {
                assert!(welcome.is_none(), "a second text frame");
                welcome = Some(serde_json::from_slice::<Value>(&payload).expect("JSON"));
            }
            0x9 => pings += 1,
            0x8 => {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                let reason = String::from_utf8_lossy(&payload[2..]).into_owned();
                close = Some((code, reason, started.elapsed()));
            }
            other => panic!("unexpected opcode {other}"),
        }
    }
    let eof_at = started.elapsed();
    let welcome = welcome.expect("welcome");
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["heartbeat_ms"], 1000);
    assert!(pings >= 1, "the server never pinged");
    let (code, reason, close_at) = close.expect("a close frame before EOF");
    assert_eq!((code, reason.as_str()), (1001, "heartbeat timeout"));
    assert!(
        close_at >= Duration::from_millis(1900) && close_at <= Duration::from_millis(4500),
        "closed after {close_at:?}; expected about 2 heartbeats (2 s)"
    );
    assert!(
        eof_at <= close_at + Duration::from_secs(3),
        "the socket stayed open {:?} after the close frame",
        eof_at.saturating_sub(close_at)
    );
}

#[tokio::test]
async fn a_live_client_sees_pings_and_stays_connected() {
    let node = support::start(&["--heartbeat-ms", "1000"]).await;
    let (mut client, welcome) = node.connect("alice").await;
    assert_eq!(welcome["heartbeat_ms"], 1000);
    let until = tokio::time::Instant::now() + Duration::from_millis(3500);
    let mut pings = 0;
    // Polling the stream lets tungstenite answer every ping with a pong.
    while let Ok(msg) = tokio::time::timeout_at(until, client.ws.next()).await {
        match msg {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("expected only pings, got {other:?}"),
        }
    }
    assert!(pings >= 2, "{pings} pings in 3.5 s with a 1 s heartbeat");
    client.round_trip(1).await;
}

// --- Token expiry and refresh -------------------------------------------------------

/// Expects the token-expiry ending: an `error` frame, then close 4001.
async fn expect_token_expired_close(client: &mut Client) {
    let (code, reason, before) = client.expect_close().await;
    assert_eq!((code, reason.as_str()), (4001, "token expired"));
    let frames: Vec<Value> = before.iter().map(text_json).collect();
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["type"], "error", "{frames:?}");
    assert_eq!(frames[0]["code"], "token_expired", "{frames:?}");
}

#[tokio::test]
async fn an_expiring_token_ends_the_connection_with_4001() {
    let node = support::start(&[]).await;
    let (mut client, _) = connect_with(&node, &token_expiring_in("alice", 2)).await;
    let connected = Instant::now();
    expect_token_expired_close(&mut client).await;
    let after = connected.elapsed();
    assert!(
        after >= Duration::from_millis(500) && after <= Duration::from_millis(3500),
        "closed {after:?} after connecting with 1-2 s of token life left"
    );
}

#[tokio::test]
async fn a_refresh_before_expiry_keeps_the_connection() {
    let node = support::start(&[]).await;
    let (mut client, _) = connect_with(&node, &token_expiring_in("alice", 2)).await;
    client
        .send(json!({"type": "refresh", "id": 1, "token": token_expiring_in("alice", 3600)}))
        .await;
    assert_eq!(
        client.recv().await,
        json!({"type": "reply", "id": 1, "ok": true})
    );
    // Past the old expiry: nothing happens.
    client.expect_silence(Duration::from_secs(3)).await;
    client.round_trip(2).await;
    // The connection still works for real traffic.
    assert_eq!(client.subscribe(3, "room:lobby").await["ok"], true);
}

#[tokio::test]
async fn failed_refreshes_are_refused_and_do_not_extend_the_token() {
    let node = support::start(&[]).await;
    let (mut client, _) = connect_with(&node, &token_expiring_in("alice", 2)).await;
    let cases = [
        (1, token_expiring_in("mallory", 3600), "forbidden"),
        (2, "garbage".to_owned(), "invalid_token"),
        (
            3,
            support::sign(&json!({"sub": "alice", "exp": 1})),
            "token_expired",
        ),
        (
            4,
            support::sign_with(
                &json!({"sub": "alice", "exp": support::now_secs() + 3600}),
                jsonwebtoken::Algorithm::HS256,
                b"another-secret-0123456789-abcdefgh",
            ),
            "invalid_token",
        ),
    ];
    for (id, token, code) in cases {
        client
            .send(json!({"type": "refresh", "id": id, "token": token}))
            .await;
        let reply = client.recv().await;
        assert_eq!(reply["type"], "reply", "{reply}");
        assert_eq!(reply["id"], id, "{reply}");
        assert_eq!(reply["ok"], false, "{reply}");
        assert_eq!(reply["error"]["code"], code, "{reply}");
    }
    // The old expiry still holds.
    expect_token_expired_close(&mut client).await;
}

// --- Drain --------------------------------------------------------------------------

#[tokio::test]
async fn sigterm_drains_with_goaway_then_1012_spread_over_the_window() {
    const CLIENTS: usize = 20;
    let mut node = support::start(&["--drain-seconds", "2"]).await;
    let (first_goaway, mut goaway_seen) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let (mut client, _) = node.connect(&format!("u{i}")).await;
        let first_goaway = first_goaway.clone();
        tasks.push(tokio::spawn(async move {
            let goaway = client.recv().await;
            let at = Instant::now();
            let _ = first_goaway.send(());
            let (code, reason, before) = client.expect_close().await;
            // Answer the close so the server can finish at once.
            let rest = async { while let Some(Ok(_)) = client.ws.next().await {} };
            let _ = tokio::time::timeout(support::WAIT, rest).await;
            (goaway, at, code, reason, before.len())
        }));
    }
    let sent = Instant::now();
    node.sigterm();
    tokio::time::timeout(support::WAIT, goaway_seen.recv())
        .await
        .expect("no goaway after SIGTERM");

    // Draining: not ready, and no new connections.
    let (status, body) = node.get_internal("/readyz").await;
    assert_eq!(status, 503, "{body}");
    let body: Value = serde_json::from_str(&body).expect("JSON readyz");
    assert_eq!(body["ready"], false, "{body}");
    assert!(body["reason"].is_string(), "{body}");
    let late = node.ws_url(&format!("token={}", support::token("late")));
    match tokio_tungstenite::connect_async(late).await {
        Ok(_) => panic!("a new upgrade was accepted during the drain"),
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status().as_u16(), 503)
        }
        Err(_) => {} // the public listener is closed
    }

    let mut arrivals = Vec::new();
    for task in tasks {
        let (goaway, at, code, reason, before) = task.await.expect("client task");
        assert_eq!(goaway["type"], "goaway", "{goaway}");
        assert_eq!(goaway["reason"], "draining", "{goaway}");
        let reconnect_ms = goaway["reconnect_ms"].as_u64().expect("reconnect_ms");
        assert!(reconnect_ms > 0, "{goaway}");
        assert_eq!(goaway.as_object().map(|o| o.len()), Some(3), "{goaway}");
        assert_eq!((code, reason.as_str(), before), (1012, "draining", 0));
        arrivals.push(at);
    }
    let first = arrivals.iter().min().expect("arrivals");
    let last = arrivals.iter().max().expect("arrivals");
    assert!(
        *last - *first >= Duration::from_millis(500),
        "goaways of {CLIENTS} clients within {:?}: not spread over the 2 s window",
        *last - *first
    );

    let left = Duration::from_secs(3).saturating_sub(sent.elapsed());
    let status = tokio::time::timeout(left, node.child.wait())
        .await
        .expect("the node did not exit within the drain window + 1 s")
        .expect("wait");
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn sigterm_without_connections_exits_zero_quickly() {
    let mut node = support::start(&[]).await;
    let sent = Instant::now();
    node.sigterm();
    let status = tokio::time::timeout(Duration::from_secs(2), node.child.wait())
        .await
        .expect("an idle node did not exit within 2 s of SIGTERM")
        .expect("wait");
    assert!(status.success(), "exit status {status}");
    assert!(sent.elapsed() < Duration::from_secs(2));
}

/// RFC 6455 §5.1: a client frame without a mask is a protocol error (close 1002), and
/// the same frame masked is served.
#[tokio::test]
async fn an_unmasked_client_frame_closes_with_1002() {
    let node = support::start(&[]).await;
    let ping = br#"{"type":"ping","id":1}"#;
    for masked in [true, false] {
        let mut raw = RawWs::connect(&node, "mallory").await;
        let welcome = raw.frame().await.expect("welcome");
        assert_eq!(welcome.0, 0x1);
        let mut frame = vec![0x81];
        if masked {
            let key = [0x37u8, 0xfa, 0x21, 0x3d];
            frame.push(0x80 | ping.len() as u8);
            frame.extend_from_slice(&key);
            frame.extend(ping.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            frame.push(ping.len() as u8);
            frame.extend_from_slice(ping);
        }
        raw.stream.write_all(&frame).await.expect("write");
        let (opcode, payload) = tokio::time::timeout(Duration::from_secs(5), raw.frame())
            .await
            .expect("an answer")
            .expect("a frame, not EOF");
        if masked {
            assert_eq!(opcode, 0x1, "masked: served");
            let pong: Value = serde_json::from_slice(&payload).expect("JSON");
            assert_eq!(pong["type"], "pong");
        } else {
            assert_eq!(opcode, 0x8, "unmasked: a close frame");
            assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1002);
        }
    }
}
