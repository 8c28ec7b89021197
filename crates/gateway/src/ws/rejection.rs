//! A refused upgrade: the status, `error` code and message answered instead of the 101.

use http::{Response, StatusCode};

use crate::http::{error, Body};
use crate::metrics as m;

/// Why an upgrade was refused: status, `error` code and message.
#[derive(Debug)]
pub struct Rejected {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

pub(super) fn reject(
    status: StatusCode,
    code: &'static str,
    message: impl Into<String>,
) -> Rejected {
    Rejected {
        status,
        code,
        message: message.into(),
    }
}

/// Counts and answers a refused upgrade.
pub(super) fn rejected(r: Rejected) -> Response<Body> {
    metrics::counter!(m::HANDSHAKE_REJECTED, "reason" => r.code).increment(1);
    tracing::debug!(reason = r.code, "upgrade rejected");
    error(r.status, r.code, &r.message)
}
