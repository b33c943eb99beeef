//! Configuration over ADS: the proxy's [`Consumer`] of the xDS client.
//!
//! Each update is the complete set of one type (CDS, EDS, LDS, RDS). It is converted with proxy-model
//! in full, composed with the bootstrap's static resources into a new [`Snapshot`], the new listeners
//! are bound, and only then is the new [`Runtime`] swapped in and the update ACKed. A resource that does
//! not convert, a name that clashes with a static resource, or a listener that cannot bind, is a
//! `name: reason` rejection: the whole update is NACKed and the previous runtime keeps serving.
//!
//! What carries over a swap:
//! - a cluster whose `Cluster` and endpoints did not change keeps its `ClusterRuntime` (hosts,
//!   outlier ejections, connection pools, circuit-breaker counts);
//! - a cluster whose endpoints only changed (EDS) gets a new `ClusterRuntime` that keeps the live
//!   hosts that remain (same address, weight and health);
//! - a cluster whose load assignment is removed (delta EDS) while it stays keeps the endpoints it
//!   had, as Envoy takes an EDS update without the cluster's assignment; likewise a route
//!   configuration removed (delta RDS) while a listener names it stays, as Envoy ignores that;
//! - a listener whose address did not change keeps its socket and accept loop; new connections take
//!   the new filter chains, open ones keep the chain they were accepted with;
//! - stats live in the registry by name, whatever is rebuilt.
//!
//! SDS over ADS: a cluster or listener whose TLS context names a secret that has not arrived yet
//! (`sds_config: {ads: {}}`) is held back, warming, as Envoy does: not NACKed, not running (a
//! running one of the same name keeps serving meanwhile), and built once its secrets are there. A
//! secret that changes rebuilds what names it: new connections use the new certificate, open ones
//! keep theirs. A secret that does not build (a bad PEM) NACKs the SDS update.
//!
//! RDS: an HTTP connection manager with `rds` looks its route configuration up by name in the
//! current runtime on every request. Envoy keeps a listener warming until its routes arrive; Bosun
//! starts serving it at once and answers 404 (flag NR) until the route configuration arrives. At
//! start-up this makes no difference: `/ready` only turns LIVE once the client's initial fetch (which
//! waits for the routes the listeners name) is complete.
//!
//! VHDS: a route configuration from RDS with `vhds` (delta ADS only, as Envoy) takes the virtual hosts
//! named `<its name>/…` from VHDS after its own, in name order. Every VHDS virtual host is held,
//! whatever table it names, so one that comes before its table is used once the table arrives. A new
//! RDS version keeps the VHDS virtual hosts; a VHDS update that does not build with its table is
//! NACKed naming the virtual host. At start-up the client's initial fetch waits for the first VHDS
//! virtual host of each such table; later, a new table serves its own virtual hosts until its VHDS
//! ones arrive.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use proxy_model::Snapshot;
use proxy_model::cluster::{Cluster, Discovery};
use proxy_model::error::At;
use proxy_model::listener::Listener;
use proxy_model::route::RouteConfig;
use proxy_model::snapshot::AdsApi;
use proxy_model::tls::Secrets;
use tokio::sync::watch;
use xds_api::pb::envoy::config::cluster::v3::Cluster as ClusterProto;
use xds_api::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use xds_api::pb::envoy::config::listener::v3::Listener as ListenerProto;
use xds_api::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost as VirtualHostProto};
use xds_api::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use xds_api::secrets::{SecretSource, cluster_secrets, listener_secrets};
use xds_client::resources::{rds_subscriptions, vhds_for};
use xds_client::{AdsStatus, Consumer, Rejection, ResourceSet, ResourceType, Resources};

use crate::{DynamicInfo, Proxy, Received, ReceivedRoute, Runtime, bind};

/// The proxy's ADS consumer: holds the accepted dynamic resources and swaps runtimes.
pub(crate) struct Dynamic {
    proxy: Arc<Proxy>,
    /// The bootstrap's static listeners and clusters, part of every snapshot.
    statics: Snapshot,
    /// The bootstrap's `static_resources.secrets`, which dynamic resources may name too.
    static_secrets: HashMap<String, Arc<Secret>>,
    /// The bootstrap's ADS protocol: a route configuration's `vhds` needs delta.
    ads: AdsApi,
    state: State,
}

