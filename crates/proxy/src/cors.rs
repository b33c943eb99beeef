//! Envoy's CORS filter (`envoy.filters.http.cors`) at run time: the policy of the matched route, with
//! the virtual host's for what it leaves unset; preflights answered here, allowed origins echoed on
//! responses.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use proxy_model::filter::{CorsPolicy, HttpFilter};
use proxy_model::listener::HttpConnectionManager;
use proxy_model::route::{Route, VirtualHost};

use crate::upstream::Body;

const ALLOW_ORIGIN: &str = "access-control-allow-origin";
const ALLOW_CREDENTIALS: &str = "access-control-allow-credentials";
const ALLOW_METHODS: &str = "access-control-allow-methods";
const ALLOW_HEADERS: &str = "access-control-allow-headers";
const EXPOSE_HEADERS: &str = "access-control-expose-headers";
const MAX_AGE: &str = "access-control-max-age";
const REQUEST_METHOD: &str = "access-control-request-method";
const REQUEST_HEADERS: &str = "access-control-request-headers";
const REQUEST_PRIVATE_NETWORK: &str = "access-control-request-private-network";
const ALLOW_PRIVATE_NETWORK: &str = "access-control-allow-private-network";

/// The policies that apply to a request, most specific first.
struct Policies<'a>(Vec<&'a CorsPolicy>);

impl<'a> Policies<'a> {
    fn first_str(&self, field: impl Fn(&'a CorsPolicy) -> &'a str) -> &'a str {
        self.0
            .iter()
            .map(|p| field(p))
            .find(|v| !v.is_empty())
            .unwrap_or_default()
    }

    fn first_flag(&self, field: impl Fn(&CorsPolicy) -> Option<bool>) -> Option<bool> {
        self.0.iter().find_map(|p| field(p))
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        self.0
            .iter()
            .map(|p| &p.allow_origins)
            .find(|o| !o.is_empty())
            .is_some_and(|origins| origins.iter().any(|m| m.matches("*") || m.matches(origin)))
    }
}

/// What a CORS request leaves for its response: the allowed origin to echo, and with what.
#[derive(Debug)]
pub struct Latched {
    origin: String,
    allow_credentials: bool,
    expose_headers: String,
}

/// What the request half of the filter decided.
#[derive(Debug)]
pub enum OnRequest {
    /// Not a CORS request (or no policy, or an origin not allowed): the response is left alone.
    Pass,
    /// An allowed origin: its response gets the CORS headers.
    Echo(Latched),
    /// A preflight, answered here.
    Answer(Response<Body>),
}

impl OnRequest {
    fn from(latched: Option<Latched>) -> OnRequest {
        latched.map_or(OnRequest::Pass, OnRequest::Echo)
    }
}

/// The request half of the filter.
pub fn on_request(
    hcm: &HttpConnectionManager,
    vh: &VirtualHost,
    route: &Route,
    method: &str,
    headers: &HeaderMap,
    chance: impl Fn(u32) -> bool,
) -> OnRequest {
    if !hcm
        .http_filters
        .iter()
        .any(|f| matches!(f, HttpFilter::Cors))
    {
        return OnRequest::Pass;
    }
    let policies = Policies(route.cors.iter().chain(&vh.cors).collect());
    let Some(first) = policies.0.first() else {
        return OnRequest::Pass;
    };
    if !chance(first.enabled_per_million) {
        return OnRequest::Pass;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let origin = header("origin");
    if origin.is_empty() {
        return OnRequest::Pass;
    }
    let allowed = policies.origin_allowed(origin);
    let allow_credentials = policies.first_flag(|p| p.allow_credentials) == Some(true);
    let latched = allowed.then(|| Latched {
        origin: origin.to_owned(),
        allow_credentials,
        expose_headers: policies.first_str(|p| &p.expose_headers).to_owned(),
    });
    let request_method = header(REQUEST_METHOD);
    if method != "OPTIONS" || request_method.is_empty() {
        return OnRequest::from(latched);
    }
    // A preflight: answered here unless the origin is not allowed and such preflights go upstream.
    let forward_others = policies
        .first_flag(|p| p.forward_not_matching_preflights)
        .unwrap_or(true);
    if !allowed && forward_others {
        return OnRequest::from(latched);
    }
    let mut resp = crate::http::local_reply(StatusCode::OK, "");
    let out = resp.headers_mut();
    if allowed {
        set(out, ALLOW_ORIGIN, origin);
    }
    if allow_credentials {
        set(out, ALLOW_CREDENTIALS, "true");
    }
    for (name, value, echo) in [
        (
            ALLOW_METHODS,
            policies.first_str(|p| &p.allow_methods),
            request_method,
        ),
        (
            ALLOW_HEADERS,
            policies.first_str(|p| &p.allow_headers),
            header(REQUEST_HEADERS),
        ),
    ] {
        match value {
            "" => {}
            "*" => set(out, name, echo),
            v => set(out, name, v),
        }
    }
    let max_age = policies.first_str(|p| &p.max_age);
    if !max_age.is_empty() {
        set(out, MAX_AGE, max_age);
    }
    if policies.first_flag(|p| p.allow_private_network_access) == Some(true)
        && header(REQUEST_PRIVATE_NETWORK) == "true"
    {
        set(out, ALLOW_PRIVATE_NETWORK, "true");
    }
    // The answer passes the filter's own response half, as in Envoy.
    if let Some(latched) = &latched {
        on_response(latched, out);
    }
    OnRequest::Answer(resp)
}

/// The response half: an allowed origin is echoed, with credentials and exposed headers.
pub fn on_response(latched: &Latched, headers: &mut HeaderMap) {
    set(headers, ALLOW_ORIGIN, &latched.origin);
    if latched.allow_credentials {
        set(headers, ALLOW_CREDENTIALS, "true");
    }
    if !latched.expose_headers.is_empty() {
        set(headers, EXPOSE_HEADERS, &latched.expose_headers);
    }
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}
