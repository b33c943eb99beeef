//! The tonic transport: [`AdsServer`] implements Envoy's `AggregatedDiscoveryService` (state of the
//! world and delta), one task per stream running the sans-IO protocol against the proxy's snapshot.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tonic::Status;
use tonic::transport::server::TcpIncoming;
use tracing::{debug, info, warn};

use crate::cache::{ProxyInfo, SnapshotCache, SnapshotRx};
use crate::error::XdsServerError;
use crate::grpc::{AdsService, Requests};
use crate::protocol::{AdsStream, Event, ProtocolError};
use crate::response::Prepared;
use crate::snapshot::{Snapshot, short_name};

/// Bounds on the server's queues and waits.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Responses queued per stream before the stream's task waits on the proxy to read.
    pub outbound_queue: usize,
    /// How long one response may wait for room in the queue; a proxy that reads slower is cut off
    /// (it reconnects and gets the current state).
    pub send_timeout: Duration,
    /// How many streams may compute and queue a push at the same time.
    pub max_concurrent_pushes: usize,
    /// How long a push waits for its turn before going ahead anyway.
    pub push_wait: Duration,
    /// How long a new stream may take to send its first request (with the node).
    pub first_request_timeout: Duration,
    /// The largest message accepted or sent.
    pub max_message_size: usize,
    /// HTTP/2 keepalive PING interval and timeout: dead proxies are noticed.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// How long [`RunningServer::stop`] waits for streams to end.
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            outbound_queue: 16,
            send_timeout: Duration::from_secs(30),
            max_concurrent_pushes: 100,
            push_wait: Duration::from_secs(10),
            first_request_timeout: Duration::from_secs(30),
            max_message_size: 64 << 20,
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

struct Inner {
    cache: SnapshotCache,
    config: ServerConfig,
    pushes: Semaphore,
    shutdown: watch::Sender<bool>,
}

/// The ADS gRPC service over a [`SnapshotCache`]. Cheap to clone (shared).
#[derive(Clone)]
pub struct AdsServer {
    inner: Arc<Inner>,
}

impl fmt::Debug for AdsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdsServer")
            .field("cache", &self.inner.cache)
            .field("config", &self.inner.config)
            .finish()
    }
}

impl AdsServer {
    /// A server of `cache` with the default bounds.
    pub fn new(cache: SnapshotCache) -> AdsServer {
        AdsServer::with_config(cache, ServerConfig::default())
    }

    /// A server of `cache` with explicit bounds.
    pub fn with_config(cache: SnapshotCache, mut config: ServerConfig) -> AdsServer {
        config.outbound_queue = config.outbound_queue.max(1);
        config.max_concurrent_pushes = config.max_concurrent_pushes.max(1);
        let (shutdown, _) = watch::channel(false);
        AdsServer {
            inner: Arc::new(Inner {
                pushes: Semaphore::new(config.max_concurrent_pushes),
                cache,
                config,
                shutdown,
            }),
        }
    }

    /// The cache it serves.
    pub fn cache(&self) -> &SnapshotCache {
        &self.inner.cache
    }

    /// The gRPC service (both ADS methods, with the message size bound applied); add it to a
    /// `tonic` server.
    pub fn service(&self) -> AdsService {
        AdsService::new(self.clone())
    }

    /// Ends every stream (each proxy sees its stream close and reconnects elsewhere or later).
    pub fn shutdown_streams(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Binds `addr` (port 0 picks one) and serves in the background until [`RunningServer::stop`].
    pub async fn start(self, addr: SocketAddr) -> Result<RunningServer, XdsServerError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| XdsServerError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| XdsServerError::Bind { addr, source })?;
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let config = &self.inner.config;
        let server = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(config.keepalive_interval))
            .http2_keepalive_timeout(Some(config.keepalive_timeout))
            .tcp_nodelay(true);
        let svc = self.service();
        let task = tokio::spawn(async move {
            let signal = async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            };
            server
                .serve_with_incoming_shutdown(svc, incoming, signal)
                .await
                .map_err(|e| XdsServerError::Serve {
                    addr: local,
                    reason: crate::error::chain(&e),
                })
        });
        info!(%local, "ADS server listening");
        Ok(RunningServer {
            addr: local,
            server: self,
            stop: stop_tx,
            task,
        })
    }
}

/// Binds `addr` and serves `cache` over ADS (state of the world and delta) in the background, with the
/// default bounds.
pub async fn serve(
    addr: SocketAddr,
    cache: SnapshotCache,
) -> Result<RunningServer, XdsServerError> {
    AdsServer::new(cache).start(addr).await
}

