//! Cross-resource analysis, like `istioctl analyze`: references that point nowhere and conflicts
//! between resources. (Rules that can never match are found per resource, by validation, as Istio's
//! webhook does: `validate::virtual_service`.) Messages and codes are Istio's, so they can be searched.
//!
//! What exists is learned from the inputs themselves (ServiceEntries, Gateways, DestinationRules,
//! Kubernetes Services and Pods in the same files) and from the registry (the mesh file). When nothing
//! says which Kubernetes services exist, in-cluster hosts are not judged: an unknown is not an error.

mod hosts;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::diag::{Finding, Severity, code};
use crate::path::FieldPath;
use crate::registry::Registry;
use crate::resource::{Resource, Spec};
use crate::types::destination_rule::DestinationRuleSpec;
use crate::types::gateway::GatewaySpec;
use crate::types::service_entry::ServiceEntrySpec;
use crate::types::virtual_service::{Destination, RouteDestination, VirtualServiceSpec};
use hosts::HostIndex;

/// Analyses a set of resources (and optionally a registry of services and workloads). Each finding
/// comes with the index of the resource it is about; its position is in that resource's document.
pub fn analyze(resources: &[Resource], registry: Option<&Registry>) -> Vec<(usize, Finding)> {
    let catalog = Catalog::new(resources, registry);
    let mut out = Out {
        resources,
        findings: Vec::new(),
    };
    for (index, resource) in resources.iter().enumerate() {
        match &resource.spec {
            Spec::VirtualService(vs) => {
                check_destinations(&catalog, &mut out, index, vs);
                check_gateway_refs(&catalog, &mut out, index, vs);
            }
            Spec::DestinationRule(dr) => check_destination_rule_host(&catalog, &mut out, index, dr),
            Spec::Gateway(gw) => check_gateway_selector(&catalog, &mut out, index, gw),
            Spec::ServiceEntry(se) => check_service_entry_addresses(&mut out, index, se),
            _ => {}
        }
    }
    check_conflicting_mesh_hosts(&mut out);
    out.findings
}

/// Collects findings, placing each in its resource's document.
struct Out<'a> {
    resources: &'a [Resource],
    findings: Vec<(usize, Finding)>,
}

impl Out<'_> {
    fn push(
        &mut self,
        index: usize,
        severity: Severity,
        code: &'static str,
        at: &FieldPath<'_>,
        message: String,
    ) {
        let pos = at.locate(&self.resources[index].node);
        self.findings.push((
            index,
            Finding {
                severity,
                code,
                message,
                field: at.to_string(),
                pos,
            },
        ));
    }
}

/// What the inputs and the registry say exists.
struct Catalog<'a> {
    resources: &'a [Resource],
    /// Kubernetes services by `(namespace, name)` with their port numbers; `None` when neither the
    /// registry nor the inputs list any, so in-cluster hosts cannot be judged.
    services: Option<HashMap<(String, String), KnownService<'a>>>,
    /// Workload labels, `None` when nothing lists workloads.
    workloads: Option<Vec<&'a BTreeMap<String, String>>>,
    /// ServiceEntries by each of their hosts (as written: ServiceEntry hosts are not namespace-relative).
    service_entries: HostIndex<(&'a Resource, &'a ServiceEntrySpec)>,
    /// DestinationRules by their host, resolved in their namespace.
    destination_rules: HostIndex<(&'a Resource, &'a DestinationRuleSpec)>,
    gateways: HashMap<(&'a str, &'a str), &'a GatewaySpec>,
}

struct KnownService<'a> {
    ports: Vec<u32>,
    export_to: &'a [String],
}

/// What a destination host turned out to be.
enum Lookup {
    /// Defined, with these ports (empty: any port).
    Found(Vec<u32>),
    NotFound,
    /// Nothing tells which Kubernetes services exist.
    Unknown,
}

