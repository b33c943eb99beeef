//! What both ADS variants share: subscriptions, the cache of accepted resources, validation through the
//! consumer, warming, and the NACK message. The variants only differ in how they read responses and
//! write requests (`sotw.rs`, `delta.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use xds_api::pb::envoy::config::core::v3::Node;
use xds_api::pb::google::protobuf::Any;
use xds_api::pb::google::rpc::Status;

use crate::resources::{
    self, DEFAULT_INITIAL_FETCH_TIMEOUT, FetchTimeout, Rejection, Resource, ResourceType,
    Resources, Subscriptions,
};

/// gRPC `INVALID_ARGUMENT`, the code of a NACK's `error_detail`.
pub const INVALID_ARGUMENT: i32 = 3;

/// The longest NACK message the client sends; longer lists end with "… and N more".
pub const MAX_NACK_MESSAGE: usize = 4096;

/// What receives the configuration: it validates and applies the complete set of one type at a time.
pub trait Consumer {
    /// Validates `resources`, the complete current set of one type (sorted by name), and applies it if it
    /// is good. Return the rejected resources as `name: reason` to NACK the update; the consumer must
    /// then keep serving its previous set of that type (the client keeps its previous set too, and
    /// hands that plus the next update in the following call).
    ///
    /// The set is lent: a consumer keeps what it needs ([`ResourceSet::to_resources`] copies all of
    /// it), so that an update of one of thousands of resources does not touch every one.
    fn apply(&mut self, resources: ResourceSet<'_>) -> Result<(), Vec<Rejection>>;

    /// Called once, when the initial configuration is complete: clusters and their endpoints, then
    /// listeners and their routes have been applied (or their initial fetch timed out). A proxy reports
    /// ready from then on.
    fn initial_config_complete(&mut self) {}

    /// Called after every response of type `ty` with whether it was accepted (ACKed) or rejected
    /// (NACKed), whatever rejected it: a resource that does not decode, a duplicate name, or
    /// [`Consumer::apply`]. For update counters (Envoy's `cluster_manager.cds.update_success`, …).
    fn update_done(&mut self, _ty: ResourceType, _accepted: bool) {}
}

/// Where the client is in the initial fetch, Envoy's warming order: CDS, then EDS for the clusters CDS
/// named, then LDS, then RDS for the routes LDS named (and VHDS for the route configurations with
/// `vhds`); the secrets (SDS) clusters and listeners name are waited for with their endpoints and
/// routes.
///
/// As in Envoy, what a step waits for is given up on when its config source's
/// `initial_fetch_timeout` has passed (counted from the start of the step, on the current stream)
/// or when a response of its type is rejected: a bad configuration must not keep a proxy from
/// starting with what it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Warming {
    /// Waiting for the first accepted CDS response.
    Clusters,
    /// Waiting for the endpoints of every EDS cluster.
    ClusterEndpoints,
    /// LDS requested; waiting for the first accepted LDS response.
    Listeners,
    /// Waiting for every route configuration the listeners name, and for the first virtual host of
    /// each one that loads more over VHDS.
    ListenerRoutes,
    /// The initial configuration is complete.
    Done,
}

/// What one response (or timeout) did.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The consumer accepted the update; `version` is now the ACKed version of `ty`.
    Accepted {
        ty: ResourceType,
        version: String,
        /// How many resources of this type the consumer now holds.
        resources: usize,
    },
    /// The update was NACKed; the previous set keeps serving.
    Rejected {
        type_url: String,
        /// The NACK's `error_detail.message`: `name: reason` per rejected resource.
        message: String,
    },
    /// A response for a type the client never subscribed to; no request follows (as Envoy).
    Ignored { type_url: String },
    /// Nothing arrived (a timeout or a subscription change).
    Nothing,
}

/// The result of feeding the protocol core: the requests to send, in order, and what happened.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome<Req> {
    pub requests: Vec<Req>,
    pub event: Event,
    /// True exactly once per client: the call that completed the initial configuration.
    pub initial_config_complete: bool,
}

