//! One proxy's xDS resources from the push index: clusters (CDS), their endpoints (EDS), listeners
//! (LDS) and route tables (RDS).
//!
//! Most of a sidecar's config does not depend on which sidecar it is: its clusters and endpoints
//! depend on its namespace and Sidecar scope, its route tables also on which `sourceLabels` select it.
//! [`Generator`] builds each such part once per push, encoded, and shares it between the proxies
//! that have the same inputs; only the listeners bound to a proxy's own address and its inbound side
//! are built per proxy. [`generate`] builds everything for one proxy, unshared (tests, debugging).

pub mod access_log;
pub mod cluster;
pub mod hash;
pub mod ingress;
pub mod listener;
pub mod locality;
pub mod route;
pub mod server_tls;
pub mod tcp;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use prost::{Message, Name};
use xds_api::pb::envoy::config::cluster::v3::Cluster;
use xds_api::pb::envoy::config::core::v3::TrafficDirection;
use xds_api::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use xds_api::pb::envoy::config::listener::v3::Listener;
use xds_api::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
use xds_api::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use xds_api::pb::google::protobuf::Any;
use xds_server::{LayeredMap, ResourceMap, Snapshot, VersionedResource};

use crate::index::{Index, PeerMode, RouteChange, same_spec};
use crate::model::Service;
use crate::node::{Interception, Proxy, ProxyType};
pub use cluster::InboundAddressing;
use mesh_api::types::destination_rule::DestinationRuleSpec;

/// Everything one proxy is sent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxyResources {
    pub clusters: Vec<Cluster>,
    pub endpoints: Vec<ClusterLoadAssignment>,
    pub listeners: Vec<Listener>,
    pub routes: Vec<RouteConfiguration>,
    /// The route tables' virtual hosts sent apart, over VHDS (`Proxy::vhds`), named `TABLE/HOST`.
    pub virtual_hosts: Vec<VirtualHost>,
    /// Gateways' TLS credentials (SDS).
    pub secrets: Vec<Secret>,
    /// What could not be generated for this proxy, for the log.
    pub warnings: Vec<String>,
}

const TYPES: [&str; 6] = [
    xds_api::type_url::CLUSTER,
    xds_api::type_url::CLUSTER_LOAD_ASSIGNMENT,
    xds_api::type_url::LISTENER,
    xds_api::type_url::ROUTE_CONFIGURATION,
    xds_api::type_url::VIRTUAL_HOST,
    xds_api::type_url::SECRET,
];

/// Where `type_url` is in [`TYPES`].
fn type_index(type_url: &str) -> Option<usize> {
    TYPES.iter().position(|t| *t == type_url)
}

/// Whether a snapshot holds `type_url` even with no resources of it: every type but VHDS's, which
/// only proxies that take their virtual hosts over VHDS have (and subscribe to).
fn always_present(type_url: &str) -> bool {
    type_url != xds_api::type_url::VIRTUAL_HOST
}

