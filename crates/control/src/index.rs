//! The push index (istiod's PushContext): one immutable view of the config and the registry, built
//! once per push and shared by the generation of every proxy's resources.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use mesh_api::registry::Registry;
use mesh_api::resource::{Resource, Spec};
use mesh_api::secret::CredentialSecret;
use mesh_api::types::destination_rule::DestinationRuleSpec;
use mesh_api::types::gateway::GatewaySpec;
use mesh_api::types::security::PeerAuthenticationSpec;
use mesh_api::types::sidecar::{OutboundTrafficPolicyMode, SidecarSpec};
use mesh_api::types::virtual_service::VirtualServiceSpec;

use crate::model::{Instance, Service, ServiceRegistry, host_matches, labels_match, resolve_host};
use crate::node::Proxy;

/// Istio's root namespace: its Sidecar and DestinationRules apply mesh-wide.
pub const ROOT_NAMESPACE: &str = "istio-system";

/// A VirtualService with its hosts resolved to FQDNs (relative to its namespace).
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualService {
    pub name: String,
    pub namespace: String,
    pub hosts: Vec<String>,
    /// Gateways as `namespace/name`, and `mesh` for sidecars (the default when none are listed).
    pub gateways: Vec<String>,
    pub spec: VirtualServiceSpec,
}

impl VirtualService {
    pub fn applies_to_mesh(&self) -> bool {
        self.gateways.iter().any(|g| g == "mesh")
    }

    /// Whether the VirtualService is visible to proxies in `namespace`.
    pub fn visible_from(&self, namespace: &str) -> bool {
        self.spec.export_to.is_empty()
            || self
                .spec
                .export_to
                .iter()
                .any(|e| e == "*" || e == namespace || (e == "." && namespace == self.namespace))
    }
}

#[derive(Debug, Clone)]
pub struct DestinationRule {
    pub name: String,
    pub namespace: String,
    pub host: String,
    /// The store's own spec, shared (a push does not copy a thousand rules).
    pub spec: Arc<DestinationRuleSpec>,
}

impl PartialEq for DestinationRule {
    /// Specs compare by pointer first: a push's rules are mostly the very ones of the last push.
    fn eq(&self, other: &DestinationRule) -> bool {
        self.name == other.name
            && self.namespace == other.namespace
            && self.host == other.host
            && same_spec(&self.spec, &other.spec)
    }
}

