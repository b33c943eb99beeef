//! VirtualService HTTP routes → Envoy routes, as istiod translates them: one Envoy route per match
//! (in order; first match wins), Istio's default retry policy, no default timeout, faults and mirrors
//! per route.

use std::collections::HashMap;

use mesh_api::types::common::{Duration as IstioDuration, Percent};
use mesh_api::types::virtual_service::{
    Destination, HeaderOperations, HttpMatchRequest, HttpRetry, HttpRoute, StringMatch,
};
use mesh_api::validate::common::parse_duration;
use xds_api::pb::envoy::config::core::v3::DataSource;
use xds_api::pb::envoy::config::core::v3::data_source::Specifier;
use xds_api::pb::envoy::config::core::v3::{
    HeaderValue, HeaderValueOption, RuntimeFractionalPercent,
    header_value_option::HeaderAppendAction,
};
use xds_api::pb::envoy::config::route::v3::{
    DirectResponseAction, HeaderMatcher, QueryParameterMatcher, RedirectAction, RetryPolicy, Route,
    RouteAction, RouteMatch, WeightedCluster,
    header_matcher::HeaderMatchSpecifier,
    query_parameter_matcher::QueryParameterMatchSpecifier,
    redirect_action::{PathRewriteSpecifier, RedirectResponseCode, SchemeRewriteSpecifier},
    retry_policy::{RetryBackOff, RetryHostPredicate},
    route::Action,
    route_action::{ClusterSpecifier, HostRewriteSpecifier, RequestMirrorPolicy},
    route_match::PathSpecifier,
    weighted_cluster::ClusterWeight,
};
use xds_api::pb::envoy::extensions::filters::common::fault::v3::{
    FaultDelay, fault_delay::FaultDelaySecifier,
};
use xds_api::pb::envoy::extensions::filters::http::fault::v3::{
    FaultAbort, HttpFault, fault_abort::ErrorType,
};
use xds_api::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use xds_api::pb::envoy::r#type::matcher::v3::{
    RegexMatchAndSubstitute, RegexMatcher, StringMatcher, string_matcher::MatchPattern,
};
use xds_api::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent::DenominatorType};
use xds_api::pb::google::protobuf::{Duration as PbDuration, UInt32Value};

use crate::index::{Index, VirtualService};
use crate::node::Proxy;

/// The name of Envoy's fault filter, under which per-route fault config goes.
pub const FAULT_FILTER: &str = "envoy.filters.http.fault";
/// The name of Envoy's CORS filter, under which per-route CORS policies go.
pub const CORS_FILTER: &str = "envoy.filters.http.cors";
/// Istio's default `retryOn` when a VirtualService sets none.
pub const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";
/// Istio's default number of retries.
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 2;

/// Where routes are generated: which proxy, which port, and for a gateway which one (`ns/name`).
#[derive(Debug, Clone, Copy)]
pub struct RouteContext<'a> {
    pub index: &'a Index,
    pub proxy: &'a Proxy,
    pub port: u32,
    pub gateway: Option<&'a str>,
}

