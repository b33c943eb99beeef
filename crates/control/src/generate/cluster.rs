//! Services → clusters and their endpoints: `outbound|PORT|SUBSET|HOST` per service port and
//! DestinationRule subset, with the DestinationRule's traffic policy (load balancer, connection pool →
//! circuit breakers, outlier detection, TLS) merged as istiod merges it: top level, then port level,
//! then the subset's own.

use mesh_api::types::common::Duration as IstioDuration;
use mesh_api::types::destination_rule::{
    ClientTlsMode, ClientTlsSettings, ConnectionPoolSettings, ConsistentHashLb,
    LoadBalancerSettings, OutlierDetection, SimpleLb, TrafficPolicy,
};
use xds_api::pb::envoy::config::cluster::v3::{
    CircuitBreakers, Cluster, OutlierDetection as EnvoyOutlier, UpstreamConnectionOptions,
    circuit_breakers::Thresholds,
    cluster::{
        ClusterDiscoveryType, CommonLbConfig, DiscoveryType, EdsClusterConfig, LbConfig, LbPolicy,
        MaglevLbConfig, RingHashLbConfig, TransportSocketMatch,
        common_lb_config::LocalityConfigSpecifier,
    },
};
use xds_api::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ApiVersion, BindConfig, ConfigSource, DataSource,
    HttpProtocolOptions, Metadata, Pipe, SocketAddress, TcpKeepalive as EnvoyTcpKeepalive,
    TransportSocket, address, config_source::ConfigSourceSpecifier, data_source::Specifier,
    socket_address::PortSpecifier, transport_socket::ConfigType,
};
use xds_api::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint::HostIdentifier,
};
use xds_api::pb::envoy::extensions::transport_sockets::raw_buffer::v3::RawBuffer;
use xds_api::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, SubjectAltNameMatcher, TlsCertificate,
    UpstreamTlsContext, common_tls_context::ValidationContextType,
    subject_alt_name_matcher::SanType,
};
use xds_api::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions as UpstreamHttpOptions, http_protocol_options::ExplicitHttpConfig,
    http_protocol_options::UpstreamProtocolOptions,
    http_protocol_options::explicit_http_config::ProtocolConfig,
};
use xds_api::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher::MatchPattern};
use xds_api::pb::google::protobuf::{
    Duration as ProtoDuration, Struct, UInt32Value, UInt64Value, Value, value::Kind,
};

use crate::generate::locality;
use crate::generate::route::{duration, istio_duration, outbound_cluster};
use crate::model::{INBOUND_PORT, Instance, Resolution, Service, ServicePort, labels_match};

/// Istio's default connect timeout (mesh `connectTimeout`).
const DEFAULT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Istio leaves circuit breakers effectively off unless a DestinationRule sets them.
const UNLIMITED: u32 = u32::MAX;

pub const BLACKHOLE_CLUSTER: &str = "BlackHoleCluster";

/// How endpoints are addressed: whether sidecars take inbound traffic on their own port (no capture).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundAddressing {
    /// Instances with a sidecar are reached at `IP:15006`, their sidecar's inbound listener.
    SidecarPort,
    /// Instances are reached at their own port (traffic capture brings it to the sidecar).
    Direct,
}

/// The ADS stream as the source of a cluster's endpoints or a listener's routes, waited for without a
/// time limit at start-up (`initial_fetch_timeout: 0s`), as istiod sets it: a proxy that would give
/// up after Envoy's default 15 s would report ready without its configuration.
pub fn ads_config_source() -> ConfigSource {
    ConfigSource {
        initial_fetch_timeout: Some(ProtoDuration::default()),
        ..ads_secret_source()
    }
}

/// The ADS stream as the source of a gateway's certificates (`credentialName`). As istiod, with
/// Envoy's default initial fetch timeout: a secret that does not exist must not hold the whole
/// gateway back.
pub fn ads_secret_source() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        ..Default::default()
    }
}

pub fn socket_address(ip: &str, port: u32) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.to_owned(),
            port_specifier: Some(PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    }
}

