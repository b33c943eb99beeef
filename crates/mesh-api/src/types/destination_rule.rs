//! DestinationRule: policies applied after routing (subsets, load balancing, connection pools, outlier detection, TLS).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::common::{Duration, LabelSelector, PortSelector};

/// Configuration affecting load balancing, outlier detection, etc. See more details at: https://istio.io/docs/reference/config/networking/destination-rule.html
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DestinationRuleSpec {
    /// A list of namespaces to which this destination rule is exported.
    pub export_to: Vec<String>,
    /// The name of a service from the service registry.
    pub host: Option<String>,
    /// One or more named sets that represent individual versions of a service.
    pub subsets: Vec<Subset>,
    /// Traffic policies to apply (load balancing policy, connection pool sizes, outlier detection).
    pub traffic_policy: Option<TrafficPolicy>,
    /// Criteria used to select the specific set of pods/VMs on which this `DestinationRule` configuration should be applied.
    pub workload_selector: Option<LabelSelector>,
}

/// Subset
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Subset {
    /// Labels apply a filter over the endpoints of a service in the service registry.
    pub labels: BTreeMap<String, String>,
    /// Name of the subset.
    pub name: Option<String>,
    /// Traffic policies that apply to this subset.
    pub traffic_policy: Option<TrafficPolicy>,
}

/// Traffic policies that apply to this subset.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TrafficPolicy {
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Settings controlling the load balancer algorithms.
    pub load_balancer: Option<LoadBalancerSettings>,
    pub outlier_detection: Option<OutlierDetection>,
    /// Traffic policies specific to individual ports.
    pub port_level_settings: Vec<PortTrafficPolicy>,
    /// The upstream PROXY protocol settings.
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Specifies a limit on concurrent retries in relation to the number of active requests.
    pub retry_budget: Option<RetryBudget>,
    /// TLS related settings for connections to the upstream service.
    pub tls: Option<ClientTlsSettings>,
    /// Configuration of tunneling TCP over other transport or application layers for the host configured in the DestinationRule.
    pub tunnel: Option<TunnelSettings>,
}

/// ConnectionPoolSettings
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConnectionPoolSettings {
    /// HTTP connection pool settings.
    pub http: Option<HttpSettings>,
    /// Settings common to both HTTP and TCP upstream connections.
    pub tcp: Option<TcpSettings>,
}

/// HTTP connection pool settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpSettings {
    /// Specify if http1.1 connection should be upgraded to http2 for the associated destination.
    pub h2_upgrade_policy: Option<H2UpgradePolicy>,
    /// Maximum number of requests that will be queued while waiting for a ready connection pool connection.
    pub http1_max_pending_requests: Option<i32>,
    /// Configure HTTP/2 PING frames for upstream connections.
    pub http2_keep_alive: Option<Http2KeepAlive>,
    /// Maximum number of active requests to a destination.
    pub http2_max_requests: Option<i32>,
    /// The idle timeout for upstream connection pool connections.
    pub idle_timeout: Option<Duration>,
    /// The maximum number of concurrent streams allowed for a peer on one HTTP/2 connection.
    pub max_concurrent_streams: Option<i32>,
    /// Maximum number of requests per connection to a backend.
    pub max_requests_per_connection: Option<i32>,
    /// Maximum number of retries that can be outstanding to all hosts in a cluster at a given time.
    pub max_retries: Option<i32>,
    /// If set to true, client protocol will be preserved while initiating connection to backend.
    pub use_client_protocol: Option<bool>,
}

/// Specify if http1.1 connection should be upgraded to http2 for the associated destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum H2UpgradePolicy {
    #[default]
    #[serde(rename = "DEFAULT")]
    Default,
    #[serde(rename = "DO_NOT_UPGRADE")]
    DoNotUpgrade,
    #[serde(rename = "UPGRADE")]
    Upgrade,
}