pub fn duration(d: std::time::Duration) -> PbDuration {
    PbDuration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// An Istio duration (`1s`, `100ms`, `1h`); validation already refused bad ones, so a bad one here is
/// treated as absent.
pub fn istio_duration(d: &IstioDuration) -> Option<PbDuration> {
    parse_duration(&d.0).ok().map(duration)
}

/// A percentage (0–100, fractions allowed) as Envoy's parts per million.
pub fn per_million(p: Option<&Percent>, default: f64) -> FractionalPercent {
    let value = p.and_then(|p| p.value).unwrap_or(default).clamp(0.0, 100.0);
    FractionalPercent {
        numerator: (value * 10_000.0).round() as u32,
        denominator: DenominatorType::Million as i32,
    }
}

pub fn outbound_cluster(port: u32, subset: &str, host: &str) -> String {
    format!("outbound|{port}|{subset}|{host}")
}

impl RouteContext<'_> {
    /// The cluster a destination of a VirtualService in `namespace` names.
    pub fn destination_cluster(&self, d: &Destination, namespace: &str) -> String {
        let host = self
            .index
            .services
            .resolve(d.host.as_deref().unwrap_or_default(), namespace);
        let port = d
            .port
            .as_ref()
            .and_then(|p| p.number)
            .or_else(|| {
                let service = self.index.services.get(&host)?;
                match service.ports.as_slice() {
                    [only] => Some(only.number),
                    _ => None,
                }
            })
            .unwrap_or(self.port);
        outbound_cluster(port, d.subset.as_deref().unwrap_or_default(), &host)
    }

    /// The Envoy routes of one VirtualService for this context, in order.
    pub fn virtual_service_routes(&self, vs: &VirtualService) -> Vec<Route> {
        let mut routes = Vec::new();
        for (i, http) in vs.spec.http.iter().enumerate() {
            if http.delegate.is_some() {
                continue;
            }
            let name = http
                .name
                .clone()
                .unwrap_or_else(|| format!("{}.{}.{i}", vs.name, vs.namespace));
            if http.r#match.is_empty() {
                routes.push(self.route(vs, http, &name, every_path()));
                continue;
            }
            for m in http.r#match.iter().filter(|m| self.match_applies(m, vs)) {
                let route_name = m
                    .name
                    .as_ref()
                    .map_or_else(|| name.clone(), |n| format!("{name}.{n}"));
                routes.push(self.route(vs, http, &route_name, route_match(m)));
            }
        }
        routes
    }

    /// The parts of a match that select proxies and ports rather than requests: `port`, `gateways`,
    /// `sourceLabels`, `sourceNamespace`. A match that does not apply here is left out of this proxy's
    /// config (the way `sourceLabels` limits a fault to one client).
    fn match_applies(&self, m: &HttpMatchRequest, vs: &VirtualService) -> bool {
        if m.port.is_some_and(|p| p != self.port) {
            return false;
        }
        if !m.gateways.is_empty() {
            let here = self.gateway.unwrap_or("mesh");
            if !m
                .gateways
                .iter()
                .any(|g| crate::index::qualify_gateway(g, &vs.namespace) == here)
            {
                return false;
            }
        }
        if !crate::model::labels_match(&self.proxy.labels, &m.source_labels) {
            return false;
        }
        if m.source_namespace
            .as_ref()
            .is_some_and(|ns| *ns != self.proxy.namespace)
        {
            return false;
        }
        true
    }

    fn route(
        &self,
        vs: &VirtualService,
        http: &HttpRoute,
        name: &str,
        matcher: RouteMatch,
    ) -> Route {
        let mut route = Route {
            name: name.to_owned(),
            r#match: Some(matcher),
            metadata: Some(crate::generate::istio_config_metadata(
                "virtual-service",
                &vs.namespace,
                &vs.name,
            )),
            ..Default::default()
        };
        if let Some(headers) = &http.headers {
            if let Some(req) = &headers.request {
                route.request_headers_to_add = header_ops(req);
                route.request_headers_to_remove = req.remove.clone();
            }
            if let Some(resp) = &headers.response {
                route.response_headers_to_add = header_ops(resp);
                route.response_headers_to_remove = resp.remove.clone();
            }
        }
        if let Some(redirect) = &http.redirect {
            route.action = Some(Action::Redirect(RedirectAction {
                host_redirect: redirect.authority.clone().unwrap_or_default(),
                port_redirect: redirect.port.unwrap_or(0),
                response_code: match redirect.redirect_code.unwrap_or(301) {
                    302 => RedirectResponseCode::Found,
                    303 => RedirectResponseCode::SeeOther,
                    307 => RedirectResponseCode::TemporaryRedirect,
                    308 => RedirectResponseCode::PermanentRedirect,
                    _ => RedirectResponseCode::MovedPermanently,
                } as i32,
                scheme_rewrite_specifier: redirect
                    .scheme
                    .clone()
                    .map(SchemeRewriteSpecifier::SchemeRedirect),
                path_rewrite_specifier: redirect
                    .uri
                    .clone()
                    .map(PathRewriteSpecifier::PathRedirect),
                ..Default::default()
            }));
            return route;
        }
        if let Some(direct) = &http.direct_response {
            let body = direct
                .body
                .as_ref()
                .and_then(|b| b.string.clone().or(b.bytes.clone()));
            route.action = Some(Action::DirectResponse(DirectResponseAction {
                status: direct.status.unwrap_or(200),
                body: body.map(|b| DataSource {
                    specifier: Some(Specifier::InlineString(b)),
                    ..Default::default()
                }),
                ..Default::default()
            }));
            return route;
        }

        let mut action = RouteAction {
            // Istio disables Envoy's 15 s default: no timeout unless the VirtualService sets one.
            timeout: Some(
                http.timeout
                    .as_ref()
                    .and_then(istio_duration)
                    .unwrap_or_default(),
            ),
            retry_policy: retry_policy(http.retries.as_ref()),
            ..Default::default()
        };
        action.cluster_specifier = Some(match http.route.as_slice() {
            [single] if single.headers.is_none() => ClusterSpecifier::Cluster(
                single
                    .destination
                    .as_ref()
                    .map(|d| self.destination_cluster(d, &vs.namespace))
                    .unwrap_or_default(),
            ),
            many => ClusterSpecifier::WeightedClusters(WeightedCluster {
                clusters: many
                    .iter()
                    .filter(|d| many.len() == 1 || d.weight.unwrap_or(0) > 0)
                    .map(|d| {
                        let (add, remove) = d
                            .headers
                            .as_ref()
                            .and_then(|h| h.request.as_ref())
                            .map(|r| (header_ops(r), r.remove.clone()))
                            .unwrap_or_default();
                        ClusterWeight {
                            name: d
                                .destination
                                .as_ref()
                                .map(|dest| self.destination_cluster(dest, &vs.namespace))
                                .unwrap_or_default(),
                            weight: Some(UInt32Value {
                                value: if many.len() == 1 {
                                    100
                                } else {
                                    u32::try_from(d.weight.unwrap_or(0)).unwrap_or(0)
                                },
                            }),
                            request_headers_to_add: add,
                            request_headers_to_remove: remove,
                            ..Default::default()
                        }
                    })
                    .collect(),
                ..Default::default()
            }),
        });
        self.apply_hash_policies(http, &vs.namespace, &mut action);
        if let Some(rewrite) = &http.rewrite {
            if let Some(uri) = &rewrite.uri {
                action.prefix_rewrite = uri.clone();
            }
            if let Some(rr) = &rewrite.uri_regex_rewrite {
                action.regex_rewrite = Some(RegexMatchAndSubstitute {
                    pattern: Some(RegexMatcher {
                        regex: rr.r#match.clone().unwrap_or_default(),
                        ..Default::default()
                    }),
                    substitution: rr.rewrite.clone().unwrap_or_default(),
                });
            }
            if let Some(authority) = &rewrite.authority {
                action.host_rewrite_specifier =
                    Some(HostRewriteSpecifier::HostRewriteLiteral(authority.clone()));
            }
        }
        let mut mirrors: Vec<(&Destination, f64)> = http
            .mirrors
            .iter()
            .filter_map(|m| {
                Some((
                    m.destination.as_ref()?,
                    m.percentage.as_ref().and_then(|p| p.value).unwrap_or(100.0),
                ))
            })
            .collect();
        if let Some(mirror) = &http.mirror {
            let pct = http
                .mirror_percentage
                .as_ref()
                .and_then(|p| p.value)
                .or(http.mirror_percent.map(f64::from))
                .unwrap_or(100.0);
            mirrors.insert(0, (mirror, pct));
        }
        action.request_mirror_policies = mirrors
            .into_iter()
            .map(|(d, pct)| RequestMirrorPolicy {
                cluster: self.destination_cluster(d, &vs.namespace),
                runtime_fraction: Some(RuntimeFractionalPercent {
                    default_value: Some(per_million(Some(&Percent { value: Some(pct) }), 100.0)),
                    runtime_key: String::new(),
                }),
                ..Default::default()
            })
            .collect();
        route.action = Some(Action::Route(action));
        if let Some(fault) = http.fault.as_ref().and_then(fault_filter) {
            route.typed_per_filter_config =
                HashMap::from([(FAULT_FILTER.to_owned(), xds_api::any::pack(&fault))]);
        }
        if let Some(cors) = &http.cors_policy {
            route.typed_per_filter_config.insert(
                CORS_FILTER.to_owned(),
                xds_api::any::pack(&cors_policy(cors)),
            );
        }
        route
    }
}