impl std::fmt::Debug for Dynamic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dynamic")
            .field("clusters", &self.state.clusters.len())
            .field("listeners", &self.state.listeners.len())
            .field("route_configs", &self.state.routes.len())
            .finish_non_exhaustive()
    }
}

/// The accepted dynamic resources, each with its proto (to tell a changed one from an unchanged one),
/// its model and when it last changed.
#[derive(Clone, Default)]
struct State {
    clusters: BTreeMap<String, DynCluster>,
    /// EDS load assignments by `cluster_name` (the EDS service name).
    endpoints: BTreeMap<String, Arc<ClusterLoadAssignment>>,
    listeners: BTreeMap<String, DynListener>,
    routes: BTreeMap<String, DynRoute>,
    /// Every virtual host received over VHDS, in name order, whether or not a table with `vhds` names
    /// it.
    vhosts: Vec<Arc<VirtualHostProto>>,
    /// Secrets received over ADS, by name.
    secrets: BTreeMap<String, DynSecret>,
    /// Clusters and listeners warming until the ADS secrets they name arrive.
    waiting_clusters: BTreeMap<String, Arc<ClusterProto>>,
    waiting_listeners: BTreeMap<String, Arc<ListenerProto>>,
}

#[derive(Clone)]
struct DynCluster {
    proto: Arc<ClusterProto>,
    /// The EDS service name, for an EDS cluster.
    service: Option<String>,
    /// The cluster as CDS gave it.
    base: Arc<Cluster>,
    /// With its EDS endpoints.
    effective: Arc<Cluster>,
    updated: SystemTime,
}

#[derive(Clone)]
struct DynListener {
    proto: Arc<ListenerProto>,
    model: Arc<Listener>,
    updated: SystemTime,
}

#[derive(Clone)]
struct DynSecret {
    secret: Arc<Secret>,
    updated: SystemTime,
}

#[derive(Clone)]
struct DynRoute {
    proto: Arc<RouteConfiguration>,
    /// The VHDS virtual hosts it was built with, in name order.
    vhds: Arc<[Arc<VirtualHostProto>]>,
    model: Arc<RouteConfig>,
    updated: SystemTime,
}

impl Dynamic {
    pub(crate) fn new(
        proxy: Arc<Proxy>,
        statics: Snapshot,
        static_secrets: HashMap<String, Arc<Secret>>,
        ads: AdsApi,
    ) -> Dynamic {
        Dynamic {
            proxy,
            statics,
            static_secrets,
            ads,
            state: State::default(),
        }
    }

    /// The secrets TLS contexts can name in `next`.
    fn secrets(&self, next: &State) -> Secrets {
        Secrets {
            statics: self.static_secrets.clone(),
            ads: next
                .secrets
                .iter()
                .map(|(n, s)| (n.clone(), s.secret.clone()))
                .collect(),
        }
    }

    fn clusters(
        &self,
        v: Vec<Arc<ClusterProto>>,
        next: &mut State,
        rejections: &mut Vec<Rejection>,
    ) {
        let now = SystemTime::now();
        let secrets = self.secrets(next);
        let (clusters, waiting) = build_or_wait(
            v,
            &self.state.clusters,
            |p: &ClusterProto| waits_for_secrets(&cluster_secrets(p), next),
            |p| build_cluster(p, &secrets, next, now),
            rejections,
        );
        next.clusters = clusters;
        next.waiting_clusters = waiting;
    }

