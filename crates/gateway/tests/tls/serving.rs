//! What clients see on a TLS listener.

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{self, WAIT};
use crate::*;

#[tokio::test]
async fn a_wss_client_gets_its_welcome_and_a_published_message() {
    let (dir, cert) = (Dir::new(), Cert::new());
    let node = start_tls(&dir, &cert, &[]).await;
    let (mut ws, welcome) = wss(&node, "alice", trusting(&[&cert])).await;
    assert_eq!(welcome["user"], "alice");
    {
        let (_, session) = ws.get_ref().get_ref();
        assert_eq!(session.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(
            session.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
    }
    send(
        &mut ws,
        json!({"type": "subscribe", "id": 1, "channel": "room:tls"}),
    )
    .await;
    assert_eq!(recv(&mut ws).await["ok"], true);
    node.api_client()
        .publish("room:tls", json!({"text": "over TLS"}))
        .await;
    let msg = recv(&mut ws).await;
    assert_eq!(msg["type"], "message", "{msg}");
    assert_eq!(msg["data"]["text"], "over TLS");
    // A client's own publish and a ping round-trip as well.
    send(
        &mut ws,
        json!({"type": "publish", "id": 2, "channel": "room:tls", "data": "mine"}),
    )
    .await;
    let mut seen = (false, false);
    while seen != (true, true) {
        let v = recv(&mut ws).await;
        seen.0 |= v["type"] == "reply" && v["id"] == 2 && v["ok"] == true;
        seen.1 |= v["type"] == "message" && v["data"] == "mine";
    }
}

#[tokio::test]
async fn a_tls12_client_connects() {
    let (dir, cert) = (Dir::new(), Cert::new());
    let node = start_tls(&dir, &cert, &[]).await;
    let config = client_config(&[&cert], &[&rustls::version::TLS12]);
    let (ws, _) = wss(&node, "bob", config).await;
    let (_, session) = ws.get_ref().get_ref();
    assert_eq!(
        session.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
}

/// Many large messages while the client does not read: the encrypted bytes the socket
/// does not take wait in the session and go out, in order, as it drains.
#[tokio::test]
async fn a_burst_larger_than_the_socket_buffers_arrives_whole_and_in_order() {
    let (dir, cert) = (Dir::new(), Cert::new());
    let node = start_tls(&dir, &cert, &[]).await;
    let (mut ws, _) = wss(&node, "carol", trusting(&[&cert])).await;
    send(
        &mut ws,
        json!({"type": "subscribe", "id": 1, "channel": "room:big"}),
    )
    .await;
    assert_eq!(recv(&mut ws).await["ok"], true);
    let api = node.api_client();
    let filler = "x".repeat(30_000);
    for i in 0..100 {
        api.publish("room:big", json!({"i": i, "filler": filler}))
            .await;
    }
    for i in 0..100 {
        let msg = recv(&mut ws).await;
        assert_eq!(msg["data"]["i"], i);
        assert_eq!(msg["data"]["filler"].as_str().map(str::len), Some(30_000));
    }
}

/// Reads what the server sends until it closes; panics if it keeps the connection open.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .expect("the server kept the connection open")
        {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn plain_http_to_the_tls_port_fails_cleanly_and_the_node_still_serves() {
    let (dir, cert) = (Dir::new(), Cert::new());
    let node = start_tls(&dir, &cert, &[]).await;
    for request in [
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
    ] {
        let mut plain = TcpStream::connect(node.public).await.expect("connect");
        plain.write_all(request.as_bytes()).await.expect("write");
        let answer = read_to_close(&mut plain).await;
        assert!(
            !answer.starts_with(b"HTTP/"),
            "an HTTP answer on the TLS port: {:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    crate::wait_metric(&node, "switchboard_tls_handshake_failures_total", 2.0).await;
    let (mut ws, _) = wss(&node, "dave", trusting(&[&cert])).await;
    send(&mut ws, json!({"type": "ping", "id": 7})).await;
    assert_eq!(recv(&mut ws).await["type"], "pong");
    assert_eq!(node.get_internal("/healthz").await.0, 200);
}

/// A ClientHello offering TLS 1.1 only (no supported_versions extension).
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02];
    body.extend_from_slice(&[7u8; 32]);
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // two CBC suites
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut hs = vec![0x01, 0, 0, body.len() as u8];
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01, 0, hs.len() as u8];
    record.extend_from_slice(&hs);
    record
}

#[tokio::test]
async fn tls11_is_refused() {
    let (dir, cert) = (Dir::new(), Cert::new());
    let node = start_tls(&dir, &cert, &[]).await;
    let mut old = TcpStream::connect(node.public).await.expect("connect");
    old.write_all(&tls11_client_hello()).await.expect("write");
    let answer = read_to_close(&mut old).await;
    // An alert record (type 21), never a ServerHello (a handshake record, type 22).
    assert_eq!(answer.first(), Some(&0x15), "{answer:?}");
    crate::wait_metric(&node, "switchboard_tls_handshake_failures_total", 1.0).await;
}

#[tokio::test]
async fn the_internal_listener_serves_tls_with_admin_tls() {
    let (dir, cert) = (Dir::new(), Cert::new());
    let (cert_path, key_path) = dir.install(&cert);
    let node = support::start(&[
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
        "--admin-tls",
    ])
    .await;
    let mut tls = tls_connect(node.internal, trusting(&[&cert]))
        .await
        .expect("TLS on the internal port");
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = String::new();
    tokio::time::timeout(WAIT, tls.read_to_string(&mut answer))
        .await
        .expect("answer in time")
        .expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Plain HTTP on it fails like on the public port.
    let mut plain = TcpStream::connect(node.internal).await.expect("connect");
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    assert!(!read_to_close(&mut plain).await.starts_with(b"HTTP/"));
}
