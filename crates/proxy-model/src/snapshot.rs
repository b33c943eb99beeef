//! One complete, consistent configuration of the proxy: what the data plane swaps in atomically.

use std::collections::HashMap;
use std::sync::Arc;

use xds_api::pb::envoy::config::bootstrap::v3::Bootstrap;
use xds_api::pb::envoy::config::bootstrap::v3::bootstrap::DynamicResources;
use xds_api::pb::envoy::config::core::v3::{
    ApiConfigSource, ConfigSource, Node, api_config_source::ApiType, config_source,
    grpc_service::TargetSpecifier,
};

use crate::cluster::{Cluster, socket_address};
use crate::error::{At, Errors, ModelError};
use crate::listener::{Listener, NetworkFilter, RouteSource};
use crate::route::{Action, RouteConfig, Target};
use crate::tls::Secrets;
use xds_api::config_source::{DEFAULT_INITIAL_FETCH_TIMEOUT, FetchTimeout, initial_fetch_timeout};
use xds_api::secrets::{SecretSource, cluster_secrets, listener_secrets};

#[derive(Debug, Default)]
pub struct Snapshot {
    pub listeners: Vec<Arc<Listener>>,
    pub clusters: HashMap<String, Arc<Cluster>>,
    /// Route configurations delivered by RDS, by name.
    pub route_configs: HashMap<String, Arc<RouteConfig>>,
}

/// What the bootstrap says about the proxy itself.
#[derive(Debug, Clone, Default)]
pub struct ProxySettings {
    pub node_id: String,
    pub node_cluster: String,
    /// The bootstrap's whole `node` (id, cluster, metadata, locality), sent to the control plane.
    pub node: Node,
    /// The admin interface, `None` when the bootstrap has no `admin` address.
    pub admin: Option<(String, u16)>,
    /// Where to take listeners and clusters from over ADS; `None` for a purely static bootstrap.
    pub ads: Option<AdsSettings>,
    /// `static_resources.secrets`, which dynamic listeners and clusters may name too.
    pub secrets: Secrets,
    /// Bootstrap fields that are set and that bosun proxy does not use (observability, runtime and
    /// process settings): logged once each at start.
    pub ignored: Vec<&'static str>,
}

/// Which ADS variant `dynamic_resources.ads_config.api_type` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdsApi {
    /// `GRPC`: state of the world.
    Sotw,
    /// `DELTA_GRPC`: incremental.
    Delta,
}

/// `dynamic_resources`: LDS and CDS over ADS from the first endpoint of a static cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdsSettings {
    pub api: AdsApi,
    /// The static cluster `grpc_services[0].envoy_grpc.cluster_name` names.
    pub cluster: String,
    /// That cluster's first endpoint: host and port (a socket's path and 0).
    pub host: String,
    pub port: u16,
    /// How long the first CDS and LDS responses are waited for at start: `cds_config` and
    /// `lds_config`'s `initial_fetch_timeout` (Envoy's 15 s when unset; `None`: for ever).
    pub cds_fetch_timeout: FetchTimeout,
    pub lds_fetch_timeout: FetchTimeout,
}

impl AdsSettings {
    /// The ADS server's URI, `http://host:port` (IPv6 hosts in brackets), or `unix:PATH` for a
    /// Unix domain socket.
    pub fn uri(&self) -> String {
        if crate::cluster::is_pipe(&self.host) {
            format!("unix:{}", self.host)
        } else if self.host.contains(':') {
            format!("http://[{}]:{}", self.host, self.port)
        } else {
            format!("http://{}:{}", self.host, self.port)
        }
    }
}

/// A dynamic resource that cannot join the snapshot: its name and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub name: String,
    pub reason: String,
}

impl Refused {
    fn new(name: &str, errors: &[ModelError]) -> Refused {
        Refused {
            name: name.to_owned(),
            reason: errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        }
    }
}

