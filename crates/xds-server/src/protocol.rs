//! What both ADS modes share: the outcome of feeding a protocol state machine, the per-type sync status
//! it keeps, and its errors.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use std::collections::BTreeMap;

use prost::Message;
use xds_api::pb::envoy::config::core::v3::Node;

use crate::response::{CarriesResources, Prepared};
use crate::snapshot::Snapshot;

/// A subscribed resource name. Every stream subscribed to a name holds the same copy of it: 200
/// sidecars of one namespace subscribe to the same thousands of endpoint assignments, and one copy
/// of each name, not 200, is what that costs.
pub type ResourceName = Arc<str>;

/// The names a stream subscribed to for one type.
pub type Names = BTreeSet<ResourceName>;

/// The names in use, each once. Names no stream holds any more are dropped whenever the set has
/// doubled since the last sweep, so it stays within twice what is subscribed.
#[derive(Debug)]
struct Interner {
    names: HashSet<ResourceName>,
    sweep_at: usize,
}

static INTERNER: LazyLock<Mutex<Interner>> = LazyLock::new(|| {
    Mutex::new(Interner {
        names: HashSet::new(),
        sweep_at: 0,
    })
});

fn interner() -> std::sync::MutexGuard<'static, Interner> {
    INTERNER.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The shared copy of `name`.
pub(crate) fn intern(name: &str) -> ResourceName {
    let mut interner = interner();
    if let Some(n) = interner.names.get(name) {
        return n.clone();
    }
    if interner.names.len() >= interner.sweep_at {
        interner.names.retain(|n| Arc::strong_count(n) > 1);
        interner.sweep_at = (interner.names.len() * 2).max(1024);
    }
    let n: ResourceName = Arc::from(name);
    interner.names.insert(n.clone());
    n
}

/// The longest NACK message kept in the sync status; longer ones are cut at a character boundary.
pub const MAX_NACK_MESSAGE: usize = 4096;

/// How many type URLs one stream may subscribe to (Envoy uses fewer than ten).
pub const MAX_TYPES_PER_STREAM: usize = 32;

/// How many names one stream may subscribe to per type.
pub const MAX_NAMES_PER_TYPE: usize = 100_000;

/// The sans-IO protocol state of one ADS stream, state of the world ([`SotwStream`]) or delta
/// ([`DeltaStream`]): requests and snapshots in, responses out. The server's stream task drives it;
/// tests drive it directly.
///
/// [`SotwStream`]: crate::SotwStream
/// [`DeltaStream`]: crate::DeltaStream
pub trait AdsStream: Sized + Send + 'static {
    type Request: Message + Default + Send + 'static;
    type Response: CarriesResources + Send + 'static;
    const MODE: Mode;

    /// A stream; `stream_id` makes its nonces unique across the server's streams.
    fn new(stream_id: u64) -> Self;

    /// The node a request names (the first request of a stream must).
    fn request_node(request: &Self::Request) -> Option<&Node>;

    /// The client's node, from the first request.
    fn node(&self) -> Option<&Node>;

    /// [`on_request`](Self::on_request), its responses still sharing the snapshot's resources.
    fn handle_request(
        &mut self,
        request: Self::Request,
        snapshot: Option<&Snapshot>,
    ) -> Result<Outcome<Prepared<Self::Response>>, ProtocolError>;

    /// [`on_snapshot`](Self::on_snapshot), its responses still sharing the snapshot's resources.
    fn snapshot_changed(&mut self, snapshot: &Snapshot) -> Vec<Prepared<Self::Response>>;

    /// The sync status of every type the client subscribed to, by type URL.
    fn statuses(&self) -> impl Iterator<Item = (&String, &TypeStatus)>;

    /// [`statuses`](Self::statuses), collected.
    fn status(&self) -> BTreeMap<String, TypeStatus> {
        self.statuses()
            .map(|(url, st)| (url.clone(), st.clone()))
            .collect()
    }

    /// Makes `into` [`status`](Self::status), reusing what it holds: it is written after every
    /// request and response of every stream, so it should not allocate each time.
    fn copy_status_into(&self, into: &mut BTreeMap<String, TypeStatus>) {
        let mut seen = 0;
        for (url, st) in self.statuses() {
            seen += 1;
            match into.get_mut(url) {
                Some(held) => held.clone_from(st),
                None => {
                    into.insert(url.clone(), st.clone());
                }
            }
        }
        if into.len() != seen {
            let now: std::collections::BTreeSet<&String> =
                self.statuses().map(|(url, _)| url).collect();
            into.retain(|url, _| now.contains(url));
        }
    }

    /// Handles one request against the proxy's current snapshot (`None`: the control plane has not
    /// set one yet; subscriptions are recorded and answered by [`on_snapshot`](Self::on_snapshot)).
    fn on_request(
        &mut self,
        request: Self::Request,
        snapshot: Option<&Snapshot>,
    ) -> Result<Outcome<Self::Response>, ProtocolError> {
        Ok(self
            .handle_request(request, snapshot)?
            .map(Prepared::message))
    }

    /// The proxy's snapshot changed: the responses to push, in push order, one per subscribed type
    /// whose resources changed (or that was never answered).
    fn on_snapshot(&mut self, snapshot: &Snapshot) -> Vec<Self::Response> {
        self.snapshot_changed(snapshot)
            .into_iter()
            .map(Prepared::message)
            .collect()
    }
}

