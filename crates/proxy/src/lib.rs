//! Bosun's data plane: runs from Envoy v3 configuration (a bootstrap's static resources, and listeners
//! and clusters over ADS when the bootstrap has `dynamic_resources`), accepts on its listeners, routes
//! HTTP with Envoy's semantics (HTTP/1.1 upgrades and CONNECT tunnels included, see `http.rs`),
//! proxies TCP, and serves Envoy's admin endpoints.
//!
//! The config is one immutable [`Runtime`] behind an `ArcSwap`. A connection takes its listener's
//! config (filter chain, HTTP connection manager) when it is accepted; each request takes the current
//! runtime (routes, clusters) when it starts, so an RDS or CDS change applies to the next request and
//! never tears one in half. See `dynamic.rs` for how ADS updates become runtimes.

pub mod access_log;
mod admin;
pub mod consistent_hash;
mod cors;
mod dump_query;
mod dynamic;
pub mod http;
mod http1;
mod locality;
pub mod logging;
mod mirror;
mod normalize;
pub mod original_dst;
mod replay;
pub mod stats;
mod tcp;
pub mod tls;
pub mod upstream;

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use prost::Message as _;
use proxy_model::listener::{Listener, NetworkFilter};
use proxy_model::snapshot::{AdsApi, ProxySettings};
use proxy_model::{ModelError, Snapshot};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use xds_api::pb::envoy::config::bootstrap::v3::Bootstrap;
use xds_api::pb::envoy::config::cluster::v3::Cluster as ClusterProto;
use xds_api::pb::envoy::config::listener::v3::Listener as ListenerProto;
use xds_api::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost as VirtualHostProto};
use xds_api::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use xds_client::{AdsClient, AdsConfig, AdsStatus, Mode, XdsError};

use crate::http::{ConnContext, Connection, HcmStats};
use crate::original_dst::{Destination, ListenerIndex};
use crate::stats::{Counter, Gauge, Held, Metered, Open, Registry};
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
    #[error("cannot start the ADS client (dynamic_resources.ads_config): {0}")]
    Ads(#[from] XdsError),
    #[error("listener {listener:?}: {source}")]
    AccessLog {
        listener: String,
        #[source]
        source: access_log::OpenError,
    },
}

/// Command-line options, as Envoy's.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long in-flight requests may take to finish after SIGTERM, or after their listener is
    /// removed by LDS.
    pub drain_time: Duration,
    /// The runtime that serves traffic (accept loops, connections, upstream pools); `None`: the one
    /// `run` is called on. Apart from it, `run`'s own runtime takes config (xDS) and the admin
    /// interface, as Envoy's main thread does beside its workers: applying a large update then does
    /// not stall requests.
    pub workers: Option<tokio::runtime::Handle>,
    /// The log levels the admin interface's `/logging` shows and changes; `None`: they cannot be
    /// changed at runtime (the process's logging is not the proxy's to reload).
    pub loggers: Option<Arc<logging::Loggers>>,
    /// How the process was started, as `/server_info` shows it.
    pub command_line: CommandLine,
    /// How often buffered access log lines are written out.
    pub access_log_flush_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            drain_time: Duration::from_secs(5),
            workers: None,
            loggers: None,
            command_line: CommandLine::default(),
            access_log_flush_interval: access_log::DEFAULT_FLUSH_INTERVAL,
        }
    }
}

/// The command-line options `/server_info` reports (Envoy's `command_line_options`) that are not
/// in [`Options`] already.
#[derive(Debug, Clone, Default)]
pub struct CommandLine {
    /// `-c` / `--config`.
    pub config_path: String,
    /// `--concurrency`, or the number of worker threads it defaulted to.
    pub concurrency: u32,
    /// `--log-level` as given.
    pub log_level: String,
}

/// A config with its live cluster state: what requests are served from.
#[derive(Debug)]
pub struct Runtime {
    pub snapshot: Snapshot,
    pub clusters: HashMap<String, Arc<ClusterRuntime>>,
    /// The snapshot's listeners by name (accept loops look theirs up per connection).
    pub listeners: HashMap<String, Arc<Listener>>,
    /// The listeners by address, where `use_original_dst` hands connections.
    pub listener_index: ListenerIndex,
    /// `listener.<address>.*` stats of each listener, by name.
    pub listener_stats: HashMap<String, Arc<ListenerStats>>,
    /// The stats of the listeners' network filters.
    pub filter_stats: FilterStats,
    /// Which resources came over xDS, and when each last changed (for `/config_dump`).
    pub dynamic: DynamicInfo,
}

/// The stats Envoy keeps per listener (those Bosun maintains), named by the listener's address as
/// Envoy names them (`listener.0.0.0.0_15001.downstream_cx_total`).
#[derive(Debug)]
pub struct ListenerStats {
    pub downstream_cx_total: Arc<Counter>,
    pub downstream_cx_active: Arc<Gauge>,
    pub downstream_cx_destroy: Arc<Counter>,
    pub no_filter_chain_match: Arc<Counter>,
}

