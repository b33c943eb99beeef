//! WorkloadEntry and WorkloadGroup: Istio's `ValidateWorkloadEntry` / `ValidateWorkloadGroup` (and the
//! endpoint checks that ServiceEntry reuses), plus the CRD schema rules on addresses and ports.

use std::collections::BTreeMap;

use super::Ctx;
use super::common::{self, UNIX_PREFIX, max_entries, max_len};
use crate::diag::Report;
use crate::path::FieldPath;
use crate::types::workload_entry::WorkloadEntrySpec;
use crate::types::workload_group::{ReadinessProbe, WorkloadGroupSpec};

/// How an endpoint's address is read: what the context around it allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EndpointKind {
    /// A standalone WorkloadEntry: an IP, a DNS name or a Unix socket.
    Workload,
    /// A ServiceEntry endpoint with `resolution: STATIC`: an IP or a Unix socket.
    Static,
    /// A ServiceEntry endpoint with `resolution: DNS`/`DNS_ROUND_ROBIN`: an IP or a DNS name.
    Dns,
    /// A WorkloadGroup template or an endpoint the ServiceEntry's resolution ignores: only the CRD
    /// schema rules (Unix socket form, port names and numbers).
    Schema,
}

/// Validates one endpoint (a WorkloadEntry spec, a ServiceEntry endpoint or a WorkloadGroup template)
/// at `at`. `service_ports` are the ServiceEntry's port names an endpoint port must be one of (`None`
/// outside a ServiceEntry).
pub(super) fn endpoint(
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
    we: &WorkloadEntrySpec,
    kind: EndpointKind,
    service_ports: Option<&[&str]>,
) {
    let address_at = at.key("address");
    let address = we.address.as_deref().unwrap_or_default();
    let network = we.network.as_deref().unwrap_or_default();
    let ports_at = at.key("ports");

    max_len(report, &address_at, address, 256);
    if let Some(locality) = &we.locality {
        max_len(report, &at.key("locality"), locality, 2048);
    }
    max_len(report, &at.key("network"), network, 2048);
    if let Some(sa) = &we.service_account {
        max_len(report, &at.key("serviceAccount"), sa, 253);
    }
    max_entries(report, &at.key("labels"), we.labels.len(), 256);
    max_entries(report, &ports_at, we.ports.len(), 128);

    let unix = address.strip_prefix(UNIX_PREFIX);
    if kind != EndpointKind::Schema && address.is_empty() {
        if network.is_empty() {
            report.error(&address_at, "address is required");
        } else if kind != EndpointKind::Dns {
            report.warn(
                &address_at,
                format!("address is unset with network {network:?}"),
            );
        }
    }
    // DNS endpoints are never sockets: Istio reads `unix://…` there as a (bad) host name.
    let unix = if kind == EndpointKind::Dns {
        None
    } else {
        unix
    };
    if let Some(path) = unix {
        if let Some(e) = common::unix_address_error(path) {
            // The CRD's `UDS may not be a dir`, said after Istio's message.
            let dir = if path.starts_with('/') && path.ends_with('/') {
                ": a socket may not be a directory"
            } else {
                ""
            };
            report.error(&address_at, format!("{e}{dir}"));
        }
        if !we.ports.is_empty() {
            report.error(
                &ports_at,
                format!("unix endpoint {address} must not include ports"),
            );
        }
        if kind == EndpointKind::Static
            && let Some(ports) = service_ports
            && ports.len() != 1
        {
            report.error(
                &address_at,
                "exactly 1 service port required for unix endpoints",
            );
        }
    } else {
        match kind {
            EndpointKind::Workload | EndpointKind::Dns
                if (!address.is_empty() || (kind == EndpointKind::Dns && !network.is_empty()))
                    && !common::is_ip(address)
                    && common::fqdn_error(address).is_some() =>
            {
                report.error(
                    &address_at,
                    format!("endpoint address {address:?} is not a valid FQDN or an IP address"),
                );
            }
            EndpointKind::Static if !address.is_empty() && !common::is_ip(address) => {
                report.error(
                    &address_at,
                    format!("endpoint address {address:?} is not a valid IP address"),
                );
            }
            _ => {}
        }
    }

    for (name, &number) in &we.ports {
        let p = ports_at.key(name);
        if let Some(defined) = service_ports
            && kind != EndpointKind::Schema
            && !defined.contains(&name.as_str())
        {
            report.error(
                &p,
                format!("endpoint port {name} is not defined by the service entry"),
            );
        }
        // The CRD also limits a name to 62 characters.
        if name.len() >= 63 {
            report.error(&p, format!("invalid port name: {name}"));
        } else {
            common::port_name(report, &p, name);
        }
        common::port(report, &p, number);
    }
    if kind != EndpointKind::Schema {
        tags(report, &at.key("labels"), &we.labels, "");
    }
}