impl<'a> Catalog<'a> {
    fn new(resources: &'a [Resource], registry: Option<&'a Registry>) -> Self {
        let services = registry.filter(|r| !r.services.is_empty()).map(|r| {
            r.services
                .iter()
                .map(|s| {
                    let known = KnownService {
                        ports: s.ports.iter().filter_map(|p| p.number).collect(),
                        export_to: &s.export_to,
                    };
                    ((s.namespace().to_owned(), s.name.clone()), known)
                })
                .collect()
        });
        let workloads = registry
            .filter(|r| !r.workloads.is_empty())
            .map(|r| r.workloads.iter().map(|w| &w.labels).collect());
        let mut catalog = Catalog {
            resources,
            services,
            workloads,
            service_entries: HostIndex::default(),
            destination_rules: HostIndex::default(),
            gateways: HashMap::new(),
        };
        for r in resources {
            match &r.spec {
                Spec::ServiceEntry(se) => {
                    for host in &se.hosts {
                        catalog.service_entries.insert(host, (r, se));
                    }
                }
                Spec::DestinationRule(dr) => {
                    let host = hosts::resolve(dr.host.as_deref().unwrap_or_default(), &r.namespace);
                    catalog.destination_rules.insert(&host, (r, dr.as_ref()));
                }
                Spec::Gateway(gw) => {
                    catalog.gateways.insert((&r.namespace, &r.name), gw);
                }
                _ => {}
            }
        }
        catalog
    }

    /// Istio's `GetDestinationHost`: a ServiceEntry host, else a Kubernetes service, that `host`
    /// (written in `namespace`) names and that is visible from every namespace in `seen_from`.
    fn lookup(&self, host: &str, namespace: &str, seen_from: &[&str]) -> Lookup {
        let fqdn = hosts::resolve(host, namespace);
        let visible = |export_to: &[String], owner: &str| {
            seen_from
                .iter()
                .all(|ns| hosts::exported_to(export_to, owner, ns))
        };
        let entries = self.service_entries.covering(host);
        let entries = entries.chain(self.service_entries.covering(&fqdn));
        for (r, se) in entries {
            if visible(&se.export_to, &r.namespace) {
                return Lookup::Found(se.ports.iter().filter_map(|p| p.number).collect());
            }
        }
        match (hosts::kubernetes_service(host, namespace), &self.services) {
            (Some((name, ns)), Some(services)) => match services.get(&(ns, name)) {
                Some(s) if visible(s.export_to, &key_namespace(host, namespace)) => {
                    Lookup::Found(s.ports.clone())
                }
                _ => Lookup::NotFound,
            },
            (Some(_), None) => Lookup::Unknown,
            (None, _) if hosts::is_cluster_local(&fqdn) && self.services.is_none() => {
                Lookup::Unknown
            }
            (None, _) => Lookup::NotFound,
        }
    }

    /// Whether a DestinationRule visible from `namespace` defines `subset` for `host`.
    fn has_subset(&self, host: &str, namespace: &str, subset: &str) -> bool {
        let fqdn = hosts::resolve(host, namespace);
        self.destination_rules.covering(&fqdn).any(|(r, dr)| {
            hosts::exported_to(&dr.export_to, &r.namespace, namespace)
                && dr.subsets.iter().any(|s| s.name.as_deref() == Some(subset))
        })
    }
}

/// The namespace of the Kubernetes service a host names (for its `exportTo`).
fn key_namespace(host: &str, namespace: &str) -> String {
    hosts::kubernetes_service(host, namespace).map_or_else(|| namespace.to_owned(), |(_, ns)| ns)
}

/// The namespaces a VirtualService's routes are used from: those it is exported to (`*` or none:
/// judged from its own namespace).
fn used_from<'a>(export_to: &'a [String], namespace: &'a str) -> Vec<&'a str> {
    let listed: Vec<&str> = export_to
        .iter()
        .map(|e| if e == "." { namespace } else { e.as_str() })
        .collect();
    if listed.is_empty() || listed.contains(&"*") {
        vec![namespace]
    } else {
        listed
    }
}

/// A destination of a VirtualService and where it is written.
struct DestinationAt<'a> {
    destination: &'a Destination,
    /// `spec.http[0].route[1].destination`
    path: Vec<PathStep<'static>>,
    mirror: bool,
}

#[derive(Clone, Copy)]
enum PathStep<'s> {
    Key(&'s str),
    Index(usize),
}

fn with_path<R>(steps: &[PathStep<'_>], f: impl FnOnce(&FieldPath<'_>) -> R) -> R {
    fn go<R>(at: &FieldPath<'_>, steps: &[PathStep<'_>], f: impl FnOnce(&FieldPath<'_>) -> R) -> R {
        match steps.split_first() {
            None => f(at),
            Some((PathStep::Key(k), rest)) => go(&at.key(k), rest, f),
            Some((PathStep::Index(i), rest)) => go(&at.index(*i), rest, f),
        }
    }
    go(&FieldPath::ROOT, steps, f)
}

