//! Listeners: the sockets the proxy accepts on, the filter chain a connection gets, and what the chain
//! does (HTTP connection manager or TCP proxy). Built from Envoy's `Listener`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use xds_api::pb::envoy::config::listener::v3 as listener;
use xds_api::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use xds_api::pb::envoy::extensions::filters::network::tcp_proxy::v3 as tcp;
use xds_api::pb::google::protobuf::Any;

use crate::access_log::{AccessLog, access_logs};
use crate::cluster::socket_address;
use crate::error::{At, Errors, ModelError};
use crate::filter::HttpFilter;
use crate::route::RouteConfig;
use crate::tls::{DEFAULT_HANDSHAKE_TIMEOUT, DownstreamTls, Secrets};
use crate::{duration, unpack};

#[derive(Debug)]
pub struct Listener {
    pub name: String,
    pub host: String,
    pub port: u16,
    /// Hand connections to the listener that owns their original destination (capture on 15001).
    pub use_original_dst: bool,
    /// The `envoy.filters.listener.original_dst` listener filter: take the destination a connection
    /// had before an iptables REDIRECT (`SO_ORIGINAL_DST`) as its local address, for choosing the
    /// filter chain, for `use_original_dst` and for ORIGINAL_DST clusters.
    pub original_dst: bool,
    pub bind_to_port: bool,
    /// `transparent`: the socket is `IP_TRANSPARENT`, to accept connections TPROXY sends it (for any
    /// destination address). Needs CAP_NET_ADMIN.
    pub transparent: bool,
    pub filter_chains: Vec<FilterChain>,
    pub default_filter_chain: Option<FilterChain>,
    /// The `envoy.filters.listener.tls_inspector` listener filter: read the ClientHello (SNI, ALPN)
    /// before choosing a filter chain.
    pub tls_inspector: bool,
    /// The `envoy.filters.listener.http_inspector` listener filter: on a plaintext connection, tell
    /// HTTP/1.x (`http/1.1`, `http/1.0`) and HTTP/2 with prior knowledge (`h2c`) from the first bytes,
    /// as the application protocol filter chains match (Istio's protocol sniffing).
    pub http_inspector: bool,
    /// `listener_filters_timeout` (Envoy's default 15 s; `None`: 0, no limit): how long the listener
    /// filters may wait for the first bytes.
    pub listener_filters_timeout: Option<Duration>,
    /// `continue_on_listener_filters_timeout`: on that timeout, choose a chain with what is known
    /// instead of closing the connection.
    pub continue_on_listener_filters_timeout: bool,
    /// `traffic_direction: INBOUND` (a sidecar's inbound side): what `/drain_listeners?inboundonly`
    /// drains.
    pub inbound: bool,
}

#[derive(Debug)]
pub struct FilterChain {
    pub name: String,
    pub matcher: FilterChainMatch,
    pub network: NetworkFilter,
    /// TLS termination (`transport_socket` with a `DownstreamTlsContext`); `None`: the bytes go to
    /// the network filter as they came (plaintext, or TLS passed through).
    pub tls: Option<DownstreamTls>,
    /// `transport_socket_connect_timeout`, or Bosun's bound on the handshake.
    pub handshake_timeout: Duration,
}

/// What is known about a connection when its filter chain is chosen.
#[derive(Debug, Clone, Default)]
pub struct ConnectionInfo<'a> {
    pub destination_port: u16,
    /// The local address (or the original destination, restored by the original_dst filter).
    pub destination_ip: Option<IpAddr>,
    /// SNI from the ClientHello (tls_inspector).
    pub server_name: Option<&'a str>,
    /// `tls` when the tls_inspector saw a ClientHello, else `raw_buffer`.
    pub transport_protocol: &'a str,
    /// ALPN protocols the client offered.
    pub application_protocols: &'a [String],
    /// The peer's address (no PROXY protocol here, so also the direct source).
    pub source: Option<SocketAddr>,
}

/// The criteria Envoy chooses a filter chain by (only those Bosun evaluates).
#[derive(Debug, Default, Clone)]
pub struct FilterChainMatch {
    pub destination_port: Option<u16>,
    /// `prefix_ranges`: the destination address is in one of these (empty: any address).
    pub prefix_ranges: Vec<CidrRange>,
    pub server_names: Vec<String>,
    pub transport_protocol: Option<String>,
    pub application_protocols: Vec<String>,
    /// `direct_source_prefix_ranges`, `source_prefix_ranges` (the same peer address here).
    pub direct_source_prefix_ranges: Vec<CidrRange>,
    pub source_prefix_ranges: Vec<CidrRange>,
    /// `source_type`: any, same IP or loopback, or external.
    pub source_type: SourceType,
    pub source_ports: Vec<u16>,
}

/// `FilterChainMatch.ConnectionSourceType`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum SourceType {
    #[default]
    Any,
    /// The peer is a loopback address or this connection's own local address.
    SameIpOrLoopback,
    External,
}

/// An address prefix (`10.0.0.0/8`, `::/0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CidrRange {
    pub address: IpAddr,
    pub len: u8,
}

impl CidrRange {
    fn from_proto(
        p: &xds_api::pb::envoy::config::core::v3::CidrRange,
        at: &At,
    ) -> Result<CidrRange, ModelError> {
        let address: IpAddr = p.address_prefix.parse().map_err(|_| {
            at.key("address_prefix")
                .error(format!("{:?} is not an IP address", p.address_prefix))
        })?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let len = p.prefix_len.as_ref().map_or(0, |l| l.value);
        if len > max {
            return Err(at.key("prefix_len").error(format!(
                "prefix_len {len} is longer than the address ({max} bits)"
            )));
        }
        Ok(CidrRange {
            address,
            len: u8::try_from(len).unwrap_or(0),
        })
    }

    /// Whether `ip` is inside the range (an IPv4 address never matches an IPv6 range, as Envoy).
    pub fn contains(&self, ip: IpAddr) -> bool {
        fn under(a: u128, b: u128, len: u8, bits: u8) -> bool {
            let shift = u32::from(bits - len);
            len == 0 || a.checked_shr(shift) == b.checked_shr(shift)
        }
        match (self.address, ip) {
            (IpAddr::V4(r), IpAddr::V4(a)) => {
                under(u32::from(r).into(), u32::from(a).into(), self.len, 32)
            }
            (IpAddr::V6(r), IpAddr::V6(a)) => under(u128::from(r), u128::from(a), self.len, 128),
            _ => false,
        }
    }
}

#[derive(Debug)]
pub enum NetworkFilter {
    Http(Arc<HttpConnectionManager>),
    Tcp(TcpProxy),
}

#[derive(Debug)]
pub enum RouteSource {
    Inline(Arc<RouteConfig>),
    /// A route configuration delivered by RDS, by name.
    Rds(String),
}