/// Which ADS variant a stream speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    /// State of the world: `StreamAggregatedResources`.
    Sotw,
    /// Incremental: `DeltaAggregatedResources`.
    Delta,
}

impl Mode {
    /// `"sotw"` or `"delta"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Sotw => "sotw",
            Mode::Delta => "delta",
        }
    }
}

/// Where one type stands with one proxy: what was last sent, ACKed and NACKed (istiod's `syncz`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TypeStatus {
    /// The version (`version_info` / `system_version_info`) of the last response sent.
    pub sent_version: Option<String>,
    /// The nonce of the last response sent.
    pub sent_nonce: Option<String>,
    /// How many resources the last response carried.
    pub sent_resources: usize,
    /// The last version the proxy ACKed.
    pub acked_version: Option<String>,
    /// The last version the proxy NACKed (it keeps serving the ACKed one).
    pub nacked_version: Option<String>,
    /// The `error_detail.message` of the last NACK.
    pub last_nack: Option<String>,
    /// Responses sent for this type on this stream.
    pub responses: u64,
    pub acks: u64,
    pub nacks: u64,
}

impl Clone for TypeStatus {
    fn clone(&self) -> TypeStatus {
        let mut copy = TypeStatus::default();
        copy.clone_from(self);
        copy
    }

    /// Field by field, so that the strings held are written over, not allocated again (every field
    /// named: a new one does not compile until it is copied here).
    fn clone_from(&mut self, source: &TypeStatus) {
        let TypeStatus {
            sent_version,
            sent_nonce,
            sent_resources,
            acked_version,
            nacked_version,
            last_nack,
            responses,
            acks,
            nacks,
        } = source;
        self.sent_version.clone_from(sent_version);
        self.sent_nonce.clone_from(sent_nonce);
        self.sent_resources = *sent_resources;
        self.acked_version.clone_from(acked_version);
        self.nacked_version.clone_from(nacked_version);
        self.last_nack.clone_from(last_nack);
        self.responses = *responses;
        self.acks = *acks;
        self.nacks = *nacks;
    }
}

impl TypeStatus {
    /// Whether the proxy has ACKed the last response sent.
    pub fn in_sync(&self) -> bool {
        self.sent_version.is_some() && self.sent_version == self.acked_version
    }
}

/// Something a request did that the transport logs and counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The client subscribed to a type for the first time on this stream.
    Subscribed { type_url: String },
    /// The client changed the names it is subscribed to.
    SubscriptionChanged {
        type_url: String,
        added: BTreeSet<String>,
        removed: BTreeSet<String>,
    },
    /// The client ACKed the response with `nonce`.
    Ack {
        type_url: String,
        version: String,
        nonce: String,
    },
    /// The client rejected the response with `nonce`; it keeps its previous config of that type.
    Nack {
        type_url: String,
        version: String,
        nonce: String,
        message: String,
    },
    /// A request answering a response that is no longer the latest of its type: ignored.
    StaleNonce { type_url: String, nonce: String },
}

