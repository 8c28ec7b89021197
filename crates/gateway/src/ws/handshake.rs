//! The upgrade of `GET /ws`: every check happens before the 101 (docs/protocol.md §3, §4):
//! draining, capacity, Origin, subprotocol, token, `since` — and last the registration,
//! which the per-user connection cap may refuse (`registration`).

use std::sync::Arc;

use http::{header, HeaderMap, Request, Response, StatusCode};
use switchboard_proto::{Encoding, StreamPosition, SUBPROTOCOL_JSON, SUBPROTOCOL_PROTO};

use super::registration;
use super::rejection::{reject, rejected, Rejected};
use super::task::Accepted;
use crate::auth::{self, Claims};
use crate::http::query::query_param;
use crate::http::{error, Body};
use crate::metrics as m;
use crate::node::{Admission, Node};

/// What the checks before the registration found.
struct Checked {
    claims: Claims,
    encoding: Encoding,
    subprotocol: Option<&'static str>,
    since: Option<StreamPosition>,
    admission: Admission,
}

/// Answers `GET /ws`: either an error or the 101, with the connection spawned.
pub async fn upgrade<B>(node: &Arc<Node>, mut req: Request<B>) -> Response<Body> {
    let checked = match check(node, &req) {
        Ok(c) => c,
        Err(r) => return rejected(r),
    };
    // Async: with a JWKS, an unknown `kid` may wait for one refresh of the key set.
    let checked = match checked.verify(node).await {
        Ok(c) => c,
        Err(r) => return rejected(r),
    };
    // Refused here, there is no 101. (A request whose WebSocket headers `switch` then
    // finds wrong drops its registration, which unregisters.)
    let registration = match registration::register(node, &checked.claims.sub).await {
        Ok(r) => r,
        Err(r) => return rejected(r),
    };
    let accepted = Accepted {
        claims: checked.claims,
        encoding: checked.encoding,
        subprotocol: checked.subprotocol,
        since: checked.since,
        admission: checked.admission,
        registration,
    };
    let node2 = node.clone();
    switch(&mut req, accepted.subprotocol, |upgraded| {
        node.tracker
            .spawn(async move { super::task::run(node2, upgraded, accepted).await });
    })
}

/// The 101 (naming `subprotocol`), with the upgrade handed to `spawn`; or 400 when the
/// request's WebSocket headers are wrong.
pub(super) fn switch<B>(
    req: &mut Request<B>,
    subprotocol: Option<&'static str>,
    spawn: impl FnOnce(fastwebsockets::upgrade::UpgradeFut),
) -> Response<Body> {
    let (response, upgraded) = match fastwebsockets::upgrade::upgrade(req) {
        Ok(pair) => pair,
        Err(e) => {
            metrics::counter!(m::HANDSHAKE_REJECTED, "reason" => "bad_request").increment(1);
            return error(StatusCode::BAD_REQUEST, "bad_request", &e.to_string());
        }
    };
    let (mut parts, _) = response.into_parts();
    if let Some(p) = subprotocol {
        parts.headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            header::HeaderValue::from_static(p),
        );
    }
    spawn(upgraded);
    Response::from_parts(parts, Body::default())
}

/// The checks of every upgrade, `/ws` and the development echo alike: a WebSocket
/// upgrade, a node that is not draining, an allowed `Origin`.
pub(super) fn check_upgrade<B>(node: &Node, req: &Request<B>) -> Result<(), Rejected> {
    if !fastwebsockets::upgrade::is_upgrade_request(req) {
        return Err(reject(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            "this endpoint only accepts WebSocket upgrades",
        ));
    }
    if node.is_draining() {
        return Err(reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "this node is draining; connect to another",
        ));
    }
    check_origin(&node.config.allowed_origins, req.headers())
}

/// A connection slot under `--max-connections`.
pub(super) fn admit(node: &Arc<Node>) -> Result<Admission, Rejected> {
    node.admit().ok_or_else(|| {
        reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "over_capacity",
            "this node is at its connection limit",
        )
    })
}

