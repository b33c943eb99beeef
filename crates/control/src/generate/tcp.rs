//! Non-HTTP traffic, as istiod builds it (`pilot/pkg/networking/core/tls.go`, `networkfilter.go`,
//! `gateway.go`): VirtualService `tcp` and `tls` routes become filter chains of `tcp_proxy`, chosen
//! by destination subnet (`prefix_ranges`) and SNI (`server_names`, read by the `tls_inspector`).
//!
//! - A captured sidecar's per-port listener of a TCP/TLS/HTTPS (or mongo, mysql, redis) port gets
//!   the chains of every service on the port; without a VirtualService a TCP port goes to
//!   `outbound|PORT||host` and a TLS port is told apart by SNI. A service with a virtual IP has a
//!   listener of its own on it (`VIP_PORT`), where the address alone decides (no SNI).
//! - A gateway's TCP server forwards with the first matching `tcp` route of the VirtualServices bound
//!   to it; a `tls.mode: PASSTHROUGH` server routes by SNI with `tls` routes.
//!
//! Conditions that select proxies rather than connections (`port`, `sourceLabels`,
//! `sourceNamespace`, `gateways`) are decided here, per proxy, as for HTTP routes.

use std::collections::BTreeSet;
use std::net::IpAddr;

use mesh_api::types::destination_rule::LoadBalancerSettings;
use mesh_api::types::gateway::{Server, ServerTlsMode};
use mesh_api::types::virtual_service::RouteDestination;
use mesh_api::validate::common::parse_duration;
use xds_api::pb::envoy::config::core::v3::{CidrRange, TransportSocket};
use xds_api::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, ListenerFilter, filter::ConfigType as FilterConfig,
    listener_filter::ConfigType as ListenerFilterConfig,
};
use xds_api::pb::envoy::extensions::filters::listener::http_inspector::v3::HttpInspector;
use xds_api::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use xds_api::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use xds_api::pb::envoy::extensions::filters::network::tcp_proxy::v3::tcp_proxy::{
    ClusterSpecifier, WeightedCluster, weighted_cluster::ClusterWeight,
};
use xds_api::pb::envoy::r#type::v3::HashPolicy;
use xds_api::pb::envoy::r#type::v3::hash_policy::{PolicySpecifier, SourceIp};
use xds_api::pb::google::protobuf::UInt32Value;

use crate::generate::route::{RouteContext, duration, outbound_cluster};
use crate::index::{Gateway, VirtualService, qualify_gateway};
use crate::model::{Protocol, Service, labels_match};

pub const TCP_PROXY_FILTER: &str = "envoy.filters.network.tcp_proxy";
pub const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";
pub const HTTP_INSPECTOR: &str = "envoy.filters.listener.http_inspector";
/// What the http_inspector names plaintext HTTP: the application protocols of istiod's sniffed
/// HTTP filter chains.
pub const PLAINTEXT_HTTP_ALPNS: [&str; 3] = ["http/1.0", "http/1.1", "h2c"];

/// One filter chain to be (istiod's `filterChainOpts`): what it matches and what it does.
#[derive(Debug, Clone, Default)]
pub struct ChainOpts {
    /// SNI names (`*` alone matches any).
    pub sni_hosts: Vec<String>,
    /// Destination addresses or prefixes (`10.0.0.0/8`, `192.0.2.1`).
    pub destination_cidrs: Vec<String>,
    pub filters: Vec<Filter>,
    /// TLS termination (a gateway's TLS server with `tcp` routes).
    pub transport_socket: Option<TransportSocket>,
}

impl ChainOpts {
    fn sni_set(&self) -> BTreeSet<String> {
        self.sni_hosts
            .iter()
            .filter(|h| *h != "*")
            .map(|h| h.to_ascii_lowercase())
            .collect()
    }

    fn cidr_set(&self) -> BTreeSet<(IpAddr, u32)> {
        self.destination_cidrs
            .iter()
            .filter_map(|c| parse_cidr(c))
            .filter(|(ip, _)| !ip.is_unspecified())
            .map(|(ip, len)| (masked(ip, len), len))
            .collect()
    }

    /// Matches every connection: no SNI (or `*`) and no destination.
    pub fn is_match_all(&self) -> bool {
        self.sni_set().is_empty() && self.cidr_set().is_empty()
    }