/// One decoded resource of a response, with its version (delta) and name.
pub(crate) struct Item {
    pub name: String,
    pub version: String,
    pub resource: Resource,
}

/// A change in what the client is subscribed to for one type.
#[derive(Debug)]
pub struct SubChange {
    pub ty: ResourceType,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Cached {
    pub version: String,
    pub resource: Resource,
}

/// The complete current set of one type's resources, as [`Consumer::apply`] is lent it: in name
/// order, read where the client holds it.
#[derive(Debug, Clone, Copy)]
pub struct ResourceSet<'a> {
    ty: ResourceType,
    held: &'a BTreeMap<String, Cached>,
}

impl<'a> ResourceSet<'a> {
    /// The type of these resources.
    pub fn resource_type(&self) -> ResourceType {
        self.ty
    }

    /// How many resources there are.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// The resources in name order.
    pub fn iter(&self) -> impl Iterator<Item = &'a Resource> + 'a {
        self.held.values().map(|c| &c.resource)
    }

    /// The resource named `name`.
    pub fn get(&self, name: &str) -> Option<&'a Resource> {
        self.held.get(name).map(|c| &c.resource)
    }

    /// The whole set, owned (shared pointers to the resources, not copies of them).
    pub fn to_resources(&self) -> Resources {
        Resources::collect(self.ty, self.iter())
    }
}

#[derive(Debug, Default)]
pub struct TypeState {
    /// Subscribed names; unused for wildcard types.
    pub names: BTreeSet<String>,
    /// How long the initial fetch waits for each subscribed name.
    pub timeouts: Subscriptions,
    /// Whether the type is subscribed at all (wildcard types once started; named types once named).
    pub active: bool,
    /// Names warming no longer waits for: answered (sent, or reported removed) since they were
    /// subscribed, or given up on (their initial fetch timed out, or a response of this type was
    /// rejected during warming).
    pub settled: BTreeSet<String>,
    /// The accepted resources by name, with their per-resource version (delta).
    pub cache: BTreeMap<String, Cached>,
    /// The last accepted `version_info` (SotW) or `system_version_info` (delta).
    pub version: String,
    /// The nonce of the last response on this stream.
    pub nonce: String,
    /// An update of this type has been accepted.
    pub accepted: bool,
}

#[derive(Debug)]
pub struct Core {
    pub types: [TypeState; ResourceType::ALL.len()],
    /// The route configurations that a VHDS response has carried a virtual host for (or whose wait
    /// was given up on): one with `vhds` warms until it is here, as Envoy's VHDS subscription is
    /// ready on its first update.
    pub vhds_settled: BTreeSet<String>,
    /// How long the initial fetch waits for the first CDS and the first LDS response (the
    /// bootstrap's `cds_config` and `lds_config`).
    pub cds_fetch_timeout: FetchTimeout,
    pub lds_fetch_timeout: FetchTimeout,
    pub warming: Warming,
    pub complete_signaled: bool,
    pub node: Node,
    /// The next request built carries `node` (the first request of a stream).
    pub node_pending: bool,
}

impl Core {
    pub(crate) fn new(node: Node) -> Core {
        let mut core = Core {
            types: Default::default(),
            vhds_settled: BTreeSet::new(),
            cds_fetch_timeout: Some(DEFAULT_INITIAL_FETCH_TIMEOUT),
            lds_fetch_timeout: Some(DEFAULT_INITIAL_FETCH_TIMEOUT),
            warming: Warming::Clusters,
            complete_signaled: false,
            node,
            node_pending: true,
        };
        core.types[ResourceType::Cluster.index()].active = true;
        core
    }

    pub(crate) fn st(&self, ty: ResourceType) -> &TypeState {
        &self.types[ty.index()]
    }

    pub(crate) fn st_mut(&mut self, ty: ResourceType) -> &mut TypeState {
        &mut self.types[ty.index()]
    }

