//! Sidecar: Istio's `ValidateSidecar` and its helpers (`validateSidecarIngressPortAndBind`,
//! `validateSidecarEgressPortBindAndCaptureMode`, `validateSidecarOutboundTrafficPolicy`,
//! `ValidateNamespaceSlashWildcardHostname`, the server TLS checks of `validateTLSOptions`) plus what
//! the CRD schema requires (`ingress[].port`, `egress[].hosts`, `egressProxy.host`).

use std::collections::{BTreeMap, BTreeSet};

use super::common::{self, UNIX_PREFIX, is_http_protocol, is_tls_protocol};
use super::tls::{CipherWarnings, server_tls_options};
use super::{Ctx, destination_rule};
use crate::diag::Report;
use crate::path::FieldPath;
use crate::types::gateway::{ServerTlsMode, ServerTlsSettings};
use crate::types::sidecar::{
    CaptureMode, IstioEgressListener, IstioIngressListener, OutboundTrafficPolicy,
    OutboundTrafficPolicyMode, SidecarPort, SidecarSpec,
};

/// CRD `maxProperties` of `workloadSelector.labels`.
const MAX_SELECTOR_LABELS: usize = 256;

pub(super) fn validate(
    ctx: &Ctx<'_>,
    spec: &SidecarSpec,
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
) {
    if let Some(selector) = &spec.workload_selector {
        let sel_at = at.key("workloadSelector");
        let labels_at = sel_at.key("labels");
        if selector.labels.is_empty() {
            report.warn(
                &labels_at,
                "sidecar: workload selector specified without labels, will be applied to all services in namespace",
            );
        }
        common::too_many(
            report,
            &labels_at,
            selector.labels.len(),
            MAX_SELECTOR_LABELS,
            "properties",
        );
        common::labels(report, &labels_at, &selector.labels);
    }

    if spec.egress.is_empty()
        && spec.ingress.is_empty()
        && spec.outbound_traffic_policy.is_none()
        && spec.inbound_connection_pool.is_none()
    {
        report.error(at, "sidecar: empty configuration provided");
        return;
    }

    let ingress_at = at.key("ingress");
    let mut ports = BTreeSet::new();
    for (i, listener) in spec.ingress.iter().enumerate() {
        ingress(listener, &mut ports, report, &ingress_at.index(i));
    }

    if let Some(pool) = &spec.inbound_connection_pool {
        destination_rule::connection_pool(pool, report, &at.key("inboundConnectionPool"));
    }

    let egress_at = at.key("egress");
    let mut egress_state = EgressState::default();
    for (i, listener) in spec.egress.iter().enumerate() {
        let last = i + 1 == spec.egress.len();
        egress(
            ctx.namespace,
            listener,
            last,
            &mut egress_state,
            report,
            &egress_at.index(i),
        );
    }

    if let Some(policy) = &spec.outbound_traffic_policy {
        outbound_traffic_policy(policy, report, &at.key("outboundTrafficPolicy"));
    }
}

/// One ingress listener. `ports` collects the port numbers seen so far (they must be unique).
fn ingress(
    listener: &IstioIngressListener,
    ports: &mut BTreeSet<u32>,
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
) {
    let port_at = at.key("port");
    let Some(port) = &listener.port else {
        report.error(&port_at, "sidecar: port is required for ingress listeners");
        return;
    };
    target_port(port, report, &port_at);
    port_name_and_protocol(port, report, &port_at);
    let number = port.number.unwrap_or(0);
    let number_at = port_at.key("number");
    common::port(report, &number_at, number);
    if let Some(bind) = listener.bind.as_deref().filter(|b| !b.is_empty()) {
        ip_address(bind, report, &at.key("bind"));
    }
    if !ports.insert(number) {
        report.error(
            &number_at,
            "sidecar: ports on IP bound listeners must be unique",
        );
    }

    if let Some(endpoint) = listener
        .default_endpoint
        .as_deref()
        .filter(|e| !e.is_empty())
    {
        default_endpoint(endpoint, report, &at.key("defaultEndpoint"));
    }

    if let Some(tls) = &listener.tls {
        ingress_tls(tls, port, report, &at.key("tls"));
    }

    if let Some(pool) = &listener.connection_pool {
        let pool_at = at.key("connectionPool");
        destination_rule::connection_pool(pool, report, &pool_at);
        let protocol = port.protocol.as_deref().unwrap_or_default();
        if pool.http.is_some() && !is_http_protocol(protocol) {
            report.warn(
                &pool_at.key("http"),
                format!(
                    "sidecar: HTTP connection pool settings are configured for port {number} ({:?}) but its protocol is not HTTP ({protocol}); only TCP settings will apply",
                    port.name.as_deref().unwrap_or_default()
                ),
            );
        }
    }
}

