//! VirtualService: Istio's admission rules (`pkg/config/validation/validation.go`, `virtualservice.go`,
//! `agent/validation.go`) and the CRD schema's own checks (required fields, oneofs, CEL durations), plus
//! the warnings Istio's webhook returns (deprecated fields, unreachable rules).

use std::collections::BTreeMap;

use super::Ctx;
use super::common::{self, is_set};
use crate::diag::{Report, Severity, code};
use crate::path::FieldPath;
use crate::types::Percent;
use crate::types::virtual_service::{
    Abort, CorsPolicy, Delay, Destination, HeaderOperations, Headers, HttpDirectResponse,
    HttpFaultInjection, HttpMatchRequest, HttpMirrorPolicy, HttpRedirect, HttpRetry, HttpRewrite,
    HttpRoute, HttpRouteDestination, L4MatchAttributes, RouteDestination, StringMatch, TcpRoute,
    TlsMatchAttributes, TlsRoute, VirtualServiceSpec,
};
use crate::yaml::Node;

/// The gateway name that stands for all sidecars.
const MESH_GATEWAY: &str = "mesh";
/// Header-name prefix that routes on a JWT claim (`@request.auth.claims.group`).
const JWT_CLAIM_HEADER: &str = "@request.auth.claims";
/// Annotation set on VirtualServices generated from Gateway API routes.
const ROUTE_SEMANTICS_ANNOTATION: &str = "internal.istio.io/route-semantics";

/// What the whole VirtualService tells the per-route checks.
struct Vs<'a> {
    spec: &'a VirtualServiceSpec,
    /// The document, to tell `field: null` from `field: {}` where Istio does.
    root: &'a Node,
    /// `internal.istio.io/route-semantics: gateway` (generated from Gateway API routes).
    gateway_semantics: bool,
}