/// Matches every request (`prefix: /`).
pub fn every_path() -> RouteMatch {
    RouteMatch {
        path_specifier: Some(PathSpecifier::Prefix("/".into())),
        ..Default::default()
    }
}

/// Forwards to `cluster` with no timeout (Istio disables Envoy's 15 s default).
pub fn forward_to(cluster: &str) -> RouteAction {
    RouteAction {
        cluster_specifier: Some(ClusterSpecifier::Cluster(cluster.to_owned())),
        timeout: Some(PbDuration::default()),
        ..Default::default()
    }
}

/// The default route of a service port with no VirtualService: everything to its cluster, Istio's
/// default retries, no timeout.
pub fn default_route(cluster: &str) -> Route {
    Route {
        name: "default".to_owned(),
        r#match: Some(every_path()),
        action: Some(Action::Route(RouteAction {
            retry_policy: retry_policy(None),
            ..forward_to(cluster)
        })),
        ..Default::default()
    }
}

fn string_matcher(m: &StringMatch, ignore_case: bool) -> Option<StringMatcher> {
    let pattern = if let Some(e) = &m.exact {
        MatchPattern::Exact(e.clone())
    } else if let Some(p) = &m.prefix {
        MatchPattern::Prefix(p.clone())
    } else if let Some(r) = &m.regex {
        MatchPattern::SafeRegex(RegexMatcher {
            regex: r.clone(),
            ..Default::default()
        })
    } else {
        return None;
    };
    Some(StringMatcher {
        match_pattern: Some(pattern),
        ignore_case,
    })
}

