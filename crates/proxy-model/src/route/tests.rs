use http::HeaderMap;
use xds_api::bootstrap::message_from_yaml;
use xds_api::pb::envoy::config::route::v3::RouteConfiguration;

use super::*;

fn config(yaml: &str) -> RouteConfig {
    let p: RouteConfiguration = message_from_yaml(yaml, None).expect("valid RouteConfiguration");
    RouteConfig::from_proto(&p, &At::root("route_config")).expect("buildable")
}

fn errors(yaml: &str) -> Vec<ModelError> {
    let p: RouteConfiguration = message_from_yaml(yaml, None).expect("valid RouteConfiguration");
    RouteConfig::from_proto(&p, &At::root("route_config")).expect_err("must be refused")
}

/// The name of the route a request takes, or `None` for a 404.
fn route_for(
    rc: &RouteConfig,
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<String> {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(
            http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            http::HeaderValue::from_str(v).expect("value"),
        );
    }
    let view = RequestView {
        authority,
        path,
        headers: &map,
        method: "GET",
    };
    rc.select(&view)
        .map(|(vh, r)| format!("{}/{}", vh.name, r.name))
}

const DOMAINS: &str = r#"
name: domains
virtual_hosts:
- name: exact
  domains: ["api.example.com", "api.example.com:8080"]
  routes: [{name: r, match: {prefix: "/"}, direct_response: {status: 200}}]
- name: long-suffix
  domains: ["*.v2.example.com"]
  routes: [{name: r, match: {prefix: "/"}, direct_response: {status: 200}}]
- name: suffix
  domains: ["*.example.com"]
  routes: [{name: r, match: {prefix: "/"}, direct_response: {status: 200}}]
- name: prefix
  domains: ["internal.*"]
  routes: [{name: r, match: {prefix: "/"}, direct_response: {status: 200}}]
- name: default
  domains: ["*"]
  routes: [{name: r, match: {prefix: "/"}, direct_response: {status: 200}}]
"#;

#[test]
fn virtual_hosts_are_searched_exact_then_suffix_then_prefix_then_star() {
    let rc = config(DOMAINS);
    let vh = |a: &str| route_for(&rc, a, "/", &[]).expect("a virtual host");
    assert_eq!(vh("api.example.com"), "exact/r");
    assert_eq!(
        vh("API.Example.com"),
        "exact/r",
        "domains are case-insensitive"
    );
    assert_eq!(vh("api.example.com:8080"), "exact/r");
    assert_eq!(
        vh("x.v2.example.com"),
        "long-suffix/r",
        "the longest wildcard wins"
    );
    assert_eq!(vh("shop.example.com"), "suffix/r");
    assert_eq!(vh("internal.corp"), "prefix/r");
    assert_eq!(vh("other.org"), "default/r");
    // With a port and no matching `host:port` domain, Envoy does not strip the port.
    assert_eq!(vh("shop.example.com:9999"), "default/r");
}

#[test]
fn duplicate_domains_are_refused() {
    let e = errors(
        r#"
virtual_hosts:
- {name: a, domains: ["x.com"], routes: []}
- {name: b, domains: ["x.com"], routes: []}
"#,
    );
    assert_eq!(e[0].field, "route_config.virtual_hosts[1].domains[0]");
    assert!(e[0].message.contains("only one virtual host"), "{e:?}");
}

const ROUTES: &str = r#"
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - name: jason
    match:
      prefix: /reviews
      headers: [{name: end-user, string_match: {exact: jason}}]
    route: {cluster: v2}
  - name: not-chrome
    match:
      prefix: /reviews
      headers: [{name: user-agent, string_match: {contains: Chrome}, invert_match: true}]
    route: {cluster: v3}
  - name: debug-query
    match:
      path: /items
      query_parameters: [{name: debug, string_match: {exact: "1"}}]
    route: {cluster: debug}
  - name: exact
    match: {path: /items}
    route: {cluster: items}
  - name: regex
    match: {safe_regex: {regex: "/api/v[0-9]+/users"}}
    route: {cluster: users}
  - name: separated
    match: {path_separated_prefix: /static}
    route: {cluster: static}
  - name: insensitive
    match: {prefix: /CASE, case_sensitive: false}
    route: {cluster: case}
  - name: rest
    match: {prefix: /}
    route: {cluster: default}