impl Snapshot {
    /// The static part of a bootstrap: `static_resources.listeners` and `clusters`.
    pub fn from_bootstrap(b: &Bootstrap) -> Result<(Snapshot, ProxySettings), Vec<ModelError>> {
        let mut errors = Errors::default();
        let mut settings = ProxySettings {
            node: b.node.clone().unwrap_or_default(),
            ads: None,
            secrets: Secrets::default(),
            ignored: Vec::new(),
            node_id: b.node.as_ref().map(|n| n.id.clone()).unwrap_or_default(),
            node_cluster: b
                .node
                .as_ref()
                .map(|n| n.cluster.clone())
                .unwrap_or_default(),
            admin: b
                .admin
                .as_ref()
                .and_then(|a| a.address.as_ref())
                .and_then(|addr| {
                    errors.take(socket_address(Some(addr), &At::root("admin.address")))
                }),
        };
        // With a local cluster Envoy routes zone-aware (every cluster's `zone_aware_lb_config`
        // applies); without one that config does nothing, in Envoy as here.
        if let Some(cm) = &b.cluster_manager
            && !cm.local_cluster_name.is_empty()
        {
            errors.push(
                At::root("cluster_manager.local_cluster_name")
                    .unsupported("zone-aware routing (a local cluster)"),
            );
        }
        check_top_level(b, &mut settings.ignored, &mut errors);
        let mut snapshot = Snapshot::default();
        let resources = b.static_resources.clone().unwrap_or_default();
        let root = At::root("static_resources");
        for (i, secret) in resources.secrets.iter().enumerate() {
            let at = root.key("secrets").index(i);
            if secret.name.is_empty() {
                errors.push(at.key("name").error("a secret needs a name"));
            } else if settings
                .secrets
                .statics
                .insert(secret.name.clone(), Arc::new(secret.clone()))
                .is_some()
            {
                errors.push(
                    at.key("name")
                        .error(format!("duplicate secret name {:?}", secret.name)),
                );
            }
        }
        let secrets = settings.secrets.clone();
        // Envoy would keep such a static listener or cluster warming until the secret arrives.
        let over_ads = |refs: Vec<(String, SecretSource)>, at: &At, errors: &mut Errors| {
            let ads = refs.iter().any(|(_, s)| *s == SecretSource::Ads);
            if ads {
                errors.push(at.key("transport_socket").unsupported(
                    "a static listener or cluster whose TLS secrets come over ADS (sds_config: {ads: {}}); make it dynamic, or put the secret in static_resources.secrets",
                ));
            }
            ads
        };
        for (i, c) in resources.clusters.iter().enumerate() {
            let at = root.key("clusters").index(i);
            if over_ads(cluster_secrets(c), &at, &mut errors) {
                continue;
            }
            match Cluster::from_proto_with(c, &at, &secrets) {
                Ok(c) => {
                    if snapshot
                        .clusters
                        .insert(c.name.clone(), Arc::new(c))
                        .is_some()
                    {
                        errors.push(at.key("name").error(format!(
                            "duplicate cluster name {:?}",
                            resources.clusters[i].name
                        )));
                    }
                }
                Err(e) => errors.0.extend(e),
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, l) in resources.listeners.iter().enumerate() {
            let at = root.key("listeners").index(i);
            if over_ads(listener_secrets(l), &at, &mut errors) {
                continue;
            }
            match Listener::from_proto_with(l, &at, &secrets) {
                Ok(l) => {
                    if !names.insert(l.name.clone()) {
                        errors.push(
                            at.key("name")
                                .error(format!("duplicate listener name {:?}", l.name)),
                        );
                    }
                    snapshot.check_clusters(&l, &at, &mut errors);
                    snapshot.listeners.push(Arc::new(l));
                }
                Err(e) => errors.0.extend(e),
            }
        }
        if let Some(d) = &b.dynamic_resources {
            settings.ads = ads_settings(d, &snapshot, &mut errors);
        }
        errors.into_result((snapshot, settings))
    }

    /// The static part plus the dynamic sets (clusters with their EDS endpoints already applied,
    /// listeners, RDS route configurations), with the static cross-checks: a dynamic resource may not
    /// take a static one's name, and a new or changed dynamic listener's inline routes must name
    /// clusters that exist (Envoy's `validate_clusters`, true for inline route configurations, run
    /// when a listener is built). A listener already running (`is_new` false) is not checked again:
    /// Envoy accepts a CDS update that removes a cluster such a listener names, and requests to it
    /// get 503 NC. RDS route configurations are not checked against clusters (Envoy's default for
    /// RDS) either.
    pub fn compose(
        statics: &Snapshot,
        clusters: impl IntoIterator<Item = Arc<Cluster>>,
        listeners: impl IntoIterator<Item = Arc<Listener>>,
        is_new: impl Fn(&Arc<Listener>) -> bool,
        route_configs: HashMap<String, Arc<RouteConfig>>,
    ) -> Result<Snapshot, Vec<Refused>> {
        let mut refused = Vec::new();
        let mut snapshot = Snapshot {
            listeners: statics.listeners.clone(),
            clusters: statics.clusters.clone(),
            route_configs,
        };
        for c in clusters {
            if statics.clusters.contains_key(&c.name) {
                refused.push(Refused {
                    name: c.name.clone(),
                    reason: "a static cluster of this name exists; CDS cannot replace it".into(),
                });
                continue;
            }
            snapshot.clusters.insert(c.name.clone(), c);
        }
        for l in listeners {
            if statics.listeners.iter().any(|s| s.name == l.name) {
                refused.push(Refused {
                    name: l.name.clone(),
                    reason: "a static listener of this name exists; LDS cannot replace it".into(),
                });
                continue;
            }
            let mut errors = Errors::default();
            if is_new(&l) {
                snapshot.check_clusters(&l, &At::root(""), &mut errors);
            }
            if !errors.0.is_empty() {
                refused.push(Refused::new(&l.name, &errors.0));
                continue;
            }
            snapshot.listeners.push(l);
        }
        if refused.is_empty() {
            Ok(snapshot)
        } else {
            Err(refused)
        }
    }

    /// Converts one dynamic resource's errors into a refusal under its name.
    pub fn refused(name: &str, errors: &[ModelError]) -> Refused {
        Refused::new(name, errors)
    }

    /// Envoy refuses a static listener whose inline routes name clusters that do not exist
    /// (`validate_clusters`); so does Bosun. A TCP proxy's cluster is not checked (Envoy closes a
    /// connection to a cluster that does not exist, and so does Bosun).
    fn check_clusters(&self, l: &Listener, at: &At, errors: &mut Errors) {
        for (i, fc) in l.filter_chains.iter().enumerate() {
            let fat = at.key("filter_chains").index(i);
            match &fc.network {
                NetworkFilter::Http(h) => {
                    if let RouteSource::Inline(rc) = &h.routes {
                        for vh in &rc.virtual_hosts {
                            for r in &vh.routes {
                                let Action::Forward(f) = &r.action else {
                                    continue;
                                };
                                let names: Vec<&str> = match &f.target {
                                    Target::Cluster(c) => vec![c.as_str()],
                                    Target::Weighted { clusters, .. } => {
                                        clusters.iter().map(|(c, _)| c.as_str()).collect()
                                    }
                                    Target::Header(_) => Vec::new(),
                                };
                                for name in names
                                    .into_iter()
                                    .chain(f.mirrors.iter().map(|m| m.cluster.as_str()))
                                {
                                    if !self.clusters.contains_key(name) {
                                        errors.push(fat.error(format!(
                                            "route {:?} in virtual host {:?}: unknown cluster {name:?}",
                                            r.name, vh.name
                                        )));
                                    }
                                }
                            }
                        }
                    }
                }
                NetworkFilter::Tcp(_) => {}
            }
        }
    }

    /// The route configuration of an HTTP connection manager (inline or from RDS).
    pub fn route_config(&self, source: &RouteSource) -> Option<Arc<RouteConfig>> {
        match source {
            RouteSource::Inline(rc) => Some(rc.clone()),
            RouteSource::Rds(name) => self.route_configs.get(name).cloned(),
        }
    }
}

/// The bootstrap's top-level fields besides `node`, `admin`, `static_resources`, `dynamic_resources`
/// and `cluster_manager`: those that would change how traffic is handled are refused by field path,
/// the others (stats, tracing, runtime, watchdogs, process settings) are listed in `ignored`.
fn check_top_level(b: &Bootstrap, ignored: &mut Vec<&'static str>, errors: &mut Errors) {
    let refused: [(&str, bool, &str); 5] = [
        (
            "cluster_manager.upstream_bind_config",
            b.cluster_manager
                .as_ref()
                .is_some_and(|c| c.upstream_bind_config.is_some()),
            "a source address for every cluster (set it per cluster)",
        ),
        (
            "header_prefix",
            !b.header_prefix.is_empty(),
            "a header prefix other than x-envoy",
        ),
        (
            "hds_config",
            b.hds_config.is_some(),
            "health discovery (HDS)",
        ),
        (
            "default_socket_interface",
            !b.default_socket_interface.is_empty(),
            "other socket interfaces",
        ),
        (
            "listener_manager",
            b.listener_manager.is_some(),
            "other listener managers",
        ),
    ];
    errors.0.extend(At::root("").refused(&refused));
    let cluster_manager = b.cluster_manager.as_ref();
    let unused: [(&'static str, bool); 32] = [
        ("node_context_params", !b.node_context_params.is_empty()),
        (
            "cluster_manager.outlier_detection",
            cluster_manager.is_some_and(|c| c.outlier_detection.is_some()),
        ),
        (
            "cluster_manager.load_stats_config",
            cluster_manager.is_some_and(|c| c.load_stats_config.is_some()),
        ),
        ("flags_path", !b.flags_path.is_empty()),
        ("stats_sinks", !b.stats_sinks.is_empty()),
        ("deferred_stat_options", b.deferred_stat_options.is_some()),
        ("stats_config", b.stats_config.is_some()),
        ("stats_flush_interval", b.stats_flush_interval.is_some()),
        ("stats_flush", b.stats_flush.is_some()),
        ("stats_eviction", b.stats_eviction.is_some()),
        ("watchdog", b.watchdog.is_some()),
        ("watchdogs", b.watchdogs.is_some()),
        ("tracing", b.tracing.is_some()),
        ("layered_runtime", b.layered_runtime.is_some()),
        ("overload_manager", b.overload_manager.is_some()),
        ("enable_dispatcher_stats", b.enable_dispatcher_stats),
        (
            "stats_server_version_override",
            b.stats_server_version_override.is_some(),
        ),
        ("use_tcp_for_dns_lookups", b.use_tcp_for_dns_lookups),
        ("dns_resolution_config", b.dns_resolution_config.is_some()),
        (
            "typed_dns_resolver_config",
            b.typed_dns_resolver_config.is_some(),
        ),
        ("bootstrap_extensions", !b.bootstrap_extensions.is_empty()),
        ("fatal_actions", !b.fatal_actions.is_empty()),
        ("config_sources", !b.config_sources.is_empty()),
        ("default_config_source", b.default_config_source.is_some()),
        (
            "certificate_provider_instances",
            !b.certificate_provider_instances.is_empty(),
        ),
        ("inline_headers", !b.inline_headers.is_empty()),
        (
            "perf_tracing_file_path",
            !b.perf_tracing_file_path.is_empty(),
        ),
        ("default_regex_engine", b.default_regex_engine.is_some()),
        ("xds_delegate_extension", b.xds_delegate_extension.is_some()),
        (
            "xds_config_tracker_extension",
            b.xds_config_tracker_extension.is_some(),
        ),
        ("application_log_config", b.application_log_config.is_some()),
        ("enable_worker_cpu_affinity", b.enable_worker_cpu_affinity),
    ];
    ignored.extend(unused.into_iter().filter(|(_, set)| *set).map(|(f, _)| f));
}

/// `dynamic_resources`: what Bosun implements is LDS and CDS over one ADS stream (`GRPC` or
/// `DELTA_GRPC`) to a static cluster through `envoy_grpc`; anything else is refused by field path.
fn ads_settings(d: &DynamicResources, s: &Snapshot, errors: &mut Errors) -> Option<AdsSettings> {
    let at = At::root("dynamic_resources");
    let before = errors.0.len();
    for (field, locator) in [
        ("lds_resources_locator", &d.lds_resources_locator),
        ("cds_resources_locator", &d.cds_resources_locator),
    ] {
        if !locator.is_empty() {
            errors.push(at.key(field).unsupported("xdstp:// resource locators"));
        }
    }
    for (field, source) in [("lds_config", &d.lds_config), ("cds_config", &d.cds_config)] {
        check_ads_source(source.as_ref(), &at.key(field), errors);
    }
    let Some(ads) = &d.ads_config else {
        errors.push(at.key("ads_config").error(
            "lds_config and cds_config use ads: {} but there is no ads_config; add one naming the \
             control plane's cluster",
        ));
        return None;
    };
    let result = ads_config(ads, &at.key("ads_config"), s, errors).map(|settings| AdsSettings {
        cds_fetch_timeout: initial_fetch_timeout(d.cds_config.as_ref()),
        lds_fetch_timeout: initial_fetch_timeout(d.lds_config.as_ref()),
        ..settings
    });
    if errors.0.len() > before {
        None
    } else {
        result
    }
}

fn check_ads_source(source: Option<&ConfigSource>, at: &At, errors: &mut Errors) {
    use config_source::ConfigSourceSpecifier as S;
    match source.and_then(|s| s.config_source_specifier.as_ref()) {
        Some(S::Ads(_)) => {}
        None => errors.push(at.error(
            "bosun proxy takes both listeners and clusters over ADS: set lds_config and \
             cds_config to {ads: {}}",
        )),
        #[allow(deprecated)]
        Some(S::Path(_)) => errors.push(at.key("path").unsupported("file-based xDS")),
        Some(S::PathConfigSource(_)) => {
            errors.push(at.key("path_config_source").unsupported("file-based xDS"))
        }
        Some(S::ApiConfigSource(_)) => errors.push(
            at.key("api_config_source")
                .unsupported("a per-type xDS API source (use ads: {} and ads_config)"),
        ),
        Some(S::Self_(_)) => errors.push(at.key("self").unsupported("self config sources")),
    }
}

fn ads_config(
    a: &ApiConfigSource,
    at: &At,
    s: &Snapshot,
    errors: &mut Errors,
) -> Option<AdsSettings> {
    let api = match ApiType::try_from(a.api_type) {
        Ok(ApiType::Grpc) => AdsApi::Sotw,
        Ok(ApiType::DeltaGrpc) => AdsApi::Delta,
        Ok(other) => {
            errors.push(at.key("api_type").unsupported(format!(
                "api_type {} (use GRPC or DELTA_GRPC)",
                other.as_str_name()
            )));
            return None;
        }
        Err(_) => {
            errors.push(
                at.key("api_type")
                    .error(format!("unknown api_type {}", a.api_type)),
            );
            return None;
        }
    };
    if !a.cluster_names.is_empty() {
        errors.push(
            at.key("cluster_names")
                .unsupported("cluster_names (REST xDS); use grpc_services"),
        );
    }
    if a.grpc_services.len() > 1 {
        errors.push(
            at.key("grpc_services")
                .unsupported("more than one gRPC service (Envoy uses the first only)"),
        );
    }
    let gat = at.key("grpc_services").index(0);
    let cluster = match a
        .grpc_services
        .first()
        .and_then(|g| g.target_specifier.as_ref())
    {
        None => {
            errors.push(at.key("grpc_services").error(
                "ads_config needs grpc_services: [{envoy_grpc: {cluster_name: <a static cluster>}}]",
            ));
            return None;
        }
        Some(TargetSpecifier::GoogleGrpc(_)) => {
            errors.push(
                gat.key("google_grpc")
                    .unsupported("google_grpc (use envoy_grpc)"),
            );
            return None;
        }
        Some(TargetSpecifier::EnvoyGrpc(e)) => e.cluster_name.clone(),
    };
    let cat = gat.key("envoy_grpc").key("cluster_name");
    let Some(c) = s.clusters.get(&cluster) else {
        errors.push(cat.error(format!(
            "no static cluster named {cluster:?}; the ADS cluster must be in static_resources.clusters"
        )));
        return None;
    };
    let Some(e) = c.endpoints().next() else {
        errors.push(cat.error(format!(
            "the static cluster {cluster:?} has no endpoint to reach the control plane at"
        )));
        return None;
    };
    Some(AdsSettings {
        api,
        cluster,
        host: e.host.clone(),
        port: e.port,
        cds_fetch_timeout: Some(DEFAULT_INITIAL_FETCH_TIMEOUT),
        lds_fetch_timeout: Some(DEFAULT_INITIAL_FETCH_TIMEOUT),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use xds_api::bootstrap::message_from_yaml;

    fn listener(name: &str, filter: &str) -> Arc<Listener> {
        let yaml = format!(
            r#"
name: {name}
address: {{socket_address: {{address: 127.0.0.1, port_value: 10000}}}}
filter_chains:
- filters:
  - {filter}
"#
        );
        let p = message_from_yaml(&yaml, None).expect("valid Listener");
        Arc::new(Listener::from_proto(&p, &At::root("")).expect("a listener Bosun runs"))
    }

    fn inline_routes_to(cluster: &str) -> String {
        format!(
            r#"name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: in
      route_config: {{virtual_hosts: [{{name: all, domains: ["*"], routes: [{{match: {{prefix: /}}, route: {{cluster: {cluster}}}}}]}}]}}
      http_filters: [{{name: envoy.filters.http.router, typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}}}]"#
        )
    }

    fn cluster(name: &str) -> Arc<Cluster> {
        let yaml = format!("name: {name}\ntype: STATIC\nconnect_timeout: 1s\n");
        let p = message_from_yaml(&yaml, None).expect("valid Cluster");
        Arc::new(Cluster::from_proto(&p, &At::root("")).expect("a cluster Bosun runs"))
    }

    #[test]
    fn the_ads_server_is_reached_by_tcp_or_by_its_socket() {
        let at = |host: &str, port| AdsSettings {
            api: AdsApi::Sotw,
            cluster: "xds-grpc".to_owned(),
            host: host.to_owned(),
            port,
            cds_fetch_timeout: None,
            lds_fetch_timeout: None,
        };
        assert_eq!(at("127.0.0.1", 15010).uri(), "http://127.0.0.1:15010");
        assert_eq!(at("::1", 15010).uri(), "http://[::1]:15010");
        // Istio's bootstrap: `pipe: {path: ./etc/istio/proxy/XDS}`, the agent's socket.
        assert_eq!(
            at("./etc/istio/proxy/XDS", 0).uri(),
            "unix:./etc/istio/proxy/XDS"
        );
    }

    /// The first CDS and LDS responses are waited for as `cds_config` and `lds_config` say: Envoy's
    /// 15 s when unset, for ever with Istio's `0s`.
    #[test]
    fn the_bootstrap_says_how_long_the_first_cds_and_lds_are_waited_for() {
        let yaml = r#"
dynamic_resources:
  ads_config: {api_type: GRPC, grpc_services: [{envoy_grpc: {cluster_name: xds-grpc}}]}
  cds_config: {ads: {}, resource_api_version: V3}
  lds_config: {ads: {}, resource_api_version: V3, initial_fetch_timeout: 0s}
static_resources:
  clusters:
  - name: xds-grpc
    type: STATIC
    load_assignment: {cluster_name: xds-grpc, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 15010}}}}]}]}
