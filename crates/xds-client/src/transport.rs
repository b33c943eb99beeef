//! The tonic transport: runs one protocol core over an ADS gRPC stream on tokio, reconnecting with
//! jittered exponential backoff, until stopped.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use xds_api::pb::envoy::config::core::v3::Node;
use xds_api::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use xds_api::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};

use crate::core::{Consumer, Event, Outcome, Session, Warming};
use crate::delta::DeltaClient;
use crate::error::{XdsError, chain};
use crate::resources::{DEFAULT_INITIAL_FETCH_TIMEOUT, FetchTimeout, ResourceType};
use crate::sotw::SotwClient;

/// Which ADS variant to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// State of the world: `StreamAggregatedResources`.
    Sotw,
    /// Incremental: `DeltaAggregatedResources`.
    Delta,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Sotw => "state-of-the-world",
            Mode::Delta => "delta",
        }
    }
}

/// How to reach the control plane, and the bounds on every wait and buffer.
#[derive(Clone, Debug)]
pub struct AdsConfig {
    /// `http://host:port` of the ADS server, or `unix:PATH` for a Unix domain socket.
    pub endpoint: String,
    /// Who this proxy is; sent on the first request of each stream.
    pub node: Node,
    pub mode: Mode,
    /// Bound on the TCP connect and on opening the stream.
    pub connect_timeout: Duration,
    /// First reconnect delay; doubles per failed attempt (jittered to 50–100 %) up to `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// How long the first CDS and the first LDS response are waited for on an open stream before
    /// going on without them, as the bootstrap's `cds_config` and `lds_config` say in
    /// `initial_fetch_timeout` (Envoy's 15 s when unset; `None`, from `0s`, waits for ever). What CDS
    /// and LDS name (EDS, RDS, VHDS, SDS) is waited for as the config source naming it says. A wait
    /// restarts on each new stream, so a control plane that is down at start does not make the proxy
    /// ready with no config.
    pub cds_initial_fetch_timeout: FetchTimeout,
    pub lds_initial_fetch_timeout: FetchTimeout,
    /// Bound on handing one request to the stream (the server must read them).
    pub send_timeout: Duration,
    /// HTTP/2 PING interval and how long to wait for its answer: a silent, dead connection is noticed.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// The largest response accepted (tonic's default, 4 MiB, is too small for big meshes).
    pub max_message_size: usize,
    /// Capacity of the outgoing request queue and of the command queue.
    pub queue_capacity: usize,
}

impl AdsConfig {
    /// The defaults: 5 s connect timeout, 0.5 s → 30 s backoff, 15 s initial fetch timeout.
    pub fn new(endpoint: impl Into<String>, node: Node, mode: Mode) -> AdsConfig {
        AdsConfig {
            endpoint: endpoint.into(),
            node,
            mode,
            connect_timeout: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            cds_initial_fetch_timeout: Some(DEFAULT_INITIAL_FETCH_TIMEOUT),
            lds_initial_fetch_timeout: Some(DEFAULT_INITIAL_FETCH_TIMEOUT),
            send_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            max_message_size: 64 << 20,
            queue_capacity: 64,
        }
    }
}

/// What the client is doing, for the admin interface and for tests.
#[derive(Clone, Debug, PartialEq)]
pub struct AdsStatus {
    pub endpoint: String,
    pub mode: Mode,
    /// A stream is open.
    pub connected: bool,
    /// Streams opened so far (1 after the first connect; more after reconnects).
    pub streams: u64,
    /// The last connection or stream error (kept after a reconnect, for diagnosis).
    pub last_error: Option<String>,
    /// The last ACKed version per subscribed type.
    pub acked_versions: BTreeMap<ResourceType, String>,
    /// The `error_detail` message of the last NACK sent.
    pub last_nack: Option<String>,
    pub acks: u64,
    pub nacks: u64,
    pub warming: Warming,
    /// The initial configuration has been applied (see [`Consumer::initial_config_complete`]).
    pub initial_config_complete: bool,
}

/// A running ADS client. Dropping it stops the stream; [`stop`](Self::stop) also returns the consumer.
pub struct AdsClient<C> {
    status: watch::Receiver<AdsStatus>,
    commands: mpsc::Sender<Command>,
    stop: watch::Sender<bool>,
    task: JoinHandle<C>,
    capacity: usize,
}

impl<C> fmt::Debug for AdsClient<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdsClient")
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
enum Command {
    Subscribe(ResourceType, BTreeSet<String>),
}

