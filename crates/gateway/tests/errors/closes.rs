//! Close codes: 1009 (message too big), 1007 (invalid UTF-8), 1002 (protocol errors), 4029
//! (rate limit), 1000 (a clean close), and every kind of abuse in turn on one node.

use super::*;

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

// ---- 1009: message too big ---------------------------------------------------------------

#[tokio::test]
async fn message_over_the_limit_in_one_frame_closes_with_1009() {
    let mut s = scene(&["--max-message-bytes", "1024"]).await;
    // Exactly the limit is fine.
    s.alice
        .send_raw(Message::Text(publish_of_len(2, 1024).into()))
        .await;
    assert_eq!(s.alice.reply(2).await["ok"], true);
    let msg = next_frame(&mut s.bob).await;
    assert_eq!(msg["type"], "message");
    assert_eq!(msg["offset"], 1);
    // One byte more closes.
    s.alice
        .send_raw(Message::Text(publish_of_len(3, 1025).into()))
        .await;
    expect_bare_close(&mut s.alice, 1009).await;
    s.finish().await;
}

#[tokio::test]
async fn fragmented_message_over_the_limit_closes_with_1009() {
    let mut s = scene(&["--max-message-bytes", "1024"]).await;
    // A complete publish of 1200 bytes in four small fragments.
    let frame = publish_of_len(2, 1200);
    let parts: Vec<&str> = (0..4).map(|i| &frame[i * 300..(i + 1) * 300]).collect();
    s.alice.send_raw(text(false, parts[0].to_owned())).await;
    s.alice.send_raw(cont(false, parts[1].to_owned())).await;
    s.alice.send_raw(cont(false, parts[2].to_owned())).await;
    s.alice.send_raw(cont(true, parts[3].to_owned())).await;
    expect_bare_close(&mut s.alice, 1009).await;

    // A message that never ends is closed as soon as it passes the limit.
    let (mut mallory, _) = s.node.connect("mallory").await;
    mallory.send_raw(text(false, "x".repeat(500))).await;
    for _ in 0..3 {
        mallory.send_raw(cont(false, "x".repeat(500))).await;
    }
    expect_bare_close(&mut mallory, 1009).await;
    s.finish().await;
}

#[tokio::test]
async fn fragmented_message_under_the_limit_is_reassembled() {
    let mut s = scene(&["--max-message-bytes", "1024"]).await;
    let frame = publish_of_len(2, 900);
    s.alice.send_raw(text(false, frame[..300].to_owned())).await;
    s.alice
        .send_raw(cont(false, frame[300..600].to_owned()))
        .await;
    // A ping between fragments is allowed (RFC 6455 §5.4).
    s.alice.send_raw(control(Control::Ping, "mid")).await;
    s.alice.send_raw(cont(true, frame[600..].to_owned())).await;
    let reply = s.alice.reply(2).await;
    assert_eq!(reply["ok"], true, "{reply}");
    let msg = next_frame(&mut s.bob).await;
    assert_eq!(msg["type"], "message");
    let sent: Value = serde_json::from_str(&frame).unwrap();
    assert_eq!(msg["data"], sent["data"]);
    // A multi-byte character split across fragments is valid UTF-8 as a message.
    let ping = r#"{"type":"ping","id":3,"x":"€"}"#.as_bytes();
    let cut = ping.len() - 3; // inside the three bytes of €
    s.alice.send_raw(text(false, ping[..cut].to_vec())).await;
    s.alice.send_raw(cont(true, ping[cut..].to_vec())).await;
    assert_eq!(
        next_frame(&mut s.alice).await,
        json!({"type": "pong", "id": 3})
    );
    s.finish().await;
}

// ---- 1007: invalid UTF-8 ---------------------------------------------------------------

#[tokio::test]
async fn invalid_utf8_text_closes_with_1007() {
    let mut s = scene(&[]).await;
    let bad = b"{\"type\":\"publish\",\"id\":2,\"channel\":\"room:lobby\",\"data\":\"\xff\xfe\"}";
    s.alice.send_raw(text(true, bad.to_vec())).await;
    expect_bare_close(&mut s.alice, 1007).await;

    // The reason of a close frame must be UTF-8 too.
    let (mut mallory, _) = s.node.connect("mallory").await;
    mallory
        .send_raw(control(Control::Close, close_payload(1000, b"\xc3\x28")))
        .await;
    expect_bare_close(&mut mallory, 1007).await;
    s.finish().await;
}

#[tokio::test]
async fn invalid_utf8_split_across_fragments_closes_with_1007() {
    let mut s = scene(&[]).await;
    // Each fragment ends or starts mid-character; together they are not UTF-8.
    let first =
        b"{\"type\":\"publish\",\"id\":2,\"channel\":\"room:lobby\",\"data\":\"\xe2\x82".to_vec();
    s.alice.send_raw(text(false, first)).await;
    s.alice.send_raw(cont(true, b"A\"}".to_vec())).await;
    expect_bare_close(&mut s.alice, 1007).await;
    s.finish().await;
}