"#;
        let bootstrap = xds_api::bootstrap::from_yaml(yaml, None).expect("a bootstrap");
        let (_, settings) = Snapshot::from_bootstrap(&bootstrap).expect("runs");
        let ads = settings.ads.expect("ADS settings");
        assert_eq!(
            ads.cds_fetch_timeout,
            Some(std::time::Duration::from_secs(15))
        );
        assert_eq!(ads.lds_fetch_timeout, None);
    }

    /// As Envoy: a listener's inline routes are checked against the clusters when the listener is
    /// new or changed; a CDS update that removes a cluster a running listener names is accepted.
    #[test]
    fn only_new_listeners_are_checked_against_the_clusters() {
        let statics = Snapshot::default();
        let http = listener("in", &inline_routes_to("inbound|9080||"));
        let compose = |clusters: Vec<Arc<Cluster>>, is_new: bool| {
            Snapshot::compose(
                &statics,
                clusters,
                [http.clone()],
                |_| is_new,
                HashMap::new(),
            )
        };
        assert!(compose(vec![cluster("inbound|9080||")], true).is_ok());
        let kept = compose(Vec::new(), false).expect("a running listener stays");
        assert_eq!(kept.listeners.len(), 1);
        let refused = compose(Vec::new(), true).expect_err("a new listener is checked");
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].name, "in");
        assert!(
            refused[0]
                .reason
                .contains(r#"unknown cluster "inbound|9080||""#),
            "{}",
            refused[0].reason
        );
        // A TCP proxy to a cluster that does not exist is accepted, as Envoy accepts it.
        let tcp = listener(
            "tcp",
            r#"name: envoy.filters.network.tcp_proxy
    typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: missing}"#,
        );
        assert!(Snapshot::compose(&statics, [], [tcp], |_| true, HashMap::new()).is_ok());
    }

    /// Static secrets are found by name; a missing one, one of the wrong kind, another config
    /// source, and a static cluster waiting for an ADS secret are refused by field path.
    #[test]
    fn secret_references_are_resolved_or_refused_by_field_path() {
        let bootstrap = |socket: &str, secrets: &str| -> Result<Snapshot, Vec<ModelError>> {
            let yaml = format!(
                r#"
static_resources:
  secrets: {secrets}
  clusters:
  - name: up
    type: STATIC
    connect_timeout: 1s
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        common_tls_context: {{{socket}}}
"#
            );
            let b: Bootstrap = message_from_yaml(&yaml, None).expect("valid bootstrap");
            Snapshot::from_bootstrap(&b).map(|(s, _)| s)
        };
        let ca = mesh_tls::CertificateAuthority::generate("cluster.local").expect("ca");
        let root = format!(
            "[{{name: root, validation_context: {{trusted_ca: {{inline_string: {:?}}}}}}}]",
            ca.root_pem()
        );
        let found = bootstrap("validation_context_sds_secret_config: {name: root}", &root)
            .expect("a static secret by name");
        assert!(found.clusters["up"].tls.is_some());
        let error = |socket: &str, secrets: &str| {
            let e = bootstrap(socket, secrets).expect_err("refused");
            e.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        };
        let at = "static_resources.clusters[0].transport_socket.typed_config.common_tls_context";
        let missing = error(
            "validation_context_sds_secret_config: {name: nothere}",
            &root,
        );
        assert!(
            missing.contains(&format!("{at}.validation_context_sds_secret_config.name"))
                && missing.contains("no secret \"nothere\" in static_resources.secrets"),
            "{missing}"
        );
        let wrong = error("tls_certificate_sds_secret_configs: [{name: root}]", &root);
        assert!(wrong.contains("is not a tls_certificate"), "{wrong}");
        let other = error(
            "validation_context_sds_secret_config: {name: root, sds_config: {path_config_source: {path: /x}}}",
            &root,
        );
        assert!(
            other.contains(&format!(
                "{at}.validation_context_sds_secret_config.sds_config"
            )),
            "{other}"
        );
        let ads = error(
            "validation_context_sds_secret_config: {name: root, sds_config: {ads: {}}}",
            "[]",
        );
        assert!(
            ads.contains("static_resources.clusters[0].transport_socket")
                && ads.contains("come over ADS"),
            "{ads}"
        );
    }

    /// Zone-aware routing (which a local cluster turns on in Envoy) is refused, not ignored.
    #[test]
    fn a_local_cluster_is_refused() {
        let b: Bootstrap =
            message_from_yaml("cluster_manager: {local_cluster_name: local}", None).expect("valid");
        let refused = Snapshot::from_bootstrap(&b).expect_err("refused");
        assert_eq!(refused[0].field, "cluster_manager.local_cluster_name");
        let b: Bootstrap = message_from_yaml("cluster_manager: {}", None).expect("valid");
        assert!(Snapshot::from_bootstrap(&b).is_ok());
    }

    /// Top-level fields bosun proxy does not use are listed to be warned about; those that would
    /// change how traffic is handled are refused.
    #[test]
    fn unused_top_level_fields_are_listed_and_behaviour_changing_ones_refused() {
        let b: Bootstrap = message_from_yaml(
            "{stats_config: {}, layered_runtime: {}, tracing: {}, node: {id: a}}",
            None,
        )
        .expect("valid");
        let (_, settings) = Snapshot::from_bootstrap(&b).expect("accepted");
        assert_eq!(
            settings.ignored,
            ["stats_config", "tracing", "layered_runtime"]
        );
        let b: Bootstrap = message_from_yaml("header_prefix: x-custom", None).expect("valid");
        let refused = Snapshot::from_bootstrap(&b).expect_err("refused");
        assert_eq!(refused[0].field, "header_prefix");
    }
}
