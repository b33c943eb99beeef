//! The `spec` of every Istio kind Bosun understands, field for field as Istio's protos define them
//! (lowerCamelCase names as in the CRDs; `Option` where the proto has presence; oneofs as sibling
//! `Option` fields whose exclusivity validation checks).

pub mod common;
pub mod destination_rule;
pub mod gateway;
pub mod security;
pub mod service_entry;
pub mod sidecar;
pub mod virtual_service;
pub mod workload_entry;
pub mod workload_group;

pub use common::*;
