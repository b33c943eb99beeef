//! Simulation, as istiod's tests do it: for some Istio YAML and one proxy, generate the proxy's xDS and
//! ask `proxy-model` — the same code the data plane routes with — which virtual host, route and
//! cluster a request would take. No network. Every generated resource must also convert cleanly into
//! the proxy's model (what `bosun proxy` would ACK).

use std::collections::BTreeMap;

use control::generate::{InboundAddressing, ProxyResources, generate};
use control::index::{Index, MeshSettings};
use control::node::{Interception, Proxy};
use control::store::{parse_config, parse_resources};
use http::HeaderMap;
use mesh_api::registry::load_registry_str;
use mesh_api::types::sidecar::OutboundTrafficPolicyMode;
use proxy_model::error::At;
use proxy_model::route::{Action, RequestView, RouteConfig, Target};
use xds_api::pb::envoy::config::core::v3::TrafficDirection;

const MESH: &str = "services:
- name: productpage
  ports: [{number: 9080, name: http, protocol: HTTP}]
- name: reviews
  ports: [{number: 9080, name: http, protocol: HTTP}]
- name: ratings
  ports: [{number: 9080, name: http, protocol: HTTP}]
- name: billing
  namespace: payments
  ports: [{number: 8080, name: http}]
workloads:
- {name: productpage-v1, service: productpage, labels: {app: productpage, version: v1}, address: 10.0.0.1}
- {name: reviews-v1, service: reviews, labels: {app: reviews, version: v1}, address: 10.0.0.2}
- {name: reviews-v2, service: reviews, labels: {app: reviews, version: v2}, address: 10.0.0.3}
- {name: reviews-v3, service: reviews, labels: {app: reviews, version: v3}, address: 10.0.0.4}
- {name: ratings-v1, service: ratings, labels: {app: ratings, version: v1}, address: 10.0.0.5}
- {name: billing-1, namespace: payments, service: billing, labels: {app: billing}, address: 10.0.1.1, sidecar: false}
- {name: gateway, namespace: istio-system, labels: {istio: ingressgateway}, address: 10.0.9.1}
";

const REVIEWS_DR: &str = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 7, connectTimeout: 250ms, tcpKeepalive: {time: 300s, interval: 30s}}
      http: {http1MaxPendingRequests: 3, maxRequestsPerConnection: 10}
    outlierDetection: {consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 50}
  subsets:
  - {name: v1, labels: {version: v1}}
  - name: v2
    labels: {version: v2}
    trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
  - {name: v3, labels: {version: v3}}
";

/// Requests of the user `jason` to reviews v2, the others to v1.
const JASON_TO_V2: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
";

fn index(yaml: &str, policy: OutboundTrafficPolicyMode) -> Index {
    let registry = load_registry_str(MESH).expect("mesh file");
    let parsed = parse_config("test.yaml", yaml).expect("valid config");
    let mut index = Index::build(
        &registry,
        &parsed.resources,
        MeshSettings {
            outbound_policy: policy,
            ..MeshSettings::default()
        },
    );
    index.secrets = parsed
        .secrets
        .into_iter()
        .map(|s| {
            (
                (s.namespace.clone(), s.name.clone()),
                std::sync::Arc::new(s),
            )
        })
        .collect();
    index
}

fn proxy(id: &str, labels: &[(&str, &str)]) -> Proxy {
    let mut p = Proxy::parse_id(id).expect("node id");
    p.labels = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    p.interception = Interception::None;
    p
}

fn productpage() -> Proxy {
    proxy(
        "sidecar~10.0.0.1~productpage-v1.default~default.svc.cluster.local",
        &[("app", "productpage"), ("version", "v1")],
    )
}

/// The secrets `r` sends over ADS, as the proxy holds them.
fn ads_secrets(r: &ProxyResources) -> proxy_model::tls::Secrets {
    proxy_model::tls::Secrets {
        ads: r
            .secrets
            .iter()
            .map(|s| (s.name.clone(), std::sync::Arc::new(s.clone())))
            .collect(),
        ..Default::default()
    }
}

/// Generates, and checks every resource converts into the proxy's model.
fn resources(index: &Index, proxy: &Proxy) -> ProxyResources {
    let r = generate(index, proxy, InboundAddressing::SidecarPort);
    // Built with the secrets the proxy would be sent over ADS, as the proxy builds them.
    let secrets = ads_secrets(&r);
    for c in &r.clusters {
        proxy_model::cluster::Cluster::from_proto_with(c, &At::root(&c.name), &secrets)
            .unwrap_or_else(|e| panic!("cluster {}: {e:?}", c.name));
    }
    for l in &r.listeners {
        proxy_model::listener::Listener::from_proto_with(l, &At::root(&l.name), &secrets)
            .unwrap_or_else(|e| panic!("listener {}: {e:?}", l.name));
    }
    for rc in &r.routes {
        RouteConfig::from_proto(rc, &At::root(&rc.name))
            .unwrap_or_else(|e| panic!("route {}: {e:?}", rc.name));
    }
    r
}

/// What a request would hit: (virtual host, route, action summary).
fn simulate(
    r: &ProxyResources,
    route_config: &str,
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<(String, String, String)> {
    simulate_method(r, route_config, "GET", authority, path, headers)
}

/// [`simulate`] for a request with `method` (`CONNECT` takes connect_matcher routes only).
fn simulate_method(
    r: &ProxyResources,
    route_config: &str,
    method: &str,
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<(String, String, String)> {
    let rc = r
        .route(route_config)
        .unwrap_or_else(|| panic!("no route config {route_config}"));
    let rc = RouteConfig::from_proto(rc, &At::root(route_config)).expect("converts");
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.insert(
            http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            v.parse().expect("value"),
        );
    }
    let view = RequestView {
        authority,
        path,
        method,
        headers: &map,
    };
    let (vh, route) = rc.select(&view)?;
    let action = match &route.action {
        Action::Forward(f) => match &f.target {
            Target::Cluster(c) => c.clone(),
            Target::Weighted { clusters, .. } => clusters
                .iter()
                .map(|(c, w)| format!("{c}={w}"))
                .collect::<Vec<_>>()
                .join(","),
            Target::Header(h) => format!("header:{h}"),
        },
        Action::Redirect(_) => "redirect".to_owned(),
        Action::DirectResponse { status, .. } => format!("direct:{status}"),
    };
    Some((vh.name.clone(), route.name.clone(), action))
}

fn cluster_of(r: &ProxyResources, authority: &str, path: &str, headers: &[(&str, &str)]) -> String {
    simulate(r, "15001", authority, path, headers)
        .map(|(_, _, a)| a)
        .unwrap_or_else(|| "no route".to_owned())
}

#[test]
fn content_based_routing_by_header_with_every_host_alias() {
    let vs = JASON_TO_V2;
    let index = index(
        &format!("{REVIEWS_DR}---\n{vs}"),
        OutboundTrafficPolicyMode::AllowAny,
    );
    let r = resources(&index, &productpage());
    let v1 = "outbound|9080|v1|reviews.default.svc.cluster.local";
    let v2 = "outbound|9080|v2|reviews.default.svc.cluster.local";
    for host in [
        "reviews:9080",
        "reviews.default:9080",
        "reviews.default.svc:9080",
        "reviews.default.svc.cluster.local:9080",
    ] {
        assert_eq!(
            cluster_of(&r, host, "/", &[("end-user", "jason")]),
            v2,
            "{host}"
        );
        assert_eq!(
            cluster_of(&r, host, "/", &[("end-user", "bob")]),
            v1,
            "{host}"
        );
        assert_eq!(cluster_of(&r, host, "/", &[]), v1, "{host}");
    }
    // Without a VirtualService: the service's own cluster.
    assert_eq!(
        cluster_of(&r, "ratings:9080", "/ratings/0", &[]),
        "outbound|9080||ratings.default.svc.cluster.local"
    );
    // A short name resolves only in the proxy's namespace; `billing` lives in `payments`.
    assert_eq!(
        cluster_of(&r, "billing.payments:8080", "/", &[]),
        "outbound|8080||billing.payments.svc.cluster.local"
    );
    let (vh, _, action) = simulate(&r, "15001", "billing:8080", "/", &[]).expect("a vhost");
    assert_eq!((vh.as_str(), action.as_str()), ("allow_any", "direct:502"));
}

#[test]
fn weights_and_istio_route_defaults() {
    let vs = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews.default.svc.cluster.local]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 90}
    - {destination: {host: reviews, subset: v3}, weight: 10}
";
    let index = index(
        &format!("{REVIEWS_DR}---\n{vs}"),
        OutboundTrafficPolicyMode::AllowAny,
    );
    let r = resources(&index, &productpage());
    assert_eq!(
        cluster_of(&r, "reviews:9080", "/", &[]),
        "outbound|9080|v1|reviews.default.svc.cluster.local=90,outbound|9080|v3|reviews.default.svc.cluster.local=10"
    );
    // Istio's defaults on every forwarded route: no timeout, 2 retries on connect failures, refused
    // streams and 503, another host each time.
    let rc = r.route("15001").expect("routes");
    let vh = rc
        .virtual_hosts
        .iter()
        .find(|v| v.name == "reviews.default.svc.cluster.local:9080")
        .expect("vhost");
    let Some(xds_api::pb::envoy::config::route::v3::route::Action::Route(action)) =
        &vh.routes[0].action
    else {
        panic!("a route action");
    };
    assert_eq!(action.timeout.as_ref().map(|t| t.seconds), Some(0));
    let retry = action.retry_policy.as_ref().expect("retry policy");
    assert_eq!(retry.num_retries.as_ref().map(|n| n.value), Some(2));
    assert_eq!(
        retry.retry_on,
        "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
    );
    assert_eq!(retry.retriable_status_codes, [503]);
    assert_eq!(retry.retry_host_predicate.len(), 1);
}

/// Over VHDS a sidecar's table keeps only its fixed hosts and names ADS as the source of the rest;
/// each service host is a resource `TABLE/HOST` (name and `VirtualHost.name` alike, as Envoy files
/// them). Put back together, as Envoy merges them, they route every request as the whole table does.
#[test]
fn over_vhds_the_table_is_its_hosts_sent_apart() {
    let vs = JASON_TO_V2;
    let index = index(
        &format!("{REVIEWS_DR}---\n{vs}"),
        OutboundTrafficPolicyMode::RegistryOnly,
    );
    let mut over_vhds = productpage();
    over_vhds.vhds = true;
    let whole = resources(&index, &productpage());
    let apart = generate(&index, &over_vhds, InboundAddressing::SidecarPort);
    assert!(whole.virtual_hosts.is_empty());
    let table = apart.route("15001").expect("table");
    let source = table.vhds.as_ref().and_then(|v| v.config_source.as_ref());
    assert!(
        matches!(
            source.and_then(|s| s.config_source_specifier.as_ref()),
            Some(
                xds_api::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier::Ads(_)
            )
        ),
        "{table:?}"
    );
    // The table keeps the catch-all; the services' hosts are sent apart.
    let inline: Vec<&str> = table
        .virtual_hosts
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(inline, ["block_all"]);
    let whole_table = whole.route("15001").expect("table");
    assert_eq!(
        apart.virtual_hosts.len() + 1,
        whole_table.virtual_hosts.len()
    );
    for vh in &apart.virtual_hosts {
        let host = vh.name.strip_prefix("15001/").expect("named TABLE/HOST");
        let same = whole_table
            .virtual_hosts
            .iter()
            .find(|w| w.name == host)
            .expect("the same host in the whole table");
        assert_eq!(
            xds_api::pb::envoy::config::route::v3::VirtualHost {
                name: host.to_owned(),
                ..vh.clone()
            },
            *same
        );
    }
    // Merged as Envoy merges them (the table's own hosts, then VHDS's), it routes the same.
    let mut merged = apart.clone();
    let rc = &mut merged
        .routes
        .iter_mut()
        .find(|r| r.name == "15001")
        .expect("table");
    rc.vhds = None;
    rc.virtual_hosts.extend(apart.virtual_hosts.iter().cloned());
    for (authority, headers) in [
        ("reviews:9080", &[("end-user", "jason")][..]),
        ("reviews:9080", &[][..]),
        ("ratings.default:9080", &[][..]),
        ("unknown.example:80", &[][..]),
    ] {
        let target = |r: &ProxyResources| {
            simulate(r, "15001", authority, "/", headers).map(|(_, route, action)| (route, action))
        };
        assert_eq!(target(&merged), target(&whole), "{authority} {headers:?}");
    }
}

#[test]
fn destination_rule_policies_per_subset() {
    let index = index(REVIEWS_DR, OutboundTrafficPolicyMode::AllowAny);
    let r = resources(&index, &productpage());
    use xds_api::pb::envoy::config::cluster::v3::cluster::LbPolicy;
    let v1 = r
        .cluster("outbound|9080|v1|reviews.default.svc.cluster.local")
        .expect("v1 cluster");
    let v2 = r
        .cluster("outbound|9080|v2|reviews.default.svc.cluster.local")
        .expect("v2 cluster");
    assert_eq!(
        v1.lb_policy,
        LbPolicy::LeastRequest as i32,
        "Istio's default"
    );
    assert_eq!(
        v2.lb_policy,
        LbPolicy::RoundRobin as i32,
        "the subset's own"
    );
    for c in [v1, v2] {
        let t = &c.circuit_breakers.as_ref().expect("breakers").thresholds[0];
        assert_eq!(t.max_connections.as_ref().map(|v| v.value), Some(7));
        assert_eq!(t.max_pending_requests.as_ref().map(|v| v.value), Some(3));
        assert_eq!(t.max_requests.as_ref().map(|v| v.value), Some(u32::MAX));
        assert_eq!(
            c.connect_timeout.as_ref().map(|d| d.nanos),
            Some(250_000_000)
        );
        let od = c.outlier_detection.as_ref().expect("outlier detection");
        assert_eq!(od.consecutive_5xx.as_ref().map(|v| v.value), Some(2));
        assert_eq!(
            od.enforcing_consecutive_5xx.as_ref().map(|v| v.value),
            Some(100)
        );
        assert_eq!(od.enforcing_success_rate.as_ref().map(|v| v.value), Some(0));
        assert_eq!(od.max_ejection_percent.as_ref().map(|v| v.value), Some(50));
        // tcpKeepalive as istiod writes it (whole seconds, probes left to the system), and as
        // bosun proxy reads it.
        let keepalive = c
            .upstream_connection_options
            .as_ref()
            .and_then(|o| o.tcp_keepalive.as_ref())
            .expect("tcp_keepalive");
        assert_eq!(
            keepalive.keepalive_time.as_ref().map(|v| v.value),
            Some(300)
        );
        assert_eq!(
            keepalive.keepalive_interval.as_ref().map(|v| v.value),
            Some(30)
        );
        assert_eq!(keepalive.keepalive_probes, None);
        let model =
            proxy_model::cluster::Cluster::from_proto(c, &At::root(&c.name)).expect("converts");
        assert_eq!(
            model.tcp_keepalive.map(|k| (k.time, k.interval, k.probes)),
            Some((
                Some(std::time::Duration::from_secs(300)),
                Some(std::time::Duration::from_secs(30)),
                None
            ))
        );
    }
    // Subset endpoints: by label, at each instance's sidecar inbound port.
    let eps = r
        .endpoints_of("outbound|9080|v2|reviews.default.svc.cluster.local")
        .expect("EDS");
    let addrs: Vec<String> = eps.endpoints[0]
        .lb_endpoints
        .iter()
        .map(|e| format!("{e:?}"))
        .collect();
    assert_eq!(addrs.len(), 1);
    assert!(
        addrs[0].contains("10.0.0.3") && addrs[0].contains("15006"),
        "{addrs:?}"
    );
    // No sidecar: the workload's own port.
    let billing = r
        .endpoints_of("outbound|8080||billing.payments.svc.cluster.local")
        .expect("EDS");
    let addr = format!("{:?}", billing.endpoints[0].lb_endpoints[0]);
    assert!(addr.contains("10.0.1.1") && addr.contains("8080"), "{addr}");
}

#[test]
fn source_labels_put_a_fault_only_in_that_clients_config() {
    let vs = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - match: [{sourceLabels: {app: reviews, version: v2}}]
    fault: {abort: {httpStatus: 500, percentage: {value: 50}}}
    route: [{destination: {host: ratings}}]
  - route: [{destination: {host: ratings}}]
";
    let index = index(vs, OutboundTrafficPolicyMode::AllowAny);
    let v2 = proxy(
        "sidecar~10.0.0.3~reviews-v2.default~default.svc.cluster.local",
        &[("app", "reviews"), ("version", "v2")],
    );
    let v1 = proxy(
        "sidecar~10.0.0.2~reviews-v1.default~default.svc.cluster.local",
        &[("app", "reviews"), ("version", "v1")],
    );
    let fault_routes = |p: &Proxy| -> Vec<u32> {
        let r = resources(&index, p);
        let rc = RouteConfig::from_proto(r.route("15001").expect("routes"), &At::root("15001"))
            .expect("converts");
        let vh = rc
            .virtual_hosts
            .iter()
            .find(|v| v.name.starts_with("ratings."))
            .expect("ratings vhost");
        vh.routes
            .iter()
            .filter_map(|r| r.fault.as_ref()?.abort.as_ref().map(|a| a.per_million))
            .collect()
    };
    assert_eq!(fault_routes(&v2), [500_000], "50% abort for reviews v2");
    assert!(
        fault_routes(&v1).is_empty(),
        "reviews v1 never sees the fault"
    );
}

