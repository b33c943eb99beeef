//! WorkloadEntry: a workload outside Kubernetes (a VM or bare-metal host).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Configuration affecting VMs onboarded into the mesh. See more details at: https://istio.io/docs/reference/config/networking/workload-entry.html
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WorkloadEntrySpec {
    /// Address associated with the network endpoint without the port.
    pub address: Option<String>,
    /// One or more labels associated with the endpoint.
    pub labels: BTreeMap<String, String>,
    /// The locality associated with the endpoint.
    pub locality: Option<String>,
    /// Network enables Istio to group endpoints resident in the same L3 domain/network.
    pub network: Option<String>,
    /// Set of ports associated with the endpoint.
    pub ports: BTreeMap<String, u32>,
    /// The service account associated with the workload if a sidecar is present in the workload.
    pub service_account: Option<String>,
    /// The load balancing weight associated with the endpoint.
    pub weight: Option<u32>,
}
