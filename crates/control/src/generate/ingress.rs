//! Sidecar `ingress` listeners, as istiod builds them: for a workload whose Sidecar resource has
//! `ingress`, the inbound side comes from those listeners instead of from its services' ports.
//! Each ingress port `P` gets the cluster `inbound|P||`, whose one endpoint is the
//! `defaultEndpoint` (`127.0.0.1:PORT` the loopback, `0.0.0.0:PORT` the workload's own address,
//! `unix://PATH` a socket; none: the connection's original destination, captured sidecars only).
//! A port whose `captureMode` says it is not captured (`NONE`, or `DEFAULT` on a sidecar without
//! capture) gets a listener of its own bound to `bind:P` (`bind` defaults to the proxy's address);
//! captured ones are chains of `virtualInbound`. Without capture, HTTP ingress ports are also
//! served on `IP:15006`, where other proxies send HTTP (by the port of the Host, so a service port
//! whose target port is `P` goes to `inbound|P||` too). Ingress `tls` with `mode: SIMPLE` and
//! certificate files, or `MUTUAL` with `caCertificates` too, terminates TLS on the port's listener
//! or chain (istiod does so behind `ENABLE_TLS_ON_SIDECAR_INGRESS`); other TLS modes leave the port
//! out.

use mesh_api::types::destination_rule::ConnectionPoolSettings;
use mesh_api::types::sidecar::{CaptureMode, IstioIngressListener};
use xds_api::pb::envoy::config::cluster::v3::Cluster;
use xds_api::pb::envoy::config::core::v3::TransportSocket;
use xds_api::pb::envoy::config::listener::v3::FilterChain;

use crate::generate::ProxyResources;
use crate::generate::cluster::{self, INBOUND_PASSTHROUGH_SOURCE, socket_address};
use crate::generate::{listener, server_tls};
use crate::index::Index;
use crate::model::{INBOUND_PORT, OUTBOUND_PORT, Protocol};
use crate::node::{Interception, Proxy};

const UNIX_PREFIX: &str = "unix://";

/// Ports the proxy itself listens on (admin, capture, health, metrics): istiod never binds an
/// ingress listener there.
const PROXY_PORTS: [u32; 6] = [15000, OUTBOUND_PORT, INBOUND_PORT, 15020, 15021, 15090];

/// Where an ingress port's traffic goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `ip:port`.
    Socket(String, u32),
    /// A Unix domain socket path.
    Unix(String),
    /// The connection's original destination (captured sidecars).
    OriginalDst,
}

/// One usable `ingress` entry of the proxy's Sidecar.
#[derive(Debug, Clone, PartialEq)]
pub struct IngressPort {
    pub port: u32,
    pub protocol: Protocol,
    pub target: Target,
    /// `Some(address)`: a listener of its own bound there; `None`: captured (a `virtualInbound`
    /// chain, or without capture only the HTTP route on `IP:15006`).
    pub bind: Option<String>,
    /// Terminates TLS (`tls` with `mode: SIMPLE`).
    pub tls: Option<TransportSocket>,
    /// The port's `connectionPool`, else the Sidecar's `inboundConnectionPool` (istiod's
    /// `InboundConnectionPoolForPort`).
    pub pool: Option<ConnectionPoolSettings>,
}

impl IngressPort {
    fn http(&self) -> bool {
        self.protocol.is_http()
    }
}

/// The ingress ports of `proxy`'s Sidecar, or `None` when it has no `ingress` (then the inbound side
/// comes from its services). Entries that cannot be served are left out, each with a warning.
pub fn ports(index: &Index, proxy: &Proxy) -> Option<(Vec<IngressPort>, Vec<String>)> {
    let sidecar = index.sidecar_for(proxy)?;
    if sidecar.spec.ingress.is_empty() {
        return None;
    }
    let mut warnings = Vec::new();
    let mut out: Vec<IngressPort> = Vec::new();
    for entry in &sidecar.spec.ingress {
        let what = format!(
            "Sidecar {}/{} ingress port {}",
            sidecar.namespace,
            sidecar.name,
            entry.port.as_ref().and_then(|p| p.number).unwrap_or(0)
        );
        let pool = entry
            .connection_pool
            .as_ref()
            .or(sidecar.spec.inbound_connection_pool.as_ref());
        let entry_port = port(entry, proxy).map(|p| IngressPort {
            pool: pool.cloned(),
            ..p
        });
        match entry_port.and_then(|p| not_an_outbound_listener(index, proxy, p)) {
            Ok(p) if out.iter().any(|o| o.port == p.port) => {
                warnings.push(format!("{what}: the port is already taken, skipped"));
            }
            Ok(p) => out.push(p),
            Err(why) => warnings.push(format!("{what}: {why}, skipped")),
        }
    }
    out.sort_by_key(|p| p.port);
    Some((out, warnings))
}

