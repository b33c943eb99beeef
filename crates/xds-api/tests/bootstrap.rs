//! Reading Envoy bootstraps: the fixtures under `tests/fixtures/` decoded into envoy-types structs.

use std::path::{Path, PathBuf};

use xds_api::any;
use xds_api::bootstrap::{self, Bootstrap};
use xds_api::pb::envoy::config::cluster::v3 as cluster;
use xds_api::pb::envoy::config::core::v3 as core;
use xds_api::pb::envoy::config::listener::v3 as listener;
use xds_api::pb::envoy::config::route::v3 as route;
use xds_api::pb::envoy::extensions::access_loggers::file::v3::FileAccessLog;
use xds_api::pb::envoy::extensions::access_loggers::stream::v3::StdoutAccessLog;
use xds_api::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use xds_api::pb::envoy::extensions::filters::http::router::v3::Router;
use xds_api::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use xds_api::pb::envoy::extensions::filters::network::tcp_proxy::v3 as tcp;
use xds_api::pb::envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext;
use xds_api::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use xds_api::pb::google::protobuf::{Any, Duration};
use xds_api::type_url;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load(name: &str) -> Bootstrap {
    match bootstrap::from_file(&fixture(name)) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    }
}

fn duration(seconds: i64, nanos: i32) -> Option<Duration> {
    Some(Duration { seconds, nanos })
}

fn typed_config(filter: &listener::Filter) -> &Any {
    match &filter.config_type {
        Some(listener::filter::ConfigType::TypedConfig(any)) => any,
        other => panic!("filter {} has no typed_config: {other:?}", filter.name),
    }
}

fn hcm_of(b: &Bootstrap) -> hcm::HttpConnectionManager {
    let resources = b.static_resources.as_ref().expect("static_resources");
    let filter = &resources.listeners[0].filter_chains[0].filters[0];
    assert_eq!(filter.name, "envoy.filters.network.http_connection_manager");
    any::unpack(typed_config(filter)).expect("HttpConnectionManager")
}

fn route_action(r: &route::Route) -> &route::RouteAction {
    match &r.action {
        Some(route::route::Action::Route(action)) => action,
        other => panic!("route {} is not a route action: {other:?}", r.name),
    }
}

fn path_specifier(r: &route::Route) -> &route::route_match::PathSpecifier {
    r.r#match
        .as_ref()
        .and_then(|m| m.path_specifier.as_ref())
        .expect("path specifier")
}

