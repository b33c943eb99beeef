//! DestinationRule `loadBalancer.consistentHash` → the route action's `hash_policy`, as istiod does
//! it: each destination of a route contributes the hash key of its DestinationRule (the subset's
//! port-level setting, else the subset's, else the port-level one, else the top-level one; port
//! levels only when the destination names a port), so a route with several weighted destinations
//! carries several policies. A route to one hashed destination retries without
//! `previous_hosts` (the key, not the retry, picks the host), unless the VirtualService asks for it.
//! The cluster side (RING_HASH / MAGLEV) is in `cluster.rs`.

use mesh_api::types::destination_rule::{ConsistentHashLb, TrafficPolicy};
use mesh_api::types::virtual_service::{Destination, HttpRetry, HttpRoute};
use mesh_api::validate::common::parse_duration;
use xds_api::pb::envoy::config::route::v3::{
    RetryPolicy, Route, RouteAction,
    route::Action,
    route_action::{
        HashPolicy,
        hash_policy::{
            ConnectionProperties, Cookie, CookieAttribute, Header, PolicySpecifier, QueryParameter,
        },
    },
};

use crate::generate::route::{RouteContext, default_route, duration, outbound_cluster};
use crate::model::Service;

impl RouteContext<'_> {
    /// Adds the hash policies of `http`'s destinations to its route `action` (weighted
    /// destinations of weight 0 are left out, as their clusters are).
    pub fn apply_hash_policies(&self, http: &HttpRoute, namespace: &str, action: &mut RouteAction) {
        let destinations: Vec<&Destination> = http
            .route
            .iter()
            .filter(|d| http.route.len() == 1 || d.weight.unwrap_or(0) > 0)
            .filter_map(|d| d.destination.as_ref())
            .collect();
        let hashes: Vec<ConsistentHashLb> = destinations
            .iter()
            .filter_map(|d| self.destination_hash(d, namespace))
            .collect();
        action.hash_policy = hashes.iter().filter_map(hash_policy).collect();
        if http.route.len() == 1 && !hashes.is_empty() {
            drop_previous_hosts(&mut action.retry_policy, http.retries.as_ref());
        }
    }

    /// The consistent hash that applies to a VirtualService destination (in `namespace`), if its
    /// DestinationRule has one.
    pub fn destination_hash(&self, d: &Destination, namespace: &str) -> Option<ConsistentHashLb> {
        let host = self
            .index
            .services
            .resolve(d.host.as_deref().unwrap_or_default(), namespace);
        let service_namespace = self
            .index
            .services
            .get(&host)
            .map_or(namespace, |s| s.namespace.as_str());
        let dr = self
            .index
            .destination_rule(&host, &self.proxy.namespace, service_namespace)?;
        let port = d.port.as_ref().and_then(|p| p.number);
        let top = dr.spec.traffic_policy.as_ref();
        let subset = d.subset.as_deref().and_then(|name| {
            dr.spec
                .subsets
                .iter()
                .find(|s| s.name.as_deref() == Some(name))
                .and_then(|s| s.traffic_policy.as_ref())
        });
        let port_level = |p: Option<&TrafficPolicy>| {
            p?.port_level_settings
                .iter()
                .find(|s| port.is_some() && s.port.as_ref().and_then(|p| p.number) == port)?
                .load_balancer
                .as_ref()?
                .consistent_hash
                .clone()
        };
        let own = |p: Option<&TrafficPolicy>| p?.load_balancer.as_ref()?.consistent_hash.clone();
        port_level(subset)
            .or_else(|| own(subset))
            .or_else(|| port_level(top))
            .or_else(|| own(top))
    }

    /// The route of a service port that no VirtualService routes: everything to the service's
    /// cluster, with the hash policy of its DestinationRule (top level, or the port's).
    pub fn service_default_route(&self, service: &Service) -> Route {
        let mut route = default_route(&outbound_cluster(self.port, "", &service.hostname));
        let hash = self
            .index
            .destination_rule(&service.hostname, &self.proxy.namespace, &service.namespace)
            .and_then(|dr| dr.spec.traffic_policy.as_ref())
            .and_then(|top| {
                let port_level = top
                    .port_level_settings
                    .iter()
                    .find(|s| s.port.as_ref().and_then(|p| p.number) == Some(self.port))
                    .and_then(|s| s.load_balancer.as_ref()?.consistent_hash.clone());
                port_level.or_else(|| top.load_balancer.as_ref()?.consistent_hash.clone())
            });
        if let (Some(hash), Some(Action::Route(action))) = (hash, route.action.as_mut()) {
            action.hash_policy.extend(hash_policy(&hash));
            drop_previous_hosts(&mut action.retry_policy, None);
        }
        route
    }
}

/// Envoy's hash policy for an Istio consistent hash; `None` when it names no key (a ring or
/// Maglev table alone: Envoy then picks at random).
pub fn hash_policy(hash: &ConsistentHashLb) -> Option<HashPolicy> {
    let specifier = if let Some(name) = &hash.http_header_name {
        PolicySpecifier::Header(Header {
            header_name: name.clone(),
            ..Default::default()
        })
    } else if let Some(cookie) = &hash.http_cookie {
        PolicySpecifier::Cookie(Cookie {
            name: cookie.name.clone().unwrap_or_default(),
            ttl: cookie
                .ttl
                .as_deref()
                .and_then(|t| parse_duration(t).ok())
                .map(duration),
            path: cookie.path.clone().unwrap_or_default(),
            attributes: cookie
                .attributes
                .iter()
                .map(|a| CookieAttribute {
                    name: a.name.clone().unwrap_or_default(),
                    value: a.value.clone().unwrap_or_default(),
                })
                .collect(),
        })
    } else if let Some(source_ip) = hash.use_source_ip {
        PolicySpecifier::ConnectionProperties(ConnectionProperties { source_ip })
    } else if let Some(name) = &hash.http_query_parameter_name {
        PolicySpecifier::QueryParameter(QueryParameter { name: name.clone() })
    } else {
        return None;
    };
    Some(HashPolicy {
        policy_specifier: Some(specifier),
        terminal: false,
    })
}

/// Istio's retries for a hashed route: no `previous_hosts` predicate unless `retries` sets
/// `retryIgnorePreviousHosts` itself.
pub fn drop_previous_hosts(policy: &mut Option<RetryPolicy>, retries: Option<&HttpRetry>) {
    if retries.is_some_and(|r| r.retry_ignore_previous_hosts.is_some()) {
        return;
    }
    if let Some(p) = policy {
        p.retry_host_predicate.clear();
    }
}
