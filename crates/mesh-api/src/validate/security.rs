//! security.istio.io: PeerAuthentication, AuthorizationPolicy and RequestAuthentication.
//!
//! The rules of Istio's admission webhook (`ValidatePeerAuthentication`, `ValidateAuthorizationPolicy`,
//! `ValidateRequestAuthentication` in `pkg/config/validation`, and the attribute, IP, port, path and
//! JWKS checks of `pkg/config/security`) plus the CRD schemas' own rules (required fields, lengths,
//! `maxItems`, patterns and the `x-kubernetes-validations` CEL rules). Messages are Istio's where Istio
//! has one; each finding points at the offending field itself.

use std::net::IpAddr;

use super::Ctx;
use super::common;
use crate::diag::{Report, did_you_mean};
use crate::path::FieldPath;
use crate::types::common::{LabelSelector, PolicyTargetReference};
use crate::types::security::{
    Action, AuthorizationPolicySpec, Condition, JwtRule, Operation, PeerAuthenticationSpec,
    RequestAuthenticationSpec, Rule, Source,
};

// ---------------------------------------------------------------------------------------------------
// PeerAuthentication
// ---------------------------------------------------------------------------------------------------

pub(super) fn validate_peer_authentication(
    ctx: &Ctx<'_>,
    spec: &PeerAuthenticationSpec,
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
) {
    let plm_at = at.key("portLevelMtls");
    let no_selector_labels = spec
        .selector
        .as_ref()
        .is_none_or(|s| s.match_labels.is_empty());
    if no_selector_labels && !spec.port_level_mtls.is_empty() {
        report.error(
            &plm_at,
            "portLevelMtls requires selector: mesh/namespace peer authentication cannot have port level mTLS",
        );
    }
    if spec.port_level_mtls.is_empty() && common::is_empty_map(&ctx.resource.node, &plm_at) {
        report.error(
            &plm_at,
            "port level mTLS, if defined, must have at least one element",
        );
    }
    for key in spec.port_level_mtls.keys() {
        port_key(report, &plm_at.key(key), key);
    }
    if let Some(selector) = &spec.selector {
        selector_labels(report, &at.key("selector"), selector);
    }
}

/// A `portLevelMtls` key: a port number as text (the map is `map<uint32, MutualTLS>`).
fn port_key(report: &mut Report<'_>, at: &FieldPath<'_>, key: &str) {
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_digit()) {
        report.error(
            at,
            format!("invalid port {key:?} in portLevelMtls: keys must be port numbers"),
        );
        return;
    }
    match key.parse::<u32>() {
        Ok(n) => {
            common::port(report, at, n);
        }
        Err(_) => report.error(
            at,
            format!("port number {key} must be in the range 1..65535"),
        ),
    }
}

// ---------------------------------------------------------------------------------------------------
// AuthorizationPolicy
// ---------------------------------------------------------------------------------------------------

/// The attribute keys of `when` conditions Istio supports (`pkg/config/security`), for suggestions.
const WHEN_KEYS: &[&str] = &[
    "request.headers[]",
    "source.ip",
    "remote.ip",
    "source.namespace",
    "source.serviceAccount",
    "source.principal",
    "source.trustDomain",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "request.auth.claims[]",
    "destination.ip",
    "destination.port",
    "connection.sni",
    "experimental.envoy.filters.",
];

/// The standard HTTP methods (upper case, as requests carry them).
const HTTP_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

const TOO_MANY_RULES: usize = 512;
const HTTP_ONLY_DENY_WARNING: &str = "configured AuthorizationPolicy will deny all traffic to TCP ports under its scope due to the use of only HTTP attributes in a DENY rule; it is recommended to explicitly specify the port";
const MEANINGLESS_WITHOUT_RULES: &str = "without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request";

pub(super) fn validate_authorization_policy(
    ctx: &Ctx<'_>,
    spec: &AuthorizationPolicySpec,
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
) {
    selector_and_targets(
        ctx,
        spec.selector.as_ref(),
        spec.target_ref.as_ref(),
        &spec.target_refs,
        report,
        at,
    );
    let action = spec.action.unwrap_or_default();
    dry_run_annotation(ctx, action, report);

    let action_at = at.key("action");
    let provider_at = at.key("provider");
    let rules_at = at.key("rules");
    match action {
        Action::Custom => {
            if spec.rules.is_empty() {
                report.error(
                    &action_at,
                    format!("CUSTOM action {MEANINGLESS_WITHOUT_RULES}"),
                );
            } else if spec
                .provider
                .as_ref()
                .and_then(|p| p.name.as_deref())
                .is_none_or(str::is_empty)
            {
                report.error(
                    &provider_at.key("name"),
                    "`provider.name` must not be empty",
                );
            }
        }
        Action::Deny if spec.rules.is_empty() => {
            report.error(
                &action_at,
                format!("DENY action {MEANINGLESS_WITHOUT_RULES}"),
            );
        }
        _ => {}
    }
    if spec.provider.is_some() && action != Action::Custom {
        report.error(
            &provider_at,
            format!(
                "`provider` must not be with non CUSTOM action, found {}",
                action_name(action)
            ),
        );
    }

    common::too_many(report, &rules_at, spec.rules.len(), TOO_MANY_RULES, "items");
    for (i, rule) in spec.rules.iter().enumerate() {
        let rule_at = rules_at.index(i);
        if common::is_null(&ctx.resource.node, &rule_at) {
            report.error(
                &rule_at,
                format!("`rule` must not be nil, found at rule {i}"),
            );
            continue;
        }
        authz_rule(ctx, action, i, rule, report, &rule_at);
    }
}

fn action_name(action: Action) -> &'static str {
    match action {
        Action::Allow => "ALLOW",
        Action::Deny => "DENY",
        Action::Audit => "AUDIT",
        Action::Custom => "CUSTOM",
    }
}

/// `istio.io/dry-run` is allowed on AuthorizationPolicy only (the other kinds are checked in `mod.rs`):
/// a Go boolean, and only for ALLOW/DENY policies.
fn dry_run_annotation(ctx: &Ctx<'_>, action: Action, report: &mut Report<'_>) {
    const DRY_RUN: &str = "istio.io/dry-run";
    let Some(value) = ctx.resource.meta.annotations.get(DRY_RUN) else {
        return;
    };
    let meta = FieldPath::ROOT.key("metadata");
    let annotations = meta.key("annotations");
    let at = annotations.key(DRY_RUN);
    let (ns, name) = (ctx.namespace, ctx.name);
    if !matches!(action, Action::Allow | Action::Deny) {
        report.error(
            &at,
            format!(
                "the annotation {DRY_RUN} currently only supports action ALLOW/DENY, found action {} in {ns}/{name}",
                action_name(action)
            ),
        );
    } else if !matches!(
        value.as_str(),
        "1" | "t" | "T" | "TRUE" | "true" | "True" | "0" | "f" | "F" | "FALSE" | "false" | "False"
    ) {
        report.error(
            &at,
            format!(
                "{ns}/{name} has annotation {DRY_RUN} with invalid value ({value}): must be true or false"
            ),
        );
    }
}

fn authz_rule(
    ctx: &Ctx<'_>,
    action: Action,
    i: usize,
    rule: &Rule,
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
) {
    let from_at = at.key("from");
    common::too_many(report, &from_at, rule.from.len(), TOO_MANY_RULES, "items");
    let mut from_exists = false;
    let mut tcp_in_from = false;
    for (j, from) in rule.from.iter().enumerate() {
        let item_at = from_at.index(j);
        if common::is_null(&ctx.resource.node, &item_at) {
            report.error(
                &item_at,
                format!("`from` must not be nil, found at rule {i}"),
            );
            continue;
        }
        let source_at = item_at.key("source");
        let Some(source) = &from.source else {
            report.error(
                &source_at,
                format!("`from.source` must not be nil, found at rule {i}"),
            );
            continue;
        };
        from_exists = true;
        tcp_in_from |= source_has_tcp_fields(source);
        authz_source(action, i, source, report, &source_at);
    }

    let to_at = at.key("to");
    let mut to_exists = false;
    let mut tcp_in_to = false;
    for (j, to) in rule.to.iter().enumerate() {
        let item_at = to_at.index(j);
        if common::is_null(&ctx.resource.node, &item_at) {
            report.error(&item_at, format!("`to` must not be nil, found at rule {i}"));
            continue;
        }
        let op_at = item_at.key("operation");
        let Some(op) = &to.operation else {
            report.error(
                &op_at,
                format!("`to.operation` must not be nil, found at rule {i}"),
            );
            continue;
        };
        to_exists = true;
        tcp_in_to |= !op.ports.is_empty() || !op.not_ports.is_empty();
        authz_operation(i, op, report, &op_at);
    }

    let when_at = at.key("when");
    for (j, condition) in rule.when.iter().enumerate() {
        let cond_at = when_at.index(j);
        if common::is_null(&ctx.resource.node, &cond_at) {
            report.error(&cond_at, "when field cannot be nil");
            continue;
        }
        authz_condition(action, condition, report, &cond_at);
    }

    if action == Action::Deny
        && ((from_exists && !to_exists && !tcp_in_from) || (to_exists && !tcp_in_to))
    {
        report.warn(at, HTTP_ONLY_DENY_WARNING);
    }
}

/// How a `Source` list is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceKind {
    /// Principals, request principals, namespaces: non-empty; a `*` only at either end.
    Plain,
    /// `namespace/serviceAccount` or `serviceAccount`.
    ServiceAccount,
    /// Trust domains: wildcard rules, no `/`.
    TrustDomain,
    /// IP addresses or CIDR ranges.
    Ip,
}