    /// Whether Envoy would see the two chains as matching the same connections (it refuses that).
    pub fn conflicts_with(&self, other: &ChainOpts) -> bool {
        self.sni_set() == other.sni_set() && self.cidr_set() == other.cidr_set()
    }

    fn filter_chain_match(&self) -> Option<FilterChainMatch> {
        if self.is_match_all() {
            return None;
        }
        Some(FilterChainMatch {
            server_names: self.sni_set().into_iter().collect(),
            prefix_ranges: self
                .cidr_set()
                .into_iter()
                .map(|(ip, len)| CidrRange {
                    address_prefix: ip.to_string(),
                    prefix_len: Some(UInt32Value { value: len }),
                })
                .collect(),
            ..Default::default()
        })
    }

    pub fn needs_tls_inspector(&self) -> bool {
        !self.sni_set().is_empty()
    }

    pub fn into_chain(self) -> FilterChain {
        FilterChain {
            filter_chain_match: self.filter_chain_match(),
            filters: self.filters,
            transport_socket: self.transport_socket,
            ..Default::default()
        }
    }
}

/// `10.0.0.0/8`, or an address alone (a host prefix).
fn parse_cidr(s: &str) -> Option<(IpAddr, u32)> {
    let (ip, len) = match s.split_once('/') {
        Some((ip, len)) => (ip.parse::<IpAddr>().ok()?, Some(len.parse::<u32>().ok()?)),
        None => (s.parse::<IpAddr>().ok()?, None),
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(max);
    (len <= max).then_some((ip, len))
}

fn masked(ip: IpAddr, len: u32) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    }
}

/// Appends `incoming` to `chains` unless an existing chain matches the same connections (the first
/// wins, as istiod's `mergeTCPFilterChains`); says what was dropped.
pub fn merge_chains(
    chains: &mut Vec<ChainOpts>,
    incoming: Vec<ChainOpts>,
    what: &str,
    warnings: &mut Vec<String>,
) {
    for chain in incoming {
        if chains.iter().any(|c| c.conflicts_with(&chain)) {
            warnings.push(format!(
                "{what}: a filter chain matching SNI {:?} and destinations {:?} is already taken; it is skipped",
                chain.sni_hosts, chain.destination_cidrs
            ));
        } else {
            chains.push(chain);
        }
    }
}

pub fn tls_inspector() -> ListenerFilter {
    ListenerFilter {
        name: TLS_INSPECTOR.to_owned(),
        config_type: Some(ListenerFilterConfig::TypedConfig(xds_api::any::pack(
            &TlsInspector::default(),
        ))),
        ..Default::default()
    }
}

/// Istio's protocol sniffing: names a plaintext connection's application protocol when it is HTTP
/// ([`PLAINTEXT_HTTP_ALPNS`]), for filter chains to match.
pub fn http_inspector() -> ListenerFilter {
    ListenerFilter {
        name: HTTP_INSPECTOR.to_owned(),
        config_type: Some(ListenerFilterConfig::TypedConfig(xds_api::any::pack(
            &HttpInspector::default(),
        ))),
        ..Default::default()
    }
}

pub fn tcp_proxy_filter(proxy: &TcpProxy) -> Filter {
    Filter {
        name: TCP_PROXY_FILTER.to_owned(),
        config_type: Some(FilterConfig::TypedConfig(xds_api::any::pack(proxy))),
    }
}

/// What a DestinationRule sets on a `tcp_proxy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpOptions {
    /// `connectionPool.tcp.idleTimeout` (without one Envoy's default of an hour holds).
    pub idle_timeout: Option<std::time::Duration>,
    /// `consistentHash.useSourceIp`: `hash_policy: [{source_ip: {}}]`.
    pub hash_source_ip: bool,
}

/// A `tcp_proxy` to one cluster, named after it (istiod's stat prefix).
pub fn to_cluster(cluster: &str, options: TcpOptions) -> Filter {
    let hash_policy = if options.hash_source_ip {
        vec![HashPolicy {
            policy_specifier: Some(PolicySpecifier::SourceIp(SourceIp {})),
        }]
    } else {
        Vec::new()
    };
    tcp_proxy_filter(&TcpProxy {
        stat_prefix: cluster.to_owned(),
        cluster_specifier: Some(ClusterSpecifier::Cluster(cluster.to_owned())),
        idle_timeout: options.idle_timeout.map(duration),
        hash_policy,
        ..Default::default()
    })
}