#[test]
fn registry_only_and_sidecar_egress_scope() {
    let sidecar = "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  egress:
  - hosts: ['./*']
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
";
    let index = index(sidecar, OutboundTrafficPolicyMode::AllowAny);
    let r = resources(&index, &productpage());
    assert!(
        r.cluster("outbound|8080||billing.payments.svc.cluster.local")
            .is_none(),
        "another namespace is out of scope"
    );
    assert!(
        r.cluster("outbound|9080||reviews.default.svc.cluster.local")
            .is_some()
    );
    let (vh, _, action) =
        simulate(&r, "15001", "billing.payments:8080", "/", &[]).expect("catch-all");
    assert_eq!((vh.as_str(), action.as_str()), ("block_all", "direct:502"));
    let (vh, _, _) = simulate(&r, "15001", "www.example.com", "/", &[]).expect("catch-all");
    assert_eq!(vh, "block_all");
}

/// The explicit-proxy listener (15001) takes CONNECT (apps' HTTPS_PROXY): `CONNECT host:port` of a
/// service or ServiceEntry port, of any protocol, is tunnelled to `outbound|PORT||host`, the same
/// cluster a plain request to it takes; an unknown authority matches no route (404) under either
/// outbound policy.
#[test]
fn connect_through_the_explicit_proxy_goes_to_the_service_port() {
    let entry = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.example.com]
  location: MESH_EXTERNAL
  ports:
  - {number: 443, name: https, protocol: HTTPS}
  - {number: 5432, name: db, protocol: TCP}
  resolution: DNS
";
    for policy in [
        OutboundTrafficPolicyMode::RegistryOnly,
        OutboundTrafficPolicyMode::AllowAny,
    ] {
        let index = index(entry, policy);
        let r = resources(&index, &productpage());
        let connect = |authority: &str| {
            simulate_method(&r, "15001", "CONNECT", authority, "/", &[])
                .map(|(_, route, cluster)| format!("{route} {cluster}"))
        };
        assert_eq!(
            connect("api.example.com:443").as_deref(),
            Some("connect outbound|443||api.example.com")
        );
        assert_eq!(
            connect("api.example.com:5432").as_deref(),
            Some("connect outbound|5432||api.example.com")
        );
        assert_eq!(
            connect("reviews:9080").as_deref(),
            Some("connect outbound|9080||reviews.default.svc.cluster.local")
        );
        assert_eq!(connect("unknown.example.com:443"), None, "{policy:?}");
        // Plain requests still take the HTTP routes; a TLS port has none.
        assert_eq!(
            cluster_of(&r, "reviews:9080", "/", &[]),
            "outbound|9080||reviews.default.svc.cluster.local"
        );
        assert_eq!(
            cluster_of(&r, "api.example.com:443", "/", &[]),
            "direct:502",
            "a plain request to a TLS port is refused, not forwarded"
        );
        // The listener enables CONNECT (and WebSocket upgrades).
        let l = r
            .listeners
            .iter()
            .find(|l| l.name == "virtualOutbound")
            .expect("the explicit-proxy listener");
        let l = proxy_model::listener::Listener::from_proto(l, &At::root("l")).expect("converts");
        let proxy_model::listener::NetworkFilter::Http(hcm) = &l.filter_chains[0].network else {
            panic!("an HTTP connection manager");
        };
        assert_eq!(hcm.upgrades.get("CONNECT"), Some(true));
        assert_eq!(hcm.upgrades.get("websocket"), Some(true));
    }
}

#[test]
fn ingress_gateway_routes_bound_virtual_services() {
    let config = "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ['*']
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo}
spec:
  hosts: ['*']
  gateways: [bookinfo-gateway]
  http:
  - match: [{uri: {exact: /productpage}}, {uri: {prefix: /static}}]
    route: [{destination: {host: productpage, port: {number: 9080}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: mesh-only}
spec:
  hosts: [ratings]
  http:
  - route: [{destination: {host: ratings}}]
";
    let index = index(config, OutboundTrafficPolicyMode::AllowAny);
    let gw = proxy(
        "router~10.0.9.1~gateway.istio-system~istio-system.svc.cluster.local",
        &[("istio", "ingressgateway")],
    );
    let r = resources(&index, &gw);
    let listener = r.listener("0.0.0.0_8080").expect("gateway listener");
    assert!(format!("{:?}", listener.address).contains("10.0.9.1"));
    let hit = |path: &str| {
        simulate(&r, "http.8080", "bookinfo.example.com", path, &[]).map(|(_, _, a)| a)
    };
    let to_productpage = "outbound|9080||productpage.default.svc.cluster.local";
    assert_eq!(hit("/productpage").as_deref(), Some(to_productpage));
    assert_eq!(hit("/static/css/site.css").as_deref(), Some(to_productpage));
    assert_eq!(hit("/productpage/x"), None, "exact match only");
    assert!(
        r.route("15001").is_none(),
        "a gateway has no sidecar listener"
    );
    // The sidecar does not get the gateway's routes.
    let sidecar = resources(&index, &productpage());
    assert!(sidecar.listener("0.0.0.0_8080").is_none());
    assert_eq!(
        cluster_of(&sidecar, "ratings:9080", "/", &[]),
        "outbound|9080||ratings.default.svc.cluster.local"
    );
}

#[test]
fn inbound_listener_routes_to_the_workload() {
    let index = index("", OutboundTrafficPolicyMode::AllowAny);
    let r = resources(&index, &productpage());
    let inbound = r.listener("virtualInbound").expect("inbound listener");
    assert!(format!("{:?}", inbound.address).contains("15006"));
    // Which way traffic goes, as istiod says (`/drain_listeners?inboundonly` goes by it).
    assert_eq!(inbound.traffic_direction, TrafficDirection::Inbound as i32);
    let outbound = r.listener("virtualOutbound").expect("outbound listener");
    assert_eq!(
        outbound.traffic_direction,
        TrafficDirection::Outbound as i32
    );
    let c = r.cluster("inbound|9080||").expect("inbound cluster");
    let la = format!("{:?}", c.load_assignment);
    assert!(la.contains("10.0.0.1") && la.contains("9080"), "{la}");
    // Every proxy gets a BlackHoleCluster; the mesh has no PassthroughCluster without capture.
    assert!(r.cluster("BlackHoleCluster").is_some());
    let names: BTreeMap<&str, usize> = r.clusters.iter().fold(BTreeMap::new(), |mut m, c| {
        *m.entry(c.name.as_str()).or_default() += 1;
        m
    });
    assert!(names.values().all(|n| *n == 1), "cluster names are unique");
}

#[test]
fn captured_sidecars_route_by_port_and_host() {
    let vs = JASON_TO_V2;
    let index = index(
        &format!("{REVIEWS_DR}---\n{vs}"),
        OutboundTrafficPolicyMode::AllowAny,
    );
    let mut p = productpage();
    p.interception = Interception::Redirect;
    let r = resources(&index, &p);
    let outbound = r.listener("virtualOutbound").expect("virtualOutbound");
    assert_eq!(
        outbound.use_original_dst.as_ref().map(|b| b.value),
        Some(true)
    );
    let per_port = r.listener("0.0.0.0_9080").expect("per-port listener");
    assert_eq!(per_port.bind_to_port.as_ref().map(|b| b.value), Some(false));
    assert_eq!(
        per_port.traffic_direction,
        TrafficDirection::Outbound as i32
    );
    assert_eq!(
        outbound.traffic_direction,
        TrafficDirection::Outbound as i32
    );
    // Route table "9080": names without the port, which the listener already fixed.
    let v2 = "outbound|9080|v2|reviews.default.svc.cluster.local";
    let hit =
        |host: &str, h: &[(&str, &str)]| simulate(&r, "9080", host, "/", h).map(|(_, _, a)| a);
    assert_eq!(
        hit("reviews", &[("end-user", "jason")]).as_deref(),
        Some(v2)
    );
    assert_eq!(
        hit("reviews:9080", &[("end-user", "jason")]).as_deref(),
        Some(v2)
    );
    assert_eq!(
        hit("ratings.default.svc.cluster.local", &[]).as_deref(),
        Some("outbound|9080||ratings.default.svc.cluster.local")
    );
    // Unknown hosts pass through under ALLOW_ANY.
    assert_eq!(
        hit("example.com", &[]).as_deref(),
        Some("PassthroughCluster")
    );
    assert!(r.cluster("PassthroughCluster").is_some());
    let inbound = r.listener("virtualInbound").expect("virtualInbound");
    assert_eq!(
        inbound.filter_chains.len(),
        1,
        "one chain per workload port"
    );
}

#[test]
fn without_headers_match_when_the_header_is_absent() {
    let vs = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{withoutHeaders: {x-canary: {exact: 'yes'}}}]
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{withoutHeaders: {x-debug: {}}}]
    route: [{destination: {host: reviews, subset: v3}}]
  - route: [{destination: {host: reviews, subset: v2}}]
";
    let index = index(
        &format!("{REVIEWS_DR}---\n{vs}"),
        OutboundTrafficPolicyMode::AllowAny,
    );
    let r = resources(&index, &productpage());
    let subset = |h: &[(&str, &str)]| cluster_of(&r, "reviews:9080", "/", h);
    let c = |s: &str| format!("outbound|9080|{s}|reviews.default.svc.cluster.local");
    assert_eq!(subset(&[]), c("v1"), "absent header: not `yes`");
    assert_eq!(subset(&[("x-canary", "no")]), c("v1"));
    assert_eq!(subset(&[("x-canary", "yes")]), c("v3"), "x-debug absent");
    assert_eq!(subset(&[("x-canary", "yes"), ("x-debug", "1")]), c("v2"));
}

#[test]
fn shared_generation_matches_generating_each_proxy_alone() {
    let vs = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - match: [{sourceLabels: {version: v2}}]
    fault: {abort: {httpStatus: 500, percentage: {value: 50}}}
    route: [{destination: {host: ratings}}]
  - route: [{destination: {host: ratings}}]
";
    let index = index(
        &format!("{REVIEWS_DR}---\n{vs}"),
        OutboundTrafficPolicyMode::AllowAny,
    );
    let index = std::sync::Arc::new(index);
    let generator = control::generate::Generator::new(&index, InboundAddressing::SidecarPort);
    let mut captured = productpage();
    captured.interception = Interception::Redirect;
    let proxies = [
        productpage(),
        proxy(
            "sidecar~10.0.0.2~reviews-v1.default~default.svc.cluster.local",
            &[("app", "reviews"), ("version", "v1")],
        ),
        proxy(
            "sidecar~10.0.0.3~reviews-v2.default~default.svc.cluster.local",
            &[("app", "reviews"), ("version", "v2")],
        ),
        proxy(
            "sidecar~10.0.1.1~billing-1.payments~payments.svc.cluster.local",
            &[("app", "billing")],
        ),
        captured,
        proxy(
            "router~10.0.9.1~gateway.istio-system~istio-system.svc.cluster.local",
            &[("istio", "ingressgateway")],
        ),
    ];
    for p in &proxies {
        let (shared, _) = generator.snapshot(p, "v1");
        let alone = generate(&index, p, InboundAddressing::SidecarPort).to_snapshot("v1");
        assert!(shared.same_resources(&alone), "{}", p.id);
    }
    // Proxies differing only in a label no VirtualService selects on share their route tables;
    // reviews v1 and v2 differ (v2 gets the fault).
    let (a, _) = generator.snapshot(&proxies[1], "v1");
    let (b, _) = generator.snapshot(&proxies[2], "v1");
    let route = |s: &xds_server::Snapshot| {
        s.get(xds_api::type_url::ROUTE_CONFIGURATION, "15001")
            .map(|r| r.version.clone())
    };
    assert_ne!(route(&a), route(&b));
}

#[test]
fn the_next_push_shares_what_did_not_change() {
    use control::generate::Generator;
    use xds_api::type_url::{CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER, ROUTE_CONFIGURATION};
    let vs = |weight: u32| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http:
  - route:
    - {{destination: {{host: reviews, subset: v1}}, weight: {weight}}}
    - {{destination: {{host: reviews, subset: v2}}, weight: {}}}
",
            100 - weight
        )
    };
    let at = |weight| {
        std::sync::Arc::new(index(
            &format!("{REVIEWS_DR}---\n{}", vs(weight)),
            OutboundTrafficPolicyMode::AllowAny,
        ))
    };
    let (first, same, changed) = (at(90), at(90), at(50));
    let proxies = [
        productpage(),
        proxy(
            "sidecar~10.0.0.2~reviews-v1.default~default.svc.cluster.local",
            &[("app", "reviews"), ("version", "v1")],
        ),
    ];
    let push = |index: &std::sync::Arc<Index>, previous| {
        let g = Generator::after(index, InboundAddressing::SidecarPort, previous);
        let snaps: Vec<_> = proxies.iter().map(|p| g.snapshot(p, "v").0).collect();
        (snaps, g.into_cache(true))
    };
    let layers = |s: &xds_server::Snapshot, t: &str| s.resources(t).expect("type present").clone();
    // How many layers of `t` are not the very map `a` holds (a proxy's own layer is rebuilt for
    // each push, so it may be one of them).
    let new_layers = |a: &xds_server::Snapshot, b: &xds_server::Snapshot, t: &str| {
        let (a, b) = (layers(a, t), layers(b, t));
        assert_eq!(a.layers().len(), b.layers().len(), "{t}");
        a.layers()
            .iter()
            .zip(b.layers())
            .filter(|(x, y)| !std::sync::Arc::ptr_eq(x, y))
            .count()
    };
    let (v1, cache) = push(&first, Default::default());
    // Both proxies are in one namespace and scope: one map of clusters for both.
    assert!(
        layers(&v1[0], CLUSTER_LOAD_ASSIGNMENT).ptr_eq(&layers(&v1[1], CLUSTER_LOAD_ASSIGNMENT))
    );
    let types = [
        CLUSTER,
        CLUSTER_LOAD_ASSIGNMENT,
        LISTENER,
        ROUTE_CONFIGURATION,
    ];
    // A rebuilt index with the same content: every shared map is the one already sent.
    let (v2, cache) = push(&same, cache);
    for (a, b) in v1.iter().zip(&v2) {
        assert!(a.same_resources(b));
        for t in types {
            assert!(new_layers(a, b, t) <= 1, "{t}");
        }
        assert_eq!(new_layers(a, b, CLUSTER_LOAD_ASSIGNMENT), 0);
        assert_eq!(new_layers(a, b, ROUTE_CONFIGURATION), 0);
    }
    // A weight change: only the route tables are new.
    let (v3, _) = push(&changed, cache);
    for (a, b) in v2.iter().zip(&v3) {
        for t in [CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER] {
            assert!(xds_server::same_map(&layers(a, t), &layers(b, t)), "{t}");
            assert!(new_layers(a, b, t) <= 1, "{t}");
        }
        assert_eq!(new_layers(a, b, ROUTE_CONFIGURATION), 1);
        assert!(!a.same_resources(b));
    }
}