/// The lists of a `Source`: YAML key, Istio's name for it in messages, the values, how to check them.
fn source_lists(s: &Source) -> [(&'static str, &'static str, &[String], SourceKind); 14] {
    use SourceKind::{Ip, Plain, ServiceAccount, TrustDomain};
    [
        ("principals", "Principals", &s.principals, Plain),
        ("notPrincipals", "NotPrincipals", &s.not_principals, Plain),
        (
            "requestPrincipals",
            "RequestPrincipals",
            &s.request_principals,
            Plain,
        ),
        (
            "notRequestPrincipals",
            "NotRequestPrincipals",
            &s.not_request_principals,
            Plain,
        ),
        ("namespaces", "Namespaces", &s.namespaces, Plain),
        ("notNamespaces", "NotNamespaces", &s.not_namespaces, Plain),
        (
            "serviceAccounts",
            "ServiceAccounts",
            &s.service_accounts,
            ServiceAccount,
        ),
        (
            "notServiceAccounts",
            "NotServiceAccounts",
            &s.not_service_accounts,
            ServiceAccount,
        ),
        (
            "trustDomains",
            "TrustDomains",
            &s.trust_domains,
            TrustDomain,
        ),
        (
            "notTrustDomains",
            "NotTrustDomains",
            &s.not_trust_domains,
            TrustDomain,
        ),
        ("ipBlocks", "IpBlocks", &s.ip_blocks, Ip),
        ("notIpBlocks", "NotIpBlocks", &s.not_ip_blocks, Ip),
        ("remoteIpBlocks", "RemoteIpBlocks", &s.remote_ip_blocks, Ip),
        (
            "notRemoteIpBlocks",
            "NotRemoteIpBlocks",
            &s.not_remote_ip_blocks,
            Ip,
        ),
    ]
}

/// Whether a source uses attributes that also apply to TCP traffic (not only HTTP).
fn source_has_tcp_fields(s: &Source) -> bool {
    [
        &s.principals,
        &s.not_principals,
        &s.ip_blocks,
        &s.not_ip_blocks,
        &s.namespaces,
        &s.not_namespaces,
        &s.remote_ip_blocks,
        &s.not_remote_ip_blocks,
        &s.service_accounts,
        &s.not_service_accounts,
    ]
    .iter()
    .any(|l| !l.is_empty())
}

fn authz_source(
    action: Action,
    i: usize,
    source: &Source,
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
) {
    let lists = source_lists(source);
    if lists.iter().all(|(_, _, values, _)| values.is_empty()) {
        report.error(
            at,
            format!("`from.source` must not be empty, found at rule {i}"),
        );
        return;
    }
    let has = |l: &[String]| !l.is_empty();
    if has(&source.service_accounts) || has(&source.not_service_accounts) {
        let conflict = [
            ("principals", &source.principals),
            ("notPrincipals", &source.not_principals),
            ("namespaces", &source.namespaces),
            ("notNamespaces", &source.not_namespaces),
        ];
        if let Some((key, _)) = conflict.iter().find(|(_, l)| has(l)) {
            report.error(
                &at.key(key),
                format!(
                    "cannot set serviceAccounts with namespaces or principals, found at rule {i}"
                ),
            );
        }
    }
    for (key, name, values, kind) in lists {
        if values.is_empty() {
            continue;
        }
        let list_at = at.key(key);
        if action == Action::Custom && kind != SourceKind::Ip {
            report.error(
                &list_at,
                format!("From.{name} is currently not supported with CUSTOM action"),
            );
        }
        if kind == SourceKind::ServiceAccount {
            too_many_values(report, &list_at, values.len());
        }
        for (j, value) in values.iter().enumerate() {
            let value_at = list_at.index(j);
            if value.is_empty() {
                report.error(
                    &value_at,
                    format!("empty value not allowed, found in {name}"),
                );
                continue;
            }
            let problem = match kind {
                SourceKind::Plain => {
                    literal_wildcard_warning(report, &value_at, value);
                    None
                }
                SourceKind::ServiceAccount => service_account_error(name, value),
                SourceKind::TrustDomain => trust_domain_error(name, value),
                SourceKind::Ip => ip_error(value),
            };
            if let Some(e) = problem {
                report.error(&value_at, e);
            }
        }
    }
}

fn authz_operation(i: usize, op: &Operation, report: &mut Report<'_>, at: &FieldPath<'_>) {
    let lists: [(&str, &str, &[String]); 8] = [
        ("hosts", "Hosts", &op.hosts),
        ("notHosts", "NotHosts", &op.not_hosts),
        ("ports", "Ports", &op.ports),
        ("notPorts", "NotPorts", &op.not_ports),
        ("methods", "Methods", &op.methods),
        ("notMethods", "NotMethods", &op.not_methods),
        ("paths", "Paths", &op.paths),
        ("notPaths", "NotPaths", &op.not_paths),
    ];
    if lists.iter().all(|(_, _, values)| values.is_empty()) {
        report.error(
            at,
            format!("`to.operation` must not be empty, found at rule {i}"),
        );
        return;
    }
    for (key, name, values) in lists {
        let list_at = at.key(key);
        for (j, value) in values.iter().enumerate() {
            let value_at = list_at.index(j);
            if value.is_empty() {
                report.error(
                    &value_at,
                    format!("empty value not allowed, found in {name}"),
                );
                continue;
            }
            match key {
                "ports" | "notPorts" => {
                    if let Some(e) = port_value_error(value) {
                        report.error(&value_at, e);
                    }
                }
                "paths" | "notPaths" => {
                    if let Some(e) = path_template_error(name, value) {
                        report.error(&value_at, e);
                    } else if !contains_path_template(value) {
                        literal_wildcard_warning(report, &value_at, value);
                    }
                }
                "methods" | "notMethods" => {
                    let upper = value.to_ascii_uppercase();
                    if *value != upper && HTTP_METHODS.contains(&upper.as_str()) {
                        report.warn(
                            &value_at,
                            format!("method {value:?} is compared case-sensitively and never matches; did you mean {upper:?}?"),
                        );
                    }
                    literal_wildcard_warning(report, &value_at, value);
                }
                _ => literal_wildcard_warning(report, &value_at, value),
            }
        }
    }
}

fn authz_condition(
    action: Action,
    condition: &Condition,
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
) {
    let key_at = at.key("key");
    let key = condition.key.as_deref().unwrap_or_default();
    if key.is_empty() {
        report.error(&key_at, "`key` must not be empty");
        return;
    }
    if action == Action::Custom
        && (matches!(
            key,
            "source.namespace"
                | "source.serviceAccount"
                | "source.trustDomain"
                | "source.principal"
        ) || key.starts_with("request.auth."))
    {
        report.error(
            &key_at,
            format!("{key} is currently not supported with CUSTOM action"),
        );
    }
    if condition.values.is_empty() && condition.not_values.is_empty() {
        report.error(
            at,
            format!("at least one of `values` or `notValues` must be set for key {key}"),
        );
        return;
    }
    let attribute = match attribute(key) {
        Ok(a) => a,
        Err(e) => {
            report.error(&key_at, e);
            return;
        }
    };
    for (list_key, what, values) in [
        ("values", "value", &condition.values),
        ("notValues", "notValue", &condition.not_values),
    ] {
        let list_at = at.key(list_key);
        if attribute == Attribute::ServiceAccount && too_many_values(report, &list_at, values.len())
        {
            continue;
        }
        for (j, value) in values.iter().enumerate() {
            let problem = if value.is_empty() {
                Some(format!("empty value not allowed, found in {key}"))
            } else {
                match attribute {
                    Attribute::Ip => ip_error(value),
                    Attribute::Port => port_value_error(value),
                    Attribute::ServiceAccount => service_account_error(key, value),
                    Attribute::WildcardValue => wildcard_error(key, value),
                    Attribute::Any => None,
                }
            };
            if let Some(e) = problem {
                report.error(
                    &list_at.index(j),
                    format!("invalid `{what}` for `key` {key}: {e}"),
                );
            }
        }
    }
}

/// What a supported `when` key's values must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attribute {
    Any,
    Ip,
    Port,
    ServiceAccount,
    WildcardValue,
}

/// Istio's `ValidateAttribute` for the key: the kind of its values, or why the key is not supported.
fn attribute(key: &str) -> Result<Attribute, String> {
    let map_key = |key: &str| -> Result<Attribute, String> {
        let open = key.find('[');
        match open {
            Some(open) if key.ends_with(']') && open > 0 && open + 2 < key.len() => {
                Ok(Attribute::Any)
            }
            _ => Err(format!("bad key ({key}): should have format a[b]")),
        }
    };
    match key {
        _ if key.starts_with("request.headers") => map_key(key),
        "source.ip" | "remote.ip" | "destination.ip" => Ok(Attribute::Ip),
        "source.namespace"
        | "source.principal"
        | "request.auth.principal"
        | "request.auth.audiences"
        | "request.auth.presenter"
        | "connection.sni" => Ok(Attribute::Any),
        "source.serviceAccount" => Ok(Attribute::ServiceAccount),
        "source.trustDomain" => Ok(Attribute::WildcardValue),
        _ if key.starts_with("request.auth.claims") => map_key(key),
        "destination.port" => Ok(Attribute::Port),
        _ if key.starts_with("experimental.envoy.filters.") => map_key(key),
        "destination.namespace" => Err(format!(
            "attribute {key} is replaced by the metadata.namespace"
        )),
        _ if key.starts_with("destination.labels") => Err(format!(
            "attribute {key} is replaced by the workload selector"
        )),
        "destination.name" | "destination.user" => Err(format!(
            "deprecated attribute {key}: only supported in v1alpha1"
        )),
        _ => Err(format!(
            "unknown attribute: {key}{}",
            did_you_mean(key, WHEN_KEYS.iter().copied())
        )),
    }
}