fn header_matcher(name: &str, m: &StringMatch, invert: bool) -> HeaderMatcher {
    let specifier = match string_matcher(m, false) {
        Some(sm) => HeaderMatchSpecifier::StringMatch(sm),
        // `{}` (no exact/prefix/regex) means: the header is present.
        None => HeaderMatchSpecifier::PresentMatch(true),
    };
    HeaderMatcher {
        name: name.to_ascii_lowercase(),
        invert_match: invert,
        // A `withoutHeaders` value match also holds when the header is absent (Envoy fails a missing
        // header even inverted unless it is read as empty); a presence check inverts on its own.
        treat_missing_header_as_empty: invert
            && matches!(specifier, HeaderMatchSpecifier::StringMatch(_)),
        header_match_specifier: Some(specifier),
    }
}

/// The request-matching part of an Istio match.
pub fn route_match(m: &HttpMatchRequest) -> RouteMatch {
    let ignore_case = m.ignore_uri_case.unwrap_or(false);
    let path_specifier = match &m.uri {
        Some(uri) if uri.exact.is_some() => uri.exact.clone().map(PathSpecifier::Path),
        Some(uri) if uri.prefix.is_some() => uri.prefix.clone().map(PathSpecifier::Prefix),
        Some(uri) if uri.regex.is_some() => uri.regex.clone().map(|r| {
            PathSpecifier::SafeRegex(RegexMatcher {
                regex: r,
                ..Default::default()
            })
        }),
        _ => Some(PathSpecifier::Prefix("/".into())),
    };
    let mut headers: Vec<HeaderMatcher> = Vec::new();
    for (pseudo, value) in [
        (":method", &m.method),
        (":authority", &m.authority),
        (":scheme", &m.scheme),
    ] {
        if let Some(v) = value {
            headers.push(header_matcher(pseudo, v, false));
        }
    }
    headers.extend(m.headers.iter().map(|(n, v)| header_matcher(n, v, false)));
    headers.extend(
        m.without_headers
            .iter()
            .map(|(n, v)| header_matcher(n, v, true)),
    );
    RouteMatch {
        path_specifier,
        case_sensitive: ignore_case
            .then_some(xds_api::pb::google::protobuf::BoolValue { value: false }),
        headers,
        query_parameters: m
            .query_params
            .iter()
            .map(|(name, v)| QueryParameterMatcher {
                name: name.clone(),
                query_parameter_match_specifier: Some(match string_matcher(v, false) {
                    Some(sm) => QueryParameterMatchSpecifier::StringMatch(sm),
                    None => QueryParameterMatchSpecifier::PresentMatch(true),
                }),
            })
            .collect(),
        ..Default::default()
    }
}