/// Configure HTTP/2 PING frames for upstream connections.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Http2KeepAlive {
    /// Send HTTP/2 PING frames at this interval.
    pub interval: Option<Duration>,
    /// How long to wait for a response to an HTTP/2 PING frame before closing the connection.
    pub timeout: Option<Duration>,
}

/// Settings common to both HTTP and TCP upstream connections.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TcpSettings {
    /// TCP connection timeout.
    pub connect_timeout: Option<Duration>,
    /// The idle timeout for TCP connections.
    pub idle_timeout: Option<String>,
    /// The maximum duration of a connection.
    pub max_connection_duration: Option<Duration>,
    /// Maximum number of HTTP1 /TCP connections to a destination host.
    pub max_connections: Option<i32>,
    /// If set then set SO_KEEPALIVE on the socket to enable TCP Keepalives.
    pub tcp_keepalive: Option<TcpKeepalive>,
}

/// If set then set SO_KEEPALIVE on the socket to enable TCP Keepalives.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TcpKeepalive {
    /// The time duration between keep-alive probes.
    pub interval: Option<Duration>,
    /// Maximum number of keepalive probes to send without response before deciding the connection is dead.
    pub probes: Option<u32>,
    /// The time duration a connection needs to be idle before keep-alive probes start being sent.
    pub time: Option<Duration>,
}

/// Settings controlling the load balancer algorithms.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LoadBalancerSettings {
    /// Utilization-based load balancing that uses backend-reported ORCA metrics to weight endpoints by their current load.
    pub backend_utilization: Option<BackendUtilizationLbConfig>,
    /// Consistent Hash-based load balancing can be used to provide soft session affinity based on HTTP headers, cookies or other properties.
    pub consistent_hash: Option<ConsistentHashLb>,
    /// Locality load balancer settings.
    pub locality_lb_setting: Option<LocalityLoadBalancerSetting>,
    /// Standard load balancing algorithms that require no tuning.
    pub simple: Option<SimpleLb>,
    /// Represents the warmup configuration of Service.
    pub warmup: Option<WarmupConfiguration>,
    /// Deprecated: use `warmup` instead.
    pub warmup_duration_secs: Option<Duration>,
    /// Zone Aware load balancer settings.
    pub zone_aware_lb_setting: Option<ZoneAwareLbSetting>,
}

/// Utilization-based load balancing that uses backend-reported ORCA metrics to weight endpoints by their current load.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BackendUtilizationLbConfig {
    /// Additional penalty applied to endpoints that return errors, expressed as a percentage of the utilization.
    pub error_utilization_penalty_percent: Option<u32>,
    /// Custom ORCA metric names used to compute utilization.
    pub metric_names_for_computing_utilization: Vec<String>,
    /// If an endpoint stops reporting utilization metrics for this long, its reported weight is discarded and it reverts to the default (equal) weight.
    pub weight_expiration_period: Option<String>,
    /// Duration after an endpoint first reports metrics before its weight is trusted.
    pub weight_stabilization_period: Option<String>,
    /// How often the load balancer recomputes endpoint weights from the latest reported utilization data.
    pub weight_update_period: Option<String>,
}

/// Consistent Hash-based load balancing can be used to provide soft session affinity based on HTTP headers, cookies or other properties.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsistentHashLb {
    /// Hash based on HTTP cookie.
    pub http_cookie: Option<HttpCookie>,
    /// Hash based on a specific HTTP header.
    pub http_header_name: Option<String>,
    /// Hash based on a specific HTTP query parameter.
    pub http_query_parameter_name: Option<String>,
    /// The Maglev load balancer implements consistent hashing to backend hosts.
    pub maglev: Option<MagLev>,
    /// Deprecated.
    pub minimum_ring_size: Option<u64>,
    /// The ring/modulo hash load balancer implements consistent hashing to backend hosts.
    pub ring_hash: Option<RingHash>,
    /// Hash based on the source IP address.
    pub use_source_ip: Option<bool>,
}

