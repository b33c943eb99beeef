//! HTTP filters of a connection manager: which run, and the fault filter's configuration.

use std::time::Duration;

use xds_api::pb::envoy::extensions::filters::common::fault::v3 as common_fault;
use xds_api::pb::envoy::extensions::filters::http::fault::v3 as fault;
use xds_api::pb::google::protobuf::Any;

use crate::error::{At, ModelError};
use crate::route::fraction_per_million;
use crate::{duration, unpack};

pub const ROUTER_FILTER: &str = "envoy.filters.http.router";
pub const FAULT_FILTER: &str = "envoy.filters.http.fault";

/// One HTTP filter of the chain, in order.
#[derive(Debug)]
pub enum HttpFilter {
    Fault(FaultConfig),
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
        } else if is(".fault.v3.HTTPFault") {
            let any =
                typed_config.ok_or_else(|| at.error("the fault filter needs a typed_config"))?;
            Ok(HttpFilter::Fault(FaultConfig::from_any(
                any,
                &at.key("typed_config"),
            )?))
        } else if is_optional || name.starts_with("istio.") || NO_OP_FILTERS.contains(&name) {
            Ok(HttpFilter::Skipped(name.to_owned()))
        } else {
            Err(at.unsupported(format!("the HTTP filter {name:?} ({type_url})")))
        }
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