    /// SDS: the secrets received over ADS. Builds what waited for them and rebuilds what names one
    /// that changed.
    fn secrets_update(
        &self,
        v: Vec<Arc<Secret>>,
        next: &mut State,
        rejections: &mut Vec<Rejection>,
    ) {
        let now = SystemTime::now();
        next.secrets = v
            .into_iter()
            .map(|secret| {
                let updated = match self.state.secrets.get(&secret.name) {
                    Some(old) if same(&old.secret, &secret) => old.updated,
                    _ => now,
                };
                (secret.name.clone(), DynSecret { secret, updated })
            })
            .collect();
        let changed = |name: &str| match (self.state.secrets.get(name), next.secrets.get(name)) {
            (Some(a), Some(b)) => !same(&a.secret, &b.secret),
            // A secret gone leaves what uses it as it is, as Envoy keeps the last one it had.
            (_, None) => false,
            (None, Some(_)) => true,
        };
        let names_changed = |refs: &[(String, SecretSource)]| {
            refs.iter()
                .any(|(n, s)| *s == SecretSource::Ads && changed(n))
        };
        let secrets = self.secrets(next);
        let rebuild = to_rebuild(
            next.clusters.values().map(|c| &c.proto),
            &mut next.waiting_clusters,
            cluster_secrets,
            names_changed,
            &next.secrets,
        );
        for p in rebuild {
            match build_cluster(p, &secrets, next, now) {
                Ok(c) => {
                    next.clusters.insert(c.proto.name.clone(), c);
                }
                Err(r) => rejections.push(r),
            }
        }
        let rebuild = to_rebuild(
            next.listeners.values().map(|l| &l.proto),
            &mut next.waiting_listeners,
            listener_secrets,
            names_changed,
            &next.secrets,
        );
        for p in rebuild {
            match build_listener(p, &secrets, now) {
                Ok(l) => {
                    next.listeners.insert(l.proto.name.clone(), l);
                }
                Err(r) => rejections.push(r),
            }
        }
    }

    /// EDS: new endpoints for the clusters whose load assignment changed. Returns those clusters.
    fn endpoints(
        &self,
        v: Vec<Arc<ClusterLoadAssignment>>,
        next: &mut State,
        rejections: &mut Vec<Rejection>,
    ) -> HashSet<String> {
        let now = SystemTime::now();
        next.endpoints = v
            .into_iter()
            .map(|cla| (cla.cluster_name.clone(), cla))
            .collect();
        // A load assignment removed (delta) while its cluster stays: the cluster keeps the endpoints
        // it had, as Envoy takes an EDS update without its assignment (`update_empty`).
        for service in next.clusters.values().filter_map(|c| c.service.as_ref()) {
            if !next.endpoints.contains_key(service)
                && let Some(old) = self.state.endpoints.get(service)
            {
                next.endpoints.insert(service.clone(), old.clone());
            }
        }
        let mut changed = HashSet::new();
        for (name, c) in &mut next.clusters {
            let Some(service) = &c.service else { continue };
            let (old, new) = (
                self.state.endpoints.get(service),
                next.endpoints.get(service),
            );
            match (old, new) {
                (Some(a), Some(b)) if same(a, b) => continue,
                (None, None) => continue,
                _ => {}
            }
            match new {
                Some(cla) => match c.base.with_load_assignment(cla) {
                    Ok(m) => c.effective = Arc::new(m),
                    Err(e) => {
                        rejections.push(Rejection::new(service.clone(), e.to_string()));
                        continue;
                    }
                },
                None => c.effective = c.base.clone(),
            }
            c.updated = now;
            changed.insert(name.clone());
        }
        changed
    }

    fn listeners(
        &self,
        v: Vec<Arc<ListenerProto>>,
        next: &mut State,
        rejections: &mut Vec<Rejection>,
    ) {
        let now = SystemTime::now();
        let secrets = self.secrets(next);
        let (listeners, waiting) = build_or_wait(
            v,
            &self.state.listeners,
            |p: &ListenerProto| waits_for_secrets(&listener_secrets(p), next),
            |p| build_listener(p, &secrets, now),
            rejections,
        );
        next.listeners = listeners;
        next.waiting_listeners = waiting;
    }

    fn routes(
        &self,
        v: Vec<Arc<RouteConfiguration>>,
        next: &mut State,
        rejections: &mut Vec<Rejection>,
    ) {
        let now = SystemTime::now();
        next.routes = BTreeMap::new();
        for p in v {
            let vhds = vhds_of(&p, &next.vhosts);
            if let Some(old) = self.state.routes.get(&p.name)
                && same(&old.proto, &p)
                && same_all(&old.vhds, &vhds)
            {
                next.routes.insert(p.name.clone(), old.clone());
                continue;
            }
            let name = p.name.clone();
            let old = self.state.routes.get(&p.name);
            match self.build_route(p, vhds, old, now) {
                Ok(r) => {
                    next.routes.insert(name, r);
                }
                // The RDS update is what is NACKed: it names the table, whatever failed in it.
                Err(errors) => rejections.push(refused(&name, &errors.into_flat())),
            }
        }
        // A table removed (delta) while a listener still names it stays, as Envoy ignores the
        // removal of a route configuration it is subscribed to.
        let listeners: Vec<&ListenerProto> = next.listeners.values().map(|l| &*l.proto).collect();
        for name in rds_subscriptions(&listeners).into_keys() {
            if !next.routes.contains_key(&name)
                && let Some(old) = self.state.routes.get(&name)
            {
                next.routes.insert(name, old.clone());
            }
        }
    }

