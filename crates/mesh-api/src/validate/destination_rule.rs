//! DestinationRule: Istio's `ValidateDestinationRule` (`pkg/config/validation/validation.go`) and the
//! helpers it shares with other kinds in `agent/validation.go` (`ValidateTLS`,
//! `ValidateLocalityLbSetting`, `ValidateZoneAwareLbSetting`), plus what the CRD schema makes the API
//! server reject (required fields, `oneOf`s, bounds). The connection-pool checks are shared with
//! Sidecar (`validateConnectionPool`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration as StdDuration;

use super::Ctx;
use super::common::{self, is_set};
use crate::diag::Report;
use crate::path::FieldPath;
use crate::types::common::Duration;
use crate::types::destination_rule::{
    ClientTlsMode, ClientTlsSettings, ConnectionPoolSettings, ConsistentHashLb, H2UpgradePolicy,
    LoadBalancerSettings, LocalityLoadBalancerSetting, OutlierDetection, PortTrafficPolicy,
    RetryBudget, TrafficPolicy, TunnelSettings, WarmupConfiguration, ZoneAwareLbSetting,
};
use crate::types::destination_rule::{DestinationRuleSpec, Subset};

/// CRD `maxProperties` of `workloadSelector.matchLabels`.
const MAX_SELECTOR_LABELS: usize = 4096;
/// CRD `maxItems` of `portLevelSettings`.
const MAX_PORT_LEVEL_SETTINGS: usize = 4096;
/// Maglev table sizes must stay below this (Envoy's limit).
const MAGLEV_TABLE_SIZE_LIMIT: u64 = 5_000_011;
/// Topology labels that `failoverPriority` may not use together with `failover`.
const TOPOLOGY_LABELS: [&str; 3] = [
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.istio.io/subzone",
];

pub(super) fn validate(
    ctx: &Ctx<'_>,
    spec: &DestinationRuleSpec,
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
) {
    let host_at = at.key("host");
    match spec.host.as_deref() {
        None => report.error(&host_at, "missing required field \"host\""),
        Some(host) => {
            if let Some(e) = common::wildcard_domain_error(host) {
                report.error(&host_at, e);
            }
        }
    }

    if let Some(tp) = &spec.traffic_policy {
        traffic_policy(ctx.namespace, tp, report, &at.key("trafficPolicy"));
    }

    let subsets_at = at.key("subsets");
    let mut names = BTreeSet::new();
    for (i, subset) in spec.subsets.iter().enumerate() {
        let sat = subsets_at.index(i);
        let name = subset.name.as_deref().unwrap_or_default();
        if !names.insert(name) {
            report.error(&sat.key("name"), format!("duplicate subset names: {name}"));
        }
        validate_subset(ctx.namespace, subset, report, &sat);
    }

    let export_at = at.key("exportTo");
    common::export_to(report, &export_at, ctx.namespace, &spec.export_to, false);
    if spec.workload_selector.is_some() {
        export_to_with_selector(report, &export_at, ctx.namespace, &spec.export_to);
    }

    if let Some(selector) = &spec.workload_selector {
        let sel_at = at.key("workloadSelector");
        let labels_at = sel_at.key("matchLabels");
        common::too_many(
            report,
            &labels_at,
            selector.match_labels.len(),
            MAX_SELECTOR_LABELS,
            "properties",
        );
        common::workload_selector(report, &labels_at, &selector.match_labels);
    }
}

/// A DestinationRule with a workload selector applies only to its own namespace's workloads, so it
/// may be exported only there (`validateExportTo` with `isDestinationRuleWithSelector`).
fn export_to_with_selector(
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
    namespace: &str,
    export_to: &[String],
) {
    // The namespaces it is visible in, `.` read as the current one; invalid entries are reported by
    // `common::export_to` and left out here, as Istio does.
    let keys: BTreeSet<&str> = export_to
        .iter()
        .map(|e| if e == "." { namespace } else { e.as_str() })
        .filter(|k| *k == "*" || common::is_lowercase_dns1123_label(k))
        .collect();
    if keys.is_empty() {
        return;
    }
    if !keys.contains(namespace) {
        report.error(
            at,
            "destination rule with workload selector cannot have exportTo beyond current namespace",
        );
    } else if keys.len() > 1 {
        report.error(
            at,
            "destination rule with workload selector cannot have multiple entries in exportTo",
        );
    }
}

/// `validateSubset`: name, labels and the subset's own traffic policy.
fn validate_subset(namespace: &str, subset: &Subset, report: &mut Report<'_>, at: &FieldPath<'_>) {
    let name_at = at.key("name");
    match subset.name.as_deref().unwrap_or_default() {
        "" => report.error(&name_at, "subset name cannot be empty"),
        name if !common::is_dns1123_label(name) => {
            report.error(&name_at, format!("subset name is invalid: {name}"));
        }
        _ => {}
    }
    common::labels(report, &at.key("labels"), &subset.labels);
    if let Some(tp) = &subset.traffic_policy {
        traffic_policy(namespace, tp, report, &at.key("trafficPolicy"));
    }
}

/// `validateTrafficPolicy`.
fn traffic_policy(
    namespace: &str,
    tp: &TrafficPolicy,
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
) {
    if tp.outlier_detection.is_none()
        && tp.connection_pool.is_none()
        && tp.load_balancer.is_none()
        && tp.tls.is_none()
        && tp.port_level_settings.is_empty()
        && tp.tunnel.is_none()
        && tp.proxy_protocol.is_none()
        && tp.retry_budget.is_none()
    {
        report.error(at, "traffic policy must have at least one field");
        return;
    }
    if tp.tunnel.is_some() && tp.proxy_protocol.is_some() {
        report.error(
            &at.key("tunnel"),
            "tunnel and proxyProtocol must not be set together",
        );
        return;
    }
    shared_policies(
        namespace,
        SharedPolicies {
            outlier_detection: tp.outlier_detection.as_ref(),
            connection_pool: tp.connection_pool.as_ref(),
            load_balancer: tp.load_balancer.as_ref(),
            tls: tp.tls.as_ref(),
        },
        report,
        at,
    );
    port_level_settings(namespace, &tp.port_level_settings, report, at);
    if let Some(tunnel) = &tp.tunnel {
        tunnel_settings(tunnel, report, &at.key("tunnel"));
    }
    if let Some(rb) = &tp.retry_budget {
        retry_budget(rb, report, &at.key("retryBudget"));
    }
}

/// The policies a traffic policy and each of its port-level settings both carry.
struct SharedPolicies<'a> {
    outlier_detection: Option<&'a OutlierDetection>,
    connection_pool: Option<&'a ConnectionPoolSettings>,
    load_balancer: Option<&'a LoadBalancerSettings>,
    tls: Option<&'a ClientTlsSettings>,
}