/// `may not have more than 16 values` (service accounts; also the CRD's `maxItems: 16`).
fn too_many_values(report: &mut Report<'_>, at: &FieldPath<'_>, len: usize) -> bool {
    if len > 16 {
        report.error(at, "may not have more than 16 values");
        true
    } else {
        false
    }
}

/// Istio's `CheckServiceAccount` for one value.
fn service_account_error(name: &str, value: &str) -> Option<String> {
    if value.contains('*') {
        return Some(format!("wildcard not allowed, found in {name}"));
    }
    if value.matches('/').count() > 1 {
        return Some(format!(
            "expected format 'serviceAccount' or 'namespace/serviceAccount', found {value:?} in {name}"
        ));
    }
    if value.len() > 320 {
        return Some(format!(
            "value cannot exceed 320 characters, found {value:?} in {name}"
        ));
    }
    match value.split_once('/') {
        Some(("", _)) => Some(format!(
            "expected format 'serviceAccount' or 'namespace/serviceAccount', found empty namespace {value:?} in {name}"
        )),
        Some((_, "")) => Some(format!(
            "expected format 'serviceAccount' or 'namespace/serviceAccount', found empty serviceAccount {value:?} in {name}"
        )),
        _ => None,
    }
}

/// Istio's `CheckWildcardValues` for one non-empty value: at most one `*`, only at either end.
fn wildcard_error(name: &str, value: &str) -> Option<String> {
    match value.matches('*').count() {
        0 => None,
        1 if value.starts_with('*') || value.ends_with('*') => None,
        1 => Some(format!(
            "wildcard is only allowed at the start or end, found in {name}: {value:?}"
        )),
        _ => Some(format!(
            "at most one wildcard is allowed, found in {name}: {value:?}"
        )),
    }
}

/// Istio's `CheckTrustDomainValues` for one non-empty value.
fn trust_domain_error(name: &str, value: &str) -> Option<String> {
    wildcard_error(name, value).or_else(|| {
        value
            .contains('/')
            .then(|| format!("trust domain must not contain '/', found in {name}: {value:?}"))
    })
}

/// Istio matches these values exactly unless they are `*`, `prefix*` or `*suffix`: a `*` anywhere else
/// is taken literally, which is rarely what was meant (accepted, so a warning).
fn literal_wildcard_warning(report: &mut Report<'_>, at: &FieldPath<'_>, value: &str) {
    // Istio's matcher: `*` alone is presence, a leading `*` makes a suffix match, else a trailing `*`
    // a prefix match; whatever remains is compared literally.
    let rest = if value == "*" {
        ""
    } else if let Some(suffix) = value.strip_prefix('*') {
        suffix
    } else {
        value.strip_suffix('*').unwrap_or(value)
    };
    if rest.contains('*') {
        report.warn(
            at,
            format!("{value:?} is matched literally: a wildcard `*` only works as the whole value, a prefix (\"*suffix\") or a suffix (\"prefix*\")"),
        );
    }
}

/// Istio's `ValidateIPs` for one value: an IP address, or a CIDR range when it has a `/`.
fn ip_error(value: &str) -> Option<String> {
    match value.split_once('/') {
        None => value
            .parse::<IpAddr>()
            .is_err()
            .then(|| format!("bad IP address ({value})")),
        Some((ip, bits)) => {
            let reason = match ip.parse::<IpAddr>() {
                Err(_) => Some("invalid IP address"),
                Ok(addr) => (!common::is_prefix_len(bits, addr)).then_some("bad prefix length"),
            };
            reason.map(|r| format!("bad CIDR range ({value}): {r}"))
        }
    }
}

/// Istio's `ValidatePorts` for one value: a decimal number in 0..65535.
fn port_value_error(value: &str) -> Option<String> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        Some(format!("bad port ({value}): not a number"))
    } else if value.parse::<u32>().is_ok_and(|p| p <= 65535) {
        None
    } else {
        Some(format!("bad port ({value}): must be in the range 0..65535"))
    }
}

const MATCH_ONE_TEMPLATE: &str = "{*}";
const MATCH_ANY_TEMPLATE: &str = "{**}";

fn contains_path_template(path: &str) -> bool {
    path.contains(MATCH_ONE_TEMPLATE) || path.contains(MATCH_ANY_TEMPLATE)
}

/// Istio's `CheckValidPathTemplate` for one path: `{*}` and `{**}` as whole segments, `{**}` last,
/// no other braces, and (in a template) segments of RFC 3986 `pchar`s.
fn path_template_error(name: &str, path: &str) -> Option<String> {
    let is_template = contains_path_template(path);
    let mut found_any = false;
    for segment in path.trim_matches('/').split('/') {
        let is_one = segment == MATCH_ONE_TEMPLATE;
        let is_any = segment == MATCH_ANY_TEMPLATE;
        if (is_one || is_any) && found_any {
            return Some(format!(
                "invalid or unsupported path {path}, found in {name}. {{**}} is not the last operator"
            ));
        }
        if is_one {
            continue;
        }
        if is_any {
            found_any = true;
            continue;
        }
        if segment.contains(['{', '}']) {
            return Some(format!(
                "invalid or unsupported path {path}, found in {name}. Contains '{{' or '}}' beyond a supported path template"
            ));
        }
        let is_literal = !segment.is_empty()
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()+,;:@=".contains(&b));
        if is_template && !is_literal {
            return Some(format!(
                "invalid or unsupported path {path}, found in {name}. Contains segment {segment} with invalid string literal"
            ));
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------------
// RequestAuthentication
// ---------------------------------------------------------------------------------------------------

pub(super) fn validate_request_authentication(
    ctx: &Ctx<'_>,
    spec: &RequestAuthenticationSpec,
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
) {
    selector_and_targets(
        ctx,
        spec.selector.as_ref(),
        spec.target_ref.as_ref(),
        &spec.target_refs,
        report,
        at,
    );
    let rules_at = at.key("jwtRules");
    common::too_many(report, &rules_at, spec.jwt_rules.len(), 4096, "items");
    for (i, rule) in spec.jwt_rules.iter().enumerate() {
        let rule_at = rules_at.index(i);
        if common::is_null(&ctx.resource.node, &rule_at) {
            report.error(&rule_at, "must be of type object, found null");
            continue;
        }
        jwt_rule(ctx, rule, report, &rule_at);
    }
}

fn jwt_rule(ctx: &Ctx<'_>, rule: &JwtRule, report: &mut Report<'_>, at: &FieldPath<'_>) {
    for (j, audience) in rule.audiences.iter().enumerate() {
        if audience.is_empty() {
            report.error(
                &at.key("audiences").index(j),
                "audience must be non-empty string",
            );
        }
    }

    let jwks_uri_key = if common::node_at(&ctx.resource.node, &at.key("jwks_uri")).is_some() {
        "jwks_uri"
    } else {
        "jwksUri"
    };
    let jwks_uri_at = at.key(jwks_uri_key);
    let jwks_uri = rule.jwks_uri.as_deref().unwrap_or_default();
    match rule.issuer.as_deref() {
        Some("") => report.error(&at.key("issuer"), "issuer must be non-empty string"),
        None if jwks_uri.is_empty() => {
            report.error(at, "issuer or jwksUri must be non-empty string");
        }
        _ => {}
    }
    if rule.jwks_uri.is_some() {
        jwks_uri_rules(report, &jwks_uri_at, jwks_uri);
    }
    if let Some(jwks) = &rule.jwks {
        let jwks_at = at.key("jwks");
        if rule.jwks_uri.is_some() {
            report.error(&jwks_at, "only one of jwks or jwksUri can be set");
        }
        if !jwks.is_empty() {
            jwks_rules(report, &jwks_at, jwks);
        }
    }

    let headers_at = at.key("fromHeaders");
    for (j, header) in rule.from_headers.iter().enumerate() {
        let item_at = headers_at.index(j);
        if common::is_null(&ctx.resource.node, &item_at) {
            report.error(&item_at, "location header name must be non-null");
        } else if header.name.as_deref().is_none_or(str::is_empty) {
            report.error(
                &item_at.key("name"),
                "location header name must be non-empty string",
            );
        }
    }
    for (j, param) in rule.from_params.iter().enumerate() {
        if param.is_empty() {
            report.error(
                &at.key("fromParams").index(j),
                "location query must be non-empty string",
            );
        }
    }
    for (j, cookie) in rule.from_cookies.iter().enumerate() {
        if cookie.is_empty() {
            report.error(
                &at.key("fromCookies").index(j),
                "cookie name must be non-empty string",
            );
        }
    }

    let claims_at = at.key("outputClaimToHeaders");
    for (j, claim_to_header) in rule.output_claim_to_headers.iter().enumerate() {
        let item_at = claims_at.index(j);
        if common::is_null(&ctx.resource.node, &item_at) {
            report.error(&item_at, "outputClaimToHeaders must not be null");
            continue;
        }
        const BOTH: &str = "outputClaimToHeaders header and claim value must be non-empty string";
        if claim_to_header.claim.as_deref().is_none_or(str::is_empty) {
            report.error(&item_at.key("claim"), BOTH);
        }
        match claim_to_header.header.as_deref() {
            None | Some("") => report.error(&item_at.key("header"), BOTH),
            Some(header) => {
                if !header
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    report.error(
                        &item_at.key("header"),
                        format!("header name {header} is not a valid header name"),
                    );
                }
            }
        }
    }

    let claims_at = at.key("spaceDelimitedClaims");
    common::too_many(
        report,
        &claims_at,
        rule.space_delimited_claims.len(),
        64,
        "items",
    );
    for (j, claim) in rule.space_delimited_claims.iter().enumerate() {
        if claim.is_empty() {
            report.error(
                &claims_at.index(j),
                "space delimited claim must be non-empty string",
            );
        }
    }

    if let Some(timeout) = &rule.timeout {
        common::duration(report, &at.key("timeout"), timeout);
    }
}

/// The `jwksUri`: Istio's `ParseJwksURI` (Go's `url.Parse`, scheme http or https) and the CRD's
/// length limits and `url(self).getScheme() in ["http", "https"]`.
fn jwks_uri_rules(report: &mut Report<'_>, at: &FieldPath<'_>, uri: &str) {
    if uri.is_empty() {
        report.error(at, "jwksUri must be non-empty string");
        return;
    }
    if uri.len() > 2048 {
        report.error(at, "jwksUri must be at most 2048 characters long");
        return;
    }
    if uri.chars().any(|c| c.is_ascii_control()) {
        report.error(
            at,
            format!("invalid jwksUri {uri:?}: invalid control character in URL"),
        );
        return;
    }
    let scheme = url_scheme(uri);
    let Some(rest) = scheme.and_then(|s| uri.get(s.len() + 1..)) else {
        report.error(
            at,
            "URI scheme \"\" is not supported: url must have scheme http:// or https://",
        );
        return;
    };
    let scheme = scheme.unwrap_or_default().to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        report.error(
            at,
            format!(
                "URI scheme {scheme:?} is not supported: url must have scheme http:// or https://"
            ),
        );
        return;
    }
    let authority = rest
        .strip_prefix("//")
        .map(|r| r.split(['/', '?', '#']).next().unwrap_or_default())
        .unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = split_host_port(host_port);
    if let Some(bad) = host.chars().find(|c| {
        c.is_ascii() && !(c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=%:[]<>\"".contains(*c))
    }) {
        report.error(
            at,
            format!("invalid jwksUri {uri:?}: invalid character {bad:?} in host name"),
        );
        return;
    }
    if let Some(port) = port
        && !port.bytes().all(|b| b.is_ascii_digit())
    {
        report.error(
            at,
            format!("invalid jwksUri {uri:?}: invalid port \":{port}\" after host"),
        );
        return;
    }
    if host.is_empty() {
        report.warn(
            at,
            format!("jwksUri {uri:?} has no host: the keys cannot be fetched"),
        );
    } else if let Some(port) = port
        && !port.is_empty()
        && !port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p))
    {
        report.warn(
            at,
            format!("jwksUri {uri:?} has port {port}, not in the range 1..65535"),
        );
    }
}

