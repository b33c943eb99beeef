//! Incremental ADS (`DeltaAggregatedResources`), sans-IO: one [`DeltaStream`] per stream.
//!
//! Per type URL it keeps the names the client subscribed to (an empty first subscription, or `*`, is a
//! wildcard), what the client holds by resource version (seeded from `initial_resource_versions` on a
//! reconnect) and the ACK status. Only resources whose version differs from what the client holds are
//! sent; what it holds and should not is listed in `removed_resources`, and so is a subscribed name
//! that does not exist (so the client stops waiting for it). ACK and NACK are by `response_nonce`;
//! subscription changes apply whatever nonce the request carries.

use std::collections::{BTreeMap, BTreeSet};

use xds_api::pb::envoy::config::core::v3::{ControlPlane, Node};
use xds_api::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DeltaDiscoveryResponse};

use crate::protocol::{
    AdsStream, Event, MAX_NAMES_PER_TYPE, MAX_TYPES_PER_STREAM, Mode, Names, Nonces, Outcome,
    ProtocolError, ResourceName, TypeStatus, bounded_message, first_node, intern,
};
use crate::response::{Carried, Prepared};
use crate::snapshot::{
    LayeredMap, MapChange, Snapshot, changed_names_between, map_changes, push_rank, select,
};
use crate::sotw::CONTROL_PLANE_ID;
use xds_api::type_url;

#[derive(Debug, Default)]
struct TypeState {
    wildcard: bool,
    names: Names,
    /// What the client holds, by our account: name → resource version.
    /// Names and versions are shared across streams (a resource has one version for every proxy).
    /// Empty while `implied` (see there).
    known: BTreeMap<ResourceName, ResourceName>,
    /// `known` is exactly what the subscription selects from `synced`, and is not kept: a response
    /// brings the client there, and until the subscription changes it is read from that shared map.
    /// (A map per stream of every name the client holds was most of delta's memory: 200 proxies
    /// holding 6,000 resources each made 1.2 million entries.)
    implied: bool,
    /// Subscribed names reported to the client as not existing.
    absent: BTreeSet<String>,
    /// Whether a response of this type was sent on this stream.
    answered: bool,
    /// Nonce and version of the last response sent.
    sent: Option<(String, String)>,
    /// The map `known` was last brought up to date with, while no request changed the subscription
    /// since: a snapshot sharing this very map has nothing new.
    synced: Option<LayeredMap>,
    status: TypeStatus,
}

/// The delta protocol of one stream: feed it requests and snapshots, send what it returns.
#[derive(Debug)]
pub struct DeltaStream {
    node: Option<Node>,
    types: BTreeMap<String, TypeState>,
    nonces: Nonces,
}

impl AdsStream for DeltaStream {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;
    const MODE: Mode = Mode::Delta;

    fn new(stream_id: u64) -> Self {
        DeltaStream {
            node: None,
            types: BTreeMap::new(),
            nonces: Nonces::new(stream_id),
        }
    }

    fn request_node(request: &DeltaDiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }

