//! The xDS resource types the client understands, decoded and typed, and the names one type's resources
//! make the client subscribe to in another (EDS after CDS, RDS after LDS, VHDS after an RDS table with
//! `vhds`).

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use xds_api::pb::envoy::config::cluster::v3::Cluster;
use xds_api::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use xds_api::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use xds_api::pb::envoy::config::listener::v3::{Filter, Listener, filter};
use xds_api::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
use xds_api::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, Rds, http_connection_manager::RouteSpecifier,
};
use xds_api::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use xds_api::pb::google::protobuf::Any;
use xds_api::{any, secrets, type_url};

/// One of the xDS resource types the client subscribes to over ADS.
///
/// The order of the variants is the order Envoy warms them in and the order requests go out on a new
/// stream: clusters, their endpoints, listeners, their routes, the routes' virtual hosts, then secrets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    /// CDS: `envoy.config.cluster.v3.Cluster`.
    Cluster,
    /// EDS: `envoy.config.endpoint.v3.ClusterLoadAssignment`.
    Endpoints,
    /// LDS: `envoy.config.listener.v3.Listener`.
    Listener,
    /// RDS: `envoy.config.route.v3.RouteConfiguration`.
    Route,
    /// VHDS: `envoy.config.route.v3.VirtualHost`, named `<route configuration>/<anything>` (delta only).
    VirtualHost,
    /// SDS: `envoy.extensions.transport_sockets.tls.v3.Secret`.
    Secret,
}

impl ResourceType {
    /// Every type, in warming order.
    pub const ALL: [ResourceType; 6] = [
        ResourceType::Cluster,
        ResourceType::Endpoints,
        ResourceType::Listener,
        ResourceType::Route,
        ResourceType::VirtualHost,
        ResourceType::Secret,
    ];

    /// The `type.googleapis.com/…` URL of this type.
    pub fn type_url(self) -> &'static str {
        match self {
            ResourceType::Cluster => type_url::CLUSTER,
            ResourceType::Endpoints => type_url::CLUSTER_LOAD_ASSIGNMENT,
            ResourceType::Listener => type_url::LISTENER,
            ResourceType::Route => type_url::ROUTE_CONFIGURATION,
            ResourceType::VirtualHost => type_url::VIRTUAL_HOST,
            ResourceType::Secret => type_url::SECRET,
        }
    }

    /// The type a URL names, if the client understands it.
    pub fn from_type_url(url: &str) -> Option<ResourceType> {
        ResourceType::ALL.into_iter().find(|t| t.type_url() == url)
    }

    /// Whether the client subscribes to every resource of this type (LDS, CDS, and VHDS once a route
    /// configuration asks for it) rather than to names. For these types a state-of-the-world response
    /// is the complete set: what it omits is removed.
    pub fn is_wildcard(self) -> bool {
        matches!(
            self,
            ResourceType::Cluster | ResourceType::Listener | ResourceType::VirtualHost
        )
    }

    /// The short name operators know (`CDS`, `EDS`, `LDS`, `RDS`, `VHDS`, `SDS`).
    pub fn short_name(self) -> &'static str {
        match self {
            ResourceType::Cluster => "CDS",
            ResourceType::Endpoints => "EDS",
            ResourceType::Listener => "LDS",
            ResourceType::Route => "RDS",
            ResourceType::VirtualHost => "VHDS",
            ResourceType::Secret => "SDS",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short_name())
    }
}

/// One decoded resource, shared: the accepted set is handed to the consumer on every update, and a
/// partial update (EDS, RDS) keeps most of it, so copies are pointers, not messages.
#[derive(Clone, Debug, PartialEq)]
pub enum Resource {
    Cluster(Arc<Cluster>),
    Endpoints(Arc<ClusterLoadAssignment>),
    Listener(Arc<Listener>),
    Route(Arc<RouteConfiguration>),
    VirtualHost(Arc<VirtualHost>),
    Secret(Arc<Secret>),
}

impl Resource {
    /// Decodes `any` as a resource of type `ty`; the `Any`'s own type URL must agree.
    pub fn decode(ty: ResourceType, any: &Any) -> Result<Resource, String> {
        let r = match ty {
            ResourceType::Cluster => any::unpack(any).map(|r| Resource::Cluster(Arc::new(r))),
            ResourceType::Endpoints => any::unpack(any).map(|r| Resource::Endpoints(Arc::new(r))),
            ResourceType::Listener => any::unpack(any).map(|r| Resource::Listener(Arc::new(r))),
            ResourceType::Route => any::unpack(any).map(|r| Resource::Route(Arc::new(r))),
            ResourceType::VirtualHost => {
                any::unpack(any).map(|r| Resource::VirtualHost(Arc::new(r)))
            }
            ResourceType::Secret => any::unpack(any).map(|r| Resource::Secret(Arc::new(r))),
        };
        r.map_err(|e| e.to_string())
    }