/// Hash based on HTTP cookie.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpCookie {
    /// Additional attributes for the cookie.
    pub attributes: Vec<CookieAttribute>,
    /// Name of the cookie.
    pub name: Option<String>,
    /// Path to set for the cookie.
    pub path: Option<String>,
    /// Lifetime of the cookie.
    pub ttl: Option<String>,
}

/// CookieAttribute
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CookieAttribute {
    /// The name of the cookie attribute.
    pub name: Option<String>,
    /// The optional value of the cookie attribute.
    pub value: Option<String>,
}

/// The Maglev load balancer implements consistent hashing to backend hosts.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MagLev {
    /// The table size for Maglev hashing.
    pub table_size: Option<u64>,
}

/// The ring/modulo hash load balancer implements consistent hashing to backend hosts.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RingHash {
    /// The minimum number of virtual nodes to use for the hash ring.
    pub minimum_ring_size: Option<u64>,
}

/// Locality load balancer settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LocalityLoadBalancerSetting {
    /// Optional: only one of distribute, failover or failoverPriority can be set.
    pub distribute: Vec<LocalityDistribute>,
    /// Enable locality load balancing.
    pub enabled: Option<bool>,
    /// Optional: only one of distribute, failover or failoverPriority can be set.
    pub failover: Vec<LocalityFailover>,
    /// failoverPriority is an ordered list of labels used to sort endpoints to do priority based load balancing.
    pub failover_priority: Vec<String>,
}

/// LocalityDistribute
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LocalityDistribute {
    /// Originating locality, '/' separated, e.g.
    pub from: Option<String>,
    /// Map of upstream localities to traffic distribution weights.
    pub to: BTreeMap<String, u32>,
}

/// LocalityFailover
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LocalityFailover {
    /// Originating region.
    pub from: Option<String>,
    /// Destination region the traffic will fail over to when endpoints in the 'from' region becomes unhealthy.
    pub to: Option<String>,
}

/// Standard load balancing algorithms that require no tuning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum SimpleLb {
    #[default]
    #[serde(rename = "UNSPECIFIED")]
    Unspecified,
    #[serde(rename = "LEAST_CONN")]
    LeastConn,
    #[serde(rename = "RANDOM")]
    Random,
    #[serde(rename = "PASSTHROUGH")]
    Passthrough,
    #[serde(rename = "ROUND_ROBIN")]
    RoundRobin,
    #[serde(rename = "LEAST_REQUEST")]
    LeastRequest,
}

/// Represents the warmup configuration of Service.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WarmupConfiguration {
    /// This parameter controls the speed of traffic increase over the warmup duration.
    pub aggression: Option<f64>,
    pub duration: Option<Duration>,
    pub minimum_percent: Option<f64>,
}

/// Zone Aware load balancer settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ZoneAwareLbSetting {
    /// Enable zone aware load balancing.
    pub enabled: Option<bool>,
    /// Optional.
    pub failover: Vec<ZoneAwareFailover>,
    /// failoverPriority is an ordered list of labels used to sort endpoints for priority-based load balancing.
    pub failover_priority: Vec<String>,
    /// Minimum number of hosts in the upstream cluster's local region required for zone-aware load balancing to be enabled.
    pub min_cluster_size: Option<u32>,
}

/// ZoneAwareFailover
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ZoneAwareFailover {
    /// Originating region.
    pub from: Option<String>,
    /// Destination region the traffic will fail over to when endpoints in the 'from' region becomes unhealthy.
    pub to: Option<String>,
}