    /// The node, once per stream.
    pub(crate) fn take_node(&mut self) -> Option<Node> {
        if std::mem::take(&mut self.node_pending) {
            Some(self.node.clone())
        } else {
            None
        }
    }

    /// A new stream: nonces are per stream, the node goes on its first request. Returns the types to
    /// request, in warming order.
    pub(crate) fn start_stream(&mut self) -> Vec<ResourceType> {
        self.node_pending = true;
        for st in &mut self.types {
            st.nonce.clear();
        }
        ResourceType::ALL
            .into_iter()
            .filter(|&ty| {
                let st = self.st(ty);
                st.active && (ty.is_wildcard() || !st.names.is_empty())
            })
            .collect()
    }

    /// Sets the subscribed names of a named type, with how long the initial fetch waits for each.
    pub(crate) fn set_names(
        &mut self,
        ty: ResourceType,
        subscriptions: Subscriptions,
    ) -> Option<SubChange> {
        if ty.is_wildcard() {
            return None;
        }
        let names: BTreeSet<String> = subscriptions.keys().cloned().collect();
        let st = self.st_mut(ty);
        st.timeouts = subscriptions;
        if st.names == names && st.active {
            return None;
        }
        let added: Vec<String> = names.difference(&st.names).cloned().collect();
        let removed: Vec<String> = st.names.difference(&names).cloned().collect();
        for name in &removed {
            st.cache.remove(name);
            st.settled.remove(name);
        }
        st.names = names;
        if !st.active && st.names.is_empty() {
            return None;
        }
        st.active = true;
        Some(SubChange { ty, added, removed })
    }

    /// Validates an update of `ty` through the consumer and, if accepted, commits it and moves warming
    /// on. `replace` drops what the update does not name (SotW LDS/CDS).
    pub(crate) fn apply<C: Consumer + ?Sized>(
        &mut self,
        ty: ResourceType,
        version: &str,
        items: Vec<Item>,
        removed: &[String],
        replace: bool,
        consumer: &mut C,
    ) -> Result<(Vec<SubChange>, usize), Vec<Rejection>> {
        // The update is made in place, and undone if the consumer refuses it: copying the whole
        // cache per update cost a delta client with a thousand VHDS hosts more than the rest of it.
        let wildcard = ty.is_wildcard();
        let st = self.st_mut(ty);
        let before = replace.then(|| std::mem::take(&mut st.cache));
        let mut undo: Vec<(String, Option<Cached>)> = Vec::new();
        // The tables a VHDS response carries virtual hosts for (a removal does not warm one).
        let vhds_tables: Vec<String> = if ty == ResourceType::VirtualHost {
            items
                .iter()
                .filter_map(|item| resources::vhds_namespace(&item.name))
                .map(str::to_owned)
                .collect()
        } else {
            Vec::new()
        };
        let mut answered = Vec::with_capacity(items.len() + removed.len());
        for item in items {
            if !wildcard && !st.names.contains(&item.name) {
                // Not asked for (Envoy ignores these too).
                continue;
            }
            answered.push(item.name.clone());
            let old = st.cache.insert(
                item.name.clone(),
                Cached {
                    version: item.version,
                    resource: item.resource,
                },
            );
            if before.is_none() {
                undo.push((item.name, old));
            }
        }
        for name in removed {
            let old = st.cache.remove(name);
            if before.is_none() && old.is_some() {
                undo.push((name.clone(), old));
            }
            if wildcard || st.names.contains(name) {
                answered.push(name.clone());
            }
        }
        if let Err(rejections) = consumer.apply(ResourceSet {
            ty,
            held: &st.cache,
        }) {
            match before {
                Some(cache) => st.cache = cache,
                None => {
                    for (name, old) in undo.into_iter().rev() {
                        match old {
                            Some(cached) => st.cache.insert(name, cached),
                            None => st.cache.remove(&name),
                        };
                    }
                }
            }
            return Err(rejections);
        }
        let count = st.cache.len();
        st.version = version.to_owned();
        st.accepted = true;
        st.settled.extend(answered);
        self.vhds_settled.extend(vhds_tables);
        let mut changes = Vec::new();
        if matches!(ty, ResourceType::Cluster | ResourceType::Listener) {
            // The secrets (SDS over ADS) the clusters' and listeners' TLS contexts name.
            let (clusters, listeners) = (
                self.resources_of(ResourceType::Cluster),
                self.resources_of(ResourceType::Listener),
            );
            if let (Resources::Clusters(c), Resources::Listeners(l)) = (clusters, listeners) {
                changes.extend(
                    self.set_names(ResourceType::Secret, resources::sds_subscriptions(&c, &l)),
                );
            }
        }
        match ty {
            ResourceType::Cluster => {
                let clusters = self.resources_of(ResourceType::Cluster);
                if let Resources::Clusters(c) = clusters {
                    changes.extend(
                        self.set_names(ResourceType::Endpoints, resources::eds_subscriptions(&c)),
                    );
                }
                if self.warming == Warming::Clusters {
                    self.warming = Warming::ClusterEndpoints;
                }
            }
            ResourceType::Listener => {
                if let Resources::Listeners(l) = self.resources_of(ResourceType::Listener) {
                    changes.extend(
                        self.set_names(ResourceType::Route, resources::rds_subscriptions(&l)),
                    );
                }
                if self.warming == Warming::Listeners {
                    self.warming = Warming::ListenerRoutes;
                }
            }
            ResourceType::Route => {
                // One wildcard VHDS subscription serves every route configuration with `vhds`; it
                // stays once started (what arrives for a table not held waits for it).
                if let Resources::Routes(r) = self.resources_of(ResourceType::Route)
                    && !resources::vhds_route_configs(&r).is_empty()
                {
                    changes.extend(self.start_wildcard(ResourceType::VirtualHost));
                }
            }
            _ => {}
        }
        changes.extend(self.advance_warming());
        Ok((changes, count))
    }