/// Pushes in a row, each from the last one's cache, give every proxy exactly what generating it
/// from scratch gives, whatever changed: weights, matches, VirtualServices added and removed, a
/// wildcard host, a delegate, endpoints, DestinationRules, the outbound policy, a service added and
/// removed; in both
/// interception modes, with `sourceLabels` matches in play. What cannot have changed is taken
/// whole: after an endpoint-only change, the very route tables of the push before.
#[test]
fn pushes_in_a_row_match_generating_from_scratch() {
    use control::generate::Generator;
    use control::index::RouteChange;
    use std::sync::Arc;
    let vs = |name: &str, host: &str, body: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}}}\nspec:\n  hosts: [{host}]\n  http:\n{body}---\n"
        )
    };
    let split = |w: u32| {
        format!(
            "  - route:\n    - {{destination: {{host: reviews, subset: v1}}, weight: {w}}}\n    - {{destination: {{host: reviews, subset: v2}}, weight: {}}}\n",
            100 - w
        )
    };
    let fault = "  - match: [{sourceLabels: {app: productpage}}]\n    fault: {abort: {httpStatus: 400, percentage: {value: 100}}}\n    route: [{destination: {host: ratings}}]\n  - route: [{destination: {host: ratings}}]\n";
    let header = "  - match: [{headers: {foo: {exact: bar1}}}]\n    route: [{destination: {host: productpage}}]\n  - route: [{destination: {host: productpage}}]\n";
    let delegate = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: ratings-root}\nspec:\n  hosts: [ratings]\n  http:\n  - match: [{uri: {prefix: /r}}]\n    delegate: {name: ratings-child}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: ratings-child}\nspec:\n  http:\n  - route: [{destination: {host: ratings}}]\n---\n";
    let dr_round_robin = REVIEWS_DR;
    let dr_hashing = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec:\n  host: reviews\n  trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n---\n";
    let extra_instance = "- {name: reviews-v4, service: reviews, labels: {app: reviews, version: v2}, address: 10.0.0.9}\n";
    let details = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: details}\nspec:\n  hosts: [details.example.com]\n  location: MESH_INTERNAL\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints: [{address: 10.0.5.1}]\n---\n";
    // productpage's routes go to reviews: they change with reviews' DestinationRule.
    let to_reviews = "  - route: [{destination: {host: reviews, subset: v1}}]\n";
    const DETAILS: &str = "details.example.com";
    const PRODUCTPAGE: &str = "productpage.default.svc.cluster.local";
    const REVIEWS: &str = "reviews.default.svc.cluster.local";
    const RATINGS: &str = "ratings.default.svc.cluster.local";
    // As the control plane does, a push whose mesh file and ServiceEntries are as before keeps the
    // last index's services (the very same, which lets a push take the tables' hosts whole).
    let mut services_from: Option<(String, Vec<mesh_api::resource::Resource>)> = None;
    let mut build = |yaml: String, extra: &str, policy, before: Option<&Arc<Index>>| {
        let registry = load_registry_str(&format!("{MESH}{extra}")).expect("mesh file");
        let resources = parse_resources("test.yaml", &yaml).expect("valid config");
        let entries: Vec<_> = resources
            .iter()
            .filter(|r| r.kind == mesh_api::resource::Kind::ServiceEntry)
            .cloned()
            .collect();
        let inputs = Some((extra.to_owned(), entries));
        let mesh = MeshSettings {
            outbound_policy: policy,
            ..MeshSettings::default()
        };
        let index = match before {
            Some(before) if services_from == inputs => {
                Index::with_services(before.services.clone(), &resources, mesh)
            }
            _ => Index::build(&registry, &resources, mesh),
        };
        services_from = inputs;
        Arc::new(index)
    };
    use OutboundTrafficPolicyMode::{AllowAny, RegistryOnly};
    let base = |w| {
        format!(
            "{dr_round_robin}---\n{}{}",
            vs("reviews", "reviews", &split(w)),
            vs("ratings", "ratings", fault)
        )
    };
    // The mesh's routes, reviews' DestinationRule hashing on x-session.
    let hashed_by_session = format!(
        "{}{}{}{}",
        dr_hashing.replace("x-user", "x-session"),
        vs("reviews", "reviews", &split(10)),
        vs("ratings", "ratings", fault),
        vs("pp", "productpage", to_reviews),
    );
    let every_host = || {
        Some(RouteChange::Hosts(
            [DETAILS, REVIEWS, RATINGS, PRODUCTPAGE]
                .map(str::to_owned)
                .into(),
        ))
    };
    // The mesh after "a service removed", and two TCP services (MySQL) whose VirtualService sends
    // the first one's connections to `to`.
    let after_removal = || {
        format!(
            "{dr_hashing}{}{}{}",
            vs("reviews", "reviews", &split(10)),
            vs("ratings", "ratings", fault),
            vs("pp", "productpage", to_reviews),
        )
    };
    let database = |name: &str, n: u8| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}}}\nspec:\n  hosts: [{name}.example.com]\n  addresses: [240.0.0.{n}]\n  location: MESH_INTERNAL\n  ports: [{{number: 3306, name: mysql, protocol: TCP}}]\n  resolution: STATIC\n  endpoints: [{{address: 10.0.6.{n}}}]\n---\n"
        )
    };
    let tcp_routes = |to: &str| {
        format!(
            "{}{}apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: db}}\nspec:\n  hosts: [db.example.com]\n  tcp:\n  - route: [{{destination: {{host: {to}, port: {{number: 3306}}}}}}]\n---\n",
            database("db", 1),
            database("db2", 2)
        )
    };
    // (what changed, config, extra instances, policy, the change the index reports)
    let steps: Vec<(&str, String, &str, _, Option<RouteChange>)> = vec![
        ("first push", base(90), "", AllowAny, None),
        (
            "a weight",
            base(50),
            "",
            AllowAny,
            Some(RouteChange::Hosts(
                ["reviews.default.svc.cluster.local".to_owned()].into(),
            )),
        ),
        // The services change too: the tables are built again, and reviews' routes, which the
        // push before changed alone, must not be taken from the push before that.
        (
            "a VirtualService and an endpoint added",
            format!("{}{}", base(50), vs("productpage", "productpage", header)),
            extra_instance,
            AllowAny,
            Some(RouteChange::Hosts(
                ["productpage.default.svc.cluster.local".to_owned()].into(),
            )),
        ),
        (
            "an endpoint removed",
            format!("{}{}", base(50), vs("productpage", "productpage", header)),
            "",
            AllowAny,
            Some(RouteChange::Nothing),
        ),
        (
            "a VirtualService removed",
            base(50),
            extra_instance,
            AllowAny,
            Some(RouteChange::Hosts(
                ["productpage.default.svc.cluster.local".to_owned()].into(),
            )),
        ),
        (
            "a wildcard host",
            format!(
                "{}{}",
                base(50),
                vs("all", "\"*.svc.cluster.local\"", header)
            ),
            extra_instance,
            AllowAny,
            Some(RouteChange::Everything),
        ),
        (
            "a delegate",
            format!(
                "{dr_round_robin}---\n{}{delegate}",
                vs("reviews", "reviews", &split(50))
            ),
            extra_instance,
            AllowAny,
            Some(RouteChange::Everything),
        ),
        (
            "a DestinationRule",
            format!(
                "{dr_hashing}{}{}",
                vs("reviews", "reviews", &split(50)),
                vs("ratings", "ratings", fault)
            ),
            extra_instance,
            AllowAny,
            Some(RouteChange::Everything),
        ),
        (
            "the outbound policy",
            format!(
                "{dr_hashing}{}{}",
                vs("reviews", "reviews", &split(50)),
                vs("ratings", "ratings", fault)
            ),
            extra_instance,
            RegistryOnly,
            Some(RouteChange::Everything),
        ),
        (
            "a weight again",
            format!(
                "{dr_hashing}{}{}",
                vs("reviews", "reviews", &split(10)),
                vs("ratings", "ratings", fault)
            ),
            extra_instance,
            RegistryOnly,
            Some(RouteChange::Hosts(
                ["reviews.default.svc.cluster.local".to_owned()].into(),
            )),
        ),
        (
            "a service added",
            format!(
                "{dr_hashing}{}{}{}{details}",
                vs("reviews", "reviews", &split(10)),
                vs("ratings", "ratings", fault),
                vs("pp", "productpage", to_reviews),
            ),
            extra_instance,
            RegistryOnly,
            every_host(),
        ),
        (
            "a DestinationRule's hash",
            format!("{hashed_by_session}{details}"),
            extra_instance,
            RegistryOnly,
            Some(RouteChange::Hosts(
                [REVIEWS, RATINGS, PRODUCTPAGE].map(str::to_owned).into(),
            )),
        ),
        (
            "a virtual IP",
            format!(
                "{hashed_by_session}{}",
                details.replace("  location:", "  addresses: [10.96.5.5]\n  location:"),
            ),
            extra_instance,
            RegistryOnly,
            every_host(),
        ),
        (
            "a service removed",
            format!(
                "{dr_hashing}{}{}{}",
                vs("reviews", "reviews", &split(10)),
                vs("ratings", "ratings", fault),
                vs("pp", "productpage", to_reviews),
            ),
            extra_instance,
            RegistryOnly,
            every_host(),
        ),
        (
            "a TCP service",
            format!("{}{}", after_removal(), tcp_routes("db.example.com")),
            extra_instance,
            RegistryOnly,
            None,
        ),
        // Only a VirtualService's TCP route changed: the tables' hosts are as before, but the
        // captured sidecars' listeners (and the tunnel to it) are not.
        (
            "a TCP route",
            format!("{}{}", after_removal(), tcp_routes("db2.example.com")),
            extra_instance,
            RegistryOnly,
            Some(RouteChange::Hosts(["db.example.com".to_owned()].into())),
        ),
        (
            "an HTTP route with a TCP service",
            format!(
                "{}{}",
                after_removal().replace("weight: 10}", "weight: 30}"),
                tcp_routes("db2.example.com")
            ),
            extra_instance,
            RegistryOnly,
            Some(RouteChange::Hosts([REVIEWS.to_owned()].into())),
        ),
    ];
    let mut captured = productpage();
    captured.interception = Interception::Redirect;
    let mut captured_reviews = proxy(
        "sidecar~10.0.0.2~reviews-v1.default~default.svc.cluster.local",
        &[("app", "reviews"), ("version", "v1")],
    );
    captured_reviews.interception = Interception::Redirect;
    // Proxies that take their virtual hosts over VHDS, with and without capture.
    let mut over_vhds = productpage();
    over_vhds.vhds = true;
    let mut captured_over_vhds = captured_reviews.clone();
    captured_over_vhds.vhds = true;
    let proxies = [
        over_vhds,
        captured_over_vhds,
        productpage(),
        proxy(
            "sidecar~10.0.0.2~reviews-v1.default~default.svc.cluster.local",
            &[("app", "reviews"), ("version", "v1")],
        ),
        proxy(
            "sidecar~10.0.1.1~billing-1.payments~payments.svc.cluster.local",
            &[("app", "billing")],
        ),
        captured,
        captured_reviews,
    ];
    let mut cache = Default::default();
    let mut last: Option<(Arc<Index>, Vec<xds_server::Snapshot>)> = None;
    for (what, yaml, extra, policy, change) in steps {
        let index = build(yaml, extra, policy, last.as_ref().map(|(i, _)| i));
        if let (Some((before, _)), Some(change)) = (&last, change) {
            assert_eq!(index.route_change_since(before), change, "{what}");
        }
        let generator = Generator::after(&index, InboundAddressing::SidecarPort, cache);
        let mut snapshots = Vec::new();
        for p in &proxies {
            let (pushed, _) = generator.snapshot(p, "v");
            let scratch = generate(&index, p, InboundAddressing::SidecarPort).to_snapshot("v");
            assert!(pushed.same_resources(&scratch), "{what}: {}", p.id);
            snapshots.push(pushed);
        }
        if what == "an endpoint removed" {
            let (_, before) = last.as_ref().expect("a push before");
            for (a, b) in before.iter().zip(&snapshots) {
                let routes = |s: &xds_server::Snapshot| {
                    s.resources(xds_api::type_url::ROUTE_CONFIGURATION)
                        .expect("routes")
                        .clone()
                };
                let (a, b) = (routes(a), routes(b));
                assert!(!a.layers().is_empty());
                assert!(
                    a.layers()
                        .iter()
                        .zip(b.layers())
                        .all(|(x, y)| Arc::ptr_eq(x, y)),
                    "{what}"
                );
            }
        }
        if what == "a weight" {
            // One host changed: the VHDS proxy's hosts are the last push's maps but the one
            // holding reviews (which its ADS stream then alone compares; a large table's hosts
            // are in several maps, `Shards`).
            let (_, before) = last.as_ref().expect("a push before");
            let hosts = |s: &xds_server::Snapshot| {
                s.resources(xds_api::type_url::VIRTUAL_HOST)
                    .expect("VHDS hosts")
                    .clone()
            };
            let (a, b) = (hosts(&before[0]), hosts(&snapshots[0]));
            assert_eq!(a.layers().len(), b.layers().len());
            let copied = a
                .layers()
                .iter()
                .zip(b.layers())
                .filter(|(x, y)| !Arc::ptr_eq(x, y))
                .count();
            assert_eq!(copied, 1, "{what}: {} layers", a.layers().len());
        }
        cache = generator.into_cache(true);
        last = Some((index, snapshots));
    }
}

#[test]
fn delegate_routes_merge_into_their_root() {
    let config = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-root}
spec:
  hosts: [reviews]
  http:
  - name: api
    match: [{uri: {prefix: /api}, headers: {x-team: {exact: blue}}}]
    delegate: {name: reviews-api, namespace: team}
  - route: [{destination: {host: reviews, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-api, namespace: team}
spec:
  http:
  - name: v2
    match: [{uri: {prefix: /api/v2}}]
    route: [{destination: {host: reviews.default.svc.cluster.local, subset: v2}}]
  - name: outside
    match: [{uri: {prefix: /other}}]
    route: [{destination: {host: reviews.default.svc.cluster.local, subset: v2}}]
  - name: jason
    match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews.default.svc.cluster.local, subset: v3}}]
  - route: [{destination: {host: ratings.default.svc.cluster.local}}]
";
    let index = index(
        &format!("{REVIEWS_DR}---\n{config}"),
        OutboundTrafficPolicyMode::AllowAny,
    );
    assert!(
        index.warnings.iter().any(|w| w
            == "VirtualService default/reviews-root: a route of delegate team/reviews-api matches \
                outside the root route's match; it is skipped"),
        "{:?}",
        index.warnings
    );
    let r = resources(&index, &productpage());
    let hit = |path: &str, headers: &[(&str, &str)]| {
        simulate(&r, "15001", "reviews:9080", path, headers).map(|(_, route, c)| (route, c))
    };
    let c = |s: &str| format!("outbound|9080|{s}|reviews.default.svc.cluster.local");
    let blue = ("x-team", "blue");
    assert_eq!(
        hit("/api/v2/x", &[blue]),
        Some(("api-v2".to_owned(), c("v2"))),
        "the delegate's match inside the root's; names joined"
    );
    assert_eq!(
        hit("/api/v2/x", &[]).map(|(_, c)| c),
        Some(c("v1")),
        "the root's header is part of every delegated match"
    );
    assert_eq!(
        hit("/api/x", &[blue, ("end-user", "jason")]),
        Some(("api-jason".to_owned(), c("v3"))),
        "headers merged"
    );
    assert_eq!(
        hit("/api/x", &[blue]).map(|(_, c)| c).as_deref(),
        Some("outbound|9080||ratings.default.svc.cluster.local"),
        "a delegate route without match takes the root's"
    );
    assert_eq!(
        hit("/other", &[blue]).map(|(_, c)| c),
        Some(c("v1")),
        "the conflicting delegate route is dropped"
    );
    // A delegate has no hosts of its own: it routes nothing by itself.
    assert!(
        index
            .mesh_virtual_service("reviews.team.svc.cluster.local", "team")
            .is_none()
    );
}

#[test]
fn cors_policy_is_a_per_route_envoy_cors_policy() {
    use xds_api::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy;
    use xds_api::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
    let vs = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - corsPolicy:
      allowOrigins: [{exact: 'https://a.example.com'}, {prefix: 'https://b.'}, {regex: '.*\\.c\\.com'}]
      allowMethods: [GET, POST]
      allowHeaders: [x-a, x-b]
      exposeHeaders: [x-c]
      maxAge: 24h
      allowCredentials: true
      unmatchedPreflights: IGNORE
    route: [{destination: {host: ratings}}]
";
    let index = index(vs, OutboundTrafficPolicyMode::AllowAny);
    // `resources` also checks the proxy's model takes the filter and the policies.
    let r = resources(&index, &productpage());
    let rc = r.route("15001").expect("routes");
    let route = &rc
        .virtual_hosts
        .iter()
        .find(|v| v.name.starts_with("ratings."))
        .expect("vhost")
        .routes[0];
    let any = route
        .typed_per_filter_config
        .get("envoy.filters.http.cors")
        .expect("a CORS policy on the route");
    let cors: CorsPolicy = xds_api::any::unpack(any).expect("a CorsPolicy");
    let origins: Vec<_> = cors
        .allow_origin_string_match
        .iter()
        .map(|m| m.match_pattern.clone())
        .collect();
    assert!(matches!(&origins[0], Some(MatchPattern::Exact(e)) if e == "https://a.example.com"));
    assert!(matches!(&origins[1], Some(MatchPattern::Prefix(p)) if p == "https://b."));
    assert!(matches!(&origins[2], Some(MatchPattern::SafeRegex(r)) if r.regex == ".*\\.c\\.com"));
    assert_eq!(cors.allow_methods, "GET,POST");
    assert_eq!(cors.allow_headers, "x-a,x-b");
    assert_eq!(cors.expose_headers, "x-c");
    assert_eq!(cors.max_age, "86400");
    assert_eq!(cors.allow_credentials.map(|b| b.value), Some(true));
    assert_eq!(
        cors.forward_not_matching_preflights.map(|b| b.value),
        Some(false)
    );
    // The connection managers run Envoy's CORS filter, after the fault filter, before the router
    // (every client-side one, as istiod).
    let filters = |l: &str| -> Vec<String> {
        let listener = r.listener(l).expect("listener");
        let xds_api::pb::envoy::config::listener::v3::filter::ConfigType::TypedConfig(any) =
            listener.filter_chains[0].filters[0]
                .config_type
                .clone()
                .expect("config")
        else {
            panic!("typed config");
        };
        let hcm: xds_api::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager =
            xds_api::any::unpack(&any).expect("hcm");
        hcm.http_filters.into_iter().map(|f| f.name).collect()
    };
    assert_eq!(
        filters("virtualOutbound"),
        [
            "envoy.filters.http.fault",
            "envoy.filters.http.cors",
            "envoy.filters.http.router"
        ]
    );
}

// === TCP and TLS: which filter chain, and so which cluster, a connection takes ===

/// What a connection to `ip:port` (with SNI `sni`) would hit on `listener`: the TCP proxy's
/// clusters (`a` or `a=75,b=25`) and its stat prefix, or the HTTP connection manager.
fn connect(
    r: &ProxyResources,
    listener: &str,
    ip: &str,
    port: u16,
    sni: Option<&str>,
) -> Option<(String, String)> {
    use proxy_model::listener::{ConnectionInfo, Listener, NetworkFilter};
    let proto = r
        .listener(listener)
        .unwrap_or_else(|| panic!("no listener {listener}"));
    let l = Listener::from_proto(proto, &At::root(listener)).expect("converts");
    assert_eq!(
        l.tls_inspector,
        sni.is_some(),
        "{listener}: the tls_inspector reads SNI only where chains match on it"
    );
    let chain = l.select(&ConnectionInfo {
        destination_port: port,
        destination_ip: Some(ip.parse().expect("ip")),
        server_name: sni,
        transport_protocol: if sni.is_some() { "tls" } else { "raw_buffer" },
        application_protocols: &[],
        source: None,
    })?;
    Some(match &chain.network {
        NetworkFilter::Tcp(t) => {
            let clusters = match t.clusters.as_slice() {
                [(c, 1)] => c.clone(),
                many => many
                    .iter()
                    .map(|(c, w)| format!("{c}={w}"))
                    .collect::<Vec<_>>()
                    .join(","),
            };
            (clusters, t.stat_prefix.clone())
        }
        NetworkFilter::Http(h) => ("http".to_owned(), h.stat_prefix.clone()),
    })
}