/// `targetPort has no impact on Sidecars`.
fn target_port(port: &SidecarPort, report: &mut Report<'_>, port_at: &FieldPath<'_>) {
    if port.target_port.is_some_and(|p| p > 0) {
        report.error(
            &port_at.key("targetPort"),
            "targetPort has no impact on Sidecars",
        );
    }
}

/// Port name (optional; a DNS-1123 label when set) and protocol (optional; a known one when set).
fn port_name_and_protocol(port: &SidecarPort, report: &mut Report<'_>, port_at: &FieldPath<'_>) {
    if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
        common::port_name(report, &port_at.key("name"), name);
    }
    if let Some(protocol) = port.protocol.as_deref().filter(|p| !p.is_empty()) {
        common::protocol(report, &port_at.key("protocol"), protocol);
    }
}

/// Istio's `ValidateIPAddress`.
fn ip_address(addr: &str, report: &mut Report<'_>, at: &FieldPath<'_>) {
    if let Some(e) = common::ip_address_error(addr) {
        report.error(at, e);
    }
}

/// Istio's `ValidateUnixAddress` (of the path after `unix://`).
fn unix_address(path: &str, report: &mut Report<'_>, at: &FieldPath<'_>) {
    if let Some(e) = common::unix_address_error(path) {
        report.error(at, e);
    }
}

/// `defaultEndpoint`: `unix://path`, or `host:port` with host one of the loopback/any addresses.
fn default_endpoint(endpoint: &str, report: &mut Report<'_>, at: &FieldPath<'_>) {
    if let Some(path) = endpoint.strip_prefix(UNIX_PREFIX) {
        unix_address(path, report, at);
        return;
    }
    match split_host_port(endpoint) {
        Err(e) => report.error(at, e),
        Ok((host, port)) => {
            if !matches!(host, "" | "127.0.0.1" | "0.0.0.0" | "::1" | "::") {
                report.error(
                    at,
                    "sidecar: defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,[::1]:port,[::]:port,unix://filepath or unset",
                );
            }
            match common::go_atoi(port) {
                Err(e) => report.error(
                    at,
                    format!("sidecar: defaultEndpoint port ({port}) is not a number: {e}"),
                ),
                Ok(n) => {
                    common::port(report, at, n);
                }
            }
        }
    }
}

/// Go's `net.SplitHostPort`, with its error texts.
fn split_host_port(hostport: &str) -> Result<(&str, &str), String> {
    let fail = |why: &str| Err(format!("address {hostport}: {why}"));
    let Some(colon) = hostport.rfind(':') else {
        return fail("missing port in address");
    };
    let (host, inner_start, inner_end) = if hostport.starts_with('[') {
        let Some(end) = hostport.find(']') else {
            return fail("missing ']' in address");
        };
        if end + 1 == hostport.len() {
            return fail("missing port in address");
        }
        if end + 1 != colon {
            return if hostport.as_bytes().get(end + 1) == Some(&b':') {
                fail("too many colons in address")
            } else {
                fail("missing port in address")
            };
        }
        (hostport.get(1..end).unwrap_or_default(), 1, end + 1)
    } else {
        let host = hostport.get(..colon).unwrap_or_default();
        if host.contains(':') {
            return fail("too many colons in address");
        }
        (host, 0, 0)
    };
    if hostport
        .get(inner_start..)
        .unwrap_or_default()
        .contains('[')
    {
        return fail("unexpected '[' in address");
    }
    if hostport.get(inner_end..).unwrap_or_default().contains(']') {
        return fail("unexpected ']' in address");
    }
    Ok((host, hostport.get(colon + 1..).unwrap_or_default()))
}

