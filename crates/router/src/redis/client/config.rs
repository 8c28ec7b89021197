//! Where the Redis deployment is and how to talk to it, parsed from `--redis-url`:
//!
//! - `redis://[user:pass@]host[:port][/db]` — one Redis (`rediss://` with TLS);
//! - `redis+sentinel://[user:pass@]host[:port][/db]?sentinelServiceName=NAME[&node=host:port…]`
//!   (also `redis-sentinel://`, `rediss+sentinel://`, `rediss-sentinel://`) — the master
//!   a set of Sentinels names; `sentinelUsername`/`sentinelPassword` when the Sentinels
//!   need other credentials;
//! - `redis-cluster://[user:pass@]host:port[?node=host:port…]` (also `rediss-cluster://`)
//!   — seed nodes of a Redis Cluster.

use std::time::Duration;

use percent_encoding::percent_decode_str;

use super::Error;

/// The kind of deployment and its entry points (`host:port`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deployment {
    Single(String),
    Sentinel {
        sentinels: Vec<String>,
        service: String,
        username: Option<String>,
        password: Option<String>,
    },
    Cluster {
        seeds: Vec<String>,
    },
}

/// TLS towards Redis (`rediss…` URLs).
#[derive(Clone)]
pub struct Tls {
    /// PEM file with extra trusted CA certificates (besides the public web PKI roots).
    pub ca_file: Option<String>,
    /// Built once from the above.
    pub(crate) client: std::sync::Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The rustls configuration is built from `ca_file`.
        f.debug_struct("Tls")
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

/// Everything a client needs to connect.
#[derive(Clone)]
pub struct ClientConfig {
    pub deployment: Deployment,
    pub username: Option<String>,
    pub password: Option<String>,
    /// `SELECT`ed after connecting (one Redis and Sentinel only).
    pub database: u32,
    pub tls: Option<Tls>,
    /// Timeout of every command, and of connecting.
    pub timeout: Duration,
    /// Yield once before each write so that concurrent commands share it.
    pub batch: bool,
    /// `CLIENT SETNAME` prefix (the node id), to tell the connections apart in Redis.
    pub name: String,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("deployment", &self.deployment)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .field("tls", &self.tls)
            .field("timeout", &self.timeout)
            .field("batch", &self.batch)
            .field("name", &self.name)
            .finish()
    }
}

fn config_error(msg: impl Into<String>) -> Error {
    Error::Config(msg.into())
}

fn decoded(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// `host:port` of a URL's authority (IPv6 hosts keep their brackets).
fn authority(url: &url::Url, default_port: u16) -> Result<String, Error> {
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| config_error("the Redis URL has no host"))?;
    Ok(format!("{host}:{}", url.port().unwrap_or(default_port)))
}

/// Checks a `node=host:port` query value.
fn node(value: &str) -> Result<String, Error> {
    let (host, port) = value
        .rsplit_once(':')
        .ok_or_else(|| config_error(format!("node={value}: expected host:port")))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(config_error(format!("node={value}: expected host:port")));
    }
    Ok(value.to_owned())
}

