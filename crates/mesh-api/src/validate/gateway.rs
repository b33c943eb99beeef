//! Gateway: Istio's `ValidateGateway` (servers, ports, hosts, bind, TLS options) and the CRD schema's
//! rules on server TLS settings.

use std::collections::BTreeMap;

use super::Ctx;
use super::common::{
    self, UNIX_PREFIX, is_http_protocol, is_set, is_tls_protocol, unix_address_error,
};
use super::tls::{CipherWarnings, server_tls_options};
use crate::diag::Report;
use crate::path::FieldPath;
use crate::types::gateway::{GatewaySpec, Server, ServerTlsMode};

pub(super) fn validate(
    ctx: &Ctx<'_>,
    spec: &GatewaySpec,
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
) {
    // Gateways converted from the Kubernetes Gateway API may use `~/host` (no routes attached).
    let gateway_semantics = ctx
        .resource
        .meta
        .annotations
        .get("internal.istio.io/gateway-semantics")
        .is_some_and(|v| v == "gateway");

    selector(report, &at.key("selector"), &spec.selector);

    let servers_at = at.key("servers");
    if spec.servers.is_empty() {
        report.error(&servers_at, "gateway must have at least one server");
    }
    let mut port_names: Vec<&str> = Vec::new();
    for (i, server_spec) in spec.servers.iter().enumerate() {
        let s_at = servers_at.index(i);
        server(report, &s_at, server_spec, gateway_semantics);

        if let Some(port) = &server_spec.port {
            if let Some(name) = port.name.as_deref() {
                if port_names.contains(&name) {
                    report.error(
                        &s_at.key("port").key("name"),
                        format!("port names in servers must be unique: duplicate name {name}"),
                    );
                }
                port_names.push(name);
            }
            let protocol = port.protocol.as_deref().unwrap_or_default();
            if server_spec
                .tls
                .as_ref()
                .is_some_and(|t| t.https_redirect == Some(true))
                && !is_http_protocol(protocol)
            {
                report.warn(
                    &s_at.key("tls").key("httpsRedirect"),
                    "tls.httpsRedirect should only be used with http servers",
                );
            }
        }
    }
}

/// Istio does not check the selector; a label no pod can carry makes the gateway select nothing.
fn selector(report: &mut Report<'_>, at: &FieldPath<'_>, selector: &BTreeMap<String, String>) {
    for (k, v) in selector {
        if common::label_key_error(k).is_some() || !common::is_label_value(v) {
            report.warn(
                &at.key(k),
                format!(
                    "selector {k}={v} is not a valid Kubernetes label, so it matches no workload"
                ),
            );
        }
    }
}

