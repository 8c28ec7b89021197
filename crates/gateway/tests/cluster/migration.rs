//! Migration race: users hop between nodes, resuming with `since`, while publishes race them;
//! nothing lost, nothing duplicated within a connection.

use super::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::time::Instant;

use crate::support::cluster::{next_before, Cluster, Next};

/// What one hopping user observed.
#[derive(Default)]
struct Hops {
    /// offset → data of the first delivery.
    seen: BTreeMap<u64, Value>,
    hops: usize,
    /// Deliveries of an offset already seen on an earlier connection (allowed: the
    /// client dedupes by offset).
    redelivered: usize,
    /// Contract violations (duplicates or gaps within one connection, failed resumes).
    violations: Vec<String>,
}

/// One hopping user's client state.
struct Hopper {
    who: String,
    channel: String,
    epoch: String,
    /// The last offset seen (what a reconnect resumes from).
    last: u64,
    /// The last offset seen on the current connection.
    conn_last: u64,
    node: usize,
    out: Hops,
}

impl Hopper {
    /// Reads frames until `until`; false when the connection was closed by the server.
    async fn read_until(&mut self, client: &mut Client, until: Instant, node_id: &str) -> bool {
        loop {
            match next_before(client, until, &self.who).await {
                Next::Frame(m) => self.take(&m, node_id),
                Next::Deadline => return true,
                Next::Closed(code, reason) => {
                    self.out
                        .violations
                        .push(format!("on {node_id}: closed {code} {reason}"));
                    return false;
                }
            }
        }
    }

    fn take(&mut self, m: &Value, node_id: &str) {
        if m["type"] != "message" || m["channel"] != self.channel.as_str() {
            self.out
                .violations
                .push(format!("on {node_id}: unexpected frame {m}"));
            return;
        }
        let (epoch, offset) = position(m);
        if epoch != self.epoch {
            self.out.violations.push(format!("epoch changed: {m}"));
        }
        if offset != self.conn_last + 1 {
            self.out.violations.push(format!(
                "on {node_id}: offset {offset} after {} in one connection",
                self.conn_last
            ));
        }
        self.conn_last = self.conn_last.max(offset);
        self.last = self.last.max(offset);
        if self.out.seen.insert(offset, m["data"].clone()).is_some() {
            self.out.redelivered += 1;
        }
    }
}