#[derive(Debug)]
pub struct HttpConnectionManager {
    pub stat_prefix: String,
    pub routes: RouteSource,
    pub http_filters: Vec<HttpFilter>,
    /// The `server` response header (Envoy's default: `envoy`), made once; `None` when the name
    /// cannot be a header value (no header then).
    pub server_header: Option<http::HeaderValue>,
    pub stream_idle_timeout: Option<Duration>,
    pub request_timeout: Option<Duration>,
    pub generate_request_id: bool,
    /// Where and how each request is logged (`access_log`).
    pub access_log: Vec<AccessLog>,
    /// `use_remote_address`: this proxy is the edge; it appends the peer to `x-forwarded-for`, sets
    /// `x-envoy-external-address`, overwrites `x-forwarded-proto` and regenerates `x-request-id`.
    pub use_remote_address: bool,
    /// `preserve_external_request_id`: keep an edge request's `x-request-id`.
    pub preserve_external_request_id: bool,
    /// `http_protocol_options.accept_http_10`: without it HTTP/1.0 requests get 426.
    pub accept_http_10: bool,
    /// `http_protocol_options.default_host_for_http_10` (with `accept_http_10`): the `Host` an
    /// HTTP/1.0 request without one is given, before routing.
    pub default_host_for_http_10: Option<http::HeaderValue>,
    /// `upgrade_configs`: the upgrade types (`websocket`, `CONNECT`, …) and whether each is enabled
    /// by default; routes may override them.
    pub upgrades: Upgrades,
    /// `http2_protocol_options.allow_connect`: HTTP/2 clients may send extended CONNECT (RFC 8441),
    /// an upgrade such as WebSocket over an HTTP/2 stream.
    pub h2_extended_connect: bool,
    /// `normalize_path`: a request's path is normalized (RFC 3986, as Envoy does it) before it is
    /// routed and sent on; istiod sets it on every connection manager.
    pub normalize_path: bool,
    /// `merge_slashes`: runs of slashes in a path become one.
    pub merge_slashes: bool,
    /// `forward_client_cert_details`: what becomes of `x-forwarded-client-cert`.
    pub forward_client_cert: ForwardClientCert,
    /// `set_current_client_cert_details`: what an element this proxy adds tells of the client's
    /// certificate (besides `By` and `Hash`, always there).
    pub client_cert_details: ClientCertDetails,
}

/// Envoy's `forward_client_cert_details`: what the proxy does with `x-forwarded-client-cert`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum ForwardClientCert {
    /// Removed (Envoy's default: a client cannot claim an identity).
    #[default]
    Sanitize,
    /// Kept as received from a client that presented a certificate; removed otherwise.
    ForwardOnly,
    /// This hop's element appended when the client presented a certificate (istiod's inbound
    /// setting); removed otherwise.
    AppendForward,
    /// Replaced by this hop's element when the client presented a certificate (istiod's gateway
    /// setting); removed otherwise.
    SanitizeSet,
    /// Always kept as received.
    AlwaysForwardOnly,
}

impl ForwardClientCert {
    /// Whether this hop writes an element of its own.
    pub fn sets_element(self) -> bool {
        matches!(
            self,
            ForwardClientCert::AppendForward | ForwardClientCert::SanitizeSet
        )
    }
}

/// Envoy's `set_current_client_cert_details`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ClientCertDetails {
    pub subject: bool,
    pub cert: bool,
    pub chain: bool,
    pub dns: bool,
    pub uri: bool,
}

/// Upgrade types with their enabled flag, matched case-insensitively as Envoy does.
#[derive(Debug, Default, Clone)]
pub struct Upgrades(Vec<(String, bool)>);

impl Upgrades {
    pub fn new(types: impl IntoIterator<Item = (String, bool)>) -> Upgrades {
        Upgrades(types.into_iter().collect())
    }

    /// `Some(enabled)` when `upgrade_type` is listed.
    pub fn get(&self, upgrade_type: &str) -> Option<bool> {
        self.0
            .iter()
            .find(|(t, _)| t.eq_ignore_ascii_case(upgrade_type))
            .map(|(_, on)| *on)
    }
}

#[derive(Debug)]
pub struct TcpProxy {
    pub stat_prefix: String,
    /// Clusters with weights (one cluster: weight 1).
    pub clusters: Vec<(String, u32)>,
    pub idle_timeout: Option<Duration>,
    /// `hash_policy: [{source_ip: {}}]`: consistent-hash clusters pick by the client's IP.
    pub hash_source_ip: bool,
    /// Where and how each connection is logged when it ends (`access_log`).
    pub access_log: Vec<AccessLog>,
}

impl Listener {
    /// A listener whose TLS contexts name no secrets (see [`Listener::from_proto_with`]).
    pub fn from_proto(p: &listener::Listener, at: &At) -> Result<Listener, Vec<ModelError>> {
        Listener::from_proto_with(p, at, &Secrets::default())
    }

    /// A listener, its TLS contexts' named secrets looked up in `secrets`.
    pub fn from_proto_with(
        p: &listener::Listener,
        at: &At,
        secrets: &Secrets,
    ) -> Result<Listener, Vec<ModelError>> {
        let mut errors = Errors::default();
        let mut tls_inspector = false;
        let mut http_inspector = false;
        let mut original_dst = false;
        let (host, port) = errors
            .take(socket_address(p.address.as_ref(), &at.key("address")))
            .unwrap_or_default();
        for (i, lf) in p.listener_filters.iter().enumerate() {
            const KNOWN: &[&str] = &[
                "envoy.filters.listener.tls_inspector",
                "envoy.filters.listener.original_dst",
                "envoy.filters.listener.http_inspector",
                "istio.filters.listener.proxy_protocol",
            ];
            let type_url = match &lf.config_type {
                Some(listener::listener_filter::ConfigType::TypedConfig(any)) => {
                    any.type_url.as_str()
                }
                _ => "",
            };
            if lf.name == "envoy.filters.listener.tls_inspector"
                || type_url.ends_with(".tls_inspector.v3.TlsInspector")
            {
                tls_inspector = true;
            } else if lf.name == "envoy.filters.listener.http_inspector"
                || type_url.ends_with(".http_inspector.v3.HttpInspector")
            {
                http_inspector = true;
            } else if lf.name == "envoy.filters.listener.original_dst"
                || type_url.ends_with(".original_dst.v3.OriginalDst")
            {
                original_dst = true;
            } else if !KNOWN.contains(&lf.name.as_str()) {
                errors.push(
                    at.key("listener_filters")
                        .index(i)
                        .unsupported(format!("the listener filter {:?}", lf.name)),
                );
            }
        }
        if p.filter_chain_matcher.is_some() {
            errors.push(
                at.key("filter_chain_matcher")
                    .unsupported("filter_chain_matcher"),
            );
        }
        let mut filter_chains = Vec::new();
        for (i, fc) in p.filter_chains.iter().enumerate() {
            match FilterChain::from_proto(fc, &at.key("filter_chains").index(i), secrets) {
                Ok(fc) => filter_chains.push(fc),
                Err(e) => errors.0.extend(e),
            }
        }
        let default_filter_chain = p.default_filter_chain.as_ref().and_then(|fc| {
            FilterChain::from_proto(fc, &at.key("default_filter_chain"), secrets)
                .map_err(|e| errors.0.extend(e))
                .ok()
        });
        if filter_chains.is_empty() && default_filter_chain.is_none() {
            errors.push(
                at.key("filter_chains")
                    .error("a listener needs at least one filter chain"),
            );
        }
        let use_original_dst = p.use_original_dst.as_ref().is_some_and(|b| b.value);
        let l = Listener {
            name: p.name.clone(),
            host,
            port,
            use_original_dst,
            // Envoy adds the original_dst listener filter itself when `use_original_dst` is set
            // (istiod's virtualOutbound relies on it and lists no listener filter).
            original_dst: original_dst || use_original_dst,
            bind_to_port: p.bind_to_port.as_ref().is_none_or(|b| b.value),
            transparent: p.transparent.as_ref().is_some_and(|b| b.value),
            filter_chains,
            default_filter_chain,
            tls_inspector,
            http_inspector,
            listener_filters_timeout: match &p.listener_filters_timeout {
                None => Some(Duration::from_secs(15)),
                Some(d) => Some(duration(d)).filter(|d| !d.is_zero()),
            },
            continue_on_listener_filters_timeout: p.continue_on_listener_filters_timeout,
            inbound: p.traffic_direction
                == xds_api::pb::envoy::config::core::v3::TrafficDirection::Inbound as i32,
        };
        errors.into_result(l)
    }