pub(super) fn validate(
    ctx: &Ctx<'_>,
    spec: &VirtualServiceSpec,
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
) {
    let vs = Vs {
        spec,
        root: &ctx.resource.node,
        gateway_semantics: ctx
            .resource
            .meta
            .annotations
            .get(ROUTE_SEMANTICS_ANNOTATION)
            .is_some_and(|v| v == "gateway"),
    };
    let gateways_at = at.key("gateways");
    let http_at = at.key("http");
    let tcp_at = at.key("tcp");
    let tls_at = at.key("tls");

    if spec.hosts.is_empty() {
        // No hosts: a delegate VirtualService, only reachable through a root's `delegate`.
        if !spec.gateways.is_empty() {
            report.error(
                &gateways_at,
                "delegate virtual service must have no gateways specified",
            );
        }
        if !spec.tls.is_empty() {
            report.error(
                &tls_at,
                "delegate virtual service must have no tls route specified",
            );
        }
        if !spec.tcp.is_empty() {
            report.error(
                &tcp_at,
                "delegate virtual service must have no tcp route specified",
            );
        }
    }

    let applies_to_gateway = !spec.gateways.is_empty() && is_gateway_free_of_mesh(spec);
    if !spec.gateways.is_empty() {
        gateway_names(report, &gateways_at, &spec.gateways, vs.gateway_semantics);
    }
    let applies_to_mesh = !applies_to_gateway;

    if !applies_to_gateway {
        jwt_claim_routes_need_gateway(report, &http_at, spec);
    }

    hosts(report, at, spec, applies_to_gateway, applies_to_mesh);

    if spec.http.is_empty() && spec.tcp.is_empty() && spec.tls.is_empty() {
        report.error(at, "http, tcp or tls must be provided in virtual service");
    }
    let delegate = spec.hosts.is_empty();
    for (i, route) in spec.http.iter().enumerate() {
        let p = http_at.index(i);
        if common::is_null(vs.root, &p) {
            report.error(&p, "http route may not be null");
            continue;
        }
        http_route(report, &p, route, delegate, &vs);
    }
    for (i, route) in spec.tls.iter().enumerate() {
        tls_route(report, &tls_at.index(i), route, &vs);
    }
    for (i, route) in spec.tcp.iter().enumerate() {
        tcp_route(report, &tcp_at.index(i), route, &vs);
    }

    common::export_to(
        report,
        &at.key("exportTo"),
        ctx.namespace,
        &spec.export_to,
        false,
    );

    unreachable_http_rules(report, &http_at, &spec.http);
    unreachable_l4_rules(report, &tcp_at, &spec.tcp, |r| &r.r#match);
    unreachable_l4_rules(report, &tls_at, &spec.tls, |r| &r.r#match);
}

/// Istio's `isGateway`: true unless the `mesh` gateway is listed (also true with no gateways).
fn is_gateway_free_of_mesh(spec: &VirtualServiceSpec) -> bool {
    !spec.gateways.iter().any(|g| g == MESH_GATEWAY)
}

/// Hosts: wildcard domains (short names allowed), IP addresses accepted as is, no `*` on the mesh, and
/// no two hosts that overlap.
fn hosts(
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
    spec: &VirtualServiceSpec,
    applies_to_gateway: bool,
    applies_to_mesh: bool,
) {
    let hosts_at = at.key("hosts");
    let sni = spec
        .tls
        .iter()
        .any(|t| t.r#match.iter().any(|m| !m.sni_hosts.is_empty()));
    let mut all_valid = true;
    for (i, host) in spec.hosts.iter().enumerate() {
        let p = hosts_at.index(i);
        let err = if applies_to_gateway {
            gateway_bound_domain_error(sni, host)
        } else {
            common::wildcard_domain_error(host)
        };
        match err {
            Some(e) if !common::is_ip(host) => {
                report.error(&p, e);
                all_valid = false;
            }
            Some(_) => {}
            None if applies_to_mesh && host == "*" => {
                report.error(
                    &p,
                    "wildcard host * is not allowed for virtual services bound to the mesh gateway",
                );
                all_valid = false;
            }
            None => {}
        }
    }
    if all_valid {
        for (i, a) in spec.hosts.iter().enumerate() {
            for (j, b) in spec.hosts.iter().enumerate().skip(i + 1) {
                if host_matches(a, b) {
                    report.error(
                        &hosts_at.index(j),
                        format!("duplicate hosts in virtual service: {a} & {b}"),
                    );
                }
            }
        }
    }
}

/// Istio's `ValidateWildcardDomainForVirtualServiceBoundToGateway`: like a wildcard domain, but with
/// TLS routes also the SNI names Envoy generates for AUTO_PASSTHROUGH (`outbound_.80_._.foo.com`).
fn gateway_bound_domain_error(sni: bool, domain: &str) -> Option<String> {
    if sni && domain.starts_with("outbound_") && domain.len() <= 255 {
        let format = "outbound_.<PORT>_._.<HOSTNAME>";
        // `outbound_.<PORT>_._.<HOSTNAME>` split on `_`: the port is the 2nd part, the host the 4th.
        let parts: Vec<&str> = domain.split('_').collect();
        let (Some(port), Some(hostname)) = (
            parts.get(1).map(|p| p.trim_matches('.')),
            parts.get(3).map(|h| h.trim_matches('.')),
        ) else {
            return Some(format!(
                "domain name {domain} invalid, should follow '{format}' format"
            ));
        };
        if !port.bytes().any(|b| b.is_ascii_digit()) {
            return Some(format!(
                "domain name {domain:?} invalid (label {port:?} invalid). should follow {format} format"
            ));
        }
        if !hostname.bytes().any(|b| b.is_ascii_alphabetic()) {
            return Some(format!(
                "domain name {domain:?} invalid (label {hostname:?} invalid). should follow {format} format"
            ));
        }
        return None;
    }
    common::wildcard_domain_error(domain)
}

/// Istio's `host.Name.Matches`: the two (possibly wildcard) hosts overlap.
fn host_matches(a: &str, b: &str) -> bool {
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (Some(sa), Some(sb)) => {
            if a.len() < b.len() {
                sb.ends_with(sa)
            } else {
                sa.ends_with(sb)
            }
        }
        (Some(sa), None) => b.ends_with(sa),
        (None, Some(sb)) => a.ends_with(sb),
        (None, None) => a == b,
    }
}

/// Istio's `host.Name.SubsetOf`: every name `a` covers is covered by `b`.
fn host_subset_of(a: &str, b: &str) -> bool {
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (Some(sa), Some(sb)) => a.len() >= b.len() && sa.ends_with(sb),
        (Some(_), None) => false,
        (None, Some(sb)) => a.ends_with(sb),
        (None, None) => a == b,
    }
}

/// Istio's `validateGatewayNames`: `namespace/name`, a plain name, or the legacy `name.namespace`.
fn gateway_names(
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
    names: &[String],
    gateway_semantics: bool,
) {
    for (i, name) in names.iter().enumerate() {
        let p = at.index(i);
        match name.split_once('/') {
            None => {
                if let Some((first, rest)) = name.split_once('.') {
                    let ns = rest.split('.').next().unwrap_or_default();
                    report.warn(
                        &p,
                        format!(
                            "using legacy gatewayName format {name:?}; prefer the <namespace>/<name> format: \"{ns}/{first}\""
                        ),
                    );
                }
                if let Some(e) = common::fqdn_error(name) {
                    report.error(&p, e);
                }
            }
            Some((ns, gw)) => {
                if ns.is_empty() || gw.is_empty() {
                    report.error(&p, "config namespace and gateway name cannot be empty");
                }
                if !ns.is_empty() && !common::is_dns1123_label(ns) {
                    report.error(&p, format!("invalid value for namespace: {ns:?}"));
                }
                if !gw.is_empty() && !common::is_dns1123_label(gw) && !gateway_semantics {
                    report.error(&p, format!("invalid value for gateway name: {gw:?}"));
                }
            }
        }
    }
}

/// Whether a header name routes on a JWT claim: `@request.auth.claims.a.b` or `@request.auth.claims[a][b]`.
fn is_jwt_claim_header(name: &str) -> bool {
    let Some(prefix) = name.get(..JWT_CLAIM_HEADER.len()) else {
        return false;
    };
    if !prefix.eq_ignore_ascii_case(JWT_CLAIM_HEADER) {
        return false;
    }
    let rest = &name[JWT_CLAIM_HEADER.len()..];
    (rest.starts_with('.') && rest.len() > 1)
        || (rest.starts_with('[') && rest.ends_with(']') && rest.len() > 2)
}

/// JWT claim routing needs a gateway (the sidecars do not validate JWTs for routing).
fn jwt_claim_routes_need_gateway(
    report: &mut Report<'_>,
    http_at: &FieldPath<'_>,
    spec: &VirtualServiceSpec,
) {
    let gateways = format!("[{}]", spec.gateways.join(" "));
    for (i, route) in spec.http.iter().enumerate() {
        let route_at = http_at.index(i);
        let match_at = route_at.key("match");
        for (j, m) in route.r#match.iter().enumerate() {
            let m_at = match_at.index(j);
            for (field, map) in [
                ("headers", &m.headers),
                ("withoutHeaders", &m.without_headers),
            ] {
                let f_at = m_at.key(field);
                for key in map.keys().filter(|k| is_jwt_claim_header(k)) {
                    report.error(
                        &f_at.key(key),
                        format!(
                            "JWT claim based routing (key: {key}) is only supported for gateway, found no gateways: {gateways}"
                        ),
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// HTTP routes
// ---------------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum RouteType {
    Independent,
    /// A route of a VirtualService with hosts that hands off to a delegate.
    Root,
    /// A route of a delegate VirtualService (one without hosts).
    Delegate,
}

fn http_route(
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
    route: &HttpRoute,
    delegate: bool,
    vs: &Vs<'_>,
) {
    let route_type = if delegate {
        RouteType::Delegate
    } else if route.delegate.is_some() {
        RouteType::Root
    } else {
        RouteType::Independent
    };
    route_conflicts(report, at, route, route_type);

    let match_at = at.key("match");
    for (j, m) in route.r#match.iter().enumerate() {
        match_request(report, &match_at.index(j), m, vs);
    }

    header_operations(report, &at.key("headers"), route.headers.as_ref());
    if let Some(cors) = &route.cors_policy {
        cors_policy(report, &at.key("corsPolicy"), cors);
    }
    if let Some(fault) = &route.fault {
        fault_injection(report, &at.key("fault"), fault);
    }

    if let Some(value) = route.mirror_percent {
        let key = if common::has_key(vs.root, at, "mirror_percent") {
            "mirror_percent"
        } else {
            "mirrorPercent"
        };
        let p = at.key(key);
        if value > 100 {
            report.error(
                &p,
                format!("mirror_percent must have a max value of 100 (it has {value})"),
            );
        }
        report.warn(
            &p,
            "using deprecated setting \"mirrorPercent\", use \"mirrorPercentage\" instead",
        );
    }
    if let Some(pct) = &route.mirror_percentage {
        mirror_percentage(
            report,
            &at.key("mirrorPercentage"),
            pct,
            "mirror_percentage",
        );
    }

    if let Some(mirror) = &route.mirror {
        destination(report, &at.key("mirror"), mirror);
    }
    mirrors(report, &at.key("mirrors"), &route.mirrors, vs.root);
    if let Some(redirect) = &route.redirect {
        http_redirect(report, &at.key("redirect"), redirect, &route.r#match);
    }
    if let Some(dr) = &route.direct_response {
        direct_response(report, &at.key("directResponse"), dr);
    }
    if let Some(retries) = &route.retries {
        http_retry(report, &at.key("retries"), retries);
    }
    if let Some(rewrite) = &route.rewrite {
        http_rewrite(report, &at.key("rewrite"), rewrite);
    }
    authority_rewrite(report, at, route);
    http_route_destinations(report, &at.key("route"), &route.route, vs);
    if let Some(timeout) = &route.timeout {
        common::duration(report, &at.key("timeout"), timeout);
    }
}

/// Istio's `validateHTTPRouteConflict`: a route forwards, redirects, responds directly or delegates.
fn route_conflicts(
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
    route: &HttpRoute,
    route_type: RouteType,
) {
    let redirect_at = at.key("redirect");
    let direct_at = at.key("directResponse");
    let name = route
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .map(|n| format!("{n} "))
        .unwrap_or_default();
    if route_type == RouteType::Root {
        // A root route only hands off to its delegate.
        if route.redirect.is_some() {
            report.error(
                &redirect_at,
                format!("root HTTP route {name}must not specify redirect"),
            );
        }
        if !route.route.is_empty() {
            report.error(
                &at.key("route"),
                format!("root HTTP route {name}must not specify route"),
            );
        }
        return;
    }
    if route_type == RouteType::Delegate && route.delegate.is_some() {
        report.error(
            &at.key("delegate"),
            "delegate HTTP route cannot contain delegate",
        );
    }

    if route.redirect.is_some() {
        if !route.route.is_empty() {
            report.error(
                &redirect_at,
                "HTTP route cannot contain both route and redirect",
            );
        }
        if route.fault.is_some() {
            report.error(
                &redirect_at,
                "HTTP route cannot contain both fault and redirect",
            );
        }
        if route.rewrite.is_some() {
            report.error(
                &redirect_at,
                "HTTP route rule cannot contain both rewrite and redirect",
            );
        }
        if route.direct_response.is_some() {
            report.error(
                &direct_at,
                "HTTP route rule cannot contain both direct_response and redirect",
            );
        }
    } else if route.direct_response.is_some() {
        if !route.route.is_empty() {
            report.error(
                &direct_at,
                "HTTP route cannot contain both route and direct_response",
            );
        }
        if route.fault.is_some() {
            report.error(
                &direct_at,
                "HTTP route cannot contain both fault and direct_response",
            );
        }
        if route.rewrite.is_some() {
            report.error(
                &direct_at,
                "HTTP route rule cannot contain both rewrite and direct_response",
            );
        }
    } else if route.route.is_empty() {
        report.error(at, "HTTP route, redirect or direct_response is required");
    }

    if route.mirror.is_some() && !route.mirrors.is_empty() {
        report.error(
            &at.key("mirrors"),
            "HTTP route cannot contain both mirror and mirrors",
        );
    }
}

/// Istio's `validateHTTPRouteMatchRequest` and the CRD's one-of on every string match.
fn match_request(report: &mut Report<'_>, at: &FieldPath<'_>, m: &HttpMatchRequest, vs: &Vs<'_>) {
    let headers_at = at.key("headers");
    for (name, sm) in &m.headers {
        let p = headers_at.key(name);
        if common::is_null(vs.root, &p) {
            report.error(&p, format!("header match {name} cannot be null"));
        }
        header_name_or_jwt_claim(report, &p, name);
        string_match(report, &p, sm, "headers", false);
    }
    let without_at = at.key("withoutHeaders");
    for (name, sm) in &m.without_headers {
        let p = without_at.key(name);
        header_name_or_jwt_claim(report, &p, name);
        // `regex: "*"` is not a regex: Istio reads it as "header present".
        if sm.regex.as_deref() == Some("*") {
            string_match_oneof(report, &p, sm);
        } else {
            string_match(report, &p, sm, "withoutHeaders", false);
        }
    }
    // Envoy allows an empty URI prefix (match all), but not an empty scheme/method/authority prefix.
    if let Some(sm) = &m.uri {
        string_match(report, &at.key("uri"), sm, "uri", true);
    }
    for (field, sm) in [
        ("scheme", &m.scheme),
        ("method", &m.method),
        ("authority", &m.authority),
    ] {
        if let Some(sm) = sm {
            string_match(report, &at.key(field), sm, field, false);
        }
    }
    let qp_at = at.key("queryParams");
    for (name, sm) in &m.query_params {
        string_match(report, &qp_at.key(name), sm, "queryParams", false);
    }

    if let Some(port) = m.port
        && port != 0
    {
        common::port(report, &at.key("port"), port);
    }
    common::labels(report, &at.key("sourceLabels"), &m.source_labels);
    gateway_names(report, &at.key("gateways"), &m.gateways, false);
    if let Some(ns) = &m.source_namespace
        && !ns.is_empty()
        && !common::is_dns1123_label(ns)
    {
        report.error(
            &at.key("sourceNamespace"),
            format!("sourceNamespace match {ns} is invalid"),
        );
    }
}

/// The CRD's one-of: at most one of `exact`, `prefix`, `regex`.
fn string_match_oneof(report: &mut Report<'_>, at: &FieldPath<'_>, sm: &StringMatch) -> bool {
    let set = [&sm.exact, &sm.prefix, &sm.regex]
        .iter()
        .filter(|v| v.is_some())
        .count();
    if set > 1 {
        report.error(at, "only one of exact, prefix or regex can be set");
        false
    } else {
        true
    }
}

/// Istio's `validateStringMatch` (`empty_prefix_ok` for `uri`, which only checks regexes).
fn string_match(
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
    sm: &StringMatch,
    what: &str,
    empty_prefix_ok: bool,
) {
    if !string_match_oneof(report, at, sm) {
        return;
    }
    if let Some(prefix) = &sm.prefix
        && prefix.is_empty()
        && !empty_prefix_ok
    {
        report.error(
            &at.key("prefix"),
            format!("{what:?}: prefix string match should not be empty"),
        );
    }
    if let Some(re) = &sm.regex {
        regex(report, &at.key("regex"), what, re);
    }
}

/// A regex as Envoy (RE2) and Istio's webhook (Go's `regexp`, also RE2) read it.
fn regex(report: &mut Report<'_>, at: &FieldPath<'_>, what: &str, pattern: &str) {
    let before = report.findings.len();
    // RE2's `\Q...\E` literal quoting is not Rust syntax: check its escaped equivalent instead.
    let expanded = if pattern.len() <= 1024 {
        expand_literal_quotes(pattern)
    } else {
        pattern.to_owned()
    };
    common::regex(report, at, what, &expanded);
    if report.findings.len() > before {
        return;
    }
    let (error, warnings) = re2_differences(&expanded);
    if let Some(e) = error {
        report.error(
            at,
            format!("{what:?}: error parsing regexp: {e}; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)"),
        );
    }
    for w in warnings {
        report.warn(at, format!("{what:?}: {w}"));
    }
}

/// Replaces RE2's `\Q...\E` (literal text; `\E` optional at the end) with the text escaped.
fn expand_literal_quotes(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut rest = pattern;
    loop {
        // Find an unescaped `\Q`: scan escape pairs so `\\Q` (a backslash, then Q) is left alone.
        let mut start = None;
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            if c == '\\'
                && let Some((_, 'Q')) = chars.next()
            {
                start = Some(i);
                break;
            }
        }
        let Some(start) = start else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..start]);
        let quoted = &rest[start + 2..];
        let (literal, after) = quoted.split_once("\\E").unwrap_or((quoted, ""));
        out.push_str(&regex::escape(literal));
        rest = after;
    }
}

/// What Rust's `regex` accepts but RE2 rejects (an error), or reads differently (warnings).
fn re2_differences(pattern: &str) -> (Option<String>, Vec<String>) {
    let b = pattern.as_bytes();
    let mut warnings = Vec::new();
    let mut i = 0;
    let mut in_class = false;
    let mut class_start = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' {
            if !in_class && matches!(b.get(i + 1), Some(b'<' | b'>')) {
                let esc = if b.get(i + 1) == Some(&b'<') {
                    "\\<"
                } else {
                    "\\>"
                };
                warnings.push(format!(
                    "`{esc}` is a literal character in RE2 (Envoy), not a word boundary; use \\b"
                ));
            }
            i += 2;
            continue;
        }
        if in_class {
            if c == b']' && i > class_start {
                in_class = false;
            } else if i + 1 < b.len()
                && matches!(c, b'&' | b'-' | b'~')
                && b[i + 1] == c
                && (c != b'-' || i > class_start)
            {
                let op = if c == b'&' {
                    "&&"
                } else if c == b'-' {
                    "--"
                } else {
                    "~~"
                };
                warnings.push(format!(
                    "`{op}` in a character class is literal characters in RE2 (Envoy), not a set operation"
                ));
                i += 2;
                continue;
            }
            i += 1;
            continue;
        }
        match c {
            b'[' => {
                in_class = true;
                // `[]...]` and `[^]...]`: a leading `]` is a literal.
                class_start = i + 1;
                if b.get(class_start) == Some(&b'^') {
                    class_start += 1;
                }
                if b.get(class_start) == Some(&b']') {
                    class_start += 1;
                }
                i = class_start;
                continue;
            }
            b'(' if b.get(i + 1) == Some(&b'?') => {
                let flags_start = i + 2;
                if !matches!(b.get(flags_start), Some(b'P' | b'<' | b':')) {
                    let end = b[flags_start..]
                        .iter()
                        .position(|c| matches!(c, b')' | b':'))
                        .map_or(b.len(), |p| flags_start + p);
                    let flags = &pattern[flags_start..end];
                    if flags
                        .chars()
                        .any(|f| !matches!(f, 'i' | 'm' | 's' | 'U' | '-'))
                    {
                        return (
                            Some(format!(
                                "invalid or unsupported Perl syntax: `{}`",
                                &pattern[i..end]
                            )),
                            warnings,
                        );
                    }
                }
            }
            b'{' => {
                let rest = &pattern[i + 1..];
                if let Some(close) = rest.find('}') {
                    let body = &rest[..close];
                    let (lo, hi) = body.split_once(',').unwrap_or((body, ""));
                    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
                    if numeric(lo) && (hi.is_empty() || numeric(hi)) {
                        let too_big =
                            |s: &str| s.len() > 4 || s.parse::<u32>().is_ok_and(|n| n > 1000);
                        if too_big(lo) || too_big(hi) {
                            return (
                                Some(format!("invalid repeat count: `{{{body}}}`")),
                                warnings,
                            );
                        }
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    (None, warnings)
}

/// Istio's `ValidateHTTPHeaderNameOrJwtClaimRoute`.
fn header_name_or_jwt_claim(report: &mut Report<'_>, at: &FieldPath<'_>, name: &str) {
    if is_jwt_claim_header(name)
        || matches!(
            name,
            ":method" | ":scheme" | ":authority" | ":path" | ":status"
        )
    {
        return;
    }
    if let Some(e) = header_name_error(name) {
        report.error(at, e);
    }
}

/// Istio's `ValidateHTTPHeaderName`: a non-empty RFC 7230 token.
fn header_name_error(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("header name cannot be empty".to_owned())
    } else if !name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
    {
        Some(format!("header name {name} is not a valid header name"))
    } else {
        None
    }
}

fn is_authority_header(name: &str) -> bool {
    name.eq_ignore_ascii_case(":authority") || name.eq_ignore_ascii_case("host")
}

fn is_internal_header(name: &str) -> bool {
    name.starts_with(':') || name.eq_ignore_ascii_case("host")
}

/// Header manipulation of a route or a route destination.
fn header_operations(report: &mut Report<'_>, at: &FieldPath<'_>, headers: Option<&Headers>) {
    let Some(headers) = headers else { return };
    if let Some(request) = &headers.request {
        header_ops(report, &at.key("request"), request, true);
    }
    if let Some(response) = &headers.response {
        header_ops(report, &at.key("response"), response, false);
    }
}

fn header_ops(report: &mut Report<'_>, at: &FieldPath<'_>, ops: &HeaderOperations, request: bool) {
    for (field, map) in [("set", &ops.set), ("add", &ops.add)] {
        let f_at = at.key(field);
        for (name, value) in map {
            let p = f_at.key(name);
            if request {
                // The authority may be set on requests (checked once per route, see `authority_rewrite`).
                if name.is_empty() {
                    report.error(&p, "header name cannot be empty");
                } else if is_internal_header(name) && !is_authority_header(name) {
                    report.error(
                        &p,
                        format!("invalid header {name:?}: header cannot have \":\" prefix"),
                    );
                }
            } else {
                header_operation_name(report, &p, name);
            }
            header_value(report, &p, value);
        }
    }
    let remove_at = at.key("remove");
    for (i, name) in ops.remove.iter().enumerate() {
        header_operation_name(report, &remove_at.index(i), name);
    }
}

/// Istio's `ValidateHTTPHeaderOperationName`: no Host, no pseudo headers.
fn header_operation_name(report: &mut Report<'_>, at: &FieldPath<'_>, name: &str) {
    if name.is_empty() {
        report.error(at, "header name cannot be empty");
    } else if name.eq_ignore_ascii_case("host") {
        report.error(
            at,
            format!("invalid header {name:?}: cannot set Host header"),
        );
    } else if is_internal_header(name) {
        report.error(
            at,
            format!("invalid header {name:?}: header cannot have \":\" prefix"),
        );
    }
}

/// Istio's `ValidateHTTPHeaderValue`: no control characters (tab allowed), and `%VAR%` expressions
/// as Envoy's header formatter parses them.
fn header_value(report: &mut Report<'_>, at: &FieldPath<'_>, value: &str) {
    if value
        .chars()
        .any(|c| (c as u32) < 0x20 && c != '\t' || c == '\u{7f}')
    {
        report.error(at, format!("header value configuration {value} is invalid"));
    } else if let Some(e) = header_value_format_error(value) {
        report.error(at, format!("header value configuration: {e}"));
    }
}

/// Envoy's header formatter parser (`header_parser.cc`), as Istio ports it.
fn header_value_format_error(value: &str) -> Option<String> {
    #[derive(PartialEq)]
    enum St {
        Literal,
        VarName,
        ExpectArray,
        ExpectString,
        String,
        ExpectDelimOrEnd,
        ExpectArgsEnd,
        ExpectVarEnd,
    }
    let b = value.as_bytes();
    let mut st = St::Literal;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let has_next = i + 1 < b.len();
        match st {
            St::Literal => {
                if c == b'%' {
                    if !has_next {
                        return Some("invalid header configuration. Un-escaped %".into());
                    }
                    if b[i + 1] == b'%' {
                        i += 1;
                    } else {
                        st = St::VarName;
                    }
                }
            }
            St::VarName => {
                if c == b'%' {
                    st = St::Literal;
                } else if c == b'(' {
                    st = St::ExpectArray;
                }
            }
            St::ExpectArray => {
                if c == b'[' {
                    st = St::ExpectString;
                } else if c != b' ' {
                    st = St::String;
                }
            }
            St::ExpectDelimOrEnd => {
                if c == b',' {
                    st = St::ExpectString;
                } else if c == b']' {
                    st = St::ExpectArgsEnd;
                } else if c != b' ' {
                    return Some(
                        "invalid header configuration. Expecting ',', ']', or whitespace".into(),
                    );
                }
            }
            St::ExpectString => {
                if c == b'"' {
                    st = St::String;
                } else if c != b' ' {
                    return Some("invalid header configuration. Expecting '\"'".into());
                }
            }
            St::String => {
                if c == b'\\' {
                    if !has_next {
                        return Some(
                            "invalid header configuration. Un-terminated backslash in JSON string"
                                .into(),
                        );
                    }
                    i += 1;
                } else if c == b')' {
                    st = St::ExpectVarEnd;
                } else if c == b'"' {
                    st = St::ExpectDelimOrEnd;
                }
            }
            St::ExpectArgsEnd => {
                if c == b')' {
                    st = St::ExpectVarEnd;
                } else if c != b' ' {
                    return Some(
                        "invalid header configuration. Expecting ')' or whitespace after ']'"
                            .into(),
                    );
                }
            }
            St::ExpectVarEnd => {
                if c == b'%' {
                    st = St::Literal;
                } else if c != b' ' {
                    return Some(
                        "invalid header configuration. Expecting '%' or whitespace after ')'"
                            .into(),
                    );
                }
            }
        }
        i += 1;
    }
    (st != St::Literal).then(|| {
        format!("invalid header configuration. Un-terminated variable expression '{value}'")
    })
}

/// Istio's `validateAuthorityRewrite`: the authority is rewritten in one place only.
fn authority_rewrite(report: &mut Report<'_>, at: &FieldPath<'_>, route: &HttpRoute) {
    let mut current = route
        .rewrite
        .as_ref()
        .and_then(|r| r.authority.clone())
        .unwrap_or_default();
    let Some(request) = route.headers.as_ref().and_then(|h| h.request.as_ref()) else {
        return;
    };
    let request_at = at.key("headers");
    let request_at = request_at.key("request");
    for (field, map) in [("set", &request.set), ("add", &request.add)] {
        let f_at = request_at.key(field);
        for (name, value) in map.iter().filter(|(k, _)| is_authority_header(k)) {
            if !current.is_empty() {
                report.error(
                    &f_at.key(name),
                    format!(
                        "authority header cannot be set multiple times: have {current:?}, attempting to set {value:?}"
                    ),
                );
                return;
            }
            current.clone_from(value);
        }
    }
}

/// Istio's `validateCORSPolicy`.
fn cors_policy(report: &mut Report<'_>, at: &FieldPath<'_>, cors: &CorsPolicy) {
    let origins_at = at.key("allowOrigins");
    for (i, origin) in cors.allow_origins.iter().enumerate() {
        let p = origins_at.index(i);
        if !string_match_oneof(report, &p, origin) {
            continue;
        }
        let value = origin
            .exact
            .as_deref()
            .or(origin.prefix.as_deref())
            .or(origin.regex.as_deref())
            .unwrap_or_default();
        if value.is_empty() {
            report.error(
                &p,
                format!("'{value}' is not a valid match type for CORS allow origins"),
            );
        } else if let Some(re) = &origin.regex {
            regex(report, &p.key("regex"), "corsPolicy.allowOrigins", re);
        }
    }
    let methods_at = at.key("allowMethods");
    for (i, method) in cors.allow_methods.iter().enumerate() {
        if !matches!(
            method.as_str(),
            "GET"
                | "HEAD"
                | "POST"
                | "PUT"
                | "PATCH"
                | "DELETE"
                | "CONNECT"
                | "OPTIONS"
                | "TRACE"
                | "*"
        ) {
            report.error(
                &methods_at.index(i),
                format!("{method:?} is not a supported HTTP method"),
            );
        }
    }
    for field in ["allowHeaders", "exposeHeaders"] {
        let list = if field == "allowHeaders" {
            &cors.allow_headers
        } else {
            &cors.expose_headers
        };
        let f_at = at.key(field);
        for (i, name) in list.iter().enumerate() {
            // Istio's `ValidateCORSHTTPHeaderName`: a header name, or `*`.
            if name != "*"
                && let Some(e) = header_name_error(name)
            {
                report.error(&f_at.index(i), e);
            }
        }
    }
    if let Some(max_age) = &cors.max_age {
        let p = at.key("maxAge");
        if let Some(d) = common::duration(report, &p, max_age)
            && d.subsec_nanos() != 0
        {
            report.error(&p, "max_age duration is accurate only to seconds precision");
        }
    }
}

/// Istio's `validateHTTPFaultInjection`.
fn fault_injection(report: &mut Report<'_>, at: &FieldPath<'_>, fault: &HttpFaultInjection) {
    if fault.abort.is_none() && fault.delay.is_none() {
        report.error(at, "HTTP fault injection must have an abort and/or a delay");
    }
    if let Some(abort) = &fault.abort {
        fault_abort(report, &at.key("abort"), abort);
    }
    if let Some(delay) = &fault.delay {
        fault_delay(report, &at.key("delay"), delay);
    }
}

fn fault_abort(report: &mut Report<'_>, at: &FieldPath<'_>, abort: &Abort) {
    if let Some(pct) = &abort.percentage {
        percentage(report, &at.key("percentage"), pct);
    }
    let set = [
        abort.http_status.is_some(),
        abort.grpc_status.is_some(),
        abort.http2_error.is_some(),
    ]
    .iter()
    .filter(|s| **s)
    .count();
    if set > 1 {
        report.error(
            at,
            "only one of httpStatus, grpcStatus or http2Error can be set",
        );
        return;
    }
    if let Some(status) = &abort.grpc_status {
        if !GRPC_STATUS.contains(&status.as_str()) {
            report.error(
                &at.key("grpcStatus"),
                format!("gRPC status {status:?} is not supported. See https://github.com/grpc/grpc/blob/master/doc/statuscodes.md for a list of supported codes, for example 'NOT_FOUND'"),
            );
        }
    } else if abort.http2_error.is_some() {
        report.error(
            &at.key("http2Error"),
            "HTTP/2 abort fault injection not supported yet",
        );
    } else if let Some(status) = abort.http_status {
        http_status(report, &at.key("httpStatus"), i64::from(status));
    } else {
        report.warn(at, "abort configured, but error type not set");
    }
}

/// The gRPC status names Istio accepts for aborts, in code order (`CANCELLED` is 1).
pub const GRPC_STATUS: &[&str] = &[
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

fn fault_delay(report: &mut Report<'_>, at: &FieldPath<'_>, delay: &Delay) {
    if let Some(pct) = &delay.percentage {
        percentage(report, &at.key("percentage"), pct);
    }
    match (&delay.fixed_delay, &delay.exponential_delay) {
        (Some(_), Some(_)) => {
            report.error(at, "only one of fixedDelay or exponentialDelay can be set");
        }
        (Some(d), None) => {
            common::duration(report, &at.key("fixedDelay"), d);
        }
        (None, Some(d)) => {
            let p = at.key("exponentialDelay");
            common::duration(report, &p, d);
            report.error(&p, "exponentialDelay not supported yet");
        }
        (None, None) => {}
    }
}

/// Istio's `validatePercentage`: 0, or [0.0001, 100].
fn percentage(report: &mut Report<'_>, at: &FieldPath<'_>, pct: &Percent) {
    let v = pct.value.unwrap_or_default();
    if !common::percent_in_range(v) || (v > 0.0 && v < 0.0001) {
        report.error(
            &at.key("value"),
            format!("percentage {v} is neither 0.0, nor in range [0.0001, 100.0]"),
        );
    }
}

/// `HTTP status %d is not in range 200-599` (600 is accepted, as by Istio).
fn http_status(report: &mut Report<'_>, at: &FieldPath<'_>, status: i64) {
    if !(200..=600).contains(&status) {
        report.error(at, format!("HTTP status {status} is not in range 200-599"));
    }
}

/// The mirror percentage of a route (`mirror_percentage`) or of one of its `mirrors` (`mirror percentage`).
fn mirror_percentage(report: &mut Report<'_>, at: &FieldPath<'_>, pct: &Percent, what: &str) {
    let v = pct.value.unwrap_or_default();
    let p = at.key("value");
    if v > 100.0 {
        report.error(
            &p,
            format!("{what} must have a max value of 100 (it has {v:.6})"),
        );
    }
    if v < 0.0 {
        report.error(
            &p,
            format!("{what} must have a min value of 0 (it has {v:.6})"),
        );
    }
}

fn mirrors(report: &mut Report<'_>, at: &FieldPath<'_>, mirrors: &[HttpMirrorPolicy], root: &Node) {
    for (i, mirror) in mirrors.iter().enumerate() {
        let p = at.index(i);
        if common::is_null(root, &p) {
            report.error(&p, "mirror cannot be null");
            continue;
        }
        let Some(dest) = &mirror.destination else {
            report.error(&p, "destination is required for mirrors");
            continue;
        };
        destination(report, &p.key("destination"), dest);
        if let Some(pct) = &mirror.percentage {
            mirror_percentage(report, &p.key("percentage"), pct, "mirror percentage");
        }
    }
}

/// Istio's `validateDestination`: host, subset, port.
fn destination(report: &mut Report<'_>, at: &FieldPath<'_>, dest: &Destination) {
    let host_at = at.key("host");
    match dest.host.as_deref() {
        Some("*") => report.error(&host_at, "invalid destination host *"),
        host => {
            if let Some(e) = common::wildcard_domain_error(host.unwrap_or_default()) {
                report.error(&host_at, e);
            }
        }
    }
    if let Some(subset) = &dest.subset {
        let p = at.key("subset");
        if subset.is_empty() {
            report.error(&p, "subset name cannot be empty");
        } else if !common::is_dns1123_label(subset) {
            report.error(&p, format!("subset name is invalid: {subset}"));
        }
    }
    if let Some(port) = &dest.port {
        let p = at.key("port");
        let number = p.key("number");
        common::port(report, &number, port.number.unwrap_or_default());
    }
}

/// Istio's `validateHTTPRedirect`, plus the CRD's one-of on `port`/`derivePort`.
fn http_redirect(
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
    redirect: &HttpRedirect,
    matches: &[HttpMatchRequest],
) {
    if redirect.port.is_some() && redirect.derive_port.is_some() {
        report.error(at, "only one of port or derivePort can be set");
    }
    if is_set(&redirect.uri) && is_set(&redirect.prefix_rewrite) {
        report.error(at, "redirect may only specify one of uri or prefix_rewrite");
        return;
    }
    if is_set(&redirect.prefix_rewrite)
        && matches
            .iter()
            .any(|m| m.uri.as_ref().is_some_and(|u| u.prefix.is_none()))
    {
        report.error(
            &at.key("prefixRewrite"),
            "redirect prefix_rewrite requires all URI matches to use prefix match type",
        );
        return;
    }
    if !is_set(&redirect.uri)
        && !is_set(&redirect.prefix_rewrite)
        && !is_set(&redirect.authority)
        && redirect.port.is_none()
        && redirect.derive_port.is_none()
        && !is_set(&redirect.scheme)
    {
        report.error(at, "redirect must specify URI, authority, scheme, or port");
        return;
    }
    if let Some(code) = redirect.redirect_code
        && code != 0
        && !(300..=399).contains(&code)
    {
        report.error(
            &at.key("redirectCode"),
            format!("{code} is not a valid redirect code, must be 3xx"),
        );
    }
    if let Some(scheme) = &redirect.scheme
        && !scheme.is_empty()
        && scheme != "http"
        && scheme != "https"
    {
        report.error(
            &at.key("scheme"),
            "invalid redirect scheme, must be \"http\" or \"https\"",
        );
    }
    if let Some(port) = redirect.port
        && port > 0
    {
        common::port(report, &at.key("port"), port);
    }
}

/// Istio's `validateHTTPDirectResponse`, plus the CRD's required status and body one-of.
fn direct_response(report: &mut Report<'_>, at: &FieldPath<'_>, dr: &HttpDirectResponse) {
    const KB: usize = 1024;
    const MB: usize = 1024 * KB;
    if let Some(body) = &dr.body {
        let body_at = at.key("body");
        let size = match (&body.string, &body.bytes) {
            (Some(_), Some(_)) => {
                report.error(&body_at, "only one of string or bytes can be set");
                0
            }
            (Some(s), None) => s.len(),
            (None, Some(b)) => match base64_decoded_len(b) {
                Some(n) => n,
                None => {
                    report.error(
                        &body_at.key("bytes"),
                        "bytes must be base64 encoded (standard alphabet, with padding)",
                    );
                    0
                }
            },
            (None, None) => 0,
        };
        if size > MB {
            report.error(
                &body_at,
                "large direct_responses may impact control plane performance, must be less than 1MB",
            );
        } else if size > 100 * KB {
            report.warn(
                &body_at,
                "large direct_responses may impact control plane performance",
            );
        }
    }
    match dr.status {
        None => report.error(
            &at.key("status"),
            "status is required (HTTP status 0 is not in range 200-599)",
        ),
        Some(status) => http_status(report, &at.key("status"), i64::from(status)),
    }
}

/// The decoded length of standard, padded base64 (Kubernetes' `format: byte`), or `None` if invalid.
fn base64_decoded_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(4) {
        return None;
    }
    let pad = b.iter().rev().take_while(|c| **c == b'=').count();
    if pad > 2 {
        return None;
    }
    let body = &b[..b.len() - pad];
    body.iter()
        .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
        .then(|| b.len() / 4 * 3 - pad)
}

/// Istio's `ValidateHTTPRetry`.
fn http_retry(report: &mut Report<'_>, at: &FieldPath<'_>, retry: &HttpRetry) {
    let attempts = retry.attempts.unwrap_or_default();
    let attempts_at = at.key("attempts");
    if attempts < 0 {
        report.error(&attempts_at, "attempts cannot be negative");
    }
    let retry_on = retry.retry_on.as_deref().unwrap_or_default();
    if attempts == 0
        && (retry.per_try_timeout.is_some()
            || !retry_on.is_empty()
            || retry.retry_remote_localities.is_some())
    {
        report.error(
            &attempts_at,
            "http retry policy configured when attempts are set to 0 (disabled)",
        );
    }
    if let Some(d) = &retry.per_try_timeout {
        common::duration(report, &at.key("perTryTimeout"), d);
    }
    if !retry_on.is_empty() {
        let p = at.key("retryOn");
        for policy in retry_on.split(',') {
            let is_status = policy.parse::<i64>().is_ok_and(is_known_http_status);
            if !is_status && !RETRY_ON_POLICIES.contains(&policy) {
                report.error(&p, format!("{policy:?} is not a valid retryOn policy"));
            }
        }
    }
    if let Some(d) = &retry.backoff {
        common::duration(report, &at.key("backoff"), d);
    }
}

/// Envoy's `x-envoy-retry-on` and `x-envoy-retry-grpc-on` conditions that Istio accepts.
const RETRY_ON_POLICIES: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "envoy-ratelimited",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// The status codes Go's `http.StatusText` knows (Istio accepts those in `retryOn`).
fn is_known_http_status(code: i64) -> bool {
    matches!(
        code,
        100..=103
            | 200..=208
            | 226
            | 300..=305
            | 307
            | 308
            | 400..=418
            | 421..=426
            | 428
            | 429
            | 431
            | 451
            | 500..=508
            | 510
            | 511
    )
}

/// Istio's `validateHTTPRewrite`.
fn http_rewrite(report: &mut Report<'_>, at: &FieldPath<'_>, rewrite: &HttpRewrite) {
    let uri = rewrite.uri.as_deref().unwrap_or_default();
    let authority = rewrite.authority.as_deref().unwrap_or_default();
    if !uri.is_empty() && rewrite.uri_regex_rewrite.is_some() {
        report.error(at, "rewrite may only contain one of URI or UriRegexRewrite");
        return;
    }
    if uri.is_empty() && rewrite.uri_regex_rewrite.is_none() && authority.is_empty() {
        report.error(at, "rewrite must specify at least one of URI, UriRegexRewrite, or authority. Only one of URI or UriRegexRewrite may be specified");
        return;
    }
    if let Some(rr) = &rewrite.uri_regex_rewrite {
        let p = at.key("uriRegexRewrite");
        let m = rr.r#match.as_deref().unwrap_or_default();
        if m.is_empty() || rr.rewrite.as_deref().unwrap_or_default().is_empty() {
            report.error(
                &p,
                "UriRegexRewrite requires both Rewrite and Match fields to be specified",
            );
        } else {
            regex(
                report,
                &p.key("match"),
                "HTTPRewrite.UriRegexRewrite.Match",
                m,
            );
        }
    }
}

/// Istio's `validateHTTPRouteDestinations`.
fn http_route_destinations(
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
    routes: &[HttpRouteDestination],
    vs: &Vs<'_>,
) {
    let mut total: i64 = 0;
    for (i, rd) in routes.iter().enumerate() {
        let p = at.index(i);
        if common::is_null(vs.root, &p) {
            report.error(&p, "weight may not be nil");
            continue;
        }
        header_operations(report, &p.key("headers"), rd.headers.as_ref());
        weighted_destination(
            report,
            &p,
            rd.destination.as_ref(),
            rd.weight,
            vs.gateway_semantics,
        );
        total += i64::from(rd.weight.unwrap_or_default());
    }
    if routes.len() > 1 && total == 0 {
        report.error(at, "total destination weight = 0");
    }
}

/// Istio's `validateRouteDestinations` (TCP and TLS).
fn route_destinations(
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
    routes: &[RouteDestination],
    vs: &Vs<'_>,
) {
    let mut total: i64 = 0;
    for (i, rd) in routes.iter().enumerate() {
        let p = at.index(i);
        if common::is_null(vs.root, &p) {
            report.error(&p, "weight may not be nil");
            continue;
        }
        weighted_destination(
            report,
            &p,
            rd.destination.as_ref(),
            rd.weight,
            vs.gateway_semantics,
        );
        total += i64::from(rd.weight.unwrap_or_default());
    }
    if routes.len() > 1 && total == 0 {
        report.error(at, "total destination weight = 0");
    }
}

fn weighted_destination(
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
    dest: Option<&Destination>,
    weight: Option<i32>,
    gateway_semantics: bool,
) {
    match dest {
        None => report.error(at, "destination is required"),
        // Gateway API routes name backends that are not hostnames (checked by the Gateway API).
        Some(d) if !gateway_semantics => destination(report, &at.key("destination"), d),
        Some(_) => {}
    }
    if let Some(w) = weight
        && w < 0
    {
        report.error(&at.key("weight"), format!("weight {w} < 0"));
    }
}

// ---------------------------------------------------------------------------------------------------
// TLS and TCP routes
// ---------------------------------------------------------------------------------------------------

fn tls_route(report: &mut Report<'_>, at: &FieldPath<'_>, route: &TlsRoute, vs: &Vs<'_>) {
    let match_at = at.key("match");
    if route.r#match.is_empty() {
        report.error(
            &match_at,
            "TLS route must have at least one match condition",
        );
    }
    for (j, m) in route.r#match.iter().enumerate() {
        let p = match_at.index(j);
        if common::is_null(vs.root, &p) {
            report.error(&p, "TLS match may not be null");
            continue;
        }
        tls_match(report, &p, m, vs.spec);
    }
    let route_at = at.key("route");
    if route.route.is_empty() {
        report.error(&route_at, "TLS route is required");
    }
    route_destinations(report, &route_at, &route.route, vs);
}

fn tls_match(
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
    m: &TlsMatchAttributes,
    spec: &VirtualServiceSpec,
) {
    let sni_at = at.key("sniHosts");
    if m.sni_hosts.is_empty() {
        report.error(&sni_at, "TLS match must have at least one SNI host");
    }
    for (i, sni) in m.sni_hosts.iter().enumerate() {
        sni_host(report, &sni_at.index(i), sni, spec);
    }
    l4_match_common(
        report,
        at,
        &m.destination_subnets,
        m.port,
        &m.source_labels,
        &m.gateways,
    );
}

/// Istio's `validateSniHost`: a (wildcard) domain covered by one of the VirtualService's hosts.
fn sni_host(report: &mut Report<'_>, at: &FieldPath<'_>, sni: &str, spec: &VirtualServiceSpec) {
    let err = if is_gateway_free_of_mesh(spec) {
        gateway_bound_domain_error(true, sni)
    } else {
        common::wildcard_domain_error(sni)
    };
    if let Some(e) = err {
        if common::is_ip(sni) {
            report.warn(
                at,
                format!(
                    "using an IP address ({sni:?}) goes against SNI spec and most clients do not support this"
                ),
            );
        } else {
            report.error(at, e);
        }
        return;
    }
    if !spec.hosts.iter().any(|h| host_subset_of(sni, h)) {
        report.error(
            at,
            format!(
                "SNI host {sni:?} is not a compatible subset of any of the virtual service hosts: [{}]",
                spec.hosts.join(", ")
            ),
        );
    }
}

fn tcp_route(report: &mut Report<'_>, at: &FieldPath<'_>, route: &TcpRoute, vs: &Vs<'_>) {
    let match_at = at.key("match");
    for (j, m) in route.r#match.iter().enumerate() {
        let p = match_at.index(j);
        if common::is_null(vs.root, &p) {
            report.error(&p, "tcp match may not be nil");
            continue;
        }
        tcp_match(report, &p, m);
    }
    let route_at = at.key("route");
    if route.route.is_empty() {
        report.error(&route_at, "TCP route is required");
    }
    route_destinations(report, &route_at, &route.route, vs);
}

