//! The service model: every service the mesh knows, from the mesh file (Kubernetes' Services and
//! Pods), ServiceEntries and WorkloadEntries, with its ports and instances. istiod calls this the
//! service registry; hosts are its keys.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use mesh_api::registry::{Registry, RegistryWorkload};
use mesh_api::resource::{Resource, Spec};
use mesh_api::types::service_entry::{Location, Resolution as SeResolution};
use mesh_api::types::workload_entry::WorkloadEntrySpec;

/// The DNS suffix of Kubernetes services.
pub const CLUSTER_DOMAIN: &str = "svc.cluster.local";

/// The port a sidecar in interception mode `NONE` takes inbound traffic on.
pub const INBOUND_PORT: u32 = 15006;
/// The port a sidecar in interception mode `NONE` takes outbound traffic on (an explicit HTTP proxy).
pub const OUTBOUND_PORT: u32 = 15001;

/// Application protocols, from a port's `protocol` or its name prefix (`http-web`), as Istio reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    Http,
    Http2,
    Grpc,
    Https,
    Tls,
    Tcp,
    /// Not declared: Istio sniffs; Bosun treats it as HTTP.
    Unknown,
}

impl Protocol {
    pub fn parse(protocol: Option<&str>, port_name: Option<&str>) -> Protocol {
        let from = |s: &str| match s.to_ascii_uppercase().as_str() {
            "HTTP" => Some(Protocol::Http),
            "HTTP2" => Some(Protocol::Http2),
            "GRPC" | "GRPC-WEB" => Some(Protocol::Grpc),
            "HTTPS" => Some(Protocol::Https),
            "TLS" => Some(Protocol::Tls),
            "TCP" | "MONGO" | "MYSQL" | "REDIS" => Some(Protocol::Tcp),
            _ => None,
        };
        protocol
            .and_then(from)
            .or_else(|| port_name.and_then(|n| from(n.split('-').next().unwrap_or(n))))
            .unwrap_or(Protocol::Unknown)
    }

    /// Whether the proxy routes it as HTTP (virtual hosts and routes) rather than as a TCP stream.
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Protocol::Http | Protocol::Http2 | Protocol::Grpc | Protocol::Unknown
        )
    }

    /// Whether the upstream speaks HTTP/2.
    pub fn is_h2(self) -> bool {
        matches!(self, Protocol::Http2 | Protocol::Grpc)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub number: u32,
    pub name: String,
    pub protocol: Protocol,
    /// The port the workload listens on (Kubernetes' targetPort), when it differs.
    pub target_port: Option<u32>,
}

impl ServicePort {
    /// A port as the mesh file or a ServiceEntry declares it (none without a number); the protocol
    /// from `protocol`, else the name's prefix, as Istio's.
    fn declared(
        number: Option<u32>,
        name: &Option<String>,
        protocol: &Option<String>,
        target_port: Option<u32>,
    ) -> Option<ServicePort> {
        Some(ServicePort {
            number: number?,
            name: name.clone().unwrap_or_default(),
            protocol: Protocol::parse(protocol.as_deref(), name.as_deref()),
            target_port,
        })
    }
}

/// How a proxy finds a service's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Known instances, sent over EDS.
    Static,
    /// The host (or each endpoint address) resolved by the proxy's DNS.
    Dns,
    /// No endpoints: traffic goes where it was addressed (ServiceEntry `resolution: NONE`).
    Passthrough,
}

/// One instance of a service: a pod, a VM or a ServiceEntry endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub name: String,
    pub namespace: String,
    pub address: String,
    pub labels: BTreeMap<String, String>,
    /// Port overrides by service port name (ServiceEntry endpoints' `ports` map).
    pub ports: BTreeMap<String, u32>,
    /// Whether a sidecar fronts it (then, in interception mode `NONE`, traffic goes to its inbound port).
    pub sidecar: bool,
    pub weight: Option<u32>,
    pub service_account: Option<String>,
}