"#;

#[test]
fn first_matching_route_wins_with_envoys_matchers() {
    let rc = config(ROUTES);
    let r = |path: &str, headers: &[(&str, &str)]| {
        route_for(&rc, "any", path, headers).expect("a route")
    };
    assert_eq!(r("/reviews/1", &[("end-user", "jason")]), "vh/jason");
    assert_eq!(
        r("/reviews/1", &[("end-user", "bob"), ("user-agent", "curl")]),
        "vh/not-chrome"
    );
    assert_eq!(
        r("/reviews/1", &[("user-agent", "Mozilla Chrome")]),
        "vh/rest"
    );
    // A missing header does not match even an inverted matcher.
    assert_eq!(r("/reviews/1", &[]), "vh/rest");
    assert_eq!(r("/items?debug=1", &[]), "vh/debug-query");
    assert_eq!(r("/items?debug=0", &[]), "vh/exact");
    assert_eq!(r("/items/1", &[]), "vh/rest", "path is an exact match");
    assert_eq!(r("/api/v12/users", &[]), "vh/regex");
    assert_eq!(
        r("/api/v12/users/7", &[]),
        "vh/rest",
        "safe_regex matches the whole path"
    );
    assert_eq!(
        r("/api/v1/users?x=1", &[]),
        "vh/regex",
        "the query is not part of the path"
    );
    assert_eq!(r("/static", &[]), "vh/separated");
    assert_eq!(r("/static/app.js", &[]), "vh/separated");
    assert_eq!(r("/staticfile", &[]), "vh/rest");
    assert_eq!(r("/case/x", &[]), "vh/insensitive");
}

#[test]
fn no_virtual_host_means_no_route() {
    let rc = config(
        r#"
virtual_hosts:
- {name: only, domains: ["a.com"], routes: [{match: {prefix: "/"}, direct_response: {status: 200}}]}
"#,
    );
    assert_eq!(route_for(&rc, "b.com", "/", &[]), None);
}

#[test]
fn weighted_clusters_must_add_up() {
    let rc = config(
        r#"
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route:
      weighted_clusters:
        clusters: [{name: v1, weight: 90}, {name: v2, weight: 10}]
"#,
    );
    let Action::Forward(f) = &rc.virtual_hosts[0].routes[0].action else {
        panic!("forward")
    };
    let Target::Weighted { clusters, total } = &f.target else {
        panic!("weighted")
    };
    assert_eq!(*total, 100);
    assert_eq!(clusters, &[("v1".to_owned(), 90), ("v2".to_owned(), 10)]);
    assert_eq!(
        f.timeout,
        Some(DEFAULT_ROUTE_TIMEOUT),
        "Envoy's default route timeout is 15 s"
    );

    let e = errors(
        r#"
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route: {weighted_clusters: {clusters: [{name: v1, weight: 0}]}}
"#,
    );
    assert_eq!(
        e[0].field,
        "route_config.virtual_hosts[0].routes[0].route.weighted_clusters"
    );
}

#[test]
fn retry_policy_keeps_envoys_defaults_and_refuses_unknown_conditions() {
    let rc = config(
        r#"
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route:
      cluster: c
      timeout: 0s
      retry_policy:
        retry_on: 5xx,connect-failure
        retry_host_predicate: [{name: envoy.retry_host_predicates.previous_hosts}]
"#,
    );
    let Action::Forward(f) = &rc.virtual_hosts[0].routes[0].action else {
        panic!("forward")
    };
    assert_eq!(f.timeout, None, "0s disables the route timeout");
    let p = f.retry_policy.as_ref().expect("retry policy");
    assert_eq!(p.num_retries, 1, "Envoy's default is one retry");
    assert!(p.retries_on("5xx") && p.retries_on("connect-failure"));
    assert!(p.avoid_previous_hosts);
    assert_eq!(p.base_interval, Duration::from_millis(25));
    assert_eq!(p.max_interval, Duration::from_millis(250));

    let e = errors(
        r#"
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route: {cluster: c, retry_policy: {retry_on: "5xx,sometimes"}}
"#,
    );
    assert_eq!(
        e[0].field,
        "route_config.virtual_hosts[0].routes[0].route.retry_policy.retry_on"
    );
    assert_eq!(e[0].message, "unknown retry condition \"sometimes\"");
}

