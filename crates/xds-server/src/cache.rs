//! The cache the control plane fills — one [`Snapshot`] per proxy, set atomically — and what the
//! server knows of the proxies connected to it: who they are, where each type stands with each of
//! them, and counters.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use tokio::sync::watch;
use xds_api::pb::envoy::config::core::v3::Node;
use xds_api::pb::google::protobuf::{Struct, value::Kind};

use crate::protocol::{Mode, TypeStatus};
use crate::snapshot::Snapshot;

/// The node metadata key Istio puts a workload's labels under.
pub const LABELS_KEY: &str = "LABELS";
/// The node metadata key Istio puts a workload's namespace under.
pub const NAMESPACE_KEY: &str = "NAMESPACE";

/// A proxy connected to the server: one ADS stream.
#[derive(Clone, Debug, PartialEq)]
pub struct ProxyInfo {
    /// Unique per stream on this server (a proxy that reconnects gets a new one).
    pub connection_id: u64,
    /// `node.id`: `sidecar~10.1.1.1~reviews-v1-abc.default~default.svc.cluster.local`.
    pub node_id: String,
    /// `node.cluster`.
    pub cluster: String,
    /// `node.metadata`, as the proxy sent it.
    pub metadata: Option<Struct>,
    /// The string values of `node.metadata.LABELS`.
    pub labels: BTreeMap<String, String>,
    /// `node.metadata.NAMESPACE`, if a string.
    pub namespace: Option<String>,
    /// The peer address of the stream.
    pub address: Option<SocketAddr>,
    pub mode: Mode,
    pub connected_at: SystemTime,
}