impl ListenerStats {
    fn new(registry: &Registry, l: &Listener) -> ListenerStats {
        let address = if l.host.contains(':') {
            format!("[{}]_{}", l.host, l.port)
        } else {
            format!("{}_{}", l.host, l.port)
        };
        let c = |n: &str| registry.counter(&format!("listener.{address}.{n}"));
        ListenerStats {
            downstream_cx_total: c("downstream_cx_total"),
            downstream_cx_active: registry
                .gauge(&format!("listener.{address}.downstream_cx_active")),
            downstream_cx_destroy: c("downstream_cx_destroy"),
            no_filter_chain_match: c("no_filter_chain_match"),
        }
    }
}

/// The dynamic (xDS) resources of a runtime as they were received, each with when it last changed
/// (for the admin `/config_dump`; the protos are the ones the ADS consumer keeps anyway).
#[derive(Debug, Default, Clone)]
pub struct DynamicInfo {
    pub listeners: BTreeMap<String, Received<ListenerProto>>,
    pub clusters: BTreeMap<String, Received<ClusterProto>>,
    pub route_configs: BTreeMap<String, ReceivedRoute>,
    pub secrets: BTreeMap<String, Received<Secret>>,
    /// Listeners and clusters warming, with the SDS secrets they wait for.
    pub warming_listeners: BTreeMap<String, (Arc<ListenerProto>, Vec<String>)>,
    pub warming_clusters: BTreeMap<String, (Arc<ClusterProto>, Vec<String>)>,
}

/// A route configuration from RDS and the virtual hosts VHDS delivered for it, which the config dump
/// shows merged after its own, as the table in use (merged when dumped, not on every update).
#[derive(Debug, Clone)]
pub struct ReceivedRoute {
    pub table: Received<RouteConfiguration>,
    pub vhds: Arc<[Arc<VirtualHostProto>]>,
}

impl ReceivedRoute {
    /// The table with its VHDS virtual hosts after its own.
    pub fn merged(&self) -> std::borrow::Cow<'_, RouteConfiguration> {
        if self.vhds.is_empty() {
            return std::borrow::Cow::Borrowed(&self.table.proto);
        }
        let mut merged = (*self.table.proto).clone();
        merged
            .virtual_hosts
            .extend(self.vhds.iter().map(|v| (**v).clone()));
        std::borrow::Cow::Owned(merged)
    }
}

/// A resource as xDS gave it, and when it last changed.
#[derive(Debug)]
pub struct Received<T> {
    pub proto: Arc<T>,
    pub updated: SystemTime,
}

impl<T> Clone for Received<T> {
    fn clone(&self) -> Self {
        Received {
            proto: self.proto.clone(),
            updated: self.updated,
        }
    }
}

impl Runtime {
    fn new(snapshot: Snapshot, registry: &Arc<Registry>) -> Runtime {
        Runtime::build(snapshot, None, registry, &|_| false, DynamicInfo::default())
    }

    /// A runtime for `snapshot` that keeps the live state of `previous`: a cluster whose config is
    /// the same `Arc` keeps its `ClusterRuntime` (hosts, outlier ejections, pools, counters); a
    /// cluster whose only change is its endpoints (`endpoints_only`) gets a new one that keeps the
    /// hosts that remain (same address, weight and health). Stats live in the registry by name and
    /// carry over either way.
    fn build(
        snapshot: Snapshot,
        previous: Option<&Runtime>,
        registry: &Arc<Registry>,
        endpoints_only: &dyn Fn(&str) -> bool,
        dynamic: DynamicInfo,
    ) -> Runtime {
        let clusters = snapshot
            .clusters
            .iter()
            .map(|(name, c)| {
                let old = previous.and_then(|p| p.clusters.get(name));
                let rt = match old {
                    Some(old) if Arc::ptr_eq(&old.config, c) => old.clone(),
                    Some(old) if endpoints_only(name) => {
                        let mut rt = ClusterRuntime::new(c.clone(), registry);
                        keep_hosts(&mut rt, old);
                        Arc::new(rt)
                    }
                    _ => Arc::new(ClusterRuntime::new(c.clone(), registry)),
                };
                (name.clone(), rt)
            })
            .collect();
        let listeners = snapshot
            .listeners
            .iter()
            .map(|l| (l.name.clone(), l.clone()))
            .collect();
        let listener_stats = snapshot
            .listeners
            .iter()
            .map(|l| (l.name.clone(), Arc::new(ListenerStats::new(registry, l))))
            .collect();
        let filter_stats = FilterStats::new(&snapshot, previous.map(|p| &p.filter_stats), registry);
        Runtime {
            listener_index: ListenerIndex::new(&snapshot.listeners),
            listener_stats,
            filter_stats,
            snapshot,
            clusters,
            listeners,
            dynamic,
        }
    }
}

/// The stats of the listeners' network filters, by their `stat_prefix` (shared by every filter
/// with that prefix, as in Envoy): `http.<prefix>.*` of the connection managers and
/// `tcp.<prefix>.*` of the TCP proxies. Registered with the config, as Envoy registers them with
/// the filter, so that `/stats` shows them from the start.
#[derive(Debug, Default)]
pub struct FilterStats {
    http: HashMap<String, Arc<HcmStats>>,
    tcp: HashMap<String, Arc<tcp::TcpStats>>,
}

