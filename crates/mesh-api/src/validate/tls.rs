//! Server-side TLS settings (`ServerTLSSettings`), shared by Gateway servers and Sidecar ingress
//! listeners: Istio's `validateTLSOptions` plus the CRD schema's limits on the same type.

use std::collections::BTreeSet;

use super::common::{self, is_set};
use crate::diag::Report;
use crate::path::FieldPath;
use crate::types::gateway::{ServerTlsMode, ServerTlsSettings, TlsProtocol};

/// Cipher suites Envoy (BoringSSL) accepts in `tls.cipherSuites` (Istio's `security.ValidCipherSuites`).
const CIPHER_SUITES: &[&str] = &[
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-SHA",
    "AES256-SHA",
    "DES-CBC3-SHA",
];

/// Where the invalid/duplicate cipher suite warnings point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CipherWarnings {
    /// One warning per offending entry, at the entry (`cipherSuites[1]`).
    PerEntry,
    /// Istio's form: one warning per kind listing the sorted offenders, at `cipherSuites`.
    Aggregated,
}

/// Istio's `validateTLSOptions` (server-side TLS) and the CRD's `maxItems` on `credentialNames` and
/// `tlsCertificates`, plus a warning when no TLS version fits between min and max.
pub(super) fn server_tls_options(
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
    tls: &ServerTlsSettings,
    cipher_warnings: CipherWarnings,
) {
    let mode = tls.mode.unwrap_or_default();

    let min = tls.min_protocol_version.unwrap_or_default();
    let max = tls.max_protocol_version.unwrap_or_default();
    if matches!(min, TlsProtocol::Tlsv10 | TlsProtocol::Tlsv11) && tls.cipher_suites.is_empty() {
        report.warn(
            &at.key("minProtocolVersion"),
            "TLS version below TLSV1_2 require setting compatible ciphers as by default they no longer include compatible ciphers.",
        );
    }
    if let (Some(lo), Some(hi)) = (tls_version_rank(min), tls_version_rank(max))
        && lo > hi
    {
        report.warn(
            &at.key("minProtocolVersion"),
            "minProtocolVersion is higher than maxProtocolVersion: no TLS version can be negotiated",
        );
    }

    cipher_suites(report, &at.key("cipherSuites"), tls, cipher_warnings);

    common::max_entries(
        report,
        &at.key("credentialNames"),
        tls.credential_names.len(),
        2,
    );
    common::max_entries(
        report,
        &at.key("tlsCertificates"),
        tls.tls_certificates.len(),
        2,
    );

    let has_credential_name = is_set(&tls.credential_name);
    let has_credential_names = !tls.credential_names.is_empty();
    let has_tls_certificates = !tls.tls_certificates.is_empty();

    if mode == ServerTlsMode::IstioMutual {
        // Istio's own certificates: nothing else may name any.
        let fields = [
            (
                "serverCertificate",
                is_set(&tls.server_certificate),
                "server certificate",
            ),
            ("privateKey", is_set(&tls.private_key), "private key"),
            ("caCertificates", is_set(&tls.ca_certificates), "CA bundle"),
            ("tlsCertificates", has_tls_certificates, "tlsCertificates"),
            ("credentialName", has_credential_name, "credentialName"),
            ("credentialNames", has_credential_names, "credentialNames"),
        ];
        for (field, present, what) in fields {
            if present {
                report.error(
                    &at.key(field),
                    format!("ISTIO_MUTUAL TLS cannot have associated {what}"),
                );
            }
        }
        return;
    }

    if matches!(
        mode,
        ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough
    ) && (is_set(&tls.ca_crl)
        || is_set(&tls.server_certificate)
        || is_set(&tls.private_key)
        || is_set(&tls.ca_certificates)
        || has_tls_certificates
        || has_credential_name
        || has_credential_names)
    {
        // At the mode when it is written, else (PASSTHROUGH by default) at the block.
        let mode_at = at.key("mode");
        report.warn(
            if tls.mode.is_some() { &mode_at } else { at },
            format!(
                "{} mode does not use certificates, they will be ignored",
                mode.name()
            ),
        );
    }

    let sources = [
        is_set(&tls.server_certificate) && is_set(&tls.private_key),
        has_credential_name,
        has_credential_names,
        has_tls_certificates,
    ];
    if sources.iter().filter(|s| **s).count() > 1 {
        report.error(
            at,
            "only one of credential_name, credential_names, server_certificate/private_key, tls_certificates should be specified",
        );
    }

    let terminates = matches!(
        mode,
        ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual
    );
    // With a credential the certificates (and any CRL) come from the secret: nothing else to check.
    if terminates && (has_credential_name || has_credential_names) {
        return;
    }
    if terminates {
        let prefix = if mode == ServerTlsMode::Simple {
            "SIMPLE TLS"
        } else {
            if !is_set(&tls.ca_certificates) {
                report.error(
                    &at.key("caCertificates"),
                    "MUTUAL TLS requires a client CA bundle",
                );
            }
            "MUTUAL TLS"
        };
        let certs_at = at.key("tlsCertificates");
        if tls.tls_certificates.len() > 2 {
            report.warn(
                &certs_at,
                format!("{prefix} can support up to 2 server certificates"),
            );
        }
        if has_tls_certificates {
            for (i, cert) in tls.tls_certificates.iter().enumerate() {
                let c_at = certs_at.index(i);
                if !is_set(&cert.server_certificate) {
                    report.error(
                        &c_at.key("serverCertificate"),
                        format!("{prefix} requires a server certificate"),
                    );
                }
                if !is_set(&cert.private_key) {
                    report.error(
                        &c_at.key("privateKey"),
                        format!("{prefix} requires a private key"),
                    );
                }
            }
        } else {
            if !is_set(&tls.server_certificate) {
                report.error(
                    &at.key("serverCertificate"),
                    format!("{prefix} requires a server certificate"),
                );
            }
            if !is_set(&tls.private_key) {
                report.error(
                    &at.key("privateKey"),
                    format!("{prefix} requires a private key"),
                );
            }
        }
    }
    if is_set(&tls.ca_crl) {
        let crl_at = at.key("caCrl");
        if has_credential_name {
            report.error(
                &crl_at,
                "CRL is not supported with credentialName. CRL has to be specified in the credential",
            );
        }
        if mode == ServerTlsMode::Simple {
            report.error(&crl_at, "CRL is not supported with SIMPLE TLS");
        }
    }
}

