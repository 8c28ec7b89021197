//! Steady traffic with a ledger: publishers through the server API and through WebSocket
//! clients at a fixed rate, each message carrying a unique key, every acknowledged one
//! (a 200, an `ok` reply) recorded with its position and every failure with its reason;
//! and recipients — one connection per user, plus its rooms — that record every frame
//! they get, resuming with `since` when the server closes them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::support::cluster::{next_before, Cluster, Next};
use crate::support::{connect_since, join_task, position, ApiClient, Client, Node};

/// One publish attempt and how it ended.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub key: String,
    pub channel: String,
    /// `api@<node>` or `ws@<node>`.
    pub via: String,
    pub started: Instant,
    pub ended: Instant,
    /// `Ok((epoch, offset))` when acknowledged, else what came back.
    pub result: Result<(String, u64), String>,
}

/// Every publish attempt, in the order they ended.
#[derive(Clone, Default)]
pub struct Ledger(Arc<Mutex<Vec<Attempt>>>);

impl Ledger {
    fn record(&self, attempt: Attempt) {
        self.0.lock().unwrap().push(attempt);
    }

    pub fn attempts(&self) -> Vec<Attempt> {
        self.0.lock().unwrap().clone()
    }

    /// One publish through the server API, recorded; returns its position when it was
    /// acknowledged.
    pub async fn publish(
        &self,
        api: &ApiClient,
        via: &str,
        channel: &str,
        key: &str,
    ) -> Option<(String, u64)> {
        let started = Instant::now();
        let body = json!({"channel": channel, "data": {"k": key}});
        let call = api.try_call("POST", "/v1/publish", Some(body));
        let result = match tokio::time::timeout(Duration::from_secs(10), call).await {
            Err(_) => Err("no answer within 10 s".to_owned()),
            Ok(Err(e)) => Err(format!("http: {e}")),
            Ok(Ok((200, body))) => Ok(position(&body)),
            Ok(Ok((status, body))) => Err(format!("{status} {}", body["error"])),
        };
        self.record(Attempt {
            key: key.to_owned(),
            channel: channel.to_owned(),
            via: via.to_owned(),
            started,
            ended: Instant::now(),
            result: result.clone(),
        });
        result.ok()
    }

    /// The acknowledged attempts.
    pub fn acked(&self) -> Vec<Attempt> {
        self.attempts()
            .into_iter()
            .filter(|a| a.result.is_ok())
            .collect()
    }
}

/// Where publishers send and how fast.
#[derive(Clone)]
pub struct Plan {
    /// The channels messages go to, in turn.
    pub channels: Vec<String>,
    /// Messages per second of each publisher.
    pub rate: u32,
}

/// Running publishers; [`Publishers::stop`] ends them and waits.
pub struct Publishers {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Publishers {
    /// One server-API publisher and one WebSocket publisher (user `wspub<i>`) per node.
    pub async fn start(c: &Cluster, plan: &Plan, ledger: &Ledger) -> Publishers {
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        for (i, node) in c.nodes.iter().enumerate() {
            let api = node.api_client();
            let (plan_api, ledger_api, stop_api) = (plan.clone(), ledger.clone(), stop.clone());
            let via = format!("api@{i}");
            tasks.push(tokio::spawn(async move {
                api_publisher(api, via, plan_api, ledger_api, stop_api, i).await
            }));
            let (client, _) = connect_since(node, &format!("wspub{i}"), None).await;
            let (plan, ledger, stop) = (plan.clone(), ledger.clone(), stop.clone());
            let via = format!("ws@{i}");
            tasks.push(tokio::spawn(async move {
                ws_publisher(client, via, plan, ledger, stop, i).await
            }));
        }
        Publishers { stop, tasks }
    }