/// Whether two shared specs are the same: the very same one (the usual case: the store's spec,
/// shared from push to push), or equal.
pub fn same_spec<T: PartialEq>(a: &Arc<T>, b: &Arc<T>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

#[derive(Debug, Clone, PartialEq)]
pub struct Gateway {
    pub name: String,
    pub namespace: String,
    pub spec: GatewaySpec,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sidecar {
    pub name: String,
    pub namespace: String,
    pub spec: SidecarSpec,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PeerAuthentication {
    pub name: String,
    pub namespace: String,
    pub spec: PeerAuthenticationSpec,
}

/// How a workload's sidecar takes connections from its peers (PeerAuthentication `mtls.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerMode {
    /// Mutual TLS and plain text (Istio's default).
    Permissive,
    /// Mutual TLS only.
    Strict,
    /// Plain text only.
    Disable,
}

impl PeerMode {
    pub fn takes_mutual_tls(self) -> bool {
        self != PeerMode::Disable
    }

    pub fn takes_plain_text(self) -> bool {
        self != PeerMode::Strict
    }

    /// The mode that takes every transport one of `modes` takes.
    pub fn admitting(modes: impl IntoIterator<Item = PeerMode>) -> PeerMode {
        let (mut tls, mut plain) = (false, false);
        for m in modes {
            tls |= m.takes_mutual_tls();
            plain |= m.takes_plain_text();
        }
        match (tls, plain) {
            (true, false) => PeerMode::Strict,
            (false, true) => PeerMode::Disable,
            _ => PeerMode::Permissive,
        }
    }
}

/// Mesh-wide settings (Istio's MeshConfig), from the mesh file and flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshSettings {
    pub outbound_policy: OutboundTrafficPolicyMode,
    /// Istio's `accessLogFile`, `accessLogEncoding` and `accessLogFormat`: `None`, no access log.
    pub access_log: Option<AccessLogSettings>,
}

impl Default for MeshSettings {
    fn default() -> Self {
        MeshSettings {
            outbound_policy: OutboundTrafficPolicyMode::AllowAny,
            access_log: None,
        }
    }
}

/// Where every proxy logs its requests and TCP connections, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogSettings {
    /// A file, or `/dev/stdout`.
    pub file: String,
    pub encoding: mesh_api::registry::AccessLogEncoding,
    /// Envoy's format string (TEXT) or a JSON object of them (JSON); `None`: Istio's default.
    pub format: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Index {
    /// Shared with the index before when its inputs (mesh file, ServiceEntries, WorkloadEntries) did
    /// not change: then comparing the two is a pointer comparison.
    pub services: Arc<ServiceRegistry>,
    /// In the order they were read (Istio orders by creation time; the first claiming a host wins).
    pub virtual_services: Vec<VirtualService>,
    pub destination_rules: Vec<DestinationRule>,
    pub gateways: Vec<Gateway>,
    pub sidecars: Vec<Sidecar>,
    /// TLS credentials by namespace and name, for Gateways' `credentialName`.
    pub secrets: BTreeMap<(String, String), Arc<CredentialSecret>>,
    /// The mesh CA that issues workload certificates for `ISTIO_MUTUAL` (none: no mesh TLS).
    pub identity: Option<Arc<crate::identity::MeshIdentity>>,
    /// Whether the mesh uses mutual TLS at all: a DestinationRule asks for `ISTIO_MUTUAL`, or a
    /// PeerAuthentication asks for `STRICT` or `PERMISSIVE`. Only then do proxies get identities.
    pub mesh_tls: bool,
    /// In the order they were read.
    pub peer_authentications: Vec<PeerAuthentication>,
    pub mesh: MeshSettings,
    /// The access log every HTTP connection manager and TCP proxy gets, from `mesh.access_log`.
    pub access_log: Option<xds_api::pb::envoy::config::accesslog::v3::AccessLog>,
    /// Every distinct `sourceLabels`/`sourceNamespace` pair in VirtualService matches: the only ways a
    /// proxy's labels change its routes, so proxies that agree on all of them share route tables.
    pub source_selectors: Vec<(BTreeMap<String, String>, Option<String>)>,
    /// DestinationRules and mesh VirtualServices by exact host, and those with wildcard hosts: the
    /// lookups for every service of every proxy scope must not scan every rule.
    dr_by_host: HashMap<String, Vec<usize>>,
    dr_wildcards: Vec<usize>,
    vs_by_host: HashMap<String, Vec<usize>>,
    vs_wildcards: Vec<usize>,
    /// Proxy-independent problems worth a log line (unsupported fields, shadowed hosts).
    pub warnings: Vec<String>,
}

/// What changed between two pushes' indexes, as far as sidecars' outbound route tables (and the
/// listeners built with them) can tell: they depend on services (not their instances),
/// VirtualServices, DestinationRules, Sidecars, Gateways and the mesh settings.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteChange {
    /// Nothing they depend on.
    Nothing,
    /// Only VirtualServices, DestinationRules and services, each with exact hosts: the virtual hosts
    /// of these hosts may change, no other.
    Hosts(HashSet<String>),
    /// Anything else.
    Everything,
}

impl RouteChange {
    /// Whether the routes of `host`'s virtual hosts may be taken from the last push.
    pub fn keeps(&self, host: &str) -> bool {
        match self {
            RouteChange::Nothing => true,
            RouteChange::Hosts(hosts) => !hosts.contains(host),
            RouteChange::Everything => false,
        }
    }
}

impl std::fmt::Display for RouteChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteChange::Nothing => f.write_str("unchanged"),
            RouteChange::Hosts(hosts) => write!(f, "{} hosts changed", hosts.len()),
            RouteChange::Everything => f.write_str("rebuilt"),
        }
    }
}

/// Whether two services agree in all but their instances (which only endpoints carry).
fn same_but_instances(a: &Service, b: &Service) -> bool {
    let Service {
        hostname,
        namespace,
        ports,
        resolution,
        external,
        export_to,
        addresses,
        instances: _,
    } = a;
    *hostname == b.hostname
        && *namespace == b.namespace
        && *ports == b.ports
        && *resolution == b.resolution
        && *external == b.external
        && *export_to == b.export_to
        && *addresses == b.addresses
}

