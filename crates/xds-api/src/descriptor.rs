//! The protobuf descriptors of Envoy's API, for reading and writing its JSON/YAML form.
//!
//! The pool holds every message envoy-types generated Rust types for (Envoy's whole v3 data-plane API,
//! the xDS and UDPA protos, Google's well-known types) plus `xds.type.v3.TypedStruct` and
//! `udpa.type.v1.TypedStruct`; `build.rs` says where it comes from.

use std::sync::{Mutex, PoisonError};

use prost_reflect::{DescriptorPool, MessageDescriptor};

static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptors.bin"));

/// Decoded on first use; [`release`] drops it (decoded it takes about 10 MB of heap).
static POOL: Mutex<Option<DescriptorPool>> = Mutex::new(None);

/// The descriptor pool (a cheap handle; decoded on first use, and again after [`release`]).
pub fn pool() -> DescriptorPool {
    POOL.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert_with(|| {
            // prost-reflect makes its well-known types pool, which it keeps for good, while
            // decoding ours: made first, it does not sit above ours in the heap, which can then
            // be trimmed once ours is released.
            drop(DescriptorPool::global());
            DescriptorPool::decode(DESCRIPTORS)
                .expect("the descriptor set built by build.rs decodes")
        })
        .clone()
}

/// Frees the decoded descriptors and the validation rules taken from them, once a long-running
/// process has read its configuration; handles still held elsewhere keep theirs alive.
pub fn release() {
    POOL.lock().unwrap_or_else(PoisonError::into_inner).take();
    crate::validate::release();
}

/// The descriptor of a message by its full name (`envoy.config.listener.v3.Listener`), or by a type URL
/// (`type.googleapis.com/envoy.config.listener.v3.Listener`).
pub fn message(name_or_type_url: &str) -> Option<MessageDescriptor> {
    let name = name_or_type_url
        .rsplit_once('/')
        .map_or(name_or_type_url, |(_, n)| n);
    pool().get_message_by_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_descriptors_are_decoded_again() {
        let before = message("envoy.config.listener.v3.Listener").expect("Listener");
        release();
        let after = message("envoy.config.listener.v3.Listener").expect("Listener after release");
        assert_eq!(before.full_name(), after.full_name());
        assert!(crate::bootstrap::from_yaml("node: { id: a }", None).is_ok());
    }
}
