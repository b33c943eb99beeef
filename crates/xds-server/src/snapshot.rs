//! A snapshot: the complete configuration the control plane decided for one proxy, per type URL, each
//! resource with its own version.

use std::collections::{BTreeMap, BTreeSet, btree_map};
use std::sync::Arc;

use prost::{Message, Name};
use xds_api::pb::google::protobuf::Any;
use xds_api::type_url;

/// The order types are pushed in: Envoy's make-before-break order (clusters and their endpoints
/// before the listeners and routes that use them), then secrets, then anything else by URL.
pub const PUSH_ORDER: [&str; 5] = [
    type_url::CLUSTER,
    type_url::CLUSTER_LOAD_ASSIGNMENT,
    type_url::LISTENER,
    type_url::ROUTE_CONFIGURATION,
    type_url::SECRET,
];

/// Where `type_url` goes in a push: its index in [`PUSH_ORDER`], others after it.
pub fn push_rank(type_url: &str) -> usize {
    PUSH_ORDER
        .iter()
        .position(|t| *t == type_url)
        .unwrap_or(PUSH_ORDER.len())
}

/// Sorts type URLs into push order (ties by URL).
pub fn sort_push_order<S: AsRef<str>>(urls: &mut [S]) {
    urls.sort_by(|a, b| {
        let (a, b) = (a.as_ref(), b.as_ref());
        push_rank(a).cmp(&push_rank(b)).then_with(|| a.cmp(b))
    });
}

/// Whether an empty subscription to `type_url` means "everything" (LDS and CDS, as Envoy asks them).
pub fn is_wildcard_type(type_url: &str) -> bool {
    type_url == type_url::LISTENER || type_url == type_url::CLUSTER
}

/// The short name operators know for a type URL (`CDS`, `EDS`, …), or the message name.
pub fn short_name(type_url: &str) -> &str {
    match type_url {
        type_url::CLUSTER => "CDS",
        type_url::CLUSTER_LOAD_ASSIGNMENT => "EDS",
        type_url::LISTENER => "LDS",
        type_url::ROUTE_CONFIGURATION => "RDS",
        type_url::SECRET => "SDS",
        other => xds_api::any::type_name(other),
    }
}

/// One resource of a snapshot and its version.
#[derive(Clone, Debug, PartialEq)]
pub struct VersionedResource {
    /// The resource's own version (delta xDS sends it; a change of it is what gets pushed).
    pub version: String,
    pub resource: Any,
}

impl VersionedResource {
    /// `any` with its content version (see [`content_version`]).
    pub fn new(any: Any) -> VersionedResource {
        VersionedResource {
            version: content_version(&any),
            resource: any,
        }
    }

    /// Packs `msg`.
    pub fn of<T: Message + Name>(msg: &T) -> VersionedResource {
        VersionedResource::new(xds_api::any::pack(msg))
    }
}

/// The resources of one type, by name.
pub type ResourceMap = BTreeMap<String, Arc<VersionedResource>>;

/// The configuration of one proxy: a version, and per type URL its resources by name.
///
/// Built by the control plane, set whole with [`SnapshotCache::set_snapshot`](crate::SnapshotCache::set_snapshot),
/// never changed in place after that (connections share it behind an `Arc`). Resources are held
/// behind `Arc`s so that proxies with the same clusters share one encoded copy
/// ([`insert_shared`](Self::insert_shared)), and so is each type's whole map
/// ([`set_resources`](Self::set_resources)): proxies of one scope then share one map, and a stream
/// that sees the map it last sent from (the same pointer) knows at once that nothing changed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    version: String,
    types: BTreeMap<String, Arc<ResourceMap>>,
}

impl Snapshot {
    /// An empty snapshot with this `version` (`version_info` / `system_version_info` of its pushes).
    pub fn new(version: impl Into<String>) -> Snapshot {
        Snapshot {
            version: version.into(),
            types: BTreeMap::new(),
        }
    }

    /// The snapshot's version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Changes the version (building the next snapshot from a copy of the last).
    pub fn set_version(&mut self, version: impl Into<String>) {
        self.version = version.into();
    }

    /// Adds (or replaces) the resource `name` of `any.type_url`; its version is a hash of its bytes,
    /// so an unchanged resource keeps its version across snapshots.
    pub fn insert(&mut self, name: impl Into<String>, any: Any) {
        let version = content_version(&any);
        self.insert_versioned(name, version, any);
    }