    /// The filter chain for a plaintext connection without inspection (no SNI, no ALPN).
    pub fn filter_chain(
        &self,
        destination_port: u16,
        server_name: Option<&str>,
    ) -> Option<&FilterChain> {
        self.select(&ConnectionInfo {
            destination_port,
            destination_ip: None,
            server_name,
            transport_protocol: "raw_buffer",
            application_protocols: &[],
            source: None,
        })
    }

    /// The filter chain for a connection, as Envoy chooses it: at each criterion in turn (destination
    /// port, destination IP, server name, transport protocol, application protocols, direct source
    /// IP, source type, source IP, source port) keep the chains that match it most specifically,
    /// falling back to those that leave it unset; no backtracking. Nothing left: the default filter
    /// chain.
    pub fn select(&self, conn: &ConnectionInfo<'_>) -> Option<&FilterChain> {
        let all: Vec<&FilterChain> = self.filter_chains.iter().collect();
        let by_port = narrow(
            all,
            &|fc| fc.matcher.destination_port == Some(conn.destination_port),
            &|fc| fc.matcher.destination_port.is_none(),
        );
        let by_ip = by_destination_ip(by_port, conn.destination_ip);
        let by_name = by_server_name(by_ip, conn.server_name);
        let by_transport = narrow(
            by_name,
            &|fc| fc.matcher.transport_protocol.as_deref() == Some(conn.transport_protocol),
            &|fc| fc.matcher.transport_protocol.is_none(),
        );
        let by_alpn = narrow(
            by_transport,
            &|fc| {
                fc.matcher
                    .application_protocols
                    .iter()
                    .any(|p| conn.application_protocols.contains(p))
            },
            &|fc| fc.matcher.application_protocols.is_empty(),
        );
        let source_ip = conn.source.map(|s| s.ip());
        let by_direct = by_longest_range(by_alpn, source_ip, |fc| {
            &fc.matcher.direct_source_prefix_ranges
        });
        let local = source_ip.is_some_and(|ip| ip.is_loopback() || Some(ip) == conn.destination_ip);
        let by_type = narrow(
            by_direct,
            &|fc| match fc.matcher.source_type {
                SourceType::Any => false,
                SourceType::SameIpOrLoopback => local,
                SourceType::External => conn.source.is_some() && !local,
            },
            &|fc| fc.matcher.source_type == SourceType::Any,
        );
        let by_source = by_longest_range(by_type, source_ip, |fc| &fc.matcher.source_prefix_ranges);
        let by_source_port = narrow(
            by_source,
            &|fc| {
                conn.source
                    .is_some_and(|s| fc.matcher.source_ports.contains(&s.port()))
            },
            &|fc| fc.matcher.source_ports.is_empty(),
        );
        by_source_port
            .first()
            .copied()
            .or(self.default_filter_chain.as_ref())
    }
}

/// One stage of the choice: the chains that match specifically, else those that leave it unset.
fn narrow<'a>(
    set: Vec<&'a FilterChain>,
    specific: &dyn Fn(&FilterChain) -> bool,
    unset: &dyn Fn(&FilterChain) -> bool,
) -> Vec<&'a FilterChain> {
    let exact: Vec<_> = set.iter().copied().filter(|fc| specific(fc)).collect();
    if exact.is_empty() {
        set.into_iter().filter(|fc| unset(fc)).collect()
    } else {
        exact
    }
}

/// Envoy's destination-IP stage: the chains with the longest prefix range that holds the address,
/// else the chains without prefix ranges.
fn by_destination_ip(set: Vec<&FilterChain>, ip: Option<IpAddr>) -> Vec<&FilterChain> {
    by_longest_range(set, ip, |fc| &fc.matcher.prefix_ranges)
}

/// An address stage (destination, direct source, source): the chains whose `ranges` hold `ip`
/// with the longest prefix, else the chains without such ranges.
fn by_longest_range(
    set: Vec<&FilterChain>,
    ip: Option<IpAddr>,
    ranges: impl Fn(&FilterChain) -> &Vec<CidrRange>,
) -> Vec<&FilterChain> {
    let longest = |fc: &FilterChain| {
        let ip = ip?;
        ranges(fc)
            .iter()
            .filter(|r| r.contains(ip))
            .map(|r| r.len)
            .max()
    };
    match set.iter().filter_map(|fc| longest(fc)).max() {
        Some(best) => set
            .into_iter()
            .filter(|fc| longest(fc) == Some(best))
            .collect(),
        None => set.into_iter().filter(|fc| ranges(fc).is_empty()).collect(),
    }
}

/// Envoy's server-name stage: an exact name, else the longest `*.suffix` wildcard that covers it,
/// else the chains without server names.
fn by_server_name<'a>(set: Vec<&'a FilterChain>, name: Option<&str>) -> Vec<&'a FilterChain> {
    if let Some(name) = name {
        let exact: Vec<_> = set
            .iter()
            .copied()
            .filter(|fc| {
                fc.matcher
                    .server_names
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(name))
            })
            .collect();
        if !exact.is_empty() {
            return exact;
        }
        let lower = name.to_ascii_lowercase();
        let wildcard_len = |fc: &FilterChain| {
            fc.matcher
                .server_names
                .iter()
                .filter_map(|n| n.strip_prefix('*'))
                .filter(|suffix| {
                    name.len() > suffix.len() && lower.ends_with(&suffix.to_ascii_lowercase())
                })
                .map(str::len)
                .max()
        };
        if let Some(best) = set.iter().filter_map(|fc| wildcard_len(fc)).max() {
            return set
                .into_iter()
                .filter(|fc| wildcard_len(fc) == Some(best))
                .collect();
        }
    }
    set.into_iter()
        .filter(|fc| fc.matcher.server_names.is_empty())
        .collect()
}

