//! The Switchboard wire schema, shared by the router and the gateway. No tokio, no Redis.
//!
//! # Layout
//! - [`pb`]: prost types generated from `proto/switchboard/v1/*.proto`.
//! - [`model`]: domain values: [`Message`], [`Payload`], [`StreamPosition`].
//! - [`frames`]: decoded client frames and the server frames the gateway sends.
//! - [`json`]: the `switchboard.v1.json` codec (docs/protocol.md §4).
//! - [`binary`]: the `switchboard.v1.proto` codec and conversions to/from [`pb`].
//! - [`channel`]: channel-name validation and authorization patterns (docs/protocol.md §2).
//! - [`codes`]: error codes and WebSocket close codes (docs/protocol.md §4, §7).
//! - [`clock`]: wall time since the Unix epoch and the process's monotonic clock.

#![warn(unreachable_pub)]

pub mod binary;
pub mod channel;
pub mod clock;
pub mod codes;
pub mod frames;
pub mod json;
pub mod model;

/// Generated prost types (package `switchboard.v1`).
#[allow(clippy::all, missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/switchboard.v1.rs"));
}

pub use codes::{close, ErrorCode};
pub use frames::{ClientFrame, DecodeError, Reply, ServerFrame, Welcome};
pub use model::{Message, Payload, StreamPosition};

/// The subprotocol names a client may offer in `Sec-WebSocket-Protocol`.
pub const SUBPROTOCOL_JSON: &str = "switchboard.v1.json";
/// Binary frames, one protobuf `Frame` each.
pub const SUBPROTOCOL_PROTO: &str = "switchboard.v1.proto";

/// The wire encoding of one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    Json,
    Proto,
}

impl Encoding {
    pub fn subprotocol(self) -> &'static str {
        match self {
            Encoding::Json => SUBPROTOCOL_JSON,
            Encoding::Proto => SUBPROTOCOL_PROTO,
        }
    }

    /// Decodes one client frame in this encoding.
    pub fn decode(self, bytes: &[u8]) -> Result<ClientFrame, DecodeError> {
        match self {
            Encoding::Json => json::decode_client(bytes),
            Encoding::Proto => binary::decode_client(bytes),
        }
    }

    /// Encodes one server frame in this encoding.
    pub fn encode(self, frame: &ServerFrame) -> bytes::Bytes {
        match self {
            Encoding::Json => json::encode_server(frame),
            Encoding::Proto => binary::encode_server(frame),
        }
    }
}
