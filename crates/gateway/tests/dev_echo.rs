//! The development-only echo (`--dev-echo`, `GET /echo`) that `make check-autobahn` drives:
//! it exists only with the flag, needs no token, sends every message back as the same type
//! and keeps the production limits of a connection.

use switchboard_testkit as support;

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use support::{raw_frame, Node, Ws, WAIT};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error, Message};

/// Opens `/echo` with extra headers; `Err((status, body))` when the upgrade is refused.
async fn echo(node: &Node, headers: &[(&str, &str)]) -> Result<Ws, (u16, Value)> {
    let mut req = format!("ws://{}/echo", node.public)
        .into_client_request()
        .expect("request");
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(Error::Http(res)) => {
            let body = res
                .body()
                .as_ref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            Err((res.status().as_u16(), body))
        }
        Err(e) => panic!("websocket connect failed: {e}"),
    }
}

/// The next message that is not a ping.
async fn next(ws: &mut Ws) -> Message {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("timed out waiting for a frame")
            .expect("the connection ended")
            .expect("a frame");
        if !matches!(msg, Message::Ping(_)) {
            return msg;
        }
    }
}

/// The server's close code (the frames before it must be none).
async fn close_code(ws: &mut Ws) -> u16 {
    match next(ws).await {
        Message::Close(Some(f)) => u16::from(f.code),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn without_the_flag_there_is_no_echo() {
    let node = support::start(&[]).await;
    let (status, body) = echo(&node, &[]).await.expect_err("no /echo");
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let (status, _) = node
        .http(node.public, "GET", "/echo", &[], Bytes::new())
        .await;
    assert_eq!(status, 404);
    // The flag off is the default: `--dev-echo=false` is the same.
    let node = support::start(&["--dev-echo=false"]).await;
    let (status, _) = echo(&node, &[]).await.expect_err("no /echo");
    assert_eq!(status, 404);
}

#[tokio::test]
async fn with_the_flag_every_message_comes_back_as_it_was_sent() {
    let node = support::start(&["--dev-echo"]).await;
    // No token asked for.
    let mut ws = echo(&node, &[]).await.expect("the echo upgrades");
    let text = "héllo ✓ — a text message";
    ws.send(Message::text(text)).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text(text));
    let binary = vec![0u8, 255, 1, 128, 0xc3];
    ws.send(Message::binary(binary.clone())).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::binary(binary));
    // A fragmented message comes back whole.
    ws.send(raw_frame(OpCode::Data(Data::Text), false, "frag"))
        .await
        .unwrap();
    ws.send(raw_frame(OpCode::Data(Data::Continue), true, "mented"))
        .await
        .unwrap();
    assert_eq!(next(&mut ws).await, Message::text("fragmented"));
    ws.send(Message::Ping(Bytes::from_static(b"are you there")))
        .await
        .unwrap();
    assert_eq!(
        next(&mut ws).await,
        Message::Pong(Bytes::from_static(b"are you there"))
    );
    // The peer's close code is echoed.
    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Library(4321),
        reason: "bye".into(),
    })))
    .await
    .unwrap();
    assert_eq!(close_code(&mut ws).await, 4321);

    // /ws still asks for a token.
    let refused = node.connect_query("", &[]).await.err().expect("refused");
    assert_eq!(refused.status, 401);
    assert_eq!(refused.body["error"], "missing_token");
}

#[tokio::test]
async fn the_echo_keeps_the_production_limits() {
    let node = support::start(&["--dev-echo", "--max-message-bytes=64"]).await;
    // The message size limit, in one frame and across fragments.
    let mut ws = echo(&node, &[]).await.expect("upgrade");
    ws.send(Message::text("x".repeat(64))).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("x".repeat(64)));
    ws.send(Message::text("x".repeat(65))).await.unwrap();
    assert_eq!(close_code(&mut ws).await, 1009);
    let mut ws = echo(&node, &[]).await.expect("upgrade");
    ws.send(raw_frame(OpCode::Data(Data::Binary), false, vec![0u8; 40]))
        .await
        .unwrap();
    ws.send(raw_frame(OpCode::Data(Data::Continue), true, vec![0u8; 25]))
        .await
        .unwrap();
    assert_eq!(close_code(&mut ws).await, 1009);
    // UTF-8: a text fragment that cannot become UTF-8 closes at once, before the message
    // ends.
    let mut ws = echo(&node, &[]).await.expect("upgrade");
    ws.send(raw_frame(
        OpCode::Data(Data::Text),
        false,
        b"ok \xf4\x90".to_vec(),
    ))
    .await
    .unwrap();
    assert_eq!(close_code(&mut ws).await, 1007);
    // Origin rules of /ws.
    let (status, body) = echo(&node, &[("origin", "https://elsewhere.example")])
        .await
        .expect_err("foreign origin");
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("origin_not_allowed"))
    );
}

#[tokio::test]
async fn echo_connections_count_against_max_connections() {
    let node = support::start(&["--dev-echo", "--max-connections=1"]).await;
    let mut first = echo(&node, &[]).await.expect("first");
    let (status, body) = echo(&node, &[]).await.expect_err("over capacity");
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("over_capacity"))
    );
    // Its slot is free again once it closed.
    first.close(None).await.unwrap();
    assert_eq!(close_code(&mut first).await, 1000);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match echo(&node, &[]).await {
            Ok(_) => break,
            Err((503, _)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(refused) => panic!("the slot was not freed: {refused:?}"),
        }
    }
}
