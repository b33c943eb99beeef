//! Gateway: the ports, protocols, hosts and TLS a gateway workload listens with.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::common::Port;

/// Configuration affecting edge load balancer. See more details at: https://istio.io/docs/reference/config/networking/gateway.html
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GatewaySpec {
    /// One or more labels that indicate a specific set of pods/VMs on which this gateway configuration should be applied.
    pub selector: BTreeMap<String, String>,
    /// A list of server specifications.
    pub servers: Vec<Server>,
}

/// Server
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Server {
    /// The ip or the Unix domain socket to which the listener should be bound to.
    pub bind: Option<String>,
    pub default_endpoint: Option<String>,
    /// One or more hosts exposed by this gateway.
    pub hosts: Vec<String>,
    /// An optional name of the server, when set must be unique across all servers.
    pub name: Option<String>,
    /// The Port on which the proxy should listen for incoming connections.
    pub port: Option<Port>,
    /// Set of TLS related options that govern the server's behavior.
    pub tls: Option<ServerTlsSettings>,
}

/// Set of TLS related options that govern the server's behavior.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServerTlsSettings {
    /// For mutual TLS, the name of the secret or the configmap that holds CA certificates.
    pub ca_cert_credential_name: Option<String>,
    /// REQUIRED if mode is `MUTUAL` or `OPTIONAL_MUTUAL`.
    pub ca_certificates: Option<String>,
    /// OPTIONAL: The path to the file containing the certificate revocation list (CRL) to use in verifying a presented client side certificate.
    pub ca_crl: Option<String>,
    /// Optional: If specified, only support the specified cipher list.
    pub cipher_suites: Vec<String>,
    /// For gateways running on Kubernetes, the name of the secret that holds the TLS certs including the CA certificates.
    pub credential_name: Option<String>,
    /// Same as CredentialName but for multiple certificates.
    pub credential_names: Vec<String>,
    /// Optional: If specified, only support the specified ecdh curves.
    pub ecdh_curves: Vec<String>,
    /// If set to true, the load balancer will send a 301 redirect for all http connections, asking the clients to use HTTPS.
    pub https_redirect: Option<bool>,
    /// Optional: If set to true, the proxy will try to validate the certificate, but even if the validation fails, it will allow the connection through.
    pub insecure_skip_verify: Option<bool>,
    /// Optional: Maximum TLS protocol version.
    pub max_protocol_version: Option<TlsProtocol>,
    /// Optional: Minimum TLS protocol version.
    pub min_protocol_version: Option<TlsProtocol>,
    /// Optional: Indicates whether connections to this port should be secured using TLS.
    pub mode: Option<ServerTlsMode>,
    /// REQUIRED if mode is `SIMPLE` or `MUTUAL`.
    pub private_key: Option<String>,
    /// REQUIRED if mode is `SIMPLE` or `MUTUAL`.
    pub server_certificate: Option<String>,
    /// A list of alternate names to verify the subject identity in the certificate presented by the client.
    pub subject_alt_names: Vec<String>,
    /// Only one of `server_certificate`, `private_key` or `credential_name` or `credential_names` or `tls_certificates` should be specified.
    pub tls_certificates: Vec<TlsCertificate>,
    /// An optional list of hex-encoded SHA-256 hashes of the authorized client certificates.
    pub verify_certificate_hash: Vec<String>,
    /// An optional list of base64-encoded SHA-256 hashes of the SPKIs of authorized client certificates.
    pub verify_certificate_spki: Vec<String>,
}

/// Optional: Maximum TLS protocol version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum TlsProtocol {
    #[default]
    #[serde(rename = "TLS_AUTO")]
    TlsAuto,
    #[serde(rename = "TLSV1_0")]
    Tlsv10,
    #[serde(rename = "TLSV1_1")]
    Tlsv11,
    #[serde(rename = "TLSV1_2")]
    Tlsv12,
    #[serde(rename = "TLSV1_3")]
    Tlsv13,
}

/// Optional: Indicates whether connections to this port should be secured using TLS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum ServerTlsMode {
    #[default]
    #[serde(rename = "PASSTHROUGH")]
    Passthrough,
    #[serde(rename = "SIMPLE")]
    Simple,
    #[serde(rename = "MUTUAL")]
    Mutual,
    #[serde(rename = "AUTO_PASSTHROUGH")]
    AutoPassthrough,
    #[serde(rename = "ISTIO_MUTUAL")]
    IstioMutual,
    #[serde(rename = "OPTIONAL_MUTUAL")]
    OptionalMutual,
}

impl ServerTlsMode {
    /// Its name in Istio's YAML and messages (`ServerTLSSettings_TLSmode.String()`).
    pub fn name(self) -> &'static str {
        match self {
            ServerTlsMode::Passthrough => "PASSTHROUGH",
            ServerTlsMode::Simple => "SIMPLE",
            ServerTlsMode::Mutual => "MUTUAL",
            ServerTlsMode::AutoPassthrough => "AUTO_PASSTHROUGH",
            ServerTlsMode::IstioMutual => "ISTIO_MUTUAL",
            ServerTlsMode::OptionalMutual => "OPTIONAL_MUTUAL",
        }
    }
}

/// TlsCertificate
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TlsCertificate {
    pub ca_certificates: Option<String>,
    /// REQUIRED if mode is `SIMPLE` or `MUTUAL`.
    pub private_key: Option<String>,
    /// REQUIRED if mode is `SIMPLE` or `MUTUAL`.
    pub server_certificate: Option<String>,
}
