//! The node's life: start the router, bind both listeners (plain or TLS), serve, and drain on
//! SIGTERM/SIGINT (readiness off, stop accepting, `goaway` + 1012 spread over the drain
//! window, exit before the deadline).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use rand::Rng as _;
use switchboard_proto::{close, ServerFrame};
use switchboard_router::memory::MemoryCluster;
use switchboard_router::{NodeStatus, RedisRouter, RedisSettings, Router};
use tokio::net::{TcpListener, TcpSocket};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::conn::outbound::CloseRequest;
use crate::http::{error, Body};
use crate::hub::Hub;
use crate::metrics as m;
use crate::node::Node;

/// Listen backlog of both listeners (connect storms must not overflow it).
const BACKLOG: u32 = 4096;

/// Builds the router this configuration asks for.
fn router(config: &Config) -> anyhow::Result<Arc<dyn Router>> {
    match &config.redis_url {
        None => Ok(MemoryCluster::standalone(
            config.node_id.clone(),
            config.history.clone(),
            config.lease,
        )),
        Some(url) => {
            let mut s = RedisSettings::new(url.clone(), config.node_id.clone());
            s.prefix.clone_from(&config.redis_prefix);
            s.events_stream.clone_from(&config.events_stream);
            s.lease = config.lease;
            s.probe_interval = config.probe_interval;
            s.command_timeout = config.redis_timeout;
            s.replica_acks = config.redis_replica_acks;
            s.policies = config.history.clone();
            Ok(RedisRouter::new(s).map_err(|e| anyhow::anyhow!("--redis-url: {e}"))?)
        }
    }
}

fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket
        .bind(addr)
        .with_context(|| format!("cannot bind {addr}"))?;
    Ok(socket.listen(BACKLOG)?)
}

/// Runs a node until it is told to stop and has drained.
pub async fn run(config: Config, metrics: PrometheusHandle) -> anyhow::Result<()> {
    crate::metrics::record_max_connections(config.max_connections);
    // With --jwt-jwks-url: the first fetch of the keys (exit 1 when it fails, unless
    // allowed), then their background refresh.
    config
        .auth
        .start()
        .await
        .map_err(anyhow::Error::msg)
        .context("cannot load the JWT keys of --jwt-jwks-url")?;
    let router = router(&config)?;
    let (hub, repairs) = Hub::new();
    let hub = Arc::new(hub);
    router
        .start(hub.clone())
        .await
        .context("cannot start the backplane")?;
    tokio::spawn(crate::repair::run(
        router.clone(),
        config.history.clone(),
        repairs,
    ));
    metrics::gauge!(m::BACKPLANE_UP).set(1.0);
    let tls = match &config.tls {
        Some(files) => {
            let certs = crate::tls::Certs::new(files.loaded.key.clone());
            let acceptor = TlsAcceptor::from(crate::tls::server_config(certs.clone())?);
            Some((files.clone(), certs, acceptor))
        }
        None => None,
    };
    let public = bind(config.listen)?;
    let internal = bind(config.admin_listen)?;
    let node = Arc::new(Node::new(config, router, hub, metrics));
    let stop = stop_signal();
    println!(
        "listening public={} internal={}",
        public.local_addr()?,
        internal.local_addr()?
    );
    tracing::info!(node = %node.config.node_id, "node started");

    let (public_tls, internal_tls) = match tls {
        Some((files, certs, acceptor)) => {
            tracing::info!(
                cert = %files.cert.display(),
                internal = files.admin,
                "serving TLS"
            );
            let internal = files.admin.then(|| acceptor.clone());
            tokio::spawn(crate::tls::watch(files, certs, node.shutdown.clone()));
            (Some(acceptor), internal)
        }
        None => (None, None),
    };
    let stop_public = CancellationToken::new();
    let stop_internal = CancellationToken::new();
    tokio::spawn(accept(
        public,
        public_tls,
        node.clone(),
        stop_public.clone(),
        Listener::Public,
    ));
    tokio::spawn(accept(
        internal,
        internal_tls,
        node.clone(),
        stop_internal.clone(),
        Listener::Internal,
    ));
    tokio::spawn(heartbeat(node.clone()));
    tokio::spawn(crate::sweeper::run(
        node.sweeper.clone(),
        node.hub.clone(),
        node.shutdown.clone(),
        node.config.heartbeat,
        node.config.idle_timeout(),
    ));

    stop.await;
    drain(&node, &stop_public).await;
    stop_internal.cancel();
    node.router.shutdown().await;
    tracing::info!("node stopped");
    Ok(())
}

/// Registers the SIGTERM/SIGINT handlers now and returns what waits for either: set up
/// before the `listening` line, so that a signal right after it starts a drain instead of
/// killing the process.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            let recv = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = recv(term) => {}
                _ = recv(int) => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Renews the node's registry lease and reports its status.