/// Labels as Istio's `labels.Instance.Validate` reads them (endpoint and workload labels): keys are
/// `[prefix/]name` (prefix DNS labels of either case, at most 253; name at most 63), values any length.
fn tags(
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
    labels: &BTreeMap<String, String>,
    prefix: &str,
) {
    for (k, v) in labels {
        let p = at.key(k);
        if let Some(e) = tag_key_error(k) {
            report.error(&p, format!("{prefix}{e}"));
        }
        if !(v.is_empty() || is_qualified_name(v)) {
            report.error(&p, format!("{prefix}invalid tag value: {v:?}"));
        }
    }
}

fn tag_key_error(key: &str) -> Option<String> {
    let (dns_prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let prefix_ok =
        dns_prefix.is_none_or(|p| p.split('.').all(|l| common::is_alnum_bounded(l, b"-")));
    if !prefix_ok || !is_qualified_name(name) {
        return Some(format!("invalid tag key: {key:?}"));
    }
    if dns_prefix.is_some_and(|p| p.len() > 253) {
        return Some(format!("invalid tag key: {key:?} (DNS prefix is too long)"));
    }
    if name.len() > 63 {
        return Some(format!("invalid tag key: {key:?} (name is too long)"));
    }
    None
}

/// Kubernetes' qualified name, with no length limit: alphanumerics, `-`, `_`, `.`, alphanumeric at
/// both ends.
fn is_qualified_name(s: &str) -> bool {
    common::is_alnum_bounded(s, b"-_.")
}

pub(super) fn validate_workload_entry(
    _ctx: &Ctx<'_>,
    spec: &WorkloadEntrySpec,
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
) {
    endpoint(report, at, spec, EndpointKind::Workload, None);
}

pub(super) fn validate_workload_group(
    _ctx: &Ctx<'_>,
    spec: &WorkloadGroupSpec,
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
) {
    match &spec.template {
        // Istio skips the WorkloadEntry rules here: the address and more are filled in per instance.
        Some(template) => endpoint(
            report,
            &at.key("template"),
            template,
            EndpointKind::Schema,
            None,
        ),
        None => report.error(&at.key("template"), "template is required"),
    }
    if let Some(meta) = &spec.metadata {
        let meta_at = at.key("metadata");
        tags(
            report,
            &meta_at.key("labels"),
            &meta.labels,
            "invalid labels: ",
        );
        max_entries(report, &meta_at.key("labels"), meta.labels.len(), 256);
        max_entries(
            report,
            &meta_at.key("annotations"),
            meta.annotations.len(),
            256,
        );
    }
    if let Some(probe) = &spec.probe {
        readiness_probe(report, &at.key("probe"), probe);
    }
}

/// Istio's `validateReadinessProbe`, plus the CRD's one-of rule on the health check methods.
fn readiness_probe(report: &mut Report<'_>, at: &FieldPath<'_>, probe: &ReadinessProbe) {
    let counts = [
        ("periodSeconds", probe.period_seconds),
        ("initialDelaySeconds", probe.initial_delay_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ];
    for (field, value) in counts {
        if value.is_some_and(|v| v < 0) {
            report.error(&at.key(field), format!("{field} must be non-negative"));
        }
    }

    let methods = [
        probe.http_get.is_some(),
        probe.tcp_socket.is_some(),
        probe.exec.is_some(),
        probe.grpc.is_some(),
    ];
    let set = methods.iter().filter(|m| **m).count();
    if set == 0 {
        report.error(
            at,
            "unknown health check method: a probe needs one of httpGet, tcpSocket or exec",
        );
    } else if set > 1 {
        report.error(
            at,
            "only one of httpGet, tcpSocket, exec or grpc can be set",
        );
    }

    if let Some(h) = &probe.http_get {
        let h_at = at.key("httpGet");
        probe_port(report, &h_at.key("port"), h.port);
        if let Some(scheme) = &h.scheme
            && !matches!(scheme.as_str(), "" | "HTTP" | "HTTPS")
        {
            report.error(
                &h_at.key("scheme"),
                "httpGet.scheme must be one of \"HTTPS\", \"HTTP\"",
            );
        }
        let headers_at = h_at.key("httpHeaders");
        for (i, header) in h.http_headers.iter().enumerate() {
            let name_at = headers_at.index(i);
            let name_at = name_at.key("name");
            let name = header.name.as_deref().unwrap_or_default();
            if name.is_empty() {
                report.error(&name_at, "header name cannot be empty");
            } else if !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') {
                report.error(
                    &name_at,
                    format!("header name {name} is not a valid header name"),
                );
            }
        }
    }
    if let Some(t) = &probe.tcp_socket {
        probe_port(report, &at.key("tcpSocket").key("port"), t.port);
    }
    if let Some(e) = &probe.exec {
        let exec_at = at.key("exec");
        let cmd_at = exec_at.key("command");
        if e.command.is_empty() {
            report.error(&cmd_at, "exec.command is required");
        }
        for (i, arg) in e.command.iter().enumerate() {
            if arg.is_empty() {
                report.error(&cmd_at.index(i), "exec.command entries cannot be empty");
            }
        }
    }
    if let Some(g) = &probe.grpc {
        let g_at = at.key("grpc");
        if let Some(port) = g.port {
            common::port(report, &g_at.key("port"), port);
        }
        // The CRD has the field, but Istio's webhook knows no gRPC health check.
        report.error(
            &g_at,
            "unknown health check method grpc: use httpGet, tcpSocket or exec",
        );
    }
}

fn probe_port(report: &mut Report<'_>, at: &FieldPath<'_>, port: Option<u32>) {
    match port {
        Some(p) => {
            common::port(report, at, p);
        }
        None => report.error(at, "port is required"),
    }
}

#[cfg(test)]
mod tests {
    use crate::diag::Severity;
    use crate::validate::testing::{assert_error, assert_finding, assert_valid};

    #[test]
    fn entry_address_is_required_unless_a_network_is_set() {
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: we
spec:
  serviceAccount: sa
"#,
            5,
            "spec.address",
            "address is required",
        );
        let network_only = r#"apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: we
spec:
  network: net
"#;
        assert_valid(network_only);
        assert_finding(
            network_only,
            Severity::Warning,
            5,
            "spec.address",
            "address is unset with network \"net\"",
        );
    }

    #[test]
    fn entry_address_is_an_ip_a_dns_name_or_a_socket() {
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: we
spec:
  address: bad_host.example.com
"#,
            6,
            "spec.address",
            "endpoint address \"bad_host.example.com\" is not a valid FQDN or an IP address",
        );
        for address in [
            "1.2.3.4",
            "2001:db8::1",
            "vm1.example.com",
            "unix:///var/run/a.sock",
            "unix://@abstract",
        ] {
            assert_valid(&format!(
                "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: we\nspec:\n  address: \"{address}\"\n"
            ));
        }
    }

    #[test]
    fn entry_unix_socket_must_be_an_absolute_file_path() {
        let doc = |address: &str| {
            format!(
                "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: we\nspec:\n  address: \"{address}\"\n"
            )
        };
        assert_error(
            &doc("unix://relative"),
            6,
            "spec.address",
            "relative is not an absolute path to a file",
        );
        assert_error(
            &doc("unix:///dir/"),
            6,
            "spec.address",
            "/dir/ is not an absolute path to a file: a socket may not be a directory",
        );
        assert_error(
            &doc("unix://"),
            6,
            "spec.address",
            "unix address must not be empty",
        );
        assert_valid(&doc("unix:///dir/file.sock"));
    }

    #[test]
    fn entry_unix_socket_has_no_ports() {
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: we
spec:
  address: unix://@foo
  ports:
    http: 80
"#,
            7,
            "spec.ports",
            "unix endpoint unix://@foo must not include ports",
        );
    }

    #[test]
    fn entry_ports_have_valid_names_and_numbers() {
        let bad = r#"apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: we
spec:
  address: 1.1.1.1
  ports:
    "@": 80
    http: 99999
"#;
        assert_error(bad, 8, "spec.ports[\"@\"]", "invalid port name: @");
        assert_error(
            bad,
            9,
            "spec.ports.http",
            "port number 99999 must be in the range 1..65535",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: we
spec:
  address: 1.1.1.1
  ports:
    http: 80
    GRPC-web: 65535
"#,
        );
    }

    #[test]
    fn entry_labels_follow_kubernetes_syntax() {
        let bad = r#"apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: we
spec:
  address: 1.1.1.1
  labels:
    "bad key": v1
    app: "-v"
"#;
        assert_error(
            bad,
            8,
            "spec.labels[\"bad key\"]",
            "invalid tag key: \"bad key\"",
        );
        assert_error(bad, 9, "spec.labels.app", "invalid tag value: \"-v\"");
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: we
spec:
  address: 1.1.1.1
  labels:
    app.kubernetes.io/name: reviews
    version: ""
    Topology.Istio.io/Zone: z_1.a
"#,
        );
    }

    #[test]
    fn entry_string_limits_follow_the_crd() {
        let long = "a".repeat(254);
        assert_error(
            &format!(
                "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: we\nspec:\n  address: 1.1.1.1\n  serviceAccount: {long}\n"
            ),
            7,
            "spec.serviceAccount",
            "too long: may not be more than 253 bytes",
        );
        assert_valid(&format!(
            "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: we\nspec:\n  address: 1.1.1.1\n  serviceAccount: {}\n  weight: 7\n  locality: us-east/a/b\n",
            "a".repeat(253)
        ));
    }

    #[test]
    fn group_template_is_required() {
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata:
  name: wg
spec:
  metadata:
    labels:
      app: a
"#,
            5,
            "spec.template",
            "template is required",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata:
  name: wg
spec:
  template: {}
"#,
        );
    }

    #[test]
    fn group_template_keeps_the_schema_rules_only() {
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata:
  name: wg
spec:
  template:
    address: unix://relative
"#,
            7,
            "spec.template.address",
            "relative is not an absolute path to a file",
        );
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata:
  name: wg