    fn handle_request(
        &mut self,
        request: DeltaDiscoveryRequest,
        snapshot: Option<&Snapshot>,
    ) -> Result<Outcome<Prepared<DeltaDiscoveryResponse>>, ProtocolError> {
        first_node(&mut self.node, request.node.as_ref())?;
        if request.type_url.is_empty() {
            return Err(ProtocolError::MissingTypeUrl);
        }
        let type_url = request.type_url;
        let first = !self.types.contains_key(&type_url);
        if first && self.types.len() >= MAX_TYPES_PER_STREAM {
            return Err(ProtocolError::TooManyTypes {
                max: MAX_TYPES_PER_STREAM,
                type_url,
            });
        }
        let st = self.types.entry(type_url.clone()).or_default();
        if !request.resource_names_subscribe.is_empty()
            || !request.resource_names_unsubscribe.is_empty()
        {
            // What the client holds or wants changes: the next snapshot is compared in full. An
            // ACK or NACK alone changes neither.
            st.materialize();
            st.synced = None;
        }
        let mut out = Outcome::default();

        if first {
            // Legacy wildcard: an empty first subscription means everything of the type.
            st.wildcard = request.resource_names_subscribe.is_empty();
            st.known = request
                .initial_resource_versions
                .into_iter()
                .map(|(name, version)| (intern(&name), intern(&version)))
                .collect();
            out.events.push(Event::Subscribed {
                type_url: type_url.clone(),
            });
        }

        let was_wildcard = st.wildcard;
        let mut added = BTreeSet::new();
        for name in request.resource_names_subscribe {
            if name == "*" {
                st.wildcard = true;
                continue;
            }
            if !first {
                // A (re)subscribed name is sent even if the client had it.
                st.known.remove(name.as_str());
            }
            st.absent.remove(&name);
            st.names.insert(intern(&name));
            added.insert(name);
        }
        let mut removed = BTreeSet::new();
        for name in request.resource_names_unsubscribe {
            if name == "*" {
                st.wildcard = false;
                let names = &st.names;
                st.known.retain(|n, _| names.contains(n));
                continue;
            }
            if st.names.remove(name.as_str()) {
                removed.insert(name.clone());
            }
            st.absent.remove(&name);
            if !st.wildcard {
                st.known.remove(name.as_str());
            }
        }
        if st.names.len() > MAX_NAMES_PER_TYPE {
            return Err(ProtocolError::TooManyNames {
                max: MAX_NAMES_PER_TYPE,
                type_url,
            });
        }
        let became_wildcard = !first && st.wildcard && !was_wildcard;
        let changed = !added.is_empty() || !removed.is_empty() || was_wildcard != st.wildcard;
        if !first && changed {
            out.events.push(Event::SubscriptionChanged {
                type_url: type_url.clone(),
                added: added.clone(),
                removed,
            });
        }

        if !request.response_nonce.is_empty() {
            match st.sent.as_ref() {
                Some((nonce, version)) if *nonce == request.response_nonce => {
                    let version = version.clone();
                    match request.error_detail {
                        Some(detail) => {
                            let message = bounded_message(&detail.message);
                            st.status.nacked_version = Some(version.clone());
                            st.status.last_nack = Some(message.clone());
                            st.status.nacks += 1;
                            out.events.push(Event::Nack {
                                type_url: type_url.clone(),
                                version,
                                nonce: request.response_nonce,
                                message,
                            });
                        }
                        None => {
                            st.status.acked_version = Some(version.clone());
                            st.status.acks += 1;
                            out.events.push(Event::Ack {
                                type_url: type_url.clone(),
                                version,
                                nonce: request.response_nonce,
                            });
                        }
                    }
                }
                _ => out.events.push(Event::StaleNonce {
                    type_url: type_url.clone(),
                    nonce: request.response_nonce,
                }),
            }
        }

        if let Some(snap) = snapshot
            && (first || became_wildcard || !added.is_empty())
            && let Some(r) = respond(&mut self.nonces, &type_url, st, snap, first, &[])
        {
            out.responses.push(r);
        }
        Ok(out)
    }

    /// [`on_snapshot`](Self::on_snapshot), its responses still sharing the snapshot's resources.
    fn snapshot_changed(&mut self, snapshot: &Snapshot) -> Vec<Prepared<DeltaDiscoveryResponse>> {
        let mut urls: Vec<String> = self.types.keys().cloned().collect();
        urls.sort_by(|a, b| push_rank(a).cmp(&push_rank(b)).then_with(|| a.cmp(b)));
        let mut out = Vec::new();
        // What this push changes of clusters (CDS comes before EDS) and whether it sends clusters
        // or listeners (which come before secrets): Envoy watches a changed cluster's endpoints and
        // secrets anew and waits for them (15 s) though they did not change; as istiod's pushes,
        // they go out again with it.
        let mut changed_clusters: Vec<String> = Vec::new();
        let mut config_sent = false;
        for url in urls {
            if let Some(st) = self.types.get_mut(&url) {
                let resend: Vec<String> = if url == type_url::CLUSTER_LOAD_ASSIGNMENT {
                    changed_clusters.clone()
                } else if url == type_url::SECRET && config_sent {
                    st.names.iter().map(|n| n.to_string()).collect()
                } else {
                    Vec::new()
                };
                if resend.is_empty()
                    && let (Some(synced), Some(new)) = (&st.synced, snapshot.resources(&url))
                    && synced.ptr_eq(new)
                {
                    continue;
                }
                if url == type_url::CLUSTER
                    && let (Some(old), Some(new)) = (&st.synced, snapshot.resources(&url))
                {
                    changed_clusters = changed_names_between(old, new);
                }
                let always = !st.answered;
                let response = respond(&mut self.nonces, &url, st, snapshot, always, &resend);
                config_sent |=
                    response.is_some() && (url == type_url::CLUSTER || url == type_url::LISTENER);
                out.extend(response);
            }
        }
        out
    }

    fn statuses(&self) -> impl Iterator<Item = (&String, &TypeStatus)> {
        self.types.iter().map(|(url, st)| (url, &st.status))
    }
}

