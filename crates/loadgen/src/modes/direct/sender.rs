//! A ws sender of `direct`: its reader (replies are acks; unanswered keyed publishes are
//! sent again first after a reconnect) and its schedule loop.

use super::*;

/// A ws sender's reader: replies are acks (id = sequence).
pub(super) struct Sender {
    pub(super) g: u64,
    pub(super) st: Arc<DirectState>,
    pub(super) goaway: Option<u64>,
}

impl Peer for Sender {
    fn on_text(&mut self, text: &[u8], _: u64) -> Control {
        match switchboard::classify(text) {
            Incoming::Reply { id, ok: true } => self.st.ack(self.g, id),
            Incoming::Reply { id, ok: false } => self.st.refuse(self.g, id),
            Incoming::Goaway { reconnect_ms } => self.goaway = reconnect_ms,
            _ => {}
        }
        Control::Continue
    }
    fn take_goaway(&mut self) -> Option<u64> {
        self.goaway.take()
    }
    fn resend(&mut self) -> Vec<String> {
        self.st.unanswered(self.g)
    }
}

/// One schedule loop per sender; returns when the last message was sent.
pub(super) async fn send_ws(
    ctx: &Arc<Ctx>,
    st: &Arc<DirectState>,
    senders: Vec<(u64, Writer, watch::Receiver<u64>)>,
    t0: u64,
    a: &DirectArgs,
) -> u64 {
    let mut set = JoinSet::new();
    for (g, writer, gen) in senders {
        let (ctx, st, a) = (ctx.clone(), st.clone(), a.clone());
        set.spawn(async move { sender_loop(&ctx, &st, g, writer, gen, t0, &a).await });
    }
    let mut last = 0;
    while let Some(r) = set.join_next().await {
        last = last.max(r.unwrap_or(0));
    }
    last
}

async fn sender_loop(
    ctx: &Ctx,
    st: &DirectState,
    g: u64,
    writer: Writer,
    mut gen: watch::Receiver<u64>,
    t0: u64,
    a: &DirectArgs,
) -> u64 {
    let channel = st.channel(g);
    let mut last = 0;
    'messages: for q in 0..st.count(g) {
        let at = st.at(t0, a.rate, g, q);
        if !ctx.sleep_until(at).await {
            break;
        }
        ctx.stats.send_started(at);
        let payload = payload::build(g, q, at, a.payload_bytes);
        let body = if a.reconnect {
            switchboard::keyed_publish_frame(q, &channel, &payload)
        } else {
            switchboard::publish_frame(q, &channel, &payload)
        };
        loop {
            gen.borrow_and_update();
            if a.reconnect {
                // Before the write: its answer may come before `send` returns.
                st.written(g, q, &body);
            }
            match conn::send(&writer, body.as_bytes().to_vec()).await {
                Ok(()) => {
                    ctx.stats.sent.fetch_add(1, Relaxed);
                    last = now_us();
                    break;
                }
                Err(e) => {
                    if matches!(e, SendError::Disconnected) {
                        // Nothing was written: this loop sends it once connected again (a
                        // write that broke half-way stays unanswered and goes first, keyed).
                        st.unwritten(g, q);
                    }
                    // Wait for the session's next connection (it drops the channel when it
                    // ends for good).
                    tokio::select! {
                        r = gen.changed() => if r.is_err() { break 'messages },
                        _ = ctx.stop.cancelled() => break 'messages,
                    }
                }
            }
        }
    }
    last
}
