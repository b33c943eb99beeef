//! The protobuf descriptors of Envoy's API, for reading and writing its JSON/YAML form.
//!
//! The pool holds every message envoy-types generated Rust types for (Envoy's whole v3 data-plane API,
//! the xDS and UDPA protos, Google's well-known types) plus `xds.type.v3.TypedStruct` and
//! `udpa.type.v1.TypedStruct`; `build.rs` says where it comes from.

use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, MessageDescriptor};

static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptors.bin"));

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(DESCRIPTORS).expect("the descriptor set built by build.rs decodes")
});

/// The descriptor pool (decoded once, on first use).
pub fn pool() -> &'static DescriptorPool {
    &POOL
}

/// The descriptor of a message by its full name (`envoy.config.listener.v3.Listener`), or by a type URL
/// (`type.googleapis.com/envoy.config.listener.v3.Listener`).
pub fn message(name_or_type_url: &str) -> Option<MessageDescriptor> {
    let name = name_or_type_url
        .rsplit_once('/')
        .map_or(name_or_type_url, |(_, n)| n);
    pool().get_message_by_name(name)
}