fn lb_endpoint(ip: &str, port: u32, weight: Option<u32>) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
            address: Some(socket_address(ip, port)),
            ..Default::default()
        })),
        load_balancing_weight: weight.filter(|w| *w > 0).map(|value| UInt32Value { value }),
        ..Default::default()
    }
}

fn load_assignment(name: &str, endpoints: Vec<LbEndpoint>) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: name.to_owned(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: endpoints,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The traffic policy that applies to `port` of a subset: each block (load balancer, connection
/// pool, outlier detection, TLS) from the most specific level that sets it.
pub fn merged_policy(
    top: Option<&TrafficPolicy>,
    subset: Option<&TrafficPolicy>,
    port: u32,
) -> TrafficPolicy {
    let mut out = TrafficPolicy::default();
    for level in [top, subset].into_iter().flatten() {
        let port_level = level
            .port_level_settings
            .iter()
            .find(|p| p.port.as_ref().and_then(|s| s.number) == Some(port));
        macro_rules! take {
            ($field:ident) => {
                if let Some(v) = port_level
                    .and_then(|p| p.$field.clone())
                    .or(level.$field.clone())
                {
                    out.$field = Some(v);
                }
            };
        }
        take!(load_balancer);
        take!(connection_pool);
        take!(outlier_detection);
        take!(tls);
    }
    out
}

/// One outbound cluster. `endpoints` is its load assignment when it has EDS endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltCluster {
    pub cluster: Cluster,
    pub endpoints: Option<ClusterLoadAssignment>,
}

/// The cluster of `port` of `service` (a `subset` with its labels, or all instances), with `policy`;
/// with `auto_mtls` (mesh TLS in use) and no `tls` in the policy, istiod's auto mTLS: mutual TLS to
/// each endpoint behind a sidecar that takes the port, plain text to the others, chosen per endpoint
/// by its `tlsMode` label ([`auto_mtls_matches`]).
pub fn outbound(
    service: &Service,
    port: &ServicePort,
    subset: Option<(&str, &std::collections::BTreeMap<String, String>)>,
    policy: &TrafficPolicy,
    addressing: InboundAddressing,
    proxy_labels: &std::collections::BTreeMap<String, String>,
    auto_mtls: bool,
) -> BuiltCluster {
    let name = outbound_cluster(
        port.number,
        subset.map(|(n, _)| n).unwrap_or_default(),
        &service.hostname,
    );
    let mut cluster = Cluster {
        name: name.clone(),
        connect_timeout: Some(duration(DEFAULT_CONNECT_TIMEOUT)),
        ..Default::default()
    };
    let selected: Vec<&Instance> = service
        .instances
        .iter()
        .filter(|i| subset.is_none_or(|(_, labels)| labels_match(&i.labels, labels)))
        .collect();
    let auto_mtls = auto_mtls && policy.tls.is_none() && service.resolution == Resolution::Static;
    // A sidecar without capture takes only HTTP ports (at 15006); with capture it takes every port.
    let takes_mtls = |i: &Instance| {
        i.sidecar && (addressing == InboundAddressing::Direct || port.protocol.is_http())
    };
    let endpoint_of = |i: &Instance| {
        // A sidecar without capture takes HTTP on its inbound port and routes by the Host port.
        let mut e =
            if addressing == InboundAddressing::SidecarPort && i.sidecar && port.protocol.is_http()
            {
                lb_endpoint(&i.address, INBOUND_PORT, i.weight)
            } else {
                lb_endpoint(&i.address, i.target_port(port), i.weight)
            };
        if auto_mtls && takes_mtls(i) {
            e.metadata = Some(istio_tls_mode_label());
        }
        e
    };
    let mut endpoints = None;
    match service.resolution {
        Resolution::Static => {
            cluster.cluster_discovery_type =
                Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32));
            cluster.eds_cluster_config = Some(EdsClusterConfig {
                eds_config: Some(ads_config_source()),
                service_name: name.clone(),
            });
            // Grouped by locality, weighted and prioritized for this proxy (`locality.rs`).
            let assignment = locality::load_assignment(
                &name,
                selected
                    .into_iter()
                    .map(|i| (&i.labels, endpoint_of(i)))
                    .collect(),
                policy,
                proxy_labels,
            );
            if assignment.locality_weighted {
                cluster.common_lb_config = Some(CommonLbConfig {
                    locality_config_specifier: Some(
                        LocalityConfigSpecifier::LocalityWeightedLbConfig(Default::default()),
                    ),
                    ..Default::default()
                });
            }
            endpoints = Some(assignment.load_assignment);
        }
        Resolution::Dns | Resolution::Passthrough => {
            // Passthrough has no endpoints to send; without capture the proxy only knows the host
            // name the application asked for, so it resolves that (a wildcard host cannot be).
            cluster.cluster_discovery_type =
                Some(ClusterDiscoveryType::Type(DiscoveryType::StrictDns as i32));
            let eps: Vec<LbEndpoint> =
                if selected.is_empty() || service.resolution == Resolution::Passthrough {
                    if service.hostname.contains('*') {
                        Vec::new()
                    } else {
                        vec![lb_endpoint(
                            &service.hostname,
                            port.target_port.unwrap_or(port.number),
                            None,
                        )]
                    }
                } else {
                    selected.into_iter().map(endpoint_of).collect()
                };
            cluster.load_assignment = Some(load_assignment(&name, eps));
        }
    }
    // Only mutual TLS checks them: most clusters need not list every instance's account.
    let istio_mutual_tls =
        policy.tls.as_ref().and_then(|t| t.mode) == Some(ClientTlsMode::IstioMutual);
    let identities = if auto_mtls || istio_mutual_tls {
        service_identities(service)
    } else {
        Vec::new()
    };
    apply_policy(&mut cluster, policy, port, &service.hostname, &identities);
    if auto_mtls {
        cluster.transport_socket_matches =
            auto_mtls_matches(&istio_mutual(&cluster.name, &identities));
    }
    BuiltCluster { cluster, endpoints }
}