/// Hops between the nodes (every 0–2 s) until `stop`, then reads until everything
/// published to the user arrived.
async fn hop_user(
    c: Arc<Cluster>,
    mut h: Hopper,
    mut client: Client,
    seed: u64,
    stop: Instant,
    published_all: Arc<AtomicBool>,
    published: Arc<AtomicU64>,
) -> Hops {
    let mut rng = StdRng::seed_from_u64(seed);
    while Instant::now() < stop {
        let dwell = Duration::from_millis(rng.random_range(0..=2000));
        let until = (Instant::now() + dwell).min(stop);
        let id = c.nodes[h.node].node_id.clone();
        if !h.read_until(&mut client, until, &id).await {
            return h.out;
        }
        if Instant::now() >= stop {
            break;
        }
        client.close().await;
        h.node = (h.node + rng.random_range(1..=2)) % 3;
        let (next, welcome) =
            connect_since(&c.nodes[h.node], &h.who, Some((&h.epoch, h.last))).await;
        if welcome["recovered"] != true || welcome["epoch"] != h.epoch.as_str() {
            h.out
                .violations
                .push(format!("resume from {} failed: {welcome}", h.last));
        }
        client = next;
        h.conn_last = h.last;
        h.out.hops += 1;
    }
    // The end: everything published must arrive on the last connection.
    let id = c.nodes[h.node].node_id.clone();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(published_all.load(Ordering::SeqCst) && h.last >= published.load(Ordering::SeqCst)) {
        if Instant::now() >= deadline {
            h.out.violations.push(format!(
                "gave up waiting at offset {} of {}",
                h.last,
                published.load(Ordering::SeqCst)
            ));
            return h.out;
        }
        let until = (Instant::now() + Duration::from_millis(100)).min(deadline);
        if !h.read_until(&mut client, until, &id).await {
            return h.out;
        }
    }
    // Nothing after the last one (a duplicate or a stray frame would show here).
    h.read_until(&mut client, Instant::now() + QUIET, &id).await;
    client.close().await;
    h.out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_hopping_between_nodes_lose_and_duplicate_nothing() {
    const USERS: usize = 20;
    const RUN: Duration = Duration::from_secs(12);
    let c = Arc::new(Cluster::start(3, &[]).await);
    let seed: u64 = rand::rng().random();
    println!("migration seed {seed}");

    // Every user connects once before anything is published.
    let mut first = Vec::new();
    for u in 0..USERS {
        let who = format!("hop{u}");
        let (client, welcome) = c.nodes[u % 3].connect(&who).await;
        let (epoch, top) = position(&welcome);
        assert_eq!(top, 0, "{welcome}");
        let hopper = Hopper {
            channel: format!("user:{who}"),
            who,
            epoch,
            last: 0,
            conn_last: 0,
            node: u % 3,
            out: Hops::default(),
        };
        first.push((hopper, client));
    }

    let stop = Instant::now() + RUN;
    let published_all = Arc::new(AtomicBool::new(false));
    let published: Vec<Arc<AtomicU64>> = (0..USERS).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let users: Vec<_> = first
        .into_iter()
        .enumerate()
        .map(|(u, (hopper, client))| {
            tokio::spawn(hop_user(
                c.clone(),
                hopper,
                client,
                seed ^ (u as u64 + 1),
                stop,
                published_all.clone(),
                published[u].clone(),
            ))
        })
        .collect();

    // Publishers: random users through random nodes until the run ends.
    let answers: Arc<Mutex<Vec<BTreeMap<u64, Value>>>> =
        Arc::new(Mutex::new(vec![BTreeMap::new(); USERS]));
    let count = Arc::new(AtomicUsize::new(0));
    let mut publishers = Vec::new();
    for p in 0..2u64 {
        let apis: Vec<_> = c.nodes.iter().map(Node::api_client).collect();
        let answers = answers.clone();
        let published = published.clone();
        let count = count.clone();
        publishers.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed.wrapping_add(1000 + p));
            while Instant::now() < stop {
                let u = rng.random_range(0..USERS);
                let k = count.fetch_add(1, Ordering::SeqCst);
                let data = json!({"k": k});
                let answer = apis[rng.random_range(0..3)]
                    .publish(&format!("user:hop{u}"), data.clone())
                    .await;
                let (_, offset) = position(&answer);
                {
                    let mut answers = answers.lock().unwrap();
                    assert!(
                        answers[u].insert(offset, data).is_none(),
                        "hop{u}: offset {offset} assigned twice"
                    );
                    published[u].fetch_max(offset, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(rng.random_range(2..=8))).await;
            }
        }));
    }
    for p in publishers {
        join_task(p).await;
    }
    published_all.store(true, Ordering::SeqCst);

    let answers = answers.lock().unwrap().clone();
    let mut total_hops = 0;
    let mut redelivered = 0;
    let mut problems = Vec::new();
    for (u, user) in users.into_iter().enumerate() {
        let h = join_task(user).await;
        total_hops += h.hops;
        redelivered += h.redelivered;
        let want: Vec<u64> = (1..=answers[u].len() as u64).collect();
        let offsets: Vec<u64> = answers[u].keys().copied().collect();
        assert_eq!(offsets, want, "hop{u}: publish offsets are contiguous");
        if h.seen != answers[u] {
            let missing: Vec<_> = answers[u]
                .keys()
                .filter(|o| !h.seen.contains_key(o))
                .collect();
            problems.push(format!(
                "hop{u}: saw {} distinct of {} published; missing {missing:?}",
                h.seen.len(),
                answers[u].len()
            ));
        }
        for v in h.violations {
            problems.push(format!("hop{u}: {v}"));
        }
    }
    let total = count.load(Ordering::SeqCst);
    println!(
        "migration: {USERS} users, {total_hops} hops in {RUN:?}, {total} messages, \
         {redelivered} re-deliveries across connections, {} problems",
        problems.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        total_hops >= USERS * 5,
        "too few hops to mean anything: {total_hops}"
    );
}