#[test]
fn static_http_proxy() {
    let b = load("static_http.yaml");
    let node = b.node.as_ref().expect("node");
    assert_eq!(node.cluster, "edge");
    let admin_addr = b.admin.as_ref().and_then(|a| a.address.as_ref());
    let Some(core::address::Address::SocketAddress(sa)) =
        admin_addr.and_then(|a| a.address.as_ref())
    else {
        panic!("admin address")
    };
    assert_eq!(sa.address, "127.0.0.1");
    assert_eq!(
        sa.port_specifier,
        Some(core::socket_address::PortSpecifier::PortValue(15000))
    );

    let resources = b.static_resources.as_ref().expect("static_resources");
    let listener = &resources.listeners[0];
    assert_eq!(listener.name, "http_8080");
    assert_eq!(
        listener.listener_filters[0].name,
        "envoy.filters.listener.http_inspector"
    );

    let hcm = hcm_of(&b);
    assert_eq!(hcm.stat_prefix, "ingress_http");
    assert_eq!(
        hcm.codec_type,
        hcm::http_connection_manager::CodecType::Auto as i32
    );
    assert_eq!(hcm.stream_idle_timeout, duration(300, 0));
    let log = &hcm.access_log[0];
    let Some(xds_api::pb::envoy::config::accesslog::v3::access_log::ConfigType::TypedConfig(
        log_any,
    )) = &log.config_type
    else {
        panic!("access log config")
    };
    any::unpack::<StdoutAccessLog>(log_any).expect("stdout access log");

    let Some(hcm::http_connection_manager::RouteSpecifier::RouteConfig(rc)) = &hcm.route_specifier
    else {
        panic!("inline route_config")
    };
    assert_eq!(rc.name, "local_route");
    let vh = &rc.virtual_hosts[0];
    assert_eq!(vh.domains, ["*"]);
    assert_eq!(
        vh.retry_policy
            .as_ref()
            .and_then(|p| p.num_retries.as_ref())
            .map(|n| n.value),
        Some(1)
    );
    let routes = &vh.routes;
    assert_eq!(routes.len(), 6);

    // Prefix match, cluster, timeout and retry policy.
    assert_eq!(
        path_specifier(&routes[0]),
        &route::route_match::PathSpecifier::Prefix("/api/".into())
    );
    let api = route_action(&routes[0]);
    assert_eq!(
        api.cluster_specifier,
        Some(route::route_action::ClusterSpecifier::Cluster("api".into()))
    );
    assert_eq!(api.timeout, duration(0, 250_000_000));
    let retry = api.retry_policy.as_ref().expect("retry_policy");
    assert_eq!(retry.retry_on, "5xx,connect-failure,reset");
    assert_eq!(retry.num_retries.as_ref().map(|n| n.value), Some(3));
    assert_eq!(retry.per_try_timeout, duration(0, 100_000_000));

    // Regex match and weighted clusters.
    let route::route_match::PathSpecifier::SafeRegex(regex) = path_specifier(&routes[1]) else {
        panic!("safe_regex")
    };
    assert_eq!(regex.regex, "^/v[0-9]+/users/[^/]+$");
    let Some(route::route_action::ClusterSpecifier::WeightedClusters(wc)) =
        &route_action(&routes[1]).cluster_specifier
    else {
        panic!("weighted_clusters")
    };
    let weights: Vec<(&str, Option<u32>)> = wc
        .clusters
        .iter()
        .map(|c| (c.name.as_str(), c.weight.as_ref().map(|w| w.value)))
        .collect();
    assert_eq!(weights, [("api", Some(90)), ("api-canary", Some(10))]);

    // Direct response.
    let Some(route::route::Action::DirectResponse(direct)) = &routes[2].action else {
        panic!("direct_response")
    };
    assert_eq!(direct.status, 200);
    assert_eq!(
        direct.body.as_ref().and_then(|b| b.specifier.clone()),
        Some(core::data_source::Specifier::InlineString("ok\n".into()))
    );

    // Redirect, enum by name.
    let Some(route::route::Action::Redirect(redirect)) = &routes[3].action else {
        panic!("redirect")
    };
    assert_eq!(
        redirect.response_code,
        route::redirect_action::RedirectResponseCode::PermanentRedirect as i32
    );
    assert_eq!(
        redirect.path_rewrite_specifier,
        Some(route::redirect_action::PathRewriteSpecifier::PrefixRewrite(
            "/new/".into()
        ))
    );

    // Header match.
    let header = &routes[4].r#match.as_ref().expect("match").headers[0];
    assert_eq!(header.name, "x-canary");
    let Some(route::header_matcher::HeaderMatchSpecifier::StringMatch(sm)) =
        &header.header_match_specifier
    else {
        panic!("string_match")
    };
    assert_eq!(
        sm.match_pattern,
        Some(
            xds_api::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern::Exact(
                "true".into()
            )
        )
    );
    assert_eq!(route_action(&routes[5]).timeout, duration(15, 0));

    // HTTP filters: fault, then router.
    assert_eq!(hcm.http_filters.len(), 2);
    let Some(hcm::http_filter::ConfigType::TypedConfig(fault_any)) =
        &hcm.http_filters[0].config_type
    else {
        panic!("fault typed_config")
    };
    assert_eq!(fault_any.type_url, type_url::FAULT);
    let fault: HttpFault = any::unpack(fault_any).expect("HTTPFault");
    let delay = fault.delay.expect("delay");
    assert_eq!(
        delay.fault_delay_secifier,
        Some(
            xds_api::pb::envoy::extensions::filters::common::fault::v3::fault_delay::FaultDelaySecifier::FixedDelay(
                Duration { seconds: 0, nanos: 500_000_000 }
            )
        )
    );
    let pct = delay.percentage.expect("percentage");
    assert_eq!(pct.numerator, 10);
    assert_eq!(
        pct.denominator,
        xds_api::pb::envoy::r#type::v3::fractional_percent::DenominatorType::Hundred as i32
    );
    let abort = fault.abort.expect("abort");
    assert_eq!(
        abort.error_type,
        Some(
            xds_api::pb::envoy::extensions::filters::http::fault::v3::fault_abort::ErrorType::HttpStatus(503)
        )
    );
    let Some(hcm::http_filter::ConfigType::TypedConfig(router_any)) =
        &hcm.http_filters[1].config_type
    else {
        panic!("router typed_config")
    };
    any::unpack::<Router>(router_any).expect("Router");
    assert!(any::unpack::<HttpFault>(router_any).is_err());

    // Clusters.
    let api = &resources.clusters[0];
    assert_eq!(api.name, "api");
    assert_eq!(
        api.cluster_discovery_type,
        Some(cluster::cluster::ClusterDiscoveryType::Type(
            cluster::cluster::DiscoveryType::Static as i32
        ))
    );
    assert_eq!(
        api.lb_policy,
        cluster::cluster::LbPolicy::LeastRequest as i32
    );
    assert_eq!(api.connect_timeout, duration(1, 0));
    let thresholds = &api
        .circuit_breakers
        .as_ref()
        .expect("circuit_breakers")
        .thresholds[0];
    assert_eq!(
        thresholds.max_connections.as_ref().map(|v| v.value),
        Some(1024)
    );
    assert_eq!(
        thresholds.max_pending_requests.as_ref().map(|v| v.value),
        Some(100)
    );
    assert_eq!(thresholds.max_retries.as_ref().map(|v| v.value), Some(3));
    let outlier = api.outlier_detection.as_ref().expect("outlier_detection");
    assert_eq!(outlier.consecutive_5xx.as_ref().map(|v| v.value), Some(5));
    assert_eq!(outlier.interval, duration(10, 0));
    assert_eq!(outlier.base_ejection_time, duration(30, 0));
    assert_eq!(
        outlier.max_ejection_percent.as_ref().map(|v| v.value),
        Some(50)
    );
    let options: HttpProtocolOptions = any::unpack(
        &api.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"],
    )
    .expect("HttpProtocolOptions");
    let Some(
        xds_api::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(explicit),
    ) = options.upstream_protocol_options
    else {
        panic!("explicit_http_config")
    };
    let Some(
        xds_api::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(h2),
    ) = explicit.protocol_config
    else {
        panic!("http2_protocol_options")
    };
    assert_eq!(h2.max_concurrent_streams.map(|v| v.value), Some(100));
    let endpoints = &api
        .load_assignment
        .as_ref()
        .expect("load_assignment")
        .endpoints[0];
    assert_eq!(endpoints.lb_endpoints.len(), 2);
    assert_eq!(
        endpoints.lb_endpoints[1]
            .load_balancing_weight
            .as_ref()
            .map(|w| w.value),
        Some(2)
    );

    let canary = &resources.clusters[1];
    assert_eq!(
        canary.cluster_discovery_type,
        Some(cluster::cluster::ClusterDiscoveryType::Type(
            cluster::cluster::DiscoveryType::StrictDns as i32
        ))
    );
    assert_eq!(canary.connect_timeout, duration(0, 500_000_000));
    #[allow(deprecated)]
    let h2 = canary.http2_protocol_options.is_some();
    assert!(
        h2,
        "http2_protocol_options: {{}} is set (empty, not absent)"
    );
    let socket = canary.transport_socket.as_ref().expect("transport_socket");
    let Some(core::transport_socket::ConfigType::TypedConfig(tls_any)) = &socket.config_type else {
        panic!("tls typed_config")
    };
    let tls: UpstreamTlsContext = any::unpack(tls_any).expect("UpstreamTlsContext");
    assert_eq!(tls.sni, "canary.example.com");
    let common = tls.common_tls_context.expect("common_tls_context");
    assert_eq!(common.alpn_protocols, ["h2"]);
}

