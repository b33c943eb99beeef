//! One proxy's xDS resources from the push index: clusters (CDS), their endpoints (EDS), listeners
//! (LDS) and route tables (RDS).
//!
//! Most of a sidecar's config does not depend on which sidecar it is: its clusters and endpoints
//! depend on its namespace and Sidecar scope, its route tables also on which `sourceLabels` select it.
//! [`Generator`] builds each such part once per push, encoded, and shares it between the proxies
//! that have the same inputs; only the listeners bound to a proxy's own address and its inbound side
//! are built per proxy. [`generate`] builds everything for one proxy, unshared (tests, debugging).

pub mod cluster;
pub mod listener;
pub mod route;
pub mod tcp;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use prost::{Message, Name};
use xds_api::pb::envoy::config::cluster::v3::Cluster;
use xds_api::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use xds_api::pb::envoy::config::listener::v3::Listener;
use xds_api::pb::envoy::config::route::v3::RouteConfiguration;
use xds_server::{Snapshot, VersionedResource};

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

const TYPES: [&str; 4] = [
    xds_api::type_url::CLUSTER,
    xds_api::type_url::CLUSTER_LOAD_ASSIGNMENT,
    xds_api::type_url::LISTENER,
    xds_api::type_url::ROUTE_CONFIGURATION,
];

fn empty_snapshot(version: &str) -> Snapshot {
    let mut s = Snapshot::new(version);
    for t in TYPES {
        s.ensure_type(t);
    }
    s
}

impl ProxyResources {
    pub fn to_snapshot(&self, version: &str) -> Snapshot {
        let mut s = empty_snapshot(version);
        for (name, r) in self.packed() {
            s.insert_shared(name, r);
        }
        s
    }