fn check<B>(node: &Arc<Node>, req: &Request<B>) -> Result<Unverified, Rejected> {
    check_upgrade(node, req)?;
    let headers = req.headers();
    let (encoding, subprotocol) = negotiate(headers)?;
    let query = req.uri().query();
    let since = match query_param(query, "since") {
        None => None,
        Some(s) => Some(StreamPosition::parse(&s).ok_or_else(|| {
            reject(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "`since` must be <epoch>:<offset>",
            )
        })?),
    };
    let admission = admit(node)?;
    let token = auth::token_from_request(headers, query).ok_or_else(|| {
        reject(
            StatusCode::UNAUTHORIZED,
            "missing_token",
            "pass a token as `Authorization: Bearer` or `?token=`",
        )
    })?;
    Ok(Unverified {
        token,
        encoding,
        subprotocol,
        since,
        admission,
    })
}

/// A request that passed every check but the token's.
struct Unverified {
    token: String,
    encoding: Encoding,
    subprotocol: Option<&'static str>,
    since: Option<StreamPosition>,
    admission: Admission,
}

impl Unverified {
    async fn verify(self, node: &Node) -> Result<Checked, Rejected> {
        let claims = node
            .config
            .auth
            .authenticate(&self.token)
            .await
            .map_err(|e| reject(StatusCode::UNAUTHORIZED, e.code(), e.to_string()))?;
        Ok(Checked {
            claims,
            encoding: self.encoding,
            subprotocol: self.subprotocol,
            since: self.since,
            admission: self.admission,
        })
    }
}

/// Picks the first subprotocol we speak, in the client's order. None offered: JSON.
fn negotiate(headers: &HeaderMap) -> Result<(Encoding, Option<&'static str>), Rejected> {
    let mut offered = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .peekable();
    if offered.peek().is_none() {
        return Ok((Encoding::Json, None));
    }
    for p in offered {
        if p == SUBPROTOCOL_JSON {
            return Ok((Encoding::Json, Some(SUBPROTOCOL_JSON)));
        }
        if p == SUBPROTOCOL_PROTO {
            return Ok((Encoding::Proto, Some(SUBPROTOCOL_PROTO)));
        }
    }
    Err(reject(
        StatusCode::BAD_REQUEST,
        "unsupported_subprotocol",
        format!("supported subprotocols: {SUBPROTOCOL_JSON}, {SUBPROTOCOL_PROTO}"),
    ))
}

/// docs/protocol.md §1: with an allow-list, an `Origin` must be listed (or the list is `*`);
/// without one, an `Origin` must be the request's own host. No `Origin`: allowed.
fn check_origin(allowed: &Option<Vec<String>>, headers: &HeaderMap) -> Result<(), Rejected> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let forbidden = || {
        reject(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "this Origin may not connect",
        )
    };
    let origin = origin.to_str().map_err(|_| forbidden())?.trim();
    let ok = match allowed {
        Some(list) => list
            .iter()
            .any(|a| a == "*" || a.eq_ignore_ascii_case(origin)),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            same_origin(origin, host)
        }
    };
    if ok {
        Ok(())
    } else {
        Err(forbidden())
    }
}

fn same_origin(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return false,
    };
    let strip = |a: &str| -> String {
        let a = a.trim_end_matches('/').to_ascii_lowercase();
        a.strip_suffix(default_port).map(str::to_owned).unwrap_or(a)
    };
    !host.is_empty() && strip(authority) == strip(host)
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_rules() {
        assert!(same_origin("http://localhost:8080", "localhost:8080"));
        assert!(same_origin("https://Example.com", "example.com:443"));
        assert!(same_origin("http://example.com:80", "example.com"));
        assert!(!same_origin("http://evil.com", "example.com"));
        assert!(!same_origin("http://localhost:8081", "localhost:8080"));
        assert!(!same_origin("null", "localhost"));
        assert!(!same_origin("http://x", ""));
    }

    #[test]
    fn subprotocols() {
        let mut h = HeaderMap::new();
        assert_eq!(negotiate(&h).unwrap().0, Encoding::Json);
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            "x, switchboard.v1.proto".parse().unwrap(),
        );
        assert_eq!(
            negotiate(&h).unwrap(),
            (Encoding::Proto, Some(SUBPROTOCOL_PROTO))
        );
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, "chat".parse().unwrap());
        assert_eq!(negotiate(&h).unwrap_err().code, "unsupported_subprotocol");
    }
}
