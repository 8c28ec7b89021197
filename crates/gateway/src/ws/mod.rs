//! WebSocket connections, above `conn`: the upgrade (`handshake`, which registers the
//! connection before the 101: `registration`; a refusal is a `rejection`), then one task
//! per socket (`task`): it reads frames and runs the session (`reader`), and while it waits
//! it writes whatever backlog the socket did not take at once (`driver`). Frames reach the
//! socket through the connection's outbound queue (`conn::outbound`), written directly by
//! whichever task produces them. `echo` (development only, `--dev-echo`) is the same
//! connection with an echo in place of the session, for the Autobahn conformance check.

mod driver;
pub mod echo;
mod handshake;
mod reader;
mod registration;
mod rejection;
mod task;

pub use handshake::upgrade;