fn tcp_match(report: &mut Report<'_>, at: &FieldPath<'_>, m: &L4MatchAttributes) {
    l4_match_common(
        report,
        at,
        &m.destination_subnets,
        m.port,
        &m.source_labels,
        &m.gateways,
    );
}

/// What TCP and TLS matches share: destination subnets, port, source labels, gateways.
fn l4_match_common(
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
    destination_subnets: &[String],
    port: Option<u32>,
    source_labels: &BTreeMap<String, String>,
    gateways: &[String],
) {
    let subnets_at = at.key("destinationSubnets");
    for (i, subnet) in destination_subnets.iter().enumerate() {
        if let Some(e) = common::ip_subnet_error(subnet) {
            report.error(&subnets_at.index(i), e);
        }
    }
    if let Some(port) = port
        && port != 0
    {
        common::port(report, &at.key("port"), port);
    }
    common::labels(report, &at.key("sourceLabels"), source_labels);
    gateway_names(report, &at.key("gateways"), gateways, false);
}

// ---------------------------------------------------------------------------------------------------
// Unreachable rules (warnings, as Istio's webhook returns them)
// ---------------------------------------------------------------------------------------------------

fn unreachable(report: &mut Report<'_>, at: &FieldPath<'_>, rule: &str, reason: &str) {
    report.push(
        Severity::Warning,
        code::VIRTUAL_SERVICE_UNREACHABLE_RULE,
        at,
        format!("virtualService rule {rule} not used ({reason})"),
    );
}

