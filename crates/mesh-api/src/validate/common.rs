//! Checks shared by several kinds, with Istio's own error texts (`pkg/config/validation`), so that a
//! message can be searched for in Istio's docs and issues.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration as StdDuration;

use crate::diag::Report;
use crate::path::{FieldPath, Seg};
use crate::types::Duration;
use crate::yaml::{Node, Value};

/// Parses a duration as Istio reads it: Go's `time.ParseDuration` syntax (`"1h30m"`, `"0.5s"`,
/// `"100ms"`). Negative durations are returned as `Err`.
pub fn parse_duration(text: &str) -> Result<StdDuration, String> {
    let invalid = || {
        format!("invalid duration {text:?} (use a number and a unit: \"5s\", \"100ms\", \"1m\")")
    };
    let s = text.strip_prefix('+').unwrap_or(text);
    if s.starts_with('-') {
        return Err(format!(
            "invalid duration {text:?}: durations cannot be negative"
        ));
    }
    if s == "0" {
        return Ok(StdDuration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total_nanos: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() || num == "." {
            return Err(invalid());
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after_unit) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(invalid()),
        };
        let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| invalid())?
        };
        let mut frac_nanos: u128 = 0;
        let mut scale = unit_nanos;
        for digit in frac.chars() {
            scale /= 10;
            frac_nanos += u128::from(digit.to_digit(10).ok_or_else(invalid)?) * scale;
        }
        total_nanos = whole
            .checked_mul(unit_nanos)
            .and_then(|n| n.checked_add(total_nanos + frac_nanos))
            .ok_or_else(invalid)?;
        rest = after_unit;
    }
    let nanos = u64::try_from(total_nanos).map_err(|_| invalid())?;
    Ok(StdDuration::from_nanos(nanos))
}

/// Istio's `ValidateDuration`: at least 1ms, whole milliseconds. Returns the parsed value if valid.
pub fn duration(report: &mut Report<'_>, at: &FieldPath<'_>, d: &Duration) -> Option<StdDuration> {
    match parse_duration(&d.0) {
        Err(e) => {
            report.error(at, e);
            None
        }
        Ok(v) if v < StdDuration::from_millis(1) => {
            report.error(at, "duration must be greater than 1ms");
            None
        }
        Ok(v) if v.as_nanos() % 1_000_000 != 0 => {
            report.error(at, "only durations to ms precision are supported");
            None
        }
        Ok(v) => Some(v),
    }
}

/// Like [`duration`] for fields where `0s` means "disabled" (e.g. `tcp.idleTimeout`).
pub fn duration_or_zero(report: &mut Report<'_>, at: &FieldPath<'_>, d: &Duration) {
    match parse_duration(&d.0) {
        Ok(v) if v.is_zero() => {}
        _ => {
            duration(report, at, d);
        }
    }
}

/// Istio's `ValidatePort`: `port number %d must be in the range 1..65535`.
pub fn port_error(port: impl Into<i64>) -> Option<String> {
    let port = port.into();
    (!(1..=65535).contains(&port))
        .then(|| format!("port number {port} must be in the range 1..65535"))
}

/// [`port_error`] reported as an error at `at`; whether the port is valid.
pub fn port(report: &mut Report<'_>, at: &FieldPath<'_>, port: impl Into<i64>) -> bool {
    match port_error(port) {
        None => true,
        Some(e) => {
            report.error(at, e);
            false
        }
    }
}

/// A DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters. Istio also accepts
/// upper case in host labels (`IsDNS1123Label` in its `labels` package).
pub fn is_dns1123_label(s: &str) -> bool {
    s.len() <= 63 && is_alnum_bounded(s, b"-")
}

/// Non-empty, letters and digits at both ends, and in between letters, digits or bytes of `inner`:
/// the shape of Kubernetes' DNS labels (`-`) and qualified names (`-_.`), before any length limit.
pub fn is_alnum_bounded(s: &str, inner: &[u8]) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphanumeric()
                && l.is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || inner.contains(c))
        }
        _ => false,
    }
}