/// OutlierDetection
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OutlierDetection {
    /// Minimum ejection duration.
    pub base_ejection_time: Option<Duration>,
    /// Number of 5xx errors before a host is ejected from the connection pool.
    pub consecutive5xx_errors: Option<u32>,
    pub consecutive_errors: Option<i32>,
    /// Number of gateway errors before a host is ejected from the connection pool.
    pub consecutive_gateway_errors: Option<u32>,
    /// The number of consecutive locally originated failures before ejection occurs.
    pub consecutive_local_origin_failures: Option<u32>,
    /// Time interval between ejection sweep analysis.
    pub interval: Option<Duration>,
    /// Maximum % of hosts in the load balancing pool for the upstream service that can be ejected.
    pub max_ejection_percent: Option<i32>,
    /// Outlier detection will be enabled as long as the associated load balancing pool has at least `minHealthPercent` hosts in healthy mode.
    pub min_health_percent: Option<i32>,
    /// Specifies the HTTP response status codes that are treated as outlier detection errors.
    pub outlier_detection_http_error_codes: Vec<u32>,
    /// Determines whether to distinguish local origin failures from external errors.
    pub split_external_local_origin_errors: Option<bool>,
}

/// PortTrafficPolicy
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PortTrafficPolicy {
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Settings controlling the load balancer algorithms.
    pub load_balancer: Option<LoadBalancerSettings>,
    pub outlier_detection: Option<OutlierDetection>,
    /// Specifies the number of a port on the destination service on which this policy is being applied.
    pub port: Option<PortSelector>,
    /// TLS related settings for connections to the upstream service.
    pub tls: Option<ClientTlsSettings>,
}

/// TLS related settings for connections to the upstream service.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClientTlsSettings {
    /// OPTIONAL: The path to the file containing certificate authority certificates to use in verifying a presented server certificate.
    pub ca_certificates: Option<String>,
    /// OPTIONAL: The path to the file containing the certificate revocation list (CRL) to use in verifying a presented server certificate.
    pub ca_crl: Option<String>,
    /// REQUIRED if mode is `MUTUAL`.
    pub client_certificate: Option<String>,
    /// The name of the secret that holds the TLS certs for the client including the CA certificates.
    pub credential_name: Option<String>,
    /// `insecureSkipVerify` specifies whether the proxy should skip verifying the CA signature and SAN for the server certificate corresponding to the host.
    pub insecure_skip_verify: Option<bool>,
    /// Indicates whether connections to this port should be secured using TLS.
    pub mode: Option<ClientTlsMode>,
    /// REQUIRED if mode is `MUTUAL`.
    pub private_key: Option<String>,
    /// SNI string to present to the server during TLS handshake.
    pub sni: Option<String>,
    /// A list of alternate names to verify the subject identity in the certificate.
    pub subject_alt_names: Vec<String>,
}

/// Indicates whether connections to this port should be secured using TLS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum ClientTlsMode {
    #[default]
    #[serde(rename = "DISABLE")]
    Disable,
    #[serde(rename = "SIMPLE")]
    Simple,
    #[serde(rename = "MUTUAL")]
    Mutual,
    #[serde(rename = "ISTIO_MUTUAL")]
    IstioMutual,
}

/// The upstream PROXY protocol settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProxyProtocol {
    /// The PROXY protocol version to use.
    pub version: Option<ProxyProtocolVersion>,
}

/// The PROXY protocol version to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum ProxyProtocolVersion {
    #[default]
    #[serde(rename = "V1")]
    V1,
    #[serde(rename = "V2")]
    V2,
}

/// Specifies a limit on concurrent retries in relation to the number of active requests.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RetryBudget {
    /// Specifies the duration in which requests will be considered when calculating the budget for retries.
    pub budget_interval: Option<String>,
    /// Specifies the minimum retry concurrency allowed for the retry budget.
    pub min_retry_concurrency: Option<u32>,
    /// Specifies the limit on concurrent retries as a percentage of the sum of active requests and active pending requests.
    pub percent: Option<f64>,
}

/// Configuration of tunneling TCP over other transport or application layers for the host configured in the DestinationRule.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TunnelSettings {
    /// Specifies which protocol to use for tunneling the downstream connection.
    pub protocol: Option<String>,
    /// Specifies a host to which the downstream connection is tunneled.
    pub target_host: Option<String>,
    /// Specifies a port to which the downstream connection is tunneled.
    pub target_port: Option<u32>,
}