fn ineffective(report: &mut Report<'_>, at: &FieldPath<'_>, rule: &str, m: &str, dup: &str) {
    report.push(
        Severity::Warning,
        code::VIRTUAL_SERVICE_INEFFECTIVE_MATCH,
        at,
        format!(
            "virtualService rule {rule} match {m} is not used (duplicate/overlapping match in rule {dup})"
        ),
    );
}

fn http_rule_name(route: &HttpRoute, i: usize) -> String {
    match route.name.as_deref() {
        Some(n) if !n.is_empty() => format!("{n:?}"),
        _ => format!("#{i}"),
    }
}

fn http_match_name(m: &HttpMatchRequest, j: usize) -> String {
    match m.name.as_deref() {
        Some(n) if !n.is_empty() => format!("{n:?}"),
        _ => format!("#{j}"),
    }
}

/// A prefix URI match, reduced to what Istio compares to find one that an earlier one covers.
struct PrefixMatch {
    rule: usize,
    matchn: usize,
    rule_name: String,
    match_name: String,
    prefix: String,
    port: u32,
    method: String,
    authority: String,
    headers: BTreeMap<String, String>,
    query_params: BTreeMap<String, String>,
    without_headers: BTreeMap<String, String>,
}

/// Istio's `assignExactOrPrefix`: `exact:v`, `prefix:v`, or empty (regexes and empty values).
fn exact_or_prefix(sm: Option<&StringMatch>) -> String {
    let non_empty = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
    match sm {
        Some(sm) => match (non_empty(&sm.exact), non_empty(&sm.prefix)) {
            (Some(e), _) => format!("exact:{e}"),
            (None, Some(p)) => format!("prefix:{p}"),
            (None, None) => String::new(),
        },
        None => String::new(),
    }
}