/// A Kubernetes object name or namespace part: lower case DNS-1123 label.
pub fn is_lowercase_dns1123_label(s: &str) -> bool {
    is_dns1123_label(s) && !s.bytes().any(|c| c.is_ascii_uppercase())
}

/// A DNS-1123 subdomain (Kubernetes object names): lower case labels joined by dots, ≤ 253.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_lowercase_dns1123_label)
}

/// Istio's `CheckDNS1123Preconditions` + `ValidateDNS1123Labels`: the error text, if invalid.
pub fn fqdn_error(domain: &str) -> Option<String> {
    if let Some(e) = dns1123_preconditions(domain) {
        return Some(e);
    }
    dns1123_labels_error(domain, domain)
}

fn dns1123_preconditions(name: &str) -> Option<String> {
    if name.len() > 255 {
        return Some(format!("domain name {name:?} too long (max 255)"));
    }
    if name.is_empty() {
        return Some("empty domain name not allowed".to_owned());
    }
    None
}

/// Checks the labels of `labels`; messages name `domain`, the whole name the user wrote.
fn dns1123_labels_error(domain: &str, labels: &str) -> Option<String> {
    let parts: Vec<&str> = labels.split('.').collect();
    let tld = parts[parts.len() - 1];
    if go_atoi(tld).is_ok() {
        return Some(format!(
            "domain name {domain:?} invalid (top level domain {tld:?} cannot be all-numeric)"
        ));
    }
    for (i, label) in parts.iter().enumerate() {
        // A trailing dot (`istio.io.`) is allowed.
        if i == parts.len() - 1 && label.is_empty() {
            return None;
        }
        if !is_dns1123_label(label) {
            return Some(format!(
                "domain name {domain:?} invalid (label {label:?} invalid)"
            ));
        }
    }
    None
}

/// Go's `strconv.Atoi` (an optionally signed decimal number that fits 64 bits), with its error texts.
pub fn go_atoi(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.Atoi: parsing {s:?}: invalid syntax"));
    }
    s.parse::<i64>()
        .map_err(|_| format!("strconv.Atoi: parsing {s:?}: value out of range"))
}

/// Istio's `ValidateWildcardDomain`: a DNS name whose first label may be `*` or `*`-prefixed only as a
/// whole label (`*.example.com`, `*`).
pub fn wildcard_domain_error(domain: &str) -> Option<String> {
    if let Some(e) = dns1123_preconditions(domain) {
        return Some(e);
    }
    let (first, rest) = match domain.split_once('.') {
        Some((f, r)) => (f, Some(r)),
        None => (domain, None),
    };
    if !is_wildcard_dns1123_label(first) {
        return Some(format!(
            "domain name {domain:?} invalid (label {first:?} invalid)"
        ));
    }
    rest.and_then(|rest| dns1123_labels_error(domain, rest))
}

fn is_wildcard_dns1123_label(label: &str) -> bool {
    if label == "*" {
        return true;
    }
    let rest = label
        .strip_prefix("*-")
        .or_else(|| label.strip_prefix('*'))
        .unwrap_or(label);
    label.len() <= 63 && is_dns1123_label(rest)
}

/// Whether `s` is an IP address (Go's `net.ParseIP`).
pub fn is_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

/// Go's `netip.ParsePrefix` on the bits after `/`: decimal digits only (no sign, no leading zero) and
/// at most the address's size.
pub fn is_prefix_len(bits: &str, addr: IpAddr) -> bool {
    let max = if addr.is_ipv4() { 32 } else { 128 };
    !bits.is_empty()
        && bits.len() <= 3
        && bits.bytes().all(|b| b.is_ascii_digit())
        && !(bits.len() > 1 && bits.starts_with('0'))
        && bits.parse::<u32>().is_ok_and(|b| b <= max)
}

