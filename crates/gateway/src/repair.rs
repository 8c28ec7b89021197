//! Gap repair: when live delivery skipped offsets (the backplane lost messages), brought
//! a message of another epoch (the channel restarted), or the backplane link came back
//! after being down, the affected channels of a connection are held, re-read from
//! history after the last offset delivered, and released in order.
//!
//! Where history no longer has the gap (Redis restarted empty, a gap older than the
//! stream), the connection stays open: it gets a `resync` frame for that channel with
//! the position delivery goes on from, then what history still has after it, then live
//! messages (docs/protocol.md §5). Rooms without history are at-most-once: their gaps within
//! an epoch are accepted; a new epoch is a resync too.
//!
//! History can also have *diverged*: a failover lost a write that was already delivered,
//! and its offset went to another message. The repair reads from the offset delivered
//! last, so it sees the message history now holds there; when that is another one than
//! was delivered (or live delivery already saw one), the channel gets a new epoch — every
//! resume from the old one then answers `recovered:false`, on every node — and the
//! connection is resynced to its top. Never a silent gap.
//!
//! Only when history stays unreadable for the whole retry budget (about 30 s) is the
//! connection closed (`goaway` `resync`, 1012).

use std::sync::Arc;
use std::time::Duration;

use switchboard_proto::{close, Message, ServerFrame, StreamPosition};
use switchboard_router::{HistoryPolicies, HistoryRead, Router};
use tokio::sync::{mpsc, Semaphore};

use crate::conn::outbound::CloseRequest;
use crate::conn::{id_hash, ConnHandle, Held, Released};

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

/// What a repair does with the channel after reading history.
enum Step {
    /// History has everything after the held position: replay it, deliver live again.
    Release(Vec<Arc<Message>>),
    /// History lost what the connection depended on: resync it from `read`.
    Resync(HistoryRead),
    /// History diverged from what was delivered: a new epoch, then resync.
    Diverged,
}

async fn repair_one(router: &dyn Router, policies: &HistoryPolicies, r: Repair) {
    let Repair { conn, channel } = r;
    let mut delay = Duration::from_millis(100);
    for _ in 0..ATTEMPTS {
        let Some(held) = conn.held(&channel) else {
            return; // unsubscribed, closed or released meanwhile
        };
        let step = if held.diverged {
            Ok(Step::Diverged)
        } else {
            read_checked(router, &channel, &held)
                .await
                .map(|checked| match checked {
                    Checked::Diverged => Step::Diverged,
                    Checked::Read(read) if read.recovered => Step::Release(read.messages),
                    // Rooms without history are at-most-once: a gap in the same epoch
                    // is accepted.
                    Checked::Read(read)
                        if read.epoch == held.position.epoch
                            && !policies.for_channel(&channel).keeps_history() =>
                    {
                        Step::Release(Vec::new())
                    }
                    Checked::Read(read) => Step::Resync(read),
                })
        };
        let released = match step {
            Ok(Step::Release(replay)) => {
                tracing::debug!(conn = %conn.conn_id, replayed = replay.len(), "gap repaired");
                conn.release(&channel, &replay).await
            }
            Ok(Step::Resync(read)) => {
                let (position, replay) = resync_point(read, &held.position.epoch);
                tracing::info!(conn = %conn.conn_id, channel = %channel, ?position, "history lost a gap; resync");
                conn.resync(&channel, &position, &replay).await
            }
            Ok(Step::Diverged) => match diverged(router, &channel, &held.position.epoch).await {
                Ok(top) => conn.resync(&channel, &top, &[]).await,
                Err(e) => {
                    tracing::debug!(error = %e, "reading the new epoch failed; retrying");
                    Released::Epoch
                }
            },
            Err(e) => {
                tracing::debug!(error = %e, at = ?held.position, "repair read failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        match released {
            Released::Live => return,
            // Held again (a newer epoch or another divergence came meanwhile): once more.
            Released::Diverged | Released::Epoch => {}
        }
    }
    // History stayed unreadable for the whole budget (about 30 s): the documented limit
    // past which a node that cannot route closes the connection; its resume elsewhere
    // (or here, later) answers `recovered` true or false.
    tracing::warn!(conn = %conn.conn_id, "history unreadable for too long; asking the client to reconnect");
    conn.send(&ServerFrame::Goaway {
        reason: "resync".into(),
        reconnect_ms: 0,
    });
    conn.outbound
        .close(CloseRequest::new(close::SERVICE_RESTART, "resync"), true);
}

/// Where a resync puts the connection. In the epoch it was in (a gap older than what the
/// stream retains): just before the oldest message history still has, which is then
/// replayed — all of it comes after what was delivered. In a new epoch: at its top, like
/// a resume answered `recovered:false` — what the new epoch holds may be what the client
/// already has under the old one (a failover's new epoch keeps the stream), so the client
/// reloads it from its backend instead.
fn resync_point(read: HistoryRead, held_epoch: &str) -> (StreamPosition, Vec<Arc<Message>>) {
    match read.messages.first() {
        Some(first) if read.epoch == held_epoch && first.epoch == read.epoch => {
            let at = StreamPosition::new(read.epoch.clone(), first.offset - 1);
            (at, read.messages)
        }
        _ => (StreamPosition::new(read.epoch, read.offset), Vec::new()),
    }
}

/// After a divergence at `epoch`: starts a new epoch (unless another node did already)
/// and returns the channel's top in it. History is kept under the new epoch, and the
/// client reloads it: nothing is replayed.
async fn diverged(
    router: &dyn Router,
    channel: &str,
    epoch: &str,
) -> Result<StreamPosition, switchboard_router::RouterError> {
    if let Err(e) = router.reset_epoch(channel, epoch).await {
        tracing::warn!(error = %e, "could not start a new epoch after a divergence");
        return Err(e);
    }
    let top = router.read(channel, None, 0).await?;
    Ok(StreamPosition::new(top.epoch, top.offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_proto::Payload;

    fn msg(epoch: &str, offset: u64) -> Arc<Message> {
        Arc::new(Message {
            channel: "user:alice".into(),
            id: format!("m-{offset}"),
            from: None,
            epoch: epoch.into(),
            offset,
            ts: 0,
            data: Payload::Json(Arc::from("1")),
        })
    }

    fn read(epoch: &str, top: u64, offsets: &[u64]) -> HistoryRead {
        HistoryRead {
            epoch: epoch.into(),
            offset: top,
            messages: offsets.iter().map(|&o| msg(epoch, o)).collect(),
            recovered: false,
        }
    }

    #[test]
    fn a_gap_older_than_the_stream_replays_what_is_retained() {
        let (at, replay) = resync_point(read("e", 9, &[6, 7, 8, 9]), "e");
        assert_eq!(at, StreamPosition::new("e", 5));
        assert_eq!(replay.len(), 4);
    }

    /// A new epoch may hold what the client has under the old one (a failover's new
    /// epoch keeps the stream): the top, nothing replayed.
    #[test]
    fn a_new_epoch_resyncs_to_its_top() {
        let (at, replay) = resync_point(read("f", 4, &[1, 2, 3, 4]), "e");
        assert_eq!(at, StreamPosition::new("f", 4));
        assert!(replay.is_empty());
        let (at, _) = resync_point(read("f", 0, &[]), "e");
        assert_eq!(at, StreamPosition::new("f", 0));
    }
}
