//! RPC routes (docs/protocol.md §4b): the TOML `[[routes]]` tables and the compact
//! `--rpc-route 'PATTERN=URL[,URL…]'` form, checked into [`RouteConfig`]s. Every problem is
//! pushed to the caller's error list, prefixed with where it was found (`<file>: routes[2]`
//! or `--rpc-route / SWITCHBOARD_RPC_ROUTES`). `crate::rpc` compiles the result into the
//! live route table at startup.

use std::time::Duration;

use toml::Value;

/// Most upstreams of one route.
pub(super) const MAX_UPSTREAMS: usize = 64;
/// Keys a `[[routes]]` table may have.
const ROUTE_KEYS: &[&str] = &[
    "name",
    "method",
    "upstreams",
    "timeout_ms",
    "idempotent",
    "retries",
    "balance",
    "breaker_failures",
    "breaker_open_ms",
];
/// Longest route name or method pattern.
const MAX_PATTERN_LEN: usize = 256;

/// How a route spreads calls over its upstreams.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Balance {
    /// Rotate across the upstreams (the default).
    #[default]
    RoundRobin,
    /// The upstream with the fewest calls in flight; ties rotate.
    LeastInflight,
}

/// One upstream of a route: the URL as configured (the metric label) and parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub url: String,
    pub uri: http::Uri,
}

/// One checked RPC route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteConfig {
    /// The `route` metric label; unique. Default: the method pattern.
    pub name: String,
    /// An exact method, or a prefix ending in `*`.
    pub method: String,
    /// 1..=64 `http://` URLs.
    pub upstreams: Vec<UpstreamUrl>,
    /// Per attempt. Default 5 s.
    pub timeout: Duration,
    /// Whether calls may be retried. Default false.
    pub idempotent: bool,
    /// Extra attempts (only with `idempotent`). Default 0.
    pub retries: u32,
    pub balance: Balance,
    /// Consecutive failures that open an upstream's circuit. Default 5.
    pub breaker_failures: u32,
    /// How long a circuit stays open before one half-open probe. Default 10 s.
    pub breaker_open: Duration,
}

impl RouteConfig {
    /// A route with the defaults for everything but its pattern and upstreams.
    fn new(method: String, upstreams: Vec<UpstreamUrl>) -> RouteConfig {
        RouteConfig {
            name: method.clone(),
            method,
            upstreams,
            timeout: Duration::from_millis(5000),
            idempotent: false,
            retries: 0,
            balance: Balance::RoundRobin,
            breaker_failures: 5,
            breaker_open: Duration::from_millis(10_000),
        }
    }
}

/// A declared route: where (for messages), its name when it could be read, and the route
/// when it had no problem. Names are checked for duplicates across every declared route,
/// the bad ones too, so that one run reports every problem.
#[derive(Debug)]
pub(super) struct Located {
    pub at: String,
    pub name: Option<String>,
    pub route: Option<RouteConfig>,
}

/// An exact method, or a prefix ending in `*` (`*` alone matches every method): printable
/// ASCII without spaces, `*` only at the end.
pub(super) fn method_pattern(p: &str) -> Result<(), String> {
    let body = p.strip_suffix('*').unwrap_or(p);
    let ok = !p.is_empty()
        && p.len() <= MAX_PATTERN_LEN
        && body.bytes().all(|b| b.is_ascii_graphic() && b != b'*');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{p:?} is not a method pattern (an exact method like orders.create, or a prefix \
             ending in * like orders.*; printable characters without spaces)"
        ))
    }
}

/// An upstream: `http://host[:port][/path]`.
pub(super) fn upstream_url(s: &str) -> Result<UpstreamUrl, String> {
    let s = s.trim();
    if s.get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("https://"))
    {
        return Err(format!(
            "{s:?}: https:// upstreams are not supported yet (the gateway has no TLS client); \
             use http:// (e.g. a local sidecar that terminates TLS)"
        ));
    }
    let uri: http::Uri = s
        .parse()
        .map_err(|_| format!("{s:?} is not a URL like http://127.0.0.1:7001/rpc"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "{s:?} must be an http:// URL like http://127.0.0.1:7001/rpc"
        ));
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("{s:?} has no host"));
    };
    if authority.as_str().contains('@') {
        return Err(format!(
            "{s:?}: credentials in upstream URLs are not supported"
        ));
    }
    if authority.host().is_empty()
        || (authority.port().is_some() && authority.port_u16() == Some(0))
    {
        return Err(format!("{s:?} needs a host and a port other than 0"));
    }
    Ok(UpstreamUrl {
        url: s.to_owned(),
        uri,
    })
}

