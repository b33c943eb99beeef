//! Route configurations: virtual hosts chosen by domain, routes tried in order, and what a matched route
//! does. Built from Envoy's `RouteConfiguration`; selection follows Envoy's rules.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use regex::Regex;
use xds_api::pb::envoy::config::core::v3 as core;
use xds_api::pb::envoy::config::route::v3 as route;

use crate::error::{At, Errors, ModelError};
use crate::filter::{CorsPolicy, FaultConfig};
use crate::matcher::{HeaderMatcher, QueryMatcher, full_match_regex};
use crate::snapshot::AdsApi;
use crate::{duration, u32_or};

pub mod hash;

/// Envoy's default route timeout.
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug)]
pub struct RouteConfig {
    pub name: String,
    /// Shared, so that a table built again for a VHDS update keeps the hosts that did not change.
    pub virtual_hosts: Vec<Arc<VirtualHost>>,
    exact: HashMap<String, usize>,
    /// `*.example.com` → (".example.com", vhost), longest first.
    suffixes: Vec<(String, usize)>,
    /// `example.*` → ("example.", vhost), longest first.
    prefixes: Vec<(String, usize)>,
    catch_all: Option<usize>,
    pub ignore_port_in_host_matching: bool,
    pub headers: HeaderMutations,
}

#[derive(Debug)]
pub struct VirtualHost {
    pub name: String,
    pub routes: Vec<Route>,
    pub headers: HeaderMutations,
    pub retry_policy: Option<RetryPolicy>,
    /// `include_request_attempt_count`: send `x-envoy-attempt-count` upstream.
    pub include_request_attempt_count: bool,
    /// `typed_per_filter_config` for the CORS filter: what the routes' policies leave unset.
    pub cors: Option<CorsPolicy>,
    /// `typed_per_filter_config` for the local rate limit filter: for the routes without their
    /// own, replaces the listener's config, with one token bucket for the virtual host.
    pub local_ratelimit: Option<std::sync::Arc<crate::ratelimit::LocalRateLimit>>,
}

#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub matcher: RouteMatch,
    pub action: Action,
    pub headers: HeaderMutations,
    /// `typed_per_filter_config` for the fault filter: replaces the listener's fault config.
    pub fault: Option<FaultConfig>,
    /// `typed_per_filter_config` for the CORS filter.
    pub cors: Option<CorsPolicy>,
    /// `typed_per_filter_config` for the local rate limit filter: replaces the listener's config,
    /// with a token bucket of the route's own.
    pub local_ratelimit: Option<std::sync::Arc<crate::ratelimit::LocalRateLimit>>,
}

#[derive(Debug)]
pub enum PathMatch {
    Prefix(String),
    Exact(String),
    Regex(Regex),
    /// Matches the prefix only at a `/` boundary (`/api` matches `/api` and `/api/x`, not `/apix`).
    SeparatedPrefix(String),
    /// `connect_matcher`: matches CONNECT requests, which no path matcher matches (they have no path).
    Connect,
}

#[derive(Debug)]
pub struct RouteMatch {
    pub path: PathMatch,
    pub case_sensitive: bool,
    pub headers: Vec<HeaderMatcher>,
    pub query: Vec<QueryMatcher>,
}

/// What a matched route does.
#[derive(Debug)]
pub enum Action {
    Forward(Box<Forward>),
    Redirect(Redirect),
    DirectResponse { status: u16, body: Option<String> },
}

#[derive(Debug)]
pub enum Target {
    Cluster(String),
    /// Clusters with weights; `total` is their sum (or the configured total).
    Weighted {
        clusters: Vec<(String, u32)>,
        total: u64,
    },
    /// The cluster named by a request header.
    Header(String),
}

#[derive(Debug)]
pub struct Forward {
    pub target: Target,
    /// `None`: no timeout (`0s` in Envoy).
    pub timeout: Option<Duration>,
    pub retry_policy: Option<RetryPolicy>,
    pub prefix_rewrite: Option<String>,
    pub regex_rewrite: Option<(Regex, String)>,
    /// `upgrade_configs` of the route: they override the connection manager's.
    pub upgrades: Vec<RouteUpgrade>,
    pub host_rewrite: Option<String>,
    pub mirrors: Vec<Mirror>,
    pub cluster_not_found_status: u16,
    /// `hash_policy`: the key of consistent-hash clusters (RING_HASH, MAGLEV); others ignore it.
    pub hash_policy: Vec<hash::HashPolicy>,
}

#[derive(Debug)]
pub struct Mirror {
    pub cluster: String,
    /// Fraction of requests mirrored, in millionths.
    pub per_million: u32,
}

/// A route's `upgrade_configs` entry.
#[derive(Debug, Clone)]
pub struct RouteUpgrade {
    pub upgrade_type: String,
    pub enabled: bool,
    /// `connect_config`: the proxy terminates CONNECT and tunnels the payload as raw TCP to the
    /// cluster (without it the CONNECT would be forwarded upstream, which Bosun refuses at load).
    pub terminate_connect: bool,
}

impl Forward {
    /// The route's own setting for `upgrade_type`, if it has one.
    pub fn upgrade(&self, upgrade_type: &str) -> Option<&RouteUpgrade> {
        self.upgrades
            .iter()
            .find(|u| u.upgrade_type.eq_ignore_ascii_case(upgrade_type))
    }
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Envoy's `retry_on` conditions, split (`5xx`, `gateway-error`, `reset`, `connect-failure`, ...).
    pub retry_on: Vec<String>,
    pub num_retries: u32,
    pub per_try_timeout: Option<Duration>,
    pub retriable_status_codes: Vec<u16>,
    /// `envoy.retry_host_predicates.previous_hosts`: a retry avoids hosts already tried.
    pub avoid_previous_hosts: bool,
    pub host_selection_max_attempts: u32,
    pub base_interval: Duration,
    pub max_interval: Duration,
    /// `retriable_headers`: with `retriable-headers`, a response matching any of these is retried.
    pub retriable_headers: Vec<HeaderMatcher>,
}

#[derive(Debug)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<u32>,
    pub path: RedirectPath,
    pub status: u16,
    pub strip_query: bool,
}

