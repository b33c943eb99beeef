//! Bosun's control plane (istiod's job): Istio's networking API and a service registry turned into
//! each proxy's xDS, served over ADS and pushed live.
//!
//! - [`store`]: the config directory (watched; a file that does not validate keeps its last good
//!   version) and resources applied over the debug API.
//! - [`model`]: services and instances from the mesh file, ServiceEntries and WorkloadEntries.
//! - [`index`]: one immutable view of config + registry per push (istiod's PushContext).
//! - [`node`]: who a proxy is (node id, labels, namespace, interception mode).
//! - [`generate`]: one proxy's clusters, endpoints, listeners and routes, with istiod's names
//!   (`outbound|9080|v1|reviews.default.svc.cluster.local`, route tables by port).
//! - [`identity`]: the mesh CA and the workload certificates of `ISTIO_MUTUAL`.
//! - [`server`]: the running control plane: watch, debounce, push; [`debug`]: its monitoring port.

pub mod debug;
pub mod delegate;
pub mod error;
pub mod generate;
pub mod identity;
pub mod index;
pub mod model;
pub mod node;
pub mod server;
pub mod store;

pub use error::ControlError;
pub use server::{ControlOptions, ControlPlane};