/// The label istiod puts on an endpoint whose workload has a sidecar (from the pod's
/// `security.istio.io/tlsMode: istio`), in the metadata `transport_socket_matches` read.
const TLS_MODE: &str = "tlsMode";
const TLS_MODE_ISTIO: &str = "istio";

/// `tlsMode: istio`: a label of an endpoint, and what the `tlsMode-istio` match looks for.
fn istio_tls_mode() -> Struct {
    let value = Value {
        kind: Some(Kind::StringValue(TLS_MODE_ISTIO.to_owned())),
    };
    Struct {
        fields: [(TLS_MODE.to_owned(), value)].into_iter().collect(),
    }
}

/// An endpoint's metadata saying it takes Istio's mutual TLS.
fn istio_tls_mode_label() -> Metadata {
    Metadata {
        filter_metadata: [(xds_api::TRANSPORT_SOCKET_MATCH.to_owned(), istio_tls_mode())]
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

/// istiod's auto mTLS matches, by its names: `tlsMode-istio` endpoints get `mutual`, every other
/// endpoint (`tlsMode-disabled`) plain text.
fn auto_mtls_matches(mutual: &UpstreamTlsContext) -> Vec<TransportSocketMatch> {
    vec![
        TransportSocketMatch {
            name: format!("{TLS_MODE}-{TLS_MODE_ISTIO}"),
            r#match: Some(istio_tls_mode()),
            transport_socket: Some(tls_socket(mutual)),
        },
        TransportSocketMatch {
            name: format!("{TLS_MODE}-disabled"),
            r#match: Some(Struct::default()),
            transport_socket: Some(TransportSocket {
                name: "envoy.transport_sockets.raw_buffer".to_owned(),
                config_type: Some(ConfigType::TypedConfig(xds_api::any::pack(&RawBuffer {}))),
            }),
        },
    ]
}

/// `identities`: the service's SPIFFE identities, which `ISTIO_MUTUAL` checks the server against.
fn apply_policy(
    cluster: &mut Cluster,
    policy: &TrafficPolicy,
    port: &ServicePort,
    host: &str,
    identities: &[String],
) {
    cluster.lb_policy = lb_policy(policy.load_balancer.as_ref()) as i32;
    if let Some(hash) = policy
        .load_balancer
        .as_ref()
        .and_then(|l| l.consistent_hash.as_ref())
    {
        apply_consistent_hash(cluster, hash);
    }
    apply_pool(
        cluster,
        policy.connection_pool.as_ref(),
        port.protocol.is_h2(),
    );
    if let Some(od) = &policy.outlier_detection {
        cluster.outlier_detection = Some(outlier_detection(od));
    }
    if let Some(tls) = &policy.tls
        && let Some(context) = upstream_tls(tls, host, &cluster.name, identities)
    {
        cluster.transport_socket = Some(tls_socket(&context));
    }
}

/// The transport socket that originates TLS with `context`.
fn tls_socket(context: &UpstreamTlsContext) -> TransportSocket {
    TransportSocket {
        name: "envoy.transport_sockets.tls".to_owned(),
        config_type: Some(ConfigType::TypedConfig(xds_api::any::pack(context))),
    }
}

/// Circuit breakers (unlimited, as Istio's, but for what `pool` sets), the pool's connect timeout
/// and HTTP options, and HTTP/2 upstream when `h2`.
fn apply_pool(cluster: &mut Cluster, pool: Option<&ConnectionPoolSettings>, h2: bool) {
    let mut http_options = HttpProtocolOptions::default();
    let mut thresholds = Thresholds {
        max_connections: Some(UInt32Value { value: UNLIMITED }),
        max_pending_requests: Some(UInt32Value { value: UNLIMITED }),
        max_requests: Some(UInt32Value { value: UNLIMITED }),
        max_retries: Some(UInt32Value { value: UNLIMITED }),
        ..Default::default()
    };
    if let Some(pool) = pool {
        apply_connection_pool(cluster, pool, &mut thresholds, &mut http_options);
    }
    cluster.circuit_breakers = Some(CircuitBreakers {
        thresholds: vec![thresholds],
        ..Default::default()
    });
    set_http_options(cluster, h2, http_options);
}

/// The upstream HTTP protocol options: HTTP/2 when `h2`, and `http_options` when any is set.
fn set_http_options(cluster: &mut Cluster, h2: bool, http_options: HttpProtocolOptions) {
    let common = (http_options != HttpProtocolOptions::default()).then_some(http_options);
    if !h2 && common.is_none() {
        return;
    }
    let protocol_config = if h2 {
        ProtocolConfig::Http2ProtocolOptions(Default::default())
    } else {
        ProtocolConfig::HttpProtocolOptions(Default::default())
    };
    let options = UpstreamHttpOptions {
        common_http_protocol_options: common,
        upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(protocol_config),
            },
        )),
        ..Default::default()
    };
    cluster.typed_extension_protocol_options.insert(
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_owned(),
        xds_api::any::pack(&options),
    );
}

