//! Bosun's data plane: runs from Envoy v3 configuration (a bootstrap's static resources today; ADS is
//! next), accepts on its listeners, routes HTTP with Envoy's semantics, proxies TCP, and serves Envoy's
//! admin endpoints.
//!
//! The config is one immutable [`Runtime`] behind an `ArcSwap`: a connection takes the current one
//! when it is accepted, so a config change never tears a request in half.

pub mod access_log;
mod admin;
pub mod http;
pub mod stats;
mod tcp;
pub mod tls;
pub mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use proxy_model::listener::{Listener, NetworkFilter};
use proxy_model::snapshot::ProxySettings;
use proxy_model::{ModelError, Snapshot};
use tokio::net::TcpListener;
use xds_api::pb::envoy::config::bootstrap::v3::Bootstrap;

use crate::http::{ConnContext, HcmStats};
use crate::stats::Registry;
use crate::upstream::ClusterRuntime;

/// Why the proxy cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("the configuration cannot be run:\n{}", .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Config(Vec<ModelError>),
    #[error("cannot listen on {address} ({what}): {source}")]
    Bind {
        address: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// Command-line options, as Envoy's.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long in-flight requests may take to finish after SIGTERM.
    pub drain_time: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            drain_time: Duration::from_secs(5),
        }
    }
}

/// A config with its live cluster state: what requests are served from.
#[derive(Debug)]
pub struct Runtime {
    pub snapshot: Snapshot,
    pub clusters: HashMap<String, Arc<ClusterRuntime>>,
}

impl Runtime {
    fn new(snapshot: Snapshot, registry: &Registry) -> Runtime {
        let clusters = snapshot
            .clusters
            .iter()
            .map(|(name, c)| {
                (
                    name.clone(),
                    Arc::new(ClusterRuntime::new(c.clone(), registry)),
                )
            })
            .collect();
        Runtime { snapshot, clusters }
    }
}

/// The running proxy's shared state.
#[derive(Debug)]
pub struct Proxy {
    pub runtime: ArcSwap<Runtime>,
    pub registry: Arc<Registry>,
    pub settings: ProxySettings,
    pub started: Instant,
    ready: AtomicBool,
    draining: AtomicBool,
}

impl Proxy {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && !self.draining.load(Ordering::Relaxed)
    }
}

/// Builds the config, binds every listener and the admin port, serves until `shutdown` completes, then
/// drains: stops accepting and gives in-flight requests up to `drain_time`.
pub async fn run(
    bootstrap: &Bootstrap,
    options: Options,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ProxyError> {
    let (snapshot, settings) = Snapshot::from_bootstrap(bootstrap).map_err(ProxyError::Config)?;
    let registry = Arc::new(Registry::default());
    let runtime = Runtime::new(snapshot, &registry);
    let listeners: Vec<Arc<Listener>> = runtime.snapshot.listeners.clone();
    let proxy = Arc::new(Proxy {
        runtime: ArcSwap::from_pointee(runtime),
        registry,
        settings: settings.clone(),
        started: Instant::now(),
        ready: AtomicBool::new(false),
        draining: AtomicBool::new(false),
    });

    // Bind everything before serving anything, so a taken port fails the start cleanly.
    let mut bound = Vec::new();
    for l in listeners.iter().filter(|l| l.bind_to_port) {
        let address = format!("{}:{}", l.host, l.port);
        let socket = TcpListener::bind(&address)
            .await
            .map_err(|source| ProxyError::Bind {
                address: address.clone(),
                what: format!("listener {:?}", l.name),
                source,
            })?;
        bound.push((l.clone(), socket));
    }
    let admin = match &settings.admin {
        Some((host, port)) => {
            let address = format!("{host}:{port}");
            Some(
                TcpListener::bind(&address)
                    .await
                    .map_err(|source| ProxyError::Bind {
                        address,
                        what: "admin".to_owned(),
                        source,
                    })?,
            )
        }
        None => None,
    };

    let graceful = Arc::new(GracefulShutdown::new());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for (listener, socket) in bound {
        tasks.spawn(accept_loop(
            proxy.clone(),
            listener,
            socket,
            graceful.clone(),
            stop_rx.clone(),
        ));
    }
    if let Some(socket) = admin {
        tasks.spawn(admin::serve(proxy.clone(), socket, stop_rx.clone()));
    }
    proxy.ready.store(true, Ordering::Relaxed);
    tracing::info!(listeners = listeners.len(), "bosun proxy ready");

    shutdown.await;
    tracing::info!(drain_time = ?options.drain_time, "draining");
    proxy.draining.store(true, Ordering::Relaxed);
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    match Arc::try_unwrap(graceful) {
        Ok(g) => {
            if tokio::time::timeout(options.drain_time, g.shutdown())
                .await
                .is_err()
            {
                tracing::warn!("drain time over; closing the remaining connections");
            }
        }
        Err(_) => tracing::warn!("connections still referenced at shutdown"),
    }
    Ok(())
}

async fn accept_loop(
    proxy: Arc<Proxy>,
    listener: Arc<Listener>,
    socket: TcpListener,
    graceful: Arc<GracefulShutdown>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let registry = proxy.registry.clone();
    let mut hcm_stats: HashMap<String, Arc<HcmStats>> = HashMap::new();
    for chain in listener
        .filter_chains
        .iter()
        .chain(&listener.default_filter_chain)
    {
        if let NetworkFilter::Http(hcm) = &chain.network {
            hcm_stats
                .entry(hcm.stat_prefix.clone())
                .or_insert_with(|| Arc::new(HcmStats::new(&registry, &hcm.stat_prefix)));
        }
    }
    let hcm_stats = Arc::new(hcm_stats);
    let cx_total = registry.counter(&format!(
        "listener.{}:{}.downstream_cx_total",
        listener.host, listener.port
    ));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = socket.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(listener = %listener.name, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        cx_total.inc();
        let _ = stream.set_nodelay(true);
        let runtime = proxy.runtime.load_full();
        let (listener, stats) = (listener.clone(), hcm_stats.clone());
        let graceful = Arc::downgrade(&graceful);
        tokio::spawn(async move {
            // Choose the filter chain (by the ClientHello when inspected) and terminate TLS.
            let conn = match tls::accept(stream, &listener).await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::debug!(listener = %listener.name, "connection from {peer} closed: {e}");
                    return;
                }
            };
            match &conn.chain.network {
                NetworkFilter::Http(hcm) => {
                    let (Some(stats), Some(graceful)) =
                        (stats.get(&hcm.stat_prefix), graceful.upgrade())
                    else {
                        return; // Shutting down.
                    };
                    serve_http(
                        conn.io,
                        peer,
                        runtime,
                        hcm.clone(),
                        stats.clone(),
                        &graceful,
                    );
                }
                NetworkFilter::Tcp(t) => {
                    tcp::proxy(conn.io, runtime.clone(), &t.clusters, t.idle_timeout).await;
                }
            }
        });
    }
}

fn serve_http(
    stream: tls::Io,
    peer: SocketAddr,
    runtime: Arc<Runtime>,
    hcm: Arc<proxy_model::listener::HttpConnectionManager>,
    stats: Arc<HcmStats>,
    graceful: &GracefulShutdown,
) {
    let ctx = Arc::new(ConnContext {
        runtime,
        hcm,
        peer,
        stats,
    });
    let service = service_fn(move |req| http::serve(req, ctx.clone()));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Envoy's default `max_request_headers_kb` is 60: larger request headers get 431.
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(60))
        .max_buf_size(60 * 1024);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(Some(1024));
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .into_owned();
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("connection from {peer} ended: {e}");
        }
    });
}
