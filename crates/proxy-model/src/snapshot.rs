//! One complete, consistent configuration of the proxy: what the data plane swaps in atomically.

use std::collections::HashMap;
use std::sync::Arc;

use xds_api::pb::envoy::config::bootstrap::v3::Bootstrap;

use crate::cluster::{Cluster, socket_address};
use crate::error::{At, Errors, ModelError};
use crate::listener::{Listener, NetworkFilter, RouteSource};
use crate::route::{Action, RouteConfig, Target};

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
    /// The admin interface, `None` when the bootstrap has no `admin` address.
    pub admin: Option<(String, u16)>,
}

impl Snapshot {
    /// The static part of a bootstrap: `static_resources.listeners` and `clusters`.
    pub fn from_bootstrap(b: &Bootstrap) -> Result<(Snapshot, ProxySettings), Vec<ModelError>> {
        let mut errors = Errors::default();
        let settings = ProxySettings {
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
        if b.dynamic_resources.is_some() {
            errors.push(
                At::root("dynamic_resources").unsupported("dynamic_resources (xDS over ADS)"),
            );
        }
        let mut snapshot = Snapshot::default();
        let resources = b.static_resources.clone().unwrap_or_default();
        let root = At::root("static_resources");
        for (i, c) in resources.clusters.iter().enumerate() {
            let at = root.key("clusters").index(i);
            match Cluster::from_proto(c, &at) {
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
            match Listener::from_proto(l, &at) {
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
        if !resources.secrets.is_empty() {
            errors.push(root.key("secrets").unsupported("static secrets (TLS)"));
        }
        errors.into_result((snapshot, settings))
    }

    /// Envoy refuses a static listener whose inline routes name clusters that do not exist
    /// (`validate_clusters`); so does Bosun.
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
                NetworkFilter::Tcp(t) => {
                    for (name, _) in &t.clusters {
                        if !self.clusters.contains_key(name) {
                            errors.push(fat.error(format!("tcp_proxy: unknown cluster {name:?}")));
                        }
                    }
                }
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
