//! HTTP filters of a connection manager: which run, and the fault and CORS filters' configuration.

use std::time::Duration;

use xds_api::pb::envoy::extensions::filters::common::fault::v3 as common_fault;
use xds_api::pb::envoy::extensions::filters::http::cors::v3 as cors;
use xds_api::pb::envoy::extensions::filters::http::fault::v3 as fault;
use xds_api::pb::google::protobuf::Any;

use crate::error::{At, ModelError};
use crate::route::fraction_per_million;
use crate::{duration, unpack};

pub const ROUTER_FILTER: &str = "envoy.filters.http.router";
pub const FAULT_FILTER: &str = "envoy.filters.http.fault";
pub const CORS_FILTER: &str = "envoy.filters.http.cors";

/// One HTTP filter of the chain, in order.
#[derive(Debug)]
pub enum HttpFilter {
    Fault(FaultConfig),
    /// The local rate limit filter with the listener's token bucket.
    LocalRateLimit(std::sync::Arc<crate::ratelimit::LocalRateLimit>),
    /// The CORS filter: applies the routes' and virtual hosts' CORS policies (it has no config of
    /// its own).
    Cors,
    Router,
    /// A filter that does not change routing here: Istio's telemetry and metadata-exchange
    /// filters, or one marked `is_optional`. Kept by name for the config dump.
    Skipped(String),
}