/// `[[routes]]` tables in file order. `label` names the file.
pub(super) fn from_toml(value: &Value, label: &str, errors: &mut Vec<String>) -> Vec<Located> {
    let Value::Array(tables) = value else {
        errors.push(format!(
            "{label}: routes: expected [[routes]] tables, found {}",
            value.type_str()
        ));
        return Vec::new();
    };
    let mut routes = Vec::new();
    for (i, table) in tables.iter().enumerate() {
        let at = format!("{label}: routes[{i}]");
        let Some(table) = table.as_table() else {
            errors.push(format!("{at}: expected a table with method and upstreams"));
            continue;
        };
        let mut problems = Vec::new();
        let (name, route) = route_table(table, &mut problems);
        errors.extend(problems.into_iter().map(|p| format!("{at}: {p}")));
        routes.push(Located { at, name, route });
    }
    routes
}

/// One `[[routes]]` table: its name (if readable) and the route, `None` when anything is
/// wrong (all of it is in `problems`).
fn route_table(
    table: &toml::Table,
    problems: &mut Vec<String>,
) -> (Option<String>, Option<RouteConfig>) {
    for key in table.keys() {
        if !ROUTE_KEYS.contains(&key.as_str()) {
            problems.push(format!(
                "unknown key {key:?} (expected {})",
                ROUTE_KEYS.join(", ")
            ));
        }
    }
    let method = match table.get("method") {
        Some(Value::String(m)) => match method_pattern(m) {
            Ok(()) => Some(m.clone()),
            Err(e) => {
                problems.push(format!("method: {e}"));
                None
            }
        },
        Some(other) => {
            problems.push(format!(
                "method: expected a string, found {}",
                other.type_str()
            ));
            None
        }
        None => {
            problems.push("method is required (an exact method or a prefix ending in *)".into());
            None
        }
    };
    let upstreams = upstreams(table.get("upstreams"), problems);
    let name = match table.get("name") {
        None => None,
        Some(Value::String(n)) => route_name(n).map_err(|e| problems.push(e)).ok(),
        Some(other) => {
            problems.push(format!(
                "name: expected a string, found {}",
                other.type_str()
            ));
            None
        }
    };
    let mut int = |key: &str, default: u64, min: u64, max: u64| -> u64 {
        match table.get(key) {
            None => default,
            Some(Value::Integer(n)) if (min as i64..=max as i64).contains(n) => *n as u64,
            Some(_) => {
                problems.push(format!("{key} must be a whole number in {min}..={max}"));
                default
            }
        }
    };
    let timeout_ms = int("timeout_ms", 5000, 1, 600_000);
    let retries = int("retries", 0, 0, 10);
    let breaker_failures = int("breaker_failures", 5, 1, 1000);
    let breaker_open_ms = int("breaker_open_ms", 10_000, 10, 3_600_000);
    let idempotent = match table.get("idempotent") {
        None => false,
        Some(Value::Boolean(b)) => *b,
        Some(other) => {
            problems.push(format!(
                "idempotent: expected true or false, found {}",
                other.type_str()
            ));
            false
        }
    };
    if retries > 0 && !idempotent && table.get("idempotent").is_none_or(Value::is_bool) {
        problems.push(format!(
            "retries = {retries} needs idempotent = true (only idempotent calls may be retried)"
        ));
    }
    let balance = match table.get("balance") {
        None => Balance::RoundRobin,
        Some(Value::String(s)) if s == "round_robin" => Balance::RoundRobin,
        Some(Value::String(s)) if s == "least_inflight" => Balance::LeastInflight,
        Some(other) => {
            problems.push(format!(
                "balance: {other} is not a balancing policy (\"round_robin\" or \"least_inflight\")"
            ));
            Balance::RoundRobin
        }
    };
    // Without a `name` key, the method pattern is the name; a bad name is no name.
    let name = match table.contains_key("name") {
        true => name,
        false => method.clone(),
    };
    let (Some(method), Some(upstreams), true) = (method, upstreams, problems.is_empty()) else {
        return (name, None);
    };
    let mut route = RouteConfig::new(method, upstreams);
    if let Some(name) = &name {
        route.name.clone_from(name);
    }
    route.timeout = Duration::from_millis(timeout_ms);
    route.idempotent = idempotent;
    route.retries = u32::try_from(retries).unwrap_or(0);
    route.balance = balance;
    route.breaker_failures = u32::try_from(breaker_failures).unwrap_or(5);
    route.breaker_open = Duration::from_millis(breaker_open_ms);
    (name, Some(route))
}

