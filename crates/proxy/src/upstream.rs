//! A cluster at run time: its hosts with their live state (active requests, outlier ejection), load
//! balancing, circuit-breaker accounting, stats, and the connection pool to reach them.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_tls::rustls;
use mesh_tls::rustls::pki_types::ServerName;
use proxy_model::cluster::{
    Cluster, DnsFamily, Health, LbPolicy, OriginalDst, OutlierDetection, TcpKeepalive,
    UpstreamProtocol, is_pipe,
};
use proxy_model::tls::UpstreamTls;
use rand::Rng;
use tokio::net::{TcpSocket, TcpStream};

use crate::consistent_hash::{HashTable, HostKey};
use crate::locality::LocalityLb;
use crate::stats::{Counter, Gauge, Metered, Open, Registry};
use crate::tls::Io;

/// The most destinations an ORIGINAL_DST cluster remembers at once. Envoy forgets hosts unused for
/// `cleanup_interval`; this also bounds a burst of distinct destinations within one interval (the
/// least recently used host is forgotten first; its in-flight requests keep their own handle).
const MAX_ORIGINAL_DST_HOSTS: usize = 1024;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

/// One upstream host and what the proxy knows about it right now.
#[derive(Debug)]
pub struct Host {
    pub address: String,
    /// `address` as a URI authority, parsed once (the HTTP/1.1 client is given one per request).
    pub authority: Option<http::uri::Authority>,
    pub weight: u32,
    pub healthy: bool,
    pub active_requests: AtomicU32,
    /// Outlier detection: consecutive failures of each kind and the ejection state.
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    consecutive_local: AtomicU32,
    ejected: AtomicBool,
    ejected_until: Mutex<Option<Instant>>,
    times_ejected: AtomicU32,
    pub requests: AtomicU64,
    /// Envoy's per-host `rq_success`, `rq_error` (a 5xx answer or no answer) and `rq_timeout`.
    pub rq_success: AtomicU64,
    pub rq_error: AtomicU64,
    pub rq_timeout: AtomicU64,
    /// Its connections, counted as Envoy's `/clusters` shows them per host.
    pub connections: Arc<HostConnections>,
    /// Its connection pools, HTTP/1.1 and HTTP/2, made on first use (see
    /// [`ClusterRuntime::request`]) and dropped, with their idle connections, when it is ejected. An
    /// update of its cluster's endpoints that keeps the host keeps them too.
    pools: [ArcSwapOption<Client<HostConnector, Body>>; 2],
    /// The TLS its connections originate (`None`: plaintext).
    pub tls: Option<UpstreamTls>,
}

impl Host {
    /// A host connecting with `tls` (`None`: plaintext).
    fn new(address: String, weight: u32, healthy: bool, tls: Option<&UpstreamTls>) -> Host {
        Host {
            connections: Arc::default(),
            pools: Default::default(),
            tls: tls.cloned(),
            authority: address.parse().ok(),
            address,
            weight,
            healthy,
            active_requests: AtomicU32::new(0),
            consecutive_5xx: AtomicU32::new(0),
            consecutive_gateway: AtomicU32::new(0),
            consecutive_local: AtomicU32::new(0),
            ejected: AtomicBool::new(false),
            ejected_until: Mutex::new(None),
            times_ejected: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            rq_success: AtomicU64::new(0),
            rq_error: AtomicU64::new(0),
            rq_timeout: AtomicU64::new(0),
        }
    }

    pub fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed)
    }

    pub(crate) fn available(&self) -> bool {
        self.healthy && !self.is_ejected()
    }
}

/// A host's connections: Envoy's per-host `cx_total`, `cx_active` and `cx_connect_fail`.
#[derive(Debug, Default)]
pub struct HostConnections {
    pub total: AtomicU64,
    pub active: AtomicU64,
    pub connect_fail: AtomicU64,
}

/// Where the connections to one host are counted: by the host, and by its cluster's stats.
#[derive(Debug, Clone)]
struct Counting {
    host: Arc<HostConnections>,
    total: Arc<Counter>,
    /// `upstream_cx_http1_total` or `_http2_total` for a pool's connections; none for raw streams.
    protocol_total: Option<Arc<Counter>>,
    active: Arc<Gauge>,
    destroy: Arc<Counter>,
    connect_fail: Arc<Counter>,
    rx_bytes: Arc<Counter>,
    tx_bytes: Arc<Counter>,
}

impl Counting {
    /// For `host`'s raw streams (`protocol`: `None`), or the connections of its HTTP/1.1 or HTTP/2
    /// pool.
    fn new(stats: &ClusterStats, host: &Host, protocol: Option<UpstreamProtocol>) -> Counting {
        Counting {
            host: host.connections.clone(),
            total: stats.upstream_cx_total.clone(),
            protocol_total: protocol.map(|p| match p {
                UpstreamProtocol::Http2 => stats.upstream_cx_http2_total.clone(),
                _ => stats.upstream_cx_http1_total.clone(),
            }),
            active: stats.upstream_cx_active.clone(),
            destroy: stats.upstream_cx_destroy.clone(),
            connect_fail: stats.upstream_cx_connect_fail.clone(),
            rx_bytes: stats.upstream_cx_rx_bytes_total.clone(),
            tx_bytes: stats.upstream_cx_tx_bytes_total.clone(),
        }
    }