impl Instance {
    /// The port this instance serves `port` of its service on.
    pub fn target_port(&self, port: &ServicePort) -> u32 {
        self.ports
            .get(&port.name)
            .copied()
            .or(port.target_port)
            .unwrap_or(port.number)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// The FQDN (`reviews.default.svc.cluster.local`) or a ServiceEntry host (`api.example.com`, `*.x.com`).
    pub hostname: String,
    pub namespace: String,
    pub ports: Vec<ServicePort>,
    pub resolution: Resolution,
    pub external: bool,
    /// The namespaces that can see it (`.`/`*`/names); empty: all.
    pub export_to: Vec<String>,
    /// Its virtual IPs and, for a ServiceEntry, CIDR ranges (`10.0.0.0/24`): where clients send it
    /// TCP, told apart from other services on the same port by the destination.
    pub addresses: Vec<String>,
    pub instances: Vec<Instance>,
}

impl Service {
    pub fn port(&self, number: u32) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.number == number)
    }

    /// Whether a proxy in `namespace` may see the service.
    pub fn visible_from(&self, namespace: &str) -> bool {
        self.export_to.is_empty()
            || self
                .export_to
                .iter()
                .any(|e| e == "*" || (e == "." && namespace == self.namespace) || e == namespace)
    }

    /// The names a client in `namespace` can use for it (the Host header, before the port): as
    /// istiod, any `NAME.NS.svc.cluster.local` host (a ServiceEntry's too) also answers to
    /// `NAME.NS.svc`, `NAME.NS`, and `NAME` from its own namespace.
    pub fn aliases(&self, namespace: &str) -> Vec<String> {
        let mut names = vec![self.hostname.clone()];
        let short = self
            .hostname
            .strip_suffix(&format!(".{CLUSTER_DOMAIN}"))
            .and_then(|rest| rest.split_once('.'))
            .filter(|(_, ns)| !ns.contains('.'));
        if let Some((name, ns)) = short {
            names.push(format!("{name}.{ns}.svc"));
            names.push(format!("{name}.{ns}"));
            if namespace == ns {
                names.push(name.to_owned());
            }
        }
        // As istiod, a request may name the service by its virtual IP (`[...]` for IPv6, as a
        // Host header writes it).
        names.extend(self.virtual_ips().map(|ip| match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        }));
        names
    }

    /// Its single addresses (a Kubernetes Service's cluster IPs, a ServiceEntry's IPs).
    pub fn virtual_ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.addresses.iter().filter_map(|a| a.parse().ok())
    }

    /// Its address ranges (a ServiceEntry's `10.0.0.0/24`).
    pub fn address_ranges(&self) -> impl Iterator<Item = &str> {
        self.addresses
            .iter()
            .map(String::as_str)
            .filter(|a| a.contains('/'))
    }
}

/// Every service, by hostname.
#[derive(Debug, Clone, Default)]
pub struct ServiceRegistry {
    pub services: BTreeMap<String, Service>,
    /// Problems found while building it (a ServiceEntry host clashing with a service, …): logged.
    pub warnings: Vec<String>,
    /// Each address's instances, as (hostname, position in its service's instances), in hostname
    /// order: what a proxy's own workload serves, found without scanning every instance per proxy.
    /// Built with the services, so that pushes over the same services do not build it again.
    by_address: HashMap<String, Vec<(String, usize)>>,
}

