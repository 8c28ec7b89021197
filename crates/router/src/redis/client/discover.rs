//! Finding the deployment: the master the Sentinels name, or the slot map of a Redis
//! Cluster (with the strict checks of a startup: cluster mode on, `cluster_state:ok`,
//! every slot served), and one Redis as it is.

use std::sync::Arc;

use super::connect::{self, Handshake};
use super::topology::{self, Topology};
use super::{text, ClientConfig, Cmd, Conn, Deployment, Error, Mode, Value};

/// Reads the slot map from a cluster node.
pub(super) async fn cluster_topology(
    conn: &Conn,
    config: &ClientConfig,
) -> Result<Topology, Error> {
    let tls = config.tls.is_some();
    match conn.call(&Cmd::new("CLUSTER").arg("SHARDS")).await? {
        Value::Error(e) if e.starts_with(b"ERR unknown subcommand") => {
            match conn.call(&Cmd::new("CLUSTER").arg("SLOTS")).await? {
                Value::Error(e) => Err(Error::Redis(text(&e))),
                v => Topology::from_slots(v),
            }
        }
        Value::Error(e) => Err(Error::Redis(text(&e))),
        v => Topology::from_shards(v, tls),
    }
}

/// How many replicas a primary reports connected (`INFO replication`).
async fn connected_replicas(conn: &Conn) -> usize {
    match conn.call(&Cmd::new("INFO").arg("replication")).await {
        Ok(Value::Bulk(b)) => String::from_utf8_lossy(&b)
            .lines()
            .find_map(|l| l.strip_prefix("connected_slaves:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}

/// Finds the primary (or the slot map) of the deployment. With `strict`, a cluster must
/// be `cluster_state:ok` with every slot served.
pub(super) async fn discover(
    config: &ClientConfig,
    name: &str,
    strict: bool,
) -> Result<Arc<Topology>, Error> {
    let handshake = Handshake::data(config, name);
    match &config.deployment {
        Deployment::Single(addr) => {
            let conn = connect::open(addr, config, &handshake, Mode::Commands)
                .await
                .map_err(|e| startup_error(addr, e))?;
            let replicas = connected_replicas(&conn).await;
            conn.close(Error::Closed);
            Ok(Arc::new(Topology::single(addr.clone(), replicas)))
        }
        Deployment::Sentinel {
            sentinels,
            service,
            username,
            password,
        } => {
            let mut problems = Vec::new();
            for s in sentinels {
                match sentinel_master(config, s, service, username, password).await {
                    Ok(addr) => {
                        let conn =
                            match connect::open(&addr, config, &handshake, Mode::Commands).await {
                                Ok(c) => c,
                                Err(e) => {
                                    problems.push(format!("master {addr} (from {s}): {e}"));
                                    continue;
                                }
                            };
                        let role = conn.call(&Cmd::new("ROLE")).await;
                        let is_master = matches!(&role, Ok(Value::Array(a))
                            if a.first().is_some_and(|r| r.to_text() == "master"));
                        if !is_master {
                            conn.close(Error::Closed);
                            problems.push(format!("{addr} (named by {s}) is not a master yet"));
                            continue;
                        }
                        let replicas = connected_replicas(&conn).await;
                        conn.close(Error::Closed);
                        return Ok(Arc::new(Topology::single(addr, replicas)));
                    }
                    Err(e) => problems.push(format!("sentinel {s}: {e}")),
                }
            }
            Err(Error::Unavailable(format!(
                "no Sentinel named a reachable master for `{service}`: {}",
                problems.join("; ")
            )))
        }
        Deployment::Cluster { seeds } => {
            let mut problems = Vec::new();
            for seed in seeds {
                let conn = match connect::open(seed, config, &handshake, Mode::Commands).await {
                    Ok(c) => c,
                    Err(e) => {
                        if matches!(e, Error::Auth(_)) {
                            return Err(startup_error(seed, e));
                        }
                        problems.push(format!("{seed}: {e}"));
                        continue;
                    }
                };
                let checked = check_cluster(&conn, config, strict).await;
                conn.close(Error::Closed);
                match checked {
                    Ok(t) => return Ok(Arc::new(t)),
                    Err(e @ Error::Config(_)) => return Err(e),
                    Err(e) if strict => return Err(e),
                    Err(e) => problems.push(format!("{seed}: {e}")),
                }
            }
            Err(Error::Unavailable(format!(
                "no Redis Cluster seed answered: {}",
                problems.join("; ")
            )))
        }
    }
}

async fn check_cluster(
    conn: &Conn,
    config: &ClientConfig,
    strict: bool,
) -> Result<Topology, Error> {
    let addr = conn.addr().to_owned();
    let info = match conn.call(&Cmd::new("CLUSTER").arg("INFO")).await? {
        Value::Error(e) => {
            let e = text(&e);
            return Err(if e.contains("cluster support disabled") {
                Error::Config(format!(
                    "{addr} is not a Redis Cluster node (cluster_enabled:0): use redis://{addr} for one Redis"
                ))
            } else {
                Error::Redis(e)
            });
        }
        v => v.to_text(),
    };
    let state = info
        .lines()
        .find_map(|l| l.strip_prefix("cluster_state:"))
        .unwrap_or("")
        .trim()
        .to_owned();
    if strict && state != "ok" {
        return Err(Error::Unavailable(format!(
            "the Redis Cluster at {addr} is not ready: cluster_state:{state}"
        )));
    }
    let t = cluster_topology(conn, config).await?;
    let uncovered = t.uncovered();
    if strict && uncovered > 0 {
        return Err(Error::Unavailable(format!(
            "the Redis Cluster at {addr} leaves {uncovered} of 16384 slots without a primary"
        )));
    }
    Ok(t)
}

fn startup_error(addr: &str, e: Error) -> Error {
    match e {
        Error::Auth(msg) => Error::Auth(format!("{addr}: {msg}")),
        other => Error::Unavailable(format!("{addr}: {other}")),
    }
}

/// Asks one Sentinel for the master of `service`.
async fn sentinel_master(
    config: &ClientConfig,
    sentinel: &str,
    service: &str,
    username: &Option<String>,
    password: &Option<String>,
) -> Result<String, Error> {
    let conn =
        connect::sentinel(sentinel, config, username.as_deref(), password.as_deref()).await?;
    let reply = conn
        .call(
            &Cmd::new("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(service),
        )
        .await;
    conn.close(Error::Closed);
    match reply? {
        Value::Array(a) if a.len() == 2 => {
            let host = a[0].to_text();
            let port = a[1].as_int().unwrap_or(0);
            Ok(topology::join_host_port(&host, port))
        }
        Value::Nil => Err(Error::Config(format!(
            "the Sentinel knows no master named `{service}`"
        ))),
        Value::Error(e) => Err(Error::Redis(text(&e))),
        other => Err(Error::Protocol(format!("unexpected answer {other:?}"))),
    }
}
