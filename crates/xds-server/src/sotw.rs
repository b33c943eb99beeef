//! State-of-the-world ADS (`StreamAggregatedResources`), sans-IO: one [`SotwStream`] per stream.
//!
//! Per type URL it keeps the names the client subscribed to (an empty list is a wildcard for LDS and
//! CDS; `*` is one for any type), the last response sent (nonce, version and the resource versions it
//! carried) and the ACK status. A request is:
//!
//! - the first of its type (no state yet, or no nonce): answered with the current selection;
//! - an answer to the latest response of its type (its nonce): an ACK, or a NACK when it carries
//!   `error_detail` (recorded; nothing is resent — the client keeps its last good config and the same
//!   content is not offered again), then, if the names changed, answered with the new selection;
//! - an answer to an older response (a stale nonce): ignored, as the xDS protocol says.
//!
//! A new snapshot sends, in push order (CDS, EDS, LDS, RDS, …), each subscribed type whose selected
//! resources changed: for LDS and CDS (wildcard) the whole set, as the protocol requires; for the
//! other types only the resources that changed, as istiod does for EDS. Envoy keeps a named
//! resource a response does not mention, and so does xds-client; an endpoint change then costs one
//! ClusterLoadAssignment per proxy instead of all of them.

use std::collections::{BTreeMap, BTreeSet};

use xds_api::pb::envoy::config::core::v3::{ControlPlane, Node};
use xds_api::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};

use crate::protocol::{
    AdsStream, Event, MAX_NAMES_PER_TYPE, MAX_TYPES_PER_STREAM, Mode, Names, Nonces, Outcome,
    ProtocolError, TypeStatus, bounded_message, first_node, intern,
};
use crate::response::{Carried, Prepared};
use crate::snapshot::{
    LayeredMap, MapChange, Snapshot, changed_names_between, is_wildcard_type, map_changes,
    push_rank, same_map, same_resource, select,
};
use xds_api::type_url;

/// The identifier servers put in `control_plane` of their responses.
pub const CONTROL_PLANE_ID: &str = "bosun";

#[derive(Debug)]
struct Sent {
    nonce: String,
    version: String,
    /// The map the client's resources of this type were selected from (by the subscription as it
    /// is now): what the next snapshot is compared with. A snapshot sharing this very map has
    /// nothing new.
    from: Option<LayeredMap>,
}

#[derive(Debug, Default)]
struct TypeState {
    wildcard: bool,
    names: Names,
    sent: Option<Sent>,
    status: TypeStatus,
}

/// The state-of-the-world protocol of one stream: feed it requests and snapshots, send what it
/// returns.
#[derive(Debug)]
pub struct SotwStream {
    node: Option<Node>,
    types: BTreeMap<String, TypeState>,
    nonces: Nonces,
}

impl AdsStream for SotwStream {
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;
    const MODE: Mode = Mode::Sotw;

    fn new(stream_id: u64) -> Self {
        SotwStream {
            node: None,
            types: BTreeMap::new(),
            nonces: Nonces::new(stream_id),
        }
    }

    fn request_node(request: &DiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }

    fn handle_request(
        &mut self,
        request: DiscoveryRequest,
        snapshot: Option<&Snapshot>,
    ) -> Result<Outcome<Prepared<DiscoveryResponse>>, ProtocolError> {
        first_node(&mut self.node, request.node.as_ref())?;
        if request.type_url.is_empty() {
            return Err(ProtocolError::MissingTypeUrl);
        }
        if request.resource_names.len() > MAX_NAMES_PER_TYPE {
            return Err(ProtocolError::TooManyNames {
                max: MAX_NAMES_PER_TYPE,
                type_url: request.type_url,
            });
        }
        let type_url = request.type_url;
        // Every request repeats the whole subscription (thousands of names for EDS): it is
        // compared as sorted strings, and only a changed one is turned into shared names.
        let mut requested = request.resource_names;
        requested.sort_unstable();
        requested.dedup();
        let explicit_wildcard = match requested.binary_search_by(|n| n.as_str().cmp("*")) {
            Ok(at) => {
                requested.remove(at);
                true
            }
            Err(_) => false,
        };
        let wildcard = explicit_wildcard || (requested.is_empty() && is_wildcard_type(&type_url));
        let mut out = Outcome::default();

        let first = !self.types.contains_key(&type_url);
        if first && self.types.len() >= MAX_TYPES_PER_STREAM {
            return Err(ProtocolError::TooManyTypes {
                max: MAX_TYPES_PER_STREAM,
                type_url,
            });
        }
        let st = self.types.entry(type_url.clone()).or_default();
        if request.response_nonce.is_empty() {
            // A new subscription (or the client re-requesting from scratch): always answered.
            if first {
                out.events.push(Event::Subscribed {
                    type_url: type_url.clone(),
                });
            } else {
                push_change(&mut out, &type_url, st, wildcard, &requested);
            }
            if !same_names(&st.names, &requested) {
                st.names = requested.iter().map(|n| intern(n)).collect();
            }
            st.wildcard = wildcard;
            if let Some(snap) = snapshot {
                let r = respond(&mut self.nonces, &type_url, st, snap);
                out.responses.push(r);
            }
            return Ok(out);
        }

        let Some(sent) = st
            .sent
            .as_ref()
            .filter(|s| s.nonce == request.response_nonce)
        else {
            out.events.push(Event::StaleNonce {
                type_url,
                nonce: request.response_nonce,
            });
            return Ok(out);
        };
        let version = sent.version.clone();
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
        if st.wildcard != wildcard || !same_names(&st.names, &requested) {
            push_change(&mut out, &type_url, st, wildcard, &requested);
            st.wildcard = wildcard;
            st.names = requested.iter().map(|n| intern(n)).collect();
            if let Some(snap) = snapshot {
                let r = respond(&mut self.nonces, &type_url, st, snap);
                out.responses.push(r);
            }
        }
        Ok(out)
    }