fn destinations(vs: &VirtualServiceSpec) -> Vec<DestinationAt<'_>> {
    use PathStep::{Index, Key};
    let mut out = Vec::new();
    for (i, http) in vs.http.iter().enumerate() {
        for (j, route) in http.route.iter().enumerate() {
            if let Some(d) = &route.destination {
                let path = vec![
                    Key("spec"),
                    Key("http"),
                    Index(i),
                    Key("route"),
                    Index(j),
                    Key("destination"),
                ];
                out.push(DestinationAt {
                    destination: d,
                    path,
                    mirror: false,
                });
            }
        }
        if let Some(d) = &http.mirror {
            let path = vec![Key("spec"), Key("http"), Index(i), Key("mirror")];
            out.push(DestinationAt {
                destination: d,
                path,
                mirror: true,
            });
        }
        for (j, m) in http.mirrors.iter().enumerate() {
            if let Some(d) = &m.destination {
                let path = vec![
                    Key("spec"),
                    Key("http"),
                    Index(i),
                    Key("mirrors"),
                    Index(j),
                    Key("destination"),
                ];
                out.push(DestinationAt {
                    destination: d,
                    path,
                    mirror: true,
                });
            }
        }
    }
    // TCP and TLS routes have the same shape: `route[].destination`.
    let l4: [(&'static str, Vec<&Vec<RouteDestination>>); 2] = [
        ("tcp", vs.tcp.iter().map(|r| &r.route).collect()),
        ("tls", vs.tls.iter().map(|r| &r.route).collect()),
    ];
    for (kind, rules) in l4 {
        for (i, routes) in rules.into_iter().enumerate() {
            for (j, route) in routes.iter().enumerate() {
                if let Some(d) = &route.destination {
                    let path = vec![
                        Key("spec"),
                        Key(kind),
                        Index(i),
                        Key("route"),
                        Index(j),
                        Key("destination"),
                    ];
                    out.push(DestinationAt {
                        destination: d,
                        path,
                        mirror: false,
                    });
                }
            }
        }
    }
    out
}

/// Destination hosts, ports and subsets must exist (IST0101, IST0112).
fn check_destinations(
    catalog: &Catalog<'_>,
    out: &mut Out<'_>,
    index: usize,
    vs: &VirtualServiceSpec,
) {
    let namespace = &catalog.resources[index].namespace;
    let seen_from = used_from(&vs.export_to, namespace);
    for d in destinations(vs) {
        let Some(host) = d.destination.host.as_deref().filter(|h| !h.is_empty()) else {
            continue;
        };
        let what = if d.mirror { "mirror host" } else { "host" };
        match catalog.lookup(host, namespace, &seen_from) {
            Lookup::NotFound => {
                with_path(&d.path, |at| {
                    out.push(
                        index,
                        Severity::Error,
                        code::REFERENCED_RESOURCE_NOT_FOUND,
                        &at.key("host"),
                        format!("Referenced {what} not found: {host:?} (no service or ServiceEntry visible to this resource defines it)"),
                    );
                });
                continue;
            }
            Lookup::Found(ports) => match d.destination.port.as_ref().and_then(|p| p.number) {
                None if ports.len() > 1 => with_path(&d.path, |at| {
                    out.push(
                        index,
                        Severity::Error,
                        code::VIRTUAL_SERVICE_DESTINATION_PORT_SELECTOR_REQUIRED,
                        &at.key("host"),
                        format!("This VirtualService routes to a service {host:?} that exposes multiple ports {ports:?}. Specifying a port in the destination is required to disambiguate."),
                    );
                }),
                Some(port) if !ports.is_empty() && !ports.contains(&port) => {
                    with_path(&d.path, |at| {
                        out.push(
                        index,
                        Severity::Error,
                        code::REFERENCED_RESOURCE_NOT_FOUND,
                        &at.key("port").key("number"),
                        format!("Referenced host:port not found: \"{host}:{port}\" (the service has ports {ports:?})"),
                    );
                    })
                }
                _ => {}
            },
            Lookup::Unknown => {}
        }
        if let Some(subset) = d.destination.subset.as_deref().filter(|s| !s.is_empty())
            && !catalog.has_subset(host, namespace, subset)
        {
            with_path(&d.path, |at| {
                out.push(
                    index,
                    Severity::Error,
                    code::REFERENCED_RESOURCE_NOT_FOUND,
                    &at.key("subset"),
                    format!(
                        "Referenced host+subset in destinationrule not found: \"{host}+{subset}\""
                    ),
                );
            });
        }
    }
}