    /// [`connect`], counting the attempt, its failure, and the connection while it is open.
    async fn connect(
        &self,
        address: &str,
        timeout: Duration,
        tls: Option<&OriginateTls>,
        dial: Dial,
    ) -> std::io::Result<Counted> {
        self.total.inc();
        if let Some(t) = &self.protocol_total {
            t.inc();
        }
        self.host.total.fetch_add(1, Ordering::Relaxed);
        match connect(address, timeout, tls, dial).await {
            Ok(io) => {
                self.host.active.fetch_add(1, Ordering::Relaxed);
                let open = OpenUpstream {
                    _cluster: Open::new(&self.active, &self.destroy),
                    host: self.host.clone(),
                };
                Ok(Metered::holding(io, &self.rx_bytes, &self.tx_bytes, open))
            }
            Err(e) => {
                self.connect_fail.inc();
                self.host.connect_fail.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}

/// An open upstream connection, its bytes counted by its cluster, and itself counted active by its
/// cluster and its host until dropped.
pub type Counted = Metered<Io, OpenUpstream>;

/// Counts an upstream connection open on its cluster's stats and on its host's.
#[derive(Debug)]
pub struct OpenUpstream {
    _cluster: Open,
    host: Arc<HostConnections>,
}

impl Drop for OpenUpstream {
    fn drop(&mut self) {
        self.host.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl hyper_util::client::legacy::connect::Connection for Counted {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        self.get_ref().connected()
    }
}

/// The stats Envoy keeps per cluster (those Bosun maintains).
#[derive(Debug)]
pub struct ClusterStats {
    pub upstream_rq_total: Arc<Counter>,
    pub upstream_rq_active: Arc<Gauge>,
    pub upstream_rq_pending_overflow: Arc<Counter>,
    pub upstream_rq_active_overflow: Arc<Counter>,
    pub upstream_rq_retry: Arc<Counter>,
    pub upstream_rq_retry_overflow: Arc<Counter>,
    pub upstream_rq_timeout: Arc<Counter>,
    pub upstream_rq_per_try_timeout: Arc<Counter>,
    pub upstream_rq_2xx: Arc<Counter>,
    pub upstream_rq_3xx: Arc<Counter>,
    pub upstream_rq_4xx: Arc<Counter>,
    pub upstream_rq_5xx: Arc<Counter>,
    pub upstream_cx_connect_fail: Arc<Counter>,
    pub upstream_rq_rx_reset: Arc<Counter>,
    pub membership_healthy: Arc<Gauge>,
    pub membership_total: Arc<Gauge>,
    pub outlier_ejections_active: Arc<Gauge>,
    pub outlier_ejections_enforced_total: Arc<Counter>,
    pub upstream_cx_overflow: Arc<Counter>,
    pub upstream_cx_total: Arc<Counter>,
    pub upstream_cx_active: Arc<Gauge>,
    pub upstream_cx_destroy: Arc<Counter>,
    pub upstream_cx_http1_total: Arc<Counter>,
    pub upstream_cx_http2_total: Arc<Counter>,
    pub upstream_cx_rx_bytes_total: Arc<Counter>,
    pub upstream_cx_tx_bytes_total: Arc<Counter>,
    /// ORIGINAL_DST: the override header did not hold an `ip:port`.
    pub original_dst_host_invalid: Arc<Counter>,
}

impl ClusterStats {
    fn new(registry: &Registry, cluster: &str) -> ClusterStats {
        let c = |n: &str| registry.counter(&format!("cluster.{cluster}.{n}"));
        let g = |n: &str| registry.gauge(&format!("cluster.{cluster}.{n}"));
        let code = |n: &str| registry.counter_on_first_use(&format!("cluster.{cluster}.{n}"));
        ClusterStats {
            upstream_rq_total: c("upstream_rq_total"),
            upstream_rq_active: g("upstream_rq_active"),
            upstream_rq_pending_overflow: c("upstream_rq_pending_overflow"),
            upstream_rq_active_overflow: c("upstream_rq_active_overflow"),
            upstream_rq_retry: c("upstream_rq_retry"),
            upstream_rq_retry_overflow: c("upstream_rq_retry_overflow"),
            upstream_rq_timeout: c("upstream_rq_timeout"),
            upstream_rq_per_try_timeout: c("upstream_rq_per_try_timeout"),
            upstream_rq_2xx: code("upstream_rq_2xx"),
            upstream_rq_3xx: code("upstream_rq_3xx"),
            upstream_rq_4xx: code("upstream_rq_4xx"),
            upstream_rq_5xx: code("upstream_rq_5xx"),
            upstream_cx_connect_fail: c("upstream_cx_connect_fail"),
            upstream_rq_rx_reset: c("upstream_rq_rx_reset"),
            membership_healthy: g("membership_healthy"),
            membership_total: g("membership_total"),
            outlier_ejections_active: g("outlier_detection.ejections_active"),
            outlier_ejections_enforced_total: c("outlier_detection.ejections_enforced_total"),
            upstream_cx_overflow: c("upstream_cx_overflow"),
            upstream_cx_total: c("upstream_cx_total"),
            upstream_cx_active: g("upstream_cx_active"),
            upstream_cx_destroy: c("upstream_cx_destroy"),
            upstream_cx_http1_total: c("upstream_cx_http1_total"),
            upstream_cx_http2_total: c("upstream_cx_http2_total"),
            upstream_cx_rx_bytes_total: c("upstream_cx_rx_bytes_total"),
            upstream_cx_tx_bytes_total: c("upstream_cx_tx_bytes_total"),
            original_dst_host_invalid: c("original_dst_host_invalid"),
        }
    }
}

/// A cluster's live state. Rebuilt (with fresh host state) when its config changes.
#[derive(Debug)]
pub struct ClusterRuntime {
    pub config: Arc<Cluster>,
    /// Hosts of the first priority that has any available host is used; all kept for `/clusters`.
    pub priorities: Vec<Vec<Arc<Host>>>,
    rr_next: AtomicUsize,
    pub active_requests: AtomicU32,
    pub active_retries: AtomicU32,
    pub stats: ClusterStats,
    /// `max_connections` for HTTP/1.1: one slot per request in flight, each on its own connection,
    /// held until the response body ends.
    pub connection_slots: Arc<tokio::sync::Semaphore>,
    /// Requests waiting for a connection slot (`max_pending_requests` bounds them).
    pub pending: AtomicU32,
    /// ORIGINAL_DST: the hosts made for the destinations seen lately.
    original_dst: Option<OriginalDstHosts>,
    /// RING_HASH and MAGLEV: each priority's table (same order as `priorities`, whose hosts keep
    /// their positions when [`crate`] carries host state over an EDS update).
    hash_tables: Vec<std::sync::OnceLock<HashTable>>,
    /// `locality_weighted_lb_config`: each priority's localities and their schedule.
    locality: Option<LocalityLb>,
}

/// What a load balancer may look at besides the cluster: the downstream connection's original
/// destination and the request headers (ORIGINAL_DST clusters use them; the others ignore them).
#[derive(Debug, Clone, Copy, Default)]
pub struct LbContext<'a> {
    /// The original destination restored by the `original_dst` listener filter (`None`: not restored).
    pub original_dst: Option<SocketAddr>,
    pub headers: Option<&'a http::HeaderMap>,
    /// The request's hash (the route's `hash_policy`), for RING_HASH and MAGLEV clusters; `None`:
    /// they pick at random.
    pub hash: Option<u64>,
}

/// An ORIGINAL_DST cluster's hosts, one per destination, created on first use and forgotten after
/// `cleanup_interval` without use (as Envoy), at most [`MAX_ORIGINAL_DST_HOSTS`].
#[derive(Debug)]
struct OriginalDstHosts {
    config: OriginalDst,
    inner: Mutex<OriginalDstInner>,
}

#[derive(Debug)]
struct OriginalDstInner {
    hosts: HashMap<SocketAddr, (Arc<Host>, Instant)>,
    last_sweep: Instant,
}

impl ClusterRuntime {
    pub fn new(config: Arc<Cluster>, registry: &Registry) -> ClusterRuntime {
        let stats = ClusterStats::new(registry, &config.name);
        let priorities: Vec<Vec<Arc<Host>>> = config
            .priorities
            .iter()
            .map(|localities| {
                localities
                    .iter()
                    .flat_map(|l| &l.endpoints)
                    .map(|e| {
                        Arc::new(Host::new(
                            e.address(),
                            e.weight,
                            matches!(e.health, Health::Healthy | Health::Degraded),
                            config.endpoint_tls(e),
                        ))
                    })
                    .collect()
            })
            .collect();
        let all: Vec<&Arc<Host>> = priorities.iter().flatten().collect();
        stats
            .membership_total
            .set(i64::try_from(all.len()).unwrap_or(i64::MAX));
        stats
            .membership_healthy
            .set(i64::try_from(all.iter().filter(|h| h.healthy).count()).unwrap_or(i64::MAX));
        let connection_slots = Arc::new(tokio::sync::Semaphore::new(
            usize::try_from(config.circuit_breakers.max_connections)
                .unwrap_or(usize::MAX)
                .min(tokio::sync::Semaphore::MAX_PERMITS),
        ));
        let original_dst = config.original_dst.clone().map(|config| OriginalDstHosts {
            config,
            inner: Mutex::new(OriginalDstInner {
                hosts: HashMap::new(),
                last_sweep: Instant::now(),
            }),
        });
        let locality = LocalityLb::new(&config);
        // Built with the config, not on a request (a ring may have millions of entries).
        let hash_tables = priorities
            .iter()
            .enumerate()
            .map(|(priority, members)| {
                let table = std::sync::OnceLock::new();
                if matches!(
                    config.lb_policy,
                    LbPolicy::RingHash { .. } | LbPolicy::Maglev { .. }
                ) {
                    let _ = table.set(hash_table(
                        config.lb_policy,
                        members,
                        locality.as_ref(),
                        priority,
                    ));
                }
                table
            })
            .collect();
        ClusterRuntime {
            locality,
            config,
            priorities,
            rr_next: AtomicUsize::new(0),
            active_requests: AtomicU32::new(0),
            active_retries: AtomicU32::new(0),
            stats,
            connection_slots,
            pending: AtomicU32::new(0),
            original_dst,
            hash_tables,
        }
    }

    /// Chooses a host for a connection or request: an ORIGINAL_DST cluster's host is the header's
    /// `ip:port` (when configured and valid) or the connection's original destination (`None` when
    /// there is neither, as Envoy: no healthy upstream); every other cluster picks with its policy.
    pub fn pick_for(&self, lb: &LbContext<'_>, avoid: &[Arc<Host>]) -> Option<Arc<Host>> {
        let Some(od) = &self.original_dst else {
            return self.pick(avoid, lb.hash);
        };
        let from_header = od.config.header.as_deref().and_then(|name| {
            // Only the first value counts (the header is untrusted, as Envoy's docs say).
            let value = lb.headers?.get(name)?;
            let parsed = value
                .to_str()
                .ok()
                .and_then(|v| v.parse::<SocketAddr>().ok());
            if parsed.is_none() {
                self.stats.original_dst_host_invalid.inc();
            }
            parsed
        });
        let mut destination = from_header.or(lb.original_dst)?;
        if let Some(port) = od.config.port_override {
            destination.set_port(port);
        }
        Some(self.original_dst_host(od, destination))
    }

    /// The host for `destination`, made on first use; sweeps unused hosts every `cleanup_interval`.
    fn original_dst_host(&self, od: &OriginalDstHosts, destination: SocketAddr) -> Arc<Host> {
        let now = Instant::now();
        let mut inner = od.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((host, used)) = inner.hosts.get_mut(&destination) {
            *used = now;
            return host.clone();
        }
        let interval = od.config.cleanup_interval;
        if now.duration_since(inner.last_sweep) >= interval
            || inner.hosts.len() >= MAX_ORIGINAL_DST_HOSTS
        {
            inner.last_sweep = now;
            inner.hosts.retain(|_, (h, used)| {
                now.duration_since(*used) < interval
                    || h.active_requests.load(Ordering::Relaxed) > 0
            });
        }
        if inner.hosts.len() >= MAX_ORIGINAL_DST_HOSTS
            && let Some(oldest) = inner
                .hosts
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(a, _)| *a)
        {
            inner.hosts.remove(&oldest);
        }
        let host = Arc::new(Host::new(
            destination.to_string(),
            1,
            true,
            self.config.unlabelled_tls(),
        ));
        inner.hosts.insert(destination, (host.clone(), now));
        let n = i64::try_from(inner.hosts.len()).unwrap_or(i64::MAX);
        self.stats.membership_total.set(n);
        self.stats.membership_healthy.set(n);
        host
    }

    /// The hosts an ORIGINAL_DST cluster knows right now (for `/clusters`); empty for other types.
    pub fn original_dst_hosts(&self) -> Vec<Arc<Host>> {
        self.original_dst.as_ref().map_or_else(Vec::new, |od| {
            od.inner
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .hosts
                .values()
                .map(|(h, _)| h.clone())
                .collect()
        })
    }

    /// Chooses a host with the cluster's load-balancing policy among the available hosts of the
    /// highest priority that has any, avoiding `avoid` when there is another choice (consistent
    /// hashing does not: the key decides).
    pub fn pick(&self, avoid: &[Arc<Host>], hash: Option<u64>) -> Option<Arc<Host>> {
        self.refresh_ejections();
        let (hosts, round_robin) = self.priority_hosts(!self.uses_hash())?;
        if hosts.is_empty() {
            // Availability changed under the pick (an ejection on another thread).
            return None;
        }
        if self.uses_hash() {
            return self.hash_pick(&hosts, hash);
        }
        let preferred: Vec<&Arc<Host>> = if avoid.is_empty() {
            Vec::new() // Nothing to avoid (every request but retries): no copy.
        } else {
            hosts
                .iter()
                .copied()
                .filter(|h| !avoid.iter().any(|a| Arc::ptr_eq(a, h)))
                .collect()
        };
        let hosts = if preferred.is_empty() {
            hosts
        } else {
            preferred
        };
        let chosen = match self.config.lb_policy {
            LbPolicy::RoundRobin => weighted_round_robin(&hosts, round_robin),
            LbPolicy::Random => weighted_random(&hosts),
            LbPolicy::LeastRequest { choice_count } => least_request(&hosts, choice_count),
            // CLUSTER_PROVIDED picks in `pick_for`; the hashing policies above.
            LbPolicy::RingHash { .. } | LbPolicy::Maglev { .. } | LbPolicy::ClusterProvided => {
                weighted_random(&hosts)
            }
        };
        Some(chosen.clone())
    }

    /// Whether the cluster picks by the request's hash (so its route's `hash_policy` matters).
    pub fn uses_hash(&self) -> bool {
        matches!(
            self.config.lb_policy,
            LbPolicy::RingHash { .. } | LbPolicy::Maglev { .. }
        )
    }

    /// RING_HASH / MAGLEV: the host the hash maps to in the table of the priority `hosts` come
    /// from, skipping hosts not among them (unhealthy or ejected, unless the priority is in panic);
    /// without a hash, a random point (as Envoy).
    fn hash_pick(&self, hosts: &[&Arc<Host>], hash: Option<u64>) -> Option<Arc<Host>> {
        let first = hosts.first()?;
        let priority = self
            .priorities
            .iter()
            .position(|p| p.iter().any(|h| Arc::ptr_eq(h, first)))?;
        let members = &self.priorities[priority];
        let table = self.hash_tables.get(priority)?.get_or_init(|| {
            hash_table(
                self.config.lb_policy,
                members,
                self.locality.as_ref(),
                priority,
            )
        });
        // Panic (the priority's hosts all in use) or total panic (no host available anywhere).
        let all_usable = hosts.len() >= members.len() || !members.iter().any(|h| h.available());
        let hash = hash.unwrap_or_else(|| rand::rng().random());
        table
            .lookup(hash, |i| all_usable || members[i].available())
            .map(|i| members[i].clone())
    }

    /// Envoy's priority load: each priority's health is `min(100, 1.4 × available %)` (1.4: the
    /// overprovisioning factor, or the load assignment's), priorities take load in order up to
    /// their health, normalised when the health of all of them adds up to less than 100. Only then
    /// can a priority be in panic (less than `healthy_panic_threshold`, 50 %, of its hosts
    /// available) and use all its hosts; with every priority in panic, every host is used.
    /// Otherwise the chosen priority's available hosts are used — with `by_locality` and
    /// `locality_weighted_lb_config`, those of one locality chosen by weight and availability.
    ///
    /// Returns the hosts and the round-robin position to take them in turn with.
    fn priority_hosts<'a>(
        &'a self,
        by_locality: bool,
    ) -> Option<(Vec<&'a Arc<Host>>, &'a AtomicUsize)> {
        let health: Vec<u64> = self
            .priorities
            .iter()
            .map(|p| {
                let total = p.len() as u64;
                let available = p.iter().filter(|h| h.available()).count() as u64;
                (u64::from(self.config.overprovisioning_factor) * available)
                    .checked_div(total)
                    .unwrap_or(0)
                    .min(100)
            })
            .collect();
        let sum = health.iter().sum::<u64>().min(100);
        let threshold = u64::from(self.config.healthy_panic_threshold);
        // An empty priority counts as 0 % available.
        let in_panic = |p: &[Arc<Host>]| {
            sum < 100
                && (p.iter().filter(|h| h.available()).count() as u64) * 100
                    < threshold * (p.len() as u64).max(1)
        };
        if self.priorities.iter().all(|p| in_panic(p)) {
            // Total panic: every host of every priority.
            let all: Vec<_> = self.priorities.iter().flatten().collect();
            return (!all.is_empty()).then_some((all, &self.rr_next));
        }
        if sum == 0 {
            // No host available and panic disabled (a threshold of 0): no host, as Envoy.
            return None;
        }
        let mut point = rand::rng().random_range(0..100u64);
        let mut remaining = 100u64;
        let mut chosen = None;
        for (i, h) in health.iter().enumerate() {
            let load = (h * 100 / sum).min(remaining);
            remaining -= load;
            if point < load {
                chosen = Some(i);
                break;
            }
            point -= load;
        }
        let index = chosen.or_else(|| health.iter().position(|h| *h > 0))?;
        let priority = &self.priorities[index];
        if in_panic(priority) {
            return Some((priority.iter().collect(), &self.rr_next));
        }
        let locality = self
            .locality
            .as_ref()
            .filter(|_| by_locality)
            .and_then(|lb| lb.pick(&self.priorities, index));
        let available = |hosts: &'a [Arc<Host>]| -> Vec<&'a Arc<Host>> {
            hosts.iter().filter(|h| h.available()).collect()
        };
        if let Some((range, round_robin)) = locality {
            // Empty only when an ejection raced with the schedule: then any available host.
            let hosts = available(&priority[range]);
            if !hosts.is_empty() {
                return Some((hosts, round_robin));
            }
        }
        Some((available(priority), &self.rr_next))
    }

    /// Opens a raw connection to `host` (a TCP proxy's, or a CONNECT tunnel's), TLS when the cluster
    /// originates it. Counted as a connection and, once connected, as a request, as Envoy's TCP pool
    /// counts what it hands out; whether it connected goes to outlier detection.
    pub async fn open_stream(&self, host: &Host) -> std::io::Result<Counted> {
        let tls = host.tls.as_ref().map(|t| OriginateTls {
            config: t.raw.clone(),
            server_name: t.server_name.clone(),
        });
        let connected = Counting::new(&self.stats, host, None)
            .connect(
                &host.address,
                self.config.connect_timeout,
                tls.as_ref(),
                Dial::of(&self.config),
            )
            .await;
        // A request once it has its connection, as Envoy counts one.
        let outcome = match &connected {
            Ok(_) => {
                self.stats.upstream_rq_total.inc();
                Outcome::Success
            }
            Err(_) => Outcome::LocalFailure,
        };
        self.record_outcome(host, outcome);
        connected
    }

    /// Sends `req` through `host`'s client for HTTP/2 (`h2`) or HTTP/1.1, made on first use. Its
    /// connections go to the host's address whatever the request URI says (HTTP/2 sends the URI's
    /// authority as `:authority`).
    pub fn request(
        &self,
        host: &Host,
        h2: bool,
        req: http::Request<Body>,
    ) -> hyper_util::client::legacy::ResponseFuture {
        let pool = &host.pools[usize::from(h2)];
        // The future holds what it needs of the client: no reference counted per request.
        if let Some(client) = &*pool.load() {
            return client.request(req);
        }
        let made = Arc::new(host_client(&self.config, host, &self.stats, h2));
        // Another request may have made one meanwhile: the first stays.
        let before = pool.compare_and_swap(&None::<Arc<_>>, Some(made.clone()));
        before.as_ref().unwrap_or(&made).request(req)
    }

    /// Records the outcome of a request to `host` for outlier detection.
    pub fn record_outcome(&self, host: &Host, outcome: Outcome) {
        let Some(od) = &self.config.outlier_detection else {
            return;
        };
        match outcome {
            Outcome::Success => {
                host.consecutive_5xx.store(0, Ordering::Relaxed);
                host.consecutive_gateway.store(0, Ordering::Relaxed);
                host.consecutive_local.store(0, Ordering::Relaxed);
            }
            Outcome::Status(status) if status >= 500 => {
                let n = host.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
                let gateway = matches!(status, 502..=504);
                let g = if gateway {
                    host.consecutive_gateway.fetch_add(1, Ordering::Relaxed) + 1
                } else {
                    host.consecutive_gateway.store(0, Ordering::Relaxed);
                    0
                };
                let by_5xx = n >= od.consecutive_5xx && enforced(od.enforcing_consecutive_5xx);
                let by_gateway = gateway
                    && g >= od.consecutive_gateway_failure
                    && enforced(od.enforcing_consecutive_gateway_failure);
                if by_5xx || by_gateway {
                    self.eject(host, od);
                }
            }
            Outcome::Status(_) => {
                host.consecutive_5xx.store(0, Ordering::Relaxed);
                host.consecutive_gateway.store(0, Ordering::Relaxed);
            }
            Outcome::LocalFailure => {
                if od.split_external_local_origin_errors {
                    let n = host.consecutive_local.fetch_add(1, Ordering::Relaxed) + 1;
                    if n >= od.consecutive_local_origin_failure
                        && enforced(od.enforcing_consecutive_local_origin_failure)
                    {
                        self.eject(host, od);
                    }
                } else {
                    // Without the split, a connect failure counts as a 503 (gateway failure).
                    self.record_outcome(host, Outcome::Status(503));
                }
            }
        }
    }

    fn eject(&self, host: &Host, od: &OutlierDetection) {
        if host.is_ejected() {
            return;
        }
        let total = self.priorities.iter().flatten().count().max(1);
        let ejected = self
            .priorities
            .iter()
            .flatten()
            .filter(|h| h.is_ejected())
            .count();
        // Envoy ejects at least one host even when the percentage rounds to zero hosts.
        let allowed =
            (total * usize::try_from(od.max_ejection_percent).unwrap_or(100) / 100).max(1);
        if ejected >= allowed {
            return;
        }
        let times = host.times_ejected.fetch_add(1, Ordering::Relaxed) + 1;
        // The ejection lasts base_ejection_time × times ejected, capped at max_ejection_time.
        let time =
            (od.base_ejection_time * times).min(od.max_ejection_time.max(od.base_ejection_time));
        *host
            .ejected_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + time);
        host.ejected.store(true, Ordering::Relaxed);
        // As Envoy drains an ejected host's pools: its idle connections close now, the others
        // when their requests end.
        for pool in &host.pools {
            pool.store(None);
        }
        if let Some(l) = &self.locality {
            l.invalidate();
        }
        host.consecutive_5xx.store(0, Ordering::Relaxed);
        host.consecutive_gateway.store(0, Ordering::Relaxed);
        host.consecutive_local.store(0, Ordering::Relaxed);
        self.stats.outlier_ejections_active.inc();
        self.stats.outlier_ejections_enforced_total.inc();
    }

