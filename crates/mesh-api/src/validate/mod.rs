//! Per-resource validation: the rules of Istio's admission webhook (`pkg/config/validation`) and of its
//! CRD schemas, plus what the Kubernetes API server checks on metadata. One module per kind.

pub mod common;
mod destination_rule;
mod gateway;
mod security;
mod service_entry;
mod sidecar;
mod tls;
mod virtual_service;
mod workload;

pub use virtual_service::GRPC_STATUS;

use crate::diag::{Finding, Report};
use crate::path::FieldPath;
use crate::resource::{Kind, Resource, Spec};

/// What a kind's validator knows about the resource besides its spec.
#[derive(Debug)]
pub struct Ctx<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub resource: &'a Resource,
}

/// Validates one resource; returns its findings (errors and warnings) with positions in its document.
pub fn validate(resource: &Resource) -> Vec<Finding> {
    let mut report = Report::new(&resource.node);
    metadata(resource, &mut report);
    let ctx = Ctx {
        name: &resource.name,
        namespace: &resource.namespace,
        resource,
    };
    let at = FieldPath::ROOT.key("spec");
    let r = &mut report;
    match &resource.spec {
        Spec::VirtualService(s) => virtual_service::validate(&ctx, s, r, &at),
        Spec::DestinationRule(s) => destination_rule::validate(&ctx, s, r, &at),
        Spec::Gateway(s) => gateway::validate(&ctx, s, r, &at),
        Spec::ServiceEntry(s) => service_entry::validate(&ctx, s, r, &at),
        Spec::Sidecar(s) => sidecar::validate(&ctx, s, r, &at),
        Spec::WorkloadEntry(s) => workload::validate_workload_entry(&ctx, s, r, &at),
        Spec::WorkloadGroup(s) => workload::validate_workload_group(&ctx, s, r, &at),
        Spec::PeerAuthentication(s) => security::validate_peer_authentication(&ctx, s, r, &at),
        Spec::AuthorizationPolicy(s) => security::validate_authorization_policy(&ctx, s, r, &at),
        Spec::RequestAuthentication(s) => {
            security::validate_request_authentication(&ctx, s, r, &at)
        }
    }
    report.findings
}

/// What the API server checks on every object, and Istio's annotation rules.
fn metadata(resource: &Resource, report: &mut Report<'_>) {
    let meta = FieldPath::ROOT.key("metadata");
    let name_at = meta.key("name");
    if resource.kind == Kind::Gateway {
        // Gateways are referenced as `ns/name`, so a dot would be ambiguous.
        if !common::is_lowercase_dns1123_label(&resource.name) {
            report.error(
                &name_at,
                format!("invalid gateway name: {:?}", resource.name),
            );
        }
    } else if !common::is_dns1123_subdomain(&resource.name) {
        report.error(
            &name_at,
            format!(
                "invalid name {:?}: must be lower case letters, digits, '-' and '.', starting and ending with a letter or digit",
                resource.name
            ),
        );
    }
    if let Some(ns) = &resource.meta.namespace
        && !common::is_lowercase_dns1123_label(ns)
    {
        report.error(
            &meta.key("namespace"),
            format!("invalid namespace {ns:?}: must be a lower case DNS-1123 label"),
        );
    }
    let labels_at = meta.key("labels");
    for (k, v) in &resource.meta.labels {
        let p = labels_at.key(k);
        if let Some(e) = common::label_key_error(k) {
            report.error(&p, e);
        } else if !common::is_label_value(v) {
            report.error(&p, format!("invalid label value {v:?}: must be at most 63 characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit"));
        }
    }
    let annotations_at = meta.key("annotations");
    for k in resource.meta.annotations.keys() {
        let p = annotations_at.key(k);
        if k == "istio.io/dry-run" && resource.kind != Kind::AuthorizationPolicy {
            report.error(
                &p,
                format!(
                    "{}/{} has unsupported annotation istio.io/dry-run, please remove the annotation",
                    resource.namespace, resource.name
                ),
            );
        }
        if k == "internal.istio.io/webhook-always-reject" {
            report.error(&p, format!("{k:?} annotation found, rejecting"));
        }
    }
}

/// Helpers for the validators' tests: load one YAML document and check its findings precisely.
#[cfg(test)]
pub(crate) mod testing {
    use crate::diag::{Finding, Severity};
    use crate::resource::load_str;

    /// Every finding for `yaml`: load errors (unknown fields, types) and validation.
    pub fn check(yaml: &str) -> Vec<Finding> {
        let loaded = load_str(yaml, None);
        let mut all = loaded.findings;
        for r in &loaded.resources {
            all.extend(super::validate(r));
        }
        all
    }

    /// Asserts that `yaml` has no errors (warnings allowed).
    #[track_caller]
    pub fn assert_valid(yaml: &str) {
        let errors: Vec<_> = check(yaml)
            .into_iter()
            .filter(|f| f.severity == Severity::Error)
            .collect();
        assert!(errors.is_empty(), "unexpected errors: {errors:#?}");
    }

    /// Asserts that `yaml` has a finding of `severity` with exactly this message, field path and line,
    /// and returns it.
    #[track_caller]
    pub fn assert_finding(
        yaml: &str,
        severity: Severity,
        line: usize,
        field: &str,
        message: &str,
    ) -> Finding {
        let all = check(yaml);
        all.iter()
            .find(|f| {
                f.severity == severity
                    && f.message == message
                    && f.field == field
                    && f.pos.line == line
            })
            .cloned()
            .unwrap_or_else(|| {
                panic!("no {severity} {message:?} at line {line} field {field:?}; found: {all:#?}")
            })
    }

    /// [`assert_finding`] for an error.
    #[track_caller]
    pub fn assert_error(yaml: &str, line: usize, field: &str, message: &str) -> Finding {
        assert_finding(yaml, Severity::Error, line, field, message)
    }
}
