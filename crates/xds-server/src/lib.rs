//! Bosun's ADS server: how `bosun control` serves Envoy's xDS (state of the world and delta) to stock
//! Envoy and to `bosun proxy`, on port 15010.
//!
//! - [`SnapshotCache`]: what the control plane fills. Per proxy (node id) a [`Snapshot`] — a version
//!   and, per type URL, resources by name with their own versions, kept encoded
//!   ([`VersionedResource`]) in maps that proxies share ([`LayeredMap`]: the maps of a scope plus the
//!   proxy's own) — set atomically with [`SnapshotCache::set_snapshot`]. It also knows the connected proxies ([`ProxyInfo`]: node id,
//!   metadata, Istio labels and namespace, address), where each type stands with each of them
//!   ([`ProxySyncStatus`], for `/debug/syncz`) and server-wide [`Counters`]. The control plane decides
//!   content; this crate only serves it.
//! - [`SotwStream`] and [`DeltaStream`]: the per-stream protocol state machines, sans-IO. Feed them
//!   requests and snapshots; send the responses they return. They track subscriptions (wildcard for
//!   LDS/CDS; names shared across streams, [`ResourceName`]), nonces, ACKs and NACKs, and push only
//!   what changed, in Envoy's make-before-break order (CDS, EDS, LDS, RDS).
//! - [`AdsServer`]: ADS over gRPC on a tonic server; one task per stream, bounded outbound queue,
//!   pushes on snapshot change through a watch per node, push concurrency bounded across streams,
//!   graceful stop. [`serve`] starts one in the background. Its gRPC methods ([`AdsService`]) are
//!   written by hand: a response goes out as chunks that refer to the snapshot's encoded resources
//!   ([`Prepared`]) instead of a copy per stream, and a stream holds no request buffer between
//!   requests.
//!
//! ```no_run
//! # async fn run() -> Result<(), xds_server::XdsServerError> {
//! use xds_api::pb::envoy::config::cluster::v3::Cluster;
//! use xds_server::{Snapshot, SnapshotCache};
//!
//! let cache = SnapshotCache::new();
//! let server = xds_server::serve("0.0.0.0:15010".parse().unwrap(), cache.clone()).await?;
//! let cluster = Cluster { name: "outbound|9080||reviews.default.svc.cluster.local".into(), ..Default::default() };
//! cache.set_snapshot(
//!     "sidecar~10.1.1.1~reviews-v1-abc.default~default.svc.cluster.local",
//!     Snapshot::new("2024-01-01T00:00:00Z/1").with(&cluster.name, &cluster),
//! );
//! // … later
//! server.stop().await?;
//! # Ok(()) }
//! ```

mod cache;
mod delta;
mod error;
mod grpc;
mod protocol;
mod response;
mod server;
mod snapshot;
mod sotw;

pub use crate::cache::{
    Counters, LABELS_KEY, NAMESPACE_KEY, ProxyInfo, ProxySyncStatus, SnapshotCache,
};
pub use crate::delta::DeltaStream;
pub use crate::error::XdsServerError;
pub use crate::grpc::AdsService;
pub use crate::protocol::{
    AdsStream, Event, MAX_NACK_MESSAGE, MAX_NAMES_PER_TYPE, MAX_TYPES_PER_STREAM, Mode, Names,
    Outcome, ProtocolError, ResourceName, TypeStatus,
};
pub use crate::response::{Carried, CarriesResources, Prepared};
pub use crate::server::{AdsServer, RunningServer, ServerConfig, serve};
pub use crate::snapshot::{
    LayeredIter, LayeredMap, PUSH_ORDER, ResourceMap, Snapshot, VersionedResource, content_version,
    is_wildcard_type, push_rank, same_map, same_resource, same_single_map, short_name,
    sort_push_order,
};
pub use crate::sotw::{CONTROL_PLANE_ID, SotwStream};