fn lb_policy(lb: Option<&LoadBalancerSettings>) -> LbPolicy {
    match lb.and_then(|l| l.simple) {
        Some(SimpleLb::RoundRobin) => LbPolicy::RoundRobin,
        Some(SimpleLb::Random) => LbPolicy::Random,
        // Istio's default since 1.14, and what LEAST_CONN means.
        _ => LbPolicy::LeastRequest,
    }
}

/// `consistentHash` wins over `simple`, as in istiod: MAGLEV (its `tableSize` when set), or
/// RING_HASH (`ringHash.minimumRingSize` when set; without `ringHash`, the deprecated
/// `minimumRingSize`, default 1024). The key itself goes on the routes (`hash.rs`).
fn apply_consistent_hash(cluster: &mut Cluster, hash: &ConsistentHashLb) {
    let size = |v: u64| Some(UInt64Value { value: v });
    if let Some(maglev) = &hash.maglev {
        cluster.lb_policy = LbPolicy::Maglev as i32;
        if let Some(table_size) = maglev.table_size.filter(|t| *t > 0) {
            cluster.lb_config = Some(LbConfig::MaglevLbConfig(MaglevLbConfig {
                table_size: size(table_size),
            }));
        }
        return;
    }
    cluster.lb_policy = LbPolicy::RingHash as i32;
    let minimum_ring_size = match &hash.ring_hash {
        Some(ring) => ring.minimum_ring_size.filter(|m| *m > 0),
        None => Some(hash.minimum_ring_size.filter(|m| *m > 0).unwrap_or(1024)),
    };
    if let Some(m) = minimum_ring_size {
        cluster.lb_config = Some(LbConfig::RingHashLbConfig(RingHashLbConfig {
            minimum_ring_size: size(m),
            ..Default::default()
        }));
    }
}