    /// Brings back hosts whose ejection time is over (Envoy checks on its interval timer; checking on
    /// each pick gives the same effect without a timer per cluster).
    fn refresh_ejections(&self) {
        if self.config.outlier_detection.is_none() {
            return;
        }
        let now = Instant::now();
        for h in self.priorities.iter().flatten() {
            if h.is_ejected() {
                let mut until = h
                    .ejected_until
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if until.is_some_and(|t| t <= now) {
                    *until = None;
                    h.ejected.store(false, Ordering::Relaxed);
                    if let Some(l) = &self.locality {
                        l.invalidate();
                    }
                    self.stats.outlier_ejections_active.dec();
                }
            }
        }
    }

    /// Whether a request goes to this cluster's hosts over HTTP/2.
    pub fn uses_h2(&self, downstream_h2: bool) -> bool {
        match self.config.protocol {
            UpstreamProtocol::Http1 => false,
            UpstreamProtocol::Http2 => true,
            UpstreamProtocol::Downstream => downstream_h2,
        }
    }

    pub fn record_status(&self, status: u16) {
        match status {
            200..=299 => self.stats.upstream_rq_2xx.inc(),
            300..=399 => self.stats.upstream_rq_3xx.inc(),
            400..=499 => self.stats.upstream_rq_4xx.inc(),
            _ => self.stats.upstream_rq_5xx.inc(),
        }
    }
}