    /// The accepted set of one type.
    pub(crate) fn resources_of(&self, ty: ResourceType) -> Resources {
        Resources::collect(ty, self.st(ty).cache.values().map(|c| &c.resource))
    }

    fn pending(&self, ty: ResourceType) -> bool {
        let st = self.st(ty);
        st.names.iter().any(|n| !st.settled.contains(n))
    }

    /// Whether a held route configuration with `vhds` has had no virtual host over VHDS yet.
    fn vhds_pending(&self) -> bool {
        self.vhds_waits().next().is_some()
    }

    /// The held route configurations with `vhds` that still wait for their first virtual host, with
    /// how long each waits.
    fn vhds_waits(&self) -> impl Iterator<Item = (String, FetchTimeout)> + '_ {
        let tables = match self.resources_of(ResourceType::Route) {
            Resources::Routes(r) => resources::vhds_route_configs(&r),
            _ => Subscriptions::new(),
        };
        tables
            .into_iter()
            .filter(|(name, _)| !self.vhds_settled.contains(name))
    }

    /// The named types the current warming step waits for, besides VHDS.
    fn step_types(&self) -> &'static [ResourceType] {
        match self.warming {
            Warming::ClusterEndpoints => &[ResourceType::Endpoints, ResourceType::Secret],
            Warming::ListenerRoutes => &[ResourceType::Route, ResourceType::Secret],
            _ => &[],
        }
    }

    /// How long after its start the current warming step next gives something up: the wildcard
    /// type's timeout while CDS or LDS is awaited, else the shortest timeout of what is still
    /// awaited. `None`: nothing will be given up (done, or all of it waits for ever).
    pub(crate) fn fetch_timeout(&self) -> Option<Duration> {
        let named = self.step_types().iter().flat_map(|&ty| {
            let st = self.st(ty);
            st.names
                .iter()
                .filter(|n| !st.settled.contains(*n))
                .map(|n| st.timeouts.get(n).copied().flatten())
        });
        match self.warming {
            Warming::Clusters => self.cds_fetch_timeout,
            Warming::Listeners => self.lds_fetch_timeout,
            Warming::ClusterEndpoints => named.flatten().min(),
            Warming::ListenerRoutes => named
                .chain(self.vhds_waits().map(|(_, t)| t))
                .flatten()
                .min(),
            Warming::Done => None,
        }
    }

    /// Moves warming on as far as what has arrived allows; starting LDS is a subscription change.
    fn advance_warming(&mut self) -> Vec<SubChange> {
        let mut changes = Vec::new();
        loop {
            match self.warming {
                // Secrets warm with what names them, as Envoy's clusters and listeners do.
                Warming::ClusterEndpoints
                    if !self.pending(ResourceType::Endpoints)
                        && !self.pending(ResourceType::Secret) =>
                {
                    changes.extend(self.start_listeners());
                }
                Warming::ListenerRoutes
                    if !self.pending(ResourceType::Route)
                        && !self.pending(ResourceType::Secret)
                        && !self.vhds_pending() =>
                {
                    self.warming = Warming::Done;
                }
                _ => return changes,
            }
        }
    }

    fn start_listeners(&mut self) -> Option<SubChange> {
        self.warming = Warming::Listeners;
        self.start_wildcard(ResourceType::Listener)
    }

    /// Subscribes to every resource of the wildcard type `ty`, unless it already is.
    fn start_wildcard(&mut self, ty: ResourceType) -> Option<SubChange> {
        let st = self.st_mut(ty);
        if st.active {
            return None;
        }
        st.active = true;
        Some(SubChange {
            ty,
            added: Vec::new(),
            removed: Vec::new(),
        })
    }

    /// `elapsed` since the current warming step started: what it waits for with an initial fetch
    /// timeout up to that is given up on, as Envoy does after `initial_fetch_timeout`.
    pub(crate) fn initial_fetch_timeout(&mut self, elapsed: Duration) -> Vec<SubChange> {
        let due = |t: &FetchTimeout| t.is_some_and(|t| t <= elapsed);
        match self.warming {
            Warming::Clusters if due(&self.cds_fetch_timeout) => {
                self.warming = Warming::ClusterEndpoints;
            }
            Warming::Listeners if due(&self.lds_fetch_timeout) => {
                self.warming = Warming::ListenerRoutes;
            }
            _ => {
                let vhds: Vec<String> = self
                    .vhds_waits()
                    .filter(|(_, t)| due(t))
                    .map(|(name, _)| name)
                    .collect();
                self.vhds_settled.extend(vhds);
                for &ty in self.step_types() {
                    let st = self.st_mut(ty);
                    let given_up: Vec<String> = st
                        .names
                        .iter()
                        .filter(|n| due(&st.timeouts.get(*n).copied().flatten()))
                        .cloned()
                        .collect();
                    st.settled.extend(given_up);
                }
            }
        }
        self.advance_warming()
    }

    /// A response of `ty` was rejected: during warming, what waits for that type waits no more
    /// (Envoy readies a subscription whose update failed, so that a bad config does not keep the
    /// proxy from starting with what it has).
    pub(crate) fn rejected(&mut self, ty: ResourceType) -> Vec<SubChange> {
        match (self.warming, ty) {
            (Warming::Done, _) => return Vec::new(),
            (Warming::Clusters, ResourceType::Cluster) => self.warming = Warming::ClusterEndpoints,
            (Warming::Listeners, ResourceType::Listener) => self.warming = Warming::ListenerRoutes,
            (_, ResourceType::VirtualHost) => {
                let tables: Vec<String> = self.vhds_waits().map(|(name, _)| name).collect();
                self.vhds_settled.extend(tables);
            }
            (_, ty) if !ty.is_wildcard() => {
                let st = self.st_mut(ty);
                let names: Vec<String> = st.names.iter().cloned().collect();
                st.settled.extend(names);
            }
            _ => {}
        }
        self.advance_warming()
    }

    /// Whether the initial configuration just completed; true once.
    pub(crate) fn take_complete<C: Consumer + ?Sized>(&mut self, consumer: &mut C) -> bool {
        if self.warming == Warming::Done && !self.complete_signaled {
            self.complete_signaled = true;
            consumer.initial_config_complete();
            true
        } else {
            false
        }
    }

    /// The last accepted version of every type that has had an update accepted.
    pub(crate) fn versions(&self) -> BTreeMap<ResourceType, String> {
        ResourceType::ALL
            .into_iter()
            .filter(|&ty| self.st(ty).accepted)
            .map(|ty| (ty, self.st(ty).version.clone()))
            .collect()
    }
}