#[test]
fn tcp_proxy() {
    let b = load("tcp_proxy.yaml");
    let resources = b.static_resources.as_ref().expect("static_resources");
    let listener = &resources.listeners[0];
    let names: Vec<&str> = listener
        .listener_filters
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "envoy.filters.listener.original_dst",
            "envoy.filters.listener.tls_inspector"
        ]
    );
    let chain = &listener.filter_chains[0];
    assert_eq!(
        chain
            .filter_chain_match
            .as_ref()
            .expect("match")
            .server_names,
        ["db.example.com"]
    );
    let proxy: tcp::TcpProxy = any::unpack(typed_config(&chain.filters[0])).expect("TcpProxy");
    assert_eq!(proxy.stat_prefix, "db");
    assert_eq!(
        proxy.cluster_specifier,
        Some(tcp::tcp_proxy::ClusterSpecifier::Cluster("db".into()))
    );
    assert_eq!(proxy.idle_timeout, duration(3600, 0));
    assert_eq!(proxy.max_connect_attempts.map(|v| v.value), Some(2));
    let Some(xds_api::pb::envoy::config::accesslog::v3::access_log::ConfigType::TypedConfig(log)) =
        &proxy.access_log[0].config_type
    else {
        panic!("access log")
    };
    let file: FileAccessLog = any::unpack(log).expect("FileAccessLog");
    assert_eq!(file.path, "/dev/stdout");

    let fallback: tcp::TcpProxy =
        any::unpack(typed_config(&listener.filter_chains[1].filters[0])).expect("TcpProxy");
    let Some(tcp::tcp_proxy::ClusterSpecifier::WeightedClusters(wc)) = fallback.cluster_specifier
    else {
        panic!("weighted_clusters")
    };
    assert_eq!(wc.clusters[0].name, "PassthroughCluster");
    assert_eq!(wc.clusters[0].weight, 3);

    let passthrough = &resources.clusters[1];
    assert_eq!(
        passthrough.cluster_discovery_type,
        Some(cluster::cluster::ClusterDiscoveryType::Type(
            cluster::cluster::DiscoveryType::OriginalDst as i32
        ))
    );
    assert_eq!(
        passthrough.lb_policy,
        cluster::cluster::LbPolicy::ClusterProvided as i32
    );
}