/// What Envoy retries on and Bosun cannot is refused by path, not ignored.
#[test]
fn unimplemented_retry_conditions_and_fields_are_refused() {
    let cases = [
        (
            r#"{retry_on: 5xx, retriable_request_headers: [{name: x-retry, present_match: true}]}"#,
            "retriable_request_headers",
            "retrying only requests with given headers",
        ),
        (
            r#"{retry_on: 5xx, rate_limited_retry_back_off: {reset_headers: [{name: retry-after}], max_interval: 1s}}"#,
            "rate_limited_retry_back_off",
            "back-off from rate-limit response headers",
        ),
        (
            r#"{retry_on: 5xx, per_try_idle_timeout: 1s}"#,
            "per_try_idle_timeout",
            "a per-try idle timeout",
        ),
    ];
    for (policy, field, what) in cases {
        let e = errors(&format!(
            r#"
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {{prefix: /}}
    route: {{cluster: c, retry_policy: {policy}}}
"#
        ));
        assert_eq!(
            e[0].field,
            format!("route_config.virtual_hosts[0].routes[0].route.retry_policy.{field}"),
            "{policy}"
        );
        assert_eq!(
            e[0].message,
            format!(
                "{what} is not supported by bosun proxy; remove it or run this configuration on Envoy"
            ),
            "{policy}"
        );
    }
}

#[test]
fn per_filter_config_on_the_route_configuration_is_refused() {
    let e = errors(
        r#"
typed_per_filter_config:
  envoy.filters.http.fault:
    "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
    abort: {http_status: 503, percentage: {numerator: 100}}
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route: {cluster: c}
"#,
    );
    assert_eq!(e[0].field, "route_config.typed_per_filter_config");
    assert_eq!(
        e[0].message,
        "per-filter config on the route configuration (set it on the virtual hosts) is not supported by \
         bosun proxy; remove it or run this configuration on Envoy"
    );
}

#[test]
fn unsupported_fields_are_refused_by_path() {
    let e = errors(
        r#"
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /, runtime_fraction: {default_value: {numerator: 50}}}
    route: {cluster: c}
"#,
    );
    assert_eq!(
        e[0].field,
        "route_config.virtual_hosts[0].routes[0].match.runtime_fraction"
    );
    assert!(
        e[0].message.contains("not supported by bosun proxy"),
        "{e:?}"
    );
}