/// The TLS settings of an ingress listener: what sidecars cannot do, then the server TLS rules.
fn ingress_tls(
    tls: &ServerTlsSettings,
    port: &SidecarPort,
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
) {
    if !tls.subject_alt_names.is_empty() {
        report.error(
            &at.key("subjectAltNames"),
            "sidecar: subjectAltNames is not supported in ingress tls",
        );
    }
    if tls.https_redirect == Some(true) {
        report.error(
            &at.key("httpsRedirect"),
            "sidecar: httpsRedirect is not supported",
        );
    }
    if common::is_set(&tls.credential_name) {
        report.error(
            &at.key("credentialName"),
            "sidecar: credentialName is not currently supported",
        );
    }
    if !tls.credential_names.is_empty() {
        report.error(
            &at.key("credentialNames"),
            "sidecar: credentialNames is not currently supported",
        );
    }
    if !tls.tls_certificates.is_empty() {
        report.error(
            &at.key("tlsCertificates"),
            "sidecar: tls_certificates is not currently supported",
        );
    }
    let mode = tls.mode.unwrap_or_default();
    if matches!(
        mode,
        ServerTlsMode::IstioMutual | ServerTlsMode::AutoPassthrough
    ) {
        report.error(
            &at.key("mode"),
            format!(
                "configuration is invalid: cannot set mode to {} in sidecar ingress tls",
                mode.name()
            ),
        );
    }
    if !is_tls_protocol(port.protocol.as_deref().unwrap_or_default()) {
        report.error(
            at,
            "server cannot have TLS settings for non HTTPS/TLS ports",
        );
    }
    server_tls_options(report, at, tls, CipherWarnings::Aggregated);
}

/// What the egress listeners seen so far have claimed.
#[derive(Default)]
struct EgressState<'s> {
    catch_all_found: bool,
    ports: BTreeSet<u32>,
    unix_binds: BTreeSet<&'s str>,
}

/// One egress listener.
fn egress<'s>(
    namespace: &str,
    listener: &'s IstioEgressListener,
    last: bool,
    state: &mut EgressState<'s>,
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
) {
    match &listener.port {
        None => {
            // The catch-all listener (no port): at most one, and last.
            if state.catch_all_found {
                report.error(
                    at,
                    "sidecar: egress can have only one listener with empty port",
                );
                return;
            }
            if last {
                state.catch_all_found = true;
            } else {
                report.error(
                    at,
                    "sidecar: the egress listener with empty port should be the last listener in the list",
                );
            }
        }
        Some(port) => {
            let port_at = at.key("port");
            target_port(port, report, &port_at);
            port_name_and_protocol(port, report, &port_at);
            let bind = listener.bind.as_deref().unwrap_or_default();
            let bind_at = at.key("bind");
            let number = port.number.unwrap_or(0);
            let number_at = port_at.key("number");
            if number == 0 {
                // A Unix domain socket listener.
                match bind.strip_prefix(UNIX_PREFIX) {
                    None => report.error(
                        &bind_at,
                        "sidecar: ports with 0 value must have a unix domain socket bind address",
                    ),
                    Some(path) => unix_address(path, report, &bind_at),
                }
                if !matches!(
                    listener.capture_mode.unwrap_or_default(),
                    CaptureMode::Default | CaptureMode::None
                ) {
                    report.error(
                        &at.key("captureMode"),
                        "sidecar: captureMode must be DEFAULT/NONE for unix domain socket listeners",
                    );
                }
                if !state.unix_binds.insert(bind) {
                    report.error(
                        &bind_at,
                        "sidecar: unix domain socket values for listeners must be unique",
                    );
                }
            } else {
                common::port(report, &number_at, number);
                if !bind.is_empty() {
                    ip_address(bind, report, &bind_at);
                }
                if !state.ports.insert(number) {
                    report.error(
                        &number_at,
                        "sidecar: ports on IP bound listeners must be unique",
                    );
                }
            }
        }
    }
    egress_hosts(namespace, &listener.hosts, report, &at.key("hosts"));
}

/// The `namespace/dnsName` hosts of an egress listener.
fn egress_hosts(namespace: &str, hosts: &[String], report: &mut Report<'_>, at: &FieldPath<'_>) {
    if hosts.is_empty() {
        report.error(
            at,
            "sidecar: egress listener must contain at least one host",
        );
        return;
    }
    // namespace -> services imported from it, to warn about repeated imports.
    let mut imported: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (i, host) in hosts.iter().enumerate() {
        let hat = at.index(i);
        if let Some((ns, svc)) = host.split_once('/')
            && !ns.starts_with('~')
        {
            let ns = if ns == "." { namespace } else { ns };
            let services = imported.entry(ns).or_default();
            let repeated = if svc == "*" {
                !services.is_empty()
            } else {
                services.contains(svc) || services.contains("*")
            };
            if repeated {
                report.warn(&hat, format!("duplicated egress host: {host}"));
            }
            services.insert(svc);
        }
        namespace_slash_hostname(host, report, &hat);
    }
    if imported.get("*").is_some_and(|s| s.contains("*")) && imported.len() != 1 {
        report.warn(
            at,
            "`*/*` host select all resources, no other hosts can be added",
        );
    }
}

