use super::analyze;
use crate::diag::{Finding, Severity};
use crate::registry::{Registry, load_registry_str};
use crate::resource::load_str;

/// Analyses `yaml` as `bosun analyze` does: Kubernetes objects in it join the registry.
fn run(yaml: &str, registry: Option<&str>) -> Vec<Finding> {
    let loaded = load_str(yaml, None);
    assert!(loaded.findings.is_empty(), "{:#?}", loaded.findings);
    let mut reg: Option<Registry> = registry.map(|r| load_registry_str(r).expect("registry"));
    if !loaded.kubernetes.services.is_empty() || !loaded.kubernetes.workloads.is_empty() {
        reg.get_or_insert_with(Registry::default)
            .extend(loaded.kubernetes.clone());
    }
    analyze(&loaded.resources, reg.as_ref())
        .into_iter()
        .map(|(_, f)| f)
        .collect()
}

#[track_caller]
fn expect(
    findings: &[Finding],
    code: &str,
    severity: Severity,
    line: usize,
    field: &str,
    message: &str,
) {
    assert!(
        findings.iter().any(|f| f.code == code
            && f.severity == severity
            && f.pos.line == line
            && f.field == field
            && f.message == message),
        "no {code} {severity} at line {line} {field:?}: {message:?}; got {findings:#?}"
    );
}

#[track_caller]
fn expect_none(findings: &[Finding]) {
    assert!(findings.is_empty(), "unexpected findings: {findings:#?}");
}

const REGISTRY: &str = r#"
services:
- name: reviews
  ports: [{number: 9080, name: http}]
- name: multi
  ports: [{number: 80, name: http}, {number: 443, name: https}]
workloads:
- {name: gw, namespace: istio-system, labels: {istio: ingressgateway}}
"#;

const REVIEWS_DR: &str = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {version: v1}
"#;

fn vs_to(destination: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination:
{destination}
"
    )
}

#[test]
fn destination_host_must_exist() {
    let f = run(&vs_to("        host: reviewz"), Some(REGISTRY));
    expect(
        &f,
        "IST0101",
        Severity::Error,
        10,
        "spec.http[0].route[0].destination.host",
        "Referenced host not found: \"reviewz\" (no service or ServiceEntry visible to this resource defines it)",
    );
    expect_none(&run(&vs_to("        host: reviews"), Some(REGISTRY)));
    expect_none(&run(
        &vs_to("        host: reviews.default.svc.cluster.local"),
        Some(REGISTRY),
    ));
}

#[test]
fn without_a_registry_in_cluster_hosts_are_not_judged_but_external_ones_are() {
    expect_none(&run(&vs_to("        host: anything"), None));
    let f = run(&vs_to("        host: api.example.com"), None);
    expect(
        &f,
        "IST0101",
        Severity::Error,
        10,
        "spec.http[0].route[0].destination.host",
        "Referenced host not found: \"api.example.com\" (no service or ServiceEntry visible to this resource defines it)",
    );
}

#[test]
fn service_entry_hosts_count_with_wildcards_and_export_to() {
    let se = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: ext
  namespace: other
spec:
  hosts: ['*.example.com']
  exportTo: [EXPORT]
  ports: [{number: 443, name: tls, protocol: TLS}]
---
";
    let ok = format!(
        "{}{}",
        se.replace("EXPORT", "'*'"),
        vs_to("        host: api.example.com")
    );
    expect_none(&run(&ok, None));
    let hidden = format!(
        "{}{}",
        se.replace("EXPORT", "."),
        vs_to("        host: api.example.com")
    );
    let f = run(&hidden, None);
    assert!(
        f.iter().any(|f| f.code == "IST0101" && f.pos.line == 20),
        "{f:#?}"
    );
}

#[test]
fn kubernetes_services_in_the_inputs_are_known() {
    let svc = "apiVersion: v1
kind: Service
metadata:
  name: ratings
spec:
  ports: [{port: 9080, name: http}]
---
";
    expect_none(&run(
        &format!("{svc}{}", vs_to("        host: ratings")),
        None,
    ));
    let f = run(&format!("{svc}{}", vs_to("        host: rating")), None);
    assert!(
        f.iter().any(|f| f.code == "IST0101" && f.pos.line == 17),
        "{f:#?}"
    );
}

#[test]
fn destination_port_must_exist_and_is_required_for_multi_port_services() {
    let f = run(
        &vs_to("        host: reviews\n        port: {number: 8080}"),
        Some(REGISTRY),
    );
    expect(
        &f,
        "IST0101",
        Severity::Error,
        11,
        "spec.http[0].route[0].destination.port.number",
        "Referenced host:port not found: \"reviews:8080\" (the service has ports [9080])",
    );
    let f = run(&vs_to("        host: multi"), Some(REGISTRY));
    expect(
        &f,
        "IST0112",
        Severity::Error,
        10,
        "spec.http[0].route[0].destination.host",
        "This VirtualService routes to a service \"multi\" that exposes multiple ports [80, 443]. Specifying a port in the destination is required to disambiguate.",
    );
    expect_none(&run(
        &vs_to("        host: multi\n        port: {number: 443}"),
        Some(REGISTRY),
    ));
}

#[test]
fn subset_must_be_defined_by_a_destination_rule() {
    let yaml = format!(
        "{REVIEWS_DR}---\n{}",
        vs_to("        host: reviews\n        subset: v2")
    );
    let f = run(&yaml, Some(REGISTRY));
    expect(
        &f,
        "IST0101",
        Severity::Error,
        21,
        "spec.http[0].route[0].destination.subset",
        "Referenced host+subset in destinationrule not found: \"reviews+v2\"",
    );
    let yaml = format!(
        "{REVIEWS_DR}---\n{}",
        vs_to("        host: reviews\n        subset: v1")
    );
    expect_none(&run(&yaml, Some(REGISTRY)));
}