    /// The resource's name: `name`, or `cluster_name` for a `ClusterLoadAssignment`.
    pub fn name(&self) -> &str {
        match self {
            Resource::Cluster(c) => &c.name,
            Resource::Endpoints(e) => &e.cluster_name,
            Resource::Listener(l) => &l.name,
            Resource::Route(r) => &r.name,
            Resource::VirtualHost(v) => &v.name,
            Resource::Secret(s) => &s.name,
        }
    }

    /// The type of this resource.
    pub fn resource_type(&self) -> ResourceType {
        match self {
            Resource::Cluster(_) => ResourceType::Cluster,
            Resource::Endpoints(_) => ResourceType::Endpoints,
            Resource::Listener(_) => ResourceType::Listener,
            Resource::Route(_) => ResourceType::Route,
            Resource::VirtualHost(_) => ResourceType::VirtualHost,
            Resource::Secret(_) => ResourceType::Secret,
        }
    }
}

/// The complete current set of one type's resources, sorted by name, as handed to
/// [`Consumer::apply`](crate::Consumer::apply).
#[derive(Clone, Debug, PartialEq)]
pub enum Resources {
    Clusters(Vec<Arc<Cluster>>),
    Endpoints(Vec<Arc<ClusterLoadAssignment>>),
    Listeners(Vec<Arc<Listener>>),
    Routes(Vec<Arc<RouteConfiguration>>),
    /// Every VHDS virtual host held, whatever route configuration it names; see [`vhds_namespace`].
    VirtualHosts(Vec<Arc<VirtualHost>>),
    Secrets(Vec<Arc<Secret>>),
}

impl Resources {
    /// An empty set of type `ty`.
    pub fn empty(ty: ResourceType) -> Resources {
        match ty {
            ResourceType::Cluster => Resources::Clusters(Vec::new()),
            ResourceType::Endpoints => Resources::Endpoints(Vec::new()),
            ResourceType::Listener => Resources::Listeners(Vec::new()),
            ResourceType::Route => Resources::Routes(Vec::new()),
            ResourceType::VirtualHost => Resources::VirtualHosts(Vec::new()),
            ResourceType::Secret => Resources::Secrets(Vec::new()),
        }
    }

    /// Collects resources of type `ty`; any of another type is skipped (the client never mixes them).
    pub fn collect<'a>(
        ty: ResourceType,
        items: impl IntoIterator<Item = &'a Resource>,
    ) -> Resources {
        let mut out = Resources::empty(ty);
        for item in items {
            match (&mut out, item) {
                (Resources::Clusters(v), Resource::Cluster(r)) => v.push(r.clone()),
                (Resources::Endpoints(v), Resource::Endpoints(r)) => v.push(r.clone()),
                (Resources::Listeners(v), Resource::Listener(r)) => v.push(r.clone()),
                (Resources::Routes(v), Resource::Route(r)) => v.push(r.clone()),
                (Resources::VirtualHosts(v), Resource::VirtualHost(r)) => v.push(r.clone()),
                (Resources::Secrets(v), Resource::Secret(r)) => v.push(r.clone()),
                _ => {}
            }
        }
        out
    }

    /// The type of these resources.
    pub fn resource_type(&self) -> ResourceType {
        match self {
            Resources::Clusters(_) => ResourceType::Cluster,
            Resources::Endpoints(_) => ResourceType::Endpoints,
            Resources::Listeners(_) => ResourceType::Listener,
            Resources::Routes(_) => ResourceType::Route,
            Resources::VirtualHosts(_) => ResourceType::VirtualHost,
            Resources::Secrets(_) => ResourceType::Secret,
        }
    }

    /// How many resources the set holds.
    pub fn len(&self) -> usize {
        match self {
            Resources::Clusters(v) => v.len(),
            Resources::Endpoints(v) => v.len(),
            Resources::Listeners(v) => v.len(),
            Resources::Routes(v) => v.len(),
            Resources::VirtualHosts(v) => v.len(),
            Resources::Secrets(v) => v.len(),
        }
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The names of the resources, in order.
    pub fn names(&self) -> Vec<&str> {
        match self {
            Resources::Clusters(v) => v.iter().map(|r| r.name.as_str()).collect(),
            Resources::Endpoints(v) => v.iter().map(|r| r.cluster_name.as_str()).collect(),
            Resources::Listeners(v) => v.iter().map(|r| r.name.as_str()).collect(),
            Resources::Routes(v) => v.iter().map(|r| r.name.as_str()).collect(),
            Resources::VirtualHosts(v) => v.iter().map(|r| r.name.as_str()).collect(),
            Resources::Secrets(v) => v.iter().map(|r| r.name.as_str()).collect(),
        }
    }
}