/// Istio's `ValidateNamespaceSlashWildcardHostname` for sidecars: `ns/host`, where ns is `*`, `.`, a
/// namespace name or `~`-prefixed (excluded), and host an FQDN, `*`, or a `*.`-prefixed wildcard.
fn namespace_slash_hostname(host: &str, report: &mut Report<'_>, at: &FieldPath<'_>) {
    let Some((ns, name)) = host.split_once('/') else {
        report.error(at, "host must be of form namespace/dnsName");
        return;
    };
    if ns.is_empty() || name.is_empty() {
        report.error(
            at,
            "config namespace and dnsName in host entry cannot be empty",
        );
    }
    let bare = ns.strip_prefix('~').unwrap_or(ns);
    if !matches!(bare, "" | "*" | ".") && !common::is_dns1123_label(bare) {
        report.error(at, format!("invalid namespace value {ns:?} in sidecar"));
    }
    for e in common::hostname_part_errors(name, false) {
        report.error(at, e);
    }
}

/// `validateSidecarOutboundTrafficPolicy`: an egress proxy only with `ALLOW_ANY`.
fn outbound_traffic_policy(
    policy: &OutboundTrafficPolicy,
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
) {
    let Some(proxy) = &policy.egress_proxy else {
        return;
    };
    let proxy_at = at.key("egressProxy");
    if policy.mode.unwrap_or_default() != OutboundTrafficPolicyMode::AllowAny {
        report.error(
            &proxy_at,
            "sidecar: egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode",
        );
        return;
    }
    let host_at = proxy_at.key("host");
    match proxy.host.as_deref() {
        None => report.error(&host_at, "missing required field \"host\""),
        Some(host) => {
            if let Some(e) = common::fqdn_error(host) {
                report.error(&host_at, e);
            }
            if host == "*" {
                report.error(&host_at, "invalid destination host *");
            }
        }
    }
    let port_at = proxy_at.key("port");
    let Some(port) = &proxy.port else {
        report.error(&port_at, "sidecar: egress_proxy port must be non-nil");
        return;
    };
    common::port(report, &port_at.key("number"), port.number.unwrap_or(0));
    if let Some(subset) = proxy.subset.as_deref().filter(|s| !s.is_empty())
        && !common::is_dns1123_label(subset)
    {
        report.error(
            &proxy_at.key("subset"),
            format!("subset name is invalid: {subset}"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::split_host_port;
    use crate::diag::Severity;
    use crate::validate::common::go_atoi;
    use crate::validate::testing::{assert_error, assert_finding, assert_valid, check};

    #[test]
    fn default_sidecar_is_valid() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: default
spec:
  egress:
  - hosts:
    - "./*"
    - "istio-system/*"
    - "~/excluded.example.com"
"#;
        assert!(check(yaml).is_empty(), "{:#?}", check(yaml));
    }

    #[test]
    fn empty_configuration() {
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  workloadSelector:
    labels:
      app: a
"#,
            5,
            "spec",
            "sidecar: empty configuration provided",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  outboundTrafficPolicy:
    mode: REGISTRY_ONLY
"#,
        );
    }

    #[test]
    fn workload_selector() {
        let empty = r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  workloadSelector: {}
  egress:
  - hosts: ["*/*"]
"#;
        assert_valid(empty);
        assert_finding(
            empty,
            Severity::Warning,
            6,
            "spec.workloadSelector.labels",
            "sidecar: workload selector specified without labels, will be applied to all services in namespace",
        );
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  workloadSelector:
    labels:
      app: "*"
  egress:
  - hosts: ["*/*"]
"#,
            8,
            "spec.workloadSelector.labels.app",
            "wildcard is not supported in selector: \"app\"",
        );
    }

    #[test]
    fn workload_selector_label_count() {
        let head = r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  egress:
  - hosts: ["*/*"]
  workloadSelector:
    labels:
"#;
        let labels = |n: usize| {
            (0..n)
                .map(|i| format!("      l{i}: v\n"))
                .collect::<String>()
        };
        assert_error(
            &format!("{head}{}", labels(257)),
            9,
            "spec.workloadSelector.labels",
            "Too many: 257: must have at most 256 properties",
        );
        assert_valid(&format!("{head}{}", labels(256)));
    }

    #[test]
    fn ingress_port_required() {
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  ingress:
  - defaultEndpoint: 127.0.0.1:8080
"#,
            7,
            "spec.ingress[0].port",
            "sidecar: port is required for ingress listeners",
        );
    }

    #[test]
    fn ingress_port_and_bind() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  ingress:
  - port:
      number: 0
      name: bad_name
      protocol: HTTP1
      targetPort: 8080
    bind: localhost