#[tokio::test]
async fn invalid_utf8_in_an_unfinished_message_closes_with_1007_at_once() {
    let mut s = scene(&[]).await;
    // RFC 6455 §8.1 (Autobahn 6.4.1, 6.4.2): 0xF4 0x90 can never become UTF-8 (it is past
    // U+10FFFF), so the close must not wait for fragments that are never sent.
    let first =
        b"{\"type\":\"publish\",\"id\":2,\"channel\":\"room:lobby\",\"data\":\"\xf4\x90".to_vec();
    s.alice.send_raw(text(false, first)).await;
    expect_bare_close(&mut s.alice, 1007).await;
    s.finish().await;
}

// ---- 1002: protocol errors -------------------------------------------------------------

#[tokio::test]
async fn protocol_violations_close_with_1002() {
    let s = scene(&[]).await;
    let ping = r#"{"type":"ping","id":1}"#;
    let cases: Vec<(&str, Vec<Message>)> = vec![
        ("continuation without a start", vec![cont(true, ping)]),
        (
            "new message inside a fragmented one",
            vec![text(false, r#"{"type":"#), text(true, ping)],
        ),
        (
            "binary inside a fragmented text",
            vec![
                text(false, r#"{"type":"#),
                raw_frame(OpCode::Data(Data::Binary), true, "x"),
            ],
        ),
        (
            "close code 1005",
            vec![control(Control::Close, close_payload(1005, b""))],
        ),
        (
            "close code 1006",
            vec![control(Control::Close, close_payload(1006, b""))],
        ),
        (
            "close code 1004",
            vec![control(Control::Close, close_payload(1004, b""))],
        ),
        (
            "close code 1015",
            vec![control(Control::Close, close_payload(1015, b""))],
        ),
        (
            "close code 999",
            vec![control(Control::Close, close_payload(999, b""))],
        ),
        (
            "close code 5000",
            vec![control(Control::Close, close_payload(5000, b""))],
        ),
        (
            "close with a 1-byte payload",
            vec![control(Control::Close, vec![3u8])],
        ),
        (
            "ping with 126 bytes",
            vec![control(Control::Ping, vec![b'p'; 126])],
        ),
        (
            "pong with 126 bytes",
            vec![control(Control::Pong, vec![b'p'; 126])],
        ),
        (
            "close with 126 bytes",
            vec![control(Control::Close, close_payload(1000, &[b'r'; 124]))],
        ),
        (
            "fragmented ping",
            vec![raw_frame(OpCode::Control(Control::Ping), false, "p")],
        ),
        (
            "reserved opcode 0x3",
            vec![raw_frame(OpCode::Data(Data::Reserved(3)), true, ping)],
        ),
        (
            "reserved opcode 0xB",
            vec![raw_frame(OpCode::Control(Control::Reserved(0xB)), true, "")],
        ),
        ("reserved bit 1", vec![rsv(true, false, false)]),
        ("reserved bit 2", vec![rsv(false, true, false)]),
        ("reserved bit 3", vec![rsv(false, false, true)]),
    ];
    for (what, frames) in cases {
        let (mut mallory, _) = s.node.connect("mallory").await;
        for f in frames {
            mallory.send_raw(f).await;
        }
        let (code, before) = tokio::time::timeout(QUIET * 10, close_of(&mut mallory))
            .await
            .unwrap_or_else(|_| panic!("{what}: the connection was not closed"));
        assert_eq!(code, 1002, "{what}: frames before: {before:?}");
        assert!(before.is_empty(), "{what}: frames before: {before:?}");
    }
    s.finish().await;
}

/// A text frame (a valid ping) with reserved bits set.
fn rsv(rsv1: bool, rsv2: bool, rsv3: bool) -> Message {
    let header = FrameHeader {
        is_final: true,
        rsv1,
        rsv2,
        rsv3,
        opcode: OpCode::Data(Data::Text),
        mask: None,
    };
    Message::Frame(Frame::from_payload(
        header,
        Bytes::from_static(br#"{"type":"ping","id":1}"#),
    ))
}

// ---- 4029: rate limit --------------------------------------------------------------------

#[tokio::test]
async fn rate_limit_closes_with_4029_after_a_rate_limited_error() {
    let node = support::start(&["--rate-limit", "5", "--rate-limit-burst", "5"]).await;
    let (mut bob, _) = node.connect("bob").await;
    assert_eq!(bob.subscribe(1, ROOM).await["ok"], true);
    let (mut alice, _) = node.connect("alice").await;
    for id in 1..=50u64 {
        alice
            .send_raw(Message::Text(
                json!({"type": "publish", "id": id, "channel": ROOM, "data": id})
                    .to_string()
                    .into(),
            ))
            .await;
    }
    let (code, frames) = close_of(&mut alice).await;
    assert_eq!(code, 4029, "{frames:?}");
    let (last, replies) = frames
        .split_last()
        .expect("an error frame before the close");
    assert_eq!(last["type"], "error", "{frames:?}");
    assert_eq!(last["code"], "rate_limited", "{frames:?}");
    // The burst of 5 passes (a 6th only if the node stalled for 200 ms and refilled).
    assert!((5..=6).contains(&replies.len()), "{frames:?}");
    for (i, r) in replies.iter().enumerate() {
        assert_eq!(r["type"], "reply", "{frames:?}");
        assert_eq!(r["id"], i as u64 + 1, "{frames:?}");
        assert_eq!(r["ok"], true, "{frames:?}");
    }
    // Bob got exactly the accepted messages, then nothing.
    for i in 0..replies.len() {
        let msg = next_frame(&mut bob).await;
        assert_eq!(msg["type"], "message");
        assert_eq!(msg["data"], i as u64 + 1);
    }
    bystander_saw_nothing(&mut bob).await;
    node_still_serves(&node).await;
}

// ---- 1000: a clean close -------------------------------------------------------------------

#[tokio::test]
async fn client_close_1000_is_echoed() {
    let mut s = scene(&[]).await;
    s.alice
        .send_raw(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        })))
        .await;
    let echo = loop {
        match tokio::time::timeout(support::WAIT, s.alice.ws.next())
            .await
            .expect("timed out waiting for the close echo")
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                assert_eq!(v["type"], "presence", "{v}");
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected the close echo, got {other:?}"),
        }
    };
    let echo = echo.expect("the echo carries a code");
    assert_eq!(u16::from(echo.code), 1000);
    let leave = s.bob.recv_until(|v| v["type"] == "presence").await;
    assert_eq!(leave["user"], "alice");
    assert_eq!(leave["event"], "leave");
    s.finish().await;
}

