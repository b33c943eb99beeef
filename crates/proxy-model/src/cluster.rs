//! Clusters: where a route's traffic goes, how hosts are found and chosen, and the limits that protect
//! them. Built from Envoy's `Cluster` (and `ClusterLoadAssignment` for EDS).

use std::net::IpAddr;
use std::time::Duration;

use xds_api::pb::envoy::config::cluster::v3 as cluster;
use xds_api::pb::envoy::config::core::v3 as core;
use xds_api::pb::envoy::config::endpoint::v3 as endpoint;
use xds_api::pb::envoy::extensions::upstreams::http::v3 as upstream_http;

use crate::error::{At, Errors, ModelError};
use crate::tls::Secrets;
use crate::{duration, u32_or, unpack};

const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    Static,
    StrictDns,
    LogicalDns,
    Eds,
    OriginalDst,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbPolicy {
    RoundRobin,
    LeastRequest {
        choice_count: u32,
    },
    Random,
    /// A consistent-hash ring of virtual nodes, sized within `[min_ring_size, max_ring_size]`
    /// (`ring_hash_lb_config`, Envoy's defaults 1024 and 8M), hashed with xxHash64.
    RingHash {
        min_ring_size: u64,
        max_ring_size: u64,
    },
    /// A Maglev lookup table of `table_size` entries (a prime, default 65537).
    Maglev {
        table_size: u64,
    },
    /// `CLUSTER_PROVIDED`: the cluster chooses (ORIGINAL_DST: the connection's original destination).
    ClusterProvided,
}

/// Which HTTP version the cluster speaks upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    Http1,
    Http2,
    /// The same as the downstream request.
    Downstream,
}

#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    pub discovery: Discovery,
    pub lb_policy: LbPolicy,
    pub connect_timeout: Duration,
    pub protocol: UpstreamProtocol,
    /// `http2_protocol_options.allow_connect`: over HTTP/2, an upgrade (WebSocket, …) goes to the
    /// hosts as an extended CONNECT (RFC 8441).
    pub h2_extended_connect: bool,
    /// Endpoints by priority (index 0 = priority 0), grouped by locality, each with its weight.
    pub priorities: Vec<Vec<LocalityEndpoints>>,
    /// `common_lb_config.locality_weighted_lb_config`: within a priority, a locality is chosen by
    /// its weight and availability before a host (see [`crate::locality`]); without it locality
    /// weights are ignored.
    pub locality_weighted: bool,
    /// The load assignment's `policy.overprovisioning_factor`, in percent (Envoy's default 140):
    /// how far a priority's or locality's availability is scaled before it counts as degraded.
    pub overprovisioning_factor: u32,
    /// `common_lb_config.healthy_panic_threshold`, in whole percent (Envoy's default 50; 0: never
    /// in panic): a priority with a smaller share of available hosts uses all its hosts.
    pub healthy_panic_threshold: u32,
    pub circuit_breakers: Thresholds,
    /// The HIGH priority's thresholds: shown by the admin interface only, since routes of HIGH
    /// priority are refused.
    pub circuit_breakers_high: Thresholds,
    pub outlier_detection: Option<OutlierDetection>,
    pub max_requests_per_connection: Option<u32>,
    pub idle_timeout: Option<Duration>,
    pub per_connection_buffer_limit: u32,
    /// TLS origination (`transport_socket` with an `UpstreamTlsContext`); `None`: plaintext.
    pub tls: Option<crate::tls::UpstreamTls>,
    /// `transport_socket_matches`: endpoints whose metadata meets a match's criteria connect with
    /// its transport socket instead of `tls` (Istio's auto mTLS: TLS to the endpoints that have a
    /// sidecar, plaintext to the others). Each endpoint's choice is made when its load assignment
    /// is built ([`Endpoint::socket_match`]).
    pub socket_matches: Vec<SocketMatch>,
    /// How an ORIGINAL_DST cluster finds its hosts; `None` for every other type.
    pub original_dst: Option<OriginalDst>,
    /// `upstream_bind_config.source_address`: upstream connections leave from this address (Istio's
    /// InboundPassthroughCluster binds to 127.0.0.6 so capture rules let them through).
    pub source_address: Option<IpAddr>,
    /// `upstream_connection_options.tcp_keepalive`: TCP keepalive on upstream connections.
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// `dns_lookup_family`: which of a name's addresses a connection may use.
    pub dns_family: DnsFamily,
}

/// `core.v3.TcpKeepalive`: `SO_KEEPALIVE`, with the system's value for each field left unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpKeepalive {
    /// `keepalive_probes`: unanswered probes before the connection is dropped.
    pub probes: Option<u32>,
    /// `keepalive_time`: idle time before the first probe.
    pub time: Option<Duration>,
    /// `keepalive_interval`: time between probes.
    pub interval: Option<Duration>,
}

/// `dns_lookup_family`. A host name is resolved by the system's resolver when a connection is made;
/// this decides which of its addresses is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DnsFamily {
    /// `AUTO` (Envoy's default) and `ALL`: the first address in the resolver's order, which on
    /// Linux already puts IPv6 first where it is usable.
    #[default]
    Any,
    /// `V4_ONLY`.
    V4Only,
    /// `V6_ONLY`.
    V6Only,
    /// `V4_PREFERRED`: IPv4 if the name has one, else IPv6.
    V4Preferred,
}

impl DnsFamily {
    /// The address a connection uses among a name's `addresses` (in the resolver's order).
    pub fn pick(
        self,
        addresses: impl IntoIterator<Item = std::net::SocketAddr>,
    ) -> Option<std::net::SocketAddr> {
        let mut first_v6 = None;
        for a in addresses {
            match (self, a.is_ipv4()) {
                (DnsFamily::Any, _) | (DnsFamily::V4Only | DnsFamily::V4Preferred, true) => {
                    return Some(a);
                }
                (DnsFamily::V6Only, false) => return Some(a),
                (DnsFamily::V4Preferred, false) => {
                    first_v6.get_or_insert(a);
                }
                _ => {}
            }
        }
        first_v6
    }
}

/// An ORIGINAL_DST cluster: each connection or request goes to the downstream connection's original
/// destination, or to the address an HTTP header names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalDst {
    /// `original_dst_lb_config.use_http_header`: the header (lower case) whose `ip:port` overrides
    /// the original destination (`http_header_name`, default `x-envoy-original-dst-host`).
    pub header: Option<String>,
    /// `upstream_port_override`: connect to this port instead of the destination's.
    pub port_override: Option<u16>,
    /// `cleanup_interval` (Envoy's default 5 s): hosts unused for that long are forgotten.
    pub cleanup_interval: Duration,
}

/// The header Envoy reads with `use_http_header` unless `http_header_name` names another.
pub const ORIGINAL_DST_HEADER: &str = "x-envoy-original-dst-host";

/// The endpoints of one locality of a priority. Entries of a `ClusterLoadAssignment` with the same
/// locality (region, zone, sub-zone; none at all is one more) are one locality, as in Envoy.
#[derive(Debug, Clone)]
pub struct LocalityEndpoints {
    pub locality: Locality,
    /// `load_balancing_weight`, counted (as Envoy) only when the entry names its locality; the last
    /// entry of a locality that has one sets it.
    pub weight: Option<u32>,
    pub endpoints: Vec<Endpoint>,
}