impl FilterStats {
    /// The stats of `snapshot`'s filters, taken from `previous` where it has them. Also registers
    /// those of the local rate limit filters (the listeners', the virtual hosts' and the routes'
    /// own): `<stat_prefix>.http_local_rate_limit.*`.
    fn new(snapshot: &Snapshot, previous: Option<&FilterStats>, registry: &Arc<Registry>) -> Self {
        use proxy_model::filter::HttpFilter;
        let mut stats = FilterStats::default();
        let mut rate_limits = std::collections::BTreeSet::new();
        for fc in snapshot.listeners.iter().flat_map(|l| &l.filter_chains) {
            let hcm = match &fc.network {
                NetworkFilter::Tcp(t) => {
                    let prefix = &t.stat_prefix;
                    if !stats.tcp.contains_key(prefix) {
                        let kept = previous.and_then(|p| p.tcp.get(prefix).cloned());
                        let made =
                            kept.unwrap_or_else(|| Arc::new(tcp::TcpStats::new(registry, prefix)));
                        stats.tcp.insert(prefix.clone(), made);
                    }
                    continue;
                }
                NetworkFilter::Http(hcm) => hcm,
            };
            let prefix = &hcm.stat_prefix;
            if !stats.http.contains_key(prefix) {
                let kept = previous.and_then(|p| p.http.get(prefix).cloned());
                let made = kept.unwrap_or_else(|| Arc::new(HcmStats::new(registry, prefix)));
                stats.http.insert(prefix.clone(), made);
            }
            for f in &hcm.http_filters {
                if let HttpFilter::LocalRateLimit(c) = f {
                    rate_limits.insert(c.stat_prefix.clone());
                }
            }
            if let Some(rc) = snapshot.route_config(&hcm.routes) {
                for vh in &rc.virtual_hosts {
                    let own = vh.routes.iter().filter_map(|r| r.local_ratelimit.as_ref());
                    rate_limits.extend(
                        vh.local_ratelimit
                            .iter()
                            .chain(own)
                            .map(|c| c.stat_prefix.clone()),
                    );
                }
            }
        }
        for prefix in rate_limits {
            for name in ["enabled", "enforced", "ok", "rate_limited", "shadow_mode"] {
                registry.counter(&format!("{prefix}.http_local_rate_limit.{name}"));
            }
        }
        stats
    }

    /// A connection manager's stats (registered with the config that has the filter).
    fn http(&self, prefix: &str, registry: &Arc<Registry>) -> Arc<HcmStats> {
        self.http
            .get(prefix)
            .cloned()
            .unwrap_or_else(|| Arc::new(HcmStats::new(registry, prefix)))
    }

    /// A TCP proxy's stats (registered with the config that has the filter).
    fn tcp(&self, prefix: &str, registry: &Registry) -> Arc<tcp::TcpStats> {
        self.tcp
            .get(prefix)
            .cloned()
            .unwrap_or_else(|| Arc::new(tcp::TcpStats::new(registry, prefix)))
    }
}

/// Replaces the fresh hosts of `rt` by the live ones of `old` that are the same endpoint, connecting
/// the same way (an endpoint that moved to another transport socket match gets new connections).
fn keep_hosts(rt: &mut ClusterRuntime, old: &ClusterRuntime) {
    let old_hosts: HashMap<&str, &Arc<upstream::Host>> = old
        .priorities
        .iter()
        .flatten()
        .map(|h| (h.address.as_str(), h))
        .collect();
    for host in rt.priorities.iter_mut().flatten() {
        if let Some(o) = old_hosts.get(host.address.as_str())
            && o.weight == host.weight
            && o.healthy == host.healthy
            && proxy_model::tls::UpstreamTls::same(o.tls.as_ref(), host.tls.as_ref())
        {
            *host = Arc::clone(o);
        }
    }
}

/// The running proxy's shared state.
#[derive(Debug)]
pub struct Proxy {
    pub runtime: ArcSwap<Runtime>,
    pub registry: Arc<Registry>,
    pub settings: ProxySettings,
    pub started: Instant,
    pub drain_time: Duration,
    pub command_line: CommandLine,
    ready: AtomicBool,
    draining: AtomicBool,
    server_stats: ServerStats,
    /// The ADS client's status, when the bootstrap has `dynamic_resources`.
    ads_status: OnceLock<watch::Receiver<AdsStatus>>,
    listeners: Listeners,
    /// Where traffic is served (see [`Options::workers`]).
    workers: tokio::runtime::Handle,
    pub loggers: Option<Arc<logging::Loggers>>,
    /// `/quitquitquit`: shut down as on SIGTERM.
    pub(crate) quit: tokio::sync::Notify,
    /// The bootstrap, encoded, and when it was read: see [`Config`].
    pub bootstrap: Vec<u8>,
    pub bootstrap_loaded: SystemTime,
}

/// The server-wide stats Istio's `pilot-agent` reads for its readiness probe
/// (`/stats?usedonly&filter=^(server\.state|listener_manager\.workers_started)`, and the CDS and LDS
/// update counters), under Envoy's names and values.
#[derive(Debug)]
struct ServerStats {
    /// Envoy's `server.state`: 0 LIVE, 1 DRAINING, 2 PRE_INITIALIZING.
    state: Arc<Gauge>,
    live: Arc<Gauge>,
    workers_started: Arc<Gauge>,
    /// Over ADS only, as Envoy has them only with dynamic resources.
    xds: Option<XdsUpdateStats>,
}

