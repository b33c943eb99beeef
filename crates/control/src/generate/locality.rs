//! Locality load balancing, as istiod applies it to a proxy's EDS (`localityLbSetting`). Endpoints
//! are grouped by locality (region/zone/subzone, from Kubernetes' topology labels), each group
//! weighted by its endpoints. Then one of:
//!
//! - `distribute`: the first rule whose `from` covers the proxy's locality weighs the groups its
//!   `to` localities cover (a wildcard's weight shared by the groups' own weights, rounded up) and
//!   empties the others;
//! - failover, only with outlier detection (without it Envoy would never move to a lower
//!   priority): `failoverPriority` labels first split each group by how many of the labels, in
//!   order, an endpoint shares with the proxy (`label=value` compares with that value instead);
//!   then, without `failoverPriority` or with `failover` rules as well, each group gets a priority
//!   by nearness to the proxy: same subzone 0, same zone 1, same region 2, elsewhere 3, and regions
//!   other than the `to` of the `failover` rule for the proxy's region 4 (combined with the label
//!   priority as `label × 5 + nearness`). Priorities are renumbered without gaps.
//!
//! `enabled: false` turns it all off. Clusters whose groups are weighted or failover rules apply
//! get Envoy's `locality_weighted_lb_config`, as istiod's.

use std::collections::{BTreeMap, BTreeSet};

use mesh_api::types::destination_rule::{
    LocalityDistribute, LocalityFailover, LocalityLoadBalancerSetting, TrafficPolicy,
};
use xds_api::pb::envoy::config::core::v3::Locality as EnvoyLocality;
use xds_api::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, LbEndpoint, LocalityLbEndpoints,
};
use xds_api::pb::google::protobuf::UInt32Value;

use crate::index::Index;

/// Kubernetes' and Istio's topology labels.
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
pub const SUBZONE_LABEL: &str = "topology.istio.io/subzone";

/// Where a workload or proxy runs; empty parts are unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Locality {
    pub region: String,
    pub zone: String,
    pub subzone: String,
}

impl Locality {
    /// From a workload's (or proxy's) labels.
    pub fn of(labels: &BTreeMap<String, String>) -> Locality {
        let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
        Locality {
            region: get(REGION_LABEL),
            zone: get(ZONE_LABEL),
            subzone: get(SUBZONE_LABEL),
        }
    }

    fn proto(&self) -> Option<EnvoyLocality> {
        (*self != Locality::default()).then(|| EnvoyLocality {
            region: self.region.clone(),
            zone: self.zone.clone(),
            sub_zone: self.subzone.clone(),
        })
    }

    /// istiod's nearness of endpoints in `self` for a proxy in `proxy` (0 nearest to 4).
    fn priority_for(&self, proxy: &Locality, failover: &[LocalityFailover]) -> u32 {
        let region = self.region == proxy.region;
        let zone = region && self.zone == proxy.zone;
        match (region, zone, zone && self.subzone == proxy.subzone) {
            (_, _, true) => 0,
            (_, true, _) => 1,
            (true, _, _) => 2,
            _ => {
                // The first rule for the proxy's region decides: only its `to` region stays at 3.
                let demoted = failover
                    .iter()
                    .find(|f| f.from.as_deref() == Some(proxy.region.as_str()))
                    .is_some_and(|f| f.to.as_deref() != Some(self.region.as_str()));
                if demoted { 4 } else { 3 }
            }
        }
    }

    /// Whether `self` lies in `pattern` (`region[/zone[/subzone]]`, each part possibly `*`; a
    /// missing zone or subzone covers all).
    fn within(&self, pattern: &str) -> bool {
        let mut parts = pattern.splitn(3, '/');
        let region = parts.next().unwrap_or_default();
        let zone = parts.next().unwrap_or_default();
        let subzone = parts.next().unwrap_or_default();
        let part = |rule: &str, mine: &str, optional: bool| {
            rule == "*" || (optional && rule.is_empty()) || rule == mine
        };
        part(region, &self.region, false)
            && part(zone, &self.zone, true)
            && part(subzone, &self.subzone, true)
    }
}

/// What of a proxy decides its endpoints' priorities and weights: its locality and its values of
/// the labels `failoverPriority` rules compare. Proxies that agree on it share clusters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Placement {
    pub locality: Locality,
    pub labels: BTreeMap<String, String>,
}

impl Placement {
    /// `proxy_labels` as far as locality load balancing reads them; `compared` from
    /// [`priority_labels`].
    pub fn of(proxy_labels: &BTreeMap<String, String>, compared: &BTreeSet<String>) -> Placement {
        Placement {
            locality: Locality::of(proxy_labels),
            labels: compared
                .iter()
                .filter_map(|k| Some((k.clone(), proxy_labels.get(k)?.clone())))
                .collect(),
        }
    }
}