/// `ignoring invalid cipher suites: [..]` and `ignoring duplicate cipher suites: [..]` warnings.
fn cipher_suites(
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
    tls: &ServerTlsSettings,
    style: CipherWarnings,
) {
    let mut invalid = BTreeSet::new();
    let mut valid = BTreeSet::new();
    let mut duplicate = BTreeSet::new();
    for (i, cs) in tls.cipher_suites.iter().enumerate() {
        let cs = cs.as_str();
        let kind = if !is_valid_cipher_suite(cs) {
            invalid.insert(cs);
            "invalid"
        } else if !valid.insert(cs) {
            duplicate.insert(cs);
            "duplicate"
        } else {
            continue;
        };
        if style == CipherWarnings::PerEntry {
            report.warn(
                &at.index(i),
                format!("ignoring {kind} cipher suites: [{cs}]"),
            );
        }
    }
    if style == CipherWarnings::Aggregated {
        for (kind, set) in [("invalid", &invalid), ("duplicate", &duplicate)] {
            if !set.is_empty() {
                let list = set.iter().copied().collect::<Vec<_>>().join(" ");
                report.warn(at, format!("ignoring {kind} cipher suites: [{list}]"));
            }
        }
    }
}

/// Ordering of explicit TLS versions; `TLS_AUTO` leaves the bound to Envoy.
fn tls_version_rank(v: TlsProtocol) -> Option<u8> {
    match v {
        TlsProtocol::TlsAuto => None,
        TlsProtocol::Tlsv10 => Some(0),
        TlsProtocol::Tlsv11 => Some(1),
        TlsProtocol::Tlsv12 => Some(2),
        TlsProtocol::Tlsv13 => Some(3),
    }
}

/// Istio's `security.IsValidCipherSuite`: a known suite, `ALL`, or an OpenSSL-style expression (`-X`,
/// `+X`, `!X`, `[A|B]`) it does not parse.
fn is_valid_cipher_suite(cs: &str) -> bool {
    match cs.chars().next() {
        None => true,
        Some(c) if !c.is_alphanumeric() => true,
        Some(_) => cs == "ALL" || CIPHER_SUITES.contains(&cs),
    }
}

#[cfg(test)]
mod tests {
    use crate::diag::Severity;
    use crate::validate::testing::{assert_error, assert_finding};

    fn gateway(tls: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: gw\nspec:\n  servers:\n  - port: {{number: 443, name: https, protocol: HTTPS}}\n    hosts: [\"*\"]\n    tls:\n{tls}"
        )
    }

    fn sidecar(tls: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: s\nspec:\n  ingress:\n  - port: {{number: 8443, protocol: HTTPS}}\n    tls:\n{tls}"
        )
    }

    #[test]
    fn more_than_two_certificates() {
        let certs = "      mode: SIMPLE\n      tlsCertificates:\n      - {serverCertificate: /a.pem, privateKey: /a.key}\n      - {serverCertificate: /b.pem, privateKey: /b.key}\n      - {serverCertificate: /c.pem, privateKey: /c.key}\n";
        let gw = gateway(certs);
        let t = "spec.servers[0].tls.tlsCertificates";
        assert_finding(
            &gw,
            Severity::Warning,
            11,
            t,
            "SIMPLE TLS can support up to 2 server certificates",
        );
        assert_error(&gw, 11, t, "too many: 3: must have at most 2 items");
        // The Sidecar CRD has the same `maxItems`.
        assert_error(
            &sidecar(certs),
            10,
            "spec.ingress[0].tls.tlsCertificates",
            "too many: 3: must have at most 2 items",
        );
    }

    #[test]
    fn passthrough_warning_points_at_the_mode_when_written() {
        assert_finding(
            &sidecar("      mode: PASSTHROUGH\n      serverCertificate: /c.pem\n"),
            Severity::Warning,
            9,
            "spec.ingress[0].tls.mode",
            "PASSTHROUGH mode does not use certificates, they will be ignored",
        );
        assert_finding(
            &gateway("      serverCertificate: /c.pem\n"),
            Severity::Warning,
            9,
            "spec.servers[0].tls",
            "PASSTHROUGH mode does not use certificates, they will be ignored",
        );
    }
}