#[derive(Debug)]
pub enum RedirectPath {
    Keep,
    Replace(String),
    PrefixRewrite(String),
    RegexRewrite(Regex, String),
}

/// The header changes of one level (route configuration, virtual host or route).
#[derive(Debug, Default)]
pub struct HeaderMutations {
    pub request_add: Vec<HeaderAdd>,
    pub request_remove: Vec<String>,
    pub response_add: Vec<HeaderAdd>,
    pub response_remove: Vec<String>,
}

impl HeaderMutations {
    fn from_proto(
        request_add: &[core::HeaderValueOption],
        request_remove: &[String],
        response_add: &[core::HeaderValueOption],
        response_remove: &[String],
        at: &At,
    ) -> Result<HeaderMutations, ModelError> {
        Ok(HeaderMutations {
            request_add: headers_to_add(request_add, &at.key("request_headers_to_add"))?,
            request_remove: lower(request_remove),
            response_add: headers_to_add(response_add, &at.key("response_headers_to_add"))?,
            response_remove: lower(response_remove),
        })
    }

    /// Applies the request changes of `levels`, most specific first (route, virtual host, route
    /// configuration, as Envoy orders them): every removal, then every addition.
    pub fn apply_request(levels: [&HeaderMutations; 3], headers: &mut HeaderMap) {
        apply(levels.map(|l| (&l.request_remove, &l.request_add)), headers);
    }

    /// [`apply_request`](Self::apply_request) for the response.
    pub fn apply_response(levels: [&HeaderMutations; 3], headers: &mut HeaderMap) {
        apply(
            levels.map(|l| (&l.response_remove, &l.response_add)),
            headers,
        );
    }
}

fn apply(levels: [(&Vec<String>, &Vec<HeaderAdd>); 3], headers: &mut HeaderMap) {
    for (remove, _) in levels {
        for name in remove {
            headers.remove(name.as_str());
        }
    }
    for (_, add) in levels {
        for a in add {
            a.apply(headers);
        }
    }
}

/// A header to add: `append` keeps existing values, otherwise it replaces them.
#[derive(Debug, Clone)]
pub struct HeaderAdd {
    pub name: http::HeaderName,
    pub value: http::HeaderValue,
    pub action: AppendAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendAction {
    AppendIfExistsOrAdd,
    AddIfAbsent,
    OverwriteIfExistsOrAdd,
    OverwriteIfExists,
}

/// `vhds.config_source`, as Envoy checks it: ADS, and then only delta ADS. An API config source of
/// its own is Envoy's too, but Bosun takes xDS only over the bootstrap's ADS.
fn check_vhds_source(vhds: &route::Vhds, at: &At, ads: Option<AdsApi>) -> Result<(), ModelError> {
    use core::config_source::ConfigSourceSpecifier as Source;
    let at = at.key("config_source");
    match vhds
        .config_source
        .as_ref()
        .and_then(|c| c.config_source_specifier.as_ref())
    {
        Some(Source::Ads(_)) => match ads {
            Some(AdsApi::Delta) => Ok(()),
            Some(AdsApi::Sotw) => Err(at
                .key("ads")
                .error("vhds: ADS must use DELTA_GRPC api_type when used as VHDS config source.")),
            None => Err(at
                .key("ads")
                .error("vhds: ADS config source specified but no ADS configured in bootstrap.")),
        },
        Some(Source::ApiConfigSource(api))
            if api.api_type == core::api_config_source::ApiType::DeltaGrpc as i32 =>
        {
            Err(at
                .key("api_config_source")
                .unsupported("VHDS from its own API config source (use `ads: {}` with delta ADS)"))
        }
        Some(Source::ApiConfigSource(_)) => Err(at
            .key("api_config_source")
            .error("vhds: only DELTA_GRPC is supported as an api_type.")),
        Some(_) => {
            Err(at.unsupported("VHDS from a source other than ADS (use `ads: {}` with delta ADS)"))
        }
        None => Err(at.error("vhds needs a config_source (`ads: {}` with delta ADS)")),
    }
}

/// The parts of a request that routing looks at.
#[derive(Debug)]
pub struct RequestView<'a> {
    /// The `:authority` or `Host`, as sent.
    pub authority: &'a str,
    /// The path with its query string.
    pub path: &'a str,
    /// `GET`, `POST`, … (for `:method` header matchers).
    pub method: &'a str,
    pub headers: &'a HeaderMap,
}

/// The virtual hosts of a route configuration as they are being gathered, with the domain index.
#[derive(Default)]
struct VhostTable {
    virtual_hosts: Vec<Arc<VirtualHost>>,
    exact: HashMap<String, usize>,
    suffixes: Vec<(String, usize)>,
    prefixes: Vec<(String, usize)>,
    catch_all: Option<usize>,
}

impl VhostTable {
    /// Adds `vh` after those already there; a domain another one has is an error at `vat`.
    fn add(&mut self, vh: &route::VirtualHost, vat: &At, errors: &mut Errors) {
        self.add_built(vh, None, vat, errors);
    }

    /// [`add`](Self::add), with `vh` already built as `built` if given.
    fn add_built(
        &mut self,
        vh: &route::VirtualHost,
        built: Option<Arc<VirtualHost>>,
        vat: &At,
        errors: &mut Errors,
    ) {
        let index = self.virtual_hosts.len();
        for (j, domain) in vh.domains.iter().enumerate() {
            let domain = domain.to_ascii_lowercase();
            let dat = vat.key("domains").index(j);
            let duplicate = if domain == "*" {
                self.catch_all.replace(index).is_some()
            } else if let Some(rest) = domain.strip_prefix('*') {
                self.suffixes.push((rest.to_owned(), index));
                false
            } else if let Some(rest) = domain.strip_suffix('*') {
                self.prefixes.push((rest.to_owned(), index));
                false
            } else {
                self.exact.insert(domain.clone(), index).is_some()
            };
            if duplicate {
                errors.push(dat.error(format!(
                    "only one virtual host in the route configuration may have domain {domain:?}"
                )));
            }
        }
        match built.map_or_else(|| VirtualHost::from_proto(vh, vat).map(Arc::new), Ok) {
            Ok(v) => self.virtual_hosts.push(v),
            Err(e) => errors.0.extend(e),
        }
    }
}