fn header_ops(ops: &HeaderOperations) -> Vec<HeaderValueOption> {
    let option = |(k, v): (&String, &String), action: HeaderAppendAction| HeaderValueOption {
        header: Some(HeaderValue {
            key: k.clone(),
            value: v.clone(),
            ..Default::default()
        }),
        append_action: action as i32,
        ..Default::default()
    };
    ops.set
        .iter()
        .map(|kv| option(kv, HeaderAppendAction::OverwriteIfExistsOrAdd))
        .chain(
            ops.add
                .iter()
                .map(|kv| option(kv, HeaderAppendAction::AppendIfExistsOrAdd)),
        )
        .collect()
}

/// Istio's retry policy: its default when `retries` is absent, none when `attempts` is 0.
pub fn retry_policy(retries: Option<&HttpRetry>) -> Option<RetryPolicy> {
    let attempts = match retries.and_then(|r| r.attempts) {
        Some(a) if a <= 0 => return None,
        Some(a) => u32::try_from(a).unwrap_or(DEFAULT_RETRY_ATTEMPTS),
        None => DEFAULT_RETRY_ATTEMPTS,
    };
    let retry_on = retries
        .and_then(|r| r.retry_on.clone())
        .unwrap_or_else(|| DEFAULT_RETRY_ON.to_owned());
    // Status codes in `retryOn` become retriable status codes, as istiod splits them out.
    let mut policies = Vec::new();
    let mut codes = Vec::new();
    for part in retry_on.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<u32>() {
            Ok(code) => codes.push(code),
            Err(_) => policies.push(part.to_owned()),
        }
    }
    if !codes.is_empty() && !policies.iter().any(|p| p == "retriable-status-codes") {
        policies.push("retriable-status-codes".to_owned());
    }
    if codes.is_empty() {
        codes.push(503);
    }
    let ignore_previous = retries
        .and_then(|r| r.retry_ignore_previous_hosts)
        .unwrap_or(true);
    Some(RetryPolicy {
        retry_on: policies.join(","),
        num_retries: Some(UInt32Value { value: attempts }),
        per_try_timeout: retries
            .and_then(|r| r.per_try_timeout.as_ref())
            .and_then(istio_duration),
        retriable_status_codes: codes,
        retry_host_predicate: if ignore_previous {
            vec![RetryHostPredicate {
                name: "envoy.retry_host_predicates.previous_hosts".to_owned(),
                config_type: Some(
                    xds_api::pb::envoy::config::route::v3::retry_policy::retry_host_predicate::ConfigType::TypedConfig(
                        xds_api::any::pack(&PreviousHostsPredicate::default()),
                    ),
                ),
            }]
        } else {
            Vec::new()
        },
        host_selection_retry_max_attempts: 5,
        retry_back_off: retries
            .and_then(|r| r.backoff.as_ref())
            .and_then(istio_duration)
            .map(|base| RetryBackOff {
                base_interval: Some(base),
                ..Default::default()
            }),
        ..Default::default()
    })
}

