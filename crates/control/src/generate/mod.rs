//! One proxy's xDS resources from the push index: clusters (CDS), their endpoints (EDS), listeners
//! (LDS) and route tables (RDS).

pub mod cluster;
pub mod listener;
pub mod route;

use xds_api::pb::envoy::config::cluster::v3::Cluster;
use xds_api::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use xds_api::pb::envoy::config::listener::v3::Listener;
use xds_api::pb::envoy::config::route::v3::RouteConfiguration;
use xds_server::Snapshot;

use crate::index::Index;
use crate::model::Service;
use crate::node::{Interception, Proxy, ProxyType};
pub use cluster::InboundAddressing;

/// Everything one proxy is sent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxyResources {
    pub clusters: Vec<Cluster>,
    pub endpoints: Vec<ClusterLoadAssignment>,
    pub listeners: Vec<Listener>,
    pub routes: Vec<RouteConfiguration>,
    /// What could not be generated for this proxy, for the log.
    pub warnings: Vec<String>,
}

impl ProxyResources {
    pub fn to_snapshot(&self, version: &str) -> Snapshot {
        let mut s = Snapshot::new(version);
        for t in [
            xds_api::type_url::CLUSTER,
            xds_api::type_url::CLUSTER_LOAD_ASSIGNMENT,
            xds_api::type_url::LISTENER,
            xds_api::type_url::ROUTE_CONFIGURATION,
        ] {
            s.ensure_type(t);
        }
        for c in &self.clusters {
            s.insert_message(c.name.clone(), c);
        }
        for e in &self.endpoints {
            s.insert_message(e.cluster_name.clone(), e);
        }
        for l in &self.listeners {
            s.insert_message(l.name.clone(), l);
        }
        for r in &self.routes {
            s.insert_message(r.name.clone(), r);
        }
        s
    }

    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.name == name)
    }

    pub fn listener(&self, name: &str) -> Option<&Listener> {
        self.listeners.iter().find(|l| l.name == name)
    }

    pub fn route(&self, name: &str) -> Option<&RouteConfiguration> {
        self.routes.iter().find(|r| r.name == name)
    }

    pub fn endpoints_of(&self, cluster: &str) -> Option<&ClusterLoadAssignment> {
        self.endpoints.iter().find(|e| e.cluster_name == cluster)
    }
}

/// The services a proxy may reach: visible to its namespace and allowed by its Sidecar's egress
/// hosts, in hostname order.
pub fn visible_services<'a>(index: &'a Index, proxy: &Proxy) -> Vec<&'a Service> {
    index
        .services
        .services
        .values()
        .filter(|s| s.visible_from(&proxy.namespace))
        .filter(|s| index.egress_allows(proxy, &s.hostname, &s.namespace))
        .collect()
}

/// Generates the resources of `proxy`.
pub fn generate(index: &Index, proxy: &Proxy, addressing: InboundAddressing) -> ProxyResources {
    let mut out = ProxyResources::default();
    let services = visible_services(index, proxy);
    for service in &services {
        let dr = index.destination_rule(&service.hostname, &proxy.namespace, &service.namespace);
        for port in &service.ports {
            let top = dr.and_then(|d| d.spec.traffic_policy.as_ref());
            let mut built = vec![cluster::outbound(
                service,
                port,
                None,
                &cluster::merged_policy(top, None, port.number),
                addressing,
            )];
            for subset in dr.iter().flat_map(|d| &d.spec.subsets) {
                let Some(name) = subset.name.as_deref() else {
                    continue;
                };
                let policy =
                    cluster::merged_policy(top, subset.traffic_policy.as_ref(), port.number);
                built.push(cluster::outbound(
                    service,
                    port,
                    Some((name, &subset.labels)),
                    &policy,
                    addressing,
                ));
            }
            for b in built {
                out.clusters.push(b.cluster);
                out.endpoints.extend(b.endpoints);
            }
        }
    }
    out.clusters.push(cluster::blackhole());

    // Listeners bind the proxy's own IP when nothing captures traffic for it (several proxies then
    // share one machine); a gateway in a cluster binds every address.
    let bind_ip = match proxy.interception {
        Interception::None => proxy.ip.clone(),
        Interception::Redirect => "0.0.0.0".to_owned(),
    };
    match proxy.kind {
        ProxyType::Sidecar => {
            let ports = listener::inbound_ports(index, proxy);
            match proxy.interception {
                Interception::None => {
                    let (outbound, routes) = listener::sidecar_outbound(index, proxy, &services);
                    out.listeners.push(outbound);
                    out.routes.push(routes);
                    if !ports.is_empty() {
                        out.listeners.push(listener::sidecar_inbound(proxy, &ports));
                    }
                }
                Interception::Redirect => {
                    let (listeners, routes, warnings) =
                        listener::captured_outbound(index, proxy, &services);
                    out.listeners.extend(listeners);
                    out.routes.extend(routes);
                    out.warnings.extend(warnings);
                    out.listeners.push(listener::captured_inbound(&ports));
                    out.clusters.push(cluster::passthrough());
                }
            }
            for (_, target, h2) in &ports {
                if !out
                    .clusters
                    .iter()
                    .any(|c| c.name == format!("inbound|{target}||"))
                {
                    out.clusters.push(cluster::inbound(*target, &proxy.ip, *h2));
                }
            }
        }
        ProxyType::Router => {
            let (listeners, routes, warnings) = listener::gateway(index, proxy, &bind_ip);
            out.listeners.extend(listeners);
            out.routes.extend(routes);
            out.warnings.extend(warnings);
        }
    }
    out
}
