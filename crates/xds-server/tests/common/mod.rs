//! Resources and snapshots shared by the tests.
#![allow(dead_code, clippy::unwrap_used)]

use xds_api::any::pack;
use xds_api::pb::envoy::config::cluster::v3::Cluster;
use xds_api::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, EdsClusterConfig,
};
use xds_api::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ApiVersion, ConfigSource, Node, SocketAddress, address,
    config_source::ConfigSourceSpecifier, socket_address::PortSpecifier,
};
use xds_api::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint::HostIdentifier,
};
use xds_api::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use xds_api::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route, route_action,
    route_match,
};
use xds_api::pb::envoy::extensions::filters::http::router::v3::Router;
use xds_api::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager::RouteSpecifier, http_filter,
};
use xds_api::pb::google::protobuf::{Struct, Value, value::Kind};
use xds_api::type_url;
use xds_server::Snapshot;

pub const NODE_ID: &str = "sidecar~10.1.1.1~reviews-v1-abc.default~default.svc.cluster.local";

pub const CDS: &str = type_url::CLUSTER;
pub const EDS: &str = type_url::CLUSTER_LOAD_ASSIGNMENT;
pub const LDS: &str = type_url::LISTENER;
pub const RDS: &str = type_url::ROUTE_CONFIGURATION;

/// A node as Istio's sidecars send it: id, cluster, LABELS and NAMESPACE metadata.
pub fn node() -> Node {
    let s = |v: &str| Value {
        kind: Some(Kind::StringValue(v.into())),
    };
    let labels = Struct {
        fields: [
            ("app".to_owned(), s("reviews")),
            ("version".to_owned(), s("v1")),
        ]
        .into_iter()
        .collect(),
    };
    Node {
        id: NODE_ID.into(),
        cluster: "reviews.default".into(),
        metadata: Some(Struct {
            fields: [
                (
                    "LABELS".to_owned(),
                    Value {
                        kind: Some(Kind::StructValue(labels)),
                    },
                ),
                ("NAMESPACE".to_owned(), s("default")),
            ]
            .into_iter()
            .collect(),
        }),
        ..Default::default()
    }
}

fn ads() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(
            ConfigSourceSpecifier::Ads(AggregatedConfigSource::default()),
        ),
        resource_api_version: ApiVersion::V3 as i32,
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

/// An EDS cluster over ADS, as istiod makes them.
pub fn cluster(name: &str) -> Cluster {
    Cluster {
        name: name.into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: name.into(),
        }),
        connect_timeout: Some(xds_api::pb::google::protobuf::Duration {
            seconds: 1,
            nanos: 0,
        }),
        ..Default::default()
    }
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

/// A listener on 127.0.0.1:`port` whose HTTP connection manager loads `route` over RDS (ADS).
pub fn listener(name: &str, port: u32, route: &str) -> Listener {
    let hcm = HttpConnectionManager {
        stat_prefix: name.into(),
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: route.into(),
        })),
        http_filters: vec![HttpFilter {
            name: "envoy.filters.http.router".into(),
            config_type: Some(http_filter::ConfigType::TypedConfig(pack(
                &Router::default(),
            ))),
            ..Default::default()
        }],
        ..Default::default()
    };
    Listener {
        name: name.into(),
        address: Some(socket("127.0.0.1", port)),
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

/// A listener Bosun's test consumer (and Envoy) rejects: it has no address.
pub fn bad_listener(name: &str) -> Listener {
    Listener {
        address: None,
        ..listener(name, 1, "unused")
    }
}

/// A route configuration sending every request to `cluster`.
pub fn route(name: &str, cluster: &str) -> RouteConfiguration {
    RouteConfiguration {
        name: name.into(),
        virtual_hosts: vec![VirtualHost {
            name: format!("{name}-vh"),
            domains: vec!["*".into()],
            routes: vec![Route {
                r#match: Some(RouteMatch {
                    path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
                    ..Default::default()
                }),
                action: Some(route::Action::Route(RouteAction {
                    cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                        cluster.into(),
                    )),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A CDS+EDS+LDS+RDS set: clusters a and b (endpoints on `port_a`, `port_b`), listener "http" on
/// `listen` routing everything with route "80" to a.
pub fn mesh(version: &str, listen: u32, port_a: u32, port_b: u32) -> Snapshot {
    Snapshot::new(version)
        .with("a", &cluster("a"))
        .with("b", &cluster("b"))
        .with("a", &cla("a", port_a))
        .with("b", &cla("b", port_b))
        .with("http", &listener("http", listen, "80"))
        .with("80", &route("80", "a"))
}
