//! Gap repair: when live delivery skipped offsets (the backplane lost messages) or the
//! backplane link came back after being down, the affected channels of a connection are
//! held, re-read from history after the last offset delivered, and released in order.
//! Where history no longer has the gap, the client is told to resync (`goaway` + 1012;
//! its resume with `since` then answers `recovered:false`). Rooms without history are
//! at-most-once: their gaps are accepted.
//!
//! History can also have *diverged*: a failover lost a write that was already delivered,
//! and its offset went to another message. The repair reads from the offset delivered
//! last, so it sees the message history now holds there; when that is another one than
//! was delivered (or live delivery already saw one), the channel gets a new epoch — every
//! resume from the old one then answers `recovered:false`, on every node — and the client
//! is told to resync. Never a silent gap.

use std::sync::Arc;
use std::time::Duration;

use switchboard_proto::{close, ServerFrame, StreamPosition};
use switchboard_router::{HistoryPolicies, Router};
use tokio::sync::{mpsc, Semaphore};

use crate::conn::{id_hash, ConnHandle, Held};
use crate::ws::outbound::CloseRequest;

/// One held channel of one connection.
pub struct Repair {
    pub conn: Arc<ConnHandle>,
    pub channel: String,
}

/// Most messages one repair reads (history is bounded well below this).
const REPAIR_LIMIT: usize = 100_000;
/// Repairs in flight at once.
const CONCURRENCY: usize = 64;
/// Attempts of a repair read while the backplane is unavailable.
const ATTEMPTS: u32 = 20;

/// A repair read, checked against the message delivered last.
enum Checked {
    Read(switchboard_router::HistoryRead),
    /// History holds another message at the offset delivered last.
    Diverged,
}

/// Reads history after the held position. When the id of the message delivered last is
/// known, reads from that message instead and checks it is still the one history holds.
async fn read_checked(
    router: &dyn Router,
    channel: &str,
    held: &Held,
) -> Result<Checked, switchboard_router::RouterError> {
    let at = &held.position;
    if held.last_id != 0 && at.offset > 0 {
        let before = StreamPosition::new(at.epoch.clone(), at.offset - 1);
        let mut read = router.read(channel, Some(&before), REPAIR_LIMIT).await?;
        if read.recovered {
            match read.messages.first() {
                Some(m) if m.offset == at.offset => {
                    if id_hash(&m.id) != held.last_id {
                        return Ok(Checked::Diverged);
                    }
                    read.messages.remove(0);
                    return Ok(Checked::Read(read));
                }
                // Nothing at or after the held offset: history went back (lost writes).
                _ => return Ok(Checked::Diverged),
            }
        }
        // The message before the held one is gone (trimmed): read as usual.
    }
    Ok(Checked::Read(
        router.read(channel, Some(at), REPAIR_LIMIT).await?,
    ))
}

/// Processes repair requests until the sender is gone.
pub async fn run(
    router: Arc<dyn Router>,
    policies: HistoryPolicies,
    mut requests: mpsc::UnboundedReceiver<Repair>,
) {
    let limit = Arc::new(Semaphore::new(CONCURRENCY));
    while let Some(repair) = requests.recv().await {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let router = router.clone();
        let policies = policies.clone();
        tokio::spawn(async move {
            repair_one(router.as_ref(), &policies, repair).await;
            drop(permit);
        });
    }
}

async fn repair_one(router: &dyn Router, policies: &HistoryPolicies, r: Repair) {
    let Repair { conn, channel } = r;
    let mut delay = Duration::from_millis(100);
    let mut diverged = false;
    for _ in 0..ATTEMPTS {
        let Some(held) = conn.held(&channel) else {
            return; // unsubscribed or closed meanwhile
        };
        let at = &held.position;
        if held.diverged {
            diverged = true;
            break;
        }
        let result = match read_checked(router, &channel, &held).await {
            Ok(Checked::Diverged) => {
                diverged = true;
                break;
            }
            Ok(Checked::Read(read)) => Ok(read),
            Err(e) => Err(e),
        };
        match result {
            Ok(read) if read.recovered => {
                tracing::debug!(conn = %conn.conn_id, replayed = read.messages.len(), "gap repaired");
                if conn.release(&channel, &read.messages).await {
                    return;
                }
                diverged = true;
                break;
            }
            Ok(_) if !policies.for_channel(&channel).keeps_history() => {
                if conn.release(&channel, &[]).await {
                    return;
                }
                diverged = true;
                break;
            }
            Ok(_) => break,
            Err(e) => {
                tracing::debug!(error = %e, at = ?at, "repair read failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
    if diverged {
        if let Some(held) = conn.held(&channel) {
            if let Err(e) = router.reset_epoch(&channel, &held.position.epoch).await {
                tracing::warn!(error = %e, "could not start a new epoch after a divergence");
            }
        }
    }
    tracing::warn!(conn = %conn.conn_id, "history lost a gap; asking the client to resync");
    conn.send(&ServerFrame::Goaway {
        reason: "resync".into(),
        reconnect_ms: 0,
    });
    conn.outbound.close(
        CloseRequest {
            code: close::SERVICE_RESTART,
            reason: "resync".into(),
            send_frame: true,
        },
        true,
    );
}