impl FilterChain {
    fn from_proto(
        p: &listener::FilterChain,
        at: &At,
        secrets: &Secrets,
    ) -> Result<FilterChain, Vec<ModelError>> {
        let mut errors = Errors::default();
        let m = p.filter_chain_match.clone().unwrap_or_default();
        let mat = at.key("filter_chain_match");
        let mut ranges = |field: &str, list: &[xds_api::pb::envoy::config::core::v3::CidrRange]| {
            list.iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    errors.take(CidrRange::from_proto(r, &mat.key(field).index(i)))
                })
                .collect::<Vec<CidrRange>>()
        };
        let prefix_ranges = ranges("prefix_ranges", &m.prefix_ranges);
        let direct_source_prefix_ranges = ranges(
            "direct_source_prefix_ranges",
            &m.direct_source_prefix_ranges,
        );
        let source_prefix_ranges = ranges("source_prefix_ranges", &m.source_prefix_ranges);
        use listener::filter_chain_match::ConnectionSourceType as S;
        let source_type = match S::try_from(m.source_type) {
            Ok(S::Any) => SourceType::Any,
            Ok(S::SameIpOrLoopback) => SourceType::SameIpOrLoopback,
            Ok(S::External) => SourceType::External,
            Err(_) => {
                errors.push(
                    mat.key("source_type")
                        .error(format!("unknown source_type {}", m.source_type)),
                );
                SourceType::Any
            }
        };
        let source_ports: Vec<u16> = m
            .source_ports
            .iter()
            .filter_map(|p| match u16::try_from(*p) {
                Ok(p) => Some(p),
                Err(_) => {
                    errors.push(
                        mat.key("source_ports")
                            .error(format!("port {p} is out of range")),
                    );
                    None
                }
            })
            .collect();
        let tls = match &p.transport_socket {
            Some(ts) => errors
                .take(crate::tls::downstream(
                    ts,
                    &at.key("transport_socket"),
                    secrets,
                ))
                .flatten(),
            None => None,
        };
        if p.transport_socket.is_some() && m.transport_protocol == "raw_buffer" && tls.is_some() {
            errors.push(
                mat.key("transport_protocol").error(
                    "a chain that terminates TLS cannot match transport_protocol raw_buffer",
                ),
            );
        }
        let matcher = FilterChainMatch {
            destination_port: m
                .destination_port
                .as_ref()
                .and_then(|p| u16::try_from(p.value).ok()),
            prefix_ranges,
            server_names: m.server_names.clone(),
            transport_protocol: Some(m.transport_protocol.clone()).filter(|t| !t.is_empty()),
            application_protocols: m.application_protocols.clone(),
            direct_source_prefix_ranges,
            source_prefix_ranges,
            source_type,
            source_ports,
        };
        // The last network filter is the terminal one; others before it must be no-ops here.
        let mut network = None;
        for (i, f) in p.filters.iter().enumerate() {
            let fat = at.key("filters").index(i);
            let any = match &f.config_type {
                Some(listener::filter::ConfigType::TypedConfig(any)) => Some(any),
                Some(listener::filter::ConfigType::ConfigDiscovery(_)) => {
                    errors.push(
                        fat.key("config_discovery")
                            .unsupported("filter config discovery"),
                    );
                    continue;
                }
                None => None,
            };
            let type_url = any.map(|a| a.type_url.as_str()).unwrap_or_default();
            if type_url.ends_with(".http_connection_manager.v3.HttpConnectionManager") {
                network = errors
                    .take(http_connection_manager(any, &fat.key("typed_config")))
                    .map(|h| NetworkFilter::Http(Arc::new(h)));
            } else if type_url.ends_with(".tcp_proxy.v3.TcpProxy") {
                network = errors
                    .take(tcp_proxy(any, &fat.key("typed_config")))
                    .map(NetworkFilter::Tcp);
            } else if f.name.starts_with("istio.") {
                // Istio's metadata exchange and stats: no effect on forwarding.
            } else {
                errors
                    .push(fat.unsupported(format!("the network filter {:?} ({type_url})", f.name)));
            }
        }
        match network {
            Some(network) if errors.0.is_empty() => Ok(FilterChain {
                name: p.name.clone(),
                matcher,
                network,
                tls,
                handshake_timeout: p
                    .transport_socket_connect_timeout
                    .as_ref()
                    .map(duration)
                    .filter(|d| !d.is_zero())
                    .unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT),
            }),
            None if errors.0.is_empty() => {
                Err(vec![at.key("filters").error(
                    "a filter chain needs an http_connection_manager or tcp_proxy filter",
                )])
            }
            _ => Err(errors.0),
        }
    }
}