/// The entries that differ between two lists read in order (`same_entry`: the same resource, maybe
/// changed), old and new versions both, or `None` when the unchanged ones are not in the same order
/// (the first one naming a host wins, so order matters).
fn changed_entries<'a, T: PartialEq>(
    before: &'a [T],
    after: &'a [T],
    same_entry: impl Fn(&T, &T) -> bool,
) -> Option<Vec<&'a T>> {
    // The usual edit: the same resources in the same order, some of them changed.
    if before.len() == after.len() && before.iter().zip(after).all(|(b, a)| same_entry(b, a)) {
        return Some(
            before
                .iter()
                .zip(after)
                .filter(|(b, a)| b != a)
                .flat_map(|(b, a)| [b, a])
                .collect(),
        );
    }
    // Added or removed ones: the others must keep their order.
    let kept_before = before.iter().filter(|x| after.contains(x));
    let kept_after = after.iter().filter(|x| before.contains(x));
    if !kept_before.eq(kept_after) {
        return None;
    }
    let gone = before.iter().filter(|x| !after.contains(x));
    let new = after.iter().filter(|x| !before.contains(x));
    Some(gone.chain(new).collect())
}

/// Whether `hosts` are exact names (no wildcard) and there is at least one (a VirtualService
/// without hosts is a delegate, merged into others).
fn exact_hosts<'a>(hosts: impl IntoIterator<Item = &'a String>) -> bool {
    let mut any = false;
    for h in hosts {
        if h.contains('*') {
            return false;
        }
        any = true;
    }
    any
}

/// A PeerAuthentication mode; `None` for UNSET (or none given): the next level decides.
fn peer_mode_of(mtls: Option<&mesh_api::types::security::MutualTls>) -> Option<PeerMode> {
    use mesh_api::types::security::MtlsMode;
    match mtls.and_then(|m| m.mode) {
        Some(MtlsMode::Strict) => Some(PeerMode::Strict),
        Some(MtlsMode::Permissive) => Some(PeerMode::Permissive),
        Some(MtlsMode::Disable) => Some(PeerMode::Disable),
        Some(MtlsMode::Unset) | None => None,
    }
}

/// Whether a DestinationRule's policy, at any level (rule, port, subset), is `ISTIO_MUTUAL`.
fn asks_istio_mutual(rule: &DestinationRuleSpec) -> bool {
    use mesh_api::types::destination_rule::{ClientTlsMode, TrafficPolicy};
    let mutual = |tls: Option<&mesh_api::types::destination_rule::ClientTlsSettings>| {
        tls.is_some_and(|t| t.mode == Some(ClientTlsMode::IstioMutual))
    };
    let policy = |p: &TrafficPolicy| {
        mutual(p.tls.as_ref()) || p.port_level_settings.iter().any(|l| mutual(l.tls.as_ref()))
    };
    rule.traffic_policy.as_ref().is_some_and(policy)
        || rule
            .subsets
            .iter()
            .filter_map(|s| s.traffic_policy.as_ref())
            .any(policy)
}

/// The hostnames of services added, removed, or changed in anything but their instances.
fn changed_services(before: &ServiceRegistry, after: &ServiceRegistry) -> HashSet<String> {
    let (b, a) = (&before.services, &after.services);
    let changed = b.iter().filter(|(host, s)| {
        a.get(*host)
            .is_none_or(|other| !same_but_instances(s, other))
    });
    let added = a.keys().filter(|host| !b.contains_key(*host));
    changed
        .map(|(host, _)| host)
        .chain(added)
        .cloned()
        .collect()
}