/// What Istio's `validateTrafficPolicy` and `validatePortTrafficPolicies` both check: outlier
/// detection, connection pool, load balancer and client TLS.
fn shared_policies(
    namespace: &str,
    policies: SharedPolicies<'_>,
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
) {
    if let Some(od) = policies.outlier_detection {
        outlier_detection(od, report, &at.key("outlierDetection"));
    }
    if let Some(cp) = policies.connection_pool {
        connection_pool(cp, report, &at.key("connectionPool"));
    }
    if let Some(lb) = policies.load_balancer {
        load_balancer(
            lb,
            policies.outlier_detection.is_some(),
            report,
            &at.key("loadBalancer"),
        );
    }
    if let Some(tls) = policies.tls {
        client_tls(namespace, tls, report, &at.key("tls"));
    }
}

/// `validatePortTrafficPolicies`, plus the CRD's `maxItems` and a warning for a port listed twice
/// (only the first entry for a port is used).
fn port_level_settings(
    namespace: &str,
    settings: &[PortTrafficPolicy],
    report: &mut Report<'_>,
    tp_at: &FieldPath<'_>,
) {
    let at = tp_at.key("portLevelSettings");
    common::too_many(
        report,
        &at,
        settings.len(),
        MAX_PORT_LEVEL_SETTINGS,
        "items",
    );
    let mut seen = BTreeSet::new();
    for (i, p) in settings.iter().enumerate() {
        let pat = at.index(i);
        let port_at = pat.key("port");
        match &p.port {
            None => report.error(&port_at, "portTrafficPolicy must have valid port"),
            Some(port) => {
                let number = port.number.unwrap_or(0);
                let number_at = port_at.key("number");
                if let Some(e) = common::port_error(number) {
                    // Istio accepts it, but no service port can ever match it.
                    report.warn(&number_at, e);
                } else if !seen.insert(number) {
                    report.warn(
                        &number_at,
                        format!("duplicate port level settings for port {number}: only the first one is used"),
                    );
                }
            }
        }
        if p.outlier_detection.is_none()
            && p.connection_pool.is_none()
            && p.load_balancer.is_none()
            && p.tls.is_none()
        {
            report.error(&pat, "port traffic policy must have at least one field");
            continue;
        }
        shared_policies(
            namespace,
            SharedPolicies {
                outlier_detection: p.outlier_detection.as_ref(),
                connection_pool: p.connection_pool.as_ref(),
                load_balancer: p.load_balancer.as_ref(),
                tls: p.tls.as_ref(),
            },
            report,
            &pat,
        );
    }
}

/// `ValidatePercent`.
fn percent(report: &mut Report<'_>, at: &FieldPath<'_>, value: Option<i32>) {
    if let Some(v) = value
        && !(0..=100).contains(&v)
    {
        report.error(at, format!("percentage {v} is not in range 0..100"));
    }
}

/// `validateOutlierDetection`, plus the CRD's bounds on `outlierDetectionHttpErrorCodes`.
fn outlier_detection(od: &OutlierDetection, report: &mut Report<'_>, at: &FieldPath<'_>) {
    if let Some(d) = &od.base_ejection_time {
        common::duration(report, &at.key("baseEjectionTime"), d);
    }
    if od.consecutive_errors.is_some_and(|n| n != 0) {
        report.warn(
            &at.key("consecutiveErrors"),
            "outlier detection consecutive errors is deprecated, use consecutiveGatewayErrors or consecutive5xxErrors instead",
        );
    }
    if !od.split_external_local_origin_errors.unwrap_or(false)
        && od.consecutive_local_origin_failures.unwrap_or(0) > 0
    {
        report.error(
            &at.key("consecutiveLocalOriginFailures"),
            "outlier detection consecutive local origin failures is specified, but split external local origin errors is set to false",
        );
    }
    if let Some(d) = &od.interval {
        common::duration(report, &at.key("interval"), d);
    }
    percent(
        report,
        &at.key("maxEjectionPercent"),
        od.max_ejection_percent,
    );
    percent(report, &at.key("minHealthPercent"), od.min_health_percent);
    let codes_at = at.key("outlierDetectionHttpErrorCodes");
    for (i, code) in od.outlier_detection_http_error_codes.iter().enumerate() {
        if !(100..=599).contains(code) {
            report.error(
                &codes_at.index(i),
                format!("HTTP status {code} is not in range 100-599"),
            );
        }
    }
}

/// Istio's `validateConnectionPool`, for DestinationRule traffic policies and Sidecar inbound pools.
pub(super) fn connection_pool(
    cp: &ConnectionPoolSettings,
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
) {
    if cp.http.is_none() && cp.tcp.is_none() {
        report.error(at, "connection pool must have at least one field");
        return;
    }
    if let Some(http) = &cp.http {
        let hat = at.key("http");
        let non_negative = [
            (
                "http1MaxPendingRequests",
                http.http1_max_pending_requests,
                "http1 max pending requests must be non-negative",
            ),
            (
                "http2MaxRequests",
                http.http2_max_requests,
                "http2 max requests must be non-negative",
            ),
            (
                "maxRequestsPerConnection",
                http.max_requests_per_connection,
                "max requests per connection must be non-negative",
            ),
            (
                "maxRetries",
                http.max_retries,
                "max retries must be non-negative",
            ),
            (
                "maxConcurrentStreams",
                http.max_concurrent_streams,
                "max concurrent streams must be non-negative",
            ),
        ];
        for (field, value, message) in non_negative {
            if value.is_some_and(|v| v < 0) {
                report.error(&hat.key(field), message);
            }
        }
        if let Some(d) = &http.idle_timeout {
            common::duration(report, &hat.key("idleTimeout"), d);
        }
        if http.h2_upgrade_policy == Some(H2UpgradePolicy::Upgrade)
            && http.use_client_protocol == Some(true)
        {
            report.error(
                &hat.key("useClientProtocol"),
                "use client protocol must not be true when H2UpgradePolicy is UPGRADE",
            );
        }
        if let Some(ka) = &http.http2_keep_alive {
            let kat = hat.key("http2KeepAlive");
            let interval_at = kat.key("interval");
            match &ka.interval {
                None => report.error(&interval_at, "http2 keepalive interval is required"),
                Some(d) => {
                    common::duration(report, &interval_at, d);
                }
            }
            let timeout_at = kat.key("timeout");
            match &ka.timeout {
                None => report.error(&timeout_at, "http2 keepalive timeout is required"),
                Some(d) => {
                    common::duration(report, &timeout_at, d);
                }
            }
        }
    }
    if let Some(tcp) = &cp.tcp {
        let tat = at.key("tcp");
        if tcp.max_connections.is_some_and(|v| v < 0) {
            report.error(
                &tat.key("maxConnections"),
                "max connections must be non-negative",
            );
        }
        if let Some(d) = &tcp.connect_timeout {
            common::duration(report, &tat.key("connectTimeout"), d);
        }
        if let Some(d) = &tcp.max_connection_duration {
            common::duration(report, &tat.key("maxConnectionDuration"), d);
        }
        if let Some(text) = &tcp.idle_timeout {
            // Anything under a millisecond (`0s`) turns the idle timeout off, so Istio skips it.
            let idle_at = tat.key("idleTimeout");
            match common::parse_duration(text) {
                Ok(v) if v < StdDuration::from_millis(1) => {}
                _ => {
                    common::duration(report, &idle_at, &Duration(text.clone()));
                }
            }
        }
        if let Some(ka) = &tcp.tcp_keepalive {
            let kat = tat.key("tcpKeepalive");
            if let Some(d) = &ka.time {
                common::duration(report, &kat.key("time"), d);
            }
            if let Some(d) = &ka.interval {
                common::duration(report, &kat.key("interval"), d);
            }
        }
    }
}

