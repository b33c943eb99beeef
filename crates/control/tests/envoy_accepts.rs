//! Real Envoy must accept everything the control plane generates, for every kind of proxy: sidecars
//! without capture (explicit proxy), captured sidecars (istiod's virtual listeners with original
//! destination) and gateways. Each proxy's resources are put into a static bootstrap (EDS endpoints
//! and RDS route tables inlined) and checked with `envoy --mode validate`, which binds nothing.

use std::collections::HashMap;

use control::generate::{InboundAddressing, ProxyResources, generate};
use control::index::{AccessLogSettings, Index, MeshSettings};
use control::node::{Interception, Proxy};
use control::store::parse_resources;
use mesh_api::registry::{AccessLogEncoding, load_registry_str};
use mesh_api::types::sidecar::OutboundTrafficPolicyMode;
use testkit::Envoy;
use xds_api::pb::envoy::config::bootstrap::v3::{Bootstrap, bootstrap::StaticResources};
use xds_api::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use xds_api::pb::envoy::config::core::v3::transport_socket::ConfigType as SocketConfig;
use xds_api::pb::envoy::config::listener::v3::{Listener, filter::ConfigType};
use xds_api::pb::envoy::config::route::v3::RouteConfiguration;
use xds_api::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use xds_api::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use xds_api::pb::envoy::extensions::transport_sockets::tls::v3::{
    DownstreamTlsContext, tls_parameters::TlsProtocol,
};

const MESH: &str = "services:
- name: productpage
  ports: [{number: 9080, name: http, protocol: HTTP}]
- name: reviews
  ports: [{number: 9080, name: http}]
- name: grpc-api
  ports: [{number: 7070, name: grpc, protocol: GRPC}]
- name: mongo
  ports: [{number: 27017, name: tcp, protocol: TCP}]
- name: cache
  ports: [{number: 6380, name: cache}]
- name: mysql
  addresses: [10.96.0.7]
  ports: [{number: 27017, name: mysql}]
- name: cache-replica
  addresses: [10.96.0.8]
  ports: [{number: 6380, name: cache}]
workloads:
- {name: productpage-v1, service: productpage, labels: {app: productpage, version: v1}, address: 10.0.0.1}
- {name: reviews-v1, service: reviews, labels: {app: reviews, version: v1}, address: 10.0.0.2}
- {name: reviews-v2, service: reviews, labels: {app: reviews, version: v2, topology.kubernetes.io/region: r2, topology.kubernetes.io/zone: z1}, address: 10.0.0.3}
- {name: grpc-1, service: grpc-api, labels: {app: grpc-api}, address: 10.0.0.4}
- {name: mongo-1, service: mongo, labels: {app: mongo}, address: 10.0.0.5}
- {name: cache-1, service: cache, labels: {app: cache}, address: 10.0.0.6}
- {name: gateway, namespace: istio-system, labels: {istio: ingressgateway}, address: 10.0.9.1}
";

/// A bit of everything the translation supports.
const CONFIG: &str = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      simple: RANDOM
      localityLbSetting: {failoverPriority: [topology.kubernetes.io/region, version=v1]}
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 1s}
      http: {http1MaxPendingRequests: 10, http2MaxRequests: 50, maxRequestsPerConnection: 5, maxRetries: 3, idleTimeout: 30s}
    outlierDetection: {consecutive5xxErrors: 3, consecutiveGatewayErrors: 2, interval: 5s, baseEjectionTime: 15s, maxEjectionPercent: 50}
  subsets:
  - {name: v1, labels: {version: v1}, trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}
  - {name: v2, labels: {version: v2}, trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: productpage}
