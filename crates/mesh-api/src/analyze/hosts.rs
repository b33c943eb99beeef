//! Host names as Istio resolves them: short names are relative to the namespace of the resource that
//! writes them, `*.example.com` covers every name under `example.com`, and visibility follows `exportTo`.

/// The cluster's DNS suffix; Bosun, like a default Istio install, uses `cluster.local`.
pub const DOMAIN_SUFFIX: &str = "svc.cluster.local";

/// Istio's `ResolveShortnameToFQDN`: `reviews` written in namespace `default` is
/// `reviews.default.svc.cluster.local`; a name with a dot, or a wildcard, stays as written.
pub fn resolve(host: &str, namespace: &str) -> String {
    if host.contains('.') || host.starts_with('*') {
        host.to_owned()
    } else {
        format!("{host}.{namespace}.{DOMAIN_SUFFIX}")
    }
}

/// The `(name, namespace)` of a Kubernetes service that `host` (as written in `namespace`) names:
/// `reviews`, `reviews.ns`, `reviews.ns.svc` or `reviews.ns.svc.cluster.local`.
pub fn kubernetes_service(host: &str, namespace: &str) -> Option<(String, String)> {
    let labels: Vec<&str> = host.split('.').collect();
    match labels.as_slice() {
        [name] if !name.starts_with('*') => Some(((*name).to_owned(), namespace.to_owned())),
        [name, ns] | [name, ns, "svc"] | [name, ns, "svc", "cluster", "local"] => {
            Some(((*name).to_owned(), (*ns).to_owned()))
        }
        _ => None,
    }
}

/// Whether a name is inside the cluster (Kubernetes services), as opposed to an external DNS name.
pub fn is_cluster_local(fqdn: &str) -> bool {
    fqdn.ends_with(&format!(".{DOMAIN_SUFFIX}"))
}

/// Whether `pattern` (possibly `*` or `*.suffix`) covers `host` (possibly itself a wildcard).
pub fn matches(pattern: &str, host: &str) -> bool {
    if pattern == "*" || pattern.eq_ignore_ascii_case(host) {
        return true;
    }
    let Some(suffix) = pattern.strip_prefix('*') else {
        return false;
    };
    let host = host.strip_prefix('*').unwrap_or(host);
    host.len() > suffix.len()
        && host
            .to_ascii_lowercase()
            .ends_with(&suffix.to_ascii_lowercase())
        || host.eq_ignore_ascii_case(suffix)
}

/// Whether either host covers the other (used to pair VirtualService hosts with Gateway hosts).
pub fn overlap(a: &str, b: &str) -> bool {
    matches(a, b) || matches(b, a)
}

/// Whether a resource in `owner_namespace` with this `exportTo` is visible from `namespace`.
/// An empty list means everywhere (Istio's default).
pub fn exported_to(export_to: &[String], owner_namespace: &str, namespace: &str) -> bool {
    export_to.is_empty()
        || export_to
            .iter()
            .any(|e| e == "*" || e == namespace || (e == "." && owner_namespace == namespace))
}

/// A gateway reference from a VirtualService in `namespace`: `name`, `ns/name`, or the legacy
/// `name.ns.svc.cluster.local`. Returns `(namespace, name)`.
pub fn gateway_ref<'a>(reference: &'a str, namespace: &'a str) -> (&'a str, &'a str) {
    if let Some((ns, name)) = reference.split_once('/') {
        (ns, name)
    } else if let Some((name, rest)) = reference.split_once('.') {
        (rest.split('.').next().unwrap_or(namespace), name)
    } else {
        (namespace, reference)
    }
}

/// Values keyed by host pattern, found by the hosts they cover: exact names by hash, wildcards by
/// scanning (there are few), so a lookup does not walk every resource.
#[derive(Debug)]
pub struct HostIndex<T> {
    exact: std::collections::HashMap<String, Vec<T>>,
    wildcards: Vec<(String, T)>,
}

impl<T> Default for HostIndex<T> {
    fn default() -> Self {
        HostIndex {
            exact: Default::default(),
            wildcards: Vec::new(),
        }
    }
}

impl<T> HostIndex<T> {
    pub fn insert(&mut self, pattern: &str, value: T) {
        if pattern.starts_with('*') {
            self.wildcards.push((pattern.to_ascii_lowercase(), value));
        } else {
            self.exact
                .entry(pattern.to_ascii_lowercase())
                .or_default()
                .push(value);
        }
    }

    /// Every value whose pattern covers `host`.
    pub fn covering<'s>(&'s self, host: &str) -> impl Iterator<Item = &'s T> + 's {
        let host = host.to_ascii_lowercase();
        let exact = self.exact.get(&host).into_iter().flatten();
        let wild = self
            .wildcards
            .iter()
            .filter(move |(pattern, _)| matches(pattern, &host))
            .map(|(_, v)| v);
        exact.chain(wild)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_resolve_in_the_writers_namespace() {
        assert_eq!(resolve("reviews", "shop"), "reviews.shop.svc.cluster.local");
        assert_eq!(resolve("api.example.com", "shop"), "api.example.com");
        assert_eq!(
            kubernetes_service("reviews.shop.svc.cluster.local", "x"),
            Some(("reviews".into(), "shop".into()))
        );
        assert_eq!(kubernetes_service("api.example.com", "x"), None);
    }

    #[test]
    fn wildcards_cover_subdomains_only() {
        assert!(matches("*.example.com", "api.example.com"));
        assert!(matches("*.example.com", "*.eu.example.com"));
        assert!(!matches("*.example.com", "example.org"));
        assert!(!matches("api.example.com", "*.example.com"));
        assert!(overlap("api.example.com", "*.example.com"));
        assert!(matches("*", "anything"));
    }

    #[test]
    fn host_index_finds_exact_and_wildcard_patterns() {
        let mut index = HostIndex::default();
        index.insert("api.example.com", 1);
        index.insert("*.example.com", 2);
        index.insert("other.org", 3);
        let mut found: Vec<i32> = index.covering("API.example.com").copied().collect();
        found.sort_unstable();
        assert_eq!(found, [1, 2]);
        assert_eq!(index.covering("nothing.net").count(), 0);
    }

    #[test]
    fn export_to_scopes_visibility() {
        let dot = vec![".".to_owned()];
        assert!(exported_to(&[], "a", "b"));
        assert!(exported_to(&dot, "a", "a"));
        assert!(!exported_to(&dot, "a", "b"));
        assert!(exported_to(&["b".to_owned()], "a", "b"));
    }

    #[test]
    fn gateway_references() {
        assert_eq!(gateway_ref("gw", "default"), ("default", "gw"));
        assert_eq!(
            gateway_ref("istio-system/gw", "default"),
            ("istio-system", "gw")
        );
        assert_eq!(
            gateway_ref("gw.ops.svc.cluster.local", "default"),
            ("ops", "gw")
        );
    }
}