/// The scheme of a URL as Go's `getScheme` finds it: letters then letters, digits, `+`, `-`, `.`,
/// up to the first `:`. `None` when there is none.
fn url_scheme(uri: &str) -> Option<&str> {
    let end = uri.find(':')?;
    let scheme = uri.get(..end)?;
    let mut chars = scheme.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    (first_ok && rest_ok).then_some(scheme)
}

/// `host:port`, `[v6]:port`, `host` → (host, port if a `:` follows the host).
fn split_host_port(host_port: &str) -> (&str, Option<&str>) {
    if let Some(rest) = host_port.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':')),
            None => (host_port, None),
        };
    }
    match host_port.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (host_port, None),
    }
}

/// Inline JWKS: what the JWK library Istio uses would reject (`jwks parse error: ...`), and a warning
/// for private key material (`warnPrivateJwksKeys`).
fn jwks_rules(report: &mut Report<'_>, at: &FieldPath<'_>, jwks: &str) {
    let parsed: serde_json::Value = match serde_json::from_str(jwks) {
        Ok(v) => v,
        Err(e) => {
            report.error(at, format!("jwks parse error: {e}"));
            return;
        }
    };
    let keys: Vec<&serde_json::Value> = match parsed.get("keys") {
        Some(serde_json::Value::Array(keys)) => keys.iter().collect(),
        Some(_) => {
            report.error(at, "jwks parse error: \"keys\" must be an array of keys");
            return;
        }
        None if parsed.is_object() => vec![&parsed],
        None => {
            report.error(at, "jwks parse error: expected a JSON object");
            return;
        }
    };
    for (i, key) in keys.iter().enumerate() {
        let kty = key.get("kty").and_then(serde_json::Value::as_str);
        match kty {
            Some("RSA" | "EC" | "OKP") if key.get("d").is_some() => {
                report.warn(at, private_key_warning(i));
            }
            Some("oct") => report.warn(at, private_key_warning(i)),
            Some("RSA" | "EC" | "OKP") => {}
            Some(other) => {
                report.error(
                    at,
                    format!("jwks parse error: invalid key type {other:?} at index {i}"),
                );
            }
            None => report.error(
                at,
                format!("jwks parse error: key at index {i} has no \"kty\" (key type)"),
            ),
        }
    }
}

fn private_key_warning(i: usize) -> String {
    format!(
        "jwks key at index {i} contains private key material; only public keys are used for verification"
    )
}

// ---------------------------------------------------------------------------------------------------
// Shared: selector, targetRef(s), list limits, YAML lookups
// ---------------------------------------------------------------------------------------------------

/// `selector` / `targetRef` / `targetRefs` of AuthorizationPolicy and RequestAuthentication.
fn selector_and_targets(
    ctx: &Ctx<'_>,
    selector: Option<&LabelSelector>,
    target_ref: Option<&PolicyTargetReference>,
    target_refs: &[PolicyTargetReference],
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
) {
    let set = [
        ("selector", selector.is_some()),
        ("targetRef", target_ref.is_some()),
        ("targetRefs", !target_refs.is_empty()),
    ];
    for (key, _) in set.iter().filter(|(_, is_set)| *is_set).skip(1) {
        report.error(
            &at.key(key),
            "only one of targetRefs or selector can be set",
        );
    }
    if let Some(selector) = selector {
        selector_labels(report, &at.key("selector"), selector);
    }
    if let Some(r) = target_ref {
        policy_target_ref(r, report, &at.key("targetRef"));
    }
    let refs_at = at.key("targetRefs");
    common::too_many(report, &refs_at, target_refs.len(), 16, "items");
    for (i, r) in target_refs.iter().enumerate() {
        let ref_at = refs_at.index(i);
        if common::is_null(&ctx.resource.node, &ref_at) {
            report.error(&ref_at, "must be of type object, found null");
            continue;
        }
        policy_target_ref(r, report, &ref_at);
    }
}

/// `istio.type.v1beta1.WorkloadSelector` (`matchLabels`).
fn selector_labels(report: &mut Report<'_>, at: &FieldPath<'_>, selector: &LabelSelector) {
    let labels_at = at.key("matchLabels");
    common::workload_selector(report, &labels_at, &selector.match_labels);
    common::too_many(
        report,
        &labels_at,
        selector.match_labels.len(),
        4096,
        "labels",
    );
}

/// The target kinds a policy may attach to: (canonical group, version, kind).
const ALLOWED_TARGETS: &[(&str, &str, &str)] = &[
    ("core", "v1", "Service"),
    ("networking.istio.io", "v1", "ServiceEntry"),
    ("gateway.networking.k8s.io", "v1", "Gateway"),
    ("gateway.networking.k8s.io", "v1", "GatewayClass"),
];

/// `validatePolicyTargetReference` plus the CRD's required fields, lengths and patterns.
fn policy_target_ref(r: &PolicyTargetReference, report: &mut Report<'_>, at: &FieldPath<'_>) {
    match r.name.as_deref() {
        None | Some("") => report.error(&at.key("name"), "targetRef name must be set"),
        Some(name) if name.len() > 253 => report.error(
            &at.key("name"),
            "targetRef name must be at most 253 characters long",
        ),
        Some(_) => {}
    }
    if common::is_set(&r.namespace) {
        report.error(
            &at.key("namespace"),
            "targetRef namespace must not be set; cross namespace referencing is not supported",
        );
    }
    let group = r.group.as_deref().unwrap_or_default();
    if !is_group(group) {
        report.error(
            &at.key("group"),
            format!("invalid targetRef group {group:?}: must be empty or a lower case DNS subdomain (e.g. \"gateway.networking.k8s.io\")"),
        );
        return;
    }
    let kind = r.kind.as_deref().unwrap_or_default();
    if kind.is_empty() {
        report.error(&at.key("kind"), "targetRef kind must be set");
        return;
    }
    if !is_kind(kind) {
        report.error(
            &at.key("kind"),
            format!("invalid targetRef kind {kind:?}: must be at most 63 letters, digits and '-', starting with a letter and ending with a letter or digit"),
        );
        return;
    }
    let canonical = if group.is_empty() { "core" } else { group };
    if !ALLOWED_TARGETS
        .iter()
        .any(|(g, _, k)| *g == canonical && *k == kind)
    {
        let allowed: Vec<String> = ALLOWED_TARGETS
            .iter()
            .map(|(g, v, k)| format!("{g}/{v}/{k}"))
            .collect();
        report.error(
            &at.key("kind"),
            format!(
                "targetRef must be to one of [{}] but was {group}/{kind}",
                allowed.join(" ")
            ),
        );
    }
}

/// The CRD pattern for `group`: empty, or lower case DNS-1123 labels joined by dots, ≤ 253.
fn is_group(group: &str) -> bool {
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b.first() != Some(&b'-')
            && b.last() != Some(&b'-')
    };
    group.is_empty() || (group.len() <= 253 && group.split('.').all(label_ok))
}