fn http_connection_manager(
    any: Option<&Any>,
    at: &At,
) -> Result<HttpConnectionManager, ModelError> {
    let any = any.ok_or_else(|| at.error("the HTTP connection manager needs a typed_config"))?;
    let p: hcm::HttpConnectionManager = unpack(any, at)?;
    use hcm::http_connection_manager::RouteSpecifier as R;
    let routes = match &p.route_specifier {
        Some(R::RouteConfig(rc)) => RouteSource::Inline(Arc::new(
            RouteConfig::from_proto(rc, &at.key("route_config")).map_err(|mut e| e.remove(0))?,
        )),
        Some(R::Rds(rds)) => RouteSource::Rds(rds.route_config_name.clone()),
        Some(R::ScopedRoutes(_)) => {
            return Err(at.key("scoped_routes").unsupported("scoped_routes"));
        }
        None => return Err(at.error("the HTTP connection manager needs route_config or rds")),
    };
    let mut http_filters = Vec::new();
    for (i, f) in p.http_filters.iter().enumerate() {
        let fat = at.key("http_filters").index(i);
        if f.disabled {
            continue;
        }
        let any = match &f.config_type {
            Some(hcm::http_filter::ConfigType::TypedConfig(any)) => Some(any),
            Some(hcm::http_filter::ConfigType::ConfigDiscovery(_)) => {
                return Err(fat
                    .key("config_discovery")
                    .unsupported("filter config discovery"));
            }
            None => None,
        };
        http_filters.push(HttpFilter::from_proto(&f.name, any, f.is_optional, &fat)?);
    }
    if !matches!(http_filters.last(), Some(HttpFilter::Router)) {
        return Err(at
            .key("http_filters")
            .error("the last HTTP filter must be the router (envoy.filters.http.router)"));
    }
    if p.codec_type == 3 {
        return Err(at.key("codec_type").unsupported("HTTP/3"));
    }
    refuse_unimplemented_hcm_fields(&p, at)?;
    let default_host_for_http_10 = match &p.http_protocol_options {
        // As Envoy: no-op unless HTTP/1.0 is accepted.
        Some(o) if o.accept_http_10 && !o.default_host_for_http_10.is_empty() => {
            Some(http_host(&o.default_host_for_http_10).ok_or_else(|| {
                at.key("http_protocol_options")
                    .key("default_host_for_http_10")
                    .error(format!(
                        "{:?} is not a host a request could carry (an authority: host or host:port)",
                        o.default_host_for_http_10
                    ))
            })?)
        }
        _ => None,
    };
    let mut upgrades = Vec::new();
    for (i, u) in p.upgrade_configs.iter().enumerate() {
        let uat = at.key("upgrade_configs").index(i);
        if u.upgrade_type.is_empty() {
            return Err(uat
                .key("upgrade_type")
                .error("an upgrade config needs an upgrade_type"));
        }
        if !u.filters.is_empty() {
            return Err(uat
                .key("filters")
                .unsupported("a filter chain of its own for an upgrade type"));
        }
        upgrades.push((
            u.upgrade_type.clone(),
            u.enabled.as_ref().is_none_or(|b| b.value),
        ));
    }
    Ok(HttpConnectionManager {
        stat_prefix: p.stat_prefix.clone(),
        routes,
        http_filters,
        server_header: if p.server_name.is_empty() {
            Some(http::HeaderValue::from_static("envoy"))
        } else {
            http::HeaderValue::from_str(&p.server_name).ok()
        },
        // Envoy's default stream idle timeout is 5 minutes; 0 disables it.
        stream_idle_timeout: match &p.stream_idle_timeout {
            None => Some(Duration::from_secs(300)),
            Some(d) => Some(duration(d)).filter(|d| !d.is_zero()),
        },
        request_timeout: p
            .request_timeout
            .as_ref()
            .map(duration)
            .filter(|d| !d.is_zero()),
        generate_request_id: p.generate_request_id.as_ref().is_none_or(|b| b.value),
        access_log: access_logs(&p.access_log, &at.key("access_log"))?,
        use_remote_address: p.use_remote_address.as_ref().is_some_and(|b| b.value),
        preserve_external_request_id: p.preserve_external_request_id,
        accept_http_10: p
            .http_protocol_options
            .as_ref()
            .is_some_and(|o| o.accept_http_10),
        default_host_for_http_10,
        upgrades: Upgrades::new(upgrades),
        h2_extended_connect: p
            .http2_protocol_options
            .as_ref()
            .is_some_and(|o| o.allow_connect),
        normalize_path: p.normalize_path.as_ref().is_some_and(|b| b.value),
        merge_slashes: p.merge_slashes,
        forward_client_cert: forward_client_cert(&p, at)?,
        client_cert_details: p
            .set_current_client_cert_details
            .as_ref()
            .map(|d| ClientCertDetails {
                subject: d.subject.as_ref().is_some_and(|b| b.value),
                cert: d.cert,
                chain: d.chain,
                dns: d.dns,
                uri: d.uri,
            })
            .unwrap_or_default(),
    })
}

fn forward_client_cert(
    p: &hcm::HttpConnectionManager,
    at: &At,
) -> Result<ForwardClientCert, ModelError> {
    use hcm::http_connection_manager::ForwardClientCertDetails as F;
    Ok(match F::try_from(p.forward_client_cert_details) {
        Ok(F::Sanitize) => ForwardClientCert::Sanitize,
        Ok(F::ForwardOnly) => ForwardClientCert::ForwardOnly,
        Ok(F::AppendForward) => ForwardClientCert::AppendForward,
        Ok(F::SanitizeSet) => ForwardClientCert::SanitizeSet,
        Ok(F::AlwaysForwardOnly) => ForwardClientCert::AlwaysForwardOnly,
        Err(_) => {
            return Err(at.key("forward_client_cert_details").error(format!(
                "unknown forward_client_cert_details {}",
                p.forward_client_cert_details
            )));
        }
    })
}

/// The connection manager's fields that would change how requests are handled and that bosun proxy
/// does not implement, refused by field path when set to anything but their default. (Tracing and
/// the access log options are accepted: they change what is reported, not the traffic.)
/// `host` as a `Host` header value, if it is an authority (`host` or `host:port`).
fn http_host(host: &str) -> Option<http::HeaderValue> {
    host.parse::<http::uri::Authority>().ok()?;
    http::HeaderValue::from_str(host).ok()
}