fn apply_connection_pool(
    cluster: &mut Cluster,
    pool: &ConnectionPoolSettings,
    thresholds: &mut Thresholds,
    http_options: &mut HttpProtocolOptions,
) {
    let limit = |v: Option<i32>| {
        v.filter(|v| *v > 0)
            .and_then(|v| u32::try_from(v).ok())
            .map(|value| UInt32Value { value })
    };
    if let Some(tcp) = &pool.tcp {
        if let Some(v) = limit(tcp.max_connections) {
            thresholds.max_connections = Some(v);
        }
        if let Some(t) = tcp.connect_timeout.as_ref().and_then(istio_duration) {
            cluster.connect_timeout = Some(t);
        }
        if let Some(k) = &tcp.tcp_keepalive {
            // As istiod: whole seconds; an unset field keeps the system's value.
            let seconds = |d: &Option<IstioDuration>| {
                d.as_ref()
                    .and_then(istio_duration)
                    .and_then(|d| u32::try_from(d.seconds).ok())
                    .map(|value| UInt32Value { value })
            };
            cluster.upstream_connection_options = Some(UpstreamConnectionOptions {
                tcp_keepalive: Some(EnvoyTcpKeepalive {
                    keepalive_probes: k.probes.map(|value| UInt32Value { value }),
                    keepalive_time: seconds(&k.time),
                    keepalive_interval: seconds(&k.interval),
                }),
                ..Default::default()
            });
        }
    }
    if let Some(http) = &pool.http {
        if let Some(v) = limit(http.http1_max_pending_requests) {
            thresholds.max_pending_requests = Some(v);
        }
        if let Some(v) = limit(http.http2_max_requests) {
            thresholds.max_requests = Some(v);
        }
        if let Some(v) = limit(http.max_retries) {
            thresholds.max_retries = Some(v);
        }
        if let Some(v) = limit(http.max_requests_per_connection) {
            http_options.max_requests_per_connection = Some(v);
        }
        if let Some(t) = http.idle_timeout.as_ref().and_then(istio_duration) {
            http_options.idle_timeout = Some(t);
        }
    }
}

fn outlier_detection(od: &OutlierDetection) -> EnvoyOutlier {
    let mut out = EnvoyOutlier {
        // Istio turns success-rate ejection off; only consecutive errors eject.
        enforcing_success_rate: Some(UInt32Value { value: 0 }),
        interval: od.interval.as_ref().and_then(istio_duration),
        base_ejection_time: od.base_ejection_time.as_ref().and_then(istio_duration),
        max_ejection_percent: od
            .max_ejection_percent
            .and_then(|v| u32::try_from(v).ok())
            .map(|value| UInt32Value { value }),
        split_external_local_origin_errors: od.split_external_local_origin_errors.unwrap_or(false),
        ..Default::default()
    };
    let consecutive_5xx = od
        .consecutive5xx_errors
        .or(od.consecutive_errors.and_then(|v| u32::try_from(v).ok()));
    if let Some(v) = consecutive_5xx {
        out.consecutive_5xx = Some(UInt32Value { value: v });
        out.enforcing_consecutive_5xx = Some(UInt32Value {
            value: if v > 0 { 100 } else { 0 },
        });
    }
    if let Some(v) = od.consecutive_gateway_errors {
        out.consecutive_gateway_failure = Some(UInt32Value { value: v });
        out.enforcing_consecutive_gateway_failure = Some(UInt32Value {
            value: if v > 0 { 100 } else { 0 },
        });
    }
    if let Some(v) = od.consecutive_local_origin_failures {
        out.consecutive_local_origin_failure = Some(UInt32Value { value: v });
        out.enforcing_consecutive_local_origin_failure = Some(UInt32Value {
            value: if v > 0 { 100 } else { 0 },
        });
    }
    out
}

pub(crate) fn file(path: &str) -> DataSource {
    DataSource {
        specifier: Some(Specifier::Filename(path.to_owned())),
        ..Default::default()
    }
}

