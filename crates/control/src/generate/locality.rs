//! Locality failover, as istiod applies it to a proxy's EDS: endpoints are grouped by locality
//! (region/zone/subzone, from Kubernetes' topology labels), and when the DestinationRule has outlier
//! detection (without it Envoy would never move to a lower priority) each group gets a priority by
//! how near it is to the proxy: same subzone 0, same zone 1, same region 2, elsewhere 3 —
//! `localityLbSetting.failover` pushing regions other than the named `to` region further down —
//! then the priorities are renumbered without gaps. `localityLbSetting.enabled: false` turns it off.

use std::collections::BTreeMap;

use mesh_api::types::destination_rule::{LocalityFailover, TrafficPolicy};
use xds_api::pb::envoy::config::core::v3::Locality as EnvoyLocality;
use xds_api::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, LbEndpoint, LocalityLbEndpoints,
};

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

    /// istiod's priority of endpoints in `self` for a proxy in `proxy`.
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
}

/// The load assignment of `endpoints` (each with its instance's locality), one group per locality
/// in a stable order, with failover priorities for a proxy in `proxy` when `policy` asks for them.
pub fn load_assignment(
    name: &str,
    endpoints: Vec<(Locality, LbEndpoint)>,
    policy: &TrafficPolicy,
    proxy: &Locality,
) -> ClusterLoadAssignment {
    let mut groups: BTreeMap<Locality, Vec<LbEndpoint>> = BTreeMap::new();
    for (locality, endpoint) in endpoints {
        groups.entry(locality).or_default().push(endpoint);
    }
    if groups.is_empty() {
        groups.insert(Locality::default(), Vec::new());
    }
    let setting = policy
        .load_balancer
        .as_ref()
        .and_then(|lb| lb.locality_lb_setting.as_ref());
    let failover = policy.outlier_detection.is_some()
        && setting.is_none_or(|s| s.enabled != Some(false) && s.distribute.is_empty());
    let rules = setting.map_or(&[][..], |s| s.failover.as_slice());
    let mut out: Vec<LocalityLbEndpoints> = groups
        .into_iter()
        .map(|(locality, lb_endpoints)| LocalityLbEndpoints {
            priority: if failover {
                locality.priority_for(proxy, rules)
            } else {
                0
            },
            locality: locality.proto(),
            lb_endpoints,
            ..Default::default()
        })
        .collect();
    // Priorities count from 0 without gaps.
    let mut used: Vec<u32> = out.iter().map(|l| l.priority).collect();
    used.sort_unstable();
    used.dedup();
    for l in &mut out {
        l.priority = u32::try_from(used.partition_point(|p| *p < l.priority)).unwrap_or(0);
    }
    ClusterLoadAssignment {
        cluster_name: name.to_owned(),
        endpoints: out,
        ..Default::default()
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
}