fn prefix_match(
    route: &HttpRoute,
    rule: usize,
    m: &HttpMatchRequest,
    matchn: usize,
) -> Option<PrefixMatch> {
    let prefix = m
        .uri
        .as_ref()?
        .prefix
        .as_deref()
        .filter(|p| !p.is_empty())?;
    let mut method = exact_or_prefix(m.method.as_ref());
    if method.is_empty() {
        method = "exact:GET".to_owned();
    }
    let reduce = |map: &BTreeMap<String, StringMatch>| {
        map.iter()
            .map(|(k, v)| (k.clone(), exact_or_prefix(Some(v))))
            .collect()
    };
    Some(PrefixMatch {
        rule,
        matchn,
        rule_name: http_rule_name(route, rule),
        match_name: http_match_name(m, matchn),
        prefix: prefix.to_owned(),
        port: m.port.unwrap_or_default(),
        method,
        authority: exact_or_prefix(m.authority.as_ref()),
        headers: reduce(&m.headers),
        query_params: reduce(&m.query_params),
        without_headers: reduce(&m.without_headers),
    })
}

/// Istio's `coveredValidation`: whether the earlier match `a` catches everything the later `b` would.
fn covers(a: &PrefixMatch, b: &PrefixMatch) -> bool {
    let value_covers = |va: &str, vb: &str| va == vb || va.starts_with(vb);
    let maps_cover = |ma: &BTreeMap<String, String>, mb: &BTreeMap<String, String>| {
        ma.len() == mb.len()
            && ma
                .iter()
                .all(|(k, va)| mb.get(k).is_some_and(|vb| value_covers(va, vb)))
    };
    b.prefix.starts_with(&a.prefix)
        && a.port == b.port
        && value_covers(&a.method, &b.method)
        && value_covers(&a.authority, &b.authority)
        && maps_cover(&a.headers, &b.headers)
        && maps_cover(&a.query_params, &b.query_params)
        && maps_cover(&a.without_headers, &b.without_headers)
}

/// Istio's `analyzeUnreachableHTTPRules`.
fn unreachable_http_rules(report: &mut Report<'_>, at: &FieldPath<'_>, routes: &[HttpRoute]) {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut catch_all_seen = false;
    let mut prefixes = Vec::new();
    for (i, route) in routes.iter().enumerate() {
        let rule_at = at.index(i);
        let name = http_rule_name(route, i);
        if route.r#match.is_empty() {
            if catch_all_seen {
                unreachable(
                    report,
                    &rule_at,
                    &name,
                    "only the last rule can have no matches",
                );
            }
            catch_all_seen = true;
            continue;
        }
        if catch_all_seen {
            unreachable(
                report,
                &rule_at,
                &name,
                "route without matches defined before",
            );
            continue;
        }
        let match_at = rule_at.key("match");
        let mut duplicates = 0;
        for (j, m) in route.r#match.iter().enumerate() {
            let mut unnamed = m.clone();
            unnamed.name = None;
            let key = serde_json::to_string(&unnamed).unwrap_or_default();
            if let Some(&dup) = seen.get(&key) {
                let dup_name = routes
                    .get(dup)
                    .map(|r| http_rule_name(r, dup))
                    .unwrap_or_default();
                ineffective(
                    report,
                    &match_at.index(j),
                    &name,
                    &http_match_name(m, j),
                    &dup_name,
                );
                duplicates += 1;
                continue;
            }
            seen.insert(key, i);
            if let Some(pm) = prefix_match(route, i, m, j) {
                prefixes.push(pm);
            }
        }
        if duplicates == route.r#match.len() {
            unreachable(report, &rule_at, &name, "all matches used by prior rules");
        }
    }
    for (ai, a) in prefixes.iter().enumerate() {
        for b in prefixes.iter().skip(ai + 1) {
            if a.prefix != b.prefix && covers(a, b) {
                let rule_at = at.index(b.rule);
                let match_at = rule_at.key("match");
                ineffective(
                    report,
                    &match_at.index(b.matchn),
                    &b.rule_name,
                    &format!("{} of prefix {}", b.match_name, b.prefix),
                    &format!("{} of prefix {} on {}", a.match_name, a.prefix, a.rule_name),
                );
            }
        }
    }
}

/// Istio's `analyzeUnreachableTCPRules`/`analyzeUnreachableTLSRules` (matches have no names).
fn unreachable_l4_rules<R, M: serde::Serialize>(
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
    routes: &[R],
    matches: impl Fn(&R) -> &Vec<M>,
) {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut catch_all_seen = false;
    for (i, route) in routes.iter().enumerate() {
        let rule_at = at.index(i);
        let name = format!("#{i}");
        let ms = matches(route);
        if ms.is_empty() {
            if catch_all_seen {
                unreachable(
                    report,
                    &rule_at,
                    &name,
                    "only the last rule can have no matches",
                );
            }
            catch_all_seen = true;
            continue;
        }
        if catch_all_seen {
            unreachable(
                report,
                &rule_at,
                &name,
                "route without matches defined before",
            );
            continue;
        }
        let match_at = rule_at.key("match");
        let mut duplicates = 0;
        for (j, m) in ms.iter().enumerate() {
            let key = serde_json::to_string(m).unwrap_or_default();
            if let Some(&dup) = seen.get(&key) {
                ineffective(
                    report,
                    &match_at.index(j),
                    &name,
                    &format!("#{j}"),
                    &format!("#{dup}"),
                );
                duplicates += 1;
            } else {
                seen.insert(key, i);
            }
        }
        if duplicates == ms.len() {
            unreachable(report, &rule_at, &name, "all matches used by prior rules");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{expand_literal_quotes, re2_differences};
    use crate::diag::Severity;
    use crate::validate::testing::{assert_error, assert_finding, assert_valid, check};

    #[track_caller]
    fn assert_warning(yaml: &str, line: usize, field: &str, message: &str) {
        assert_finding(yaml, Severity::Warning, line, field, message);
    }

    #[track_caller]
    fn assert_no_warnings(yaml: &str) {
        let warnings: Vec<_> = check(yaml)
            .into_iter()
            .filter(|f| f.severity != Severity::Error)
            .collect();
        assert!(warnings.is_empty(), "unexpected warnings: {warnings:#?}");
    }

    const MINIMAL: &str = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
"#;

    #[test]
    fn minimal_is_valid_without_warnings() {
        assert_valid(MINIMAL);
        assert_no_warnings(MINIMAL);
    }

    #[test]
    fn delegate_virtual_service_has_no_gateways_tls_or_tcp() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  gateways:
  - istio-system/gw
  http:
  - route:
    - destination:
        host: reviews
  tcp:
  - route:
    - destination:
        host: reviews
  tls:
  - match:
    - sniHosts:
      - reviews
    route:
    - destination:
        host: reviews
"#;
        assert_error(
            yaml,
            6,
            "spec.gateways",
            "delegate virtual service must have no gateways specified",
        );
        assert_error(
            yaml,
            12,
            "spec.tcp",
            "delegate virtual service must have no tcp route specified",
        );
        assert_error(
            yaml,
            16,
            "spec.tls",
            "delegate virtual service must have no tls route specified",
        );
        // A delegate with only HTTP routes is fine.
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  http:
  - route:
    - destination:
        host: reviews
"#,
        );
    }

    #[test]
    fn gateway_names() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews.com
  gateways:
  - /gw
  - Bad_ns/gw
  - ns/bad_gw
  - gw.istio-system
  - bad_name
  - mesh
  http:
  - route:
    - destination:
        host: reviews
"#;
        assert_error(
            yaml,
            9,
            "spec.gateways[0]",
            "config namespace and gateway name cannot be empty",
        );
        assert_error(
            yaml,
            10,
            "spec.gateways[1]",
            "invalid value for namespace: \"Bad_ns\"",
        );
        assert_error(
            yaml,
            11,
            "spec.gateways[2]",
            "invalid value for gateway name: \"bad_gw\"",
        );
        assert_warning(
            yaml,
            12,
            "spec.gateways[3]",
            "using legacy gatewayName format \"gw.istio-system\"; prefer the <namespace>/<name> format: \"istio-system/gw\"",
        );
        assert_error(
            yaml,
            13,
            "spec.gateways[4]",
            "domain name \"bad_name\" invalid (label \"bad_name\" invalid)",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews.com
  gateways:
  - istio-system/gw
  - gw
  - mesh
  http:
  - route:
    - destination:
        host: reviews
"#,
        );
    }

    #[test]
    fn gateway_api_routes_may_have_any_gateway_name() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
  annotations:
    internal.istio.io/route-semantics: gateway
