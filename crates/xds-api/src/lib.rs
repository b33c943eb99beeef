//! Envoy's xDS v3 API: the protobuf types Bosun's proxy and control plane exchange (re-exported from
//! `envoy-types`), their type URLs, `Any` packing, and Envoy bootstrap loading.
//!
//! - [`bootstrap`] reads an Envoy bootstrap (YAML or JSON, the proto3 JSON mapping, exactly what
//!   `envoy -c` accepts) into [`pb::envoy::config::bootstrap::v3::Bootstrap`], with `file:line:col`, the
//!   field path and a suggestion on bad input.
//! - [`json`] renders any message as proto3 JSON (the admin `/config_dump`), `Any` contents included.
//! - [`any`] packs and unpacks `google.protobuf.Any` (and `TypedStruct`-wrapped configs).
//! - [`type_url`] names the xDS resource and extension types.
//! - [`secrets`] finds the secrets (SDS) a TLS transport socket names.
//! - [`descriptor`] is the protobuf descriptor pool behind all of this: every message envoy-types has.

pub use envoy_types::pb;
pub use prost_reflect;

pub mod any;
pub mod bootstrap;
pub mod config_source;
mod decode;
pub mod descriptor;
pub mod json;
pub mod secrets;
pub mod type_url;
mod validate;

/// The metadata namespace (`filter_metadata` key) in which a cluster's `transport_socket_matches`
/// look for an endpoint's (or its locality's) labels.
pub const TRANSPORT_SOCKET_MATCH: &str = "envoy.transport_socket_match";