/// The RING_HASH or MAGLEV table over a priority's hosts (empty for other policies); with locality
/// weights, each host weighs its share of its locality's weight (as Envoy builds it).
fn hash_table(
    policy: LbPolicy,
    members: &[Arc<Host>],
    locality: Option<&LocalityLb>,
    priority: usize,
) -> HashTable {
    let weights = match locality {
        Some(l) => l.host_weights(priority, members),
        None => members.iter().map(|h| f64::from(h.weight)).collect(),
    };
    let keys: Vec<HostKey<'_>> = members
        .iter()
        .zip(weights)
        .map(|(h, weight)| HostKey {
            address: &h.address,
            weight,
        })
        .collect();
    match policy {
        LbPolicy::Maglev { table_size } => HashTable::maglev(&keys, table_size),
        LbPolicy::RingHash {
            min_ring_size,
            max_ring_size,
        } => HashTable::ring(&keys, min_ring_size, max_ring_size),
        _ => HashTable::Ring(Vec::new()),
    }
}

/// How a request to a host ended, for outlier detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Status(u16),
    /// Connect failure, reset or timeout before a response.
    LocalFailure,
}

fn enforced(percent: u32) -> bool {
    percent >= 100 || (percent > 0 && rand::rng().random_range(0..100) < percent)
}