#[derive(Debug)]
pub(crate) struct XdsUpdateStats {
    pub cds: UpdateCounters,
    pub lds: UpdateCounters,
}

#[derive(Debug)]
pub(crate) struct UpdateCounters {
    pub attempt: Arc<Counter>,
    pub success: Arc<Counter>,
    pub rejected: Arc<Counter>,
}

impl UpdateCounters {
    fn new(registry: &Registry, prefix: &str) -> UpdateCounters {
        let c = |n: &str| registry.counter(&format!("{prefix}.{n}"));
        UpdateCounters {
            attempt: c("update_attempt"),
            success: c("update_success"),
            rejected: c("update_rejected"),
        }
    }
}

impl ServerStats {
    fn new(registry: &Registry, ads: bool) -> ServerStats {
        let stats = ServerStats {
            state: registry.gauge("server.state"),
            live: registry.gauge("server.live"),
            workers_started: registry.gauge("listener_manager.workers_started"),
            xds: ads.then(|| XdsUpdateStats {
                cds: UpdateCounters::new(registry, "cluster_manager.cds"),
                lds: UpdateCounters::new(registry, "listener_manager.lds"),
            }),
        };
        stats.state.set(2);
        stats.live.set(0);
        stats.workers_started.set(0);
        stats
    }
}

impl Proxy {
    /// The initial configuration is applied: the proxy serves, and says so.
    fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
        self.server_stats.workers_started.set(1);
        if !self.draining.load(Ordering::Relaxed) {
            self.server_stats.state.set(0);
            self.server_stats.live.set(1);
        }
    }

    fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.server_stats.state.set(1);
        self.server_stats.live.set(0);
    }

    /// The CDS and LDS update counters, over ADS.
    pub(crate) fn xds_update_stats(&self) -> Option<&XdsUpdateStats> {
        self.server_stats.xds.as_ref()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && !self.draining.load(Ordering::Relaxed)
    }

    /// The server state as Envoy names it: `PRE_INITIALIZING` until the initial xDS configuration
    /// is complete, `LIVE`, then `DRAINING` once shutting down.
    pub fn state(&self) -> &'static str {
        if self.draining.load(Ordering::Relaxed) {
            "DRAINING"
        } else if self.ready.load(Ordering::Relaxed) {
            "LIVE"
        } else {
            "PRE_INITIALIZING"
        }
    }

    /// The ADS client's status, if the proxy takes config over ADS.
    pub fn ads_status(&self) -> Option<AdsStatus> {
        self.ads_status.get().map(|rx| rx.borrow().clone())
    }
}

/// The node the proxy names itself by to the control plane (and in `/server_info`): the bootstrap's,
/// with bosun's name and version as its user agent unless the bootstrap gives one.
pub fn xds_node(
    node: &xds_api::pb::envoy::config::core::v3::Node,
) -> xds_api::pb::envoy::config::core::v3::Node {
    use xds_api::pb::envoy::config::core::v3::{BuildVersion, node::UserAgentVersionType};
    use xds_api::pb::envoy::r#type::v3::SemanticVersion;
    let mut node = node.clone();
    if node.user_agent_name.is_empty() {
        node.user_agent_name = "bosun".to_owned();
    }
    if node.user_agent_version_type.is_none() {
        let number = |s: &str| s.parse().unwrap_or(0);
        node.user_agent_version_type =
            Some(UserAgentVersionType::UserAgentBuildVersion(BuildVersion {
                version: Some(SemanticVersion {
                    major_number: number(env!("CARGO_PKG_VERSION_MAJOR")),
                    minor_number: number(env!("CARGO_PKG_VERSION_MINOR")),
                    patch: number(env!("CARGO_PKG_VERSION_PATCH")),
                }),
                metadata: None,
            }));
    }
    node
}

/// A bootstrap converted to what the proxy runs, and the bootstrap encoded (compact; decoded again
/// only for the admin `/config_dump`).
#[derive(Debug)]
pub struct Config {
    snapshot: Snapshot,
    settings: ProxySettings,
    bootstrap: Vec<u8>,
}

impl Config {
    pub fn from_bootstrap(bootstrap: &Bootstrap) -> Result<Config, ProxyError> {
        let (snapshot, settings) =
            Snapshot::from_bootstrap(bootstrap).map_err(ProxyError::Config)?;
        for field in &settings.ignored {
            tracing::warn!(
                "bootstrap field `{field}` is not used by bosun proxy (stats, tracing, runtime or process settings); ignored"
            );
        }
        Ok(Config {
            snapshot,
            settings,
            bootstrap: bootstrap.encode_to_vec(),
        })
    }
}

