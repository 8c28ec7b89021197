//! Readiness under subscription churn: a room subscription that Redis has not confirmed
//! yet (an SSUBSCRIBE in flight, answered within a probe interval) is not an outage, and
//! must not take the node out of `/readyz` (the soak saw it flap under connection churn);
//! Redis not answering for longer still is. (One unconfirmed for longer than an interval
//! holds readiness back too: `Want::holds_back`'s unit test.)
//! Needs the `testsuite` feature and `redis-server`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_proto::frames::PresenceEvent;
use switchboard_proto::Message;
use switchboard_router::testsuite::redis_server::RedisServer;
use switchboard_router::{NodeSink, RedisRouter, RedisSettings, Router};

/// A node that holds no connections.
struct Empty;

impl NodeSink for Empty {
    fn deliver(&self, _: Arc<Message>) {}
    fn presence(&self, _: &str, _: &str, _: PresenceEvent) {}
    fn disconnect_user(&self, _: &str, _: u16, _: &str) -> usize {
        0
    }
    fn backplane_state(&self, _: bool) {}
    fn channels_interrupted(&self, _: &[String]) {}
}

const PROBE_INTERVAL: Duration = Duration::from_millis(1000);

/// Sends `CLIENT PAUSE <ms> ALL` on a connection of its own: Redis answers nobody for `ms`.
fn pause_redis(port: u16, ms: u64) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let arg = ms.to_string();
    let cmd = format!(
        "*4\r\n$6\r\nCLIENT\r\n$5\r\nPAUSE\r\n${}\r\n{arg}\r\n$3\r\nALL\r\n",
        arg.len()
    );
    s.write_all(cmd.as_bytes()).expect("write");
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).expect("read");
    assert_eq!(&buf[..n], b"+OK\r\n");
}

async fn started(redis: &RedisServer, command_timeout: Duration) -> Arc<dyn Router> {
    let mut s = RedisSettings::new(redis.url(), "node-r");
    s.prefix = format!("ready-{}:", std::process::id());
    s.events_stream = format!("{}events", s.prefix);
    s.probe_interval = PROBE_INTERVAL;
    s.command_timeout = command_timeout;
    let router: Arc<dyn Router> = RedisRouter::new(s).expect("settings");
    router.start(Arc::new(Empty)).await.expect("start");
    let t0 = Instant::now();
    while !router.is_up() {
        assert!(t0.elapsed() < Duration::from_secs(10), "never up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    router
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_in_flight_is_not_an_outage() {
    let redis = RedisServer::start();
    let router = started(&redis, Duration::from_secs(2)).await;
    // Redis holds every answer for 60 % of a probe interval while a room subscription is
    // in flight: more than one judgement of the probes (every half interval) sees it.
    let pause = PROBE_INTERVAL.mul_f64(0.6);
    pause_redis(redis.port, pause.as_millis() as u64);
    let r2 = router.clone();
    let sub = tokio::spawn(async move { r2.subscribe_room("room:churn").await });
    let t0 = Instant::now();
    let mut down = 0;
    while t0.elapsed() < pause + Duration::from_millis(100) {
        down += usize::from(!router.is_up());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sub.await
        .unwrap()
        .expect("the subscription is confirmed after the pause");
    assert_eq!(
        down, 0,
        "the node left readiness for an SSUBSCRIBE in flight"
    );
    assert!(router.is_up());
    router.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_holding_every_answer_is_still_an_outage() {
    let redis = RedisServer::start();
    let router = started(&redis, Duration::from_millis(500)).await;
    // Held for more than two probe intervals: the probes time out, the node goes down,
    // and it comes back once Redis answers again.
    let pause = PROBE_INTERVAL * 2 + Duration::from_millis(500);
    pause_redis(redis.port, pause.as_millis() as u64);
    let r2 = router.clone();
    let sub = tokio::spawn(async move { r2.subscribe_room("room:stuck").await });
    let t0 = Instant::now();
    let mut went_down = false;
    while t0.elapsed() < pause {
        went_down |= !router.is_up();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(went_down, "an answer held for {pause:?} is an outage");
    let _ = sub.await;
    let t1 = Instant::now();
    while !router.is_up() {
        assert!(t1.elapsed() < Duration::from_secs(10), "never up again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    router.shutdown().await;
}