/// Weighted round robin over `hosts`, at the position `next` keeps.
fn weighted_round_robin<'h>(hosts: &[&'h Arc<Host>], next: &AtomicUsize) -> &'h Arc<Host> {
    let n = next.fetch_add(1, Ordering::Relaxed);
    if hosts.iter().all(|h| h.weight == hosts[0].weight) {
        return hosts[n % hosts.len()];
    }
    // Weighted: walk the cumulative weights.
    let total: u64 = hosts.iter().map(|h| u64::from(h.weight)).sum();
    let mut point = u64::try_from(n).unwrap_or(0) % total.max(1);
    for h in hosts {
        let w = u64::from(h.weight);
        if point < w {
            return h;
        }
        point -= w;
    }
    hosts[0]
}

fn weighted_random<'h>(hosts: &[&'h Arc<Host>]) -> &'h Arc<Host> {
    let total: u64 = hosts.iter().map(|h| u64::from(h.weight)).sum();
    let mut point = rand::rng().random_range(0..total.max(1));
    for h in hosts {
        let w = u64::from(h.weight);
        if point < w {
            return h;
        }
        point -= w;
    }
    hosts[0]
}

/// Envoy's least-request: with equal weights, the best of `choice_count` random hosts (power of
/// two choices); with weights, weight divided by active requests + 1.
fn least_request<'h>(hosts: &[&'h Arc<Host>], choice_count: u32) -> &'h Arc<Host> {
    let mut rng = rand::rng();
    let equal = hosts.iter().all(|h| h.weight == hosts[0].weight);
    if equal {
        let mut best = hosts[rng.random_range(0..hosts.len())];
        for _ in 1..choice_count {
            let c = hosts[rng.random_range(0..hosts.len())];
            if c.active_requests.load(Ordering::Relaxed)
                < best.active_requests.load(Ordering::Relaxed)
            {
                best = c;
            }
        }
        best
    } else {
        let score = |h: &Host| {
            f64::from(h.weight) / (f64::from(h.active_requests.load(Ordering::Relaxed)) + 1.0)
        };
        let total: f64 = hosts.iter().map(|h| score(h)).sum();
        let mut point = rng.random_range(0.0..total.max(f64::MIN_POSITIVE));
        for h in hosts {
            let s = score(h);
            if point < s {
                return h;
            }
            point -= s;
        }
        hosts[0]
    }
}