fn port(entry: &IstioIngressListener, proxy: &Proxy) -> Result<IngressPort, String> {
    let declared = entry.port.as_ref().ok_or("no port")?;
    let number = declared.number.filter(|n| *n > 0).ok_or("no port number")?;
    // istiod reads the protocol only (not the port name); undeclared is HTTP here (no sniffing).
    let protocol = Protocol::parse(declared.protocol.as_deref(), None);
    // Terminated TLS: the protocol is what runs inside it (HTTPS is HTTP, TLS is TCP).
    let (protocol, tls) = match &entry.tls {
        None => (protocol, None),
        Some(settings) => {
            let socket = server_tls::sidecar_ingress_tls(settings)?;
            let inner = match protocol {
                Protocol::Https => Protocol::Http,
                Protocol::Tls => Protocol::Tcp,
                other => other,
            };
            (inner, Some(socket))
        }
    };
    let bound = match entry.capture_mode.unwrap_or_default() {
        CaptureMode::Default => proxy.interception == Interception::None,
        CaptureMode::None => true,
        CaptureMode::Iptables => false,
    };
    let bind = bound.then(|| {
        entry
            .bind
            .clone()
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| proxy.ip.clone())
    });
    if bind.is_some() && PROXY_PORTS.contains(&number) {
        return Err("the proxy listens on that port itself".to_owned());
    }
    let target = target(entry.default_endpoint.as_deref().unwrap_or_default(), proxy)?;
    if target == Target::OriginalDst && proxy.interception == Interception::None {
        // Without capture the original destination is the sidecar's own listener.
        return Err("a defaultEndpoint is needed without traffic capture".to_owned());
    }
    Ok(IngressPort {
        port: number,
        protocol,
        target,
        bind,
        tls,
        pool: None,
    })
}

/// A captured sidecar's outbound listeners are `0.0.0.0_PORT` for every service port it sees: an
/// ingress listener bound to `0.0.0.0` on such a port would take the same name (and replace it).
fn not_an_outbound_listener(
    index: &Index,
    proxy: &Proxy,
    p: IngressPort,
) -> Result<IngressPort, String> {
    let clashes = proxy.interception == Interception::Redirect
        && p.bind.as_deref() == Some("0.0.0.0")
        && crate::generate::visible_services(index, proxy)
            .iter()
            .any(|s| s.port(p.port).is_some());
    if clashes {
        return Err(format!(
            "its listener 0.0.0.0_{} would replace the outbound listener of that service port; bind the workload's address instead",
            p.port
        ));
    }
    Ok(p)
}

/// `defaultEndpoint` as istiod reads it: `0.0.0.0` / `[::]` the proxy's own address (when of that
/// family), `127.0.0.1` / `[::1]` the loopback, `unix://` a socket, empty the original destination.
fn target(endpoint: &str, proxy: &Proxy) -> Result<Target, String> {
    if endpoint.is_empty() {
        return Ok(Target::OriginalDst);
    }
    if let Some(path) = endpoint.strip_prefix(UNIX_PREFIX) {
        return Ok(Target::Unix(path.to_owned()));
    }
    let bad = || format!("defaultEndpoint {endpoint:?} is not HOST:PORT");
    let (host, port) = endpoint.rsplit_once(':').ok_or_else(bad)?;
    let port: u32 = port
        .parse()
        .ok()
        .filter(|p| (1..=65535).contains(p))
        .ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let proxy_v4 = proxy
        .ip
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_ipv4());
    let address = match host {
        "0.0.0.0" if proxy_v4 => proxy.ip.as_str(),
        "0.0.0.0" => "127.0.0.1",
        "::" if !proxy_v4 => proxy.ip.as_str(),
        "::" => "::1",
        "127.0.0.1" | "::1" => host,
        "" => return Ok(Target::OriginalDst),
        _ => {
            return Err(format!(
                "defaultEndpoint host {host:?} is not one of 127.0.0.1, 0.0.0.0, [::1], [::]"
            ));
        }
    };
    Ok(Target::Socket(address.to_owned(), port))
}