/// Istio's `corsPolicy` as Envoy's per-route CORS policy, as istiod translates it: origins as string
/// matchers (the deprecated `allowOrigin` as exact ones), lists joined with commas, `maxAge` in whole
/// seconds, always enabled; preflights from origins not allowed go upstream unless
/// `unmatchedPreflights: IGNORE`.
pub fn cors_policy(
    cors: &mesh_api::types::virtual_service::CorsPolicy,
) -> xds_api::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy {
    use mesh_api::types::virtual_service::UnmatchedPreflights;
    use xds_api::pb::google::protobuf::BoolValue;
    let origins = if cors.allow_origins.is_empty() {
        cors.allow_origin
            .iter()
            .map(|o| StringMatcher {
                match_pattern: Some(MatchPattern::Exact(o.clone())),
                ignore_case: false,
            })
            .collect()
    } else {
        cors.allow_origins
            .iter()
            .filter_map(|m| string_matcher(m, false))
            .collect()
    };
    xds_api::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy {
        allow_origin_string_match: origins,
        allow_methods: cors.allow_methods.join(","),
        allow_headers: cors.allow_headers.join(","),
        expose_headers: cors.expose_headers.join(","),
        max_age: cors
            .max_age
            .as_ref()
            .and_then(istio_duration)
            .map(|d| d.seconds.to_string())
            .unwrap_or_default(),
        allow_credentials: cors.allow_credentials.map(|value| BoolValue { value }),
        filter_enabled: Some(RuntimeFractionalPercent {
            default_value: Some(FractionalPercent {
                numerator: 100,
                denominator: DenominatorType::Hundred as i32,
            }),
            runtime_key: String::new(),
        }),
        forward_not_matching_preflights: Some(BoolValue {
            value: cors.unmatched_preflights != Some(UnmatchedPreflights::Ignore),
        }),
        ..Default::default()
    }
}

/// Istio's `fault` as the config of Envoy's fault filter for one route.
fn fault_filter(fault: &mesh_api::types::virtual_service::HttpFaultInjection) -> Option<HttpFault> {
    let delay = fault.delay.as_ref().and_then(|d| {
        let fixed = d.fixed_delay.as_ref().and_then(istio_duration)?;
        let pct = d.percentage.clone().or(d.percent.map(|p| Percent {
            value: Some(f64::from(p)),
        }));
        Some(FaultDelay {
            fault_delay_secifier: Some(FaultDelaySecifier::FixedDelay(fixed)),
            percentage: Some(per_million(pct.as_ref(), 100.0)),
        })
    });
    let abort = fault.abort.as_ref().and_then(|a| {
        let error_type = if let Some(status) = a.http_status {
            ErrorType::HttpStatus(u32::try_from(status).ok()?)
        } else {
            let grpc = a.grpc_status.as_deref()?;
            ErrorType::GrpcStatus(grpc_code(grpc)?)
        };
        Some(FaultAbort {
            error_type: Some(error_type),
            percentage: Some(per_million(a.percentage.as_ref(), 100.0)),
            ..Default::default()
        })
    });
    if delay.is_none() && abort.is_none() {
        return None;
    }
    Some(HttpFault {
        delay,
        abort,
        ..Default::default()
    })
}

/// gRPC status names (`UNAVAILABLE`) or numbers, as Istio accepts them.
fn grpc_code(status: &str) -> Option<u32> {
    status.parse().ok().or_else(|| {
        mesh_api::validate::GRPC_STATUS
            .iter()
            .position(|n| *n == status)
            .and_then(|i| u32::try_from(i).ok())
    })
}
