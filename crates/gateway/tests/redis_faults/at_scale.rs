//! 500 connections over 3 nodes while Redis is SIGKILLed and restarted. Without
//! persistence every connection is told, on its open socket, that its channels
//! restarted (`resync` for its personal channel and its room) and none is closed — no
//! reconnect storm; with `appendfsync always` nothing is told and nothing is lost.

use super::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const CONNS: usize = 500;
const NODES: usize = 3;
const ROOMS: usize = 10;
/// Rooms keep history too: their resync replays what the new epoch holds.
const HISTORY: &str = "room:*=100/3600";

/// One connection, read by a task of its own: every frame it got, and its close.
struct Watched {
    user: String,
    room: String,
    frames: Arc<Mutex<Vec<Value>>>,
    closed: Arc<Mutex<Option<(u16, String)>>>,
}

impl Watched {
    fn frames(&self) -> Vec<Value> {
        self.frames.lock().unwrap().clone()
    }

    fn closed(&self) -> Option<(u16, String)> {
        self.closed.lock().unwrap().clone()
    }

    fn channels(&self) -> [String; 2] {
        [format!("user:{}", self.user), self.room.clone()]
    }

    /// The `resync` frames it got, by channel.
    fn resyncs(&self) -> HashMap<String, Vec<Value>> {
        let mut by_channel: HashMap<String, Vec<Value>> = HashMap::new();
        for f in self.frames().into_iter().filter(|f| f["type"] == "resync") {
            let ch = f["channel"].as_str().unwrap_or_default().to_owned();
            by_channel.entry(ch).or_default().push(f);
        }
        by_channel
    }

    /// The messages it got on `channel`, in order.
    fn messages(&self, channel: &str) -> Vec<Value> {
        self.frames()
            .into_iter()
            .filter(|f| f["type"] == "message" && f["channel"] == channel)
            .collect()
    }
}

async fn start_nodes(redis: &RedisServer) -> Vec<Node> {
    let mut nodes = Vec::new();
    for _ in 0..NODES {
        nodes.push(start_node_with(&redis.url(), &["--history", HISTORY]).await);
    }
    nodes
}

/// Opens `CONNS` connections spread over `nodes`, each subscribed to one room, and
/// starts reading them.
async fn open_all(nodes: &[Node], tag: &str) -> Vec<Watched> {
    let mut watched = Vec::with_capacity(CONNS);
    for chunk in (0..CONNS).collect::<Vec<_>>().chunks(50) {
        let opened = futures_util::future::join_all(chunk.iter().map(|&i| async move {
            let user = format!("{tag}-{i}");
            let room = format!("room:{tag}-{}", i % ROOMS);
            let (mut client, _) = nodes[i % nodes.len()].connect(&user).await;
            let reply = client.subscribe(1, &room).await;
            assert_eq!(reply["ok"], true, "{reply}");
            (user, room, client)
        }))
        .await;
        for (user, room, mut client) in opened {
            let frames = Arc::new(Mutex::new(Vec::new()));
            let closed = Arc::new(Mutex::new(None));
            let (f, c) = (frames.clone(), closed.clone());
            tokio::spawn(async move {
                loop {
                    match next_before(&mut client, Instant::now() + Duration::from_secs(600)).await
                    {
                        Next::Frame(v) => f.lock().unwrap().push(v),
                        Next::Closed(code, reason) => {
                            *c.lock().unwrap() = Some((code, reason));
                            return;
                        }
                        Next::Deadline => return,
                    }
                }
            });
            watched.push(Watched {
                user,
                room,
                frames,
                closed,
            });
        }
    }
    watched
}

/// Publishes `data` to every user's channel and every room through the nodes' APIs;
/// returns the acknowledged position of each channel's message.
async fn publish_everywhere(
    nodes: &[Node],
    watched: &[Watched],
    data: Value,
) -> HashMap<String, (String, u64)> {
    let mut channels: Vec<String> = watched.iter().flat_map(|w| w.channels()).collect();
    channels.sort();
    channels.dedup();
    let apis: Vec<ApiClient> = nodes.iter().map(Node::api_client).collect();
    let mut acked = HashMap::new();
    for chunk in channels.chunks(25) {
        let answers = futures_util::future::join_all(chunk.iter().enumerate().map(|(i, ch)| {
            let api = &apis[i % apis.len()];
            let data = data.clone();
            async move { (ch.clone(), publish(api, ch, data).await) }
        }))
        .await;
        for (ch, (status, body, _)) in answers {
            assert_eq!(status, 200, "publish to {ch}: {body}");
            acked.insert(ch, position(&body));
        }
    }
    acked
}

/// Waits until every connection got its message on both of its channels.
async fn wait_delivered(watched: &[Watched], acked: &HashMap<String, (String, u64)>, what: &str) {
    poll(Duration::from_secs(30), what, || async {
        let missing = watched
            .iter()
            .flat_map(|w| w.channels().map(|ch| (w, ch)))
            .filter(|(w, ch)| {
                let want = &acked[ch];
                !w.messages(ch).iter().any(|m| &position(m) == want)
            })
            .count();
        (missing == 0).then_some(()).ok_or(format!(
            "{missing} (connection, channel) pairs still missing it"
        ))
    })
    .await;
}

