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
//! resources changed.

use std::collections::{BTreeMap, BTreeSet};

use xds_api::pb::envoy::config::core::v3::{ControlPlane, Node};
use xds_api::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};

use crate::protocol::{
    Event, MAX_NAMES_PER_TYPE, MAX_TYPES_PER_STREAM, Nonces, Outcome, ProtocolError, TypeStatus,
    bounded_message, first_node,
};
use crate::snapshot::{Snapshot, is_wildcard_type, push_rank};

/// The identifier servers put in `control_plane` of their responses.
pub const CONTROL_PLANE_ID: &str = "bosun";

#[derive(Debug)]
struct Sent {
    nonce: String,
    version: String,
    /// The resources the response carried, by name, with their versions.
    content: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct TypeState {
    wildcard: bool,
    names: BTreeSet<String>,
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

impl SotwStream {
    /// A stream; `stream_id` makes its nonces unique across the server's streams.
    pub fn new(stream_id: u64) -> SotwStream {
        SotwStream {
            node: None,
            types: BTreeMap::new(),
            nonces: Nonces::new(stream_id),
        }
    }

    /// The client's node, from the first request.
    pub fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }

    /// Handles one request against the proxy's current snapshot (`None`: the control plane has not
    /// set one yet; subscriptions are recorded and answered by [`on_snapshot`](Self::on_snapshot)).
    pub fn on_request(
        &mut self,
        request: DiscoveryRequest,
        snapshot: Option<&Snapshot>,
    ) -> Result<Outcome<DiscoveryResponse>, ProtocolError> {
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
        let mut names: BTreeSet<String> = request.resource_names.into_iter().collect();
        let explicit_wildcard = names.remove("*");
        let wildcard = explicit_wildcard || (names.is_empty() && is_wildcard_type(&type_url));
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
                push_change(&mut out, &type_url, st, wildcard, &names);
            }
            st.wildcard = wildcard;
            st.names = names;
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
        if st.wildcard != wildcard || st.names != names {
            push_change(&mut out, &type_url, st, wildcard, &names);
            st.wildcard = wildcard;
            st.names = names;
            if let Some(snap) = snapshot {
                let r = respond(&mut self.nonces, &type_url, st, snap);
                out.responses.push(r);
            }
        }
        Ok(out)
    }

    /// The proxy's snapshot changed: the responses to push, in push order, one per subscribed type
    /// whose selected resources differ from what was last sent (or that was never answered).
    pub fn on_snapshot(&mut self, snapshot: &Snapshot) -> Vec<DiscoveryResponse> {
        let mut urls: Vec<String> = self.types.keys().cloned().collect();
        urls.sort_by(|a, b| push_rank(a).cmp(&push_rank(b)).then_with(|| a.cmp(b)));
        let mut out = Vec::new();
        for url in urls {
            let Some(st) = self.types.get_mut(&url) else {
                continue;
            };
            if !st.wildcard && st.names.is_empty() && st.sent.is_some() {
                // Unsubscribed from everything of this type.
                continue;
            }
            let changed = match &st.sent {
                None => true,
                Some(sent) => sent.content != content(snapshot, &url, st),
            };
            if changed {
                out.push(respond(&mut self.nonces, &url, st, snapshot));
            }
        }
        out
    }

    /// The sync status of every type the client subscribed to.
    pub fn status(&self) -> BTreeMap<String, TypeStatus> {
        self.types
            .iter()
            .map(|(url, st)| (url.clone(), st.status.clone()))
            .collect()
    }

    /// The names the client subscribed to for `type_url`, and whether it is a wildcard subscription.
    pub fn subscription(&self, type_url: &str) -> Option<(bool, &BTreeSet<String>)> {
        self.types.get(type_url).map(|st| (st.wildcard, &st.names))
    }
}

fn push_change(
    out: &mut Outcome<DiscoveryResponse>,
    type_url: &str,
    st: &TypeState,
    wildcard: bool,
    names: &BTreeSet<String>,
) {
    if st.wildcard == wildcard && &st.names == names {
        return;
    }
    out.events.push(Event::SubscriptionChanged {
        type_url: type_url.to_owned(),
        added: names.difference(&st.names).cloned().collect(),
        removed: st.names.difference(names).cloned().collect(),
    });
}

fn content(snapshot: &Snapshot, type_url: &str, st: &TypeState) -> BTreeMap<String, String> {
    snapshot
        .select(type_url, st.wildcard, &st.names)
        .map(|(n, r)| (n.clone(), r.version.clone()))
        .collect()
}

fn respond(
    nonces: &mut Nonces,
    type_url: &str,
    st: &mut TypeState,
    snapshot: &Snapshot,
) -> DiscoveryResponse {
    let mut resources = Vec::new();
    let mut content = BTreeMap::new();
    for (name, r) in snapshot.select(type_url, st.wildcard, &st.names) {
        resources.push(r.resource.clone());
        content.insert(name.clone(), r.version.clone());
    }
    let nonce = nonces.next();
    let version = snapshot.version().to_owned();
    st.status.sent_version = Some(version.clone());
    st.status.sent_nonce = Some(nonce.clone());
    st.status.sent_resources = resources.len();
    st.status.responses += 1;
    st.sent = Some(Sent {
        nonce: nonce.clone(),
        version: version.clone(),
        content,
    });
    DiscoveryResponse {
        version_info: version,
        resources,
        canary: false,
        type_url: type_url.to_owned(),
        nonce,
        control_plane: Some(ControlPlane {
            identifier: CONTROL_PLANE_ID.to_owned(),
        }),
        resource_errors: Vec::new(),
    }
}