/// Runs `config`: binds every static listener and the admin port, starts the ADS client when the
/// bootstrap has `dynamic_resources`, serves until `shutdown` completes, then drains: stops accepting
/// and gives in-flight requests up to `drain_time`.
pub async fn run(
    config: Config,
    options: Options,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ProxyError> {
    let Config {
        snapshot,
        settings,
        bootstrap,
    } = config;
    access_log::set_flush_interval(options.access_log_flush_interval);
    let registry = Arc::new(Registry::default());
    let runtime = Runtime::new(snapshot, &registry);
    let listeners: Vec<Arc<Listener>> = runtime.snapshot.listeners.clone();
    let statics = Snapshot {
        listeners: runtime.snapshot.listeners.clone(),
        clusters: runtime.snapshot.clusters.clone(),
        route_configs: HashMap::new(),
    };
    let server_stats = ServerStats::new(&registry, settings.ads.is_some());
    let proxy = Arc::new(Proxy {
        runtime: ArcSwap::from_pointee(runtime),
        registry,
        settings: settings.clone(),
        started: Instant::now(),
        drain_time: options.drain_time,
        command_line: options.command_line,
        ready: AtomicBool::new(false),
        draining: AtomicBool::new(false),
        server_stats,
        ads_status: OnceLock::new(),
        listeners: Listeners::default(),
        workers: options
            .workers
            .clone()
            .unwrap_or_else(tokio::runtime::Handle::current),
        loggers: options.loggers,
        bootstrap,
        bootstrap_loaded: SystemTime::now(),
        quit: tokio::sync::Notify::new(),
    });

    // Open every access log file and bind everything before serving anything, so a path that
    // cannot be written or a taken port fails the start cleanly.
    for l in listeners.iter() {
        access_log::open_files(l).map_err(|source| ProxyError::AccessLog {
            listener: l.name.clone(),
            source,
        })?;
    }
    let mut bound = Vec::new();
    for l in listeners.iter().filter(|l| l.bind_to_port) {
        let socket = bind(&l.host, l.port, l.transparent).map_err(|source| ProxyError::Bind {
            address: format!("{}:{}", l.host, l.port),
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

    let (stop_tx, stop_rx) = watch::channel(false);
    for (listener, socket) in bound {
        proxy.listeners.start(&proxy, &listener, socket);
    }
    let admin_task = admin.map(|socket| tokio::spawn(admin::serve(proxy.clone(), socket, stop_rx)));
    let ticker = proxy.workers.spawn(timer_anchor());

    let ads = match &settings.ads {
        Some(ads) => {
            let mode = match ads.api {
                AdsApi::Sotw => Mode::Sotw,
                AdsApi::Delta => Mode::Delta,
            };
            let node = xds_node(&settings.node);
            let consumer = dynamic::Dynamic::new(
                proxy.clone(),
                statics,
                settings.secrets.statics.clone(),
                ads.api,
            );
            let config = AdsConfig {
                cds_initial_fetch_timeout: ads.cds_fetch_timeout,
                lds_initial_fetch_timeout: ads.lds_fetch_timeout,
                ..AdsConfig::new(ads.uri(), node, mode)
            };
            let client = AdsClient::start(config, consumer)?;
            let status = client.watch_status();
            let _ = proxy.ads_status.set(status.clone());
            tokio::spawn(dynamic::log_acks(status));
            tracing::info!(
                endpoint = %ads.uri(),
                cluster = %ads.cluster,
                mode = ?ads.api,
                "taking listeners and clusters over ADS; ready once the initial configuration is applied"
            );
            Some(client)
        }
        None => {
            proxy.set_ready();
            tracing::info!(listeners = listeners.len(), "bosun proxy ready");
            None
        }
    };

    tokio::select! {
        () = shutdown => {}
        () = proxy.quit.notified() => tracing::info!("asked to quit (/quitquitquit)"),
    }
    tracing::info!(drain_time = ?options.drain_time, "draining");
    proxy.set_draining();
    if let Some(client) = ads
        && tokio::time::timeout(Duration::from_secs(2), client.stop())
            .await
            .is_err()
    {
        tracing::warn!("the ADS client did not stop within 2s");
    }
    let _ = stop_tx.send(true);
    proxy.listeners.shutdown().await;
    ticker.abort();
    if let Some(task) = admin_task {
        let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
    }
    access_log::flush();
    Ok(())
}

/// Keeps a timer due within a few seconds at all times. tokio wakes its I/O driver (an eventfd write,
/// and one more turn of the event loop) whenever a timer is set to fire before every timer the
/// driver last went to sleep with, or when there was none; each request sets one (its route timeout,
/// Envoy's default 15 s), so without a nearer timer every request would pay that wake-up.
async fn timer_anchor() {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
    }
}

/// Binds a listening socket as tokio does (`SO_REUSEADDR`, backlog 1024), synchronously, so an LDS
/// update can bind its new listeners before it is ACKed. `transparent`: `IP_TRANSPARENT`, for TPROXY.
pub(crate) fn bind(
    host: &str,
    port: u16,
    transparent: bool,
) -> std::io::Result<std::net::TcpListener> {
    let addr: SocketAddr = (host, port).to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            format!("{host:?} resolves to no address"),
        )
    })?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if transparent {
        if addr.is_ipv4() {
            socket.set_ip_transparent_v4(true)?;
        } else {
            socket.set_ip_transparent_v6(true)?;
        }
    }
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    // Registered with an event loop by the accept loop, on the runtime that serves traffic.
    Ok(socket.into())
}

// === impl Listeners ===

