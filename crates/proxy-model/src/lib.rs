//! The proxy's configuration: Envoy's xDS turned into validated, immutable values that the data plane
//! runs from, and the pure functions that route a request with them. No I/O.
//!
//! Building is where the work happens: regexes compile, weights add up, clusters are checked to exist,
//! and anything Bosun would not honour is an error naming its field path — so a config is either
//! run exactly or refused, never half-applied.

// Envoy still honours deprecated fields (`total_weight`, `exact_match`, `http2_protocol_options`…) and
// configs in the wild use them; so does Bosun.
#![allow(deprecated)]

pub mod access_log;
pub mod cluster;
pub mod error;
pub mod filter;
pub mod listener;
pub mod locality;
pub mod matcher;
pub mod ratelimit;
pub mod route;
pub mod snapshot;
pub mod tls;

pub use error::ModelError;
pub use snapshot::Snapshot;

use error::At;
use xds_api::pb::google::protobuf::{Any, Duration as ProtoDuration, UInt32Value};

/// A protobuf Duration as a std one (negative values count as zero).
pub fn duration(d: &ProtoDuration) -> std::time::Duration {
    let secs = u64::try_from(d.seconds).unwrap_or(0);
    let nanos = u32::try_from(d.nanos).unwrap_or(0);
    std::time::Duration::new(secs, nanos)
}

/// A wrapped u32, or the default when unset.
pub fn u32_or(v: Option<&UInt32Value>, default: u32) -> u32 {
    v.map_or(default, |v| v.value)
}

/// Decodes a typed config, checking it is the expected message.
pub(crate) fn unpack<T: prost::Message + prost::Name + Default>(
    any: &Any,
    at: &At,
) -> Result<T, ModelError> {
    let want = T::type_url();
    if any.type_url != want {
        return Err(at.error(format!("expected a {want}, found {}", any.type_url)));
    }
    T::decode(any.value.as_slice()).map_err(|e| at.error(format!("cannot decode {want}: {e}")))
}