impl Index {
    /// The instances at `address` in `namespace` (a proxy's own workload), with their services, in
    /// hostname order.
    pub fn instances_at<'a>(
        &'a self,
        address: &str,
        namespace: &'a str,
    ) -> impl Iterator<Item = (&'a Service, &'a Instance)> + 'a {
        self.services
            .instances_at(address)
            .filter(move |(_, instance)| instance.namespace == namespace)
    }

    pub fn build<R: Borrow<Resource>>(
        registry: &Registry,
        resources: &[R],
        mesh: MeshSettings,
    ) -> Index {
        let services = Arc::new(ServiceRegistry::build(registry, resources));
        Index::with_services(services, resources, mesh)
    }

    /// [`Index::build`] over services already built from the same mesh file and resources.
    pub fn with_services<R: Borrow<Resource>>(
        services: Arc<ServiceRegistry>,
        resources: &[R],
        mesh: MeshSettings,
    ) -> Index {
        let mut index = Index {
            warnings: services.warnings.clone(),
            mesh,
            ..Index::default()
        };
        if let Some(settings) = &index.mesh.access_log {
            let (log, warning) = crate::generate::access_log::access_log(settings);
            index.access_log = Some(log);
            index.warnings.extend(warning);
        }
        let exists = |h: &str| services.services.contains_key(h);
        for r in resources.iter().map(Borrow::borrow) {
            match &r.spec {
                Spec::VirtualService(vs) => {
                    let gateways = if vs.gateways.is_empty() {
                        vec!["mesh".to_owned()]
                    } else {
                        vs.gateways
                            .iter()
                            .map(|g| qualify_gateway(g, &r.namespace))
                            .collect()
                    };
                    index.virtual_services.push(VirtualService {
                        name: r.name.clone(),
                        namespace: r.namespace.clone(),
                        hosts: vs
                            .hosts
                            .iter()
                            .map(|h| resolve_host(h, &r.namespace, exists))
                            .collect(),
                        gateways,
                        spec: vs.clone(),
                    });
                }
                Spec::DestinationRule(dr) => {
                    let Some(host) = &dr.host else { continue };
                    index.destination_rules.push(DestinationRule {
                        name: r.name.clone(),
                        namespace: r.namespace.clone(),
                        host: resolve_host(host, &r.namespace, exists),
                        spec: dr.clone(),
                    });
                }
                Spec::Gateway(g) => index.gateways.push(Gateway {
                    name: r.name.clone(),
                    namespace: r.namespace.clone(),
                    spec: g.clone(),
                }),
                Spec::Sidecar(s) => index.sidecars.push(Sidecar {
                    name: r.name.clone(),
                    namespace: r.namespace.clone(),
                    spec: s.clone(),
                }),
                Spec::PeerAuthentication(p) => {
                    index.peer_authentications.push(PeerAuthentication {
                        name: r.name.clone(),
                        namespace: r.namespace.clone(),
                        spec: p.clone(),
                    });
                }
                _ => {}
            }
        }
        index.services = services;
        index.mesh_tls = index
            .destination_rules
            .iter()
            .any(|d| asks_istio_mutual(&d.spec))
            || index.peer_authentications.iter().any(|p| {
                use mesh_api::types::security::MtlsMode;
                matches!(
                    p.spec.mtls.as_ref().and_then(|m| m.mode),
                    Some(MtlsMode::Strict | MtlsMode::Permissive)
                )
            });
        index.merge_delegates();
        // After merging, so a delegate's conditions count through its root; tcp and tls matches
        // select proxies too.
        for vs in &index.virtual_services {
            let http = vs
                .spec
                .http
                .iter()
                .flat_map(|h| &h.r#match)
                .map(|m| (&m.source_labels, &m.source_namespace));
            let tcp = vs
                .spec
                .tcp
                .iter()
                .flat_map(|t| &t.r#match)
                .map(|m| (&m.source_labels, &m.source_namespace));
            let tls = vs
                .spec
                .tls
                .iter()
                .flat_map(|t| &t.r#match)
                .map(|m| (&m.source_labels, &m.source_namespace));
            for (labels, namespace) in http.chain(tcp).chain(tls) {
                let selector = (labels.clone(), namespace.clone());
                if (!selector.0.is_empty() || selector.1.is_some())
                    && !index.source_selectors.contains(&selector)
                {
                    index.source_selectors.push(selector);
                }
            }
        }
        for (i, dr) in index.destination_rules.iter().enumerate() {
            if dr.host.contains('*') {
                index.dr_wildcards.push(i);
            } else {
                index.dr_by_host.entry(dr.host.clone()).or_default().push(i);
            }
        }
        for (i, vs) in index.virtual_services.iter().enumerate() {
            if !vs.applies_to_mesh() {
                continue;
            }
            for h in &vs.hosts {
                if h.contains('*') {
                    if !index.vs_wildcards.contains(&i) {
                        index.vs_wildcards.push(i);
                    }
                } else {
                    index.vs_by_host.entry(h.clone()).or_default().push(i);
                }
            }
        }
        index
    }

    /// Replaces the delegating HTTP routes of root VirtualServices with their delegates' routes.
    fn merge_delegates(&mut self) {
        let roots: Vec<usize> = (0..self.virtual_services.len())
            .filter(|&i| {
                self.virtual_services[i]
                    .spec
                    .http
                    .iter()
                    .any(|h| h.delegate.is_some())
            })
            .collect();
        for i in roots {
            let (http, warnings) = crate::delegate::merge_delegates(
                &self.virtual_services[i],
                &self.virtual_services,
                &self.services,
            );
            self.virtual_services[i].spec.http = http;
            self.warnings.extend(warnings);
        }
    }

    /// The Sidecar resource that scopes `proxy`: one in its namespace selecting its labels, else the
    /// one in its namespace without a selector, else the root namespace's.
    pub fn sidecar_for<'a>(&'a self, proxy: &'a Proxy) -> Option<&'a Sidecar> {
        let in_ns = |ns: &'a str| self.sidecars.iter().filter(move |s| s.namespace == ns);
        in_ns(&proxy.namespace)
            .find(|s| {
                s.spec
                    .workload_selector
                    .as_ref()
                    .is_some_and(|sel| labels_match(&proxy.labels, &sel.labels))
            })
            .or_else(|| in_ns(&proxy.namespace).find(|s| s.spec.workload_selector.is_none()))
            .or_else(|| in_ns(ROOT_NAMESPACE).find(|s| s.spec.workload_selector.is_none()))
    }

    /// How `proxy`'s workload takes connections from its peers, as istiod decides it: the
    /// PeerAuthentication selecting the workload in its namespace, else its namespace's (no
    /// selector), else the mesh's (`istio-system`, no selector), each level's `UNSET` deferring to
    /// the next; PERMISSIVE when none says.
    pub fn peer_mode(&self, proxy: &Proxy) -> PeerMode {
        let all = &self.peer_authentications;
        let workload = all.iter().find(|p| {
            p.namespace == proxy.namespace
                && p.spec
                    .selector
                    .as_ref()
                    .is_some_and(|s| labels_match(&proxy.labels, &s.match_labels))
        });
        let namespace = all
            .iter()
            .find(|p| p.namespace == proxy.namespace && p.spec.selector.is_none());
        let mesh = all
            .iter()
            .find(|p| p.namespace == ROOT_NAMESPACE && p.spec.selector.is_none());
        let mode_of = |p: &PeerAuthentication| peer_mode_of(p.spec.mtls.as_ref());
        [workload, namespace, mesh]
            .into_iter()
            .flatten()
            .find_map(mode_of)
            .unwrap_or(PeerMode::Permissive)
    }

    /// The `portLevelMtls` of the PeerAuthentication selecting `proxy`'s workload (Istio reads them only
    /// there), by workload port; a port's `UNSET` defers to [`peer_mode`](Self::peer_mode).
    pub fn peer_port_modes(&self, proxy: &Proxy) -> BTreeMap<u32, PeerMode> {
        self.peer_authentications
            .iter()
            .find(|p| {
                p.namespace == proxy.namespace
                    && p.spec
                        .selector
                        .as_ref()
                        .is_some_and(|s| labels_match(&proxy.labels, &s.match_labels))
            })
            .map(|p| {
                p.spec
                    .port_level_mtls
                    .iter()
                    .filter_map(|(port, m)| Some((port.parse().ok()?, peer_mode_of(Some(m))?)))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn outbound_policy(&self, proxy: &Proxy) -> OutboundTrafficPolicyMode {
        self.sidecar_for(proxy)
            .and_then(|s| s.spec.outbound_traffic_policy.as_ref())
            .and_then(|p| p.mode)
            .unwrap_or(self.mesh.outbound_policy)
    }

    /// Whether the proxy's Sidecar (if any) lets it reach `host` of `namespace` (egress `hosts` entries
    /// `NS/HOST`, `./HOST`, `*/HOST`, with `*` wildcards).
    pub fn egress_allows(&self, proxy: &Proxy, host: &str, namespace: &str) -> bool {
        let Some(sidecar) = self.sidecar_for(proxy) else {
            return true;
        };
        if sidecar.spec.egress.is_empty() {
            return true;
        }
        sidecar.spec.egress.iter().flat_map(|e| &e.hosts).any(|h| {
            let (ns, pattern) = h.split_once('/').unwrap_or(("*", h.as_str()));
            let ns_ok =
                ns == "*" || ns == namespace || (ns == "." && namespace == sidecar.namespace);
            ns_ok && host_matches(pattern, host)
        })
    }

    /// The DestinationRule for `host` as a proxy in `proxy_namespace` sees it: one in the proxy's
    /// namespace, else the service's, else the root namespace; an exact host before a wildcard.
    pub fn destination_rule(
        &self,
        host: &str,
        proxy_namespace: &str,
        service_namespace: &str,
    ) -> Option<&DestinationRule> {
        let visible = |dr: &&DestinationRule| {
            dr.spec.export_to.is_empty()
                || dr.spec.export_to.iter().any(|e| {
                    e == "*"
                        || e == proxy_namespace
                        || (e == "." && dr.namespace == proxy_namespace)
                })
        };
        let exact = self.dr_by_host.get(host).into_iter().flatten();
        let candidates: Vec<&DestinationRule> = exact
            .chain(&self.dr_wildcards)
            .map(|&i| &self.destination_rules[i])
            .filter(|dr| host_matches(&dr.host, host))
            .filter(visible)
            .collect();
        let best_in = |ns: &str| {
            candidates
                .iter()
                .copied()
                .filter(|dr| dr.namespace == ns)
                .max_by_key(|dr| (dr.host == host, dr.host.len()))
        };
        best_in(proxy_namespace)
            .or_else(|| best_in(service_namespace))
            .or_else(|| best_in(ROOT_NAMESPACE))
    }

    /// The mesh VirtualService that routes `host` for proxies in `namespace` (the first one naming it
    /// exactly, else the first whose wildcard covers it).
    pub fn mesh_virtual_service(&self, host: &str, namespace: &str) -> Option<&VirtualService> {
        let visible = |i: &&usize| self.virtual_services[**i].visible_from(namespace);
        // The first (in reading order) naming the host exactly, else the first wildcard covering it.
        let exact = self
            .vs_by_host
            .get(host)
            .and_then(|v| v.iter().find(visible));
        let wildcard = || {
            self.vs_wildcards.iter().filter(visible).find(|&&i| {
                self.virtual_services[i]
                    .hosts
                    .iter()
                    .any(|h| host_matches(h, host))
            })
        };
        exact.or_else(wildcard).map(|&i| &self.virtual_services[i])
    }

    /// Every mesh VirtualService visible from `namespace` with a host covering `host`, in reading
    /// order: TCP and TLS routes of all of them apply (istiod's `getConfigsForHost`).
    pub fn mesh_virtual_services<'a>(
        &'a self,
        host: &'a str,
        namespace: &'a str,
    ) -> impl Iterator<Item = &'a VirtualService> + 'a {
        let exact = self.vs_by_host.get(host).into_iter().flatten();
        let wildcards = self.vs_wildcards.iter().filter(move |&&i| {
            self.virtual_services[i]
                .hosts
                .iter()
                .any(|h| host_matches(h, host))
        });
        let mut indices: Vec<usize> = exact.chain(wildcards).copied().collect();
        indices.sort_unstable();
        indices.dedup();
        indices
            .into_iter()
            .map(|i| &self.virtual_services[i])
            .filter(move |vs| vs.visible_from(namespace))
    }

    /// The Gateways whose selector picks `proxy`.
    pub fn gateways_for<'a>(&'a self, proxy: &'a Proxy) -> impl Iterator<Item = &'a Gateway> + 'a {
        self.gateways.iter().filter(|g| {
            !g.spec.selector.is_empty() && labels_match(&proxy.labels, &g.spec.selector)
        })
    }

    /// Which of [`source_selectors`](Self::source_selectors) select `proxy`.
    pub fn source_signature(&self, proxy: &Proxy) -> Vec<bool> {
        self.source_selectors
            .iter()
            .map(|(labels, ns)| {
                labels_match(&proxy.labels, labels)
                    && ns.as_ref().is_none_or(|n| *n == proxy.namespace)
            })
            .collect()
    }

    /// What changed since `before` for sidecars' outbound route tables.
    pub fn route_change_since(&self, before: &Index) -> RouteChange {
        if self.sidecars != before.sidecars
            || self.gateways != before.gateways
            || self.mesh != before.mesh
            || self.source_selectors != before.source_selectors
        {
            return RouteChange::Everything;
        }
        let same = |a: &str, b: &str, c: &str, d: &str| a == c && b == d;
        let (Some(vs), Some(dr)) = (
            changed_entries(&before.virtual_services, &self.virtual_services, |b, a| {
                same(&b.name, &b.namespace, &a.name, &a.namespace)
            }),
            changed_entries(
                &before.destination_rules,
                &self.destination_rules,
                |b, a| same(&b.name, &b.namespace, &a.name, &a.namespace),
            ),
        ) else {
            return RouteChange::Everything;
        };
        let services = if Arc::ptr_eq(&before.services, &self.services) {
            HashSet::new()
        } else {
            changed_services(&before.services, &self.services)
        };
        if vs.is_empty() && dr.is_empty() && services.is_empty() {
            return RouteChange::Nothing;
        }
        if !vs.iter().all(|v| exact_hosts(&v.hosts)) || !dr.iter().all(|d| exact_hosts([&d.host])) {
            return RouteChange::Everything;
        }
        let others_too = !services.is_empty() || !dr.is_empty();
        let mut hosts = services;
        hosts.extend(vs.iter().flat_map(|v| v.hosts.iter().cloned()));
        hosts.extend(dr.iter().map(|d| d.host.clone()));
        if others_too {
            // A VirtualService's routes name other services (their ports, their DestinationRules'
            // hash policies): every host with one is rebuilt when a service or a rule changed.
            for v in before.virtual_services.iter().chain(&self.virtual_services) {
                if !exact_hosts(&v.hosts) {
                    return RouteChange::Everything;
                }
                hosts.extend(v.hosts.iter().cloned());
            }
        }
        RouteChange::Hosts(hosts)
    }

    /// Whether every sidecar's outbound clusters (and their endpoints) are as `before` built them:
    /// they depend on the services with their instances, DestinationRules, Sidecars (scopes), the
    /// mesh settings and whether mesh TLS is in use. A change of VirtualServices alone keeps them.
    pub fn clusters_unchanged_since(&self, before: &Index) -> bool {
        self.mesh_tls == before.mesh_tls
            && self.mesh == before.mesh
            && self.sidecars == before.sidecars
            && self.destination_rules == before.destination_rules
            && (Arc::ptr_eq(&self.services, &before.services)
                || self.services.services == before.services.services)
    }

    /// Whether the rules a captured sidecar's outbound listeners read are as in `before`: the same
    /// DestinationRules (a TCP route's idle timeout and hashing), and the same VirtualServices but
    /// for their HTTP routes (their TCP and TLS routes make the listeners' filter chains; their
    /// HTTP routes only the route tables' hosts).
    pub fn listener_rules_unchanged_since(&self, before: &Index) -> bool {
        self.destination_rules == before.destination_rules
            && self.virtual_services.len() == before.virtual_services.len()
            && self
                .virtual_services
                .iter()
                .zip(&before.virtual_services)
                .all(|(a, b)| {
                    a.name == b.name
                        && a.namespace == b.namespace
                        && a.hosts == b.hosts
                        && a.gateways == b.gateways
                        && a.spec.tcp == b.spec.tcp
                        && a.spec.tls == b.spec.tls
                        && a.spec.export_to == b.spec.export_to
                })
    }

    /// Counts, for logs and `/debug`.
    pub fn summary(&self) -> BTreeMap<&'static str, usize> {
        BTreeMap::from([
            ("services", self.services.services.len()),
            (
                "endpoints",
                self.services
                    .services
                    .values()
                    .map(|s| s.instances.len())
                    .sum(),
            ),
            ("virtualservices", self.virtual_services.len()),
            ("destinationrules", self.destination_rules.len()),
            ("gateways", self.gateways.len()),
            ("sidecars", self.sidecars.len()),
        ])
    }
}

/// `name` in a VirtualService of `namespace` means `namespace/name`; `mesh` stays `mesh`.
pub fn qualify_gateway(gateway: &str, namespace: &str) -> String {
    if gateway == "mesh" || gateway.contains('/') {
        gateway.to_owned()
    } else {
        // `name.namespace.svc.cluster.local` and `name.namespace` forms name a gateway in another namespace.
        match gateway.split_once('.') {
            Some((name, rest)) => {
                let ns = rest.split('.').next().unwrap_or(rest);
                format!("{ns}/{name}")
            }
            None => format!("{namespace}/{gateway}"),
        }
    }
}