async fn restart_redis(redis: &mut RedisServer, nodes: &[Node]) -> Duration {
    blocking(|| redis.kill());
    for node in nodes {
        wait_readyz(
            node,
            503,
            TIMEOUT * 2 + PROBE * 2 + SLACK,
            "not ready after the kill",
        )
        .await;
    }
    blocking(|| redis.restart());
    let restarted = Instant::now();
    for node in nodes {
        wait_readyz(
            node,
            200,
            Duration::from_secs(10),
            "ready after the restart",
        )
        .await;
    }
    restarted.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_without_data_resyncs_500_connections_and_closes_none() {
    let mut redis = RedisServer::start();
    let nodes = start_nodes(&redis).await;
    let watched = open_all(&nodes, "rs").await;
    let before = publish_everywhere(&nodes, &watched, json!({"n": "before"})).await;
    wait_delivered(&watched, &before, "delivered before the kill").await;

    let ready = restart_redis(&mut redis, &nodes).await;
    let restarted = Instant::now();
    let told = poll(
        Duration::from_secs(30),
        "every connection resynced",
        || async {
            let waiting = watched
                .iter()
                .filter(|w| {
                    let r = w.resyncs();
                    w.channels().iter().any(|ch| !r.contains_key(ch))
                })
                .count();
            (waiting == 0)
                .then_some(())
                .ok_or(format!("{waiting} connections still waiting for a resync"))
        },
    )
    .await
    .1;
    let closed: Vec<_> = watched.iter().filter_map(|w| w.closed()).collect();
    assert!(
        closed.is_empty(),
        "{} connections closed: {:?}",
        closed.len(),
        &closed[..closed.len().min(5)]
    );
    for w in &watched {
        for (ch, frames) in w.resyncs() {
            let (epoch, _) = position(&frames[frames.len() - 1]);
            assert_ne!(
                epoch, before[&ch].0,
                "{}: a resync names the new epoch",
                w.user
            );
        }
    }

    // Delivery goes on in the new epochs, on the same sockets.
    let after = publish_everywhere(&nodes, &watched, json!({"n": "after"})).await;
    wait_delivered(&watched, &after, "delivered after the resync").await;
    for w in &watched {
        let resyncs = w.resyncs();
        for ch in w.channels() {
            let last_resync = &resyncs[&ch][resyncs[&ch].len() - 1];
            let (epoch, offset) = position(last_resync);
            let got = w.messages(&ch);
            let new: Vec<_> = got.iter().filter(|m| position(m).0 == epoch).collect();
            assert!(
                new.iter().all(|m| position(m).1 > offset),
                "{}: messages after a resync come after its offset",
                w.user
            );
            assert_eq!(
                after[&ch].0, epoch,
                "{ch}: the publish after is in the resync's epoch"
            );
        }
    }
    let closed = watched.iter().filter(|w| w.closed().is_some()).count();
    assert_eq!(closed, 0, "connections closed after the resync");
    let resyncs: usize = watched
        .iter()
        .map(|w| w.resyncs().values().map(Vec::len).sum::<usize>())
        .sum();
    println!(
        "measured: Redis restarted without data under {CONNS} connections on {NODES} nodes: \
         nodes ready {ready:?} after the restart, every connection resynced {told:?} later \
         ({resyncs} resync frames, {:?} since the restart), 0 closes",
        restarted.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_with_aof_tells_500_connections_nothing_and_loses_nothing() {
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let nodes = start_nodes(&redis).await;
    let watched = open_all(&nodes, "aof").await;
    let before = publish_everywhere(&nodes, &watched, json!({"n": "before"})).await;
    wait_delivered(&watched, &before, "delivered before the kill").await;

    let ready = restart_redis(&mut redis, &nodes).await;
    let after = publish_everywhere(&nodes, &watched, json!({"n": "after"})).await;
    wait_delivered(&watched, &after, "delivered after the restart").await;
    expect_nothing_more(&watched).await;
    for w in &watched {
        assert!(
            w.resyncs().is_empty(),
            "{}: resync although Redis kept its data: {:?}",
            w.user,
            w.resyncs()
        );
        assert_eq!(w.closed(), None, "{}: closed", w.user);
        for ch in w.channels() {
            let got: Vec<(String, u64)> = w.messages(&ch).iter().map(position).collect();
            assert_eq!(
                got,
                [before[&ch].clone(), after[&ch].clone()],
                "{}: exactly the two acknowledged messages of {ch}, in order",
                w.user
            );
            assert_eq!(before[&ch].0, after[&ch].0, "{ch}: the epoch survived");
        }
    }
    println!(
        "measured: Redis restarted from its AOF under {CONNS} connections on {NODES} nodes: \
         ready {ready:?} after the restart, 0 resyncs, 0 closes, 0 lost"
    );
}

/// Gives late frames (a resync that should not come) a moment to arrive.
async fn expect_nothing_more(watched: &[Watched]) {
    let counts: Vec<usize> = watched.iter().map(|w| w.frames().len()).collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (w, n) in watched.iter().zip(counts) {
        let frames = w.frames();
        assert_eq!(
            frames.len(),
            n,
            "{}: late frames {:?}",
            w.user,
            &frames[n..]
        );
    }
}
