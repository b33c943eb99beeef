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
    let files = index()?;
    let mut wanted = vec![false; files.len()];
    let mut stack = names
        .iter()
        .map(|n| file_of(&files, n))
        .collect::<Option<Vec<usize>>>()?;
    while let Some(k) = stack.pop() {
        if !std::mem::replace(&mut wanted[k], true) {
            stack.extend(&files[k].dependencies);
        }
    }
    // In the set's order, which has every file after the files it imports.
    let set: Vec<u8> = files
        .iter()
        .zip(&wanted)
        .filter(|(_, w)| **w)
        .flat_map(|(f, _)| f.entry.iter().copied())
        .collect();
    drop(DescriptorPool::global()); // as in `pool`
    DescriptorPool::decode(set.as_slice()).ok()
}

/// One file of the set: its whole entry in [`DESCRIPTORS`], what it imports, its top-level messages.
struct IndexedFile {
    entry: &'static [u8],
    dependencies: Vec<usize>,
    messages: Vec<String>,
}

/// The set's files, read from the wire format without decoding the descriptors.
fn index() -> Option<Vec<IndexedFile>> {
    use crate::wire::{entries, fields};
    let mut names = std::collections::HashMap::new();
    let mut files = Vec::new();
    let mut imports = Vec::new();
    for (number, entry, payload) in fields(DESCRIPTORS)? {
        let (1, Some(file)) = (number, payload) else {
            continue;
        };
        let text = |n: u64| -> Option<Vec<&str>> {
            entries(file, n)?
                .into_iter()
                .map(|b| std::str::from_utf8(b).ok())
                .collect()
        };
        let name = text(1)?.first().copied().unwrap_or_default();
        let package = text(2)?.first().copied().unwrap_or_default();
        let mut messages = Vec::new();
        for message in entries(file, 4)? {
            let short = entries(message, 1)?;
            let short = std::str::from_utf8(short.first()?).ok()?;
            messages.push(if package.is_empty() {
                short.to_owned()
            } else {
                format!("{package}.{short}")
            });
        }
        names.insert(name, files.len());
        imports.push(text(3)?);
        files.push(IndexedFile {
            entry,
            dependencies: Vec::new(),
            messages,
        });
    }
    for (file, imports) in files.iter_mut().zip(imports) {
        file.dependencies = imports
            .into_iter()
            .map(|i| names.get(i).copied())
            .collect::<Option<_>>()?;
    }
    Some(files)
}

/// The file defining message `name` (for a nested message, its outermost one).
fn file_of(files: &[IndexedFile], name: &str) -> Option<usize> {
    let mut candidate = name;
    loop {
        if let Some(k) = files
            .iter()
            .position(|f| f.messages.iter().any(|m| m == candidate))
        {
            return Some(k);
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
