//! Bad bootstraps: each error names the file, line, column, field path, and says what to fix.
//! The files under `tests/fixtures/invalid/` are also rejected by Envoy (see `tests/envoy.rs`).

use std::path::{Path, PathBuf};

use xds_api::bootstrap::{self, BootstrapError};

fn invalid(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/invalid")
        .join(name)
}

fn file_error(name: &str) -> BootstrapError {
    match bootstrap::from_file(&invalid(name)) {
        Ok(b) => panic!("{name} decoded: {b:?}"),
        Err(e) => e,
    }
}

fn error(source: &str) -> BootstrapError {
    match bootstrap::from_yaml(source, None) {
        Ok(b) => panic!("decoded: {b:?}"),
        Err(e) => e,
    }
}

/// Asserts position, field path and message.
#[track_caller]
fn check(e: &BootstrapError, line: usize, column: usize, field: &str, message: &str) {
    assert_eq!(
        (e.line, e.column, e.field.as_str(), e.message.as_str()),
        (line, column, field, message),
        "{e}"
    );
}

const ROUTE: &str = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0].route";
const ENDPOINT: &str =
    "static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint";

#[test]
fn unknown_field_suggests_the_real_name() {
    let e = file_error("unknown_field.yaml");
    check(
        &e,
        21,
        26,
        &format!("{ROUTE}.clustr"),
        "unknown field `clustr` in envoy.config.route.v3.RouteAction; did you mean `cluster`?",
    );
    assert_eq!(
        e.file.as_deref(),
        Some(invalid("unknown_field.yaml").as_path())
    );
    assert_eq!(
        e.to_string(),
        format!(
            "{}:21:26: unknown field `clustr` in envoy.config.route.v3.RouteAction; did you mean \
             `cluster`? (at {ROUTE}.clustr)",
            invalid("unknown_field.yaml").display()
        )
    );
}

#[test]
fn unknown_camel_case_field_suggests_camel_case() {
    let e = error("staticResources:\n  clusters:\n  - name: a\n    connectTimout: 1s\n");
    check(
        &e,
        4,
        5,
        "static_resources.clusters[0].connectTimout",
        "unknown field `connectTimout` in envoy.config.cluster.v3.Cluster; did you mean `connectTimeout`?",
    );
}

#[test]
fn unknown_field_without_a_close_match_lists_the_fields() {
    let e = error("admin:\n  address:\n    socket_address: { address: 1.2.3.4, zzz: 1 }\n");
    assert_eq!((e.line, e.column), (3, 41), "{e}");
    assert_eq!(e.field, "admin.address.socket_address.zzz");
    assert!(
        e.message.starts_with(
            "unknown field `zzz` in envoy.config.core.v3.SocketAddress; known fields: protocol, address, port_value, named_port,"
        ),
        "{e}"
    );
}

#[test]
fn wrong_type() {
    check(
        &file_error("wrong_type.yaml"),
        13,
        29,
        &format!("{ENDPOINT}.address.socket_address.port_value"),
        "expected an unsigned 32-bit integer, found string \"eighty\"",
    );
    check(
        &error("node: { id: 123 }\n"),
        1,
        13,
        "node.id",
        "expected a string, found integer 123",
    );
    check(
        &error("node: [a]\n"),
        1,
        7,
        "node",
        "expected an object (envoy.config.core.v3.Node), found an array",
    );
    check(
        &error("static_resources: { clusters: { name: a } }\n"),
        1,
        31,
        "static_resources.clusters",
        "expected an array, found an object",
    );
    check(
        &error("admin: { address: { socket_address: { port_value: -1 } } }\n"),
        1,
        51,
        "admin.address.socket_address.port_value",
        "-1 is out of range for uint32",
    );
}

#[test]
fn unknown_type_url() {
    check(
        &file_error("unknown_type.yaml"),
        15,
        24,
        "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.@type",
        "unknown type \"envoy.extensions.filters.http.router.v3.Routr\" in \"@type\"; did you mean \
         `envoy.extensions.filters.http.router.v3.Router`?",
    );
    let e = error(
        "static_resources:\n  clusters:\n  - name: a\n    transport_socket:\n      name: t\n      \
         typed_config: { \"@type\": type.googleapis.com/istio.Nope }\n",
    );
    check(
        &e,
        6,
        32,
        "static_resources.clusters[0].transport_socket.typed_config.@type",
        "unknown type \"istio.Nope\" in \"@type\" (not a message of Envoy's API)",
    );
}

#[test]
fn any_without_type() {
    let e = error(
        "static_resources:\n  clusters:\n  - name: a\n    transport_socket:\n      name: t\n      \
         typed_config: { sni: x }\n",
    );
    assert_eq!((e.line, e.column), (6, 21), "{e}");
    assert_eq!(
        e.field,
        "static_resources.clusters[0].transport_socket.typed_config"
    );
    assert!(e.message.starts_with("missing \"@type\""), "{e}");
}

