//! The mesh file: Bosun's stand-in for Kubernetes Services, Pods and EndpointSlices when there is no
//! Kubernetes. It lists services (name, namespace, ports with protocol) and workload instances
//! (labels, address, service account). `bosun analyze --registry` reads it to know which hosts and
//! gateway workloads exist; `bosun control` and `bosun up` read the same format.
//!
//! ```yaml
//! services:
//! - name: reviews
//!   namespace: default          # default: default
//!   ports:
//!   - {number: 9080, name: http, protocol: HTTP}
//! workloads:
//! - name: reviews-v1
//!   service: reviews
//!   labels: {app: reviews, version: v1}
//!   address: 127.0.0.11
//!   serviceAccount: bookinfo-reviews
//!   # How `bosun up` runs the instance (optional; the control plane ignores these):
//!   calls: [ratings:9080/ratings/0]   # the demo app's --call, or
//!   # command: [python3, -m, http.server, "{port}", --bind, "{address}"]
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::de::from_node;
use crate::diag::{Finding, Severity, code};
use crate::path::FieldPath;
use crate::types::Port;
use crate::yaml::{Node, parse_stream};

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Registry {
    pub services: Vec<RegistryService>,
    pub workloads: Vec<RegistryWorkload>,
    /// Istio's mesh-wide `outboundTrafficPolicy` (`mode: REGISTRY_ONLY` or `ALLOW_ANY`, the default); a
    /// Sidecar resource overrides it for its workloads.
    pub outbound_traffic_policy: Option<crate::types::sidecar::OutboundTrafficPolicy>,
    /// Istio's mesh-wide `accessLogFile`: every proxy logs each request and TCP connection there
    /// (`/dev/stdout` for its standard output); unset or empty, no access log.
    pub access_log_file: Option<String>,
    /// Istio's `accessLogEncoding`: `TEXT` (the default) or `JSON`.
    pub access_log_encoding: Option<AccessLogEncoding>,
    /// Istio's `accessLogFormat`: Envoy's format string for `TEXT`, a JSON object of them for
    /// `JSON`; unset, Istio's default format for the encoding.
    pub access_log_format: Option<String>,
}

/// Istio's default text access log format (`EnvoyTextLogFormat`), for `accessLogEncoding: TEXT`.
pub const ISTIO_TEXT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% \
%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% \
%RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" \
%BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \
\"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \
\"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% \
%DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n";

