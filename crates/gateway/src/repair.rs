//! Gap repair: when live delivery skipped offsets (the backplane lost messages) or the
//! backplane link came back after being down, the affected channels of a connection are
//! held, re-read from history after the last offset delivered, and released in order.
//! Where history no longer has the gap, the client is told to resync (`goaway` + 1012;
//! its resume with `since` then answers `recovered:false`). Rooms without history are
//! at-most-once: their gaps are accepted.

use std::sync::Arc;
use std::time::Duration;

use switchboard_proto::{close, ServerFrame};
use switchboard_router::{HistoryPolicies, Router};
use tokio::sync::{mpsc, Semaphore};

use crate::conn::ConnHandle;
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
    for _ in 0..ATTEMPTS {
        let Some(at) = conn.held_position(&channel) else {
            return; // unsubscribed or closed meanwhile
        };
        match router.read(&channel, Some(&at), REPAIR_LIMIT).await {
            Ok(read) if read.recovered => {
                tracing::debug!(conn = %conn.conn_id, replayed = read.messages.len(), "gap repaired");
                conn.release(&channel, &read.messages).await;
                return;
            }
            Ok(_) if !policies.for_channel(&channel).keeps_history() => {
                conn.release(&channel, &[]).await;
                return;
            }
            Ok(_) => break,
            Err(e) => {
                tracing::debug!(error = %e, "repair read failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
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
