//! The browser side of the public port, served only with `--demo` (off by default): the
//! JavaScript client (`/switchboard.js` and its `.d.ts`), the demo app (`/`, `/chat.html`,
//! `/dashboard.html` and their CSS and scripts), and three **development-only** JSON
//! endpoints the demo pages call:
//!
//! - `GET /demo/token?user=<id>` → `{"token":"<jwt>"}`: mints a one-hour token for *any*
//!   user id it is given (subscribe `room:*`, publish `room:*` and `user:*`) with the node's
//!   HMAC secret — there is no login, which is why it exists only with `--demo`.
//! - `GET /demo/history?channel=<room>&limit=<n>` → `{"channel","epoch","offset",
//!   "recovered","messages":[message frames]}`: the newest `n` (default 50, at most 200)
//!   retained messages of a channel, oldest first — how the chat shows the room's history
//!   after a reload.
//! - `GET /demo/presence?channel=<room>` → `{"channel","users":[…],"connections"}`: who is
//!   in a room now (the live `presence` frames only tell changes).
//!
//! The last two take the page's token as `Authorization: Bearer <jwt>` and answer only for
//! channels its `channels` claim may subscribe to.
//!
//! Every file is embedded in the binary (`include_bytes!`), so the demo needs nothing on
//! disk. Without `--demo` none of these paths exist: the public port answers them with the
//! same 404 JSON as any other unknown path.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use serde_json::{json, value::RawValue};
use switchboard_proto::channel::{is_valid_user_id, Channel};
use switchboard_proto::{json as pjson, StreamPosition};

use crate::http::query::query_param;
use crate::http::{error, json_value, Body};
use crate::node::Node;

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
/// TypeScript declarations: shown as text by browsers, used by editors.
const TS: &str = "text/plain; charset=utf-8";

/// One embedded file: public path, content type, bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $content_type:expr, $file:literal) => {
        Asset {
            path: $path,
            content_type: $content_type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $file)),
        }
    };
}

/// Every file the public port serves with `--demo`.
const ASSETS: &[Asset] = &[
    asset!("/", HTML, "demo/index.html"),
    asset!("/index.html", HTML, "demo/index.html"),
    asset!("/chat.html", HTML, "demo/chat.html"),
    asset!("/dashboard.html", HTML, "demo/dashboard.html"),
    asset!("/app.css", CSS, "demo/app.css"),
    asset!("/chat.js", JS, "demo/chat.js"),
    asset!("/dashboard.js", JS, "demo/dashboard.js"),
    asset!("/switchboard.js", JS, "switchboard.js"),
    asset!("/switchboard.d.ts", TS, "switchboard.d.ts"),
];

/// The development endpoints.
const TOKEN: &str = "/demo/token";
const HISTORY: &str = "/demo/history";
const PRESENCE: &str = "/demo/presence";

/// What `/demo/token` grants.
const DEMO_CHANNELS: &[&str] = &["room:*"];
const DEMO_PUBLISH: &[&str] = &["room:*", "user:*"];
const DEMO_TTL: Duration = Duration::from_secs(3600);

/// Default and largest `limit` of `/demo/history`.
const HISTORY_DEFAULT: usize = 50;
const HISTORY_MAX: usize = 200;

/// Whether `path` is served by this module (only asked when `--demo` is on).
pub fn serves(path: &str) -> bool {
    matches!(path, TOKEN | HISTORY | PRESENCE) || ASSETS.iter().any(|a| a.path == path)
}

/// Answers a request for one of the paths of [`serves`].
pub async fn handle<B>(node: &Node, req: Request<B>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut res = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use GET",
        );
        res.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return res;
    }
    let query = req.uri().query();
    let mut res = match req.uri().path() {
        TOKEN => token(node, query),
        HISTORY => match authorize(node, bearer(&req), query).await {
            Ok(channel) => history(node, &channel, query).await,
            Err(refused) => refused.into_response(),
        },
        PRESENCE => match authorize(node, bearer(&req), query).await {
            Ok(channel) => presence(node, &channel).await,
            Err(refused) => refused.into_response(),
        },
        path => match ASSETS.iter().find(|a| a.path == path) {
            Some(asset) => file(asset),
            None => error(StatusCode::NOT_FOUND, "not_found", "no such file"),
        },
    };
    let headers = res.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    res
}