spec:
  hosts:
  - reviews.com
  gateways:
  - ns/Gateway_Name
  http:
  - route:
    - destination:
        host: reviews
"#;
        assert_valid(yaml);
        assert_error(
            &yaml.replace(
                "    internal.istio.io/route-semantics: gateway\n",
                "    x: z\n",
            ),
            11,
            "spec.gateways[0]",
            "invalid value for gateway name: \"Gateway_Name\"",
        );
    }

    #[test]
    fn jwt_claim_routing_needs_a_gateway() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - match:
    - headers:
        "@request.auth.claims.group":
          exact: admin
    route:
    - destination:
        host: reviews
"#;
        assert_error(
            yaml,
            11,
            "spec.http[0].match[0].headers[\"@request.auth.claims.group\"]",
            "JWT claim based routing (key: @request.auth.claims.group) is only supported for gateway, found no gateways: []",
        );
        assert_valid(&yaml.replace("spec:\n", "spec:\n  gateways:\n  - ns/gw\n"));
    }

    #[test]
    fn hosts() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - bad_host.com
  - "*"
  - 10.0.0.1
  http:
  - route:
    - destination:
        host: reviews
"#;
        assert_error(
            yaml,
            7,
            "spec.hosts[0]",
            "domain name \"bad_host.com\" invalid (label \"bad_host\" invalid)",
        );
        assert_error(
            yaml,
            8,
            "spec.hosts[1]",
            "wildcard host * is not allowed for virtual services bound to the mesh gateway",
        );
        // `*` is fine on a gateway; IP addresses are accepted as hosts.
        assert_valid(&yaml.replace("  - bad_host.com\n  - \"*\"\n", ""));
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - "*"
  gateways:
  - ns/gw
  http:
  - route:
    - destination:
        host: reviews
"#,
        );
    }

    #[test]
    fn duplicate_hosts() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - "*.example.com"
  - foo.example.com
  http:
  - route:
    - destination:
        host: reviews
"#;
        assert_error(
            yaml,
            8,
            "spec.hosts[1]",
            "duplicate hosts in virtual service: *.example.com & foo.example.com",
        );
        assert_valid(&yaml.replace("foo.example.com", "foo.example.org"));
    }

    #[test]
    fn some_route_is_required() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
"#;
        assert_error(
            yaml,
            5,
            "spec",
            "http, tcp or tls must be provided in virtual service",
        );
        assert_valid(MINIMAL);
    }

    #[test]
    fn redirect_conflicts() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - redirect:
      uri: /new
    route:
    - destination:
        host: reviews
    fault:
      abort:
        httpStatus: 500
    rewrite:
      uri: /x
    directResponse:
      status: 200
"#;
        for msg in [
            "HTTP route cannot contain both route and redirect",
            "HTTP route cannot contain both fault and redirect",
            "HTTP route rule cannot contain both rewrite and redirect",
        ] {
            assert_error(yaml, 9, "spec.http[0].redirect", msg);
        }
        assert_error(
            yaml,
            19,
            "spec.http[0].directResponse",
            "HTTP route rule cannot contain both direct_response and redirect",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - redirect:
      uri: /new
"#,
        );
    }

    #[test]
    fn direct_response_conflicts() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - directResponse:
      status: 503
    route:
    - destination:
        host: reviews
    fault:
      abort:
        httpStatus: 500
    rewrite:
      uri: /x
"#;
        for msg in [
            "HTTP route cannot contain both route and direct_response",
            "HTTP route cannot contain both fault and direct_response",
            "HTTP route rule cannot contain both rewrite and direct_response",
        ] {
            assert_error(yaml, 9, "spec.http[0].directResponse", msg);
        }
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - directResponse:
      status: 503
      body:
        string: unavailable
"#,
        );
    }

    #[test]
    fn route_redirect_or_direct_response_required() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - timeout: 5s
"#;
        assert_error(
            yaml,
            9,
            "spec.http[0]",
            "HTTP route, redirect or direct_response is required",
        );
        assert_valid(MINIMAL);
    }

    #[test]
    fn mirror_and_mirrors_exclusive() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
    mirror:
      host: shadow
    mirrors:
    - destination:
        host: shadow2
"#;
        assert_error(
            yaml,
            14,
            "spec.http[0].mirrors",
            "HTTP route cannot contain both mirror and mirrors",
        );
        assert_valid(&yaml.replace("    mirror:\n      host: shadow\n", ""));
    }

    #[test]
    fn root_and_delegate_routes() {
        let root = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - name: to-delegate
    delegate:
      name: reviews-delegate
    redirect:
      uri: /x
    route:
    - destination:
        host: reviews
"#;
        assert_error(
            root,
            12,
            "spec.http[0].redirect",
            "root HTTP route to-delegate must not specify redirect",
        );
        assert_error(
            root,
            14,
            "spec.http[0].route",
            "root HTTP route to-delegate must not specify route",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - delegate:
      name: reviews-delegate
      namespace: ns
"#,
        );
        let delegate = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  http:
  - delegate:
      name: other
    route:
    - destination:
        host: reviews
"#;
        assert_error(
            delegate,
            7,
            "spec.http[0].delegate",
            "delegate HTTP route cannot contain delegate",
        );
    }

    #[test]
    fn header_match_names_and_null() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - match:
    - headers:
        x-null: null
        "bad header":
          exact: a
        ":authority":
          exact: a
      withoutHeaders:
        "bad(header)": {}
    route:
    - destination:
        host: reviews
"#;
        assert_error(
            yaml,
            11,
            "spec.http[0].match[0].headers.x-null",
            "header match x-null cannot be null",
        );
        assert_error(
            yaml,
            12,
            "spec.http[0].match[0].headers[\"bad header\"]",
            "header name bad header is not a valid header name",
        );
        assert_error(
            yaml,
            17,
            "spec.http[0].match[0].withoutHeaders[\"bad(header)\"]",
            "header name bad(header) is not a valid header name",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - match:
    - headers:
        x-present: {}
        ":authority":
          exact: a
      withoutHeaders:
        x-absent:
          regex: "*"
    route:
    - destination:
        host: reviews
"#,
        );
    }

    #[test]
    fn string_match_one_of() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - match:
    - uri:
        exact: /a
        prefix: /a
    route:
    - destination:
        host: reviews
"#;
        assert_error(
            yaml,
            10,
            "spec.http[0].match[0].uri",
            "only one of exact, prefix or regex can be set",
        );
        assert_valid(&yaml.replace("        exact: /a\n", ""));
    }

    #[test]
    fn empty_prefix_matches() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - match:
    - uri:
        prefix: ""
      method:
        prefix: ""
      queryParams:
        q:
          prefix: ""
    route:
    - destination:
        host: reviews
"#;
        assert_error(
            yaml,
            13,
            "spec.http[0].match[0].method.prefix",
            "\"method\": prefix string match should not be empty",
        );
        assert_error(
            yaml,
            16,
            "spec.http[0].match[0].queryParams.q.prefix",
            "\"queryParams\": prefix string match should not be empty",
        );
        // An empty URI prefix matches everything: allowed.
        let uri_only = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - match:
    - uri:
        prefix: ""
    route:
    - destination:
        host: reviews
"#;
        assert_valid(uri_only);
    }

    #[test]
    fn regex_matches() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - match:
    - uri:
        regex: "/a(b"
      scheme:
        regex: ""
      authority:
        regex: "(?x) a b"
      headers:
        x-a:
          regex: "a{1001}"
    route:
    - destination:
        host: reviews
"#;
        let found = check(yaml);
        assert!(
            found.iter().any(|f| f.field == "spec.http[0].match[0].uri.regex"
                && f.pos.line == 11
                && f.message.starts_with("\"uri\": ")
                && f.message.ends_with("; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)")),
            "{found:#?}"
        );
        assert_error(
            yaml,
            13,
            "spec.http[0].match[0].scheme.regex",
            "\"scheme\": regex string match should not be empty",
        );
        assert_error(
            yaml,
            15,
            "spec.http[0].match[0].authority.regex",
            "\"authority\": error parsing regexp: invalid or unsupported Perl syntax: `(?x`; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)",
        );
        assert_error(
            yaml,
            18,
            "spec.http[0].match[0].headers.x-a.regex",
            "\"headers\": error parsing regexp: invalid repeat count: `{1001}`; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)",
        );
        let long = format!(
            r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - match:
    - uri:
        regex: "{}"
    route:
    - destination:
        host: reviews
"#,
            "a".repeat(1025)
        );
        assert_error(
            &long,
            11,
            "spec.http[0].match[0].uri.regex",
            "\"uri\": regex is too large, max length allowed is 1024",
        );
        let good = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - match:
    - uri:
        regex: "^/api/v[0-9]+/(users|groups)/[^/]*$"
      headers:
        x-a:
          regex: "(?i)a{2,1000}"
    route:
    - destination:
        host: reviews
"#;
        assert_valid(good);
        assert_no_warnings(good);
    }

    #[test]
    fn regex_features_re2_reads_differently_warn() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - match:
    - uri:
        regex: "[a-z&&[^aeiou]]+"
    route:
    - destination:
        host: reviews
"#;
        assert_warning(
            yaml,
            11,
            "spec.http[0].match[0].uri.regex",
            "\"uri\": `&&` in a character class is literal characters in RE2 (Envoy), not a set operation",
        );
        assert_eq!(re2_differences(r"\<word\>").1.len(), 2);
        assert_eq!(re2_differences(r"[a-z]-[0-9]").1.len(), 0);
        assert_eq!(re2_differences(r"[-a]").1.len(), 0);
        assert_eq!(re2_differences(r"(?i:a)(?P<n>b)(?<m>c)"), (None, vec![]));
        assert_eq!(expand_literal_quotes(r"^\Qa.b\E$"), r"^a\.b$");
        assert_eq!(expand_literal_quotes(r"\\Q\Q*"), r"\\Q\*");
        assert_valid(&yaml.replace("[a-z&&[^aeiou]]+", r"^/v1/\\Q*.json\\E$"));
    }

    #[test]
    fn match_port_labels_gateways_namespace() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - match:
    - port: 70000
      sourceLabels:
        "bad key!": v1
      gateways:
      - ns/bad_gw
      sourceNamespace: Bad_NS
    route:
    - destination:
        host: reviews
"#;
        assert_error(
            yaml,
            10,
            "spec.http[0].match[0].port",
            "port number 70000 must be in the range 1..65535",
        );
        assert!(check(yaml).iter().any(|f| f.severity == Severity::Error
            && f.field == "spec.http[0].match[0].sourceLabels[\"bad key!\"]"
            && f.pos.line == 12));
        assert_error(
            yaml,
            14,
            "spec.http[0].match[0].gateways[0]",
            "invalid value for gateway name: \"bad_gw\"",
        );
        assert_error(
            yaml,
            15,
            "spec.http[0].match[0].sourceNamespace",
            "sourceNamespace match Bad_NS is invalid",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - match:
    - port: 8080
      sourceLabels:
        app: productpage
      gateways:
      - mesh
      sourceNamespace: bookinfo
    route:
    - destination:
        host: reviews
"#,
        );
    }

    #[test]
    fn header_operations() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
      headers:
        response:
          set:
            Host: x
    headers:
      request:
        set:
          ":path": /x
          x-ctl: "a\u0001b"
          x-var: "%START_TIME"
        add:
          "": v
        remove:
        - host
      response:
        remove:
        - ":status"
"#;
        assert_error(
            yaml,
            15,
            "spec.http[0].route[0].headers.response.set.Host",
            "invalid header \"Host\": cannot set Host header",
        );
        assert_error(
            yaml,
            19,
            "spec.http[0].headers.request.set[\":path\"]",
            "invalid header \":path\": header cannot have \":\" prefix",
        );
        assert_error(
            yaml,
            20,
            "spec.http[0].headers.request.set.x-ctl",
            "header value configuration a\u{1}b is invalid",
        );
        assert_error(
            yaml,
            21,
            "spec.http[0].headers.request.set.x-var",
            "header value configuration: invalid header configuration. Un-terminated variable expression '%START_TIME'",
        );
        assert_error(
            yaml,
            23,
            "spec.http[0].headers.request.add[\"\"]",
            "header name cannot be empty",
        );
        assert_error(
            yaml,
            25,
            "spec.http[0].headers.request.remove[0]",
            "invalid header \"host\": cannot set Host header",
        );
        assert_error(
            yaml,
            28,
            "spec.http[0].headers.response.remove[0]",
            "invalid header \":status\": header cannot have \":\" prefix",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
    headers:
      request:
        set:
          host: reviews.example.com
          x-start: "%START_TIME% 100%%"
          x-meta: '%UPSTREAM_METADATA(["istio", "x"])%'
        remove:
        - x-debug
      response:
        add:
          x-served-by: bosun
"#,
        );
    }

    #[test]
    fn authority_rewritten_once() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
    rewrite:
      authority: a.example.com
    headers:
      request:
        set:
          ":authority": b.example.com