/// A resource the consumer (or the client, when it does not decode) rejected, and why. It becomes one
/// `name: reason` line of the NACK's `error_detail`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub name: String,
    pub reason: String,
}

impl Rejection {
    pub fn new(name: impl Into<String>, reason: impl Into<String>) -> Rejection {
        Rejection {
            name: name.into(),
            reason: reason.into(),
        }
    }
}

impl From<(String, String)> for Rejection {
    fn from((name, reason): (String, String)) -> Rejection {
        Rejection { name, reason }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.reason)
    }
}

pub use xds_api::config_source::{
    DEFAULT_INITIAL_FETCH_TIMEOUT, FetchTimeout, initial_fetch_timeout,
};

/// Names with the initial fetch timeout of each; a name several resources wait for is waited for as
/// long as the longest of them waits.
pub type Subscriptions = BTreeMap<String, FetchTimeout>;

fn wait_for(names: &mut Subscriptions, name: String, timeout: FetchTimeout) {
    let longer = |a: FetchTimeout, b: FetchTimeout| match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        _ => None,
    };
    names
        .entry(name)
        .and_modify(|t| *t = longer(*t, timeout))
        .or_insert(timeout);
}

/// The EDS service names of the clusters whose discovery type is EDS: `eds_cluster_config.service_name`,
/// or the cluster's name when that is empty (as Envoy does), each with its `eds_config`'s timeout.
pub fn eds_subscriptions<C: Borrow<Cluster>>(clusters: &[C]) -> Subscriptions {
    let mut names = Subscriptions::new();
    for c in clusters.iter().map(Borrow::borrow) {
        if c.cluster_discovery_type != Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)) {
            continue;
        }
        let config = c.eds_cluster_config.as_ref();
        let name = config
            .map(|e| e.service_name.as_str())
            .filter(|s| !s.is_empty())
            .unwrap_or(&c.name);
        let timeout = initial_fetch_timeout(config.and_then(|e| e.eds_config.as_ref()));
        wait_for(&mut names, name.to_owned(), timeout);
    }
    names
}

/// The secrets the clusters' and listeners' TLS contexts load over ADS (`sds_config: {ads: {}}`),
/// each with its `sds_config`'s timeout.
pub fn sds_subscriptions<C: Borrow<Cluster>, L: Borrow<Listener>>(
    clusters: &[C],
    listeners: &[L],
) -> Subscriptions {
    let sockets = clusters
        .iter()
        .flat_map(|c| secrets::cluster_transport_sockets(c.borrow()))
        .chain(
            listeners
                .iter()
                .flat_map(|l| secrets::listener_transport_sockets(l.borrow())),
        );
    let mut names = Subscriptions::new();
    for config in sockets.flat_map(secrets::sds_secret_configs) {
        if secrets::SecretSource::of(&config) == secrets::SecretSource::Ads {
            let timeout = initial_fetch_timeout(config.sds_config.as_ref());
            wait_for(&mut names, config.name, timeout);
        }
    }
    names
}

/// The route configuration names the listeners' HTTP connection managers load over RDS, each with
/// its `config_source`'s timeout.
///
/// An HCM whose `typed_config` does not decode is skipped here: the consumer rejects that listener.
pub fn rds_subscriptions<L: Borrow<Listener>>(listeners: &[L]) -> Subscriptions {
    let mut names = Subscriptions::new();
    for l in listeners.iter().map(Borrow::borrow) {
        let chains = l
            .filter_chains
            .iter()
            .chain(l.default_filter_chain.as_ref());
        for filter in chains.flat_map(|c| c.filters.iter()) {
            if let Some(rds) = hcm_rds(filter) {
                let timeout = initial_fetch_timeout(rds.config_source.as_ref());
                wait_for(&mut names, rds.route_config_name, timeout);
            }
        }
    }
    names
}

/// The route configurations (by name) that load more virtual hosts over VHDS (`vhds` set), each
/// with its VHDS `config_source`'s timeout.
pub fn vhds_route_configs<R: Borrow<RouteConfiguration>>(routes: &[R]) -> Subscriptions {
    routes
        .iter()
        .map(Borrow::borrow)
        .filter_map(|r| {
            let vhds = r.vhds.as_ref()?;
            Some((
                r.name.clone(),
                initial_fetch_timeout(vhds.config_source.as_ref()),
            ))
        })
        .collect()
}

