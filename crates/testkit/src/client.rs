//! The WebSocket test client: JSON and protobuf frames, replies, rooms.

use super::*;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client speaking JSON or protobuf.
pub struct Client {
    pub ws: Ws,
    pub proto: bool,
}

/// The answer to an upgrade that was refused.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub body: Value,
}

impl Client {
    /// Sends a JSON frame (text).
    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .expect("send");
    }

    pub async fn send_raw(&mut self, msg: Message) {
        self.ws.send(msg).await.expect("send");
    }

    /// The next data frame, as JSON (JSON clients) — panics on close or timeout.
    pub async fn recv(&mut self) -> Value {
        match self.next().await {
            Some(Message::Text(t)) => serde_json::from_str(&t).expect("server sent invalid JSON"),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next binary frame (protobuf clients).
    pub async fn recv_binary(&mut self) -> Bytes {
        match self.next().await {
            Some(Message::Binary(b)) => b,
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }

    /// The next non-control message, or `None` when the stream ended.
    pub async fn next(&mut self) -> Option<Message> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for a frame");
            match msg {
                Some(Ok(Message::Ping(_))) | Some(Ok(Message::Pong(_))) => continue,
                Some(Ok(m)) => return Some(m),
                Some(Err(e)) => panic!("websocket error: {e}"),
                None => return None,
            }
        }
    }

    /// Skips frames until one matches `pred` (JSON).
    pub async fn recv_until(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let v = self.recv().await;
            if pred(&v) {
                return v;
            }
        }
    }

    /// The reply to request `id` (skipping other frames).
    pub async fn reply(&mut self, id: u64) -> Value {
        self.recv_until(|v| v["type"] == "reply" && v["id"] == id)
            .await
    }

    /// Subscribes and returns the reply.
    pub async fn subscribe(&mut self, id: u64, channel: &str) -> Value {
        self.send(json!({"type": "subscribe", "id": id, "channel": channel}))
            .await;
        self.reply(id).await
    }

    /// Sends a `ping` and expects its `pong` as the very next frame: everything sent
    /// before it was handled.
    pub async fn round_trip(&mut self, id: u64) {
        self.send(json!({"type": "ping", "id": id})).await;
        assert_eq!(self.recv().await, json!({"type": "pong", "id": id}));
    }

    /// Waits for the server's close frame; returns its code and reason. Data frames
    /// before it are returned too.
    pub async fn expect_close(&mut self) -> (u16, String, Vec<Message>) {
        let mut before = Vec::new();
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for close");
            match msg {
                Some(Ok(Message::Close(Some(f)))) => {
                    return (u16::from(f.code), f.reason.to_string(), before)
                }
                Some(Ok(Message::Close(None))) => return (1005, String::new(), before),
                Some(Ok(Message::Ping(_))) | Some(Ok(Message::Pong(_))) => {}
                Some(Ok(m)) => before.push(m),
                Some(Err(e)) => panic!("connection ended without a close frame: {e}"),
                None => panic!("connection ended without a close frame"),
            }
        }
    }

    /// Asserts that no data frame arrives within `d`.
    pub async fn expect_silence(&mut self, d: Duration) {
        loop {
            match tokio::time::timeout(d, self.ws.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Ping(_)))) | Ok(Some(Ok(Message::Pong(_)))) => continue,
                Ok(other) => panic!("expected silence, got {other:?}"),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self
            .ws
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }))
            .await;
    }
}

impl Client {
    /// Sends one protobuf `Frame` as a binary message.
    pub async fn send_pb(&mut self, kind: switchboard_proto::pb::frame::Kind) {
        use prost::Message as _;
        let frame = switchboard_proto::pb::Frame { kind: Some(kind) };
        self.ws
            .send(Message::Binary(frame.encode_to_vec().into()))
            .await
            .expect("send");
    }

    /// The next binary message decoded as a protobuf `Frame`; panics on anything else.
    pub async fn recv_pb(&mut self) -> switchboard_proto::pb::frame::Kind {
        use prost::Message as _;
        let bytes = self.recv_binary().await;
        switchboard_proto::pb::Frame::decode(bytes)
            .expect("server sent an invalid protobuf Frame")
            .kind
            .expect("server sent a Frame without a kind")
    }

    /// Skips protobuf frames until one matches `pred`.
    pub async fn recv_pb_until(
        &mut self,
        pred: impl Fn(&switchboard_proto::pb::frame::Kind) -> bool,
    ) -> switchboard_proto::pb::frame::Kind {
        loop {
            let kind = self.recv_pb().await;
            if pred(&kind) {
                return kind;
            }
        }
    }
}

impl Client {
    /// Subscribes a JSON client as `user` and consumes the reply and its own presence
    /// `join`; returns the reply.
    pub async fn join_room(&mut self, id: u64, channel: &str, user: &str) -> Value {
        let reply = self.subscribe(id, channel).await;
        assert_eq!(reply["ok"], true, "subscribe {channel}: {reply}");
        let own = self.recv().await;
        assert_eq!(own, presence_frame(channel, user, "join"));
        reply
    }

    /// The next protobuf frame, which must be a reply.
    pub async fn next_pb_reply(&mut self) -> switchboard_proto::pb::Reply {
        match self.recv_pb().await {
            switchboard_proto::pb::frame::Kind::Reply(r) => r,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    /// The protobuf `Reply` to request `id` (other frames skipped).
    pub async fn pb_reply(&mut self, id: u64) -> switchboard_proto::pb::Reply {
        use switchboard_proto::pb::frame::Kind;
        match self
            .recv_pb_until(|k| matches!(k, Kind::Reply(r) if r.id == id))
            .await
        {
            Kind::Reply(r) => r,
            _ => unreachable!(),
        }
    }
}