/// The accept loops running, by listener name.
#[derive(Debug, Default)]
pub(crate) struct Listeners {
    inner: Mutex<ListenersInner>,
}

#[derive(Debug, Default)]
struct ListenersInner {
    active: HashMap<String, ActiveListener>,
    closed: bool,
    /// `/drain_listeners` drained every listener, or the inbound ones: those stay down, whatever
    /// LDS says later.
    drained_all: bool,
    drained_inbound: bool,
}

#[derive(Debug)]
struct ActiveListener {
    host: String,
    port: u16,
    inbound: bool,
    stop: watch::Sender<bool>,
    /// A graceful drain (`/drain_listeners?graceful`): keep accepting for the drain time, every
    /// HTTP/1 response saying `Connection: close`, then stop.
    drain: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Listeners {
    fn lock(&self) -> std::sync::MutexGuard<'_, ListenersInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The address the running accept loop of `name` is bound to.
    pub(crate) fn address(&self, name: &str) -> Option<(String, u16)> {
        self.lock()
            .active
            .get(name)
            .map(|a| (a.host.clone(), a.port))
    }

    /// The names of the running accept loops.
    pub(crate) fn names(&self) -> Vec<String> {
        self.lock().active.keys().cloned().collect()
    }

    /// Starts accepting on `socket` for the listener named like `listener` (replacing, and stopping,
    /// an accept loop of that name). Does nothing once shut down.
    pub(crate) fn start(
        &self,
        proxy: &Arc<Proxy>,
        listener: &Listener,
        socket: std::net::TcpListener,
    ) {
        let mut inner = self.lock();
        if inner.closed || inner.drained_all || (inner.drained_inbound && listener.inbound) {
            return;
        }
        let (stop, stop_rx) = watch::channel(false);
        let (drain, drain_rx) = watch::channel(false);
        let task = proxy.workers.spawn(accept_loop(
            proxy.clone(),
            listener.name.clone(),
            (listener.host.clone(), listener.port),
            socket,
            stop_rx,
            drain_rx,
        ));
        let previous = inner.active.insert(
            listener.name.clone(),
            ActiveListener {
                host: listener.host.clone(),
                port: listener.port,
                inbound: listener.inbound,
                stop,
                drain,
                task,
            },
        );
        if let Some(p) = previous {
            let _ = p.stop.send(true);
        }
    }

    /// Stops accepting for `name`; its connections drain in the background (bounded by the drain time).
    pub(crate) fn stop(&self, name: &str) {
        if let Some(a) = self.lock().active.remove(name) {
            tracing::info!(listener = name, address = %format!("{}:{}", a.host, a.port), "listener removed; draining its connections");
            let _ = a.stop.send(true);
        }
    }

    /// Envoy's `/drain_listeners`: stops accepting on every listener (`inbound_only`: on those of
    /// inbound traffic) for good, at once or (`graceful`) after the drain time, during which
    /// connections are still accepted and every HTTP/1 response says `Connection: close` (so that
    /// clients that have not yet learnt the endpoint is going get an answer, not a refusal). Then
    /// their connections drain (HTTP/2 gets GOAWAY), bounded by the drain time. The process goes on.
    pub(crate) fn drain(&self, inbound_only: bool, graceful: bool) {
        let mut inner = self.lock();
        if inbound_only {
            inner.drained_inbound = true;
        } else {
            inner.drained_all = true;
        }
        let names: Vec<String> = inner
            .active
            .iter()
            .filter(|(_, a)| a.inbound || !inbound_only)
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            let Some(a) = inner.active.get(&name) else {
                continue;
            };
            tracing::info!(listener = %name, address = %format!("{}:{}", a.host, a.port), graceful, "draining listener (/drain_listeners)");
            if graceful {
                // Kept in the map: dropping its senders would stop it at once.
                let _ = a.drain.send(true);
            } else if let Some(a) = inner.active.remove(&name) {
                let _ = a.stop.send(true);
            }
        }
    }

    /// Stops every accept loop and waits (each bounded by the drain time) for their connections.
    async fn shutdown(&self) {
        let active: Vec<ActiveListener> = {
            let mut inner = self.lock();
            inner.closed = true;
            inner.active.drain().map(|(_, a)| a).collect()
        };
        for a in &active {
            let _ = a.stop.send(true);
        }
        for a in active {
            let _ = a.task.await;
        }
    }
}