/// Each route-level field that would change how requests are handled, and that bosun does not
/// implement, is refused by its own path; what only names or measures things is accepted.
#[test]
fn unimplemented_route_fields_are_refused_by_path() {
    let with = |config: &str, vhost: &str, route: &str, action: &str| {
        format!(
            "{{{config} virtual_hosts: [{{name: vh, domains: ['*'], {vhost} routes: [{{match: {{prefix: /}}, {route} route: {{cluster: c, {action}}}}}]}}]}}"
        )
    };
    let refused = |yaml: String, path: &str| {
        let e = errors(&yaml);
        assert!(
            e.iter()
                .any(|e| e.field == path && e.message.contains("not supported by bosun proxy")),
            "{path}: {e:?}"
        );
    };
    let vh = "route_config.virtual_hosts[0]";
    let action = "route_config.virtual_hosts[0].routes[0].route";
    refused(
        with("vhds: {config_source: {ads: {}}},", "", "", ""),
        "route_config.vhds",
    );
    refused(
        with("internal_only_headers: [x-internal],", "", "", ""),
        "route_config.internal_only_headers",
    );
    refused(
        with("vhost_header: x-host,", "", "", ""),
        "route_config.vhost_header",
    );
    refused(
        with("most_specific_header_mutations_wins: true,", "", "", ""),
        "route_config.most_specific_header_mutations_wins",
    );
    refused(
        with("", "hedge_policy: {initial_requests: 2},", "", ""),
        &format!("{vh}.hedge_policy"),
    );
    refused(
        with("", "include_attempt_count_in_response: true,", "", ""),
        &format!("{vh}.include_attempt_count_in_response"),
    );
    refused(
        with("", "request_mirror_policies: [{cluster: m}],", "", ""),
        &format!("{vh}.request_mirror_policies"),
    );
    for (field, path) in [
        (
            "metadata_match: {filter_metadata: {envoy.lb: {version: v1}}}",
            "metadata_match",
        ),
        ("idle_timeout: 5s", "idle_timeout"),
        ("priority: HIGH", "priority"),
        (
            "max_stream_duration: {grpc_timeout_header_max: 0s}",
            "max_stream_duration",
        ),
        (
            "internal_redirect_policy: {max_internal_redirects: 2}",
            "internal_redirect_policy",
        ),
        ("append_x_forwarded_host: true", "append_x_forwarded_host"),
        (
            "request_mirror_policies: [{cluster: m, disable_shadow_host_suffix_append: true}]",
            "request_mirror_policies[0].disable_shadow_host_suffix_append",
        ),
    ] {
        refused(with("", "", "", field), &format!("{action}.{path}"));
    }
    // Accepted: stats, tracing, metadata, buffer limits, a zero idle timeout.
    config(&with(
        "validate_clusters: false,",
        "virtual_clusters: [{name: v, headers: [{name: ':path', string_match: {exact: /x}}]}], per_request_buffer_limit_bytes: 1024,",
        "decorator: {operation: op}, metadata: {filter_metadata: {a: {b: c}}},",
        "idle_timeout: 0s",
    ));
}

#[test]
fn connect_matcher_matches_connect_only_and_path_matchers_never_match_it() {
    let rc = config(
        r#"
virtual_hosts:
- name: tunnel
  domains: ["db.example.com:5432"]
  routes:
  - name: connect
    match: {connect_matcher: {}}
    route: {cluster: db, upgrade_configs: [{upgrade_type: CONNECT, connect_config: {}}]}
  - name: any-path
    match: {prefix: /}
    route: {cluster: web}
"#,
    );
    let headers = HeaderMap::new();
    let select = |method: &str| {
        rc.select(&RequestView {
            authority: "db.example.com:5432",
            path: "/",
            method,
            headers: &headers,
        })
        .map(|(_, r)| r.name.clone())
    };
    assert_eq!(select("CONNECT").as_deref(), Some("connect"));
    assert_eq!(select("GET").as_deref(), Some("any-path"));
    let Action::Forward(f) = &rc.virtual_hosts[0].routes[0].action else {
        panic!("a forward");
    };
    assert!(
        f.upgrade("connect")
            .is_some_and(|u| u.terminate_connect && u.enabled)
    );
    let Action::Forward(f) = &rc.virtual_hosts[0].routes[1].action else {
        panic!("a forward");
    };
    assert!(f.upgrade("CONNECT").is_none());
}