spec:
  host: productpage
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpCookie: {name: session, path: /, ttl: 0s, attributes: [{name: SameSite, value: Strict}]}}
    portLevelSettings:
    - port: {number: 9080}
      loadBalancer: {consistentHash: {httpHeaderName: x-user, maglev: {tableSize: 1009}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: grpc-api}
spec:
  host: grpc-api
  trafficPolicy:
    loadBalancer:
      consistentHash: {useSourceIp: true, ringHash: {minimumRingSize: 256}}
      localityLbSetting: {distribute: [{from: '*', to: {r1: 40, r2: 60}}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: external}
spec:
  host: api.example.com
  trafficPolicy: {loadBalancer: {consistentHash: {httpQueryParameterName: user, minimumRingSize: 2048}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: jason
    match:
    - headers: {end-user: {exact: jason}}
      queryParams: {debug: {prefix: 'on'}}
      ignoreUriCase: true
      uri: {prefix: /reviews}
    - withoutHeaders: {x-canary: {}}
      method: {exact: GET}
      authority: {regex: 'reviews.*'}
    fault:
      delay: {fixedDelay: 100ms, percentage: {value: 10}}
      abort: {httpStatus: 503, percentage: {value: 0.5}}
    route:
    - {destination: {host: reviews, subset: v2}, weight: 90, headers: {request: {set: {x-subset: v2}}}}
    - {destination: {host: reviews, subset: v1}, weight: 10}
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: '5xx,gateway-error,503'}
    timeout: 10s
    mirror: {host: reviews, subset: v1}
    mirrorPercentage: {value: 5}
    headers:
      request: {set: {x-a: '1'}, add: {x-b: '2'}, remove: [x-c]}
      response: {remove: [server]}
  - match: [{uri: {exact: /old}}]
    redirect: {uri: /new, authority: reviews.example.com, redirectCode: 302}
  - match: [{uri: {regex: '/static/.*'}}]
    directResponse: {status: 204, body: {string: nothing}}
  - match: [{uri: {prefix: /v2}}]
    rewrite: {uri: /, authority: reviews-v2}
    route: [{destination: {host: reviews, subset: v2}}]
    retries: {attempts: 0}
  - route: [{destination: {host: reviews, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external}
spec:
  hosts: [api.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 443, name: https, protocol: HTTPS}, {number: 80, name: http, protocol: HTTP}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: static-external}
spec:
  hosts: [db.example.com]
  addresses: [192.0.2.0/24]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  endpoints: [{address: 192.0.2.10}, {address: 192.0.2.11, ports: {tcp: 15432}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ['*']
  - port: {number: 8081, name: http-redirect, protocol: HTTP}
    hosts: [bookinfo.example.com]
    tls: {httpsRedirect: true}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo}
spec:
  hosts: ['*']
  gateways: [bookinfo-gateway]
  http:
  - match: [{uri: {exact: /productpage}}]
    route: [{destination: {host: productpage, port: {number: 9080}}}]
    corsPolicy:
      allowOrigins: [{exact: 'https://bookinfo.example.com'}, {regex: 'https://.*\\.example\\.org'}]
      allowMethods: [GET]
      allowHeaders: [x-token]
      exposeHeaders: [x-trace]
      maxAge: 1h
      allowCredentials: true
      unmatchedPreflights: IGNORE
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: mongo}
spec:
  host: mongo
  trafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: mongo}
spec:
  hosts: [mongo]
  tcp:
  - match: [{destinationSubnets: [10.0.0.0/24, 10.0.1.7], sourceLabels: {app: reviews}}]
    route: [{destination: {host: mongo}}]
  - match: [{port: 27017}]
    route:
    - {destination: {host: mongo}, weight: 50}
    - {destination: {host: db.example.com}, weight: 50}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external-tls}
spec:
  hosts: [secure.example.com, '*.wild.example.com']
  location: MESH_EXTERNAL
  resolution: NONE
  ports: [{number: 443, name: tls, protocol: TLS}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: secure}
spec:
  hosts: [secure.example.com]
  tls:
  - match: [{sniHosts: [secure.example.com], destinationSubnets: [192.0.2.0/24]}]
    route: [{destination: {host: api.example.com, port: {number: 443}}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge}
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
metadata: {name: edge-tcp}
spec:
  hosts: ['*']
  gateways: [edge]
  tcp:
  - route:
    - {destination: {host: reviews, subset: v1, port: {number: 9080}}, weight: 90}
    - {destination: {host: reviews, subset: v2, port: {number: 9080}}, weight: 10}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: edge-tls}
spec:
  hosts: ['*.example.com']
  gateways: [edge]
  tls:
  - match: [{sniHosts: [a.example.com, '*.b.example.com']}]
    route: [{destination: {host: productpage, port: {number: 9080}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage}
spec:
  hosts: [productpage]
  http:
  - name: api
    match: [{uri: {prefix: /api}}]
    delegate: {name: productpage-api}
  - route: [{destination: {host: productpage}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage-api}
spec:
  http:
  - match: [{uri: {prefix: /api/v1}, headers: {x-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: productpage}}]
";

/// The mesh's access log in `encoding`, to standard output, in Istio's default format.
fn access_log(encoding: AccessLogEncoding) -> Option<AccessLogSettings> {
    Some(AccessLogSettings {
        file: "/dev/stdout".to_owned(),
        encoding,
        format: None,
    })
}

fn index(policy: OutboundTrafficPolicyMode, access_log: Option<AccessLogSettings>) -> Index {
    Index::build(
        &load_registry_str(MESH).expect("mesh"),
        &parse_resources("config.yaml", CONFIG).expect("valid"),
        MeshSettings {
            outbound_policy: policy,
            access_log,
        },
    )
}

fn proxy(id: &str, labels: &[(&str, &str)], interception: Interception) -> Proxy {
    let mut p = Proxy::parse_id(id).expect("id");
    p.labels = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    p.interception = interception;
    p
}

/// The RDS references of a listener's HTTP connection managers replaced by the route tables.
fn inline_routes(l: &mut Listener, routes: &HashMap<String, RouteConfiguration>) {
    let chains = l
        .filter_chains
        .iter_mut()
        .chain(l.default_filter_chain.as_mut());
    for chain in chains {
        for f in &mut chain.filters {
            let Some(ConfigType::TypedConfig(any)) = &mut f.config_type else {
                continue;
            };
            let Ok(mut hcm) = xds_api::any::unpack::<HttpConnectionManager>(any) else {
                continue;
            };
            if let Some(RouteSpecifier::Rds(rds)) = &hcm.route_specifier {
                let rc = routes
                    .get(&rds.route_config_name)
                    .unwrap_or_else(|| panic!("no route table {}", rds.route_config_name))
                    .clone();
                hcm.route_specifier = Some(RouteSpecifier::RouteConfig(rc));
                *any = xds_api::any::pack(&hcm);
            }
        }
    }
}

fn static_bootstrap(r: &ProxyResources) -> String {
    let routes: HashMap<String, RouteConfiguration> = r
        .routes
        .iter()
        .map(|rc| (rc.name.clone(), rc.clone()))
        .collect();
    let mut listeners = r.listeners.clone();
    for l in &mut listeners {
        inline_routes(l, &routes);
    }
    let clusters = r
        .clusters
        .iter()
        .cloned()
        .map(|mut c| {
            if c.eds_cluster_config.is_some() {
                c.eds_cluster_config = None;
                c.cluster_discovery_type =
                    Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32));
                c.load_assignment = r.endpoints_of(&c.name).cloned();
            }
            c
        })
        .collect();
    let bootstrap = Bootstrap {
        static_resources: Some(StaticResources {
            listeners,
            clusters,
            ..Default::default()
        }),
        ..Default::default()
    };
    serde_json::to_string_pretty(&xds_api::json::to_json(&bootstrap)).expect("json")
}

#[test]
fn envoy_accepts_what_every_kind_of_proxy_is_sent() {
    if Envoy::find_or_skip("envoy_accepts_what_every_kind_of_proxy_is_sent").is_none() {
        return;
    }
    let cases = [
        (
            "sidecar without capture",
            proxy(
                "sidecar~10.0.0.1~productpage-v1.default~default.svc.cluster.local",
                &[("app", "productpage"), ("version", "v1")],
                Interception::None,
            ),
            OutboundTrafficPolicyMode::AllowAny,
            &["virtualOutbound", "virtualInbound"][..],
        ),
        (
            "captured sidecar, ALLOW_ANY",
            proxy(
                "sidecar~10.0.0.2~reviews-v1.default~default.svc.cluster.local",
                &[("app", "reviews"), ("version", "v1")],
                Interception::Redirect,
            ),
            OutboundTrafficPolicyMode::AllowAny,
            // TCP by subnet and weight, by a service's cluster IP and by a ServiceEntry's address
            // range, TLS by SNI, a sniffed port (HTTP or TCP) on the wildcard and on a cluster IP.
            &[
                "0.0.0.0_27017",
                "10.96.0.7_27017",
                "10.96.0.8_6380",
                "0.0.0.0_443",
                "0.0.0.0_5432",
                "0.0.0.0_6380",
            ][..],
        ),
        (
            "captured sidecar of a port whose protocol is sniffed",
            proxy(
                "sidecar~10.0.0.6~cache-1.default~default.svc.cluster.local",
                &[("app", "cache")],
                Interception::Redirect,
            ),
            OutboundTrafficPolicyMode::AllowAny,
            &["virtualInbound", "0.0.0.0_6380"][..],
        ),
        (
            "captured sidecar, REGISTRY_ONLY",
            proxy(
                "sidecar~10.0.0.1~productpage-v1.default~default.svc.cluster.local",
                &[("app", "productpage")],
                Interception::Redirect,
            ),
            OutboundTrafficPolicyMode::RegistryOnly,
            &["0.0.0.0_27017", "0.0.0.0_443"][..],
        ),
        (
            "ingress gateway",
            proxy(
                "router~10.0.9.1~gateway.istio-system~istio-system.svc.cluster.local",
                &[("istio", "ingressgateway")],
                Interception::Redirect,
            ),
            OutboundTrafficPolicyMode::AllowAny,
            // HTTP, TCP weighted, TLS passthrough by SNI.
            &["0.0.0.0_8080", "0.0.0.0_31400", "0.0.0.0_8443"][..],
        ),
    ];
    for (i, (what, proxy, policy, expected)) in cases.into_iter().enumerate() {
        // Istio's access log on every filter: in text, and for every other case in JSON.
        let encoding = if i % 2 == 0 {
            AccessLogEncoding::Text
        } else {
            AccessLogEncoding::Json
        };
        let r = generate(
            &index(policy, access_log(encoding)),
            &proxy,
            InboundAddressing::SidecarPort,
        );
        for name in expected {
            assert!(r.listener(name).is_some(), "{what}: listener {name}");
        }
        let filters = r
            .listeners
            .iter()
            .flat_map(|l| {
                l.filter_chains
                    .iter()
                    .chain(l.default_filter_chain.as_ref())
            })
            .flat_map(|c| &c.filters)
            .filter_map(|f| match &f.config_type {
                Some(ConfigType::TypedConfig(any)) => Some(any),
                _ => None,
            });
        let mut logged = 0;
        for any in filters {
            let logs = if let Ok(hcm) = xds_api::any::unpack::<HttpConnectionManager>(any) {
                hcm.access_log
            } else if let Ok(tcp) = xds_api::any::unpack::<TcpProxy>(any) {
                tcp.access_log
            } else {
                continue;
            };
            assert_eq!(logs.len(), 1, "{what}: {any:?}");
            logged += 1;
        }
        assert!(logged >= expected.len(), "{what}: {logged} filters logged");
        let yaml = static_bootstrap(&r);
        if let Err(e) = Envoy::validate(&yaml) {
            panic!("{what}: Envoy refused the generated config: {e}\n{yaml}");
        }
    }
}

/// A Gateway TLS server (`mode: SIMPLE`, certificate files, versions and cipher suites) with a `tcp`
/// route: TLS terminated on the gateway, the plaintext forwarded by `tcp_proxy`, the chain chosen by
/// the server's hosts (SNI), its `tls_params` as istiod writes them; and an `AUTO_PASSTHROUGH` server.
#[test]
fn envoy_accepts_a_tls_terminating_tcp_gateway() {
    if Envoy::find_or_skip("envoy_accepts_a_tls_terminating_tcp_gateway").is_none() {
        return;
    }
    let ca = mesh_tls::CertificateAuthority::generate("cluster.local").expect("CA");
    let cert = ca
        .issue_server(
            &["db.example.com"],
            std::time::Duration::from_secs(24 * 3600),
        )
        .expect("certificate");
    let dir = testkit::TempDir::new("bosun-gateway-tls").expect("temp dir");
    let cert_path = dir
        .write("db.pem", cert.cert_chain_pem.as_bytes())
        .expect("write");
    let key_path = dir.write("db.key", cert.key_pem.as_bytes()).expect("write");
    let config = format!(
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: db-gateway}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 15443, name: tls-db, protocol: TLS}}
    hosts: [db.example.com]
    tls: {{mode: SIMPLE, serverCertificate: {cert}, privateKey: {key}, minProtocolVersion: TLSV1_2, maxProtocolVersion: TLSV1_3, cipherSuites: [ECDHE-ECDSA-AES128-GCM-SHA256, ECDHE-RSA-AES128-GCM-SHA256]}}
  - port: {{number: 15444, name: tls-auto, protocol: TLS}}
    hosts: ['*.local']
    tls: {{mode: AUTO_PASSTHROUGH}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: db}}
spec:
  hosts: [db.example.com]
  gateways: [db-gateway]
  tcp:
  - route: [{{destination: {{host: mongo}}}}]
",
        cert = cert_path.display(),
        key = key_path.display()
    );
    let index = Index::build(
        &load_registry_str(MESH).expect("mesh"),
        &parse_resources("config.yaml", &config).expect("valid"),
        MeshSettings::default(),
    );
    let gateway = proxy(
        "router~10.0.9.1~gateway.istio-system~istio-system.svc.cluster.local",
        &[("istio", "ingressgateway")],
        Interception::Redirect,
    );
    let r = generate(&index, &gateway, InboundAddressing::SidecarPort);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let auto = r
        .listener("0.0.0.0_15444")
        .expect("AUTO_PASSTHROUGH listener");
    assert!(auto.filter_chains.len() > 1, "a chain per service port");
    proxy_model::listener::Listener::from_proto(auto, &proxy_model::error::At::root("auto"))
        .expect("bosun proxy accepts the AUTO_PASSTHROUGH listener");
    let listener = r.listener("0.0.0.0_15443").expect("TLS gateway listener");
    let chain = &listener.filter_chains[0];
    assert!(chain.transport_socket.is_some(), "TLS terminated");
    assert_eq!(
        chain
            .filter_chain_match
            .as_ref()
            .map(|m| m.server_names.clone()),
        Some(vec!["db.example.com".to_owned()])
    );
    let Some(SocketConfig::TypedConfig(any)) = chain
        .transport_socket
        .as_ref()
        .and_then(|t| t.config_type.clone())
    else {
        panic!("a typed transport socket");
    };
    let context: DownstreamTlsContext = xds_api::any::unpack(&any).expect("DownstreamTlsContext");
    let params = context
        .common_tls_context
        .and_then(|c| c.tls_params)
        .expect("tls_params");
    assert_eq!(
        (
            params.tls_minimum_protocol_version,
            params.tls_maximum_protocol_version,
            params.cipher_suites.clone()
        ),
        (
            TlsProtocol::TlSv12 as i32,
            TlsProtocol::TlSv13 as i32,
            vec![
                "ECDHE-ECDSA-AES128-GCM-SHA256".to_owned(),
                "ECDHE-RSA-AES128-GCM-SHA256".to_owned()
            ]
        )
    );
    // bosun proxy takes it as well.
    proxy_model::listener::Listener::from_proto(listener, &proxy_model::error::At::root("gw"))
        .expect("bosun proxy accepts the gateway listener");
    let yaml = static_bootstrap(&r);
    if let Err(e) = Envoy::validate(&yaml) {
        panic!("Envoy refused the TLS-terminating TCP gateway: {e}\n{yaml}");
    }
}

