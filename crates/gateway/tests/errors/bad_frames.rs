//! Error frames after which the connection stays open (`bad_frame`, `unknown_type`), and the
//! bad-frame limit that closes with 4400.

use super::*;

#[tokio::test]
async fn malformed_frames_get_bad_frame_and_the_connection_stays_open() {
    let mut s = scene(&[]).await;
    let bad: Vec<(&str, Message)> =
        vec![
        ("invalid JSON", Message::Text(r#"{"type":"ping""#.into())),
        ("a JSON array", Message::Text(r#"[{"type":"ping"}]"#.into())),
        ("a JSON string", Message::Text(r#""ping""#.into())),
        ("no type", Message::Text(r#"{"id":1,"channel":"room:lobby"}"#.into())),
        (
            "subscribe without channel",
            Message::Text(r#"{"type":"subscribe","id":2}"#.into()),
        ),
        (
            "publish without data",
            Message::Text(r#"{"type":"publish","id":3,"channel":"room:lobby"}"#.into()),
        ),
        (
            "publish with data and data_b64",
            Message::Text(
                r#"{"type":"publish","id":4,"channel":"room:lobby","data":1,"data_b64":"AA=="}"#
                    .into(),
            ),
        ),
        (
            "binary frame on a JSON connection",
            Message::Binary(Bytes::from_static(
                br#"{"type":"publish","id":5,"channel":"room:lobby","data":"bin"}"#,
            )),
        ),
    ];
    for (i, (what, msg)) in bad.into_iter().enumerate() {
        s.alice.send_raw(msg).await;
        let v = next_frame(&mut s.alice).await;
        assert_eq!(v["type"], "error", "{what}: {v}");
        assert_eq!(v["code"], "bad_frame", "{what}: {v}");
        expect_pong(&mut s.alice, 100 + i as u64).await;
    }
    s.nothing_was_published().await;
    s.finish().await;
}

#[tokio::test]
async fn unknown_type_gets_unknown_type_and_the_connection_stays_open() {
    let mut s = scene(&[]).await;
    s.alice
        .send(json!({"type": "teleport", "id": 1, "channel": ROOM, "data": "x"}))
        .await;
    expect_error(&mut s.alice, "unknown_type").await;
    expect_pong(&mut s.alice, 2).await;
    s.nothing_was_published().await;
    s.finish().await;
}

#[tokio::test]
async fn eleventh_bad_frame_in_a_minute_closes_with_4400() {
    let mut s = scene(&[]).await;
    for i in 0..10 {
        s.alice.send_raw(Message::Text("not json".into())).await;
        expect_error(&mut s.alice, "bad_frame").await;
        expect_pong(&mut s.alice, i).await;
    }
    s.alice.send_raw(Message::Text("not json".into())).await;
    let (code, frames) = close_of(&mut s.alice).await;
    assert_eq!(code, 4400);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["code"], "bad_frame");
    s.finish().await;
}

#[tokio::test]
async fn bad_frame_limit_is_configurable() {
    let mut s = scene(&["--bad-frame-limit", "3"]).await;
    for i in 0..3 {
        s.alice.send_raw(Message::Text("[]".into())).await;
        expect_error(&mut s.alice, "bad_frame").await;
        expect_pong(&mut s.alice, i).await;
    }
    s.alice.send_raw(Message::Text("[]".into())).await;
    let (code, frames) = close_of(&mut s.alice).await;
    assert_eq!(code, 4400);
    assert_eq!(frames.len(), 1, "{frames:?}");
    s.finish().await;
}

/// A binary frame on a JSON connection and an unknown type are bad frames too.
#[tokio::test]
async fn every_kind_of_bad_frame_counts_toward_the_limit() {
    let mut s = scene(&["--bad-frame-limit", "3"]).await;
    s.alice
        .send_raw(Message::Binary(Bytes::from_static(b"\x08\x01")))
        .await;
    expect_error(&mut s.alice, "bad_frame").await;
    s.alice.send(json!({"type": "teleport"})).await;
    expect_error(&mut s.alice, "unknown_type").await;
    s.alice.send(json!({"type": "subscribe", "id": 3})).await;
    expect_error(&mut s.alice, "bad_frame").await;
    expect_pong(&mut s.alice, 4).await;
    s.alice
        .send_raw(Message::Binary(Bytes::from_static(b"\x08\x01")))
        .await;
    let (code, frames) = close_of(&mut s.alice).await;
    assert_eq!(
        code, 4400,
        "a binary frame on a JSON connection must count: {frames:?}"
    );
    s.finish().await;
}

/// Failed requests (a `reply` with `ok:false`) are not malformed frames.
#[tokio::test]
async fn failed_requests_do_not_count_as_bad_frames() {
    let mut s = scene(&[]).await;
    for id in 1..=15 {
        s.alice
            .send(json!({"type": "subscribe", "id": id, "channel": "no-namespace"}))
            .await;
        expect_reply_error(&mut s.alice, id, "bad_channel").await;
    }
    expect_pong(&mut s.alice, 16).await;
    s.finish().await;
}