/// Why a route configuration received over RDS does not build with its VHDS virtual hosts: its own
/// fields' errors, and each VHDS virtual host's (paths relative to that virtual host), by name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RdsErrors {
    pub route_config: Vec<ModelError>,
    pub vhosts: BTreeMap<String, Vec<ModelError>>,
}

impl RdsErrors {
    /// Everything as one list, the VHDS virtual hosts' errors under `vhds[<name>]`.
    pub fn into_flat(self) -> Vec<ModelError> {
        let mut all = self.route_config;
        for (name, errors) in self.vhosts {
            all.extend(errors.into_iter().map(|e| ModelError {
                field: if e.field.is_empty() {
                    format!("vhds[{name}]")
                } else {
                    format!("vhds[{name}].{}", e.field)
                },
                message: e.message,
            }));
        }
        all
    }
}

impl RouteConfig {
    /// A route configuration given inline (bootstrap, or an HTTP connection manager's
    /// `route_config`): `vhds` is refused, as Envoy supports it only for tables received over RDS.
    pub fn from_proto(
        p: &route::RouteConfiguration,
        at: &At,
    ) -> Result<RouteConfig, Vec<ModelError>> {
        let mut errors = Errors::default();
        if p.vhds.is_some() {
            errors.push(at.key("vhds").unsupported(
                "virtual host discovery (vhds) in an inline route configuration (Envoy supports it \
                 only for route configurations received over RDS)",
            ));
        }
        let mut table = VhostTable::default();
        for (i, vh) in p.virtual_hosts.iter().enumerate() {
            table.add(vh, &at.key("virtual_hosts").index(i), &mut errors);
        }
        Self::finish(p, at, table, errors)
    }

    /// A route configuration received over RDS, with the virtual hosts VHDS delivered for it
    /// (`vhds_hosts`, in name order) after its own, when it has `vhds`. `ads` is the bootstrap's ADS
    /// protocol, if it has ADS: Envoy takes VHDS only over delta ADS. `built` gives a VHDS virtual
    /// host already built from the very same message (by the table this one replaces), so that an
    /// update of one host of thousands builds that one.
    pub fn from_rds<'v>(
        p: &route::RouteConfiguration,
        at: &At,
        ads: Option<AdsApi>,
        vhds_hosts: impl IntoIterator<Item = &'v route::VirtualHost>,
        built: impl Fn(&route::VirtualHost) -> Option<Arc<VirtualHost>>,
    ) -> Result<RouteConfig, RdsErrors> {
        let mut errors = Errors::default();
        let mut table = VhostTable::default();
        for (i, vh) in p.virtual_hosts.iter().enumerate() {
            table.add(vh, &at.key("virtual_hosts").index(i), &mut errors);
        }
        let mut vhost_errors = BTreeMap::new();
        if let Some(vhds) = &p.vhds {
            errors.take(check_vhds_source(vhds, &at.key("vhds"), ads));
            for vh in vhds_hosts {
                let mut own = Errors::default();
                table.add_built(vh, built(vh), &At::root(""), &mut own);
                if !own.0.is_empty() {
                    vhost_errors.insert(vh.name.clone(), own.0);
                }
            }
        }
        match Self::finish(p, at, table, errors) {
            Ok(config) if vhost_errors.is_empty() => Ok(config),
            Ok(_) => Err(RdsErrors {
                route_config: Vec::new(),
                vhosts: vhost_errors,
            }),
            Err(route_config) => Err(RdsErrors {
                route_config,
                vhosts: vhost_errors,
            }),
        }
    }

    /// The table-wide fields of `p`, around the virtual hosts gathered.
    fn finish(
        p: &route::RouteConfiguration,
        at: &At,
        table: VhostTable,
        mut errors: Errors,
    ) -> Result<RouteConfig, Vec<ModelError>> {
        let VhostTable {
            virtual_hosts,
            exact,
            mut suffixes,
            mut prefixes,
            catch_all,
        } = table;
        // Longest wildcard first, as Envoy searches.
        suffixes.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        prefixes.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        let headers = errors
            .take(HeaderMutations::from_proto(
                &p.request_headers_to_add,
                &p.request_headers_to_remove,
                &p.response_headers_to_add,
                &p.response_headers_to_remove,
                at,
            ))
            .unwrap_or_default();
        for e in at.refused(&[
            (
                "internal_only_headers",
                !p.internal_only_headers.is_empty(),
                "removing internal-only headers from external requests",
            ),
            (
                "most_specific_header_mutations_wins",
                p.most_specific_header_mutations_wins,
                "the most specific header mutations winning",
            ),
            (
                "cluster_specifier_plugins",
                !p.cluster_specifier_plugins.is_empty(),
                "cluster specifier plugins",
            ),
            (
                "request_mirror_policies",
                !p.request_mirror_policies.is_empty(),
                "mirroring for a whole route configuration (set it on the routes)",
            ),
            (
                "vhost_header",
                !p.vhost_header.is_empty(),
                "choosing the virtual host by a header other than the authority",
            ),
            (
                "ignore_path_parameters_in_path_matching",
                p.ignore_path_parameters_in_path_matching,
                "ignoring path parameters when matching",
            ),
            (
                "route_specifiers",
                !p.route_specifiers.is_empty(),
                "route specifiers",
            ),
        ]) {
            errors.push(e);
        }
        // Envoy reads per-filter config here as the least specific level, below virtual hosts and
        // routes; Bosun reads it at those two, so refusing it here beats ignoring it.
        if !p.typed_per_filter_config.is_empty() {
            errors.push(at.key("typed_per_filter_config").unsupported(
                "per-filter config on the route configuration (set it on the virtual hosts)",
            ));
        }
        let config = RouteConfig {
            name: p.name.clone(),
            virtual_hosts,
            exact,
            suffixes,
            prefixes,
            catch_all,
            ignore_port_in_host_matching: p.ignore_port_in_host_matching,
            headers,
        };
        errors.into_result(config)
    }

    /// Envoy's virtual host search: exact domain, then the longest `*.suffix`, then the longest
    /// `prefix.*`, then `*`.
    pub fn virtual_host(&self, authority: &str) -> Option<&VirtualHost> {
        let mut host = authority.to_ascii_lowercase();
        if self.ignore_port_in_host_matching
            && let Some((h, port)) = host.rsplit_once(':')
            && port.bytes().all(|b| b.is_ascii_digit())
            && !h.ends_with(']')
        {
            host = h.to_owned();
        }
        let index = self
            .exact
            .get(&host)
            .copied()
            .or_else(|| {
                self.suffixes
                    .iter()
                    .find(|(s, _)| host.len() > s.len() && host.ends_with(s.as_str()))
                    .map(|(_, i)| *i)
            })
            .or_else(|| {
                self.prefixes
                    .iter()
                    .find(|(p, _)| host.len() > p.len() && host.starts_with(p.as_str()))
                    .map(|(_, i)| *i)
            })
            .or(self.catch_all)?;
        self.virtual_hosts.get(index).map(|v| &**v)
    }

    /// The first route of the request's virtual host that matches it.
    pub fn select(&self, request: &RequestView<'_>) -> Option<(&VirtualHost, &Route)> {
        let vh = self.virtual_host(request.authority)?;
        let route = vh.routes.iter().find(|r| r.matcher.matches(request))?;
        Some((vh, route))
    }
}