#[test]
fn mirror_hosts_are_checked() {
    let yaml = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
    mirror:
      host: shadow
";
    let f = run(yaml, Some(REGISTRY));
    expect(
        &f,
        "IST0101",
        Severity::Error,
        11,
        "spec.http[0].mirror.host",
        "Referenced mirror host not found: \"shadow\" (no service or ServiceEntry visible to this resource defines it)",
    );
}

const GATEWAY: &str = "apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: web
  namespace: istio-system
spec:
  selector: {istio: SELECTOR}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ['*.example.com']
---
";

fn bound_vs(gateway: &str, host: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: site
spec:
  hosts: ['{host}']
  gateways: [{gateway}]
  http:
  - route:
    - destination: {{host: reviews}}
"
    )
}

#[test]
fn gateway_must_exist() {
    let yaml = format!(
        "{}{}",
        GATEWAY.replace("SELECTOR", "ingressgateway"),
        bound_vs("istio-system/webb", "www.example.com")
    );
    let f = run(&yaml, Some(REGISTRY));
    expect(
        &f,
        "IST0101",
        Severity::Error,
        18,
        "spec.gateways[0]",
        "Referenced gateway not found: \"istio-system/webb\"",
    );
    let yaml = format!(
        "{}{}",
        GATEWAY.replace("SELECTOR", "ingressgateway"),
        bound_vs("istio-system/web", "www.example.com")
    );
    expect_none(&run(&yaml, Some(REGISTRY)));
}

#[test]
fn virtual_service_host_must_be_served_by_its_gateway() {
    let yaml = format!(
        "{}{}",
        GATEWAY.replace("SELECTOR", "ingressgateway"),
        bound_vs("istio-system/web", "www.example.org")
    );
    let f = run(&yaml, Some(REGISTRY));
    expect(
        &f,
        "IST0132",
        Severity::Warning,
        17,
        "spec.hosts[0]",
        "one or more host [www.example.org] defined in VirtualService default/site not found in Gateway istio-system/web.",
    );
}

#[test]
fn gateway_selector_must_match_a_workload_when_workloads_are_known() {
    let yaml = format!(
        "{}{}",
        GATEWAY.replace("SELECTOR", "egressgateway"),
        bound_vs("istio-system/web", "www.example.com")
    );
    let f = run(&yaml, Some(REGISTRY));
    expect(
        &f,
        "IST0101",
        Severity::Error,
        7,
        "spec.selector",
        "Referenced selector not found: \"istio=egressgateway\" (no gateway workload has these labels)",
    );
    // Without a registry nothing is known about workloads: no finding.
    let f = run(&yaml, None);
    assert!(!f.iter().any(|f| f.field == "spec.selector"), "{f:#?}");
}

#[test]
fn destination_rule_for_an_unknown_host_is_reported() {
    let f = run(
        &REVIEWS_DR.replace("host: reviews", "host: reviewz"),
        Some(REGISTRY),
    );
    expect(
        &f,
        "IST0101",
        Severity::Warning,
        6,
        "spec.host",
        "Referenced host not found: \"reviewz\" (no service or ServiceEntry visible to this resource defines it; this DestinationRule applies to nothing)",
    );
    expect_none(&run(REVIEWS_DR, Some(REGISTRY)));
}

#[test]
fn two_mesh_virtual_services_for_one_host_conflict() {
    let one = vs_to("        host: reviews");
    let two = one.replace("name: reviews\n", "name: reviews-b\n");
    let f = run(&format!("{one}---\n{two}"), Some(REGISTRY));
    let message = "The VirtualServices default/reviews,default/reviews-b associated with mesh gateway define the same host reviews.default.svc.cluster.local which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.";
    expect(&f, "IST0109", Severity::Error, 6, "spec.hosts[0]", message);
    expect(&f, "IST0109", Severity::Error, 17, "spec.hosts[0]", message);
    // Exported to disjoint namespaces: no conflict.
    let one_a = one.replace("spec:\n", "spec:\n  exportTo: [a]\n");
    let two_b = two.replace("spec:\n", "spec:\n  exportTo: [b]\n");
    expect_none(&run(&format!("{one_a}---\n{two_b}"), Some(REGISTRY)));
}

#[test]
fn tcp_service_entries_without_addresses_are_flagged_per_port() {
    let yaml = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db}
spec:
  hosts: [db.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports:
  - {number: 443, name: https, protocol: HTTPS}
  - {number: 5432, name: pg, protocol: tcp}
  - {number: 6379, name: cache}
";
    let findings = run(yaml, None);
    assert_eq!(findings.len(), 2, "{findings:#?}");
    expect(
        &findings,
        "IST0134",
        Severity::Warning,
        10,
        "spec.ports[1]",
        "ServiceEntry addresses are required for this protocol: port 5432 is tcp, and without `addresses` a captured connection to it is told apart from other services on the port by nothing (add the addresses clients dial, or a protocol such as HTTP or TLS)",
    );
    assert_eq!(findings[1].field, "spec.ports[2]");
    assert!(findings[1].message.contains("port 6379 has no protocol"));
    expect_none(&run(
        &yaml.replace(
            "  resolution: DNS\n",
            "  resolution: DNS\n  addresses: [192.0.2.7]\n",
        ),
        None,
    ));
}
