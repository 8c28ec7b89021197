//! Reaching Redis securely: `rediss://` to a TLS-only `redis-server` whose certificate a
//! throwaway CA signed (trusted with `?tlsCaFile=`), passwords (`--requirepass`), an ACL
//! user, and a Redis Cluster that requires a password — each end to end (a direct message
//! across two nodes), and each wrong certificate or credential refused at startup with a
//! message naming the problem.
//!
//! # Layout
//! - this file: a `redis-server` with any arguments, a throwaway CA and certificates
//!   (`openssl`), and a direct message across two nodes.
//! - [`tls`]: `rediss://` with the right CA, another CA, no CA.
//! - [`passwords`]: `requirepass`, an ACL user, a Redis Cluster with a password.

use switchboard_testkit as support;

mod passwords;
mod tls;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{free_port, position, Node};

/// A directory of the test's own, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "switchboard-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temp dir");
        TempDir(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    fn display(&self, file: &str) -> String {
        self.path(file).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `redis-server` on `port` with `args` (no persistence); killed on drop.
struct Server {
    port: u16,
    child: Child,
}

impl Server {
    /// Starts it and waits until it accepts connections on `port` (plain or TLS).
    fn start(dir: &Path, port: u16, args: &[&str]) -> Server {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (make deps installs it)");
        let mut server = Server { port, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("redis-server {args:?} exited: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on {port} did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `openssl` with `args` in `dir`; panics with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throwaway CA `<name>.pem` (key `<name>.key`) in `dir`.
fn make_ca(dir: &Path, name: &str) {
    let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &pem,
            "-days",
            "2",
            "-subj",
            &format!("/CN=switchboard test {name}"),
        ],
    );
}

/// `server.pem` / `server.key` for 127.0.0.1 (SAN IP), signed by the CA `<ca>.pem`.
fn make_server_cert(dir: &Path, ca: &str) {
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write server.ext");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
}

/// Two nodes on `url`, each under a prefix of the test's own.
async fn two_nodes(url: &str) -> (Node, Node) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let prefix = format!(
        "sba{}-{}:",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let args = ["--redis-url", url, "--redis-prefix", &prefix];
    tokio::join!(support::start(&args), support::start(&args))
}

/// alice on the first node, bob on the second: bob's direct message reaches alice, and
/// so does a server-API publish through bob's node.
async fn direct_message_across(a: &Node, b: &Node) {
    let (mut alice, welcome) = a.connect("alice").await;
    let (epoch, top) = position(&welcome);
    let (mut bob, _) = b.connect("bob").await;
    bob.send(json!({"type": "publish", "id": 1, "channel": "user:alice", "data": {"n": 1}}))
        .await;
    let reply = bob.reply(1).await;
    assert_eq!(reply["ok"], true, "{reply}");
    let msg = alice.recv().await;
    assert_eq!(msg["type"], "message", "{msg}");
    assert_eq!(position(&msg), (epoch.clone(), top + 1), "{msg}");
    assert_eq!(
        (&msg["from"], &msg["data"]),
        (&json!("bob"), &json!({"n": 1}))
    );
    let answer = b.api_client().publish("user:alice", json!({"n": 2})).await;
    assert_eq!(
        (&answer["online"], &answer["nodes"]),
        (&json!(true), &json!(1))
    );
    let msg = alice.recv().await;
    assert_eq!(position(&msg), (epoch, top + 2), "{msg}");
    alice.expect_silence(Duration::from_millis(300)).await;
}