/// Where endpoints run (`core.v3.Locality`).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Locality {
    pub region: String,
    pub zone: String,
    pub sub_zone: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port`; a name for STRICT_DNS/LOGICAL_DNS clusters, resolved at run time. A Unix domain
    /// socket (`pipe`) is its path, with port 0.
    pub host: String,
    pub port: u16,
    pub weight: u32,
    pub health: Health,
    /// Which of the cluster's [`socket_matches`](Cluster::socket_matches) this endpoint connects
    /// with; `None`: the cluster's own transport socket.
    pub socket_match: Option<usize>,
}

/// One of a cluster's `transport_socket_matches`.
#[derive(Debug, Clone)]
pub struct SocketMatch {
    pub name: String,
    /// `match`: every field must be in the endpoint's (else its locality's)
    /// `envoy.transport_socket_match` metadata with an equal value; none matches every endpoint.
    pub criteria: Vec<(String, xds_api::pb::google::protobuf::Value)>,
    /// `None`: plaintext (`raw_buffer`).
    pub tls: Option<crate::tls::UpstreamTls>,
}

/// Whether `metadata`'s [`xds_api::TRANSPORT_SOCKET_MATCH`] namespace has every field of `criteria`, with
/// equal values (Envoy's label match: no metadata matches only empty criteria).
fn meets(
    criteria: &[(String, xds_api::pb::google::protobuf::Value)],
    metadata: Option<&core::Metadata>,
) -> bool {
    let fields = metadata
        .and_then(|m| m.filter_metadata.get(xds_api::TRANSPORT_SOCKET_MATCH))
        .map(|s| &s.fields);
    criteria
        .iter()
        .all(|(k, v)| fields.and_then(|f| f.get(k)) == Some(v))
}

/// The first of `matches` whose criteria an endpoint's metadata meets, else the first its
/// locality's meets, as Envoy resolves them; `None`: the cluster's own transport socket.
pub fn socket_match_for(
    matches: &[SocketMatch],
    endpoint: Option<&core::Metadata>,
    locality: Option<&core::Metadata>,
) -> Option<usize> {
    let first = |metadata| matches.iter().position(|m| meets(&m.criteria, metadata));
    first(endpoint).or_else(|| first(locality))
}

impl Endpoint {
    /// Where to connect: `host:port`, or a Unix domain socket's path.
    pub fn address(&self) -> String {
        if is_pipe(&self.host) {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Whether an endpoint address is a Unix domain socket's path: absolute, or relative from `./` or
/// `../` (as Istio's bootstraps name the agent's sockets); a host name or IP never starts so.
pub fn is_pipe(address: &str) -> bool {
    address.starts_with('/') || address.starts_with("./") || address.starts_with("../")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Unhealthy,
    Degraded,
    Draining,
}

/// `circuit_breakers` thresholds of one priority, with Envoy's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub max_connections: u32,
    pub max_pending_requests: u32,
    pub max_requests: u32,
    pub max_retries: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_retries: 3,
        }
    }
}

/// Envoy's outlier detection, with its defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierDetection {
    pub consecutive_5xx: u32,
    pub enforcing_consecutive_5xx: u32,
    pub consecutive_gateway_failure: u32,
    pub enforcing_consecutive_gateway_failure: u32,
    pub split_external_local_origin_errors: bool,
    pub consecutive_local_origin_failure: u32,
    pub enforcing_consecutive_local_origin_failure: u32,
    pub interval: Duration,
    pub base_ejection_time: Duration,
    pub max_ejection_time: Duration,
    pub max_ejection_percent: u32,
}

impl Cluster {
    /// A cluster whose TLS context names no secrets (see [`Cluster::from_proto_with`]).
    pub fn from_proto(p: &cluster::Cluster, at: &At) -> Result<Cluster, Vec<ModelError>> {
        Cluster::from_proto_with(p, at, &Secrets::default())
    }

    /// A cluster, its TLS context's named secrets looked up in `secrets`.
    pub fn from_proto_with(
        p: &cluster::Cluster,
        at: &At,
        secrets: &Secrets,
    ) -> Result<Cluster, Vec<ModelError>> {
        use cluster::cluster::{ClusterDiscoveryType as T, DiscoveryType as D, LbPolicy as L};
        let mut errors = Errors::default();
        if p.name.is_empty() {
            errors.push(at.key("name").error("a cluster needs a name"));
        }
        let discovery = match &p.cluster_discovery_type {
            None => Discovery::Static,
            Some(T::Type(t)) => match D::try_from(*t) {
                Ok(D::Static) => Discovery::Static,
                Ok(D::StrictDns) => Discovery::StrictDns,
                Ok(D::LogicalDns) => Discovery::LogicalDns,
                Ok(D::Eds) => Discovery::Eds,
                Ok(D::OriginalDst) => Discovery::OriginalDst,
                Err(_) => {
                    errors.push(at.key("type").error(format!("unknown cluster type {t}")));
                    Discovery::Static
                }
            },
            Some(T::ClusterType(c)) => {
                errors.push(
                    at.key("cluster_type")
                        .unsupported(format!("the custom cluster type {:?}", c.name)),
                );
                Discovery::Static
            }
        };
        let lb_policy = match L::try_from(p.lb_policy) {
            Ok(L::RoundRobin) => LbPolicy::RoundRobin,
            Ok(L::LeastRequest) => LbPolicy::LeastRequest { choice_count: 2 },
            Ok(L::Random) => LbPolicy::Random,
            Ok(L::RingHash) => errors
                .take(ring_hash_config(p, at))
                .unwrap_or(LbPolicy::RingHash {
                    min_ring_size: DEFAULT_MIN_RING_SIZE,
                    max_ring_size: MAX_RING_SIZE,
                }),
            Ok(L::Maglev) => errors
                .take(maglev_config(p, at))
                .unwrap_or(LbPolicy::Maglev {
                    table_size: DEFAULT_MAGLEV_TABLE_SIZE,
                }),
            Ok(L::ClusterProvided) => LbPolicy::ClusterProvided,
            Ok(other) => {
                errors.push(
                    at.key("lb_policy")
                        .unsupported(format!("lb_policy {}", other.as_str_name())),
                );
                LbPolicy::RoundRobin
            }
            Err(_) => {
                errors.push(
                    at.key("lb_policy")
                        .error(format!("unknown lb_policy {}", p.lb_policy)),
                );
                LbPolicy::RoundRobin
            }
        };
        let lb_policy = match (lb_policy, p.lb_config.as_ref()) {
            (
                LbPolicy::LeastRequest { .. },
                Some(cluster::cluster::LbConfig::LeastRequestLbConfig(c)),
            ) => LbPolicy::LeastRequest {
                choice_count: u32_or(c.choice_count.as_ref(), 2).max(2),
            },
            (policy, _) => policy,
        };
        // Envoy rounds the percentage to a whole one.
        let healthy_panic_threshold = p
            .common_lb_config
            .as_ref()
            .and_then(|c| c.healthy_panic_threshold.as_ref())
            .map_or(DEFAULT_HEALTHY_PANIC_THRESHOLD, |t| {
                t.value.clamp(0.0, 100.0).round() as u32
            });
        let locality_weighted = p.common_lb_config.as_ref().is_some_and(|c| {
            matches!(
                c.locality_config_specifier,
                Some(cluster::cluster::common_lb_config::LocalityConfigSpecifier::LocalityWeightedLbConfig(_))
            )
        });
        if let Some(common) = &p.common_lb_config
            && let Some(c) = &common.consistent_hashing_lb_config
        {
            let cat = at
                .key("common_lb_config")
                .key("consistent_hashing_lb_config");
            if c.use_hostname_for_hashing {
                errors.push(
                    cat.key("use_hostname_for_hashing")
                        .unsupported("hashing on host names"),
                );
            }
            if c.hash_balance_factor.is_some() {
                errors.push(
                    cat.key("hash_balance_factor")
                        .unsupported("bounded-load consistent hashing"),
                );
            }
        }
        // Envoy's pairing rule, in its words: only CLUSTER_PROVIDED with ORIGINAL_DST, and
        // CLUSTER_PROVIDED only where the cluster provides a load balancer.
        match (discovery, lb_policy) {
            (Discovery::OriginalDst, LbPolicy::ClusterProvided) => {}
            (Discovery::OriginalDst, other) => errors.push(at.key("lb_policy").error(format!(
                "LB policy {} is not valid for cluster type ORIGINAL_DST; only CLUSTER_PROVIDED is \
                 allowed with it",
                lb_policy_name(other)
            ))),
            (_, LbPolicy::ClusterProvided) => errors.push(at.key("lb_policy").error(
                "CLUSTER_PROVIDED needs a cluster that provides a load balancer (type: ORIGINAL_DST)",
            )),
            _ => {}
        }
        let original_dst = (discovery == Discovery::OriginalDst)
            .then(|| errors.take(original_dst(p, at)))
            .flatten();
        if original_dst.is_none()
            && let Some(cluster::cluster::LbConfig::OriginalDstLbConfig(_)) = &p.lb_config
        {
            errors.push(
                at.key("original_dst_lb_config")
                    .error("original_dst_lb_config is only valid with type: ORIGINAL_DST"),
            );
        }
        let source_address = p
            .upstream_bind_config
            .as_ref()
            .and_then(|b| errors.take(bind_config(b, &at.key("upstream_bind_config"))))
            .flatten();
        if p.load_balancing_policy.is_some() {
            errors.push(
                at.key("load_balancing_policy")
                    .unsupported("load_balancing_policy"),
            );
        }
        if !p.health_checks.is_empty() {
            errors.push(
                at.key("health_checks")
                    .unsupported("active health checking"),
            );
        }
        let tls = match &p.transport_socket {
            Some(ts) => errors
                .take(crate::tls::upstream(
                    ts,
                    &at.key("transport_socket"),
                    secrets,
                ))
                .flatten(),
            None => None,
        };
        let socket_matches = errors
            .take(socket_matches(p, at, secrets))
            .unwrap_or_default();
        for e in at.refused(&unimplemented_cluster_fields(p)) {
            errors.push(e);
        }
        let (protocol, h2_extended_connect) = errors
            .take(upstream_protocol(p, at))
            .unwrap_or((UpstreamProtocol::Http1, false));
        let (priorities, overprovisioning_factor) = match &p.load_assignment {
            Some(la) => errors
                .take(load_assignment(
                    la,
                    &at.key("load_assignment"),
                    &socket_matches,
                    discovery,
                ))
                .unwrap_or((Vec::new(), DEFAULT_OVERPROVISIONING_FACTOR)),
            None => (Vec::new(), DEFAULT_OVERPROVISIONING_FACTOR),
        };
        if discovery == Discovery::OriginalDst && p.load_assignment.is_some() {
            errors.push(
                at.key("load_assignment")
                    .error("ORIGINAL_DST clusters must have no load assignment configured"),
            );
        }
        // Envoy takes a STATIC or STRICT_DNS cluster without endpoints (Istio's BlackHoleCluster is
        // one); a LOGICAL_DNS cluster needs its one host.
        if discovery == Discovery::LogicalDns && p.load_assignment.is_none() {
            errors.push(
                at.key("load_assignment")
                    .error("a LOGICAL_DNS cluster needs load_assignment with one endpoint"),
            );
        }
        let thresholds = |priority: i32| {
            p.circuit_breakers
                .as_ref()
                .and_then(|cb| cb.thresholds.iter().find(|t| t.priority == priority))
                .map_or_else(Thresholds::default, |t| {
                    let d = Thresholds::default();
                    Thresholds {
                        max_connections: u32_or(t.max_connections.as_ref(), d.max_connections),
                        max_pending_requests: u32_or(
                            t.max_pending_requests.as_ref(),
                            d.max_pending_requests,
                        ),
                        max_requests: u32_or(t.max_requests.as_ref(), d.max_requests),
                        max_retries: u32_or(t.max_retries.as_ref(), d.max_retries),
                    }
                })
        };
        let circuit_breakers = thresholds(0);
        let circuit_breakers_high = thresholds(1);
        let outlier_detection = p.outlier_detection.as_ref().map(outlier_detection);
        let http_options = p
            .typed_extension_protocol_options
            .get(HTTP_PROTOCOL_OPTIONS);
        let typed_common = http_options
            .and_then(|any| unpack::<upstream_http::HttpProtocolOptions>(any, at).ok())
            .and_then(|o| o.common_http_protocol_options);
        let common_at = if typed_common.is_some() {
            at.key("typed_extension_protocol_options")
                .key(HTTP_PROTOCOL_OPTIONS)
                .key("common_http_protocol_options")
        } else {
            at.key("common_http_protocol_options")
        };
        let common = typed_common.or(p.common_http_protocol_options);
        if let Some(c) = &common {
            for e in common_at.refused(&unimplemented_common_http_fields(c)) {
                errors.push(e);
            }
        }
        let max_requests_per_connection = p
            .max_requests_per_connection
            .as_ref()
            .map(|v| v.value)
            .or_else(|| {
                common
                    .as_ref()
                    .and_then(|c| c.max_requests_per_connection.as_ref())
                    .map(|v| v.value)
            })
            .filter(|v| *v > 0);
        let idle_timeout = common
            .as_ref()
            .and_then(|c| c.idle_timeout.as_ref())
            .map_or(Some(Duration::from_secs(3600)), |d| {
                Some(duration(d)).filter(|d| !d.is_zero())
            });
        let cluster = Cluster {
            name: p.name.clone(),
            discovery,
            lb_policy,
            connect_timeout: p
                .connect_timeout
                .as_ref()
                .map_or(Duration::from_secs(5), duration),
            protocol,
            h2_extended_connect,
            priorities,
            locality_weighted,
            overprovisioning_factor,
            healthy_panic_threshold,
            circuit_breakers,
            circuit_breakers_high,
            outlier_detection,
            max_requests_per_connection,
            idle_timeout,
            per_connection_buffer_limit: u32_or(
                p.per_connection_buffer_limit_bytes.as_ref(),
                1024 * 1024,
            ),
            tls,
            socket_matches,
            original_dst,
            source_address,
            tcp_keepalive: p
                .upstream_connection_options
                .as_ref()
                .and_then(|o| o.tcp_keepalive.as_ref())
                .map(|k| TcpKeepalive {
                    probes: k.keepalive_probes.as_ref().map(|v| v.value),
                    time: k
                        .keepalive_time
                        .as_ref()
                        .map(|v| Duration::from_secs(v.value.into())),
                    interval: k
                        .keepalive_interval
                        .as_ref()
                        .map(|v| Duration::from_secs(v.value.into())),
                }),
            dns_family: match cluster::cluster::DnsLookupFamily::try_from(p.dns_lookup_family) {
                Ok(cluster::cluster::DnsLookupFamily::V4Only) => DnsFamily::V4Only,
                Ok(cluster::cluster::DnsLookupFamily::V6Only) => DnsFamily::V6Only,
                Ok(cluster::cluster::DnsLookupFamily::V4Preferred) => DnsFamily::V4Preferred,
                _ => DnsFamily::Any,
            },
        };
        errors.into_result(cluster)
    }

    /// Replaces the endpoints (an EDS update).
    pub fn with_load_assignment(
        &self,
        la: &endpoint::ClusterLoadAssignment,
    ) -> Result<Cluster, ModelError> {
        let (priorities, overprovisioning_factor) = load_assignment(
            la,
            &At::root(format!("ClusterLoadAssignment {}", la.cluster_name)),
            &self.socket_matches,
            self.discovery,
        )?;
        Ok(Cluster {
            priorities,
            overprovisioning_factor,
            ..self.clone()
        })
    }

    /// The TLS `endpoint` connects with (`None`: plaintext): its socket match's, else the cluster's.
    pub fn endpoint_tls(&self, endpoint: &Endpoint) -> Option<&crate::tls::UpstreamTls> {
        match endpoint.socket_match {
            Some(i) => self.socket_matches.get(i).and_then(|m| m.tls.as_ref()),
            None => self.tls.as_ref(),
        }
    }

    /// The TLS of a host made at run time (ORIGINAL_DST), which has no metadata: a match with no
    /// criteria, else the cluster's.
    pub fn unlabelled_tls(&self) -> Option<&crate::tls::UpstreamTls> {
        match socket_match_for(&self.socket_matches, None, None) {
            Some(i) => self.socket_matches[i].tls.as_ref(),
            None => self.tls.as_ref(),
        }
    }

    /// All endpoints of every priority, for the admin `/clusters` page.
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.priorities.iter().flatten().flat_map(|l| &l.endpoints)
    }
}

fn lb_policy_name(p: LbPolicy) -> &'static str {
    match p {
        LbPolicy::RoundRobin => "ROUND_ROBIN",
        LbPolicy::LeastRequest { .. } => "LEAST_REQUEST",
        LbPolicy::Random => "RANDOM",
        LbPolicy::RingHash { .. } => "RING_HASH",
        LbPolicy::Maglev { .. } => "MAGLEV",
        LbPolicy::ClusterProvided => "CLUSTER_PROVIDED",
    }
}

/// Envoy's `ring_hash_lb_config.minimum_ring_size` default.
pub const DEFAULT_MIN_RING_SIZE: u64 = 1024;
/// Envoy's `maximum_ring_size` default, and the most it accepts.
pub const MAX_RING_SIZE: u64 = 8 * 1024 * 1024;
/// Envoy's `maglev_lb_config.table_size` default.
pub const DEFAULT_MAGLEV_TABLE_SIZE: u64 = 65537;
/// The largest Maglev table Envoy accepts.
const MAX_MAGLEV_TABLE_SIZE: u64 = 5_000_011;

/// `transport_socket_matches`, each one's transport socket built as the cluster's would be.
fn socket_matches(
    p: &cluster::Cluster,
    at: &At,
    secrets: &Secrets,
) -> Result<Vec<SocketMatch>, ModelError> {
    let mut out = Vec::with_capacity(p.transport_socket_matches.len());
    for (i, m) in p.transport_socket_matches.iter().enumerate() {
        let mat = at.key("transport_socket_matches").index(i);
        let Some(ts) = &m.transport_socket else {
            return Err(mat.key("transport_socket").error(
                "a transport socket match needs a transport_socket (raw_buffer for plaintext)",
            ));
        };
        let tls = crate::tls::upstream(ts, &mat.key("transport_socket"), secrets)?;
        let mut criteria: Vec<_> = m
            .r#match
            .iter()
            .flat_map(|s| &s.fields)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        criteria.sort_by(|a, b| a.0.cmp(&b.0));
        out.push(SocketMatch {
            name: m.name.clone(),
            criteria,
            tls,
        });
    }
    Ok(out)
}

/// `ring_hash_lb_config`, with Envoy's bounds and defaults.
fn ring_hash_config(p: &cluster::Cluster, at: &At) -> Result<LbPolicy, ModelError> {
    use cluster::cluster::ring_hash_lb_config::HashFunction;
    let (mut min, mut max) = (DEFAULT_MIN_RING_SIZE, MAX_RING_SIZE);
    if let Some(cluster::cluster::LbConfig::RingHashLbConfig(c)) = &p.lb_config {
        let cat = at.key("ring_hash_lb_config");
        if c.hash_function != HashFunction::XxHash as i32 {
            return Err(cat
                .key("hash_function")
                .unsupported("a hash function other than XX_HASH"));
        }
        if let Some(v) = &c.minimum_ring_size {
            min = v.value;
        }
        if let Some(v) = &c.maximum_ring_size {
            max = v.value;
        }
        if min > MAX_RING_SIZE || max > MAX_RING_SIZE {
            return Err(cat.error(format!("a ring has at most {MAX_RING_SIZE} entries")));
        }
        if min == 0 {
            return Err(cat.key("minimum_ring_size").error("must be at least 1"));
        }
        if min > max {
            return Err(cat.error(format!(
                "ring hash: minimum_ring_size ({min}) > maximum_ring_size ({max})"
            )));
        }
    }
    Ok(LbPolicy::RingHash {
        min_ring_size: min,
        max_ring_size: max,
    })
}

/// `maglev_lb_config.table_size`: a prime (Envoy's rule), at most 5000011.
fn maglev_config(p: &cluster::Cluster, at: &At) -> Result<LbPolicy, ModelError> {
    let mut table_size = DEFAULT_MAGLEV_TABLE_SIZE;
    if let Some(cluster::cluster::LbConfig::MaglevLbConfig(c)) = &p.lb_config
        && let Some(v) = &c.table_size
    {
        table_size = v.value;
        let tat = at.key("maglev_lb_config").key("table_size");
        if table_size > MAX_MAGLEV_TABLE_SIZE {
            return Err(tat.error(format!("must be at most {MAX_MAGLEV_TABLE_SIZE}")));
        }
        if !is_prime(table_size) {
            return Err(tat.error(format!(
                "the table size of maglev must be a prime number, not {table_size}"
            )));
        }
    }
    Ok(LbPolicy::Maglev { table_size })
}

fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

/// `original_dst_lb_config` and `cleanup_interval` of an ORIGINAL_DST cluster.
fn original_dst(p: &cluster::Cluster, at: &At) -> Result<OriginalDst, ModelError> {
    let mut config = OriginalDst {
        header: None,
        port_override: None,
        cleanup_interval: p
            .cleanup_interval
            .as_ref()
            .map(duration)
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(5)),
    };
    if let Some(cluster::cluster::LbConfig::OriginalDstLbConfig(c)) = &p.lb_config {
        let cat = at.key("original_dst_lb_config");
        if c.metadata_key.is_some() {
            return Err(cat
                .key("metadata_key")
                .unsupported("the original destination from dynamic metadata"));
        }
        if c.use_http_header {
            let name = if c.http_header_name.is_empty() {
                ORIGINAL_DST_HEADER.to_owned()
            } else {
                c.http_header_name.to_ascii_lowercase()
            };
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(cat
                    .key("http_header_name")
                    .error(format!("{name:?} is not a valid header name")));
            }
            config.header = Some(name);
        }
        if let Some(port) = &c.upstream_port_override {
            config.port_override = Some(
                u16::try_from(port.value)
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| {
                        cat.key("upstream_port_override")
                            .error(format!("port {} is out of range", port.value))
                    })?,
            );
        }
    }
    Ok(config)
}

/// `upstream_bind_config`: Bosun binds upstream connections to `source_address` (any port); the
/// other options change how sockets are made and are refused.
fn bind_config(b: &core::BindConfig, at: &At) -> Result<Option<IpAddr>, ModelError> {
    use core::socket_address::PortSpecifier as P;
    if b.freebind.as_ref().is_some_and(|f| f.value) {
        return Err(at.key("freebind").unsupported("freebind"));
    }
    if !b.socket_options.is_empty() {
        return Err(at.key("socket_options").unsupported("socket_options"));
    }
    if !b.extra_source_addresses.is_empty() || !b.additional_source_addresses.is_empty() {
        return Err(at
            .key("extra_source_addresses")
            .unsupported("several source addresses"));
    }
    if b.local_address_selector.is_some() {
        return Err(at
            .key("local_address_selector")
            .unsupported("local_address_selector"));
    }
    let Some(s) = &b.source_address else {
        return Ok(None);
    };
    let sat = at.key("source_address");
    if matches!(s.port_specifier, Some(P::PortValue(p)) if p != 0)
        || matches!(s.port_specifier, Some(P::NamedPort(_)))
    {
        return Err(sat
            .key("port_value")
            .unsupported("a fixed source port (use 0)"));
    }
    s.address.parse().map(Some).map_err(|_| {
        sat.key("address")
            .error(format!("{:?} is not an IP address", s.address))
    })
}

/// The upstream protocol, and whether HTTP/2 upgrades go as extended CONNECT (`allow_connect`).
fn upstream_protocol(
    p: &cluster::Cluster,
    at: &At,
) -> Result<(UpstreamProtocol, bool), ModelError> {
    use upstream_http::http_protocol_options::UpstreamProtocolOptions as U;
    use upstream_http::http_protocol_options::explicit_http_config::ProtocolConfig as E;
    if let Some(any) = p
        .typed_extension_protocol_options
        .get(HTTP_PROTOCOL_OPTIONS)
    {
        let oat = at
            .key("typed_extension_protocol_options")
            .key(HTTP_PROTOCOL_OPTIONS);
        let options: upstream_http::HttpProtocolOptions = unpack(any, &oat)?;
        oat.refuse_set(&unimplemented_http_options(&options))?;
        return match options.upstream_protocol_options {
            Some(U::ExplicitHttpConfig(e)) => {
                let eat = oat.key("explicit_http_config");
                match e.protocol_config {
                    Some(E::Http2ProtocolOptions(h2)) => Ok((
                        UpstreamProtocol::Http2,
                        h2_options(&h2, &eat.key("http2_protocol_options"))?,
                    )),
                    Some(E::Http3ProtocolOptions(_)) => Err(oat.unsupported("HTTP/3 upstream")),
                    Some(E::HttpProtocolOptions(h1)) => {
                        h1_options(&h1, &eat.key("http_protocol_options"))?;
                        Ok((UpstreamProtocol::Http1, false))
                    }
                    None => Ok((UpstreamProtocol::Http1, false)),
                }
            }
            Some(U::UseDownstreamProtocolConfig(d)) => {
                let dat = oat.key("use_downstream_protocol_config");
                if let Some(h1) = &d.http_protocol_options {
                    h1_options(h1, &dat.key("http_protocol_options"))?;
                }
                let allow_connect = match &d.http2_protocol_options {
                    Some(h2) => h2_options(h2, &dat.key("http2_protocol_options"))?,
                    None => false,
                };
                Ok((UpstreamProtocol::Downstream, allow_connect))
            }
            Some(U::AutoConfig(_)) => Err(oat
                .key("auto_config")
                .unsupported("auto_config (ALPN-negotiated upstream protocol)")),
            None => Ok((UpstreamProtocol::Http1, false)),
        };
    }
    if let Some(h1) = &p.http_protocol_options {
        h1_options(h1, &at.key("http_protocol_options"))?;
    }
    if let Some(h2) = &p.http2_protocol_options {
        return Ok((
            UpstreamProtocol::Http2,
            h2_options(h2, &at.key("http2_protocol_options"))?,
        ));
    }
    Ok((UpstreamProtocol::Http1, false))
}

/// A cluster's HTTP/2 settings: `allow_connect`, which is implemented, or a refusal of any other
/// setting (stream limits, windows, keepalive PINGs, …), which is not.
fn h2_options(h2: &core::Http2ProtocolOptions, at: &At) -> Result<bool, ModelError> {
    let mut others = h2.clone();
    others.allow_connect = false;
    if others != core::Http2ProtocolOptions::default() {
        return Err(at.unsupported("upstream HTTP/2 settings other than allow_connect"));
    }
    Ok(h2.allow_connect)
}

/// A cluster's HTTP/1.1 settings: refused unless left at their defaults.
fn h1_options(h1: &core::Http1ProtocolOptions, at: &At) -> Result<(), ModelError> {
    if *h1 != core::Http1ProtocolOptions::default() {
        return Err(at.unsupported("upstream HTTP/1.1 settings"));
    }
    Ok(())
}

/// What `upstream_http_protocol_options` (on the cluster, or in its `HttpProtocolOptions`) does.
const AUTO_SNI: &str =
    "SNI and SAN validation from the request's host (upstream_http_protocol_options)";

/// Cluster fields that would change how connections are made or hosts chosen and that bosun proxy
/// does not implement: `(field, set, what it does)`. Fields that only name or count things
/// (`alt_stat_name`, `track_cluster_stats`, `metadata`, `lrs_server`) or only tune timing that bosun
/// does differently (`dns_refresh_rate`: names are resolved at each new connection; `preconnect_policy`;
/// `wait_for_warm_on_init`) are accepted.
fn unimplemented_cluster_fields(p: &cluster::Cluster) -> [(&'static str, bool, &'static str); 14] {
    let own_resolver = "a DNS resolver of the cluster's own (bosun proxy uses the system's)";
    [
        (
            "transport_socket_matcher",
            p.transport_socket_matcher.is_some(),
            "transport_socket_matcher",
        ),
        (
            "per_connection_buffer_high_watermark_timeout",
            p.per_connection_buffer_high_watermark_timeout.is_some(),
            "closing connections that stay over their buffer limit",
        ),
        (
            "upstream_http_protocol_options",
            p.upstream_http_protocol_options.is_some(),
            AUTO_SNI,
        ),
        ("dns_resolvers", !p.dns_resolvers.is_empty(), own_resolver),
        (
            "use_tcp_for_dns_lookups",
            p.use_tcp_for_dns_lookups,
            "DNS over TCP",
        ),
        (
            "dns_resolution_config",
            p.dns_resolution_config.is_some(),
            own_resolver,
        ),
        (
            "typed_dns_resolver_config",
            p.typed_dns_resolver_config.is_some(),
            own_resolver,
        ),
        (
            "lb_subset_config",
            p.lb_subset_config.is_some(),
            "subset load balancing",
        ),
        (
            "protocol_selection",
            p.protocol_selection != 0,
            "the upstream protocol chosen by the downstream's (protocol_selection)",
        ),
        (
            "close_connections_on_host_health_failure",
            p.close_connections_on_host_health_failure,
            "closing connections when a host fails health checks",
        ),
        ("filters", !p.filters.is_empty(), "upstream network filters"),
        (
            "upstream_config",
            p.upstream_config.is_some(),
            "a custom upstream (upstream_config)",
        ),
        (
            "connection_pool_per_downstream_connection",
            p.connection_pool_per_downstream_connection,
            "a connection pool per downstream connection",
        ),
        (
            "queuing_policies",
            p.queuing_policies.is_some(),
            "queuing policies",
        ),
    ]
}

/// The upstream `HttpProtocolOptions` fields other than the protocol and the common options that
/// would change requests: refused when set.
fn unimplemented_http_options(
    o: &upstream_http::HttpProtocolOptions,
) -> [(&'static str, bool, &'static str); 7] {
    // Envoy appends the codec filter itself; listing only it changes nothing.
    let codec_only = o
        .http_filters
        .iter()
        .all(|f| f.name == "envoy.filters.http.upstream_codec");
    [
        (
            "upstream_http_protocol_options",
            o.upstream_http_protocol_options.is_some(),
            AUTO_SNI,
        ),
        ("http_filters", !codec_only, "upstream HTTP filters"),
        (
            "header_validation_config",
            o.header_validation_config.is_some(),
            "header validation",
        ),
        (
            "outlier_detection",
            o.outlier_detection.is_some(),
            "HTTP outlier detection settings",
        ),
        (
            "request_mirror_policies",
            !o.request_mirror_policies.is_empty(),
            "mirroring per cluster",
        ),
        (
            "hash_policy",
            !o.hash_policy.is_empty(),
            "hash policies per cluster",
        ),
        (
            "retry_policy",
            o.retry_policy.is_some(),
            "retries per cluster",
        ),
    ]
}

/// Upstream `common_http_protocol_options` bosun proxy does not implement (it reads `idle_timeout`
/// and `max_requests_per_connection`): refused when set.
fn unimplemented_common_http_fields(
    c: &core::HttpProtocolOptions,
) -> [(&'static str, bool, &'static str); 5] {
    [
        (
            "max_connection_duration",
            c.max_connection_duration.is_some(),
            "a maximum upstream connection duration",
        ),
        (
            "max_stream_duration",
            c.max_stream_duration.is_some(),
            "a maximum upstream stream duration",
        ),
        (
            "max_headers_count",
            c.max_headers_count.is_some(),
            "a limit on response headers",
        ),
        (
            "max_response_headers_kb",
            c.max_response_headers_kb.is_some(),
            "a limit on response headers",
        ),
        (
            "headers_with_underscores_action",
            c.headers_with_underscores_action != 0,
            "rejecting or dropping headers with underscores",
        ),
    ]
}

/// Envoy's default `healthy_panic_threshold`, in percent.
pub const DEFAULT_HEALTHY_PANIC_THRESHOLD: u32 = 50;

/// Envoy's default `overprovisioning_factor` (1.4), in percent.
pub const DEFAULT_OVERPROVISIONING_FACTOR: u32 = 140;

/// The endpoints by priority and locality, and the overprovisioning factor, of a cluster of
/// `discovery`.
fn load_assignment(
    la: &endpoint::ClusterLoadAssignment,
    at: &At,
    socket_matches: &[SocketMatch],
    discovery: Discovery,
) -> Result<(Vec<Vec<LocalityEndpoints>>, u32), ModelError> {
    use endpoint::lb_endpoint::HostIdentifier;
    let mut overprovisioning_factor = DEFAULT_OVERPROVISIONING_FACTOR;
    if let Some(policy) = &la.policy {
        let pat = at.key("policy");
        if !policy.drop_overloads.is_empty() {
            return Err(pat
                .key("drop_overloads")
                .unsupported("dropping a share of requests (drop_overloads)"));
        }
        if policy.weighted_priority_health {
            return Err(pat
                .key("weighted_priority_health")
                .unsupported("priority health by endpoint weights"));
        }
        if policy.endpoint_stale_after.is_some() {
            return Err(pat
                .key("endpoint_stale_after")
                .unsupported("stale endpoints (endpoint_stale_after)"));
        }
        overprovisioning_factor = u32_or(
            policy.overprovisioning_factor.as_ref(),
            DEFAULT_OVERPROVISIONING_FACTOR,
        );
    }
    let mut priorities: Vec<Vec<LocalityEndpoints>> = Vec::new();
    for (i, locality) in la.endpoints.iter().enumerate() {
        let lat = at.key("endpoints").index(i);
        let mut endpoints = Vec::new();
        for (j, e) in locality.lb_endpoints.iter().enumerate() {
            let eat = lat.key("lb_endpoints").index(j);
            let address = match &e.host_identifier {
                Some(HostIdentifier::Endpoint(ep)) => ep.address.as_ref(),
                Some(HostIdentifier::EndpointName(_)) => {
                    return Err(eat.key("endpoint_name").unsupported("named endpoints"));
                }
                None => None,
            };
            let address_at = eat.key("endpoint").key("address");
            let (host, port) = endpoint_address(address, &address_at)?;
            // Only DNS clusters resolve names; Envoy refuses any other endpoint that is not an IP.
            let resolves = matches!(discovery, Discovery::StrictDns | Discovery::LogicalDns);
            if !resolves && !is_pipe(&host) && host.parse::<std::net::IpAddr>().is_err() {
                return Err(address_at
                    .key("socket_address")
                    .key("address")
                    .error(format!(
                        "malformed IP address: {host}; a STATIC or EDS cluster's endpoints are IP \
                     addresses (make the cluster STRICT_DNS or LOGICAL_DNS to resolve a name)"
                    )));
            }
            let health = match e.health_status {
                2 | 4 => Health::Unhealthy, // UNHEALTHY, TIMEOUT
                3 => Health::Draining,
                5 => Health::Degraded,
                _ => Health::Healthy, // UNKNOWN, HEALTHY
            };
            endpoints.push(Endpoint {
                host,
                port,
                weight: u32_or(e.load_balancing_weight.as_ref(), 1).max(1),
                health,
                socket_match: socket_match_for(
                    socket_matches,
                    e.metadata.as_ref(),
                    locality.metadata.as_ref(),
                ),
            });
        }
        let priority = usize::try_from(locality.priority).unwrap_or(usize::MAX);
        if priority > 128 {
            return Err(lat.key("priority").error("priority must be at most 128"));
        }
        if priorities.len() <= priority {
            priorities.resize_with(priority + 1, Vec::new);
        }
        // Envoy takes a locality's weight only from an entry that names the locality (0 is refused
        // by the proto's validation rules).
        let weight = locality
            .load_balancing_weight
            .as_ref()
            .filter(|_| locality.locality.is_some())
            .map(|w| w.value);
        let name = locality
            .locality
            .as_ref()
            .map(|l| Locality {
                region: l.region.clone(),
                zone: l.zone.clone(),
                sub_zone: l.sub_zone.clone(),
            })
            .unwrap_or_default();
        let localities = &mut priorities[priority];
        match localities.iter_mut().find(|l| l.locality == name) {
            Some(same) => {
                same.endpoints.extend(endpoints);
                same.weight = weight.or(same.weight);
            }
            None => localities.push(LocalityEndpoints {
                locality: name,
                weight,
                endpoints,
            }),
        }
    }
    Ok((priorities, overprovisioning_factor))
}

/// `(host, port)` of an endpoint's address: a socket address, or a Unix domain socket (`pipe`) as
/// its path and port 0.
fn endpoint_address(address: Option<&core::Address>, at: &At) -> Result<(String, u16), ModelError> {
    use core::address::Address as A;
    match address.and_then(|a| a.address.as_ref()) {
        Some(A::Pipe(pipe)) => {
            let at = at.key("pipe").key("path");
            if pipe.path.starts_with('@') {
                return Err(at.unsupported("abstract unix domain socket names"));
            }
            if !is_pipe(&pipe.path) {
                return Err(at.error(format!(
                    "{:?}: a unix domain socket's path must be absolute or start with ./ or ../ (write ./{} for one in the working directory)",
                    pipe.path, pipe.path
                )));
            }
            Ok((pipe.path.clone(), 0))
        }
        _ => socket_address(address, at),
    }
}

/// `(host, port)` of an Envoy socket address.
pub fn socket_address(
    address: Option<&core::Address>,
    at: &At,
) -> Result<(String, u16), ModelError> {
    use core::address::Address as A;
    use core::socket_address::PortSpecifier as P;
    match address.and_then(|a| a.address.as_ref()) {
        Some(A::SocketAddress(s)) => {
            if s.protocol != 0 {
                return Err(at.key("socket_address").key("protocol").unsupported("UDP"));
            }
            let port = match &s.port_specifier {
                Some(P::PortValue(p)) => u16::try_from(*p).map_err(|_| {
                    at.key("socket_address")
                        .key("port_value")
                        .error(format!("port {p} is out of range"))
                })?,
                Some(P::NamedPort(_)) => {
                    return Err(at
                        .key("socket_address")
                        .key("named_port")
                        .unsupported("named ports"));
                }
                None => 0,
            };
            if s.address.is_empty() {
                return Err(at
                    .key("socket_address")
                    .key("address")
                    .error("an address is required"));
            }
            Ok((s.address.clone(), port))
        }
        Some(A::Pipe(_)) => Err(at.key("pipe").unsupported("unix domain socket addresses")),
        Some(A::EnvoyInternalAddress(_)) => Err(at
            .key("envoy_internal_address")
            .unsupported("internal listeners")),
        None => Err(at.error("an address is required")),
    }
}

fn outlier_detection(o: &cluster::OutlierDetection) -> OutlierDetection {
    OutlierDetection {
        consecutive_5xx: u32_or(o.consecutive_5xx.as_ref(), 5),
        enforcing_consecutive_5xx: u32_or(o.enforcing_consecutive_5xx.as_ref(), 100),
        consecutive_gateway_failure: u32_or(o.consecutive_gateway_failure.as_ref(), 5),
        enforcing_consecutive_gateway_failure: u32_or(
            o.enforcing_consecutive_gateway_failure.as_ref(),
            0,
        ),
        split_external_local_origin_errors: o.split_external_local_origin_errors,
        consecutive_local_origin_failure: u32_or(o.consecutive_local_origin_failure.as_ref(), 5),
        enforcing_consecutive_local_origin_failure: u32_or(
            o.enforcing_consecutive_local_origin_failure.as_ref(),
            100,
        ),
        interval: o
            .interval
            .as_ref()
            .map_or(Duration::from_secs(10), duration),
        base_ejection_time: o
            .base_ejection_time
            .as_ref()
            .map_or(Duration::from_secs(30), duration),
        max_ejection_time: o
            .max_ejection_time
            .as_ref()
            .map_or(Duration::from_secs(300), duration),
        max_ejection_percent: u32_or(o.max_ejection_percent.as_ref(), 10).min(100),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use xds_api::bootstrap::message_from_yaml;

    use super::*;

    fn build(yaml: &str) -> Result<Cluster, Vec<ModelError>> {
        let p: cluster::Cluster = message_from_yaml(yaml, None).expect("valid Cluster");
        Cluster::from_proto(&p, &At::root("cluster"))
    }

    fn refusal(yaml: &str) -> String {
        build(yaml)
            .expect_err("must be refused")
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn istio_passthrough_clusters_parse() {
        let c = build("{name: PassthroughCluster, type: ORIGINAL_DST, lb_policy: CLUSTER_PROVIDED, connect_timeout: 10s}")
            .unwrap();
        assert_eq!(c.discovery, Discovery::OriginalDst);
        assert_eq!(c.lb_policy, LbPolicy::ClusterProvided);
        let od = c.original_dst.unwrap();
        assert_eq!(od.header, None);
        assert_eq!(od.port_override, None);
        assert_eq!(od.cleanup_interval, Duration::from_secs(5));
        assert_eq!(c.source_address, None);

        let c = build(
            r#"
name: InboundPassthroughCluster
type: ORIGINAL_DST
lb_policy: CLUSTER_PROVIDED
cleanup_interval: 60s
original_dst_lb_config: {use_http_header: true}
upstream_bind_config: {source_address: {address: 127.0.0.6, port_value: 0}}
"#,
        )
        .unwrap();
        let od = c.original_dst.unwrap();
        assert_eq!(od.header.as_deref(), Some(ORIGINAL_DST_HEADER));
        assert_eq!(od.cleanup_interval, Duration::from_secs(60));
        assert_eq!(c.source_address, Some("127.0.0.6".parse().unwrap()));
    }

    /// A cluster with Istio's auto mTLS matches (TLS for `tlsMode: istio`, else plaintext) and
    /// endpoints labelled on the endpoint, on the locality, both, or not at all.
    const AUTO_MTLS: &str = r#"
name: c
type: STATIC
transport_socket_matches:
- name: tlsMode-istio
  match: {tlsMode: istio}
  transport_socket:
    name: envoy.transport_sockets.tls
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
      sni: outbound_.80_._.c
- name: tlsMode-disabled
  match: {}
  transport_socket: {name: envoy.transport_sockets.raw_buffer}
load_assignment:
  cluster_name: c
  endpoints:
  - lb_endpoints:
    - endpoint: {address: {socket_address: {address: 10.0.0.1, port_value: 80}}}
      metadata: {filter_metadata: {envoy.transport_socket_match: {tlsMode: istio}}}
    - endpoint: {address: {socket_address: {address: 10.0.0.2, port_value: 80}}}
    - endpoint: {address: {socket_address: {address: 10.0.0.3, port_value: 80}}}
      metadata: {filter_metadata: {envoy.transport_socket_match: {tlsMode: other}}}
  - metadata: {filter_metadata: {envoy.transport_socket_match: {tlsMode: istio}}}
    locality: {zone: z}
    lb_endpoints:
    - endpoint: {address: {socket_address: {address: 10.0.0.4, port_value: 80}}}
    - endpoint: {address: {socket_address: {address: 10.0.0.5, port_value: 80}}}
      metadata: {filter_metadata: {istio: {workload: w}}}
"#;

    #[test]
    fn transport_socket_matches_choose_each_endpoints_socket() {
        let c = build(AUTO_MTLS).unwrap();
        assert_eq!(c.socket_matches.len(), 2);
        assert_eq!(c.socket_matches[0].name, "tlsMode-istio");
        let chosen: Vec<(String, Option<usize>, bool)> = c
            .endpoints()
            .map(|e| (e.host.clone(), e.socket_match, c.endpoint_tls(e).is_some()))
            .collect();
        assert_eq!(
            chosen,
            [
                // Labelled: TLS.
                ("10.0.0.1".to_owned(), Some(0), true),
                // Not labelled: the empty match takes it, plaintext.
                ("10.0.0.2".to_owned(), Some(1), false),
                // Another value: not the first match; the empty one.
                ("10.0.0.3".to_owned(), Some(1), false),
                // Its locality's label counts when its own metadata matches nothing but the empty
                // match; as in Envoy, the endpoint's matches come first, so the empty match wins.
                ("10.0.0.4".to_owned(), Some(1), false),
                ("10.0.0.5".to_owned(), Some(1), false),
            ]
        );
        // A host made at run time has no metadata: the empty match.
        assert!(c.unlabelled_tls().is_none());
    }

    #[test]
    fn locality_metadata_decides_when_no_endpoint_match_does() {
        // Without the catch-all match, endpoints of the labelled locality take TLS from it.
        let yaml = AUTO_MTLS.replace(
            "- name: tlsMode-disabled\n  match: {}\n  transport_socket: {name: envoy.transport_sockets.raw_buffer}\n",
            "",
        );
        let c = build(&yaml).unwrap();
        assert_eq!(c.socket_matches.len(), 1);
        let chosen: Vec<Option<usize>> = c.endpoints().map(|e| e.socket_match).collect();
        assert_eq!(chosen, [Some(0), None, None, Some(0), Some(0)]);
        // Unmatched endpoints use the cluster's own transport socket (none: plaintext).
        assert!(c.endpoint_tls(c.endpoints().nth(1).unwrap()).is_none());
        assert!(c.unlabelled_tls().is_none());
        // An EDS update resolves the new endpoints against the same matches.
        let la: endpoint::ClusterLoadAssignment = message_from_yaml(
            "{cluster_name: c, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 10.0.0.9, port_value: 80}}}, metadata: {filter_metadata: {envoy.transport_socket_match: {tlsMode: istio, extra: 1}}}}]}]}",
            None,
        )
        .unwrap();
        let updated = c.with_load_assignment(&la).unwrap();
        let e = updated.endpoints().next().unwrap();
        assert_eq!(e.socket_match, Some(0));
        assert!(updated.endpoint_tls(e).is_some());
    }

    #[test]
    fn a_socket_match_without_a_socket_is_refused_by_path() {
        let e = refusal("{name: c, transport_socket_matches: [{name: m, match: {a: b}}]}");
        assert_eq!(
            e,
            "cluster.transport_socket_matches[0].transport_socket: a transport socket match needs \
             a transport_socket (raw_buffer for plaintext)"
        );
    }

    #[test]
    fn pipe_endpoints_are_socket_paths() {
        let pipe = |path: &str| {
            format!(
                "{{name: s, type: STATIC, load_assignment: {{cluster_name: s, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{pipe: {{path: \"{path}\"}}}}}}}}]}}]}}}}"
            )
        };
        let c = build(&pipe("/run/app.sock")).unwrap();
        let e = &c.priorities[0][0].endpoints[0];
        assert_eq!(e.address(), "/run/app.sock");
        assert!(is_pipe(&e.address()));
        let e = refusal(&pipe("@abstract"));
        assert!(e.contains("pipe.path") && e.contains("abstract"), "{e}");
        let e = refusal(&pipe("run/app.sock"));
        assert!(e.contains("./run/app.sock"), "{e}");
        let c = build(&pipe("./etc/istio/proxy/XDS")).unwrap();
        assert_eq!(
            c.priorities[0][0].endpoints[0].address(),
            "./etc/istio/proxy/XDS"
        );
    }

    #[test]
    fn header_name_and_port_override() {
        let c = build(
            "{name: p, type: ORIGINAL_DST, lb_policy: CLUSTER_PROVIDED, original_dst_lb_config: {use_http_header: true, http_header_name: X-Target, upstream_port_override: 8443}}",
        )
        .unwrap();
        let od = c.original_dst.unwrap();
        assert_eq!(od.header.as_deref(), Some("x-target"));
        assert_eq!(od.port_override, Some(8443));
        // Without use_http_header the name is not used.
        let c = build(
            "{name: p, type: ORIGINAL_DST, lb_policy: CLUSTER_PROVIDED, original_dst_lb_config: {http_header_name: x-target}}",
        )
        .unwrap();
        assert_eq!(c.original_dst.unwrap().header, None);
    }

    #[test]
    fn envoys_pairing_rules_are_enforced() {
        let e = refusal("{name: p, type: ORIGINAL_DST}");
        assert!(
            e.contains("cluster.lb_policy")
                && e.contains("ROUND_ROBIN is not valid for cluster type ORIGINAL_DST"),
            "{e}"
        );
        let e = refusal("{name: s, type: STATIC, lb_policy: CLUSTER_PROVIDED}");
        assert!(
            e.contains("cluster.lb_policy") && e.contains("CLUSTER_PROVIDED needs"),
            "{e}"
        );
        let e = refusal(
            "{name: p, type: ORIGINAL_DST, lb_policy: CLUSTER_PROVIDED, load_assignment: {cluster_name: p, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 10.0.0.1, port_value: 80}}}}]}]}}",
        );
        assert!(
            e.contains("cluster.load_assignment") && e.contains("no load assignment"),
            "{e}"
        );
        let e = refusal("{name: s, type: STATIC, original_dst_lb_config: {use_http_header: true}}");
        assert!(e.contains("cluster.original_dst_lb_config"), "{e}");
    }

    #[test]
    fn what_bosun_does_not_do_with_them_is_refused_by_path() {
        let e = refusal(
            "{name: p, type: ORIGINAL_DST, lb_policy: CLUSTER_PROVIDED, original_dst_lb_config: {metadata_key: {key: k, path: [{key: a}]}}}",
        );
        assert!(
            e.contains("cluster.original_dst_lb_config.metadata_key"),
            "{e}"
        );
        let e = refusal(
            "{name: s, type: STATIC, upstream_bind_config: {source_address: {address: 127.0.0.6, port_value: 4000}}}",
        );
        assert!(
            e.contains("cluster.upstream_bind_config.source_address.port_value"),
            "{e}"
        );
        let e = refusal(
            "{name: s, type: STATIC, upstream_bind_config: {source_address: {address: 127.0.0.6, port_value: 0}, freebind: true}}",
        );
        assert!(e.contains("cluster.upstream_bind_config.freebind"), "{e}");
        let e = refusal(
            "{name: s, type: STATIC, upstream_bind_config: {source_address: {address: localhost, port_value: 0}}}",
        );
        assert!(e.contains("not an IP address"), "{e}");
    }

    /// Only DNS clusters resolve names: a STATIC or EDS endpoint that is not an IP address is refused
    /// (Envoy: "malformed IP address"), an EDS update with one is rejected.
    #[test]
    fn endpoints_of_static_and_eds_clusters_are_ip_addresses() {
        let endpoint = |ty: &str, host: &str| {
            format!(
                "{{name: c, type: {ty}, load_assignment: {{cluster_name: c, endpoints: [{{lb_endpoints: \
                 [{{endpoint: {{address: {{socket_address: {{address: {host}, port_value: 80}}}}}}}}]}}]}}}}"
            )
        };
        let e = refusal(&endpoint("STATIC", "backend.local"));
        assert!(
            e.contains(
                "cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address"
            ) && e.contains("malformed IP address: backend.local"),
            "{e}"
        );
        assert!(build(&endpoint("STATIC", "::1")).is_ok());
        assert!(build(&endpoint("STRICT_DNS", "backend.local")).is_ok());
        assert!(build(&endpoint("LOGICAL_DNS", "backend.local")).is_ok());
        let eds =
            build("{name: e, type: EDS, eds_cluster_config: {eds_config: {ads: {}}}}").unwrap();
        let la = |host: &str| -> endpoint::ClusterLoadAssignment {
            message_from_yaml(
                &format!(
                    "{{cluster_name: e, endpoints: [{{lb_endpoints: [{{endpoint: {{address: \
                     {{socket_address: {{address: {host}, port_value: 80}}}}}}}}]}}]}}"
                ),
                None,
            )
            .unwrap()
        };
        let e = eds.with_load_assignment(&la("not-an-ip")).unwrap_err();
        assert!(
            e.to_string().contains("malformed IP address: not-an-ip"),
            "{e}"
        );
        assert!(eds.with_load_assignment(&la("10.0.0.1")).is_ok());
    }

    /// Every cluster-level field that would change behaviour and is not implemented is refused by its
    /// path, each one, not only the first.
    #[test]
    fn unimplemented_cluster_fields_are_refused_by_path() {
        const OPTIONS: &str = "typed_extension_protocol_options.envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
        let cases = [
            (
                "lb_subset_config: {fallback_policy: ANY_ENDPOINT}",
                "cluster.lb_subset_config",
            ),
            (
                "dns_resolvers: [{socket_address: {address: 10.0.0.53, port_value: 53}}]",
                "cluster.dns_resolvers",
            ),
            (
                "use_tcp_for_dns_lookups: true",
                "cluster.use_tcp_for_dns_lookups",
            ),
            (
                "upstream_http_protocol_options: {auto_sni: true}",
                "cluster.upstream_http_protocol_options",
            ),
            (
                "protocol_selection: USE_DOWNSTREAM_PROTOCOL",
                "cluster.protocol_selection",
            ),
            (
                "close_connections_on_host_health_failure: true",
                "cluster.close_connections_on_host_health_failure",
            ),
            (
                "connection_pool_per_downstream_connection: true",
                "cluster.connection_pool_per_downstream_connection",
            ),
            ("filters: [{name: f}]", "cluster.filters"),
            (
                "common_http_protocol_options: {max_connection_duration: 60s}",
                "cluster.common_http_protocol_options.max_connection_duration",
            ),
            (
                "common_http_protocol_options: {headers_with_underscores_action: DROP_HEADER}",
                "cluster.common_http_protocol_options.headers_with_underscores_action",
            ),
        ];
        for (field, path) in cases {
            let e = refusal(&format!("{{name: s, type: STATIC, {field}}}"));
            assert!(
                e.contains(&format!("{path}: ")) && e.contains("not supported by bosun proxy"),
                "{field}: {e}"
            );
        }
        // The protocol is required; the cases below add it when they do not choose one.
        let typed = |options: &str| {
            let options = if options.contains("explicit_http_config") {
                options.to_owned()
            } else {
                format!("explicit_http_config: {{http_protocol_options: {{}}}}, {options}")
            };
            format!(
                "{{name: s, type: STATIC, typed_extension_protocol_options: {{envoy.extensions.upstreams.http.v3.HttpProtocolOptions: {{'@type': type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions, {options}}}}}}}"
            )
        };
        for (options, path) in [
            (
                "retry_policy: {retry_on: 5xx}",
                format!("cluster.{OPTIONS}.retry_policy"),
            ),
            (
                "hash_policy: [{header: {header_name: x}}]",
                format!("cluster.{OPTIONS}.hash_policy"),
            ),
            (
                "http_filters: [{name: envoy.filters.http.header_mutation}]",
                format!("cluster.{OPTIONS}.http_filters"),
            ),
            (
                "common_http_protocol_options: {max_stream_duration: 5s}",
                format!("cluster.{OPTIONS}.common_http_protocol_options.max_stream_duration"),
            ),
        ] {
            let e = refusal(&typed(options));
            assert!(e.contains(&format!("{path}: ")), "{options}: {e}");
        }
        let c = build("{name: s, type: STATIC, http2_protocol_options: {allow_connect: true}}")
            .unwrap();
        assert!(c.h2_extended_connect && c.protocol == UpstreamProtocol::Http2);
        let e = refusal(
            "{name: s, type: STATIC, http2_protocol_options: {max_concurrent_streams: 10}}",
        );
        assert!(e.contains("cluster.http2_protocol_options: "), "{e}");
        let e = refusal(&typed(
            "explicit_http_config: {http2_protocol_options: {connection_keepalive: {interval: 10s, timeout: 1s}}}",
        ));
        assert!(
            e.contains(&format!(
                "cluster.{OPTIONS}.explicit_http_config.http2_protocol_options: "
            )),
            "{e}"
        );
        let e = refusal(&typed(
            "explicit_http_config: {http_protocol_options: {header_key_format: {proper_case_words: {}}}}",
        ));
        assert!(
            e.contains(&format!(
                "cluster.{OPTIONS}.explicit_http_config.http_protocol_options: "
            )),
            "{e}"
        );
        // Several at once are all reported.
        let e =
            refusal("{name: s, type: STATIC, lb_subset_config: {}, use_tcp_for_dns_lookups: true}");
        assert!(
            e.contains("lb_subset_config") && e.contains("use_tcp_for_dns_lookups"),
            "{e}"
        );
        // What only names, counts or tunes timing is accepted; so is the codec filter alone and an
        // explicit protocol with the options bosun reads.
        let c = build(&typed(
            "explicit_http_config: {http2_protocol_options: {}}, http_filters: [{name: envoy.filters.http.upstream_codec}], common_http_protocol_options: {idle_timeout: 30s}",
        ))
        .unwrap();
        assert_eq!(c.protocol, UpstreamProtocol::Http2);
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(30)));
        build("{name: s, type: STRICT_DNS, alt_stat_name: x, dns_refresh_rate: 1s, respect_dns_ttl: true, track_cluster_stats: {timeout_budgets: true}, wait_for_warm_on_init: false}")
            .unwrap();
    }

    #[test]
    fn keepalive_and_dns_family_are_read() {
        let c = build(
            "{name: s, type: STRICT_DNS, dns_lookup_family: V4_ONLY, upstream_connection_options: {tcp_keepalive: {keepalive_time: 300, keepalive_interval: 30}}}",
        )
        .unwrap();
        assert_eq!(c.dns_family, DnsFamily::V4Only);
        assert_eq!(
            c.tcp_keepalive,
            Some(TcpKeepalive {
                probes: None,
                time: Some(Duration::from_secs(300)),
                interval: Some(Duration::from_secs(30)),
            })
        );
        let c = build("{name: s, type: STATIC}").unwrap();
        assert_eq!((c.dns_family, c.tcp_keepalive), (DnsFamily::Any, None));
    }

    #[test]
    fn dns_family_picks_the_address() {
        let v4: std::net::SocketAddr = "10.0.0.1:80".parse().unwrap();
        let v6: std::net::SocketAddr = "[fd00::1]:80".parse().unwrap();
        assert_eq!(DnsFamily::Any.pick([v6, v4]), Some(v6));
        assert_eq!(DnsFamily::V4Only.pick([v6, v4]), Some(v4));
        assert_eq!(DnsFamily::V4Only.pick([v6]), None);
        assert_eq!(DnsFamily::V6Only.pick([v4, v6]), Some(v6));
        assert_eq!(DnsFamily::V6Only.pick([v4]), None);
        assert_eq!(DnsFamily::V4Preferred.pick([v6, v4]), Some(v4));
        assert_eq!(DnsFamily::V4Preferred.pick([v6]), Some(v6));
    }

    #[test]
    fn localities_are_grouped_and_weighted_as_envoy() {
        let c = build(
            r#"
name: l
common_lb_config: {locality_weighted_lb_config: {}}
load_assignment:
  cluster_name: l
  endpoints:
  - locality: {region: r, zone: a}
    load_balancing_weight: 1
    lb_endpoints: [{endpoint: {address: {socket_address: {address: 10.0.0.1, port_value: 80}}}}]
  - locality: {region: r, zone: b}
    lb_endpoints: [{endpoint: {address: {socket_address: {address: 10.0.0.2, port_value: 80}}}}]
  - locality: {region: r, zone: a}
    load_balancing_weight: 3
    lb_endpoints: [{endpoint: {address: {socket_address: {address: 10.0.0.3, port_value: 80}}}}]
  - load_balancing_weight: 7
    lb_endpoints: [{endpoint: {address: {socket_address: {address: 10.0.0.4, port_value: 80}}}}]
  - locality: {region: r, zone: a}
    priority: 1
    load_balancing_weight: 2
    lb_endpoints: [{endpoint: {address: {socket_address: {address: 10.0.0.5, port_value: 80}}}}]
"#,
        )
        .unwrap();
        assert!(c.locality_weighted);
        let view: Vec<Vec<(String, Option<u32>, usize)>> = c
            .priorities
            .iter()
            .map(|p| {
                p.iter()
                    .map(|l| (l.locality.zone.clone(), l.weight, l.endpoints.len()))
                    .collect()
            })
            .collect();
        // Zone a's two entries are one locality (the last weight wins); a weight without a locality
        // counts for nothing, as in Envoy; priorities keep their own localities.
        assert_eq!(
            view,
            [
                vec![
                    ("a".to_owned(), Some(3), 2),
                    ("b".to_owned(), None, 1),
                    (String::new(), None, 1)
                ],
                vec![("a".to_owned(), Some(2), 1)]
            ]
        );
        assert!(!build("{name: p}").unwrap().locality_weighted);
    }

    #[test]
    fn the_load_assignment_policy_sets_the_overprovisioning_factor() {
        let c = build("{name: p, load_assignment: {cluster_name: p}}").unwrap();
        assert_eq!(c.overprovisioning_factor, 140);
        let c = build(
            "{name: p, load_assignment: {cluster_name: p, policy: {overprovisioning_factor: 100}}}",
        )
        .unwrap();
        assert_eq!(c.overprovisioning_factor, 100);
        assert_eq!(c.healthy_panic_threshold, 50);
        let c =
            build("{name: p, common_lb_config: {healthy_panic_threshold: {value: 0}}}").unwrap();
        assert_eq!(c.healthy_panic_threshold, 0);
        let e = refusal(
            "{name: p, load_assignment: {cluster_name: p, policy: {drop_overloads: [{category: c, drop_percentage: {numerator: 5}}]}}}",
        );
        assert!(
            e.contains("cluster.load_assignment.policy.drop_overloads"),
            "{e}"
        );
    }

    #[test]
    fn consistent_hash_configs_with_envoys_defaults_and_bounds() {
        let c = build("{name: r, lb_policy: RING_HASH}").unwrap();
        assert_eq!(
            c.lb_policy,
            LbPolicy::RingHash {
                min_ring_size: 1024,
                max_ring_size: MAX_RING_SIZE
            }
        );
        let c = build(
            "{name: r, lb_policy: RING_HASH, ring_hash_lb_config: {minimum_ring_size: 64, maximum_ring_size: 4096, hash_function: XX_HASH}}",
        )
        .unwrap();
        assert_eq!(
            c.lb_policy,
            LbPolicy::RingHash {
                min_ring_size: 64,
                max_ring_size: 4096
            }
        );
        let c = build("{name: m, lb_policy: MAGLEV}").unwrap();
        assert_eq!(c.lb_policy, LbPolicy::Maglev { table_size: 65537 });
        let c = build("{name: m, lb_policy: MAGLEV, maglev_lb_config: {table_size: 251}}").unwrap();
        assert_eq!(c.lb_policy, LbPolicy::Maglev { table_size: 251 });

        let e = refusal("{name: m, lb_policy: MAGLEV, maglev_lb_config: {table_size: 1000}}");
        assert_eq!(
            e,
            "cluster.maglev_lb_config.table_size: the table size of maglev must be a prime number, not 1000"
        );
        let e = refusal(
            "{name: r, lb_policy: RING_HASH, ring_hash_lb_config: {minimum_ring_size: 4096, maximum_ring_size: 64}}",
        );
        assert_eq!(
            e,
            "cluster.ring_hash_lb_config: ring hash: minimum_ring_size (4096) > maximum_ring_size (64)"
        );
        let e = refusal(
            "{name: r, lb_policy: RING_HASH, ring_hash_lb_config: {hash_function: MURMUR_HASH_2}}",
        );
        assert_eq!(
            e,
            "cluster.ring_hash_lb_config.hash_function: a hash function other than XX_HASH is not \
             supported by bosun proxy; remove it or run this configuration on Envoy"
        );
        let e = refusal(
            "{name: r, lb_policy: RING_HASH, common_lb_config: {consistent_hashing_lb_config: {hash_balance_factor: 150}}}",
        );
        assert_eq!(
            e,
            "cluster.common_lb_config.consistent_hashing_lb_config.hash_balance_factor: bounded-load \
             consistent hashing is not supported by bosun proxy; remove it or run this configuration \
             on Envoy"
        );
    }
}