"#;
        assert_error(
            yaml,
            8,
            "spec.ingress[0].port.number",
            "port number 0 must be in the range 1..65535",
        );
        assert_error(
            yaml,
            9,
            "spec.ingress[0].port.name",
            "invalid port name: bad_name",
        );
        assert_error(
            yaml,
            10,
            "spec.ingress[0].port.protocol",
            "unsupported protocol: HTTP1 (did you mean \"HTTP\"?)",
        );
        assert_error(
            yaml,
            11,
            "spec.ingress[0].port.targetPort",
            "targetPort has no impact on Sidecars",
        );
        assert_error(
            yaml,
            12,
            "spec.ingress[0].bind",
            "localhost is not a valid IP",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  ingress:
  - port:
      number: 9080
      name: http
      protocol: HTTP
    bind: 0.0.0.0
    defaultEndpoint: 127.0.0.1:8080
    captureMode: IPTABLES
"#,
        );
    }

    #[test]
    fn ingress_ports_unique() {
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  ingress:
  - port:
      number: 90
  - port:
      number: 90
"#,
            10,
            "spec.ingress[1].port.number",
            "sidecar: ports on IP bound listeners must be unique",
        );
    }

    #[test]
    fn ingress_default_endpoint() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  ingress:
  - port:
      number: 90
    defaultEndpoint: "ENDPOINT"
"#;
        let doc = |endpoint: &str| yaml.replace("ENDPOINT", endpoint);
        let at = "spec.ingress[0].defaultEndpoint";
        for (endpoint, message) in [
            (
                "1.1.1.1:90",
                "sidecar: defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,[::1]:port,[::]:port,unix://filepath or unset",
            ),
            (
                "127.0.0.1:hi",
                "sidecar: defaultEndpoint port (hi) is not a number: strconv.Atoi: parsing \"hi\": invalid syntax",
            ),
            ("[::1]:0", "port number 0 must be in the range 1..65535"),
            ("127.0.0.1", "address 127.0.0.1: missing port in address"),
            ("unix:///", "/ is not an absolute path to a file"),
            ("unix://", "unix address must not be empty"),
        ] {
            assert_error(&doc(endpoint), 9, at, message);
        }
        for endpoint in [
            "127.0.0.1:8080",
            "0.0.0.0:8080",
            "[::1]:8080",
            "[::]:8080",
            ":8080",
            "unix:///var/run/app.sock",
            "unix://@abstract",
        ] {
            assert_valid(&doc(endpoint));
        }
    }

    #[test]
    fn split_host_port_like_go() {
        assert_eq!(split_host_port("127.0.0.1:80"), Ok(("127.0.0.1", "80")));
        assert_eq!(split_host_port("[::1]:80"), Ok(("::1", "80")));
        assert_eq!(split_host_port(":80"), Ok(("", "80")));
        assert_eq!(
            split_host_port("::1:80"),
            Err("address ::1:80: too many colons in address".into())
        );
        assert_eq!(
            split_host_port("[::1"),
            Err("address [::1: missing ']' in address".into())
        );
        assert_eq!(
            split_host_port("[::1]"),
            Err("address [::1]: missing port in address".into())
        );
        assert_eq!(
            split_host_port("[::1]x:80"),
            Err("address [::1]x:80: missing port in address".into())
        );
        assert_eq!(
            split_host_port("a]:80"),
            Err("address a]:80: unexpected ']' in address".into())
        );
        assert_eq!(go_atoi("+80"), Ok(80));
        assert_eq!(
            go_atoi("99999999999999999999"),
            Err("strconv.Atoi: parsing \"99999999999999999999\": value out of range".into())
        );
    }

    #[test]
    fn ingress_tls_unsupported_fields() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  ingress:
  - port:
      number: 8443
      protocol: HTTPS
    tls:
      mode: ISTIO_MUTUAL
      subjectAltNames: [a]
      httpsRedirect: true
      credentialName: c
      credentialNames: [c]
      tlsCertificates:
      - serverCertificate: /c.pem
        privateKey: /k.pem