/// Every label a `failoverPriority` of a DestinationRule compares with the proxy's.
pub fn priority_labels(index: &Index) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for dr in &index.destination_rules {
        let policies = dr.spec.traffic_policy.iter().chain(
            dr.spec
                .subsets
                .iter()
                .filter_map(|s| s.traffic_policy.as_ref()),
        );
        for policy in policies {
            let lbs = policy.load_balancer.iter().chain(
                policy
                    .port_level_settings
                    .iter()
                    .filter_map(|p| p.load_balancer.as_ref()),
            );
            for lb in lbs {
                for label in lb
                    .locality_lb_setting
                    .iter()
                    .flat_map(|s| &s.failover_priority)
                {
                    out.insert(priority_label(label).0.to_owned());
                }
            }
        }
    }
    out
}

/// A `failoverPriority` entry: the label, and the value to compare with when it says one.
fn priority_label(entry: &str) -> (&str, Option<&str>) {
    match entry.split_once('=') {
        Some((label, value)) => (label, Some(value)),
        None => (entry, None),
    }
}

/// A cluster's load assignment, and whether the cluster weighs localities (Envoy's
/// `locality_weighted_lb_config`).
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub load_assignment: ClusterLoadAssignment,
    pub locality_weighted: bool,
}

/// Endpoints, each with its instance's labels.
type Labelled<'a> = Vec<(&'a BTreeMap<String, String>, LbEndpoint)>;

/// A group of endpoints of one locality.
struct Group<'a> {
    locality: Locality,
    endpoints: Labelled<'a>,
    priority: u32,
    weight: Option<u32>,
}

impl Group<'_> {
    fn proto(self) -> LocalityLbEndpoints {
        LocalityLbEndpoints {
            locality: self.locality.proto(),
            load_balancing_weight: self.weight.map(|value| UInt32Value { value }),
            lb_endpoints: self.endpoints.into_iter().map(|(_, e)| e).collect(),
            priority: self.priority,
            ..Default::default()
        }
    }
}

/// Endpoint weights summed (unset counts 1), as istiod weighs a locality; `None` when empty
/// (Envoy takes no zero weight).
fn weight_of<'a>(endpoints: impl IntoIterator<Item = &'a LbEndpoint>) -> Option<u32> {
    let sum = endpoints.into_iter().fold(0u32, |sum, e| {
        sum.saturating_add(e.load_balancing_weight.as_ref().map_or(1, |w| w.value))
    });
    (sum > 0).then_some(sum)
}

/// The load assignment of `endpoints` (each with its instance's labels), one group per locality
/// in a stable order, with the weights and priorities `policy` asks for a proxy with `proxy_labels`.
pub fn load_assignment(
    name: &str,
    endpoints: Labelled,
    policy: &TrafficPolicy,
    proxy_labels: &BTreeMap<String, String>,
) -> Assignment {
    let mut by_locality: BTreeMap<Locality, Labelled> = BTreeMap::new();
    for (labels, endpoint) in endpoints {
        by_locality
            .entry(Locality::of(labels))
            .or_default()
            .push((labels, endpoint));
    }
    if by_locality.is_empty() {
        by_locality.insert(Locality::default(), Vec::new());
    }
    let mut groups: Vec<Group> = by_locality
        .into_iter()
        .map(|(locality, endpoints)| Group {
            weight: weight_of(endpoints.iter().map(|(_, e)| e)),
            locality,
            endpoints,
            priority: 0,
        })
        .collect();
    // The mesh default (Istio's meshConfig) is locality load balancing on, without rules.
    let default_setting = LocalityLoadBalancerSetting::default();
    let setting = policy
        .load_balancer
        .as_ref()
        .and_then(|lb| lb.locality_lb_setting.as_ref())
        .unwrap_or(&default_setting);
    let proxy = Locality::of(proxy_labels);
    let mut locality_weighted = false;
    if setting.enabled != Some(false) {
        if !setting.distribute.is_empty() {
            distribute(&mut groups, &proxy, &setting.distribute);
            locality_weighted = true;
        } else if policy.outlier_detection.is_some() {
            locality_weighted =
                !setting.failover.is_empty() || !setting.failover_priority.is_empty();
            if setting.failover_priority.is_empty() {
                failover(&mut groups, &proxy, &setting.failover);
            } else {
                groups = by_labels(groups, proxy_labels, &setting.failover_priority);
                if !setting.failover.is_empty() {
                    failover(&mut groups, &proxy, &setting.failover);
                }
            }
        }
    }
    Assignment {
        load_assignment: ClusterLoadAssignment {
            cluster_name: name.to_owned(),
            endpoints: groups.into_iter().map(Group::proto).collect(),
            ..Default::default()
        },
        locality_weighted,
    }
}

