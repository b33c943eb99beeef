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

/// A pool of only the files that the messages `names` (full names, a nested one's too) need, from
/// the same set: decoding Envoy's whole API takes tens of milliseconds, and a bootstrap needs about a
/// quarter of its files. The whole pool if that is decoded already; `None` if a name is not in the set.
/// Not kept: each call decodes its own.
pub fn pool_for(names: &[String]) -> Option<DescriptorPool> {
    if let Some(whole) = POOL.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
        return Some(whole.clone());
    }
    subset(names)
}

/// A new pool of the files that `names` need.
fn subset(names: &[String]) -> Option<DescriptorPool> {
    let mut wanted = vec![false; FILES.len()];
    let mut stack = names
        .iter()
        .map(|n| file_of(n))
        .collect::<Option<Vec<usize>>>()?;
    while let Some(k) = stack.pop() {
        if !std::mem::replace(&mut wanted[k], true) {
            let (_, _, first, end) = FILES[k];
            stack.extend(
                DEPENDENCIES[first as usize..end as usize]
                    .iter()
                    .map(|&d| usize::from(d)),
            );
        }
    }
    // In the set's order, which has every file after the files it imports.
    let set: Vec<u8> = FILES
        .iter()
        .zip(&wanted)
        .filter(|(_, w)| **w)
        .flat_map(|(&(start, end, _, _), _)| &DESCRIPTORS[start as usize..end as usize])
        .copied()
        .collect();
    drop(DescriptorPool::global()); // as in `pool`
    DescriptorPool::decode(set.as_slice()).ok()
}

// The set's index, made by `build.rs`: `MESSAGES` (every top-level message's full name, as a range of
// `MESSAGE_NAMES`, and its file; sorted by name), `FILES` (each file's byte range in `DESCRIPTORS`
// and its imports, as a range of `DEPENDENCIES`).
include!(concat!(env!("OUT_DIR"), "/descriptor_index.rs"));

/// The file defining message `name` (for a nested message, its outermost one).
fn file_of(name: &str) -> Option<usize> {
    let message_name = |&(start, len, _): &(u32, u32, u16)| {
        MESSAGE_NAMES
            .get(start as usize..(start + len) as usize)
            .unwrap_or_default()
    };
    let mut candidate = name;
    loop {
        if let Ok(k) = MESSAGES.binary_search_by(|m| message_name(m).cmp(candidate)) {
            return Some(usize::from(MESSAGES[k].2));
        }
        candidate = candidate.rsplit_once('.')?.0;
    }
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
    fn a_bootstraps_pool_has_what_it_names_and_less_than_the_whole_api() {
        let wanted = [
            "envoy.config.bootstrap.v3.Bootstrap".to_owned(),
            "envoy.extensions.filters.http.router.v3.Router".to_owned(),
            "envoy.config.cluster.v3.Cluster.LbSubsetConfig".to_owned(),
        ];
        // `subset`, not `pool_for`: another test may have decoded the whole pool, which it returns.
        let subset = subset(&wanted).expect("a subset");
        for name in &wanted {
            assert!(subset.get_message_by_name(name).is_some(), "{name}");
        }
        // Imports come along (the validation rules' extension among them).
        assert!(subset.get_extension_by_name("validate.rules").is_some());
        assert!(
            subset
                .get_message_by_name("envoy.config.core.v3.Address")
                .is_some()
        );
        assert!(
            subset
                .get_message_by_name("envoy.extensions.filters.http.fault.v3.HTTPFault")
                .is_none()
        );
        assert!(subset.files().count() * 3 < pool().files().count());
    }

    #[test]
    fn released_descriptors_are_decoded_again() {
        let before = message("envoy.config.listener.v3.Listener").expect("Listener");
        release();
        let after = message("envoy.config.listener.v3.Listener").expect("Listener after release");
        assert_eq!(before.full_name(), after.full_name());
        assert!(crate::bootstrap::from_yaml("node: { id: a }", None).is_ok());
    }
}