fn lower(names: &[String]) -> Vec<String> {
    names.iter().map(|n| n.to_ascii_lowercase()).collect()
}

impl VirtualHost {
    fn from_proto(p: &route::VirtualHost, at: &At) -> Result<VirtualHost, Vec<ModelError>> {
        let mut errors = Errors::default();
        if p.require_tls != 0 {
            errors.push(at.key("require_tls").unsupported("require_tls"));
        }
        // Accepted without effect: `virtual_clusters` (stats), `rate_limits` (only the global rate
        // limit filter, which is refused, reads them), the buffer limits (bosun buffers differently).
        for e in at.refused(&[
            (
                "matcher",
                p.matcher.is_some(),
                "a match tree in place of routes",
            ),
            ("hedge_policy", p.hedge_policy.is_some(), "request hedging"),
            (
                "include_attempt_count_in_response",
                p.include_attempt_count_in_response,
                "the attempt count in responses",
            ),
            (
                "include_is_timeout_retry_header",
                p.include_is_timeout_retry_header,
                "the x-envoy-is-timeout-retry header",
            ),
            (
                "retry_policy_typed_config",
                p.retry_policy_typed_config.is_some(),
                "an extension retry policy",
            ),
            (
                "request_mirror_policies",
                !p.request_mirror_policies.is_empty(),
                "mirroring for a whole virtual host (set it on the routes)",
            ),
            (
                "route_specifiers",
                !p.route_specifiers.is_empty(),
                "route specifiers",
            ),
        ]) {
            errors.push(e);
        }
        let mut routes = Vec::new();
        for (i, r) in p.routes.iter().enumerate() {
            match Route::from_proto(r, &at.key("routes").index(i)) {
                Ok(r) => routes.push(r),
                Err(e) => errors.0.extend(e),
            }
        }
        let retry_policy = p
            .retry_policy
            .as_ref()
            .and_then(|r| errors.take(RetryPolicy::from_proto(r, &at.key("retry_policy"))));
        let vh = VirtualHost {
            name: p.name.clone(),
            routes,
            headers: errors
                .take(HeaderMutations::from_proto(
                    &p.request_headers_to_add,
                    &p.request_headers_to_remove,
                    &p.response_headers_to_add,
                    &p.response_headers_to_remove,
                    at,
                ))
                .unwrap_or_default(),
            retry_policy,
            include_request_attempt_count: p.include_request_attempt_count,
            cors: cors_policy(&p.typed_per_filter_config, at, &mut errors),
            local_ratelimit: local_ratelimit(&p.typed_per_filter_config, at, &mut errors),
        };
        errors.into_result(vh)
    }
}

impl Route {
    fn from_proto(p: &route::Route, at: &At) -> Result<Route, Vec<ModelError>> {
        let mut errors = Errors::default();
        let matcher = match &p.r#match {
            Some(m) => errors.take(RouteMatch::from_proto(m, &at.key("match"))),
            None => {
                errors.push(at.key("match").error("a route needs a match"));
                None
            }
        };
        let action = errors.take(Action::from_proto(p.action.as_ref(), at));
        // `decorator`, `tracing`, `metadata` and the buffer limits are accepted without effect.
        if !p.route_specifiers.is_empty() {
            errors.push(at.key("route_specifiers").unsupported("route specifiers"));
        }
        let fault = p
            .typed_per_filter_config
            .get(crate::filter::FAULT_FILTER)
            .and_then(|any| {
                errors.take(FaultConfig::from_any(
                    any,
                    &at.key("typed_per_filter_config")
                        .key(crate::filter::FAULT_FILTER),
                ))
            });
        let cors = cors_policy(&p.typed_per_filter_config, at, &mut errors);
        let local_ratelimit = local_ratelimit(&p.typed_per_filter_config, at, &mut errors);
        let headers = errors
            .take(HeaderMutations::from_proto(
                &p.request_headers_to_add,
                &p.request_headers_to_remove,
                &p.response_headers_to_add,
                &p.response_headers_to_remove,
                at,
            ))
            .unwrap_or_default();
        // Forwarding the CONNECT itself upstream (Envoy's "proxy CONNECT" mode) is not implemented:
        // a CONNECT route must terminate it.
        if let (
            Some(RouteMatch {
                path: PathMatch::Connect,
                ..
            }),
            Some(Action::Forward(f)),
        ) = (&matcher, &action)
            && !f.upgrade("CONNECT").is_some_and(|u| u.terminate_connect)
        {
            errors.push(at.key("route").key("upgrade_configs").unsupported(
                "forwarding CONNECT requests upstream (a connect_matcher route without \
                 upgrade_configs [{upgrade_type: CONNECT, connect_config: {}}], which would \
                 terminate the CONNECT)",
            ));
        }
        match (matcher, action) {
            (Some(matcher), Some(action)) if errors.0.is_empty() => Ok(Route {
                name: p.name.clone(),
                matcher,
                action,
                headers,
                fault,
                cors,
                local_ratelimit,
            }),
            _ => Err(errors.0),
        }
    }
}