/// Reports every field after the first that is set among a CRD `oneOf` group.
fn one_of(report: &mut Report<'_>, at: &FieldPath<'_>, fields: &[(&str, bool)]) {
    let names: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
    let mut set = fields.iter().filter(|(_, present)| *present).skip(1);
    if let Some((field, _)) = set.next() {
        let list = match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.join(""),
        };
        report.error(&at.key(field), format!("only one of {list} can be set"));
    }
}

/// `validateLoadBalancer`, plus the CRD's `oneOf`s and warmup bounds.
fn load_balancer(
    lb: &LoadBalancerSettings,
    has_outlier: bool,
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
) {
    one_of(
        report,
        at,
        &[
            ("simple", lb.simple.is_some()),
            ("consistentHash", lb.consistent_hash.is_some()),
            ("backendUtilization", lb.backend_utilization.is_some()),
        ],
    );
    if let Some(ch) = &lb.consistent_hash {
        consistent_hash(ch, report, &at.key("consistentHash"));
    }
    if lb.locality_lb_setting.is_some() && lb.zone_aware_lb_setting.is_some() {
        report.error(
            &at.key("zoneAwareLbSetting"),
            "only one of localityLbSetting and zoneAwareLbSetting can be set",
        );
    }
    if let Some(l) = &lb.locality_lb_setting {
        locality_lb_setting(l, has_outlier, report, &at.key("localityLbSetting"));
    }
    if let Some(z) = &lb.zone_aware_lb_setting {
        zone_aware_lb_setting(z, has_outlier, report, &at.key("zoneAwareLbSetting"));
    }
    if let Some(w) = &lb.warmup {
        warmup(w, report, &at.key("warmup"));
    }
    if let Some(d) = &lb.warmup_duration_secs {
        common::duration(report, &at.key("warmupDurationSecs"), d);
    }
}

fn consistent_hash(ch: &ConsistentHashLb, report: &mut Report<'_>, at: &FieldPath<'_>) {
    one_of(
        report,
        at,
        &[
            ("httpHeaderName", ch.http_header_name.is_some()),
            ("httpCookie", ch.http_cookie.is_some()),
            ("useSourceIp", ch.use_source_ip.is_some()),
            (
                "httpQueryParameterName",
                ch.http_query_parameter_name.is_some(),
            ),
        ],
    );
    one_of(
        report,
        at,
        &[
            ("ringHash", ch.ring_hash.is_some()),
            ("maglev", ch.maglev.is_some()),
        ],
    );
    if let Some(cookie) = &ch.http_cookie {
        let cat = at.key("httpCookie");
        if cookie.name.as_deref().unwrap_or_default().is_empty() {
            report.error(&cat.key("name"), "name required for HttpCookie");
        }
        if let Some(ttl) = &cookie.ttl
            && let Err(e) = common::parse_duration(ttl)
        {
            report.error(&cat.key("ttl"), e);
        }
        let attrs_at = cat.key("attributes");
        let mut names = BTreeSet::new();
        for (i, attr) in cookie.attributes.iter().enumerate() {
            let name_at = attrs_at.index(i);
            let name_at = name_at.key("name");
            match attr.name.as_deref().unwrap_or_default() {
                "" => report.error(&name_at, "cookie attribute name cannot be empty"),
                name => {
                    if !names.insert(name) {
                        report.error(&name_at, format!("duplicate cookie attribute name: {name}"));
                    }
                }
            }
        }
    }
    if ch.minimum_ring_size.is_some_and(|n| n != 0) {
        let ring_at = at.key("minimumRingSize");
        report.warn(
            &ring_at,
            "consistent hash MinimumRingSize is deprecated, use ConsistentHashLB's RingHash configuration instead",
        );
        if ch.ring_hash.is_some() || ch.maglev.is_some() {
            report.error(
                &ring_at,
                "only one of MinimumRingSize or Maglev/Ringhash can be specified",
            );
        }
    }
    if let Some(maglev) = &ch.maglev {
        let size_at = at.key("maglev");
        let size_at = size_at.key("tableSize");
        let size = maglev.table_size.unwrap_or(0);
        if size == 0 {
            report.error(&size_at, "tableSize must be set for maglev");
        } else if size >= MAGLEV_TABLE_SIZE_LIMIT {
            report.error(&size_at, "tableSize must be less than 5000011 for maglev");
        } else if !is_prime(size) {
            report.error(&size_at, "tableSize must be a prime number for maglev");
        }
    }
}

/// Envoy's primality test for Maglev table sizes (only called below the 5000011 limit, so cheap).
fn is_prime(x: u64) -> bool {
    if x < 2 {
        return false;
    }
    if x < 4 {
        return true;
    }
    if x.is_multiple_of(2) {
        return false;
    }
    let mut factor = 3;
    while factor * factor <= x {
        if x.is_multiple_of(factor) {
            return false;
        }
        factor += 2;
    }
    true
}

fn warmup(w: &WarmupConfiguration, report: &mut Report<'_>, at: &FieldPath<'_>) {
    let duration_at = at.key("duration");
    match &w.duration {
        None => report.error(&duration_at, "duration is required"),
        Some(d) => {
            common::duration(report, &duration_at, d);
        }
    }
    if let Some(p) = w.minimum_percent {
        let pat = at.key("minimumPercent");
        if p > 100.0 {
            report.error(
                &pat,
                "minimumPercent value should be less than or equal to 100",
            );
        } else if p < 0.0 {
            report.error(
                &pat,
                "minimumPercent value should be greater than or equal to 0",
            );
        }
    }
    if let Some(a) = w.aggression
        && a <= 0.0
    {
        report.error(&at.key("aggression"), "aggression should be greater than 0");
    }
}

/// `ValidateLocalityLbSetting`. Like Istio, the first weight or overlap problem ends the check.
fn locality_lb_setting(
    lb: &LocalityLoadBalancerSetting,
    has_outlier: bool,
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
) {
    if !lb.distribute.is_empty() && !lb.failover.is_empty() {
        report.error(
            at,
            "can not simultaneously specify 'distribute' and 'failover'",
        );
        return;
    }
    let priority_at = at.key("failoverPriority");
    if !lb.failover.is_empty() {
        for (i, label) in lb.failover_priority.iter().enumerate() {
            if TOPOLOGY_LABELS.contains(&label.as_str()) {
                report.error(
                    &priority_at.index(i),
                    format!("can not simultaneously set 'failover' and topology label '{label}' in 'failover_priority'"),
                );
                return;
            }
        }
    }

    let dist_at = at.key("distribute");
    let mut sources = Vec::with_capacity(lb.distribute.len());
    for (i, d) in lb.distribute.iter().enumerate() {
        let dat = dist_at.index(i);
        sources.push(d.from.as_deref().unwrap_or_default());
        let to_at = dat.key("to");
        let mut total: u64 = 0;
        for (loc, weight) in &d.to {
            if !(1..=100).contains(weight) {
                report.error(&to_at.key(loc), "locality weight must be in range [1, 100]");
                return;
            }
            total += u64::from(*weight);
        }
        if total != 100 {
            report.error(&to_at, format!("total locality weight {total} != 100"));
            return;
        }
        let destinations: Vec<&str> = d.to.keys().map(String::as_str).collect();
        if let Some(e) = localities_error(&destinations) {
            report.error(&to_at, e);
        }
    }
    if let Some(e) = localities_error(&sources) {
        report.error(&dist_at, e);
    }

    if (!lb.failover.is_empty() || !lb.failover_priority.is_empty()) && !has_outlier {
        report.warn(at, "outlier detection policy must be provided for failover");
    }

    let regions = lb
        .failover
        .iter()
        .map(|f| (f.from.as_deref(), f.to.as_deref()));
    failover_regions(
        report,
        &at.key("failover"),
        regions,
        [
            "locality lb failover settings must specify different regions",
            "locality lb failover only specify region",
            "locality lb failover region should not contain '*' wildcard",
        ],
    );
}

