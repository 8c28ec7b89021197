//! Sentinel failover, all local: master, replica and `redis-server --sentinel`; the
//! master is SIGKILLed and the nodes follow the promoted replica.

use super::*;
use std::path::PathBuf;

/// A `redis-server --sentinel` process monitoring `mymaster`; killed on drop.
struct Sentinel {
    port: u16,
    child: std::process::Child,
    dir: PathBuf,
}

impl Sentinel {
    fn start(master_port: u16) -> Sentinel {
        for attempt in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let dir = std::env::temp_dir().join(format!(
                "switchboard-sentinel-{}-{port}-{attempt}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).expect("sentinel dir");
            let conf = dir.join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\n\
                     sentinel monitor mymaster 127.0.0.1 {master_port} 1\n\
                     sentinel down-after-milliseconds mymaster 1000\n\
                     sentinel failover-timeout mymaster 5000\n",
                    dir.display()
                ),
            )
            .expect("sentinel config");
            let child = std::process::Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("spawn redis-server --sentinel");
            let mut sentinel = Sentinel { port, child, dir };
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while std::time::Instant::now() < deadline {
                if redis_cmd(port, &["PING"]).is_ok_and(|r| r == Resp::Text("PONG".into())) {
                    return sentinel;
                }
                if let Ok(Some(_)) = sentinel.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            drop(sentinel);
        }
        panic!("could not start redis-server --sentinel");
    }

    /// The port of the master Sentinel currently names.
    fn master_port(&self) -> Result<u16, String> {
        match redis_cmd(
            self.port,
            &["SENTINEL", "get-master-addr-by-name", "mymaster"],
        ) {
            Ok(Resp::Array(a)) if a.len() == 2 => a[1].text().parse().map_err(|e| format!("{e}")),
            other => Err(format!("{other:?}")),
        }
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_follow_a_sentinel_failover() {
    let mut master = RedisServer::start();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
    poll(
        Duration::from_secs(10),
        "the replica is in sync",
        || async {
            let info =
                redis_cmd(replica.port, &["INFO", "replication"]).map_err(|e| e.to_string())?;
            let info = info.text();
            if info.contains("master_link_status:up") {
                Ok(())
            } else {
                Err(info)
            }
        },
    )
    .await;
    let sentinel = blocking(|| Sentinel::start(master.port));
    poll(
        Duration::from_secs(10),
        "Sentinel discovered the replica",
        || async {
            match redis_cmd(sentinel.port, &["SENTINEL", "replicas", "mymaster"]) {
                Ok(Resp::Array(r)) if !r.is_empty() => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;

    let url = format!(
        "redis+sentinel://127.0.0.1:{}/0?sentinelServiceName=mymaster",
        sentinel.port
    );
    let (n1, n2) = tokio::join!(start_node(&url), start_node(&url));
    let api = n2.api_client();
    let (mut erin, welcome) = n1.connect("erin").await;
    let (epoch, _) = position(&welcome);
    let (status, body, _) = publish(&api, "user:erin", json!({"n": 1})).await;
    assert_eq!(status, 200, "publish through Sentinel: {body}");
    assert_eq!(position(&body), (epoch.clone(), 1), "{body}");
    let msg = expect_message(&mut erin, "user:erin", support::WAIT).await;
    assert_eq!(position(&msg), (epoch.clone(), 1), "{msg}");
    // Everything is on the replica before the master dies.
    let synced = redis_cmd(master.port, &["WAIT", "1", "2000"]).expect("WAIT");
    assert_eq!(synced, Resp::Int(1), "the replica acknowledged the writes");

    blocking(|| master.kill());
    let killed_at = Instant::now();
    let (_, failover) = poll(
        Duration::from_secs(15),
        "Sentinel promotes the replica",
        || async {
            match sentinel.master_port() {
                Ok(p) if p == replica.port => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let switched_at = Instant::now();
    println!("measured: Sentinel failover {failover:?} after the master was killed");

    // The nodes follow: a publish through n2 succeeds and reaches erin on n1.
    let (answer, follow) = poll(
        Duration::from_secs(5),
        "publish succeeds after the failover",
        || async {
            let (status, body, _) = publish(&api, "user:erin", json!({"n": 2})).await;
            if status == 200 {
                Ok(body)
            } else {
                Err(format!("{status} {body}"))
            }
        },
    )
    .await;
    let (e, offset) = position(&answer);
    assert_eq!(e, epoch, "the promoted replica kept the channel: {answer}");
    let mut next = 2;
    loop {
        let msg = expect_message(&mut erin, "user:erin", support::WAIT).await;
        assert_eq!(
            position(&msg),
            (epoch.clone(), next),
            "erin's messages in order: {msg}"
        );
        if next == offset {
            assert_eq!(msg["data"], json!({"n": 2}), "{msg}");
            break;
        }
        next += 1;
    }
    let delivered = switched_at.elapsed();
    for node in [&n1, &n2] {
        wait_readyz(
            node,
            200,
            Duration::from_secs(5),
            "ready after the failover",
        )
        .await;
    }
    let ready = switched_at.elapsed();
    println!(
        "measured: nodes followed the failover: publish 200 {follow:?}, delivered {delivered:?}, both ready {ready:?} after the switch ({:?} after the kill)",
        killed_at.elapsed()
    );
    assert!(
        delivered <= Duration::from_secs(5),
        "the nodes followed the failover only after {delivered:?}"
    );
}