/// Istio's default JSON access log format (`EnvoyJSONLogFormatIstio`): key, operator.
pub const ISTIO_JSON_FORMAT: [(&str, &str); 24] = [
    ("start_time", "%START_TIME%"),
    ("route_name", "%ROUTE_NAME%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
    ("protocol", "%PROTOCOL%"),
    ("response_code", "%RESPONSE_CODE%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("response_code_details", "%RESPONSE_CODE_DETAILS%"),
    (
        "connection_termination_details",
        "%CONNECTION_TERMINATION_DETAILS%",
    ),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    ("duration", "%DURATION%"),
    (
        "upstream_service_time",
        "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    ),
    ("x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"),
    ("user_agent", "%REQ(USER-AGENT)%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("authority", "%REQ(:AUTHORITY)%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER_RAW%"),
    ("upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%"),
    ("downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"),
    ("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    ("requested_server_name", "%REQUESTED_SERVER_NAME%"),
    (
        "upstream_transport_failure_reason",
        "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    ),
];

/// How access log lines are written (Istio's `accessLogEncoding`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AccessLogEncoding {
    #[default]
    Text,
    Json,
}

/// A service, as a Kubernetes Service would declare it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RegistryService {
    pub name: String,
    /// Default `default`.
    pub namespace: Option<String>,
    /// `number`, `name`, `protocol` (HTTP, HTTP2, GRPC, TCP, TLS, HTTPS …), `targetPort`.
    pub ports: Vec<Port>,
    pub labels: BTreeMap<String, String>,
    /// The namespaces that can see the service (`.` its own, `*` all); empty: all. Kubernetes
    /// Services say it with the annotation `networking.istio.io/exportTo`.
    pub export_to: Vec<String>,
    /// The service's virtual IPs (a Kubernetes Service's `clusterIPs`). With traffic capture, each
    /// TCP or TLS port of the service gets a listener of its own on each address, so TCP services
    /// sharing a port number are told apart by the address the client dials; HTTP clients may name
    /// the service by one too (`Host: 10.96.0.12`).
    pub addresses: Vec<String>,
}

/// One workload instance (a pod or VM): the service it belongs to and its labels.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RegistryWorkload {
    pub name: String,
    /// Default `default`.
    pub namespace: Option<String>,
    /// The services this instance serves (by name, in its namespace).
    pub service: Option<String>,
    pub services: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// Whether the instance runs a Bosun/Envoy sidecar (default true). Without one, other proxies send
    /// to its ports directly instead of to its sidecar's inbound listener.
    pub sidecar: Option<bool>,
    /// The instance's IP address.
    pub address: Option<String>,
    pub service_account: Option<String>,
    /// `bosun up` only: the command line that runs this instance instead of the built-in demo app
    /// (`bosun demo-app`). `{address}` and `{port}` in its arguments become the instance's address
    /// and first port, `{dir}` the mesh file's directory, a first element `{bosun}` the running `bosun`
    /// executable; it gets the same environment as the demo app (`HTTP_PROXY`, `BOSUN_LISTEN`, …).
    /// Ignored by the control plane.
    pub command: Vec<String>,
    /// `bosun up` only: what the demo app calls on every request it serves, `SERVICE[:PORT]/PATH`
    /// (its `--call` flags, e.g. `reviews:9080/reviews/0`), through its sidecar.
    pub calls: Vec<String>,
    /// `bosun up` only: the fraction of requests (0 to 1) the demo app answers with a 500
    /// (its `--fail-rate`).
    pub fail_rate: Option<f64>,
    /// `bosun up` only: milliseconds the demo app waits before answering (its `--latency-ms`).
    pub latency_ms: Option<u64>,
}

impl RegistryService {
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }

    /// `name.namespace.svc.cluster.local`.
    pub fn hostname(&self) -> String {
        format!("{}.{}.svc.cluster.local", self.name, self.namespace())
    }
}

impl RegistryWorkload {
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }
}

impl Registry {
    /// Adds the services and workloads another registry knows.
    pub fn extend(&mut self, other: Registry) {
        self.services.extend(other.services);
        self.workloads.extend(other.workloads);
    }

    /// Learns from a Kubernetes object found among the inputs, as `istioctl analyze` does: a `Service`
    /// adds a service with its ports; a `Pod`, or the pod template of a `Deployment`, `StatefulSet` or
    /// `DaemonSet`, adds a workload with its labels. Returns whether the object was one of those.
    pub fn learn_kubernetes_object(&mut self, kind: &str, document: &Node) -> bool {
        let json = document.to_json();
        match kind {
            "Service" => {
                let Ok(svc) = serde_json::from_value::<kube::Service>(json) else {
                    return false;
                };
                let addresses = svc.spec.cluster_addresses();
                self.services.push(RegistryService {
                    name: svc.metadata.name,
                    namespace: svc.metadata.namespace,
                    ports: svc
                        .spec
                        .ports
                        .into_iter()
                        .map(|p| Port {
                            number: Some(p.port),
                            // Kubernetes' `protocol` is the transport (TCP/UDP); Istio takes the
                            // application protocol from `appProtocol` or the port name.
                            protocol: p.app_protocol,
                            name: p.name,
                            target_port: None,
                        })
                        .collect(),
                    labels: svc.metadata.labels,
                    export_to: svc
                        .metadata
                        .annotations
                        .get("networking.istio.io/exportTo")
                        .map(|v| v.split(',').map(|e| e.trim().to_owned()).collect())
                        .unwrap_or_default(),
                    addresses,
                });
                true
            }
            "Pod" | "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => {
                let Ok(obj) = serde_json::from_value::<kube::Workload>(json) else {
                    return false;
                };
                let labels = if kind == "Pod" {
                    obj.metadata.labels
                } else {
                    obj.spec.template.metadata.labels
                };
                self.workloads.push(RegistryWorkload {
                    name: obj.metadata.name,
                    namespace: obj.metadata.namespace,
                    labels,
                    ..RegistryWorkload::default()
                });
                true
            }
            _ => false,
        }
    }
}