#[test]
fn ads_json_with_camel_case_names() {
    let b = load("ads.json");
    let dynamic = b.dynamic_resources.as_ref().expect("dynamic_resources");
    let ads = dynamic.ads_config.as_ref().expect("ads_config");
    assert_eq!(ads.api_type, core::api_config_source::ApiType::Grpc as i32);
    assert_eq!(ads.transport_api_version, core::ApiVersion::V3 as i32);
    assert!(ads.set_node_on_first_message_only);
    let Some(core::grpc_service::TargetSpecifier::EnvoyGrpc(grpc)) =
        &ads.grpc_services[0].target_specifier
    else {
        panic!("envoy_grpc")
    };
    assert_eq!(grpc.cluster_name, "xds-grpc");
    assert_eq!(ads.grpc_services[0].timeout, duration(10, 0));
    let cds = dynamic.cds_config.as_ref().expect("cds_config");
    assert_eq!(
        cds.config_source_specifier,
        Some(core::config_source::ConfigSourceSpecifier::Ads(
            core::AggregatedConfigSource {}
        ))
    );
    assert_eq!(cds.initial_fetch_timeout, duration(0, 0));

    // Struct metadata keeps its JSON shape.
    let metadata = b
        .node
        .as_ref()
        .and_then(|n| n.metadata.as_ref())
        .expect("metadata");
    let version = &metadata.fields["ISTIO_VERSION"];
    assert_eq!(
        version.kind,
        Some(xds_api::pb::google::protobuf::value::Kind::StringValue(
            "1.24.0".into()
        ))
    );

    let xds = &b.static_resources.as_ref().expect("static").clusters[0];
    assert_eq!(xds.name, "xds-grpc");
    let runtime = b.layered_runtime.as_ref().expect("layered_runtime");
    assert_eq!(runtime.layers.len(), 2);
}

#[test]
fn snake_and_camel_case_decode_the_same() {
    let snake = bootstrap::from_yaml(
        "static_resources:\n  clusters:\n  - name: a\n    connect_timeout: 2.5s\n    \
         per_connection_buffer_limit_bytes: 32768\n",
        None,
    )
    .expect("snake");
    let camel = bootstrap::from_yaml(
        "staticResources:\n  clusters:\n  - name: a\n    connectTimeout: 2.5s\n    \
         perConnectionBufferLimitBytes: \"32768\"\n",
        None,
    )
    .expect("camel");
    assert_eq!(snake, camel);
    let c = &snake.static_resources.expect("static").clusters[0];
    assert_eq!(c.connect_timeout, duration(2, 500_000_000));
    assert_eq!(
        c.per_connection_buffer_limit_bytes.map(|v| v.value),
        Some(32768)
    );
}

