//! VirtualService: how requests to a host are matched and routed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::common::{Duration, Percent, PortSelector};

/// Configuration affecting label/content routing, sni routing, etc. See more details at: https://istio.io/docs/reference/config/networking/virtual-service.html
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct VirtualServiceSpec {
    /// A list of namespaces to which this virtual service is exported.
    pub export_to: Vec<String>,
    /// The names of gateways and sidecars that should apply these routes.
    pub gateways: Vec<String>,
    /// The destination hosts to which traffic is being sent.
    pub hosts: Vec<String>,
    /// An ordered list of route rules for HTTP traffic.
    pub http: Vec<HttpRoute>,
    /// An ordered list of route rules for opaque TCP traffic.
    pub tcp: Vec<TcpRoute>,
    /// An ordered list of route rule for non-terminated TLS & HTTPS traffic.
    pub tls: Vec<TlsRoute>,
}

/// HttpRoute
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRoute {
    /// Cross-Origin Resource Sharing policy (CORS).
    pub cors_policy: Option<CorsPolicy>,
    /// Delegate is used to specify the particular VirtualService which can be used to define delegate HTTPRoute.
    pub delegate: Option<Delegate>,
    /// A HTTP rule can either return a direct_response, redirect or forward (default) traffic.
    pub direct_response: Option<HttpDirectResponse>,
    /// Fault injection policy to apply on HTTP traffic at the client side.
    pub fault: Option<HttpFaultInjection>,
    pub headers: Option<Headers>,
    /// Match conditions to be satisfied for the rule to be activated.
    pub r#match: Vec<HttpMatchRequest>,
    /// Mirror HTTP traffic to a another destination in addition to forwarding the requests to the intended destination.
    pub mirror: Option<Destination>,
    #[serde(alias = "mirror_percent")]
    pub mirror_percent: Option<u32>,
    /// Percentage of the traffic to be mirrored by the `mirror` field.
    pub mirror_percentage: Option<Percent>,
    /// Specifies the destinations to mirror HTTP traffic in addition to the original destination.
    pub mirrors: Vec<HttpMirrorPolicy>,
    /// The name assigned to the route for debugging purposes.
    pub name: Option<String>,
    /// A HTTP rule can either return a direct_response, redirect or forward (default) traffic.
    pub redirect: Option<HttpRedirect>,
    /// Retry policy for HTTP requests.
    pub retries: Option<HttpRetry>,
    /// Rewrite HTTP URIs and Authority headers.
    pub rewrite: Option<HttpRewrite>,
    /// A HTTP rule can either return a direct_response, redirect or forward (default) traffic.
    pub route: Vec<HttpRouteDestination>,
    /// Timeout for HTTP requests, default is disabled.
    pub timeout: Option<Duration>,
}

/// Cross-Origin Resource Sharing policy (CORS).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CorsPolicy {
    /// Indicates whether the caller is allowed to send the actual request (not the preflight) using credentials.
    pub allow_credentials: Option<bool>,
    /// List of HTTP headers that can be used when requesting the resource.
    pub allow_headers: Vec<String>,
    /// List of HTTP methods allowed to access the resource.
    pub allow_methods: Vec<String>,
    pub allow_origin: Vec<String>,
    /// String patterns that match allowed origins.
    pub allow_origins: Vec<StringMatch>,
    /// A list of HTTP headers that the browsers are allowed to access.
    pub expose_headers: Vec<String>,
    /// Specifies how long the results of a preflight request can be cached.
    pub max_age: Option<Duration>,
    /// Indicates whether preflight requests not matching the configured allowed origin shouldn't be forwarded to the upstream.
    pub unmatched_preflights: Option<UnmatchedPreflights>,
}

/// StringMatch
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StringMatch {
    pub exact: Option<String>,
    pub prefix: Option<String>,
    /// [RE2 style regex-based match](https://github.com/google/re2/wiki/Syntax).
    pub regex: Option<String>,
}

/// Indicates whether preflight requests not matching the configured allowed origin shouldn't be forwarded to the upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum UnmatchedPreflights {
    #[default]
    #[serde(rename = "UNSPECIFIED")]
    Unspecified,
    #[serde(rename = "FORWARD")]
    Forward,
    #[serde(rename = "IGNORE")]
    Ignore,
}

/// Delegate is used to specify the particular VirtualService which can be used to define delegate HTTPRoute.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Delegate {
    /// Name specifies the name of the delegate VirtualService.
    pub name: Option<String>,
    /// Namespace specifies the namespace where the delegate VirtualService resides.
    pub namespace: Option<String>,
}

/// A HTTP rule can either return a direct_response, redirect or forward (default) traffic.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpDirectResponse {
    /// Specifies the content of the response body.
    pub body: Option<HttpBody>,
    /// Specifies the HTTP response status to be returned.
    pub status: Option<u32>,
}

