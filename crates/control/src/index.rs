//! The push index (istiod's PushContext): one immutable view of the config and the registry, built
//! once per push and shared by the generation of every proxy's resources.

use std::collections::BTreeMap;

use mesh_api::registry::Registry;
use mesh_api::resource::{Resource, Spec};
use mesh_api::types::destination_rule::DestinationRuleSpec;
use mesh_api::types::gateway::GatewaySpec;
use mesh_api::types::sidecar::{OutboundTrafficPolicyMode, SidecarSpec};
use mesh_api::types::virtual_service::VirtualServiceSpec;

use crate::model::{ServiceRegistry, host_matches, labels_match, resolve_host};
use crate::node::Proxy;

/// Istio's root namespace: its Sidecar and DestinationRules apply mesh-wide.
pub const ROOT_NAMESPACE: &str = "istio-system";

/// A VirtualService with its hosts resolved to FQDNs (relative to its namespace).
#[derive(Debug, Clone)]
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
    pub spec: DestinationRuleSpec,
}

#[derive(Debug, Clone)]
pub struct Gateway {
    pub name: String,
    pub namespace: String,
    pub spec: GatewaySpec,
}

#[derive(Debug, Clone)]
pub struct Sidecar {
    pub name: String,
    pub namespace: String,
    pub spec: SidecarSpec,
}

/// Mesh-wide settings (Istio's MeshConfig), from the mesh file and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeshSettings {
    pub outbound_policy: OutboundTrafficPolicyMode,
}

impl Default for MeshSettings {
    fn default() -> Self {
        MeshSettings {
            outbound_policy: OutboundTrafficPolicyMode::AllowAny,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Index {
    pub services: ServiceRegistry,
    /// In the order they were read (Istio orders by creation time; the first claiming a host wins).
    pub virtual_services: Vec<VirtualService>,
    pub destination_rules: Vec<DestinationRule>,
    pub gateways: Vec<Gateway>,
    pub sidecars: Vec<Sidecar>,
    pub mesh: MeshSettings,
    /// Proxy-independent problems worth a log line (unsupported fields, shadowed hosts).
    pub warnings: Vec<String>,
}

impl Index {
    pub fn build(registry: &Registry, resources: &[Resource], mesh: MeshSettings) -> Index {
        let services = ServiceRegistry::build(registry, resources);
        let mut index = Index {
            warnings: services.warnings.clone(),
            mesh,
            ..Index::default()
        };
        let exists = |h: &str| services.services.contains_key(h);
        for r in resources {
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
                        spec: (**dr).clone(),
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
                _ => {}
            }
        }
        index.services = services;
        index
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
        let best_in = |ns: &str| {
            let candidates = self
                .destination_rules
                .iter()
                .filter(|dr| dr.namespace == ns && host_matches(&dr.host, host))
                .filter(visible);
            candidates.max_by_key(|dr| (dr.host == host, dr.host.len()))
        };
        best_in(proxy_namespace)
            .or_else(|| best_in(service_namespace))
            .or_else(|| best_in(ROOT_NAMESPACE))
    }

    /// The mesh VirtualService that routes `host` for proxies in `namespace` (the first one naming it
    /// exactly, else the first whose wildcard covers it).
    pub fn mesh_virtual_service(&self, host: &str, namespace: &str) -> Option<&VirtualService> {
        let candidates = || {
            self.virtual_services
                .iter()
                .filter(|vs| vs.applies_to_mesh() && vs.visible_from(namespace))
        };
        candidates()
            .find(|vs| vs.hosts.iter().any(|h| h == host))
            .or_else(|| candidates().find(|vs| vs.hosts.iter().any(|h| host_matches(h, host))))
    }

    /// The Gateways whose selector picks `proxy`.
    pub fn gateways_for<'a>(&'a self, proxy: &'a Proxy) -> impl Iterator<Item = &'a Gateway> + 'a {
        self.gateways.iter().filter(|g| {
            !g.spec.selector.is_empty() && labels_match(&proxy.labels, &g.spec.selector)
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
