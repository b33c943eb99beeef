//! Istio's networking and security API as Rust types, loaded from YAML with positions, validated with
//! Istio's admission rules and analysed across resources like `istioctl analyze`.
//!
//! The flow: [`yaml::parse_stream`] builds a tree with positions, [`resource::load_str`] turns each
//! document into a typed [`resource::Resource`] (reporting unknown fields and wrong types), then
//! [`validate::validate`] applies Istio's per-resource rules and `analyze` the cross-resource ones.
//! Every finding carries a field path and the line and column it points at.

pub mod analyze;
pub mod de;
pub mod diag;
pub mod path;
pub mod registry;
pub mod resource;
pub mod secret;
pub mod types;
pub mod validate;
/// The positioned YAML tree every loader here reads (its own crate, shared with `xds-api`).
pub use kube_yaml as yaml;