/// Gateways named by a VirtualService must exist (IST0101) and serve its hosts (IST0132).
fn check_gateway_refs(
    catalog: &Catalog<'_>,
    out: &mut Out<'_>,
    index: usize,
    vs: &VirtualServiceSpec,
) {
    let resource = &catalog.resources[index];
    let spec = FieldPath::ROOT.key("spec");
    let check = |out: &mut Out<'_>, reference: &str, at: &FieldPath<'_>, check_hosts: bool| {
        if reference == "mesh" {
            return;
        }
        let (ns, name) = hosts::gateway_ref(reference, &resource.namespace);
        let Some(gateway) = catalog.gateways.get(&(ns, name)) else {
            out.push(
                index,
                Severity::Error,
                code::REFERENCED_RESOURCE_NOT_FOUND,
                at,
                format!("Referenced gateway not found: {reference:?}"),
            );
            return;
        };
        // A gateway without servers serves nothing; validation reports that.
        if !check_hosts || gateway.servers.is_empty() {
            return;
        }
        let served: Vec<&str> = gateway
            .servers
            .iter()
            .flat_map(|s| &s.hosts)
            .map(|h| h.split_once('/').map_or(h.as_str(), |(_, host)| host))
            .collect();
        for (j, host) in vs.hosts.iter().enumerate() {
            if !served.iter().any(|s| hosts::overlap(s, host)) {
                out.push(
                    index,
                    Severity::Warning,
                    code::VIRTUAL_SERVICE_HOST_NOT_FOUND_IN_GATEWAY,
                    &spec.key("hosts").index(j),
                    format!(
                        "one or more host [{host}] defined in VirtualService {}/{} not found in Gateway {ns}/{name}.",
                        resource.namespace, resource.name
                    ),
                );
            }
        }
    };
    for (i, reference) in vs.gateways.iter().enumerate() {
        check(out, reference, &spec.key("gateways").index(i), true);
    }
    let http_at = spec.key("http");
    for (i, http) in vs.http.iter().enumerate() {
        let rule_at = http_at.index(i);
        let matches_at = rule_at.key("match");
        for (j, m) in http.r#match.iter().enumerate() {
            let match_at = matches_at.index(j);
            let gateways_at = match_at.key("gateways");
            for (k, reference) in m.gateways.iter().enumerate() {
                check(out, reference, &gateways_at.index(k), false);
            }
        }
    }
}

/// A DestinationRule whose host nothing defines configures nothing (IST0101, a warning: the service
/// may simply not be deployed yet).
fn check_destination_rule_host(
    catalog: &Catalog<'_>,
    out: &mut Out<'_>,
    index: usize,
    dr: &DestinationRuleSpec,
) {
    let Some(host) = dr
        .host
        .as_deref()
        .filter(|h| !h.is_empty() && !h.starts_with('*'))
    else {
        return;
    };
    let namespace = &catalog.resources[index].namespace;
    if let Lookup::NotFound = catalog.lookup(host, namespace, &used_from(&dr.export_to, namespace))
    {
        out.push(
            index,
            Severity::Warning,
            code::REFERENCED_RESOURCE_NOT_FOUND,
            &FieldPath::ROOT.key("spec").key("host"),
            format!("Referenced host not found: {host:?} (no service or ServiceEntry visible to this resource defines it; this DestinationRule applies to nothing)"),
        );
    }
}

/// A ServiceEntry port of protocol TCP, or of none, needs addresses (IST0134, a warning, as Istio's
/// `ProtocolAddressesAnalyzer`): with traffic capture, TCP is told apart from other services on the
/// same port only by the address dialled (Bosun gives a ServiceEntry's address a listener of its own;
/// without one, the first service of the port takes its TCP). Addresses the `status` says were
/// allocated count.
fn check_service_entry_addresses(out: &mut Out<'_>, index: usize, se: &ServiceEntrySpec) {
    let allocated = out.resources[index]
        .node
        .get("status")
        .and_then(|s| s.get("addresses"))
        .is_some_and(|a| matches!(&a.value, crate::yaml::Value::Seq(items) if !items.is_empty()));
    if !se.addresses.is_empty() || allocated {
        return;
    }
    let spec = FieldPath::ROOT.key("spec");
    let ports = spec.key("ports");
    for (i, port) in se.ports.iter().enumerate() {
        let protocol = port.protocol.as_deref().unwrap_or_default();
        if !(protocol.is_empty() || protocol.eq_ignore_ascii_case("TCP")) {
            continue;
        }
        let number = port.number.map_or_else(String::new, |n| format!(" {n}"));
        let what = if protocol.is_empty() {
            "has no protocol".to_owned()
        } else {
            format!("is {protocol}")
        };
        out.push(
            index,
            Severity::Warning,
            code::SERVICE_ENTRY_ADDRESSES_REQUIRED,
            &ports.index(i),
            format!(
                "ServiceEntry addresses are required for this protocol: port{number} {what}, and without `addresses` a captured connection to it is told apart from other services on the port by nothing (add the addresses clients dial, or a protocol such as HTTP or TLS)"
            ),
        );
    }
}

