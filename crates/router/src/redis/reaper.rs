//! The reaper: every node, every probe interval, claims nodes whose lease passed (one
//! atomic step on the `{nodes}` slot, so exactly one reaper gets each) and removes
//! what they left — each connection from its user's registry with a synthetic
//! `disconnect` event, each presence entry with a `leave` frame to the room — one
//! slot-local step at a time. A claim has its own deadline: if the reaper dies half-way,
//! another one claims the node again and finishes (every step is idempotent).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::client::Cmd;
use super::{now_ms, value_str, value_u64, Inner};
use crate::Result;

/// How long a reaper has before another one may claim the same dead node.
const CLAIM: Duration = Duration::from_secs(30);
/// Members read per step from a dead node's sets.
const PAGE: usize = 500;

pub(super) fn spawn(inner: Arc<Inner>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(inner.settings.probe_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = inner.stopped.cancelled() => return,
            }
            inner.check_lease();
            if !leases_settled(&inner) {
                continue;
            }
            if let Err(e) = reap(&inner, None).await {
                tracing::debug!(error = %e, "reap failed");
            }
        }
    });
}

/// Whether this node's heartbeats have succeeded for a whole lease: only then may it
/// reap. After the lease shard was unreachable — failing over, frozen — every node's
/// deadline may have passed while none could renew it; reaping at once would remove
/// every live node (their users would go offline, with synthetic disconnects).
fn leases_settled(inner: &Inner) -> bool {
    let since = inner.leases_ok_since_ms.load(Ordering::SeqCst);
    since >= 0 && inner.mono_ms() - since >= inner.settings.lease.as_millis() as i64
}

/// At startup, before anything registers: removes what a previous process under this
/// node id left behind (a crash and a restart within the lease), so that none of it
/// stays online forever.
pub(super) async fn reap_previous_life(inner: &Inner) -> Result<()> {
    let own = inner.settings.node_id.clone();
    reap(inner, Some(&own)).await
}

/// Claims expired nodes (and `force`, whatever its lease) and cleans up after them.
async fn reap(inner: &Inner, force: Option<&str>) -> Result<()> {
    let (nodes, reaping, status) = (
        inner.keys.nodes(),
        inner.keys.reaping(),
        inner.keys.status(),
    );
    let cmd = inner
        .scripts
        .claim
        .cmd(&[nodes.as_bytes(), reaping.as_bytes(), status.as_bytes()])
        .int(CLAIM.as_millis() as u64)
        .arg(force.unwrap_or(""));
    let claimed = inner.call(cmd).await?.into_array();
    for node in claimed.iter().map(value_str) {
        if Some(node.as_str()) != force {
            tracing::warn!(node = %node, "reaping a node whose lease expired");
        }
        clean_up(inner, &node).await?;
        inner
            .call(Cmd::new("ZREM").key(&reaping).arg(&node))
            .await?;
    }
    Ok(())
}

/// Removes a dead node's connections and presence entries, a page at a time; each entry
/// leaves the node's set only once it is cleaned up (a reaper that dies half-way leaves
/// the rest to the next one).
async fn clean_up(inner: &Inner, node: &str) -> Result<()> {
    let conns = inner.keys.node_conns(node);
    while let Some(members) = next_page(inner, &conns).await? {
        for member in members {
            reap_conn(inner, node, &member).await?;
            forget(inner, &conns, &member).await?;
        }
    }
    let presence = inner.keys.node_presence(node);
    while let Some(members) = next_page(inner, &presence).await? {
        for member in members {
            let mut p = member.split(' ');
            if let (Some(room), Some(conn), Some(user)) = (p.next(), p.next(), p.next()) {
                inner.leave_script(room, user, conn).await?;
            }
            forget(inner, &presence, &member).await?;
        }
    }
    Ok(())
}

/// Removes one `"<user> <conn>"` of a dead node from its user's registry, with a
/// synthetic disconnect event.
async fn reap_conn(inner: &Inner, node: &str, member: &str) -> Result<()> {
    let mut p = member.split(' ');
    let (Some(user), Some(conn)) = (p.next(), p.next()) else {
        return Ok(());
    };
    let registry = inner.keys.registry(&format!("user:{user}"));
    let removed = inner
        .call(
            inner
                .scripts
                .reap_conn
                .cmd(&[registry.as_bytes()])
                .arg(conn)
                .arg(node),
        )
        .await?;
    if value_u64(&removed) == 1 {
        let ts = now_ms().to_string();
        inner
            .call(inner.event(&[
                ("type", "disconnect"),
                ("user", user),
                ("conn", conn),
                ("node", node),
                ("ts", &ts),
                ("reason", "node_lost"),
                ("synthetic", "1"),
            ]))
            .await?;
    }
    Ok(())
}

/// Up to a page of a set's members; `None` once it is empty.
async fn next_page(inner: &Inner, key: &str) -> Result<Option<Vec<String>>> {
    let members = inner
        .call(Cmd::new("SRANDMEMBER").key(key).int(PAGE))
        .await?
        .into_array();
    Ok((!members.is_empty()).then(|| members.iter().map(value_str).collect()))
}

async fn forget(inner: &Inner, key: &str, member: &str) -> Result<()> {
    inner
        .call(Cmd::new("SREM").key(key).arg(member))
        .await
        .map(|_| ())
}