fn to_cluster(hit: Option<(String, String)>) -> String {
    hit.map_or_else(|| "no chain".to_owned(), |(c, _)| c)
}

fn captured(mut p: Proxy) -> Proxy {
    p.interception = Interception::Redirect;
    p
}

const DATABASES: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db}
spec:
  hosts: [db.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 5432, name: postgres, protocol: TCP}]
  endpoints:
  - {address: 10.1.0.1, labels: {version: v1}}
  - {address: 10.1.0.2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db-replica}
spec:
  hosts: [db-replica.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 5433, name: tcp-postgres}]
  endpoints: [{address: 10.9.0.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: cache}
spec:
  hosts: [cache.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 6379, name: redis}]
  endpoints: [{address: 10.1.1.1}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db}
spec:
  host: db.internal
  trafficPolicy: {connectionPool: {tcp: {idleTimeout: 30s}}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
";

#[test]
fn tcp_routes_by_destination_subnet_and_source_labels() {
    let vs = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db}
spec:
  hosts: [db.internal]
  tcp:
  - match: [{destinationSubnets: [10.9.0.0/16]}]
    route: [{destination: {host: db-replica.internal}}]
  - match: [{sourceLabels: {version: v2}, port: 5432}]
    route:
    - {destination: {host: db.internal, subset: v2}, weight: 75}
    - {destination: {host: db.internal, subset: v1}, weight: 25}
  - route: [{destination: {host: db.internal, subset: v1}}]
";
    let index = index(
        &format!("{DATABASES}---\n{vs}"),
        OutboundTrafficPolicyMode::AllowAny,
    );
    let v1 = "outbound|5432|v1|db.internal";
    let v2 = "outbound|5432|v2|db.internal";
    let replica = "outbound|5433||db-replica.internal";

    let productpage = resources(&index, &captured(productpage()));
    let hit = |ip: &str| connect(&productpage, "0.0.0.0_5432", ip, 5432, None);
    assert_eq!(
        hit("10.9.3.4"),
        Some((replica.to_owned(), replica.to_owned())),
        "a destination subnet match; istiod names the TCP proxy after its cluster"
    );
    assert_eq!(to_cluster(hit("10.1.0.1")), v1, "the route without match");
    assert_eq!(to_cluster(hit("192.0.2.1")), v1, "any other address");

    // `sourceLabels` only reaches the proxies it selects: reviews v2 splits 75/25.
    let v2_proxy = captured(proxy(
        "sidecar~10.0.0.3~reviews-v2.default~default.svc.cluster.local",
        &[("app", "reviews"), ("version", "v2")],
    ));
    let reviews_v2 = resources(&index, &v2_proxy);
    let hit = |ip: &str| connect(&reviews_v2, "0.0.0.0_5432", ip, 5432, None);
    assert_eq!(to_cluster(hit("10.9.3.4")), replica);
    assert_eq!(
        hit("10.1.0.1"),
        Some((format!("{v2}=75,{v1}=25"), "db.default".to_owned())),
        "weighted destinations are named after the VirtualService, as istiod does"
    );

    // Without a VirtualService (a port named `redis`: not HTTP): the service's own cluster.
    let cache = "outbound|6379||cache.internal";
    assert_eq!(
        to_cluster(connect(
            &productpage,
            "0.0.0.0_6379",
            "10.1.1.1",
            6379,
            None
        )),
        cache
    );
    // The DestinationRule's TCP idle timeout reaches the proxy's tcp_proxy.
    let listener = proxy_model::listener::Listener::from_proto(
        productpage.listener("0.0.0.0_5432").expect("listener"),
        &At::root("l"),
    )
    .expect("converts");
    let idle: Vec<_> = listener
        .filter_chains
        .iter()
        .chain(&listener.default_filter_chain)
        .filter_map(|c| match &c.network {
            proxy_model::listener::NetworkFilter::Tcp(t) => Some(t.idle_timeout),
            proxy_model::listener::NetworkFilter::Http(_) => None,
        })
        .collect();
    assert!(
        idle.contains(&Some(std::time::Duration::from_secs(30))),
        "{idle:?}"
    );
}

#[test]
fn tcp_ports_without_routes_share_one_listener_and_keep_the_first_service() {
    // Two services on 3306 and no service addresses: the first (by name) keeps the port.
    let config = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: orders}
spec:
  hosts: [orders.db.internal]
  location: MESH_INTERNAL
  resolution: DNS
  ports: [{number: 3306, name: mysql}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: accounts}
spec:
  hosts: [accounts.db.internal]
  location: MESH_INTERNAL
  resolution: DNS
  ports: [{number: 3306, name: mysql}]
";
    let index = index(config, OutboundTrafficPolicyMode::RegistryOnly);
    let r = generate(
        &index,
        &captured(productpage()),
        InboundAddressing::SidecarPort,
    );
    assert_eq!(
        to_cluster(connect(&r, "0.0.0.0_3306", "10.9.0.1", 3306, None)),
        "outbound|3306||accounts.db.internal"
    );
    assert_eq!(
        r.warnings,
        [
            "outbound port 3306 (orders.db.internal): a filter chain matching SNI [] and destinations [] \
             is already taken; it is skipped"
        ]
    );
}

/// The listener a captured connection to `ip:port` is handed to, as Envoy's `use_original_dst`
/// hands it: the one on exactly that address, else the one on `0.0.0.0` and the port.
fn handed_to(r: &ProxyResources, ip: &str, port: u32) -> String {
    use xds_api::pb::envoy::config::core::v3::{address, socket_address::PortSpecifier};
    let on = |host: &str| {
        r.listeners.iter().find(|l| {
            matches!(
                l.address.as_ref().and_then(|a| a.address.as_ref()),
                Some(address::Address::SocketAddress(s))
                    if s.address == host && s.port_specifier == Some(PortSpecifier::PortValue(port))
            )
        })
    };
    on(ip)
        .or_else(|| on("0.0.0.0"))
        .map_or_else(|| "virtualOutbound".to_owned(), |l| l.name.clone())
}

#[test]
fn virtual_ips_tell_services_on_one_port_apart() {
    // Two MySQL services and an HTTP one on 3306, each with its cluster IP; a database without one.
    let mesh = "services:
- {name: orders-db, addresses: [10.96.0.10], ports: [{number: 3306, name: mysql}]}
- {name: accounts-db, addresses: [10.96.0.11], ports: [{number: 3306, name: mysql}]}
- {name: web, addresses: [10.96.0.20], ports: [{number: 3306, name: http}]}
- {name: legacy-db, ports: [{number: 1521, name: tcp}]}
- {name: cache-a, addresses: [10.96.0.40], ports: [{number: 6379, name: cache}]}
- {name: cache-b, addresses: [10.96.0.41], ports: [{number: 6379, name: cache}]}
workloads:
- {name: client, labels: {app: client}, address: 10.0.5.1}
";
    // Address ranges (ServiceEntry) share the wildcard listener, a chain per range; a TLS service
    // with an IP is told by the address alone, no SNI needed.
    let postgres = |region: &str, range: &str| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: pg-{region}}}
spec:
  hosts: [pg.{region}.example.com]
  addresses: [{range}]
  location: MESH_EXTERNAL
  resolution: NONE
  ports: [{{number: 5432, name: tcp, protocol: TCP}}]
---
"
        )
    };
    let config = postgres("east", "10.10.0.0/24")
        + &postgres("west", "10.20.0.0/24")
        + "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vault}
spec:
  hosts: [vault.internal]
  addresses: [10.96.0.30]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8200, name: tls, protocol: TLS}]
  endpoints: [{address: 10.1.2.3}]
";
    let registry = load_registry_str(mesh).expect("mesh file");
    let resources_of = parse_resources("test.yaml", &config).expect("valid config");
    let index = Index::build(
        &registry,
        &resources_of,
        MeshSettings {
            outbound_policy: OutboundTrafficPolicyMode::RegistryOnly,
            ..MeshSettings::default()
        },
    );
    let client = captured(proxy(
        "sidecar~10.0.5.1~client.default~default.svc.cluster.local",
        &[("app", "client")],
    ));
    let r = resources(&index, &client);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let tcp = |ip: &str, port: u32| {
        let listener = handed_to(&r, ip, port);
        let port = u16::try_from(port).expect("port");
        (
            listener.clone(),
            to_cluster(connect(&r, &listener, ip, port, None)),
        )
    };
    let pair = |l: &str, c: &str| (l.to_owned(), c.to_owned());
    assert_eq!(
        tcp("10.96.0.10", 3306),
        pair(
            "10.96.0.10_3306",
            "outbound|3306||orders-db.default.svc.cluster.local"
        )
    );
    assert_eq!(
        tcp("10.96.0.11", 3306),
        pair(
            "10.96.0.11_3306",
            "outbound|3306||accounts-db.default.svc.cluster.local"
        )
    );
    // HTTP keeps the wildcard listener, routed by Host: a name or the cluster IP.
    assert_eq!(tcp("10.96.0.20", 3306), pair("0.0.0.0_3306", "http"));
    for host in ["web", "10.96.0.20", "web.default.svc.cluster.local:3306"] {
        assert_eq!(
            simulate(&r, "3306", host, "/", &[])
                .map(|(_, _, a)| a)
                .as_deref(),
            Some("outbound|3306||web.default.svc.cluster.local"),
            "{host}"
        );
    }
    // Without an address, a TCP service keeps the wildcard listener as before.
    assert_eq!(
        tcp("10.9.9.9", 1521),
        pair(
            "0.0.0.0_1521",
            "outbound|1521||legacy-db.default.svc.cluster.local"
        )
    );
    assert_eq!(
        tcp("10.10.0.7", 5432),
        pair("0.0.0.0_5432", "outbound|5432||pg.east.example.com")
    );
    assert_eq!(
        tcp("10.20.0.7", 5432),
        pair("0.0.0.0_5432", "outbound|5432||pg.west.example.com")
    );
    assert_eq!(
        tcp("10.30.0.7", 5432),
        pair("0.0.0.0_5432", "BlackHoleCluster"),
        "outside both ranges: REGISTRY_ONLY"
    );
    assert_eq!(
        tcp("10.96.0.30", 8200),
        pair("10.96.0.30_8200", "outbound|8200||vault.internal")
    );
    // A port whose protocol is sniffed: on each service's own IP, TCP to that service, and what
    // the http_inspector calls HTTP to the port's route table (which has both).
    assert_eq!(
        tcp("10.96.0.40", 6379),
        pair(
            "10.96.0.40_6379",
            "outbound|6379||cache-a.default.svc.cluster.local"
        )
    );
    assert_eq!(
        tcp("10.96.0.41", 6379),
        pair(
            "10.96.0.41_6379",
            "outbound|6379||cache-b.default.svc.cluster.local"
        )
    );
    assert_eq!(
        sniffed_chain(&r, "10.96.0.41_6379", 6379, "raw_buffer", &["http/1.1"]),
        Some(("10.96.0.41_6379-http".to_owned(), true))
    );
    for (host, cluster) in [
        (
            "cache-a",
            "outbound|6379||cache-a.default.svc.cluster.local",
        ),
        (
            "10.96.0.41",
            "outbound|6379||cache-b.default.svc.cluster.local",
        ),
    ] {
        assert_eq!(
            simulate(&r, "6379", host, "/", &[])
                .map(|(_, _, a)| a)
                .as_deref(),
            Some(cluster)
        );
    }
    assert!(
        r.listener("0.0.0.0_6379").is_none(),
        "every service of the port has its own address"
    );

    // Without capture, the explicit proxy takes the cluster IP as an authority too.
    let mut explicit = client.clone();
    explicit.interception = control::node::Interception::None;
    let r = resources(&index, &explicit);
    let hit = |authority: &str| {
        simulate_method(&r, "15001", "CONNECT", authority, "", &[]).map(|(_, _, a)| a)
    };
    assert_eq!(
        hit("10.96.0.10:3306").as_deref(),
        Some("outbound|3306||orders-db.default.svc.cluster.local")
    );
    assert_eq!(
        hit("10.96.0.11:3306").as_deref(),
        Some("outbound|3306||accounts-db.default.svc.cluster.local")
    );
}

const EXTERNAL_TLS: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external-https}
spec:
  hosts: [api.example.com, pay.example.com, secure.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 443, name: https, protocol: HTTPS}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external-tls}
spec:
  hosts: ['*.legacy.example.com']
  location: MESH_EXTERNAL
  resolution: NONE
  ports: [{number: 443, name: tls, protocol: TLS}]
";

#[test]
fn tls_routes_choose_by_sni() {
    let vs = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: pay}
spec:
  hosts: [pay.example.com]
  tls:
  - match: [{sniHosts: [pay.example.com], sourceLabels: {app: productpage}}]
    route: [{destination: {host: api.example.com, port: {number: 443}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: secure}
spec:
  hosts: [secure.example.com]
  tls:
  - match: [{sniHosts: [secure.example.com], destinationSubnets: [198.51.100.0/24]}]
    route: [{destination: {host: pay.example.com, port: {number: 443}}}]
";
    let index = index(
        &format!("{EXTERNAL_TLS}---\n{vs}"),
        OutboundTrafficPolicyMode::AllowAny,
    );
    let r = resources(&index, &captured(productpage()));
    let sni = |name: &str| to_cluster(connect(&r, "0.0.0.0_443", "192.0.2.7", 443, Some(name)));
    assert_eq!(
        sni("api.example.com"),
        "outbound|443||api.example.com",
        "no VirtualService: by its own name"
    );
    assert_eq!(
        sni("pay.example.com"),
        "outbound|443||api.example.com",
        "the tls route"
    );
    // SNI and destination together: the tls route replaces the host's own chain (istiod's), so the
    // same name at another address passes through.
    assert_eq!(
        to_cluster(connect(
            &r,
            "0.0.0.0_443",
            "198.51.100.9",
            443,
            Some("secure.example.com")
        )),
        "outbound|443||pay.example.com"
    );
    assert_eq!(sni("secure.example.com"), "PassthroughCluster");
    assert_eq!(
        sni("old.legacy.example.com"),
        "outbound|443||*.legacy.example.com",
        "a wildcard host"
    );
    assert_eq!(sni("unknown.example.org"), "PassthroughCluster");

    // The tls route selects productpage only: another proxy reaches pay.example.com directly.
    let other = resources(
        &index,
        &captured(proxy(
            "sidecar~10.0.0.5~ratings-v1.default~default.svc.cluster.local",
            &[("app", "ratings")],
        )),
    );
    assert_eq!(
        to_cluster(connect(
            &other,
            "0.0.0.0_443",
            "192.0.2.7",
            443,
            Some("pay.example.com")
        )),
        "outbound|443||pay.example.com"
    );
}

const GATEWAY_L4: &str = "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 31400, name: tcp, protocol: TCP}
    hosts: ['*']
  - port: {number: 8443, name: tls, protocol: TLS}
    hosts: ['*.example.com']
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcp-echo}
spec:
  hosts: ['*']
  gateways: [istio-system/edge]
  tcp:
  - match: [{port: 31400}]
    route:
    - {destination: {host: reviews, subset: v1, port: {number: 9080}}, weight: 80}
    - {destination: {host: reviews, subset: v2, port: {number: 9080}}, weight: 20}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: passthrough}
spec:
  hosts: ['*.example.com']
  gateways: [istio-system/edge]
  tls:
  - match: [{sniHosts: [a.example.com]}]
    route: [{destination: {host: reviews, port: {number: 9080}}}]
  - match: [{sniHosts: [b.example.com, c.example.com], port: 8443}]
    route: [{destination: {host: ratings}}]
  - match: [{sniHosts: [d.example.com], port: 9999}]
    route: [{destination: {host: productpage}}]
";

fn gateway_proxy() -> Proxy {
    proxy(
        "router~10.0.9.1~gateway.istio-system~istio-system.svc.cluster.local",
        &[("istio", "ingressgateway")],
    )
}

#[test]
fn gateway_tcp_server_splits_by_weight() {
    let index = index(
        &format!("{REVIEWS_DR}---\n{GATEWAY_L4}"),
        OutboundTrafficPolicyMode::AllowAny,
    );
    let r = resources(&index, &gateway_proxy());
    let listener = r.listener("0.0.0.0_31400").expect("TCP gateway listener");
    assert!(format!("{:?}", listener.address).contains("10.0.9.1"));
    assert_eq!(
        connect(&r, "0.0.0.0_31400", "10.0.9.1", 31400, None),
        Some((
            "outbound|9080|v1|reviews.default.svc.cluster.local=80,outbound|9080|v2|reviews.default.svc.cluster.local=20"
                .to_owned(),
            "tcp-echo.default".to_owned()
        ))
    );
    assert!(r.route("http.31400").is_none(), "no HTTP route table");
}

#[test]
fn gateway_tls_passthrough_routes_by_sni() {
    let index = index(GATEWAY_L4, OutboundTrafficPolicyMode::AllowAny);
    let r = resources(&index, &gateway_proxy());
    let sni = |name: &str| connect(&r, "0.0.0.0_8443", "10.0.9.1", 8443, Some(name));
    assert_eq!(
        to_cluster(sni("a.example.com")),
        "outbound|9080||reviews.default.svc.cluster.local"
    );
    assert_eq!(
        to_cluster(sni("c.example.com")),
        "outbound|9080||ratings.default.svc.cluster.local"
    );
    assert_eq!(sni("d.example.com"), None, "its match is for another port");
    assert_eq!(sni("z.example.com"), None, "no chain for other names");
}