#[test]
fn scalars_as_envoy_reads_them() {
    // Quoted booleans, lower-case enum names, enum numbers, null for "unset", integers as strings.
    let b = bootstrap::from_yaml(
        r#"
static_resources:
  clusters:
  - name: a
    ignore_health_on_host_removal: "true"
    lb_policy: round_robin
    dns_lookup_family: 1
    load_assignment: null
    max_requests_per_connection: "7"
    metadata:
      filter_metadata:
        istio: { b: [1, "x", null, { c: true }] }
"#,
        None,
    )
    .expect("decodes");
    let c = &b.static_resources.expect("static").clusters[0];
    assert!(c.ignore_health_on_host_removal);
    assert_eq!(c.lb_policy, cluster::cluster::LbPolicy::RoundRobin as i32);
    assert_eq!(c.dns_lookup_family, 1);
    assert!(c.load_assignment.is_none());
    #[allow(deprecated)]
    let max = c.max_requests_per_connection.map(|v| v.value);
    assert_eq!(max, Some(7));
    let md = &c.metadata.as_ref().expect("metadata").filter_metadata["istio"];
    let json = serde_json::to_string(&xds_api::json::to_json(md)).expect("json");
    assert_eq!(json, r#"{"b":[1.0,"x",null,{"c":true}]}"#);
}

#[test]
fn typed_struct_unpacks_to_its_type() {
    let b = bootstrap::from_yaml(
        r#"
static_resources:
  clusters:
  - name: a
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/xds.type.v3.TypedStruct
        type_url: type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        value:
          sni: api.example.com
          common_tls_context: { alpn_protocols: [h2, http/1.1] }
"#,
        None,
    )
    .expect("decodes");
    let socket = b.static_resources.expect("static").clusters[0]
        .transport_socket
        .clone()
        .expect("socket");
    let Some(core::transport_socket::ConfigType::TypedConfig(any)) = socket.config_type else {
        panic!("typed_config")
    };
    assert_eq!(any.type_url, type_url::TYPED_STRUCT);
    let tls: UpstreamTlsContext = any::unpack(&any).expect("unpack through TypedStruct");
    assert_eq!(tls.sni, "api.example.com");
    assert_eq!(
        tls.common_tls_context.expect("common").alpn_protocols,
        ["h2", "http/1.1"]
    );
    let err = any::unpack::<HttpFault>(&any).expect_err("wrong type");
    assert_eq!(
        err.to_string(),
        "expected an Any holding envoy.extensions.filters.http.fault.v3.HTTPFault, found \
         xds.type.v3.TypedStruct of envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
    );
}

#[test]
fn pack_unpack_round_trip() {
    let fault = HttpFault {
        max_active_faults: Some(xds_api::pb::google::protobuf::UInt32Value { value: 9 }),
        ..Default::default()
    };
    let packed = any::pack(&fault);
    assert_eq!(packed.type_url, type_url::FAULT);
    assert_eq!(any::unpack::<HttpFault>(&packed).expect("unpack"), fault);
    assert!(any::is::<HttpFault>(&packed));
    let err = any::unpack::<Router>(&packed).expect_err("mismatch");
    assert!(matches!(err, any::AnyError::TypeMismatch { .. }), "{err}");
}

#[test]
fn json_round_trip_of_every_fixture() {
    for name in ["static_http.yaml", "tcp_proxy.yaml", "ads.json"] {
        let b = load(name);
        let json = xds_api::json::try_to_json(&b).expect("renders");
        let text = serde_json::to_string_pretty(&json).expect("serialize");
        let again = bootstrap::from_yaml(&text, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(again, b, "{name}");
    }
}

#[test]
fn json_looks_like_config_dump() {
    let b = load("static_http.yaml");
    let json = xds_api::json::to_json(&b);
    let hcm =
        &json["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    assert_eq!(hcm["@type"], type_url::HTTP_CONNECTION_MANAGER);
    let route = &hcm["route_config"]["virtual_hosts"][0]["routes"][0]["route"];
    assert_eq!(route["cluster"], "api");
    assert_eq!(route["timeout"], "0.250s");
    assert_eq!(route["retry_policy"]["num_retries"], 3);
    let fault = &hcm["http_filters"][0]["typed_config"];
    assert_eq!(fault["abort"]["http_status"], 503);
    assert_eq!(
        fault["delay"]["percentage"]["denominator"],
        serde_json::Value::Null
    );
    assert_eq!(
        json["static_resources"]["clusters"][1]["type"],
        "STRICT_DNS"
    );
}

#[test]
fn any_message_from_yaml() {
    let listener: listener::Listener = bootstrap::message_from_yaml(
        "name: l\naddress: { socket_address: { address: 0.0.0.0, port_value: 1 } }\n",
        None,
    )
    .expect("listener");
    assert_eq!(listener.name, "l");
}

#[test]
fn binary_bootstrap_file() {
    use prost::Message;
    let b = load("tcp_proxy.yaml");
    let dir = std::env::temp_dir().join(format!("xds-api-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join("bootstrap.pb");
    std::fs::write(&path, b.encode_to_vec()).expect("write");
    assert_eq!(bootstrap::from_file(&path).expect("pb"), b);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn json_of_an_unknown_any_says_why() {
    let filter = listener::Filter {
        name: "istio.stats".into(),
        config_type: Some(listener::filter::ConfigType::TypedConfig(Any {
            type_url: "type.googleapis.com/istio.stats.PluginConfig".into(),
            value: vec![],
        })),
    };
    assert!(xds_api::json::try_to_json(&filter).is_err());
    let json = xds_api::json::to_json(&filter);
    assert_eq!(
        json["@type"],
        "type.googleapis.com/envoy.config.listener.v3.Filter"
    );
    assert!(
        json["@error"]
            .as_str()
            .is_some_and(|e| e.contains("istio.stats.PluginConfig")),
        "{json}"
    );
}