    /// [`on_snapshot`](Self::on_snapshot), its responses still sharing the snapshot's resources.
    fn snapshot_changed(&mut self, snapshot: &Snapshot) -> Vec<Prepared<DiscoveryResponse>> {
        let mut urls: Vec<String> = self.types.keys().cloned().collect();
        urls.sort_by(|a, b| push_rank(a).cmp(&push_rank(b)).then_with(|| a.cmp(b)));
        let mut out = Vec::new();
        // Whether this push sends clusters or listeners (which come before secrets).
        let mut config_sent = false;
        // The clusters this push changes (CDS comes before EDS).
        let mut changed_clusters: Vec<String> = Vec::new();
        for url in urls {
            let Some(st) = self.types.get_mut(&url) else {
                continue;
            };
            if !st.wildcard && st.names.is_empty() && st.sent.is_some() {
                // Unsubscribed from everything of this type.
                continue;
            }
            let before = out.len();
            let new = snapshot.resources(&url);
            let Some(sent) = &mut st.sent else {
                out.push(respond(&mut self.nonces, &url, st, snapshot));
                continue;
            };
            if url == type_url::SECRET && config_sent {
                // A new or changed cluster or listener makes Envoy watch its secrets anew and wait
                // for them (15 s, its initial fetch timeout) though it holds them: their names are
                // unchanged, so its request looks like an ACK. As istiod, whose pushes send every
                // watched type, the secrets go out again with the clusters and listeners.
                out.push(respond(&mut self.nonces, &url, st, snapshot));
                continue;
            }
            let config = url == type_url::CLUSTER || url == type_url::LISTENER;
            if url == type_url::CLUSTER_LOAD_ASSIGNMENT {
                // A changed cluster makes Envoy watch its endpoints anew and wait for them (15 s)
                // though they did not change: as istiod, whose pushes send every watched type, they
                // go out again with it.
                let mut names = changed_names(sent.from.as_ref(), new, &st.names);
                names.extend(
                    changed_clusters
                        .iter()
                        .filter(|c| st.names.contains(c.as_str()) && !names.contains(c))
                        .cloned()
                        .collect::<Vec<_>>(),
                );
                if names.is_empty() {
                    sent.from = new.cloned();
                } else {
                    names.sort_unstable();
                    out.push(respond_with(&mut self.nonces, &url, st, snapshot, &names));
                }
                continue;
            }
            if let (Some(old), Some(new)) = (&sent.from, new)
                && old.ptr_eq(new)
            {
                continue;
            }
            if st.wildcard {
                if !same_selection(sent.from.as_ref(), new, st.wildcard, &st.names) {
                    if url == type_url::CLUSTER
                        && let (Some(old), Some(new)) = (&sent.from, new)
                    {
                        changed_clusters = changed_names_between(old, new);
                    }
                    out.push(respond(&mut self.nonces, &url, st, snapshot));
                    config_sent |= config;
                }
                continue;
            }
            let changed = changed_names(sent.from.as_ref(), new, &st.names);
            if changed.is_empty() {
                // Nothing the client holds differs: compare with this map from now on.
                sent.from = new.cloned();
            } else {
                out.push(respond_with(&mut self.nonces, &url, st, snapshot, &changed));
            }
            config_sent |= config && out.len() > before;
        }
        out
    }