/// `AUTO_PASSTHROUGH` (an east-west gateway): no VirtualService; the SNI a sidecar sends to a cluster
/// (`outbound_.PORT_.SUBSET_.HOST`) picks a chain that passes the connection to that cluster, for
/// every service port and subset among the server's hosts.
#[test]
fn gateway_auto_passthrough_routes_by_cluster_sni() {
    let gateway = "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: cross-network, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 15443, name: tls, protocol: TLS}
    hosts: ['*.default.svc.cluster.local']
    tls: {mode: AUTO_PASSTHROUGH}
";
    let index = index(
        &format!("{REVIEWS_DR}---\n{gateway}"),
        OutboundTrafficPolicyMode::AllowAny,
    );
    let r = resources(&index, &gateway_proxy());
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let sni = |name: &str| connect(&r, "0.0.0.0_15443", "10.0.9.1", 15443, Some(name));
    assert_eq!(
        to_cluster(sni("outbound_.9080_._.reviews.default.svc.cluster.local")),
        "outbound|9080||reviews.default.svc.cluster.local"
    );
    assert_eq!(
        to_cluster(sni("outbound_.9080_.v2_.reviews.default.svc.cluster.local")),
        "outbound|9080|v2|reviews.default.svc.cluster.local"
    );
    assert_eq!(
        to_cluster(sni("outbound_.9080_._.ratings.default.svc.cluster.local")),
        "outbound|9080||ratings.default.svc.cluster.local"
    );
    // Only the server's hosts: billing is in another namespace.
    assert_eq!(
        sni("outbound_.8080_._.billing.payments.svc.cluster.local"),
        None
    );
    assert_eq!(sni("reviews.default.svc.cluster.local"), None);
    // Every chain's cluster is one the gateway has.
    let listener = r.listener("0.0.0.0_15443").expect("listener");
    for chain in &listener.filter_chains {
        let name = &chain
            .filter_chain_match
            .as_ref()
            .expect("match")
            .server_names[0];
        let cluster = to_cluster(sni(name));
        assert!(r.cluster(&cluster).is_some(), "{name} -> {cluster}");
    }
}

#[test]
fn consistent_hash_destination_rules_make_hashing_clusters_and_route_hash_policies() {
    use proxy_model::route::hash::{HashInput, compute, xx_hash64};
    use xds_api::pb::envoy::config::cluster::v3::cluster::{LbConfig, LbPolicy};
    let yaml = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpHeaderName: x-user, maglev: {tableSize: 251}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {consistentHash: {httpCookie: {name: sticky, path: /, ttl: 60s}}}
  - name: v3
    labels: {version: v3}
    trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  trafficPolicy:
    loadBalancer: {consistentHash: {useSourceIp: true}}
    portLevelSettings:
    - port: {number: 9080}
      loadBalancer: {consistentHash: {httpQueryParameterName: user, ringHash: {minimumRingSize: 64}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 50}
    - {destination: {host: reviews, subset: v3}, weight: 50}
";
    let index = index(yaml, OutboundTrafficPolicyMode::AllowAny);
    let r = resources(&index, &productpage());

    // Clusters: consistentHash wins over simple; the subset's own load balancer wins over the top.
    let policy = |name: &str| {
        let c = r.cluster(name).unwrap_or_else(|| panic!("{name}"));
        (
            LbPolicy::try_from(c.lb_policy).expect("known policy"),
            match &c.lb_config {
                Some(LbConfig::MaglevLbConfig(m)) => m.table_size.as_ref().map(|v| v.value),
                Some(LbConfig::RingHashLbConfig(r)) => {
                    r.minimum_ring_size.as_ref().map(|v| v.value)
                }
                _ => None,
            },
        )
    };
    let reviews =
        |subset: &str| format!("outbound|9080|{subset}|reviews.default.svc.cluster.local");
    assert_eq!(policy(&reviews("")), (LbPolicy::Maglev, Some(251)));
    assert_eq!(policy(&reviews("v1")), (LbPolicy::Maglev, Some(251)));
    // No ringHash: the deprecated minimumRingSize, Istio's default 1024.
    assert_eq!(policy(&reviews("v2")), (LbPolicy::RingHash, Some(1024)));
    assert_eq!(policy(&reviews("v3")), (LbPolicy::RoundRobin, None));
    assert_eq!(
        policy("outbound|9080||ratings.default.svc.cluster.local"),
        (LbPolicy::RingHash, Some(64)),
        "the port-level setting"
    );

    // Routes: the hash key of each destination, as the proxy computes it.
    let rc = r.route("15001").expect("outbound routes");
    let rc = RouteConfig::from_proto(rc, &At::root("15001")).expect("converts");
    let hash_of = |authority: &str, path: &str, headers: &[(&str, &str)]| {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        let view = RequestView {
            authority,
            path,
            method: "GET",
            headers: &map,
        };
        let (_, route) = rc.select(&view).expect("a route");
        let Action::Forward(f) = &route.action else {
            panic!("not forwarded")
        };
        let input = HashInput {
            headers: &map,
            path,
            peer: Some("10.0.0.1:50000".parse().expect("addr")),
            local: None,
        };
        (f.hash_policy.len(), compute(&f.hash_policy, &input))
    };
    // Jason goes to v2 alone: its cookie, generated with the DestinationRule's ttl and path.
    let (n, out) = hash_of("reviews:9080", "/", &[("end-user", "jason")]);
    assert_eq!(n, 1);
    assert!(
        out.set_cookies.len() == 1
            && out.set_cookies[0].starts_with("sticky=")
            && out.set_cookies[0].ends_with("; Max-Age=60; Path=/; HttpOnly"),
        "{out:?}"
    );
    // The v1/v3 split: one policy per weighted destination; v3 has no hash of its own, so the
    // top-level one (istiod looks the hash up apart from the subset's load balancer).
    let (n, out) = hash_of("reviews:9080", "/", &[("x-user", "alice")]);
    assert_eq!(n, 2);
    let alice = xx_hash64(b"alice");
    assert_eq!(out.hash, Some(alice.rotate_left(1) ^ alice));
    // Ratings has no VirtualService: its default route takes the port-level key.
    let (n, out) = hash_of("ratings:9080", "/ratings?user=bob", &[]);
    assert_eq!((n, out.hash), (1, Some(xx_hash64(b"bob"))));

    // A hashed single destination retries without previous_hosts (the key picks the host); the
    // weighted split keeps it.
    let raw = r.route("15001").expect("routes");
    let predicates = |vhost: &str, route: &str| {
        raw.virtual_hosts
            .iter()
            .filter(|vh| vh.name.starts_with(vhost))
            .flat_map(|vh| &vh.routes)
            .filter(|rt| rt.name == route)
            .filter_map(|rt| match &rt.action {
                Some(xds_api::pb::envoy::config::route::v3::route::Action::Route(a)) => a
                    .retry_policy
                    .as_ref()
                    .map(|p| p.retry_host_predicate.len()),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(predicates("reviews.", "reviews.default.0"), vec![0]);
    assert_eq!(predicates("reviews.", "reviews.default.1"), vec![1]);
    assert_eq!(predicates("ratings.", "default"), vec![0]);
    assert_eq!(
        predicates("productpage.", "default"),
        vec![1],
        "no DestinationRule"
    );
}

#[test]
fn locality_failover_orders_endpoints_by_nearness_to_the_proxy() {
    let mesh = "services:
- name: echo
  ports: [{number: 9080, name: http}]
workloads:
- name: client
  labels: {app: client, topology.kubernetes.io/region: r1, topology.kubernetes.io/zone: z1}
  address: 10.0.0.1
- {name: same-zone, service: echo, labels: {app: echo, topology.kubernetes.io/region: r1, topology.kubernetes.io/zone: z1}, address: 10.0.0.2, sidecar: false}
- {name: same-region, service: echo, labels: {app: echo, topology.kubernetes.io/region: r1, topology.kubernetes.io/zone: z2}, address: 10.0.0.3, sidecar: false}
- {name: far, service: echo, labels: {app: echo, topology.kubernetes.io/region: r2, topology.kubernetes.io/zone: z1}, address: 10.0.0.4, sidecar: false}
- {name: farther, service: echo, labels: {app: echo, topology.kubernetes.io/region: r3}, address: 10.0.0.5, sidecar: false}
";
    let dr = |extra: &str| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: echo}}
spec:
  host: echo
  trafficPolicy:
    outlierDetection: {{consecutive5xxErrors: 1}}
{extra}"
        )
    };
    // Priority of each instance's address in the client's EDS for echo.
    let priorities = |config: &str| {
        let index = Index::build(
            &load_registry_str(mesh).expect("mesh file"),
            &parse_resources("test.yaml", config).expect("valid config"),
            MeshSettings {
                outbound_policy: OutboundTrafficPolicyMode::AllowAny,
                ..MeshSettings::default()
            },
        );
        let client = proxy(
            "sidecar~10.0.0.1~client.default~default.svc.cluster.local",
            &[
                ("app", "client"),
                ("topology.kubernetes.io/region", "r1"),
                ("topology.kubernetes.io/zone", "z1"),
            ],
        );
        let r = resources(&index, &client);
        let la = r
            .endpoints_of("outbound|9080||echo.default.svc.cluster.local")
            .expect("EDS");
        let mut out = BTreeMap::new();
        for group in &la.endpoints {
            for e in &group.lb_endpoints {
                let addr = format!("{e:?}");
                let ip = ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"]
                    .into_iter()
                    .find(|ip| addr.contains(ip))
                    .expect("an instance");
                out.insert(ip, group.priority);
            }
        }
        out
    };
    let expect = |p: [u32; 4]| {
        BTreeMap::from([
            ("10.0.0.2", p[0]),
            ("10.0.0.3", p[1]),
            ("10.0.0.4", p[2]),
            ("10.0.0.5", p[3]),
        ])
    };
    // Same zone, then same region, then elsewhere (istiod's 0, 2, 3 renumbered without gaps).
    assert_eq!(priorities(&dr("")), expect([0, 1, 2, 2]));
    // A failover rule: from r1 to r3 only; r2 comes after it.
    let rule = "    loadBalancer: {localityLbSetting: {failover: [{from: r1, to: r3}]}}\n";
    assert_eq!(priorities(&dr(rule)), expect([0, 1, 3, 2]));
    // Turned off, or without outlier detection (Envoy would never fail over): one priority.
    let off = "    loadBalancer: {localityLbSetting: {enabled: false}}\n";
    assert_eq!(priorities(&dr(off)), expect([0; 4]));
    let no_outlier = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo}
spec:
  host: echo
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
";
    assert_eq!(priorities(no_outlier), expect([0; 4]));
}

// === Sidecar ingress ===

/// Where a connection to `ip:port` arriving at `listener` goes: the TCP proxy's cluster, or for
/// HTTP the cluster of the inline route a request for `authority` takes.
fn inbound_hit(r: &ProxyResources, listener: &str, ip: &str, port: u16, authority: &str) -> String {
    inbound_hit_over(r, listener, ip, port, authority, "raw_buffer")
}

/// [`inbound_hit`] for a connection of `transport` (`tls` or `raw_buffer`).
fn inbound_hit_over(
    r: &ProxyResources,
    listener: &str,
    ip: &str,
    port: u16,
    authority: &str,
    transport: &str,
) -> String {
    use proxy_model::listener::{ConnectionInfo, Listener, NetworkFilter, RouteSource};
    let proto = r
        .listener(listener)
        .unwrap_or_else(|| panic!("no listener {listener}"));
    let l =
        Listener::from_proto_with(proto, &At::root(listener), &ads_secrets(r)).expect("converts");
    let Some(chain) = l.select(&ConnectionInfo {
        destination_port: port,
        destination_ip: Some(ip.parse().expect("ip")),
        server_name: None,
        transport_protocol: transport,
        application_protocols: &[],
        source: None,
    }) else {
        return "no chain".to_owned();
    };
    match &chain.network {
        NetworkFilter::Tcp(t) => t.clusters.iter().map(|(c, _)| c.clone()).collect(),
        NetworkFilter::Http(h) => {
            let RouteSource::Inline(rc) = &h.routes else {
                panic!("{listener}: inbound routes are inline");
            };
            let headers = HeaderMap::new();
            let view = RequestView {
                authority,
                path: "/",
                method: "GET",
                headers: &headers,
            };
            match rc.select(&view).map(|(_, route)| &route.action) {
                Some(Action::Forward(f)) => match &f.target {
                    Target::Cluster(c) => format!("http:{c}"),
                    other => format!("http:{other:?}"),
                },
                other => format!("http:{other:?}"),
            }
        }
    }
}

/// The one endpoint of a static cluster, as `ip:port` or `unix:PATH`, and its source address.
fn inbound_endpoint(r: &ProxyResources, cluster: &str) -> (String, Option<String>) {
    use xds_api::pb::envoy::config::core::v3::{address::Address, socket_address::PortSpecifier};
    use xds_api::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
    let c = r
        .cluster(cluster)
        .unwrap_or_else(|| panic!("no cluster {cluster}"));
    let la = c.load_assignment.as_ref().expect("static endpoints");
    let ep = &la.endpoints[0].lb_endpoints[0];
    let Some(HostIdentifier::Endpoint(e)) = &ep.host_identifier else {
        panic!("{cluster}: an endpoint");
    };
    let at = match e.address.as_ref().and_then(|a| a.address.as_ref()) {
        Some(Address::SocketAddress(s)) => match s.port_specifier {
            Some(PortSpecifier::PortValue(p)) => format!("{}:{p}", s.address),
            _ => s.address.clone(),
        },
        Some(Address::Pipe(p)) => format!("unix:{}", p.path),
        other => format!("{other:?}"),
    };
    let source = c
        .upstream_bind_config
        .as_ref()
        .and_then(|b| b.source_address.as_ref())
        .map(|s| s.address.clone());
    (at, source)
}

const REVIEWS_INGRESS: &str = "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews-ingress}
spec:
  workloadSelector: {labels: {app: reviews}}
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:8080
  - port: {number: 9090, protocol: TCP, name: tcp}
    defaultEndpoint: 0.0.0.0:7070
  - port: {number: 9091, protocol: HTTP, name: http-admin}
    defaultEndpoint: 127.0.0.1:9191
    captureMode: IPTABLES
";

fn reviews_v1() -> Proxy {
    proxy(
        "sidecar~10.0.0.2~reviews-v1.default~default.svc.cluster.local",
        &[("app", "reviews"), ("version", "v1")],
    )
}

#[test]
fn sidecar_ingress_listeners_without_capture() {
    let index = index(REVIEWS_INGRESS, OutboundTrafficPolicyMode::AllowAny);
    let r = resources(&index, &reviews_v1());
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    // Each ingress port's cluster goes to its defaultEndpoint: the loopback, or the workload's own
    // address (0.0.0.0).
    assert_eq!(
        inbound_endpoint(&r, "inbound|9080||"),
        ("127.0.0.1:8080".to_owned(), None)
    );
    assert_eq!(
        inbound_endpoint(&r, "inbound|9090||"),
        ("10.0.0.2:7070".to_owned(), None)
    );
    // Not captured: ports bind listeners of their own on the proxy's address, HTTP and TCP.
    let http = r
        .listener("10.0.0.2_9080")
        .expect("bound HTTP ingress listener");
    assert!(format!("{:?}", http.address).contains("10.0.0.2"));
    assert_eq!(
        inbound_hit(&r, "10.0.0.2_9080", "10.0.0.2", 9080, "reviews:9080"),
        "http:inbound|9080||"
    );
    assert_eq!(
        inbound_hit(&r, "10.0.0.2_9090", "10.0.0.2", 9090, ""),
        "inbound|9090||"
    );
    // captureMode IPTABLES: no listener of its own.
    assert!(r.listener("10.0.0.2_9091").is_none());
    // Other sidecars send HTTP to IP:15006, routed by the Host's port: the service port 9080 and
    // the ingress ports go to the ingress clusters.
    let at = |authority: &str| inbound_hit(&r, "virtualInbound", "10.0.0.2", 15006, authority);
    assert_eq!(at("reviews:9080"), "http:inbound|9080||");
    assert_eq!(at("reviews:9091"), "http:inbound|9091||");
    // The service ports no longer make clusters to the workload's own port.
    assert!(
        r.clusters
            .iter()
            .filter(|c| c.name.starts_with("inbound|"))
            .all(|c| ["inbound|9080||", "inbound|9090||", "inbound|9091||"]
                .contains(&c.name.as_str())),
        "{:?}",
        r.clusters.iter().map(|c| &c.name).collect::<Vec<_>>()
    );
    // Workloads the Sidecar does not select keep their service ports.
    let pp = resources(&index, &productpage());
    assert_eq!(
        inbound_endpoint(&pp, "inbound|9080||"),
        ("10.0.0.1:9080".to_owned(), None)
    );
    assert!(pp.listener("10.0.0.1_9080").is_none());
}