spec:
  template:
    ports:
      http: 0
"#,
            8,
            "spec.template.ports.http",
            "port number 0 must be in the range 1..65535",
        );
        // No address (filled in per instance) and labels Istio leaves alone.
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata:
  name: wg
spec:
  template:
    serviceAccount: sa
    ports:
      http: 8080
"#,
        );
    }

    #[test]
    fn group_metadata_labels_follow_kubernetes_syntax() {
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata:
  name: wg
spec:
  metadata:
    labels:
      ".": "~"
  template: {}
"#,
            8,
            "spec.metadata.labels[\".\"]",
            "invalid labels: invalid tag key: \".\"",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata:
  name: wg
spec:
  metadata:
    labels:
      app: a
    annotations:
      anything: "goes here"
  template: {}
"#,
        );
    }

    #[test]
    fn probe_counts_are_non_negative() {
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata:
  name: wg
spec:
  template: {}
  probe:
    periodSeconds: -1
    tcpSocket:
      port: 80
"#,
            8,
            "spec.probe.periodSeconds",
            "periodSeconds must be non-negative",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata:
  name: wg
spec:
  template: {}
  probe:
    periodSeconds: 0
    initialDelaySeconds: 1
    timeoutSeconds: 1
    successThreshold: 1
    failureThreshold: 3
    tcpSocket:
      port: 80
"#,
        );
    }

    #[test]
    fn probe_has_exactly_one_method() {
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata:
  name: wg
spec:
  template: {}
  probe:
    periodSeconds: 5
"#,
            7,
            "spec.probe",
            "unknown health check method: a probe needs one of httpGet, tcpSocket or exec",
        );
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata:
  name: wg
