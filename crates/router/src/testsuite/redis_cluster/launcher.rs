//! Runs `deploy/redis-cluster.sh start … --watch-stdin` and talks to it: its `ready` line,
//! `restart PORT` requests, and closing its stdin to stop every node.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::ClusterOptions;

pub(super) struct Launcher {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Its stdout, line by line (read by a thread: reads here have deadlines).
    lines: Receiver<String>,
}

/// How long the launcher may take to form a cluster (a busy 2-core machine included).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// The launcher's exit status when a port was taken: another try on other ports.
pub(super) const PORT_TAKEN: i32 = 3;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/redis-cluster.sh")
}

/// Runs the launcher and waits for its `ready` line. Err: its exit status and its stderr.
pub(super) fn launch(
    dir: &Path,
    ports: &[u16],
    bus_ports: &[u16],
    options: &ClusterOptions,
) -> Result<Launcher, (Option<i32>, String)> {
    let join = |ports: &[u16]| {
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        ports.join(",")
    };
    let log = std::fs::File::create(dir.join("launcher.log")).expect("the launcher log");
    let mut command = Command::new("bash");
    if let Some(password) = &options.password {
        // The launcher's redis-cli calls (create, readiness checks) authenticate with it.
        command.env("REDISCLI_AUTH", password);
    }
    let child = command
        .arg(script())
        .arg("start")
        .arg(dir)
        .args(["--primaries", &options.primaries.to_string()])
        .args(["--replicas", &options.replicas.to_string()])
        .args(["--ports", &join(ports), "--bus-ports", &join(bus_ports)])
        .args([
            "--node-timeout",
            &options.node_timeout.as_millis().to_string(),
        ])
        .args(["--timeout", &(START_TIMEOUT.as_secs() - 10).to_string()])
        .arg("--watch-stdin")
        .arg("--")
        .args(&options.redis_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("could not run {}: {e}", script().display()));
    let mut launcher = Launcher::new(child);
    match launcher.lines.recv_timeout(START_TIMEOUT) {
        Ok(line) if line.starts_with("ready ") => Ok(launcher),
        result => {
            let waited = match result {
                Err(RecvTimeoutError::Timeout) => "no ready line in time",
                _ => "no ready line",
            };
            launcher.stop(dir);
            let status = launcher.child.wait().ok().and_then(|s| s.code());
            Err((
                status,
                format!("{waited}; launcher said:\n{}", read_log(dir)),
            ))
        }
    }
}

impl Launcher {
    fn new(mut child: Child) -> Launcher {
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Launcher {
            child,
            stdin,
            lines,
        }
    }

    /// Asks the launcher to start the node on `port` again; Err says why it did not.
    pub(super) fn restart(&mut self, port: u16) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("the launcher is stopped")?;
        writeln!(stdin, "restart {port}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("the launcher is gone: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(&format!("restarted port={port} ")) => return Ok(()),
                Ok(line) if line.starts_with(&format!("failed port={port} ")) => return Err(line),
                Ok(_) => {}
                Err(e) => return Err(format!("the launcher did not answer: {e}")),
            }
        }
    }

    /// Closes the launcher's stdin (it stops every node and exits) and waits for it; if it
    /// does not go, kills it and stops the nodes by their pidfiles.
    pub(super) fn stop(&mut self, dir: &Path) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn read_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("launcher.log")).unwrap_or_else(|e| format!("({e})"))
}

pub(super) fn require_tools() {
    for tool in ["redis-server", "redis-cli"] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "{tool} not found: the Redis Cluster tests need redis-server and redis-cli \
             (`make deps` installs them)"
        );
    }
    assert!(script().exists(), "{} is missing", script().display());
}

pub(super) fn fresh_dir() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "switchboard-redis-cluster-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temp dir");
    dir
}

/// `n` distinct ports that were free a moment ago (all bound at once, then released),
/// below the kernel's ephemeral range when it leaves room: the nodes bind them one after
/// the other over seconds, and meanwhile any outgoing connection on the machine (other
/// tests' clients) may take an ephemeral port as its local port.
pub(super) fn free_ports(n: usize) -> Vec<u16> {
    use rand::Rng as _;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let mut listeners = Vec::new();
    if ephemeral_low > 12000 {
        let mut rng = rand::rng();
        for _ in 0..n * 50 {
            if listeners.len() == n {
                break;
            }
            let port = rng.random_range(10000..ephemeral_low);
            if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                listeners.push(l);
            }
        }
    }
    while listeners.len() < n {
        listeners.push(std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"));
    }
    listeners
        .iter()
        .map(|l| l.local_addr().expect("a bound port").port())
        .collect()
}
