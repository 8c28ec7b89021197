//! The browser side of the public port (`--demo`): the embedded client and demo files with
//! their content types, the development endpoints `/demo/token`, `/demo/history` and
//! `/demo/presence`, and that none of it exists without `--demo`.

use switchboard_testkit as support;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use support::Node;

/// Every file the demo serves: path, content type, file under `crates/gateway/web/`.
const ASSETS: &[(&str, &str, &str)] = &[
    ("/", "text/html; charset=utf-8", "demo/index.html"),
    ("/index.html", "text/html; charset=utf-8", "demo/index.html"),
    ("/chat.html", "text/html; charset=utf-8", "demo/chat.html"),
    (
        "/dashboard.html",
        "text/html; charset=utf-8",
        "demo/dashboard.html",
    ),
    ("/app.css", "text/css; charset=utf-8", "demo/app.css"),
    ("/chat.js", "text/javascript; charset=utf-8", "demo/chat.js"),
    (
        "/dashboard.js",
        "text/javascript; charset=utf-8",
        "demo/dashboard.js",
    ),
    (
        "/switchboard.js",
        "text/javascript; charset=utf-8",
        "switchboard.js",
    ),
    (
        "/switchboard.d.ts",
        "text/plain; charset=utf-8",
        "switchboard.d.ts",
    ),
];

/// The public port's answer to any path it does not serve (unchanged by this feature).
fn not_found() -> Value {
    json!({"error": "not_found", "message": "the public port serves GET /ws"})
}

/// A request to the public port; returns status, headers and body.
async fn get(
    node: &Node,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, http::HeaderMap, Bytes) {
    let client: HttpClient<_, Full<Bytes>> = HttpClient::builder(TokioExecutor::new()).build_http();
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", node.public));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = tokio::time::timeout(
        support::WAIT,
        client.request(req.body(Full::new(Bytes::new())).unwrap()),
    )
    .await
    .expect("http request timed out")
    .expect("http request");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (status, headers, body)
}

/// A JSON GET on the public port: status, `content-type` and the parsed body.
async fn get_json(node: &Node, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let (status, h, body) = get(node, "GET", path, headers).await;
    assert_eq!(
        h.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "{path}"
    );
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body:?}"));
    (status, value)
}

async fn demo_token(node: &Node, user: &str) -> String {
    let (status, body) = get_json(node, &format!("/demo/token?user={user}"), &[]).await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().expect("token").to_owned()
}

#[tokio::test]
async fn demo_serves_every_asset_with_its_content_type() {
    let node = support::start(&["--demo"]).await;
    for (path, content_type, file) in ASSETS {
        let (status, headers, body) = get(&node, "GET", path, &[]).await;
        assert_eq!(status, 200, "{path}");
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        assert_eq!(header("content-type"), Some(*content_type), "{path}");
        assert_eq!(header("cache-control"), Some("no-cache"), "{path}");
        assert_eq!(header("x-content-type-options"), Some("nosniff"), "{path}");
        let on_disk = std::fs::read(format!("{}/web/{file}", env!("CARGO_MANIFEST_DIR")))
            .expect("the file on disk");
        assert!(
            body == on_disk,
            "{path} is not the embedded {file} (rebuild?)"
        );
        // HEAD answers the same headers without a body.
        let (status, headers, body) = get(&node, "HEAD", path, &[]).await;
        assert_eq!(status, 200, "HEAD {path}");
        assert_eq!(
            headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some(*content_type)
        );
        assert!(body.is_empty(), "HEAD {path} sent a body");
    }
    // The index links to both demos; the pages load the served client.
    let (_, _, index) = get(&node, "GET", "/", &[]).await;
    let index = String::from_utf8_lossy(&index);
    assert!(index.contains("/chat.html") && index.contains("/dashboard.html"));
    for page in ["/chat.js", "/dashboard.js"] {
        let (_, _, js) = get(&node, "GET", page, &[]).await;
        assert!(String::from_utf8_lossy(&js).contains("from '/switchboard.js'"));
    }
    // Other paths and methods stay JSON errors; the WebSocket endpoint is unchanged.
    assert_eq!(get_json(&node, "/nope.js", &[]).await, (404, not_found()));
    assert_eq!(get_json(&node, "/demo", &[]).await, (404, not_found()));
    let (status, headers, body) = get(&node, "POST", "/chat.html", &[]).await;
    assert_eq!(status, 405);
    assert_eq!(
        headers.get("allow").and_then(|v| v.to_str().ok()),
        Some("GET, HEAD")
    );
    let body: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(body["error"], "method_not_allowed");
    node.connect("alice").await;
}

#[tokio::test]
async fn demo_token_is_accepted_by_the_node() {
    let node = support::start(&["--demo"]).await;
    let (status, headers, body) = get(&node, "GET", "/demo/token?user=alice", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let body: Value = serde_json::from_slice(&body).expect("JSON");
    let token = body["token"].as_str().expect("token");
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{body}");

    // Signed with the node's secret, for one hour, with the demo's permissions.
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_required_spec_claims(&["sub", "exp"]);
    let claims = jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(support::SECRET.as_bytes()),
        &validation,
    )
    .expect("a token signed with the node's secret")
    .claims;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["channels"], json!(["room:*"]));
    assert_eq!(claims["publish"], json!(["room:*", "user:*"]));
    let exp = claims["exp"].as_u64().expect("exp");
    let now = support::now_secs();
    assert!(
        (now + 3590..=now + 3610).contains(&exp),
        "exp {exp}, now {now}"
    );

    // The node accepts it: alice connects, joins a room, writes to it and to bob.
    let (mut alice, welcome) = node.connect_token(token).await;
    assert_eq!(welcome["user"], "alice");
    let reply = alice.subscribe(1, "room:lobby").await;
    assert_eq!(reply["ok"], true, "{reply}");
    for (id, channel) in [(2, "room:lobby"), (3, "user:bob")] {
        alice
            .send(json!({"type": "publish", "id": id, "channel": channel, "data": {"text": "hi"}}))
            .await;
        let reply = alice.reply(id).await;
        assert_eq!(reply["ok"], true, "{channel}: {reply}");
    }
    // A percent-encoded user id is decoded.
    let token = demo_token(&node, "bob%40example.com").await;
    let (_, welcome) = node.connect_token(&token).await;
    assert_eq!(welcome["user"], "bob@example.com");
}