impl RouteContext<'_> {
    /// The `tcp_proxy` options the DestinationRule of `host` gives a single destination (of `subset`),
    /// as istiod's: the top-level TCP idle timeout, and a source IP hash when the top-level load
    /// balancer hashes on it, unless the subset has a load balancer of its own (then the subset's
    /// choice holds). Port-level settings do not count, nor do weighted destinations get a hash.
    fn tcp_options(&self, host: &str, subset: Option<&str>) -> TcpOptions {
        let service_namespace = self
            .index
            .services
            .get(host)
            .map_or(self.proxy.namespace.as_str(), |s| s.namespace.as_str());
        let Some(dr) = self
            .index
            .destination_rule(host, &self.proxy.namespace, service_namespace)
        else {
            return TcpOptions::default();
        };
        let top = dr.spec.traffic_policy.as_ref();
        let source_ip = |lb: Option<&LoadBalancerSettings>| {
            lb.and_then(|l| l.consistent_hash.as_ref())
                .and_then(|h| h.use_source_ip)
                .unwrap_or(false)
        };
        let mut hash_source_ip = source_ip(top.and_then(|t| t.load_balancer.as_ref()));
        let subset_lb = dr
            .spec
            .subsets
            .iter()
            .find(|s| subset.is_some_and(|name| s.name.as_deref() == Some(name)))
            .and_then(|s| s.traffic_policy.as_ref()?.load_balancer.as_ref());
        if subset_lb.is_some() {
            hash_source_ip = source_ip(subset_lb);
        }
        TcpOptions {
            idle_timeout: top
                .and_then(|t| {
                    t.connection_pool
                        .as_ref()?
                        .tcp
                        .as_ref()?
                        .idle_timeout
                        .as_deref()
                })
                .and_then(|t| parse_duration(t).ok()),
            hash_source_ip,
        }
    }

    /// The network filters of a `tcp`/`tls` route's destinations (istiod's
    /// `buildOutboundNetworkFilters`): one destination is a `tcp_proxy` to its cluster, named after
    /// it; several are weighted clusters (weight 0 left out), named `VS.NAMESPACE`.
    pub fn l4_filters(&self, vs: &VirtualService, routes: &[RouteDestination]) -> Option<Filter> {
        let first_host = routes
            .first()?
            .destination
            .as_ref()
            .and_then(|d| d.host.as_deref())
            .map(|h| self.index.services.resolve(h, &vs.namespace))?;
        if let [single] = routes {
            let destination = single.destination.as_ref()?;
            let cluster = self.destination_cluster(destination, &vs.namespace);
            let options = self.tcp_options(&first_host, destination.subset.as_deref());
            return Some(to_cluster(&cluster, options));
        }
        let idle_timeout = self.tcp_options(&first_host, None).idle_timeout;
        let clusters: Vec<ClusterWeight> = routes
            .iter()
            .filter(|r| r.weight.unwrap_or(0) > 0)
            .filter_map(|r| {
                Some(ClusterWeight {
                    name: self.destination_cluster(r.destination.as_ref()?, &vs.namespace),
                    weight: u32::try_from(r.weight?).ok()?,
                    ..Default::default()
                })
            })
            .collect();
        if clusters.is_empty() {
            return None;
        }
        Some(tcp_proxy_filter(&TcpProxy {
            stat_prefix: format!("{}.{}", vs.name, vs.namespace),
            cluster_specifier: Some(ClusterSpecifier::WeightedClusters(WeightedCluster {
                clusters,
            })),
            idle_timeout: idle_timeout.map(duration),
            ..Default::default()
        }))
    }

    /// istiod's `matchTCP`/`matchTLS` for a sidecar: the listener port, the `mesh` gateway, the
    /// proxy's labels and namespace.
    fn l4_match_applies(
        &self,
        vs: &VirtualService,
        port: Option<u32>,
        gateways: &[String],
        source_labels: &std::collections::BTreeMap<String, String>,
        source_namespace: Option<&String>,
    ) -> bool {
        let here = self.gateway.unwrap_or("mesh");
        port.is_none_or(|p| p == self.port)
            && (gateways.is_empty()
                || gateways
                    .iter()
                    .any(|g| qualify_gateway(g, &vs.namespace) == here))
            && labels_match(&self.proxy.labels, source_labels)
            && source_namespace.is_none_or(|ns| *ns == self.proxy.namespace)
    }

    /// The filter chains of `service` on this (non-HTTP) port of a captured sidecar's outbound side;
    /// `on_vip`: in the listener of the service's own virtual IP.
    pub fn sidecar_l4_chains(
        &self,
        service: &Service,
        protocol: Protocol,
        on_vip: bool,
    ) -> Vec<ChainOpts> {
        let virtual_services: Vec<&VirtualService> = self
            .index
            .mesh_virtual_services(&service.hostname, &self.proxy.namespace)
            .collect();
        // A service with one port is reached on it whatever port the listener has.
        let port = match service.ports.as_slice() {
            [only] => only.number,
            _ => self.port,
        };
        let default_cluster = outbound_cluster(port, "", &service.hostname);
        let default_filter =
            || to_cluster(&default_cluster, self.tcp_options(&service.hostname, None));
        let mut out = Vec::new();
        if matches!(protocol, Protocol::Tls | Protocol::Https) {
            // The same SNI and destinations twice: only the first can ever match.
            let mut handled = BTreeSet::new();
            for vs in &virtual_services {
                for tls in vs.spec.tls.iter().filter(|t| !t.route.is_empty()) {
                    for m in &tls.r#match {
                        if !self.l4_match_applies(
                            vs,
                            m.port,
                            &m.gateways,
                            &m.source_labels,
                            m.source_namespace.as_ref(),
                        ) {
                            continue;
                        }
                        let key = (m.sni_hosts.clone(), m.destination_subnets.clone());
                        if !handled.insert(key) {
                            continue;
                        }
                        if let Some(filter) = self.l4_filters(vs, &tls.route) {
                            out.push(ChainOpts {
                                sni_hosts: m.sni_hosts.clone(),
                                destination_cidrs: m.destination_subnets.clone(),
                                filters: vec![filter],
                                transport_socket: None,
                            });
                        }
                    }
                }
            }
            if out.is_empty() {
                // Without the service's own address the name the client asks for is what tells
                // services on this port apart (istiod's rule).
                out.push(ChainOpts {
                    sni_hosts: if on_vip {
                        Vec::new()
                    } else {
                        vec![service.hostname.clone()]
                    },
                    filters: vec![default_filter()],
                    ..Default::default()
                });
            }
            return out;
        }
        for vs in &virtual_services {
            for tcp in vs.spec.tcp.iter().filter(|t| !t.route.is_empty()) {
                let Some(filter) = self.l4_filters(vs, &tcp.route) else {
                    continue;
                };
                let applying: Vec<_> = tcp
                    .r#match
                    .iter()
                    .filter(|m| {
                        self.l4_match_applies(
                            vs,
                            m.port,
                            &m.gateways,
                            &m.source_labels,
                            m.source_namespace.as_ref(),
                        )
                    })
                    .collect();
                // No match, or a match without destination subnets, takes every connection: the
                // last chain (istiod stops here).
                if tcp.r#match.is_empty()
                    || applying.iter().any(|m| m.destination_subnets.is_empty())
                {
                    out.push(ChainOpts {
                        filters: vec![filter],
                        ..Default::default()
                    });
                    return out;
                }
                let subnets: Vec<String> = applying
                    .iter()
                    .flat_map(|m| m.destination_subnets.iter().cloned())
                    .collect();
                if !subnets.is_empty() {
                    out.push(ChainOpts {
                        destination_cidrs: subnets,
                        filters: vec![filter],
                        ..Default::default()
                    });
                }
            }
        }
        out.push(ChainOpts {
            filters: vec![default_filter()],
            ..Default::default()
        });
        out
    }
}