/// `distribute`: the first rule from the proxy's locality weighs the groups in its `to`
/// localities, each locality's weight shared by the groups it covers in proportion to their own
/// weights (rounded up); groups no `to` covers lose their endpoints.
fn distribute(groups: &mut [Group], proxy: &Locality, rules: &[LocalityDistribute]) {
    let Some(rule) = rules
        .iter()
        .find(|r| proxy.within(r.from.as_deref().unwrap_or_default()))
    else {
        return;
    };
    let mut unmatched: BTreeSet<usize> = (0..groups.len()).collect();
    for (to, weight) in &rule.to {
        let covered: Vec<usize> = unmatched
            .iter()
            .copied()
            .filter(|&i| groups[i].locality.within(to))
            .collect();
        let total: u64 = covered
            .iter()
            .map(|&i| u64::from(groups[i].weight.unwrap_or(1)))
            .sum();
        for &i in &covered {
            unmatched.remove(&i);
            let own = u64::from(groups[i].weight.unwrap_or(1));
            let share = (own * u64::from(*weight)).div_ceil(total.max(1));
            if share > 0 {
                groups[i].weight = Some(u32::try_from(share).unwrap_or(u32::MAX));
            }
        }
    }
    for i in unmatched {
        groups[i].endpoints.clear();
    }
}

/// Nearness priorities (with `failover` rules), after any label priority: `label × 5 + nearness`.
fn failover(groups: &mut [Group], proxy: &Locality, rules: &[LocalityFailover]) {
    for g in groups.iter_mut() {
        g.priority = g.priority * 5 + g.locality.priority_for(proxy, rules);
    }
    renumber(groups);
}

/// `failoverPriority`: each group split by how far down the list of labels an endpoint first
/// differs from the proxy (all the same: 0; differs at label `j` of `n`: `n - j`).
fn by_labels<'a>(
    groups: Vec<Group<'a>>,
    proxy_labels: &BTreeMap<String, String>,
    priority_labels: &[String],
) -> Vec<Group<'a>> {
    // istiod leaves the groups alone for a proxy without labels.
    if proxy_labels.is_empty() {
        return groups;
    }
    let n = u32::try_from(priority_labels.len()).unwrap_or(u32::MAX);
    let priority_of = |labels: &BTreeMap<String, String>| {
        for (j, entry) in (0u32..).zip(priority_labels) {
            let (label, value) = priority_label(entry);
            let wanted = value
                .or_else(|| proxy_labels.get(label).map(String::as_str))
                .unwrap_or_default();
            if labels.get(label).map_or("", String::as_str) != wanted {
                return n - j;
            }
        }
        0
    };
    let mut out = Vec::new();
    for group in groups {
        let mut split: BTreeMap<u32, Labelled> = BTreeMap::new();
        for (labels, endpoint) in group.endpoints {
            split
                .entry(priority_of(labels))
                .or_default()
                .push((labels, endpoint));
        }
        for (priority, endpoints) in split {
            out.push(Group {
                locality: group.locality.clone(),
                weight: weight_of(endpoints.iter().map(|(_, e)| e)),
                endpoints,
                priority,
            });
        }
    }
    renumber(&mut out);
    out
}

/// Priorities count from 0 without gaps.
fn renumber(groups: &mut [Group]) {
    let mut used: Vec<u32> = groups.iter().map(|g| g.priority).collect();
    used.sort_unstable();
    used.dedup();
    for g in groups {
        g.priority = u32::try_from(used.partition_point(|p| *p < g.priority)).unwrap_or(0);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn at(region: &str, zone: &str, subzone: &str) -> Locality {
        Locality {
            region: region.into(),
            zone: zone.into(),
            subzone: subzone.into(),
        }
    }

    #[test]
    fn priorities_by_nearness_and_failover_rules() {
        let proxy = at("r1", "z1", "s1");
        assert_eq!(at("r1", "z1", "s1").priority_for(&proxy, &[]), 0);
        assert_eq!(at("r1", "z1", "s2").priority_for(&proxy, &[]), 1);
        assert_eq!(at("r1", "z2", "s1").priority_for(&proxy, &[]), 2);
        assert_eq!(at("r2", "z1", "s1").priority_for(&proxy, &[]), 3);
        let rules = [LocalityFailover {
            from: Some("r1".into()),
            to: Some("r3".into()),
        }];
        assert_eq!(at("r3", "z9", "").priority_for(&proxy, &rules), 3);
        assert_eq!(at("r2", "z1", "").priority_for(&proxy, &rules), 4);
        // Unknown localities everywhere: all the same.
        assert_eq!(
            Locality::default().priority_for(&Locality::default(), &[]),
            0
        );
    }

    #[test]
    fn localities_within_patterns() {
        let l = at("r1", "z1", "s1");
        for yes in ["r1", "r1/*", "r1/z1", "r1/z1/*", "r1/z1/s1", "*", "r1/*/s1"] {
            assert!(l.within(yes), "{yes}");
        }
        for no in ["r2", "r2/*", "r1/z2", "r1/z1/s2", ""] {
            assert!(!l.within(no), "{no}");
        }
        assert!(Locality::default().within("*"));
    }
}