    /// Adds (or replaces) the resource `name` of `any.type_url` with an explicit version.
    pub fn insert_versioned(
        &mut self,
        name: impl Into<String>,
        version: impl Into<String>,
        any: Any,
    ) {
        let map = self.types.entry(any.type_url.clone()).or_default();
        Arc::make_mut(map).insert(
            name.into(),
            Arc::new(VersionedResource {
                version: version.into(),
                resource: any,
            }),
        );
    }

    /// Adds (or replaces) the resource `name`, shared with other snapshots.
    pub fn insert_shared(&mut self, name: impl Into<String>, resource: Arc<VersionedResource>) {
        let map = self
            .types
            .entry(resource.resource.type_url.clone())
            .or_default();
        Arc::make_mut(map).insert(name.into(), resource);
    }

    /// Sets every resource of `type_url` at once to a map shared with other snapshots.
    pub fn set_resources(&mut self, type_url: impl Into<String>, resources: Arc<ResourceMap>) {
        self.types.insert(type_url.into(), resources);
    }

    /// The shared map of `type_url`'s resources.
    pub fn shared_resources(&self, type_url: &str) -> Option<&Arc<ResourceMap>> {
        self.types.get(type_url)
    }

    /// Whether both hold the same resources at the same versions (the snapshot versions aside): a
    /// snapshot that does not differ from the last needs no push.
    pub fn same_resources(&self, other: &Snapshot) -> bool {
        self.types.len() == other.types.len()
            && self
                .types
                .iter()
                .zip(&other.types)
                .all(|((ta, a), (tb, b))| ta == tb && same_map(a, b))
    }

    /// Packs `msg` and adds it as `name`.
    pub fn insert_message<T: Message + Name>(&mut self, name: impl Into<String>, msg: &T) {
        self.insert(name, xds_api::any::pack(msg));
    }

    /// Builder form of [`insert_message`](Self::insert_message).
    pub fn with<T: Message + Name>(mut self, name: impl Into<String>, msg: &T) -> Snapshot {
        self.insert_message(name, msg);
        self
    }

    /// Makes `type_url` present even with no resources (a wildcard subscriber then gets an empty set,
    /// which removes everything of that type it held).
    pub fn ensure_type(&mut self, type_url: impl Into<String>) {
        self.types.entry(type_url.into()).or_default();
    }

    /// Removes a resource; returns it if it was there.
    pub fn remove(&mut self, type_url: &str, name: &str) -> Option<Arc<VersionedResource>> {
        Arc::make_mut(self.types.get_mut(type_url)?).remove(name)
    }

    /// The resources of one type, by name (`None` if the snapshot has none of it).
    pub fn resources(&self, type_url: &str) -> Option<&ResourceMap> {
        self.types.get(type_url).map(|m| &**m)
    }

    /// One resource.
    pub fn get(&self, type_url: &str, name: &str) -> Option<&VersionedResource> {
        self.types.get(type_url)?.get(name).map(|r| &**r)
    }

    /// The type URLs present, in push order.
    pub fn type_urls(&self) -> Vec<&str> {
        let mut urls: Vec<&str> = self.types.keys().map(String::as_str).collect();
        sort_push_order(&mut urls);
        urls
    }

    /// How many resources of all types the snapshot holds.
    pub fn len(&self) -> usize {
        self.types.values().map(|m| m.len()).sum()
    }

    /// Whether the snapshot holds no resources.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The resources a subscription selects, by name: all of the type for a wildcard one, else
    /// those of `names` that exist (looked up by name, so a small subscription costs little in a
    /// big snapshot).
    pub(crate) fn select<'a>(
        &'a self,
        type_url: &str,
        wildcard: bool,
        names: &'a BTreeSet<String>,
    ) -> Selected<'a> {
        select(self.types.get(type_url).map(|m| &**m), wildcard, names)
    }
}

/// Whether two maps hold the same names at the same versions (a shared map: by pointer).
pub fn same_map(a: &Arc<ResourceMap>, b: &Arc<ResourceMap>) -> bool {
    Arc::ptr_eq(a, b)
        || (a.len() == b.len()
            && a.iter()
                .zip(b.iter())
                .all(|((na, ra), (nb, rb))| na == nb && same_resource(ra, rb)))
}

/// Whether two resources are the same version.
pub fn same_resource(a: &VersionedResource, b: &VersionedResource) -> bool {
    std::ptr::eq(a, b) || a.version == b.version
}