/// Whether a gateway server carries raw TCP or TLS rather than HTTP: a TCP-like protocol, TLS, or
/// HTTPS passed through.
pub fn is_l4_server(server: &Server) -> bool {
    let protocol = Protocol::parse(
        server.port.as_ref().and_then(|p| p.protocol.as_deref()),
        None,
    );
    match protocol {
        Protocol::Tcp | Protocol::Tls => true,
        Protocol::Https => is_passthrough(server),
        _ => false,
    }
}

fn is_passthrough(server: &Server) -> bool {
    server.tls.as_ref().is_some_and(|t| {
        matches!(
            t.mode.unwrap_or_default(),
            ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough
        )
    })
}

/// Hosts of a Gateway server without their `namespace/` prefix.
pub fn server_hosts(server: &Server) -> impl Iterator<Item = &str> {
    server
        .hosts
        .iter()
        .map(|h| h.split_once('/').map_or(h.as_str(), |(_, host)| host))
}

pub fn hosts_intersect(a: &str, b: &str) -> bool {
    crate::model::host_matches(a, b) || crate::model::host_matches(b, a)
}

/// The VirtualServices bound to `gateway` (`ns/name`) with a host the server serves.
fn bound_virtual_services<'a>(
    ctx: &RouteContext<'a>,
    gateway: &'a Gateway,
    gateway_key: &'a str,
    server: &'a Server,
) -> impl Iterator<Item = &'a VirtualService> + 'a {
    ctx.index.virtual_services.iter().filter(move |vs| {
        vs.gateways.iter().any(|g| g == gateway_key)
            && vs.visible_from(&gateway.namespace)
            && vs
                .spec
                .hosts
                .iter()
                .any(|h| server_hosts(server).any(|s| hosts_intersect(s, h)))
    })
}

