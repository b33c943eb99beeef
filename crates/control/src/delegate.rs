//! Delegate VirtualServices, merged into their roots as istiod merges them
//! (`pilot/pkg/model/virtualservice.go`): a root's HTTP route with `delegate: {name, namespace}` is
//! replaced by the delegate's HTTP routes, each with the root's match combined into its own. A
//! delegate route whose match cannot lie inside the root's is dropped; a delegate (a VirtualService
//! without hosts) never routes on its own.

use std::collections::BTreeMap;

use mesh_api::types::virtual_service::{Destination, HttpMatchRequest, HttpRoute, StringMatch};

use crate::index::{VirtualService, qualify_gateway};
use crate::model::ServiceRegistry;

/// The HTTP routes of `root` with every delegating route replaced by its delegate's routes, and what
/// could not be merged (a missing or hidden delegate, conflicting matches).
pub fn merge_delegates(
    root: &VirtualService,
    all: &[VirtualService],
    services: &ServiceRegistry,
) -> (Vec<HttpRoute>, Vec<String>) {
    let mut warnings = Vec::new();
    let mut merged = Vec::new();
    for http in &root.spec.http {
        let Some(delegate) = &http.delegate else {
            merged.push(http.clone());
            continue;
        };
        let name = delegate.name.as_deref().unwrap_or_default();
        let namespace = delegate.namespace.as_deref().unwrap_or(&root.namespace);
        let Some(target) = all
            .iter()
            .find(|vs| vs.name == name && vs.namespace == namespace && vs.hosts.is_empty())
        else {
            warnings.push(format!(
                "VirtualService {}/{}: delegate VirtualService {namespace}/{name} not found (a delegate has no hosts); the route is skipped",
                root.namespace, root.name
            ));
            continue;
        };
        if !target.visible_from(&root.namespace) {
            warnings.push(format!(
                "VirtualService {}/{}: delegate VirtualService {namespace}/{name} is not exported to namespace {}; the route is skipped",
                root.namespace, root.name, root.namespace
            ));
            continue;
        }
        for leaf in &target.spec.http {
            let leaf = resolve_in_namespace(leaf, &target.namespace, services);
            match merge_route(http, leaf) {
                Some(route) => merged.push(route),
                None => warnings.push(format!(
                    "VirtualService {}/{}: a route of delegate {namespace}/{name} matches outside the root route's match; it is skipped",
                    root.namespace, root.name
                )),
            }
        }
    }
    (merged, warnings)
}

/// The delegate's names made absolute in its own namespace (destination hosts, gateways), so they
/// mean the same inside the root.
fn resolve_in_namespace(
    route: &HttpRoute,
    namespace: &str,
    services: &ServiceRegistry,
) -> HttpRoute {
    let mut route = route.clone();
    let resolve = |d: &mut Destination| {
        if let Some(h) = &d.host {
            d.host = Some(services.resolve(h, namespace));
        }
    };
    for r in &mut route.route {
        r.destination.as_mut().map(resolve);
    }
    route.mirror.as_mut().map(resolve);
    for m in &mut route.mirrors {
        m.destination.as_mut().map(resolve);
    }
    for m in &mut route.r#match {
        for g in &mut m.gateways {
            *g = qualify_gateway(g, namespace);
        }
    }
    route
}

/// istiod's `mergeHTTPRoute`: the delegate's own settings win, the root's fill what it leaves unset.
fn merge_route(root: &HttpRoute, mut leaf: HttpRoute) -> Option<HttpRoute> {
    leaf.r#match = merge_matches(&root.r#match, &leaf.r#match)?;
    leaf.name = match (&root.name, leaf.name.take()) {
        (Some(r), Some(l)) => Some(format!("{r}-{l}")),
        (r, l) => l.or_else(|| r.clone()),
    };
    macro_rules! inherit {
        ($($field:ident),*) => {$(
            if leaf.$field.is_none() {
                leaf.$field = root.$field.clone();
            }
        )*};
    }
    inherit!(
        rewrite,
        direct_response,
        timeout,
        retries,
        fault,
        mirror,
        mirror_percent,
        mirror_percentage,
        cors_policy,
        headers
    );
    if leaf.mirrors.is_empty() {
        leaf.mirrors = root.mirrors.clone();
    }
    Some(leaf)
}