#[test]
fn unknown_field_inside_any() {
    let e = error(
        "static_resources:\n  clusters:\n  - name: a\n    transport_socket:\n      name: t\n      \
         typed_config:\n        \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext\n        \
         snii: x\n",
    );
    check(
        &e,
        8,
        9,
        "static_resources.clusters[0].transport_socket.typed_config.snii",
        "unknown field `snii` in envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext; did you mean `sni`?",
    );
}

#[test]
fn bad_duration() {
    let message = "invalid duration \"250ms\": expected seconds with an `s` suffix and at most 9 \
                   decimals, such as \"0.25s\" or \"30s\"";
    check(
        &file_error("bad_duration.yaml"),
        5,
        22,
        "static_resources.clusters[0].connect_timeout",
        message,
    );
    check(
        &error("static_resources: { clusters: [ { name: a, connect_timeout: 5 } ] }\n"),
        1,
        61,
        "static_resources.clusters[0].connect_timeout",
        "expected a duration string such as \"1.5s\", found integer 5",
    );
}

#[test]
fn broken_yaml() {
    check(
        &file_error("broken.yaml"),
        5,
        4,
        "",
        "invalid YAML: while parsing a block mapping, did not find expected key",
    );
}

#[test]
fn two_members_of_a_oneof() {
    check(
        &file_error("oneof.yaml"),
        5,
        5,
        "static_resources.clusters[0].cluster_type",
        "`type` and `cluster_type` are both set, but only one of oneof `cluster_discovery_type` may be",
    );
}

#[test]
fn unknown_enum_value() {
    check(
        &file_error("bad_enum.yaml"),
        4,
        16,
        "static_resources.clusters[0].lb_policy",
        "unknown value \"LEAST_REQUESTS\" for enum envoy.config.cluster.v3.Cluster.LbPolicy; did \
         you mean `LEAST_REQUEST`?",
    );
}

#[test]
fn same_field_twice() {
    check(
        &error(
            "static_resources: { clusters: [ { name: a, connect_timeout: 1s, connectTimeout: 2s } ] }\n",
        ),
        1,
        65,
        "static_resources.clusters[0].connect_timeout",
        "field `connect_timeout` is set twice (as `connect_timeout` and `connectTimeout`)",
    );
}

#[test]
fn documents() {
    check(
        &error(""),
        1,
        1,
        "",
        "empty configuration: no YAML or JSON document",
    );
    check(
        &error("node: { id: a }\n---\nnode: { id: b }\n"),
        3,
        1,
        "",
        "a second YAML document; the configuration must be one envoy.config.bootstrap.v3.Bootstrap document",
    );
    check(
        &error("just text\n"),
        1,
        1,
        "",
        "expected an object (envoy.config.bootstrap.v3.Bootstrap), found string \"just text\"",
    );
}

#[test]
fn display_without_file_or_position() {
    let e = error("node: { id: 123 }\n");
    assert_eq!(
        e.to_string(),
        "1:13: expected a string, found integer 123 (at node.id)"
    );
    let missing =
        bootstrap::from_file(Path::new("/nonexistent/bootstrap.yaml")).expect_err("missing");
    assert_eq!((missing.line, missing.column), (0, 0));
    assert!(
        missing
            .to_string()
            .starts_with("/nonexistent/bootstrap.yaml: cannot read: "),
        "{missing}"
    );
}

// protoc-gen-validate rules, which Envoy checks too.

const HTTP_FILTER: &str = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config";

#[test]
fn rule_number_range() {
    check(
        &file_error("pgv_range.yaml"),
        17,
        30,
        &format!("{HTTP_FILTER}.abort.http_status"),
        "99 is out of range: must be >= 200 and < 600",
    );
}

#[test]
fn rule_required_message() {
    check(
        &file_error("pgv_required.yaml"),
        20,
        17,
        "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0].match",
        "missing required field `match`",
    );
}

#[test]
fn rule_string_length() {
    check(
        &file_error("pgv_empty_name.yaml"),
        3,
        11,
        "static_resources.clusters[0].name",
        "must not be empty (at least 1 character)",
    );
    // Absent counts as empty, as in Envoy.
    check(
        &error("static_resources:\n  clusters:\n  - type: STATIC\n"),
        3,
        5,
        "static_resources.clusters[0].name",
        "missing field `name`: must not be empty (at least 1 character)",
    );
}

#[test]
fn rule_duration_bound() {
    check(
        &file_error("pgv_duration.yaml"),
        5,
        22,
        "static_resources.clusters[0].connect_timeout",
        "-1s is out of range: must be > 0s",
    );
}

#[test]
fn rule_required_oneof() {
    // HttpConnectionManager requires one of route_config, rds, scoped_routes.
    let e = error(
        "static_resources:\n  listeners:\n  - name: l\n    filter_chains:\n    - filters:\n      - name: hcm\n        \
         typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager\n          \
         stat_prefix: s\n",
    );
    assert_eq!((e.line, e.column), (8, 11), "{e}");
    assert_eq!(
        e.field,
        "static_resources.listeners[0].filter_chains[0].filters[0].typed_config"
    );
    assert!(
        e.message.starts_with("one of `rds`, `route_config`, ")
            && e.message.ends_with("is required (oneof `route_specifier`)"),
        "{e}"
    );
}
