//! A drain keeps a sender's order (issue 13): publishes the node read before it closes a
//! connection are answered — stored or refused — before the close frame, and what it reads
//! after its close is not handled. So nothing is stored without an answer, and a client
//! that goes on elsewhere with what got no answer cannot have its messages stored out of
//! its send order. Run with the draining node starved of CPU: pinned to one core beside
//! two busy loops.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use support::cluster::Cluster;
use tokio_tungstenite::tungstenite::Message;

use super::*;

/// Busy loops pinned to one core, killed when dropped.
struct Hogs(Vec<Child>);

impl Hogs {
    fn on_core(core: usize, n: usize) -> Hogs {
        Hogs(
            (0..n)
                .map(|_| {
                    Command::new("taskset")
                        .args(["-c", &core.to_string(), "sh", "-c", "while :; do :; done"])
                        .stdout(Stdio::null())
                        .spawn()
                        .expect("taskset (util-linux) starts a busy loop")
                })
                .collect(),
        )
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Pins every thread of process `pid` to `core`.
fn pin(pid: u32, core: usize) {
    let ok = Command::new("taskset")
        .args(["-a", "-p", "-c", &core.to_string(), &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .expect("taskset")
        .success();
    assert!(ok, "taskset could not pin {pid}");
}

/// Most publishes the sender sends (it stops at the close).
const SENDS: u64 = 20_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_answers_what_it_read_before_closing_under_cpu_starvation() {
    let cluster = Cluster::start(
        2,
        &[
            "--rate-limit",
            "0",
            "--drain-seconds",
            "2",
            "--history",
            "room:*=100000/3600",
        ],
    )
    .await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let room = format!("room:order-{}", support::now_ms());
    let (client, _) = a.connect("sender").await;
    let (mut sink, mut stream) = client.ws.split();

    pin(a.child.id().expect("running"), 0);
    let _hogs = Hogs::on_core(0, 2);

    // The sender writes publishes as fast as the socket takes them; the reader records
    // every answer until the close.
    let room2 = room.clone();
    let writer = tokio::spawn(async move {
        for seq in 1..=SENDS {
            let frame =
                json!({"type": "publish", "id": seq, "channel": room2, "data": {"seq": seq}});
            if sink
                .send(Message::Text(frame.to_string().into()))
                .await
                .is_err()
            {
                return seq - 1;
            }
        }
        SENDS
    });
    let answers: Arc<Mutex<Vec<Value>>> = Arc::default();
    let answers2 = answers.clone();
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            match msg {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(&t).expect("JSON");
                    if v["type"] == "reply" {
                        answers2.lock().unwrap().push(v);
                    }
                }
                Message::Close(frame) => return frame.map(|f| u16::from(f.code)),
                _ => {}
            }
        }
        None
    });
    poll(
        Duration::from_secs(30),
        "answers before the drain",
        || async {
            let n = answers.lock().unwrap().len();
            (n >= 300).then_some(()).ok_or(format!("{n} answers"))
        },
    )
    .await;
    a.sigterm();
    let code = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("the drain closed the connection")
        .expect("reader");
    let sent = tokio::time::timeout(Duration::from_secs(20), writer)
        .await
        .expect("the writer stopped")
        .expect("writer");
    assert_eq!(code, Some(1012), "the drain closes with 1012");
    drop(_hogs);

    let answers = answers.lock().unwrap().clone();
    let mut ok: std::collections::BTreeMap<u64, u64> = Default::default();
    for r in &answers {
        let seq = r["id"].as_u64().expect("id");
        if r["ok"] == true {
            ok.insert(seq, r["offset"].as_u64().expect("offset"));
        } else {
            assert_eq!(r["error"]["code"], "unavailable", "a refused publish: {r}");
        }
    }
    let stored = history(b, &room).await;
    let stored_seqs: Vec<u64> = stored.iter().map(|(_, seq)| *seq).collect();
    let unanswered: Vec<u64> = stored_seqs
        .iter()
        .filter(|seq| !ok.contains_key(seq))
        .copied()
        .collect();
    assert!(
        unanswered.is_empty(),
        "stored without an answer before the close (the client cannot know to skip them): {unanswered:?}"
    );
    for (seq, offset) in &ok {
        assert!(
            stored.contains(&(*offset, *seq)),
            "publish {seq} answered offset {offset} but history does not hold it there"
        );
    }

    // The client goes on elsewhere from the first publish without an answer.
    let next = ok.keys().max().copied().unwrap_or(0) + 1;
    let (mut c, _) = b.connect("sender").await;
    for seq in next..next + 20 {
        c.send(json!({"type": "publish", "id": seq, "channel": room, "data": {"seq": seq}}))
            .await;
        let r = c.reply(seq).await;
        assert_eq!(r["ok"], true, "{r}");
    }
    let stored: Vec<u64> = history(b, &room)
        .await
        .iter()
        .map(|(_, seq)| *seq)
        .collect();
    assert_eq!(
        stored,
        (1..next + 20).collect::<Vec<_>>(),
        "history holds the sender's publishes once each, in its send order"
    );
    println!(
        "measured: drain under CPU starvation: {sent} sent, {} answered ok, {} refused, 0 stored without an answer",
        ok.len(),
        answers.len() - ok.len()
    );
}

/// `(offset, seq)` of every message in `room`'s history, read through `node`.
async fn history(node: &Node, room: &str) -> Vec<(u64, u64)> {
    let (status, body) = node
        .api("GET", &format!("/v1/history/{room}?limit=10000"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["offset"].as_u64().unwrap(),
                m["data"]["seq"].as_u64().unwrap(),
            )
        })
        .collect()
}