async fn accept_loop(
    proxy: Arc<Proxy>,
    name: String,
    address: (String, u16),
    socket: std::net::TcpListener,
    mut stop: watch::Receiver<bool>,
    mut drain: watch::Receiver<bool>,
) {
    let socket = match TcpListener::from_std(socket) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(listener = %name, "cannot accept connections: {e}");
            return;
        }
    };
    let registry = proxy.registry.clone();
    // Held strongly here only, so draining can take it back; connection tasks upgrade a weak copy.
    let graceful = Arc::new(Connections::new());
    // Set by a graceful drain; read by every response of this listener's connections.
    let draining = Arc::new(AtomicBool::new(false));
    // Far off until a graceful drain sets it to the end of the drain time.
    let drain_end = tokio::time::sleep(Duration::from_secs(86_400 * 365));
    tokio::pin!(drain_end);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = socket.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(listener = %name, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
            Ok(()) = drain.changed(), if !draining.load(Ordering::Relaxed) => {
                draining.store(true, Ordering::Relaxed);
                drain_end.as_mut().reset(tokio::time::Instant::now() + proxy.drain_time);
                continue;
            }
            () = &mut drain_end => break,
        };
        let _ = stream.set_nodelay(true);
        let runtime = proxy.runtime.load_full();
        // The listener's current config: LDS may have changed its filter chains since we bound.
        let Some(listener) = runtime.listeners.get(&name).cloned() else {
            continue; // Removed: the loop is being stopped.
        };
        if (listener.host.as_str(), listener.port) != (address.0.as_str(), address.1) {
            continue; // Moved to another address: a new loop serves it there.
        }
        let (proxy, registry) = (proxy.clone(), registry.clone());
        let draining = draining.clone();
        let graceful = Arc::downgrade(&graceful);
        // Peeking at the ClientHello and the TLS handshake must not hold up accepting others.
        tokio::spawn(async move {
            // The original_dst listener filter: where the connection was going before a REDIRECT.
            let destination = match Destination::of(&stream, listener.original_dst) {
                Ok(d) => d,
                Err(e) => {
                    tracing::debug!(listener = %listener.name, "connection from {peer} closed: {e}");
                    return;
                }
            };
            // use_original_dst: the listener that owns the original destination takes the
            // connection (its own listener filters and chains; Envoy counts it there only), else
            // this one keeps it.
            let listener = if listener.use_original_dst && destination.restored {
                runtime
                    .listener_index
                    .owner(destination.address)
                    .cloned()
                    .unwrap_or(listener)
            } else {
                listener
            };
            let stats = runtime.listener_stats.get(&listener.name).cloned();
            // Open until this task ends, or the HTTP connection it hands the stream to.
            let open = stats.as_ref().map(|s| {
                s.downstream_cx_total.inc();
                Open::new(&s.downstream_cx_active, &s.downstream_cx_destroy)
            });
            // Choose the filter chain (by the ClientHello when inspected).
            let chosen = match tls::choose_chain(stream, &listener, destination.address).await {
                Ok(chosen) => chosen,
                Err(e) => {
                    if let (tls::AcceptError::NoFilterChain { .. }, Some(stats)) = (&e, &stats) {
                        stats.no_filter_chain_match.inc();
                    }
                    tracing::debug!(listener = %listener.name, "connection from {peer} closed: {e}");
                    return;
                }
            };
            // The chain's network filter counts the connection before its TLS handshake, as
            // Envoy's, which sees it from then on (a failed handshake included).
            let chain = chosen.chain;
            match &chain.network {
                NetworkFilter::Http(hcm) => {
                    let stats = runtime.filter_stats.http(&hcm.stat_prefix, &registry);
                    let open = OpenOn::http(open, &stats, chosen.terminates_tls());
                    let Some(conn) = terminate(chosen, &listener.name, peer).await else {
                        return;
                    };
                    let Some(graceful) = graceful.upgrade() else {
                        return; // Shutting down.
                    };
                    let client_certificate = http::ClientCertificate::of(&conn, hcm);
                    let accepted = Accepted {
                        downstream: http::Downstream {
                            peer,
                            local: destination.address,
                            original_dst: destination.original(),
                            server_name: conn.server_name,
                            tls: matches!(conn.io, tls::Io::Tls(_)),
                            client_certificate,
                        },
                        io: conn.io,
                        open,
                    };
                    serve_http(
                        accepted,
                        &proxy,
                        hcm.clone(),
                        stats,
                        ListenerDrain {
                            graceful: &graceful,
                            draining,
                        },
                    );
                }
                NetworkFilter::Tcp(t) => {
                    let stats = runtime.filter_stats.tcp(&t.stat_prefix, &registry);
                    stats.downstream_cx_total.inc();
                    let Some(conn) = terminate(chosen, &listener.name, peer).await else {
                        return;
                    };
                    let downstream = http::Downstream {
                        peer,
                        local: destination.address,
                        original_dst: destination.original(),
                        server_name: conn.server_name,
                        tls: matches!(conn.io, tls::Io::Tls(_)),
                        // A TCP proxy writes no HTTP headers.
                        client_certificate: None,
                    };
                    let io = Metered::new(
                        conn.io,
                        &stats.downstream_cx_rx_bytes_total,
                        &stats.downstream_cx_tx_bytes_total,
                    );
                    tcp::proxy(io, t, &downstream, &stats, runtime.clone()).await;
                }
            }
        });
    }
    drop(socket);
    match Arc::try_unwrap(graceful) {
        Ok(graceful) => {
            if tokio::time::timeout(proxy.drain_time, graceful.shutdown())
                .await
                .is_err()
            {
                tracing::warn!(listener = %name, "drain time over; closing the remaining connections");
            }
        }
        Err(_) => {
            tracing::warn!(listener = %name, "a connection was starting while draining; not waiting for it")
        }
    }
}

/// A listener's connections: told to finish on shutdown (HTTP/1.1 closes after the response in
/// flight, HTTP/2 sends GOAWAY and finishes its streams), and waited for. Each connection task holds
/// a receiver until it ends.
#[derive(Debug)]
struct Connections {
    tx: watch::Sender<()>,
}

