//! Property tests of every decoder in this crate that reads outside input (issue 13, item
//! 5): whatever a client sends, the answer is a frame or a documented error, never a panic.
//!
//! # Layout
//! - `gen`: strategies: arbitrary JSON values, valid client frames (a model of them, with
//!   encoders in both wire formats), messages.
//! - `json_frames`: the `switchboard.v1.json` client decoder: arbitrary bytes and values,
//!   mutated valid frames, round trips.
//! - `proto_frames`: the `switchboard.v1.proto` client decoder: arbitrary bytes, truncated
//!   and corrupted frames, invalid UTF-8, round trips.
//! - `server_frames`: the server-frame encoders produce what a client can decode.
//! - `channel`: channel names and user ids.
//!
//! Case counts are fixed per test (`PROPTEST_CASES` overrides none of them) so that the
//! whole set runs in a few seconds.

// Protobuf messages are built with `..Default::default()` so these tests keep compiling when
// the schema gains fields (added fields are optional by the contract).
#![allow(clippy::needless_update)]

mod channel;
mod gen;
mod json_frames;
mod proto_frames;
mod server_frames;