    /// VHDS: the virtual hosts received. Rebuilds the tables whose VHDS virtual hosts changed; one
    /// that does not build NACKs the update, naming the virtual hosts at fault.
    fn virtual_hosts(
        &self,
        v: Vec<Arc<VirtualHostProto>>,
        next: &mut State,
        rejections: &mut Vec<Rejection>,
    ) {
        let now = SystemTime::now();
        next.vhosts = v;
        let names: Vec<String> = next.routes.keys().cloned().collect();
        for name in names {
            let Some(old) = next.routes.get(&name) else {
                continue;
            };
            let vhds = vhds_of(&old.proto, &next.vhosts);
            if same_all(&old.vhds, &vhds) {
                continue;
            }
            match self.build_route(old.proto.clone(), vhds, Some(old), now) {
                Ok(r) => {
                    next.routes.insert(name, r);
                }
                Err(errors) => rejections.extend(vhds_refusal(&name, errors)),
            }
        }
    }

    /// A table from RDS with the VHDS virtual hosts `vhds` after its own; the hosts `old` (the
    /// table it replaces) was built with are taken as built, not built again.
    fn build_route(
        &self,
        proto: Arc<RouteConfiguration>,
        vhds: Vec<Arc<VirtualHostProto>>,
        old: Option<&DynRoute>,
        now: SystemTime,
    ) -> Result<DynRoute, proxy_model::route::RdsErrors> {
        // By the address of their message: `old` holds those, so no other message has it.
        let built: HashMap<*const VirtualHostProto, Arc<proxy_model::route::VirtualHost>> = old
            .map(|old| {
                let own = old.proto.virtual_hosts.len();
                old.vhds
                    .iter()
                    .zip(old.model.virtual_hosts.iter().skip(own))
                    .map(|(p, v)| (Arc::as_ptr(p), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let model = RouteConfig::from_rds(
            &proto,
            &At::root(""),
            Some(self.ads),
            vhds.iter().map(|v| &**v),
            |vh| built.get(&std::ptr::from_ref(vh)).cloned(),
        )?;
        Ok(DynRoute {
            proto,
            vhds: vhds.into(),
            model: Arc::new(model),
            updated: now,
        })
    }

    /// Composes `next` with the static resources, binds the new listeners, swaps the runtime in and
    /// starts and stops accept loops. Nothing changes if anything is rejected.
    fn commit(
        &mut self,
        next: State,
        endpoints_only: &HashSet<String>,
    ) -> Result<(), Vec<Rejection>> {
        // A listener not running as it is now (new, or a new version of it).
        let changed = |l: &Arc<Listener>| {
            self.state
                .listeners
                .get(&l.name)
                .is_none_or(|old| !Arc::ptr_eq(&old.model, l))
        };
        let snapshot = Snapshot::compose(
            &self.statics,
            next.clusters.values().map(|c| c.effective.clone()),
            next.listeners.values().map(|l| l.model.clone()),
            changed,
            next.routes
                .iter()
                .map(|(n, r)| (n.clone(), r.model.clone()))
                .collect(),
        )
        .map_err(|refused| {
            refused
                .into_iter()
                .map(|r| Rejection::new(r.name, r.reason))
                .collect::<Vec<_>>()
        })?;

        // Open the access logs and bind what is new (or moved) before anything is swapped: a file
        // that cannot be opened or a bind failure is a rejection.
        let listeners = &self.proxy.listeners;
        let mut rejections = Vec::new();
        let mut to_start = Vec::new();
        for l in next.listeners.values().map(|l| &l.model) {
            if changed(l)
                && let Err(e) = crate::access_log::open_files(l)
            {
                rejections.push(Rejection::new(l.name.clone(), e.to_string()));
                continue;
            }
            if !l.bind_to_port || listeners.address(&l.name) == Some((l.host.clone(), l.port)) {
                continue;
            }
            match bind(&l.host, l.port, l.transparent) {
                Ok(socket) => to_start.push((l.clone(), socket)),
                Err(e) => rejections.push(Rejection::new(
                    l.name.clone(),
                    format!("cannot listen on {}:{}: {e}", l.host, l.port),
                )),
            }
        }
        if !rejections.is_empty() {
            return Err(rejections);
        }
        let to_stop: Vec<String> = listeners
            .names()
            .into_iter()
            .filter(|n| !self.statics.listeners.iter().any(|s| &s.name == n))
            .filter(|n| next.listeners.get(n).is_none_or(|l| !l.model.bind_to_port))
            .collect();

        let info = DynamicInfo {
            listeners: next
                .listeners
                .iter()
                .map(|(n, l)| (n.clone(), received(&l.proto, l.updated)))
                .collect(),
            clusters: next
                .clusters
                .iter()
                .map(|(n, c)| (n.clone(), received(&c.proto, c.updated)))
                .collect(),
            route_configs: next
                .routes
                .iter()
                .map(|(n, r)| {
                    let route = ReceivedRoute {
                        table: received(&r.proto, r.updated),
                        vhds: r.vhds.clone(),
                    };
                    (n.clone(), route)
                })
                .collect(),
            secrets: next
                .secrets
                .iter()
                .map(|(n, s)| (n.clone(), received(&s.secret, s.updated)))
                .collect(),
            warming_listeners: next
                .waiting_listeners
                .iter()
                .map(|(n, p)| {
                    let missing = missing_secrets(&listener_secrets(p), &next.secrets);
                    (n.clone(), (p.clone(), missing))
                })
                .collect(),
            warming_clusters: next
                .waiting_clusters
                .iter()
                .map(|(n, p)| {
                    let missing = missing_secrets(&cluster_secrets(p), &next.secrets);
                    (n.clone(), (p.clone(), missing))
                })
                .collect(),
        };
        let previous = self.proxy.runtime.load_full();
        let runtime = Runtime::build(
            snapshot,
            Some(&previous),
            &self.proxy.registry,
            &|name| endpoints_only.contains(name),
            info,
        );
        self.proxy.runtime.store(Arc::new(runtime));
        for (l, socket) in to_start {
            tracing::info!(listener = %l.name, address = %format!("{}:{}", l.host, l.port), "listening");
            listeners.start(&self.proxy, &l, socket);
        }
        for name in to_stop {
            listeners.stop(&name);
        }
        self.state = next;
        Ok(())
    }
}

impl Consumer for Dynamic {
    fn apply(&mut self, set: ResourceSet<'_>) -> Result<(), Vec<Rejection>> {
        let resources = set.to_resources();
        let ty = resources.resource_type();
        let count = resources.len();
        let mut next = self.state.clone();
        let mut rejections = Vec::new();
        let mut endpoints_only = HashSet::new();
        match resources {
            Resources::Clusters(v) => self.clusters(v, &mut next, &mut rejections),
            Resources::Endpoints(v) => {
                endpoints_only = self.endpoints(v, &mut next, &mut rejections);
            }
            Resources::Listeners(v) => self.listeners(v, &mut next, &mut rejections),
            Resources::Routes(v) => self.routes(v, &mut next, &mut rejections),
            Resources::VirtualHosts(v) => self.virtual_hosts(v, &mut next, &mut rejections),
            Resources::Secrets(v) => self.secrets_update(v, &mut next, &mut rejections),
        }
        if rejections.is_empty() {
            self.commit(next, &endpoints_only)?;
            tracing::info!(%ty, resources = count, "xDS update applied");
            Ok(())
        } else {
            Err(rejections)
        }
    }

    fn update_done(&mut self, ty: ResourceType, accepted: bool) {
        let Some(stats) = self.proxy.xds_update_stats() else {
            return;
        };
        let counters = match ty {
            ResourceType::Cluster => &stats.cds,
            ResourceType::Listener => &stats.lds,
            _ => return,
        };
        counters.attempt.inc();
        if accepted {
            counters.success.inc();
        } else {
            counters.rejected.inc();
        }
    }

    fn initial_config_complete(&mut self) {
        self.proxy.set_ready();
        tracing::info!(
            listeners = self.state.listeners.len(),
            clusters = self.state.clusters.len(),
            route_configs = self.state.routes.len(),
            "initial xDS configuration applied; bosun proxy ready"
        );
    }
}

/// Whether some ADS secret of `refs` has not arrived in `next`.
fn waits_for_secrets(refs: &[(String, SecretSource)], next: &State) -> bool {
    !missing_secrets(refs, &next.secrets).is_empty()
}

/// The ADS secrets of `refs` that are not among `secrets`.
fn missing_secrets(
    refs: &[(String, SecretSource)],
    secrets: &BTreeMap<String, DynSecret>,
) -> Vec<String> {
    refs.iter()
        .filter(|(n, s)| *s == SecretSource::Ads && !secrets.contains_key(n))
        .map(|(n, _)| n.clone())
        .collect()
}

/// What an SDS update builds again, of clusters or of listeners: those running that name a changed
/// secret (`names_changed`), and those waiting whose secrets are all there now (taken out of
/// `waiting`).
fn to_rebuild<'a, P: 'a>(
    running: impl Iterator<Item = &'a Arc<P>>,
    waiting: &mut BTreeMap<String, Arc<P>>,
    refs: impl Fn(&P) -> Vec<(String, SecretSource)>,
    names_changed: impl Fn(&[(String, SecretSource)]) -> bool,
    secrets: &BTreeMap<String, DynSecret>,
) -> Vec<Arc<P>> {
    let mut rebuild: Vec<Arc<P>> = running
        .filter(|p| names_changed(&refs(p)))
        .cloned()
        .collect();
    for (name, p) in std::mem::take(waiting) {
        if missing_secrets(&refs(&p), secrets).is_empty() {
            rebuild.push(p);
        } else {
            waiting.insert(name, p);
        }
    }
    rebuild
}

/// What a secret holds, as the config dump names it.
fn received<T>(proto: &Arc<T>, updated: SystemTime) -> Received<T> {
    Received {
        proto: proto.clone(),
        updated,
    }
}

/// A cluster from CDS, with its EDS endpoints if `next` has them.
fn build_cluster(
    p: Arc<ClusterProto>,
    secrets: &Secrets,
    next: &State,
    now: SystemTime,
) -> Result<DynCluster, Rejection> {
    let base = Cluster::from_proto_with(&p, &At::root(""), secrets)
        .map(Arc::new)
        .map_err(|e| refused(&p.name, &e))?;
    let service = (base.discovery == Discovery::Eds).then(|| eds_service(&p));
    let effective = match service.as_ref().and_then(|s| next.endpoints.get(s)) {
        Some(cla) => Arc::new(
            base.with_load_assignment(cla)
                .map_err(|e| Rejection::new(p.name.clone(), e.to_string()))?,
        ),
        None => base.clone(),
    };
    Ok(DynCluster {
        proto: p,
        service,
        base,
        effective,
        updated: now,
    })
}

fn build_listener(
    p: Arc<ListenerProto>,
    secrets: &Secrets,
    now: SystemTime,
) -> Result<DynListener, Rejection> {
    let model = Listener::from_proto_with(&p, &At::root(""), secrets)
        .map(Arc::new)
        .map_err(|e| refused(&p.name, &e))?;
    Ok(DynListener {
        proto: p,
        model,
        updated: now,
    })
}

/// An EDS cluster's service name: `eds_cluster_config.service_name`, or the cluster's name.
fn eds_service(p: &ClusterProto) -> String {
    p.eds_cluster_config
        .as_ref()
        .map(|e| e.service_name.as_str())
        .filter(|s| !s.is_empty())
        .unwrap_or(&p.name)
        .to_owned()
}

/// The VHDS virtual hosts of the table `p` (none unless it has `vhds`), in name order.
fn vhds_of(p: &RouteConfiguration, vhosts: &[Arc<VirtualHostProto>]) -> Vec<Arc<VirtualHostProto>> {
    if p.vhds.is_none() {
        return Vec::new();
    }
    vhds_for(vhosts, &p.name).cloned().collect()
}

/// A VHDS update's refusal: each virtual host at fault by its own name; the table if its own fields
/// are at fault (not expected: it built before, and only what VHDS adds changed).
fn vhds_refusal(table: &str, errors: proxy_model::route::RdsErrors) -> Vec<Rejection> {
    if !errors.route_config.is_empty() {
        return vec![refused(table, &errors.into_flat())];
    }
    errors
        .vhosts
        .iter()
        .map(|(name, e)| refused(name, e))
        .collect()
}

fn refused(name: &str, errors: &[proxy_model::ModelError]) -> Rejection {
    let r = Snapshot::refused(name, errors);
    Rejection::new(r.name, r.reason)
}

/// Logs every ACK (info) and NACK (warn) the ADS client sends, with the versions it holds.
pub(crate) async fn log_acks(mut status: watch::Receiver<AdsStatus>) {
    let (mut acks, mut nacks) = {
        let s = status.borrow();
        (s.acks, s.nacks)
    };
    let mut versions = BTreeMap::<ResourceType, String>::new();
    while status.changed().await.is_ok() {
        let s = status.borrow_and_update().clone();
        if s.acks > acks {
            for (ty, v) in &s.acked_versions {
                if versions.get(ty) != Some(v) {
                    tracing::info!(%ty, version = %v, endpoint = %s.endpoint, "xDS ACK");
                }
            }
            versions = s.acked_versions.clone();
        }
        if s.nacks > nacks {
            tracing::warn!(
                endpoint = %s.endpoint,
                "xDS NACK (the previous configuration keeps serving): {}",
                s.last_nack.as_deref().unwrap_or("")
            );
        }
        acks = s.acks;
        nacks = s.nacks;
    }
}

/// A built resource and the message it was built from.
trait Built {
    type Proto: PartialEq;
    fn proto(&self) -> &Arc<Self::Proto>;
}

impl Built for DynCluster {
    type Proto = ClusterProto;
    fn proto(&self) -> &Arc<ClusterProto> {
        &self.proto
    }
}

impl Built for DynListener {
    type Proto = ListenerProto;
    fn proto(&self) -> &Arc<ListenerProto> {
        &self.proto
    }
}

/// A resource's name (clusters and listeners are named alike).
trait Named {
    fn name(&self) -> &str;
}

impl Named for ClusterProto {
    fn name(&self) -> &str {
        &self.name
    }
}

impl Named for ListenerProto {
    fn name(&self) -> &str {
        &self.name
    }
}

/// Resources waiting for their secrets, by name.
type Waiting<P> = BTreeMap<String, Arc<P>>;

/// The resources of an update (`v`) built, by name: an unchanged one is the running one; one whose
/// secrets have not all arrived (`waits`) waits, returned apart, while the running one of its name (if
/// any) keeps serving; a new or changed one is built, or rejected.
fn build_or_wait<R: Built<Proto: Named> + Clone>(
    v: Vec<Arc<R::Proto>>,
    running: &BTreeMap<String, R>,
    waits: impl Fn(&R::Proto) -> bool,
    mut build: impl FnMut(Arc<R::Proto>) -> Result<R, Rejection>,
    rejections: &mut Vec<Rejection>,
) -> (BTreeMap<String, R>, Waiting<R::Proto>) {
    let mut built = BTreeMap::new();
    let mut waiting = BTreeMap::new();
    for p in v {
        let name = p.name().to_owned();
        let old = running.get(&name);
        if let Some(old) = old
            && same(old.proto(), &p)
        {
            built.insert(name, old.clone());
            continue;
        }
        if waits(&p) {
            if let Some(old) = old {
                built.insert(name.clone(), old.clone());
            }
            waiting.insert(name, p);
            continue;
        }
        match build(p) {
            Ok(r) => {
                built.insert(name, r);
            }
            Err(r) => rejections.push(r),
        }
    }
    (built, waiting)
}

/// Whether two lists of resources are the same, one by one (see [`same`]).
fn same_all<T: PartialEq>(a: &[Arc<T>], b: &[Arc<T>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same(a, b))
}

/// Whether a resource is unchanged: the same decoded message (the xDS client keeps unchanged ones
/// shared), or an equal one.
fn same<T: PartialEq>(a: &Arc<T>, b: &Arc<T>) -> bool {
    Arc::ptr_eq(a, b) || **a == **b
}