/// A Gateway's selector must match some workload, or no proxy serves it (IST0101).
fn check_gateway_selector(
    catalog: &Catalog<'_>,
    out: &mut Out<'_>,
    index: usize,
    gw: &GatewaySpec,
) {
    let Some(workloads) = &catalog.workloads else {
        return;
    };
    if gw.selector.is_empty() {
        return;
    }
    let selected = workloads
        .iter()
        .any(|labels| gw.selector.iter().all(|(k, v)| labels.get(k) == Some(v)));
    if !selected {
        let selector = gw
            .selector
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        out.push(
            index,
            Severity::Error,
            code::REFERENCED_RESOURCE_NOT_FOUND,
            &FieldPath::ROOT.key("spec").key("selector"),
            format!(
                "Referenced selector not found: {selector:?} (no gateway workload has these labels)"
            ),
        );
    }
}

/// Where a VirtualService is visible: everywhere, or these namespaces.
fn visibility(export_to: &[String], namespace: &str) -> Option<BTreeSet<String>> {
    if export_to.is_empty() || export_to.iter().any(|e| e == "*") {
        return None;
    }
    Some(
        export_to
            .iter()
            .map(|e| {
                if e == "." {
                    namespace.to_owned()
                } else {
                    e.clone()
                }
            })
            .collect(),
    )
}

/// Two VirtualServices for the sidecars (the `mesh` gateway) claiming one host, or overlapping
/// wildcard hosts, visible in a common namespace: which one wins is undefined (IST0109).
fn check_conflicting_mesh_hosts(out: &mut Out<'_>) {
    struct Claim {
        index: usize,
        host_index: usize,
        host: String,
    }
    let resources = out.resources;
    let mut claims: Vec<Claim> = Vec::new();
    for (index, r) in resources.iter().enumerate() {
        let Spec::VirtualService(vs) = &r.spec else {
            continue;
        };
        if !(vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == "mesh")) {
            continue;
        }
        for (host_index, host) in vs.hosts.iter().enumerate() {
            claims.push(Claim {
                index,
                host_index,
                host: hosts::resolve(host, &r.namespace),
            });
        }
    }
    // Exact names by map; the (few) wildcards are compared with everything.
    let mut by_host: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut wildcards: Vec<usize> = Vec::new();
    for (c, claim) in claims.iter().enumerate() {
        by_host.entry(&claim.host).or_default().push(c);
        if claim.host.starts_with('*') {
            wildcards.push(c);
        }
    }
    let export_to = |index: usize| match &resources[index].spec {
        Spec::VirtualService(vs) => visibility(&vs.export_to, &resources[index].namespace),
        _ => None,
    };
    for claim in &claims {
        let candidates: Vec<usize> = if claim.host.starts_with('*') {
            (0..claims.len())
                .filter(|&c| hosts::overlap(&claims[c].host, &claim.host))
                .collect()
        } else {
            let exact = by_host
                .get(claim.host.as_str())
                .into_iter()
                .flatten()
                .copied();
            let wild = wildcards
                .iter()
                .copied()
                .filter(|&c| hosts::matches(&claims[c].host, &claim.host));
            exact.chain(wild).collect()
        };
        let mine = export_to(claim.index);
        let mut rivals: Vec<usize> = candidates
            .into_iter()
            .map(|c| claims[c].index)
            .filter(|&other| other != claim.index)
            .filter(|&other| match (&mine, export_to(other)) {
                (None, _) | (_, None) => true,
                (Some(a), Some(b)) => !a.is_disjoint(&b),
            })
            .collect();
        if rivals.is_empty() {
            continue;
        }
        rivals.push(claim.index);
        let mut names: Vec<String> = rivals
            .into_iter()
            .map(|i| format!("{}/{}", resources[i].namespace, resources[i].name))
            .collect();
        names.sort();
        names.dedup();
        out.push(
            claim.index,
            Severity::Error,
            code::CONFLICTING_MESH_GATEWAY_VIRTUAL_SERVICE_HOSTS,
            &FieldPath::ROOT.key("spec").key("hosts").index(claim.host_index),
            format!(
                "The VirtualServices {} associated with mesh gateway define the same host {} which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.",
                names.join(","),
                claim.host
            ),
        );
    }
}

#[cfg(test)]
mod tests;
