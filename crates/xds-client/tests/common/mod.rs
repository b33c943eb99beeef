//! Resources, a recording consumer and helpers shared by the tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use xds_api::any::pack;
use xds_api::pb::envoy::config::cluster::v3::Cluster;
use xds_api::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, EdsClusterConfig,
};
use xds_api::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ConfigSource, Node, SocketAddress, address,
    config_source::ConfigSourceSpecifier, socket_address::PortSpecifier,
};
use xds_api::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint::HostIdentifier,
};
use xds_api::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use xds_api::pb::envoy::config::route::v3::{RouteConfiguration, Vhds, VirtualHost};
use xds_api::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, Rds, http_connection_manager::RouteSpecifier,
};
use xds_api::pb::google::protobuf::{Any, Duration};
use xds_client::{Consumer, Rejection, ResourceSet, ResourceType, Resources};

pub const NODE_ID: &str = "sidecar~10.1.1.1~reviews-v1-abc.default~default.svc.cluster.local";

pub fn node() -> Node {
    Node {
        id: NODE_ID.into(),
        cluster: "reviews.default".into(),
        ..Default::default()
    }
}

fn ads() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(
            ConfigSourceSpecifier::Ads(AggregatedConfigSource::default()),
        ),
        ..Default::default()
    }
}

fn socket(ip: &str, port: u32) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.into(),
            port_specifier: Some(PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    }
}

/// An EDS cluster, as istiod makes them (but for the `initial_fetch_timeout` istiod sets).
pub fn cluster(name: &str) -> Cluster {
    Cluster {
        name: name.into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: name.into(),
        }),
        ..Default::default()
    }
}

/// [`cluster`], waiting `seconds` for its endpoints during the initial fetch (0: for ever, as istiod
/// sets it).
pub fn cluster_fetching(name: &str, seconds: i64) -> Cluster {
    let mut c = cluster(name);
    if let Some(eds) = c
        .eds_cluster_config
        .as_mut()
        .and_then(|e| e.eds_config.as_mut())
    {
        eds.initial_fetch_timeout = Some(Duration { seconds, nanos: 0 });
    }
    c
}

pub fn cla(cluster: &str, port: u32) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: cluster.into(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: vec![LbEndpoint {
                host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                    address: Some(socket("127.0.0.1", port)),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A listener on `port` whose HTTP connection manager loads `route` over RDS.
pub fn listener(name: &str, port: u32, route: &str) -> Listener {
    let hcm = HttpConnectionManager {
        stat_prefix: name.into(),
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: route.into(),
        })),
        ..Default::default()
    };
    Listener {
        name: name.into(),
        address: Some(socket("0.0.0.0", port)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(pack(&hcm))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A listener the test consumer rejects: it has no address.
pub fn bad_listener(name: &str) -> Listener {
    Listener {
        address: None,
        ..listener(name, 0, "unused")
    }
}

pub fn route(name: &str) -> RouteConfiguration {
    RouteConfiguration {
        name: name.into(),
        virtual_hosts: vec![VirtualHost {
            name: format!("{name}-vh"),
            domains: vec!["*".into()],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A route configuration with no virtual hosts of its own, loading them over VHDS (ADS).
pub fn route_with_vhds(name: &str) -> RouteConfiguration {
    RouteConfiguration {
        name: name.into(),
        vhds: Some(Vhds {
            config_source: Some(ads()),
        }),
        ..Default::default()
    }
}

/// A VHDS virtual host named `name` (`<route configuration>/<host>`) for `domain`.
pub fn vhost(name: &str, domain: &str) -> VirtualHost {
    VirtualHost {
        name: name.into(),
        domains: vec![domain.into()],
        ..Default::default()
    }
}

/// What the recording consumer saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Every accepted set, in order.
    pub accepted: Vec<Resources>,
    /// Every call to `apply`, accepted or not.
    pub calls: usize,
    /// The accepted names per type.
    pub current: BTreeMap<ResourceType, Vec<String>>,
    /// How many times `initial_config_complete` was called.
    pub complete: usize,
    /// The type of every accepted set, in order.
    pub order: Vec<ResourceType>,
}

/// A consumer that validates like a proxy would (a listener needs an address) and records what it
/// accepted.
#[derive(Debug, Clone, Default)]
pub struct Recorder(pub Arc<Mutex<Seen>>);

impl Recorder {
    pub fn names(&self, ty: ResourceType) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .current
            .get(&ty)
            .cloned()
            .unwrap_or_default()
    }
    pub fn complete(&self) -> usize {
        self.0.lock().unwrap().complete
    }
    pub fn calls(&self) -> usize {
        self.0.lock().unwrap().calls
    }
    pub fn order(&self) -> Vec<ResourceType> {
        self.0.lock().unwrap().order.clone()
    }
}

impl Consumer for Recorder {
    fn apply(&mut self, set: ResourceSet<'_>) -> Result<(), Vec<Rejection>> {
        let resources = set.to_resources();
        let mut seen = self.0.lock().unwrap();
        seen.calls += 1;
        if let Resources::Listeners(ls) = &resources {
            let bad: Vec<Rejection> = ls
                .iter()
                .filter(|l| l.address.is_none())
                .map(|l| Rejection::new(l.name.clone(), "listener has no address"))
                .collect();
            if !bad.is_empty() {
                return Err(bad);
            }
        }
        let ty = resources.resource_type();
        seen.current.insert(
            ty,
            resources.names().into_iter().map(str::to_owned).collect(),
        );
        seen.order.push(ty);
        seen.accepted.push(resources);
        Ok(())
    }

    fn initial_config_complete(&mut self) {
        self.0.lock().unwrap().complete += 1;
    }
}

pub fn any_of<T: prost::Message + prost::Name>(r: &T) -> Any {
    pack(r)
}

/// A CDS+EDS+LDS+RDS set: clusters a and b, one listener routing with "80".
pub fn mesh() -> BTreeMap<&'static str, Vec<(String, Any)>> {
    let mut m = BTreeMap::new();
    m.insert(
        ResourceType::Cluster.type_url(),
        vec![
            ("a".to_owned(), pack(&cluster("a"))),
            ("b".to_owned(), pack(&cluster("b"))),
        ],
    );
    m.insert(
        ResourceType::Endpoints.type_url(),
        vec![
            ("a".to_owned(), pack(&cla("a", 9001))),
            ("b".to_owned(), pack(&cla("b", 9002))),
        ],
    );
    m.insert(
        ResourceType::Listener.type_url(),
        vec![("http".to_owned(), pack(&listener("http", 8080, "80")))],
    );
    m.insert(
        ResourceType::Route.type_url(),
        vec![("80".to_owned(), pack(&route("80")))],
    );
    m
}