impl ClientConfig {
    /// Parses a Redis URL (see the module docs).
    pub fn from_url(raw: &str) -> Result<ClientConfig, Error> {
        let url = url::Url::parse(raw).map_err(|e| config_error(format!("invalid URL: {e}")))?;
        let (kind, tls) = match url.scheme() {
            "redis" => ("single", false),
            "rediss" => ("single", true),
            "redis+sentinel" | "redis-sentinel" => ("sentinel", false),
            "rediss+sentinel" | "rediss-sentinel" => ("sentinel", true),
            "redis-cluster" => ("cluster", false),
            "rediss-cluster" => ("cluster", true),
            other => {
                return Err(config_error(format!(
                    "unknown scheme `{other}`: use redis://, rediss://, redis+sentinel:// or redis-cluster://"
                )))
            }
        };
        let username = Some(decoded(url.username())).filter(|u| !u.is_empty());
        let password = url.password().map(decoded);
        let mut nodes = Vec::new();
        let mut service = None;
        let mut sentinel_user = None;
        let mut sentinel_pass = None;
        let mut ca_file = None;
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "node" => nodes.push(node(&v)?),
                "sentinelServiceName" => service = Some(v.into_owned()),
                "sentinelUsername" => sentinel_user = Some(v.into_owned()),
                "sentinelPassword" => sentinel_pass = Some(v.into_owned()),
                "tlsCaFile" if tls => ca_file = Some(v.into_owned()),
                other => {
                    return Err(config_error(format!(
                        "unknown URL parameter `{other}` for a {kind} URL"
                    )))
                }
            }
        }
        let path = url.path().trim_start_matches('/');
        let database = if path.is_empty() {
            0
        } else {
            path.parse::<u32>()
                .map_err(|_| config_error(format!("`/{path}` is not a database number")))?
        };
        if kind != "sentinel"
            && (service.is_some() || sentinel_user.is_some() || sentinel_pass.is_some())
        {
            return Err(config_error("sentinel parameters in a non-Sentinel URL"));
        }
        if kind == "single" && !nodes.is_empty() {
            return Err(config_error(
                "node= is for Sentinel and Cluster URLs (redis-cluster://host:port?node=…)",
            ));
        }
        let deployment = match kind {
            "single" => Deployment::Single(authority(&url, 6379)?),
            "sentinel" => {
                let mut sentinels = vec![authority(&url, 26379)?];
                sentinels.extend(nodes);
                Deployment::Sentinel {
                    sentinels,
                    service: service.ok_or_else(|| {
                        config_error("a Sentinel URL needs ?sentinelServiceName=NAME")
                    })?,
                    username: sentinel_user,
                    password: sentinel_pass,
                }
            }
            _ => {
                if database != 0 {
                    return Err(config_error("Redis Cluster has only database 0"));
                }
                let mut seeds = vec![authority(&url, 6379)?];
                seeds.extend(nodes);
                seeds.dedup();
                Deployment::Cluster { seeds }
            }
        };
        Ok(ClientConfig {
            deployment,
            username,
            password,
            database,
            tls: if tls {
                let client = super::connect::tls_config(ca_file.as_deref())?;
                Some(Tls { ca_file, client })
            } else {
                None
            },
            timeout: Duration::from_secs(2),
            batch: true,
            name: String::new(),
        })
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self.deployment, Deployment::Cluster { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_sentinel_and_cluster_urls() {
        let c = ClientConfig::from_url("redis://u%40x:p%3Aw@h:7000/3").unwrap();
        assert_eq!(c.deployment, Deployment::Single("h:7000".into()));
        assert_eq!(c.username.as_deref(), Some("u@x"));
        assert_eq!(c.password.as_deref(), Some("p:w"));
        assert_eq!(c.database, 3);
        assert!(c.tls.is_none());

        let c = ClientConfig::from_url("rediss://:secret@h").unwrap();
        assert_eq!(c.deployment, Deployment::Single("h:6379".into()));
        assert_eq!((c.username, c.password.as_deref()), (None, Some("secret")));
        assert!(c.tls.is_some());

        let c = ClientConfig::from_url(
            "redis+sentinel://s1:26380/2?sentinelServiceName=mymaster&node=s2:26381",
        )
        .unwrap();
        assert_eq!(
            c.deployment,
            Deployment::Sentinel {
                sentinels: vec!["s1:26380".into(), "s2:26381".into()],
                service: "mymaster".into(),
                username: None,
                password: None,
            }
        );
        assert_eq!(c.database, 2);

        let c = ClientConfig::from_url("rediss-cluster://a:7001?node=b:7002&node=%5B::1%5D:7003")
            .unwrap();
        assert_eq!(
            c.deployment,
            Deployment::Cluster {
                seeds: vec!["a:7001".into(), "b:7002".into(), "[::1]:7003".into()]
            }
        );
        assert!(c.tls.unwrap().ca_file.is_none());
        match ClientConfig::from_url("rediss://h?tlsCaFile=/nonexistent.pem") {
            Err(Error::Config(msg)) => assert!(msg.contains("/nonexistent.pem"), "{msg}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_urls_say_why() {
        for (url, why) in [
            ("http://h", "unknown scheme"),
            ("redis://h/x", "not a database number"),
            ("redis+sentinel://h", "sentinelServiceName"),
            ("redis-cluster://h:1/2", "only database 0"),
            ("redis-cluster://h:1?node=nope", "expected host:port"),
            ("redis-cluster://h:1?bogus=1", "unknown URL parameter"),
            ("redis://h?sentinelServiceName=x", "non-Sentinel"),
            ("redis://h?tlsCaFile=/x", "unknown URL parameter"),
            ("redis://h?node=a:1", "node= is for"),
        ] {
            match ClientConfig::from_url(url) {
                Err(Error::Config(msg)) => assert!(msg.contains(why), "{url}: {msg}"),
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    #[test]
    fn debug_redacts_the_password() {
        let c = ClientConfig::from_url("redis://:hunter2@h").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
