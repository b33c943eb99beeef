//! WorkloadGroup: a template for WorkloadEntries, with health probes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::workload_entry::WorkloadEntrySpec;

/// Describes a collection of workload instances. See more details at: https://istio.io/docs/reference/config/networking/workload-group.html
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WorkloadGroupSpec {
    /// Metadata that will be used for all corresponding `WorkloadEntries`.
    pub metadata: Option<ObjectMetaTemplate>,
    /// `ReadinessProbe` describes the configuration the user must provide for healthchecking on their workload.
    pub probe: Option<ReadinessProbe>,
    /// Template to be used for the generation of `WorkloadEntry` resources that belong to this `WorkloadGroup`.
    pub template: Option<WorkloadEntrySpec>,
}

/// Metadata that will be used for all corresponding `WorkloadEntries`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ObjectMetaTemplate {
    pub annotations: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// `ReadinessProbe` describes the configuration the user must provide for healthchecking on their workload.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ReadinessProbe {
    /// Health is determined by how the command that is executed exited.
    pub exec: Option<ExecHealthCheckConfig>,
    /// Minimum consecutive failures for the probe to be considered failed after having succeeded.
    pub failure_threshold: Option<i32>,
    /// GRPC call is made and response/error is used to determine health.
    pub grpc: Option<GrpcHealthCheckConfig>,
    /// `httpGet` is performed to a given endpoint and the status/able to connect determines health.
    pub http_get: Option<HttpHealthCheckConfig>,
    /// Number of seconds after the container has started before readiness probes are initiated.
    pub initial_delay_seconds: Option<i32>,
    /// How often (in seconds) to perform the probe.
    pub period_seconds: Option<i32>,
    /// Minimum consecutive successes for the probe to be considered successful after having failed.
    pub success_threshold: Option<i32>,
    /// Health is determined by if the proxy is able to connect.
    pub tcp_socket: Option<TcpHealthCheckConfig>,
    /// Number of seconds after which the probe times out.
    pub timeout_seconds: Option<i32>,
}

/// Health is determined by how the command that is executed exited.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExecHealthCheckConfig {
    /// Command to run.
    pub command: Vec<String>,
}

/// GRPC call is made and response/error is used to determine health.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GrpcHealthCheckConfig {
    /// Port on which the endpoint lives.
    pub port: Option<u32>,
    pub service: Option<String>,
}

/// `httpGet` is performed to a given endpoint and the status/able to connect determines health.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpHealthCheckConfig {
    /// Host name to connect to, defaults to the pod IP.
    pub host: Option<String>,
    /// Headers the proxy will pass on to make the request.
    pub http_headers: Vec<HttpHeader>,
    /// Path to access on the HTTP server.
    pub path: Option<String>,
    /// Port on which the endpoint lives.
    pub port: Option<u32>,
    pub scheme: Option<String>,
}

/// HttpHeader
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpHeader {
    pub name: Option<String>,
    pub value: Option<String>,
}

/// Health is determined by if the proxy is able to connect.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TcpHealthCheckConfig {
    pub host: Option<String>,
    pub port: Option<u32>,
}