/// Whether `labels` carry every key and value of `selector`.
pub fn labels_match(
    labels: &BTreeMap<String, String>,
    selector: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The pod label Istio's injection sets on workloads with a sidecar (`istio`), and istiod reads to
/// decide auto mTLS per endpoint: any other value says there is none.
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";

/// Whether a workload with `labels` has a sidecar: as its `security.istio.io/tlsMode` label says
/// when it has one, else `default`.
fn has_sidecar(labels: &BTreeMap<String, String>, default: bool) -> bool {
    labels
        .get(TLS_MODE_LABEL)
        .map_or(default, |mode| mode == "istio")
}

fn workload_instance(w: &RegistryWorkload) -> Option<Instance> {
    Some(Instance {
        name: w.name.clone(),
        namespace: w.namespace().to_owned(),
        address: w.address.clone()?,
        labels: w.labels.clone(),
        ports: BTreeMap::new(),
        sidecar: w.sidecar.unwrap_or_else(|| has_sidecar(&w.labels, true)),
        weight: None,
        service_account: w.service_account.clone(),
    })
}

/// A ServiceEntry endpoint or WorkloadEntry; `in_mesh` (MESH_INTERNAL) workloads have a sidecar
/// unless their `security.istio.io/tlsMode` label says otherwise.
fn entry_instance(name: &str, namespace: &str, e: &WorkloadEntrySpec, in_mesh: bool) -> Instance {
    Instance {
        name: name.to_owned(),
        namespace: namespace.to_owned(),
        address: e.address.clone().unwrap_or_default(),
        labels: e.labels.clone(),
        ports: e.ports.clone(),
        sidecar: in_mesh && has_sidecar(&e.labels, true),
        weight: e.weight,
        service_account: e.service_account.clone(),
    }
}

impl ServiceRegistry {
    /// Builds the services of the mesh file, then those of ServiceEntries (whose endpoints may be
    /// WorkloadEntries chosen by `workloadSelector`).
    pub fn build<R: Borrow<Resource>>(registry: &Registry, resources: &[R]) -> ServiceRegistry {
        let mut out = ServiceRegistry::default();
        // Instances by (namespace, service), so each service finds its own without scanning them all.
        let mut by_service: HashMap<(&str, &str), Vec<Instance>> = HashMap::new();
        for w in &registry.workloads {
            let Some(instance) = workload_instance(w) else {
                continue;
            };
            for name in w.service.iter().chain(&w.services) {
                by_service
                    .entry((w.namespace(), name.as_str()))
                    .or_default()
                    .push(instance.clone());
            }
        }
        for s in &registry.services {
            let ns = s.namespace().to_owned();
            let instances = by_service
                .remove(&(s.namespace(), s.name.as_str()))
                .unwrap_or_default();
            let service = Service {
                hostname: s.hostname(),
                namespace: ns,
                ports: s
                    .ports
                    .iter()
                    .filter_map(|p| {
                        ServicePort::declared(p.number, &p.name, &p.protocol, p.target_port)
                    })
                    .collect(),
                resolution: Resolution::Static,
                external: false,
                export_to: s.export_to.clone(),
                addresses: s.addresses.clone(),
                instances,
            };
            out.services.insert(service.hostname.clone(), service);
        }

        let workload_entries: Vec<(&Resource, &WorkloadEntrySpec)> = resources
            .iter()
            .map(Borrow::borrow)
            .filter_map(|r| match &r.spec {
                Spec::WorkloadEntry(w) => Some((r, w)),
                _ => None,
            })
            .collect();
        for r in resources.iter().map(Borrow::borrow) {
            let Spec::ServiceEntry(se) = &r.spec else {
                continue;
            };
            let external = se.location != Some(Location::MeshInternal);
            let resolution = match se.resolution {
                Some(SeResolution::Static) => Resolution::Static,
                Some(
                    SeResolution::Dns | SeResolution::DnsRoundRobin | SeResolution::DynamicDns,
                ) => Resolution::Dns,
                Some(SeResolution::None) | None => Resolution::Passthrough,
            };
            let mut instances: Vec<Instance> = se
                .endpoints
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    entry_instance(&format!("{}-{i}", r.name), &r.namespace, e, !external)
                })
                .collect();
            if let Some(selector) = &se.workload_selector {
                instances.extend(
                    workload_entries
                        .iter()
                        .filter(|(we, w)| {
                            we.namespace == r.namespace && labels_match(&w.labels, &selector.labels)
                        })
                        .map(|(we, w)| entry_instance(&we.name, &we.namespace, w, true)),
                );
            }
            let ports: Vec<ServicePort> = se
                .ports
                .iter()
                .filter_map(|p| {
                    ServicePort::declared(p.number, &p.name, &p.protocol, p.target_port)
                })
                .collect();
            for host in &se.hosts {
                if out.services.contains_key(host) {
                    out.warnings.push(format!(
                        "ServiceEntry {}/{}: host {host} is already a service; the ServiceEntry's version is used",
                        r.namespace, r.name
                    ));
                }
                out.services.insert(
                    host.clone(),
                    Service {
                        hostname: host.clone(),
                        namespace: r.namespace.clone(),
                        ports: ports.clone(),
                        resolution,
                        external,
                        export_to: se.export_to.clone(),
                        addresses: se.addresses.clone(),
                        instances: instances.clone(),
                    },
                );
            }
        }
        for service in out.services.values() {
            for (i, instance) in service.instances.iter().enumerate() {
                out.by_address
                    .entry(instance.address.clone())
                    .or_default()
                    .push((service.hostname.clone(), i));
            }
        }
        out
    }

    pub fn get(&self, host: &str) -> Option<&Service> {
        self.services.get(host)
    }

    /// The instances at `address`, with their services, in hostname order.
    pub fn instances_at<'a>(
        &'a self,
        address: &str,
    ) -> impl Iterator<Item = (&'a Service, &'a Instance)> + 'a {
        self.by_address
            .get(address)
            .into_iter()
            .flatten()
            .filter_map(|(host, i)| {
                let service = self.services.get(host)?;
                Some((service, service.instances.get(*i)?))
            })
    }

    /// Resolves a host as written in a resource of `namespace`: a short name (`reviews`) or
    /// `name.ns` to the FQDN of a known service; anything else as is.
    pub fn resolve(&self, host: &str, namespace: &str) -> String {
        resolve_host(host, namespace, |h| self.services.contains_key(h))
    }
}