/// The route configuration a VHDS resource belongs to: its name up to the last `/`
/// (`8080/reviews.default.svc.cluster.local:8080` belongs to `8080`). A name with no `/` belongs to
/// none.
pub fn vhds_namespace(name: &str) -> Option<&str> {
    name.rsplit_once('/').map(|(namespace, _)| namespace)
}

/// The VHDS virtual hosts of the route configuration `route_config`, in name order (the order they
/// follow the table's own virtual hosts in). `vhosts` is sorted by name, as the client hands it over.
pub fn vhds_for<'a, V: Borrow<VirtualHost>>(
    vhosts: &'a [V],
    route_config: &'a str,
) -> impl Iterator<Item = &'a V> + 'a {
    vhosts.iter().filter(move |v| {
        vhds_namespace(&Borrow::<VirtualHost>::borrow(*v).name) == Some(route_config)
    })
}

fn hcm_rds(filter: &Filter) -> Option<Rds> {
    let Some(filter::ConfigType::TypedConfig(cfg)) = &filter.config_type else {
        return None;
    };
    if cfg.type_url != type_url::HTTP_CONNECTION_MANAGER {
        return None;
    }
    let hcm: HttpConnectionManager = any::unpack(cfg).ok()?;
    match hcm.route_specifier {
        Some(RouteSpecifier::Rds(rds)) if !rds.route_config_name.is_empty() => Some(rds),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use xds_api::pb::envoy::config::cluster::v3::cluster::EdsClusterConfig;
    use xds_api::pb::envoy::config::core::v3::ConfigSource;
    use xds_api::pb::envoy::config::listener::v3::FilterChain;
    use xds_api::pb::google::protobuf::Duration as ProtoDuration;

    /// An ADS config source with `initial_fetch_timeout` `seconds` (unset for `None`).
    fn ads_fetching(seconds: Option<i64>) -> ConfigSource {
        ConfigSource {
            initial_fetch_timeout: seconds.map(|seconds| ProtoDuration { seconds, nanos: 0 }),
            ..Default::default()
        }
    }

    #[test]
    fn type_urls_round_trip() {
        for t in ResourceType::ALL {
            assert_eq!(ResourceType::from_type_url(t.type_url()), Some(t));
        }
        assert_eq!(ResourceType::from_type_url("type.googleapis.com/x.Y"), None);
    }

    #[test]
    fn vhds_namespace_is_the_name_up_to_the_last_slash() {
        assert_eq!(
            vhds_namespace("8080/reviews.default.svc.cluster.local:8080"),
            Some("8080")
        );
        assert_eq!(vhds_namespace("a/b/c"), Some("a/b"));
        assert_eq!(vhds_namespace("/x"), Some(""));
        assert_eq!(vhds_namespace("no-slash"), None);
    }

    #[test]
    fn eds_names_use_service_name_or_cluster_name_and_wait_the_longest() {
        let eds = |name: &str, service: &str, timeout: Option<i64>| Cluster {
            name: name.into(),
            cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
            eds_cluster_config: Some(EdsClusterConfig {
                service_name: service.into(),
                eds_config: Some(ads_fetching(timeout)),
            }),
            ..Default::default()
        };
        let static_cluster = Cluster {
            name: "static".into(),
            ..Default::default()
        };
        let names = eds_subscriptions(&[
            eds("a", "", Some(1)),
            eds("b", "svc-b", Some(2)),
            eds("b2", "svc-b", Some(3)),
            eds("c", "", Some(3)),
            eds("c2", "c", Some(0)),
            eds("d", "", None),
            static_cluster,
        ]);
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(
            names,
            Subscriptions::from([
                ("a".into(), secs(1)),
                ("c".into(), None),
                ("d".into(), secs(15)),
                ("svc-b".into(), secs(3)),
            ])
        );
    }

    #[test]
    fn rds_names_from_hcm() {
        let hcm = HttpConnectionManager {
            route_specifier: Some(RouteSpecifier::Rds(Rds {
                route_config_name: "9080".into(),
                config_source: Some(ads_fetching(Some(0))),
            })),
            ..Default::default()
        };
        let l = Listener {
            name: "l".into(),
            filter_chains: vec![FilterChain {
                filters: vec![Filter {
                    name: "envoy.filters.network.http_connection_manager".into(),
                    config_type: Some(filter::ConfigType::TypedConfig(any::pack(&hcm))),
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            rds_subscriptions(&[l]),
            Subscriptions::from([("9080".into(), None)])
        );
    }
}