/// The local rate limit filter's entry of a `typed_per_filter_config` (a route's or a virtual
/// host's).
fn local_ratelimit(
    configs: &HashMap<String, xds_api::pb::google::protobuf::Any>,
    at: &At,
    errors: &mut Errors,
) -> Option<std::sync::Arc<crate::ratelimit::LocalRateLimit>> {
    let any = configs.get(crate::ratelimit::LOCAL_RATELIMIT_FILTER)?;
    errors
        .take(crate::ratelimit::LocalRateLimit::per_route(
            any,
            &at.key("typed_per_filter_config")
                .key(crate::ratelimit::LOCAL_RATELIMIT_FILTER),
        ))
        .map(std::sync::Arc::new)
}

/// The CORS filter's entry of a `typed_per_filter_config`.
fn cors_policy(
    configs: &HashMap<String, xds_api::pb::google::protobuf::Any>,
    at: &At,
    errors: &mut Errors,
) -> Option<CorsPolicy> {
    let any = configs.get(crate::filter::CORS_FILTER)?;
    errors.take(CorsPolicy::from_any(
        any,
        &at.key("typed_per_filter_config")
            .key(crate::filter::CORS_FILTER),
    ))
}

impl RouteMatch {
    fn from_proto(p: &route::RouteMatch, at: &At) -> Result<RouteMatch, ModelError> {
        use route::route_match::PathSpecifier as P;
        let path = match &p.path_specifier {
            Some(P::Prefix(s)) => PathMatch::Prefix(s.clone()),
            Some(P::Path(s)) => PathMatch::Exact(s.clone()),
            Some(P::SafeRegex(r)) => PathMatch::Regex(full_match_regex(r, &at.key("safe_regex"))?),
            Some(P::PathSeparatedPrefix(s)) => PathMatch::SeparatedPrefix(s.clone()),
            Some(P::ConnectMatcher(_)) => PathMatch::Connect,
            Some(P::PathMatchPolicy(_)) => {
                return Err(at.key("path_match_policy").unsupported("path_match_policy"));
            }
            None => {
                return Err(at.error(
                    "a route match needs prefix, path, safe_regex or path_separated_prefix",
                ));
            }
        };
        if p.runtime_fraction.is_some() {
            return Err(at.key("runtime_fraction").unsupported("runtime_fraction"));
        }
        if p.grpc.is_some() {
            return Err(at.key("grpc").unsupported("the grpc route match"));
        }
        if !p.dynamic_metadata.is_empty() {
            return Err(at
                .key("dynamic_metadata")
                .unsupported("dynamic_metadata matching"));
        }
        let headers = p
            .headers
            .iter()
            .enumerate()
            .map(|(i, h)| HeaderMatcher::from_proto(h, &at.key("headers").index(i)))
            .collect::<Result<_, _>>()?;
        let query = p
            .query_parameters
            .iter()
            .enumerate()
            .map(|(i, q)| QueryMatcher::from_proto(q, &at.key("query_parameters").index(i)))
            .collect::<Result<_, _>>()?;
        Ok(RouteMatch {
            path,
            case_sensitive: p.case_sensitive.as_ref().is_none_or(|b| b.value),
            headers,
            query,
        })
    }

    pub fn matches(&self, request: &RequestView<'_>) -> bool {
        let (path, query) = match request.path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (request.path, None),
        };
        // A CONNECT has no path: only connect_matcher matches it, and it matches nothing else.
        let connect = request.method == "CONNECT";
        let path_ok = match &self.path {
            PathMatch::Connect => connect,
            _ if connect => false,
            PathMatch::Prefix(p) => starts_with(path, p, self.case_sensitive),
            PathMatch::Exact(p) => {
                if self.case_sensitive {
                    path == p
                } else {
                    path.eq_ignore_ascii_case(p)
                }
            }
            PathMatch::Regex(r) => r.is_match(path),
            PathMatch::SeparatedPrefix(p) => {
                starts_with(path, p, self.case_sensitive)
                    && (path.len() == p.len() || path.as_bytes().get(p.len()) == Some(&b'/'))
            }
        };
        path_ok
            && self.headers.iter().all(|h| {
                let values: Vec<&str> = match h.name.as_str() {
                    ":method" => vec![request.method],
                    ":path" => vec![request.path],
                    ":authority" => vec![request.authority],
                    ":scheme" => vec!["http"],
                    name => request
                        .headers
                        .get_all(name)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .collect(),
                };
                h.matches_values(&values)
            })
            && self.query.iter().all(|q| q.matches(query))
    }
}

fn starts_with(path: &str, prefix: &str, case_sensitive: bool) -> bool {
    path.len() >= prefix.len()
        && path.is_char_boundary(prefix.len())
        && if case_sensitive {
            path.starts_with(prefix)
        } else {
            path[..prefix.len()].eq_ignore_ascii_case(prefix)
        }
}

/// A header's values joined with `,` (Envoy matches multi-valued headers that way); `None` if absent.
pub fn joined_header(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut values = headers.get_all(name).iter().peekable();
    values.peek()?;
    Some(
        values
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(","),
    )
}

impl Action {
    fn from_proto(p: Option<&route::route::Action>, at: &At) -> Result<Action, ModelError> {
        use route::route::Action as A;
        match p {
            Some(A::Route(r)) => Ok(Action::Forward(Box::new(Forward::from_proto(
                r,
                &at.key("route"),
            )?))),
            Some(A::Redirect(r)) => Ok(Action::Redirect(Redirect::from_proto(
                r,
                &at.key("redirect"),
            )?)),
            Some(A::DirectResponse(d)) => {
                let dat = at.key("direct_response");
                let status = u16::try_from(d.status)
                    .ok()
                    .filter(|s| (200..600).contains(s))
                    .ok_or_else(|| {
                        dat.key("status")
                            .error(format!("status {} is not in [200, 600)", d.status))
                    })?;
                let body = d
                    .body
                    .as_ref()
                    .map(|b| data_source(b, &dat.key("body")))
                    .transpose()?;
                Ok(Action::DirectResponse { status, body })
            }
            Some(A::FilterAction(_)) => Err(at.key("filter_action").unsupported("filter_action")),
            Some(A::NonForwardingAction(_)) => Err(at
                .key("non_forwarding_action")
                .unsupported("non_forwarding_action")),
            None => Err(at.error("a route needs route, redirect or direct_response")),
        }
    }
}

