//! Sidecar: narrows what a sidecar proxy listens on and can reach.

use serde::{Deserialize, Serialize};

use super::common::WorkloadSelector;
use super::destination_rule::ConnectionPoolSettings;
use super::gateway::ServerTlsSettings;
use super::virtual_service::Destination;

/// Configuration affecting network reachability of a sidecar. See more details at: https://istio.io/docs/reference/config/networking/sidecar.html
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SidecarSpec {
    /// Egress specifies the configuration of the sidecar for processing outbound traffic from the attached workload instance to other services in the mesh.
    pub egress: Vec<IstioEgressListener>,
    /// Settings controlling the volume of connections Envoy will accept from the network.
    pub inbound_connection_pool: Option<ConnectionPoolSettings>,
    /// Ingress specifies the configuration of the sidecar for processing inbound traffic to the attached workload instance.
    pub ingress: Vec<IstioIngressListener>,
    /// Set the default behavior of the sidecar for handling outbound traffic from the application.
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
    /// Criteria used to select the specific set of pods/VMs on which this `Sidecar` configuration should be applied.
    pub workload_selector: Option<WorkloadSelector>,
}

/// IstioEgressListener
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct IstioEgressListener {
    /// The IP(IPv4 or IPv6) or the Unix domain socket to which the listener should be bound to.
    pub bind: Option<String>,
    /// When the bind address is an IP, the captureMode option dictates how traffic to the listener is expected to be captured (or not).
    pub capture_mode: Option<CaptureMode>,
    /// One or more service hosts exposed by the listener in `namespace/dnsName` format.
    pub hosts: Vec<String>,
    /// The port associated with the listener.
    pub port: Option<SidecarPort>,
}

/// When the bind address is an IP, the captureMode option dictates how traffic to the listener is expected to be captured (or not).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum CaptureMode {
    #[default]
    #[serde(rename = "DEFAULT")]
    Default,
    #[serde(rename = "IPTABLES")]
    Iptables,
    #[serde(rename = "NONE")]
    None,
}

/// The port associated with the listener.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SidecarPort {
    /// Label assigned to the port.
    pub name: Option<String>,
    /// A valid non-negative integer port number.
    pub number: Option<u32>,
    /// The protocol exposed on the port.
    pub protocol: Option<String>,
    pub target_port: Option<u32>,
}

/// IstioIngressListener
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct IstioIngressListener {
    /// The IP(IPv4 or IPv6) to which the listener should be bound.
    pub bind: Option<String>,
    /// The captureMode option dictates how traffic to the listener is expected to be captured (or not).
    pub capture_mode: Option<CaptureMode>,
    /// Settings controlling the volume of connections Envoy will accept from the network.
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// The IP endpoint or Unix domain socket to which traffic should be forwarded to.
    pub default_endpoint: Option<String>,
    /// The port associated with the listener.
    pub port: Option<SidecarPort>,
    /// Set of TLS related options that will enable TLS termination on the sidecar for requests originating from outside the mesh.
    pub tls: Option<ServerTlsSettings>,
}

/// Set the default behavior of the sidecar for handling outbound traffic from the application.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OutboundTrafficPolicy {
    pub egress_proxy: Option<Destination>,
    /// Valid Options: REGISTRY_ONLY, ALLOW_ANY
    pub mode: Option<OutboundTrafficPolicyMode>,
}

/// OutboundTrafficPolicyMode
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum OutboundTrafficPolicyMode {
    #[default]
    #[serde(rename = "REGISTRY_ONLY")]
    RegistryOnly,
    #[serde(rename = "ALLOW_ANY")]
    AllowAny,
}
