//! Running commands on the [`Client`]: each goes to the primary of its slot on its lane,
//! follows MOVED/ASK, waits out TRYAGAIN/CLUSTERDOWN/LOADING, reloads scripts on
//! NOSCRIPT; replicated writes (`WAIT`) and pipelines of many commands.

use super::*;

impl Client {
    /// Runs one command on the primary of its slot, following redirections; an error
    /// reply is `Err(Error::Redis)`.
    pub async fn call(&self, cmd: &Cmd) -> Result<Value, Error> {
        let deadline = Instant::now() + self.inner.config.timeout;
        let mut target: Option<(String, bool)> = None;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (addr, asking) = match target.take() {
                Some(t) => t,
                None => (self.route(cmd)?, false),
            };
            // Connecting (or waiting for another caller's connect) counts against this
            // command's timeout too.
            let conn = match tokio::time::timeout_at(deadline, self.conn_on(&addr, cmd.lane)).await
            {
                Ok(c) => c,
                Err(_) => Err(Error::Io(format!("connecting to {addr} timed out"))),
            };
            let result = match conn {
                Ok(conn) if asking => conn.call_asking(cmd).await,
                Ok(conn) => conn.call(cmd).await,
                Err(e) => {
                    self.schedule_refresh();
                    Err(Error::Unavailable(e.to_string()))
                }
            };
            let next = match result {
                Ok(Value::Error(e)) => self.on_error_reply(cmd, &addr, &e).await,
                Ok(v) => return Ok(v),
                Err(e) => {
                    self.schedule_refresh();
                    if (cmd.idempotent || e.not_sent()) && Instant::now() < deadline {
                        Next::RetryAfter(connect::backoff(attempt))
                    } else {
                        return Err(e);
                    }
                }
            };
            match next {
                Next::Fail(e) => return Err(e),
                Next::Redirect(addr, asking) => target = Some((addr, asking)),
                Next::RetryAfter(wait) => {
                    if Instant::now() + wait >= deadline {
                        return Err(Error::Unavailable(format!(
                            "Redis did not serve slot {:?} in time",
                            cmd.slot
                        )));
                    }
                    tokio::time::sleep(wait).await;
                }
            }
            if attempt >= MAX_REDIRECTS {
                return Err(Error::Unavailable("too many redirections".into()));
            }
        }
    }

    /// Runs a write on its primary's replicated lane and waits for `acks` replicas to have
    /// it (one `WAIT` per write batch of the connection, shared). Returns the write's reply
    /// (an error reply is `Err(Error::Redis)`) and how many replicas confirmed (`None`:
    /// unknown, e.g. the `WAIT` failed).
    pub async fn call_replicated(
        &self,
        cmd: &Cmd,
        acks: u32,
        wait_ms: u64,
    ) -> (Result<Value, Error>, Option<i64>) {
        let Ok(addr) = self.route(cmd) else {
            return (self.call(cmd).await, None);
        };
        let Ok(Ok(conn)) = tokio::time::timeout(
            self.inner.config.timeout,
            self.conn_on(&addr, Lane::Replicated),
        )
        .await
        else {
            return (self.call(cmd).await, None);
        };
        let (written, replicated) = conn.call_replicated(cmd, acks, wait_ms).await;
        match written {
            Ok(Value::Error(e)) if needs_retry(&e) => {
                // Redirected (a slot moving) or refused for a moment: the plain path,
                // then a WAIT where it landed.
                let written = self.call(cmd).await;
                let wait = Cmd::new("WAIT").int(acks).int(wait_ms).on(Lane::Replicated);
                let wait = match cmd.slot {
                    Some(slot) => wait.in_slot(slot),
                    None => wait,
                };
                let replicated = self.call(&wait).await.ok().and_then(|v| v.as_int());
                (written, replicated)
            }
            Ok(Value::Error(e)) => (Err(Error::Redis(text(&e))), None),
            other => (other, replicated.ok().and_then(|v| v.as_int())),
        }
    }

    /// Runs commands as pipelines (one per primary), replies in order. Items that were
    /// redirected or refused for a moment are retried one by one.
    pub async fn call_many(&self, cmds: &[Cmd]) -> Vec<Result<Value, Error>> {
        let mut groups: HashMap<(String, Lane), Vec<usize>> = HashMap::new();
        let mut out: Vec<Option<Result<Value, Error>>> = (0..cmds.len()).map(|_| None).collect();
        for (i, cmd) in cmds.iter().enumerate() {
            match self.route(cmd) {
                Ok(addr) => groups.entry((addr, cmd.lane)).or_default().push(i),
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        let deadline = Instant::now() + self.inner.config.timeout;
        let sends = groups.into_iter().map(|((addr, lane), idx)| async move {
            let conn = match tokio::time::timeout_at(deadline, self.conn_on(&addr, lane)).await {
                Ok(c) => c,
                Err(_) => Err(Error::Io(format!("connecting to {addr} timed out"))),
            };
            let results = match conn {
                Ok(conn) => {
                    let group: Vec<&Cmd> = idx.iter().map(|&i| &cmds[i]).collect();
                    conn.call_many(&group).await
                }
                Err(e) => {
                    self.schedule_refresh();
                    idx.iter()
                        .map(|_| Err(Error::Unavailable(e.to_string())))
                        .collect()
                }
            };
            idx.into_iter().zip(results).collect::<Vec<_>>()
        });
        let mut retry = Vec::new();
        for group in futures_util::future::join_all(sends).await {
            for (i, r) in group {
                match r {
                    Ok(Value::Error(e)) if needs_retry(&e) => retry.push(i),
                    Ok(Value::Error(e)) => out[i] = Some(Err(Error::Redis(text(&e)))),
                    Err(e) if e.not_sent() => retry.push(i),
                    r => out[i] = Some(r),
                }
            }
        }
        // One at a time, in order: commands of one slot keep their order (a channel's
        // messages are numbered in the order given).
        for i in retry {
            out[i] = Some(self.call(&cmds[i]).await);
        }
        out.into_iter()
            .map(|r| r.unwrap_or(Err(Error::Closed)))
            .collect()
    }

    /// The primary a command goes to.
    fn route(&self, cmd: &Cmd) -> Result<String, Error> {
        let t = self.topology();
        let shard = match cmd.slot {
            Some(slot) => t.shard_of(slot),
            None => t.shards.iter().position(|s| s.serving),
        };
        match shard {
            Some(i) => Ok(t.shards[i].primary.clone()),
            None => {
                self.schedule_refresh();
                Err(Error::Unavailable(format!(
                    "no Redis primary serves slot {} right now",
                    cmd.slot.unwrap_or(0)
                )))
            }
        }
    }

    async fn on_error_reply(&self, cmd: &Cmd, addr: &str, e: &[u8]) -> Next {
        let msg = text(e);
        let mut words = msg.split_whitespace();
        match words.next().unwrap_or("") {
            "MOVED" => {
                let slot = words.next().and_then(|s| s.parse::<u16>().ok());
                let to = words.next().map(str::to_owned);
                match (slot, to) {
                    (Some(slot), Some(to)) => {
                        let moved = self.topology().with_moved(slot, &to);
                        self.set_topology(moved);
                        self.schedule_refresh();
                        Next::Redirect(to, false)
                    }
                    _ => Next::Fail(Error::Protocol(format!("bad redirection: {msg}"))),
                }
            }
            "ASK" => match words.nth(1) {
                Some(to) => Next::Redirect(to.to_owned(), true),
                None => Next::Fail(Error::Protocol(format!("bad redirection: {msg}"))),
            },
            "TRYAGAIN" | "CLUSTERDOWN" | "LOADING" | "MASTERDOWN" => {
                self.schedule_refresh();
                Next::RetryAfter(Duration::from_millis(20))
            }
            // A write reached a replica: the primary changed (Sentinel failover).
            "READONLY" => {
                if let Some(c) = self.live_conn(addr, cmd.lane) {
                    c.close(Error::Io("the server became a replica".into()));
                }
                self.schedule_refresh();
                Next::RetryAfter(Duration::from_millis(50))
            }
            "NOSCRIPT" => match &cmd.script {
                Some(body) => {
                    let load = Cmd::new("SCRIPT").arg("LOAD").arg(body.as_bytes());
                    match self.conn_on(addr, cmd.lane).await {
                        Ok(c) => match c.call(&load).await {
                            Ok(Value::Error(e)) => Next::Fail(Error::Redis(text(&e))),
                            Ok(_) => Next::Redirect(addr.to_owned(), false),
                            Err(e) => Next::Fail(e),
                        },
                        Err(e) => Next::Fail(e),
                    }
                }
                None => Next::Fail(Error::Redis(msg)),
            },
            _ => Next::Fail(Error::Redis(msg)),
        }
    }
}

enum Next {
    Fail(Error),
    Redirect(String, bool),
    RetryAfter(Duration),
}

/// Error replies after which the command is sent again (it did not run).
fn needs_retry(e: &[u8]) -> bool {
    [
        "MOVED ",
        "ASK ",
        "TRYAGAIN",
        "CLUSTERDOWN",
        "LOADING",
        "NOSCRIPT",
        "READONLY",
        "MASTERDOWN",
    ]
    .iter()
    .any(|p| e.starts_with(p.as_bytes()))
}