"#;
        let t = "spec.ingress[0].tls";
        for (line, field, message) in [
            (
                12,
                "subjectAltNames",
                "sidecar: subjectAltNames is not supported in ingress tls",
            ),
            (
                13,
                "httpsRedirect",
                "sidecar: httpsRedirect is not supported",
            ),
            (
                14,
                "credentialName",
                "sidecar: credentialName is not currently supported",
            ),
            (
                15,
                "credentialNames",
                "sidecar: credentialNames is not currently supported",
            ),
            (
                16,
                "tlsCertificates",
                "sidecar: tls_certificates is not currently supported",
            ),
            (
                11,
                "mode",
                "configuration is invalid: cannot set mode to ISTIO_MUTUAL in sidecar ingress tls",
            ),
            (
                14,
                "credentialName",
                "ISTIO_MUTUAL TLS cannot have associated credentialName",
            ),
        ] {
            assert_error(yaml, line, &format!("{t}.{field}"), message);
        }
    }

    #[test]
    fn ingress_tls_needs_tls_port() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  ingress:
  - port:
      number: 8080
      protocol: HTTP
    tls:
      mode: SIMPLE
      serverCertificate: /etc/certs/cert.pem
      privateKey: /etc/certs/key.pem
"#;
        assert_error(
            yaml,
            10,
            "spec.ingress[0].tls",
            "server cannot have TLS settings for non HTTPS/TLS ports",
        );
        assert_valid(&yaml.replace("protocol: HTTP\n", "protocol: HTTPS\n"));
    }

    #[test]
    fn ingress_tls_certificates() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  ingress:
  - port:
      number: 8443
      protocol: TLS
    tls:
      mode: MUTUAL
      caCrl: /etc/crl.pem
"#;
        let t = "spec.ingress[0].tls";
        assert_error(
            yaml,
            10,
            &format!("{t}.serverCertificate"),
            "MUTUAL TLS requires a server certificate",
        );
        assert_error(
            yaml,
            10,
            &format!("{t}.privateKey"),
            "MUTUAL TLS requires a private key",
        );
        assert_error(
            yaml,
            10,
            &format!("{t}.caCertificates"),
            "MUTUAL TLS requires a client CA bundle",
        );
        let simple = yaml.replace("MUTUAL", "SIMPLE");
        assert_error(
            &simple,
            12,
            &format!("{t}.caCrl"),
            "CRL is not supported with SIMPLE TLS",
        );
        assert_error(
            &simple,
            10,
            &format!("{t}.serverCertificate"),
            "SIMPLE TLS requires a server certificate",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  ingress:
  - port:
      number: 8443
      protocol: HTTPS
    tls:
      mode: OPTIONAL_MUTUAL
      serverCertificate: /c.pem
      privateKey: /k.pem
      caCertificates: /ca.pem
      caCrl: /crl.pem
"#,
        );
    }

    #[test]
    fn server_tls_certificate_sources() {
        let t = "spec.ingress[0].tls";
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  ingress:
  - port:
      number: 8443
      protocol: HTTPS
    tls:
      mode: SIMPLE
      serverCertificate: /c.pem
      privateKey: /k.pem
      credentialName: cred
      caCrl: /crl.pem
"#;
        assert_error(
            yaml,
            10,
            t,
            "only one of credential_name, credential_names, server_certificate/private_key, tls_certificates should be specified",
        );
        let crl = r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  ingress:
  - port:
      number: 8443
      protocol: HTTPS
    tls:
      mode: PASSTHROUGH
      credentialName: cred
      caCrl: /crl.pem
"#;
        assert_error(
            crl,
            13,
            &format!("{t}.caCrl"),
            "CRL is not supported with credentialName. CRL has to be specified in the credential",
        );
        let certs = r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  ingress:
  - port:
      number: 8443
      protocol: HTTPS
    tls:
      mode: SIMPLE
      tlsCertificates:
      - serverCertificate: /a.pem
      - privateKey: /b.pem
      - serverCertificate: /c.pem
        privateKey: /c.key
"#;
        assert_error(
            certs,
            13,
            &format!("{t}.tlsCertificates[0].privateKey"),
            "SIMPLE TLS requires a private key",
        );
        assert_error(
            certs,
            14,
            &format!("{t}.tlsCertificates[1].serverCertificate"),
            "SIMPLE TLS requires a server certificate",
        );
        assert_finding(
            certs,
            Severity::Warning,
            12,
            &format!("{t}.tlsCertificates"),
            "SIMPLE TLS can support up to 2 server certificates",
        );
    }

    #[test]
    fn ingress_tls_warnings() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  ingress:
  - port:
      number: 8443
      protocol: TLS
    tls:
      minProtocolVersion: TLSV1_1
      serverCertificate: /c.pem