/// A close code the client picks is counted as `other`: peers cannot mint new series.
#[tokio::test]
async fn client_chosen_close_codes_are_counted_as_other() {
    let s = scene(&[]).await;
    for code in [4321u16, 3999] {
        let (mut c, _) = s.node.connect("carol").await;
        c.send_raw(Message::Close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: "".into(),
        })))
        .await;
        let _ = c.expect_close().await;
    }
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        let (_, metrics) = s.node.get_internal("/metrics").await;
        assert!(
            !metrics.contains("code=\"4321\"") && !metrics.contains("code=\"3999\""),
            "{metrics}"
        );
        if metrics
            .lines()
            .any(|l| l == "switchboard_disconnects_total{code=\"other\"} 2")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no other=2 in:\n{metrics}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    s.finish().await;
}

// ---- all of the above on one node --------------------------------------------------------

/// One node takes every kind of abuse in turn and stays ready; each close is counted.
#[tokio::test]
async fn node_stays_ready_after_every_error() {
    let mut s = scene(&[
        "--max-message-bytes",
        "1024",
        "--bad-frame-limit",
        "2",
        "--rate-limit",
        "5",
        "--rate-limit-burst",
        "5",
    ])
    .await;
    let offences: Vec<(u16, Vec<Message>)> = vec![
        (4400, vec![Message::Text("{".into()); 3]),
        (1009, vec![Message::Text("x".repeat(1025).into())]),
        (1007, vec![text(true, b"\xff".to_vec())]),
        (1002, vec![cont(true, "x")]),
        (4029, vec![Message::Text(r#"{"type":"ping"}"#.into()); 6]),
    ];
    for (code, frames) in &offences {
        let (mut mallory, _) = s.node.connect("mallory").await;
        for f in frames {
            mallory.send_raw(f.clone()).await;
        }
        let (got, before) = close_of(&mut mallory).await;
        assert_eq!(got, *code, "{before:?}");
    }
    s.nothing_was_published().await;
    bystander_saw_nothing(&mut s.bob).await;
    let (status, _) = s.node.get_internal("/healthz").await;
    assert_eq!(status, 200);
    node_still_serves(&s.node).await;
    // Each close is counted once its connection has been cleaned up.
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        let (_, metrics) = s.node.get_internal("/metrics").await;
        let missing: Vec<String> = offences
            .iter()
            .map(|(code, _)| format!("switchboard_disconnects_total{{code=\"{code}\"}} 1"))
            .filter(|line| !metrics.lines().any(|l| l == line))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "missing {missing:?} in:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