/// `ValidateZoneAwareLbSetting`.
fn zone_aware_lb_setting(
    lb: &ZoneAwareLbSetting,
    has_outlier: bool,
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
) {
    let priority_at = at.key("failoverPriority");
    for (i, label) in lb.failover_priority.iter().enumerate() {
        if TOPOLOGY_LABELS.contains(&label.as_str()) {
            report.error(
                &priority_at.index(i),
                format!("'failover_priority' for zone aware lb must not use topology label '{label}'; region- and zone-level routing are handled automatically"),
            );
        }
    }
    if (!lb.failover.is_empty() || !lb.failover_priority.is_empty()) && !has_outlier {
        report.warn(at, "outlier detection policy must be provided for failover");
    }
    let regions = lb
        .failover
        .iter()
        .map(|f| (f.from.as_deref(), f.to.as_deref()));
    failover_regions(
        report,
        &at.key("failover"),
        regions,
        [
            "zone aware lb failover settings must specify different regions",
            "zone aware lb failover only specifies region; zone and subzone failover are handled automatically",
            "zone aware lb failover region should not contain '*' wildcard",
        ],
    );
}

/// The `failover` from/to rules locality and zone-aware settings share (each with its own wording:
/// different regions, region only, no wildcard).
fn failover_regions<'a>(
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
    regions: impl Iterator<Item = (Option<&'a str>, Option<&'a str>)>,
    [same, not_region, wildcard]: [&str; 3],
) {
    for (i, (from, to)) in regions.enumerate() {
        let f_at = at.index(i);
        let (from, to) = (from.unwrap_or_default(), to.unwrap_or_default());
        if from == to {
            report.error(&f_at, same);
        }
        if from.contains('/') || to.contains('/') {
            report.error(&f_at, not_region);
        }
        if from.contains('*') || to.contains('*') {
            report.error(&f_at, wildcard);
        }
    }
}

/// Istio's `validateLocalities`: `region[/zone[/subzone]]`, a single trailing `*` at most, and no
/// locality covered by an earlier one.
fn localities_error(localities: &[&str]) -> Option<String> {
    // region -> zone -> subzones; "*" marks "all of them".
    let mut seen: BTreeMap<&str, BTreeMap<&str, BTreeSet<&str>>> = BTreeMap::new();
    for &locality in localities {
        let overlap = || {
            Some(format!(
                "locality {locality} overlap with previous specified ones"
            ))
        };
        let stars = locality.matches('*').count();
        if stars > 1 || (stars == 1 && !locality.ends_with('*')) {
            return Some(format!(
                "locality {locality} wildcard '*' number can not exceed 1 and must be in the end"
            ));
        }
        if seen.contains_key("*") {
            return overlap();
        }
        let items: Vec<&str> = locality.splitn(3, '/').collect();
        if items.iter().any(|s| s.is_empty()) {
            return Some(format!(
                "locality {locality} must not contain empty region/zone/subzone info"
            ));
        }
        let region = items.first().copied().unwrap_or_default();
        match items.as_slice() {
            [_] => {
                if seen.contains_key(region) {
                    return overlap();
                }
                seen.insert(region, BTreeMap::from([("*", BTreeSet::from(["*"]))]));
            }
            [_, zone] => {
                let zones = seen.entry(region).or_default();
                if zones.contains_key("*") || zones.contains_key(zone) {
                    return overlap();
                }
                zones.insert(zone, BTreeSet::from(["*"]));
            }
            [_, zone, subzone] => {
                let zones = seen.entry(region).or_default();
                if zones.contains_key("*") {
                    return overlap();
                }
                let subzones = zones.entry(zone).or_default();
                if subzones.contains("*") || !subzones.insert(subzone) {
                    return overlap();
                }
            }
            _ => {}
        }
    }
    None
}

/// `agent.ValidateTLS`: client TLS settings of a traffic policy.
fn client_tls(
    namespace: &str,
    tls: &ClientTlsSettings,
    report: &mut Report<'_>,
    at: &FieldPath<'_>,
) {
    let credential = tls.credential_name.as_deref().unwrap_or_default();
    let credential_at = at.key("credentialName");
    if let Some(rest) = credential.strip_prefix("configmap://") {
        let mut parts = rest.split('/');
        let ns = parts.next().unwrap_or_default();
        let name = parts.next();
        let problem = match name {
            None => Some("Expected namespace and name"),
            Some(_) if ns.is_empty() => Some("Expected namespace"),
            Some("") => Some("Expected name"),
            Some(_) => None,
        };
        if let Some(p) = problem {
            report.error(
                &credential_at,
                format!(
                    "invalid configmap:// credentialName: invalid resource name {credential:?}. {p}"
                ),
            );
        } else if ns != namespace || namespace.is_empty() {
            report.error(
                &credential_at,
                format!("invalid configmap:// credentialName: namespace must match the configuration namespace {namespace:?}"),
            );
        }
    }

    let mode = tls.mode.unwrap_or_default();
    let ca = is_set(&tls.ca_certificates);
    let has_sans = !tls.subject_alt_names.is_empty();
    if tls.insecure_skip_verify == Some(true) {
        let skip_at = at.key("insecureSkipVerify");
        if mode == ClientTlsMode::Simple && (ca || !credential.is_empty() || has_sans) {
            report.error(
                &skip_at,
                "cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set true",
            );
        }
        if mode == ClientTlsMode::Mutual && (ca || has_sans) {
            report.error(
                &skip_at,
                "cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set true",
            );
        }
    }

    if matches!(mode, ClientTlsMode::Simple | ClientTlsMode::Mutual) && !credential.is_empty() {
        if is_set(&tls.client_certificate) || ca || is_set(&tls.private_key) || is_set(&tls.ca_crl)
        {
            report.error(
                &credential_at,
                "cannot specify client certificates or CA certificate or CA CRL If credentialName is set",
            );
        }
        // The credential holds the certificates.
        return;
    }

    if mode == ClientTlsMode::Mutual {
        if !is_set(&tls.client_certificate) {
            report.error(
                &at.key("clientCertificate"),
                "client certificate required for mutual tls",
            );
        }
        if !is_set(&tls.private_key) {
            report.error(&at.key("privateKey"), "private key required for mutual tls");
        }
    }
}