"#;
        assert_valid(yaml);
        let t = "spec.ingress[0].tls";
        assert_finding(
            yaml,
            Severity::Warning,
            11,
            &format!("{t}.minProtocolVersion"),
            "TLS version below TLSV1_2 require setting compatible ciphers as by default they no longer include compatible ciphers.",
        );
        assert_finding(
            yaml,
            Severity::Warning,
            10,
            t,
            "PASSTHROUGH mode does not use certificates, they will be ignored",
        );
        let ciphers = r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  ingress:
  - port:
      number: 8443
      protocol: TLS
    tls:
      cipherSuites: [AES128-SHA, AES128-SHA, FOO, "-BAR"]
"#;
        assert_finding(
            ciphers,
            Severity::Warning,
            11,
            &format!("{t}.cipherSuites"),
            "ignoring invalid cipher suites: [FOO]",
        );
        assert_finding(
            ciphers,
            Severity::Warning,
            11,
            &format!("{t}.cipherSuites"),
            "ignoring duplicate cipher suites: [AES128-SHA]",
        );
    }

    #[test]
    fn ingress_connection_pool() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  ingress:
  - port:
      number: 9000
      name: tcp
      protocol: TCP
    connectionPool:
      http:
        maxRetries: -1
"#;
        assert_error(
            yaml,
            13,
            "spec.ingress[0].connectionPool.http.maxRetries",
            "max retries must be non-negative",
        );
        assert_finding(
            yaml,
            Severity::Warning,
            12,
            "spec.ingress[0].connectionPool.http",
            "sidecar: HTTP connection pool settings are configured for port 9000 (\"tcp\") but its protocol is not HTTP (TCP); only TCP settings will apply",
        );
    }

    #[test]
    fn inbound_connection_pool() {
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  inboundConnectionPool: {}
"#,
            6,
            "spec.inboundConnectionPool",
            "connection pool must have at least one field",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  inboundConnectionPool:
    http:
      http1MaxPendingRequests: 1024
      idleTimeout: 1h
"#,
        );
    }

    #[test]
    fn egress_catch_all_listener() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  egress:
  - hosts: ["*/foo.com"]
  - hosts: ["ns1/bar.com"]
"#;
        assert_error(
            yaml,
            7,
            "spec.egress[0]",
            "sidecar: the egress listener with empty port should be the last listener in the list",
        );
        let two = r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  egress:
  - port:
      number: 80
    hosts: ["ns1/bar.com"]
  - hosts: ["*/foo.com"]
  - hosts: ["ns1/bar.com"]
"#;
        assert_error(
            two,
            10,
            "spec.egress[1]",
            "sidecar: the egress listener with empty port should be the last listener in the list",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  egress:
  - port:
      number: 8080
      protocol: http
      name: h8080
    hosts: ["ns1/bar.com"]
  - hosts: ["*/foo.com"]
"#,
        );
    }

    #[test]
    fn egress_port() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  egress:
  - port:
      number: 1000000
      protocol: http1
      targetPort: 80
    bind: not-an-ip
    hosts: ["ns1/bar.com"]
  - port:
      number: 90
    hosts: ["ns1/bar.com"]
  - port:
      number: 90
    hosts: ["ns2/bar.com"]
"#;
        assert_error(
            yaml,
            8,
            "spec.egress[0].port.number",
            "port number 1000000 must be in the range 1..65535",
        );
        assert_error(
            yaml,
            9,
            "spec.egress[0].port.protocol",
            "unsupported protocol: http1 (did you mean \"HTTP\"?)",
        );
        assert_error(
            yaml,
            10,
            "spec.egress[0].port.targetPort",
            "targetPort has no impact on Sidecars",
        );
        assert_error(
            yaml,
            11,
            "spec.egress[0].bind",
            "not-an-ip is not a valid IP",
        );
        assert_error(
            yaml,
            17,
            "spec.egress[2].port.number",
            "sidecar: ports on IP bound listeners must be unique",
        );
    }

    #[test]
    fn egress_unix_domain_sockets() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  egress:
  - port:
      number: 0
      name: uds
    bind: foobar:///@foo/bar/com
    hosts: ["ns1/bar.com"]
  - port:
      name: uds
    bind: unix:///@foo/bar/com
    captureMode: IPTABLES
    hosts: ["ns1/bar.com"]
  - port:
      name: uds
    bind: unix:///@foo/bar/com
    hosts: ["ns1/bar.com"]