/// A response body that holds a connection slot until it ends (or is dropped).
#[derive(Debug)]
pub struct Guarded {
    inner: Body,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Guarded {
    pub fn new(inner: Body, slot: Option<tokio::sync::OwnedSemaphorePermit>) -> Guarded {
        Guarded { inner, slot }
    }
}

impl hyper::body::Body for Guarded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, std::task::Poll::Ready(None | Some(Err(_)))) {
            self.slot = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// How long an idle upstream connection is kept: the cluster's `idle_timeout` (Envoy's default one
/// hour), and for an ORIGINAL_DST cluster at most its `cleanup_interval`, as Envoy closes a host's
/// connections when it forgets the host.
fn pool_idle_timeout(config: &Cluster) -> Duration {
    let idle = config.idle_timeout.unwrap_or(Duration::from_secs(3600));
    match &config.original_dst {
        Some(od) => idle.min(od.cleanup_interval),
        None => idle,
    }
}

/// A connection pool's settings for `config`'s hosts (HTTP/2 only when `h2`): its idle timeout, and
/// as many idle connections kept per host as the cluster may open (at most 1,024).
fn pool_builder(config: &Cluster, h2: bool) -> hyper_util::client::legacy::Builder {
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_idle_timeout(pool_idle_timeout(config));
    b.pool_max_idle_per_host(
        usize::try_from(config.circuit_breakers.max_connections)
            .unwrap_or(usize::MAX)
            .min(1024),
    );
    b.http2_only(h2);
    // As Envoy's codec: an obsolete folded response header is unfolded, not refused.
    b.http1_allow_obsolete_multiline_headers_in_responses(true);
    b
}

/// A client (HTTP/2 only when `h2`, else HTTP/1.1) whose connections all go to `host`, with its TLS.
fn host_client(
    config: &Cluster,
    host: &Host,
    stats: &ClusterStats,
    h2: bool,
) -> Client<HostConnector, Body> {
    pool_builder(config, h2).build(HostConnector {
        address: Arc::from(host.address.as_str()),
        timeout: config.connect_timeout,
        tls: host.tls.as_ref().map(|t| OriginateTls {
            config: if h2 { t.http2.clone() } else { t.http1.clone() },
            server_name: t.server_name.clone(),
        }),
        dial: Dial::of(config),
        counting: Counting::new(
            stats,
            host,
            Some(if h2 {
                UpstreamProtocol::Http2
            } else {
                UpstreamProtocol::Http1
            }),
        ),
    })
}

/// Connects to one host's address, whatever the request URI's authority (which is what HTTP/2 sends
/// as `:authority`), then originates TLS when the cluster has an `UpstreamTlsContext`.
#[derive(Debug, Clone)]
pub struct HostConnector {
    address: Arc<str>,
    timeout: Duration,
    tls: Option<OriginateTls>,
    dial: Dial,
    counting: Counting,
}

/// The client config and server name for TLS to a cluster's hosts.
#[derive(Debug, Clone)]
pub struct OriginateTls {
    pub config: Arc<rustls::ClientConfig>,
    pub server_name: Option<ServerName<'static>>,
}

type ConnectFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<TokioIo<Counted>>> + Send>>;

impl tower_service::Service<http::Uri> for HostConnector {
    type Response = TokioIo<Counted>;
    type Error = std::io::Error;
    type Future = ConnectFuture;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let (address, timeout, tls, dial) = (
            self.address.clone(),
            self.timeout,
            self.tls.clone(),
            self.dial,
        );
        let counting = self.counting.clone();
        Box::pin(async move {
            let io = counting
                .connect(&address, timeout, tls.as_ref(), dial)
                .await?;
            Ok(TokioIo::new(io))
        })
    }
}