/// `validateTunnelSettings`, with the CRD's required `targetHost` and `targetPort`.
fn tunnel_settings(tunnel: &TunnelSettings, report: &mut Report<'_>, at: &FieldPath<'_>) {
    if let Some(p) = tunnel.protocol.as_deref()
        && !matches!(p, "" | "CONNECT" | "POST")
    {
        report.error(
            &at.key("protocol"),
            "tunnel protocol must be \"CONNECT\" or \"POST\"",
        );
    }
    let host_at = at.key("targetHost");
    match tunnel.target_host.as_deref() {
        None => report.error(&host_at, "missing required field \"targetHost\""),
        Some(host) => {
            if let Some(fqdn) = common::fqdn_error(host)
                && !common::is_ip(host)
            {
                report.error(
                    &host_at,
                    format!("tunnel target host must be valid FQDN or IP address: {fqdn}; {host} is not a valid IP"),
                );
            }
        }
    }
    let port_at = at.key("targetPort");
    match tunnel.target_port {
        None => report.error(&port_at, "missing required field \"targetPort\""),
        Some(p) => {
            if let Some(e) = common::port_error(p) {
                report.error(&port_at, format!("tunnel target port is invalid: {e}"));
            }
        }
    }
}

/// The CRD's bounds on `retryBudget`.
fn retry_budget(rb: &RetryBudget, report: &mut Report<'_>, at: &FieldPath<'_>) {
    if let Some(p) = rb.percent
        && !common::percent_in_range(p)
    {
        report.error(
            &at.key("percent"),
            format!("percentage {p} is not in range 0..100"),
        );
    }
    if let Some(d) = &rb.budget_interval
        && let Err(e) = common::parse_duration(d)
    {
        report.error(&at.key("budgetInterval"), e);
    }
}

#[cfg(test)]
mod tests {
    use super::{is_prime, localities_error};
    use crate::diag::Severity;
    use crate::validate::testing::{assert_error, assert_finding, assert_valid, check};

    #[test]
    fn minimal_rule_is_valid() {
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews.default.svc.cluster.local
"#,
        );
        assert!(
            check(
                r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: "*.example.com"
"#
            )
            .is_empty()
        );
    }

    #[test]
    fn host_is_required_and_must_be_a_domain() {
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  subsets:
  - name: v1
"#,
            5,
            "spec.host",
            "missing required field \"host\"",
        );
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: foo.*.com
"#,
            6,
            "spec.host",
            "domain name \"foo.*.com\" invalid (label \"*\" invalid)",
        );
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: ""
"#,
            6,
            "spec.host",
            "empty domain name not allowed",
        );
    }

    #[test]
    fn subset_names() {
        let duplicate = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  subsets:
  - name: v1
  - name: v1
"#;
        assert_error(
            duplicate,
            9,
            "spec.subsets[1].name",
            "duplicate subset names: v1",
        );
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  subsets:
  - labels:
      version: v1
"#,
            8,
            "spec.subsets[0].name",
            "subset name cannot be empty",
        );
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  subsets:
  - name: v1.0
"#,
            8,
            "spec.subsets[0].name",
            "subset name is invalid: v1.0",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  subsets:
  - name: v1
    labels:
      version: v1
  - name: V2
"#,
        );
    }

    #[test]
    fn subset_labels() {
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  subsets:
  - name: v1
    labels:
      version: "v*"
"#,
            10,
            "spec.subsets[0].labels.version",
            "wildcard is not supported in selector: \"version\"",
        );
    }

    #[test]
    fn traffic_policy_must_not_be_empty() {
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy: {}
"#,
            7,
            "spec.trafficPolicy",
            "traffic policy must have at least one field",
        );
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  subsets:
  - name: v1
    trafficPolicy: {}
"#,
            9,
            "spec.subsets[0].trafficPolicy",
            "traffic policy must have at least one field",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    retryBudget:
      percent: 20
"#,
        );
    }

    #[test]
    fn tunnel_and_proxy_protocol_exclusive() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    proxyProtocol:
      version: V2
    tunnel:
      targetHost: example.com
      targetPort: 443
"#;
        assert_error(
            yaml,
            10,
            "spec.trafficPolicy.tunnel",
            "tunnel and proxyProtocol must not be set together",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    proxyProtocol:
      version: V1
"#,
        );
    }

    #[test]
    fn tunnel_settings() {
        let bad = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    tunnel:
      protocol: GET
      targetHost: bad_host
      targetPort: 0
"#;
        assert_error(
            bad,
            9,
            "spec.trafficPolicy.tunnel.protocol",
            "tunnel protocol must be \"CONNECT\" or \"POST\"",
        );
        assert_error(
            bad,
            10,
            "spec.trafficPolicy.tunnel.targetHost",
            "tunnel target host must be valid FQDN or IP address: domain name \"bad_host\" invalid (label \"bad_host\" invalid); bad_host is not a valid IP",
        );
        assert_error(
            bad,
            11,
            "spec.trafficPolicy.tunnel.targetPort",
            "tunnel target port is invalid: port number 0 must be in the range 1..65535",
        );
        let missing = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    tunnel:
      protocol: POST
"#;
        assert_error(
            missing,
            8,
            "spec.trafficPolicy.tunnel.targetHost",
            "missing required field \"targetHost\"",
        );
        assert_error(
            missing,
            8,
            "spec.trafficPolicy.tunnel.targetPort",
            "missing required field \"targetPort\"",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    tunnel:
      protocol: CONNECT
      targetHost: 10.0.0.1
      targetPort: 8080
"#,
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    tunnel:
      targetHost: egress.example.com
      targetPort: 443
"#,
        );
    }

    #[test]
    fn port_level_settings() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    portLevelSettings:
    - loadBalancer:
        simple: RANDOM
    - port:
        number: 80
"#;
        assert_error(
            yaml,
            9,
            "spec.trafficPolicy.portLevelSettings[0].port",
            "portTrafficPolicy must have valid port",
        );
        assert_error(
            yaml,
            11,
            "spec.trafficPolicy.portLevelSettings[1]",
            "port traffic policy must have at least one field",
        );
        let dup = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    portLevelSettings:
    - port:
        number: 80
      loadBalancer:
        simple: RANDOM
    - port:
        number: 80
      loadBalancer:
        simple: LEAST_REQUEST
"#;
        assert_valid(dup);
        assert_finding(
            dup,
            Severity::Warning,
            14,
            "spec.trafficPolicy.portLevelSettings[1].port.number",
            "duplicate port level settings for port 80: only the first one is used",
        );
    }

    #[test]
    fn port_level_settings_limits() {
        let out_of_range = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    portLevelSettings:
    - port:
        number: 70000
      loadBalancer:
        simple: RANDOM
"#;
        assert_valid(out_of_range);
        assert_finding(
            out_of_range,
            Severity::Warning,
            10,
            "spec.trafficPolicy.portLevelSettings[0].port.number",
            "port number 70000 must be in the range 1..65535",
        );
        let head = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    portLevelSettings:
"#;
        let items = |n: u32| {
            (1..=n)
                .map(|i| format!("    - {{port: {{number: {i}}}, tls: {{mode: SIMPLE}}}}\n"))
                .collect::<String>()
        };
        assert_error(
            &format!("{head}{}", items(4097)),
            8,
            "spec.trafficPolicy.portLevelSettings",
            "Too many: 4097: must have at most 4096 items",
        );
        assert_valid(&format!("{head}{}", items(3)));
    }

    #[test]
    fn port_level_settings_are_validated() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    portLevelSettings:
    - port:
        number: 80
      outlierDetection:
        maxEjectionPercent: 101