impl DeltaStream {
    /// The names the client subscribed to for `type_url`, and whether it is a wildcard subscription.
    pub fn subscription(&self, type_url: &str) -> Option<(bool, &Names)> {
        self.types.get(type_url).map(|st| (st.wildcard, &st.names))
    }

    /// What the client holds of `type_url`, by our account: name → resource version.
    pub fn known(&self, type_url: &str) -> Option<BTreeMap<ResourceName, ResourceName>> {
        self.types.get(type_url).map(TypeState::known_now)
    }
}

impl TypeState {
    /// `known`, read from `synced` when it is implied.
    fn known_now(&self) -> BTreeMap<ResourceName, ResourceName> {
        match (&self.synced, self.implied) {
            (Some(map), true) => select(Some(map), self.wildcard, &self.names)
                .map(|(name, r)| (intern(name), intern(&r.version)))
                .collect(),
            _ => self.known.clone(),
        }
    }

    /// Makes `known` explicit again, before the subscription (and so what it implies) changes.
    fn materialize(&mut self) {
        if self.implied {
            self.known = self.known_now();
            self.implied = false;
        }
    }

    /// The version of `name` the client holds, when it was brought up to `synced` (`old`).
    fn known_version<'a>(&'a self, old: &'a LayeredMap, name: &str) -> Option<&'a str> {
        if self.implied {
            let selected = self.wildcard || self.names.contains(name);
            return old
                .get(name)
                .filter(|_| selected)
                .map(|r| r.version.as_str());
        }
        self.known.get(name).map(|v| &**v)
    }
}

/// The resources to send and the names to remove, comparing the selection with what the client
/// holds (`known`) name by name.
fn changes_from_scratch(
    st: &TypeState,
    snapshot: &Snapshot,
    type_url: &str,
) -> (Vec<Carried>, Vec<String>) {
    let mut resources = Vec::new();
    let mut selected = BTreeSet::new();
    for (name, r) in snapshot.select(type_url, st.wildcard, &st.names) {
        selected.insert(name.as_str());
        if st.known.get(name.as_str()).map(|v| &**v) != Some(r.version.as_str()) {
            resources.push(Carried::named(name, r));
        }
    }
    let mut removed: Vec<String> = st
        .known
        .keys()
        .filter(|n| !selected.contains(&***n))
        .map(|n| n.to_string())
        .collect();
    if !st.wildcard {
        for name in &st.names {
            if !selected.contains(&**name)
                && !st.known.contains_key(&**name)
                && !st.absent.contains(&**name)
            {
                removed.push(name.to_string());
            }
        }
    }
    (resources, removed)
}

/// The same as [`changes_from_scratch`] when the client holds the selection from `old`: only what
/// differs between the maps is looked at.
fn changes_since(
    st: &TypeState,
    old: &LayeredMap,
    new: &LayeredMap,
) -> (Vec<Carried>, Vec<String>) {
    let selects = |name: &String| st.wildcard || st.names.contains(name.as_str());
    let mut resources = Vec::new();
    let mut removed = Vec::new();
    for change in map_changes(old, new) {
        match change {
            MapChange::Changed(name, r)
                if selects(name) && st.known_version(old, name) != Some(r.version.as_str()) =>
            {
                resources.push(Carried::named(name, r));
            }
            MapChange::Removed(name) if st.known_version(old, name).is_some() => {
                removed.push(name.clone())
            }
            _ => {}
        }
    }
    (resources, removed)
}