    fn statuses(&self) -> impl Iterator<Item = (&String, &TypeStatus)> {
        self.types.iter().map(|(url, st)| (url, &st.status))
    }
}

impl SotwStream {
    /// The names the client subscribed to for `type_url`, and whether it is a wildcard subscription.
    pub fn subscription(&self, type_url: &str) -> Option<(bool, &Names)> {
        self.types.get(type_url).map(|st| (st.wildcard, &st.names))
    }
}

/// Whether `names` (sorted, no duplicates) are the subscribed ones.
fn same_names(subscribed: &Names, names: &[String]) -> bool {
    subscribed.len() == names.len()
        && subscribed
            .iter()
            .zip(names)
            .all(|(a, b)| **a == *b.as_str())
}

/// `names`: the requested ones, sorted, no duplicates.
fn push_change(
    out: &mut Outcome<Prepared<DiscoveryResponse>>,
    type_url: &str,
    st: &TypeState,
    wildcard: bool,
    names: &[String],
) {
    if st.wildcard == wildcard && same_names(&st.names, names) {
        return;
    }
    let requested: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    out.events.push(Event::SubscriptionChanged {
        type_url: type_url.to_owned(),
        added: requested
            .iter()
            .filter(|n| !st.names.contains(**n))
            .map(|n| (*n).to_owned())
            .collect(),
        removed: st
            .names
            .iter()
            .filter(|n| !requested.contains(&***n))
            .map(|n| n.to_string())
            .collect(),
    });
}

/// Whether the subscription selects the same resources at the same versions from both maps.
fn same_selection(
    old: Option<&LayeredMap>,
    new: Option<&LayeredMap>,
    wildcard: bool,
    names: &Names,
) -> bool {
    if wildcard && let (Some(a), Some(b)) = (old, new) {
        return same_map(a, b);
    }
    let mut a = select(old, wildcard, names);
    let mut b = select(new, wildcard, names);
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some((na, ra)), Some((nb, rb))) if na == nb && same_resource(ra, rb) => {}
            _ => return false,
        }
    }
}

/// The subscribed names whose resource in `new` differs from the one in `old` (removed ones are not
/// listed: a state-of-the-world response cannot say so for named types, and the client drops them
/// with the cluster or listener that named them).
fn changed_names(old: Option<&LayeredMap>, new: Option<&LayeredMap>, names: &Names) -> Vec<String> {
    let (Some(old), Some(new)) = (old, new) else {
        return select(new, false, names).map(|(n, _)| n.clone()).collect();
    };
    map_changes(old, new)
        .into_iter()
        .filter_map(|c| match c {
            MapChange::Changed(name, _) if names.contains(name.as_str()) => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// The whole selection of `type_url`.
fn respond(
    nonces: &mut Nonces,
    type_url: &str,
    st: &mut TypeState,
    snapshot: &Snapshot,
) -> Prepared<DiscoveryResponse> {
    let resources = snapshot
        .select(type_url, st.wildcard, &st.names)
        .map(|(_, r)| Carried::any(r))
        .collect();
    finish(nonces, type_url, st, snapshot, resources)
}

/// Only the resources named in `names` (the others the client holds are current).
fn respond_with(
    nonces: &mut Nonces,
    type_url: &str,
    st: &mut TypeState,
    snapshot: &Snapshot,
    names: &[String],
) -> Prepared<DiscoveryResponse> {
    let all = snapshot.resources(type_url);
    let resources = names
        .iter()
        .filter_map(|n| all?.get(n))
        .map(Carried::any)
        .collect();
    finish(nonces, type_url, st, snapshot, resources)
}

fn finish(
    nonces: &mut Nonces,
    type_url: &str,
    st: &mut TypeState,
    snapshot: &Snapshot,
    resources: Vec<Carried>,
) -> Prepared<DiscoveryResponse> {
    let nonce = nonces.next();
    let version = snapshot.version().to_owned();
    st.status.sent_version = Some(version.clone());
    st.status.sent_nonce = Some(nonce.clone());
    st.status.sent_resources = resources.len();
    st.status.responses += 1;
    st.sent = Some(Sent {
        nonce: nonce.clone(),
        version: version.clone(),
        from: snapshot.resources(type_url).cloned(),
    });
    Prepared {
        head: DiscoveryResponse {
            version_info: version,
            resources: Vec::new(),
            canary: false,
            type_url: type_url.to_owned(),
            nonce,
            control_plane: Some(ControlPlane {
                identifier: CONTROL_PLANE_ID.to_owned(),
            }),
            resource_errors: Vec::new(),
        },
        resources,
    }
}
