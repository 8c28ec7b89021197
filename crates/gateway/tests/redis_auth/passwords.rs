//! Passwords: `redis://:pass@…` to a `redis-server --requirepass`, an ACL user
//! `redis://user:pass@…` (and every connection of the nodes really is that user), and a
//! Redis Cluster started with `--requirepass`/`--masterauth` — a direct message across two
//! nodes each time; a wrong password, or none, refused at startup.

use super::*;

use support::cluster::{Cluster, Store};
use support::refused::{assert_refused, run_with_url};
use switchboard_router::testsuite::redis_cluster::{ClusterOptions, RedisCluster, RespConn};

/// One command on a connection to `port`, authenticated as `user` (None: `default`).
fn cmd_as(port: u16, user: Option<&str>, password: &str, args: &[&str]) -> String {
    let mut conn = RespConn::connect(port).expect("connect to redis");
    let auth = match user {
        Some(user) => conn.cmd(&["AUTH", user, password]),
        None => conn.cmd(&["AUTH", password]),
    }
    .expect("AUTH");
    assert!(auth.is_ok(), "AUTH: {auth:?}");
    let reply = conn.cmd(args).expect("a reply");
    if let Some(e) = reply.error() {
        panic!("{args:?}: {e}");
    }
    reply.text()
}

#[tokio::test]
async fn a_password_in_the_url_opens_a_requirepass_redis() {
    let dir = TempDir::new("redis-pass");
    let port = free_port();
    let _server = Server::start(
        &dir.0,
        port,
        &["--port", &port.to_string(), "--requirepass", "s3cret"],
    );
    let (a, b) = two_nodes(&format!("redis://:s3cret@127.0.0.1:{port}/0")).await;
    direct_message_across(&a, &b).await;

    assert_refused(
        "a wrong password",
        run_with_url(&format!("redis://:wrong@127.0.0.1:{port}/0")).await,
        1,
        &[
            "Redis authentication failed",
            "WRONGPASS",
            &format!("127.0.0.1:{port}"),
        ],
    );
    assert_refused(
        "no password",
        run_with_url(&format!("redis://127.0.0.1:{port}/0")).await,
        1,
        &[
            "Redis authentication failed",
            "NOAUTH",
            &format!("127.0.0.1:{port}"),
        ],
    );
}

#[tokio::test]
async fn an_acl_user_in_the_url_is_who_the_nodes_are() {
    let dir = TempDir::new("redis-acl");
    let port = free_port();
    // The default user needs a password the nodes do not have: only `sb` gets in.
    let _server = Server::start(
        &dir.0,
        port,
        &["--port", &port.to_string(), "--requirepass", "admin-only"],
    );
    cmd_as(
        port,
        None,
        "admin-only",
        &[
            "ACL", "SETUSER", "sb", "on", ">sb-pass", "~*", "&*", "+@all",
        ],
    );
    let (a, b) = two_nodes(&format!("redis://sb:sb-pass@127.0.0.1:{port}/0")).await;
    direct_message_across(&a, &b).await;

    let clients = cmd_as(port, None, "admin-only", &["CLIENT", "LIST"]);
    let ours: Vec<&str> = clients
        .lines()
        .filter(|l| l.contains("name=switchboard:"))
        .collect();
    assert!(
        !ours.is_empty(),
        "the nodes' connections are named: {clients}"
    );
    for line in &ours {
        assert!(
            line.contains(" user=sb "),
            "a node connected as another user: {line}"
        );
    }

    assert_refused(
        "an ACL user with a wrong password",
        run_with_url(&format!("redis://sb:nope@127.0.0.1:{port}/0")).await,
        1,
        &["Redis authentication failed", "WRONGPASS"],
    );
    cmd_as(port, None, "admin-only", &["ACL", "SETUSER", "sb", "off"]);
    assert_refused(
        "a disabled ACL user",
        run_with_url(&format!("redis://sb:sb-pass@127.0.0.1:{port}/0")).await,
        1,
        &["Redis authentication failed"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_with_a_password() {
    let redis = tokio::task::spawn_blocking(|| {
        RedisCluster::start_opts(&ClusterOptions {
            password: Some("cluster-pass".into()),
            ..ClusterOptions::default()
        })
    })
    .await
    .expect("start a Redis Cluster with a password");
    let url = redis.url();
    assert!(url.starts_with("redis-cluster://:cluster-pass@"), "{url}");
    let wrong = url.replace(":cluster-pass@", ":wrong@");
    let none = url.replace(":cluster-pass@", "");
    let redis = std::sync::Arc::new(redis);
    let c = Cluster::start_with(Store::Cluster(redis.clone()), 2, &[]).await;
    direct_message_across(&c.nodes[0], &c.nodes[1]).await;
    // Replicas replicate with --masterauth (the cluster would not be ok otherwise), and
    // the events stream is readable with the password.
    let events = c.events();
    assert!(
        events.iter().any(|e| e.get("user") == "alice"),
        "alice's connect event: {events:?}"
    );

    assert_refused(
        "a Redis Cluster with a wrong password",
        run_with_url(&wrong).await,
        1,
        &["Redis authentication failed", "WRONGPASS"],
    );
    assert_refused(
        "a Redis Cluster without the password",
        run_with_url(&none).await,
        1,
        &["Redis authentication failed", "NOAUTH"],
    );
}