/// The response bringing the client of `type_url` up to `snapshot`, if anything differs (or `always`),
/// with the resources named in `resend` too (those the subscription selects), changed or not.
fn respond(
    nonces: &mut Nonces,
    type_url: &str,
    st: &mut TypeState,
    snapshot: &Snapshot,
    always: bool,
    resend: &[String],
) -> Option<Prepared<DeltaDiscoveryResponse>> {
    let new = snapshot.resources(type_url);
    if new.is_none() || st.synced.is_none() {
        // Compared name by name below: `known` must be there to compare with.
        st.materialize();
    }
    let (mut resources, removed) = match (&st.synced, new) {
        // Nothing about the subscription changed since the client was brought up to `old`: what it
        // needs is what differs between the two maps.
        (Some(old), Some(new)) => changes_since(st, old, new),
        _ => changes_from_scratch(st, snapshot, type_url),
    };
    for name in resend {
        let selected = st.wildcard || st.names.contains(name.as_str());
        let sent = resources
            .iter()
            .any(|r| r.name.as_deref() == Some(name.as_str()));
        if let Some(r) = new.and_then(|m| m.get(name)).filter(|_| selected && !sent) {
            resources.push(Carried::named(name, r));
        }
    }
    st.synced = snapshot.resources(type_url).cloned();
    // Once this response is sent the client holds what the subscription selects from the new map:
    // that map says it, no copy per stream is kept. (Without the type in the snapshot, the explicit
    // account stays.)
    let implied = st.synced.is_some();
    if resources.is_empty() && removed.is_empty() && !always {
        if implied && !st.implied {
            st.known.clear();
            st.implied = true;
        }
        return None;
    }
    for r in &resources {
        let name = r.name.as_deref().unwrap_or_default();
        if !implied {
            st.known.insert(intern(name), intern(&r.resource.version));
        }
        st.absent.remove(name);
    }
    for name in &removed {
        if !implied {
            st.known.remove(name.as_str());
        }
        if !st.wildcard && st.names.contains(name.as_str()) {
            st.absent.insert(name.clone());
        }
    }
    if implied {
        st.known.clear();
        st.implied = true;
    }
    let nonce = nonces.next();
    let version = snapshot.version().to_owned();
    st.answered = true;
    st.status.sent_version = Some(version.clone());
    st.status.sent_nonce = Some(nonce.clone());
    st.status.sent_resources = resources.len();
    st.status.responses += 1;
    st.sent = Some((nonce.clone(), version.clone()));
    Some(Prepared {
        head: DeltaDiscoveryResponse {
            system_version_info: version,
            type_url: type_url.to_owned(),
            removed_resources: removed,
            nonce,
            control_plane: Some(ControlPlane {
                identifier: CONTROL_PLANE_ID.to_owned(),
            }),
            ..Default::default()
        },
        resources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, u8)]) -> LayeredMap {
        LayeredMap::from(crate::snapshot::tests::layer(entries))
    }

    fn names(r: &(Vec<Carried>, Vec<String>)) -> (Vec<String>, Vec<String>) {
        let mut sent: Vec<String> = r.0.iter().filter_map(|r| r.name.clone()).collect();
        let mut removed = r.1.clone();
        sent.sort();
        removed.sort();
        (sent, removed)
    }

    /// The walk over two maps finds exactly what comparing the selection with `known` finds.
    #[test]
    fn changes_since_the_last_map_equal_changes_from_scratch() {
        let old = map(&[("a", 1), ("b", 1), ("c", 1), ("e", 1)]);
        let news = [
            map(&[("a", 1), ("b", 1), ("c", 1), ("e", 1)]),
            map(&[("a", 2), ("b", 1), ("c", 1), ("e", 1)]),
            map(&[("b", 1), ("c", 2), ("d", 1)]),
            map(&[("0", 1), ("a", 1), ("e", 2), ("z", 1)]),
            map(&[]),
        ];
        for wildcard in [true, false] {
            for new in &news {
                let mut st = TypeState {
                    wildcard,
                    names: ["a", "c", "d", "z"].map(intern).into(),
                    ..Default::default()
                };
                let old_snap = {
                    let mut s = Snapshot::new("v1");
                    s.set_resources("t", old.clone());
                    s
                };
                // Bring the client up to `old` the slow way, as a first response would.
                let (sent, removed) = changes_from_scratch(&st, &old_snap, "t");
                for r in sent {
                    st.known.insert(
                        intern(&r.name.unwrap_or_default()),
                        intern(&r.resource.version),
                    );
                }
                for name in removed {
                    st.absent.insert(name);
                }
                let mut new_snap = Snapshot::new("v2");
                new_snap.set_resources("t", new.clone());
                assert_eq!(
                    names(&changes_since(&st, &old, new)),
                    names(&changes_from_scratch(&st, &new_snap, "t")),
                    "wildcard {wildcard}, new {:?}",
                    new.keys().collect::<Vec<_>>()
                );
                // The same stream keeping no account of its own, the synced map implying it.
                let implied = TypeState {
                    wildcard,
                    names: st.names.clone(),
                    absent: st.absent.clone(),
                    synced: Some(old.clone()),
                    implied: true,
                    ..Default::default()
                };
                assert_eq!(implied.known_now(), st.known, "wildcard {wildcard}");
                assert_eq!(
                    names(&changes_since(&implied, &old, new)),
                    names(&changes_since(&st, &old, new)),
                    "implied, wildcard {wildcard}, new {:?}",
                    new.keys().collect::<Vec<_>>()
                );
            }
        }
    }
}
