//! Rules that can never match: routes after a catch-all (IST0130) and matches that an earlier match
//! already covers (IST0131). Routes are tried in order and the first match wins, so anything an earlier
//! match accepts never reaches a later one.

use std::collections::BTreeMap;

use super::Out;
use crate::diag::{Severity, code};
use crate::path::FieldPath;
use crate::types::virtual_service::{HttpMatchRequest, StringMatch, VirtualServiceSpec};

pub(super) fn check_reachability(out: &mut Out<'_>, index: usize, vs: &VirtualServiceSpec) {
    let spec = FieldPath::ROOT.key("spec");
    check_http(out, index, vs, &spec.key("http"));
    let tcp: Vec<bool> = vs.tcp.iter().map(|r| r.r#match.is_empty()).collect();
    check_catch_all_only(out, index, &tcp, &spec.key("tcp"));
    let tls: Vec<bool> = vs.tls.iter().map(|r| r.r#match.is_empty()).collect();
    check_catch_all_only(out, index, &tls, &spec.key("tls"));
}

fn rule_name(name: Option<&String>, i: usize) -> String {
    name.filter(|n| !n.is_empty())
        .map_or_else(|| format!("#{i}"), |n| format!("{n:?}"))
}

fn check_http(out: &mut Out<'_>, index: usize, vs: &VirtualServiceSpec, at: &FieldPath<'_>) {
    // Earlier matches, with the rule each belongs to.
    let mut earlier: Vec<(&HttpMatchRequest, String)> = Vec::new();
    let mut catch_all: Option<String> = None;
    for (i, route) in vs.http.iter().enumerate() {
        let name = rule_name(route.name.as_ref(), i);
        let route_at = at.index(i);
        if let Some(first) = &catch_all {
            out.push(
                index,
                Severity::Warning,
                code::VIRTUAL_SERVICE_UNREACHABLE_RULE,
                &route_at,
                format!("VirtualService rule {name} not used (rule {first} before it matches every request; only the last rule can have no matches)."),
            );
            continue;
        }
        if route.r#match.is_empty() || route.r#match.iter().any(is_catch_all) {
            catch_all = Some(name);
            continue;
        }
        let mut covered = 0;
        for (k, m) in route.r#match.iter().enumerate() {
            if let Some((_, by)) = earlier.iter().find(|(e, _)| covers(e, m)) {
                covered += 1;
                let match_name = rule_name(m.name.as_ref(), k);
                out.push(
                    index,
                    Severity::Warning,
                    code::VIRTUAL_SERVICE_INEFFECTIVE_MATCH,
                    &route_at.key("match").index(k),
                    format!("VirtualService rule {name} match {match_name} is not used (duplicate/overlapping match in rule {by})."),
                );
            }
            earlier.push((m, name.clone()));
        }
        if covered == route.r#match.len() {
            out.push(
                index,
                Severity::Warning,
                code::VIRTUAL_SERVICE_UNREACHABLE_RULE,
                &route_at,
                format!("VirtualService rule {name} not used (earlier rules match every request it matches)."),
            );
        }
    }
}

/// TCP and TLS routes: only a rule without matches catches everything.
fn check_catch_all_only(out: &mut Out<'_>, index: usize, no_match: &[bool], at: &FieldPath<'_>) {
    if let Some(first) = no_match.iter().position(|&n| n) {
        for later in first + 1..no_match.len() {
            out.push(
                index,
                Severity::Warning,
                code::VIRTUAL_SERVICE_UNREACHABLE_RULE,
                &at.index(later),
                format!("VirtualService rule #{later} not used (rule #{first} before it has no match and catches every connection; only the last rule can have no matches)."),
            );
        }
    }
}

/// A match that accepts every request: no conditions, or only `uri: {prefix: /}`.
fn is_catch_all(m: &HttpMatchRequest) -> bool {
    let bare = HttpMatchRequest {
        name: m.name.clone(),
        stat_prefix: m.stat_prefix.clone(),
        ignore_uri_case: m.ignore_uri_case,
        uri: m.uri.clone(),
        ..HttpMatchRequest::default()
    };
    *m == bare && m.uri.as_ref().is_none_or(|u| matches_everything(u))
}

fn matches_everything(s: &StringMatch) -> bool {
    s.exact.is_none()
        && s.regex.is_none()
        && s.prefix.as_deref().is_none_or(|p| p.is_empty() || p == "/")
}

/// Whether every request `later` accepts is also accepted by `earlier`.
fn covers(earlier: &HttpMatchRequest, later: &HttpMatchRequest) -> bool {
    let uri_ok = match (&earlier.uri, &later.uri) {
        (None, _) => true,
        (Some(a), _) if matches_everything(a) => true,
        (Some(a), Some(b)) => {
            earlier.ignore_uri_case == later.ignore_uri_case && string_covers(a, Some(b))
        }
        (Some(_), None) => false,
    };
    uri_ok
        && optional_covers(&earlier.scheme, &later.scheme)
        && optional_covers(&earlier.method, &later.method)
        && optional_covers(&earlier.authority, &later.authority)
        && map_covers(&earlier.headers, &later.headers)
        && map_covers(&earlier.query_params, &later.query_params)
        && earlier
            .without_headers
            .iter()
            .all(|(k, v)| later.without_headers.get(k) == Some(v))
        && (earlier.port.is_none() || earlier.port == later.port)
        && earlier
            .source_labels
            .iter()
            .all(|(k, v)| later.source_labels.get(k) == Some(v))
        && (earlier.gateways.is_empty()
            || (!later.gateways.is_empty()
                && later.gateways.iter().all(|g| earlier.gateways.contains(g))))
        && (earlier.source_namespace.is_none()
            || earlier.source_namespace == later.source_namespace)
}

fn optional_covers(a: &Option<StringMatch>, b: &Option<StringMatch>) -> bool {
    a.as_ref().is_none_or(|a| string_covers(a, b.as_ref()))
}

fn map_covers(a: &BTreeMap<String, StringMatch>, b: &BTreeMap<String, StringMatch>) -> bool {
    a.iter()
        .all(|(k, sa)| b.contains_key(k) && string_covers(sa, b.get(k)))
}

/// Whether string condition `a` accepts every value `b` accepts (`b` absent: any value).
fn string_covers(a: &StringMatch, b: Option<&StringMatch>) -> bool {
    // An empty condition only asks for presence.
    if a.exact.is_none() && a.prefix.is_none() && a.regex.is_none() {
        return true;
    }
    let Some(b) = b else {
        return false;
    };
    if a == b {
        return true;
    }
    match &a.prefix {
        Some(p) => {
            b.exact
                .as_deref()
                .is_some_and(|e| e.starts_with(p.as_str()))
                || b.prefix
                    .as_deref()
                    .is_some_and(|q| q.starts_with(p.as_str()))
        }
        None => false,
    }
}