impl ProxyInfo {
    /// What a stream's first request says about the proxy.
    pub fn from_node(
        connection_id: u64,
        node: &Node,
        address: Option<SocketAddr>,
        mode: Mode,
    ) -> ProxyInfo {
        let fields = node.metadata.as_ref().map(|m| &m.fields);
        let labels = fields
            .and_then(|f| f.get(LABELS_KEY))
            .and_then(|v| match &v.kind {
                Some(Kind::StructValue(s)) => Some(s),
                _ => None,
            })
            .map(|s| {
                s.fields
                    .iter()
                    .filter_map(|(k, v)| match &v.kind {
                        Some(Kind::StringValue(s)) => Some((k.clone(), s.clone())),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let namespace = fields
            .and_then(|f| f.get(NAMESPACE_KEY))
            .and_then(|v| match &v.kind {
                Some(Kind::StringValue(s)) => Some(s.clone()),
                _ => None,
            });
        ProxyInfo {
            connection_id,
            node_id: node.id.clone(),
            cluster: node.cluster.clone(),
            metadata: node.metadata.clone(),
            labels,
            namespace,
            address,
            mode,
            connected_at: SystemTime::now(),
        }
    }
}

/// Where one connected proxy stands, per type (for `/debug/syncz`).
#[derive(Clone, Debug, PartialEq)]
pub struct ProxySyncStatus {
    pub proxy: ProxyInfo,
    /// The version of the snapshot the stream last served from.
    pub snapshot_version: Option<String>,
    /// Per type URL: last sent, ACKed and NACKed versions, last NACK message.
    pub types: BTreeMap<String, TypeStatus>,
}

/// Server-wide counters, read with [`SnapshotCache::counters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Snapshot changes that sent at least one response to a stream.
    pub pushes: u64,
    /// Responses sent, for requests and for pushes.
    pub responses: u64,
    pub acks: u64,
    pub nacks: u64,
    /// Requests answering an older response, ignored.
    pub stale_nonces: u64,
    /// Streams open now.
    pub connected_proxies: u64,
    /// Streams opened since start.
    pub connections_total: u64,
    /// Streams ended because the proxy did not read its responses in time.
    pub slow_consumers: u64,
}

#[derive(Debug, Default)]
pub(crate) struct AtomicCounters {
    pub pushes: AtomicU64,
    pub responses: AtomicU64,
    pub acks: AtomicU64,
    pub nacks: AtomicU64,
    pub stale_nonces: AtomicU64,
    pub connections_total: AtomicU64,
    pub slow_consumers: AtomicU64,
}

type SnapshotTx = watch::Sender<Option<Arc<Snapshot>>>;
pub(crate) type SnapshotRx = watch::Receiver<Option<Arc<Snapshot>>>;

struct Inner {
    snapshots: Mutex<HashMap<String, SnapshotTx>>,
    connections: Mutex<BTreeMap<u64, ProxySyncStatus>>,
    proxies_changed: watch::Sender<u64>,
    counters: AtomicCounters,
    next_connection: AtomicU64,
}

/// The per-proxy snapshots the server serves, and the registry of connected proxies. Cheap to clone
/// (shared).
#[derive(Clone)]
pub struct SnapshotCache {
    inner: Arc<Inner>,
}

impl fmt::Debug for SnapshotCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotCache")
            .field("snapshots", &lock(&self.inner.snapshots).len())
            .field("connections", &lock(&self.inner.connections).len())
            .finish()
    }
}

impl Default for SnapshotCache {
    fn default() -> Self {
        SnapshotCache::new()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SnapshotCache {
    /// An empty cache.
    pub fn new() -> SnapshotCache {
        let (proxies_changed, _) = watch::channel(0);
        SnapshotCache {
            inner: Arc::new(Inner {
                snapshots: Mutex::new(HashMap::new()),
                connections: Mutex::new(BTreeMap::new()),
                proxies_changed,
                counters: AtomicCounters::default(),
                next_connection: AtomicU64::new(1),
            }),
        }
    }

    /// Sets the whole configuration of the proxy `node_id`; its streams push what changed for what they
    /// subscribed to.
    pub fn set_snapshot(&self, node_id: impl Into<String>, snapshot: Snapshot) {
        let snapshot = Some(Arc::new(snapshot));
        let mut map = lock(&self.inner.snapshots);
        match map.entry(node_id.into()) {
            std::collections::hash_map::Entry::Occupied(e) => {
                e.get().send_replace(snapshot);
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(watch::channel(snapshot).0);
            }
        }
    }

    /// The current snapshot of `node_id`.
    pub fn snapshot(&self, node_id: &str) -> Option<Arc<Snapshot>> {
        lock(&self.inner.snapshots)
            .get(node_id)
            .and_then(|tx| tx.borrow().clone())
    }

    /// Forgets the snapshot of `node_id` (a proxy gone for good). Its streams, if any, keep serving
    /// what they last sent and push nothing more until a new snapshot is set.
    pub fn clear_snapshot(&self, node_id: &str) -> bool {
        let mut map = lock(&self.inner.snapshots);
        let Some(tx) = map.get(node_id) else {
            return false;
        };
        let had = tx.send_replace(None).is_some();
        if tx.receiver_count() == 0 {
            map.remove(node_id);
        }
        had
    }

    /// The node ids that have a snapshot.
    pub fn node_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = lock(&self.inner.snapshots)
            .iter()
            .filter(|(_, tx)| tx.borrow().is_some())
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// The proxies connected now (one entry per stream), by connection id.
    pub fn proxies(&self) -> Vec<ProxyInfo> {
        lock(&self.inner.connections)
            .values()
            .map(|s| s.proxy.clone())
            .collect()
    }

    /// A receiver that changes whenever a proxy connects or disconnects (the control plane builds a
    /// snapshot for a new node id on it).
    pub fn watch_proxies(&self) -> watch::Receiver<u64> {
        self.inner.proxies_changed.subscribe()
    }

    /// Where every connected proxy stands.
    pub fn sync_status(&self) -> Vec<ProxySyncStatus> {
        lock(&self.inner.connections).values().cloned().collect()
    }

    /// Whether every connected proxy has ACKed the last response of every type it was sent. Looks
    /// under the lock without copying the statuses: it is polled while a push converges.
    pub fn all_in_sync(&self) -> bool {
        lock(&self.inner.connections)
            .values()
            .all(|s| s.types.values().all(TypeStatus::in_sync))
    }

    /// Where the streams of `node_id` stand (usually one).
    pub fn sync_status_of(&self, node_id: &str) -> Vec<ProxySyncStatus> {
        lock(&self.inner.connections)
            .values()
            .filter(|s| s.proxy.node_id == node_id)
            .cloned()
            .collect()
    }

    /// The server-wide counters.
    pub fn counters(&self) -> Counters {
        let c = &self.inner.counters;
        Counters {
            pushes: c.pushes.load(Ordering::Relaxed),
            responses: c.responses.load(Ordering::Relaxed),
            acks: c.acks.load(Ordering::Relaxed),
            nacks: c.nacks.load(Ordering::Relaxed),
            stale_nonces: c.stale_nonces.load(Ordering::Relaxed),
            connected_proxies: lock(&self.inner.connections).len() as u64,
            connections_total: c.connections_total.load(Ordering::Relaxed),
            slow_consumers: c.slow_consumers.load(Ordering::Relaxed),
        }
    }

    // === for the transport ===

    pub(crate) fn atomic_counters(&self) -> &AtomicCounters {
        &self.inner.counters
    }

    pub(crate) fn next_connection_id(&self) -> u64 {
        self.inner.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// A receiver of `node_id`'s snapshots (creating the entry if the control plane has not yet set one).
    pub(crate) fn watch(&self, node_id: &str) -> SnapshotRx {
        let mut map = lock(&self.inner.snapshots);
        map.entry(node_id.to_owned())
            .or_insert_with(|| watch::channel(None).0)
            .subscribe()
    }

    /// Registers a stream; the returned guard unregisters it when dropped.
    pub(crate) fn register(&self, proxy: ProxyInfo) -> Registration {
        let id = proxy.connection_id;
        let node_id = proxy.node_id.clone();
        lock(&self.inner.connections).insert(
            id,
            ProxySyncStatus {
                proxy,
                snapshot_version: None,
                types: BTreeMap::new(),
            },
        );
        self.inner
            .counters
            .connections_total
            .fetch_add(1, Ordering::Relaxed);
        self.inner.proxies_changed.send_modify(|n| *n += 1);
        Registration {
            cache: self.clone(),
            id,
            node_id,
        }
    }

    pub(crate) fn update_status(
        &self,
        id: u64,
        snapshot_version: Option<&str>,
        write_types: impl FnOnce(&mut BTreeMap<String, TypeStatus>),
    ) {
        if let Some(s) = lock(&self.inner.connections).get_mut(&id) {
            match (&mut s.snapshot_version, snapshot_version) {
                (Some(held), Some(now)) if held == now => {}
                (held, now) => *held = now.map(str::to_owned),
            }
            write_types(&mut s.types);
        }
    }
}

/// A registered stream; unregisters on drop.
#[derive(Debug)]
pub(crate) struct Registration {
    cache: SnapshotCache,
    id: u64,
    node_id: String,
}

impl Registration {
    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let inner = &self.cache.inner;
        lock(&inner.connections).remove(&self.id);
        // Drop a cleared snapshot entry nobody watches any more (the stream drops its receiver
        // before this guard).
        let mut map = lock(&inner.snapshots);
        if let Some(tx) = map.get(&self.node_id)
            && tx.borrow().is_none()
            && tx.receiver_count() == 0
        {
            map.remove(&self.node_id);
        }
        drop(map);
        inner.proxies_changed.send_modify(|n| *n += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xds_api::pb::google::protobuf::Value;

    #[test]
    fn proxy_info_reads_istio_metadata() {
        let s = |v: &str| Value {
            kind: Some(Kind::StringValue(v.into())),
        };
        let labels = Struct {
            fields: [
                ("app".to_owned(), s("reviews")),
                ("n".to_owned(), Value::default()),
            ]
            .into_iter()
            .collect(),
        };
        let node = Node {
            id: "sidecar~1~x.default~default.svc.cluster.local".into(),
            metadata: Some(Struct {
                fields: [
                    (
                        LABELS_KEY.to_owned(),
                        Value {
                            kind: Some(Kind::StructValue(labels)),
                        },
                    ),
                    (NAMESPACE_KEY.to_owned(), s("default")),
                ]
                .into_iter()
                .collect(),
            }),
            ..Default::default()
        };
        let info = ProxyInfo::from_node(1, &node, None, Mode::Delta);
        assert_eq!(info.labels.len(), 1, "non-string labels are skipped");
        assert_eq!(info.labels["app"], "reviews");
        assert_eq!(info.namespace.as_deref(), Some("default"));
        let bare = ProxyInfo::from_node(2, &Node::default(), None, Mode::Sotw);
        assert!(bare.labels.is_empty() && bare.namespace.is_none());
    }

    #[test]
    fn snapshots_are_set_replaced_and_cleared() {
        let cache = SnapshotCache::new();
        assert!(cache.snapshot("n").is_none());
        cache.set_snapshot("n", Snapshot::new("v1"));
        let mut rx = cache.watch("n");
        assert_eq!(
            rx.borrow_and_update()
                .as_ref()
                .map(|s| s.version().to_owned())
                .as_deref(),
            Some("v1")
        );
        cache.set_snapshot("n", Snapshot::new("v2"));
        assert!(rx.has_changed().unwrap_or(false));
        assert_eq!(
            cache
                .snapshot("n")
                .map(|s| s.version().to_owned())
                .as_deref(),
            Some("v2")
        );
        assert_eq!(cache.node_ids(), ["n"]);
        assert!(cache.clear_snapshot("n"));
        assert!(cache.node_ids().is_empty());
        assert!(cache.snapshot("n").is_none());
        drop(rx);
        assert!(!cache.clear_snapshot("n"));
    }

    #[test]
    fn registrations_come_and_go() {
        let cache = SnapshotCache::new();
        let mut changes = cache.watch_proxies();
        let node = Node {
            id: "n".into(),
            ..Default::default()
        };
        let reg = cache.register(ProxyInfo::from_node(
            cache.next_connection_id(),
            &node,
            None,
            Mode::Sotw,
        ));
        assert!(changes.has_changed().unwrap_or(false));
        changes.mark_unchanged();
        assert_eq!(cache.proxies().len(), 1);
        assert_eq!(cache.counters().connected_proxies, 1);
        let rx = cache.watch("n");
        drop(rx);
        drop(reg);
        assert!(changes.has_changed().unwrap_or(false));
        assert!(cache.proxies().is_empty());
        assert_eq!(cache.counters().connections_total, 1);
        // The entry the stream created, with no snapshot and no watcher, is gone.
        assert!(lock(&cache.inner.snapshots).is_empty());
    }
}
