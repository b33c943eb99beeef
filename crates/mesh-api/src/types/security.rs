//! security.istio.io: PeerAuthentication, AuthorizationPolicy and RequestAuthentication.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::common::{Duration, LabelSelector, PolicyTargetReference};

/// Peer authentication configuration for workloads. See more details at: https://istio.io/docs/reference/config/security/peer_authentication.html
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PeerAuthenticationSpec {
    /// Mutual TLS settings for workload.
    pub mtls: Option<MutualTls>,
    /// Port specific mutual TLS settings.
    pub port_level_mtls: BTreeMap<String, MutualTls>,
    /// The selector determines the workloads to apply the PeerAuthentication on.
    pub selector: Option<LabelSelector>,
}

/// Mutual TLS settings for workload.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MutualTls {
    /// Defines the mTLS mode used for peer authentication.
    pub mode: Option<MtlsMode>,
}

/// Defines the mTLS mode used for peer authentication.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum MtlsMode {
    #[default]
    #[serde(rename = "UNSET")]
    Unset,
    #[serde(rename = "DISABLE")]
    Disable,
    #[serde(rename = "PERMISSIVE")]
    Permissive,
    #[serde(rename = "STRICT")]
    Strict,
}

/// Configuration for access control on workloads. See more details at: https://istio.io/docs/reference/config/security/authorization-policy.html
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AuthorizationPolicySpec {
    /// Optional.
    pub action: Option<Action>,
    /// Specifies detailed configuration of the CUSTOM action.
    pub provider: Option<ExtensionProvider>,
    /// Optional.
    pub rules: Vec<Rule>,
    /// Optional.
    pub selector: Option<LabelSelector>,
    pub target_ref: Option<PolicyTargetReference>,
    /// Optional.
    pub target_refs: Vec<PolicyTargetReference>,
}

/// Optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum Action {
    #[default]
    #[serde(rename = "ALLOW")]
    Allow,
    #[serde(rename = "DENY")]
    Deny,
    #[serde(rename = "AUDIT")]
    Audit,
    #[serde(rename = "CUSTOM")]
    Custom,
}

/// Specifies detailed configuration of the CUSTOM action.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExtensionProvider {
    /// Specifies the name of the extension provider.
    pub name: Option<String>,
}

/// Rule
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Rule {
    /// Optional.
    pub from: Vec<RuleFrom>,
    /// Optional.
    pub to: Vec<RuleTo>,
    /// Optional.
    pub when: Vec<Condition>,
}

/// RuleFrom
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RuleFrom {
    /// Source specifies the source of a request.
    pub source: Option<Source>,
}

/// Source specifies the source of a request.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Source {
    /// Optional.
    pub ip_blocks: Vec<String>,
    /// Optional.
    pub namespaces: Vec<String>,
    /// Optional.
    pub not_ip_blocks: Vec<String>,
    /// Optional.
    pub not_namespaces: Vec<String>,
    /// Optional.
    pub not_principals: Vec<String>,
    /// Optional.
    pub not_remote_ip_blocks: Vec<String>,
    /// Optional.
    pub not_request_principals: Vec<String>,
    /// Optional.
    pub not_service_accounts: Vec<String>,
    /// Optional.
    pub not_trust_domains: Vec<String>,
    /// Optional.
    pub principals: Vec<String>,
    /// Optional.
    pub remote_ip_blocks: Vec<String>,
    /// Optional.
    pub request_principals: Vec<String>,
    /// Optional.
    pub service_accounts: Vec<String>,
    /// Optional.
    pub trust_domains: Vec<String>,
}

/// RuleTo
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RuleTo {
    /// Operation specifies the operation of a request.
    pub operation: Option<Operation>,
}

/// Operation specifies the operation of a request.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Operation {
    /// Optional.
    pub hosts: Vec<String>,
    /// Optional.
    pub methods: Vec<String>,
    /// Optional.
    pub not_hosts: Vec<String>,
    /// Optional.
    pub not_methods: Vec<String>,
    /// Optional.
    pub not_paths: Vec<String>,
    /// Optional.
    pub not_ports: Vec<String>,
    /// Optional.
    pub paths: Vec<String>,
    /// Optional.
    pub ports: Vec<String>,
}

/// Condition
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Condition {
    /// The name of an Istio attribute.
    pub key: Option<String>,
    /// Optional.
    pub not_values: Vec<String>,
    /// Optional.
    pub values: Vec<String>,
}

/// Request authentication configuration for workloads. See more details at: https://istio.io/docs/reference/config/security/request_authentication.html
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RequestAuthenticationSpec {
    /// Define the list of JWTs that can be validated at the selected workloads' proxy.
    pub jwt_rules: Vec<JwtRule>,
    /// Optional.
    pub selector: Option<LabelSelector>,
    pub target_ref: Option<PolicyTargetReference>,
    /// Optional.
    pub target_refs: Vec<PolicyTargetReference>,
}

/// JwtRule
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JwtRule {
    /// The list of JWT [audiences](https://tools.ietf.org/html/rfc7519#section-4.1.3) that are allowed to access.
    pub audiences: Vec<String>,
    /// If set to true, the original token will be kept for the upstream request.
    pub forward_original_token: Option<bool>,
    /// List of cookie names from which JWT is expected.
    pub from_cookies: Vec<String>,
    /// List of header locations from which JWT is expected.
    pub from_headers: Vec<JwtHeader>,
    /// List of query parameters from which JWT is expected.
    pub from_params: Vec<String>,
    /// Identifies the issuer that issued the JWT.
    pub issuer: Option<String>,
    /// JSON Web Key Set of public keys to validate signature of the JWT.
    pub jwks: Option<String>,
    /// URL of the provider's public key set to validate signature of the JWT.
    #[serde(alias = "jwks_uri")]
    pub jwks_uri: Option<String>,
    /// This field specifies a list of operations to copy the claim to HTTP headers on a successfully verified token.
    pub output_claim_to_headers: Vec<ClaimToHeader>,
    /// This field specifies the header name to output a successfully verified JWT payload to the backend.
    pub output_payload_to_header: Option<String>,
    /// Configures whether the JWT token must be present in the request.
    pub presence: Option<JwtPresence>,
    /// List of JWT claim names that should be treated as space-delimited strings.
    pub space_delimited_claims: Vec<String>,
    /// The maximum amount of time that the resolver, determined by the PILOT_JWT_ENABLE_REMOTE_JWKS environment variable, will spend waiting for the JWKS to be fetched.
    pub timeout: Option<Duration>,
}

/// JwtHeader
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JwtHeader {
    /// The HTTP header name.
    pub name: Option<String>,
    /// The prefix that should be stripped before decoding the token.
    pub prefix: Option<String>,
}

/// ClaimToHeader
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClaimToHeader {
    /// The name of the claim to be copied from.
    pub claim: Option<String>,
    /// The name of the header to be created.
    pub header: Option<String>,
}

/// Configures whether the JWT token must be present in the request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum JwtPresence {
    #[default]
    #[serde(rename = "OPTIONAL")]
    Optional,
    #[serde(rename = "REQUIRED")]
    Required,
}