/// `a.b.c.d/n`, `x::y/n` (Go's `netip.ParsePrefix`) or an IP address.
pub fn is_cidr_or_ip(s: &str) -> bool {
    match s.split_once('/') {
        None => is_ip(s),
        Some((ip, bits)) => ip.parse::<IpAddr>().is_ok_and(|a| is_prefix_len(bits, a)),
    }
}

/// Istio's `ValidateIPAddress`: `%v is not a valid IP`.
pub fn ip_address_error(addr: &str) -> Option<String> {
    (!is_ip(addr)).then(|| format!("{addr} is not a valid IP"))
}

/// Istio's `ValidateIPSubnet`: a CIDR block (`a.b.c.d/n`, `x::y/n`) or a plain IP address.
pub fn ip_subnet_error(subnet: &str) -> Option<String> {
    if subnet.matches('/').count() == 1 {
        (!is_cidr_or_ip(subnet)).then(|| format!("{subnet} is not a valid CIDR block"))
    } else {
        ip_address_error(subnet)
    }
}

/// The prefix marking a Unix domain socket address (`unix:///path` or `unix://@abstract`).
pub const UNIX_PREFIX: &str = "unix://";

/// Istio's `ValidateUnixAddress` on the part after `unix://`: an absolute file path or an abstract
/// socket (`@name`).
pub fn unix_address_error(path: &str) -> Option<String> {
    if path.is_empty() {
        Some("unix address must not be empty".to_owned())
    } else if !path.starts_with('@') && (!path.starts_with('/') || path.ends_with('/')) {
        Some(format!("{path} is not an absolute path to a file"))
    } else {
        None
    }
}

/// Istio's `ValidatePartialWildCard`: `*` only as the whole host or the whole first label.
pub fn partial_wildcard_error(host: &str) -> Option<String> {
    (host.contains('*') && host != "*" && !host.starts_with("*."))
        .then(|| format!("partial wildcard {host:?} not allowed"))
}

/// Istio's `validateSidecarOrGatewayHostnamePart`: the `dnsName` of a `namespace/dnsName` host: an
/// FQDN, `*` or a `*.`-prefixed wildcard (gateways also take an IP address), no partial wildcard.
pub fn hostname_part_errors(name: &str, is_gateway: bool) -> Vec<String> {
    let mut errors = Vec::new();
    if name != "*" && !name.contains('.') {
        errors.push("short names (non FQDN) are not allowed".to_owned());
    }
    if let Some(e) = wildcard_domain_error(name)
        && !(is_gateway && is_ip(name))
    {
        errors.push(e);
    }
    errors.extend(partial_wildcard_error(name));
    errors
}