fn empty_snapshot(version: &str) -> Snapshot {
    let mut s = Snapshot::new(version);
    for t in TYPES.into_iter().filter(|t| always_present(t)) {
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
        out.extend(pack(self.virtual_hosts.iter().map(|v| (&v.name, v))));
        out.extend(pack(self.secrets.iter().map(|s| (&s.name, s))));
        out
    }

    pub fn secret(&self, name: &str) -> Option<&Secret> {
        self.secrets.iter().find(|s| s.name == name)
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
        self.virtual_hosts.extend(other.virtual_hosts);
        self.secrets.extend(other.secrets);
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

/// istiod's note of where a resource comes from (`filter_metadata.istio.config`), which tools read
/// to name the Istio resource behind a cluster or route: `/apis/networking.istio.io/v1/namespaces/NS/
/// KIND/NAME`, KIND being `destination-rule` or `virtual-service`.
pub(crate) fn istio_config_metadata(
    kind: &str,
    namespace: &str,
    name: &str,
) -> xds_api::pb::envoy::config::core::v3::Metadata {
    use xds_api::pb::google::protobuf::{Struct, Value, value::Kind};
    let path = format!("/apis/networking.istio.io/v1/namespaces/{namespace}/{kind}/{name}");
    let fields = [(
        "config".to_owned(),
        Value {
            kind: Some(Kind::StringValue(path)),
        },
    )];
    xds_api::pb::envoy::config::core::v3::Metadata {
        filter_metadata: [(
            "istio".to_owned(),
            Struct {
                fields: fields.into_iter().collect(),
            },
        )]
        .into_iter()
        .collect(),
        ..Default::default()
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
        out.extend(service_clusters(index, proxy, service, addressing));
    }
    out.clusters.push(cluster::blackhole());
    out
}

/// The outbound clusters of one service, as `proxy` sees them: only the DestinationRule that
/// applies to it (by the proxy's namespace) and the endpoints' locality weights and priorities (by
/// the proxy's [`locality::Placement`]) depend on the proxy.
fn service_clusters(
    index: &Index,
    proxy: &Proxy,
    service: &Service,
    addressing: InboundAddressing,
) -> ProxyResources {
    let mut out = ProxyResources::default();
    let dr = index.destination_rule(&service.hostname, &proxy.namespace, &service.namespace);
    let top = dr.and_then(|d| d.spec.traffic_policy.as_ref());
    let auto_mtls = index.mesh_tls;
    for port in &service.ports {
        let mut built = vec![cluster::outbound(
            service,
            port,
            None,
            &cluster::merged_policy(top, None, port.number),
            addressing,
            &proxy.labels,
            auto_mtls,
        )];
        for subset in dr.iter().flat_map(|d| &d.spec.subsets) {
            let Some(name) = subset.name.as_deref() else {
                continue;
            };
            let policy = cluster::merged_policy(top, subset.traffic_policy.as_ref(), port.number);
            built.push(cluster::outbound(
                service,
                port,
                Some((name, &subset.labels)),
                &policy,
                addressing,
                &proxy.labels,
                auto_mtls,
            ));
        }
        for mut b in built {
            if let Some(d) = dr {
                b.cluster.metadata = Some(istio_config_metadata(
                    "destination-rule",
                    &d.namespace,
                    &d.name,
                ));
            }
            out.clusters.push(b.cluster);
            out.endpoints.extend(b.endpoints);
        }
    }
    out
}

/// A service's encoded clusters are built once for every namespace whose proxies see it through the
/// same DestinationRule, per proxy placement: (hostname, namespace, the DR's namespace and name,
/// placement).
type ServiceClusterKey = (
    String,
    String,
    Option<(String, String)>,
    locality::Placement,
);

/// A service's encoded clusters and what they were built from: the next push reuses them (and
/// their `Arc`s) when the service and its DestinationRule are unchanged.
#[derive(Debug)]
struct ServiceClusters {
    service: Service,
    rule: Option<Arc<DestinationRuleSpec>>,
    /// Whether mesh TLS was in use (auto mTLS) when they were built.
    mesh_tls: bool,
    packed: Arc<Packed>,
}

/// [`outbound_clusters`], encoded, as one part per service (without `BlackHoleCluster`), reusing
/// each service's clusters from this push (`built`) or the last (`previous`).
fn outbound_cluster_parts(
    index: &Index,
    proxy: &Proxy,
    services: &[&Service],
    addressing: InboundAddressing,
    placement: &locality::Placement,
    built: &mut HashMap<ServiceClusterKey, ServiceClusters>,
    previous: &HashMap<ServiceClusterKey, ServiceClusters>,
) -> Vec<Arc<Packed>> {
    let mut out = Vec::with_capacity(services.len());
    for service in services {
        let dr = index.destination_rule(&service.hostname, &proxy.namespace, &service.namespace);
        let key = (
            service.hostname.clone(),
            service.namespace.clone(),
            dr.map(|d| (d.namespace.clone(), d.name.clone())),
            placement.clone(),
        );
        let mesh_tls = index.mesh_tls;
        let entry = built.entry(key).or_insert_with_key(|key| {
            let rule = dr.map(|d| d.spec.clone());
            let packed = match previous.get(key) {
                Some(p)
                    if p.service == **service
                        && same_rule(&p.rule, &rule)
                        && p.mesh_tls == mesh_tls =>
                {
                    p.packed.clone()
                }
                _ => Arc::new(service_clusters(index, proxy, service, addressing).packed()),
            };
            ServiceClusters {
                service: (*service).clone(),
                rule,
                mesh_tls,
                packed,
            }
        });
        out.push(entry.packed.clone());
    }
    out
}

/// Whether two DestinationRule specs are the same (see [`same_spec`]).
fn same_rule(a: &Option<Arc<DestinationRuleSpec>>, b: &Option<Arc<DestinationRuleSpec>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => same_spec(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// Whether two lists of parts are the very same parts, in the same order.
fn same_parts(a: &[Arc<Packed>], b: &[Arc<Packed>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| Arc::ptr_eq(x, y))
}

/// A sidecar's outbound route tables (and, when captured, its per-port listeners, which bind
/// nothing, and `PassthroughCluster`): the same for every proxy of a namespace, Sidecar scope,
/// interception mode and `sourceLabels` signature. The tables' services' routes are not built yet.
struct SidecarRoutes<'a> {
    tables: Vec<listener::RouteTable<'a>>,
    rest: ProxyResources,
}

fn sidecar_route_tables<'a>(
    index: &Index,
    proxy: &Proxy,
    services: &[&'a Service],
) -> SidecarRoutes<'a> {
    let mut rest = ProxyResources::default();
    let tables = match proxy.interception {
        Interception::None => vec![listener::outbound_route_table(index, proxy, services)],
        Interception::Redirect => {
            let (mut listeners, tables, warnings) =
                listener::captured_outbound(index, proxy, services);
            set_direction(&mut listeners, TrafficDirection::Outbound);
            if let Some(log) = &index.access_log {
                access_log::apply(&mut listeners, log);
            }
            rest.listeners = listeners;
            rest.warnings = warnings;
            rest.clusters.push(cluster::passthrough());
            tables
        }
    };
    SidecarRoutes { tables, rest }
}

/// [`sidecar_route_tables`], built.
fn sidecar_routes(index: &Index, proxy: &Proxy, services: &[&Service]) -> ProxyResources {
    let SidecarRoutes { tables, mut rest } = sidecar_route_tables(index, proxy, services);
    for table in tables {
        let table = if proxy.vhds {
            let (table, hosts) = table.split_for_vhds();
            rest.virtual_hosts
                .extend(hosts.into_iter().map(|h| h.build(index, proxy)));
            table
        } else {
            table
        };
        rest.routes.push(table.build(index, proxy));
    }
    rest
}

/// What only this proxy has: listeners on its own address, its inbound side, gateway listeners.
fn own_resources(index: &Index, proxy: &Proxy) -> ProxyResources {
    let mut out = ProxyResources::default();
    match proxy.kind {
        ProxyType::Sidecar => {
            match ingress::ports(index, proxy) {
                Some((ports, warnings)) => {
                    out.warnings = warnings;
                    out.extend(ingress::resources(index, proxy, &ports));
                }
                None => out.extend(service_inbound(index, proxy)),
            }
            set_direction(&mut out.listeners, TrafficDirection::Inbound);
            match proxy.interception {
                Interception::None => {
                    let mut outbound = listener::outbound_listener(proxy);
                    outbound.traffic_direction = TrafficDirection::Outbound as i32;
                    out.listeners.push(outbound);
                }
                Interception::Redirect => out.clusters.push(cluster::inbound_passthrough()),
            }
        }
        ProxyType::Router => {
            // Listeners bind the proxy's own IP when nothing captures traffic for it (several
            // proxies then share one machine); a gateway in a cluster binds every address.
            let bind_ip = match proxy.interception {
                Interception::None => proxy.ip.as_str(),
                Interception::Redirect => "0.0.0.0",
            };
            out.extend(listener::gateway(index, proxy, bind_ip));
        }
    }
    mesh_identity(index, proxy, &mut out);
    if let Some(log) = &index.access_log {
        access_log::apply(&mut out.listeners, log);
    }
    out
}

/// With mesh TLS in use ([`Index::mesh_tls`]), a proxy's identity (its certificate and the mesh's
/// root, SDS `default` and `ROOTCA`), and for a sidecar an inbound side as its PeerAuthentication
/// says: mutual TLS beside plain text (PERMISSIVE, the default), mutual TLS only (STRICT), or plain
/// text only (DISABLE).
fn mesh_identity(index: &Index, proxy: &Proxy, out: &mut ProxyResources) {
    let Some(identity) = index.identity.as_ref().filter(|_| index.mesh_tls) else {
        return;
    };
    let account = index
        .instances_at(&proxy.ip, &proxy.namespace)
        .find_map(|(_, i)| i.service_account.clone())
        .unwrap_or_else(|| "default".to_owned());
    match identity.secrets(&proxy.namespace, &account) {
        Ok(secrets) => out.secrets.extend(secrets),
        Err(e) => {
            out.warnings.push(format!("no mesh identity: {e}"));
            return;
        }
    }
    if proxy.kind != ProxyType::Sidecar {
        return;
    }
    let mode = index.peer_mode(proxy);
    let ports = index.peer_port_modes(proxy);
    let inbound = out
        .listeners
        .iter_mut()
        .filter(|l| l.traffic_direction == TrafficDirection::Inbound as i32);
    if proxy.interception == Interception::Redirect || ports.is_empty() {
        // With capture, a chain per workload port: each takes its port's mode.
        for l in inbound {
            listener::apply_peer_modes(l, |port| {
                port.and_then(|p| ports.get(&p).copied()).unwrap_or(mode)
            });
        }
        return;
    }
    // Without capture, every port's HTTP arrives at one listener: it takes whatever some port
    // admits, and each port's virtual host refuses the transport its own mode does not.
    let either = PeerMode::admitting(ports.values().copied().chain([mode]));
    let mode_of = |target: u32| ports.get(&target).copied().unwrap_or(mode);
    for l in inbound {
        listener::apply_peer_modes(l, |_| either);
        listener::refuse_by_port_mode(l, mode_of, &mut out.warnings);
    }
}

/// A sidecar's listeners say which way their traffic goes, as istiod's do: Envoy's
/// `/drain_listeners?inboundonly` (how Istio's pilot-agent drains a terminating pod) and tools go by it.
fn set_direction(listeners: &mut [Listener], direction: TrafficDirection) {
    for l in listeners {
        l.traffic_direction = direction as i32;
    }
}

/// A sidecar's inbound side from its services' ports (no Sidecar `ingress`): HTTP ports routed to
/// `inbound|PORT||` at the workload's own address, with the Sidecar's `inboundConnectionPool`.
fn service_inbound(index: &Index, proxy: &Proxy) -> ProxyResources {
    let mut out = ProxyResources::default();
    let ports = listener::inbound_ports(index, proxy);
    let source = match proxy.interception {
        Interception::None => {
            if !ports.is_empty() {
                out.listeners.push(listener::sidecar_inbound(proxy, &ports));
            }
            None
        }
        Interception::Redirect => {
            out.listeners.push(listener::captured_inbound(
                &ports,
                &listener::sniffed_inbound_ports(index, proxy),
            ));
            Some(cluster::INBOUND_PASSTHROUGH_SOURCE)
        }
    };
    let pool = index
        .sidecar_for(proxy)
        .and_then(|s| s.spec.inbound_connection_pool.as_ref());
    for (_, target, h2) in &ports {
        let name = cluster::inbound_cluster(*target);
        if !out.clusters.iter().any(|c| c.name == name) {
            out.clusters
                .push(cluster::inbound(*target, &proxy.ip, *h2, source, pool));
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
    /// Where it runs (and its labels `failoverPriority` compares): endpoint weights and
    /// priorities depend on it.
    placement: locality::Placement,
}

/// What decides a sidecar's outbound route tables.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RouteKey {
    scope: ScopeKey,
    interception: Interception,
    sources: Vec<bool>,
    /// Whether the services' virtual hosts go over VHDS.
    vhds: bool,
}

/// Encoded resources of each type, in maps that snapshots share (a large one split: [`Shards`]).
#[derive(Debug, Clone, Default)]
struct TypeMaps([Shards<Arc<VersionedResource>>; TYPES.len()]);

impl TypeMaps {
    fn of(packed: Packed) -> TypeMaps {
        TypeMaps::split(packed, |_, map| Shards::split(map))
    }

    /// [`of`](Self::of), each type's map split over the ranges of `like`'s (so that a push's shards
    /// line up with the last push's, and those with the same content are taken whole).
    fn of_like(packed: Packed, like: &TypeMaps) -> TypeMaps {
        TypeMaps::split(packed, |i, map| Shards::split_like(map, &like.0[i]))
    }

    fn split(
        packed: Packed,
        split: impl Fn(usize, ResourceMap) -> Shards<Arc<VersionedResource>>,
    ) -> TypeMaps {
        let mut maps: [ResourceMap; TYPES.len()] = Default::default();
        for (name, r) in packed {
            if let Some(i) = type_index(r.type_url()) {
                maps[i].insert(name, r);
            }
        }
        let mut maps = maps.into_iter();
        TypeMaps(std::array::from_fn(|i| {
            split(i, maps.next().unwrap_or_default())
        }))
    }

    /// `self`, with each shard equal to `previous`'s replaced by `previous`'s (so that snapshots of
    /// consecutive pushes share it, and compare equal by pointer), and in a shard that changed, each
    /// resource of the same version replaced by `previous`'s: every ADS stream compares the two
    /// maps, and the same resource then compares by pointer, not by version.
    fn reusing(mut self, previous: &TypeMaps) -> TypeMaps {
        for (maps, old) in self.0.iter_mut().zip(&previous.0) {
            maps.reuse(old, |r, kept| r.version == kept.version);
        }
        self
    }

    /// `self`, assembled from `old_parts`, with the resources of each part that is not the very same
    /// in `new_parts` (at the same place) replaced by the new part's; a resource of the same version
    /// stays `self`'s. Parts name each resource once.
    fn replacing_parts(&self, old_parts: &[Arc<Packed>], new_parts: &[Arc<Packed>]) -> TypeMaps {
        let mut maps = self.clone();
        for (was, now) in old_parts.iter().zip(new_parts) {
            if Arc::ptr_eq(was, now) {
                continue;
            }
            for (name, r) in was.iter() {
                if let Some(i) = type_index(r.type_url()) {
                    maps.0[i].remove(name);
                }
            }
            for (name, r) in now.iter() {
                if let Some(i) = type_index(r.type_url()) {
                    let kept = self.0[i].get(name).filter(|old| old.version == r.version);
                    maps.0[i].insert(name.clone(), kept.unwrap_or(r).clone());
                }
            }
        }
        maps
    }

    /// The maps of the `i`th type, as layers of a snapshot.
    fn layers(&self, i: usize) -> impl Iterator<Item = Arc<ResourceMap>> + '_ {
        self.0[i].maps.iter().cloned()
    }
}

/// Entries per shard when a map is first split; a smaller map stays whole.
const SHARD_SIZE: usize = 64;

/// Entries by name, in shared maps (shards) over consecutive ranges of names: changing a few
/// entries copies their shards, and the others stay the very maps the last push held, which every
/// ADS stream then skips by pointer instead of comparing thousands of names. The ranges are set
/// when a map is first split, by size, and kept by the pushes after it.
#[derive(Debug, Clone)]
struct Shards<V> {
    /// The first name of each shard after the first: a name's shard is how many are at or below it.
    bounds: Arc<[String]>,
    maps: Vec<Arc<BTreeMap<String, V>>>,
}

impl<V> Default for Shards<V> {
    fn default() -> Shards<V> {
        Shards {
            bounds: Arc::new([]),
            maps: vec![Arc::default()],
        }
    }
}

impl<V: Clone> Shards<V> {
    /// `map` in shards of [`SHARD_SIZE`] entries.
    fn split(map: BTreeMap<String, V>) -> Shards<V> {
        let bounds: Arc<[String]> = map
            .keys()
            .skip(SHARD_SIZE)
            .step_by(SHARD_SIZE)
            .cloned()
            .collect();
        Shards::split_at(map, bounds)
    }

    /// `map` in the shards of `like`'s ranges (split anew if `like` is whole).
    fn split_like(map: BTreeMap<String, V>, like: &Shards<V>) -> Shards<V> {
        if like.bounds.is_empty() {
            Shards::split(map)
        } else {
            Shards::split_at(map, like.bounds.clone())
        }
    }

    fn split_at(map: BTreeMap<String, V>, bounds: Arc<[String]>) -> Shards<V> {
        if bounds.is_empty() {
            return Shards {
                bounds,
                maps: vec![Arc::new(map)],
            };
        }
        let mut shards: Vec<Vec<(String, V)>> = (0..=bounds.len()).map(|_| Vec::new()).collect();
        let mut at = 0;
        for (name, value) in map {
            while at < bounds.len() && name >= bounds[at] {
                at += 1;
            }
            shards[at].push((name, value));
        }
        Shards {
            bounds,
            maps: shards
                .into_iter()
                .map(|entries| Arc::new(entries.into_iter().collect()))
                .collect(),
        }
    }

    fn shard(&self, name: &str) -> usize {
        self.bounds.partition_point(|b| b.as_str() <= name)
    }

    fn get(&self, name: &str) -> Option<&V> {
        self.maps[self.shard(name)].get(name)
    }

    /// Inserts into the shard of `name`, a copy of it if it is shared.
    fn insert(&mut self, name: String, value: V) {
        let at = self.shard(&name);
        Arc::make_mut(&mut self.maps[at]).insert(name, value);
    }

    /// Removes `name` from its shard, a copy of it if it is shared.
    fn remove(&mut self, name: &str) {
        let at = self.shard(name);
        if self.maps[at].contains_key(name) {
            Arc::make_mut(&mut self.maps[at]).remove(name);
        }
    }

    fn is_empty(&self) -> bool {
        self.maps.iter().all(|m| m.is_empty())
    }

    /// Every entry, in name order.
    fn iter(&self) -> impl Iterator<Item = (&String, &V)> {
        self.maps.iter().flat_map(|m| m.iter())
    }

    /// Takes `previous`'s shard wherever it is equal to this one's (`same` compares the values);
    /// in a shard that differs, `previous`'s value of each entry `same` finds equal.
    fn reuse(&mut self, previous: &Shards<V>, same: impl Fn(&V, &V) -> bool) {
        if previous.bounds != self.bounds {
            return;
        }
        for (map, old) in self.maps.iter_mut().zip(&previous.maps) {
            let equal = Arc::ptr_eq(map, old)
                || (map.len() == old.len()
                    && map
                        .iter()
                        .zip(old.iter())
                        .all(|((a, x), (b, y))| a == b && same(x, y)));
            if equal {
                *map = old.clone();
                continue;
            }
            for (name, value) in Arc::make_mut(map).iter_mut() {
                if let Some(kept) = old.get(name).filter(|kept| same(value, kept)) {
                    *value = kept.clone();
                }
            }
        }
    }
}

#[derive(Debug, Default)]
struct SharedPart {
    maps: TypeMaps,
    warnings: Vec<String>,
    /// What the maps were assembled from, for a scope's clusters: one part per service. When the
    /// next push finds the very same parts, it takes these maps whole instead of assembling and
    /// comparing thousands of clusters again.
    parts: Vec<Arc<Packed>>,
    /// For route tables: each service port's encoded routes, by hostname and port, which the next
    /// push takes unless its change concerns that host (or the host is `stale_routes`).
    service_routes: Arc<HashMap<(String, u32), Bytes>>,
    /// The hosts whose `service_routes` are not current: pushes that built only changed VHDS hosts
    /// share the routes of the part before and name the hosts they changed here.
    stale_routes: HashSet<String>,
    /// For tables sent over VHDS: each service host's resource by name, with the domains it was
    /// built with. The next push takes it whole (not built, encoded nor hashed again) unless its
    /// change concerns that host or its domains moved. In shards, so that a push copies few.
    vhds_hosts: Shards<Arc<VhdsHost>>,
}

/// A service host sent over VHDS, as a push built it.
#[derive(Debug)]
struct VhdsHost {
    hostname: String,
    port: u32,
    /// The domains it claimed in its table.
    domains: Vec<String>,
    /// Its routes after the service's own (see [`listener::TableHost`]), encoded.
    trailing: Bytes,
    resource: Arc<VersionedResource>,
}

impl VhdsHost {
    /// The host `name` of `hostname`'s `port`, its `VirtualHost` resource encoded from its
    /// service's encoded `routes` and its own.
    fn encode(
        hostname: String,
        port: u32,
        name: String,
        domains: Vec<String>,
        routes: &[u8],
        trailing: Bytes,
    ) -> VhdsHost {
        let mut value = Vec::new();
        listener::encode_service_host(name, domains.clone(), routes, &trailing, &mut value);
        VhdsHost {
            hostname,
            port,
            domains,
            trailing,
            resource: Arc::new(VersionedResource::new(Any {
                type_url: xds_api::type_url::VIRTUAL_HOST.to_owned(),
                value,
            })),
        }
    }
}

/// What one push generated, handed to the next so that what did not change keeps its `Arc`s: the
/// proxies' snapshots then share maps with those already sent, which the ADS streams recognize by
/// pointer without comparing resources.
#[derive(Debug, Default)]
pub struct GenerationCache {
    /// The index these were generated from.
    index: Option<Arc<Index>>,
    clusters: HashMap<ScopeKey, Arc<SharedPart>>,
    routes: HashMap<RouteKey, Arc<SharedPart>>,
    services: HashMap<ServiceClusterKey, ServiceClusters>,
}

/// Builds the snapshots of many proxies in one push, sharing what proxies have in common.
#[derive(Debug)]
pub struct Generator<'a> {
    index: &'a Arc<Index>,
    /// What changed for route tables since the last push.
    route_change: RouteChange,
    /// Whether the last push's outbound clusters all stand (see [`Index::clusters_unchanged_since`]):
    /// each scope's are then taken whole, with no look at its services.
    clusters_unchanged: bool,
    /// Whether the services are the very ones of the last push (so are the tables' hosts).
    services_unchanged: bool,
    /// Whether captured sidecars' outbound listeners read the same rules as in the last push
    /// ([`Index::listener_rules_unchanged_since`]).
    listener_rules_unchanged: bool,
    addressing: InboundAddressing,
    /// The labels `failoverPriority` rules compare, read once per push.
    priority_labels: std::collections::BTreeSet<String>,
    previous: GenerationCache,
    built: Mutex<GenerationCache>,
}

fn keep_missing<K: Eq + std::hash::Hash, V>(built: &mut HashMap<K, V>, previous: HashMap<K, V>) {
    if built.is_empty() {
        // Nothing built (every scope taken whole): the previous map as it is, not rehashed.
        *built = previous;
        return;
    }
    for (k, v) in previous {
        built.entry(k).or_insert(v);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<'a> Generator<'a> {
    pub fn new(index: &'a Arc<Index>, addressing: InboundAddressing) -> Generator<'a> {
        Generator::after(index, addressing, GenerationCache::default())
    }

    /// A generator that reuses what `previous` (the last push's [`into_cache`](Self::into_cache))
    /// holds wherever the content is the same.
    pub fn after(
        index: &'a Arc<Index>,
        addressing: InboundAddressing,
        previous: GenerationCache,
    ) -> Generator<'a> {
        let (route_change, clusters_unchanged) = match &previous.index {
            Some(before) if Arc::ptr_eq(before, index) => (RouteChange::Nothing, true),
            Some(before) => (
                index.route_change_since(before),
                index.clusters_unchanged_since(before),
            ),
            None => (RouteChange::Everything, false),
        };
        let services_unchanged = previous
            .index
            .as_ref()
            .is_some_and(|before| Arc::ptr_eq(&before.services, &index.services));
        let listener_rules_unchanged = previous
            .index
            .as_ref()
            .is_some_and(|before| index.listener_rules_unchanged_since(before));
        Generator {
            index,
            route_change,
            clusters_unchanged,
            services_unchanged,
            listener_rules_unchanged,
            addressing,
            priority_labels: locality::priority_labels(index),
            previous,
            built: Mutex::default(),
        }
    }

    /// What changed for route tables since the push before, which decides what they take from it.
    pub fn route_change(&self) -> &RouteChange {
        &self.route_change
    }

    /// What this push built, for the next. A push that generated only some proxies (`complete`
    /// false: proxies that just connected) keeps what the last one built for the others.
    pub fn into_cache(self, complete: bool) -> GenerationCache {
        let mut built = self
            .built
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        built.index = Some(self.index.clone());
        let previous = self.previous;
        if !complete {
            keep_missing(&mut built.clusters, previous.clusters);
            keep_missing(&mut built.routes, previous.routes);
        }
        if !complete || self.clusters_unchanged {
            // Scopes taken whole did not look at their services: keep those for the next push.
            keep_missing(&mut built.services, previous.services);
        }
        built
    }

    /// The outbound clusters of `scope` (built once per push), taken whole from the last push when
    /// every service's clusters are the same.
    fn scope_clusters(
        &self,
        proxy: &Proxy,
        scope: &ScopeKey,
        visible: &mut impl FnMut() -> Vec<&'a Service>,
        built: &mut GenerationCache,
    ) -> Arc<SharedPart> {
        if let Some(s) = built.clusters.get(scope) {
            return s.clone();
        }
        if self.clusters_unchanged
            && let Some(s) = self.previous.clusters.get(scope)
        {
            built.clusters.insert(scope.clone(), s.clone());
            return s.clone();
        }
        let parts = outbound_cluster_parts(
            self.index,
            proxy,
            &visible(),
            self.addressing,
            &scope.placement,
            &mut built.services,
            &self.previous.services,
        );
        let previous = self.previous.clusters.get(scope);
        let shared = match previous {
            Some(old) if same_parts(&old.parts, &parts) => old.clone(),
            // The same services, some of whose clusters changed (an endpoint change): the last
            // push's maps with those services' resources replaced, not the whole scope assembled.
            Some(old) if old.parts.len() == parts.len() => Arc::new(SharedPart {
                maps: old.maps.replacing_parts(&old.parts, &parts),
                parts,
                ..SharedPart::default()
            }),
            _ => {
                let mut packed: Packed = parts.iter().flat_map(|p| p.iter().cloned()).collect();
                packed.extend(pack([&cluster::blackhole()].map(|c| (&c.name, c))));
                let maps = match previous {
                    Some(old) => TypeMaps::of_like(packed, &old.maps).reusing(&old.maps),
                    None => TypeMaps::of(packed),
                };
                Arc::new(SharedPart {
                    maps,
                    parts,
                    ..SharedPart::default()
                })
            }
        };
        built.clusters.insert(scope.clone(), shared.clone());
        shared
    }

    /// A sidecar's route tables and what goes with them, encoded: each service port's routes taken
    /// from `previous` where this push's change cannot concern them, else built.
    fn route_part(
        &self,
        proxy: &Proxy,
        services: &[&Service],
        previous: Option<&SharedPart>,
    ) -> SharedPart {
        let index: &Index = self.index;
        let SidecarRoutes { tables, rest } = sidecar_route_tables(index, proxy, services);
        let mut service_routes = HashMap::new();
        let mut vhds_hosts_built = BTreeMap::new();
        let mut packed = rest.packed();
        for table in tables {
            let name = table.config.name.clone();
            let (table, vhds_hosts) = if proxy.vhds {
                table.split_for_vhds()
            } else {
                (table, Vec::new())
            };
            let mut routes = |service: &Service, port: u32| {
                let key = (service.hostname.clone(), port);
                let kept = previous
                    .filter(|p| {
                        self.route_change.keeps(&service.hostname)
                            && !p.stale_routes.contains(&service.hostname)
                    })
                    .and_then(|p| p.service_routes.get(&key));
                let routes = match kept {
                    Some(routes) => routes.clone(),
                    None => {
                        let mut buf = Vec::new();
                        listener::encode_routes(
                            &listener::service_routes(index, proxy, service, port),
                            &mut buf,
                        );
                        Bytes::from(buf)
                    }
                };
                service_routes.insert(key, routes.clone());
                routes
            };
            for host in vhds_hosts {
                let name = host.name().to_owned();
                let listener::TableHost::Service {
                    service,
                    port,
                    domains,
                    trailing,
                    ..
                } = &host
                else {
                    continue;
                };
                let kept = previous
                    .filter(|_| self.route_change.keeps(&service.hostname))
                    .and_then(|p| p.vhds_hosts.get(&name))
                    .filter(|h| h.domains == *domains);
                let built = match kept {
                    Some(kept) => kept.clone(),
                    None => {
                        let mut encoded = Vec::new();
                        listener::encode_routes(trailing, &mut encoded);
                        Arc::new(VhdsHost::encode(
                            service.hostname.clone(),
                            *port,
                            name.clone(),
                            domains.clone(),
                            &routes(service, *port),
                            Bytes::from(encoded),
                        ))
                    }
                };
                packed.push((name.clone(), built.resource.clone()));
                vhds_hosts_built.insert(name, built);
            }
            let any = Any {
                type_url: xds_api::type_url::ROUTE_CONFIGURATION.to_owned(),
                value: table.encode(routes),
            };
            packed.push((name, Arc::new(VersionedResource::new(any))));
        }
        let (maps, vhds_hosts) = match previous {
            Some(old) => (
                TypeMaps::of_like(packed, &old.maps).reusing(&old.maps),
                Shards::split_like(vhds_hosts_built, &old.vhds_hosts),
            ),
            None => (TypeMaps::of(packed), Shards::split(vhds_hosts_built)),
        };
        SharedPart {
            maps,
            warnings: rest.warnings,
            service_routes: Arc::new(service_routes),
            vhds_hosts,
            ..SharedPart::default()
        }
    }

    /// [`route_part`](Self::route_part) for a sidecar without capture taking its service hosts over
    /// VHDS, when only `changed` hosts' routes changed and the services are the ones `old` was built
    /// from: the table and every other host are `old`'s; only the changed hosts are built again,
    /// with the names, domains and trailing routes they had (which only the services decide).
    fn vhds_hosts_changed(
        &self,
        proxy: &Proxy,
        old: &SharedPart,
        changed: &HashSet<String>,
    ) -> SharedPart {
        let index: &Index = self.index;
        let at = type_index(xds_api::type_url::VIRTUAL_HOST).unwrap_or_default();
        let mut maps = old.maps.clone();
        let mut vhds_hosts = old.vhds_hosts.clone();
        let routes = |service: &Service, port: u32| {
            let mut buf = Vec::new();
            listener::encode_routes(
                &listener::service_routes(index, proxy, service, port),
                &mut buf,
            );
            Bytes::from(buf)
        };
        // A push changes a host or a few: comparing names is cheaper than hashing each host's.
        let concerned = |hostname: &String| {
            if changed.len() <= 8 {
                changed.iter().any(|c| c == hostname)
            } else {
                changed.contains(hostname)
            }
        };
        for (name, host) in old.vhds_hosts.iter() {
            if !concerned(&host.hostname) {
                continue;
            }
            let Some(service) = index.services.services.get(&host.hostname) else {
                continue;
            };
            let rebuilt = VhdsHost::encode(
                host.hostname.clone(),
                host.port,
                name.clone(),
                host.domains.clone(),
                &routes(service, host.port),
                host.trailing.clone(),
            );
            maps.0[at].insert(name.clone(), rebuilt.resource.clone());
            vhds_hosts.insert(name.clone(), Arc::new(rebuilt));
        }
        SharedPart {
            maps,
            warnings: old.warnings.clone(),
            service_routes: old.service_routes.clone(),
            stale_routes: old.stale_routes.union(changed).cloned().collect(),
            vhds_hosts,
            ..SharedPart::default()
        }
    }

    /// The snapshot of `proxy` at `version`, and what could not be generated for it.
    pub fn snapshot(&self, proxy: &Proxy, version: &str) -> (Snapshot, Vec<String>) {
        let index = self.index;
        let scope = ScopeKey {
            namespace: proxy.namespace.clone(),
            sidecar: index
                .sidecar_for(proxy)
                .map(|s| format!("{}/{}", s.namespace, s.name)),
            placement: locality::Placement::of(&proxy.labels, &self.priority_labels),
        };
        let mut services = None;
        let mut visible = || {
            services
                .get_or_insert_with(|| visible_services(index, proxy))
                .clone()
        };
        let mut built = lock(&self.built);
        let built = &mut *built;
        let mut parts = vec![self.scope_clusters(proxy, &scope, &mut visible, built)];
        if proxy.kind == ProxyType::Sidecar {
            let key = RouteKey {
                scope,
                interception: proxy.interception,
                vhds: proxy.vhds,
                sources: index.source_signature(proxy),
            };
            let part = match built.routes.get(&key) {
                Some(part) => part.clone(),
                None => {
                    let previous = self.previous.routes.get(&key);
                    let part = match (previous, &self.route_change) {
                        (Some(old), RouteChange::Nothing) => old.clone(),
                        // Without capture the part is the table alone; a captured sidecar's
                        // part also holds per-port listeners, which a VirtualService's TCP and
                        // TLS routes and DestinationRules shape: when those changed, it is
                        // built again the whole way.
                        (Some(old), RouteChange::Hosts(changed))
                            if proxy.vhds
                                && (proxy.interception == Interception::None
                                    || self.listener_rules_unchanged)
                                && self.services_unchanged
                                && !old.vhds_hosts.is_empty() =>
                        {
                            Arc::new(self.vhds_hosts_changed(proxy, old, changed))
                        }
                        _ => Arc::new(self.route_part(proxy, &visible(), previous.map(|p| &**p))),
                    };
                    built.routes.insert(key, part.clone());
                    part
                }
            };
            parts.push(part);
        }
        let own = own_resources(index, proxy);
        let mut warnings = own.warnings.clone();
        if proxy.vhds_over_sotw {
            warnings.push(crate::node::VHDS_OVER_SOTW.to_owned());
        }
        for part in &parts {
            warnings.extend(part.warnings.iter().cloned());
        }
        let own = TypeMaps::of(own.packed());
        let mut snapshot = Snapshot::new(version);
        for (i, url) in TYPES.iter().enumerate() {
            // The shared layers are the very maps other proxies (and the last push) hold; the
            // proxy's own resources are a small layer beside them, not merged into a copy.
            let layers = parts.iter().flat_map(|p| p.maps.layers(i));
            let map = LayeredMap::of(layers.chain(own.layers(i)));
            if always_present(url) || !map.is_empty() {
                snapshot.set_resources(*url, map);
            }
        }
        (snapshot, warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(range: std::ops::Range<u32>, v: u32) -> BTreeMap<String, u32> {
        range.map(|i| (format!("host-{i:04}"), v)).collect()
    }

    #[test]
    fn shards_split_by_size_and_a_change_copies_one() {
        let whole = Shards::split(map(0..50, 0));
        assert_eq!(whole.maps.len(), 1, "small maps stay whole");
        let shards = Shards::split(map(0..200, 0));
        assert_eq!(
            shards.maps.iter().map(|m| m.len()).collect::<Vec<_>>(),
            [64, 64, 64, 8]
        );
        assert!(shards.iter().map(|(n, _)| n).is_sorted());
        let mut changed = shards.clone();
        changed.insert("host-0100".into(), 1);
        changed.remove("host-0150");
        changed.insert("host-0150x".into(), 2);
        let copied: Vec<usize> = (0..4)
            .filter(|&i| !Arc::ptr_eq(&shards.maps[i], &changed.maps[i]))
            .collect();
        assert_eq!(copied, [1, 2]);
        assert_eq!(changed.get("host-0100"), Some(&1));
        assert_eq!(changed.get("host-0150"), None);
        assert_eq!(changed.get("host-0150x"), Some(&2));
        assert_eq!(changed.get("host-0199"), Some(&0));
        // Split again over the same ranges, equal shards are taken whole.
        let mut again = Shards::split_like(map(0..200, 0), &shards);
        again.reuse(&shards, |a, b| a == b);
        assert!((0..4).all(|i| Arc::ptr_eq(&again.maps[i], &shards.maps[i])));
        // A grown map keeps the ranges (new names fall in the last one).
        let grown = Shards::split_like(map(0..300, 0), &shards);
        assert_eq!(grown.bounds, shards.bounds);
        assert_eq!(grown.maps[3].len(), 108);
    }
}
