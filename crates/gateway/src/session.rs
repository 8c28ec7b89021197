//! What a connection's frames mean: the protocol of docs/protocol.md §4 for one client, from
//! the welcome to the last unsubscribe. Socket I/O lives in `ws`; this file only decides.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use switchboard_proto::channel::user_channel;
use switchboard_proto::frames::ReplyOk;
use switchboard_proto::{
    close, ClientFrame, Encoding, ErrorCode, Payload, Reply, ServerFrame, StreamPosition, Welcome,
};
use switchboard_router::{PublishRequest, RouterError};

use crate::auth::{AuthError, Claims};
use crate::conn::outbound::CloseRequest;
use crate::conn::ConnHandle;
use crate::metrics as m;
use crate::node::Node;

mod rate_limit;
mod subscriptions;
use rate_limit::TokenBucket;
use subscriptions::count_recovery;

/// Most messages one replay returns (history is bounded well below this).
const REPLAY_LIMIT: usize = 100_000;

pub struct Session {
    node: Arc<Node>,
    conn: Arc<ConnHandle>,
    claims: Claims,
    rooms: HashSet<String>,
    rate: TokenBucket,
    bad_frames: Vec<Instant>,
    /// Whether the registry holds the connection (the handshake registered it): `close`
    /// unregisters it then.
    registered: bool,
}

/// `Ok(None)`: the reply was already queued (in order with a replay).
type Outcome = Result<Option<ReplyOk>, (ErrorCode, String)>;

/// What a client is told of a router error: a request the router refused (`bad_frame`) or
/// the backplane being unavailable.
fn router_error(e: RouterError) -> (ErrorCode, String) {
    match e {
        RouterError::BadRequest(m) => (ErrorCode::BadFrame, m),
        RouterError::Unavailable(m) => (ErrorCode::Unavailable, m),
    }
}

impl Session {
    /// `registered`: whether the handshake registered the connection.
    pub fn new(
        node: Arc<Node>,
        conn: Arc<ConnHandle>,
        claims: Claims,
        registered: bool,
    ) -> Session {
        let rate = TokenBucket::new(node.config.rate_limit_per_sec, node.config.rate_limit_burst);
        Session {
            node,
            conn,
            claims,
            rooms: HashSet::new(),
            rate,
            bad_frames: Vec::new(),
            registered,
        }
    }

    /// Queues the welcome, then the inbox: everything after `since` when resuming, else
    /// everything after the user's last ack. The handshake registered the connection
    /// (before the 101, under the per-user cap): what the user's channel delivered to this
    /// node before the connection joined the hub is in the read below.
    pub async fn open(&mut self, since: Option<StreamPosition>) -> Result<(), RouterError> {
        let node = self.node.clone();
        let channel = user_channel(&self.conn.user);
        self.conn.begin(&channel);
        node.hub.add(&self.conn);
        // The welcome's position comes from the same read as the replay: everything up to
        // it is queued before any frame the client sends next is handled (a position read
        // later could name messages still on their way to this node through Redis).
        let (start, replay, recovered, top) = match &since {
            Some(since) => {
                let read = node
                    .router
                    .read(&channel, Some(since), REPLAY_LIMIT)
                    .await?;
                count_recovery(read.recovered);
                let top = StreamPosition::new(read.epoch, read.offset);
                if read.recovered {
                    (since.clone(), read.messages, Some(true), top)
                } else {
                    (top.clone(), Vec::new(), Some(false), top)
                }
            }
            None => {
                let acked = node.router.acked(&self.conn.user).await?;
                let read = node.router.read(&channel, None, REPLAY_LIMIT).await?;
                let after = acked
                    .filter(|a| a.epoch == read.epoch)
                    .map(|a| a.offset)
                    .unwrap_or(0);
                let replay: Vec<_> = read
                    .messages
                    .into_iter()
                    .filter(|m| m.offset > after)
                    .collect();
                let top = StreamPosition::new(read.epoch.clone(), read.offset);
                (StreamPosition::new(read.epoch, after), replay, None, top)
            }
        };
        let welcome = ServerFrame::Welcome(Welcome {
            conn_id: self.conn.conn_id.clone(),
            user: self.conn.user.clone(),
            node: node.config.node_id.clone(),
            heartbeat_ms: node.config.heartbeat.as_millis() as u64,
            channel: channel.clone(),
            epoch: top.epoch,
            offset: top.offset,
            recovered,
        });
        self.open_channel(&channel, &start, &welcome, &replay).await;
        Ok(())
    }