fn file(asset: &Asset) -> Response<Body> {
    let mut res = Response::new(Body::new(Bytes::from_static(asset.body)));
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

/// `GET /demo/token?user=<id>`: a development token for anyone (see the module docs).
fn token(node: &Node, query: Option<&str>) -> Response<Body> {
    if node.config.jwt_secret.is_none() {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            "this node verifies tokens with --jwt-public-key and cannot sign demo tokens; \
             run the demo with --jwt-secret",
        );
    }
    let user = query_param(query, "user").unwrap_or_default();
    if !is_valid_user_id(&user) {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "pass ?user=<id>: 1 to 251 characters of [A-Za-z0-9_.:@=-]",
        );
    }
    let strings = |s: &[&str]| s.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>();
    match crate::token::mint(
        &node.config,
        &user,
        &strings(DEMO_CHANNELS),
        &strings(DEMO_PUBLISH),
        None,
        DEMO_TTL,
    ) {
        Ok(token) => json_value(StatusCode::OK, &json!({ "token": token })),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e),
    }
}

/// Why a history or presence read is refused: status, error code, message.
struct Refused(StatusCode, &'static str, String);

impl Refused {
    fn into_response(self) -> Response<Body> {
        error(self.0, self.1, &self.2)
    }
}

/// The request's `Authorization: Bearer` token, if any.
fn bearer<B>(req: &Request<B>) -> Option<String> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

/// Checks the bearer token of a history or presence read and that it may subscribe to
/// the `channel` parameter; returns the channel.
async fn authorize(
    node: &Node,
    token: Option<String>,
    query: Option<&str>,
) -> Result<String, Refused> {
    let token = token.ok_or_else(|| {
        Refused(
            StatusCode::UNAUTHORIZED,
            "missing_token",
            "pass the page's token as `Authorization: Bearer <jwt>`".into(),
        )
    })?;
    let claims = node
        .config
        .auth
        .authenticate(&token)
        .await
        .map_err(|e| Refused(StatusCode::UNAUTHORIZED, e.code(), e.to_string()))?;
    let channel = query_param(query, "channel").unwrap_or_default();
    let parsed = Channel::parse(&channel)
        .map_err(|e| Refused(StatusCode::BAD_REQUEST, "bad_channel", e.to_string()))?;
    if !node.config.knows_namespace(parsed.namespace) {
        return Err(Refused(
            StatusCode::BAD_REQUEST,
            "bad_channel",
            format!("unknown namespace `{}`", parsed.namespace),
        ));
    }
    if !claims.can_subscribe(&channel) {
        return Err(Refused(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the token may not subscribe to this channel".into(),
        ));
    }
    Ok(channel)
}

/// `GET /demo/history?channel=&limit=`: the newest `limit` retained messages.
async fn history(node: &Node, channel: &str, query: Option<&str>) -> Response<Body> {
    let limit = match query_param(query, "limit") {
        None => HISTORY_DEFAULT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=HISTORY_MAX).contains(&n) => n,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    &format!("`limit` must be 1 to {HISTORY_MAX}"),
                )
            }
        },
    };
    let read = async {
        let newest = node.router.position(channel).await?;
        let since = StreamPosition::new(newest.epoch, newest.offset.saturating_sub(limit as u64));
        node.router.read(channel, Some(&since), limit).await
    };
    match read.await {
        Ok(read) => {
            let messages: Vec<Box<RawValue>> = read
                .messages
                .iter()
                .map(|m| pjson::message_to_json(m))
                .collect();
            json_value(
                StatusCode::OK,
                &json!({
                    "channel": channel,
                    "epoch": read.epoch,
                    "offset": read.offset,
                    "recovered": read.recovered,
                    "messages": messages,
                }),
            )
        }
        Err(e) => unavailable(&e),
    }
}

/// `GET /demo/presence?channel=`: who is in the room now.
async fn presence(node: &Node, channel: &str) -> Response<Body> {
    match node.router.presence(channel).await {
        Ok(p) => json_value(
            StatusCode::OK,
            &json!({"channel": channel, "users": p.users, "connections": p.connections}),
        ),
        Err(e) => unavailable(&e),
    }
}

fn unavailable(e: &switchboard_router::RouterError) -> Response<Body> {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        &e.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_embedded_and_typed() {
        for asset in ASSETS {
            assert!(!asset.body.is_empty(), "{} is empty", asset.path);
            assert!(serves(asset.path));
            assert!(asset.content_type.contains("charset=utf-8"));
        }
        assert!(serves(TOKEN) && serves(HISTORY) && serves(PRESENCE));
        assert!(!serves("/ws") && !serves("/demo") && !serves("/x.js"));
    }

    #[test]
    fn demo_pages_load_the_served_client() {
        let page = |p: &str| {
            let a = ASSETS.iter().find(|a| a.path == p).expect("asset");
            std::str::from_utf8(a.body).expect("utf-8").to_owned()
        };
        for script in ["/chat.js", "/dashboard.js"] {
            assert!(page(script).contains("from '/switchboard.js'"), "{script}");
        }
        let index = page("/");
        assert!(
            index.contains("href=\"/chat.html\"") && index.contains("href=\"/dashboard.html\"")
        );
    }
}