/// The CRD pattern for `kind`: `^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$`, ≤ 63.
fn is_kind(kind: &str) -> bool {
    let b = kind.as_bytes();
    b.len() <= 63
        && b.first().is_some_and(u8::is_ascii_alphabetic)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

#[cfg(test)]
mod tests {
    use crate::diag::Severity;
    use crate::validate::testing::{assert_error, assert_finding, assert_valid, check};

    /// Asserts that `yaml` has no finding with this message (a rule that must not fire).
    #[track_caller]
    fn assert_no_finding(yaml: &str, message: &str) {
        let all = check(yaml);
        assert!(
            all.iter().all(|f| f.message != message),
            "unexpected {message:?}: {all:#?}"
        );
    }

    // --- PeerAuthentication ----------------------------------------------------------------------

    #[test]
    fn pa_port_level_mtls_requires_selector() {
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: p
spec:
  portLevelMtls:
    "80":
      mode: STRICT
"#,
            6,
            "spec.portLevelMtls",
            "portLevelMtls requires selector: mesh/namespace peer authentication cannot have port level mTLS",
        );
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: p
spec:
  selector:
    matchLabels: {}
  portLevelMtls:
    "80":
      mode: STRICT
"#,
            8,
            "spec.portLevelMtls",
            "portLevelMtls requires selector: mesh/namespace peer authentication cannot have port level mTLS",
        );
        assert_valid(
            r#"apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: p
spec:
  selector:
    matchLabels:
      app: web
  mtls:
    mode: PERMISSIVE
  portLevelMtls:
    "80":
      mode: STRICT
    "8080":
      mode: DISABLE
"#,
        );
    }

    #[test]
    fn pa_port_level_mtls_not_empty() {
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: p
spec:
  selector:
    matchLabels:
      app: web
  portLevelMtls: {}
"#,
            9,
            "spec.portLevelMtls",
            "port level mTLS, if defined, must have at least one element",
        );
        assert_valid(
            r#"apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: p
spec:
  mtls:
    mode: STRICT
"#,
        );
    }

    #[test]
    fn pa_port_level_mtls_keys_are_ports() {
        let yaml = |port: &str| {
            format!(
                r#"apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: p
spec:
  selector:
    matchLabels:
      app: web
  portLevelMtls:
    "{port}":
      mode: STRICT
"#
            )
        };
        assert_error(
            &yaml("acd"),
            10,
            "spec.portLevelMtls.acd",
            "invalid port \"acd\" in portLevelMtls: keys must be port numbers",
        );
        assert_error(
            &yaml("-1"),
            10,
            "spec.portLevelMtls.-1",
            "invalid port \"-1\" in portLevelMtls: keys must be port numbers",
        );
        assert_error(
            &yaml("0"),
            10,
            "spec.portLevelMtls.0",
            "port number 0 must be in the range 1..65535",
        );
        assert_error(
            &yaml("42949672"),
            10,
            "spec.portLevelMtls.42949672",
            "port number 42949672 must be in the range 1..65535",
        );
        assert_error(
            &yaml("99999999999999"),
            10,
            "spec.portLevelMtls.99999999999999",
            "port number 99999999999999 must be in the range 1..65535",
        );
        assert_valid(&yaml("65535"));
        assert_valid(&yaml("1"));
    }

    #[test]
    fn pa_selector() {
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: p
spec:
  selector:
    matchLabels:
      app: "web*"
"#,
            8,
            "spec.selector.matchLabels.app",
            "wildcard is not supported in selector: \"app\"",
        );
        let empty = r#"apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: p
spec:
  selector: {}
"#;
        assert_valid(empty);
        assert_finding(
            empty,
            Severity::Warning,
            6,
            "spec.selector.matchLabels",
            "workload selector specified without labels",
        );
    }

    // --- AuthorizationPolicy: selector and targets ------------------------------------------------

    #[test]
    fn ap_selector_and_target_ref_exclusive() {
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  selector:
    matchLabels:
      app: web
  targetRef:
    kind: Service
    name: web
"#,
            9,
            "spec.targetRef",
            "only one of targetRefs or selector can be set",
        );
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  targetRef:
    kind: Service
    name: web
  targetRefs:
  - kind: Service
    name: web
"#,
            9,
            "spec.targetRefs",
            "only one of targetRefs or selector can be set",
        );
        assert_valid(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  targetRefs:
  - kind: Service
    group: ""
    name: web
  - kind: Gateway
    group: gateway.networking.k8s.io
    name: ingress
  - kind: GatewayClass
    group: gateway.networking.k8s.io
    name: istio-waypoint
  - kind: ServiceEntry
    group: networking.istio.io
    name: ext
"#,
        );
    }

    #[test]
    fn ap_target_ref_name_required() {
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  targetRef:
    kind: Service
"#,
            6,
            "spec.targetRef.name",
            "targetRef name must be set",
        );
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  targetRef:
    kind: Service
    name: ""
"#,
            8,
            "spec.targetRef.name",
            "targetRef name must be set",
        );
        let long = "a".repeat(254);
        assert_error(
            &format!(
                r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  targetRef:
    kind: Service
    name: {long}
"#
            ),
            8,
            "spec.targetRef.name",
            "targetRef name must be at most 253 characters long",
        );
        assert_valid(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  targetRef:
    kind: Service
    name: web
"#,
        );
    }

    #[test]
    fn ap_target_ref_namespace_not_allowed() {
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  targetRefs:
  - kind: Service
    name: web
    namespace: other
"#,
            9,
            "spec.targetRefs[0].namespace",
            "targetRef namespace must not be set; cross namespace referencing is not supported",
        );
        assert_valid(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  targetRefs:
  - kind: Service
    name: web
    namespace: ""
"#,
        );
    }

    #[test]
    fn ap_target_ref_group_and_kind_syntax() {
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  targetRef:
    group: "__"
    kind: Service
    name: web
"#,
            7,
            "spec.targetRef.group",
            "invalid targetRef group \"__\": must be empty or a lower case DNS subdomain (e.g. \"gateway.networking.k8s.io\")",
        );
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  targetRef:
    kind: Serv_ice
    name: web
"#,
            7,
            "spec.targetRef.kind",
            "invalid targetRef kind \"Serv_ice\": must be at most 63 letters, digits and '-', starting with a letter and ending with a letter or digit",
        );
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  targetRef:
    name: web
"#,
            6,
            "spec.targetRef.kind",
            "targetRef kind must be set",
        );
        assert_valid(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  targetRef:
    group: core
    kind: Service
    name: web
"#,
        );
    }

    #[test]
    fn ap_target_ref_allowed_kinds() {
        let message = "targetRef must be to one of [core/v1/Service networking.istio.io/v1/ServiceEntry gateway.networking.k8s.io/v1/Gateway gateway.networking.k8s.io/v1/GatewayClass] but was /Deployment";
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  targetRef:
    kind: Deployment
    name: web
"#,
            7,
            "spec.targetRef.kind",
            message,
        );
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  targetRef:
    group: networking.istio.io
    kind: Gateway
    name: web
"#,
            8,
            "spec.targetRef.kind",
            "targetRef must be to one of [core/v1/Service networking.istio.io/v1/ServiceEntry gateway.networking.k8s.io/v1/Gateway gateway.networking.k8s.io/v1/GatewayClass] but was networking.istio.io/Gateway",
        );
        assert_valid(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  targetRef:
    group: gateway.networking.k8s.io
    kind: Gateway
    name: web
"#,
        );
    }

    #[test]
    fn ap_target_refs_at_most_16() {
        let refs = |n: usize| "  - kind: Service\n    name: web\n".repeat(n);
        let yaml = |n: usize| {
            format!(
                "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\nspec:\n  targetRefs:\n{}",
                refs(n)
            )
        };
        assert_error(
            &yaml(17),
            6,
            "spec.targetRefs",
            "Too many: 17: must have at most 16 items",
        );
        assert_valid(&yaml(16));
    }

    // --- AuthorizationPolicy: action and provider -------------------------------------------------

    #[test]
    fn ap_custom_needs_rules() {
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  action: CUSTOM
  provider:
    name: ext-authz
"#,
            6,
            "spec.action",
            "CUSTOM action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request",
        );
        assert_valid(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  action: CUSTOM
  provider:
    name: ext-authz
  rules:
  - {}
"#,
        );
    }

    #[test]
    fn ap_custom_needs_provider_name() {
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  action: CUSTOM
  rules:
  - {}
"#,
            5,
            "spec.provider.name",
            "`provider.name` must not be empty",
        );
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  action: CUSTOM
  provider:
    name: ""
  rules:
  - {}
"#,
            8,
            "spec.provider.name",
            "`provider.name` must not be empty",
        );
    }

    #[test]
    fn ap_provider_only_with_custom() {
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  provider:
    name: ext-authz
  rules:
  - {}
"#,
            6,
            "spec.provider",
            "`provider` must not be with non CUSTOM action, found ALLOW",
        );
        assert_valid(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  action: ALLOW
  rules:
  - {}
"#,
        );
    }

    #[test]
    fn ap_deny_needs_rules() {
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  action: DENY
"#,
            6,
            "spec.action",
            "DENY action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request",
        );
        // ALLOW without rules denies everything: meaningful, valid.
        assert_valid(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  action: ALLOW
"#,
        );
    }

    #[test]
    fn ap_dry_run_annotation() {
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
  namespace: ns
  annotations:
    istio.io/dry-run: "yes"
spec:
  action: DENY
  rules:
  - {}
"#,
            7,
            "metadata.annotations[\"istio.io/dry-run\"]",
            "ns/p has annotation istio.io/dry-run with invalid value (yes): must be true or false",
        );
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
  namespace: ns
  annotations:
    istio.io/dry-run: "true"
spec:
  action: AUDIT
  rules:
  - {}
"#,
            7,
            "metadata.annotations[\"istio.io/dry-run\"]",
            "the annotation istio.io/dry-run currently only supports action ALLOW/DENY, found action AUDIT in ns/p",
        );
        assert_valid(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
  annotations:
    istio.io/dry-run: "True"
spec:
  rules:
  - {}
"#,
        );
    }

    // --- AuthorizationPolicy: rules, from, to -----------------------------------------------------

    #[test]
    fn ap_rule_not_null() {
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - {}
  - ~
"#,
            8,
            "spec.rules[1]",
            "`rule` must not be nil, found at rule 1",
        );
        assert_valid(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - {}
"#,
        );
    }

    #[test]
    fn ap_from_entries_not_empty() {
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - from:
    -
"#,
            8,
            "spec.rules[0].from[0]",
            "`from` must not be nil, found at rule 0",
        );
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - from:
    - {}
