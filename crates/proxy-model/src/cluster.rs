//! Clusters: where a route's traffic goes, how hosts are found and chosen, and the limits that protect
//! them. Built from Envoy's `Cluster` (and `ClusterLoadAssignment` for EDS).

use std::time::Duration;

use xds_api::pb::envoy::config::cluster::v3 as cluster;
use xds_api::pb::envoy::config::core::v3 as core;
use xds_api::pb::envoy::config::endpoint::v3 as endpoint;
use xds_api::pb::envoy::extensions::upstreams::http::v3 as upstream_http;

use crate::error::{At, Errors, ModelError};
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
    LeastRequest { choice_count: u32 },
    Random,
    RingHash,
    Maglev,
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
    /// Endpoints by priority (index 0 = priority 0), each with its locality weight.
    pub priorities: Vec<Vec<LocalityEndpoints>>,
    pub circuit_breakers: Thresholds,
    pub outlier_detection: Option<OutlierDetection>,
    pub max_requests_per_connection: Option<u32>,
    pub idle_timeout: Option<Duration>,
    pub per_connection_buffer_limit: u32,
    /// TLS origination (`transport_socket` with an `UpstreamTlsContext`); `None`: plaintext.
    pub tls: Option<crate::tls::UpstreamTls>,
}

#[derive(Debug, Clone)]
pub struct LocalityEndpoints {
    pub weight: Option<u32>,
    pub endpoints: Vec<Endpoint>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port`; a name for STRICT_DNS/LOGICAL_DNS clusters, resolved at run time.
    pub host: String,
    pub port: u16,
    pub weight: u32,
    pub health: Health,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Unhealthy,
    Degraded,
    Draining,
}

/// `circuit_breakers` for the DEFAULT priority, with Envoy's defaults.
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
    pub fn from_proto(p: &cluster::Cluster, at: &At) -> Result<Cluster, Vec<ModelError>> {
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
            Ok(L::RingHash) => LbPolicy::RingHash,
            Ok(L::Maglev) => LbPolicy::Maglev,
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
        if matches!(lb_policy, LbPolicy::RingHash | LbPolicy::Maglev) {
            errors.push(
                at.key("lb_policy")
                    .unsupported("consistent-hash load balancing (RING_HASH, MAGLEV)"),
            );
        }
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
                .take(crate::tls::upstream(ts, &at.key("transport_socket")))
                .flatten(),
            None => None,
        };
        if !p.transport_socket_matches.is_empty() {
            errors.push(
                at.key("transport_socket_matches")
                    .unsupported("transport_socket_matches"),
            );
        }
        let protocol = errors
            .take(upstream_protocol(p, at))
            .unwrap_or(UpstreamProtocol::Http1);
        let priorities = match &p.load_assignment {
            Some(la) => errors
                .take(load_assignment(la, &at.key("load_assignment")))
                .unwrap_or_default(),
            None => Vec::new(),
        };
        // Envoy takes a STATIC or STRICT_DNS cluster without endpoints (Istio's BlackHoleCluster is
        // one); a LOGICAL_DNS cluster needs its one host.
        if discovery == Discovery::LogicalDns && p.load_assignment.is_none() {
            errors.push(
                at.key("load_assignment")
                    .error("a LOGICAL_DNS cluster needs load_assignment with one endpoint"),
            );
        }
        let circuit_breakers = p
            .circuit_breakers
            .as_ref()
            .and_then(|cb| cb.thresholds.iter().find(|t| t.priority == 0))
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
            });
        let outlier_detection = p.outlier_detection.as_ref().map(outlier_detection);
        let http_options = p
            .typed_extension_protocol_options
            .get(HTTP_PROTOCOL_OPTIONS);
        let common = http_options
            .and_then(|any| unpack::<upstream_http::HttpProtocolOptions>(any, at).ok())
            .and_then(|o| o.common_http_protocol_options)
            .or(p.common_http_protocol_options);
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
            priorities,
            circuit_breakers,
            outlier_detection,
            max_requests_per_connection,
            idle_timeout,
            per_connection_buffer_limit: u32_or(
                p.per_connection_buffer_limit_bytes.as_ref(),
                1024 * 1024,
            ),
            tls,
        };
        errors.into_result(cluster)
    }

    /// Replaces the endpoints (an EDS update).
    pub fn with_load_assignment(
        &self,
        la: &endpoint::ClusterLoadAssignment,
    ) -> Result<Cluster, ModelError> {
        let priorities = load_assignment(
            la,
            &At::root(format!("ClusterLoadAssignment {}", la.cluster_name)),
        )?;
        Ok(Cluster {
            priorities,
            ..self.clone()
        })
    }

    /// All endpoints of every priority, for the admin `/clusters` page.
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.priorities.iter().flatten().flat_map(|l| &l.endpoints)
    }
}

fn upstream_protocol(p: &cluster::Cluster, at: &At) -> Result<UpstreamProtocol, ModelError> {
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
        return match options.upstream_protocol_options {
            Some(U::ExplicitHttpConfig(e)) => match e.protocol_config {
                Some(E::Http2ProtocolOptions(_)) => Ok(UpstreamProtocol::Http2),
                Some(E::Http3ProtocolOptions(_)) => Err(oat.unsupported("HTTP/3 upstream")),
                _ => Ok(UpstreamProtocol::Http1),
            },
            Some(U::UseDownstreamProtocolConfig(_)) => Ok(UpstreamProtocol::Downstream),
            Some(U::AutoConfig(_)) => Err(oat
                .key("auto_config")
                .unsupported("auto_config (ALPN-negotiated upstream protocol)")),
            None => Ok(UpstreamProtocol::Http1),
        };
    }
    if p.http2_protocol_options.is_some() {
        return Ok(UpstreamProtocol::Http2);
    }
    Ok(UpstreamProtocol::Http1)
}

fn load_assignment(
    la: &endpoint::ClusterLoadAssignment,
    at: &At,
) -> Result<Vec<Vec<LocalityEndpoints>>, ModelError> {
    use endpoint::lb_endpoint::HostIdentifier;
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
            let (host, port) = socket_address(address, &eat.key("endpoint").key("address"))?;
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
            });
        }
        let priority = usize::try_from(locality.priority).unwrap_or(usize::MAX);
        if priority > 128 {
            return Err(lat.key("priority").error("priority must be at most 128"));
        }
        if priorities.len() <= priority {
            priorities.resize_with(priority + 1, Vec::new);
        }
        priorities[priority].push(LocalityEndpoints {
            weight: locality.load_balancing_weight.as_ref().map(|w| w.value),
            endpoints,
        });
    }
    Ok(priorities)
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