/// The text of an inline `DataSource` (files and environment variables are read at build time).
fn data_source(d: &core::DataSource, at: &At) -> Result<String, ModelError> {
    use core::data_source::Specifier as S;
    match &d.specifier {
        Some(S::InlineString(s)) => Ok(s.clone()),
        Some(S::InlineBytes(b)) => Ok(String::from_utf8_lossy(b).into_owned()),
        Some(S::Filename(f)) => std::fs::read_to_string(f)
            .map_err(|e| at.key("filename").error(format!("cannot read {f}: {e}"))),
        Some(S::EnvironmentVariable(v)) => std::env::var(v).map_err(|_| {
            at.key("environment_variable")
                .error(format!("environment variable {v} is not set"))
        }),
        None => Ok(String::new()),
    }
}

impl Forward {
    fn from_proto(p: &route::RouteAction, at: &At) -> Result<Forward, ModelError> {
        use route::route_action::ClusterSpecifier as C;
        use route::route_action::HostRewriteSpecifier as H;
        let target = match &p.cluster_specifier {
            Some(C::Cluster(c)) if !c.is_empty() => Target::Cluster(c.clone()),
            Some(C::ClusterHeader(h)) => Target::Header(h.to_ascii_lowercase()),
            Some(C::WeightedClusters(w)) => {
                let wat = at.key("weighted_clusters");
                let mut clusters = Vec::new();
                for (i, c) in w.clusters.iter().enumerate() {
                    let cat = wat.key("clusters").index(i);
                    if c.name.is_empty() {
                        return Err(cat.key("name").error("a weighted cluster needs a name"));
                    }
                    if c.request_headers_to_add.len() + c.response_headers_to_add.len() > 0
                        || !c.request_headers_to_remove.is_empty()
                        || !c.response_headers_to_remove.is_empty()
                    {
                        return Err(cat.unsupported("header mutations per weighted cluster"));
                    }
                    clusters.push((c.name.clone(), u32_or(c.weight.as_ref(), 0)));
                }
                let sum: u64 = clusters.iter().map(|(_, w)| u64::from(*w)).sum();
                let total = w.total_weight.as_ref().map_or(sum, |t| u64::from(t.value));
                if sum == 0 {
                    return Err(wat.error("the weights of weighted_clusters add up to 0"));
                }
                if total != sum {
                    return Err(wat.key("total_weight").error(format!(
                        "total_weight {total} differs from the sum of the weights, {sum}"
                    )));
                }
                Target::Weighted { clusters, total }
            }
            Some(C::ClusterSpecifierPlugin(_)) | Some(C::InlineClusterSpecifierPlugin(_)) => {
                return Err(at.unsupported("cluster specifier plugins"));
            }
            _ => {
                return Err(at
                    .key("cluster")
                    .error("a route action needs cluster, cluster_header or weighted_clusters"));
            }
        };
        at.refuse_set(&unimplemented_route_action_fields(p))?;
        let timeout = match &p.timeout {
            None => Some(DEFAULT_ROUTE_TIMEOUT),
            Some(d) => Some(duration(d)).filter(|d| !d.is_zero()),
        };
        let retry_policy = p
            .retry_policy
            .as_ref()
            .map(|r| RetryPolicy::from_proto(r, &at.key("retry_policy")))
            .transpose()?;
        let regex_rewrite = p
            .regex_rewrite
            .as_ref()
            .map(|r| {
                let rat = at.key("regex_rewrite");
                let pattern = r
                    .pattern
                    .as_ref()
                    .ok_or_else(|| rat.key("pattern").error("regex_rewrite needs a pattern"))?;
                let re = regex::Regex::new(&pattern.regex).map_err(|e| {
                    rat.key("pattern")
                        .key("regex")
                        .error(format!("invalid regex: {e}"))
                })?;
                Ok::<_, ModelError>((re, go_to_rust_substitution(&r.substitution)))
            })
            .transpose()?;
        let host_rewrite = match &p.host_rewrite_specifier {
            Some(H::HostRewriteLiteral(h)) => Some(h.clone()),
            Some(H::AutoHostRewrite(b)) if b.value => {
                return Err(at.key("auto_host_rewrite").unsupported("auto_host_rewrite"));
            }
            Some(H::HostRewriteHeader(_)) | Some(H::HostRewritePathRegex(_)) => {
                return Err(at.unsupported("host rewrite from a header or path"));
            }
            _ => None,
        };
        let upgrades = p
            .upgrade_configs
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let uat = at.key("upgrade_configs").index(i);
                if u.upgrade_type.is_empty() {
                    return Err(uat
                        .key("upgrade_type")
                        .error("an upgrade config needs an upgrade_type"));
                }
                if let Some(c) = &u.connect_config {
                    let cat = uat.key("connect_config");
                    if c.proxy_protocol_config.is_some() {
                        return Err(cat
                            .key("proxy_protocol_config")
                            .unsupported("a PROXY protocol header on CONNECT tunnels"));
                    }
                    if c.allow_post {
                        return Err(cat
                            .key("allow_post")
                            .unsupported("tunnelling POST payloads as raw TCP"));
                    }
                }
                Ok(RouteUpgrade {
                    upgrade_type: u.upgrade_type.clone(),
                    enabled: u.enabled.as_ref().is_none_or(|b| b.value),
                    terminate_connect: u.connect_config.is_some()
                        && u.upgrade_type.eq_ignore_ascii_case("CONNECT"),
                })
            })
            .collect::<Result<_, _>>()?;
        let mirrors = p
            .request_mirror_policies
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let per_million = match &m.runtime_fraction {
                    None => 1_000_000,
                    Some(f) => f.default_value.as_ref().map_or(0, fraction_per_million),
                };
                let mat = at.key("request_mirror_policies").index(i);
                mat.refuse_set(&[
                    (
                        "cluster_header",
                        !m.cluster_header.is_empty(),
                        "a mirror cluster from a header",
                    ),
                    (
                        "disable_shadow_host_suffix_append",
                        m.disable_shadow_host_suffix_append,
                        "mirrored requests without the -shadow host suffix",
                    ),
                ])?;
                if m.cluster.is_empty() {
                    return Err(mat.key("cluster").error("a mirror policy needs a cluster"));
                }
                Ok(Mirror {
                    cluster: m.cluster.clone(),
                    per_million,
                })
            })
            .collect::<Result<_, _>>()?;
        let hash_policy = p
            .hash_policy
            .iter()
            .enumerate()
            .map(|(i, h)| hash::HashPolicy::from_proto(h, &at.key("hash_policy").index(i)))
            .filter_map(Result::transpose)
            .collect::<Result<_, _>>()?;
        Ok(Forward {
            target,
            timeout,
            retry_policy,
            prefix_rewrite: Some(p.prefix_rewrite.clone()).filter(|s| !s.is_empty()),
            regex_rewrite,
            upgrades,
            host_rewrite,
            mirrors,
            cluster_not_found_status: match p.cluster_not_found_response_code {
                1 => 404,
                2 => 500,
                _ => 503,
            },
            hash_policy,
        })
    }
}