/// How one map differs from another, by name: a resource added or changed, or removed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum MapChange<'a> {
    Changed(&'a String, &'a VersionedResource),
    Removed(&'a String),
}

/// What differs from `old` to `new`, in name order: one walk over both sorted maps (shared
/// resources compare by pointer), so a push that changed a few of thousands of resources costs a
/// walk, not a lookup per name.
pub(crate) fn map_changes<'a>(old: &'a ResourceMap, new: &'a ResourceMap) -> Vec<MapChange<'a>> {
    let mut changes = Vec::new();
    let mut old = old.iter().peekable();
    for (name, r) in new {
        while let Some((gone, _)) = old.next_if(|(o, _)| *o < name) {
            changes.push(MapChange::Removed(gone));
        }
        let same = old
            .next_if(|(o, _)| *o == name)
            .is_some_and(|(_, o)| same_resource(o, r));
        if !same {
            changes.push(MapChange::Changed(name, r));
        }
    }
    changes.extend(old.map(|(gone, _)| MapChange::Removed(gone)));
    changes
}

/// What a subscription selects from `map` (see [`Snapshot::select`]).
pub(crate) fn select<'a>(
    map: Option<&'a ResourceMap>,
    wildcard: bool,
    names: &'a BTreeSet<String>,
) -> Selected<'a> {
    match map {
        None => Selected::Nothing,
        Some(all) if wildcard => Selected::All(all.iter()),
        Some(all) => Selected::Named {
            all,
            names: names.iter(),
        },
    }
}

/// Iterator over the resources a subscription selects, in name order.
pub(crate) enum Selected<'a> {
    Nothing,
    All(btree_map::Iter<'a, String, Arc<VersionedResource>>),
    Named {
        all: &'a BTreeMap<String, Arc<VersionedResource>>,
        names: std::collections::btree_set::Iter<'a, String>,
    },
}

impl<'a> Iterator for Selected<'a> {
    type Item = (&'a String, &'a VersionedResource);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Selected::Nothing => None,
            Selected::All(it) => it.next().map(|(n, r)| (n, &**r)),
            Selected::Named { all, names } => names
                .find_map(|n| all.get_key_value(n))
                .map(|(n, r)| (n, &**r)),
        }
    }
}

/// A stable version for a resource: FNV-1a 64 of its type URL and bytes, in hex.
pub fn content_version(any: &Any) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for b in any
        .type_url
        .as_bytes()
        .iter()
        .chain([0u8].iter())
        .chain(any.value.iter())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(PRIME);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_order_is_make_before_break() {
        let mut urls = vec![
            "type.googleapis.com/z.Other",
            type_url::SECRET,
            type_url::ROUTE_CONFIGURATION,
            type_url::LISTENER,
            type_url::CLUSTER_LOAD_ASSIGNMENT,
            type_url::CLUSTER,
        ];
        sort_push_order(&mut urls);
        assert_eq!(
            urls,
            [
                type_url::CLUSTER,
                type_url::CLUSTER_LOAD_ASSIGNMENT,
                type_url::LISTENER,
                type_url::ROUTE_CONFIGURATION,
                type_url::SECRET,
                "type.googleapis.com/z.Other",
            ]
        );
    }

    #[test]
    fn content_version_follows_bytes() {
        let a = Any {
            type_url: type_url::CLUSTER.into(),
            value: vec![1, 2, 3],
        };
        let b = Any {
            value: vec![1, 2, 4],
            ..a.clone()
        };
        assert_eq!(content_version(&a), content_version(&a.clone()));
        assert_ne!(content_version(&a), content_version(&b));
    }

    #[test]
    fn select_by_wildcard_or_names() {
        let mut snap = Snapshot::new("v1");
        for n in ["a", "b", "c"] {
            snap.insert(
                n,
                Any {
                    type_url: type_url::CLUSTER.into(),
                    value: n.as_bytes().to_vec(),
                },
            );
        }
        let names: BTreeSet<String> = ["c", "a", "zz"].map(String::from).into();
        let got: Vec<&str> = snap
            .select(type_url::CLUSTER, false, &names)
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(got, ["a", "c"]);
        let got: Vec<&str> = snap
            .select(type_url::CLUSTER, true, &names)
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(got, ["a", "b", "c"]);
        assert_eq!(snap.select(type_url::LISTENER, true, &names).count(), 0);
        assert_eq!(snap.len(), 3);
    }
}