fn server(report: &mut Report<'_>, at: &FieldPath<'_>, server: &Server, gateway_semantics: bool) {
    let hosts_at = at.key("hosts");
    if server.hosts.is_empty() {
        report.error(&hosts_at, "server config must contain at least one host");
    }
    for (j, host) in server.hosts.iter().enumerate() {
        for e in host_errors(host, gateway_semantics) {
            report.error(&hosts_at.index(j), e);
        }
    }

    let bind = server.bind.as_deref().unwrap_or_default();
    let port_at = at.key("port");
    let port_ok = match &server.port {
        None => {
            report.error(&port_at, "port is required");
            false
        }
        Some(port) => {
            let before = report.findings.len();
            let protocol = port.protocol.as_deref().unwrap_or_default();
            let protocol_at = port_at.key("protocol");
            if port.protocol.is_none() {
                report.error(&protocol_at, "port protocol is required");
            } else if !common::is_protocol(protocol) {
                report.error(
                    &protocol_at,
                    format!(
                        "invalid protocol {protocol:?}, supported protocols are HTTP, HTTPS, HTTP2, GRPC, GRPC-WEB, TCP, TLS, MONGO, REDIS, MYSQL{}",
                        crate::diag::did_you_mean(
                            &protocol.to_ascii_uppercase(),
                            common::PROTOCOLS.iter().copied()
                        )
                    ),
                );
            }
            let number_at = port_at.key("number");
            match port.number {
                None => report.error(&number_at, "port number is required"),
                // A Unix domain socket listener has no port.
                Some(0) if bind.starts_with(UNIX_PREFIX) => {}
                Some(n) => {
                    common::port(report, &number_at, n);
                }
            }
            if port.target_port.is_some_and(|t| t > 0) {
                report.error(
                    &port_at.key("targetPort"),
                    "targetPort has no impact on Gateways",
                );
            }
            if port.name.as_deref().unwrap_or_default().is_empty() {
                report.error(&port_at.key("name"), "port name must be set");
            }
            report.findings.len() == before
        }
    };

    let bind_at = at.key("bind");
    if let Some(path) = bind.strip_prefix(UNIX_PREFIX) {
        if let Some(e) = unix_address_error(path) {
            report.error(&bind_at, e);
        }
        if let Some(n) = server.port.as_ref().and_then(|p| p.number)
            && n != 0
        {
            report.error(
                &port_at.key("number"),
                format!("port number must be 0 for unix domain socket: {n}"),
            );
        }
    } else if !bind.is_empty()
        && let Some(e) = common::ip_address_error(bind)
    {
        report.error(&bind_at, e);
    }

    let tls_at = at.key("tls");
    if let Some(tls) = &server.tls {
        server_tls_options(report, &tls_at, tls, CipherWarnings::PerEntry);
    }

    // Which TLS settings fit the protocol, once the port itself is valid.
    if port_ok && let Some(port) = &server.port {
        let protocol = port.protocol.as_deref().unwrap_or_default();
        match &server.tls {
            None if is_tls_protocol(protocol) => report.error(
                &tls_at,
                "server must have TLS settings for HTTPS/TLS protocols",
            ),
            Some(tls) if !is_tls_protocol(protocol) => {
                if is_http_protocol(protocol) {
                    // Only `httpsRedirect` (a passthrough-mode block) fits a plain HTTP server.
                    let passthrough = matches!(
                        tls.mode.unwrap_or_default(),
                        ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough
                    );
                    if !passthrough
                        || is_set(&tls.ca_certificates)
                        || is_set(&tls.private_key)
                        || is_set(&tls.server_certificate)
                    {
                        report.error(
                            &tls_at,
                            "server cannot have TLS settings for plain text HTTP ports",
                        );
                    }
                } else {
                    report.error(
                        &tls_at,
                        "server cannot have TLS settings for non HTTPS/TLS ports",
                    );
                }
            }
            _ => {}
        }
    }
}

/// Istio's `ValidateNamespaceSlashWildcardHostname` for gateways: `[ns/]host`, where `ns` is `*`, `.`
/// or a namespace name, and `host` a dotted DNS name with an optional leading wildcard label, `*`, or an
/// IP address.
fn host_errors(host: &str, gateway_semantics: bool) -> Vec<String> {
    let mut errors = Vec::new();
    let name = match host.split_once('/') {
        None => host,
        Some((ns, name)) => {
            if ns.is_empty() || name.is_empty() {
                errors
                    .push("config namespace and dnsName in host entry cannot be empty".to_owned());
            } else if !(ns == "*"
                || ns == "."
                || (ns == "~" && gateway_semantics)
                || common::is_dns1123_label(ns))
            {
                errors.push(format!("invalid namespace value {ns:?} in gateway"));
            }
            if name.is_empty() {
                return errors;
            }
            name
        }
    };
    errors.extend(common::hostname_part_errors(name, true));
    errors
}

#[cfg(test)]
mod tests {
    use crate::diag::Severity;
    use crate::validate::testing::{assert_error, assert_finding, assert_valid, check};