/// Route action fields that change how a request is forwarded and that bosun proxy does not
/// implement: `(field, set, what it does)`.
fn unimplemented_route_action_fields(
    p: &route::RouteAction,
) -> [(&'static str, bool, &'static str); 13] {
    let nonzero = |d: &Option<xds_api::pb::google::protobuf::Duration>| {
        d.as_ref().is_some_and(|d| d.seconds != 0 || d.nanos != 0)
    };
    [
        (
            "metadata_match",
            p.metadata_match.is_some(),
            "choosing endpoints by metadata (subset load balancing)",
        ),
        (
            "path_rewrite_policy",
            p.path_rewrite_policy.is_some(),
            "URI template path rewrites",
        ),
        (
            "append_x_forwarded_host",
            p.append_x_forwarded_host,
            "x-forwarded-host on host rewrites",
        ),
        (
            "idle_timeout",
            nonzero(&p.idle_timeout),
            "a stream idle timeout per route",
        ),
        (
            "flush_timeout",
            p.flush_timeout.is_some(),
            "a stream flush timeout",
        ),
        (
            "early_data_policy",
            p.early_data_policy.is_some(),
            "an early data policy",
        ),
        (
            "priority",
            p.priority != 0,
            "routing at high priority (the circuit breakers' HIGH thresholds)",
        ),
        (
            "include_vh_rate_limits",
            p.include_vh_rate_limits.is_some_and(|b| b.value),
            "the virtual host's global rate limits",
        ),
        (
            "max_grpc_timeout",
            p.max_grpc_timeout.is_some() || p.grpc_timeout_offset.is_some(),
            "timeouts from the grpc-timeout header",
        ),
        (
            "max_stream_duration",
            p.max_stream_duration.is_some(),
            "a maximum stream duration or timeouts from the grpc-timeout header",
        ),
        (
            "internal_redirect_policy",
            p.internal_redirect_policy.is_some()
                || p.internal_redirect_action != 0
                || p.max_internal_redirects.is_some(),
            "following redirects internally",
        ),
        ("hedge_policy", p.hedge_policy.is_some(), "request hedging"),
        (
            "retry_policy_typed_config",
            p.retry_policy_typed_config.is_some(),
            "an extension retry policy",
        ),
    ]
}

/// Envoy substitutions use `\1`; Rust's regex uses `${1}`.
fn go_to_rust_substitution(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek().is_some_and(char::is_ascii_digit) => {
                let mut n = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    n.push(*d);
                    chars.next();
                }
                out.push_str(&format!("${{{n}}}"));
            }
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

/// A `FractionalPercent` in millionths.
pub fn fraction_per_million(f: &xds_api::pb::envoy::r#type::v3::FractionalPercent) -> u32 {
    let scale = match f.denominator {
        0 => 10_000, // HUNDRED
        1 => 100,    // TEN_THOUSAND
        _ => 1,      // MILLION
    };
    f.numerator.saturating_mul(scale).min(1_000_000)
}

impl RetryPolicy {
    pub fn from_proto(p: &route::RetryPolicy, at: &At) -> Result<RetryPolicy, ModelError> {
        const KNOWN: &[&str] = &[
            "5xx",
            "gateway-error",
            "reset",
            "reset-before-request",
            "connect-failure",
            "envoy-ratelimited",
            "retriable-4xx",
            "refused-stream",
            "retriable-status-codes",
            "retriable-headers",
            "http3-post-connect-failure",
            // gRPC conditions, from the response's grpc-status.
            "cancelled",
            "deadline-exceeded",
            "internal",
            "resource-exhausted",
            "unavailable",
        ];
        let retry_on: Vec<String> = p
            .retry_on
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(bad) = retry_on.iter().find(|c| !KNOWN.contains(&c.as_str())) {
            return Err(at
                .key("retry_on")
                .error(format!("unknown retry condition {bad:?}")));
        }
        // Conditions and fields Envoy acts on that Bosun does not: refused, not ignored, since
        // ignoring them would change which requests are retried.
        let retriable_headers = p
            .retriable_headers
            .iter()
            .enumerate()
            .map(|(i, h)| HeaderMatcher::from_proto(h, &at.key("retriable_headers").index(i)))
            .collect::<Result<Vec<_>, _>>()?;
        if !p.retriable_request_headers.is_empty() {
            return Err(at
                .key("retriable_request_headers")
                .unsupported("retrying only requests with given headers"));
        }
        if p.rate_limited_retry_back_off.is_some() {
            return Err(at
                .key("rate_limited_retry_back_off")
                .unsupported("back-off from rate-limit response headers"));
        }
        if p.per_try_idle_timeout.is_some() {
            return Err(at
                .key("per_try_idle_timeout")
                .unsupported("a per-try idle timeout"));
        }
        let mut avoid_previous_hosts = false;
        for (i, pred) in p.retry_host_predicate.iter().enumerate() {
            if pred.name == "envoy.retry_host_predicates.previous_hosts" {
                avoid_previous_hosts = true;
            } else {
                return Err(at
                    .key("retry_host_predicate")
                    .index(i)
                    .unsupported(format!("retry host predicate {:?}", pred.name)));
            }
        }
        if p.retry_priority.is_some() {
            return Err(at.key("retry_priority").unsupported("retry_priority"));
        }
        let base_interval = p
            .retry_back_off
            .as_ref()
            .and_then(|b| b.base_interval.as_ref())
            .map_or(Duration::from_millis(25), duration);
        let max_interval = p
            .retry_back_off
            .as_ref()
            .and_then(|b| b.max_interval.as_ref())
            .map_or(base_interval * 10, duration);
        Ok(RetryPolicy {
            retry_on,
            num_retries: u32_or(p.num_retries.as_ref(), 1),
            per_try_timeout: p
                .per_try_timeout
                .as_ref()
                .map(duration)
                .filter(|d| !d.is_zero()),
            retriable_status_codes: p
                .retriable_status_codes
                .iter()
                .filter_map(|c| u16::try_from(*c).ok())
                .collect(),
            avoid_previous_hosts,
            host_selection_max_attempts: u32::try_from(p.host_selection_retry_max_attempts.max(1))
                .unwrap_or(1),
            base_interval,
            max_interval,
            retriable_headers,
        })
    }