/// The inbound side of a sidecar with ingress ports: their clusters, bound listeners, and
/// `virtualInbound` (captured) or the `IP:15006` routes (without capture).
pub fn resources(index: &Index, proxy: &Proxy, ports: &[IngressPort]) -> ProxyResources {
    let mut out = ProxyResources::default();
    let captured = proxy.interception == Interception::Redirect;
    for p in ports {
        out.clusters.push(ingress_cluster(p, captured));
        if let Some(bind) = &p.bind {
            let chain = FilterChain {
                filters: listener::inbound_filters(bind, p.port, p.http()),
                transport_socket: p.tls.clone(),
                ..Default::default()
            };
            let name = format!("{bind}_{}", p.port);
            out.listeners
                .push(listener::listener(&name, bind, p.port, chain));
        }
    }
    if captured {
        let chains = ports
            .iter()
            .filter(|p| p.bind.is_none())
            .map(|p| FilterChain {
                transport_socket: p.tls.clone(),
                ..listener::inbound_chain(
                    p.port,
                    listener::inbound_filters("0.0.0.0", p.port, p.http()),
                )
            })
            .collect();
        out.listeners.push(listener::virtual_inbound(chains));
    } else {
        let routed = http_routes(index, proxy, ports);
        if !routed.is_empty() {
            out.listeners
                .push(listener::sidecar_inbound(proxy, &routed));
        }
    }
    out
}

/// Without capture, HTTP reaches the sidecar at `IP:15006` routed by the Host's port: every HTTP
/// ingress port, and every service port of the workload whose target port is one, goes to that
/// ingress port's cluster. `(Host port, ingress port, h2)`.
fn http_routes(index: &Index, proxy: &Proxy, ports: &[IngressPort]) -> Vec<(u32, u32, bool)> {
    let mut out: Vec<(u32, u32, bool)> = Vec::new();
    let services = listener::inbound_ports(index, proxy);
    for p in ports.iter().filter(|p| p.http()) {
        let h2 = p.protocol.is_h2();
        let aliases = services
            .iter()
            .filter(|(_, target, _)| *target == p.port)
            .map(|(service_port, _, _)| *service_port);
        for host_port in std::iter::once(p.port).chain(aliases) {
            if !out.iter().any(|o| o.0 == host_port) {
                out.push((host_port, p.port, h2));
            }
        }
    }
    out.sort_unstable();
    out
}

fn ingress_cluster(p: &IngressPort, captured: bool) -> Cluster {
    let h2 = p.protocol.is_h2();
    let pool = p.pool.as_ref();
    match &p.target {
        Target::Socket(ip, port) => {
            // Captured, connections to the workload's address leave from 127.0.0.6, or the capture
            // rules would take them back to 15006; the loopback is not captured (istiod's choice).
            let loopback = ip
                .parse::<std::net::IpAddr>()
                .is_ok_and(|a| a.is_loopback());
            let source = (captured && !loopback).then_some(INBOUND_PASSTHROUGH_SOURCE);
            cluster::inbound_at(p.port, socket_address(ip, *port), h2, source, pool)
        }
        Target::Unix(path) => {
            cluster::inbound_at(p.port, cluster::pipe_address(path), h2, None, pool)
        }
        Target::OriginalDst => cluster::inbound_original_dst(p.port, h2, pool),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn default_endpoints_as_istiod_reads_them() {
        let v4 = Proxy::parse_id("sidecar~10.0.0.2~a.default~default.svc.cluster.local").unwrap();
        let v6 = Proxy::parse_id("sidecar~fd00::2~a.default~default.svc.cluster.local").unwrap();
        let socket = |ip: &str, port| Ok(Target::Socket(ip.to_owned(), port));
        assert_eq!(target("127.0.0.1:8080", &v4), socket("127.0.0.1", 8080));
        assert_eq!(target("0.0.0.0:8080", &v4), socket("10.0.0.2", 8080));
        assert_eq!(target("0.0.0.0:8080", &v6), socket("127.0.0.1", 8080));
        assert_eq!(target("[::]:8080", &v6), socket("fd00::2", 8080));
        assert_eq!(target("[::]:8080", &v4), socket("::1", 8080));
        assert_eq!(target("[::1]:8080", &v4), socket("::1", 8080));
        assert_eq!(
            target("unix:///var/run/app.sock", &v4),
            Ok(Target::Unix("/var/run/app.sock".to_owned()))
        );
        assert_eq!(target("", &v4), Ok(Target::OriginalDst));
        assert_eq!(target(":8080", &v4), Ok(Target::OriginalDst));
        for bad in [
            "127.0.0.1",
            "127.0.0.1:0",
            "127.0.0.1:x",
            "127.0.0.1:70000",
            "10.0.0.9:80",
        ] {
            assert!(target(bad, &v4).is_err(), "{bad}");
        }
    }
}
