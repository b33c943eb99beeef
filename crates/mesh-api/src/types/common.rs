//! Message types shared by several kinds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A `google.protobuf.Duration` as written in YAML (`"5s"`, `"0.5s"`, `"100ms"`, `"1h"`).
/// Kept as text: validation parses it (see `validate::duration`) and reports where it is wrong.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Duration(pub String);

/// `istio.networking.v1alpha3.Percent`: a value in [0.0, 100.0].
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Percent {
    pub value: Option<f64>,
}

/// `networking.v1alpha3.WorkloadSelector` (Sidecar, ServiceEntry): `{labels: {k: v}}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WorkloadSelector {
    pub labels: BTreeMap<String, String>,
}

/// `istio.type.v1beta1.WorkloadSelector` (DestinationRule, security kinds): `{matchLabels: {k: v}}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LabelSelector {
    pub match_labels: BTreeMap<String, String>,
}

/// `istio.type.v1beta1.PolicyTargetReference` (security kinds' `targetRef`/`targetRefs`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PolicyTargetReference {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
}

/// `networking.v1alpha3.PortSelector`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PortSelector {
    pub number: Option<u32>,
}

/// `networking.v1alpha3.Port` (Gateway servers).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Port {
    /// A valid non-negative integer port number.
    pub number: Option<u32>,
    /// The protocol exposed on the port: HTTP|HTTPS|GRPC|GRPC-WEB|HTTP2|MONGO|TCP|TLS.
    pub protocol: Option<String>,
    /// Label assigned to the port.
    pub name: Option<String>,
    /// Deprecated: the port on the workload; use the Service's target port instead.
    pub target_port: Option<u32>,
}