spec:
  template: {}
  probe:
    tcpSocket:
      port: 80
    exec:
      command: [ls]
"#,
            7,
            "spec.probe",
            "only one of httpGet, tcpSocket, exec or grpc can be set",
        );
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata:
  name: wg
spec:
  template: {}
  probe:
    grpc:
      port: 80
"#,
            8,
            "spec.probe.grpc",
            "unknown health check method grpc: use httpGet, tcpSocket or exec",
        );
    }

    #[test]
    fn probe_http_get() {
        let bad = r#"apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata:
  name: wg
spec:
  template: {}
  probe:
    httpGet:
      scheme: FTP
      httpHeaders:
      - name: "**"
      - value: x
"#;
        assert_error(bad, 8, "spec.probe.httpGet.port", "port is required");
        assert_error(
            bad,
            9,
            "spec.probe.httpGet.scheme",
            "httpGet.scheme must be one of \"HTTPS\", \"HTTP\"",
        );
        assert_error(
            bad,
            11,
            "spec.probe.httpGet.httpHeaders[0].name",
            "header name ** is not a valid header name",
        );
        assert_error(
            bad,
            12,
            "spec.probe.httpGet.httpHeaders[1].name",
            "header name cannot be empty",
        );
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata:
  name: wg
spec:
  template: {}
  probe:
    httpGet:
      port: 65536
"#,
            9,
            "spec.probe.httpGet.port",
            "port number 65536 must be in the range 1..65535",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata:
  name: wg
spec:
  template: {}
  probe:
    httpGet:
      port: 8080
      path: /ready
      scheme: HTTPS
      httpHeaders:
      - name: X-Probe
        value: "1"
"#,
        );
    }

    #[test]
    fn probe_tcp_socket_needs_a_port() {
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata:
  name: wg
spec:
  template: {}
  probe:
    tcpSocket:
      host: localhost
"#,
            8,
            "spec.probe.tcpSocket.port",
            "port is required",
        );
    }

    #[test]
    fn probe_exec_needs_a_command() {
        let doc = |command: &str| {
            format!(
                "apiVersion: networking.istio.io/v1\nkind: WorkloadGroup\nmetadata:\n  name: wg\nspec:\n  template: {{}}\n  probe:\n    exec:\n      command: {command}\n"
            )
        };
        assert_error(
            &doc("[]"),
            9,
            "spec.probe.exec.command",
            "exec.command is required",
        );
        assert_error(
            &doc("[\"\"]"),
            9,
            "spec.probe.exec.command[0]",
            "exec.command entries cannot be empty",
        );
        assert_valid(&doc("[/bin/check, --fast]"));
    }
}