impl<C: Consumer + Send + 'static> AdsClient<C> {
    /// Starts a client of the ADS server at `endpoint` (`http://127.0.0.1:15010`) with the default
    /// bounds. It connects, and reconnects, in the background; watch [`status`](Self::status).
    pub fn connect(
        endpoint: impl Into<String>,
        node: Node,
        mode: Mode,
        consumer: C,
    ) -> Result<AdsClient<C>, XdsError> {
        AdsClient::start(AdsConfig::new(endpoint, node, mode), consumer)
    }

    /// Starts a client with explicit bounds.
    pub fn start(config: AdsConfig, consumer: C) -> Result<AdsClient<C>, XdsError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| XdsError::NoRuntime)?;
        let endpoint = endpoint(&config)?;
        let capacity = config.queue_capacity.max(8);
        let status = AdsStatus {
            endpoint: config.endpoint.clone(),
            mode: config.mode,
            connected: false,
            streams: 0,
            last_error: None,
            acked_versions: BTreeMap::new(),
            last_nack: None,
            acks: 0,
            nacks: 0,
            warming: Warming::Clusters,
            initial_config_complete: false,
        };
        let (status_tx, status_rx) = watch::channel(status);
        let (command_tx, command_rx) = mpsc::channel(capacity);
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = match config.mode {
            Mode::Sotw => {
                let mut proto = SotwClient::new(config.node.clone());
                proto.set_initial_fetch_timeouts(
                    config.cds_initial_fetch_timeout,
                    config.lds_initial_fetch_timeout,
                );
                let task = Task {
                    config,
                    endpoint,
                    capacity,
                    proto,
                    consumer,
                    status: status_tx,
                    commands: command_rx,
                    stop: stop_rx,
                };
                runtime.spawn(task.run())
            }
            Mode::Delta => {
                let mut proto = DeltaClient::new(config.node.clone());
                proto.set_initial_fetch_timeouts(
                    config.cds_initial_fetch_timeout,
                    config.lds_initial_fetch_timeout,
                );
                let task = Task {
                    config,
                    endpoint,
                    capacity,
                    proto,
                    consumer,
                    status: status_tx,
                    commands: command_rx,
                    stop: stop_rx,
                };
                runtime.spawn(task.run())
            }
        };
        Ok(AdsClient {
            status: status_rx,
            commands: command_tx,
            stop: stop_tx,
            task,
            capacity,
        })
    }
}

impl<C> AdsClient<C> {
    /// The current status.
    pub fn status(&self) -> AdsStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change (e.g. to wait for `initial_config_complete`).
    pub fn watch_status(&self) -> watch::Receiver<AdsStatus> {
        self.status.clone()
    }

    /// Waits, at most `limit`, until the initial configuration is complete; returns whether it is.
    pub async fn wait_initial_config(&self, limit: Duration) -> bool {
        let mut rx = self.status.clone();
        matches!(
            timeout(limit, rx.wait_for(|s| s.initial_config_complete)).await,
            Ok(Ok(_))
        )
    }

    /// Subscribes a named type (EDS, RDS, SDS) to exactly `names`. EDS, RDS and SDS already follow
    /// CDS and LDS on their own (the secrets their TLS contexts name with `sds_config: {ads: {}}`),
    /// and the next CDS or LDS update sets them again; this is for consumers that want other names.
    pub fn subscribe(&self, ty: ResourceType, names: BTreeSet<String>) -> Result<(), XdsError> {
        self.commands
            .try_send(Command::Subscribe(ty, names))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => XdsError::Busy {
                    capacity: self.capacity,
                },
                mpsc::error::TrySendError::Closed(_) => XdsError::Stopped,
            })
    }

    /// Stops the client (closing the stream) and returns the consumer.
    pub async fn stop(self) -> Result<C, XdsError> {
        let _ = self.stop.send(true);
        self.task.await.map_err(|e| XdsError::Task(e.to_string()))
    }
}

/// Where the ADS server is, and how its channel is configured.
#[derive(Debug, Clone)]
struct Server {
    endpoint: Endpoint,
    /// The Unix domain socket to dial instead of the endpoint's authority.
    unix: Option<UnixConnector>,
}

impl Server {
    async fn connect(&self) -> Result<Channel, tonic::transport::Error> {
        match &self.unix {
            Some(unix) => self.endpoint.connect_with_connector(unix.clone()).await,
            None => self.endpoint.connect().await,
        }
    }
}