    pub fn retries_on(&self, condition: &str) -> bool {
        self.retry_on.iter().any(|c| c == condition)
    }

    /// Whether a response's headers make it retriable: `envoy-ratelimited` when the upstream set
    /// `x-envoy-ratelimited`, `retriable-headers` when any `retriable_headers` matcher matches (on each
    /// value of a repeated header, as route matching does). The request header
    /// `x-envoy-retriable-header-names` is not read.
    pub fn retriable_response_headers(&self, headers: &http::HeaderMap) -> bool {
        if self.retries_on("envoy-ratelimited") && headers.contains_key("x-envoy-ratelimited") {
            return true;
        }
        self.retries_on("retriable-headers")
            && self.retriable_headers.iter().any(|m| {
                let values: Vec<&str> = headers
                    .get_all(m.name.as_str())
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect();
                m.matches_values(&values)
            })
    }
}

impl Redirect {
    fn from_proto(p: &route::RedirectAction, at: &At) -> Result<Redirect, ModelError> {
        use route::redirect_action::{PathRewriteSpecifier as P, SchemeRewriteSpecifier as S};
        let scheme = match &p.scheme_rewrite_specifier {
            Some(S::HttpsRedirect(true)) => Some("https".to_owned()),
            Some(S::SchemeRedirect(s)) if !s.is_empty() => Some(s.to_ascii_lowercase()),
            _ => None,
        };
        let path = match &p.path_rewrite_specifier {
            Some(P::PathRedirect(s)) => RedirectPath::Replace(s.clone()),
            Some(P::PrefixRewrite(s)) => RedirectPath::PrefixRewrite(s.clone()),
            Some(P::RegexRewrite(r)) => {
                let rat = at.key("regex_rewrite");
                let pattern = r
                    .pattern
                    .as_ref()
                    .ok_or_else(|| rat.key("pattern").error("regex_rewrite needs a pattern"))?;
                let re = Regex::new(&pattern.regex).map_err(|e| {
                    rat.key("pattern")
                        .key("regex")
                        .error(format!("invalid regex: {e}"))
                })?;
                RedirectPath::RegexRewrite(re, go_to_rust_substitution(&r.substitution))
            }
            Some(P::PathRewrite(_)) => {
                return Err(at
                    .key("path_rewrite")
                    .unsupported("path_rewrite with substitution formats"));
            }
            None => RedirectPath::Keep,
        };
        let status = match p.response_code {
            0 => 301,
            1 => 302,
            2 => 303,
            3 => 307,
            4 => 308,
            other => {
                return Err(at
                    .key("response_code")
                    .error(format!("unknown response code {other}")));
            }
        };
        Ok(Redirect {
            scheme,
            host: Some(p.host_redirect.clone()).filter(|h| !h.is_empty()),
            port: Some(p.port_redirect).filter(|p| *p != 0),
            path,
            status,
            strip_query: p.strip_query,
        })
    }
}

pub(crate) fn headers_to_add(
    options: &[core::HeaderValueOption],
    at: &At,
) -> Result<Vec<HeaderAdd>, ModelError> {
    options
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let oat = at.index(i);
            let h = o
                .header
                .as_ref()
                .ok_or_else(|| oat.key("header").error("a header option needs a header"))?;
            let name = http::HeaderName::from_bytes(h.key.as_bytes()).map_err(|_| {
                oat.key("header")
                    .key("key")
                    .error(format!("invalid header name {:?}", h.key))
            })?;
            let raw = if h.raw_value.is_empty() {
                h.value.as_bytes()
            } else {
                &h.raw_value
            };
            let value = http::HeaderValue::from_bytes(raw)
                .map_err(|_| oat.key("header").key("value").error("invalid header value"))?;
            if h.value.contains('%') {
                // Envoy expands %COMMAND% operators in header values; Bosun does not yet.
                return Err(oat
                    .key("header")
                    .key("value")
                    .unsupported("%…% substitutions in header values"));
            }
            let action = match (o.append.as_ref().map(|b| b.value), o.append_action) {
                (Some(true), _) => AppendAction::AppendIfExistsOrAdd,
                (Some(false), _) => AppendAction::OverwriteIfExistsOrAdd,
                (None, 1) => AppendAction::AddIfAbsent,
                (None, 2) => AppendAction::OverwriteIfExistsOrAdd,
                (None, 3) => AppendAction::OverwriteIfExists,
                (None, _) => AppendAction::AppendIfExistsOrAdd,
            };
            Ok(HeaderAdd {
                name,
                value,
                action,
            })
        })
        .collect()
}

impl HeaderAdd {
    pub fn apply(&self, headers: &mut HeaderMap) {
        let exists = headers.contains_key(&self.name);
        match self.action {
            AppendAction::AppendIfExistsOrAdd => {
                headers.append(self.name.clone(), self.value.clone());
            }
            AppendAction::AddIfAbsent if !exists => {
                headers.insert(self.name.clone(), self.value.clone());
            }
            AppendAction::OverwriteIfExistsOrAdd => {
                headers.insert(self.name.clone(), self.value.clone());
            }
            AppendAction::OverwriteIfExists if exists => {
                headers.insert(self.name.clone(), self.value.clone());
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