/// Specifies the content of the response body.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpBody {
    /// response body as base64 encoded bytes.
    pub bytes: Option<String>,
    pub string: Option<String>,
}

/// Fault injection policy to apply on HTTP traffic at the client side.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpFaultInjection {
    /// Abort Http request attempts and return error codes back to downstream service, giving the impression that the upstream service is faulty.
    pub abort: Option<Abort>,
    /// Delay requests before forwarding, emulating various failures such as network issues, overloaded upstream service, etc.
    pub delay: Option<Delay>,
}

/// Abort Http request attempts and return error codes back to downstream service, giving the impression that the upstream service is faulty.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Abort {
    /// GRPC status code to use to abort the request.
    pub grpc_status: Option<String>,
    pub http2_error: Option<String>,
    /// HTTP status code to use to abort the Http request.
    pub http_status: Option<i32>,
    /// Percentage of requests to be aborted with the error code provided.
    pub percentage: Option<Percent>,
}

/// Delay requests before forwarding, emulating various failures such as network issues, overloaded upstream service, etc.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Delay {
    pub exponential_delay: Option<Duration>,
    /// Add a fixed delay before forwarding the request.
    pub fixed_delay: Option<Duration>,
    /// Percentage of requests on which the delay will be injected (0-100).
    pub percent: Option<i32>,
    /// Percentage of requests on which the delay will be injected.
    pub percentage: Option<Percent>,
}

/// Headers
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Headers {
    pub request: Option<HeaderOperations>,
    pub response: Option<HeaderOperations>,
}

/// HeaderOperations
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HeaderOperations {
    pub add: BTreeMap<String, String>,
    pub remove: Vec<String>,
    pub set: BTreeMap<String, String>,
}

/// HttpMatchRequest
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpMatchRequest {
    /// HTTP Authority values are case-sensitive and formatted as follows: - `exact: "value"` for exact string match - `prefix: "value"` for prefix-based match - `regex: "value"` for [RE2 style regex-based match](https://github.com/google/re2/wiki/Syntax).
    pub authority: Option<StringMatch>,
    /// Names of gateways where the rule should be applied.
    pub gateways: Vec<String>,
    /// The header keys must be lowercase and use hyphen as the separator, e.g.
    pub headers: BTreeMap<String, StringMatch>,
    /// Flag to specify whether the URI matching should be case-insensitive.
    pub ignore_uri_case: Option<bool>,
    /// HTTP Method values are case-sensitive and formatted as follows: - `exact: "value"` for exact string match - `prefix: "value"` for prefix-based match - `regex: "value"` for [RE2 style regex-based match](https://github.com/google/re2/wiki/Syntax).
    pub method: Option<StringMatch>,
    /// The name assigned to a match.
    pub name: Option<String>,
    /// Specifies the ports on the host that is being addressed.
    pub port: Option<u32>,
    /// Query parameters for matching.
    pub query_params: BTreeMap<String, StringMatch>,
    /// URI Scheme values are case-sensitive and formatted as follows: - `exact: "value"` for exact string match - `prefix: "value"` for prefix-based match - `regex: "value"` for [RE2 style regex-based match](https://github.com/google/re2/wiki/Syntax).
    pub scheme: Option<StringMatch>,
    /// One or more labels that constrain the applicability of a rule to source (client) workloads with the given labels.
    pub source_labels: BTreeMap<String, String>,
    /// Source namespace constraining the applicability of a rule to workloads in that namespace.
    pub source_namespace: Option<String>,
    /// The human readable prefix to use when emitting statistics for this route.
    pub stat_prefix: Option<String>,
    /// URI to match values are case-sensitive and formatted as follows: - `exact: "value"` for exact string match - `prefix: "value"` for prefix-based match - `regex: "value"` for [RE2 style regex-based match](https://github.com/google/re2/wiki/Syntax).
    pub uri: Option<StringMatch>,
    /// withoutHeader has the same syntax with the header, but has opposite meaning.
    pub without_headers: BTreeMap<String, StringMatch>,
}

/// Mirror HTTP traffic to a another destination in addition to forwarding the requests to the intended destination.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Destination {
    /// The name of a service from the service registry.
    pub host: Option<String>,
    /// Specifies the port on the host that is being addressed.
    pub port: Option<PortSelector>,
    /// The name of a subset within the service.
    pub subset: Option<String>,
}

/// HttpMirrorPolicy
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpMirrorPolicy {
    /// Destination specifies the target of the mirror operation.
    pub destination: Option<Destination>,
    /// Percentage of the traffic to be mirrored by the `destination` field.
    pub percentage: Option<Percent>,
}

