//! Addresses: the resolved `--targets` and the source addresses connections bind
//! (`--source-ips`, or enough 127.0.0.x addresses for loopback targets).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// A resolved `--targets` entry.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// The `Host` header (the address as given).
    pub host: String,
}

/// Resolves HOST:PORT targets (the first address of each).
pub async fn resolve(targets: &[String]) -> Result<Vec<Endpoint>, String> {
    let mut out = Vec::with_capacity(targets.len());
    for t in targets {
        let t = t.trim();
        let addr = tokio::net::lookup_host(t)
            .await
            .map_err(|e| format!("target {t:?}: {e}"))?
            .next()
            .ok_or_else(|| format!("target {t:?}: no address"))?;
        out.push(Endpoint {
            addr,
            host: t.to_owned(),
        });
    }
    Ok(out)
}

/// Parses `--source-ips`: an inclusive IPv4 range `A-B` or a comma list.
pub fn parse_source_ips(spec: &str) -> Result<Vec<IpAddr>, String> {
    let bad = |s: &str| format!("--source-ips: not an address: {s:?}");
    if let Some((a, b)) = spec.split_once('-') {
        let a: Ipv4Addr = a.trim().parse().map_err(|_| bad(a))?;
        let b: Ipv4Addr = b.trim().parse().map_err(|_| bad(b))?;
        let (a, b) = (u32::from(a), u32::from(b));
        if b < a || b - a > 65_535 {
            return Err(format!("--source-ips: bad range {spec:?}"));
        }
        return Ok((a..=b).map(|x| IpAddr::V4(Ipv4Addr::from(x))).collect());
    }
    let ips = spec
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<IpAddr>().map_err(|_| bad(s)))
        .collect::<Result<Vec<_>, _>>()?;
    if ips.is_empty() {
        return Err("--source-ips: empty".into());
    }
    Ok(ips)
}

/// The default source addresses for `total` connections: 127.0.0.1.. with at most 10,000
/// connections each (a bound address has ~28k ephemeral ports), when a target is loopback.
pub fn default_source_ips(total: u64, endpoints: &[Endpoint]) -> Vec<IpAddr> {
    if !endpoints.iter().any(|e| e.addr.ip().is_loopback()) {
        return Vec::new();
    }
    let n = total.div_ceil(10_000).clamp(1, 250) as u8;
    (1..=n)
        .map(|x| IpAddr::V4(Ipv4Addr::new(127, 0, 0, x)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ips_ranges_and_lists() {
        let r = parse_source_ips("127.0.0.1-127.0.0.3").unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[2], "127.0.0.3".parse::<IpAddr>().unwrap());
        assert_eq!(parse_source_ips("127.0.0.5, 127.0.0.9").unwrap().len(), 2);
        assert!(parse_source_ips("127.0.0.9-127.0.0.1").is_err());
        assert!(parse_source_ips("nope").is_err());
    }

    #[test]
    fn default_sources_only_for_loopback() {
        let lo = [Endpoint {
            addr: "127.0.0.1:1".parse().unwrap(),
            host: "x".into(),
        }];
        assert_eq!(default_source_ips(25_000, &lo).len(), 3);
        assert_eq!(default_source_ips(1, &lo).len(), 1);
        let remote = [Endpoint {
            addr: "192.0.2.1:1".parse().unwrap(),
            host: "x".into(),
        }];
        assert!(default_source_ips(25_000, &remote).is_empty());
    }
}