/// Dials a Unix domain socket whatever the URI (Istio's sidecars reach the control plane through
/// their agent's socket).
#[derive(Debug, Clone)]
struct UnixConnector(Arc<std::path::Path>);

impl tower_service::Service<tonic::codegen::http::Uri> for UnixConnector {
    type Response = hyper_util::rt::TokioIo<tokio::net::UnixStream>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: tonic::codegen::http::Uri) -> Self::Future {
        let path = self.0.clone();
        Box::pin(async move {
            let stream = tokio::net::UnixStream::connect(&*path).await?;
            Ok(hyper_util::rt::TokioIo::new(stream))
        })
    }
}

fn endpoint(config: &AdsConfig) -> Result<Server, XdsError> {
    let invalid = |reason: String| XdsError::InvalidEndpoint {
        endpoint: config.endpoint.clone(),
        reason,
    };
    let (uri, unix) = match config.endpoint.strip_prefix("unix:") {
        Some(path) if !path.is_empty() => (
            // The authority only names the server in requests; the connector dials the socket.
            "http://localhost".to_owned(),
            Some(UnixConnector(Arc::from(std::path::Path::new(path)))),
        ),
        Some(_) => return Err(invalid("unix: needs a socket path".into())),
        None if config.endpoint.starts_with("http://")
            || config.endpoint.starts_with("https://") =>
        {
            (config.endpoint.clone(), None)
        }
        None => {
            return Err(invalid(
                "the scheme must be http:// (or https://, or unix: for a socket)".into(),
            ));
        }
    };
    let endpoint = Endpoint::from_shared(uri).map_err(|e| invalid(chain(&e)))?;
    Ok(Server {
        endpoint: endpoint
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(config.keepalive_interval)
            .keep_alive_timeout(config.keepalive_timeout)
            .keep_alive_while_idle(true),
        unix,
    })
}

// === impl Backoff ===

/// Exponential backoff with "equal jitter": each delay is drawn from [d/2, d], d doubling to a cap.
#[derive(Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let factor = 1u32 << self.attempt.min(16);
        self.attempt = self.attempt.saturating_add(1);
        let ceiling = self.initial.saturating_mul(factor).min(self.max);
        let half = ceiling / 2;
        let jitter = rand::rng().random_range(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter)
    }
}

// === impl Protocol ===

/// One ADS variant, as the transport drives it: a [`Session`] with its own message types.
trait Protocol: Session<Request = Self::Req> + Send + 'static {
    type Req: Send + 'static;
    type Resp: Send + 'static;
    const MODE: Mode;

    fn start_stream(&mut self) -> Vec<Self::Req>;
    fn on_response(&mut self, r: Self::Resp, c: &mut (dyn Consumer + Send)) -> Outcome<Self::Req>;
    fn open(
        client: &mut AggregatedDiscoveryServiceClient<Channel>,
        requests: ReceiverStream<Self::Req>,
    ) -> impl Future<Output = Result<tonic::Streaming<Self::Resp>, tonic::Status>> + Send;
}

impl Protocol for SotwClient {
    type Req = DiscoveryRequest;
    type Resp = DiscoveryResponse;
    const MODE: Mode = Mode::Sotw;

    fn start_stream(&mut self) -> Vec<DiscoveryRequest> {
        SotwClient::start_stream(self)
    }
    fn on_response(
        &mut self,
        r: DiscoveryResponse,
        c: &mut (dyn Consumer + Send),
    ) -> Outcome<DiscoveryRequest> {
        SotwClient::on_response(self, r, c)
    }
    async fn open(
        client: &mut AggregatedDiscoveryServiceClient<Channel>,
        requests: ReceiverStream<DiscoveryRequest>,
    ) -> Result<tonic::Streaming<DiscoveryResponse>, tonic::Status> {
        Ok(client
            .stream_aggregated_resources(requests)
            .await?
            .into_inner())
    }
}

impl Protocol for DeltaClient {
    type Req = DeltaDiscoveryRequest;
    type Resp = DeltaDiscoveryResponse;
    const MODE: Mode = Mode::Delta;

    fn start_stream(&mut self) -> Vec<DeltaDiscoveryRequest> {
        DeltaClient::start_stream(self)
    }
    fn on_response(
        &mut self,
        r: DeltaDiscoveryResponse,
        c: &mut (dyn Consumer + Send),
    ) -> Outcome<DeltaDiscoveryRequest> {
        DeltaClient::on_response(self, r, c)
    }
    async fn open(
        client: &mut AggregatedDiscoveryServiceClient<Channel>,
        requests: ReceiverStream<DeltaDiscoveryRequest>,
    ) -> Result<tonic::Streaming<DeltaDiscoveryResponse>, tonic::Status> {
        Ok(client
            .delta_aggregated_resources(requests)
            .await?
            .into_inner())
    }
}

