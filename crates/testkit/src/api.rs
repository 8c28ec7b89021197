//! Test support: a keep-alive server-API client, metrics and process memory readers,
//! and resuming a connection with `since`.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use crate::{Client, Node, API_KEY, WAIT};

/// `(epoch, offset)` of a welcome, reply or message.
pub fn position(v: &Value) -> (String, u64) {
    let epoch = v["epoch"]
        .as_str()
        .unwrap_or_else(|| panic!("no epoch: {v}"));
    let offset = v["offset"]
        .as_u64()
        .unwrap_or_else(|| panic!("no offset: {v}"));
    (epoch.to_owned(), offset)
}

/// Connects as `user`, resuming the personal channel from `since` when given (`None`: no
/// `since` at all); returns the client and its welcome.
pub async fn connect_since(node: &Node, user: &str, since: Option<(&str, u64)>) -> (Client, Value) {
    let mut query = format!("token={}", crate::token(user));
    if let Some((epoch, offset)) = since {
        query.push_str(&format!("&since={epoch}:{offset}"));
    }
    let mut client = node
        .connect_query(&query, &[])
        .await
        .unwrap_or_else(|r| panic!("{user} refused by {}: {r:?}", node.node_id));
    let welcome = client.recv().await;
    assert_eq!(welcome["type"], "welcome", "{user}: first frame {welcome}");
    (client, welcome)
}

/// A server-API client that keeps its connection alive, for publishing many messages
/// quickly (`Node::api` opens a new connection per call).
pub struct ApiClient {
    client: HttpClient<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    internal: SocketAddr,
}

impl ApiClient {
    /// A JSON request to the server API with the test key.
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> http::Result<http::Request<Full<Bytes>>> {
        http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.internal))
            .header("authorization", format!("Bearer {API_KEY}"))
            .header("content-type", "application/json")
            .body(Full::new(
                body.map(|b| Bytes::from(b.to_string())).unwrap_or_default(),
            ))
    }

    /// Calls the server API with the test key. Returns status and JSON body.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let req = self.request(method, path, body).unwrap();
        let res = tokio::time::timeout(WAIT, self.client.request(req))
            .await
            .expect("http request timed out")
            .expect("http request");
        let status = res.status().as_u16();
        let bytes = res.into_body().collect().await.expect("body").to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Like [`ApiClient::call`], but a failed request is an `Err` (for traffic that must
    /// go on while Redis fails over) and there is no timeout (the caller sets one).
    pub async fn try_call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let req = self
            .request(method, path, body)
            .map_err(|e| e.to_string())?;
        let res = self.client.request(req).await.map_err(|e| e.to_string())?;
        let status = res.status().as_u16();
        let bytes = res
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// `POST /v1/publish`; panics unless it answers 200. Returns the answer.
    pub async fn publish(&self, channel: &str, data: Value) -> Value {
        let (status, body) = self
            .call(
                "POST",
                "/v1/publish",
                Some(json!({"channel": channel, "data": data})),
            )
            .await;
        assert_eq!(status, 200, "publish to {channel}: {body}");
        body
    }
}

impl Node {
    /// A keep-alive server-API client.
    pub fn api_client(&self) -> ApiClient {
        ApiClient {
            client: HttpClient::builder(TokioExecutor::new()).build_http(),
            internal: self.internal,
        }
    }

    /// The value of one exact series of `/metrics` (`name` or `name{label="v"}`), if present.
    pub async fn metric_value(&self, series: &str) -> Option<f64> {
        let (status, text) = self.get_internal("/metrics").await;
        assert_eq!(status, 200, "/metrics: {text}");
        text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name.trim() == series).then(|| value.trim().parse().expect("metric value"))
        })
    }

    /// Waits until the server API reports `user` offline (the previous connection is gone).
    pub async fn wait_offline(&self, user: &str) {
        tokio::time::timeout(WAIT, async {
            loop {
                let (status, body) = self.api("GET", &format!("/v1/users/{user}"), None).await;
                assert_eq!(status, 200, "{body}");
                if body["online"] == false {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("user still online");
    }

    /// The gateway process's resident memory (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }
}