/// The result of feeding a request to a protocol state machine: the responses to send, in order, and
/// what happened.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome<R> {
    pub responses: Vec<R>,
    pub events: Vec<Event>,
}

impl<R> Outcome<R> {
    /// The same outcome with each response turned into another form.
    pub fn map<S>(self, f: impl FnMut(R) -> S) -> Outcome<S> {
        Outcome {
            responses: self.responses.into_iter().map(f).collect(),
            events: self.events,
        }
    }
}

impl<R> Default for Outcome<R> {
    fn default() -> Self {
        Outcome {
            responses: Vec::new(),
            events: Vec::new(),
        }
    }
}

/// A request the server cannot serve; the stream ends with `INVALID_ARGUMENT` and this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error(
        "the first request of an ADS stream must carry the node with a non-empty node.id; check the \
         proxy's bootstrap `node: {{id: ...}}`"
    )]
    MissingNode,
    #[error("an ADS request has no type_url; every request must name the resource type it is for")]
    MissingTypeUrl,
    #[error(
        "the stream subscribed to more than {max} resource types (last: {type_url}); is the client an xDS proxy?"
    )]
    TooManyTypes { max: usize, type_url: String },
    #[error("the stream subscribed to more than {max} names of {type_url}")]
    TooManyNames { max: usize, type_url: String },
}

/// Takes the node of the first request: it must be there, with an id.
pub(crate) fn first_node(
    current: &mut Option<Node>,
    node: Option<&Node>,
) -> Result<(), ProtocolError> {
    if current.is_some() {
        return Ok(());
    }
    match node {
        Some(n) if !n.id.is_empty() => {
            *current = Some(n.clone());
            Ok(())
        }
        _ => Err(ProtocolError::MissingNode),
    }
}

/// The NACK message as kept in the status, bounded.
pub(crate) fn bounded_message(message: &str) -> String {
    if message.len() <= MAX_NACK_MESSAGE {
        return message.to_owned();
    }
    let mut end = MAX_NACK_MESSAGE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

/// Nonces unique within one stream: `<stream id>-<counter>`.
#[derive(Debug)]
pub(crate) struct Nonces {
    stream: u64,
    next: u64,
}

impl Nonces {
    pub(crate) fn new(stream: u64) -> Nonces {
        Nonces { stream, next: 0 }
    }

    pub(crate) fn next(&mut self) -> String {
        self.next += 1;
        format!("{}-{}", self.stream, self.next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nack_messages_are_bounded_on_a_char_boundary() {
        let long = "é".repeat(MAX_NACK_MESSAGE);
        let b = bounded_message(&long);
        assert!(b.len() <= MAX_NACK_MESSAGE + "…".len());
        assert!(b.ends_with('…'));
        assert_eq!(bounded_message("short"), "short");
    }

    #[test]
    fn interned_names_are_shared_and_dropped_when_unused() {
        let a = intern("outbound|8080||interner-test.ns.svc.cluster.local");
        let b = intern(&String::from(
            "outbound|8080||interner-test.ns.svc.cluster.local",
        ));
        assert!(Arc::ptr_eq(&a, &b));
        drop((a, b));
        // Enough new names to make the set double: the sweep drops the unused one, not the held.
        let held: Vec<ResourceName> = (0..4096)
            .map(|i| intern(&format!("interner-fill-{i}")))
            .collect();
        let names = &interner().names;
        assert!(!names.contains("outbound|8080||interner-test.ns.svc.cluster.local"));
        assert!(held.iter().all(|n| names.contains(n)));
    }

    #[test]
    fn nonces_are_unique_per_stream() {
        let mut n = Nonces::new(3);
        assert_eq!(n.next(), "3-1");
        assert_eq!(n.next(), "3-2");
    }
}