    /// A gateway with one server: `server` is its YAML, indented as a list item at line 6.
    fn gw(server: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: gw\nspec:\n  servers:\n{server}"
        )
    }

    #[test]
    fn servers_are_required() {
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: gw
spec:
  selector:
    istio: ingressgateway
"#,
            5,
            "spec.servers",
            "gateway must have at least one server",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: gw
spec:
  selector:
    istio: ingressgateway
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
"#,
        );
    }

    #[test]
    fn server_hosts_are_required() {
        assert_error(
            &gw("  - port: {number: 80, name: http, protocol: HTTP}\n"),
            7,
            "spec.servers[0].hosts",
            "server config must contain at least one host",
        );
    }

    #[test]
    fn host_namespace_part() {
        let doc = |host: &str| {
            gw(&format!(
                "  - port: {{number: 80, name: http, protocol: HTTP}}\n    hosts:\n    - \"{host}\"\n"
            ))
        };
        assert_error(
            &doc("Bad_NS/foo.example.com"),
            9,
            "spec.servers[0].hosts[0]",
            "invalid namespace value \"Bad_NS\" in gateway",
        );
        assert_error(
            &doc("/foo.example.com"),
            9,
            "spec.servers[0].hosts[0]",
            "config namespace and dnsName in host entry cannot be empty",
        );
        assert_error(
            &doc("~/foo.example.com"),
            9,
            "spec.servers[0].hosts[0]",
            "invalid namespace value \"~\" in gateway",
        );
        for host in [
            "*/foo.example.com",
            "./foo.example.com",
            "prod/*",
            "prod/*.example.com",
        ] {
            assert_valid(&doc(host));
        }
    }

    #[test]
    fn host_dns_part() {
        let doc = |host: &str| {
            gw(&format!(
                "  - port: {{number: 80, name: http, protocol: HTTP}}\n    hosts:\n    - \"{host}\"\n"
            ))
        };
        assert_error(
            &doc("ns/reviews"),
            9,
            "spec.servers[0].hosts[0]",
            "short names (non FQDN) are not allowed",
        );
        assert_error(
            &doc("foo.*.com"),
            9,
            "spec.servers[0].hosts[0]",
            "domain name \"foo.*.com\" invalid (label \"*\" invalid)",
        );
        assert_error(
            &doc("*foo.example.com"),
            9,
            "spec.servers[0].hosts[0]",
            "partial wildcard \"*foo.example.com\" not allowed",
        );
        for host in [
            "*",
            "*.example.com",
            "bookinfo.example.com",
            "10.0.0.1",
            "ns/10.0.0.1",
        ] {
            assert_valid(&doc(host));
        }
    }

    #[test]
    fn port_is_required() {
        assert_error(
            &gw("  - hosts: [\"*\"]\n"),
            7,
            "spec.servers[0].port",
            "port is required",
        );
    }

    #[test]
    fn port_protocol() {
        assert_error(
            &gw("  - port: {number: 80, name: http, protocol: HTTTP}\n    hosts: [\"*\"]\n"),
            7,
            "spec.servers[0].port.protocol",
            "invalid protocol \"HTTTP\", supported protocols are HTTP, HTTPS, HTTP2, GRPC, GRPC-WEB, TCP, TLS, MONGO, REDIS, MYSQL (did you mean \"HTTP\"?)",
        );
        assert_error(
            &gw("  - port: {number: 80, name: http}\n    hosts: [\"*\"]\n"),
            7,
            "spec.servers[0].port.protocol",
            "port protocol is required",
        );
        assert_valid(&gw(
            "  - port: {number: 80, name: http, protocol: http2}\n    hosts: [\"*\"]\n",
        ));
    }

    #[test]
    fn port_number() {
        assert_error(
            &gw("  - port: {number: 70000, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n"),
            7,
            "spec.servers[0].port.number",
            "port number 70000 must be in the range 1..65535",
        );
        assert_error(
            &gw("  - port: {name: http, protocol: HTTP}\n    hosts: [\"*\"]\n"),
            7,
            "spec.servers[0].port.number",
            "port number is required",
        );
        assert_error(
            &gw("  - port: {number: 0, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n"),
            7,
            "spec.servers[0].port.number",
            "port number 0 must be in the range 1..65535",
        );
        // A Unix domain socket listener has port 0.
        assert_valid(&gw(
            "  - port: {number: 0, name: http, protocol: HTTP}\n    bind: unix:///var/run/gw.sock\n    hosts: [\"*\"]\n",
        ));
    }

    #[test]
    fn port_target_port_and_name() {
        let bad =
            gw("  - port: {number: 80, protocol: HTTP, targetPort: 8080}\n    hosts: [\"*\"]\n");
        assert_error(
            &bad,
            7,
            "spec.servers[0].port.targetPort",
            "targetPort has no impact on Gateways",
        );
        assert_error(
            &bad,
            7,
            "spec.servers[0].port.name",
            "port name must be set",
        );
        assert_valid(&gw(
            "  - port: {number: 80, name: http, protocol: HTTP, targetPort: 0}\n    hosts: [\"*\"]\n",
        ));
    }

    #[test]
    fn port_names_are_unique() {
        let doc = |second: &str| {
            format!(
                r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: gw
spec:
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ["a.example.com"]
  - port:
      number: 8080
      name: {second}
      protocol: HTTP
    hosts: ["b.example.com"]
"#
            )
        };
        assert_error(
            &doc("http"),
            11,
            "spec.servers[1].port.name",
            "port names in servers must be unique: duplicate name http",
        );
        assert_valid(&doc("http-alt"));
    }

    #[test]
    fn bind() {
        let doc = |bind: &str, number: u32| {
            gw(&format!(
                "  - port: {{number: {number}, name: http, protocol: HTTP}}\n    bind: \"{bind}\"\n    hosts: [\"*\"]\n"
            ))
        };
        assert_error(
            &doc("localhost", 80),
            8,
            "spec.servers[0].bind",
            "localhost is not a valid IP",
        );
        assert_error(
            &doc("unix://relative.sock", 0),
            8,
            "spec.servers[0].bind",
            "relative.sock is not an absolute path to a file",
        );
        assert_error(
            &doc("unix:///var/run/gw.sock", 80),
            7,
            "spec.servers[0].port.number",
            "port number must be 0 for unix domain socket: 80",
        );
        assert_valid(&doc("10.1.2.3", 80));
        assert_valid(&doc("::1", 80));
        assert_valid(&doc("unix://@gw", 0));
    }

    #[test]
    fn tls_settings_must_fit_the_protocol() {
        assert_error(
            &gw("  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"*\"]\n"),
            7,
            "spec.servers[0].tls",
            "server must have TLS settings for HTTPS/TLS protocols",
        );
        assert_error(
            &gw(
                "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n    tls: {mode: SIMPLE, credentialName: cert}\n",
            ),
            9,
            "spec.servers[0].tls",
            "server cannot have TLS settings for plain text HTTP ports",
        );
        assert_error(
            &gw(
                "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n    tls: {httpsRedirect: true, serverCertificate: /c.pem}\n",
            ),
            9,
            "spec.servers[0].tls",
            "server cannot have TLS settings for plain text HTTP ports",
        );
        assert_error(
            &gw(
                "  - port: {number: 31400, name: tcp, protocol: TCP}\n    hosts: [\"*\"]\n    tls: {mode: PASSTHROUGH}\n",
            ),
            9,
            "spec.servers[0].tls",
            "server cannot have TLS settings for non HTTPS/TLS ports",
        );
        // An HTTP server may carry `httpsRedirect`.
        assert_valid(&gw(
            "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n    tls:\n      httpsRedirect: true\n",
        ));
        assert_valid(&gw(
            "  - port: {number: 443, name: tls, protocol: TLS}\n    hosts: [\"*\"]\n    tls:\n      mode: PASSTHROUGH\n",
        ));
    }

    #[test]
    fn https_redirect_is_for_http_servers() {
        let doc = gw(
            "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls:\n      httpsRedirect: true\n      mode: SIMPLE\n      credentialName: cert\n",
        );
        assert_valid(&doc);
        assert_finding(
            &doc,
            Severity::Warning,
            10,
            "spec.servers[0].tls.httpsRedirect",
            "tls.httpsRedirect should only be used with http servers",
        );
    }

    #[test]
    fn istio_mutual_names_no_certificates() {
        let doc = gw(
            "  - port: {number: 15443, name: tls, protocol: TLS}\n    hosts: [\"*\"]\n    tls:\n      mode: ISTIO_MUTUAL\n      credentialName: cert\n      caCertificates: /ca.pem\n",
        );
        assert_error(
            &doc,
            11,
            "spec.servers[0].tls.credentialName",
            "ISTIO_MUTUAL TLS cannot have associated credentialName",
        );
        assert_error(
            &doc,
            12,
            "spec.servers[0].tls.caCertificates",
            "ISTIO_MUTUAL TLS cannot have associated CA bundle",
        );
        assert_valid(&gw(
            "  - port: {number: 15443, name: tls, protocol: TLS}\n    hosts: [\"*\"]\n    tls:\n      mode: ISTIO_MUTUAL\n",
        ));
    }

    #[test]
    fn passthrough_ignores_certificates() {
        let doc = gw(
            "  - port: {number: 443, name: tls, protocol: TLS}\n    hosts: [\"*\"]\n    tls:\n      mode: AUTO_PASSTHROUGH\n      credentialName: cert\n",
        );
        assert_valid(&doc);
        assert_finding(
            &doc,
            Severity::Warning,
            10,
            "spec.servers[0].tls.mode",
            "AUTO_PASSTHROUGH mode does not use certificates, they will be ignored",
        );
    }

    #[test]
    fn one_certificate_source() {
        assert_error(
            &gw(
                "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls:\n      mode: SIMPLE\n      credentialName: a\n      credentialNames: [b]\n",
            ),
            9,
            "spec.servers[0].tls",
            "only one of credential_name, credential_names, server_certificate/private_key, tls_certificates should be specified",
        );
        assert_error(
            &gw(
                "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls:\n      mode: SIMPLE\n      credentialNames: [a, b, c]\n",
            ),
            11,
            "spec.servers[0].tls.credentialNames",
            "too many: 3: must have at most 2 items",
        );
        assert_valid(&gw(
            "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls:\n      mode: SIMPLE\n      credentialNames: [rsa, ecdsa]\n",
        ));
    }

    #[test]
    fn simple_needs_a_certificate_and_key() {
        let doc = gw(
            "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls:\n      mode: SIMPLE\n",
        );
        assert_error(
            &doc,
            9,
            "spec.servers[0].tls.serverCertificate",
            "SIMPLE TLS requires a server certificate",
        );
        assert_error(
            &doc,
            9,
            "spec.servers[0].tls.privateKey",
            "SIMPLE TLS requires a private key",
        );
        assert_error(
            &gw(
                "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls:\n      mode: SIMPLE\n      tlsCertificates:\n      - serverCertificate: /a.pem\n",
            ),
            12,
            "spec.servers[0].tls.tlsCertificates[0].privateKey",
            "SIMPLE TLS requires a private key",
        );
        assert_valid(&gw(
            "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls:\n      mode: SIMPLE\n      serverCertificate: /etc/certs/cert.pem\n      privateKey: /etc/certs/key.pem\n",
        ));
        assert_valid(&gw(
            "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls:\n      mode: SIMPLE\n      tlsCertificates:\n      - {serverCertificate: /rsa.pem, privateKey: /rsa.key}\n      - {serverCertificate: /ec.pem, privateKey: /ec.key}\n",
        ));
    }

    #[test]
    fn mutual_needs_a_client_ca() {
        let doc = gw(
            "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls:\n      mode: OPTIONAL_MUTUAL\n      serverCertificate: /c.pem\n      privateKey: /k.pem\n",
        );
        assert_error(
            &doc,
            9,
            "spec.servers[0].tls.caCertificates",
            "MUTUAL TLS requires a client CA bundle",
        );
        // With a credential, the CA comes from the secret.
        assert_valid(&gw(
            "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls:\n      mode: MUTUAL\n      credentialName: cert\n",
        ));
    }

    #[test]
    fn crl() {
        assert_error(
            &gw(
                "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls:\n      mode: SIMPLE\n      serverCertificate: /c.pem\n      privateKey: /k.pem\n      caCrl: /crl.pem\n",
            ),
            13,
            "spec.servers[0].tls.caCrl",
            "CRL is not supported with SIMPLE TLS",
        );
        assert_error(
            &gw(
                "  - port: {number: 443, name: tls, protocol: TLS}\n    hosts: [\"*\"]\n    tls:\n      mode: PASSTHROUGH\n      credentialName: cert\n      caCrl: /crl.pem\n",
            ),
            12,
            "spec.servers[0].tls.caCrl",
            "CRL is not supported with credentialName. CRL has to be specified in the credential",
        );
        assert_valid(&gw(
            "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls:\n      mode: MUTUAL\n      serverCertificate: /c.pem\n      privateKey: /k.pem\n      caCertificates: /ca.pem\n      caCrl: /crl.pem\n",
        ));
    }

    #[test]
    fn cipher_suites_and_versions() {
        let doc = gw(
            "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls:\n      mode: SIMPLE\n      credentialName: cert\n      minProtocolVersion: TLSV1_3\n      maxProtocolVersion: TLSV1_2\n      cipherSuites:\n      - ECDHE-RSA-AES128-GCM-SHA256\n      - NOT-A-CIPHER\n      - ECDHE-RSA-AES128-GCM-SHA256\n      - \"-AES128-SHA\"\n",
        );
        assert_valid(&doc);
        assert_finding(
            &doc,
            Severity::Warning,
            16,
            "spec.servers[0].tls.cipherSuites[1]",
            "ignoring invalid cipher suites: [NOT-A-CIPHER]",
        );
        assert_finding(
            &doc,
            Severity::Warning,
            17,
            "spec.servers[0].tls.cipherSuites[2]",
            "ignoring duplicate cipher suites: [ECDHE-RSA-AES128-GCM-SHA256]",
        );
        assert_finding(
            &doc,
            Severity::Warning,
            12,
            "spec.servers[0].tls.minProtocolVersion",
            "minProtocolVersion is higher than maxProtocolVersion: no TLS version can be negotiated",
        );
        let old = gw(
            "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls:\n      mode: SIMPLE\n      credentialName: cert\n      minProtocolVersion: TLSV1_1\n",
        );
        assert_finding(
            &old,
            Severity::Warning,
            12,
            "spec.servers[0].tls.minProtocolVersion",
            "TLS version below TLSV1_2 require setting compatible ciphers as by default they no longer include compatible ciphers.",
        );
        let fine = gw(
            "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls:\n      mode: SIMPLE\n      credentialName: cert\n      minProtocolVersion: TLSV1_2\n      maxProtocolVersion: TLS_AUTO\n      cipherSuites: [ECDHE-ECDSA-AES256-GCM-SHA384]\n",
        );
        assert!(check(&fine).is_empty(), "{:#?}", check(&fine));
    }

    #[test]
    fn selector_labels_warn_when_unmatchable() {
        let doc = r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: gw
spec:
  selector:
    istio: "ingress gateway"
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
"#;
        assert_valid(doc);
        assert_finding(
            doc,
            Severity::Warning,
            7,
            "spec.selector.istio",
            "selector istio=ingress gateway is not a valid Kubernetes label, so it matches no workload",
        );
    }
}