"#;
        assert_error(
            yaml,
            12,
            "spec.trafficPolicy.portLevelSettings[0].outlierDetection.maxEjectionPercent",
            "percentage 101 is not in range 0..100",
        );
    }

    #[test]
    fn outlier_detection() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    outlierDetection:
      baseEjectionTime: 0.5ms
      consecutiveErrors: 5
      consecutiveLocalOriginFailures: 3
      interval: 1.0001s
      maxEjectionPercent: 150
      minHealthPercent: -1
      outlierDetectionHttpErrorCodes: [503, 99]
"#;
        let od = "spec.trafficPolicy.outlierDetection";
        assert_error(
            yaml,
            9,
            &format!("{od}.baseEjectionTime"),
            "duration must be greater than 1ms",
        );
        assert_finding(
            yaml,
            Severity::Warning,
            10,
            &format!("{od}.consecutiveErrors"),
            "outlier detection consecutive errors is deprecated, use consecutiveGatewayErrors or consecutive5xxErrors instead",
        );
        assert_error(
            yaml,
            11,
            &format!("{od}.consecutiveLocalOriginFailures"),
            "outlier detection consecutive local origin failures is specified, but split external local origin errors is set to false",
        );
        assert_error(
            yaml,
            12,
            &format!("{od}.interval"),
            "only durations to ms precision are supported",
        );
        assert_error(
            yaml,
            13,
            &format!("{od}.maxEjectionPercent"),
            "percentage 150 is not in range 0..100",
        );
        assert_error(
            yaml,
            14,
            &format!("{od}.minHealthPercent"),
            "percentage -1 is not in range 0..100",
        );
        assert_error(
            yaml,
            15,
            &format!("{od}.outlierDetectionHttpErrorCodes[1]"),
            "HTTP status 99 is not in range 100-599",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 7
      consecutiveLocalOriginFailures: 3
      splitExternalLocalOriginErrors: true
      interval: 5m
      baseEjectionTime: 15m
      maxEjectionPercent: 100
      minHealthPercent: 0
"#,
        );
    }

    #[test]
    fn connection_pool_needs_a_field() {
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    connectionPool: {}
"#,
            8,
            "spec.trafficPolicy.connectionPool",
            "connection pool must have at least one field",
        );
    }

    #[test]
    fn connection_pool_http() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    connectionPool:
      http:
        http1MaxPendingRequests: -1
        http2MaxRequests: -2
        maxRequestsPerConnection: -3
        maxRetries: -4
        maxConcurrentStreams: -5
        idleTimeout: 0s
        h2UpgradePolicy: UPGRADE
        useClientProtocol: true
        http2KeepAlive: {}
"#;
        let h = "spec.trafficPolicy.connectionPool.http";
        for (line, field, message) in [
            (
                10,
                "http1MaxPendingRequests",
                "http1 max pending requests must be non-negative",
            ),
            (
                11,
                "http2MaxRequests",
                "http2 max requests must be non-negative",
            ),
            (
                12,
                "maxRequestsPerConnection",
                "max requests per connection must be non-negative",
            ),
            (13, "maxRetries", "max retries must be non-negative"),
            (
                14,
                "maxConcurrentStreams",
                "max concurrent streams must be non-negative",
            ),
            (15, "idleTimeout", "duration must be greater than 1ms"),
            (
                17,
                "useClientProtocol",
                "use client protocol must not be true when H2UpgradePolicy is UPGRADE",
            ),
            (
                18,
                "http2KeepAlive.interval",
                "http2 keepalive interval is required",
            ),
            (
                18,
                "http2KeepAlive.timeout",
                "http2 keepalive timeout is required",
            ),
        ] {
            assert_error(yaml, line, &format!("{h}.{field}"), message);
        }
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    connectionPool:
      http:
        http1MaxPendingRequests: 0
        maxRetries: 3
        idleTimeout: 30s
        h2UpgradePolicy: UPGRADE
        useClientProtocol: false
        http2KeepAlive:
          interval: 10s
          timeout: 2s
"#,
        );
    }

    #[test]
    fn connection_pool_tcp() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: -1
        connectTimeout: 1us
        maxConnectionDuration: 0s
        idleTimeout: 1.5s5us
        tcpKeepalive:
          time: 0s
          interval: 10x
"#;
        let t = "spec.trafficPolicy.connectionPool.tcp";
        for (line, field, message) in [
            (10, "maxConnections", "max connections must be non-negative"),
            (11, "connectTimeout", "duration must be greater than 1ms"),
            (
                12,
                "maxConnectionDuration",
                "duration must be greater than 1ms",
            ),
            (
                13,
                "idleTimeout",
                "only durations to ms precision are supported",
            ),
            (15, "tcpKeepalive.time", "duration must be greater than 1ms"),
            (
                16,
                "tcpKeepalive.interval",
                "invalid duration \"10x\" (use a number and a unit: \"5s\", \"100ms\", \"1m\")",
            ),
        ] {
            assert_error(yaml, line, &format!("{t}.{field}"), message);
        }
        // `0s` switches the idle timeout off.
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 100
        connectTimeout: 30ms
        idleTimeout: 0s
        tcpKeepalive:
          time: 7200s
          interval: 75s
"#,
        );
    }

    #[test]
    fn load_balancer_one_of() {
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    loadBalancer:
      simple: RANDOM
      consistentHash:
        useSourceIp: true
"#,
            10,
            "spec.trafficPolicy.loadBalancer.consistentHash",
            "only one of simple, consistentHash or backendUtilization can be set",
        );
        let lb = "spec.trafficPolicy.loadBalancer.consistentHash";
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpHeaderName: x-user
        useSourceIp: true
"#,
            11,
            &format!("{lb}.useSourceIp"),
            "only one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName can be set",
        );
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    loadBalancer:
      consistentHash:
        ringHash:
          minimumRingSize: 1024
        maglev:
          tableSize: 65537
"#,
            12,
            &format!("{lb}.maglev"),
            "only one of ringHash or maglev can be set",
        );
    }

    #[test]
    fn http_cookie() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpCookie:
          ttl: "10"
          attributes:
          - name: SameSite
            value: Strict
          - value: x
          - name: SameSite