#[test]
fn forwarding_connect_upstream_is_refused_naming_the_field() {
    for route in [
        "{cluster: c}",
        "{cluster: c, upgrade_configs: [{upgrade_type: CONNECT}]}",
    ] {
        let e = errors(&format!(
            r#"
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {{connect_matcher: {{}}}}
    route: {route}
"#
        ));
        assert_eq!(
            e[0].field, "route_config.virtual_hosts[0].routes[0].route.upgrade_configs",
            "{route}"
        );
        assert_eq!(
            e[0].message,
            "forwarding CONNECT requests upstream (a connect_matcher route without upgrade_configs \
             [{upgrade_type: CONNECT, connect_config: {}}], which would terminate the CONNECT) is not \
             supported by bosun proxy; remove it or run this configuration on Envoy",
            "{e:?}"
        );
    }
    let e = errors(
        r#"
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {connect_matcher: {}}
    route: {cluster: c, upgrade_configs: [{upgrade_type: CONNECT, connect_config: {allow_post: true}}]}
"#,
    );
    assert_eq!(
        e[0].field,
        "route_config.virtual_hosts[0].routes[0].route.upgrade_configs[0].connect_config.allow_post"
    );
    assert_eq!(
        e[0].message,
        "tunnelling POST payloads as raw TCP is not supported by bosun proxy; remove it or run this \
         configuration on Envoy"
    );
}

#[test]
fn bad_regexes_are_refused_with_their_path() {
    let e = errors(
        r#"
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {safe_regex: {regex: "/api/(v1"}}
    route: {cluster: c}
"#,
    );
    assert_eq!(
        e[0].field,
        "route_config.virtual_hosts[0].routes[0].match.safe_regex.regex"
    );
}

#[test]
fn substitutions_use_rust_group_syntax() {
    assert_eq!(go_to_rust_substitution(r"/v2/\1/x"), "/v2/${1}/x");
    assert_eq!(go_to_rust_substitution("$5"), "$$5");
}

#[test]
fn header_mutations_follow_append_actions() {
    let mut h = HeaderMap::new();
    h.insert("x-a", http::HeaderValue::from_static("1"));
    let add = |action| HeaderAdd {
        name: http::HeaderName::from_static("x-a"),
        value: http::HeaderValue::from_static("2"),
        action,
    };
    add(AppendAction::AddIfAbsent).apply(&mut h);
    assert_eq!(h.get_all("x-a").iter().count(), 1);
    add(AppendAction::AppendIfExistsOrAdd).apply(&mut h);
    assert_eq!(h.get_all("x-a").iter().count(), 2);
    add(AppendAction::OverwriteIfExistsOrAdd).apply(&mut h);
    assert_eq!(h.get_all("x-a").iter().collect::<Vec<_>>(), ["2"]);
}

#[test]
fn cors_policies_per_route_and_virtual_host() {
    let rc = config(
        r#"
virtual_hosts:
- name: vh
  domains: ["*"]
  typed_per_filter_config:
    envoy.filters.http.cors:
      "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy
      allow_methods: GET
  routes:
  - match: {prefix: "/"}
    route: {cluster: c}
    typed_per_filter_config:
      envoy.filters.http.cors:
        "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy
        allow_origin_string_match: [{prefix: "https://a."}]
        filter_enabled: {default_value: {numerator: 50}}
        forward_not_matching_preflights: false
"#,
    );
    let vh = &rc.virtual_hosts[0];
    assert_eq!(
        vh.cors.as_ref().map(|c| c.allow_methods.as_str()),
        Some("GET")
    );
    let cors = vh.routes[0].cors.as_ref().expect("the route's policy");
    assert!(cors.allow_origins[0].matches("https://a.example.com"));
    assert_eq!(cors.enabled_per_million, 500_000);
    assert_eq!(cors.forward_not_matching_preflights, Some(false));
    assert_eq!(
        vh.routes[0].cors.as_ref().map(|c| c.allow_methods.as_str()),
        Some("")
    );

    let e = errors(
        r#"
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: "/"}
    route: {cluster: c}
    typed_per_filter_config:
      envoy.filters.http.cors:
        "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy
        allow_origin_string_match: [{safe_regex: {regex: "https://(a"}}]
"#,
    );
    assert!(
        e[0].field.starts_with(
            "route_config.virtual_hosts[0].routes[0].typed_per_filter_config.envoy.filters.http.cors.allow_origin_string_match[0]"
        ),
        "{e:?}"
    );
}