"#;
        assert_error(
            yaml,
            17,
            "spec.http[0].headers.request.set[\":authority\"]",
            "authority header cannot be set multiple times: have \"a.example.com\", attempting to set \"b.example.com\"",
        );
        assert_valid(&yaml.replace("    rewrite:\n      authority: a.example.com\n", ""));
    }

    #[test]
    fn cors_policy() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
    corsPolicy:
      allowOrigins:
      - exact: ""
      - regex: "(a"
      - exact: a
        prefix: b
      allowMethods:
      - FETCH
      allowHeaders:
      - "bad header"
      exposeHeaders:
      - ""
      maxAge: 1500ms
"#;
        assert_error(
            yaml,
            14,
            "spec.http[0].corsPolicy.allowOrigins[0]",
            "'' is not a valid match type for CORS allow origins",
        );
        assert!(check(yaml).iter().any(|f| f.severity == Severity::Error
            && f.field == "spec.http[0].corsPolicy.allowOrigins[1].regex"
            && f.message.starts_with("\"corsPolicy.allowOrigins\": ")));
        assert_error(
            yaml,
            16,
            "spec.http[0].corsPolicy.allowOrigins[2]",
            "only one of exact, prefix or regex can be set",
        );
        assert_error(
            yaml,
            19,
            "spec.http[0].corsPolicy.allowMethods[0]",
            "\"FETCH\" is not a supported HTTP method",
        );
        assert_error(
            yaml,
            21,
            "spec.http[0].corsPolicy.allowHeaders[0]",
            "header name bad header is not a valid header name",
        );
        assert_error(
            yaml,
            23,
            "spec.http[0].corsPolicy.exposeHeaders[0]",
            "header name cannot be empty",
        );
        assert_error(
            yaml,
            24,
            "spec.http[0].corsPolicy.maxAge",
            "max_age duration is accurate only to seconds precision",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
    corsPolicy:
      allowOrigins:
      - exact: https://example.com
      - regex: "https://.*\\.example\\.com"
      allowMethods:
      - GET
      - POST
      allowHeaders:
      - "*"
      - x-custom
      exposeHeaders:
      - x-served-by
      maxAge: 24h
      allowCredentials: true
"#,
        );
    }

    #[test]
    fn fault_injection() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
    fault: {}
  - route:
    - destination:
        host: reviews
    fault:
      abort:
        httpStatus: 700
        percentage:
          value: 0.00001
      delay:
        exponentialDelay: 1s
  - route:
    - destination:
        host: reviews
    fault:
      abort:
        grpcStatus: NOPE
      delay:
        fixedDelay: 0.5ms
  - route:
    - destination:
        host: reviews
    fault:
      abort:
        http2Error: x
        grpcStatus: OK
      delay:
        fixedDelay: 1s
        exponentialDelay: 1s
  - route:
    - destination:
        host: reviews
    fault:
      abort:
        http2Error: x
  - route:
    - destination:
        host: reviews
    fault:
      abort:
        percentage:
          value: 10
"#;
        assert_error(
            yaml,
            12,
            "spec.http[0].fault",
            "HTTP fault injection must have an abort and/or a delay",
        );
        assert_error(
            yaml,
            18,
            "spec.http[1].fault.abort.httpStatus",
            "HTTP status 700 is not in range 200-599",
        );
        assert_error(
            yaml,
            20,
            "spec.http[1].fault.abort.percentage.value",
            "percentage 0.00001 is neither 0.0, nor in range [0.0001, 100.0]",
        );
        assert_error(
            yaml,
            22,
            "spec.http[1].fault.delay.exponentialDelay",
            "exponentialDelay not supported yet",
        );
        assert_error(
            yaml,
            28,
            "spec.http[2].fault.abort.grpcStatus",
            "gRPC status \"NOPE\" is not supported. See https://github.com/grpc/grpc/blob/master/doc/statuscodes.md for a list of supported codes, for example 'NOT_FOUND'",
        );
        assert_error(
            yaml,
            30,
            "spec.http[2].fault.delay.fixedDelay",
            "duration must be greater than 1ms",
        );
        assert_error(
            yaml,
            35,
            "spec.http[3].fault.abort",
            "only one of httpStatus, grpcStatus or http2Error can be set",
        );
        assert_error(
            yaml,
            38,
            "spec.http[3].fault.delay",
            "only one of fixedDelay or exponentialDelay can be set",
        );
        assert_error(
            yaml,
            46,
            "spec.http[4].fault.abort.http2Error",
            "HTTP/2 abort fault injection not supported yet",
        );
        assert_warning(
            yaml,
            51,
            "spec.http[5].fault.abort",
            "abort configured, but error type not set",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
    fault:
      abort:
        httpStatus: 600
        percentage:
          value: 0.1
      delay:
        fixedDelay: 7s
        percentage:
          value: 100
  - route:
    - destination:
        host: reviews
    fault:
      abort:
        grpcStatus: UNAVAILABLE
"#,
        );
    }

    #[test]
    fn mirror_percentages() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
    mirror:
      host: shadow
    mirror_percent: 150
  - route:
    - destination:
        host: reviews
    mirror:
      host: shadow
    mirrorPercentage:
      value: 100.5
  - route:
    - destination:
        host: reviews
    mirror:
      host: shadow
    mirrorPercentage:
      value: -1
"#;
        assert_error(
            yaml,
            14,
            "spec.http[0].mirror_percent",
            "mirror_percent must have a max value of 100 (it has 150)",
        );
        assert_warning(
            yaml,
            14,
            "spec.http[0].mirror_percent",
            "using deprecated setting \"mirrorPercent\", use \"mirrorPercentage\" instead",
        );
        assert_error(
            yaml,
            21,
            "spec.http[1].mirrorPercentage.value",
            "mirror_percentage must have a max value of 100 (it has 100.500000)",
        );
        assert_error(
            yaml,
            28,
            "spec.http[2].mirrorPercentage.value",
            "mirror_percentage must have a min value of 0 (it has -1.000000)",
        );
        let camel = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
    mirror:
      host: shadow
    mirrorPercent: 50
"#;
        assert_valid(camel);
        assert_warning(
            camel,
            14,
            "spec.http[0].mirrorPercent",
            "using deprecated setting \"mirrorPercent\", use \"mirrorPercentage\" instead",
        );
        let good = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
    mirror:
      host: shadow
    mirrorPercentage:
      value: 12.5
"#;
        assert_valid(good);
        assert_no_warnings(good);
    }

    #[test]
    fn mirrors() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
    mirrors:
    - percentage:
        value: 5
    - destination:
        host: shadow
      percentage:
        value: 101
    - destination:
        host: shadow
      percentage:
        value: -2
"#;
        assert_error(
            yaml,
            13,
            "spec.http[0].mirrors[0]",
            "destination is required for mirrors",
        );
        assert_error(
            yaml,
            18,
            "spec.http[0].mirrors[1].percentage.value",
            "mirror percentage must have a max value of 100 (it has 101.000000)",
        );
        assert_error(
            yaml,
            22,
            "spec.http[0].mirrors[2].percentage.value",
            "mirror percentage must have a min value of 0 (it has -2.000000)",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
    mirrors:
    - destination:
        host: shadow
        subset: v2
      percentage:
        value: 50
"#,
        );
    }

    #[test]
    fn destinations() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: "*"
    - destination:
        host: bad_host
    - destination:
        subset: v1
    - destination:
        host: reviews
        subset: ""
    - destination:
        host: reviews
        subset: v1.2
    - destination:
        host: reviews
        port:
          number: 0
    - weight: 10
    mirror:
      host: "*.bad*"
"#;
        assert_error(
            yaml,
            11,
            "spec.http[0].route[0].destination.host",
            "invalid destination host *",
        );
        assert_error(
            yaml,
            13,
            "spec.http[0].route[1].destination.host",
            "domain name \"bad_host\" invalid (label \"bad_host\" invalid)",
        );
        assert_error(
            yaml,
            14,
            "spec.http[0].route[2].destination.host",
            "empty domain name not allowed",
        );
        assert_error(
            yaml,
            18,
            "spec.http[0].route[3].destination.subset",
            "subset name cannot be empty",
        );
        assert_error(
            yaml,
            21,
            "spec.http[0].route[4].destination.subset",
            "subset name is invalid: v1.2",
        );
        assert_error(
            yaml,
            25,
            "spec.http[0].route[5].destination.port.number",
            "port number 0 must be in the range 1..65535",
        );
        assert_error(yaml, 26, "spec.http[0].route[6]", "destination is required");
        assert_error(
            yaml,
            28,
            "spec.http[0].mirror.host",
            "domain name \"*.bad*\" invalid (label \"bad*\" invalid)",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews.default.svc.cluster.local
        subset: v1
        port:
          number: 9080
    mirror:
      host: "*.example.com"
"#,
        );
    }

    #[test]
    fn weights() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
      weight: -1
    - destination:
        host: reviews
      weight: 2
  - route:
    - destination:
        host: reviews
      weight: 0
    - destination:
        host: ratings
"#;
        assert_error(yaml, 12, "spec.http[0].route[0].weight", "weight -1 < 0");
        assert_error(
            yaml,
            16,
            "spec.http[1].route",
            "total destination weight = 0",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 75
    - destination:
        host: reviews
        subset: v2
      weight: 25
"#,
        );
    }

    #[test]
    fn gateway_semantics_skip_destination_host_rules() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
  annotations:
    internal.istio.io/route-semantics: gateway
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: "*"
"#;
        assert_valid(yaml);
        assert_error(
            &yaml.replace("internal.istio.io/route-semantics: gateway", "x: z"),
            13,
            "spec.http[0].route[0].destination.host",
            "invalid destination host *",
        );
    }

    #[test]
    fn redirects() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - redirect:
      uri: /a
      prefixRewrite: /b
  - match:
    - uri:
        exact: /x
    redirect:
      prefixRewrite: /b
  - redirect:
      redirectCode: 301
  - redirect:
      authority: a.com
      redirectCode: 200
      scheme: ftp
      port: 70000
  - redirect:
      port: 8080
      derivePort: FROM_REQUEST_PORT
"#;
        assert_error(
            yaml,
            9,
            "spec.http[0].redirect",
            "redirect may only specify one of uri or prefix_rewrite",
        );
        assert_error(
            yaml,
            16,
            "spec.http[1].redirect.prefixRewrite",
            "redirect prefix_rewrite requires all URI matches to use prefix match type",
        );
        assert_error(
            yaml,
            17,
            "spec.http[2].redirect",
            "redirect must specify URI, authority, scheme, or port",
        );
        assert_error(
            yaml,
            21,
            "spec.http[3].redirect.redirectCode",
            "200 is not a valid redirect code, must be 3xx",
        );
        assert_error(
            yaml,
            22,
            "spec.http[3].redirect.scheme",
            "invalid redirect scheme, must be \"http\" or \"https\"",
        );
        assert_error(
            yaml,
            23,
            "spec.http[3].redirect.port",
            "port number 70000 must be in the range 1..65535",
        );
        assert_error(
            yaml,
            24,
            "spec.http[4].redirect",
            "only one of port or derivePort can be set",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - match:
    - uri:
        prefix: /old
    redirect:
      prefixRewrite: /new
      redirectCode: 308
  - redirect:
      scheme: https
      derivePort: FROM_PROTOCOL_DEFAULT
"#,
        );
    }

    #[test]
    fn direct_responses() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - directResponse:
      body:
        string: x
        bytes: eA==
  - directResponse:
      status: 700
      body:
        bytes: "not base64!"
