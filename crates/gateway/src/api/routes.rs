//! The route table of the internal port: every method and path it serves, in one place. The
//! router (`api::handle`) matches requests against [`ROUTES`], and a test checks the table
//! against `docs/openapi.json` both ways, so a route cannot be added to one and not the other.

use http::Method;

use crate::http::query::percent_decode;

/// What a route does; `api::dispatch` maps each to its handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Publish,
    Broadcast,
    Batch,
    User,
    Disconnect,
    Presence,
    History,
    Nodes,
    OpenApi,
    Healthz,
    Readyz,
    Metrics,
}

impl Endpoint {
    /// The `endpoint` label of `switchboard_api_requests_total`.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Publish => "publish",
            Endpoint::Broadcast => "broadcast",
            Endpoint::Batch => "batch",
            Endpoint::User => "users",
            Endpoint::Disconnect => "disconnect",
            Endpoint::Presence => "presence",
            Endpoint::History => "history",
            Endpoint::Nodes => "nodes",
            Endpoint::OpenApi => "openapi",
            Endpoint::Healthz => "healthz",
            Endpoint::Readyz => "readyz",
            Endpoint::Metrics => "metrics",
        }
    }
}

/// One route of the internal port.
pub struct Route {
    pub method: Method,
    /// The path; a `{name}` segment is a path parameter (OpenAPI's template syntax).
    pub path: &'static str,
    pub endpoint: Endpoint,
    /// Whether the route needs `Authorization: Bearer <api-key>`.
    pub auth: bool,
}

const fn route(method: Method, path: &'static str, endpoint: Endpoint, auth: bool) -> Route {
    Route {
        method,
        path,
        endpoint,
        auth,
    }
}

/// Every route of the internal port (docs/protocol.md §6 and the operational endpoints).
pub const ROUTES: &[Route] = &[
    route(Method::POST, "/v1/publish", Endpoint::Publish, true),
    route(Method::POST, "/v1/broadcast", Endpoint::Broadcast, true),
    route(Method::POST, "/v1/batch", Endpoint::Batch, true),
    route(Method::GET, "/v1/users/{id}", Endpoint::User, true),
    route(
        Method::POST,
        "/v1/users/{id}/disconnect",
        Endpoint::Disconnect,
        true,
    ),
    route(
        Method::GET,
        "/v1/presence/{channel}",
        Endpoint::Presence,
        true,
    ),
    route(
        Method::GET,
        "/v1/history/{channel}",
        Endpoint::History,
        true,
    ),
    route(Method::GET, "/v1/nodes", Endpoint::Nodes, true),
    route(Method::GET, "/v1/openapi.json", Endpoint::OpenApi, false),
    route(Method::GET, "/healthz", Endpoint::Healthz, false),
    route(Method::GET, "/readyz", Endpoint::Readyz, false),
    route(Method::GET, "/metrics", Endpoint::Metrics, false),
];

/// What the table says about a request.
pub enum Lookup {
    /// The route, and its path parameters (percent-decoded) in template order.
    Found(&'static Route, Vec<String>),
    /// The path is served, not with this method: the route of the path, and the methods
    /// it is served with (for `Allow`).
    WrongMethod(&'static Route, String),
    NotFound,
}

/// Matches `path` against one template; the parameters when it matches. Every segment is
/// percent-decoded first (after splitting, so `%2F` stays inside its segment).
fn matches(template: &str, path: &str) -> Option<Vec<String>> {
    let mut want = template.split('/');
    let mut got = path.split('/');
    let mut params = Vec::new();
    loop {
        match (want.next(), got.next()) {
            (None, None) => return Some(params),
            (Some(w), Some(g)) => {
                let g = percent_decode(g);
                if w.starts_with('{') && w.ends_with('}') {
                    params.push(g);
                } else if w != g {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

/// Finds the route of a request.
pub fn lookup(method: &Method, path: &str) -> Lookup {
    let mut on_path: Option<&'static Route> = None;
    let mut allowed: Vec<&str> = Vec::new();
    for r in ROUTES {
        if let Some(params) = matches(r.path, path) {
            if r.method == method {
                return Lookup::Found(r, params);
            }
            on_path.get_or_insert(r);
            allowed.push(r.method.as_str());
        }
    }
    match on_path {
        Some(r) => Lookup::WrongMethod(r, allowed.join(", ")),
        None => Lookup::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn lookup_finds_routes_and_parameters() {
        let Lookup::Found(r, params) = lookup(&Method::POST, "/v1/users/al%69ce/disconnect") else {
            panic!("not found");
        };
        assert_eq!(r.endpoint, Endpoint::Disconnect);
        assert_eq!(params, ["alice"]);
        let Lookup::Found(_, params) = lookup(&Method::GET, "/v1/history/room:a%2Fb") else {
            panic!("not found");
        };
        assert_eq!(params, ["room:a/b"], "%2F stays inside its segment");
        assert!(matches!(
            lookup(&Method::GET, "/v1/publish"),
            Lookup::WrongMethod(r, ref allow) if r.endpoint == Endpoint::Publish && allow == "POST"
        ));
        for path in [
            "/v1/publish/",
            "/v1/users/a/b",
            "/v1/nope",
            "/",
            "/healthz/x",
        ] {
            assert!(
                matches!(lookup(&Method::GET, path), Lookup::NotFound),
                "{path}"
            );
        }
    }

    /// Every route of the table is an operation of docs/openapi.json and every operation
    /// of the document is a route of the table.
    #[test]
    fn routes_match_the_openapi_document() {
        let doc: serde_json::Value =
            serde_json::from_str(super::super::ops::OPENAPI).expect("docs/openapi.json is JSON");
        let methods = [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ];
        let documented: BTreeSet<(String, String)> = doc["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .flat_map(|(path, item)| {
                methods
                    .iter()
                    .filter(|m| item.get(**m).is_some())
                    .map(move |m| (m.to_uppercase(), path.clone()))
            })
            .collect();
        let served: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.to_string(), r.path.to_owned()))
            .collect();
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&served).collect();
        assert!(
            undocumented.is_empty() && unserved.is_empty(),
            "served but not in docs/openapi.json: {undocumented:?}; \
             in docs/openapi.json but not served: {unserved:?}"
        );
        // Authentication: the routes without the API key say `security: []`.
        for r in ROUTES {
            let op = &doc["paths"][r.path][r.method.as_str().to_lowercase()];
            let open = op["security"] == serde_json::json!([]);
            assert_eq!(open, !r.auth, "{} {}: security", r.method, r.path);
        }
    }
}