/// Sidecar `ingress` listeners, captured and not: bound listeners of their own, `virtualInbound`
/// chains, clusters to the loopback, the workload's address, a Unix socket, the original destination.
#[test]
fn envoy_accepts_sidecar_ingress_listeners() {
    if Envoy::find_or_skip("envoy_accepts_sidecar_ingress_listeners").is_none() {
        return;
    }
    let ca = mesh_tls::CertificateAuthority::generate("cluster.local").expect("CA");
    let cert = ca
        .issue_server(
            &["reviews.example.com"],
            std::time::Duration::from_secs(24 * 3600),
        )
        .expect("certificate");
    let dir = testkit::TempDir::new("bosun-sidecar-ingress-tls").expect("temp dir");
    let cert_path = dir
        .write("reviews.pem", cert.cert_chain_pem.as_bytes())
        .expect("write");
    let key_path = dir
        .write("reviews.key", cert.key_pem.as_bytes())
        .expect("write");
    let ca_path = dir
        .write("clients-ca.pem", ca.root_pem().as_bytes())
        .expect("write");
    let config = format!(
        "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: reviews-ingress}}
spec:
  workloadSelector: {{labels: {{app: reviews}}}}
  inboundConnectionPool: {{tcp: {{maxConnections: 100, connectTimeout: 1s}}, http: {{idleTimeout: 30s, maxRequestsPerConnection: 10}}}}
  ingress:
  - port: {{number: 9446, protocol: HTTPS, name: https}}
    defaultEndpoint: 127.0.0.1:8080
    tls: {{mode: SIMPLE, serverCertificate: {cert}, privateKey: {key}}}
  - port: {{number: 9447, protocol: TLS, name: tls}}
    defaultEndpoint: 127.0.0.1:8081
    tls: {{mode: SIMPLE, serverCertificate: {cert}, privateKey: {key}}}
  - port: {{number: 9448, protocol: HTTPS, name: https-mutual}}
    defaultEndpoint: 127.0.0.1:8082
    tls: {{mode: MUTUAL, serverCertificate: {cert}, privateKey: {key}, caCertificates: {ca}}}",
        cert = cert_path.display(),
        key = key_path.display(),
        ca = ca_path.display()
    ) + "
  - port: {number: 9080, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:8080
    connectionPool: {http: {http1MaxPendingRequests: 5, maxRetries: 1}}
  - port: {number: 7070, protocol: GRPC, name: grpc}
    defaultEndpoint: unix:///var/run/app.sock
  - port: {number: 9090, protocol: TCP, name: tcp}
    defaultEndpoint: 0.0.0.0:7000
  - port: {number: 9443, protocol: TCP, name: tcp-direct}
    captureMode: NONE
    defaultEndpoint: 0.0.0.0:8443
  - port: {number: 9444, protocol: TCP, name: tcp-original}
    captureMode: IPTABLES
";
    let index = Index::build(
        &load_registry_str(MESH).expect("mesh"),
        &parse_resources("config.yaml", &config).expect("valid"),
        MeshSettings::default(),
    );
    for (interception, listeners) in [
        (
            Interception::None,
            &[
                "virtualInbound",
                "10.0.0.2_9080",
                "10.0.0.2_7070",
                "10.0.0.2_9443",
                "10.0.0.2_9446",
                "10.0.0.2_9447",
                "10.0.0.2_9448",
            ][..],
        ),
        (
            Interception::Redirect,
            &["virtualInbound", "10.0.0.2_9443"][..],
        ),
    ] {
        let sidecar = proxy(
            "sidecar~10.0.0.2~reviews-v1.default~default.svc.cluster.local",
            &[("app", "reviews"), ("version", "v1")],
            interception,
        );
        let r = generate(&index, &sidecar, InboundAddressing::SidecarPort);
        for name in listeners {
            assert!(
                r.listener(name).is_some(),
                "{interception:?}: listener {name}"
            );
        }
        // TLS terminated on the HTTPS, TLS and mutual-TLS ports' chains; bosun proxy takes them too.
        for l in &r.listeners {
            proxy_model::listener::Listener::from_proto(l, &proxy_model::error::At::root(&l.name))
                .unwrap_or_else(|e| {
                    panic!("{interception:?}: bosun proxy refuses {}: {e:?}", l.name)
                });
        }
        let terminating = r
            .listeners
            .iter()
            .flat_map(|l| &l.filter_chains)
            .filter(|c| c.transport_socket.is_some())
            .count();
        assert_eq!(terminating, 3, "{interception:?}");
        let yaml = static_bootstrap(&r);
        if let Err(e) = Envoy::validate(&yaml) {
            panic!("{interception:?}: Envoy refused the sidecar ingress config: {e}\n{yaml}");
        }
    }
}