    pub async fn stop(self) {
        self.stop.cancel();
        for t in self.tasks {
            join_task(t).await;
        }
    }
}

/// A pacing tick that never bursts to catch up (a stalled machine sends less, not more).
fn ticker(rate: u32) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

async fn api_publisher(
    api: ApiClient,
    via: String,
    plan: Plan,
    ledger: Ledger,
    stop: CancellationToken,
    offset: usize,
) {
    let mut tick = ticker(plan.rate);
    for seq in 0.. {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let channel = plan.channels[(seq + offset) % plan.channels.len()].clone();
        let key = format!("{via}-{seq}");
        ledger.publish(&api, &via, &channel, &key).await;
    }
}

async fn ws_publisher(
    mut client: Client,
    via: String,
    plan: Plan,
    ledger: Ledger,
    stop: CancellationToken,
    offset: usize,
) {
    let mut tick = ticker(plan.rate);
    // Requests without their reply yet: id → (key, channel, started).
    let mut pending: HashMap<u64, (String, String, Instant)> = HashMap::new();
    for seq in 0u64.. {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => break,
        }
        let channel = plan.channels[(seq as usize + offset) % plan.channels.len()].clone();
        let key = format!("{via}-{seq}");
        client
            .send(json!({"type": "publish", "id": seq, "channel": channel, "data": {"k": key}}))
            .await;
        pending.insert(seq, (key, channel, Instant::now()));
        // Closed loop: wait for this reply (later replies of earlier requests count too).
        let deadline = Instant::now() + Duration::from_secs(10);
        while pending.contains_key(&seq) {
            match next_before(&mut client, deadline, &via).await {
                Next::Frame(f) if f["type"] == "reply" => settle(&ledger, &via, &mut pending, &f),
                Next::Frame(_) => {}
                Next::Deadline => break,
                Next::Closed(code, reason) => panic!("{via}: closed {code} {reason}"),
            }
        }
    }
    // Late replies, then whatever never got one.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pending.is_empty() {
        match next_before(&mut client, deadline, &via).await {
            Next::Frame(f) if f["type"] == "reply" => settle(&ledger, &via, &mut pending, &f),
            Next::Frame(_) => {}
            _ => break,
        }
    }
    for (_, (key, channel, started)) in pending {
        ledger.record(Attempt {
            key,
            channel,
            via: via.clone(),
            started,
            ended: Instant::now(),
            result: Err("no reply".into()),
        });
    }
    client.close().await;
}

fn settle(
    ledger: &Ledger,
    via: &str,
    pending: &mut HashMap<u64, (String, String, Instant)>,
    reply: &Value,
) {
    let Some((key, channel, started)) = reply["id"].as_u64().and_then(|id| pending.remove(&id))
    else {
        return;
    };
    let result = if reply["ok"] == true {
        Ok(position(reply))
    } else {
        Err(format!("reply {}", reply["error"]["code"]))
    };
    ledger.record(Attempt {
        key,
        channel,
        via: via.to_owned(),
        started,
        ended: Instant::now(),
        result,
    });
}

// --- Recipients ---------------------------------------------------------------------

/// What a recipient saw, in order.
#[derive(Clone, Debug)]
pub enum Seen {
    /// Where a channel stood when the recipient started following it.
    Start {
        channel: String,
        epoch: String,
        offset: u64,
    },
    /// A message: channel, epoch, offset, key, and which connection (0, 1, …).
    Message {
        channel: String,
        epoch: String,
        offset: u64,
        key: String,
        conn: usize,
    },
    /// Told to resync: a `goaway resync`, a `resync` frame, or a resume answered
    /// `recovered:false` (channel `None`: every channel of the connection).
    Told {
        channel: Option<String>,
        what: String,
    },
    /// The server closed the connection; the next one resumed (`recovered`).
    Resumed { code: u16, recovered: bool },
}

/// One user's connection (resumed when closed) and its rooms.
pub struct Recipient {
    pub user: String,
    pub rooms: Vec<String>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Recipient {
    /// Connects `user` to `node`, subscribes `rooms` and records everything from then on.
    pub async fn start(node: &Node, user: &str, rooms: &[String]) -> Recipient {
        let (mut client, welcome) = connect_since(node, user, None).await;
        let mut at: HashMap<String, (String, u64)> = HashMap::new();
        at.insert(format!("user:{user}"), position(&welcome));
        for (i, room) in rooms.iter().enumerate() {
            let reply = client.subscribe(i as u64 + 1, room).await;
            assert_eq!(reply["ok"], true, "{user} subscribing to {room}: {reply}");
            at.insert(room.clone(), position(&reply));
        }
        let start = at
            .iter()
            .map(|(channel, (epoch, offset))| Seen::Start {
                channel: channel.clone(),
                epoch: epoch.clone(),
                offset: *offset,
            })
            .collect();
        let seen = Arc::new(Mutex::new(start));
        let stop = CancellationToken::new();
        let state = Follow {
            node: node.public,
            user: user.to_owned(),
            rooms: rooms.to_vec(),
            at,
            seen: seen.clone(),
            conn: 0,
        };
        let task = tokio::spawn(state.run(client, stop.clone()));
        Recipient {
            user: user.to_owned(),
            rooms: rooms.to_vec(),
            seen,
            stop,
            task,
        }
    }

    /// The channels it follows: its own and its rooms.
    pub fn channels(&self) -> Vec<String> {
        let mut out = vec![format!("user:{}", self.user)];
        out.extend(self.rooms.iter().cloned());
        out
    }

    /// The keys it received on `channel` so far.
    pub fn keys(&self, channel: &str) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter_map(|s| match s {
                Seen::Message {
                    channel: c, key, ..
                } if c == channel => Some(key.clone()),
                _ => None,
            })
            .collect()
    }

