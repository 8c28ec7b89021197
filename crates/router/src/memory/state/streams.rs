//! The channel-stream half of the shared [`State`]: publishing (numbering, storing,
//! routing), positions, history reads, epoch resets and the inbox acks.

use super::*;

impl State {
    fn stream(&mut self, channel: &str) -> &mut Stream {
        let policies = &self.policies;
        self.streams
            .entry(channel.to_owned())
            .or_insert_with(|| Stream {
                epoch: random_token(8),
                top: 0,
                policy: policies.for_channel(channel),
                messages: VecDeque::new(),
            })
    }

    pub(in crate::memory) fn publish(
        &mut self,
        request: PublishRequest,
        now: Instant,
    ) -> PublishOutcome {
        if let Some(idem) = &request.idempotency {
            if let Some(first) = self.idempotency.get(&request.channel, &idem.key, now) {
                return PublishOutcome {
                    message: Arc::new(Message {
                        channel: request.channel,
                        id: String::new(),
                        from: request.from,
                        epoch: first.position.epoch,
                        offset: first.position.offset,
                        ts: now_ms(),
                        data: request.data,
                    }),
                    online: first.online,
                    nodes: first.nodes,
                    duplicate: true,
                };
            }
        }
        let user = user_of(&request.channel);
        let (sinks, online) = match user {
            Some(user) => {
                let sinks = self.user_sinks(user, now);
                let online = !self.connections(user, now).is_empty();
                (sinks, online)
            }
            None => {
                let sinks = self.room_sinks(&request.channel, now);
                let online = !sinks.is_empty();
                (sinks, online)
            }
        };
        self.next_id += 1;
        let id = format!("m-{}{}", self.id_tag, self.next_id);
        let request_idempotency = request.idempotency;
        let stream = self.stream(&request.channel);
        stream.top += 1;
        let message = Arc::new(Message {
            channel: request.channel,
            id,
            from: request.from,
            epoch: stream.epoch.clone(),
            offset: stream.top,
            ts: now_ms(),
            data: request.data,
        });
        if stream.policy.keeps_history() {
            stream.messages.push_back(Stored {
                message: Arc::clone(&message),
                at: now,
            });
            stream.trim(now);
        }
        for sink in &sinks {
            sink.deliver(Arc::clone(&message));
        }
        let nodes = u32::try_from(sinks.len()).unwrap_or(u32::MAX);
        if let Some(idem) = &request_idempotency {
            let first = First {
                position: message.position(),
                online,
                nodes,
            };
            self.idempotency
                .insert(&message.channel, &idem.key, first, now + idem.window);
        }
        PublishOutcome {
            message,
            online,
            nodes,
            duplicate: false,
        }
    }

    pub(in crate::memory) fn position(&mut self, channel: &str) -> StreamPosition {
        let stream = self.stream(channel);
        StreamPosition::new(stream.epoch.clone(), stream.top)
    }

    pub(in crate::memory) fn read(
        &mut self,
        channel: &str,
        since: Option<&StreamPosition>,
        limit: usize,
        now: Instant,
    ) -> HistoryRead {
        let stream = self.stream(channel);
        stream.trim(now);
        let top = stream.top;
        let oldest = stream
            .messages
            .front()
            .map_or(top.saturating_add(1), |m| m.message.offset);
        // Offsets after which messages are returned, and whether nothing is missing.
        let (after, recovered) = match since {
            None => (0, true),
            Some(s) if s.epoch != stream.epoch || s.offset > top => (0, false),
            Some(s) => (s.offset, s.offset.saturating_add(1) >= oldest),
        };
        let messages = stream
            .messages
            .iter()
            .filter(|m| m.message.offset > after)
            .take(limit)
            .map(|m| Arc::clone(&m.message))
            .collect();
        HistoryRead {
            epoch: stream.epoch.clone(),
            offset: top,
            messages,
            recovered,
        }
    }

    /// A new epoch for `channel` if it is still in `epoch`; the retained messages are
    /// the new epoch's (as on Redis, where entries do not carry their epoch).
    pub(in crate::memory) fn reset_epoch(&mut self, channel: &str, epoch: &str) {
        let stream = self.stream(channel);
        if stream.epoch != epoch {
            return;
        }
        stream.epoch = random_token(8);
        let new = stream.epoch.clone();
        for m in stream.messages.iter_mut() {
            let mut moved = (*m.message).clone();
            moved.epoch.clone_from(&new);
            m.message = Arc::new(moved);
        }
    }

    pub(in crate::memory) fn ack(&mut self, user: &str, position: &StreamPosition) {
        match self.acks.get_mut(user) {
            Some(acked) if acked.epoch == position.epoch => {
                acked.offset = acked.offset.max(position.offset);
            }
            _ => {
                self.acks.insert(user.to_owned(), position.clone());
            }
        }
    }

    pub(in crate::memory) fn acked(&self, user: &str) -> Option<StreamPosition> {
        self.acks.get(user).cloned()
    }
}
