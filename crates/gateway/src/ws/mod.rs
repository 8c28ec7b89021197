//! WebSocket connections: the handshake (`handshake`), and per socket one reader task
//! (`reader`, runs the session) and one writer task (`writer`, drains the `outbound`
//! queue), wired together by `connection`; `lazy_buf` is the write buffer that idle sockets
//! do not pay for.

mod connection;
mod handshake;
mod lazy_buf;
pub mod outbound;
mod reader;
mod writer;

pub use handshake::{percent_decode, query_param, upgrade};