#[tokio::test]
async fn demo_token_refuses_bad_users() {
    let node = support::start(&["--demo"]).await;
    let long = "a".repeat(300);
    for path in [
        "/demo/token".to_owned(),
        "/demo/token?user=".to_owned(),
        "/demo/token?name=alice".to_owned(),
        "/demo/token?user=a%20b".to_owned(),
        "/demo/token?user=al/ice".to_owned(),
        format!("/demo/token?user={long}"),
    ] {
        let (status, body) = get_json(&node, &path, &[]).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"], "bad_request", "{path}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

#[tokio::test]
async fn demo_token_needs_an_hmac_secret() {
    let key = format!("{}/tests/keys/ed25519.pub", env!("CARGO_MANIFEST_DIR"));
    let node = support::start_env(
        &[
            "--demo",
            "--jwt-public-key",
            &key,
            "--jwt-algorithm",
            "EdDSA",
        ],
        &[("SWITCHBOARD_JWT_SECRET", "")],
    )
    .await;
    let (status, body) = get_json(&node, "/demo/token?user=alice", &[]).await;
    assert_eq!(status, 501, "{body}");
    assert_eq!(body["error"], "not_implemented", "{body}");
    // The files are still served.
    let (status, _, _) = get(&node, "GET", "/chat.html", &[]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn without_demo_nothing_is_served() {
    let node = support::start(&[]).await;
    let paths = ASSETS.iter().map(|(path, _, _)| *path).chain([
        "/demo/token?user=alice",
        "/demo/history",
        "/demo/presence",
    ]);
    for path in paths {
        assert_eq!(
            get_json(&node, path, &[]).await,
            (404, not_found()),
            "{path}"
        );
        let (status, _, _) = get(&node, "POST", path, &[]).await;
        assert_eq!(status, 404, "POST {path}");
    }
    // Exactly what `support::Node::http` sees as well.
    let (status, body) = node.http(node.public, "GET", "/", &[], Bytes::new()).await;
    assert_eq!(status, 404);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).expect("JSON"),
        not_found()
    );
}

#[tokio::test]
async fn demo_history_and_presence_need_a_token_that_may_subscribe() {
    let node = support::start(&["--demo", "--history", "room:*=100/3600"]).await;
    let token = demo_token(&node, "alice").await;
    let (mut alice, _) = node.connect_token(&token).await;
    let reply = alice.subscribe(1, "room:lobby").await;
    assert_eq!(reply["ok"], true, "{reply}");
    let epoch = reply["epoch"].as_str().expect("epoch").to_owned();
    let api = node.api_client();
    for n in 1..=5 {
        api.publish("room:lobby", json!({"text": format!("m{n}")}))
            .await;
    }
    let bearer = format!("Bearer {token}");
    let auth = [("authorization", bearer.as_str())];

    // The newest messages, oldest first, as message frames.
    let (status, body) = get_json(&node, "/demo/history?channel=room:lobby", &auth).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["epoch"].as_str(), body["offset"].as_u64()),
        (Some(epoch.as_str()), Some(5))
    );
    let offsets: Vec<u64> = body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["offset"].as_u64().expect("offset"))
        .collect();
    assert_eq!(offsets, [1, 2, 3, 4, 5]);
    assert_eq!(body["messages"][0]["type"], "message");
    assert_eq!(body["messages"][0]["data"], json!({"text": "m1"}));
    let (status, body) = get_json(&node, "/demo/history?channel=room%3Alobby&limit=2", &auth).await;
    assert_eq!(status, 200, "{body}");
    let texts: Vec<&str> = body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["data"]["text"].as_str().expect("text"))
        .collect();
    assert_eq!(texts, ["m4", "m5"]);

    // Who is in the room.
    let (status, body) = get_json(&node, "/demo/presence?channel=room:lobby", &auth).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["users"], json!(["alice"]), "{body}");
    assert_eq!(body["connections"], 1, "{body}");

    // Refusals.
    for (path, headers, status, code) in [
        (
            "/demo/history?channel=room:lobby",
            &[][..],
            401,
            "missing_token",
        ),
        (
            "/demo/presence?channel=room:lobby",
            &[("authorization", "Bearer nope")][..],
            401,
            "invalid_token",
        ),
        (
            "/demo/history?channel=user:bob",
            &auth[..],
            403,
            "forbidden",
        ),
        (
            "/demo/presence?channel=user:alice",
            &auth[..],
            403,
            "forbidden",
        ),
        ("/demo/history?channel=lobby", &auth[..], 400, "bad_channel"),
        (
            "/demo/history?channel=chat:x",
            &auth[..],
            400,
            "bad_channel",
        ),
        ("/demo/presence", &auth[..], 400, "bad_channel"),
        (
            "/demo/history?channel=room:lobby&limit=0",
            &auth[..],
            400,
            "bad_request",
        ),
        (
            "/demo/history?channel=room:lobby&limit=201",
            &auth[..],
            400,
            "bad_request",
        ),
    ] {
        let (got, body) = get_json(&node, path, headers).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(code)),
            "{path}: {body}"
        );
    }
}