// === impl Task ===

struct Task<P, C> {
    config: AdsConfig,
    endpoint: Server,
    capacity: usize,
    proto: P,
    consumer: C,
    status: watch::Sender<AdsStatus>,
    commands: mpsc::Receiver<Command>,
    stop: watch::Receiver<bool>,
}

/// Why a stream ended without an error.
enum Ended {
    Stopped,
}

impl<P: Protocol, C: Consumer + Send + 'static> Task<P, C> {
    async fn run(mut self) -> C {
        let mut backoff = Backoff::new(self.config.backoff_initial, self.config.backoff_max);
        // The current warming step and when it started, for the initial fetch timeout.
        let mut warming = (self.proto.warming(), Instant::now());
        loop {
            if *self.stop.borrow() {
                break;
            }
            let mut responded = false;
            let result = self.run_stream(&mut responded, &mut warming).await;
            self.status.send_modify(|s| s.connected = false);
            match result {
                Ok(Ended::Stopped) => break,
                Err(e) => {
                    tracing::warn!(endpoint = %self.config.endpoint, "{e}");
                    self.status
                        .send_modify(|s| s.last_error = Some(e.to_string()));
                }
            }
            if responded {
                backoff.reset();
            }
            let wake = Instant::now() + backoff.next_delay();
            if self.wait_until(wake).await {
                break;
            }
        }
        self.status.send_modify(|s| s.connected = false);
        self.consumer
    }

    /// Sleeps until `wake`, still taking subscription commands; true if stopped meanwhile.
    async fn wait_until(&mut self, wake: Instant) -> bool {
        loop {
            tokio::select! {
                _ = sleep_until(wake) => return false,
                r = self.stop.changed() => if r.is_err() || *self.stop.borrow() { return true },
                cmd = self.commands.recv() => match cmd {
                    // No stream: the new names go out when the next one starts.
                    Some(Command::Subscribe(ty, names)) => drop(self.proto.subscribe(ty, names)),
                    None => return true,
                },
            }
        }
    }

    async fn run_stream(
        &mut self,
        responded: &mut bool,
        warming: &mut (Warming, Instant),
    ) -> Result<Ended, XdsError> {
        let addr = self.config.endpoint.clone();
        let connect_timeout = self.config.connect_timeout;
        let channel = tokio::select! {
            r = self.stop.changed() => { let _ = r; return Ok(Ended::Stopped) }
            r = timeout(connect_timeout, self.endpoint.connect()) => match r {
                Ok(Ok(ch)) => ch,
                Ok(Err(e)) => return Err(XdsError::Connect { endpoint: addr, reason: chain(&e) }),
                Err(_) => return Err(XdsError::Timeout { endpoint: addr, what: "TCP connect", timeout: connect_timeout }),
            },
        };
        let mut client = AggregatedDiscoveryServiceClient::new(channel)
            .max_decoding_message_size(self.config.max_message_size);
        let (tx, rx) = mpsc::channel(self.capacity);
        let initial = self.proto.start_stream();
        let mut stream = tokio::select! {
            r = self.stop.changed() => { let _ = r; return Ok(Ended::Stopped) }
            r = timeout(connect_timeout, async {
                // Queue the subscriptions first: the server may wait for them before answering.
                for req in initial {
                    if tx.send(req).await.is_err() {
                        break;
                    }
                }
                P::open(&mut client, ReceiverStream::new(rx)).await
            }) => match r {
                Ok(Ok(s)) => s,
                Ok(Err(status)) => return Err(stream_error(&addr, P::MODE, status)),
                Err(_) => return Err(XdsError::Timeout { endpoint: addr, what: "opening the ADS stream", timeout: connect_timeout }),
            },
        };
        self.status.send_modify(|s| {
            s.connected = true;
            s.streams += 1;
        });
        // The initial fetch timeout counts from the stream that can answer, not from a failed connect.
        warming.1 = Instant::now();
        tracing::info!(endpoint = %addr, mode = P::MODE.name(), "ADS stream open");

        loop {
            let deadline = self.proto.initial_fetch_deadline().map(|t| warming.1 + t);
            let outcome = tokio::select! {
                r = self.stop.changed() => { let _ = r; return Ok(Ended::Stopped) }
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Subscribe(ty, names)) => Outcome {
                        requests: self.proto.subscribe(ty, names),
                        event: Event::Nothing,
                        initial_config_complete: false,
                    },
                    None => return Ok(Ended::Stopped),
                },
                msg = stream.message() => match msg {
                    Ok(Some(response)) => {
                        *responded = true;
                        self.proto.on_response(response, &mut self.consumer)
                    }
                    Ok(None) => return Err(XdsError::StreamClosed { endpoint: addr }),
                    Err(status) => return Err(stream_error(&addr, P::MODE, status)),
                },
                _ = sleep_until_opt(deadline) => {
                    let elapsed = warming.1.elapsed();
                    tracing::warn!(endpoint = %addr, step = ?warming.0, after = ?elapsed, "initial fetch timed out; going on without what it waited for");
                    self.proto.on_initial_fetch_timeout(elapsed, &mut self.consumer)
                }
            };
            self.record(&outcome);
            if self.proto.warming() != warming.0 {
                *warming = (self.proto.warming(), Instant::now());
            }
            for req in outcome.requests {
                match timeout(self.config.send_timeout, tx.send(req)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Err(XdsError::StreamClosed { endpoint: addr }),
                    Err(_) => {
                        return Err(XdsError::Timeout {
                            endpoint: addr,
                            what: "the server reading our requests",
                            timeout: self.config.send_timeout,
                        });
                    }
                }
            }
        }
    }

    fn record(&self, outcome: &Outcome<P::Req>) {
        let versions = self.proto.acked_versions();
        let warming = self.proto.warming();
        self.status.send_modify(|s| {
            match &outcome.event {
                Event::Accepted { .. } => s.acks += 1,
                Event::Rejected { message, .. } => {
                    s.nacks += 1;
                    s.last_nack = Some(message.clone());
                }
                Event::Ignored { .. } | Event::Nothing => {}
            }
            s.acked_versions = versions;
            s.warming = warming;
            s.initial_config_complete |= outcome.initial_config_complete;
        });
        match &outcome.event {
            Event::Accepted {
                ty,
                version,
                resources,
            } => tracing::debug!(%ty, version, resources, "xDS update accepted"),
            Event::Rejected { type_url, message } => {
                tracing::warn!(type_url, "xDS update rejected: {message}")
            }
            Event::Ignored { type_url } => {
                tracing::debug!(type_url, "ignored a response for an unsubscribed type")
            }
            Event::Nothing => {}
        }
        if outcome.initial_config_complete {
            tracing::info!("initial xDS configuration complete");
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn stream_error(endpoint: &str, mode: Mode, status: tonic::Status) -> XdsError {
    match status.code() {
        tonic::Code::Unimplemented => XdsError::Unimplemented {
            endpoint: endpoint.to_owned(),
            mode: mode.name(),
            message: status.message().to_owned(),
        },
        tonic::Code::Unavailable | tonic::Code::Unknown if status.message().is_empty() => {
            XdsError::Connect {
                endpoint: endpoint.to_owned(),
                reason: chain(&status),
            }
        }
        code => XdsError::Stream {
            endpoint: endpoint.to_owned(),
            code,
            message: chain(&status),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_exponential_and_bounded() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(250) && first <= Duration::from_millis(500));
        let second = b.next_delay();
        assert!(second >= Duration::from_millis(500) && second <= Duration::from_secs(1));
        let mut last = second;
        for _ in 0..100 {
            let d = b.next_delay();
            assert!(d >= last / 2, "{d:?} after {last:?}");
            last = d;
        }
        for _ in 0..100 {
            let d = b.next_delay();
            assert!(
                d <= Duration::from_secs(30) && d >= Duration::from_secs(15),
                "{d:?}"
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(500));
    }

    #[test]
    fn bad_endpoints_say_what_is_expected() {
        let cfg = AdsConfig::new("127.0.0.1:15010", Node::default(), Mode::Sotw);
        let err = endpoint(&cfg)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("127.0.0.1:15010") && err.contains("http://"),
            "{err}"
        );
    }

    #[test]
    fn connect_needs_a_runtime() {
        struct Nop;
        impl Consumer for Nop {
            fn apply(
                &mut self,
                _: crate::ResourceSet<'_>,
            ) -> Result<(), Vec<crate::resources::Rejection>> {
                Ok(())
            }
        }
        let r = AdsClient::connect("http://127.0.0.1:1", Node::default(), Mode::Sotw, Nop);
        assert!(matches!(r, Err(XdsError::NoRuntime)));
    }
}
