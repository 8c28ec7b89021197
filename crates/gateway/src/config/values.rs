//! Parsers for single setting values. Each takes the raw text (or list items) and returns
//! the typed value or a message that says what was wrong and what would be right. The
//! caller adds where the value came from (flag, env or file).

use std::net::SocketAddr;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use rand::Rng;
use switchboard_proto::channel::Channel;
use switchboard_router::HistoryPolicy;

use super::LogFormat;

/// Largest `max_messages` of a history rule.
pub(super) const MAX_HISTORY_MESSAGES: u64 = 1_000_000;
/// Largest `max_age_seconds` of a history rule (one year).
pub(super) const MAX_HISTORY_AGE_SECS: u64 = 365 * 24 * 3600;

/// Algorithms accepted with `--jwt-secret`.
pub(super) const HMAC_ALGORITHMS: &str = "HS256, HS384 or HS512";
/// Algorithms accepted with `--jwt-public-key`.
pub(super) const PUBLIC_KEY_ALGORITHMS: &str = "RS256, RS384, RS512, ES256, ES384 or EdDSA";

/// Splits list items on commas, trims them and drops empty ones.
pub(super) fn split_list(items: &[String]) -> Vec<String> {
    items
        .iter()
        .flat_map(|item| item.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A whole number in `min..=max`.
pub(super) fn int(s: &str, min: u64, max: u64) -> Result<u64, String> {
    let n: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number"))?;
    if n < min || n > max {
        return Err(format!("{n} is out of range (allowed: {min}..={max})"));
    }
    Ok(n)
}

pub(super) fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{s:?} is not an IP address and port like 0.0.0.0:8080"))
}

pub(super) fn bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("{s:?} is not a boolean (true or false)")),
    }
}

pub(super) fn redis_url(s: &str) -> Result<String, String> {
    let s = s.trim();
    match switchboard_router::redis::client::ClientConfig::from_url(s) {
        Ok(_) => Ok(s.to_owned()),
        // The router's messages name the part that is wrong, never the password.
        Err(e) => Err(format!(
            "{e} (redis://host:port/db, rediss://…, redis+sentinel://host:port/db?sentinelServiceName=NAME, redis-cluster://host:port?node=host:port)"
        )),
    }
}

/// `auto` or a replica count for `--redis-replica-acks`.
pub(super) fn replica_acks(s: &str) -> Result<Option<u32>, String> {
    match s.trim() {
        "auto" => Ok(None),
        n => match n.parse::<u32>() {
            Ok(n) if n <= 5 => Ok(Some(n)),
            _ => Err("must be `auto` or a number of replicas from 0 to 5".into()),
        },
    }
}

/// A Redis key or key prefix: 1..=64 printable ASCII characters without spaces.
pub(super) fn redis_key(s: &str) -> Result<String, String> {
    let s = s.trim();
    if !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(s.to_owned())
    } else {
        Err("must be 1 to 64 printable characters without spaces".into())
    }
}

/// The key prefix: a key (see [`redis_key`]) without `{` or `}`, which would move every
/// key's hash tag (Redis Cluster places keys by the text inside the first `{…}`).
pub(super) fn redis_prefix(s: &str) -> Result<String, String> {
    let s = redis_key(s)?;
    if s.contains(['{', '}']) {
        return Err("must not contain `{` or `}` (they would change every key's hash slot)".into());
    }
    Ok(s)
}

/// `[A-Za-z0-9_.-]{1,64}`.
pub(super) fn node_id(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} must be 1 to 64 characters of [A-Za-z0-9_.-]"
        ))
    }
}

/// `<hostname>-<6 random [a-z0-9]>`, the hostname cleaned up to fit [`node_id`].
pub(super) fn default_node_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let host = hostname::get()
        .ok()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut host: String = host
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '_' | '.' | '-' => c,
            _ => '-',
        })
        .take(57)
        .collect();
    if host.is_empty() {
        host = "switchboard".into();
    }
    let mut rng = rand::rng();
    let suffix: String = (0..6)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("{host}-{suffix}")
}

pub(super) fn algorithm(s: &str) -> Result<Algorithm, String> {
    let alg = match s.trim().to_ascii_uppercase().as_str() {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EDDSA" => Algorithm::EdDSA,
        _ => {
            return Err(format!(
                "{s:?} is not a supported algorithm ({HMAC_ALGORITHMS}, {PUBLIC_KEY_ALGORITHMS})"
            ))
        }
    };
    Ok(alg)
}