/// `AUTO_PASSTHROUGH`, as istiod builds it for east-west gateways: no VirtualService; a chain per
/// service port and DestinationRule subset the gateway sees among the server's hosts, chosen by the
/// SNI a sidecar sends to that cluster (`outbound_.PORT_.SUBSET_.HOST`, `outbound_.PORT_._.HOST` without
/// a subset), and the
/// connection passed, still encrypted, to the cluster it names.
fn auto_passthrough_chains(
    ctx: &RouteContext<'_>,
    server: &Server,
    taken_sni: &mut BTreeSet<String>,
) -> Vec<ChainOpts> {
    let mut out = Vec::new();
    let services = crate::generate::visible_services(ctx.index, ctx.proxy);
    for service in services
        .iter()
        .filter(|s| server_hosts(server).any(|h| hosts_intersect(h, &s.hostname)))
    {
        let rule =
            ctx.index
                .destination_rule(&service.hostname, &ctx.proxy.namespace, &service.namespace);
        let subsets = std::iter::once("").chain(
            rule.iter()
                .flat_map(|r| &r.spec.subsets)
                .filter_map(|s| s.name.as_deref()),
        );
        for subset in subsets {
            for port in &service.ports {
                let sni = format!("outbound_.{}_.{subset}_.{}", port.number, service.hostname);
                if !taken_sni.insert(sni.clone()) {
                    continue;
                }
                let cluster = outbound_cluster(port.number, subset, &service.hostname);
                out.push(ChainOpts {
                    sni_hosts: vec![sni],
                    filters: vec![to_cluster(&cluster, TcpOptions::default())],
                    ..Default::default()
                });
            }
        }
    }
    out
}

/// istiod's `l4SingleMatch` at a gateway: only the port and the gateway count.
fn gateway_match(
    vs: &VirtualService,
    port: Option<u32>,
    gateways: &[String],
    server_port: u32,
    gateway_key: &str,
) -> bool {
    port.is_none_or(|p| p == server_port)
        && (gateways.is_empty()
            || gateways
                .iter()
                .any(|g| qualify_gateway(g, &vs.namespace) == gateway_key))
}