/// The few fields of Kubernetes objects that analysis needs.
mod kube {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    pub struct Metadata {
        pub name: String,
        pub namespace: Option<String>,
        pub labels: BTreeMap<String, String>,
        pub annotations: BTreeMap<String, String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    pub struct Service {
        pub metadata: Metadata,
        pub spec: ServiceSpec,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    pub struct ServiceSpec {
        pub ports: Vec<ServicePort>,
        #[serde(rename = "clusterIP")]
        pub cluster_ip: Option<String>,
        #[serde(rename = "clusterIPs")]
        pub cluster_ips: Vec<String>,
    }

    impl ServiceSpec {
        /// The Service's virtual IPs: `clusterIPs`, else `clusterIP`; a headless Service (`None`)
        /// has none.
        pub fn cluster_addresses(&self) -> Vec<String> {
            let ips = if self.cluster_ips.is_empty() {
                self.cluster_ip.iter().cloned().collect()
            } else {
                self.cluster_ips.clone()
            };
            ips.into_iter()
                .filter(|ip| !ip.is_empty() && ip != "None")
                .collect()
        }
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default, rename_all = "camelCase")]
    pub struct ServicePort {
        pub port: u32,
        pub name: Option<String>,
        pub app_protocol: Option<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    pub struct Workload {
        pub metadata: Metadata,
        pub spec: WorkloadSpec,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    pub struct WorkloadSpec {
        pub template: PodTemplate,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    pub struct PodTemplate {
        pub metadata: Metadata,
    }
}

/// Reads a mesh file. Findings (syntax, unknown fields, wrong types) carry positions in it.
pub fn load_registry_str(source: &str) -> Result<Registry, Vec<Finding>> {
    let (docs, yaml_error) = parse_stream(source);
    let to_finding = |message: String, pos| Finding {
        severity: Severity::Error,
        code: code::SCHEMA_VALIDATION_ERROR,
        message,
        field: String::new(),
        pos,
    };
    if let Some(e) = yaml_error {
        return Err(vec![to_finding(e.message, e.pos)]);
    }
    let empty = Node {
        value: crate::yaml::Value::Null,
        pos: Default::default(),
    };
    let doc = docs.first().unwrap_or(&empty);
    let findings = RefCell::new(Vec::new());
    let result = from_node::<Registry>(doc, &FieldPath::ROOT, doc.pos, &findings);
    let mut findings = findings.into_inner();
    if let Ok(registry) = &result {
        findings.extend(address_findings(registry, doc));
    }
    match result {
        Ok(registry) if findings.is_empty() => Ok(registry),
        Ok(_) => Err(findings),
        Err(e) => {
            findings.push(Finding {
                field: e.field.unwrap_or_default(),
                ..to_finding(e.message, e.pos.unwrap_or(doc.pos))
            });
            Err(findings)
        }
    }
}

/// Service addresses that are not IP addresses, each at its place in the file.
fn address_findings(registry: &Registry, doc: &Node) -> Vec<Finding> {
    let mut findings = Vec::new();
    let services = FieldPath::ROOT.key("services");
    for (i, service) in registry.services.iter().enumerate() {
        let service_at = services.index(i);
        let addresses = service_at.key("addresses");
        for (j, address) in service.addresses.iter().enumerate() {
            let Some(message) = crate::validate::common::ip_address_error(address) else {
                continue;
            };
            let at = addresses.index(j);
            findings.push(Finding {
                severity: Severity::Error,
                code: code::SCHEMA_VALIDATION_ERROR,
                message: format!(
                    "{message}: a service address is the virtual IP clients dial (a Kubernetes Service's clusterIP, such as 10.96.0.12)"
                ),
                field: at.to_string(),
                pos: at.locate(doc),
            });
        }
    }
    findings
}

/// Why a mesh file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid mesh file")]
    Invalid {
        path: String,
        findings: Vec<Finding>,
    },
}

pub fn load_registry_file(path: &Path) -> Result<Registry, RegistryError> {
    let source = std::fs::read_to_string(path).map_err(|source| RegistryError::Read {
        path: path.display().to_string(),
        source,
    })?;
    load_registry_str(&source).map_err(|findings| RegistryError::Invalid {
        path: path.display().to_string(),
        findings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_services_and_workloads() {
        let reg = load_registry_str(
            "services:\n- name: reviews\n  ports:\n  - {number: 9080, name: http, protocol: HTTP}\nworkloads:\n- name: r1\n  service: reviews\n  labels: {app: reviews, version: v1}\n",
        )
        .expect("valid");
        assert_eq!(
            reg.services[0].hostname(),
            "reviews.default.svc.cluster.local"
        );
        assert_eq!(reg.services[0].ports[0].number, Some(9080));
        assert_eq!(
            reg.workloads[0].labels.get("version").map(String::as_str),
            Some("v1")
        );
    }

    #[test]
    fn reads_how_bosun_up_runs_a_workload() {
        let reg = load_registry_str(
            "workloads:\n- name: p\n  command: [app, --port, \"{port}\"]\n  calls: [reviews:9080/reviews/0]\n  failRate: 0.5\n  latencyMs: 20\n",
        )
        .expect("valid");
        let w = &reg.workloads[0];
        assert_eq!(w.command, ["app", "--port", "{port}"]);
        assert_eq!(w.calls, ["reviews:9080/reviews/0"]);
        assert_eq!((w.fail_rate, w.latency_ms), (Some(0.5), Some(20)));
    }

    #[test]
    fn typos_are_reported_with_positions() {
        let err = load_registry_str("services:\n- name: a\n  prots: []\n").expect_err("typo");
        assert_eq!(
            err[0].message,
            "unknown field \"prots\" (did you mean \"ports\"?)"
        );
        assert_eq!((err[0].pos.line, err[0].pos.column), (3, 3));
    }

    #[test]
    fn service_addresses_are_read_and_checked() {
        let reg = load_registry_str(
            "services:\n- name: db\n  addresses: [10.96.0.12, \"fd00::12\"]\n  ports: [{number: 5432, name: tcp}]\n",
        )
        .expect("valid");
        assert_eq!(reg.services[0].addresses, ["10.96.0.12", "fd00::12"]);

        let err = load_registry_str(
            "services:\n- name: db\n  addresses:\n  - 10.96.0.12\n  - 10.96.0.300\n",
        )
        .expect_err("not an IP");
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].field, "services[0].addresses[1]");
        assert_eq!((err[0].pos.line, err[0].pos.column), (5, 5));
        assert_eq!(
            err[0].message,
            "10.96.0.300 is not a valid IP: a service address is the virtual IP clients dial (a Kubernetes Service's clusterIP, such as 10.96.0.12)"
        );
    }

    #[test]
    fn a_kubernetes_service_brings_its_cluster_ips() {
        let service = |spec: &str| {
            let (docs, _) = parse_stream(&format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: db}}\nspec: {spec}\n"
            ));
            let mut reg = Registry::default();
            assert!(reg.learn_kubernetes_object("Service", &docs[0]));
            reg.services.remove(0).addresses
        };
        assert_eq!(service("{clusterIP: 10.96.0.12}"), ["10.96.0.12"]);
        assert_eq!(
            service("{clusterIP: 10.96.0.12, clusterIPs: [10.96.0.12, \"fd00::12\"]}"),
            ["10.96.0.12", "fd00::12"]
        );
        assert!(service("{clusterIP: None}").is_empty());
    }
}