    /// Handles one complete client message. Returns a close request when the connection
    /// must end.
    pub async fn handle(&mut self, bytes: &[u8]) -> Option<CloseRequest> {
        m::hot().messages_received.increment(1);
        if !self.rate.take() {
            self.error(ErrorCode::RateLimited, "message rate limit exceeded");
            return Some(CloseRequest::new(close::RATE_LIMITED, "rate limited"));
        }
        let frame = match self.conn.encoding.decode(bytes) {
            Ok(f) => f,
            Err(e) => {
                self.error(e.code, &e.message);
                return self.bad_frame();
            }
        };
        let id = frame.id();
        let outcome = match frame {
            ClientFrame::Subscribe { channel, since, .. } => {
                self.subscribe(id, channel, since).await
            }
            ClientFrame::Unsubscribe { channel, .. } => self.unsubscribe(&channel).await,
            ClientFrame::Publish {
                channel,
                data,
                idempotency_key,
                ..
            } => self.publish(channel, data, idempotency_key).await,
            ClientFrame::Ack {
                channel,
                offset,
                epoch,
            } => {
                if let Err((code, message)) = self.ack(&channel, offset, epoch).await {
                    self.error(code, &message);
                }
                return None;
            }
            ClientFrame::Refresh { token, .. } => self.refresh(&token).await,
            ClientFrame::Ping { id } => {
                self.conn.send(&ServerFrame::Pong { id });
                return None;
            }
            ClientFrame::Rpc {
                method,
                data,
                traceparent,
                ..
            } => self.rpc(crate::rpc::Request {
                id,
                method,
                data,
                traceparent,
            }),
        };
        let reply = match outcome {
            Ok(None) => return None,
            Ok(Some(ok)) => Reply::ok(id, ok),
            Err((code, message)) => {
                metrics::counter!(m::CLIENT_ERRORS, "code" => code.as_str()).increment(1);
                Reply::err(id, code, message)
            }
        };
        self.conn.send(&ServerFrame::Reply(reply));
        None
    }

    /// The subprotocol's encoding (JSON in text frames, protobuf in binary ones).
    pub fn encoding(&self) -> Encoding {
        self.conn.encoding
    }

    /// Queues an `error` frame.
    pub fn error(&self, code: ErrorCode, message: &str) {
        metrics::counter!(m::CLIENT_ERRORS, "code" => code.as_str()).increment(1);
        self.conn.send(&ServerFrame::error(code, message));
    }

    /// Counts a malformed frame; past `--bad-frame-limit` in the window, the close (4400).
    pub fn bad_frame(&mut self) -> Option<CloseRequest> {
        let now = Instant::now();
        let window = self.node.config.bad_frame_window;
        self.bad_frames.retain(|t| now.duration_since(*t) < window);
        self.bad_frames.push(now);
        if self.bad_frames.len() > self.node.config.bad_frame_limit as usize {
            return Some(CloseRequest::new(
                close::TOO_MANY_BAD_FRAMES,
                "too many bad frames",
            ));
        }
        None
    }

    async fn publish(&mut self, channel: String, data: Payload, key: Option<String>) -> Outcome {
        self.channel(&channel)?;
        if !self.claims.can_publish(&channel) {
            return Err((
                ErrorCode::Forbidden,
                format!("not allowed to publish to {channel}"),
            ));
        }
        if data.len() > self.node.config.max_message_bytes {
            return Err((ErrorCode::TooLarge, "message data is too large".into()));
        }
        let outcome = self
            .node
            .router
            .publish(PublishRequest {
                channel,
                from: Some(self.conn.user.clone()),
                data,
                idempotency: self.node.idempotency(key, Some(&self.conn.user)),
            })
            .await
            .map_err(router_error)?;
        // A retry answered from its key stored nothing (the server API counts alike).
        if !outcome.duplicate {
            m::hot().publishes.increment(1);
        }
        Ok(Some(ReplyOk {
            position: Some(outcome.message.position()),
            ..Default::default()
        }))
    }

    async fn ack(
        &mut self,
        channel: &str,
        offset: u64,
        epoch: Option<String>,
    ) -> Result<(), (ErrorCode, String)> {
        let own = user_channel(&self.conn.user);
        if channel != own {
            return Err((ErrorCode::BadChannel, format!("only {own} can be acked")));
        }
        let router = &self.node.router;
        let top = router.position(channel).await.map_err(router_error)?;
        if epoch.as_ref().is_some_and(|e| *e != top.epoch) || offset > top.offset {
            return Err((
                ErrorCode::BadFrame,
                "ack names a position the channel does not have".into(),
            ));
        }
        router
            .ack(&self.conn.user, &StreamPosition::new(top.epoch, offset))
            .await
            .map_err(router_error)
    }

    async fn refresh(&mut self, token: &str) -> Outcome {
        let claims = self
            .node
            .config
            .auth
            .authenticate(token)
            .await
            .map_err(|e| {
                let code = match e {
                    AuthError::Expired => ErrorCode::TokenExpired,
                    _ => ErrorCode::InvalidToken,
                };
                (code, e.to_string())
            })?;
        if claims.sub != self.conn.user {
            return Err((
                ErrorCode::Forbidden,
                "a refresh token must be for the same user".into(),
            ));
        }
        let old = self.conn.expires_at.swap(claims.exp, Ordering::Relaxed);
        self.node.sweeper.moved(self.conn.id, old, claims.exp);
        self.claims = claims;
        Ok(Some(ReplyOk::default()))
    }

    /// RPC forwarding (docs/protocol.md §4b): checked here, then run concurrently; its reply
    /// comes when the upstream answers.
    fn rpc(&mut self, request: crate::rpc::Request) -> Outcome {
        let node = &self.node;
        node.rpc
            .dispatch(&node.tracker, &self.conn, &self.claims, request)
            .map(|()| None)
    }

    /// Leaves every room and the registry. Called once when the connection ends.
    pub async fn close(&mut self) {
        let rooms: Vec<String> = self.rooms.iter().cloned().collect();
        for room in rooms {
            self.drop_room(&room).await;
        }
        self.node.hub.remove(&self.conn);
        if self.registered {
            if let Err(e) = self
                .node
                .router
                .unregister(&self.conn.user, &self.conn.conn_id)
                .await
            {
                tracing::warn!(conn = %self.conn.conn_id, error = %e, "unregister failed");
            }
        }
    }
}
