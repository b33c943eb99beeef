//! Bosun's ADS client: how `bosun proxy` takes its configuration live from a control plane (`bosun
//! control` or istiod) over Envoy's Aggregated Discovery Service, state-of-the-world or delta.
//!
//! - [`SotwClient`] and [`DeltaClient`] are the protocol state machines, sans-IO: feed them responses,
//!   send the requests they return. They decode each resource by type, hand the complete set of one type
//!   to the [`Consumer`] to validate and apply, and answer with an ACK, or with a NACK that lists
//!   `name: reason` per rejected resource while the last good set keeps serving. They follow
//!   subscriptions as Envoy does (EDS for the clusters CDS names, RDS for the routes LDS names, one
//!   wildcard VHDS subscription once a route configuration has `vhds`) and warm in Envoy's order (CDS,
//!   EDS, LDS, RDS and VHDS), telling the consumer once when the initial configuration is
//!   complete.
//! - [`AdsClient`] runs one of them over tonic on tokio: connect timeout, HTTP/2 keepalive, bounded
//!   queues, reconnects with jittered exponential backoff and re-subscribes (with the versions it holds,
//!   in delta mode), and exposes its [`AdsStatus`].
//!
//! ```no_run
//! # async fn run() -> Result<(), xds_client::XdsError> {
//! use xds_client::{AdsClient, Consumer, Mode, Rejection, ResourceSet};
//! use xds_api::pb::envoy::config::core::v3::Node;
//!
//! struct Proxy;
//! impl Consumer for Proxy {
//!     fn apply(&mut self, resources: ResourceSet<'_>) -> Result<(), Vec<Rejection>> {
//!         // convert into the proxy's model; Err(vec![Rejection::new(name, reason)]) to NACK
//!         Ok(())
//!     }
//! }
//! let node = Node { id: "sidecar~10.1.1.1~reviews-v1-abc.default~default.svc.cluster.local".into(), ..Default::default() };
//! let client = AdsClient::connect("http://127.0.0.1:15010", node, Mode::Delta, Proxy)?;
//! client.wait_initial_config(std::time::Duration::from_secs(30)).await;
//! # Ok(()) }
//! ```

mod core;
mod delta;
mod error;
pub mod resources;
mod sotw;
mod transport;

pub use crate::core::{
    Consumer, Event, INVALID_ARGUMENT, MAX_NACK_MESSAGE, Outcome, ResourceSet, Session, Warming,
    nack_status,
};
pub use crate::delta::DeltaClient;
pub use crate::error::XdsError;
pub use crate::resources::{Rejection, Resource, ResourceType, Resources};
pub use crate::sotw::SotwClient;
pub use crate::transport::{AdsClient, AdsConfig, AdsStatus, Mode};
