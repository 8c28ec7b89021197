//! One channel's stream in memory: its epoch, newest offset and retained messages.

use std::collections::VecDeque;
use std::sync::Arc;

use switchboard_proto::Message;
use tokio::time::Instant;

use crate::HistoryPolicy;

pub(super) struct Stored {
    pub(super) message: Arc<Message>,
    /// When it was appended (monotonic, so age trimming follows `tokio::time::pause`).
    pub(super) at: Instant,
}

/// One channel's stream: epoch, newest offset and the retained messages.
pub(super) struct Stream {
    pub(super) epoch: String,
    pub(super) top: u64,
    pub(super) policy: HistoryPolicy,
    pub(super) messages: VecDeque<Stored>,
}

impl Stream {
    /// Drops what the policy no longer keeps (by count, then by age).
    pub(super) fn trim(&mut self, now: Instant) {
        if !self.policy.keeps_history() {
            self.messages.clear();
            return;
        }
        while self.messages.len() > self.policy.max_len {
            self.messages.pop_front();
        }
        while self
            .messages
            .front()
            .is_some_and(|m| now.saturating_duration_since(m.at) > self.policy.max_age)
        {
            self.messages.pop_front();
        }
    }
}