#[test]
fn local_ratelimit_per_route_and_per_virtual_host() {
    let rc = config(
        "virtual_hosts:
- name: all
  domains: ['*']
  typed_per_filter_config:
    envoy.filters.http.local_ratelimit:
      '@type': type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
      stat_prefix: vh
      token_bucket: { max_tokens: 3, fill_interval: 1s }
  routes:
  - match: { prefix: /own }
    route: { cluster: a }
    typed_per_filter_config:
      envoy.filters.http.local_ratelimit:
        '@type': type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
        stat_prefix: own
        token_bucket: { max_tokens: 2, fill_interval: 1s }
  - match: { prefix: / }
    route: { cluster: a }
",
    );
    let vh = &rc.virtual_hosts[0];
    let own = vh.routes[0]
        .local_ratelimit
        .as_ref()
        .expect("the route's own config");
    assert_eq!(own.stat_prefix, "own");
    assert_eq!(own.bucket.as_ref().map(|b| b.max_tokens), Some(2));
    assert!(vh.routes[1].local_ratelimit.is_none());
    let shared = vh.local_ratelimit.as_ref().expect("the virtual host's");
    assert_eq!(shared.stat_prefix, "vh");
    assert_eq!(shared.bucket.as_ref().map(|b| b.max_tokens), Some(3));

    // As a route's, a virtual host's config must have a token bucket.
    let e = errors(
        "virtual_hosts:
- name: all
  domains: ['*']
  typed_per_filter_config:
    envoy.filters.http.local_ratelimit:
      '@type': type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
      stat_prefix: vh
  routes:
  - match: { prefix: / }
    route: { cluster: a }
",
    );
    assert_eq!(
        e[0].field,
        "route_config.virtual_hosts[0].typed_per_filter_config.envoy.filters.http.local_ratelimit.token_bucket"
    );
}

// === VHDS: a table received over RDS, with virtual hosts delivered apart ===

fn rds_table(yaml: &str) -> RouteConfiguration {
    message_from_yaml(yaml, None).expect("valid RouteConfiguration")
}

fn vhds_host(yaml: &str) -> route::VirtualHost {
    message_from_yaml(yaml, None).expect("valid VirtualHost")
}

const WITH_VHDS: &str = r#"
name: "8080"
vhds: {config_source: {ads: {}, resource_api_version: V3}}
virtual_hosts:
- name: own
  domains: [own.example]
  routes: [{name: own, match: {prefix: /}, direct_response: {status: 200}}]
"#;

/// `table` from RDS over delta ADS with `hosts` from VHDS, every one built.
fn over_delta(
    table: &RouteConfiguration,
    hosts: &[route::VirtualHost],
) -> Result<RouteConfig, RdsErrors> {
    RouteConfig::from_rds(table, &At::root(""), Some(AdsApi::Delta), hosts, |_| None)
}

fn vhost_for(name: &str, domain: &str, path_regex: &str) -> route::VirtualHost {
    vhds_host(&format!(
        "{{name: {name:?}, domains: [{domain:?}], routes: [{{name: r, match: {{safe_regex: {{regex: {path_regex:?}}}}}, direct_response: {{status: 200}}}}]}}"
    ))
}

#[test]
fn vhds_hosts_follow_the_tables_own_and_route() {
    let table = rds_table(WITH_VHDS);
    let hosts = [
        vhost_for("8080/a", "a.example", "/.*"),
        vhost_for("8080/b", "*", "/.*"),
    ];
    let rc = over_delta(&table, &hosts).expect("buildable");
    let names: Vec<&str> = rc.virtual_hosts.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["own", "8080/a", "8080/b"]);
    assert_eq!(
        route_for(&rc, "a.example", "/x", &[]).as_deref(),
        Some("8080/a/r")
    );
    assert_eq!(
        route_for(&rc, "own.example", "/x", &[]).as_deref(),
        Some("own/own")
    );
    assert_eq!(
        route_for(&rc, "other", "/x", &[]).as_deref(),
        Some("8080/b/r")
    );
    // Without vhds, what VHDS delivered is not the table's.
    let plain = rds_table("{name: '8080', virtual_hosts: []}");
    let rc = over_delta(&plain, &hosts).expect("buildable");
    assert!(rc.virtual_hosts.is_empty());
}