"#;
        let c = "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie";
        assert_error(
            yaml,
            10,
            &format!("{c}.name"),
            "name required for HttpCookie",
        );
        assert_error(
            yaml,
            11,
            &format!("{c}.ttl"),
            "invalid duration \"10\" (use a number and a unit: \"5s\", \"100ms\", \"1m\")",
        );
        assert_error(
            yaml,
            15,
            &format!("{c}.attributes[1].name"),
            "cookie attribute name cannot be empty",
        );
        assert_error(
            yaml,
            16,
            &format!("{c}.attributes[2].name"),
            "duplicate cookie attribute name: SameSite",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpCookie:
          name: user
          ttl: 0s
          attributes:
          - name: SameSite
"#,
        );
    }

    #[test]
    fn minimum_ring_size() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    loadBalancer:
      consistentHash:
        minimumRingSize: 1024
        ringHash:
          minimumRingSize: 1024
"#;
        let at = "spec.trafficPolicy.loadBalancer.consistentHash.minimumRingSize";
        assert_error(
            yaml,
            10,
            at,
            "only one of MinimumRingSize or Maglev/Ringhash can be specified",
        );
        let deprecated = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    loadBalancer:
      consistentHash:
        useSourceIp: true
        minimumRingSize: 1024
"#;
        assert_valid(deprecated);
        assert_finding(
            deprecated,
            Severity::Warning,
            11,
            at,
            "consistent hash MinimumRingSize is deprecated, use ConsistentHashLB's RingHash configuration instead",
        );
    }

    #[test]
    fn maglev_table_size() {
        let at = "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize";
        for (size, message) in [
            ("0", "tableSize must be set for maglev"),
            ("5000011", "tableSize must be less than 5000011 for maglev"),
            ("1000", "tableSize must be a prime number for maglev"),
        ] {
            let yaml = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    loadBalancer:
      consistentHash:
        maglev:
          tableSize: SIZE
"#;
            assert_error(&yaml.replace("SIZE", size), 11, at, message);
        }
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    loadBalancer:
      consistentHash:
        maglev: {}
"#,
            10,
            at,
            "tableSize must be set for maglev",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    loadBalancer:
      consistentHash:
        maglev:
          tableSize: 65537
"#,
        );
    }

    #[test]
    fn primes() {
        let primes: Vec<u64> = (0..30).filter(|n| is_prime(*n)).collect();
        assert_eq!(primes, [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
        assert!(is_prime(5_000_011));
        assert!(!is_prime(65_535));
    }

    #[test]
    fn warmup() {
        let w = "spec.trafficPolicy.loadBalancer.warmup";
        let bad = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    loadBalancer:
      warmup:
        minimumPercent: 150
        aggression: 0
"#;
        assert_error(bad, 9, &format!("{w}.duration"), "duration is required");
        assert_error(
            bad,
            10,
            &format!("{w}.minimumPercent"),
            "minimumPercent value should be less than or equal to 100",
        );
        assert_error(
            bad,
            11,
            &format!("{w}.aggression"),
            "aggression should be greater than 0",
        );
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    loadBalancer:
      warmup:
        duration: 0s
        minimumPercent: -1
"#,
            11,
            &format!("{w}.minimumPercent"),
            "minimumPercent value should be greater than or equal to 0",
        );
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    loadBalancer:
      warmupDurationSecs: 0s
"#,
            9,
            "spec.trafficPolicy.loadBalancer.warmupDurationSecs",
            "duration must be greater than 1ms",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
      warmup:
        duration: 300s
        minimumPercent: 10
        aggression: 1.5
"#,
        );
    }

    #[test]
    fn locality_distribute() {
        let l = "spec.trafficPolicy.loadBalancer.localityLbSetting";
        let both = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    loadBalancer:
      localityLbSetting:
        distribute:
        - from: us-west/zone1/*
          to:
            us-west/zone1/*: 100
        failover:
        - from: us-west
          to: us-east
"#;
        assert_error(
            both,
            9,
            l,
            "can not simultaneously specify 'distribute' and 'failover'",
        );
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    loadBalancer:
      localityLbSetting:
        distribute:
        - from: us-west/zone1/*
          to:
            us-west/zone1/*: 0
            us-west/zone2/*: 100
"#,
            13,
            &format!("{l}.distribute[0].to[\"us-west/zone1/*\"]"),
            "locality weight must be in range [1, 100]",
        );
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    loadBalancer:
      localityLbSetting:
        distribute:
        - from: us-west/zone1/*
          to:
            us-west/zone1/*: 80
            us-west/zone2/*: 10
"#,
            12,
            &format!("{l}.distribute[0].to"),
            "total locality weight 90 != 100",
        );
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    loadBalancer:
      localityLbSetting:
        distribute:
        - from: us-west/*/a
          to:
            us-west: 100
"#,
            10,
            &format!("{l}.distribute"),
            "locality us-west/*/a wildcard '*' number can not exceed 1 and must be in the end",
        );
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    loadBalancer:
      localityLbSetting:
        distribute:
        - from: us-west/zone1/*
          to:
            us-west: 50
            us-west/zone2: 50
"#,
            12,
            &format!("{l}.distribute[0].to"),
            "locality us-west/zone2 overlap with previous specified ones",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    loadBalancer:
      localityLbSetting:
        enabled: true
        distribute:
        - from: us-west/zone1/*
          to:
            us-west/zone1/*: 80
            us-west/zone2/*: 20
        - from: us-west/zone2/*
          to:
            us-west/zone1/*: 20
            us-west/zone2/*: 80
"#,
        );
    }

    #[test]
    fn locality_failover() {
        let l = "spec.trafficPolicy.loadBalancer.localityLbSetting";
        let bad = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 1
    loadBalancer:
      localityLbSetting:
        failover:
        - from: us-east
          to: us-east
        - from: us-east/zone1
          to: us-west
        - from: "*"
          to: us-west
"#;
        assert_error(
            bad,
            13,
            &format!("{l}.failover[0]"),
            "locality lb failover settings must specify different regions",
        );
        assert_error(
            bad,
            15,
            &format!("{l}.failover[1]"),
            "locality lb failover only specify region",
        );
        assert_error(
            bad,
            17,
            &format!("{l}.failover[2]"),
            "locality lb failover region should not contain '*' wildcard",
        );
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    loadBalancer:
      localityLbSetting:
        failover:
        - from: us-east
          to: us-west
        failoverPriority:
        - topology.istio.io/network
        - topology.kubernetes.io/zone
"#,
            15,
            &format!("{l}.failoverPriority[1]"),
            "can not simultaneously set 'failover' and topology label 'topology.kubernetes.io/zone' in 'failover_priority'",
        );
        let no_outlier = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    loadBalancer:
      localityLbSetting:
        failoverPriority:
        - topology.istio.io/network
"#;
        assert_valid(no_outlier);
        assert_finding(
            no_outlier,
            Severity::Warning,
            9,
            l,
            "outlier detection policy must be provided for failover",
        );
    }

    #[test]
    fn locality_and_zone_aware_exclusive() {
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    loadBalancer:
      localityLbSetting:
        enabled: true
      zoneAwareLbSetting:
        enabled: true
"#,
            11,
            "spec.trafficPolicy.loadBalancer.zoneAwareLbSetting",
            "only one of localityLbSetting and zoneAwareLbSetting can be set",
        );
    }

    #[test]
    fn zone_aware() {
        let z = "spec.trafficPolicy.loadBalancer.zoneAwareLbSetting";
        let bad = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 1
    loadBalancer:
      zoneAwareLbSetting:
        failoverPriority:
        - topology.kubernetes.io/region
        failover:
        - from: a
          to: a
        - from: a/b
          to: "c*"
"#;
        assert_error(
            bad,
            13,
            &format!("{z}.failoverPriority[0]"),
            "'failover_priority' for zone aware lb must not use topology label 'topology.kubernetes.io/region'; region- and zone-level routing are handled automatically",
        );
        assert_error(
            bad,
            15,
            &format!("{z}.failover[0]"),
            "zone aware lb failover settings must specify different regions",
        );
        assert_error(
            bad,
            17,
            &format!("{z}.failover[1]"),
            "zone aware lb failover only specifies region; zone and subzone failover are handled automatically",
        );
        assert_error(
            bad,
            17,
            &format!("{z}.failover[1]"),
            "zone aware lb failover region should not contain '*' wildcard",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 1
    loadBalancer:
      zoneAwareLbSetting:
        failover:
        - from: us-east
          to: us-west
"#,
        );
    }

    #[test]
    fn localities() {
        assert_eq!(localities_error(&["a", "b/c", "b/d/e", "b/d/f"]), None);
        assert_eq!(
            localities_error(&["*", "a"]),
            Some("locality a overlap with previous specified ones".into())
        );
        assert_eq!(
            localities_error(&["a/b/c", "a/b/c"]),
            Some("locality a/b/c overlap with previous specified ones".into())
        );
        assert_eq!(
            localities_error(&["a//c"]),
            Some("locality a//c must not contain empty region/zone/subzone info".into())
        );
        assert_eq!(
            localities_error(&[""]),
            Some("locality  must not contain empty region/zone/subzone info".into())
        );
    }

    #[test]
    fn tls_mutual_needs_client_certificates() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    tls:
      mode: MUTUAL
"#;
        assert_error(
            yaml,
            8,
            "spec.trafficPolicy.tls.clientCertificate",
            "client certificate required for mutual tls",
        );
        assert_error(
            yaml,
            8,
            "spec.trafficPolicy.tls.privateKey",
            "private key required for mutual tls",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    tls:
      mode: MUTUAL
      clientCertificate: /etc/certs/cert.pem
      privateKey: /etc/certs/key.pem
      caCertificates: /etc/certs/ca.pem
      sni: r.example.com
"#,
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    tls:
      mode: MUTUAL
      credentialName: client-credential
"#,
        );
    }

    #[test]
    fn tls_credential_name_excludes_files() {
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    tls:
      mode: SIMPLE
      credentialName: cred
      caCertificates: /etc/ca.pem
"#,
            10,
            "spec.trafficPolicy.tls.credentialName",
            "cannot specify client certificates or CA certificate or CA CRL If credentialName is set",
        );
    }

    #[test]
    fn tls_insecure_skip_verify() {
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    tls:
      mode: SIMPLE
      insecureSkipVerify: true
      subjectAltNames: [r.example.com]
"#,
            10,
            "spec.trafficPolicy.tls.insecureSkipVerify",
            "cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set true",
        );
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    tls:
      mode: MUTUAL
      insecureSkipVerify: true
      credentialName: cred
      caCertificates: /ca.pem
"#,
            10,
            "spec.trafficPolicy.tls.insecureSkipVerify",
            "cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set true",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    tls:
      mode: SIMPLE
      insecureSkipVerify: true
"#,
        );
    }

    #[test]
    fn tls_configmap_credential() {
        let at = "spec.trafficPolicy.tls.credentialName";
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    tls:
      mode: SIMPLE
      credentialName: configmap://ca
"#,
            10,
            at,
            "invalid configmap:// credentialName: invalid resource name \"configmap://ca\". Expected namespace and name",
        );
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    tls:
      mode: SIMPLE
      credentialName: configmap://other/ca
"#,
            10,
            at,
            "invalid configmap:// credentialName: namespace must match the configuration namespace \"default\"",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    tls:
      mode: SIMPLE
      credentialName: configmap://default/ca
"#,
        );
    }

    #[test]
    fn retry_budget() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    retryBudget:
      percent: 120
      budgetInterval: soon
"#;
        assert_error(
            yaml,
            9,
            "spec.trafficPolicy.retryBudget.percent",
            "percentage 120 is not in range 0..100",
        );
        assert_error(
            yaml,
            10,
            "spec.trafficPolicy.retryBudget.budgetInterval",
            "invalid duration \"soon\" (use a number and a unit: \"5s\", \"100ms\", \"1m\")",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  trafficPolicy:
    retryBudget:
      percent: 25.5
      minRetryConcurrency: 3
      budgetInterval: 10s
"#,
        );
    }

    #[test]
    fn export_to() {
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  exportTo: [".", "."]
"#,
            7,
            "spec.exportTo[1]",
            "duplicate entries in exportTo for entry .",
        );
        assert_valid(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  exportTo: [".", other]
"#,
        );
    }

    #[test]
    fn export_to_with_workload_selector() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  exportTo: EXPORT
  workloadSelector:
    matchLabels:
      app: a
"#;
        let with = |export: &str| yaml.replace("EXPORT", export);
        assert_error(
            &with("[other]"),
            7,
            "spec.exportTo",
            "destination rule with workload selector cannot have exportTo beyond current namespace",
        );
        assert_error(
            &with("[\".\", other]"),
            7,
            "spec.exportTo",
            "destination rule with workload selector cannot have multiple entries in exportTo",
        );
        assert_valid(&with("[\".\"]"));
        assert_valid(&with("[default]"));
    }

    #[test]
    fn workload_selector_label_count() {
        let head = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  workloadSelector:
    matchLabels:
"#;
        let labels = |n: usize| {
            (0..n)
                .map(|i| format!("      l{i}: v\n"))
                .collect::<String>()
        };
        assert_error(
            &format!("{head}{}", labels(4097)),
            8,
            "spec.workloadSelector.matchLabels",
            "Too many: 4097: must have at most 4096 properties",
        );
        assert_valid(&format!("{head}{}", labels(3)));
    }

    #[test]
    fn workload_selector() {
        assert_error(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  workloadSelector:
    matchLabels:
      app: "*"
"#,
            9,
            "spec.workloadSelector.matchLabels.app",
            "wildcard is not supported in selector: \"app\"",
        );
        let empty = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: r
  workloadSelector: {}
"#;
        assert_valid(empty);
        assert_finding(
            empty,
            Severity::Warning,
            7,
            "spec.workloadSelector.matchLabels",
            "workload selector specified without labels",
        );
    }

    #[test]
    fn never_panics_on_odd_values() {
        // Huge numbers, empty strings and empty lists everywhere: findings, no panic.
        check(
            r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
spec:
  host: ""
  subsets:
  - {}
  trafficPolicy:
    loadBalancer:
      consistentHash:
        maglev:
          tableSize: 18446744073709551615
      localityLbSetting:
        distribute:
        - to:
            "": 4294967295
    portLevelSettings:
    - port: {}
    tunnel:
      targetHost: ""
      targetPort: 4294967295
"#,
        );
    }
}
