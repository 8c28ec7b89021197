//! Delivery across encodings (binary data, JSON values and JSON payloads between protobuf and
//! JSON clients), and the negotiation of the subprotocol that picks the encoding.

use super::*;

use base64::Engine as _;

// --- across encodings -------------------------------------------------------------------

#[tokio::test]
async fn proto_binary_reaches_json_as_data_b64() {
    let node = support::start(&[]).await;
    let (mut j, _) = node.connect("alice").await;
    j.join_room(1, "room:x", "alice").await;
    let (mut p, _) = node.connect_proto_token(&support::token("bob")).await;
    pb_join_room(&mut p, 1, "room:x", "bob").await;
    assert_eq!(j.recv().await["event"], "join");

    let bytes: &'static [u8] = b"\x00\x9f\xffbin\n";
    p.send_pb(pb_publish(2, "room:x", binary_payload(bytes)))
        .await;
    let m = j.recv().await;
    assert_eq!(m["type"], "message");
    assert_eq!(m["from"], "bob");
    assert!(
        m.get("data").is_none(),
        "binary payloads have no `data`: {m}"
    );
    let b64 = m["data_b64"].as_str().expect("data_b64");
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
        bytes
    );
}

#[tokio::test]
async fn json_value_reaches_proto_as_its_utf8_text() {
    let node = support::start(&[]).await;
    let (mut j, _) = node.connect("alice").await;
    let (mut p, _) = node.connect_proto_token(&support::token("bob")).await;
    pb_join_room(&mut p, 1, "room:x", "bob").await;

    let data = json!({"text": "héllo ✓", "n": [1, 2.5, null, true]});
    j.send(json!({"type": "publish", "id": 2, "channel": "room:x", "data": data}))
        .await;
    assert_eq!(j.reply(2).await["ok"], true);
    let m = pb_message(&mut p).await;
    assert_eq!(m.from, "alice");
    let Some(pb::payload::Kind::Json(text)) = m.data.and_then(|d| d.kind) else {
        panic!("a JSON value reaches protobuf clients as Payload.json");
    };
    assert_eq!(text.as_bytes(), data.to_string().as_bytes());
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), data);

    // A DM too, and a scalar value.
    j.send(json!({"type": "publish", "id": 3, "channel": "user:bob", "data": "just a string"}))
        .await;
    assert_eq!(j.reply(3).await["ok"], true);
    let m = pb_message(&mut p).await;
    assert_eq!(m.channel, "user:bob");
    assert_eq!(m.data, json_payload("\"just a string\""));
}

#[tokio::test]
async fn proto_json_payload_reaches_json_as_data() {
    let node = support::start(&[]).await;
    let (mut j, _) = node.connect("alice").await;
    j.join_room(1, "room:x", "alice").await;
    let (mut p, _) = node.connect_proto_token(&support::token("bob")).await;

    p.send_pb(pb_publish(
        2,
        "room:x",
        json_payload(r#"{"k":[1,"two",{"x":null}]}"#),
    ))
    .await;
    assert!(p.next_pb_reply().await.ok);
    let m = j.recv_until(|v| v["type"] == "message").await;
    assert_eq!(m["data"], json!({"k": [1, "two", {"x": null}]}));
    assert!(m.get("data_b64").is_none(), "{m}");

    // Invalid JSON in Payload.json is a bad frame, never delivered.
    p.send_pb(pb_publish(3, "room:x", json_payload("{nope")))
        .await;
    let Kind::Error(e) = p.recv_pb().await else {
        panic!("expected an error frame");
    };
    assert_eq!(e.code, "bad_frame");
    j.expect_silence(QUIET).await;
}

// --- subprotocol negotiation -------------------------------------------------------------

#[tokio::test]
async fn subprotocol_negotiation() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let node = support::start(&[]).await;
    let url = node.ws_url(&format!("token={}", support::token("alice")));
    for (offered, chosen) in [
        ("switchboard.v1.json", "switchboard.v1.json"),
        ("switchboard.v1.proto", "switchboard.v1.proto"),
        (
            "chat, switchboard.v1.proto, switchboard.v1.json",
            "switchboard.v1.proto",
        ),
    ] {
        let mut req = url.as_str().into_client_request().unwrap();
        req.headers_mut()
            .insert("sec-websocket-protocol", offered.parse().unwrap());
        let (mut ws, res) = tokio_tungstenite::connect_async(req)
            .await
            .expect("upgrade");
        assert_eq!(
            res.headers()["sec-websocket-protocol"],
            chosen,
            "offered {offered}"
        );
        let first = tokio::time::timeout(support::WAIT, futures_util::StreamExt::next(&mut ws))
            .await
            .expect("welcome")
            .expect("frame")
            .expect("frame");
        match chosen {
            "switchboard.v1.json" => assert!(first.is_text(), "{first:?}"),
            _ => assert!(first.is_binary(), "{first:?}"),
        }
    }
    // None offered: JSON, no header.
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut().remove("sec-websocket-protocol");
    let (_, res) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgrade");
    assert!(res.headers().get("sec-websocket-protocol").is_none());

    let refused = node
        .connect_query(
            &format!("token={}", support::token("alice")),
            &[("sec-websocket-protocol", "chat, superchat")],
        )
        .await
        .err()
        .expect("only unknown subprotocols are refused");
    assert_eq!(refused.status, 400);
    assert_eq!(refused.body["error"], "unsupported_subprotocol");
    assert!(refused.body["message"].is_string());
}