/// The filter chains of one non-HTTP gateway server (`ctx.gateway` is the gateway's `ns/name`).
/// `taken_sni` holds the SNI names of the port already routed (Envoy refuses a name twice).
pub fn gateway_l4_chains(
    ctx: &RouteContext<'_>,
    gateway: &Gateway,
    server: &Server,
    terminate: impl FnOnce(&Server) -> Result<TransportSocket, String>,
    taken_sni: &mut BTreeSet<String>,
    warnings: &mut Vec<String>,
) -> Vec<ChainOpts> {
    let gateway_key = ctx.gateway.unwrap_or_default();
    let port = ctx.port;
    let tcp_filters = || {
        bound_virtual_services(ctx, gateway, gateway_key, server).find_map(|vs| {
            vs.spec
                .tcp
                .iter()
                .filter(|t| !t.route.is_empty())
                .find_map(|tcp| {
                    let matched = tcp.r#match.is_empty()
                        || tcp
                            .r#match
                            .iter()
                            .any(|m| gateway_match(vs, m.port, &m.gateways, port, gateway_key));
                    if matched {
                        ctx.l4_filters(vs, &tcp.route)
                    } else {
                        None
                    }
                })
        })
    };
    match &server.tls {
        None => match tcp_filters() {
            Some(filter) => vec![ChainOpts {
                filters: vec![filter],
                ..Default::default()
            }],
            None => {
                warnings.push(format!(
                    "Gateway {gateway_key}: no VirtualService has a tcp route for the TCP server on port {port}"
                ));
                Vec::new()
            }
        },
        Some(tls) if tls.mode == Some(ServerTlsMode::AutoPassthrough) => {
            auto_passthrough_chains(ctx, server, taken_sni)
        }
        Some(_) if is_passthrough(server) => {
            let mut out = Vec::new();
            for vs in bound_virtual_services(ctx, gateway, gateway_key, server) {
                for tls in vs.spec.tls.iter().filter(|t| !t.route.is_empty()) {
                    for m in tls
                        .r#match
                        .iter()
                        .filter(|m| gateway_match(vs, m.port, &m.gateways, port, gateway_key))
                    {
                        let duplicate: Vec<&String> = m
                            .sni_hosts
                            .iter()
                            .filter(|h| taken_sni.contains(&h.to_ascii_lowercase()))
                            .collect();
                        if !duplicate.is_empty() {
                            warnings.push(format!(
                                "Gateway {gateway_key}: VirtualService {}/{} on port {port}: SNI {duplicate:?} is already routed; the match is skipped",
                                vs.namespace, vs.name
                            ));
                            continue;
                        }
                        let Some(filter) = ctx.l4_filters(vs, &tls.route) else {
                            continue;
                        };
                        taken_sni.extend(m.sni_hosts.iter().map(|h| h.to_ascii_lowercase()));
                        out.push(ChainOpts {
                            sni_hosts: m.sni_hosts.clone(),
                            filters: vec![filter],
                            ..Default::default()
                        });
                    }
                }
            }
            if out.is_empty() {
                warnings.push(format!(
                    "Gateway {gateway_key}: no VirtualService has a tls route for the TLS passthrough server on port {port}"
                ));
            }
            out
        }
        Some(_) => {
            // TLS terminated here, the plaintext forwarded with the tcp routes.
            let socket = match terminate(server) {
                Ok(socket) => socket,
                Err(why) => {
                    warnings.push(format!(
                        "Gateway {gateway_key}: the TLS server on port {port} is skipped: {why}"
                    ));
                    return Vec::new();
                }
            };
            match tcp_filters() {
                Some(filter) => vec![ChainOpts {
                    sni_hosts: server_hosts(server).map(str::to_owned).collect(),
                    filters: vec![filter],
                    transport_socket: Some(socket),
                    ..Default::default()
                }],
                None => {
                    warnings.push(format!(
                        "Gateway {gateway_key}: no VirtualService has a tcp route for the TLS server on port {port}"
                    ));
                    Vec::new()
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_compare_by_masked_prefix() {
        let a = ChainOpts {
            destination_cidrs: vec!["10.1.2.3/8".to_owned()],
            ..Default::default()
        };
        let b = ChainOpts {
            destination_cidrs: vec!["10.0.0.0/8".to_owned()],
            ..Default::default()
        };
        assert!(a.conflicts_with(&b));
        let host = ChainOpts {
            destination_cidrs: vec!["10.0.0.1".to_owned()],
            ..Default::default()
        };
        assert!(!host.conflicts_with(&b));
        assert!(!host.is_match_all());
        let wildcard = ChainOpts {
            sni_hosts: vec!["*".to_owned()],
            destination_cidrs: vec!["0.0.0.0/0".to_owned()],
            ..Default::default()
        };
        assert!(wildcard.is_match_all());
    }
}