    /// Every resource encoded, with its name.
    fn packed(&self) -> Packed {
        let mut out = pack(self.clusters.iter().map(|c| (&c.name, c)));
        out.extend(pack(self.endpoints.iter().map(|e| (&e.cluster_name, e))));
        out.extend(pack(self.listeners.iter().map(|l| (&l.name, l))));
        out.extend(pack(self.routes.iter().map(|r| (&r.name, r))));
        out
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

    fn extend(&mut self, other: ProxyResources) {
        self.clusters.extend(other.clusters);
        self.endpoints.extend(other.endpoints);
        self.listeners.extend(other.listeners);
        self.routes.extend(other.routes);
        self.warnings.extend(other.warnings);
    }
}

/// Encoded resources with their names, ready to share between snapshots.
type Packed = Vec<(String, Arc<VersionedResource>)>;

fn pack<'a, T: Message + Name + 'a>(
    items: impl IntoIterator<Item = (&'a String, &'a T)>,
) -> Packed {
    items
        .into_iter()
        .map(|(name, msg)| (name.clone(), Arc::new(VersionedResource::of(msg))))
        .collect()
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

/// The outbound clusters (one per service port and DestinationRule subset) and their endpoints, plus
/// `BlackHoleCluster`: the same for every proxy of a namespace and Sidecar scope.
fn outbound_clusters(
    index: &Index,
    proxy: &Proxy,
    services: &[&Service],
    addressing: InboundAddressing,
) -> ProxyResources {
    let mut out = ProxyResources::default();
    for service in services {
        let dr = index.destination_rule(&service.hostname, &proxy.namespace, &service.namespace);
        let top = dr.and_then(|d| d.spec.traffic_policy.as_ref());
        for port in &service.ports {
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
    out
}

/// A sidecar's outbound route tables (and, when captured, its per-port listeners, which bind
/// nothing): the same for every proxy of a namespace, Sidecar scope, interception mode and
/// `sourceLabels` signature.
fn sidecar_routes(index: &Index, proxy: &Proxy, services: &[&Service]) -> ProxyResources {
    let mut out = ProxyResources::default();
    match proxy.interception {
        Interception::None => out
            .routes
            .push(listener::outbound_routes(index, proxy, services)),
        Interception::Redirect => {
            let (listeners, routes, warnings) = listener::captured_outbound(index, proxy, services);
            out.listeners = listeners;
            out.routes = routes;
            out.warnings = warnings;
            out.clusters.push(cluster::passthrough());
        }
    }
    out
}

/// What only this proxy has: listeners on its own address, its inbound side, gateway listeners.
fn own_resources(index: &Index, proxy: &Proxy) -> ProxyResources {
    let mut out = ProxyResources::default();
    match proxy.kind {
        ProxyType::Sidecar => {
            let ports = listener::inbound_ports(index, proxy);
            match proxy.interception {
                Interception::None => {
                    out.listeners.push(listener::outbound_listener(proxy));
                    if !ports.is_empty() {
                        out.listeners.push(listener::sidecar_inbound(proxy, &ports));
                    }
                }
                Interception::Redirect => {
                    out.listeners.push(listener::captured_inbound(&ports));
                    out.clusters.push(cluster::inbound_passthrough());
                }
            }
            let source = match proxy.interception {
                Interception::None => None,
                Interception::Redirect => Some(cluster::INBOUND_PASSTHROUGH_SOURCE),
            };
            for (_, target, h2) in &ports {
                let name = format!("inbound|{target}||");
                if !out.clusters.iter().any(|c| c.name == name) {
                    out.clusters
                        .push(cluster::inbound(*target, &proxy.ip, *h2, source));
                }
            }
        }
        ProxyType::Router => {
            // Listeners bind the proxy's own IP when nothing captures traffic for it (several
            // proxies then share one machine); a gateway in a cluster binds every address.
            let bind_ip = match proxy.interception {
                Interception::None => proxy.ip.as_str(),
                Interception::Redirect => "0.0.0.0",
            };
            let (listeners, routes, warnings) = listener::gateway(index, proxy, bind_ip);
            out.listeners = listeners;
            out.routes = routes;
            out.warnings = warnings;
        }
    }
    out
}

/// Generates every resource of `proxy`.
pub fn generate(index: &Index, proxy: &Proxy, addressing: InboundAddressing) -> ProxyResources {
    let services = visible_services(index, proxy);
    let mut out = outbound_clusters(index, proxy, &services, addressing);
    if proxy.kind == ProxyType::Sidecar {
        out.extend(sidecar_routes(index, proxy, &services));
    }
    out.extend(own_resources(index, proxy));
    out
}

/// What decides a proxy's outbound clusters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ScopeKey {
    namespace: String,
    /// The Sidecar resource scoping it, as `namespace/name`.
    sidecar: Option<String>,
}

/// What decides a sidecar's outbound route tables.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RouteKey {
    scope: ScopeKey,
    interception: Interception,
    sources: Vec<bool>,
}

#[derive(Debug)]
struct SharedPart {
    resources: Packed,
    warnings: Vec<String>,
}

/// Builds the snapshots of many proxies in one push, sharing what proxies have in common.
#[derive(Debug)]
pub struct Generator<'a> {
    index: &'a Index,
    addressing: InboundAddressing,
    clusters: Mutex<HashMap<ScopeKey, Arc<SharedPart>>>,
    routes: Mutex<HashMap<RouteKey, Arc<SharedPart>>>,
}

impl<'a> Generator<'a> {
    pub fn new(index: &'a Index, addressing: InboundAddressing) -> Generator<'a> {
        Generator {
            index,
            addressing,
            clusters: Mutex::new(HashMap::new()),
            routes: Mutex::new(HashMap::new()),
        }
    }

    fn shared<K: Clone + Eq + std::hash::Hash>(
        map: &Mutex<HashMap<K, Arc<SharedPart>>>,
        key: &K,
        build: impl FnOnce() -> ProxyResources,
    ) -> Arc<SharedPart> {
        if let Some(s) = map.lock().unwrap_or_else(PoisonError::into_inner).get(key) {
            return s.clone();
        }
        let built = build();
        let shared = Arc::new(SharedPart {
            resources: built.packed(),
            warnings: built.warnings,
        });
        map.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone(), shared.clone());
        shared
    }

    /// The snapshot of `proxy` at `version`, and what could not be generated for it.
    pub fn snapshot(&self, proxy: &Proxy, version: &str) -> (Snapshot, Vec<String>) {
        let index = self.index;
        let scope = ScopeKey {
            namespace: proxy.namespace.clone(),
            sidecar: index
                .sidecar_for(proxy)
                .map(|s| format!("{}/{}", s.namespace, s.name)),
        };
        let mut services = None;
        let mut visible = || {
            services
                .get_or_insert_with(|| visible_services(index, proxy))
                .clone()
        };
        let mut parts = vec![Self::shared(&self.clusters, &scope, || {
            outbound_clusters(index, proxy, &visible(), self.addressing)
        })];
        if proxy.kind == ProxyType::Sidecar {
            let key = RouteKey {
                scope,
                interception: proxy.interception,
                sources: index.source_signature(proxy),
            };
            parts.push(Self::shared(&self.routes, &key, || {
                sidecar_routes(index, proxy, &visible())
            }));
        }
        let own = own_resources(index, proxy);
        let mut snapshot = empty_snapshot(version);
        let mut warnings = own.warnings.clone();
        for part in &parts {
            for (name, r) in &part.resources {
                snapshot.insert_shared(name.clone(), r.clone());
            }
            warnings.extend(part.warnings.iter().cloned());
        }
        for (name, r) in own.packed() {
            snapshot.insert_shared(name, r);
        }
        (snapshot, warnings)
    }
}
