//! One connection below its task: what the rest of the node holds of it (`handle`), the
//! frames on their way to it (`outbound`) and the socket they are written to (`socket`).
//! Nothing here knows the node: the hub, the session and the sweeper drive a connection
//! through its [`ConnHandle`].

mod cursor;
mod delivery;
mod handle;
pub mod outbound;
pub mod socket;

pub use cursor::{Held, Released};
pub use delivery::{id_hash, Delivery};
pub use handle::ConnHandle;