#[test]
fn sidecar_ingress_listeners_with_capture() {
    let sidecar = "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews-ingress}
spec:
  workloadSelector: {labels: {app: reviews}}
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:8080
  - port: {number: 9090, protocol: TCP, name: tcp}
  - port: {number: 9443, protocol: TCP, name: tcp-direct}
    defaultEndpoint: 0.0.0.0:8443
    captureMode: NONE
    bind: 0.0.0.0
";
    let index_of = |config: &str| index(config, OutboundTrafficPolicyMode::AllowAny);
    let r = resources(&index_of(sidecar), &captured(reviews_v1()));
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    // Captured ports are chains of virtualInbound, by original destination port.
    let at = |port: u16| inbound_hit(&r, "virtualInbound", "10.0.0.2", port, "reviews:9080");
    assert_eq!(at(9080), "http:inbound|9080||");
    assert_eq!(at(9090), "inbound|9090||");
    // Any other port (the service's own included) passes through to where it was addressed.
    assert_eq!(at(7000), "InboundPassthroughCluster");
    // Connections to the workload's address leave from 127.0.0.6, which the capture rules let
    // through; the loopback is not captured.
    assert_eq!(
        inbound_endpoint(&r, "inbound|9080||"),
        ("127.0.0.1:8080".to_owned(), None)
    );
    // Without defaultEndpoint: the original destination, as istiod.
    let original = r.cluster("inbound|9090||").expect("cluster");
    assert!(
        format!("{:?}", original.cluster_discovery_type).contains("OriginalDst"),
        "{original:?}"
    );
    // captureMode NONE: a listener of its own on `bind`.
    assert_eq!(
        inbound_hit(&r, "0.0.0.0_9443", "10.0.0.2", 9443, ""),
        "inbound|9443||"
    );
    assert_eq!(
        inbound_endpoint(&r, "inbound|9443||"),
        ("10.0.0.2:8443".to_owned(), Some("127.0.0.6".to_owned()))
    );
    assert_eq!(at(9443), "InboundPassthroughCluster");
    // Bound to 0.0.0.0 on a port the proxy also has an outbound listener for: refused, as its
    // name would be that listener's.
    let clash = sidecar
        .replace("9443", "9080")
        .replace("9080, protocol: HTTP", "9081, protocol: HTTP");
    let r = resources(&index_of(&clash), &captured(reviews_v1()));
    assert!(
        r.warnings.iter().any(|w| w.contains("0.0.0.0_9080")),
        "{:?}",
        r.warnings
    );
    assert!(r.cluster("inbound|9080||").is_none());
    let outbound = r
        .listener("0.0.0.0_9080")
        .expect("the outbound listener stays");
    assert_eq!(outbound.bind_to_port.as_ref().map(|b| b.value), Some(false));
}

#[test]
fn sidecar_ingress_without_capture_needs_a_default_endpoint() {
    let sidecar = "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews-ingress}
spec:
  workloadSelector: {labels: {app: reviews}}
  ingress:
  - port: {number: 9080, protocol: HTTP}
  - port: {number: 15001, protocol: HTTP}
    defaultEndpoint: 127.0.0.1:8080
  - port: {number: 9081, protocol: HTTP}
    defaultEndpoint: 127.0.0.1:8081
";
    let index = index(sidecar, OutboundTrafficPolicyMode::AllowAny);
    let r = resources(&index, &reviews_v1());
    assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);
    assert!(
        r.warnings[0].contains("9080") && r.warnings[0].contains("defaultEndpoint"),
        "{:?}",
        r.warnings
    );
    assert!(r.warnings[1].contains("15001"), "{:?}", r.warnings);
    assert!(r.cluster("inbound|9080||").is_none());
    assert!(r.listener("10.0.0.2_9081").is_some());
}

#[test]
fn sidecar_ingress_to_a_unix_socket() {
    let sidecar = "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews-ingress}
spec:
  workloadSelector: {labels: {app: reviews}}
  ingress:
  - port: {number: 9080, protocol: HTTP}
    defaultEndpoint: unix:///var/run/app.sock
";
    let index = index(sidecar, OutboundTrafficPolicyMode::AllowAny);
    // Envoy takes a pipe address (`envoy_accepts.rs`); `bosun proxy` does not yet, so this one is
    // not converted into its model.
    let r = generate(&index, &reviews_v1(), InboundAddressing::SidecarPort);
    assert_eq!(
        inbound_endpoint(&r, "inbound|9080||"),
        ("unix:/var/run/app.sock".to_owned(), None)
    );
}

// === Locality load balancing: distribute and failoverPriority ===

const LOCALITY_MESH: &str = "services:
- name: echo
  ports: [{number: 9080, name: http}]
workloads:
- {name: a, service: echo, labels: {app: echo, version: v1, topology.kubernetes.io/region: r1, topology.kubernetes.io/zone: z1}, address: 10.0.0.2, sidecar: false}
- {name: b, service: echo, labels: {app: echo, version: v2, topology.kubernetes.io/region: r1, topology.kubernetes.io/zone: z2}, address: 10.0.0.3, sidecar: false}
- {name: c, service: echo, labels: {app: echo, version: v1, topology.kubernetes.io/region: r1, topology.kubernetes.io/zone: z2}, address: 10.0.0.6, sidecar: false}
- {name: d, service: echo, labels: {app: echo, version: v2, topology.kubernetes.io/region: r2, topology.kubernetes.io/zone: z1}, address: 10.0.0.4, sidecar: false}
- {name: e, service: echo, labels: {app: echo, version: v1, topology.kubernetes.io/region: r3}, address: 10.0.0.5, sidecar: false}
";

fn locality_index(load_balancer: &str, outlier: bool) -> Index {
    let config = format!(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: echo}}
spec:
  host: echo
  trafficPolicy:
{outlier}    loadBalancer:
      localityLbSetting:
{load_balancer}",
        outlier = if outlier {
            "    outlierDetection: {consecutive5xxErrors: 1}\n"
        } else {
            ""
        }
    );
    Index::build(
        &load_registry_str(LOCALITY_MESH).expect("mesh file"),
        &parse_resources("test.yaml", &config).expect("valid config"),
        MeshSettings::default(),
    )
}

fn locality_client(labels: &[(&str, &str)]) -> Proxy {
    proxy(
        "sidecar~10.0.0.1~client.default~default.svc.cluster.local",
        labels,
    )
}

/// The client's EDS for echo, per locality group: (locality `r/z`, priority, weight, addresses).
fn locality_groups(index: &Index, client: &Proxy) -> Vec<(String, u32, Option<u32>, Vec<String>)> {
    use xds_api::pb::envoy::config::core::v3::address::Address;
    use xds_api::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
    let r = resources(index, client);
    let la = r
        .endpoints_of("outbound|9080||echo.default.svc.cluster.local")
        .expect("EDS");
    let mut out: Vec<_> = la
        .endpoints
        .iter()
        .map(|g| {
            let l = g.locality.clone().unwrap_or_default();
            let addresses = g
                .lb_endpoints
                .iter()
                .filter_map(|e| match &e.host_identifier {
                    Some(HostIdentifier::Endpoint(ep)) => {
                        match ep.address.as_ref()?.address.as_ref()? {
                            Address::SocketAddress(s) => Some(s.address.clone()),
                            _ => None,
                        }
                    }
                    _ => None,
                })
                .collect();
            (
                format!("{}/{}", l.region, l.zone),
                g.priority,
                g.load_balancing_weight.as_ref().map(|w| w.value),
                addresses,
            )
        })
        .collect();
    out.sort();
    out
}

fn locality_weighted(index: &Index, client: &Proxy) -> bool {
    let r = resources(index, client);
    let c = r
        .cluster("outbound|9080||echo.default.svc.cluster.local")
        .expect("cluster");
    c.common_lb_config
        .as_ref()
        .is_some_and(|c| c.locality_config_specifier.is_some())
}

fn group(
    locality: &str,
    priority: u32,
    weight: u32,
    addresses: &[&str],
) -> (String, u32, Option<u32>, Vec<String>) {
    (
        locality.to_owned(),
        priority,
        Some(weight),
        addresses.iter().map(|a| (*a).to_owned()).collect(),
    )
}