"#,
            8,
            "spec.rules[0].from[0].source",
            "`from.source` must not be nil, found at rule 0",
        );
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - {}
  - from:
    - source: {}
"#,
            9,
            "spec.rules[1].from[0].source",
            "`from.source` must not be empty, found at rule 1",
        );
        assert_valid(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/sleep"]
    - source:
        requestPrincipals: ["*"]
"#,
        );
    }

    #[test]
    fn ap_to_entries_not_empty() {
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - to:
    - ~
"#,
            8,
            "spec.rules[0].to[0]",
            "`to` must not be nil, found at rule 0",
        );
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - to:
    - operation: ~
"#,
            8,
            "spec.rules[0].to[0].operation",
            "`to.operation` must not be nil, found at rule 0",
        );
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - to:
    - operation: {}
"#,
            8,
            "spec.rules[0].to[0].operation",
            "`to.operation` must not be empty, found at rule 0",
        );
        assert_valid(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - to:
    - operation:
        methods: ["GET"]
        paths: ["/info*"]
"#,
        );
    }

    #[test]
    fn ap_rules_at_most_512() {
        let yaml = |n: usize| {
            format!(
                "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\nspec:\n  rules:\n{}",
                "  - {}\n".repeat(n)
            )
        };
        assert_error(
            &yaml(513),
            6,
            "spec.rules",
            "Too many: 513: must have at most 512 items",
        );
        assert_valid(&yaml(512));
    }

    // --- AuthorizationPolicy: source -------------------------------------------------------------

    #[test]
    fn ap_service_accounts_exclusive_with_namespaces_and_principals() {
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - from:
    - source:
        serviceAccounts: ["bar/sa"]
        namespaces: ["bar"]
"#,
            10,
            "spec.rules[0].from[0].source.namespaces",
            "cannot set serviceAccounts with namespaces or principals, found at rule 0",
        );
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - from:
    - source:
        notServiceAccounts: ["bar/sa"]
        notPrincipals: ["bar"]
"#,
            10,
            "spec.rules[0].from[0].source.notPrincipals",
            "cannot set serviceAccounts with namespaces or principals, found at rule 0",
        );
        assert_valid(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - from:
    - source:
        serviceAccounts: ["baz/sa", "sa"]
    - source:
        principals: ["bar"]
"#,
        );
    }

    #[test]
    fn ap_source_values_not_empty() {
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - from:
    - source:
        principals: ["a", ""]
"#,
            9,
            "spec.rules[0].from[0].source.principals[1]",
            "empty value not allowed, found in Principals",
        );
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - from:
    - source:
        notNamespaces:
        - ""
"#,
            10,
            "spec.rules[0].from[0].source.notNamespaces[0]",
            "empty value not allowed, found in NotNamespaces",
        );
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - from:
    - source:
        remoteIpBlocks: [""]
"#,
            9,
            "spec.rules[0].from[0].source.remoteIpBlocks[0]",
            "empty value not allowed, found in RemoteIpBlocks",
        );
        assert_valid(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - from:
    - source:
        principals: ["principal", "prefix-*", "*-suffix", "*"]
        namespaces: ["ns"]
        requestPrincipals: ["https://issuer.example.com/*"]
"#,
        );
    }

    #[test]
    fn ap_ip_blocks() {
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - from:
    - source:
        ipBlocks: ["1.2.3.4", "ip1"]
"#,
            9,
            "spec.rules[0].from[0].source.ipBlocks[1]",
            "bad IP address (ip1)",
        );
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - from:
    - source:
        notRemoteIpBlocks: ["10.0.0.0/33"]
"#,
            9,
            "spec.rules[0].from[0].source.notRemoteIpBlocks[0]",
            "bad CIDR range (10.0.0.0/33): bad prefix length",
        );
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - from:
    - source:
        notIpBlocks: ["10.0.0.256/8"]
"#,
            9,
            "spec.rules[0].from[0].source.notIpBlocks[0]",
            "bad CIDR range (10.0.0.256/8): invalid IP address",
        );
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - from:
    - source:
        remoteIpBlocks: ["10.0.0.0/+8"]
"#,
            9,
            "spec.rules[0].from[0].source.remoteIpBlocks[0]",
            "bad CIDR range (10.0.0.0/+8): bad prefix length",
        );
        assert_valid(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - from:
    - source:
        ipBlocks: ["1.2.3.4", "5.6.0.0/16", "2001:db8::/32", "::1"]
        remoteIpBlocks: ["10.1.2.3/32", "0.0.0.0/0"]
"#,
        );
    }

    #[test]
    fn ap_service_accounts_syntax() {
        let yaml = |value: &str| {
            format!(
                r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - from:
    - source:
        serviceAccounts: ["{value}"]
"#
            )
        };
        let at = "spec.rules[0].from[0].source.serviceAccounts[0]";
        assert_error(
            &yaml("ns/*"),
            9,
            at,
            "wildcard not allowed, found in ServiceAccounts",
        );
        assert_error(
            &yaml("a/b/c"),
            9,
            at,
            "expected format 'serviceAccount' or 'namespace/serviceAccount', found \"a/b/c\" in ServiceAccounts",
        );
        assert_error(
            &yaml("/sa"),
            9,
            at,
            "expected format 'serviceAccount' or 'namespace/serviceAccount', found empty namespace \"/sa\" in ServiceAccounts",
        );
        assert_error(
            &yaml("ns/"),
            9,
            at,
            "expected format 'serviceAccount' or 'namespace/serviceAccount', found empty serviceAccount \"ns/\" in ServiceAccounts",
        );
        let long = "a".repeat(321);
        assert_error(
            &yaml(&long),
            9,
            at,
            &format!("value cannot exceed 320 characters, found {long:?} in ServiceAccounts"),
        );
        assert_valid(&yaml("ns/sa"));
        assert_valid(&yaml("sa"));

        let many = format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\nspec:\n  rules:\n  - from:\n    - source:\n        notServiceAccounts: [{}]\n",
            vec!["\"ns/sa\""; 17].join(", ")
        );
        assert_error(
            &many,
            9,
            "spec.rules[0].from[0].source.notServiceAccounts",
            "may not have more than 16 values",
        );
    }

    #[test]
    fn ap_trust_domains() {
        let yaml = |value: &str| {
            format!(
                r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - from:
    - source:
        trustDomains: ["{value}"]
"#
            )
        };
        let at = "spec.rules[0].from[0].source.trustDomains[0]";
        assert_error(
            &yaml("a*b"),
            9,
            at,
            "wildcard is only allowed at the start or end, found in TrustDomains: \"a*b\"",
        );
        assert_error(
            &yaml("*a*"),
            9,
            at,
            "at most one wildcard is allowed, found in TrustDomains: \"*a*\"",
        );
        assert_error(
            &yaml("td/ns"),
            9,
            at,
            "trust domain must not contain '/', found in TrustDomains: \"td/ns\"",
        );
        assert_valid(&yaml("cluster.local"));
        assert_valid(&yaml("*-suffix"));
        assert_valid(&yaml("*"));
    }

    #[test]
    fn ap_custom_unsupported_source_fields() {
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  action: CUSTOM
  provider:
    name: ext-authz
  rules:
  - from:
    - source:
        namespaces: ["foo"]
"#,
            12,
            "spec.rules[0].from[0].source.namespaces",
            "From.Namespaces is currently not supported with CUSTOM action",
        );
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  action: CUSTOM
  provider:
    name: ext-authz
  rules:
  - from:
    - source:
        notRequestPrincipals: ["*"]
"#,
            12,
            "spec.rules[0].from[0].source.notRequestPrincipals",
            "From.NotRequestPrincipals is currently not supported with CUSTOM action",
        );
        assert_valid(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  action: CUSTOM
  provider:
    name: ext-authz
  rules:
  - from:
    - source:
        ipBlocks: ["10.0.0.0/8"]
        remoteIpBlocks: ["1.2.3.4"]
"#,
        );
    }

    #[test]
    fn ap_literal_wildcard_warning() {
        let yaml = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/*/sa/sleep"]
"#;
        assert_valid(yaml);
        assert_finding(
            yaml,
            Severity::Warning,
            9,
            "spec.rules[0].from[0].source.principals[0]",
            "\"cluster.local/ns/*/sa/sleep\" is matched literally: a wildcard `*` only works as the whole value, a prefix (\"*suffix\") or a suffix (\"prefix*\")",
        );
        assert_no_finding(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/*", "*/sa/sleep", "*"]
"#,
            "\"cluster.local/ns/default/*\" is matched literally: a wildcard `*` only works as the whole value, a prefix (\"*suffix\") or a suffix (\"prefix*\")",
        );
    }

    // --- AuthorizationPolicy: operation ----------------------------------------------------------

    #[test]
    fn ap_operation_values_not_empty() {
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - to:
    - operation:
        hosts: [""]
"#,
            9,
            "spec.rules[0].to[0].operation.hosts[0]",
            "empty value not allowed, found in Hosts",
        );
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - to:
    - operation:
        methods: ["GET"]
        notMethods: ["POST", ""]
"#,
            10,
            "spec.rules[0].to[0].operation.notMethods[1]",
            "empty value not allowed, found in NotMethods",
        );
        assert_valid(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - to:
    - operation:
        hosts: ["exact.com", "*.suffix.com", "prefix.*", "*"]
        notHosts: ["a.b"]
        methods: ["GET", "POST"]
"#,
        );
    }

    #[test]
    fn ap_operation_ports() {
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - to:
    - operation:
        ports: ["80", "port1"]
"#,
            9,
            "spec.rules[0].to[0].operation.ports[1]",
            "bad port (port1): not a number",
        );
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - to:
    - operation:
        notPorts: ["65536"]