fn route_name(n: &str) -> Result<String, String> {
    if n.is_empty() || n.len() > MAX_PATTERN_LEN || n.chars().any(char::is_control) {
        return Err(format!(
            "name: {n:?} must be 1 to {MAX_PATTERN_LEN} characters without control characters"
        ));
    }
    Ok(n.to_owned())
}

fn upstreams(value: Option<&Value>, problems: &mut Vec<String>) -> Option<Vec<UpstreamUrl>> {
    let items = match value {
        Some(Value::Array(items)) => items,
        Some(other) => {
            problems.push(format!(
                "upstreams: expected an array of http:// URLs, found {}",
                other.type_str()
            ));
            return None;
        }
        None => {
            problems.push("upstreams is required (1 to 64 http:// URLs)".into());
            return None;
        }
    };
    if items.is_empty() || items.len() > MAX_UPSTREAMS {
        problems.push(format!(
            "upstreams: {} URLs (allowed: 1..={MAX_UPSTREAMS})",
            items.len()
        ));
        return None;
    }
    let before = problems.len();
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item.as_str().map(upstream_url) {
            Some(Ok(u)) => out.push(u),
            Some(Err(e)) => problems.push(format!("upstreams: {e}")),
            None => problems.push(format!(
                "upstreams: expected a string, found {}",
                item.type_str()
            )),
        }
    }
    (problems.len() == before).then_some(out)
}

/// The compact `PATTERN=URL[,URL…]` items of `--rpc-route` / `SWITCHBOARD_RPC_ROUTES`
/// (already split on `;` by clap); blank items are skipped.
pub(super) fn from_compact(
    items: &[String],
    label: &str,
    errors: &mut Vec<String>,
) -> Vec<Located> {
    let mut routes = Vec::new();
    for item in items.iter().map(|i| i.trim()).filter(|i| !i.is_empty()) {
        let at = format!("{label}: {item:?}");
        let Some((pattern, urls)) = item.split_once('=') else {
            errors.push(format!(
                "{at} is not a route like orders.*=http://127.0.0.1:7001/rpc (PATTERN=URL[,URL…])"
            ));
            continue;
        };
        let pattern = pattern.trim();
        let mut ok = true;
        let name = match method_pattern(pattern) {
            Ok(()) => Some(pattern.to_owned()),
            Err(e) => {
                errors.push(format!("{at}: {e}"));
                ok = false;
                None
            }
        };
        let urls: Vec<&str> = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        if urls.is_empty() || urls.len() > MAX_UPSTREAMS {
            errors.push(format!(
                "{at}: {} upstream URLs (allowed: 1..={MAX_UPSTREAMS})",
                urls.len()
            ));
            ok = false;
        }
        let mut upstreams = Vec::with_capacity(urls.len());
        for url in urls {
            match upstream_url(url) {
                Ok(u) => upstreams.push(u),
                Err(e) => {
                    errors.push(format!("{at}: {e}"));
                    ok = false;
                }
            }
        }
        let route = ok.then(|| RouteConfig::new(pattern.to_owned(), upstreams));
        routes.push(Located { at, name, route });
    }
    routes
}

/// Reports route names used twice (the `route` metric label must be unique), among every
/// declared route: a bad route's name counts too.
pub(super) fn check_names(routes: &[Located], errors: &mut Vec<String>) {
    for (i, route) in routes.iter().enumerate() {
        let Some(name) = &route.name else { continue };
        if let Some(first) = routes[..i].iter().find(|r| r.name.as_ref() == Some(name)) {
            errors.push(format!(
                "{}: route name {name:?} is already used by {} (names must be unique; set \
                 name = \"…\")",
                route.at, first.at
            ));
        }
    }
}

#[cfg(test)]
mod tests;