/// Istio's short-name expansion: `reviews` in namespace `default` is `reviews.default.svc.cluster.local`;
/// `reviews.other` is tried as `reviews.other.svc.cluster.local` when that service exists.
pub fn resolve_host(host: &str, namespace: &str, exists: impl Fn(&str) -> bool) -> String {
    if host.contains('*') {
        return host.to_owned();
    }
    if !host.contains('.') {
        return format!("{host}.{namespace}.{CLUSTER_DOMAIN}");
    }
    if exists(host) {
        return host.to_owned();
    }
    let dots = host.matches('.').count();
    if dots == 1 {
        let fqdn = format!("{host}.{CLUSTER_DOMAIN}");
        if exists(&fqdn) {
            return fqdn;
        }
    }
    if let Some(base) = host.strip_suffix(".svc") {
        let fqdn = format!("{base}.{CLUSTER_DOMAIN}");
        if exists(&fqdn) {
            return fqdn;
        }
    }
    host.to_owned()
}

/// Whether `pattern` (a host or `*.suffix`, or `*`) covers `host`.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    if pattern == "*" || pattern == host {
        return true;
    }
    match pattern.strip_prefix('*') {
        Some(suffix) => host.ends_with(suffix) && host.len() > suffix.len(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_expand_in_the_resource_namespace() {
        let exists = |h: &str| h == "reviews.prod.svc.cluster.local";
        assert_eq!(
            resolve_host("reviews", "default", exists),
            "reviews.default.svc.cluster.local"
        );
        assert_eq!(
            resolve_host("reviews.prod", "default", exists),
            "reviews.prod.svc.cluster.local"
        );
        assert_eq!(
            resolve_host("api.example.com", "default", exists),
            "api.example.com"
        );
        assert_eq!(
            resolve_host("*.example.com", "default", exists),
            "*.example.com"
        );
    }

    #[test]
    fn wildcard_hosts_cover_subdomains_only() {
        assert!(host_matches("*.example.com", "api.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(host_matches("*", "anything"));
        assert!(host_matches("a.b", "a.b"));
        assert!(!host_matches("a.b", "a.c"));
    }

    #[test]
    fn the_tls_mode_label_says_whether_a_workload_has_a_sidecar() {
        let registry = mesh_api::registry::load_registry_str(
            "services:
- name: reviews
  ports: [{number: 9080, name: http}]
workloads:
- {name: plain, service: reviews, address: 10.0.0.1}
- {name: labelled-off, service: reviews, address: 10.0.0.2, labels: {security.istio.io/tlsMode: disabled}}
- {name: explicit, service: reviews, address: 10.0.0.3, sidecar: true, labels: {security.istio.io/tlsMode: disabled}}
",
        )
        .expect("mesh file");
        let entries = crate::store::parse_resources(
            "se.yaml",
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vms, namespace: default}
spec:
  hosts: [vms.internal]
  location: MESH_INTERNAL
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints:
  - {address: 10.1.0.1}
  - {address: 10.1.0.2, labels: {security.istio.io/tlsMode: disabled}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: default}
spec:
  hosts: [api.example.com]
  location: MESH_EXTERNAL
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints: [{address: 10.2.0.1, labels: {security.istio.io/tlsMode: istio}}]
",
        )
        .expect("valid");
        let services = ServiceRegistry::build(&registry, &entries);
        let sidecars = |host: &str| -> Vec<(String, bool)> {
            services.services[host]
                .instances
                .iter()
                .map(|i| (i.address.clone(), i.sidecar))
                .collect()
        };
        assert_eq!(
            sidecars("reviews.default.svc.cluster.local"),
            [
                ("10.0.0.1".to_owned(), true),
                ("10.0.0.2".to_owned(), false),
                // The mesh file's own field wins over the label.
                ("10.0.0.3".to_owned(), true),
            ]
        );
        assert_eq!(
            sidecars("vms.internal"),
            [
                ("10.1.0.1".to_owned(), true),
                ("10.1.0.2".to_owned(), false)
            ]
        );
        // Outside the mesh: never, whatever the label.
        assert_eq!(
            sidecars("api.example.com"),
            [("10.2.0.1".to_owned(), false)]
        );
    }

    #[test]
    fn protocol_from_name_prefix() {
        assert_eq!(Protocol::parse(None, Some("http-web")), Protocol::Http);
        assert_eq!(Protocol::parse(None, Some("grpc")), Protocol::Grpc);
        assert_eq!(Protocol::parse(Some("TCP"), Some("http")), Protocol::Tcp);
        assert_eq!(Protocol::parse(None, Some("web")), Protocol::Unknown);
    }
}