"#;
        assert_error(
            yaml,
            10,
            "spec.http[0].directResponse.body",
            "only one of string or bytes can be set",
        );
        assert_error(
            yaml,
            9,
            "spec.http[0].directResponse.status",
            "status is required (HTTP status 0 is not in range 200-599)",
        );
        assert_error(
            yaml,
            14,
            "spec.http[1].directResponse.status",
            "HTTP status 700 is not in range 200-599",
        );
        assert_error(
            yaml,
            16,
            "spec.http[1].directResponse.body.bytes",
            "bytes must be base64 encoded (standard alphabet, with padding)",
        );
        let sized = |n: usize| {
            format!(
                r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - directResponse:
      status: 200
      body:
        string: "{}"
"#,
                "x".repeat(n)
            )
        };
        assert_error(
            &sized(1024 * 1024 + 1),
            11,
            "spec.http[0].directResponse.body",
            "large direct_responses may impact control plane performance, must be less than 1MB",
        );
        let big = sized(200 * 1024);
        assert_valid(&big);
        assert_warning(
            &big,
            11,
            "spec.http[0].directResponse.body",
            "large direct_responses may impact control plane performance",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - directResponse:
      status: 418
      body:
        bytes: aGVsbG8=
"#,
        );
    }

    #[test]
    fn retries() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
    retries:
      attempts: -1
  - route:
    - destination:
        host: reviews
    retries:
      perTryTimeout: 2s
  - route:
    - destination:
        host: reviews
    retries:
      attempts: 3
      perTryTimeout: 1500us
      retryOn: 5xx,bogus,600
      backoff: 0s
"#;
        assert_error(
            yaml,
            13,
            "spec.http[0].retries.attempts",
            "attempts cannot be negative",
        );
        assert_error(
            yaml,
            17,
            "spec.http[1].retries.attempts",
            "http retry policy configured when attempts are set to 0 (disabled)",
        );
        assert_error(
            yaml,
            24,
            "spec.http[2].retries.perTryTimeout",
            "only durations to ms precision are supported",
        );
        assert_error(
            yaml,
            25,
            "spec.http[2].retries.retryOn",
            "\"bogus\" is not a valid retryOn policy",
        );
        assert_error(
            yaml,
            25,
            "spec.http[2].retries.retryOn",
            "\"600\" is not a valid retryOn policy",
        );
        assert_error(
            yaml,
            26,
            "spec.http[2].retries.backoff",
            "duration must be greater than 1ms",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
    retries:
      attempts: 3
      perTryTimeout: 2s
      retryOn: gateway-error,connect-failure,refused-stream,503,unavailable
      backoff: 25ms
  - route:
    - destination:
        host: reviews
    retries:
      attempts: 0
"#,
        );
    }

    #[test]
    fn rewrites() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
    rewrite:
      uri: /a
      uriRegexRewrite:
        match: a
        rewrite: b
  - route:
    - destination:
        host: reviews
    rewrite: {}
  - route:
    - destination:
        host: reviews
    rewrite:
      uriRegexRewrite:
        match: ^/a
  - route:
    - destination:
        host: reviews
    rewrite:
      uriRegexRewrite:
        match: "(a"
        rewrite: b
"#;
        assert_error(
            yaml,
            12,
            "spec.http[0].rewrite",
            "rewrite may only contain one of URI or UriRegexRewrite",
        );
        assert_error(
            yaml,
            20,
            "spec.http[1].rewrite",
            "rewrite must specify at least one of URI, UriRegexRewrite, or authority. Only one of URI or UriRegexRewrite may be specified",
        );
        assert_error(
            yaml,
            25,
            "spec.http[2].rewrite.uriRegexRewrite",
            "UriRegexRewrite requires both Rewrite and Match fields to be specified",
        );
        assert!(check(yaml).iter().any(|f| {
            f.severity == Severity::Error
                && f.field == "spec.http[3].rewrite.uriRegexRewrite.match"
                && f.pos.line == 32
                && f.message
                    .starts_with("\"HTTPRewrite.UriRegexRewrite.Match\": ")
        }));
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
    rewrite:
      uriRegexRewrite:
        match: ^/service/([^/]+)(/.*)$
        rewrite: \2/instance/\1
  - route:
    - destination:
        host: reviews
    rewrite:
      uri: /v2
      authority: reviews.example.com
"#,
        );
    }

    #[test]
    fn timeout() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
    timeout: 0s
"#;
        assert_error(
            yaml,
            12,
            "spec.http[0].timeout",
            "duration must be greater than 1ms",
        );
        assert_valid(&yaml.replace("0s", "10s"));
    }

    #[test]
    fn tls_routes() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - "*.example.com"
  tls:
  - route:
    - destination:
        host: a
  - match:
    - port: 443
    route:
    - destination:
        host: a
  - match:
    - sniHosts:
      - foo.example.org
      - 10.0.0.1
      - bad_sni.example.com
      destinationSubnets:
      - 10.0.0.0/33
      - not-an-ip
"#;
        assert_error(
            yaml,
            9,
            "spec.tls[0].match",
            "TLS route must have at least one match condition",
        );
        assert_error(
            yaml,
            13,
            "spec.tls[1].match[0].sniHosts",
            "TLS match must have at least one SNI host",
        );
        assert_error(
            yaml,
            19,
            "spec.tls[2].match[0].sniHosts[0]",
            "SNI host \"foo.example.org\" is not a compatible subset of any of the virtual service hosts: [*.example.com]",
        );
        assert_warning(
            yaml,
            20,
            "spec.tls[2].match[0].sniHosts[1]",
            "using an IP address (\"10.0.0.1\") goes against SNI spec and most clients do not support this",
        );
        assert_error(
            yaml,
            21,
            "spec.tls[2].match[0].sniHosts[2]",
            "domain name \"bad_sni.example.com\" invalid (label \"bad_sni\" invalid)",
        );
        assert_error(
            yaml,
            23,
            "spec.tls[2].match[0].destinationSubnets[0]",
            "10.0.0.0/33 is not a valid CIDR block",
        );
        assert_error(
            yaml,
            24,
            "spec.tls[2].match[0].destinationSubnets[1]",
            "not-an-ip is not a valid IP",
        );
        assert_error(yaml, 17, "spec.tls[2].route", "TLS route is required");
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - "*.example.com"
  gateways:
  - istio-system/gw
  tls:
  - match:
    - sniHosts:
      - foo.example.com
      - "*.bar.example.com"
      port: 443
      destinationSubnets:
      - 10.0.0.0/8
    route:
    - destination:
        host: foo.example.com
"#,
        );
    }

    #[test]
    fn auto_passthrough_sni_hosts_on_gateways() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - outbound_.80_._.e2e.foobar.mesh
  gateways:
  - ns/gw
  tls:
  - match:
    - sniHosts:
      - outbound_.80_._.e2e.foobar.mesh
    route:
    - destination:
        host: e2e.foobar.mesh
"#;
        assert_valid(yaml);
        assert_error(
            &yaml.replace(
                "outbound_.80_._.e2e.foobar.mesh\n  gateways",
                "outbound_.80\n  gateways",
            ),
            7,
            "spec.hosts[0]",
            "domain name outbound_.80 invalid, should follow 'outbound_.<PORT>_._.<HOSTNAME>' format",
        );
        assert_error(
            &yaml.replace(
                "outbound_.80_._.e2e.foobar.mesh\n  gateways",
                "outbound_.x_._.e2e.foobar.mesh\n  gateways",
            ),
            7,
            "spec.hosts[0]",
            "domain name \"outbound_.x_._.e2e.foobar.mesh\" invalid (label \"x\" invalid). should follow outbound_.<PORT>_._.<HOSTNAME> format",
        );
    }

    #[test]
    fn tcp_routes() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - mongo
  tcp:
  - match:
    - port: 0
    - port: 65536
      sourceLabels:
        app: "bad value!"
"#;
        assert_error(yaml, 9, "spec.tcp[0].route", "TCP route is required");
        assert_error(
            yaml,
            11,
            "spec.tcp[0].match[1].port",
            "port number 65536 must be in the range 1..65535",
        );
        assert!(
            check(yaml).iter().any(|f| f.severity == Severity::Error
                && f.field == "spec.tcp[0].match[1].sourceLabels.app")
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - mongo
  tcp:
  - match:
    - port: 27017
      destinationSubnets:
      - 2001:db8::/32
    route:
    - destination:
        host: mongo.backup.svc.cluster.local
        port:
          number: 5555
      weight: 100
"#,
        );
    }

    #[test]
    fn null_list_items() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - null
  - route:
    - null
    mirrors:
    - null
  tcp:
  - match:
    - null
    route:
    - destination:
        host: reviews
  tls:
  - match:
    - null
    route:
    - null
"#;
        assert_error(yaml, 9, "spec.http[0]", "http route may not be null");
        assert_error(yaml, 11, "spec.http[1].route[0]", "weight may not be nil");
        assert_error(yaml, 13, "spec.http[1].mirrors[0]", "mirror cannot be null");
        assert_error(yaml, 16, "spec.tcp[0].match[0]", "tcp match may not be nil");
        assert_error(
            yaml,
            22,
            "spec.tls[0].match[0]",
            "TLS match may not be null",
        );
        assert_error(yaml, 24, "spec.tls[0].route[0]", "weight may not be nil");
        assert_valid(MINIMAL);
    }

    #[test]
    fn export_to() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  exportTo:
  - "*"
  - "."
  http:
  - route:
    - destination:
        host: reviews
"#;
        assert_error(
            yaml,
            8,
            "spec.exportTo",
            "cannot have both public (*) and non-public exportTo values for a resource",
        );
        assert_valid(&yaml.replace("  - \"*\"\n", ""));
    }

    #[test]
    fn unreachable_rules() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - name: first
    match:
    - uri:
        exact: /a
    route:
    - destination:
        host: reviews
  - match:
    - name: again
      uri:
        exact: /a
    route:
    - destination:
        host: reviews
  - route:
    - destination:
        host: reviews
  - route:
    - destination:
        host: reviews
  - match:
    - uri:
        exact: /b
    route:
    - destination:
        host: reviews
"#;
        assert_valid(yaml);
        assert_warning(
            yaml,
            17,
            "spec.http[1].match[0]",
            "virtualService rule #1 match \"again\" is not used (duplicate/overlapping match in rule \"first\")",
        );
        assert_warning(
            yaml,
            16,
            "spec.http[1]",
            "virtualService rule #1 not used (all matches used by prior rules)",
        );
        assert_warning(
            yaml,
            26,
            "spec.http[3]",
            "virtualService rule #3 not used (only the last rule can have no matches)",
        );
        assert_warning(
            yaml,
            29,
            "spec.http[4]",
            "virtualService rule #4 not used (route without matches defined before)",
        );
        let fine = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - match:
    - uri:
        prefix: /api/v2
    route:
    - destination:
        host: reviews
  - match:
    - uri:
        prefix: /api
    route:
    - destination:
        host: reviews
  - route:
    - destination:
        host: reviews
"#;
        assert_no_warnings(fine);
    }

    #[test]
    fn overlapping_prefix_matches() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - reviews
  http:
  - name: api
    match:
    - uri:
        prefix: /api
    route:
    - destination:
        host: reviews
  - name: api-v2
    match:
    - uri:
        prefix: /api/v2
    route:
    - destination:
        host: reviews
"#;
        assert_warning(
            yaml,
            18,
            "spec.http[1].match[0]",
            "virtualService rule \"api-v2\" match #0 of prefix /api/v2 is not used (duplicate/overlapping match in rule #0 of prefix /api on \"api\")",
        );
        // A header on the later match narrows it: not covered.
        assert_no_warnings(&yaml.replace(
            "        prefix: /api/v2\n",
            "        prefix: /api/v2\n      headers:\n        x-v:\n          exact: \"2\"\n",
        ));
    }

    #[test]
    fn unreachable_tcp_rules() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts:
  - mongo
  tcp:
  - match:
    - port: 27017
    route:
    - destination:
        host: mongo
  - match:
    - port: 27017
    route:
    - destination:
        host: mongo
"#;
        assert_warning(
            yaml,
            15,
            "spec.tcp[1].match[0]",
            "virtualService rule #1 match #0 is not used (duplicate/overlapping match in rule #0)",
        );
        assert_warning(
            yaml,
            14,
            "spec.tcp[1]",
            "virtualService rule #1 not used (all matches used by prior rules)",
        );
        assert_no_warnings(&yaml.replace("    - port: 27017\n    route:\n    - destination:\n        host: mongo\n  - match:\n    - port: 27017", "    - port: 27017\n    route:\n    - destination:\n        host: mongo\n  - match:\n    - port: 27018"));
    }
}