/// `tls` of a DestinationRule for cluster `cluster_name`: DISABLE, SIMPLE or MUTUAL with files, or
/// ISTIO_MUTUAL with the mesh's identities.
fn upstream_tls(
    tls: &ClientTlsSettings,
    host: &str,
    cluster_name: &str,
    identities: &[String],
) -> Option<UpstreamTlsContext> {
    let mutual = match tls.mode {
        Some(ClientTlsMode::Simple) => false,
        Some(ClientTlsMode::Mutual) => true,
        Some(ClientTlsMode::IstioMutual) => return Some(istio_mutual(cluster_name, identities)),
        _ => return None,
    };
    let validation = (!tls.insecure_skip_verify.unwrap_or(false))
        .then(|| {
            tls.ca_certificates
                .as_ref()
                .map(|ca| CertificateValidationContext {
                    trusted_ca: Some(file(ca)),
                    match_typed_subject_alt_names: tls
                        .subject_alt_names
                        .iter()
                        .map(|san| SubjectAltNameMatcher {
                            san_type: SanType::Dns as i32,
                            r#matcher: Some(StringMatcher {
                                match_pattern: Some(MatchPattern::Exact(san.clone())),
                                ignore_case: false,
                            }),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
        })
        .flatten();
    let mut common = CommonTlsContext {
        validation_context_type: validation.map(ValidationContextType::ValidationContext),
        ..Default::default()
    };
    if mutual {
        common.tls_certificates = vec![TlsCertificate {
            certificate_chain: tls.client_certificate.as_deref().map(file),
            private_key: tls.private_key.as_deref().map(file),
            ..Default::default()
        }];
    }
    let sni = tls.sni.clone().unwrap_or_else(|| {
        if host.contains('*') {
            String::new()
        } else {
            host.to_owned()
        }
    });
    Some(UpstreamTlsContext {
        common_tls_context: Some(common),
        sni,
        ..Default::default()
    })
}

/// `ISTIO_MUTUAL`, as istiod writes it: the proxy's own certificate and the mesh's root over SDS
/// (`default`, `ROOTCA`; see [`crate::identity`]), the server checked to be one of `identities` (the
/// destination service's accounts), and the SNI that names the cluster
/// (`outbound_.9080_.v1_.reviews.default.svc.cluster.local`).
fn istio_mutual(cluster_name: &str, identities: &[String]) -> UpstreamTlsContext {
    UpstreamTlsContext {
        common_tls_context: Some(crate::generate::server_tls::mesh_tls_context_verifying(
            identities,
        )),
        sni: cluster_name.replace('|', "_."),
        ..Default::default()
    }
}

/// The SPIFFE identities of `service`'s instances (`default` for one without a service account).
fn service_identities(service: &Service) -> Vec<String> {
    let mut ids: Vec<String> = service
        .instances
        .iter()
        .map(|i| {
            format!(
                "spiffe://{}/ns/{}/sa/{}",
                crate::identity::TRUST_DOMAIN,
                i.namespace,
                i.service_account.as_deref().unwrap_or("default")
            )
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// `BlackHoleCluster`: no endpoints; what REGISTRY_ONLY sends unknown destinations to.
pub fn blackhole() -> Cluster {
    Cluster {
        name: BLACKHOLE_CLUSTER.to_owned(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        connect_timeout: Some(duration(DEFAULT_CONNECT_TIMEOUT)),
        ..Default::default()
    }
}

/// Where a captured sidecar's connections to its own workload come from (Istio's inbound passthrough
/// source): the capture rules let traffic from it through instead of sending it back to 15006.
pub const INBOUND_PASSTHROUGH_SOURCE: &str = "127.0.0.6";
/// Istio's name for the cluster that takes captured inbound connections to ports it has no chain for.
pub const INBOUND_PASSTHROUGH_CLUSTER: &str = "InboundPassthroughCluster";

/// `upstream_bind_config` with `source` and any port.
fn bind_to(source: &str) -> BindConfig {
    BindConfig {
        source_address: Some(SocketAddress {
            address: source.to_owned(),
            port_specifier: Some(PortSpecifier::PortValue(0)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `inbound|PORT||`: the workload itself, at `ip:port`; from `source` when given (a captured sidecar
/// connects from [`INBOUND_PASSTHROUGH_SOURCE`], or its own rules would capture the connection again);
/// with the Sidecar's inbound connection `pool` when it has one.
pub fn inbound(
    port: u32,
    ip: &str,
    h2: bool,
    source: Option<&str>,
    pool: Option<&ConnectionPoolSettings>,
) -> Cluster {
    inbound_at(port, socket_address(ip, port), h2, source, pool)
}

/// The name of the cluster to workload port `port`, as istiod names it: `inbound|PORT||`.
pub fn inbound_cluster(port: u32) -> String {
    format!("inbound|{port}||")
}

/// The workload port an [`inbound_cluster`] name is for.
pub fn inbound_cluster_port(name: &str) -> Option<u32> {
    name.strip_prefix("inbound|")?
        .strip_suffix("||")?
        .parse()
        .ok()
}

/// `inbound|PORT||` with its one endpoint at `address` (a Sidecar ingress's `defaultEndpoint`).
pub fn inbound_at(
    port: u32,
    address: Address,
    h2: bool,
    source: Option<&str>,
    pool: Option<&ConnectionPoolSettings>,
) -> Cluster {
    let name = inbound_cluster(port);
    let endpoint = LbEndpoint {
        host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
            address: Some(address),
            ..Default::default()
        })),
        ..Default::default()
    };
    let mut cluster = Cluster {
        name: name.clone(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        connect_timeout: Some(duration(DEFAULT_CONNECT_TIMEOUT)),
        load_assignment: Some(load_assignment(&name, vec![endpoint])),
        upstream_bind_config: source.map(bind_to),
        ..Default::default()
    };
    inbound_pool(&mut cluster, h2, pool);
    cluster
}

/// `inbound|PORT||` to each connection's original destination, from [`INBOUND_PASSTHROUGH_SOURCE`]:
/// a captured Sidecar ingress port without `defaultEndpoint`, as istiod builds it.
pub fn inbound_original_dst(port: u32, h2: bool, pool: Option<&ConnectionPoolSettings>) -> Cluster {
    let mut cluster = Cluster {
        name: inbound_cluster(port),
        ..inbound_passthrough()
    };
    inbound_pool(&mut cluster, h2, pool);
    cluster
}

/// An inbound cluster's limits: none of its own (Envoy's defaults) unless the Sidecar sets a pool,
/// as istiod's; HTTP/2 upstream when `h2`.
fn inbound_pool(cluster: &mut Cluster, h2: bool, pool: Option<&ConnectionPoolSettings>) {
    match pool {
        Some(pool) => apply_pool(cluster, Some(pool), h2),
        None => set_http_options(cluster, h2, HttpProtocolOptions::default()),
    }
}

/// A Unix domain socket address (`unix:///path`, or `unix://@name` in the abstract namespace).
pub fn pipe_address(path: &str) -> Address {
    Address {
        address: Some(address::Address::Pipe(Pipe {
            path: path.to_owned(),
            mode: 0,
        })),
    }
}

/// `InboundPassthroughCluster`: a captured inbound connection to a port without its own chain goes to
/// its original destination, from [`INBOUND_PASSTHROUGH_SOURCE`] (so it is not captured again).
pub fn inbound_passthrough() -> Cluster {
    Cluster {
        name: INBOUND_PASSTHROUGH_CLUSTER.to_owned(),
        upstream_bind_config: Some(bind_to(INBOUND_PASSTHROUGH_SOURCE)),
        ..passthrough()
    }
}

/// `PassthroughCluster`: each connection goes to its original destination (`ORIGINAL_DST`).
pub fn passthrough() -> Cluster {
    Cluster {
        name: crate::generate::listener::PASSTHROUGH_CLUSTER.to_owned(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(
            DiscoveryType::OriginalDst as i32,
        )),
        lb_policy: LbPolicy::ClusterProvided as i32,
        connect_timeout: Some(duration(DEFAULT_CONNECT_TIMEOUT)),
        ..Default::default()
    }
}