#[test]
fn locality_distribute_weighs_localities_for_each_proxy_locality() {
    let index = locality_index(
        "        distribute:
        - from: r1/z1/*
          to: {'r1/z1/*': 70, 'r1/z2/*': 20, 'r2/*': 10}
        - from: r2/*
          to: {'r1/*': 80, r3: 20}
",
        false,
    );
    let in_zone = |region: &str, zone: &str| {
        locality_client(&[
            ("app", "client"),
            ("topology.kubernetes.io/region", region),
            ("topology.kubernetes.io/zone", zone),
        ])
    };
    // From r1/z1: each `to` locality gets its weight; r3, in none, keeps no endpoints.
    let client = in_zone("r1", "z1");
    assert_eq!(
        locality_groups(&index, &client),
        vec![
            group("r1/z1", 0, 70, &["10.0.0.2"]),
            group("r1/z2", 0, 20, &["10.0.0.3", "10.0.0.6"]),
            group("r2/z1", 0, 10, &["10.0.0.4"]),
            group("r3/", 0, 1, &[]),
        ]
    );
    assert!(locality_weighted(&index, &client));
    // From r2: `r1/*` covers two zones, which share its 80 by their own weights (1 and 2
    // endpoints: 26.7 and 53.3, rounded up); r2 itself is in no `to`.
    assert_eq!(
        locality_groups(&index, &in_zone("r2", "z1")),
        vec![
            group("r1/z1", 0, 27, &["10.0.0.2"]),
            group("r1/z2", 0, 54, &["10.0.0.3", "10.0.0.6"]),
            group("r2/z1", 0, 1, &[]),
            group("r3/", 0, 20, &["10.0.0.5"]),
        ]
    );
    // From a locality no rule names: every group keeps its endpoints, weighted by their count.
    assert_eq!(
        locality_groups(&index, &in_zone("r9", "z1")),
        vec![
            group("r1/z1", 0, 1, &["10.0.0.2"]),
            group("r1/z2", 0, 2, &["10.0.0.3", "10.0.0.6"]),
            group("r2/z1", 0, 1, &["10.0.0.4"]),
            group("r3/", 0, 1, &["10.0.0.5"]),
        ]
    );
}

#[test]
fn locality_failover_priority_orders_endpoints_by_labels() {
    let client = locality_client(&[
        ("app", "client"),
        ("version", "v2"),
        ("topology.kubernetes.io/region", "r1"),
        ("topology.kubernetes.io/zone", "z1"),
    ]);
    // Region, then zone: the same zone first, then the region's other zone, then the rest.
    let index = locality_index(
        "        failoverPriority: [topology.kubernetes.io/region, topology.kubernetes.io/zone]\n",
        true,
    );
    assert_eq!(
        locality_groups(&index, &client),
        vec![
            group("r1/z1", 0, 1, &["10.0.0.2"]),
            group("r1/z2", 1, 2, &["10.0.0.3", "10.0.0.6"]),
            group("r2/z1", 2, 1, &["10.0.0.4"]),
            group("r3/", 2, 1, &["10.0.0.5"]),
        ]
    );
    assert!(locality_weighted(&index, &client));
    // Any label: the client's own version first, splitting the localities that mix versions.
    let index = locality_index("        failoverPriority: [version]\n", true);
    assert_eq!(
        locality_groups(&index, &client),
        vec![
            group("r1/z1", 1, 1, &["10.0.0.2"]),
            group("r1/z2", 0, 1, &["10.0.0.3"]),
            group("r1/z2", 1, 1, &["10.0.0.6"]),
            group("r2/z1", 0, 1, &["10.0.0.4"]),
            group("r3/", 1, 1, &["10.0.0.5"]),
        ]
    );
    // `label=value` compares with that value, whatever the client's.
    let index = locality_index("        failoverPriority: [version=v1]\n", true);
    assert_eq!(
        locality_groups(&index, &client),
        vec![
            group("r1/z1", 0, 1, &["10.0.0.2"]),
            group("r1/z2", 0, 1, &["10.0.0.6"]),
            group("r1/z2", 1, 1, &["10.0.0.3"]),
            group("r2/z1", 1, 1, &["10.0.0.4"]),
            group("r3/", 0, 1, &["10.0.0.5"]),
        ]
    );
    // With `failover` rules too: by label first, then by nearness within each label priority
    // (`label × 5 + nearness`: v2 in r1/z2 1, v2 in r2 demoted by the rule 4, v1 in the zone 5, v1
    // in r1/z2 6, v1 in r3 8).
    let index = locality_index(
        "        failoverPriority: [version]
        failover: [{from: r1, to: r3}]
",
        true,
    );
    assert_eq!(
        locality_groups(&index, &client),
        vec![
            group("r1/z1", 2, 1, &["10.0.0.2"]),
            group("r1/z2", 0, 1, &["10.0.0.3"]),
            group("r1/z2", 3, 1, &["10.0.0.6"]),
            group("r2/z1", 1, 1, &["10.0.0.4"]),
            group("r3/", 4, 1, &["10.0.0.5"]),
        ]
    );
    // Without outlier detection there is no failover: one priority, as istiod.
    let index = locality_index("        failoverPriority: [version]\n", false);
    assert!(
        locality_groups(&index, &client)
            .iter()
            .all(|(_, priority, _, _)| *priority == 0)
    );
    assert!(!locality_weighted(&index, &client));
}

#[test]
fn proxies_differing_in_a_failover_priority_label_get_their_own_endpoints() {
    let index = locality_index("        failoverPriority: [version]\n", true);
    let index = std::sync::Arc::new(index);
    let generator = control::generate::Generator::new(&index, InboundAddressing::SidecarPort);
    let v1 = locality_client(&[("app", "client"), ("version", "v1"), ("pod", "x")]);
    let v2 = locality_client(&[("app", "client"), ("version", "v2"), ("pod", "x")]);
    let v1_other_pod = locality_client(&[("app", "client"), ("version", "v1"), ("pod", "y")]);
    let eds = |p: &Proxy| {
        let (shared, _) = generator.snapshot(p, "v1");
        let alone = generate(&index, p, InboundAddressing::SidecarPort).to_snapshot("v1");
        assert!(shared.same_resources(&alone), "{:?}", p.labels);
        shared
            .get(
                xds_api::type_url::CLUSTER_LOAD_ASSIGNMENT,
                "outbound|9080||echo.default.svc.cluster.local",
            )
            .map(|r| r.version.clone())
    };
    assert_ne!(eds(&v1), eds(&v2));
    // A label no failoverPriority names changes nothing.
    assert_eq!(eds(&v1), eds(&v1_other_pod));
}

#[test]
fn invalid_locality_settings_are_refused() {
    let dr = |setting: &str| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: echo}}
spec:
  host: echo
  trafficPolicy:
    outlierDetection: {{consecutive5xxErrors: 1}}
    loadBalancer:
      localityLbSetting:
{setting}"
        )
    };
    let refused = |setting: &str| {
        parse_resources("dr.yaml", &dr(setting))
            .expect_err("refused")
            .join("\n")
    };
    let e = refused("        distribute: [{from: r1/*, to: {'r1/*': 60, 'r2/*': 30}}]\n");
    assert!(e.contains("total locality weight 90 != 100"), "{e}");
    let e = refused(
        "        failover: [{from: r1, to: r2}]
        failoverPriority: [topology.kubernetes.io/region]
",
    );
    assert!(
        e.contains("can not simultaneously set 'failover' and topology label"),
        "{e}"
    );
    let e = refused(
        "        failover: [{from: r1, to: r2}]
        distribute: [{from: r1/*, to: {'r1/*': 100}}]
",
    );
    assert!(
        e.contains("can not simultaneously specify 'distribute' and 'failover'"),
        "{e}"
    );
}

// === useSourceIp on TCP ports ===

/// `(cluster, hash by source IP)` of every `tcp_proxy` on a captured listener, in chain order.
fn tcp_hashing(r: &ProxyResources, listener: &str) -> Vec<(String, bool)> {
    let l = proxy_model::listener::Listener::from_proto(
        r.listener(listener).expect("listener"),
        &At::root(listener),
    )
    .expect("converts");
    l.filter_chains
        .iter()
        .chain(&l.default_filter_chain)
        .filter_map(|c| match &c.network {
            proxy_model::listener::NetworkFilter::Tcp(t) => Some((
                t.clusters
                    .iter()
                    .map(|(c, _)| c.clone())
                    .collect::<Vec<_>>()
                    .join(","),
                t.hash_source_ip,
            )),
            proxy_model::listener::NetworkFilter::Http(_) => None,
        })
        .collect()
}

#[test]
fn use_source_ip_hashes_tcp_connections_by_client_address() {
    let dr = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db}
spec:
  hosts: [db.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 5432, name: postgres, protocol: TCP}]
  endpoints:
  - {address: 10.1.0.1, labels: {version: v1}}
  - {address: 10.1.0.2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db}
spec:
  host: db.internal
  trafficPolicy:
    loadBalancer: {consistentHash: {useSourceIp: true}}
  subsets:
  - {name: v1, labels: {version: v1}, trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}
  - {name: v2, labels: {version: v2}}
";
    let hashing = |vs: &str| {
        let index = index(&format!("{dr}{vs}"), OutboundTrafficPolicyMode::AllowAny);
        let r = resources(&index, &captured(productpage()));
        let cluster = r.cluster("outbound|5432||db.internal").expect("cluster");
        assert_eq!(
            cluster.lb_policy,
            xds_api::pb::envoy::config::cluster::v3::cluster::LbPolicy::RingHash as i32
        );
        tcp_hashing(&r, "0.0.0.0_5432")
    };
    // Without a VirtualService: the service's cluster, hashed by the client's address.
    assert_eq!(
        hashing(""),
        vec![("outbound|5432||db.internal".to_owned(), true)]
    );
    let route = |destinations: &str| {
        format!(
            "---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: db}}
spec:
  hosts: [db.internal]
  tcp:
  - route: {destinations}
"
        )
    };
    // A subset with its own load balancer decides; one without inherits the top level's hash.
    assert_eq!(
        hashing(&route("[{destination: {host: db.internal, subset: v1}}]")),
        vec![("outbound|5432|v1|db.internal".to_owned(), false)]
    );
    assert_eq!(
        hashing(&route("[{destination: {host: db.internal, subset: v2}}]")),
        vec![("outbound|5432|v2|db.internal".to_owned(), true)]
    );
    // Weighted destinations get no hash policy, as istiod's.
    assert_eq!(
        hashing(&route(
            "[{destination: {host: db.internal, subset: v2}, weight: 50}, {destination: {host: db.internal, subset: v1}, weight: 50}]"
        )),
        vec![(
            "outbound|5432|v2|db.internal,outbound|5432|v1|db.internal".to_owned(),
            false
        )]
    );
}

#[test]
fn sidecar_ingress_tls_is_simple_or_mutual() {
    let sidecar = "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews-ingress}
spec:
  workloadSelector: {labels: {app: reviews}}
  ingress:
  - port: {number: 9443, protocol: HTTPS, name: https}
    defaultEndpoint: 127.0.0.1:8443
    tls: {mode: MUTUAL, serverCertificate: /etc/c.pem, privateKey: /etc/k.pem, caCertificates: /etc/ca.pem}
  - port: {number: 9444, protocol: TLS, name: tls-through}
    defaultEndpoint: 127.0.0.1:8444
    tls: {mode: PASSTHROUGH}
";
    let index = index(sidecar, OutboundTrafficPolicyMode::AllowAny);
    let r = generate(&index, &reviews_v1(), InboundAddressing::SidecarPort);
    // MUTUAL: the client's certificate is required and checked against caCertificates.
    let listener = r.listener("10.0.0.2_9443").expect("the MUTUAL port");
    let socket = listener.filter_chains[0]
        .transport_socket
        .as_ref()
        .expect("TLS terminated");
    let Some(xds_api::pb::envoy::config::core::v3::transport_socket::ConfigType::TypedConfig(any)) =
        &socket.config_type
    else {
        panic!("a typed TLS context");
    };
    let context: xds_api::pb::envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext =
        xds_api::any::unpack(any).expect("DownstreamTlsContext");
    assert_eq!(
        context.require_client_certificate.map(|b| b.value),
        Some(true)
    );
    assert!(
        format!("{context:?}").contains("/etc/ca.pem"),
        "{context:?}"
    );
    assert!(r.cluster("inbound|9443||").is_some());
    // Any other mode leaves the port out, saying why.
    let skipped = "Sidecar default/reviews-ingress ingress port 9444: its tls mode PASSTHROUGH is neither \
                   SIMPLE nor MUTUAL (the two Istio takes on a Sidecar ingress), skipped";
    assert!(r.warnings.iter().any(|w| w == skipped), "{:?}", r.warnings);
    assert!(r.listener("10.0.0.2_9444").is_none());
    assert!(r.cluster("inbound|9444||").is_none());
}

#[test]
fn sidecar_inbound_connection_pools_limit_the_inbound_clusters() {
    let limits = |r: &ProxyResources, cluster: &str| {
        let c = r.cluster(cluster).expect("cluster");
        let t = &c
            .circuit_breakers
            .as_ref()
            .expect("circuit breakers")
            .thresholds[0];
        (
            t.max_connections.as_ref().map(|v| v.value),
            t.max_pending_requests.as_ref().map(|v| v.value),
        )
    };
    // The port's own pool wins over the Sidecar's.
    let sidecar = "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews-ingress}
spec:
  workloadSelector: {labels: {app: reviews}}
  inboundConnectionPool: {tcp: {maxConnections: 10}}
  ingress:
  - port: {number: 9080, protocol: HTTP}
    defaultEndpoint: 127.0.0.1:8080
    connectionPool: {http: {http1MaxPendingRequests: 5}}
  - port: {number: 9090, protocol: TCP}
    defaultEndpoint: 127.0.0.1:7070
";
    let r = resources(
        &index(sidecar, OutboundTrafficPolicyMode::AllowAny),
        &reviews_v1(),
    );
    assert_eq!(limits(&r, "inbound|9080||"), (Some(u32::MAX), Some(5)));
    assert_eq!(limits(&r, "inbound|9090||"), (Some(10), Some(u32::MAX)));
    // Without ingress, the Sidecar's pool limits the service ports' inbound clusters.
    let sidecar = "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews}
spec:
  workloadSelector: {labels: {app: reviews}}
  inboundConnectionPool: {tcp: {maxConnections: 10}}
";
    let r = resources(
        &index(sidecar, OutboundTrafficPolicyMode::AllowAny),
        &reviews_v1(),
    );
    assert_eq!(limits(&r, "inbound|9080||"), (Some(10), Some(u32::MAX)));
    // No pool: Envoy's defaults, as before.
    let r = resources(
        &index("", OutboundTrafficPolicyMode::AllowAny),
        &reviews_v1(),
    );
    assert!(
        r.cluster("inbound|9080||")
            .expect("cluster")
            .circuit_breakers
            .is_none()
    );
}

/// The TLS context (`Any`) of a transport socket.
fn tls_context(
    socket: Option<&xds_api::pb::envoy::config::core::v3::TransportSocket>,
) -> xds_api::pb::google::protobuf::Any {
    match socket.and_then(|s| s.config_type.as_ref()) {
        Some(xds_api::pb::envoy::config::core::v3::transport_socket::ConfigType::TypedConfig(
            any,
        )) => any.clone(),
        other => panic!("a TLS transport socket: {other:?}"),
    }
}

/// The SDS names a TLS context takes its certificate and its validation context from.
fn sds_names(
    common: Option<&xds_api::pb::envoy::extensions::transport_sockets::tls::v3::CommonTlsContext>,
) -> Vec<String> {
    use xds_api::pb::envoy::extensions::transport_sockets::tls::v3::common_tls_context::ValidationContextType;
    let common = common.expect("a common TLS context");
    let mut names: Vec<String> = common
        .tls_certificate_sds_secret_configs
        .iter()
        .map(|c| c.name.clone())
        .collect();
    match &common.validation_context_type {
        Some(ValidationContextType::ValidationContextSdsSecretConfig(c)) => {
            names.push(c.name.clone());
        }
        Some(ValidationContextType::CombinedValidationContext(c)) => {
            names.extend(
                c.validation_context_sds_secret_config
                    .iter()
                    .map(|c| c.name.clone()),
            );
        }
        _ => {}
    }
    names
}

/// The URI SANs a client's TLS context requires of the server.
fn required_sans(
    common: Option<&xds_api::pb::envoy::extensions::transport_sockets::tls::v3::CommonTlsContext>,
) -> Vec<String> {
    use xds_api::pb::envoy::extensions::transport_sockets::tls::v3::common_tls_context::ValidationContextType;
    use xds_api::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
    let Some(ValidationContextType::CombinedValidationContext(c)) =
        common.and_then(|c| c.validation_context_type.as_ref())
    else {
        return Vec::new();
    };
    c.default_validation_context
        .iter()
        .flat_map(|v| &v.match_typed_subject_alt_names)
        .filter_map(|m| match m.matcher.as_ref()?.match_pattern.as_ref()? {
            MatchPattern::Exact(id) => Some(id.clone()),
            _ => None,
        })
        .collect()
}

/// The TLS context of `l`'s filter chain for the server name `sni`.
fn chain_tls(
    l: &xds_api::pb::envoy::config::listener::v3::Listener,
    sni: &str,
) -> xds_api::pb::envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext {
    let chain = l
        .filter_chains
        .iter()
        .find(|c| {
            c.filter_chain_match
                .as_ref()
                .is_some_and(|m| m.server_names == [sni])
        })
        .unwrap_or_else(|| panic!("a chain for {sni}"));
    xds_api::any::unpack(&tls_context(chain.transport_socket.as_ref()))
        .expect("a DownstreamTlsContext")
}

/// A `kubernetes.io/tls` Secret for `hosts` (named `name`, in `namespace`), as `kubectl create
/// secret tls` writes it, with the CA that signed it as `ca.crt` when `with_ca`.
fn tls_secret(name: &str, namespace: &str, hosts: &[&str], with_ca: bool) -> String {
    use std::fmt::Write as _;
    let ca = mesh_tls::CertificateAuthority::generate("cluster.local").expect("CA");
    let cert = ca
        .issue_server(hosts, std::time::Duration::from_secs(3600))
        .expect("server certificate");
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    let mut out = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {namespace}}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(&cert.cert_chain_pem),
        indent(&cert.key_pem)
    );
    if with_ca {
        let _ = write!(out, "  ca.crt: |\n{}", indent(&ca.root_pem()));
    }
    out
}

/// `credentialName`: the server's certificate comes from the Secret of that name in the gateway's
/// namespace, over SDS (`kubernetes://NAME`); each HTTPS server has a filter chain chosen by SNI;
/// `MUTUAL` asks clients for a certificate checked against the secret's `ca.crt`
/// (`kubernetes://NAME-cacert`); a server whose secret is missing is skipped with a warning.
#[test]
fn gateway_https_servers_take_certificates_from_credential_secrets() {
    use xds_api::pb::envoy::extensions::transport_sockets::tls::v3::secret;
    let gateway = "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [bookinfo.example.com]
    tls: {mode: SIMPLE, credentialName: bookinfo-credential}
  - port: {number: 443, name: https-admin, protocol: HTTPS}
    hosts: [admin.example.com]
    tls: {mode: MUTUAL, credentialName: admin-credential}
  - port: {number: 8443, name: https-missing, protocol: HTTPS}
    hosts: ['*']
    tls: {mode: SIMPLE, credentialName: nowhere}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo}
spec:
  hosts: [bookinfo.example.com, admin.example.com]
  gateways: [istio-system/edge]
  http:
  - route: [{destination: {host: productpage, port: {number: 9080}}}]
";
    let config = [
        gateway.to_owned(),
        tls_secret(
            "bookinfo-credential",
            "istio-system",
            &["bookinfo.example.com"],
            false,
        ),
        tls_secret(
            "admin-credential",
            "istio-system",
            &["admin.example.com"],
            true,
        ),
        // The same name in another namespace is not the gateway's.
        tls_secret("nowhere", "default", &["x.example.com"], false),
    ]
    .join("---\n");
    let index = index(&config, OutboundTrafficPolicyMode::AllowAny);
    let r = resources(&index, &gateway_proxy());

    // The chains, by SNI, and what each terminates with.
    let l = r.listener("0.0.0.0_443").expect("the HTTPS listener");
    assert_eq!(
        l.listener_filters
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>(),
        ["envoy.filters.listener.tls_inspector"]
    );
    let tls_of = |sni: &str| chain_tls(l, sni);
    let simple = tls_of("bookinfo.example.com");
    assert_eq!(
        sds_names(simple.common_tls_context.as_ref()),
        ["kubernetes://bookinfo-credential"]
    );
    assert_eq!(simple.require_client_certificate, None);
    let mutual = tls_of("admin.example.com");
    assert_eq!(
        sds_names(mutual.common_tls_context.as_ref()),
        [
            "kubernetes://admin-credential",
            "kubernetes://admin-credential-cacert"
        ]
    );
    assert_eq!(
        mutual.require_client_certificate.map(|b| b.value),
        Some(true)
    );
    // Both chains route with the port's table.
    let hit = simulate(&r, "http.443", "admin.example.com", "/", &[]).map(|(_, _, a)| a);
    assert_eq!(
        hit.as_deref(),
        Some("outbound|9080||productpage.default.svc.cluster.local")
    );

    // The secrets the gateway is sent: the certificates and keys, and the client CA.
    let mut names: Vec<&str> = r.secrets.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "kubernetes://admin-credential",
            "kubernetes://admin-credential-cacert",
            "kubernetes://bookinfo-credential"
        ]
    );
    let cert = r
        .secret("kubernetes://bookinfo-credential")
        .expect("secret");
    let Some(secret::Type::TlsCertificate(c)) = &cert.r#type else {
        panic!("a certificate: {cert:?}");
    };
    let inline = |d: &Option<xds_api::pb::envoy::config::core::v3::DataSource>| match d
        .as_ref()
        .and_then(|d| d.specifier.as_ref())
    {
        Some(xds_api::pb::envoy::config::core::v3::data_source::Specifier::InlineBytes(b)) => {
            String::from_utf8_lossy(b).into_owned()
        }
        other => panic!("inline bytes: {other:?}"),
    };
    assert!(inline(&c.certificate_chain).starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(inline(&c.private_key).contains("PRIVATE KEY"));
    let ca = r
        .secret("kubernetes://admin-credential-cacert")
        .expect("CA secret");
    assert!(
        matches!(&ca.r#type, Some(secret::Type::ValidationContext(v)) if v.trusted_ca.is_some()),
        "{ca:?}"
    );

    // The missing secret: no listener on 8443, and a warning that says why.
    assert!(r.listener("0.0.0.0_8443").is_none());
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("port 8443") && w.contains("no Secret istio-system/nowhere")),
        "{:?}",
        r.warnings
    );
    // Sidecars get no secrets.
    assert!(resources(&index, &productpage()).secrets.is_empty());

    // A secret whose certificate is not PEM: the server is skipped, the warning says which and why.
    let broken = [
        gateway.to_owned(),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: bookinfo-credential, namespace: istio-system}\nstringData: {tls.crt: not a certificate, tls.key: not a key}\n".to_owned(),
        tls_secret("admin-credential", "istio-system", &["admin.example.com"], true),
    ]
    .join("---\n");
    let index = self::index(&broken, OutboundTrafficPolicyMode::AllowAny);
    let r = resources(&index, &gateway_proxy());
    assert_eq!(
        r.warnings,
        [
            "Gateway istio-system/edge: the server on port 443 is skipped: Secret istio-system/bookinfo-credential: no certificate chain found in inline PEM (expected a PEM block such as -----BEGIN CERTIFICATE-----)",
            "Gateway istio-system/edge: the server on port 8443 is skipped: credentialName nowhere: no Secret istio-system/nowhere",
        ]
    );
    assert!(r.secret("kubernetes://bookinfo-credential").is_none());
    assert!(r.secret("kubernetes://admin-credential").is_some());
}

/// `credentialNames` (an RSA and an ECDSA certificate for one host, say): every one is a certificate
/// of the server's context, over SDS, in order (the proxy serves each client the one it takes), and
/// `tlsCertificates` likewise from files; a MUTUAL server's client CA is the first credential's.
#[test]
fn gateway_servers_take_every_credential_of_credential_names() {
    // Certificate files the gateway reads (two ECDSA ones: the key types are the proxy's business).
    let files = testkit::TempDir::new("gateway-tls-files").expect("a scratch directory");
    let ca = mesh_tls::CertificateAuthority::generate("cluster.local").expect("CA");
    for name in ["first", "second"] {
        let cert = ca
            .issue_server(&["files.example.com"], std::time::Duration::from_secs(3600))
            .expect("server certificate");
        files
            .write(&format!("{name}.pem"), cert.cert_chain_pem.as_bytes())
            .expect("written");
        files
            .write(&format!("{name}.key"), cert.key_pem.as_bytes())
            .expect("written");
    }
    let dir = files.path().display();
    let gateway = format!(
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: edge, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 443, name: https, protocol: HTTPS}}
    hosts: [bookinfo.example.com]
    tls: {{mode: MUTUAL, credentialNames: [bookinfo-rsa, bookinfo-ecdsa]}}
  - port: {{number: 443, name: https-files, protocol: HTTPS}}
    hosts: [files.example.com]
    tls:
      mode: SIMPLE
      tlsCertificates:
      - {{serverCertificate: {dir}/first.pem, privateKey: {dir}/first.key}}
      - {{serverCertificate: {dir}/second.pem, privateKey: {dir}/second.key}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: bookinfo}}
spec:
  hosts: [bookinfo.example.com, files.example.com]
  gateways: [istio-system/edge]
  http:
  - route: [{{destination: {{host: productpage, port: {{number: 9080}}}}}}]
"
    );
    let config = [
        gateway,
        tls_secret(
            "bookinfo-rsa",
            "istio-system",
            &["bookinfo.example.com"],
            true,
        ),
        tls_secret(
            "bookinfo-ecdsa",
            "istio-system",
            &["bookinfo.example.com"],
            true,
        ),
    ]
    .join("---\n");
    let index = index(&config, OutboundTrafficPolicyMode::AllowAny);
    let r = resources(&index, &gateway_proxy());
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let l = r.listener("0.0.0.0_443").expect("the HTTPS listener");
    let tls_of = |sni: &str| chain_tls(l, sni);
    let both = tls_of("bookinfo.example.com");
    assert_eq!(
        sds_names(both.common_tls_context.as_ref()),
        [
            "kubernetes://bookinfo-rsa",
            "kubernetes://bookinfo-ecdsa",
            "kubernetes://bookinfo-rsa-cacert"
        ]
    );
    let mut names: Vec<&str> = r.secrets.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "kubernetes://bookinfo-ecdsa",
            "kubernetes://bookinfo-rsa",
            "kubernetes://bookinfo-rsa-cacert"
        ]
    );
    let files = tls_of("files.example.com");
    let certificates: Vec<String> = files
        .common_tls_context
        .as_ref()
        .map(|c| {
            c.tls_certificates
                .iter()
                .map(|t| format!("{:?}", t.certificate_chain))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(certificates.len(), 2, "{certificates:?}");
    assert!(certificates[0].contains("first.pem"), "{certificates:?}");
    assert!(certificates[1].contains("second.pem"), "{certificates:?}");
}

/// `ISTIO_MUTUAL`: the client's cluster originates TLS with its own identity and the mesh root over
/// SDS (`default`, `ROOTCA`) and istiod's SNI; every proxy gets its identity, and a sidecar's inbound
/// side takes mutual TLS (a chain for TLS connections) beside plain text. Without a rule asking for
/// it, none of this is sent.
#[test]
fn istio_mutual_sends_identities_and_mesh_tls() {
    use xds_api::pb::envoy::extensions::transport_sockets::tls::v3::{
        DownstreamTlsContext, UpstreamTlsContext,
    };
    let rule = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
  subsets: [{name: v1, labels: {version: v1}}]
";
    let mut index = index(rule, OutboundTrafficPolicyMode::AllowAny);
    index.identity = Some(std::sync::Arc::new(
        control::identity::MeshIdentity::generate().expect("CA"),
    ));
    let client = resources(&index, &productpage());
    for (cluster, sni) in [
        (
            "outbound|9080||reviews.default.svc.cluster.local",
            "outbound_.9080_._.reviews.default.svc.cluster.local",
        ),
        (
            "outbound|9080|v1|reviews.default.svc.cluster.local",
            "outbound_.9080_.v1_.reviews.default.svc.cluster.local",
        ),
    ] {
        let c = client.cluster(cluster).expect("cluster");
        let tls: UpstreamTlsContext =
            xds_api::any::unpack(&tls_context(c.transport_socket.as_ref()))
                .expect("UpstreamTlsContext");
        assert_eq!(tls.sni, sni);
        assert_eq!(
            sds_names(tls.common_tls_context.as_ref()),
            ["default", "ROOTCA"]
        );
        // The server must be one of reviews' service accounts (its instances name none: `default`).
        assert_eq!(
            required_sans(tls.common_tls_context.as_ref()),
            ["spiffe://cluster.local/ns/default/sa/default"]
        );
    }
    // Auto mTLS, as istiod's: with mesh TLS in use and no rule, each endpoint with a sidecar is
    // reached over mutual TLS (`tlsMode-istio`), any other in plain text (`tlsMode-disabled`).
    for (cluster, sidecars) in [
        ("outbound|9080||ratings.default.svc.cluster.local", true),
        ("outbound|8080||billing.payments.svc.cluster.local", false),
    ] {
        let c = client.cluster(cluster).expect("cluster");
        assert!(
            c.transport_socket.is_none(),
            "{cluster}: chosen per endpoint"
        );
        let names: Vec<&str> = c
            .transport_socket_matches
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(names, ["tlsMode-istio", "tlsMode-disabled"], "{cluster}");
        let istio = &c.transport_socket_matches[0];
        assert_eq!(
            xds_api::json::to_json(istio.r#match.as_ref().expect("match")).to_string(),
            r#"{"tlsMode":"istio"}"#
        );
        let tls: UpstreamTlsContext =
            xds_api::any::unpack(&tls_context(istio.transport_socket.as_ref())).expect("TLS");
        assert_eq!(tls.sni, cluster.replace('|', "_."));
        let disabled = &c.transport_socket_matches[1];
        assert_eq!(disabled.r#match, Some(Default::default()));
        assert_eq!(
            disabled.transport_socket.as_ref().map(|t| t.name.as_str()),
            Some("envoy.transport_sockets.raw_buffer")
        );
        // Which endpoints say they take it: those with sidecars.
        let labels: Vec<bool> = client
            .endpoints_of(cluster)
            .expect("endpoints")
            .endpoints
            .iter()
            .flat_map(|l| &l.lb_endpoints)
            .map(|e| {
                e.metadata
                    .as_ref()
                    .and_then(|m| m.filter_metadata.get(xds_api::TRANSPORT_SOCKET_MATCH))
                    .is_some_and(|s| s == istio.r#match.as_ref().expect("match"))
            })
            .collect();
        assert!(!labels.is_empty(), "{cluster}");
        assert!(
            labels.iter().all(|l| *l == sidecars),
            "{cluster}: {labels:?}"
        );
    }
    let mut names: Vec<&str> = client.secrets.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["ROOTCA", "default"]);

    // The server side: its inbound listener has a chain for TLS connections that asks for the
    // client's certificate, and keeps its plain-text chain.
    let reviews = proxy(
        "sidecar~10.0.0.2~reviews-v1.default~default.svc.cluster.local",
        &[("app", "reviews"), ("version", "v1")],
    );
    let server = resources(&index, &reviews);
    let inbound = server
        .listeners
        .iter()
        .find(|l| l.traffic_direction == TrafficDirection::Inbound as i32)
        .expect("an inbound listener");
    let (tls_chains, plain_chains): (Vec<_>, Vec<_>) = inbound
        .filter_chains
        .iter()
        .partition(|c| c.transport_socket.is_some());
    assert_eq!(
        (tls_chains.len(), plain_chains.len()),
        (1, 1),
        "{inbound:?}"
    );
    assert_eq!(
        tls_chains[0]
            .filter_chain_match
            .as_ref()
            .map(|m| m.transport_protocol.as_str()),
        Some("tls")
    );
    let downstream: DownstreamTlsContext =
        xds_api::any::unpack(&tls_context(tls_chains[0].transport_socket.as_ref()))
            .expect("DownstreamTlsContext");
    assert_eq!(
        downstream.require_client_certificate.map(|b| b.value),
        Some(true)
    );
    assert_eq!(
        sds_names(downstream.common_tls_context.as_ref()),
        ["default", "ROOTCA"]
    );
    assert!(
        inbound
            .listener_filters
            .iter()
            .any(|f| f.name == "envoy.filters.listener.tls_inspector")
    );
    assert_eq!(server.secrets.len(), 2);

    // Captured (`virtualInbound`): each port's chain gets its TLS twin, on the same port.
    let captured_server = resources(&index, &captured(reviews.clone()));
    let virtual_inbound = captured_server
        .listener("virtualInbound")
        .expect("virtualInbound");
    let ports = |tls: bool| -> Vec<Option<u32>> {
        virtual_inbound
            .filter_chains
            .iter()
            .filter(|c| c.transport_socket.is_some() == tls)
            .map(|c| {
                c.filter_chain_match
                    .as_ref()
                    .and_then(|m| m.destination_port.as_ref())
                    .map(|p| p.value)
            })
            .collect()
    };
    let mut twins = ports(true);
    assert_eq!(
        twins.pop(),
        Some(None),
        "last, the passthrough's twin: any port the workload does not serve"
    );
    assert_eq!(twins, ports(false));
    assert!(!twins.is_empty());
    assert!(virtual_inbound.default_filter_chain.is_some(), "PERMISSIVE");

    // No rule asks for it: no identities, no TLS chain.
    let mut plain = index_plain();
    plain.identity = index.identity.clone();
    let r = resources(&plain, &reviews);
    assert!(r.secrets.is_empty());
    assert!(
        r.listeners
            .iter()
            .flat_map(|l| &l.filter_chains)
            .all(|c| c.transport_socket.is_none())
    );
}

fn index_plain() -> Index {
    index("", OutboundTrafficPolicyMode::AllowAny)
}

/// PeerAuthentication, as istiod picks it for a workload: the one selecting it in its namespace,
/// else its namespace's, else the mesh's (`istio-system`); STRICT keeps only the inbound chains that
/// terminate mutual TLS, PERMISSIVE adds them beside plain text, DISABLE leaves plain text alone.
#[test]
fn peer_authentication_decides_what_a_sidecar_takes() {
    let config = "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: DISABLE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: reviews, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  mtls: {mode: PERMISSIVE}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: billing, namespace: payments}
spec:
  selector: {matchLabels: {app: billing}}
  portLevelMtls: {'8080': {mode: DISABLE}}
";
    let mut index = index(config, OutboundTrafficPolicyMode::AllowAny);
    index.identity = Some(std::sync::Arc::new(
        control::identity::MeshIdentity::generate().expect("CA"),
    ));
    // (TLS chains, plain-text chains) of a proxy's inbound listener.
    let inbound = |p: &Proxy| {
        let r = resources(&index, p);
        let l = r
            .listeners
            .iter()
            .find(|l| l.traffic_direction == TrafficDirection::Inbound as i32)
            .expect("an inbound listener")
            .clone();
        let tls = l
            .filter_chains
            .iter()
            .filter(|c| c.transport_socket.is_some())
            .count();
        (tls, l.filter_chains.len() - tls, r.secrets.len())
    };
    let reviews = proxy(
        "sidecar~10.0.0.2~reviews-v1.default~default.svc.cluster.local",
        &[("app", "reviews"), ("version", "v1")],
    );
    assert_eq!(inbound(&reviews), (1, 1, 2), "PERMISSIVE: its own");
    assert_eq!(
        inbound(&productpage()),
        (0, 1, 2),
        "DISABLE: the namespace's"
    );
    let billing = proxy(
        "sidecar~10.0.1.1~billing-1.payments~payments.svc.cluster.local",
        &[("app", "billing")],
    );
    // Its own PeerAuthentication leaves the mode UNSET: the mesh's STRICT; its port 8080 is DISABLE.
    // Without capture every port arrives at 15006, which then takes both transports, and the
    // port's virtual host refuses the one its mode does not take.
    assert_eq!(inbound(&billing), (1, 1, 2), "STRICT, port 8080 DISABLE");
    let r = resources(&index, &billing);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let hit = |transport: &str| {
        inbound_hit_over(
            &r,
            "virtualInbound",
            "10.0.1.1",
            15006,
            "billing.payments:8080",
            transport,
        )
    };
    assert_eq!(hit("raw_buffer"), "http:inbound|8080||");
    assert!(hit("tls").contains("403"), "{}", hit("tls"));
    // Without portLevelMtls, STRICT alone: mutual TLS only.
    let strict_only = config.replace("  portLevelMtls: {'8080': {mode: DISABLE}}\n", "");
    let mut strict_index = self::index(&strict_only, OutboundTrafficPolicyMode::AllowAny);
    strict_index.identity = index.identity.clone();
    let r = resources(&strict_index, &billing);
    assert_eq!(
        r.listener("virtualInbound")
            .map(|l| l.filter_chains.iter().all(|c| c.transport_socket.is_some())),
        Some(true),
        "STRICT: only the mutual-TLS chain"
    );
    assert_eq!(
        inbound(&captured(billing.clone())),
        (1, 1, 2),
        "captured: port 8080 in plain text only, the passthrough (other ports) over mutual TLS only"
    );
    let captured_billing = resources(&index, &captured(billing.clone()));
    let virtual_inbound = captured_billing
        .listener("virtualInbound")
        .expect("virtualInbound");
    assert!(
        virtual_inbound.default_filter_chain.is_none(),
        "STRICT: no plain-text passthrough"
    );
    // UNSET defers to the next level.
    let unset = config.replace("{mode: PERMISSIVE}", "{mode: UNSET}");
    let mut index = self::index(&unset, OutboundTrafficPolicyMode::AllowAny);
    index.identity = Some(std::sync::Arc::new(
        control::identity::MeshIdentity::generate().expect("CA"),
    ));
    let r = resources(&index, &reviews);
    assert!(
        r.listeners
            .iter()
            .flat_map(|l| &l.filter_chains)
            .all(|c| c.transport_socket.is_none()),
        "UNSET: the namespace's DISABLE"
    );
}

// === Protocol sniffing ===

/// The filter chain a captured connection takes: its name and whether it speaks HTTP, or `None`.
fn sniffed_chain(
    r: &ProxyResources,
    listener: &str,
    port: u16,
    transport: &str,
    alpn: &[&str],
) -> Option<(String, bool)> {
    use proxy_model::listener::{ConnectionInfo, Listener, NetworkFilter};
    let proto = r.listener(listener).expect("listener");
    let l =
        Listener::from_proto_with(proto, &At::root(listener), &ads_secrets(r)).expect("converts");
    let alpn: Vec<String> = alpn.iter().map(|a| (*a).to_owned()).collect();
    let chain = l.select(&ConnectionInfo {
        destination_port: port,
        destination_ip: Some("10.0.3.1".parse().expect("ip")),
        server_name: None,
        transport_protocol: transport,
        application_protocols: &alpn,
        source: None,
    })?;
    Some((
        chain.name.clone(),
        matches!(chain.network, NetworkFilter::Http(_)),
    ))
}

/// A port whose protocol no service declares is sniffed with traffic capture, as istiod does it:
/// the http_inspector's HTTP goes to a connection manager (routes apply), anything else through as
/// TCP, on the client's outbound listener and on the server's inbound one; with STRICT mutual TLS
/// the server takes only TLS, still told apart by the ALPN a client sidecar's HTTP pool offers.
#[test]
fn undeclared_protocols_are_sniffed_with_capture() {
    let mesh = "services:
- name: store
  ports: [{number: 7000, name: store}]
- name: web
  ports: [{number: 8000, name: http}]
workloads:
- {name: client, labels: {app: client}, address: 10.0.3.1}
- {name: store-1, service: store, labels: {app: store}, address: 10.0.3.2}
- {name: web-1, service: web, labels: {app: web}, address: 10.0.3.3}
";
    let build = |config: &str| {
        let registry = load_registry_str(mesh).expect("mesh file");
        let resources = parse_resources("test.yaml", config).expect("valid config");
        let mut index = Index::build(
            &registry,
            &resources,
            MeshSettings {
                outbound_policy: OutboundTrafficPolicyMode::AllowAny,
                ..MeshSettings::default()
            },
        );
        index.identity = Some(std::sync::Arc::new(
            control::identity::MeshIdentity::generate().expect("CA"),
        ));
        index
    };
    let captured = |id: &str, app: &str| {
        let mut p = proxy(id, &[("app", app)]);
        p.interception = Interception::Redirect;
        p
    };
    let client = captured(
        "sidecar~10.0.3.1~client.default~default.svc.cluster.local",
        "client",
    );
    let store = captured(
        "sidecar~10.0.3.2~store-1.default~default.svc.cluster.local",
        "store",
    );

    let index = build("");
    let r = resources(&index, &client);
    let out = r.listener("0.0.0.0_7000").expect("outbound listener");
    let filters: Vec<&str> = out
        .listener_filters
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(filters, ["envoy.filters.listener.http_inspector"]);
    let http = Some(("0.0.0.0_7000-http".to_owned(), true));
    assert_eq!(
        sniffed_chain(&r, "0.0.0.0_7000", 7000, "raw_buffer", &["http/1.1"]),
        http
    );
    assert_eq!(
        sniffed_chain(&r, "0.0.0.0_7000", 7000, "raw_buffer", &["h2c"]),
        http
    );
    let tcp = sniffed_chain(&r, "0.0.0.0_7000", 7000, "raw_buffer", &[]).expect("a chain");
    assert!(!tcp.1, "not HTTP: the TCP proxy ({tcp:?})");
    // HTTP is routed by the port's route table, as any HTTP port's.
    assert_eq!(
        simulate(&r, "7000", "store", "/", &[])
            .map(|(_, _, a)| a)
            .as_deref(),
        Some("outbound|7000||store.default.svc.cluster.local")
    );
    // A declared HTTP port is not sniffed.
    let web = r.listener("0.0.0.0_8000").expect("web listener");
    assert!(web.listener_filters.is_empty());

    let r = resources(&index, &store);
    let inbound = r.listener("virtualInbound").expect("virtualInbound");
    let names: Vec<&str> = inbound
        .filter_chains
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["0.0.0.0_7000-http", "0.0.0.0_7000-tcp"]);
    assert_eq!(
        sniffed_chain(&r, "virtualInbound", 7000, "raw_buffer", &["http/1.0"]),
        Some(("0.0.0.0_7000-http".to_owned(), true))
    );
    assert_eq!(
        sniffed_chain(&r, "virtualInbound", 7000, "raw_buffer", &[]),
        Some(("0.0.0.0_7000-tcp".to_owned(), false))
    );

    // STRICT: mutual TLS only, HTTP by the ALPN of a client sidecar's HTTP/1.1 pool.
    let index = build(
        "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
",
    );
    let r = resources(&index, &store);
    let inbound = r.listener("virtualInbound").expect("virtualInbound");
    let filters: Vec<&str> = inbound
        .listener_filters
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(
        filters,
        [
            "envoy.filters.listener.original_dst",
            "envoy.filters.listener.tls_inspector",
            "envoy.filters.listener.http_inspector"
        ]
    );
    assert_eq!(
        sniffed_chain(&r, "virtualInbound", 7000, "tls", &["http/1.1"]),
        Some(("0.0.0.0_7000-http-mtls".to_owned(), true))
    );
    assert_eq!(
        sniffed_chain(&r, "virtualInbound", 7000, "tls", &[]),
        Some(("0.0.0.0_7000-tcp-mtls".to_owned(), false))
    );
    // Plain text reaches no chain, on this port or any other (no plain-text passthrough).
    assert_eq!(
        sniffed_chain(&r, "virtualInbound", 7000, "raw_buffer", &["http/1.1"]),
        None
    );
    assert_eq!(
        sniffed_chain(&r, "virtualInbound", 7001, "raw_buffer", &[]),
        None
    );
    assert_eq!(
        sniffed_chain(&r, "virtualInbound", 7001, "tls", &[]),
        Some(("virtualInbound-mtls".to_owned(), false))
    );
}

#[test]
fn vhds_asked_over_state_of_the_world_gets_whole_tables_and_a_warning() {
    let index = std::sync::Arc::new(index(REVIEWS_DR, OutboundTrafficPolicyMode::AllowAny));
    let generator = control::generate::Generator::new(&index, InboundAddressing::SidecarPort);
    let mut asked = productpage();
    asked.vhds_over_sotw = true;
    let (snapshot, warnings) = generator.snapshot(&asked, "v");
    assert_eq!(
        warnings,
        [
            "asks for its virtual hosts over VHDS (BOSUN_VHDS) on a state-of-the-world ADS stream, \
             where proxies take VHDS only over delta xDS (DELTA_GRPC): its route tables are sent whole"
        ]
    );
    assert!(
        snapshot
            .resources(xds_api::type_url::VIRTUAL_HOST)
            .is_none()
    );
    let (plain, _) = generator.snapshot(&productpage(), "v");
    assert!(
        snapshot.same_resources(&plain),
        "the tables a SotW proxy gets"
    );
}