/// A server started by [`AdsServer::start`] or [`serve`]. Dropping it leaves it running; call
/// [`stop`](Self::stop).
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    server: AdsServer,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), XdsServerError>>,
}

impl RunningServer {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `http://` URI clients connect to.
    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The server (its cache, its streams).
    pub fn server(&self) -> &AdsServer {
        &self.server
    }

    /// Stops accepting, ends every stream, and waits (at most the configured grace) for the
    /// connections to close.
    pub async fn stop(self) -> Result<(), XdsServerError> {
        self.server.shutdown_streams();
        let _ = self.stop.send(true);
        let grace = self.server.inner.config.shutdown_grace;
        let mut task = self.task;
        match timeout(grace, &mut task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(XdsServerError::Task(e.to_string())),
            Err(_) => {
                task.abort();
                Err(XdsServerError::StopTimeout { grace })
            }
        }
    }
}

impl AdsServer {
    /// Starts a stream's task on `incoming`; its responses (or the status that ends it) arrive on
    /// the returned channel.
    pub(crate) fn open<P: AdsStream>(
        &self,
        incoming: Requests<P::Request>,
        address: Option<SocketAddr>,
    ) -> mpsc::Receiver<Result<Prepared<P::Response>, Status>> {
        let (tx, rx) = mpsc::channel(self.inner.config.outbound_queue);
        let conn = Connection::<P> {
            server: self.inner.clone(),
            id: self.inner.cache.next_connection_id(),
            address,
            tx,
        };
        tokio::spawn(conn.run(incoming));
        rx
    }

    /// The largest message a stream decodes or encodes.
    pub(crate) fn max_message_size(&self) -> usize {
        self.inner.config.max_message_size
    }
}

// === impl Connection ===

/// One stream's task.
struct Connection<P: AdsStream> {
    server: Arc<Inner>,
    id: u64,
    address: Option<SocketAddr>,
    tx: mpsc::Sender<Result<Prepared<P::Response>, Status>>,
}

/// Why a stream's task stopped.
enum End {
    /// The proxy closed its side, or the server is shutting down.
    Closed,
    /// The proxy did not read its responses within the send timeout.
    Slow,
    /// The stream failed or the proxy sent a request the server cannot serve.
    Error(Status),
}

impl<P: AdsStream> Connection<P> {
    async fn run(self, mut incoming: Requests<P::Request>) {
        let cfg = &self.server.config;
        let mut shutdown = self.server.shutdown.subscribe();
        if *shutdown.borrow_and_update() {
            return;
        }
        let first = tokio::select! {
            _ = shutdown.changed() => return,
            r = timeout(cfg.first_request_timeout, incoming.message()) => r,
        };
        let first = match first {
            Ok(Ok(Some(req))) => req,
            Ok(Ok(None)) => return,
            Ok(Err(status)) => {
                debug!(error = %status, "ADS stream failed before its first request");
                return;
            }
            Err(_) => {
                let _ = self.tx.try_send(Err(Status::deadline_exceeded(format!(
                    "no ADS request within {:?} of opening the stream",
                    cfg.first_request_timeout
                ))));
                return;
            }
        };
        let Some(node) = P::request_node(&first)
            .filter(|n| !n.id.is_empty())
            .cloned()
        else {
            let _ = self.tx.try_send(Err(Status::invalid_argument(
                ProtocolError::MissingNode.to_string(),
            )));
            return;
        };
        let cache = self.server.cache.clone();
        // Declared before the snapshot receiver, so the receiver is dropped first.
        let registration =
            cache.register(ProxyInfo::from_node(self.id, &node, self.address, P::MODE));
        let mut snapshots = cache.watch(&node.id);
        info!(
            proxy = %node.id,
            connection = registration.id(),
            address = ?self.address,
            mode = P::MODE.as_str(),
            "proxy connected"
        );
        let end = self
            .serve(
                &node.id,
                first,
                &mut incoming,
                &mut snapshots,
                &mut shutdown,
            )
            .await;
        match end {
            End::Closed => info!(proxy = %node.id, connection = self.id, "proxy disconnected"),
            End::Slow => {
                cache
                    .atomic_counters()
                    .slow_consumers
                    .fetch_add(1, Ordering::Relaxed);
                warn!(
                    proxy = %node.id,
                    connection = self.id,
                    timeout = ?cfg.send_timeout,
                    "proxy did not read its xDS responses in time; closing its stream (it reconnects)"
                );
            }
            End::Error(status) => {
                warn!(proxy = %node.id, connection = self.id, error = %status.message(), "ADS stream ended");
                let _ = self.tx.try_send(Err(status));
            }
        }
        drop(snapshots);
        drop(registration);
    }

