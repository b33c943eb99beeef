//! ServiceEntry: adds hosts (usually outside the mesh) to the service registry.

use serde::{Deserialize, Serialize};

use super::common::WorkloadSelector;
use super::workload_entry::WorkloadEntrySpec;

/// Configuration affecting service registry. See more details at: https://istio.io/docs/reference/config/networking/service-entry.html
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceEntrySpec {
    /// The virtual IP addresses associated with the service.
    pub addresses: Vec<String>,
    /// One or more endpoints associated with the service.
    pub endpoints: Vec<WorkloadEntrySpec>,
    /// A list of namespaces to which this service is exported.
    pub export_to: Vec<String>,
    /// The hosts associated with the ServiceEntry.
    pub hosts: Vec<String>,
    /// Specify whether the service should be considered external to the mesh or part of the mesh.
    pub location: Option<Location>,
    /// The ports associated with the external service.
    pub ports: Vec<ServicePort>,
    /// Service resolution mode for the hosts.
    pub resolution: Option<Resolution>,
    /// If specified, the proxy will verify that the server certificate's subject alternate name matches one of the specified values.
    pub subject_alt_names: Vec<String>,
    /// Applicable only for MESH_INTERNAL services.
    pub workload_selector: Option<WorkloadSelector>,
}

/// Specify whether the service should be considered external to the mesh or part of the mesh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum Location {
    #[default]
    #[serde(rename = "MESH_EXTERNAL")]
    MeshExternal,
    #[serde(rename = "MESH_INTERNAL")]
    MeshInternal,
}

/// ServicePort
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServicePort {
    /// Label assigned to the port.
    pub name: Option<String>,
    /// A valid non-negative integer port number.
    pub number: Option<u32>,
    /// The protocol exposed on the port.
    pub protocol: Option<String>,
    /// The port number on the endpoint where the traffic will be received.
    pub target_port: Option<u32>,
}

/// Service resolution mode for the hosts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum Resolution {
    #[default]
    #[serde(rename = "NONE")]
    None,
    #[serde(rename = "STATIC")]
    Static,
    #[serde(rename = "DNS")]
    Dns,
    #[serde(rename = "DNS_ROUND_ROBIN")]
    DnsRoundRobin,
    #[serde(rename = "DYNAMIC_DNS")]
    DynamicDns,
}
