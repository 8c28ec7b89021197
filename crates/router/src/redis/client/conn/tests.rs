//! The connection's group commit against a fake Redis over an in-memory pipe.

use super::*;
use tokio::io::{AsyncBufReadExt, BufReader};

/// A connection over an in-memory pipe, and the pipe's other end.
fn pipe() -> (Conn, tokio::io::DuplexStream) {
    let (client, server) = tokio::io::duplex(1 << 16);
    let (reader, writer) = tokio::io::split(client);
    let conn = Conn::start(
        "fake".into(),
        Box::new(reader),
        Box::new(writer),
        Mode::Commands,
        Duration::from_secs(5),
        true,
    );
    (conn, server)
}

/// A fake Redis on the other end of an in-memory pipe: answers `+OK` to every
/// command and `:1` to `WAIT` (each `WAIT` once it gets a permit of `gate`: a
/// replica that takes its time), and reports the names of the commands it got.
fn fake_redis(
    gate: Arc<tokio::sync::Semaphore>,
) -> (Conn, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let (conn, server) = pipe();
    let (seen, names) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (r, mut w) = tokio::io::split(server);
        let mut r = BufReader::new(r);
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let n: usize = line.trim()[1..].parse().unwrap();
            let mut args = Vec::new();
            for _ in 0..n {
                line.clear();
                r.read_line(&mut line).await.unwrap();
                let len: usize = line.trim()[1..].parse().unwrap();
                let mut arg = vec![0; len + 2];
                r.read_exact(&mut arg).await.unwrap();
                arg.truncate(len);
                args.push(String::from_utf8(arg).unwrap());
            }
            let reply: &[u8] = if args[0] == "WAIT" {
                b":1\r\n"
            } else {
                b"+OK\r\n"
            };
            let _ = seen.send(args[0].clone());
            if args[0] == "WAIT" {
                gate.acquire().await.unwrap().forget();
            }
            w.write_all(reply).await.unwrap();
        }
    });
    (conn, names)
}

#[tokio::test]
async fn writes_queued_together_share_one_wait() {
    let (conn, mut names) = fake_redis(Arc::new(tokio::sync::Semaphore::new(1000)));
    let cmd = Cmd::new("SET").arg("k").arg("v");
    let calls = (0..50).map(|_| conn.call_replicated(&cmd, 1, 100));
    let results = futures_util::future::join_all(calls).await;
    for (written, replicated) in results {
        assert_eq!(
            written.unwrap().as_bytes().map(|b| &b[..]),
            Some(&b"OK"[..])
        );
        assert_eq!(replicated.unwrap().as_int(), Some(1));
    }
    let mut got = Vec::new();
    while let Ok(name) = names.try_recv() {
        got.push(name);
    }
    assert_eq!(got.iter().filter(|n| *n == "SET").count(), 50);
    // All 50 were queued before the writer ran: one batch, closed by one WAIT.
    assert_eq!(got.iter().filter(|n| *n == "WAIT").count(), 1, "{got:?}");
    assert_eq!(got.last().map(String::as_str), Some("WAIT"));

    // A write queued later gets a WAIT of its own, after it.
    let (written, replicated) = conn.call_replicated(&cmd, 1, 100).await;
    assert!(written.is_ok() && replicated.is_ok());
    let mut later = Vec::new();
    while let Ok(name) = names.try_recv() {
        later.push(name);
    }
    assert_eq!(later, ["SET", "WAIT"]);
}

fn drain(names: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> Vec<String> {
    std::iter::from_fn(|| names.try_recv().ok()).collect()
}

#[tokio::test]
async fn writes_sent_while_a_wait_is_out_share_the_next_one() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (conn, mut names) = fake_redis(gate.clone());
    let cmd = Cmd::new("SET").arg("k").arg("v");
    let first = tokio::spawn({
        let (conn, cmd) = (conn.clone(), cmd.clone());
        async move { conn.call_replicated(&cmd, 1, 100).await }
    });
    while drain(&mut names) != ["SET", "WAIT"] {
        tokio::task::yield_now().await;
    }
    // The replica is slow: ten writes come one by one while the first WAIT is out.
    let mut later = Vec::new();
    for _ in 0..10 {
        let (conn, cmd) = (conn.clone(), cmd.clone());
        later.push(tokio::spawn(async move {
            conn.call_replicated(&cmd, 1, 100).await
        }));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(
        drain(&mut names).is_empty(),
        "the fake still holds the first WAIT"
    );
    gate.add_permits(2);
    let (written, replicated) = first.await.unwrap();
    assert!(written.is_ok() && replicated.is_ok());
    for call in later {
        let (written, replicated) = call.await.unwrap();
        assert!(written.is_ok() && replicated.is_ok());
    }
    // The ten went out at once; one WAIT covered them, sent after the first came back.
    let mut expected = vec!["SET"; 10];
    expected.push("WAIT");
    assert_eq!(drain(&mut names), expected);
}

#[tokio::test]
async fn a_broken_connection_fails_the_write_and_its_wait() {
    let (conn, server) = pipe();
    drop(server);
    let cmd = Cmd::new("SET").arg("k").arg("v");
    let (written, replicated) = conn.call_replicated(&cmd, 1, 100).await;
    assert!(written.is_err(), "{written:?}");
    assert!(replicated.is_err(), "{replicated:?}");
}