    async fn serve(
        &self,
        node_id: &str,
        first: P::Request,
        incoming: &mut Requests<P::Request>,
        snapshots: &mut SnapshotRx,
        shutdown: &mut watch::Receiver<bool>,
    ) -> End {
        let mut proto = P::new(self.id);
        let mut current: Option<Arc<Snapshot>> = snapshots.borrow_and_update().clone();
        let mut watching = true;
        if let Err(end) = self
            .request(&mut proto, node_id, first, current.as_deref())
            .await
        {
            return end;
        }
        loop {
            tokio::select! {
                _ = shutdown.changed() => return End::Closed,
                m = incoming.message() => match m {
                    Ok(Some(req)) => {
                        if let Err(end) = self.request(&mut proto, node_id, req, current.as_deref()).await {
                            return end;
                        }
                    }
                    Ok(None) => return End::Closed,
                    Err(status) => {
                        debug!(proxy = %node_id, error = %status, "ADS stream read failed");
                        return End::Closed;
                    }
                },
                r = snapshots.changed(), if watching => {
                    if r.is_err() {
                        watching = false;
                        continue;
                    }
                    current = snapshots.borrow_and_update().clone();
                    if let Some(snap) = current.clone()
                        && let Err(end) = self.push(&mut proto, node_id, &snap).await
                    {
                        return end;
                    }
                }
            }
        }
    }

    async fn request(
        &self,
        proto: &mut P,
        node_id: &str,
        req: P::Request,
        snapshot: Option<&Snapshot>,
    ) -> Result<(), End> {
        let outcome = proto
            .handle_request(req, snapshot)
            .map_err(|e| End::Error(Status::invalid_argument(e.to_string())))?;
        self.record(node_id, &outcome.events);
        let result = self.send_all(outcome.responses).await;
        self.publish(proto, snapshot);
        result
    }

    async fn push(&self, proto: &mut P, node_id: &str, snapshot: &Snapshot) -> Result<(), End> {
        let cfg = &self.server.config;
        // Bound how many streams build and queue pushes at once; never wait for ever.
        let permit = timeout(cfg.push_wait, self.server.pushes.acquire()).await;
        let responses = proto.snapshot_changed(snapshot);
        if !responses.is_empty() {
            self.server
                .cache
                .atomic_counters()
                .pushes
                .fetch_add(1, Ordering::Relaxed);
            debug!(proxy = %node_id, version = snapshot.version(), responses = responses.len(), "push");
        }
        let result = self.send_all(responses).await;
        drop(permit);
        self.publish(proto, Some(snapshot));
        result
    }

    async fn send_all(&self, responses: Vec<Prepared<P::Response>>) -> Result<(), End> {
        let counters = self.server.cache.atomic_counters();
        for r in responses {
            match timeout(self.server.config.send_timeout, self.tx.send(Ok(r))).await {
                Ok(Ok(())) => {
                    counters.responses.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(_)) => return Err(End::Closed),
                Err(_) => return Err(End::Slow),
            }
        }
        Ok(())
    }

    fn record(&self, node_id: &str, events: &[Event]) {
        let counters = self.server.cache.atomic_counters();
        for e in events {
            match e {
                Event::Ack {
                    type_url, version, ..
                } => {
                    counters.acks.fetch_add(1, Ordering::Relaxed);
                    debug!(proxy = %node_id, r#type = short_name(type_url), %version, "ACK");
                }
                Event::Nack {
                    type_url,
                    version,
                    nonce,
                    message,
                } => {
                    counters.nacks.fetch_add(1, Ordering::Relaxed);
                    warn!(
                        proxy = %node_id,
                        r#type = short_name(type_url),
                        %version,
                        %nonce,
                        reason = %message,
                        "proxy rejected the config (NACK); it keeps its last accepted config"
                    );
                }
                Event::StaleNonce { type_url, nonce } => {
                    counters.stale_nonces.fetch_add(1, Ordering::Relaxed);
                    debug!(proxy = %node_id, r#type = short_name(type_url), %nonce, "stale nonce ignored");
                }
                Event::Subscribed { type_url } => {
                    debug!(proxy = %node_id, r#type = short_name(type_url), "subscribed");
                }
                Event::SubscriptionChanged {
                    type_url,
                    added,
                    removed,
                } => {
                    debug!(
                        proxy = %node_id,
                        r#type = short_name(type_url),
                        added = added.len(),
                        removed = removed.len(),
                        "subscription changed"
                    );
                }
            }
        }
    }

    fn publish(&self, proto: &P, snapshot: Option<&Snapshot>) {
        self.server
            .cache
            .update_status(self.id, snapshot.map(Snapshot::version), |types| {
                proto.copy_status_into(types)
            });
    }
}