impl Connections {
    fn new() -> Connections {
        Connections {
            tx: watch::channel(()).0,
        }
    }

    fn watcher(&self) -> watch::Receiver<()> {
        self.tx.subscribe()
    }

    /// Signals every connection, then waits until all have ended.
    async fn shutdown(self) {
        let _ = self.tx.send(());
        self.tx.closed().await;
    }
}

/// Terminates the chosen chain's TLS, if it has any; a failed handshake closes the connection.
async fn terminate<'l>(
    chosen: tls::Chosen<'l>,
    listener: &str,
    peer: SocketAddr,
) -> Option<tls::Accepted<'l>> {
    chosen
        .terminate()
        .await
        .inspect_err(|e| tracing::debug!(listener, "connection from {peer} closed: {e}"))
        .ok()
}

/// A downstream connection a listener accepted, with its filter chain's TLS done.
struct Accepted {
    io: tls::Io,
    downstream: http::Downstream,
    open: OpenOn,
}

/// Counts an HTTP connection open, until it ends, on its listener's stats and on its connection
/// manager's (on TLS ones also as such).
struct OpenOn {
    _listener: Option<Open>,
    _hcm: Open,
    _tls: Option<Held>,
}

impl OpenOn {
    fn http(listener: Option<Open>, stats: &HcmStats, tls: bool) -> OpenOn {
        stats.downstream_cx_total.inc();
        if tls {
            stats.downstream_cx_ssl_total.inc();
        }
        OpenOn {
            _listener: listener,
            _hcm: Open::new(&stats.downstream_cx_active, &stats.downstream_cx_destroy),
            _tls: tls.then(|| Held::new(&stats.downstream_cx_ssl_active)),
        }
    }
}

/// How a listener's connections learn it drains: on shutdown (`graceful`), and during a graceful
/// `/drain_listeners` (`draining`).
struct ListenerDrain<'a> {
    graceful: &'a Connections,
    draining: Arc<AtomicBool>,
}

fn serve_http(
    accepted: Accepted,
    proxy: &Arc<Proxy>,
    hcm: Arc<proxy_model::listener::HttpConnectionManager>,
    stats: Arc<HcmStats>,
    drain: ListenerDrain<'_>,
) {
    let Accepted {
        io: stream,
        downstream,
        open,
    } = accepted;
    let ListenerDrain { graceful, draining } = drain;
    let peer = downstream.peer;
    let stream = Metered::new(
        stream,
        &stats.downstream_cx_rx_bytes_total,
        &stats.downstream_cx_tx_bytes_total,
    );
    let proxy = proxy.clone();
    // A response may ask its connection to finish (an HTTP/2 GOAWAY during a graceful drain).
    let finish = Arc::new(tokio::sync::Notify::new());
    let finish_requested = finish.clone();
    let h2_extended_connect = hcm.h2_extended_connect;
    // Each request takes the runtime current when it starts (routes and clusters, as Envoy's RDS and
    // CDS apply to the next stream); the HTTP connection manager stays the one the connection got.
    let conn = Arc::new(Connection::new(
        hcm.clone(),
        downstream,
        stats,
        draining,
        finish_requested,
    ));
    // hyper answers a request it cannot parse itself (400, or 431 for headers over the limit).
    let on_error = conn.clone();
    let service = service_fn(move |req| {
        let ctx = ConnContext {
            runtime: proxy.runtime.load_full(),
            conn: conn.clone(),
        };
        http::serve(req, ctx)
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Envoy's default `max_request_headers_kb` is 60: larger request headers get 431.
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(60))
        .max_buf_size(60 * 1024);
    let mut h2 = builder.http2();
    h2.timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(Some(1024));
    if h2_extended_connect {
        h2.enable_connect_protocol();
    }
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .into_owned();
    let mut shutdown = graceful.watcher();
    tokio::spawn(async move {
        let mut conn = std::pin::pin!(conn);
        let mut finishing = false;
        let result = loop {
            tokio::select! {
                result = conn.as_mut() => break result,
                // The listener shuts down (or is gone).
                _ = shutdown.changed(), if !finishing => {
                    finishing = true;
                    conn.as_mut().graceful_shutdown();
                }
                () = finish.notified(), if !finishing => {
                    finishing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        };
        // Held until the connection ended: the listener's shutdown waits for it.
        drop(shutdown);
        drop(open);
        if let Err(e) = result {
            // hyper's own errors: a request it could not parse (it answered it with a 4xx itself,
            // without a body), or a client gone mid-request.
            match e.downcast_ref::<hyper::Error>() {
                Some(e) if e.is_parse_too_large() => {
                    on_error.protocol_error(
                        ::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                        "http1.headers_too_large",
                        0,
                    );
                }
                Some(e) if e.is_parse() => {
                    on_error.protocol_error(
                        ::http::StatusCode::BAD_REQUEST,
                        "http1.codec_error",
                        0,
                    );
                }
                Some(e) if e.is_incomplete_message() => on_error.abandoned_request(),
                _ => {}
            }
            tracing::debug!("connection from {peer} ended: {e}");
        }
    });
}