/// Decodes one resource; `declared` is the name a delta `Resource` wrapper gives it.
pub(crate) fn decode(
    ty: ResourceType,
    any: &Any,
    declared: Option<&str>,
    index: usize,
    version: String,
) -> Result<Item, Rejection> {
    let label = || match declared {
        Some(n) if !n.is_empty() => n.to_owned(),
        _ => format!("resources[{index}]"),
    };
    let resource = Resource::decode(ty, any).map_err(|e| Rejection::new(label(), e))?;
    let name = resource.name().to_owned();
    if name.is_empty() {
        return Err(Rejection::new(
            label(),
            format!("{ty} resource has no name"),
        ));
    }
    if let Some(d) = declared
        && d != name
    {
        return Err(Rejection::new(
            d,
            format!("the resource inside is named {name:?}, not {d:?}"),
        ));
    }
    Ok(Item {
        name,
        version,
        resource,
    })
}

/// Rejects the second and later resources of one name in one response.
pub(crate) fn check_duplicates(items: &[Item], rejections: &mut Vec<Rejection>) {
    let mut seen = BTreeSet::new();
    for item in items {
        if !seen.insert(item.name.as_str()) {
            rejections.push(Rejection::new(
                item.name.clone(),
                "duplicate name in one response",
            ));
        }
    }
}

