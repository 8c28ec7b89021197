//! A message on its way to many connections, and the hash a cursor remembers of it.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use switchboard_proto::{Encoding, Message, ServerFrame};

/// A message on its way to many connections, encoded at most once per encoding (live
/// delivery, and again when a held channel releases it).
pub struct Delivery {
    pub message: Arc<Message>,
    /// [`id_hash`] of the message id, computed once for every recipient.
    pub(super) id_hash: u64,
    json: OnceLock<Bytes>,
    proto: OnceLock<Bytes>,
}

/// A message id as a non-zero 64-bit hash (FNV-1a): what a cursor remembers of the last
/// message it delivered, to tell a duplicate from another message at the same offset.
pub fn id_hash(id: &str) -> u64 {
    let h = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    h.max(1)
}

impl Delivery {
    pub fn new(message: Arc<Message>) -> Arc<Delivery> {
        Arc::new(Delivery {
            id_hash: id_hash(&message.id),
            message,
            json: OnceLock::new(),
            proto: OnceLock::new(),
        })
    }

    pub fn encoded(&self, encoding: Encoding) -> Bytes {
        let cell = match encoding {
            Encoding::Json => &self.json,
            Encoding::Proto => &self.proto,
        };
        cell.get_or_init(|| encoding.encode(&ServerFrame::Message(self.message.clone())))
            .clone()
    }
}