/// How a cluster's upstream connections are made, besides where to and with what TLS.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dial {
    /// `upstream_bind_config.source_address`: the connection leaves from that address (any port),
    /// when it is of the destination's family.
    pub source: Option<IpAddr>,
    pub keepalive: Option<TcpKeepalive>,
    /// Which of a host name's addresses to use.
    pub family: DnsFamily,
}

impl Dial {
    pub fn of(cluster: &Cluster) -> Dial {
        Dial {
            source: cluster.source_address,
            keepalive: cluster.tcp_keepalive,
            family: cluster.dns_family,
        }
    }
}

/// Sets `SO_KEEPALIVE` and those of its timings that are given (the system's for the others).
fn set_keepalive(stream: &TcpStream, k: &TcpKeepalive) -> std::io::Result<()> {
    let mut params = socket2::TcpKeepalive::new();
    if let Some(t) = k.time {
        params = params.with_time(t);
    }
    if let Some(i) = k.interval {
        params = params.with_interval(i);
    }
    if let Some(n) = k.probes {
        params = params.with_retries(n);
    }
    socket2::SockRef::from(stream).set_tcp_keepalive(&params)
}

/// Connects to `address` (TCP, then TLS when `tls` is given; or a Unix domain socket's path)
/// within `timeout`, TLS handshake included, as Envoy's `connect_timeout` covers the transport
/// socket's handshake.
pub async fn connect(
    address: &str,
    timeout: Duration,
    tls: Option<&OriginateTls>,
    dial: Dial,
) -> std::io::Result<Io> {
    let connect = async {
        if is_pipe(address) {
            if tls.is_some() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    format!("{address}: TLS to a unix domain socket is not supported"),
                ));
            }
            return Ok(Io::Unix(tokio::net::UnixStream::connect(address).await?));
        }
        let addr = resolve(address, dial.family).await?;
        let stream = match dial.source.filter(|s| s.is_ipv4() == addr.is_ipv4()) {
            None => TcpStream::connect(addr).await?,
            Some(source) => {
                let socket = if addr.is_ipv4() {
                    TcpSocket::new_v4()?
                } else {
                    TcpSocket::new_v6()?
                };
                socket.bind(SocketAddr::new(source, 0))?;
                socket.connect(addr).await?
            }
        };
        stream.set_nodelay(true)?;
        if let Some(k) = &dial.keepalive {
            set_keepalive(&stream, k)?;
        }
        match tls {
            None => Ok(Io::Plain(stream)),
            Some(t) => crate::tls::connect(stream, t.config.clone(), t.server_name.as_ref()).await,
        }
    };
    tokio::time::timeout(timeout, connect).await.map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("connecting to {address}: timed out after {timeout:?}"),
        )
    })?
}

