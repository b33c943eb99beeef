//! Listeners and route tables: a sidecar's outbound explicit-proxy listener (`IP:15001`) with one
//! virtual host per service port, its inbound listener (`IP:15006`) to the workload, and a gateway's
//! listeners per Gateway server port with the routes of the VirtualServices bound to it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use prost::Message;

use mesh_api::types::gateway::Server;
use mesh_api::types::sidecar::OutboundTrafficPolicyMode;
use xds_api::pb::envoy::config::core::v3::{DataSource, data_source};
use xds_api::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter,
    filter::ConfigType as FilterConfig, listener_filter::ConfigType as ListenerFilterConfig,
};
use xds_api::pb::envoy::config::route::v3::{
    DirectResponseAction, Route, RouteConfiguration, RouteMatch, Vhds, VirtualHost, route::Action,
    route_action::ClusterSpecifier, route_action::UpgradeConfig as RouteUpgradeConfig,
    route_action::upgrade_config::ConnectConfig, route_match::ConnectMatcher,
    route_match::PathSpecifier, virtual_host::TlsRequirementType,
};
use xds_api::pb::envoy::extensions::filters::http::cors::v3::Cors;
use xds_api::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use xds_api::pb::envoy::extensions::filters::http::router::v3::Router;
use xds_api::pb::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;
use xds_api::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager::ForwardClientCertDetails,
    http_connection_manager::PathWithEscapedSlashesAction, http_connection_manager::RouteSpecifier,
    http_connection_manager::SetCurrentClientCertDetails, http_connection_manager::UpgradeConfig,
    http_filter::ConfigType as HttpFilterConfig,
};
use xds_api::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy, tcp_proxy::ClusterSpecifier as TcpCluster,
};
use xds_api::pb::envoy::extensions::transport_sockets::tls::v3::{DownstreamTlsContext, Secret};
use xds_api::pb::google::protobuf::{BoolValue, UInt32Value};

use crate::generate::ProxyResources;
use crate::generate::cluster::{
    ads_config_source, inbound_cluster, inbound_cluster_port, socket_address,
};
use crate::generate::route::{
    CORS_FILTER, FAULT_FILTER, RouteContext, every_path, forward_to, outbound_cluster,
};
use crate::generate::server_tls::{self, ServerTls};
use crate::generate::tcp::{self, hosts_intersect, server_hosts};
use crate::index::{Gateway, Index, PeerMode};
use crate::model::{INBOUND_PORT, OUTBOUND_PORT, Protocol, Service, ServicePort};
use crate::node::Proxy;

pub const VIRTUAL_OUTBOUND: &str = "virtualOutbound";
pub const VIRTUAL_INBOUND: &str = "virtualInbound";
/// The route table of the explicit-proxy outbound listener.
pub const OUTBOUND_ROUTE: &str = "15001";
pub const INBOUND_ROUTE: &str = "inbound|15006";
/// The cluster that sends a connection on to where it was addressed (original destination).
pub const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";