pub(super) fn log_format(s: &str) -> Result<LogFormat, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("{s:?} is not a log format (text or json)")),
    }
}

/// A `tracing_subscriber::EnvFilter` directive such as `info` or `switchboard=debug,warn`.
pub(super) fn log_level(s: &str) -> Result<String, String> {
    let s = s.trim();
    tracing_subscriber::EnvFilter::try_new(s)
        .map(|_| s.to_owned())
        .map_err(|e| format!("{s:?} is not a log filter like info or switchboard=debug,warn: {e}"))
}

/// Exact origins (`scheme://host[:port]`, stored lowercase) or `*` alone.
pub(super) fn origins(items: &[String]) -> Result<Vec<String>, Vec<String>> {
    let list = split_list(items);
    if list.is_empty() {
        return Err(vec![
            "lists no origin (leave it unset to allow same-origin requests only)".into(),
        ]);
    }
    if list.iter().any(|o| o == "*") {
        return if list.len() == 1 {
            Ok(list)
        } else {
            Err(vec!["\"*\" must be the only entry when used".into()])
        };
    }
    let mut errors = Vec::new();
    let mut out = Vec::with_capacity(list.len());
    for origin in list {
        match origin_ok(&origin) {
            true => out.push(origin.to_ascii_lowercase()),
            false => errors.push(format!(
                "{origin:?} is not an origin like https://app.example.com or http://localhost:3000 \
                 (scheme://host[:port], no path or trailing slash)"
            )),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn origin_ok(origin: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-'));
    let (host, port) = match authority.rsplit_once(':') {
        // An IPv6 literal without a port: `[::1]`.
        Some((_, p)) if p.ends_with(']') => (authority, None),
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    let host_ok = if host.starts_with('[') {
        // An IPv6 literal.
        host.len() > 2
            && host.ends_with(']')
            && host[1..host.len() - 1]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    scheme_ok && host_ok && port_ok
}

/// Extra channel namespaces: `[a-z0-9_-]+`, not the built-in `user` and `room`.
pub(super) fn namespaces(items: &[String]) -> Result<Vec<String>, Vec<String>> {
    let mut errors = Vec::new();
    let mut out: Vec<String> = Vec::new();
    for ns in split_list(items) {
        let valid = ns.len() <= 64
            && ns
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'));
        if !valid {
            errors.push(format!("{ns:?} must be 1 to 64 characters of [a-z0-9_-]"));
        } else if ns == "user" || ns == "room" {
            errors.push(format!("{ns:?} is built in; list only extra namespaces"));
        } else if !out.contains(&ns) {
            out.push(ns);
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Server API keys: any non-empty strings (surrounding spaces trimmed). Never echoed.
pub(super) fn api_keys(items: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for key in split_list(items) {
        if !out.contains(&key) {
            out.push(key);
        }
    }
    out
}

/// A channel pattern: an exact channel name, or a prefix of channel characters ending in `*`.
pub(crate) fn channel_pattern(p: &str) -> Result<(), String> {
    let ok = match p.strip_suffix('*') {
        Some(prefix) => {
            prefix.len() < 256
                && prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.:@=-".contains(&b))
        }
        None => Channel::parse(p).is_ok(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{p:?} is not a channel pattern (an exact name like room:lobby, or a prefix ending in * like room:*)"
        ))
    }
}

/// One history rule, checked.
pub(super) fn history_rule(
    pattern: &str,
    max_messages: u64,
    max_age_seconds: u64,
) -> Result<(String, HistoryPolicy), String> {
    channel_pattern(pattern)?;
    if max_messages > MAX_HISTORY_MESSAGES {
        return Err(format!(
            "max_messages {max_messages} is out of range (allowed: 0..={MAX_HISTORY_MESSAGES})"
        ));
    }
    if max_age_seconds > MAX_HISTORY_AGE_SECS {
        return Err(format!(
            "max_age_seconds {max_age_seconds} is out of range (allowed: 0..={MAX_HISTORY_AGE_SECS})"
        ));
    }
    let policy = HistoryPolicy {
        // Bounded above by MAX_HISTORY_MESSAGES, so it fits any usize.
        max_len: usize::try_from(max_messages).unwrap_or(usize::MAX),
        max_age: Duration::from_secs(max_age_seconds),
    };
    Ok((pattern.to_owned(), policy))
}

/// The compact form `pattern=max_messages/max_age_seconds[,…]`, e.g. `room:chat*=100/3600`.
pub(super) fn history_compact(s: &str) -> Result<Vec<(String, HistoryPolicy)>, Vec<String>> {
    let mut errors = Vec::new();
    let mut rules = Vec::new();
    for item in split_list(&[s.to_owned()]) {
        let parsed = item
            .rsplit_once('=')
            .and_then(|(pattern, bounds)| {
                let (count, age) = bounds.split_once('/')?;
                Some((pattern.trim(), count.trim().parse().ok()?, age.trim().parse().ok()?))
            })
            .ok_or_else(|| {
                format!("{item:?} is not a rule like room:chat*=100/3600 (pattern=max_messages/max_age_seconds)")
            })
            .and_then(|(pattern, count, age)| history_rule(pattern, count, age));
        match parsed {
            Ok(rule) => rules.push(rule),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn origins_accept_exact_origins_and_a_lone_star() {
        let ok = origins(&items(&[
            "https://App.example.com, http://localhost:3000",
            "http://[::1]:8080",
        ]));
        assert_eq!(
            ok.unwrap(),
            [
                "https://app.example.com",
                "http://localhost:3000",
                "http://[::1]:8080"
            ]
        );
        assert_eq!(origins(&items(&["*"])).unwrap(), ["*"]);
        assert!(origins(&items(&["*,https://a.com"])).is_err());
        assert!(origins(&items(&[" , "])).is_err());
        for bad in [
            "app.example.com",
            "https://a.com/",
            "https://a.com/x",
            "https://",
            "https://a.com:0",
            "https://a.com:99999",
            "://a",
        ] {
            assert!(origins(&items(&[bad])).is_err(), "{bad}");
        }
    }

    #[test]
    fn node_ids() {
        assert!(node_id("gw-1.eu_west").is_ok());
        assert!(node_id("").is_err());
        assert!(node_id("a b").is_err());
        assert!(node_id(&"x".repeat(65)).is_err());
        let id = default_node_id();
        assert!(node_id(&id).is_ok(), "{id}");
        let suffix = id.rsplit('-').next().unwrap_or_default();
        assert_eq!(suffix.len(), 6);
        assert!(suffix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    }

    #[test]
    fn patterns_and_history() {
        for ok in ["room:lobby", "room:*", "*", "user:a@b.c", "room:chat*"] {
            assert!(channel_pattern(ok).is_ok(), "{ok}");
        }
        for bad in ["", "room", "room:a b", "room:*x", "ro*om:*"] {
            assert!(channel_pattern(bad).is_err(), "{bad}");
        }
        let rules = history_compact("room:chat*=100/3600, room:x=10/60").unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].0, "room:chat*");
        assert_eq!(rules[0].1.max_len, 100);
        assert_eq!(rules[1].1.max_age, Duration::from_secs(60));
        let errs =
            history_compact("room:a=1,room:b=x/1,bad pattern=1/1,room:c=2000000/1").unwrap_err();
        assert_eq!(errs.len(), 4, "{errs:?}");
    }

    #[test]
    fn namespaces_and_keys() {
        assert_eq!(
            namespaces(&items(&["chat,game", "chat"])).unwrap(),
            ["chat", "game"]
        );
        assert_eq!(namespaces(&items(&["Chat,user,a b"])).unwrap_err().len(), 3);
        assert_eq!(api_keys(&items(&["k1, k2", "k1", ""])), ["k1", "k2"]);
    }

    #[test]
    fn scalars() {
        assert_eq!(int(" 42 ", 0, 100), Ok(42));
        assert!(int("-1", 0, 100).is_err());
        assert!(int("101", 0, 100).is_err());
        assert!(int("1e3", 0, 10000).is_err());
        assert!(bool("On").unwrap());
        assert!(bool("maybe").is_err());
        assert!(redis_url("redis://localhost:6379/0").is_ok());
        assert!(redis_url("rediss://h").is_ok());
        assert!(redis_url("redis+sentinel://h:26379/0?sentinelServiceName=mymaster").is_ok());
        // The service name is a parameter, not the path (which is the database).
        assert!(redis_url("redis+sentinel://h:26379/mymaster").is_err());
        assert!(redis_url("redis-cluster://h:7001?node=h:7002").is_ok());
        assert!(redis_url("http://h").is_err());
        assert!(redis_url("redis://").is_err());
        assert_eq!(algorithm("eddsa"), Ok(Algorithm::EdDSA));
        assert!(algorithm("none").is_err());
        assert!(algorithm("PS256").is_err());
        assert!(log_level("info,switchboard=debug").is_ok());
        assert!(log_level("info,[[[").is_err());
        assert_eq!(log_format("JSON"), Ok(LogFormat::Json));
    }
}