"#,
            9,
            "spec.rules[0].to[0].operation.notPorts[0]",
            "bad port (65536): must be in the range 0..65535",
        );
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - to:
    - operation:
        ports: [""]
"#,
            9,
            "spec.rules[0].to[0].operation.ports[0]",
            "empty value not allowed, found in Ports",
        );
        assert_valid(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - to:
    - operation:
        ports: ["80", "65535"]
        notPorts: ["0"]
"#,
        );
    }

    #[test]
    fn ap_operation_path_templates() {
        let yaml = |path: &str| {
            format!(
                r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - to:
    - operation:
        paths: ["{path}"]
"#
            )
        };
        let at = "spec.rules[0].to[0].operation.paths[0]";
        assert_error(
            &yaml("/{**}/a/{*}"),
            9,
            at,
            "invalid or unsupported path /{**}/a/{*}, found in Paths. {**} is not the last operator",
        );
        assert_error(
            &yaml("/a/{name}"),
            9,
            at,
            "invalid or unsupported path /a/{name}, found in Paths. Contains '{' or '}' beyond a supported path template",
        );
        assert_error(
            &yaml("/{*}/a*b"),
            9,
            at,
            "invalid or unsupported path /{*}/a*b, found in Paths. Contains segment a*b with invalid string literal",
        );
        assert_valid(&yaml("/path/template/{*}"));
        assert_valid(&yaml("/{**}/path/template"));
        assert_valid(&yaml("/{*}/foo/{**}"));
        assert_valid(&yaml("/prefix/*"));
        assert_valid(&yaml("*/suffix"));
    }

    #[test]
    fn ap_method_case_warning() {
        let yaml = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - to:
    - operation:
        methods: ["get"]
"#;
        assert_valid(yaml);
        assert_finding(
            yaml,
            Severity::Warning,
            9,
            "spec.rules[0].to[0].operation.methods[0]",
            "method \"get\" is compared case-sensitively and never matches; did you mean \"GET\"?",
        );
        assert_no_finding(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - to:
    - operation:
        methods: ["custom-method"]
"#,
            "method \"custom-method\" is compared case-sensitively and never matches; did you mean \"CUSTOM-METHOD\"?",
        );
    }

    // --- AuthorizationPolicy: when ---------------------------------------------------------------

    #[test]
    fn ap_when_key_required() {
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - when:
    - key: ""
      values: ["v1"]
"#,
            8,
            "spec.rules[0].when[0].key",
            "`key` must not be empty",
        );
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - when:
    - values: ["v1"]
"#,
            8,
            "spec.rules[0].when[0].key",
            "`key` must not be empty",
        );
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - when:
    - ~
"#,
            8,
            "spec.rules[0].when[0]",
            "when field cannot be nil",
        );
    }

    #[test]
    fn ap_when_values_required() {
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - when:
    - key: source.principal
"#,
            8,
            "spec.rules[0].when[0]",
            "at least one of `values` or `notValues` must be set for key source.principal",
        );
        assert_valid(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - when:
    - key: source.principal
      notValues: ["cluster.local/ns/default/sa/sleep"]
"#,
        );
    }

    #[test]
    fn ap_when_supported_keys() {
        let yaml = |key: &str| {
            format!(
                r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - when:
    - key: "{key}"
      values: ["v"]
"#
            )
        };
        let at = "spec.rules[0].when[0].key";
        assert_error(&yaml("key1"), 8, at, "unknown attribute: key1");
        assert_error(
            &yaml("source.principals"),
            8,
            at,
            "unknown attribute: source.principals (did you mean \"source.principal\"?)",
        );
        assert_error(
            &yaml("destination.namespace"),
            8,
            at,
            "attribute destination.namespace is replaced by the metadata.namespace",
        );
        assert_error(
            &yaml("destination.labels[app]"),
            8,
            at,
            "attribute destination.labels[app] is replaced by the workload selector",
        );
        assert_error(
            &yaml("destination.user"),
            8,
            at,
            "deprecated attribute destination.user: only supported in v1alpha1",
        );
        for good in [
            "request.headers[X-User]",
            "source.namespace",
            "source.principal",
            "request.auth.principal",
            "request.auth.audiences",
            "request.auth.presenter",
            "request.auth.claims[groups]",
            "request.auth.claims[nested1][nested2]",
            "connection.sni",
            "experimental.envoy.filters.a.b[c]",
            "source.trustDomain",
            "source.serviceAccount",
        ] {
            assert_valid(&yaml(good));
        }
    }

    #[test]
    fn ap_when_map_keys() {
        let yaml = |key: &str| {
            format!(
                r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - when:
    - key: "{key}"
      values: ["v"]
"#
            )
        };
        let at = "spec.rules[0].when[0].key";
        assert_error(
            &yaml("request.headers"),
            8,
            at,
            "bad key (request.headers): should have format a[b]",
        );
        assert_error(
            &yaml("request.auth.claims[]"),
            8,
            at,
            "bad key (request.auth.claims[]): should have format a[b]",
        );
        assert_error(
            &yaml("experimental.envoy.filters.x"),
            8,
            at,
            "bad key (experimental.envoy.filters.x): should have format a[b]",
        );
        assert_valid(&yaml("request.headers[x]"));
    }

    #[test]
    fn ap_when_values() {
        let yaml = |key: &str, list: &str, value: &str| {
            format!(
                r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - when:
    - key: "{key}"
      {list}: ["ok", "{value}"]
"#
            )
        };
        assert_error(
            &yaml("source.ip", "values", "a.b.c.d"),
            9,
            "spec.rules[0].when[0].values[0]",
            "invalid `value` for `key` source.ip: bad IP address (ok)",
        );
        assert_error(
            &yaml("remote.ip", "notValues", "a.b.c.d"),
            9,
            "spec.rules[0].when[0].notValues[1]",
            "invalid `notValue` for `key` remote.ip: bad IP address (a.b.c.d)",
        );
        assert_error(
            &yaml("destination.port", "values", "70000"),
            9,
            "spec.rules[0].when[0].values[1]",
            "invalid `value` for `key` destination.port: bad port (70000): must be in the range 0..65535",
        );
        assert_error(
            &yaml("request.auth.claims[iss]", "values", ""),
            9,
            "spec.rules[0].when[0].values[1]",
            "invalid `value` for `key` request.auth.claims[iss]: empty value not allowed, found in request.auth.claims[iss]",
        );
        assert_error(
            &yaml("source.serviceAccount", "values", "ns/*"),
            9,
            "spec.rules[0].when[0].values[1]",
            "invalid `value` for `key` source.serviceAccount: wildcard not allowed, found in source.serviceAccount",
        );
        assert_error(
            &yaml("source.trustDomain", "notValues", "a*b"),
            9,
            "spec.rules[0].when[0].notValues[1]",
            "invalid `notValue` for `key` source.trustDomain: wildcard is only allowed at the start or end, found in source.trustDomain: \"a*b\"",
        );
        assert_valid(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  rules:
  - when:
    - key: source.ip
      values: ["10.10.10.10", "192.168.10.0/24"]
      notValues: ["90.10.10.10"]
    - key: destination.port
      values: ["91", "0"]
"#,
        );
    }

    #[test]
    fn ap_custom_unsupported_when_keys() {
        let yaml = |key: &str| {
            format!(
                r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  action: CUSTOM
  provider:
    name: ext-authz
  rules:
  - when:
    - key: "{key}"
      values: ["v"]
"#
            )
        };
        assert_error(
            &yaml("source.namespace"),
            11,
            "spec.rules[0].when[0].key",
            "source.namespace is currently not supported with CUSTOM action",
        );
        assert_error(
            &yaml("request.auth.claims[iss]"),
            11,
            "spec.rules[0].when[0].key",
            "request.auth.claims[iss] is currently not supported with CUSTOM action",
        );
        assert_valid(&yaml("request.headers[x-api-key]"));
    }

    #[test]
    fn ap_deny_with_only_http_attributes_warns() {
        let yaml = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  action: DENY
  rules:
  - to:
    - operation:
        methods: ["POST"]
"#;
        assert_valid(yaml);
        assert_finding(
            yaml,
            Severity::Warning,
            8,
            "spec.rules[0]",
            "configured AuthorizationPolicy will deny all traffic to TCP ports under its scope due to the use of only HTTP attributes in a DENY rule; it is recommended to explicitly specify the port",
        );
        assert_no_finding(
            r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
spec:
  action: DENY
  rules:
  - from:
    - source:
        namespaces: ["foo"]
    to:
    - operation:
        methods: ["POST"]
        ports: ["8080"]
"#,
            "configured AuthorizationPolicy will deny all traffic to TCP ports under its scope due to the use of only HTTP attributes in a DENY rule; it is recommended to explicitly specify the port",
        );
    }

    // --- RequestAuthentication -------------------------------------------------------------------

    #[test]
    fn ra_selector_and_target_ref_exclusive() {
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: r
spec:
  selector:
    matchLabels:
      a: b
  targetRef:
    group: ""
    kind: Service
    name: foo
"#,
            9,
            "spec.targetRef",
            "only one of targetRefs or selector can be set",
        );
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: r
spec:
  targetRef:
    group: ""
    kind: Service
    name: foo
    namespace: bar
"#,
            10,
            "spec.targetRef.namespace",
            "targetRef namespace must not be set; cross namespace referencing is not supported",
        );
        assert_valid(
            r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: r
spec:
  selector:
    matchLabels:
      app: web
  jwtRules:
  - issuer: https://example.com
"#,
        );
    }

    #[test]
    fn ra_jwt_rule_not_null() {
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: r
spec:
  jwtRules:
  -
"#,
            7,
            "spec.jwtRules[0]",
            "must be of type object, found null",
        );
    }

    #[test]
    fn ra_issuer_required() {
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: r
spec:
  jwtRules:
  - audiences: ["a"]
"#,
            7,
            "spec.jwtRules[0]",
            "issuer or jwksUri must be non-empty string",
        );
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: r
spec:
  jwtRules:
  - issuer: ""
    jwksUri: https://example.com/jwks.json