/// A virtual host for every name with one route named like it, for every path.
fn catch_all(name: &str, action: Action) -> VirtualHost {
    VirtualHost {
        name: name.to_owned(),
        domains: vec!["*".to_owned()],
        routes: vec![Route {
            name: name.to_owned(),
            r#match: Some(every_path()),
            action: Some(action),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Istio's answer to a destination the mesh does not know under REGISTRY_ONLY.
/// The one route of an inbound virtual host: everything to the workload's `inbound|PORT||`.
fn to_workload(target: u32) -> Route {
    Route {
        name: "default".to_owned(),
        r#match: Some(every_path()),
        action: Some(Action::Route(forward_to(&inbound_cluster(target)))),
        ..Default::default()
    }
}

fn refuse_502() -> Action {
    refuse(502, None)
}

/// A local answer of `status`, with `body` if given.
fn refuse(status: u32, body: Option<&str>) -> Action {
    Action::DirectResponse(DirectResponseAction {
        status,
        body: body.map(|b| DataSource {
            specifier: Some(data_source::Specifier::InlineString(b.to_owned())),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn http_filter(name: &str, config: xds_api::pb::google::protobuf::Any) -> HttpFilter {
    HttpFilter {
        name: name.to_owned(),
        config_type: Some(HttpFilterConfig::TypedConfig(config)),
        ..Default::default()
    }
}

/// Which side of the mesh a connection manager serves, which decides its HTTP filters.
#[derive(Debug, Clone, Copy)]
enum Side {
    /// Outbound and gateways: the fault and CORS filters (both configured per route), then the
    /// router, in istiod's order.
    Client,
    /// Inbound: the router alone.
    Server,
}

/// An HTTP connection manager with Istio's filter order for the side it serves.
fn hcm(stat_prefix: &str, routes: RouteSpecifier, side: Side) -> Filter {
    let mut http_filters = Vec::new();
    if let Side::Client = side {
        http_filters.push(http_filter(
            FAULT_FILTER,
            xds_api::any::pack(&HttpFault::default()),
        ));
        http_filters.push(http_filter(
            CORS_FILTER,
            xds_api::any::pack(&Cors::default()),
        ));
    }
    http_filters.push(http_filter(
        "envoy.filters.http.router",
        xds_api::any::pack(&Router::default()),
    ));
    let mut manager = HttpConnectionManager {
        stat_prefix: stat_prefix.to_owned(),
        route_specifier: Some(routes),
        http_filters,
        // istiod's default path normalization (`meshConfig.pathNormalization` BASE): paths are
        // normalized before routing, so that a route or policy on `/admin` is not bypassed by
        // `/public/../admin`; escaped slashes are kept as they are.
        normalize_path: Some(BoolValue { value: true }),
        path_with_escaped_slashes_action: PathWithEscapedSlashesAction::KeepUnchanged as i32,
        ..Default::default()
    };
    if let Side::Server = side {
        // As istiod's inbound: the app behind the sidecar learns who called it over mutual TLS
        // from `x-forwarded-client-cert` (`By` its own SPIFFE ID, `URI` the caller's).
        manager.forward_client_cert_details = ForwardClientCertDetails::AppendForward as i32;
        manager.set_current_client_cert_details = Some(SetCurrentClientCertDetails {
            subject: Some(BoolValue { value: true }),
            uri: true,
            dns: true,
            ..Default::default()
        });
    }
    Filter {
        name: "envoy.filters.network.http_connection_manager".to_owned(),
        config_type: Some(FilterConfig::TypedConfig(xds_api::any::pack(&manager))),
    }
}

fn rds(name: &str) -> RouteSpecifier {
    RouteSpecifier::Rds(Rds {
        config_source: Some(ads_config_source()),
        route_config_name: name.to_owned(),
    })
}

pub(crate) fn listener(name: &str, ip: &str, port: u32, chain: FilterChain) -> Listener {
    Listener {
        name: name.to_owned(),
        address: Some(socket_address(ip, port)),
        filter_chains: vec![chain],
        ..Default::default()
    }
}

/// Adds `domains` not yet taken to `vhost` (Envoy refuses a route table naming a domain twice: the
/// first service to claim a name keeps it, as sorted hostnames come first).
fn claim(taken: &mut BTreeSet<String>, domains: impl IntoIterator<Item = String>) -> Vec<String> {
    domains
        .into_iter()
        .filter(|d| taken.insert(d.clone()))
        .collect()
}

/// The sidecar's outbound listener without capture: `IP:15001`, an explicit HTTP proxy taking
/// absolute-form and Host-routed requests, WebSocket upgrades, and CONNECT (apps' `HTTPS_PROXY`).
pub fn outbound_listener(proxy: &Proxy) -> Listener {
    let chain = FilterChain {
        filters: vec![hcm(
            &format!("outbound_{}_{OUTBOUND_PORT}", proxy.ip),
            rds(OUTBOUND_ROUTE),
            Side::Client,
        )],
        ..Default::default()
    };
    let explicit_proxy = listener(VIRTUAL_OUTBOUND, &proxy.ip, OUTBOUND_PORT, chain);
    with_upgrades(explicit_proxy, &["websocket", "CONNECT"])
}

/// `l` with `upgrade_configs` enabling `upgrades` on its HTTP connection managers.
fn with_upgrades(mut l: Listener, upgrades: &[&str]) -> Listener {
    for filter in l
        .filter_chains
        .iter_mut()
        .flat_map(|c| c.filters.iter_mut())
    {
        if let Some(FilterConfig::TypedConfig(any)) = &mut filter.config_type
            && let Ok(mut manager) = xds_api::any::unpack::<HttpConnectionManager>(any)
        {
            manager.upgrade_configs = upgrades
                .iter()
                .map(|u| UpgradeConfig {
                    upgrade_type: (*u).to_owned(),
                    ..Default::default()
                })
                .collect();
            *any = xds_api::any::pack(&manager);
        }
    }
    l
}

/// The route that terminates `CONNECT host:port` and tunnels it to the service port's cluster, as a
/// captured connection to that host and port would go.
fn connect_route(cluster: &str) -> Route {
    Route {
        name: "connect".to_owned(),
        r#match: Some(RouteMatch {
            path_specifier: Some(PathSpecifier::ConnectMatcher(ConnectMatcher::default())),
            ..Default::default()
        }),
        action: Some(Action::Route(
            xds_api::pb::envoy::config::route::v3::RouteAction {
                upgrade_configs: vec![RouteUpgradeConfig {
                    upgrade_type: "CONNECT".to_owned(),
                    connect_config: Some(ConnectConfig::default()),
                    ..Default::default()
                }],
                ..forward_to(cluster)
            },
        )),
        ..Default::default()
    }
}

/// One virtual host of a [`RouteTable`].
#[derive(Debug)]
pub enum TableHost<'a> {
    /// A service port's: its routes come from its VirtualService or its default
    /// ([`service_routes`]), then `trailing`.
    Service {
        service: &'a Service,
        port: u32,
        name: String,
        domains: Vec<String>,
        /// Routes after the service's own (the explicit proxy's CONNECT route).
        trailing: Vec<Route>,
    },
    /// One that is whole already (a catch-all, a tunnel-only host).
    Fixed(Box<VirtualHost>),
}

/// A sidecar's outbound route table before its services' routes are built. Those routes are most
/// of its size and cost, and a push can take each service's from the last push
/// ([`encode`](Self::encode)) when they cannot have changed.
#[derive(Debug)]
pub struct RouteTable<'a> {
    /// The table's own fields (no virtual hosts).
    pub config: RouteConfiguration,
    pub hosts: Vec<TableHost<'a>>,
}

/// The routes of `service`'s virtual host on `port` for `proxy`: its mesh VirtualService's, or the
/// default route.
pub fn service_routes(index: &Index, proxy: &Proxy, service: &Service, port: u32) -> Vec<Route> {
    let ctx = RouteContext {
        index,
        proxy,
        port,
        gateway: None,
    };
    match index.mesh_virtual_service(&service.hostname, &proxy.namespace) {
        Some(vs) => ctx.virtual_service_routes(vs),
        None => vec![ctx.service_default_route(service)],
    }
}

/// `routes` encoded as the `routes` fields of a `VirtualHost`.
pub fn encode_routes(routes: &[Route], buf: &mut Vec<u8>) {
    for r in routes {
        prost::encoding::message::encode(VIRTUAL_HOST_ROUTES, r, buf);
    }
}

/// Field numbers: `RouteConfiguration.virtual_hosts`, `VirtualHost.routes`.
const ROUTE_CONFIG_VIRTUAL_HOSTS: u32 = 2;
const VIRTUAL_HOST_ROUTES: u32 = 3;

impl TableHost<'_> {
    /// The virtual host's name.
    pub fn name(&self) -> &str {
        match self {
            TableHost::Fixed(v) => &v.name,
            TableHost::Service { name, .. } => name,
        }
    }

    /// The host with its service's routes built for `proxy`.
    pub fn build(self, index: &Index, proxy: &Proxy) -> VirtualHost {
        match self {
            TableHost::Fixed(vhost) => *vhost,
            TableHost::Service {
                service,
                port,
                name,
                domains,
                trailing,
            } => {
                let mut routes = service_routes(index, proxy, service, port);
                routes.extend(trailing);
                VirtualHost {
                    name,
                    domains,
                    routes,
                    ..Default::default()
                }
            }
        }
    }

    /// The host's `VirtualHost` fields encoded into `out`, byte for byte what encoding
    /// [`build`](Self::build)'s result writes, a service port's routes (as [`encode_routes`]
    /// writes them) taken from `routes`.
    pub fn encode_raw(
        self,
        routes: &mut impl FnMut(&Service, u32) -> bytes::Bytes,
        out: &mut Vec<u8>,
    ) {
        match self {
            TableHost::Fixed(v) => v.encode_raw(out),
            TableHost::Service {
                service,
                port,
                name,
                domains,
                trailing,
            } => {
                let mut trailing_encoded = Vec::new();
                encode_routes(&trailing, &mut trailing_encoded);
                encode_service_host(
                    name,
                    domains,
                    &routes(service, port),
                    &trailing_encoded,
                    out,
                );
            }
        }
    }
}

/// A service host's `VirtualHost` fields encoded into `out`: its name and domains, then its
/// service's routes and its trailing ones, both encoded already (as [`encode_routes`] writes them).
pub fn encode_service_host(
    name: String,
    domains: Vec<String>,
    routes: &[u8],
    trailing: &[u8],
    out: &mut Vec<u8>,
) {
    // Name and domains (fields 1, 2), then routes (3); it has no other field.
    VirtualHost {
        name,
        domains,
        ..Default::default()
    }
    .encode_raw(out);
    out.extend_from_slice(routes);
    out.extend_from_slice(trailing);
}

impl<'a> RouteTable<'a> {
    /// The table, its services' routes built for `proxy`.
    pub fn build(self, index: &Index, proxy: &Proxy) -> RouteConfiguration {
        let mut config = self.config;
        config.virtual_hosts = self
            .hosts
            .into_iter()
            .map(|host| host.build(index, proxy))
            .collect();
        config
    }

    /// The table for a proxy that takes its services' virtual hosts over VHDS, and those hosts.
    ///
    /// The fixed hosts (catch-all, tunnel-only) stay in the table, which names the ADS stream as
    /// where the rest come from. Each service host is named `TABLE/HOST`: Envoy files a VHDS
    /// resource under the table its name starts with (up to the last `/`) and keys it by its
    /// `VirtualHost.name`, so the two must be the same. A table with no service host is left
    /// whole: Envoy would hold its listener until a VHDS answer for it came, and none would.
    pub fn split_for_vhds(mut self) -> (RouteTable<'a>, Vec<TableHost<'a>>) {
        let (services, fixed): (Vec<_>, Vec<_>) = self
            .hosts
            .into_iter()
            .partition(|h| matches!(h, TableHost::Service { .. }));
        self.hosts = fixed;
        if services.is_empty() {
            return (self, services);
        }
        self.config.vhds = Some(Vhds {
            config_source: Some(ads_config_source()),
        });
        let table = self.config.name.clone();
        let services = services
            .into_iter()
            .map(|mut host| {
                if let TableHost::Service { name, .. } = &mut host {
                    *name = format!("{table}/{name}");
                }
                host
            })
            .collect();
        (self, services)
    }

    /// The encoded table, byte for byte what [`build`](Self::build) encodes to, with each service
    /// port's routes (as [`encode_routes`] writes them) from `routes`.
    pub fn encode(self, mut routes: impl FnMut(&Service, u32) -> bytes::Bytes) -> Vec<u8> {
        use prost::encoding::{WireType, encode_key, encode_varint};
        // Its name (field 1), the virtual hosts (2), then every other field: prost's order.
        let name = RouteConfiguration {
            name: self.config.name.clone(),
            ..Default::default()
        };
        let rest = RouteConfiguration {
            name: String::new(),
            ..self.config
        };
        let mut out = name.encode_to_vec();
        let mut vhost = Vec::new();
        for host in self.hosts {
            vhost.clear();
            host.encode_raw(&mut routes, &mut vhost);
            encode_key(
                ROUTE_CONFIG_VIRTUAL_HOSTS,
                WireType::LengthDelimited,
                &mut out,
            );
            encode_varint(vhost.len() as u64, &mut out);
            out.extend_from_slice(&vhost);
        }
        rest.encode_raw(&mut out);
        out
    }
}

/// The route table of [`outbound_listener`]: a virtual host per service port (`host:port`; HTTP
/// ports also take plain requests, every port takes `CONNECT host:port`), then the catch-all.
pub fn outbound_route_table<'a>(
    index: &Index,
    proxy: &Proxy,
    services: &[&'a Service],
) -> RouteTable<'a> {
    let mut taken = BTreeSet::new();
    let mut hosts = Vec::new();
    for service in services {
        for port in &service.ports {
            let cluster = outbound_cluster(port.number, "", &service.hostname);
            if !port.protocol.is_http() {
                // TCP, TLS, HTTPS: only a tunnel to it (HTTPS through an explicit proxy).
                let mut vhost = VirtualHost {
                    name: format!("{}:{}", service.hostname, port.number),
                    ..Default::default()
                };
                let domains = service
                    .aliases(&proxy.namespace)
                    .iter()
                    .map(|a| format!("{a}:{}", port.number))
                    .collect::<Vec<_>>();
                vhost.domains = claim(&mut taken, domains);
                if !vhost.domains.is_empty() {
                    // A plain HTTP request to it is refused as before, by the catch-all's answer.
                    let not_http = Route {
                        name: "not_http".to_owned(),
                        r#match: Some(every_path()),
                        action: Some(refuse_502()),
                        ..Default::default()
                    };
                    vhost.routes = vec![connect_route(&cluster), not_http];
                    hosts.push(TableHost::Fixed(Box::new(vhost)));
                }
                continue;
            }
            let aliases = service.aliases(&proxy.namespace);
            let mut domains: Vec<String> = aliases
                .iter()
                .map(|a| format!("{a}:{}", port.number))
                .collect();
            if port.number == 80 {
                domains.extend(aliases.iter().cloned());
            }
            let domains = claim(&mut taken, domains);
            if domains.is_empty() {
                continue;
            }
            hosts.push(TableHost::Service {
                service,
                port: port.number,
                name: format!("{}:{}", service.hostname, port.number),
                domains,
                // Only CONNECT matches it, whatever comes before.
                trailing: vec![connect_route(&cluster)],
            });
        }
    }
    // Anything else: Istio answers 502 from `block_all` under REGISTRY_ONLY. Under ALLOW_ANY it would
    // pass the request through to where it was addressed; an explicit proxy without capture has no
    // original destination to pass to, so it refuses the same way (see the README). A CONNECT to an
    // unknown authority matches no route there: 404, as Envoy answers it.
    let name = match index.outbound_policy(proxy) {
        OutboundTrafficPolicyMode::RegistryOnly => "block_all",
        OutboundTrafficPolicyMode::AllowAny => "allow_any",
    };
    hosts.push(TableHost::Fixed(Box::new(catch_all(name, refuse_502()))));
    RouteTable {
        config: RouteConfiguration {
            name: OUTBOUND_ROUTE.to_owned(),
            validate_clusters: Some(BoolValue { value: false }),
            ..Default::default()
        },
        hosts,
    }
}

/// [`outbound_route_table`], built.
pub fn outbound_routes(index: &Index, proxy: &Proxy, services: &[&Service]) -> RouteConfiguration {
    outbound_route_table(index, proxy, services).build(index, proxy)
}

/// The ports the workload behind `proxy` serves (from the services whose instances have its IP):
/// `(service port, target port, h2)`.
pub fn inbound_ports(index: &Index, proxy: &Proxy) -> Vec<(u32, u32, bool)> {
    let mut ports: Vec<(u32, u32, bool)> = Vec::new();
    for (port, target) in workload_http_ports(index, proxy) {
        let entry = (port.number, target, port.protocol.is_h2());
        if !ports.iter().any(|p| p.0 == entry.0) {
            ports.push(entry);
        }
    }
    ports.sort_unstable();
    ports
}

/// The workload ports of [`inbound_ports`] whose protocol a service leaves undeclared: istiod sniffs
/// what arrives there (HTTP, or else TCP).
pub fn sniffed_inbound_ports(index: &Index, proxy: &Proxy) -> BTreeSet<u32> {
    workload_http_ports(index, proxy)
        .filter(|(port, _)| port.protocol == Protocol::Unknown)
        .map(|(_, target)| target)
        .collect()
}

/// The HTTP service ports of the workload behind `proxy`, each with the workload port it reaches.
fn workload_http_ports<'a>(
    index: &'a Index,
    proxy: &'a Proxy,
) -> impl Iterator<Item = (&'a ServicePort, u32)> + 'a {
    index
        .instances_at(&proxy.ip, &proxy.namespace)
        .flat_map(|(service, instance)| {
            service
                .ports
                .iter()
                .filter(|p| p.protocol.is_http())
                .map(move |p| (p, instance.target_port(p)))
        })
}

/// The sidecar's inbound listener (`IP:15006`): requests go to the workload's port named by the
/// port of their Host (the service port the client addressed), else to its first port.
pub fn sidecar_inbound(proxy: &Proxy, ports: &[(u32, u32, bool)]) -> Listener {
    let mut virtual_hosts: Vec<VirtualHost> = ports
        .iter()
        .map(|(port, target, _)| VirtualHost {
            name: format!("inbound|http|{port}"),
            domains: vec![format!("*:{port}")],
            routes: vec![to_workload(*target)],
            ..Default::default()
        })
        .collect();
    if let Some((_, target, _)) = ports.first() {
        virtual_hosts.push(VirtualHost {
            name: "inbound|http|default".to_owned(),
            domains: vec!["*".to_owned()],
            routes: vec![to_workload(*target)],
            ..Default::default()
        });
    }
    let routes = RouteConfiguration {
        name: INBOUND_ROUTE.to_owned(),
        virtual_hosts,
        ..Default::default()
    };
    let chain = FilterChain {
        filters: vec![hcm(
            &format!("inbound_{}_{INBOUND_PORT}", proxy.ip),
            RouteSpecifier::RouteConfig(routes),
            Side::Server,
        )],
        ..Default::default()
    };
    listener(VIRTUAL_INBOUND, &proxy.ip, INBOUND_PORT, chain)
}

/// A gateway proxy's listeners (one per server port), route tables (`http.PORT`) and the secrets
/// (SDS) its servers' `credentialName`s name.
pub fn gateway(index: &Index, proxy: &Proxy, bind_ip: &str) -> ProxyResources {
    let mut warnings = Vec::new();
    let mut secrets = Vec::new();
    let gateways: Vec<&Gateway> = index.gateways_for(proxy).collect();
    let mut ports: BTreeSet<u32> = BTreeSet::new();
    for g in &gateways {
        ports.extend(
            g.spec
                .servers
                .iter()
                .filter_map(|s| s.port.as_ref()?.number),
        );
    }
    let mut listeners = Vec::new();
    let mut route_configs = Vec::new();
    for port in ports {
        let servers: Vec<(&Gateway, &Server)> = gateways
            .iter()
            .flat_map(|g| g.spec.servers.iter().map(move |s| (*g, s)))
            .filter(|(_, s)| s.port.as_ref().and_then(|p| p.number) == Some(port))
            .collect();
        let (l4_servers, servers): (Vec<_>, Vec<_>) =
            servers.into_iter().partition(|(_, s)| tcp::is_l4_server(s));
        if servers.is_empty() {
            if let Some(l) = gateway_l4_listener(
                index,
                proxy,
                bind_ip,
                port,
                &l4_servers,
                &mut secrets,
                &mut warnings,
            ) {
                listeners.push(l);
            }
            continue;
        }
        for (g, _) in &l4_servers {
            warnings.push(format!(
                "Gateway {}/{}: a TCP/TLS server on port {port}, which other servers use for HTTP, is skipped (one protocol per port)",
                g.namespace, g.name
            ));
        }
        let route_name = format!("http.{port}");
        let mut taken = BTreeSet::new();
        let mut virtual_hosts = Vec::new();
        // Servers terminating TLS: the SNI names each is chosen by, and its TLS.
        let mut terminated: Vec<(Vec<String>, DownstreamTlsContext)> = Vec::new();
        let mut plain = Vec::new();
        for (g, server) in &servers {
            let gateway_key = format!("{}/{}", g.namespace, g.name);
            let protocol = server
                .port
                .as_ref()
                .and_then(|p| p.protocol.clone())
                .unwrap_or_default()
                .to_ascii_uppercase();
            if !matches!(protocol.as_str(), "HTTP" | "HTTP2" | "GRPC" | "HTTPS") {
                warnings.push(format!(
                    "Gateway {gateway_key}: protocol {protocol} on port {port} is not supported yet (HTTP and HTTPS are)"
                ));
                continue;
            }
            match server_tls::gateway_server_tls(
                index,
                &proxy.namespace,
                server.tls.as_ref(),
                &mut secrets,
            ) {
                Ok(ServerTls::Plain) => plain.push(gateway_key.clone()),
                Ok(ServerTls::Terminated(context)) => {
                    terminated.push((sni_names(server), *context));
                }
                Err(why) => {
                    warnings.push(format!(
                        "Gateway {gateway_key}: the server on port {port} is skipped: {why}"
                    ));
                    continue;
                }
            }
            let redirect = server
                .tls
                .as_ref()
                .and_then(|t| t.https_redirect)
                .unwrap_or(false);
            for vs in index
                .virtual_services
                .iter()
                .filter(|vs| vs.gateways.contains(&gateway_key) && vs.visible_from(&g.namespace))
            {
                for host in vs
                    .spec
                    .hosts
                    .iter()
                    .filter(|h| server_hosts(server).any(|s| hosts_intersect(s, h)))
                {
                    let mut vhost = VirtualHost {
                        name: format!("{host}:{port}"),
                        require_tls: if redirect {
                            TlsRequirementType::All as i32
                        } else {
                            0
                        },
                        ..Default::default()
                    };
                    vhost.domains = claim(&mut taken, [host.clone()]);
                    if vhost.domains.is_empty() {
                        continue;
                    }
                    let ctx = RouteContext {
                        index,
                        proxy,
                        port,
                        gateway: Some(&gateway_key),
                    };
                    vhost.routes = ctx.virtual_service_routes(vs);
                    virtual_hosts.push(vhost);
                }
            }
        }
        if plain.is_empty() && terminated.is_empty() {
            // Every server of the port was skipped: nothing listens there.
            continue;
        }
        if virtual_hosts.is_empty() {
            // istiod: a port no VirtualService binds answers 404.
            virtual_hosts.push(VirtualHost {
                name: format!("blackhole:{port}"),
                domains: vec!["*".to_owned()],
                ..Default::default()
            });
        }
        let connection_manager =
            || hcm(&format!("{bind_ip}_{port}"), rds(&route_name), Side::Client);
        if !terminated.is_empty() && !plain.is_empty() {
            warnings.push(format!(
                "Gateway {}: plain-text servers on port {port}, where others terminate TLS, are served over TLS only",
                plain.join(", ")
            ));
        }
        let chains = if terminated.is_empty() {
            vec![FilterChain {
                filters: vec![connection_manager()],
                ..Default::default()
            }]
        } else {
            tls_chains(terminated, port, &mut warnings)
                .into_iter()
                .map(|(names, context)| FilterChain {
                    filter_chain_match: (!names.is_empty()).then(|| FilterChainMatch {
                        server_names: names,
                        ..Default::default()
                    }),
                    filters: vec![connection_manager()],
                    transport_socket: Some(server_tls::tls_socket(&context)),
                    ..Default::default()
                })
                .collect()
        };
        let by_sni = chains.iter().any(|c| c.filter_chain_match.is_some());
        listeners.push(Listener {
            name: format!("0.0.0.0_{port}"),
            address: Some(socket_address(bind_ip, port)),
            filter_chains: chains,
            // Reads the SNI name that chooses a server's chain.
            listener_filters: if by_sni {
                vec![tcp::tls_inspector()]
            } else {
                Vec::new()
            },
            ..Default::default()
        });
        route_configs.push(RouteConfiguration {
            name: route_name,
            virtual_hosts,
            // Clients say `Host: bookinfo.com:8080` as often as `bookinfo.com`.
            ignore_port_in_host_matching: true,
            validate_clusters: Some(xds_api::pb::google::protobuf::BoolValue { value: false }),
            ..Default::default()
        });
    }
    ProxyResources {
        listeners,
        routes: route_configs,
        secrets,
        warnings,
        ..ProxyResources::default()
    }
}

/// The SNI names that choose a TLS server's filter chain: its hosts, none (any name, or none) when
/// one of them is `*`.
fn sni_names(server: &Server) -> Vec<String> {
    let hosts: Vec<String> = server_hosts(server).map(str::to_ascii_lowercase).collect();
    if hosts.iter().any(|h| h == "*") {
        Vec::new()
    } else {
        hosts
    }
}

/// One filter chain per TLS server, each SNI name with the first server that claims it (Envoy
/// refuses two chains matching the same name) and one catch-all chain at most.
fn tls_chains(
    servers: Vec<(Vec<String>, DownstreamTlsContext)>,
    port: u32,
    warnings: &mut Vec<String>,
) -> Vec<(Vec<String>, DownstreamTlsContext)> {
    let mut taken = BTreeSet::new();
    let mut catch_all = false;
    let mut out = Vec::new();
    for (names, context) in servers {
        if names.is_empty() {
            if std::mem::replace(&mut catch_all, true) {
                warnings.push(format!(
                    "port {port}: two TLS servers for every host; the first one's certificate is used"
                ));
            } else {
                out.push((names, context));
            }
            continue;
        }
        let (free, claimed): (Vec<String>, Vec<String>) =
            names.into_iter().partition(|n| !taken.contains(n));
        if !claimed.is_empty() {
            warnings.push(format!(
                "port {port}: TLS hosts {claimed:?} are already served by another server's certificate"
            ));
        }
        if !free.is_empty() {
            taken.extend(free.iter().cloned());
            out.push((free, context));
        }
    }
    out
}

/// A gateway listener for TCP/TLS servers: their `tcp_proxy` chains, by SNI where they have names;
/// none (with a warning) when no VirtualService routes them (Envoy refuses a listener without chains).
fn gateway_l4_listener(
    index: &Index,
    proxy: &Proxy,
    bind_ip: &str,
    port: u32,
    servers: &[(&Gateway, &Server)],
    secrets: &mut Vec<Secret>,
    warnings: &mut Vec<String>,
) -> Option<Listener> {
    let mut chains: Vec<tcp::ChainOpts> = Vec::new();
    let mut taken_sni = BTreeSet::new();
    for (g, server) in servers {
        let gateway_key = format!("{}/{}", g.namespace, g.name);
        let ctx = RouteContext {
            index,
            proxy,
            port,
            gateway: Some(&gateway_key),
        };
        let terminate = |s: &Server| match server_tls::gateway_server_tls(
            index,
            &proxy.namespace,
            s.tls.as_ref(),
            secrets,
        )? {
            ServerTls::Terminated(context) => Ok(server_tls::tls_socket(&context)),
            ServerTls::Plain => Err("it has no TLS to terminate".to_owned()),
        };
        let incoming = tcp::gateway_l4_chains(&ctx, g, server, terminate, &mut taken_sni, warnings);
        tcp::merge_chains(
            &mut chains,
            incoming,
            &format!("Gateway {gateway_key} port {port}"),
            warnings,
        );
    }
    if chains.is_empty() {
        return None;
    }
    let tls_inspector = chains.iter().any(tcp::ChainOpts::needs_tls_inspector);
    Some(Listener {
        name: format!("0.0.0.0_{port}"),
        address: Some(socket_address(bind_ip, port)),
        filter_chains: chains.into_iter().map(tcp::ChainOpts::into_chain).collect(),
        listener_filters: if tls_inspector {
            vec![tcp::tls_inspector()]
        } else {
            Vec::new()
        },
        ..Default::default()
    })
}

// === Traffic capture (interception REDIRECT): istiod's virtual listeners ===

fn tcp_proxy(stat_prefix: &str, cluster: &str) -> Filter {
    tcp::tcp_proxy_filter(&TcpProxy {
        stat_prefix: stat_prefix.to_owned(),
        cluster_specifier: Some(TcpCluster::Cluster(cluster.to_owned())),
        ..Default::default()
    })
}

fn original_dst_filter() -> ListenerFilter {
    ListenerFilter {
        name: "envoy.filters.listener.original_dst".to_owned(),
        config_type: Some(ListenerFilterConfig::TypedConfig(xds_api::any::pack(
            &OriginalDst::default(),
        ))),
        ..Default::default()
    }
}

/// Where traffic to an unknown destination goes: through (ALLOW_ANY) or nowhere (REGISTRY_ONLY).
fn catch_all_cluster(index: &Index, proxy: &Proxy) -> &'static str {
    match index.outbound_policy(proxy) {
        OutboundTrafficPolicyMode::RegistryOnly => crate::generate::cluster::BLACKHOLE_CLUSTER,
        OutboundTrafficPolicyMode::AllowAny => PASSTHROUGH_CLUSTER,
    }
}

/// A captured sidecar's outbound side, as istiod builds it: `virtualOutbound` on `0.0.0.0:15001`
/// hands each connection (by its original destination) to a per-port listener `0.0.0.0_PORT` (never
/// bound) with route table `"PORT"`, or for a TCP/TLS service with a virtual IP to `VIP_PORT`;
/// unknown ports pass through or are dropped per the outbound policy.
pub fn captured_outbound<'a>(
    index: &Index,
    proxy: &Proxy,
    services: &[&'a Service],
) -> (Vec<Listener>, Vec<RouteTable<'a>>, Vec<String>) {
    let catch_all = catch_all_cluster(index, proxy);
    let mut warnings = Vec::new();
    let mut listeners = vec![Listener {
        name: VIRTUAL_OUTBOUND.to_owned(),
        address: Some(socket_address("0.0.0.0", OUTBOUND_PORT)),
        use_original_dst: Some(BoolValue { value: true }),
        filter_chains: vec![
            // A connection addressed to 15001 itself would loop.
            FilterChain {
                name: "virtualOutbound-blackhole".to_owned(),
                filter_chain_match: Some(FilterChainMatch {
                    destination_port: Some(UInt32Value {
                        value: OUTBOUND_PORT,
                    }),
                    ..Default::default()
                }),
                filters: vec![tcp_proxy(
                    crate::generate::cluster::BLACKHOLE_CLUSTER,
                    crate::generate::cluster::BLACKHOLE_CLUSTER,
                )],
                ..Default::default()
            },
            FilterChain {
                name: "virtualOutbound-catchall-tcp".to_owned(),
                filters: vec![tcp_proxy(catch_all, catch_all)],
                ..Default::default()
            },
        ],
        ..Default::default()
    }];
    let mut routes = Vec::new();
    let mut ports: BTreeMap<u32, Vec<&Service>> = BTreeMap::new();
    for s in services {
        for p in &s.ports {
            ports.entry(p.number).or_default().push(s);
        }
    }
    for (port, on_port) in ports {
        let is_http = |s: &Service| s.port(port).is_some_and(|p| p.protocol.is_http());
        let is_sniffed = |s: &Service| {
            s.port(port)
                .is_some_and(|p| p.protocol == Protocol::Unknown)
        };
        // As istiod, a TCP/TLS or sniffed port of a service with virtual IPs is bound to each of
        // them: a listener `IP_PORT` of its own, which the hand-off prefers to `0.0.0.0_PORT` for
        // connections to that address. Services sharing a port number are told apart so.
        let on_vip =
            |s: &Service| (!is_http(s) || is_sniffed(s)) && s.virtual_ips().next().is_some();
        let mut by_vip: BTreeMap<IpAddr, Vec<&Service>> = BTreeMap::new();
        for s in on_port.iter().copied().filter(|s| on_vip(s)) {
            for ip in s.virtual_ips() {
                by_vip.entry(ip).or_default().push(s);
            }
        }
        // One route table for the port, whichever listener hands it HTTP.
        let http_all: Vec<&Service> = on_port.iter().copied().filter(|s| is_http(s)).collect();
        if !http_all.is_empty() {
            routes.push(port_route_table(index, proxy, port, &http_all));
        }
        let http_chain = |bind: &str| FilterChain {
            filters: vec![hcm(
                &format!("outbound_{bind}_{port}"),
                rds(&port.to_string()),
                Side::Client,
            )],
            ..Default::default()
        };
        for (ip, services) in &by_vip {
            let vip = Some(*ip);
            let tcp =
                l4_outbound_listener(index, proxy, vip, port, services, catch_all, &mut warnings);
            listeners.push(if services.iter().any(|s| is_sniffed(s)) {
                sniffing_outbound_listener(tcp, http_chain(&ip.to_string()))
            } else {
                tcp
            });
        }
        // The wildcard listener: HTTP, and the rest without a virtual IP (or with address ranges).
        let on_port: Vec<&Service> = on_port
            .into_iter()
            .filter(|s| !on_vip(s) || s.address_ranges().next().is_some())
            .collect();
        if on_port.is_empty() {
            continue;
        }
        let http: Vec<&Service> = on_port.iter().copied().filter(|s| is_http(s)).collect();
        let name = format!("0.0.0.0_{port}");
        if http.is_empty() {
            listeners.push(l4_outbound_listener(
                index,
                proxy,
                None,
                port,
                &on_port,
                catch_all,
                &mut warnings,
            ));
            continue;
        }
        if http.len() < on_port.len() {
            warnings.push(format!(
                "port {port} is HTTP for {} and not for {}: without a virtual IP for the latter one protocol per port, HTTP is kept",
                http[0].hostname,
                on_port
                    .iter()
                    .find(|s| !http.contains(s))
                    .map_or("", |s| s.hostname.as_str())
            ));
        }
        let chain = http_chain("0.0.0.0");
        let sniffed: Vec<&Service> = http.iter().copied().filter(|s| is_sniffed(s)).collect();
        if !sniffed.is_empty() && http.len() == on_port.len() {
            let tcp =
                l4_outbound_listener(index, proxy, None, port, &sniffed, catch_all, &mut warnings);
            listeners.push(sniffing_outbound_listener(tcp, chain));
            continue;
        }
        listeners.push(Listener {
            name,
            address: Some(socket_address("0.0.0.0", port)),
            bind_to_port: Some(BoolValue { value: false }),
            filter_chains: vec![chain],
            default_filter_chain: Some(FilterChain {
                name: "PassthroughFilterChain".to_owned(),
                filters: vec![tcp_proxy(catch_all, catch_all)],
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    (listeners, routes, warnings)
}

/// A captured sidecar's listener for a port whose protocol some service leaves undeclared, as
/// istiod sniffs it: `tcp`, the services' TCP listener (on the wildcard address or their virtual
/// IP), with `http` (the port's connection manager) for what the http_inspector calls HTTP;
/// anything else goes to those services as TCP, and a TLS connection is not HTTP to it either. A
/// client that sends nothing (a server-first protocol) gets the TCP chain
/// after the listener filters' 15 s.
fn sniffing_outbound_listener(tcp: Listener, mut http: FilterChain) -> Listener {
    let mut listener = tcp;
    http.name = format!("{}-http", listener.name);
    http.filter_chain_match = Some(FilterChainMatch {
        application_protocols: tcp::PLAINTEXT_HTTP_ALPNS.map(str::to_owned).to_vec(),
        ..Default::default()
    });
    // The services' TCP chains have no SNI (theirs is not a TLS port): no tls_inspector, so every
    // connection is plain text to the chains and the TCP chain takes what is not HTTP.
    listener.filter_chains.insert(0, http);
    listener.listener_filters.push(tcp::http_inspector());
    listener.continue_on_listener_filters_timeout = true;
    listener
}

/// A captured sidecar's listener for a TCP/TLS port (istiod's `buildListenerFromEntry`), on a
/// service's virtual IP (`vip`) or on the wildcard address: the chains of every service on it (the
/// first service keeps a match another one repeats); a chain that matches everything is the default
/// when there are others; without one, connections nothing matches pass through or are dropped per
/// the outbound policy. On the wildcard address, a service with address ranges takes only
/// connections to them.
fn l4_outbound_listener(
    index: &Index,
    proxy: &Proxy,
    vip: Option<IpAddr>,
    port: u32,
    services: &[&Service],
    catch_all: &str,
    warnings: &mut Vec<String>,
) -> Listener {
    let ctx = RouteContext {
        index,
        proxy,
        port,
        gateway: None,
    };
    let mut chains: Vec<tcp::ChainOpts> = Vec::new();
    for service in services {
        let protocol = service.port(port).map_or(Protocol::Tcp, |p| p.protocol);
        let mut incoming = ctx.sidecar_l4_chains(service, protocol, vip.is_some());
        let ranges: Vec<String> = service.address_ranges().map(str::to_owned).collect();
        if vip.is_none() && !ranges.is_empty() {
            for chain in incoming
                .iter_mut()
                .filter(|c| c.destination_cidrs.is_empty())
            {
                chain.destination_cidrs.clone_from(&ranges);
            }
        }
        tcp::merge_chains(
            &mut chains,
            incoming,
            &format!("outbound port {port} ({})", service.hostname),
            warnings,
        );
    }
    let tls_inspector = chains.iter().any(tcp::ChainOpts::needs_tls_inspector);
    let (match_all, specific): (Vec<_>, Vec<_>) =
        chains.into_iter().partition(tcp::ChainOpts::is_match_all);
    let mut filter_chains: Vec<FilterChain> = specific
        .into_iter()
        .map(tcp::ChainOpts::into_chain)
        .collect();
    let default_filter_chain = match match_all.into_iter().next() {
        Some(all) if filter_chains.is_empty() => {
            filter_chains.push(all.into_chain());
            None
        }
        Some(all) => Some(all.into_chain()),
        None => Some(FilterChain {
            name: "PassthroughFilterChain".to_owned(),
            filters: vec![tcp_proxy(catch_all, catch_all)],
            ..Default::default()
        }),
    };
    let ip = vip.map_or_else(|| "0.0.0.0".to_owned(), |ip| ip.to_string());
    Listener {
        name: format!("{ip}_{port}"),
        address: Some(socket_address(&ip, port)),
        bind_to_port: Some(BoolValue { value: false }),
        filter_chains,
        default_filter_chain,
        listener_filters: if tls_inspector {
            vec![tcp::tls_inspector()]
        } else {
            Vec::new()
        },
        // A client that never sends a ClientHello gets the chain of what is known (Envoy's 15 s
        // bound stays: istiod lifts it, Bosun keeps every wait bounded).
        continue_on_listener_filters_timeout: tls_inspector,
        ..Default::default()
    }
}

/// Route table `"PORT"`: one virtual host per service on the port, names without the port (the
/// port is the listener's), then the catch-all.
fn port_route_table<'a>(
    index: &Index,
    proxy: &Proxy,
    port: u32,
    services: &[&'a Service],
) -> RouteTable<'a> {
    let mut taken = BTreeSet::new();
    let mut hosts = Vec::new();
    for service in services {
        let domains = claim(&mut taken, service.aliases(&proxy.namespace));
        if domains.is_empty() {
            continue;
        }
        hosts.push(TableHost::Service {
            service,
            port,
            name: format!("{}:{port}", service.hostname),
            domains,
            trailing: Vec::new(),
        });
    }
    hosts.push(TableHost::Fixed(Box::new(
        match index.outbound_policy(proxy) {
            OutboundTrafficPolicyMode::RegistryOnly => catch_all("block_all", refuse_502()),
            OutboundTrafficPolicyMode::AllowAny => {
                catch_all("allow_any", Action::Route(forward_to(PASSTHROUGH_CLUSTER)))
            }
        },
    )));
    RouteTable {
        config: RouteConfiguration {
            name: port.to_string(),
            ignore_port_in_host_matching: true,
            validate_clusters: Some(BoolValue { value: false }),
            ..Default::default()
        },
        hosts,
    }
}

/// The filters that hand what arrives for workload port `target` to `inbound|target||`: an HTTP
/// connection manager with one route to it, or (`http` false) a TCP proxy.
pub fn inbound_filters(bind: &str, target: u32, http: bool) -> Vec<Filter> {
    let cluster = inbound_cluster(target);
    if !http {
        return vec![tcp_proxy(&cluster, &cluster)];
    }
    let routes = RouteConfiguration {
        name: cluster,
        virtual_hosts: vec![VirtualHost {
            name: format!("inbound|http|{target}"),
            domains: vec!["*".to_owned()],
            routes: vec![to_workload(target)],
            ..Default::default()
        }],
        ..Default::default()
    };
    vec![hcm(
        &format!("inbound_{bind}_{target}"),
        RouteSpecifier::RouteConfig(routes),
        Side::Server,
    )]
}

/// A `virtualInbound` filter chain for connections originally addressed to port `target`.
pub fn inbound_chain(target: u32, filters: Vec<Filter>) -> FilterChain {
    FilterChain {
        name: format!("0.0.0.0_{target}"),
        filter_chain_match: Some(FilterChainMatch {
            destination_port: Some(UInt32Value { value: target }),
            ..Default::default()
        }),
        filters,
        ..Default::default()
    }
}

/// A captured sidecar's inbound side: `virtualInbound` on `0.0.0.0:15006`, one filter chain per
/// workload port matched by original destination port, each to `inbound|PORT||`. A `sniffed` port
/// (protocol undeclared) has two, as istiod's: what the http_inspector calls HTTP to a connection
/// manager, the rest to a TCP proxy.
pub fn captured_inbound(ports: &[(u32, u32, bool)], sniffed: &BTreeSet<u32>) -> Listener {
    let mut chains = Vec::new();
    for (_, target, _) in ports {
        let mut http = inbound_chain(*target, inbound_filters("0.0.0.0", *target, true));
        if sniffed.contains(target) {
            if let Some(m) = http.filter_chain_match.as_mut() {
                m.application_protocols = tcp::PLAINTEXT_HTTP_ALPNS.map(str::to_owned).to_vec();
            }
            http.name.push_str("-http");
            chains.push(http);
            let mut tcp = inbound_chain(*target, inbound_filters("0.0.0.0", *target, false));
            tcp.name.push_str("-tcp");
            chains.push(tcp);
        } else {
            chains.push(http);
        }
    }
    let mut listener = virtual_inbound(chains);
    if !sniffed.is_empty() {
        listener.listener_filters.push(tcp::http_inspector());
        // A client that sends nothing (a server-first protocol) gets the TCP chain after 15 s.
        listener.continue_on_listener_filters_timeout = true;
    }
    listener
}

/// Makes an inbound listener take what its workload's PeerAuthentication says, per chain:
/// `mode_of(port)` for a chain matching that destination port (`None`: a chain for every port).
/// PERMISSIVE gives each plain-text chain a twin for TLS connections (chosen by the `tls_inspector`)
/// that terminates mutual TLS with the proxy's identity and asks the peer for its own; STRICT keeps
/// the twin only (a plain-text connection finds no chain and is closed); DISABLE keeps plain text.
/// The default chain (`mode_of(None)`) gets the same treatment.
pub fn apply_peer_modes(listener: &mut Listener, mode_of: impl Fn(Option<u32>) -> PeerMode) {
    let mut chains = Vec::with_capacity(listener.filter_chains.len() * 2);
    let mut any_tls = false;
    for chain in std::mem::take(&mut listener.filter_chains) {
        let plain = chain.transport_socket.is_none()
            && chain
                .filter_chain_match
                .as_ref()
                .is_none_or(|m| m.transport_protocol.is_empty());
        if !plain {
            chains.push(chain);
            continue;
        }
        let port = chain
            .filter_chain_match
            .as_ref()
            .and_then(|m| m.destination_port.as_ref())
            .map(|p| p.value);
        let mode = mode_of(port);
        if mode.takes_mutual_tls() {
            let mut twin = chain.clone();
            twin.filter_chain_match
                .get_or_insert_with(Default::default)
                .transport_protocol = "tls".to_owned();
            twin.transport_socket = Some(server_tls::mesh_inbound_socket());
            if !twin.name.is_empty() {
                twin.name.push_str("-mtls");
            }
            chains.push(twin);
            any_tls = true;
        }
        if mode.takes_plain_text() {
            chains.push(chain);
        }
    }
    // What arrives for no chain (a captured sidecar's passthrough to ports nothing serves) obeys
    // the workload's mode too: STRICT takes it over mutual TLS only (istiod's TLS-only passthrough
    // chain; plain text then matches nothing and is closed).
    let default_mode = mode_of(None);
    if default_mode.takes_mutual_tls()
        && let Some(default) = listener
            .default_filter_chain
            .take_if(|c| c.transport_socket.is_none())
    {
        let mut twin = default.clone();
        twin.filter_chain_match
            .get_or_insert_with(Default::default)
            .transport_protocol = "tls".to_owned();
        twin.transport_socket = Some(server_tls::mesh_inbound_socket());
        twin.name.push_str("-mtls");
        chains.push(twin);
        any_tls = true;
        if default_mode.takes_plain_text() {
            listener.default_filter_chain = Some(default);
        }
    }
    listener.filter_chains = chains;
    if any_tls
        && !listener
            .listener_filters
            .iter()
            .any(|f| f.name == tcp::TLS_INSPECTOR)
    {
        // Before the http_inspector, as Envoy needs them: that one leaves TLS alone.
        let at = listener
            .listener_filters
            .iter()
            .position(|f| f.name == tcp::HTTP_INSPECTOR)
            .unwrap_or(listener.listener_filters.len());
        listener.listener_filters.insert(at, tcp::tls_inspector());
    }
}

/// Without traffic capture, a sidecar's inbound HTTP arrives at one listener whatever the workload
/// port: there `portLevelMtls` is kept per virtual host. In each HTTP chain (mutual TLS or plain
/// text), a virtual host leading to a workload port (`inbound|PORT||`) whose mode does not take the
/// chain's transport answers 403 instead of reaching the workload. A chain that is not HTTP is left
/// as the workload's mode made it, with a warning.
pub fn refuse_by_port_mode(
    listener: &mut Listener,
    mode_of: impl Fn(u32) -> PeerMode,
    warnings: &mut Vec<String>,
) {
    let mut not_http = false;
    for chain in &mut listener.filter_chains {
        let mutual_tls = chain.transport_socket.is_some();
        for filter in &mut chain.filters {
            let Some(FilterConfig::TypedConfig(any)) = &mut filter.config_type else {
                continue;
            };
            let Ok(mut hcm) = xds_api::any::unpack::<HttpConnectionManager>(any) else {
                not_http = true;
                continue;
            };
            let Some(RouteSpecifier::RouteConfig(routes)) = &mut hcm.route_specifier else {
                continue;
            };
            let mut refused = false;
            for vhost in &mut routes.virtual_hosts {
                let mode = vhost.routes.iter().find_map(|r| match &r.action {
                    Some(Action::Route(a)) => match &a.cluster_specifier {
                        Some(ClusterSpecifier::Cluster(c)) => inbound_cluster_port(c).map(&mode_of),
                        _ => None,
                    },
                    _ => None,
                });
                let refusal = match mode {
                    Some(m) if mutual_tls && !m.takes_mutual_tls() => {
                        "this port takes plain text only (PeerAuthentication DISABLE)"
                    }
                    Some(m) if !mutual_tls && !m.takes_plain_text() => {
                        "this port takes mutual TLS only (PeerAuthentication STRICT)"
                    }
                    _ => continue,
                };
                vhost.routes = vec![Route {
                    name: "refused_by_peer_authentication".to_owned(),
                    r#match: Some(every_path()),
                    action: Some(refuse(403, Some(refusal))),
                    ..Default::default()
                }];
                refused = true;
            }
            if refused {
                *any = xds_api::any::pack(&hcm);
            }
        }
    }
    if not_http {
        warnings.push(format!(
            "portLevelMtls without traffic capture applies to HTTP only: {}'s other chains keep the workload's mode",
            listener.name
        ));
    }
}

/// `virtualInbound` on `0.0.0.0:15006` with `filter_chains` (by original destination port).
pub fn virtual_inbound(filter_chains: Vec<FilterChain>) -> Listener {
    Listener {
        name: VIRTUAL_INBOUND.to_owned(),
        address: Some(socket_address("0.0.0.0", INBOUND_PORT)),
        listener_filters: vec![original_dst_filter()],
        filter_chains,
        // Anything else captured inbound goes where it was addressed, from 127.0.0.6 (not captured
        // again: from any other source the proxy's own connection would come back to 15006).
        default_filter_chain: Some(FilterChain {
            name: "virtualInbound".to_owned(),
            filters: vec![tcp_proxy(
                crate::generate::cluster::INBOUND_PASSTHROUGH_CLUSTER,
                crate::generate::cluster::INBOUND_PASSTHROUGH_CLUSTER,
            )],
            ..Default::default()
        }),
        ..Default::default()
    }
}