#[test]
fn vhds_source_must_be_delta_ads() {
    let source_error = |table: &str, ads: Option<AdsApi>| {
        let e = RouteConfig::from_rds(&rds_table(table), &At::root(""), ads, [], |_| None)
            .expect_err("must be refused");
        assert!(e.vhosts.is_empty(), "{e:?}");
        assert_eq!(e.route_config.len(), 1, "{e:?}");
        e.route_config[0].to_string()
    };
    assert_eq!(
        source_error(WITH_VHDS, Some(AdsApi::Sotw)),
        "vhds.config_source.ads: vhds: ADS must use DELTA_GRPC api_type when used as VHDS config source."
    );
    assert_eq!(
        source_error(WITH_VHDS, None),
        "vhds.config_source.ads: vhds: ADS config source specified but no ADS configured in bootstrap."
    );
    let own_source = |api_type: &str| {
        WITH_VHDS.replace(
            "{ads: {}, resource_api_version: V3}",
            &format!("{{api_config_source: {{api_type: {api_type}, grpc_services: [{{envoy_grpc: {{cluster_name: xds}}}}]}}}}"),
        )
    };
    let e = source_error(&own_source("DELTA_GRPC"), Some(AdsApi::Delta));
    assert!(
        e.starts_with("vhds.config_source.api_config_source: ") && e.contains("not supported"),
        "{e}"
    );
    assert_eq!(
        source_error(&own_source("GRPC"), Some(AdsApi::Delta)),
        "vhds.config_source.api_config_source: vhds: only DELTA_GRPC is supported as an api_type."
    );
}

#[test]
fn a_bad_vhds_host_is_named_apart_from_the_table() {
    let table = rds_table(WITH_VHDS);
    let hosts = [
        vhost_for("8080/good", "good.example", "/.*"),
        vhost_for("8080/regex", "r.example", "/(v1"),
        vhost_for("8080/dup", "own.example", "/.*"),
    ];
    let e = over_delta(&table, &hosts).expect_err("must be refused");
    assert!(e.route_config.is_empty(), "{e:?}");
    let fields: Vec<(&str, &str)> = e
        .vhosts
        .iter()
        .flat_map(|(n, errors)| errors.iter().map(move |e| (n.as_str(), e.field.as_str())))
        .collect();
    assert_eq!(
        fields,
        [
            ("8080/dup", "domains[0]"),
            ("8080/regex", "routes[0].match.safe_regex.regex")
        ]
    );
    let flat = e.into_flat();
    assert_eq!(flat[0].field, "vhds[8080/dup].domains[0]");
}

#[test]
fn vhds_hosts_built_before_are_taken_as_built() {
    let table = rds_table(WITH_VHDS);
    let hosts = [
        vhost_for("8080/a", "a.example", "/.*"),
        vhost_for("8080/b", "b.example", "/.*"),
    ];
    let first = over_delta(&table, &hosts).expect("buildable");
    // `a` as the first table built it; `b` built again.
    let kept = first.virtual_hosts[1].clone();
    let a: *const route::VirtualHost = &hosts[0];
    let second = RouteConfig::from_rds(&table, &At::root(""), Some(AdsApi::Delta), &hosts, |vh| {
        std::ptr::eq(vh, a).then(|| kept.clone())
    })
    .expect("buildable");
    assert!(Arc::ptr_eq(&second.virtual_hosts[1], &kept));
    assert!(!Arc::ptr_eq(
        &second.virtual_hosts[2],
        &first.virtual_hosts[2]
    ));
    // Its domains are the table's still.
    assert_eq!(
        route_for(&second, "a.example", "/x", &[]).as_deref(),
        Some("8080/a/r")
    );
    assert_eq!(
        route_for(&second, "b.example", "/x", &[]).as_deref(),
        Some("8080/b/r")
    );
}