"#,
            7,
            "spec.jwtRules[0].issuer",
            "issuer must be non-empty string",
        );
        // The webhook accepts a jwksUri without an issuer.
        assert_valid(
            r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: r
spec:
  jwtRules:
  - jwksUri: https://example.com/jwks.json
"#,
        );
    }

    #[test]
    fn ra_audiences_not_empty() {
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: r
spec:
  jwtRules:
  - issuer: example
    audiences:
    - ""
"#,
            9,
            "spec.jwtRules[0].audiences[0]",
            "audience must be non-empty string",
        );
        assert_valid(
            r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: r
spec:
  jwtRules:
  - issuer: example
    audiences: ["bookinfo.com"]
"#,
        );
    }

    #[test]
    fn ra_jwks_uri() {
        let yaml = |uri: &str| {
            format!(
                r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: r
spec:
  jwtRules:
  - issuer: example
    jwksUri: "{uri}"
"#
            )
        };
        let at = "spec.jwtRules[0].jwksUri";
        assert_error(
            &yaml("hTPp\\\\\\blah"),
            8,
            at,
            "invalid jwksUri \"hTPp\\\\\\u{8}lah\": invalid control character in URL",
        );
        assert_error(
            &yaml("example.com/jwks.json"),
            8,
            at,
            "URI scheme \"\" is not supported: url must have scheme http:// or https://",
        );
        assert_error(
            &yaml("ftp://example.com/jwks.json"),
            8,
            at,
            "URI scheme \"ftp\" is not supported: url must have scheme http:// or https://",
        );
        assert_error(
            &yaml("https://example.com:http/jwks.json"),
            8,
            at,
            "invalid jwksUri \"https://example.com:http/jwks.json\": invalid port \":http\" after host",
        );
        assert_error(
            &yaml("https://exa mple.com/jwks.json"),
            8,
            at,
            "invalid jwksUri \"https://exa mple.com/jwks.json\": invalid character ' ' in host name",
        );
        assert_error(&yaml(""), 8, at, "jwksUri must be non-empty string");
        let no_host = yaml("https:///jwks.json");
        assert_valid(&no_host);
        assert_finding(
            &no_host,
            Severity::Warning,
            8,
            at,
            "jwksUri \"https:///jwks.json\" has no host: the keys cannot be fetched",
        );
        assert_valid(&yaml("https://example.com/.well-known/jwks.json"));
        assert_valid(&yaml("HTTP://example.com:8080/jwks.json?x=1"));
        assert_valid(&yaml("http://[::1]:8080/jwks.json"));
        assert_valid(
            r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: r
spec:
  jwtRules:
  - issuer: example
    jwks_uri: https://example.com/jwks.json
"#,
        );
    }

    #[test]
    fn ra_jwks_or_jwks_uri() {
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: r
spec:
  jwtRules:
  - issuer: example
    jwksUri: https://example.com/jwks.json
    jwks: '{"keys": []}'
"#,
            9,
            "spec.jwtRules[0].jwks",
            "only one of jwks or jwksUri can be set",
        );
        assert_valid(
            r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: r
spec:
  jwtRules:
  - issuer: example
    jwks: '{"keys": [{"kty": "RSA", "e": "AQAB", "n": "xyz", "kid": "k"}]}'
"#,
        );
    }

    #[test]
    fn ra_jwks_syntax() {
        let yaml = |jwks: &str| {
            format!(
                r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: r
spec:
  jwtRules:
  - issuer: example
    jwks: '{jwks}'
"#
            )
        };
        let at = "spec.jwtRules[0].jwks";
        assert_error(
            &yaml("not json"),
            8,
            at,
            "jwks parse error: expected ident at line 1 column 2",
        );
        assert_error(
            &yaml(r#"{"keys": [{"kid": "a"}]}"#),
            8,
            at,
            "jwks parse error: key at index 0 has no \"kty\" (key type)",
        );
        assert_error(
            &yaml(r#"{"keys": [{"kty": "DSA"}]}"#),
            8,
            at,
            "jwks parse error: invalid key type \"DSA\" at index 0",
        );
        assert_error(
            &yaml(r#"{"keys": {}}"#),
            8,
            at,
            "jwks parse error: \"keys\" must be an array of keys",
        );
        // A single key (not a set) is accepted too.
        assert_valid(&yaml(
            r#"{"kty": "EC", "crv": "P-256", "x": "a", "y": "b"}"#,
        ));
    }

    #[test]
    fn ra_jwks_private_key_warning() {
        let yaml = r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: r
spec:
  jwtRules:
  - issuer: example
    jwks: '{"keys": [{"kty": "RSA", "e": "AQAB", "n": "x"}, {"kty": "RSA", "e": "AQAB", "n": "x", "d": "secret"}]}'
"#;
        assert_valid(yaml);
        assert_finding(
            yaml,
            Severity::Warning,
            8,
            "spec.jwtRules[0].jwks",
            "jwks key at index 1 contains private key material; only public keys are used for verification",
        );
        assert_no_finding(
            r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: r
spec:
  jwtRules:
  - issuer: example
    jwks: '{"keys": [{"kty": "RSA", "e": "AQAB", "n": "x"}]}'
"#,
            "jwks key at index 0 contains private key material; only public keys are used for verification",
        );
    }

    #[test]
    fn ra_from_headers() {
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: r
spec:
  jwtRules:
  - issuer: example
    fromHeaders:
    - prefix: baz
"#,
            9,
            "spec.jwtRules[0].fromHeaders[0].name",
            "location header name must be non-empty string",
        );
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: r
spec:
  jwtRules:
  - issuer: example
    fromHeaders:
    - name: ""
"#,
            9,
            "spec.jwtRules[0].fromHeaders[0].name",
            "location header name must be non-empty string",
        );
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: r
spec:
  jwtRules:
  - issuer: example
    fromHeaders:
    - ~
"#,
            9,
            "spec.jwtRules[0].fromHeaders[0]",
            "location header name must be non-null",
        );
        assert_valid(
            r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: r
spec:
  jwtRules:
  - issuer: example
    fromHeaders:
    - name: x-jwt-assertion
      prefix: "Bearer "
"#,
        );
    }

    #[test]
    fn ra_from_params_and_cookies() {
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: r
spec:
  jwtRules:
  - issuer: example
    fromParams:
    - ""
"#,
            9,
            "spec.jwtRules[0].fromParams[0]",
            "location query must be non-empty string",
        );
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: r
spec:
  jwtRules:
  - issuer: example
    fromCookies: ["session", ""]
"#,
            8,
            "spec.jwtRules[0].fromCookies[1]",
            "cookie name must be non-empty string",
        );
        assert_valid(
            r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: r
spec:
  jwtRules:
  - issuer: example
    fromParams: ["token"]
    fromCookies: ["session"]
"#,
        );
    }

    #[test]
    fn ra_output_claim_to_headers() {
        let both = "outputClaimToHeaders header and claim value must be non-empty string";
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: r
spec:
  jwtRules:
  - issuer: example
    outputClaimToHeaders:
    - ~
"#,
            9,
            "spec.jwtRules[0].outputClaimToHeaders[0]",
            "outputClaimToHeaders must not be null",
        );
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: r
spec:
  jwtRules:
  - issuer: example
    outputClaimToHeaders:
    - claim: ""
      header: h
"#,
            9,
            "spec.jwtRules[0].outputClaimToHeaders[0].claim",
            both,
        );
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: r
spec:
  jwtRules:
  - issuer: example
    outputClaimToHeaders:
    - claim: sub
"#,
            9,
            "spec.jwtRules[0].outputClaimToHeaders[0].header",
            both,
        );
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: r
spec:
  jwtRules:
  - issuer: example
    outputClaimToHeaders:
    - claim: x
      header: ":authority"
"#,
            10,
            "spec.jwtRules[0].outputClaimToHeaders[0].header",
            "header name :authority is not a valid header name",
        );
        assert_valid(
            r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: r
spec:
  jwtRules:
  - issuer: example
    outputClaimToHeaders:
    - claim: sub
      header: x-jwt_sub
"#,
        );
    }

    #[test]
    fn ra_space_delimited_claims() {
        assert_error(
            r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: r
spec:
  jwtRules:
  - issuer: example
    spaceDelimitedClaims:
    - ""
"#,
            9,
            "spec.jwtRules[0].spaceDelimitedClaims[0]",
            "space delimited claim must be non-empty string",
        );
        let many = format!(
            "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata:\n  name: r\nspec:\n  jwtRules:\n  - issuer: example\n    spaceDelimitedClaims: [{}]\n",
            vec!["c"; 65].join(", ")
        );
        assert_error(
            &many,
            8,
            "spec.jwtRules[0].spaceDelimitedClaims",
            "Too many: 65: must have at most 64 items",
        );
        assert_valid(
            r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: r
spec:
  jwtRules:
  - issuer: example
    spaceDelimitedClaims: ["scope", "provider.login.scope"]
"#,
        );
    }

    #[test]
    fn ra_timeout() {
        let yaml = |timeout: &str| {
            format!(
                r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: r
spec:
  jwtRules:
  - issuer: example
    timeout: {timeout}
"#
            )
        };
        assert_error(
            &yaml("0s"),
            8,
            "spec.jwtRules[0].timeout",
            "duration must be greater than 1ms",
        );
        assert_error(
            &yaml("1.5ms"),
            8,
            "spec.jwtRules[0].timeout",
            "only durations to ms precision are supported",
        );
        assert_valid(&yaml("5s"));
    }
}