/// The `error_detail` of a NACK: INVALID_ARGUMENT, and `name: reason` per rejection, bounded.
pub fn nack_status(what: &str, rejections: &[Rejection]) -> Status {
    Status {
        code: INVALID_ARGUMENT,
        message: nack_message(what, rejections),
        details: Vec::new(),
    }
}

fn nack_message(what: &str, rejections: &[Rejection]) -> String {
    let mut msg = format!("{what} update rejected: ");
    for (i, r) in rejections.iter().enumerate() {
        let line = r.to_string();
        let sep = if i == 0 { "" } else { "; " };
        if msg.len() + sep.len() + line.len() > MAX_NACK_MESSAGE {
            msg.push_str(&format!("{sep}… and {} more", rejections.len() - i));
            break;
        }
        msg.push_str(sep);
        msg.push_str(&line);
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nack_message_is_bounded() {
        let many: Vec<Rejection> = (0..1000)
            .map(|i| Rejection::new(format!("listener-{i}"), "bad port"))
            .collect();
        let s = nack_status("LDS", &many);
        assert_eq!(s.code, INVALID_ARGUMENT);
        assert!(
            s.message.len() <= MAX_NACK_MESSAGE + 32,
            "{}",
            s.message.len()
        );
        assert!(
            s.message
                .starts_with("LDS update rejected: listener-0: bad port; listener-1")
        );
        assert!(s.message.ends_with("more"));
    }
}

/// The parts of a protocol client that [`Session`] builds on; sealed, so only this crate's two clients
/// implement it.
pub(crate) mod sealed {
    use super::{Core, SubChange};

    pub trait Parts {
        type Request;
        fn core(&self) -> &Core;
        fn core_mut(&mut self) -> &mut Core;
        /// The requests that carry these subscription changes, in this mode's message type.
        fn requests_for(&mut self, changes: Vec<SubChange>) -> Vec<Self::Request>;
        /// A NACK of the response `nonce` of `type_url`, in this mode's message type.
        fn nack(&mut self, type_url: String, nonce: String, error: super::Status) -> Self::Request;
    }
}

/// The type a response carries, or the outcome that answers it without reading further: a NACK
/// for a type this client does not handle, nothing for one it has not subscribed to.
pub(crate) fn response_type<P: sealed::Parts>(
    client: &mut P,
    type_url: String,
    nonce: String,
) -> Result<ResourceType, Outcome<P::Request>> {
    let Some(ty) = ResourceType::from_type_url(&type_url) else {
        let rejection = Rejection::new(
            type_url.clone(),
            "unknown resource type; this client handles CDS, EDS, LDS, RDS, VHDS and SDS",
        );
        let status = nack_status("xDS", &[rejection]);
        let message = status.message.clone();
        return Err(Outcome {
            requests: vec![client.nack(type_url.clone(), nonce, status)],
            event: Event::Rejected { type_url, message },
            initial_config_complete: false,
        });
    };
    if !client.core().st(ty).active {
        return Err(Outcome {
            requests: Vec::new(),
            event: Event::Ignored { type_url },
            initial_config_complete: false,
        });
    }
    Ok(ty)
}

/// What both protocol modes do the same way: subscriptions, the initial-fetch timeout, warming and
/// versions. Each mode only differs in the requests it sends.
pub trait Session: sealed::Parts {
    /// Subscribes a named type (EDS, RDS, SDS) to exactly `names`; returns the requests to send, if
    /// anything changed. Wildcard types (LDS, CDS) are always subscribed to everything. During
    /// warming each name is waited for as long as Envoy's default initial fetch timeout.
    fn subscribe(&mut self, ty: ResourceType, names: BTreeSet<String>) -> Vec<Self::Request> {
        let subscriptions = names
            .into_iter()
            .map(|n| (n, Some(DEFAULT_INITIAL_FETCH_TIMEOUT)))
            .collect();
        let changes = self.core_mut().set_names(ty, subscriptions);
        self.requests_for(changes.into_iter().collect())
    }

    /// How long the first CDS and the first LDS response are waited for (Envoy's 15 s each unless
    /// set; `None`: for ever), as the bootstrap's `cds_config` and `lds_config` say.
    fn set_initial_fetch_timeouts(&mut self, cds: FetchTimeout, lds: FetchTimeout) {
        let core = self.core_mut();
        core.cds_fetch_timeout = cds;
        core.lds_fetch_timeout = lds;
    }

    /// How long after the current warming step started it next gives something up (see
    /// [`Warming`]); `None` when nothing will be.
    fn initial_fetch_deadline(&self) -> Option<Duration> {
        self.core().fetch_timeout()
    }

    /// `elapsed` has passed since the current warming step started: what it waits for that has an
    /// initial fetch timeout up to that is given up on.
    fn on_initial_fetch_timeout<C: Consumer + ?Sized>(
        &mut self,
        elapsed: Duration,
        consumer: &mut C,
    ) -> Outcome<Self::Request> {
        let changes = self.core_mut().initial_fetch_timeout(elapsed);
        Outcome {
            requests: self.requests_for(changes),
            event: Event::Nothing,
            initial_config_complete: self.core_mut().take_complete(consumer),
        }
    }

    /// Where the initial fetch is.
    fn warming(&self) -> Warming {
        self.core().warming
    }

    /// The last accepted version of every type with an accepted update (`version_info` in SotW,
    /// `system_version_info` in delta).
    fn acked_versions(&self) -> BTreeMap<ResourceType, String> {
        self.core().versions()
    }

    /// The names a named type is subscribed to (empty for wildcard types).
    fn subscribed(&self, ty: ResourceType) -> &BTreeSet<String> {
        &self.core().st(ty).names
    }
}

impl<T: sealed::Parts> Session for T {}
