//! WebSocket connections: the handshake (`handshake`, which registers the connection
//! before the 101: `registration`), then one task per socket
//! (`connection`): it reads frames and runs the session (`reader`), and while it waits it
//! writes whatever backlog the socket did not take at once (`driver`). Frames reach the
//! socket through the `outbound` queue, written directly by whichever task produces them;
//! `socket` is the raw TCP stream taken back from hyper. Heartbeats, idle closes and token
//! expiry of all connections are one task per node (`sweeper`). `echo` (development only,
//! `--dev-echo`) is the same connection with an echo in place of the session, for the
//! Autobahn conformance check.

mod driver;
pub mod echo;
mod handshake;
mod reader;
mod registration;
mod rejection;
mod task;

pub use handshake::upgrade;