/// A HTTP rule can either return a direct_response, redirect or forward (default) traffic.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRedirect {
    /// On a redirect, overwrite the Authority/Host portion of the URL with this value.
    pub authority: Option<String>,
    /// On a redirect, dynamically set the port: * FROM_PROTOCOL_DEFAULT: automatically set to 80 for HTTP and 443 for HTTPS.
    pub derive_port: Option<RedirectPortSelection>,
    /// On a redirect, overwrite the port portion of the URL with this value.
    pub port: Option<u32>,
    /// On a redirect, replace the matched prefix with this value.
    pub prefix_rewrite: Option<String>,
    /// On a redirect, Specifies the HTTP status code to use in the redirect response.
    pub redirect_code: Option<u32>,
    /// On a redirect, overwrite the scheme portion of the URL with this value.
    pub scheme: Option<String>,
    /// On a redirect, overwrite the Path portion of the URL with this value.
    pub uri: Option<String>,
}

/// On a redirect, dynamically set the port: * FROM_PROTOCOL_DEFAULT: automatically set to 80 for HTTP and 443 for HTTPS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum RedirectPortSelection {
    #[default]
    #[serde(rename = "FROM_PROTOCOL_DEFAULT")]
    FromProtocolDefault,
    #[serde(rename = "FROM_REQUEST_PORT")]
    FromRequestPort,
}

/// Retry policy for HTTP requests.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRetry {
    /// Number of retries to be allowed for a given request.
    pub attempts: Option<i32>,
    /// Specifies the minimum duration between retry attempts.
    pub backoff: Option<Duration>,
    /// Timeout per attempt for a given request, including the initial call and any retries.
    pub per_try_timeout: Option<Duration>,
    /// Flag to specify whether the retries should ignore previously tried hosts during retry.
    pub retry_ignore_previous_hosts: Option<bool>,
    /// Specifies the conditions under which retry takes place.
    pub retry_on: Option<String>,
    /// Flag to specify whether the retries should retry to other localities.
    pub retry_remote_localities: Option<bool>,
}

/// Rewrite HTTP URIs and Authority headers.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRewrite {
    /// rewrite the Authority/Host header with this value.
    pub authority: Option<String>,
    /// rewrite the path (or the prefix) portion of the URI with this value.
    pub uri: Option<String>,
    /// rewrite the path portion of the URI with the specified regex.
    pub uri_regex_rewrite: Option<RegexRewrite>,
}

/// rewrite the path portion of the URI with the specified regex.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RegexRewrite {
    /// [RE2 style regex-based match](https://github.com/google/re2/wiki/Syntax).
    pub r#match: Option<String>,
    /// The string that should replace into matching portions of original URI.
    pub rewrite: Option<String>,
}

/// HttpRouteDestination
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRouteDestination {
    /// Destination uniquely identifies the instances of a service to which the request/connection should be forwarded to.
    pub destination: Option<Destination>,
    pub headers: Option<Headers>,
    /// Weight specifies the relative proportion of traffic to be forwarded to the destination.
    pub weight: Option<i32>,
}

/// TcpRoute
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TcpRoute {
    /// Match conditions to be satisfied for the rule to be activated.
    pub r#match: Vec<L4MatchAttributes>,
    /// The destination to which the connection should be forwarded to.
    pub route: Vec<RouteDestination>,
}

/// L4MatchAttributes
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct L4MatchAttributes {
    /// IPv4 or IPv6 ip addresses of destination with optional subnet.
    pub destination_subnets: Vec<String>,
    /// Names of gateways where the rule should be applied.
    pub gateways: Vec<String>,
    /// Specifies the port on the host that is being addressed.
    pub port: Option<u32>,
    /// One or more labels that constrain the applicability of a rule to workloads with the given labels.
    pub source_labels: BTreeMap<String, String>,
    /// Source namespace constraining the applicability of a rule to workloads in that namespace.
    pub source_namespace: Option<String>,
    pub source_subnet: Option<String>,
}

/// RouteDestination
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RouteDestination {
    /// Destination uniquely identifies the instances of a service to which the request/connection should be forwarded to.
    pub destination: Option<Destination>,
    /// Weight specifies the relative proportion of traffic to be forwarded to the destination.
    pub weight: Option<i32>,
}

/// TlsRoute
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TlsRoute {
    /// Match conditions to be satisfied for the rule to be activated.
    pub r#match: Vec<TlsMatchAttributes>,
    /// The destination to which the connection should be forwarded to.
    pub route: Vec<RouteDestination>,
}

/// TlsMatchAttributes
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TlsMatchAttributes {
    /// IPv4 or IPv6 ip addresses of destination with optional subnet.
    pub destination_subnets: Vec<String>,
    /// Names of gateways where the rule should be applied.
    pub gateways: Vec<String>,
    /// Specifies the port on the host that is being addressed.
    pub port: Option<u32>,
    /// SNI (server name indicator) to match on.
    pub sni_hosts: Vec<String>,
    /// One or more labels that constrain the applicability of a rule to workloads with the given labels.
    pub source_labels: BTreeMap<String, String>,
    /// Source namespace constraining the applicability of a rule to workloads in that namespace.
    pub source_namespace: Option<String>,
}