fn refuse_unimplemented_hcm_fields(
    p: &hcm::HttpConnectionManager,
    at: &At,
) -> Result<(), ModelError> {
    use hcm::http_connection_manager as h;
    let on = |b: Option<&xds_api::pb::google::protobuf::BoolValue>| b.is_some_and(|b| b.value);
    let refused: [(&str, bool, &str); 33] = [
        (
            "add_user_agent",
            on(p.add_user_agent.as_ref()),
            "adding user agent headers",
        ),
        (
            "common_http_protocol_options",
            p.common_http_protocol_options
                .as_ref()
                .is_some_and(|o| *o != Default::default()),
            "downstream connection options (idle timeout, header limits, …)",
        ),
        (
            "http1_safe_max_connection_duration",
            p.http1_safe_max_connection_duration,
            "http1_safe_max_connection_duration",
        ),
        (
            "http2_protocol_options",
            // `allow_connect` is implemented; any other setting is not.
            p.http2_protocol_options.as_ref().is_some_and(|o| {
                let mut others = o.clone();
                others.allow_connect = false;
                others != Default::default()
            }),
            "downstream HTTP/2 settings other than allow_connect",
        ),
        (
            "http3_protocol_options",
            p.http3_protocol_options.is_some(),
            "HTTP/3",
        ),
        (
            "server_header_transformation",
            p.server_header_transformation != h::ServerHeaderTransformation::Overwrite as i32,
            "server header transformations other than OVERWRITE",
        ),
        (
            "scheme_header_transformation",
            p.scheme_header_transformation.is_some(),
            "scheme header transformations",
        ),
        (
            "max_request_headers_kb",
            p.max_request_headers_kb.is_some(),
            "max_request_headers_kb",
        ),
        (
            "stream_flush_timeout",
            p.stream_flush_timeout.is_some(),
            "stream_flush_timeout",
        ),
        (
            "request_headers_timeout",
            p.request_headers_timeout.is_some(),
            "request_headers_timeout",
        ),
        ("drain_timeout", p.drain_timeout.is_some(), "drain_timeout"),
        (
            "delayed_close_timeout",
            p.delayed_close_timeout.is_some(),
            "delayed_close_timeout",
        ),
        (
            "xff_num_trusted_hops",
            p.xff_num_trusted_hops != 0,
            "trusted X-Forwarded-For hops",
        ),
        (
            "original_ip_detection_extensions",
            !p.original_ip_detection_extensions.is_empty(),
            "original IP detection extensions",
        ),
        (
            "early_header_mutation_extensions",
            !p.early_header_mutation_extensions.is_empty(),
            "early header mutations",
        ),
        (
            "internal_address_config",
            p.internal_address_config.is_some(),
            "internal_address_config",
        ),
        ("skip_xff_append", p.skip_xff_append, "skip_xff_append"),
        ("via", !p.via.is_empty(), "the Via header"),
        (
            "always_set_request_id_in_response",
            p.always_set_request_id_in_response,
            "always_set_request_id_in_response",
        ),
        (
            "proxy_100_continue",
            p.proxy_100_continue,
            "proxy_100_continue",
        ),
        (
            "path_with_escaped_slashes_action",
            p.path_with_escaped_slashes_action
                > h::PathWithEscapedSlashesAction::KeepUnchanged as i32,
            "actions on escaped slashes in paths",
        ),
        (
            "request_id_extension",
            p.request_id_extension.as_ref().is_some_and(|e| {
                e.typed_config
                    .as_ref()
                    .is_none_or(|c| !c.type_url.ends_with(".UuidRequestIdConfig"))
            }),
            "request id extensions other than the UUID one",
        ),
        (
            "local_reply_config",
            p.local_reply_config.is_some(),
            "local reply mappers",
        ),
        (
            "strip_matching_host_port",
            p.strip_matching_host_port,
            "strip_matching_host_port",
        ),
        (
            "stream_error_on_invalid_http_message",
            on(p.stream_error_on_invalid_http_message.as_ref()),
            "stream_error_on_invalid_http_message",
        ),
        (
            "path_normalization_options",
            p.path_normalization_options.is_some(),
            "path normalization",
        ),
        (
            "strip_trailing_host_dot",
            p.strip_trailing_host_dot,
            "strip_trailing_host_dot",
        ),
        (
            "proxy_status_config",
            p.proxy_status_config.is_some(),
            "the Proxy-Status header",
        ),
        (
            "typed_header_validation_config",
            p.typed_header_validation_config.is_some(),
            "header validators",
        ),
        (
            "append_x_forwarded_port",
            p.append_x_forwarded_port,
            "x-forwarded-port",
        ),
        (
            "strip_port_mode",
            p.strip_port_mode.is_some(),
            "stripping ports from Host",
        ),
        (
            "forward_proto_config",
            p.forward_proto_config.is_some(),
            "forward_proto_config",
        ),
        (
            "append_local_overload",
            p.append_local_overload,
            "x-envoy-local-overloaded",
        ),
    ];
    at.refuse_set(&refused)?;
    // HTTP/1: `accept_http_10` and `default_host_for_http_10` are honoured; `send_fully_qualified_url`
    // is for upstreams and the parser choice changes nothing seen from outside.
    let Some(h1) = &p.http_protocol_options else {
        return Ok(());
    };
    let refused: [(&str, bool, &str); 7] = [
        (
            "allow_absolute_url",
            h1.allow_absolute_url.as_ref().is_some_and(|b| !b.value),
            "refusing absolute-form request targets",
        ),
        (
            "header_key_format",
            h1.header_key_format.is_some(),
            "header key formats",
        ),
        ("enable_trailers", h1.enable_trailers, "HTTP/1.1 trailers"),
        (
            "allow_chunked_length",
            h1.allow_chunked_length,
            "allow_chunked_length",
        ),
        (
            "override_stream_error_on_invalid_http_message",
            h1.override_stream_error_on_invalid_http_message.is_some(),
            "override_stream_error_on_invalid_http_message",
        ),
        (
            "allow_custom_methods",
            h1.allow_custom_methods,
            "custom methods",
        ),
        (
            "ignore_http_11_upgrade",
            !h1.ignore_http_11_upgrade.is_empty(),
            "ignoring HTTP/1.1 upgrades",
        ),
    ];
    at.key("http_protocol_options").refuse_set(&refused)
}

