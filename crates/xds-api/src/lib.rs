//! Envoy's xDS v3 API: the protobuf types Bosun's proxy and control plane exchange (re-exported from
//! `envoy-types`), their type URLs, and `Any` packing.

pub use envoy_types::pb;