async fn heartbeat(node: Arc<Node>) {
    let every = (node.config.lease / 3).max(Duration::from_millis(200));
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = node.shutdown.cancelled() => return,
        }
        let status = NodeStatus {
            connections: node.hub.len() as u64,
            draining: node.is_draining(),
        };
        if let Err(e) = node.router.heartbeat(status).await {
            tracing::warn!(error = %e, "registry heartbeat failed");
        }
    }
}

/// Closes every connection with `goaway` then 1012, spread evenly over most of the
/// drain window, and waits for them to finish before the deadline.
async fn drain(node: &Arc<Node>, stop_public: &CancellationToken) {
    if !node.start_drain() {
        return;
    }
    metrics::gauge!(m::DRAINING).set(1.0);
    stop_public.cancel();
    let window = node.config.drain;
    let started = tokio::time::Instant::now();
    let deadline = started + window.mul_f64(0.95);
    let _ = node
        .router
        .heartbeat(NodeStatus {
            connections: node.hub.len() as u64,
            draining: true,
        })
        .await;
    let conns = node.hub.all();
    tracing::info!(
        connections = conns.len(),
        window_ms = window.as_millis() as u64,
        "draining"
    );
    let spread = window.mul_f64(0.6);
    let step = if conns.is_empty() {
        Duration::ZERO
    } else {
        spread / conns.len() as u32
    };
    let max_reconnect_ms = (window.as_millis() as u64 / 4).clamp(500, 5000);
    for (i, conn) in conns.iter().enumerate() {
        if !step.is_zero() {
            tokio::time::sleep_until(started + step * i as u32).await;
        }
        let reconnect_ms = rand::rng().random_range(100..=max_reconnect_ms);
        conn.send(&ServerFrame::Goaway {
            reason: "draining".into(),
            reconnect_ms,
        });
        conn.outbound
            .close_after_message(CloseRequest::new(close::SERVICE_RESTART, "draining"));
    }
    // Wait for the sockets (hyper's graceful shutdown does not see upgraded ones).
    while node.hub.len() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.shutdown.cancel();
    node.tracker.close();
    let rest = deadline.saturating_duration_since(tokio::time::Instant::now())
        + Duration::from_millis(200);
    if tokio::time::timeout(rest, node.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("drain deadline passed with tasks still running");
    }
}

#[derive(Clone, Copy)]
enum Listener {
    Public,
    Internal,
}

/// Accepts connections until `stop`; with `tls`, each one's handshake comes first (in
/// its own task, under the handshake timeout).
async fn accept(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    node: Arc<Node>,
    stop: CancellationToken,
    kind: Listener,
) {
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let _ = stream.set_nodelay(true);
        let node2 = node.clone();
        match &tls {
            None => {
                node.tracker
                    .spawn(serve_http(TokioIo::new(stream), node2, kind));
            }
            Some(acceptor) => {
                let handshake = acceptor.accept(stream);
                node.tracker.spawn(async move {
                    let timeout = node2.config.handshake_timeout;
                    let handshake = tokio::time::timeout(timeout, handshake);
                    let stream = tokio::select! {
                        r = handshake => match r {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, "TLS handshake failed");
                                metrics::counter!(m::TLS_HANDSHAKE_FAILURES).increment(1);
                                return;
                            }
                            Err(_) => {
                                tracing::debug!("TLS handshake timed out");
                                metrics::counter!(m::TLS_HANDSHAKE_FAILURES).increment(1);
                                return;
                            }
                        },
                        _ = node2.shutdown.cancelled() => return,
                    };
                    serve_http(TokioIo::new(stream), node2, kind).await;
                });
            }
        }
    }
}

/// Serves HTTP/1.1 (with upgrades) on one accepted connection, plain or TLS.
async fn serve_http<I>(io: I, node: Arc<Node>, kind: Listener)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let node2 = node.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        let node = node2.clone();
        async move {
            Ok::<_, Infallible>(match kind {
                Listener::Public => public(&node, req).await,
                Listener::Internal => internal(&node, req).await,
            })
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(node.config.handshake_timeout)
        .serve_connection(io, svc)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = node.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
    }
}

async fn public(node: &Arc<Node>, req: Request<Incoming>) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/ws") => crate::ws::upgrade(node, req).await,
        (_, "/ws") => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use GET",
        ),
        (&Method::GET, "/echo") if node.config.dev_echo => crate::ws::echo::upgrade(node, req),
        (_, path) if node.config.demo && crate::web::serves(path) => {
            crate::web::handle(node, req).await
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "the public port serves GET /ws",
        ),
    }
}

async fn internal(node: &Arc<Node>, req: Request<Incoming>) -> Response<Body> {
    crate::api::handle(node, req).await
}