/// Kubernetes label key: `[prefix/]name`, name ≤ 63 of alphanumerics, `-`, `_`, `.`, alphanumeric at
/// both ends; prefix a DNS subdomain.
pub fn label_key_error(key: &str) -> Option<String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && (p.is_empty() || !is_dns1123_subdomain(p))
    {
        return Some(format!(
            "invalid label key {key:?}: the prefix must be a DNS subdomain (lower case, e.g. \"example.com/\")"
        ));
    }
    if !is_label_value(name) || name.is_empty() {
        return Some(format!(
            "invalid label key {key:?}: name part must be 1-63 characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ));
    }
    None
}

/// Kubernetes label value: empty, or ≤ 63 of alphanumerics, `-`, `_`, `.`, alphanumeric at both ends.
pub fn is_label_value(v: &str) -> bool {
    v.is_empty() || (v.len() <= 63 && is_alnum_bounded(v, b"-_."))
}

/// Labels of a workload selector or subset: Istio's `labels.Instance.Validate` plus its selector rules.
pub fn labels(report: &mut Report<'_>, at: &FieldPath<'_>, labels: &BTreeMap<String, String>) {
    for (k, v) in labels {
        let p = at.key(k);
        if k.is_empty() {
            report.error(&p, "empty key is not supported in selector: \"\"");
        } else if k.contains('*') || v.contains('*') {
            report.error(&p, format!("wildcard is not supported in selector: {k:?}"));
        } else if let Some(e) = label_key_error(k) {
            report.error(&p, e);
        } else if !is_label_value(v) {
            report.error(
                &p,
                format!("invalid tag value {v:?}: must be at most 63 characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit"),
            );
        }
    }
}

/// A workload selector (`labels`/`matchLabels`): warns when present but empty.
pub fn workload_selector(
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
    selector: &BTreeMap<String, String>,
) {
    if selector.is_empty() {
        report.warn(at, "workload selector specified without labels");
    }
    labels(report, at, selector);
}

/// `exportTo` rules shared by VirtualService, DestinationRule and ServiceEntry.
pub fn export_to(
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
    namespace: &str,
    export_to: &[String],
    is_service_entry: bool,
) {
    let mut seen: Vec<&str> = Vec::new();
    let mut public = false;
    let mut private = false;
    let mut none = false;
    for (i, e) in export_to.iter().enumerate() {
        let p = at.index(i);
        let entry = e.as_str();
        match entry {
            "*" => public = true,
            "." => private = true,
            "~" if is_service_entry => none = true,
            _ if is_lowercase_dns1123_label(entry) => private = true,
            _ => {
                report.error(&p, format!("only .,*{} or a valid namespace name is allowed in exportTo, found {entry:?}", if is_service_entry { ",~" } else { "" }));
                continue;
            }
        }
        if seen.contains(&entry) {
            report.error(
                &p,
                format!("duplicate entries in exportTo for entry {entry}"),
            );
        } else if (entry == "." && seen.contains(&namespace))
            || (entry == namespace && seen.contains(&"."))
        {
            report.error(
                &p,
                format!("duplicate entries in exportTo: . and current namespace {namespace}"),
            );
        }
        seen.push(entry);
    }
    if none && export_to.len() > 1 {
        report.error(at, "cannot export service entry to no one (~) and someone");
    } else if public && private {
        report.error(
            at,
            "cannot have both public (*) and non-public exportTo values for a resource",
        );
    }
}

/// Istio's protocol names (`pkg/config/protocol`), case-insensitive.
pub const PROTOCOLS: &[&str] = &[
    "HTTP",
    "HTTPS",
    "GRPC",
    "GRPC-WEB",
    "HTTP2",
    "HTTP_PROXY",
    "TCP",
    "TLS",
    "MONGO",
    "REDIS",
    "MYSQL",
    "UDP",
];

/// Whether `name` is a protocol Istio knows (`unsupported protocol: %s` otherwise).
pub fn is_protocol(name: &str) -> bool {
    PROTOCOLS.iter().any(|p| p.eq_ignore_ascii_case(name))
}

/// `unsupported protocol: X (did you mean "HTTP"?)`.
pub fn protocol(report: &mut Report<'_>, at: &FieldPath<'_>, name: &str) {
    if !is_protocol(name) {
        report.error(
            at,
            format!(
                "unsupported protocol: {name}{}",
                crate::diag::did_you_mean(&name.to_ascii_uppercase(), PROTOCOLS.iter().copied())
            ),
        );
    }
}

/// Istio's `protocol.Instance.IsHTTP`: HTTP, HTTP2, HTTP_PROXY, GRPC, GRPC-WEB (any case).
pub fn is_http_protocol(p: &str) -> bool {
    ["HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-WEB"]
        .iter()
        .any(|x| x.eq_ignore_ascii_case(p))
}

/// Istio's `protocol.Instance.IsTLS`: HTTPS, TLS (any case).
pub fn is_tls_protocol(p: &str) -> bool {
    ["HTTPS", "TLS"].iter().any(|x| x.eq_ignore_ascii_case(p))
}

/// Istio's `protocol.Instance.IsTCP`: TCP, HTTPS, TLS, MONGO, REDIS, MYSQL (any case).
pub fn is_tcp_protocol(p: &str) -> bool {
    ["TCP", "HTTPS", "TLS", "MONGO", "REDIS", "MYSQL"]
        .iter()
        .any(|x| x.eq_ignore_ascii_case(p))
}

/// Istio's `ValidatePortName`: a DNS-1123 label, upper case allowed (`invalid port name: %s`).
pub fn port_name(report: &mut Report<'_>, at: &FieldPath<'_>, name: &str) -> bool {
    if is_dns1123_label(name) {
        true
    } else {
        report.error(at, format!("invalid port name: {name}"));
        false
    }
}

/// Whether an optional string field is set to something non-empty (Go's `!= ""` on a proto string).
pub fn is_set(field: &Option<String>) -> bool {
    field.as_deref().is_some_and(|s| !s.is_empty())
}

/// The API server's message for a CRD `maxItems`/`maxProperties` (`field.TooMany`): `Too many: N:
/// must have at most M items` (`unit` is `items`, `properties`, ...).
pub fn too_many(report: &mut Report<'_>, at: &FieldPath<'_>, len: usize, max: usize, unit: &str) {
    if len > max {
        report.error(at, format!("Too many: {}", at_most(len, max, unit)));
    }
}

/// [`too_many`] for `items`, in the lower-case wording (`too many: N: ...`) the WorkloadEntry,
/// ServiceEntry and server TLS findings have always used.
pub fn max_entries(report: &mut Report<'_>, at: &FieldPath<'_>, len: usize, max: usize) {
    if len > max {
        report.error(at, format!("too many: {}", at_most(len, max, "items")));
    }
}

fn at_most(len: usize, max: usize, unit: &str) -> String {
    format!("{len}: must have at most {max} {unit}")
}

/// The CRD's `maxLength` (`too long: may not be more than M bytes`).
pub fn max_len(report: &mut Report<'_>, at: &FieldPath<'_>, value: &str, max: usize) {
    if value.len() > max {
        report.error(at, format!("too long: may not be more than {max} bytes"));
    }
}

/// The YAML node at `path` in the document `root`, if it is written there: lets a validator tell an
/// explicit `null` or `{}` (which the types read as empty) from an absent field.
pub fn node_at<'n>(root: &'n Node, path: &FieldPath<'_>) -> Option<&'n Node> {
    let mut node = root;
    for seg in path.segments() {
        node = match (seg, &node.value) {
            (Seg::Key(k), Value::Map(entries)) => &entries.iter().find(|e| e.key == k)?.value,
            (Seg::Index(i), Value::Seq(items)) => items.get(i)?,
            (Seg::Root, _) => node,
            _ => return None,
        };
    }
    Some(node)
}

/// Whether the document writes `null` at `path` (`- ~`, or an empty list item `-`), which the types
/// read as an empty message.
pub fn is_null(root: &Node, path: &FieldPath<'_>) -> bool {
    node_at(root, path).is_some_and(|n| matches!(n.value, Value::Null))
}

/// Whether the document writes an empty mapping `{}` at `path` (the types cannot tell it from absent).
pub fn is_empty_map(root: &Node, path: &FieldPath<'_>) -> bool {
    node_at(root, path).is_some_and(|n| matches!(&n.value, Value::Map(e) if e.is_empty()))
}

/// Whether the mapping at `path` has the key `key` as written.
pub fn has_key(root: &Node, path: &FieldPath<'_>, key: &str) -> bool {
    node_at(root, path).is_some_and(|n| n.entry(key).is_some())
}

/// Percentages of `Percent` messages and similar: `[0, 100]`.
pub fn percent_in_range(value: f64) -> bool {
    (0.0..=100.0).contains(&value)
}

/// RE2 regex check with Istio's message. Rust's `regex` crate implements RE2's syntax (no
/// backreferences, no look-around), so what compiles here compiles in Envoy.
pub fn regex(report: &mut Report<'_>, at: &FieldPath<'_>, what: &str, pattern: &str) {
    if pattern.is_empty() {
        report.error(
            at,
            format!("{what:?}: regex string match should not be empty"),
        );
    } else if pattern.len() > 1024 {
        report.error(
            at,
            format!("{what:?}: regex is too large, max length allowed is 1024"),
        );
    } else if let Err(e) = regex::Regex::new(pattern) {
        let reason = e.to_string();
        let reason = reason.lines().last().unwrap_or_default().trim();
        report.error(
            at,
            format!("{what:?}: {reason}; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("5s"), Ok(StdDuration::from_secs(5)));
        assert_eq!(parse_duration("0.5s"), Ok(StdDuration::from_millis(500)));
        assert_eq!(parse_duration("1h30m"), Ok(StdDuration::from_secs(5400)));
        assert_eq!(parse_duration("100ms"), Ok(StdDuration::from_millis(100)));
        assert_eq!(parse_duration("1.5us"), Ok(StdDuration::from_nanos(1500)));
        assert_eq!(parse_duration("0"), Ok(StdDuration::ZERO));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5 s").is_err());
        assert!(parse_duration("five").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1d").is_err());
    }

    #[test]
    fn domains() {
        assert_eq!(wildcard_domain_error("*.example.com"), None);
        assert_eq!(wildcard_domain_error("*"), None);
        assert_eq!(wildcard_domain_error("reviews"), None);
        assert_eq!(wildcard_domain_error("istio.io."), None);
        assert_eq!(
            wildcard_domain_error("foo.*.com"),
            Some("domain name \"foo.*.com\" invalid (label \"*\" invalid)".into())
        );
        assert_eq!(
            wildcard_domain_error("*foo*.com"),
            Some("domain name \"*foo*.com\" invalid (label \"*foo*\" invalid)".into())
        );
        assert_eq!(
            fqdn_error("1.2.3.4"),
            Some(
                "domain name \"1.2.3.4\" invalid (top level domain \"4\" cannot be all-numeric)"
                    .into()
            )
        );
        assert_eq!(fqdn_error(""), Some("empty domain name not allowed".into()));
        assert!(fqdn_error(&"a".repeat(256)).is_some_and(|e| e.contains("too long")));
        assert_eq!(
            fqdn_error("bad_host.com"),
            Some("domain name \"bad_host.com\" invalid (label \"bad_host\" invalid)".into())
        );
    }

    #[test]
    fn label_syntax() {
        assert_eq!(label_key_error("app"), None);
        assert_eq!(label_key_error("app.kubernetes.io/name"), None);
        assert!(label_key_error("Bad Key").is_some());
        assert!(label_key_error("UPPER.io/x").is_some());
        assert!(is_label_value("v1.2_x-y"));
        assert!(!is_label_value("-v1"));
        assert!(is_cidr_or_ip("10.0.0.0/8"));
        assert!(is_cidr_or_ip("2001:db8::/32"));
        assert!(!is_cidr_or_ip("10.0.0.0/33"));
        assert!(!is_cidr_or_ip("example.com"));
        // Go's `netip.ParsePrefix`: no sign, no leading zero.
        assert!(is_cidr_or_ip("0.0.0.0/0"));
        assert!(!is_cidr_or_ip("10.0.0.0/+8"));
        assert!(!is_cidr_or_ip("10.0.0.0/08"));
        assert!(!is_cidr_or_ip("10.0.0.0/"));
        assert_eq!(
            ip_subnet_error("10.0.0.0/08"),
            Some("10.0.0.0/08 is not a valid CIDR block".into())
        );
        assert_eq!(unix_address_error("@abstract"), None);
        assert_eq!(
            unix_address_error("/dir/"),
            Some("/dir/ is not an absolute path to a file".into())
        );
        assert_eq!(
            ip_subnet_error("10.0.0.0/8/8"),
            Some("10.0.0.0/8/8 is not a valid IP".into())
        );
    }
}
