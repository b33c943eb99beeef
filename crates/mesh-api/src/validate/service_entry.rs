//! ServiceEntry: Istio's `ValidateServiceEntry` (hosts, addresses, ports, resolution vs endpoints,
//! exportTo) and the CRD schema's rules (`x-kubernetes-validations`, limits).

use super::Ctx;
use super::common::{
    self, is_http_protocol, is_tcp_protocol, is_tls_protocol, max_entries, max_len,
    partial_wildcard_error,
};
use super::workload::{EndpointKind, endpoint};
use crate::diag::Report;
use crate::path::FieldPath;
use crate::types::service_entry::{Location, Resolution, ServiceEntrySpec};

pub(super) fn validate(
    ctx: &Ctx<'_>,
    spec: &ServiceEntrySpec,
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
) {
    let resolution = spec.resolution.unwrap_or_default();
    let mode = resolution_name(resolution);
    let hosts_at = at.key("hosts");
    let addresses_at = at.key("addresses");
    let ports_at = at.key("ports");
    let endpoints_at = at.key("endpoints");
    let selector_at = at.key("workloadSelector");

    if let Some(selector) = &spec.workload_selector {
        let labels_at = selector_at.key("labels");
        common::labels(report, &labels_at, &selector.labels);
        max_entries(report, &labels_at, selector.labels.len(), 256);
        if selector.labels.is_empty() {
            report.warn(
                &selector_at,
                "service entry: workload selector specified without labels, will be applied to all services in namespace",
            );
        }
        if !spec.endpoints.is_empty() {
            report.error(
                &endpoints_at,
                "only one of WorkloadSelector or Endpoints is allowed in Service Entry",
            );
        }
    }

    // Hosts.
    if spec.hosts.is_empty() {
        report.error(&hosts_at, "service entry must have at least one host");
    }
    max_entries(report, &hosts_at, spec.hosts.len(), 256);
    for (i, host) in spec.hosts.iter().enumerate() {
        let h_at = hosts_at.index(i);
        if host == "*" {
            report.error(&h_at, "invalid host *");
            continue;
        }
        if let Some(e) = common::wildcard_domain_error(host) {
            report.error(&h_at, e);
        }
        if resolution != Resolution::DynamicDns
            && let Some(w) = partial_wildcard_error(host)
        {
            report.warn(&h_at, w);
        }
    }

    // Addresses.
    max_entries(report, &addresses_at, spec.addresses.len(), 256);
    let mut cidr_reported = false;
    for (i, address) in spec.addresses.iter().enumerate() {
        let a_at = addresses_at.index(i);
        max_len(report, &a_at, address, 64);
        if let Some(e) = common::ip_subnet_error(address) {
            report.error(&a_at, e);
        }
        if address.contains('/')
            && !matches!(resolution, Resolution::None | Resolution::Static)
            && !cidr_reported
        {
            report.error(
                &a_at,
                "CIDR addresses are allowed only for NONE/STATIC resolution types",
            );
            cidr_reported = true;
        }
    }

    // Ports.
    max_entries(report, &ports_at, spec.ports.len(), 256);
    let auto_allocation = resolution != Resolution::None
        && spec.addresses.is_empty()
        && !ctx
            .resource
            .meta
            .labels
            .get("networking.istio.io/enable-autoallocate-ip")
            .is_some_and(|v| v.eq_ignore_ascii_case("false"));
    let mut port_names: Vec<&str> = Vec::new();
    let mut port_numbers: Vec<u32> = Vec::new();
    for (i, port) in spec.ports.iter().enumerate() {
        let p_at = ports_at.index(i);
        let name_at = p_at.key("name");
        let number_at = p_at.key("number");
        let protocol_at = p_at.key("protocol");
        match port.name.as_deref() {
            None => report.error(&name_at, "port name is required"),
            Some(name) => {
                if port_names.contains(&name) {
                    report.error(
                        &name_at,
                        format!("service entry port name {name:?} already defined"),
                    );
                } else {
                    port_names.push(name);
                }
                common::port_name(report, &name_at, name);
                max_len(report, &name_at, name, 256);
            }
        }
        match port.number {
            None => report.error(&number_at, "port number is required"),
            Some(number) => {
                if port_numbers.contains(&number) {
                    report.error(
                        &number_at,
                        format!("service entry port {number} already defined"),
                    );
                } else {
                    port_numbers.push(number);
                }
                common::port(report, &number_at, number);
            }
        }
        if let Some(target) = port.target_port {
            common::port(report, &p_at.key("targetPort"), target);
        }
        let protocol = port.protocol.as_deref().unwrap_or_default();
        if !protocol.is_empty() {
            common::protocol(report, &protocol_at, protocol);
            max_len(report, &protocol_at, protocol, 256);
        }
        if spec.addresses.is_empty() && !auto_allocation && matches!(protocol, "" | "TCP") {
            report.warn(
                &protocol_at,
                "addresses are required for ports serving TCP (or unset) protocol when IP Autoallocation is not enabled",
            );
        }
    }

    // Resolution against endpoints, hosts and addresses.
    max_entries(report, &endpoints_at, spec.endpoints.len(), 4096);
    let mut endpoint_kind = EndpointKind::Schema;
    match resolution {
        Resolution::None => {
            if !spec.endpoints.is_empty() {
                report.error(
                    &endpoints_at,
                    "no endpoints should be provided for resolution type none",
                );
            }
            if spec.workload_selector.is_some() {
                report.warn(
                    &selector_at,
                    "workloadSelector should not be set when resolution mode is NONE",
                );
            }
        }
        Resolution::Static => endpoint_kind = EndpointKind::Static,
        Resolution::Dns | Resolution::DnsRoundRobin => {
            endpoint_kind = EndpointKind::Dns;
            if spec.endpoints.is_empty()
                && let Some((i, e)) = spec
                    .hosts
                    .iter()
                    .enumerate()
                    .find_map(|(i, h)| common::fqdn_error(h).map(|e| (i, e)))
            {
                report.error(
                    &hosts_at.index(i),
                    format!("hosts must be FQDN or contain only prefix wildcards if no endpoints are provided for resolution mode {mode}, {e}"),
                );
            }
            if resolution == Resolution::DnsRoundRobin && spec.endpoints.len() > 1 {
                report.error(
                    &endpoints_at,
                    format!("there must only be 0 or 1 endpoint for resolution mode {mode}"),
                );
            }
            let first_tcp = spec
                .ports
                .iter()
                .position(|p| is_tcp_protocol(p.protocol.as_deref().unwrap_or_default()));
            if !spec.addresses.is_empty()
                && spec.hosts.len() > 1
                && let Some(i) = first_tcp
            {
                report.warn(
                    &ports_at.index(i),
                    "service entry can not have more than one host specified simultaneously with address and tcp port",
                );
            }
        }
        Resolution::DynamicDns => {
            for (i, host) in spec.hosts.iter().enumerate() {
                if !host.starts_with('*') {
                    report.error(
                        &hosts_at.index(i),
                        format!("host must be wildcarded for resolution mode {mode}"),
                    );
                }
            }
            if !spec.addresses.is_empty() {
                report.error(
                    &addresses_at,
                    format!("addresses cannot be set for resolution type {mode}. HTTP route domains will only be generated from the hosts field values"),
                );
            }
            if !spec.endpoints.is_empty() {
                report.error(
                    &endpoints_at,
                    format!("endpoints cannot be set for resolution type {mode}. Destination IP address determined from hosts field values"),
                );
            }
            for (i, port) in spec.ports.iter().enumerate() {
                let protocol = port.protocol.as_deref().unwrap_or_default();
                if !["HTTP", "TLS", "GRPC", "HTTP2"]
                    .iter()
                    .any(|p| p.eq_ignore_ascii_case(protocol))
                {
                    report.error(
                        &ports_at.index(i).key("protocol"),
                        format!("only HTTP, TLS, GRPC, and HTTP2 protocols are supported for resolution type {mode}"),
                    );
                }
            }
            let uses_waypoint = ctx
                .resource
                .meta
                .labels
                .get("istio.io/use-waypoint")
                .is_some_and(|v| !v.is_empty() && !v.eq_ignore_ascii_case("none"));
            if spec.location == Some(Location::MeshInternal) && uses_waypoint {
                report.error(
                    &at.key("location"),
                    format!("location MESH_INTERNAL with resolution type {mode} is not supported when using waypoints"),
                );
            }
        }
    }
    for (i, ep) in spec.endpoints.iter().enumerate() {
        endpoint(
            report,
            &endpoints_at.index(i),
            ep,
            endpoint_kind,
            Some(&port_names),
        );
    }

    // Plain TCP cannot tell several hosts apart (unless resolution NONE, which ignores hosts).
    if resolution != Resolution::None && spec.hosts.len() > 1 {
        let opaque = spec.ports.iter().position(|p| {
            let protocol = p.protocol.as_deref().unwrap_or_default();
            !is_http_protocol(protocol) && !is_tls_protocol(protocol)
        });
        if let Some(i) = opaque {
            report.error(
                &ports_at.index(i).key("protocol"),
                "multiple hosts provided with non-HTTP, non-TLS ports",
            );
        }
    }

    common::export_to(
        report,
        &at.key("exportTo"),
        ctx.namespace,
        &spec.export_to,
        true,
    );
}