/// The fault filter: delay and/or abort a share of requests.
#[derive(Debug, Clone, Default)]
pub struct FaultConfig {
    pub delay: Option<FaultDelay>,
    pub abort: Option<FaultAbort>,
    /// Only requests to this cluster (empty: all).
    pub upstream_cluster: String,
    /// Only requests whose headers all match.
    pub headers: Vec<crate::matcher::HeaderMatcher>,
    pub max_active_faults: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct FaultDelay {
    /// `None`: the delay comes from the `x-envoy-fault-delay-request` header.
    pub fixed: Option<Duration>,
    pub per_million: u32,
}

#[derive(Debug, Clone)]
pub struct FaultAbort {
    pub kind: AbortKind,
    pub per_million: u32,
    pub body: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortKind {
    Http(u16),
    Grpc(u32),
    /// From the `x-envoy-fault-abort-request` / `-grpc-request` headers.
    Header,
}

/// Istio's own extension filters: accepted, but they do nothing in Bosun (telemetry is native).
const NO_OP_FILTERS: &[&str] = &[
    "istio.metadata_exchange",
    "istio.alpn",
    "istio.stats",
    "envoy.filters.http.grpc_stats",
    "envoy.filters.http.grpc_web",
];

impl HttpFilter {
    pub fn from_proto(
        name: &str,
        typed_config: Option<&Any>,
        is_optional: bool,
        at: &At,
    ) -> Result<HttpFilter, ModelError> {
        let type_url = typed_config
            .map(|a| a.type_url.as_str())
            .unwrap_or_default();
        let is = |suffix: &str| type_url.ends_with(suffix);
        if is(".router.v3.Router") || (type_url.is_empty() && name == ROUTER_FILTER) {
            Ok(HttpFilter::Router)
        } else if is(".cors.v3.Cors") || (type_url.is_empty() && name == CORS_FILTER) {
            Ok(HttpFilter::Cors)
        } else if is(".fault.v3.HTTPFault") {
            let any =
                typed_config.ok_or_else(|| at.error("the fault filter needs a typed_config"))?;
            Ok(HttpFilter::Fault(FaultConfig::from_any(
                any,
                &at.key("typed_config"),
            )?))
        } else if is(".local_ratelimit.v3.LocalRateLimit") {
            let any = typed_config
                .ok_or_else(|| at.error("the local rate limit filter needs a typed_config"))?;
            Ok(HttpFilter::LocalRateLimit(std::sync::Arc::new(
                crate::ratelimit::LocalRateLimit::from_any(any, &at.key("typed_config"))?,
            )))
        } else if is_optional || name.starts_with("istio.") || NO_OP_FILTERS.contains(&name) {
            Ok(HttpFilter::Skipped(name.to_owned()))
        } else {
            Err(at.unsupported(format!("the HTTP filter {name:?} ({type_url})")))
        }
    }
}

/// A CORS policy (`typed_per_filter_config` for the CORS filter on a route or virtual host). Empty
/// fields fall back to the virtual host's policy, as in Envoy.
#[derive(Debug, Clone, Default)]
pub struct CorsPolicy {
    pub allow_origins: Vec<crate::matcher::StringMatcher>,
    pub allow_methods: String,
    pub allow_headers: String,
    pub expose_headers: String,
    pub max_age: String,
    pub allow_credentials: Option<bool>,
    pub allow_private_network_access: Option<bool>,
    /// Answer preflights from origins not allowed upstream (`None`: Envoy's default, forward).
    pub forward_not_matching_preflights: Option<bool>,
    /// `filter_enabled` as parts per million (absent: always).
    pub enabled_per_million: u32,
}

impl CorsPolicy {
    pub fn from_any(any: &Any, at: &At) -> Result<CorsPolicy, ModelError> {
        let p: cors::CorsPolicy = unpack(any, at)?;
        let allow_origins = p
            .allow_origin_string_match
            .iter()
            .enumerate()
            .map(|(i, m)| {
                crate::matcher::StringMatcher::from_proto(
                    m,
                    &at.key("allow_origin_string_match").index(i),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let per_million =
            |f: &Option<xds_api::pb::envoy::config::core::v3::RuntimeFractionalPercent>| {
                f.as_ref().map_or(1_000_000, |f| {
                    f.default_value.as_ref().map_or(0, fraction_per_million)
                })
            };
        Ok(CorsPolicy {
            allow_origins,
            allow_methods: p.allow_methods.clone(),
            allow_headers: p.allow_headers.clone(),
            expose_headers: p.expose_headers.clone(),
            max_age: p.max_age.clone(),
            allow_credentials: p.allow_credentials.map(|b| b.value),
            allow_private_network_access: p.allow_private_network_access.map(|b| b.value),
            forward_not_matching_preflights: p.forward_not_matching_preflights.map(|b| b.value),
            enabled_per_million: per_million(&p.filter_enabled),
        })
    }
}

impl FaultConfig {
    pub fn from_any(any: &Any, at: &At) -> Result<FaultConfig, ModelError> {
        let p: fault::HttpFault = unpack(any, at)?;
        FaultConfig::from_proto(&p, at)
    }

    pub fn from_proto(p: &fault::HttpFault, at: &At) -> Result<FaultConfig, ModelError> {
        let delay = p
            .delay
            .as_ref()
            .map(|d| {
                use common_fault::fault_delay::FaultDelaySecifier as S;
                let fixed = match &d.fault_delay_secifier {
                    Some(S::FixedDelay(d)) => Some(duration(d)),
                    Some(S::HeaderDelay(_)) => None,
                    None => {
                        return Err(at
                            .key("delay")
                            .error("a fault delay needs fixed_delay or header_delay"));
                    }
                };
                Ok(FaultDelay {
                    fixed,
                    per_million: d
                        .percentage
                        .as_ref()
                        .map_or(1_000_000, fraction_per_million),
                })
            })
            .transpose()?;
        let abort = p
            .abort
            .as_ref()
            .map(|a| {
                use fault::fault_abort::ErrorType as E;
                let kind = match &a.error_type {
                    Some(E::HttpStatus(s)) => AbortKind::Http(
                        u16::try_from(*s)
                            .ok()
                            .filter(|s| (200..600).contains(s))
                            .ok_or_else(|| {
                                at.key("abort")
                                    .key("http_status")
                                    .error(format!("{s} is not an HTTP status in [200, 600)"))
                            })?,
                    ),
                    Some(E::GrpcStatus(s)) => AbortKind::Grpc(*s),
                    Some(E::HeaderAbort(_)) => AbortKind::Header,
                    None => {
                        return Err(at.key("abort").error(
                            "a fault abort needs http_status, grpc_status or header_abort",
                        ));
                    }
                };
                Ok(FaultAbort {
                    kind,
                    per_million: a
                        .percentage
                        .as_ref()
                        .map_or(1_000_000, fraction_per_million),
                    body: a.response_body.clone(),
                })
            })
            .transpose()?;
        if p.response_rate_limit.is_some() {
            return Err(at
                .key("response_rate_limit")
                .unsupported("response_rate_limit"));
        }
        if !p.downstream_nodes.is_empty() {
            return Err(at.key("downstream_nodes").unsupported("downstream_nodes"));
        }
        let headers = p
            .headers
            .iter()
            .enumerate()
            .map(|(i, h)| crate::matcher::HeaderMatcher::from_proto(h, &at.key("headers").index(i)))
            .collect::<Result<_, _>>()?;
        Ok(FaultConfig {
            delay,
            abort,
            upstream_cluster: p.upstream_cluster.clone(),
            headers,
            max_active_faults: p.max_active_faults.as_ref().map(|v| v.value),
        })
    }
}