/// Resolves a `host:port` (IP or DNS name) for a connection, to an address of `family`.
pub async fn resolve(address: &str, family: DnsFamily) -> std::io::Result<SocketAddr> {
    if let Ok(a) = address.parse() {
        return Ok(a);
    }
    family
        .pick(tokio::net::lookup_host(address).await?)
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{address}: no address of the cluster's dns_lookup_family"),
            )
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use proxy_model::error::At;
    use proxy_model::route::hash::xx_hash64;
    use xds_api::bootstrap::message_from_yaml;

    use super::*;

    /// A cluster of `10.0.0.1..=4:80` with `lb_policy`; `health` marks hosts, ejection after one 5xx.
    fn runtime(lb_policy: &str, health: [&str; 4]) -> ClusterRuntime {
        let endpoints: Vec<String> = health
            .iter()
            .enumerate()
            .map(|(i, h)| {
                format!(
                    "{{endpoint: {{address: {{socket_address: {{address: 10.0.0.{}, port_value: 80}}}}}}, health_status: {h}}}",
                    i + 1
                )
            })
            .collect();
        let yaml = format!(
            "{{name: c, lb_policy: {lb_policy}, outlier_detection: {{consecutive_5xx: 1, max_ejection_percent: 50}}, load_assignment: {{cluster_name: c, endpoints: [{{lb_endpoints: [{}]}}]}}}}",
            endpoints.join(", ")
        );
        let proto = message_from_yaml(&yaml, None).expect("valid cluster");
        let cluster = Cluster::from_proto(&proto, &At::root("c")).expect("converts");
        ClusterRuntime::new(Arc::new(cluster), &Registry::default())
    }

    /// The host each of 400 keys goes to.
    fn picks(rt: &ClusterRuntime) -> Vec<String> {
        (0..400)
            .map(|k| {
                let hash = xx_hash64(format!("key-{k}").as_bytes());
                rt.pick(&[], Some(hash)).expect("a host").address.clone()
            })
            .collect()
    }

    #[test]
    fn an_ejected_host_loses_only_its_own_keys() {
        for policy in ["RING_HASH", "MAGLEV"] {
            let rt = runtime(policy, ["HEALTHY"; 4]);
            let before = picks(&rt);
            assert_eq!(
                picks(&rt),
                before,
                "{policy}: the same keys, the same hosts"
            );
            let ejected = rt.priorities[0][0].clone();
            rt.record_outcome(&ejected, Outcome::Status(500));
            assert!(ejected.is_ejected());
            let after = picks(&rt);
            let mut moved_to = std::collections::BTreeSet::new();
            for (b, a) in before.iter().zip(&after) {
                if *b == ejected.address {
                    assert_ne!(a, b, "{policy}: an ejected host is skipped");
                    moved_to.insert(a.clone());
                } else {
                    assert_eq!(a, b, "{policy}: a key of another host moved");
                }
            }
            // Its keys spread over the others rather than all landing on one neighbour.
            assert!(moved_to.len() >= 2, "{policy}: {moved_to:?}");
        }
    }

    #[test]
    fn localities_are_chosen_by_weight_until_an_ejection_empties_one() {
        let yaml = "{name: l, common_lb_config: {locality_weighted_lb_config: {}}, \
            outlier_detection: {consecutive_5xx: 1, max_ejection_percent: 100}, \
            load_assignment: {cluster_name: l, endpoints: [\
            {locality: {zone: a}, load_balancing_weight: 1, lb_endpoints: [\
              {endpoint: {address: {socket_address: {address: 10.0.0.1, port_value: 80}}}}, \
              {endpoint: {address: {socket_address: {address: 10.0.0.2, port_value: 80}}}}]}, \
            {locality: {zone: b}, load_balancing_weight: 3, lb_endpoints: [\
              {endpoint: {address: {socket_address: {address: 10.0.0.3, port_value: 80}}}}]}]}}";
        let proto = message_from_yaml(yaml, None).expect("valid cluster");
        let cluster = Cluster::from_proto(&proto, &At::root("l")).expect("converts");
        let rt = ClusterRuntime::new(Arc::new(cluster), &Registry::default());
        let count = |rt: &ClusterRuntime| {
            let mut counts = std::collections::BTreeMap::<String, usize>::new();
            for _ in 0..400 {
                let host = rt.pick(&[], None).expect("a host");
                *counts.entry(host.address.clone()).or_default() += 1;
            }
            counts
        };
        let counts = count(&rt);
        // b's weight 3 against a's 1; a's two hosts in turn.
        assert!(counts["10.0.0.3:80"].abs_diff(300) <= 3, "{counts:?}");
        assert!(
            counts["10.0.0.1:80"].abs_diff(counts["10.0.0.2:80"]) <= 2,
            "{counts:?}"
        );
        // b's only host is ejected: the schedule is rebuilt and b gets nothing.
        let b = rt.priorities[0][2].clone();
        rt.record_outcome(&b, Outcome::Status(500));
        assert!(b.is_ejected());
        let counts = count(&rt);
        assert_eq!(counts.get("10.0.0.3:80"), None, "{counts:?}");
        assert_eq!(counts.values().sum::<usize>(), 400);
    }

    #[test]
    fn unhealthy_hosts_are_skipped_and_no_key_picks_at_random() {
        let rt = runtime("RING_HASH", ["HEALTHY", "UNHEALTHY", "HEALTHY", "HEALTHY"]);
        let chosen = picks(&rt);
        assert!(!chosen.contains(&"10.0.0.2:80".to_owned()));
        let random: std::collections::BTreeSet<String> = (0..100)
            .map(|_| rt.pick(&[], None).expect("a host").address.clone())
            .collect();
        assert_eq!(random.len(), 3, "{random:?}");
        // Every host unhealthy: panic, as Envoy, every host serves its own keys again.
        let rt = runtime("MAGLEV", ["UNHEALTHY"; 4]);
        let all: std::collections::BTreeSet<String> = picks(&rt).into_iter().collect();
        assert_eq!(all.len(), 4, "{all:?}");
    }

    /// `upstream_connection_options.tcp_keepalive` reaches the upstream socket; without it the
    /// socket keeps the system's default (off).
    #[tokio::test]
    async fn upstream_connections_get_the_clusters_tcp_keepalive() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let timeout = Duration::from_secs(5);
        let dial = Dial {
            keepalive: Some(TcpKeepalive {
                probes: Some(4),
                time: Some(Duration::from_secs(300)),
                interval: Some(Duration::from_secs(30)),
            }),
            ..Dial::default()
        };
        let Ok(crate::tls::Io::Plain(stream)) = connect(&address, timeout, None, dial).await else {
            panic!("a plain connection");
        };
        let socket = socket2::SockRef::from(&stream);
        assert!(socket.keepalive().unwrap());
        assert_eq!(
            socket.tcp_keepalive_time().unwrap(),
            Duration::from_secs(300)
        );
        assert_eq!(
            socket.tcp_keepalive_interval().unwrap(),
            Duration::from_secs(30)
        );
        assert_eq!(socket.tcp_keepalive_retries().unwrap(), 4);

        let Ok(crate::tls::Io::Plain(stream)) =
            connect(&address, timeout, None, Dial::default()).await
        else {
            panic!("a plain connection");
        };
        assert!(!socket2::SockRef::from(&stream).keepalive().unwrap());
    }
}