fn tcp_proxy(any: Option<&Any>, at: &At) -> Result<TcpProxy, ModelError> {
    use tcp::tcp_proxy::ClusterSpecifier as C;
    let any = any.ok_or_else(|| at.error("the TCP proxy needs a typed_config"))?;
    let p: tcp::TcpProxy = unpack(any, at)?;
    let clusters = match &p.cluster_specifier {
        Some(C::Cluster(c)) => vec![(c.clone(), 1)],
        Some(C::WeightedClusters(w)) => w
            .clusters
            .iter()
            .map(|c| (c.name.clone(), c.weight))
            .collect(),
        None => {
            return Err(at
                .key("cluster")
                .error("the TCP proxy needs cluster or weighted_clusters"));
        }
    };
    if clusters.iter().all(|(_, w)| *w == 0) {
        return Err(at.key("weighted_clusters").error("the weights add up to 0"));
    }
    if let Some(C::WeightedClusters(w)) = &p.cluster_specifier
        && let Some(i) = w.clusters.iter().position(|c| c.metadata_match.is_some())
    {
        return Err(at
            .key("weighted_clusters")
            .key("clusters")
            .index(i)
            .key("metadata_match")
            .unsupported("subset load balancing (metadata_match)"));
    }
    // What would change how connections are made or ended; the access log options only affect logs.
    let refused: [(&str, bool, &str); 11] = [
        ("on_demand", p.on_demand.is_some(), "on-demand clusters"),
        (
            "metadata_match",
            p.metadata_match.is_some(),
            "subset load balancing (metadata_match)",
        ),
        (
            "downstream_idle_timeout",
            p.downstream_idle_timeout.is_some(),
            "separate downstream idle timeouts (use idle_timeout)",
        ),
        (
            "upstream_idle_timeout",
            p.upstream_idle_timeout.is_some(),
            "separate upstream idle timeouts (use idle_timeout)",
        ),
        (
            "max_connect_attempts",
            p.max_connect_attempts.as_ref().is_some_and(|m| m.value > 1),
            "more than one connect attempt",
        ),
        (
            "backoff_options",
            p.backoff_options.is_some(),
            "connect retry backoff",
        ),
        (
            "tunneling_config",
            p.tunneling_config.is_some(),
            "tunneling TCP over HTTP (CONNECT or POST)",
        ),
        (
            "max_downstream_connection_duration",
            p.max_downstream_connection_duration.is_some(),
            "a maximum connection duration",
        ),
        (
            "proxy_protocol_tlvs",
            !p.proxy_protocol_tlvs.is_empty(),
            "PROXY protocol TLVs",
        ),
        (
            "upstream_connect_mode",
            p.upstream_connect_mode != 0,
            "upstream connect modes other than IMMEDIATE",
        ),
        (
            "max_early_data_bytes",
            p.max_early_data_bytes.is_some(),
            "early data before the upstream connects",
        ),
    ];
    at.refuse_set(&refused)?;
    let mut hash_source_ip = false;
    for (i, h) in p.hash_policy.iter().enumerate() {
        use xds_api::pb::envoy::r#type::v3::hash_policy::PolicySpecifier as H;
        match &h.policy_specifier {
            Some(H::SourceIp(_)) => hash_source_ip = true,
            Some(H::FilterState(_)) => {
                return Err(at
                    .key("hash_policy")
                    .index(i)
                    .key("filter_state")
                    .unsupported("hashing on filter state"));
            }
            None => {}
        }
    }
    Ok(TcpProxy {
        access_log: access_logs(&p.access_log, &at.key("access_log"))?,
        hash_source_ip,
        stat_prefix: p.stat_prefix.clone(),
        clusters,
        // Envoy's default TCP idle timeout is one hour; 0 disables it.
        idle_timeout: match &p.idle_timeout {
            None => Some(Duration::from_secs(3600)),
            Some(d) => Some(duration(d)).filter(|d| !d.is_zero()),
        },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use xds_api::bootstrap::message_from_yaml;

    use super::*;

    const TCP: &str = r#"{name: envoy.filters.network.tcp_proxy, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: s, cluster: c}}"#;

    fn build(yaml: &str) -> Result<Listener, Vec<ModelError>> {
        let p: listener::Listener = message_from_yaml(yaml, None).expect("valid Listener");
        Listener::from_proto(&p, &At::root("listener"))
    }

    fn chain_for(l: &Listener, ip: &str, port: u16) -> Option<String> {
        l.select(&ConnectionInfo {
            destination_port: port,
            destination_ip: Some(ip.parse().unwrap()),
            transport_protocol: "raw_buffer",
            ..ConnectionInfo::default()
        })
        .map(|fc| fc.name.clone())
    }

    #[test]
    fn istio_virtual_outbound_parses_with_the_original_dst_filter() {
        let l = build(&format!(
            r#"
name: virtualOutbound
address: {{socket_address: {{address: 0.0.0.0, port_value: 15001}}}}
use_original_dst: true
listener_filters:
- name: envoy.filters.listener.original_dst
  typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst}}
filter_chains:
- name: blackhole
  filter_chain_match: {{destination_port: 15001}}
  filters: [{TCP}]
- name: catchall
  filters: [{TCP}]
"#
        ))
        .unwrap();
        assert!(l.use_original_dst && l.original_dst && l.bind_to_port);
        assert!(!l.tls_inspector);
        assert_eq!(
            chain_for(&l, "10.0.0.1", 15001).as_deref(),
            Some("blackhole")
        );
        assert_eq!(chain_for(&l, "10.0.0.1", 9090).as_deref(), Some("catchall"));
    }

    #[test]
    fn use_original_dst_implies_the_original_dst_filter() {
        let l = build(&format!(
            r#"
name: virtualOutbound
address: {{socket_address: {{address: 0.0.0.0, port_value: 15001}}}}
use_original_dst: true
filter_chains: [{{filters: [{TCP}]}}]
"#
        ))
        .unwrap();
        assert!(l.use_original_dst && l.original_dst);
    }

    #[test]
    fn the_filter_is_known_by_its_type_alone_and_bind_to_port_false_is_kept() {
        let l = build(&format!(
            r#"
name: "0.0.0.0_8080"
address: {{socket_address: {{address: 0.0.0.0, port_value: 8080}}}}
bind_to_port: false
listener_filters:
- name: odst
  typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst}}
filter_chains: [{{filters: [{TCP}]}}]
"#
        ))
        .unwrap();
        assert!(l.original_dst);
        assert!(!l.bind_to_port && !l.use_original_dst);
    }

    #[test]
    fn prefix_ranges_choose_the_longest_match_then_the_chains_without() {
        let l = build(&format!(
            r#"
name: inbound
address: {{socket_address: {{address: 0.0.0.0, port_value: 15006}}}}
filter_chains:
- name: wide
  filter_chain_match: {{prefix_ranges: [{{address_prefix: 10.0.0.0, prefix_len: 8}}]}}
  filters: [{TCP}]
- name: narrow
  filter_chain_match: {{prefix_ranges: [{{address_prefix: 10.1.0.0, prefix_len: 16}}, {{address_prefix: "2001:db8::", prefix_len: 32}}]}}
  filters: [{TCP}]
- name: narrow-port
  filter_chain_match: {{destination_port: 80, prefix_ranges: [{{address_prefix: 10.0.0.0, prefix_len: 8}}]}}
  filters: [{TCP}]
- name: any
  filters: [{TCP}]
"#
        ))
        .unwrap();
        assert_eq!(chain_for(&l, "10.1.2.3", 9).as_deref(), Some("narrow"));
        assert_eq!(chain_for(&l, "10.2.2.3", 9).as_deref(), Some("wide"));
        assert_eq!(chain_for(&l, "192.168.0.1", 9).as_deref(), Some("any"));
        assert_eq!(chain_for(&l, "2001:db8::7", 9).as_deref(), Some("narrow"));
        assert_eq!(chain_for(&l, "2001:db9::7", 9).as_deref(), Some("any"));
        // The port stage comes first: a port match beats a longer prefix elsewhere.
        assert_eq!(
            chain_for(&l, "10.1.2.3", 80).as_deref(),
            Some("narrow-port")
        );
        // Unknown address (a caller without one): only the chains without ranges.
        let plain = l.filter_chain(9, None).map(|fc| fc.name.clone());
        assert_eq!(plain.as_deref(), Some("any"));
    }

    #[test]
    fn cidr_ranges_contain_what_they_should() {
        let r = |a: &str, len: u8| CidrRange {
            address: a.parse().unwrap(),
            len,
        };
        let ip = |a: &str| a.parse::<IpAddr>().unwrap();
        assert!(r("0.0.0.0", 0).contains(ip("203.0.113.9")));
        assert!(!r("0.0.0.0", 0).contains(ip("::1")));
        assert!(r("10.123.0.0", 24).contains(ip("10.123.0.255")));
        assert!(!r("10.123.0.0", 24).contains(ip("10.123.1.0")));
        assert!(r("10.123.0.20", 32).contains(ip("10.123.0.20")));
        assert!(r("::", 0).contains(ip("2001:db8::1")));
        assert!(r("2001:db8::1", 128).contains(ip("2001:db8::1")));
    }

    #[test]
    fn connection_manager_fields_that_change_requests_are_refused_by_path() {
        let hcm = |extra: &str| {
            build(&format!(
                r#"
name: l
address: {{socket_address: {{address: 127.0.0.1, port_value: 8080}}}}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: s
      {extra}
      route_config: {{virtual_hosts: [{{name: v, domains: ["*"], routes: [{{match: {{prefix: /}}, direct_response: {{status: 200}}}}]}}]}}
      http_filters: [{{name: envoy.filters.http.router, typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}}}]
"#
            ))
        };
        // Defaults, and what only changes what is reported, are accepted.
        for ok in [
            "tracing: {}",
            "http2_protocol_options: {}",
            "forward_client_cert_details: SANITIZE",
            "forward_client_cert_details: APPEND_FORWARD",
            "set_current_client_cert_details: {subject: true, uri: true, dns: true, cert: true}",
            "path_with_escaped_slashes_action: KEEP_UNCHANGED",
            "normalize_path: false",
            "normalize_path: true",
            "merge_slashes: true",
            "http_protocol_options: {accept_http_10: true, allow_absolute_url: true}",
            "http_protocol_options: {accept_http_10: true, default_host_for_http_10: a.b:80}",
            // A no-op without accept_http_10, as in Envoy.
            "http_protocol_options: {default_host_for_http_10: a.b}",
        ] {
            assert!(hcm(ok).is_ok(), "{ok}: {:?}", hcm(ok).err());
        }
        for (set, field) in [
            ("via: proxy", "via"),
            ("xff_num_trusted_hops: 1", "xff_num_trusted_hops"),
            ("local_reply_config: {}", "local_reply_config"),
            (
                "http2_protocol_options: {max_concurrent_streams: 10}",
                "http2_protocol_options",
            ),
            (
                "http_protocol_options: {enable_trailers: true}",
                "http_protocol_options.enable_trailers",
            ),
            (
                "http_protocol_options: {accept_http_10: true, default_host_for_http_10: \"a b\"}",
                "http_protocol_options.default_host_for_http_10",
            ),
        ] {
            let e = hcm(set).expect_err(set);
            assert!(
                e[0].field.ends_with(&format!("typed_config.{field}")),
                "{set}: {}",
                e[0]
            );
        }
    }

    #[test]
    fn upgrade_configs_are_kept_and_their_own_filter_chains_refused() {
        let hcm = |upgrades: &str| {
            format!(
                r#"
name: l
address: {{socket_address: {{address: 127.0.0.1, port_value: 8080}}}}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: s
      upgrade_configs: {upgrades}
      route_config: {{virtual_hosts: [{{name: v, domains: ["*"], routes: [{{match: {{prefix: /}}, direct_response: {{status: 200}}}}]}}]}}
      http_filters: [{{name: envoy.filters.http.router, typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}}}]
"#
            )
        };
        let l = build(&hcm(
            "[{upgrade_type: websocket}, {upgrade_type: CONNECT, enabled: false}]",
        ))
        .expect("builds");
        let NetworkFilter::Http(m) = &l.filter_chains[0].network else {
            panic!("an HTTP connection manager");
        };
        assert_eq!(m.upgrades.get("WebSocket"), Some(true));
        assert_eq!(m.upgrades.get("connect"), Some(false));
        assert_eq!(m.upgrades.get("h2c"), None);
        let e = build(&hcm(
            "[{upgrade_type: websocket, filters: [{name: envoy.filters.http.router}]}]",
        ))
        .expect_err("refused");
        assert!(
            e[0].field
                .ends_with("typed_config.upgrade_configs[0].filters"),
            "{e:?}"
        );
    }

    #[test]
    fn bad_ranges_and_source_matches_are_refused_by_path() {
        let errors = build(&format!(
            r#"
name: l
address: {{socket_address: {{address: 0.0.0.0, port_value: 1}}}}
filter_chains:
- filter_chain_match: {{prefix_ranges: [{{address_prefix: not-an-ip, prefix_len: 8}}, {{address_prefix: 10.0.0.0, prefix_len: 33}}]}}
  filters: [{TCP}]
- filter_chain_match: {{source_prefix_ranges: [{{address_prefix: 10.0.0.0, prefix_len: 40}}]}}
  filters: [{TCP}]
"#
        ))
        .unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            text[0].contains("filter_chains[0].filter_chain_match.prefix_ranges[0].address_prefix")
                && text[0].contains("not an IP address"),
            "{text:?}"
        );
        assert!(
            text[1].contains("prefix_ranges[1].prefix_len") && text[1].contains("33"),
            "{text:?}"
        );
        assert!(
            text[2]
                .contains("filter_chains[1].filter_chain_match.source_prefix_ranges[0].prefix_len"),
            "{text:?}"
        );
    }

    /// The source stages come after ALPN, in Envoy's order: direct source IP, source type, source
    /// IP (longest prefix), source port; each falls back to the chains that leave it unset.
    #[test]
    fn source_stages_choose_as_envoy() {
        let l = build(&format!(
            r#"
name: l
address: {{socket_address: {{address: 0.0.0.0, port_value: 1}}}}
filter_chains:
- name: two
  filter_chain_match: {{source_prefix_ranges: [{{address_prefix: 127.0.0.2, prefix_len: 32}}]}}
  filters: [{TCP}]
- name: loopback-wide
  filter_chain_match: {{source_prefix_ranges: [{{address_prefix: 127.0.0.0, prefix_len: 8}}]}}
  filters: [{TCP}]
- name: port
  filter_chain_match: {{source_prefix_ranges: [{{address_prefix: 127.0.0.0, prefix_len: 8}}], source_ports: [4000]}}
  filters: [{TCP}]
- name: external
  filter_chain_match: {{source_type: EXTERNAL}}
  filters: [{TCP}]
- name: any
  filters: [{TCP}]
"#
        ))
        .unwrap();
        let pick = |source: &str| {
            l.select(&ConnectionInfo {
                destination_port: 1,
                destination_ip: Some("10.0.0.1".parse().unwrap()),
                server_name: None,
                transport_protocol: "raw_buffer",
                application_protocols: &[],
                source: Some(source.parse().unwrap()),
            })
            .map(|fc| fc.name.clone())
        };
        assert_eq!(pick("127.0.0.2:5000").as_deref(), Some("two"));
        assert_eq!(pick("127.0.0.3:5000").as_deref(), Some("loopback-wide"));
        assert_eq!(pick("127.0.0.3:4000").as_deref(), Some("port"));
        // The source type stage comes before the source IP one: an external peer goes to its chain.
        assert_eq!(pick("192.0.2.7:5000").as_deref(), Some("external"));
        // A peer at the connection's own address is local, not external.
        assert_eq!(pick("10.0.0.1:5000").as_deref(), Some("any"));
    }

    #[test]
    fn tcp_proxy_fields_that_change_connections_are_refused_by_path() {
        let with = |field: &str| {
            let tcp = TCP.replace("cluster: c}", &format!("cluster: c, {field}}}"));
            build(&format!(
                "{{name: l, address: {{socket_address: {{address: 127.0.0.1, port_value: 1}}}}, filter_chains: [{{filters: [{tcp}]}}]}}"
            ))
        };
        assert!(with("max_connect_attempts: 1").is_ok());
        for (field, path) in [
            ("max_connect_attempts: 3", "max_connect_attempts"),
            ("tunneling_config: {hostname: x}", "tunneling_config"),
            (
                "max_downstream_connection_duration: 1s",
                "max_downstream_connection_duration",
            ),
        ] {
            let e = with(field).expect_err(field);
            assert!(e[0].field.ends_with(path), "{field}: {}", e[0]);
        }
    }

    #[test]
    fn tcp_proxy_hash_policy_source_ip_or_refused() {
        let with = |policy: &str| {
            format!(
                r#"{{name: l, address: {{socket_address: {{address: 127.0.0.1, port_value: 1}}}}, filter_chains: [{{filters: [{{name: envoy.filters.network.tcp_proxy, typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: s, cluster: c, hash_policy: [{policy}]}}}}]}}]}}"#
            )
        };
        let l = build(&with("{source_ip: {}}")).unwrap();
        let NetworkFilter::Tcp(t) = &l.filter_chains[0].network else {
            panic!("a TCP proxy")
        };
        assert!(t.hash_source_ip);
        let e = build(&with("{filter_state: {key: k}}")).unwrap_err();
        assert!(
            e[0].to_string().contains("hash_policy[0].filter_state"),
            "{e:?}"
        );
    }
}