fn resolution_name(r: Resolution) -> &'static str {
    match r {
        Resolution::None => "NONE",
        Resolution::Static => "STATIC",
        Resolution::Dns => "DNS",
        Resolution::DnsRoundRobin => "DNS_ROUND_ROBIN",
        Resolution::DynamicDns => "DYNAMIC_DNS",
    }
}

#[cfg(test)]
mod tests {
    use crate::diag::Severity;
    use crate::validate::testing::{assert_error, assert_finding, assert_valid};

    /// A ServiceEntry whose spec body (indented two spaces) starts at line 6.
    fn se(body: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: se\n  namespace: ns\nspec:\n{body}"
        )
    }

    #[test]
    fn workload_selector() {
        assert_error(
            &se("  hosts: [example.com]\n  workloadSelector:\n    labels:\n      app: \"*\"\n"),
            10,
            "spec.workloadSelector.labels.app",
            "wildcard is not supported in selector: \"app\"",
        );
        let empty = se("  hosts: [example.com]\n  resolution: STATIC\n  workloadSelector: {}\n");
        assert_valid(&empty);
        assert_finding(
            &empty,
            Severity::Warning,
            9,
            "spec.workloadSelector",
            "service entry: workload selector specified without labels, will be applied to all services in namespace",
        );
        assert_valid(&se(
            "  hosts: [example.com]\n  resolution: STATIC\n  workloadSelector:\n    labels:\n      app: vm\n",
        ));
    }

    #[test]
    fn workload_selector_or_endpoints() {
        assert_error(
            &se(
                "  hosts: [example.com]\n  resolution: STATIC\n  workloadSelector:\n    labels: {app: vm}\n  endpoints:\n  - address: 1.2.3.4\n",
            ),
            11,
            "spec.endpoints",
            "only one of WorkloadSelector or Endpoints is allowed in Service Entry",
        );
    }

    #[test]
    fn hosts_are_required() {
        assert_error(
            &se("  resolution: DNS\n"),
            6,
            "spec.hosts",
            "service entry must have at least one host",
        );
    }

    #[test]
    fn host_syntax() {
        let doc = |host: &str| se(&format!("  hosts: [\"{host}\"]\n"));
        assert_error(&doc("*"), 7, "spec.hosts[0]", "invalid host *");
        assert_error(
            &doc("foo.*.com"),
            7,
            "spec.hosts[0]",
            "domain name \"foo.*.com\" invalid (label \"*\" invalid)",
        );
        let partial = doc("*x.com");
        assert_valid(&partial);
        assert_finding(
            &partial,
            Severity::Warning,
            7,
            "spec.hosts[0]",
            "partial wildcard \"*x.com\" not allowed",
        );
        for host in [
            "example.com",
            "*.example.com",
            "reviews",
            "reviews.ns.svc.cluster.local",
        ] {
            assert_valid(&doc(host));
        }
        let many: Vec<String> = (0..257).map(|i| format!("h{i}.example.com")).collect();
        assert_error(
            &se(&format!("  hosts: [{}]\n", many.join(", "))),
            7,
            "spec.hosts",
            "too many: 257: must have at most 256 items",
        );
    }

    #[test]
    fn addresses() {
        let doc = |address: &str, resolution: &str| {
            se(&format!(
                "  hosts: [example.com]\n  resolution: {resolution}\n  addresses:\n  - \"{address}\"\n"
            ))
        };
        assert_error(
            &doc("10.0.0.0/33", "STATIC"),
            10,
            "spec.addresses[0]",
            "10.0.0.0/33 is not a valid CIDR block",
        );
        assert_error(
            &doc("example.com", "STATIC"),
            10,
            "spec.addresses[0]",
            "example.com is not a valid IP",
        );
        assert_error(
            &doc("1.2.3.4/16", "DNS"),
            10,
            "spec.addresses[0]",
            "CIDR addresses are allowed only for NONE/STATIC resolution types",
        );
        assert_valid(&doc("1.2.3.4/16", "NONE"));
        assert_valid(&doc("2001:db8::/32", "STATIC"));
        assert_valid(&doc("240.0.0.1", "DNS"));
    }

    #[test]
    fn port_names() {
        let doc = |second: &str| {
            se(&format!(
                "  hosts: [example.com]\n  addresses: [10.0.0.1]\n  ports:\n  - {{name: http, number: 80, protocol: HTTP}}\n  - {{name: {second}, number: 8080, protocol: HTTP}}\n"
            ))
        };
        assert_error(
            &doc("http"),
            11,
            "spec.ports[1].name",
            "service entry port name \"http\" already defined",
        );
        assert_error(
            &doc("http_alt"),
            11,
            "spec.ports[1].name",
            "invalid port name: http_alt",
        );
        assert_error(
            &se(
                "  hosts: [example.com]\n  addresses: [10.0.0.1]\n  ports:\n  - {number: 80, protocol: HTTP}\n",
            ),
            10,
            "spec.ports[0].name",
            "port name is required",
        );
        assert_valid(&doc("http-alt"));
    }

    #[test]
    fn port_numbers() {
        let doc = |second: &str| {
            se(&format!(
                "  hosts: [example.com]\n  addresses: [10.0.0.1]\n  ports:\n  - {{name: a, number: 80, protocol: HTTP}}\n  - {{name: b, {second}, protocol: HTTP}}\n"
            ))
        };
        assert_error(
            &doc("number: 80"),
            11,
            "spec.ports[1].number",
            "service entry port 80 already defined",
        );
        assert_error(
            &doc("number: 99999"),
            11,
            "spec.ports[1].number",
            "port number 99999 must be in the range 1..65535",
        );
        assert_error(
            &doc("targetPort: 8080"),
            11,
            "spec.ports[1].number",
            "port number is required",
        );
        assert_error(
            &doc("number: 81, targetPort: 0"),
            11,
            "spec.ports[1].targetPort",
            "port number 0 must be in the range 1..65535",
        );
        assert_valid(&doc("number: 81, targetPort: 8081"));
    }

    #[test]
    fn port_protocol() {
        assert_error(
            &se(
                "  hosts: [example.com]\n  addresses: [10.0.0.1]\n  ports:\n  - {name: a, number: 80, protocol: HTPP}\n",
            ),
            10,
            "spec.ports[0].protocol",
            "unsupported protocol: HTPP (did you mean \"HTTP\"?)",
        );
        assert_valid(&se(
            "  hosts: [example.com]\n  addresses: [10.0.0.1]\n  ports:\n  - {name: a, number: 80, protocol: grpc-web}\n  - {name: b, number: 81}\n",
        ));
    }

    #[test]
    fn tcp_ports_want_addresses_without_auto_allocation() {
        let none =
            se("  hosts: [example.com]\n  ports:\n  - {name: tcp, number: 9000, protocol: TCP}\n");
        assert_valid(&none);
        assert_finding(
            &none,
            Severity::Warning,
            9,
            "spec.ports[0].protocol",
            "addresses are required for ports serving TCP (or unset) protocol when IP Autoallocation is not enabled",
        );
        let opted_out = r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: se
  labels:
    networking.istio.io/enable-autoallocate-ip: "false"
spec:
  hosts: [example.com]
  resolution: DNS
  ports:
  - {name: tcp, number: 9000}
"#;
        assert_finding(
            opted_out,
            Severity::Warning,
            11,
            "spec.ports[0].protocol",
            "addresses are required for ports serving TCP (or unset) protocol when IP Autoallocation is not enabled",
        );
    }

    #[test]
    fn resolution_none_has_no_endpoints() {
        assert_error(
            &se("  hosts: [example.com]\n  endpoints:\n  - address: 1.2.3.4\n"),
            8,
            "spec.endpoints",
            "no endpoints should be provided for resolution type none",
        );
        let selector = se("  hosts: [example.com]\n  workloadSelector:\n    labels: {app: a}\n");
        assert_valid(&selector);
        assert_finding(
            &selector,
            Severity::Warning,
            8,
            "spec.workloadSelector",
            "workloadSelector should not be set when resolution mode is NONE",
        );
    }

    #[test]
    fn resolution_static_endpoints() {
        let doc = se(
            "  hosts: [example.com]\n  resolution: STATIC\n  ports:\n  - {name: http, number: 80, protocol: HTTP}\n  endpoints:\n  - address: vm.example.com\n  - address: 1.2.3.4\n    ports:\n      grpc: 9090\n  - network: remote\n  - labels: {app: a}\n",
        );
        assert_error(
            &doc,
            12,
            "spec.endpoints[0].address",
            "endpoint address \"vm.example.com\" is not a valid IP address",
        );
        assert_error(
            &doc,
            15,
            "spec.endpoints[1].ports.grpc",
            "endpoint port grpc is not defined by the service entry",
        );
        assert_error(&doc, 17, "spec.endpoints[3].address", "address is required");
        assert_finding(
            &doc,
            Severity::Warning,
            16,
            "spec.endpoints[2].address",
            "address is unset with network \"remote\"",
        );
        assert_valid(&se(
            "  hosts: [example.com]\n  resolution: STATIC\n  ports:\n  - {name: http, number: 80, protocol: HTTP}\n  endpoints:\n  - address: 1.2.3.4\n    ports: {http: 8080}\n    labels: {version: v1}\n    weight: 3\n  - address: 2001:db8::2\n",
        ));
    }

    #[test]
    fn resolution_static_unix_endpoints() {
        assert_error(
            &se(
                "  hosts: [uds.local]\n  resolution: STATIC\n  ports:\n  - {name: a, number: 80, protocol: HTTP}\n  - {name: b, number: 81, protocol: HTTP}\n  endpoints:\n  - address: unix:///var/run/a.sock\n",
            ),
            13,
            "spec.endpoints[0].address",
            "exactly 1 service port required for unix endpoints",
        );
        assert_valid(&se(
            "  hosts: [uds.local]\n  resolution: STATIC\n  ports:\n  - {name: a, number: 80, protocol: HTTP}\n  endpoints:\n  - address: unix:///var/run/a.sock\n",
        ));
    }

    #[test]
    fn resolution_dns_hosts_without_endpoints() {
        assert_error(
            &se("  hosts: [\"*.example.com\"]\n  resolution: DNS\n"),
            7,
            "spec.hosts[0]",
            "hosts must be FQDN or contain only prefix wildcards if no endpoints are provided for resolution mode DNS, domain name \"*.example.com\" invalid (label \"*\" invalid)",
        );
        assert_valid(&se(
            "  hosts: [\"*.example.com\"]\n  resolution: DNS\n  endpoints:\n  - address: lb.example.com\n",
        ));
    }

    #[test]
    fn resolution_dns_endpoints() {
        let doc = se(
            "  hosts: [example.com]\n  resolution: DNS_ROUND_ROBIN\n  ports:\n  - {name: http, number: 80, protocol: HTTP}\n  endpoints:\n  - address: \"*.lb.example.com\"\n  - address: 1.1.1.1\n    ports: {https: 443}\n",
        );
        assert_error(
            &doc,
            11,
            "spec.endpoints",
            "there must only be 0 or 1 endpoint for resolution mode DNS_ROUND_ROBIN",
        );
        assert_error(
            &doc,
            12,
            "spec.endpoints[0].address",
            "endpoint address \"*.lb.example.com\" is not a valid FQDN or an IP address",
        );
        assert_error(
            &doc,
            14,
            "spec.endpoints[1].ports.https",
            "endpoint port https is not defined by the service entry",
        );
        assert_valid(&se(
            "  hosts: [example.com]\n  resolution: DNS_ROUND_ROBIN\n  ports:\n  - {name: http, number: 80, protocol: HTTP}\n  endpoints:\n  - address: lb.example.com\n    ports: {http: 8080}\n",
        ));
    }

    #[test]
    fn resolution_dns_several_hosts_with_address_and_tcp() {
        let doc = se(
            "  hosts: [a.example.com, b.example.com]\n  addresses: [10.0.0.1]\n  resolution: DNS\n  ports:\n  - {name: https, number: 443, protocol: HTTPS}\n",
        );
        assert_valid(&doc);
        assert_finding(
            &doc,
            Severity::Warning,
            11,
            "spec.ports[0]",
            "service entry can not have more than one host specified simultaneously with address and tcp port",
        );
    }

    #[test]
    fn resolution_dynamic_dns() {
        let doc = se(
            "  hosts: [\"*.example.com\", api.example.com]\n  addresses: [10.0.0.1]\n  resolution: DYNAMIC_DNS\n  ports:\n  - {name: tcp, number: 9000, protocol: TCP}\n  endpoints:\n  - address: 1.1.1.1\n",
        );
        assert_error(
            &doc,
            7,
            "spec.hosts[1]",
            "host must be wildcarded for resolution mode DYNAMIC_DNS",
        );
        assert_error(
            &doc,
            8,
            "spec.addresses",
            "addresses cannot be set for resolution type DYNAMIC_DNS. HTTP route domains will only be generated from the hosts field values",
        );
        assert_error(
            &doc,
            12,
            "spec.endpoints",
            "endpoints cannot be set for resolution type DYNAMIC_DNS. Destination IP address determined from hosts field values",
        );
        assert_error(
            &doc,
            11,
            "spec.ports[0].protocol",
            "only HTTP, TLS, GRPC, and HTTP2 protocols are supported for resolution type DYNAMIC_DNS",
        );
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: se
  labels:
    istio.io/use-waypoint: waypoint
spec:
  hosts: ["*.example.com"]
  location: MESH_INTERNAL
  resolution: DYNAMIC_DNS
"#,
            9,
            "spec.location",
            "location MESH_INTERNAL with resolution type DYNAMIC_DNS is not supported when using waypoints",
        );
        // Partial wildcards are the point of DYNAMIC_DNS: no warning.
        let fine = se(
            "  hosts: [\"*.example.com\", \"*api.example.com\"]\n  resolution: DYNAMIC_DNS\n  ports:\n  - {name: https, number: 443, protocol: TLS}\n",
        );
        assert!(crate::validate::testing::check(&fine).is_empty());
    }

    #[test]
    fn several_hosts_need_http_or_tls_ports() {
        assert_error(
            &se(
                "  hosts: [a.example.com, b.example.com]\n  resolution: DNS\n  ports:\n  - {name: http, number: 80, protocol: HTTP}\n  - {name: db, number: 5432, protocol: TCP}\n",
            ),
            11,
            "spec.ports[1].protocol",
            "multiple hosts provided with non-HTTP, non-TLS ports",
        );
        // With resolution NONE the hosts are ignored.
        assert_valid(&se(
            "  hosts: [a.example.com, b.example.com]\n  addresses: [10.0.0.0/24]\n  ports:\n  - {name: db, number: 5432, protocol: TCP}\n",
        ));
    }

    #[test]
    fn export_to() {
        assert_error(
            &se("  hosts: [example.com]\n  exportTo: [\".\", ns]\n"),
            8,
            "spec.exportTo[1]",
            "duplicate entries in exportTo: . and current namespace ns",
        );
        assert_error(
            &se("  hosts: [example.com]\n  exportTo: [\"~\", other]\n"),
            8,
            "spec.exportTo",
            "cannot export service entry to no one (~) and someone",
        );
        assert_valid(&se("  hosts: [example.com]\n  exportTo: [\"~\"]\n"));
        assert_valid(&se("  hosts: [example.com]\n  exportTo: [., other]\n"));
    }
}