/// istiod's `mergeHTTPMatchRequests`: every delegate match must fit inside at least one root match
/// (then it is combined with each root match it fits), else the delegate route conflicts (`None`).
fn merge_matches(
    root: &[HttpMatchRequest],
    leaf: &[HttpMatchRequest],
) -> Option<Vec<HttpMatchRequest>> {
    if root.is_empty() {
        return Some(leaf.to_vec());
    }
    if leaf.is_empty() {
        return Some(root.to_vec());
    }
    let mut out = Vec::new();
    for l in leaf {
        let fitting: Vec<&HttpMatchRequest> = root.iter().filter(|r| !conflicts(r, l)).collect();
        if fitting.is_empty() {
            return None;
        }
        out.extend(fitting.into_iter().map(|r| merge_match(r, l)));
    }
    Some(out)
}

fn merged_map<V: Clone>(
    root: &BTreeMap<String, V>,
    leaf: &BTreeMap<String, V>,
) -> BTreeMap<String, V> {
    let mut out = root.clone();
    out.extend(leaf.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// istiod's `mergeHTTPMatchRequest`: the delegate's conditions, the root's where it has none.
fn merge_match(root: &HttpMatchRequest, leaf: &HttpMatchRequest) -> HttpMatchRequest {
    let mut out = leaf.clone();
    out.name = match (&root.name, &leaf.name) {
        (Some(r), Some(l)) => Some(format!("{r}-{l}")),
        (r, l) => l.clone().or_else(|| r.clone()),
    };
    for (mine, theirs) in [
        (&mut out.uri, &root.uri),
        (&mut out.scheme, &root.scheme),
        (&mut out.method, &root.method),
        (&mut out.authority, &root.authority),
    ] {
        if mine.is_none() {
            mine.clone_from(theirs);
        }
    }
    out.headers = merged_map(&root.headers, &leaf.headers);
    out.without_headers = merged_map(&root.without_headers, &leaf.without_headers);
    out.query_params = merged_map(&root.query_params, &leaf.query_params);
    out.source_labels = merged_map(&root.source_labels, &leaf.source_labels);
    if out.port.is_none() {
        out.port = root.port;
    }
    if out.source_namespace.is_none() {
        out.source_namespace.clone_from(&root.source_namespace);
    }
    if out.gateways.is_empty() {
        out.gateways.clone_from(&root.gateways);
    }
    if out.stat_prefix.is_none() {
        out.stat_prefix.clone_from(&root.stat_prefix);
    }
    out
}

/// istiod's `hasConflict`: whether the delegate match `leaf` can match something `root` does not.
fn conflicts(root: &HttpMatchRequest, leaf: &HttpMatchRequest) -> bool {
    let strings = [
        (&root.uri, &leaf.uri),
        (&root.scheme, &leaf.scheme),
        (&root.method, &leaf.method),
        (&root.authority, &leaf.authority),
    ];
    if strings
        .iter()
        .any(|(r, l)| string_match_conflicts(r.as_ref(), l.as_ref()))
    {
        return true;
    }
    let map_conflicts = |r: &BTreeMap<String, StringMatch>, l: &BTreeMap<String, StringMatch>| {
        l.iter()
            .any(|(k, v)| string_match_conflicts(r.get(k), Some(v)))
    };
    if map_conflicts(&root.headers, &leaf.headers)
        || map_conflicts(&root.without_headers, &leaf.without_headers)
        || map_conflicts(&root.query_params, &leaf.query_params)
    {
        return true;
    }
    if root.ignore_uri_case.unwrap_or(false) != leaf.ignore_uri_case.unwrap_or(false) {
        return true;
    }
    if let (Some(r), Some(l)) = (root.port, leaf.port)
        && r != l
    {
        return true;
    }
    if root.source_namespace.is_some() && leaf.source_namespace != root.source_namespace {
        return true;
    }
    if leaf
        .source_labels
        .iter()
        .any(|(k, v)| root.source_labels.get(k).is_some_and(|rv| rv != v))
    {
        return true;
    }
    // The root's gateways must be a superset of the delegate's.
    !root.gateways.is_empty()
        && !leaf.gateways.is_empty()
        && !leaf.gateways.iter().all(|g| root.gateways.contains(g))
}

/// istiod's `stringMatchConflict`: a delegate's string match must be as narrow as the root's (an
/// exact value equal to it, a prefix or exact value under its prefix); regexes never combine.
fn string_match_conflicts(root: Option<&StringMatch>, leaf: Option<&StringMatch>) -> bool {
    let (Some(root), Some(leaf)) = (root, leaf) else {
        return false;
    };
    fn set(s: &Option<String>) -> Option<&str> {
        s.as_deref().filter(|v| !v.is_empty())
    }
    let any = |m: &StringMatch| set(&m.exact).or(set(&m.prefix)).or(set(&m.regex)).is_some();
    if set(&root.regex).is_some() && any(leaf) {
        return true;
    }
    if set(&leaf.regex).is_some() && any(root) {
        return true;
    }
    if let Some(exact) = set(&root.exact) {
        return set(&leaf.prefix).is_some() || set(&leaf.exact) != Some(exact);
    }
    if let Some(prefix) = set(&root.prefix) {
        if let Some(p) = set(&leaf.prefix) {
            return !p.starts_with(prefix);
        }
        if let Some(e) = set(&leaf.exact) {
            return !e.starts_with(prefix);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(p: &str) -> Option<StringMatch> {
        Some(StringMatch {
            prefix: Some(p.to_owned()),
            ..Default::default()
        })
    }

    fn exact_value(p: &str) -> StringMatch {
        StringMatch {
            exact: Some(p.to_owned()),
            ..Default::default()
        }
    }

    fn exact(p: &str) -> Option<StringMatch> {
        Some(exact_value(p))
    }

    #[test]
    fn a_delegate_uri_must_lie_under_the_root_prefix() {
        assert!(!string_match_conflicts(
            prefix("/api").as_ref(),
            prefix("/api/v1").as_ref()
        ));
        assert!(!string_match_conflicts(
            prefix("/api").as_ref(),
            exact("/api/x").as_ref()
        ));
        assert!(string_match_conflicts(
            prefix("/api/v1").as_ref(),
            prefix("/api").as_ref()
        ));
        assert!(string_match_conflicts(
            exact("/a").as_ref(),
            prefix("/a").as_ref()
        ));
        assert!(!string_match_conflicts(
            exact("/a").as_ref(),
            exact("/a").as_ref()
        ));
        assert!(!string_match_conflicts(None, prefix("/x").as_ref()));
    }

    #[test]
    fn headers_merge_and_the_root_fills_unset_conditions() {
        let root = HttpMatchRequest {
            uri: prefix("/api"),
            headers: BTreeMap::from([("x-team".to_owned(), exact_value("a"))]),
            ..Default::default()
        };
        let leaf = HttpMatchRequest {
            headers: BTreeMap::from([("x-user".to_owned(), exact_value("b"))]),
            ..Default::default()
        };
        let merged = merge_matches(std::slice::from_ref(&root), &[leaf]).expect("fits");
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].uri, prefix("/api"));
        assert_eq!(merged[0].headers.len(), 2);
        let outside = HttpMatchRequest {
            uri: prefix("/other"),
            ..Default::default()
        };
        assert!(merge_matches(&[root], &[outside]).is_none());
    }
}
