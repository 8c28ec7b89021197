//! Moving slots between primaries: `redis-cli --cluster reshard` in the background while a
//! test keeps its traffic flowing, or one slot step by step for deterministic tests.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::resp::RespValue;
use super::RedisCluster;

/// A `redis-cli --cluster reshard` running in the background; killed on drop unless
/// [`wait`](ReshardHandle::wait)ed for.
pub struct ReshardHandle<'a> {
    cluster: &'a RedisCluster,
    child: Option<Child>,
    log: PathBuf,
    what: String,
}

impl RedisCluster {
    /// Starts moving `slots` slots from primary `from` to primary `to` with
    /// `redis-cli --cluster reshard … --cluster-yes` in the background (it migrates their
    /// keys with MIGRATE while clients keep using them, through ASK redirects).
    pub fn reshard(&self, from: u16, to: u16, slots: usize) -> ReshardHandle<'_> {
        static N: AtomicU32 = AtomicU32::new(0);
        let any = *self.live_ports().first().expect("a live node");
        let log = self
            .dir
            .join(format!("reshard-{}.log", N.fetch_add(1, Ordering::Relaxed)));
        let out = File::create(&log).expect("the reshard log");
        let err = out.try_clone().expect("the reshard log");
        let mut command = Command::new("redis-cli");
        if let Some(password) = &self.options.password {
            command.env("REDISCLI_AUTH", password);
        }
        let child = command
            .args(["--cluster", "reshard", &format!("127.0.0.1:{any}")])
            .args(["--cluster-from", self.node_id(from)])
            .args(["--cluster-to", self.node_id(to)])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("could not run redis-cli --cluster reshard: {e}"));
        ReshardHandle {
            cluster: self,
            child: Some(child),
            log,
            what: format!("reshard of {slots} slots from {from} to {to}"),
        }
    }

    /// Moves `slot` (and its keys) to primary `to` with the raw steps: SETSLOT IMPORTING on
    /// `to`, SETSLOT MIGRATING on the owner, GETKEYSINSLOT + MIGRATE until it is empty,
    /// SETSLOT NODE on `to`, the owner and every other primary. Returns once every live node
    /// agrees that `to` serves it. A no-op when `to` serves it already.
    pub fn migrate_slot(&self, slot: u16, to: u16) {
        let from = self.primary_of_slot(slot);
        if from == to {
            return;
        }
        assert!(
            self.primaries().contains(&to),
            "migrate_slot: {to} is not a primary"
        );
        let (slot_s, to_port) = (slot.to_string(), to.to_string());
        let expect_ok = |port: u16, args: &[&str]| {
            let reply = self.cmd(port, args);
            assert!(reply.is_ok(), "node {port}: {args:?} answered {reply:?}");
        };
        let setslot = |port: u16, state: &str, node: u16| {
            expect_ok(
                port,
                &["CLUSTER", "SETSLOT", &slot_s, state, self.node_id(node)],
            );
        };
        setslot(to, "IMPORTING", from);
        setslot(from, "MIGRATING", to);
        loop {
            let keys = self.cmd(from, &["CLUSTER", "GETKEYSINSLOT", &slot_s, "100"]);
            let keys: Vec<Vec<u8>> = keys
                .items()
                .iter()
                .map(|k| match k {
                    RespValue::Bulk(b) => b.clone(),
                    other => panic!("GETKEYSINSLOT answered {other:?}"),
                })
                .collect();
            if keys.is_empty() {
                break;
            }
            let mut migrate: Vec<Vec<u8>> = ["MIGRATE", "127.0.0.1", &to_port, "", "0", "10000"]
                .iter()
                .map(|a| a.as_bytes().to_vec())
                .collect();
            if let Some(password) = &self.options.password {
                migrate.push(b"AUTH".to_vec());
                migrate.push(password.as_bytes().to_vec());
            }
            migrate.push(b"KEYS".to_vec());
            migrate.extend(keys);
            let reply = self.cmd(from, &migrate);
            assert!(
                reply.is_ok() || reply == RespValue::Simple("NOKEY".into()),
                "node {from}: MIGRATE answered {reply:?}"
            );
        }
        // The new owner first, then the old one, then everyone else (as redis-cli does).
        setslot(to, "NODE", to);
        setslot(from, "NODE", to);
        for other in self.primaries() {
            if other != to && other != from {
                setslot(other, "NODE", to);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let agreed = self.live_ports().iter().all(|&port| {
                super::topology::nodes_seen_by(port).is_ok_and(|nodes| {
                    nodes.iter().all(|n| n.open_slots.is_empty())
                        && nodes
                            .iter()
                            .any(|n| n.port == to && n.is_primary() && n.serves(slot))
                })
            });
            if agreed {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not every node sees slot {slot} on {to} after 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl ReshardHandle<'_> {
    /// Waits for redis-cli to finish and the cluster to settle (`wait_ok`), both within
    /// `timeout`; panics with redis-cli's output when it fails or takes longer.
    pub fn wait(mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut child = self.child.take().expect("a running reshard");
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for redis-cli") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} took over {timeout:?}:\n{}", self.what, self.output());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let output = self.output();
        assert!(
            status.success() && !output.contains("[ERR]"),
            "{} failed ({status}):\n{output}",
            self.what
        );
        self.cluster
            .wait_ok(deadline.saturating_duration_since(Instant::now()));
    }

    /// Whether redis-cli is still moving slots.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("({e})"))
    }
}

impl Drop for ReshardHandle<'_> {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