    /// Stops reading and returns everything seen.
    pub async fn stop(self) -> (String, Vec<Seen>) {
        self.stop.cancel();
        join_task(self.task).await;
        let seen = self.seen.lock().unwrap().clone();
        (self.user, seen)
    }
}

/// A recipient's reading loop.
struct Follow {
    node: std::net::SocketAddr,
    user: String,
    rooms: Vec<String>,
    /// The last position per channel (the welcome's or reply's before any message).
    at: HashMap<String, (String, u64)>,
    seen: Arc<Mutex<Vec<Seen>>>,
    conn: usize,
}

impl Follow {
    fn note(&self, s: Seen) {
        self.seen.lock().unwrap().push(s);
    }

    /// Records one frame (replies and presence are not recorded).
    fn handle(&mut self, f: &Value) {
        if f["type"] == "message" {
            let channel = f["channel"].as_str().unwrap_or_default().to_owned();
            let (epoch, offset) = position(f);
            self.at.insert(channel.clone(), (epoch.clone(), offset));
            let key = f["data"]["k"].as_str().unwrap_or("?").to_owned();
            let conn = self.conn;
            self.note(Seen::Message {
                channel,
                epoch,
                offset,
                key,
                conn,
            });
        } else if f["type"] == "resync" {
            let channel = f["channel"].as_str().map(str::to_owned);
            if let Some(ch) = &channel {
                self.at.insert(ch.clone(), position(f));
            }
            self.note(Seen::Told {
                channel,
                what: f.to_string(),
            });
        } else if f["type"] == "goaway" && f["reason"] == "resync" {
            self.note(Seen::Told {
                channel: None,
                what: f.to_string(),
            });
        }
    }

    async fn run(mut self, mut client: Client, stop: CancellationToken) {
        loop {
            let deadline = Instant::now() + Duration::from_millis(200);
            let next = tokio::select! {
                n = next_before(&mut client, deadline, &self.user) => n,
                _ = stop.cancelled() => break,
            };
            match next {
                Next::Deadline => {}
                Next::Frame(f) => self.handle(&f),
                Next::Closed(code, _) => client = self.resume(code).await,
            }
        }
        client.close().await;
    }

    /// Reconnects and resumes every channel from where it stands.
    async fn resume(&mut self, code: u16) -> Client {
        let channel = format!("user:{}", self.user);
        let (epoch, offset) = self.at[&channel].clone();
        let url = format!(
            "ws://{}/ws?token={}&since={epoch}:{offset}",
            self.node,
            crate::support::token(&self.user)
        );
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .unwrap_or_else(|e| panic!("{} could not reconnect: {e}", self.user));
        let mut client = Client { ws, proto: false };
        let welcome = client.recv().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        self.conn += 1;
        let recovered = welcome["recovered"] == true;
        self.note(Seen::Resumed { code, recovered });
        if !recovered {
            self.at.insert(channel.clone(), position(&welcome));
            self.note(Seen::Told {
                channel: Some(channel),
                what: format!("resume answered {welcome}"),
            });
        }
        // Every room again from where it stands; the user channel's replay and live
        // messages interleave with the replies and are recorded as they come.
        let mut waiting: HashMap<u64, String> = HashMap::new();
        for (i, room) in self.rooms.clone().into_iter().enumerate() {
            let (epoch, offset) = self.at[&room].clone();
            let id = 1000 + i as u64;
            client
                .send(json!({"type": "subscribe", "id": id, "channel": room,
                             "since": {"epoch": epoch, "offset": offset}}))
                .await;
            waiting.insert(id, room);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !waiting.is_empty() {
            let f = match next_before(&mut client, deadline, &self.user).await {
                Next::Frame(f) => f,
                other => panic!("{}: resubscribing: {other:?}", self.user),
            };
            let room = f["id"].as_u64().and_then(|id| waiting.remove(&id));
            match room {
                Some(room) if f["type"] == "reply" => {
                    assert_eq!(f["ok"], true, "{}: {f}", self.user);
                    if f["recovered"] != true {
                        self.at.insert(room.clone(), position(&f));
                        self.note(Seen::Told {
                            channel: Some(room),
                            what: format!("resume answered {f}"),
                        });
                    }
                }
                _ => self.handle(&f),
            }
        }
        client
    }
}