"#;
        assert_error(
            yaml,
            10,
            "spec.egress[0].bind",
            "sidecar: ports with 0 value must have a unix domain socket bind address",
        );
        assert_error(
            yaml,
            15,
            "spec.egress[1].captureMode",
            "sidecar: captureMode must be DEFAULT/NONE for unix domain socket listeners",
        );
        assert_error(
            yaml,
            19,
            "spec.egress[2].bind",
            "sidecar: unix domain socket values for listeners must be unique",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  egress:
  - port:
      protocol: HTTP
      name: uds
    bind: unix:///var/run/egress.sock
    captureMode: NONE
    hosts: ["ns1/bar.com"]
  - port:
      number: 0
    bind: unix://@abstract
    hosts: ["ns1/bar.com"]
"#,
        );
    }

    #[test]
    fn egress_hosts_required() {
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  egress:
  - hosts: []
"#,
            7,
            "spec.egress[0].hosts",
            "sidecar: egress listener must contain at least one host",
        );
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  egress:
  - port:
      number: 80
"#,
            7,
            "spec.egress[0].hosts",
            "sidecar: egress listener must contain at least one host",
        );
    }

    #[test]
    fn egress_host_format() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  egress:
  - hosts:
    - "*"
    - "/"
    - "Invalid_NS/foo.com"
    - "~Invalid_NS/*"
    - "ns1/reviews"
    - "ns1/foo.*.com"
    - "ns1/*foo.com"
"#;
        let h = "spec.egress[0].hosts";
        for (line, i, message) in [
            (8, 0, "host must be of form namespace/dnsName"),
            (
                9,
                1,
                "config namespace and dnsName in host entry cannot be empty",
            ),
            (9, 1, "empty domain name not allowed"),
            (10, 2, "invalid namespace value \"Invalid_NS\" in sidecar"),
            (11, 3, "invalid namespace value \"~Invalid_NS\" in sidecar"),
            (12, 4, "short names (non FQDN) are not allowed"),
            (
                13,
                5,
                "domain name \"foo.*.com\" invalid (label \"*\" invalid)",
            ),
            (13, 5, "partial wildcard \"foo.*.com\" not allowed"),
            (14, 6, "partial wildcard \"*foo.com\" not allowed"),
        ] {
            assert_error(yaml, line, &format!("{h}[{i}]"), message);
        }
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  egress:
  - port:
      number: 80
    hosts:
    - "./*.example.com"
    - "istio-system/istio-ingressgateway.istio-system.svc.cluster.local"
  - hosts:
    - "*/*"
    - "~ns1/*"
    - "~/foo.com"
"#,
        );
    }

    #[test]
    fn egress_duplicate_hosts_warn() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  egress:
  - hosts:
    - "*/*"
    - "default/a.example.com"
    - "./a.example.com"
    - "./*"
"#;
        assert_valid(yaml);
        let h = "spec.egress[0].hosts";
        assert_finding(
            yaml,
            Severity::Warning,
            10,
            &format!("{h}[2]"),
            "duplicated egress host: ./a.example.com",
        );
        assert_finding(
            yaml,
            Severity::Warning,
            11,
            &format!("{h}[3]"),
            "duplicated egress host: ./*",
        );
        assert_finding(
            yaml,
            Severity::Warning,
            7,
            h,
            "`*/*` host select all resources, no other hosts can be added",
        );
    }

    #[test]
    fn outbound_traffic_policy() {
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  outboundTrafficPolicy:
    mode: REGISTRY_ONLY
    egressProxy:
      host: proxy.example.com
      port:
        number: 3128
"#,
            8,
            "spec.outboundTrafficPolicy.egressProxy",
            "sidecar: egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode",
        );
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  outboundTrafficPolicy:
    mode: ALLOW_ANY
    egressProxy:
      host: proxy.example.com
"#,
            8,
            "spec.outboundTrafficPolicy.egressProxy.port",
            "sidecar: egress_proxy port must be non-nil",
        );
        let bad = r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  outboundTrafficPolicy:
    mode: ALLOW_ANY
    egressProxy:
      host: "*.example.com"
      subset: v1.0
      port:
        number: 0
"#;
        let p = "spec.outboundTrafficPolicy.egressProxy";
        assert_error(
            bad,
            9,
            &format!("{p}.host"),
            "domain name \"*.example.com\" invalid (label \"*\" invalid)",
        );
        assert_error(
            bad,
            10,
            &format!("{p}.subset"),
            "subset name is invalid: v1.0",
        );
        assert_error(
            bad,
            12,
            &format!("{p}.port.number"),
            "port number 0 must be in the range 1..65535",
        );
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  outboundTrafficPolicy:
    mode: ALLOW_ANY
    egressProxy:
      port:
        number: 80
"#,
            8,
            &format!("{p}.host"),
            "missing required field \"host\"",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: s
spec:
  outboundTrafficPolicy:
    mode: ALLOW_ANY
    egressProxy:
      host: proxy.example.com
      subset: v1
      port:
        number: 3128
"#,
        );
    }
}
