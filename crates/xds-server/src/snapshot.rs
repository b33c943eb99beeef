//! A snapshot: the complete configuration the control plane decided for one proxy, per type URL, each
//! resource with its own version.

use std::collections::{BTreeMap, btree_map};
use std::iter::Peekable;
use std::sync::Arc;

use bytes::Bytes;
use prost::{Message, Name};
use xds_api::pb::google::protobuf::Any;
use xds_api::type_url;

use crate::protocol::{Names, ResourceName};

/// The order types are pushed in: Envoy's make-before-break order (clusters and their endpoints
/// before the listeners and routes that use them, a route table before the virtual hosts it takes
/// over VHDS), then secrets, then anything else by URL.
pub const PUSH_ORDER: [&str; 6] = [
    type_url::CLUSTER,
    type_url::CLUSTER_LOAD_ASSIGNMENT,
    type_url::LISTENER,
    type_url::ROUTE_CONFIGURATION,
    type_url::VIRTUAL_HOST,
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
        type_url::VIRTUAL_HOST => "VHDS",
        type_url::SECRET => "SDS",
        other => xds_api::any::type_name(other),
    }
}

/// One resource of a snapshot and its version.
///
/// The resource is kept encoded, as the `Any` message it goes out as: every response carrying it
/// (to each of hundreds of proxies) refers to these bytes instead of copying them.
#[derive(Clone, Debug, PartialEq)]
pub struct VersionedResource {
    /// The resource's own version (delta xDS sends it; a change of it is what gets pushed).
    pub version: String,
    /// `Any { type_url, value }` encoded: field 1, then field 2 from `value_at` on.
    encoded: Bytes,
    type_url_len: usize,
    value_at: usize,
}

impl VersionedResource {
    /// `any` with its content version (see [`content_version`]).
    pub fn new(any: Any) -> VersionedResource {
        let version = content_version(&any);
        VersionedResource::with_version(version, any)
    }

    /// `any` with an explicit version.
    pub fn with_version(version: impl Into<String>, any: Any) -> VersionedResource {
        let mut encoded = Vec::with_capacity(any.type_url.len() + any.value.len() + 12);
        // Both fields always written (an empty one too), so where each starts is known.
        encoded.push(0x0a);
        prost::encoding::encode_varint(any.type_url.len() as u64, &mut encoded);
        let type_url_at = encoded.len();
        encoded.extend_from_slice(any.type_url.as_bytes());
        encoded.push(0x12);
        prost::encoding::encode_varint(any.value.len() as u64, &mut encoded);
        let value_at = encoded.len();
        encoded.extend_from_slice(&any.value);
        debug_assert_eq!(
            type_url_at,
            1 + prost::encoding::encoded_len_varint(any.type_url.len() as u64)
        );
        VersionedResource {
            version: version.into(),
            encoded: Bytes::from(encoded),
            type_url_len: any.type_url.len(),
            value_at,
        }
    }

    /// Packs `msg`.
    pub fn of<T: Message + Name>(msg: &T) -> VersionedResource {
        VersionedResource::new(xds_api::any::pack(msg))
    }

    /// The resource's type URL.
    pub fn type_url(&self) -> &str {
        let start = 1 + prost::encoding::encoded_len_varint(self.type_url_len as u64);
        // Built from a `String` in `with_version`.
        std::str::from_utf8(&self.encoded[start..start + self.type_url_len]).unwrap_or_default()
    }

    /// The resource's encoded message (`Any.value`).
    pub fn value(&self) -> &[u8] {
        &self.encoded[self.value_at..]
    }

    /// The resource as an `Any` (a copy).
    pub fn any(&self) -> Any {
        Any {
            type_url: self.type_url().to_owned(),
            value: self.value().to_vec(),
        }
    }

    /// The encoded `Any`, shared.
    pub fn encoded_any(&self) -> &Bytes {
        &self.encoded
    }
}

/// The resources of one type, by name.
pub type ResourceMap = BTreeMap<String, Arc<VersionedResource>>;

/// The resources of one type in a snapshot: one or more maps (layers) with no name in common,
/// each shared with other snapshots, read as one map in name order.
///
/// A sidecar's clusters are the thousands its namespace shares plus its own inbound ones: holding
/// the shared map and the own one side by side, instead of a merged copy per proxy, keeps a
/// proxy's snapshot at a few pointers, and lets a stream see by pointer which layers changed.
#[derive(Clone, Debug, Default)]
pub struct LayeredMap {
    layers: Vec<Arc<ResourceMap>>,
}

impl LayeredMap {
    /// These layers (empty ones dropped). They must not share names: where they do, the later
    /// layer's resource is the one read.
    pub fn of(layers: impl IntoIterator<Item = Arc<ResourceMap>>) -> LayeredMap {
        LayeredMap {
            layers: layers.into_iter().filter(|m| !m.is_empty()).collect(),
        }
    }

    /// The layers, as given.
    pub fn layers(&self) -> &[Arc<ResourceMap>] {
        &self.layers
    }

    /// The resource `name` and its key.
    pub fn get_key_value(&self, name: &str) -> Option<(&String, &Arc<VersionedResource>)> {
        self.layers.iter().rev().find_map(|m| m.get_key_value(name))
    }

    /// The resource `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<VersionedResource>> {
        self.get_key_value(name).map(|(_, r)| r)
    }

    /// How many resources (layers share no names).
    pub fn len(&self) -> usize {
        self.layers.iter().map(|m| m.len()).sum()
    }

    /// Whether there are no resources.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Every resource, in name order.
    pub fn iter(&self) -> LayeredIter<'_> {
        LayeredIter::new(self.layers.iter().map(|m| &**m))
    }

    /// The names, in order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.iter().map(|(n, _)| n)
    }

    /// Whether both are the very same layers (nothing to compare).
    pub fn ptr_eq(&self, other: &LayeredMap) -> bool {
        self.layers.len() == other.layers.len()
            && self
                .layers
                .iter()
                .zip(&other.layers)
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }

    /// One map for changing in place: the layers merged into one unshared map first if needed.
    fn make_mut(&mut self) -> &mut ResourceMap {
        if self.layers.len() != 1 {
            let merged: ResourceMap = self.iter().map(|(n, r)| (n.clone(), r.clone())).collect();
            self.layers = vec![Arc::new(merged)];
        }
        Arc::make_mut(&mut self.layers[0])
    }

    /// Removes empty layers left by [`make_mut`](Self::make_mut).
    fn drop_empty(&mut self) {
        self.layers.retain(|m| !m.is_empty());
    }
}

impl PartialEq for LayeredMap {
    fn eq(&self, other: &LayeredMap) -> bool {
        same_map(self, other)
    }
}

impl From<Arc<ResourceMap>> for LayeredMap {
    fn from(map: Arc<ResourceMap>) -> LayeredMap {
        LayeredMap::of([map])
    }
}

impl<'a> IntoIterator for &'a LayeredMap {
    type Item = (&'a String, &'a Arc<VersionedResource>);
    type IntoIter = LayeredIter<'a>;

    fn into_iter(self) -> LayeredIter<'a> {
        self.iter()
    }
}

/// The resources of several sorted maps in name order (a merge of their iterators; a name in
/// several is read from the last).
///
/// Maps that hold consecutive ranges of names (a large map split in shards) are read one after the
/// other: the map last read from is read on, without looking at the others, while its names stay
/// below theirs.
#[derive(Debug)]
pub struct LayeredIter<'a> {
    heads: Vec<Peekable<btree_map::Iter<'a, String, Arc<VersionedResource>>>>,
    /// The map last read from, and the least next name of the others (none: they are done).
    run: Option<(usize, Option<&'a String>)>,
}

impl<'a> LayeredIter<'a> {
    fn new(maps: impl Iterator<Item = &'a ResourceMap>) -> LayeredIter<'a> {
        LayeredIter {
            heads: maps.map(|m| m.iter().peekable()).collect(),
            run: None,
        }
    }
}

impl<'a> Iterator for LayeredIter<'a> {
    type Item = (&'a String, &'a Arc<VersionedResource>);

    fn next(&mut self) -> Option<Self::Item> {
        if let [only] = self.heads.as_mut_slice() {
            return only.next();
        }
        if let Some((at, bound)) = self.run
            && let Some((name, _)) = self.heads[at].peek()
            && bound.is_none_or(|b| *name < b)
        {
            return self.heads[at].next();
        }
        let mut least: Option<(usize, &'a String)> = None;
        for (i, head) in self.heads.iter_mut().enumerate() {
            if let Some((name, _)) = head.peek()
                && least.is_none_or(|(_, l)| *name <= l)
            {
                least = Some((i, *name));
            }
        }
        let (at, name) = least?;
        // The same name in earlier layers is shadowed by this one.
        for head in &mut self.heads[..at] {
            head.next_if(|(n, _)| *n == name);
        }
        let bound = self
            .heads
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| *i != at)
            .filter_map(|(_, head)| head.peek().map(|(n, _)| *n))
            .min();
        self.run = Some((at, bound));
        self.heads[at].next()
    }
}

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
    types: BTreeMap<String, LayeredMap>,
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
        map.make_mut().insert(
            name.into(),
            Arc::new(VersionedResource::with_version(version, any)),
        );
    }

    /// Adds (or replaces) the resource `name`, shared with other snapshots.
    pub fn insert_shared(&mut self, name: impl Into<String>, resource: Arc<VersionedResource>) {
        let map = self
            .types
            .entry(resource.type_url().to_owned())
            .or_default();
        map.make_mut().insert(name.into(), resource);
    }

    /// Sets every resource of `type_url` at once to maps shared with other snapshots.
    pub fn set_resources(&mut self, type_url: impl Into<String>, resources: impl Into<LayeredMap>) {
        self.types.insert(type_url.into(), resources.into());
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
        let map = self.types.get_mut(type_url)?;
        map.get(name)?;
        let removed = map.make_mut().remove(name);
        map.drop_empty();
        removed
    }

    /// The resources of one type, by name (`None` if the snapshot has none of it).
    pub fn resources(&self, type_url: &str) -> Option<&LayeredMap> {
        self.types.get(type_url)
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
        names: &'a Names,
    ) -> Selected<'a> {
        select(self.types.get(type_url), wildcard, names)
    }
}

/// Whether two maps hold the same names at the same versions (shared maps: by pointer, layer by
/// layer when both are layered alike).
pub fn same_map(a: &LayeredMap, b: &LayeredMap) -> bool {
    if a.layers.len() == b.layers.len() {
        return a
            .layers
            .iter()
            .zip(&b.layers)
            .all(|(a, b)| same_single_map(a, b));
    }
    a.len() == b.len() && same_entries(a.iter(), b.iter())
}

/// [`same_map`] of two plain maps.
pub fn same_single_map(a: &Arc<ResourceMap>, b: &Arc<ResourceMap>) -> bool {
    Arc::ptr_eq(a, b) || (a.len() == b.len() && same_entries(a.iter(), b.iter()))
}

fn same_entries<'a>(
    a: impl Iterator<Item = (&'a String, &'a Arc<VersionedResource>)>,
    mut b: impl Iterator<Item = (&'a String, &'a Arc<VersionedResource>)>,
) -> bool {
    a.into_iter().all(|(na, ra)| {
        b.next()
            .is_some_and(|(nb, rb)| na == nb && same_resource(ra, rb))
    }) && b.next().is_none()
}

/// Whether two resources are the same version.
pub fn same_resource(a: &VersionedResource, b: &VersionedResource) -> bool {
    std::ptr::eq(a, b) || a.version == b.version
}

/// How one map differs from another, by name: a resource added or changed, or removed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum MapChange<'a> {
    Changed(&'a String, &'a Arc<VersionedResource>),
    Removed(&'a String),
}

/// The names whose resource is new or differs from `old` to `new` (removed ones left out).
pub(crate) fn changed_names_between(old: &LayeredMap, new: &LayeredMap) -> Vec<String> {
    map_changes(old, new)
        .into_iter()
        .filter_map(|c| match c {
            MapChange::Changed(name, _) => Some(name.clone()),
            MapChange::Removed(_) => None,
        })
        .collect()
}

/// What differs from `old` to `new`, in name order: one walk over both sorted maps (shared
/// resources compare by pointer), so a push that changed a few of thousands of resources costs a
/// walk, not a lookup per name. Layers the two share (the same map at the same place) are not
/// walked: their names are in both, unchanged, and in no other layer of either.
pub(crate) fn map_changes<'a>(old: &'a LayeredMap, new: &'a LayeredMap) -> Vec<MapChange<'a>> {
    let aligned = old.layers.len() == new.layers.len();
    let kept = |i: usize| aligned && Arc::ptr_eq(&old.layers[i], &new.layers[i]);
    let walk = |m: &'a LayeredMap| {
        LayeredIter::new(
            m.layers
                .iter()
                .enumerate()
                .filter(|(i, _)| !kept(*i))
                .map(|(_, l)| &**l),
        )
    };
    let mut changes = Vec::new();
    let mut old = walk(old).peekable();
    for (name, r) in walk(new) {
        // One comparison of the names per step (they share long prefixes: `outbound|8080||…`).
        let mut same = false;
        while let Some(&(o, resource)) = old.peek() {
            let order = o.cmp(name);
            if order == std::cmp::Ordering::Greater {
                break;
            }
            old.next();
            if order == std::cmp::Ordering::Less {
                changes.push(MapChange::Removed(o));
                continue;
            }
            same = same_resource(resource, r);
            break;
        }
        if !same {
            changes.push(MapChange::Changed(name, r));
        }
    }
    changes.extend(old.map(|(gone, _)| MapChange::Removed(gone)));
    changes
}

/// What a subscription selects from `map` (see [`Snapshot::select`]).
pub(crate) fn select<'a>(
    map: Option<&'a LayeredMap>,
    wildcard: bool,
    names: &'a Names,
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
    All(LayeredIter<'a>),
    Named {
        all: &'a LayeredMap,
        names: std::collections::btree_set::Iter<'a, ResourceName>,
    },
}

impl<'a> Iterator for Selected<'a> {
    type Item = (&'a String, &'a Arc<VersionedResource>);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Selected::Nothing => None,
            Selected::All(it) => it.next(),
            Selected::Named { all, names } => names.find_map(|n| all.get_key_value(n)),
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
pub(crate) mod tests {
    use super::*;

    #[test]
    fn push_order_is_make_before_break() {
        let mut urls = vec![
            "type.googleapis.com/z.Other",
            type_url::SECRET,
            type_url::VIRTUAL_HOST,
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
                type_url::VIRTUAL_HOST,
                type_url::SECRET,
                "type.googleapis.com/z.Other",
            ]
        );
    }

    /// The kept bytes are the `Any` as prost encodes it, and give it back.
    #[test]
    fn a_resource_is_kept_as_its_encoded_any() {
        for any in [
            Any {
                type_url: type_url::CLUSTER.into(),
                value: vec![7; 300],
            },
            Any {
                type_url: type_url::LISTENER.into(),
                value: Vec::new(),
            },
        ] {
            let r = VersionedResource::new(any.clone());
            assert_eq!(r.type_url(), any.type_url);
            assert_eq!(r.value(), &any.value[..]);
            assert_eq!(r.any(), any);
            assert_eq!(Any::decode(&r.encoded_any()[..]).expect("decodes"), any);
            assert_eq!(r.version, content_version(&any));
        }
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

    /// A map of resources of type `t`, each `(name, byte)` one resource.
    pub(crate) fn layer(entries: &[(&str, u8)]) -> Arc<ResourceMap> {
        let mut snap = Snapshot::new("v");
        for (name, v) in entries {
            snap.insert(
                *name,
                Any {
                    type_url: "t".into(),
                    value: vec![*v],
                },
            );
        }
        snap.resources("t")
            .map(|m| m.layers()[0].clone())
            .unwrap_or_default()
    }

    fn flat(m: &LayeredMap) -> LayeredMap {
        LayeredMap::from(Arc::new(
            m.iter()
                .map(|(n, r)| (n.clone(), r.clone()))
                .collect::<ResourceMap>(),
        ))
    }

    fn changes(old: &LayeredMap, new: &LayeredMap) -> Vec<(String, Option<String>)> {
        map_changes(old, new)
            .into_iter()
            .map(|c| match c {
                MapChange::Changed(n, r) => (n.clone(), Some(r.version.clone())),
                MapChange::Removed(n) => (n.clone(), None),
            })
            .collect()
    }

    #[test]
    fn layers_read_as_one_map_in_name_order() {
        let shared = layer(&[("a", 1), ("c", 1), ("e", 1)]);
        let own = layer(&[("b", 1), ("d", 1), ("f", 1)]);
        let m = LayeredMap::of([shared.clone(), Arc::default(), own.clone()]);
        assert_eq!(m.layers().len(), 2, "empty layers are dropped");
        assert_eq!(m.keys().collect::<Vec<_>>(), ["a", "b", "c", "d", "e", "f"]);
        assert_eq!(m.len(), 6);
        assert!(m.get("d").is_some() && m.get("g").is_none());
        assert!(m.ptr_eq(&LayeredMap::of([shared, own])));
        assert!(!m.ptr_eq(&flat(&m)));
        assert_eq!(m, flat(&m), "equal content, other layering");
        // A name in two layers is read once, from the later layer.
        let shadow = LayeredMap::of([layer(&[("a", 1), ("b", 1)]), layer(&[("a", 2)])]);
        let got: Vec<(&String, &String)> = shadow.iter().map(|(n, r)| (n, &r.version)).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(shadow.get("a").map(|r| &r.version), Some(got[0].1));
        assert_eq!(layer(&[("a", 2)])["a"].version, *got[0].1);
    }

    /// Layers over consecutive ranges (read one after the other), interleaved ones and shadowed
    /// names read as the merged map does: every name once, in order, from its last layer.
    #[test]
    fn ranges_interleavings_and_shadows_read_in_order() {
        let names: Vec<String> = (0..40).map(|i| format!("n{i:02}")).collect();
        let entries = |range: std::ops::Range<usize>, step: usize, v: u8| -> Vec<(&str, u8)> {
            range
                .step_by(step)
                .map(|i| (names[i].as_str(), v))
                .collect()
        };
        let layers = [
            layer(&entries(0..10, 1, 1)),
            layer(&entries(10..20, 1, 1)),
            layer(&entries(20..40, 2, 1)),
            layer(&entries(21..40, 2, 2)),
            // Shadows a name of each of the above.
            layer(&[("n05", 3), ("n15", 3), ("n22", 3), ("n23", 3)]),
            layer(&entries(38..40, 1, 4)),
        ];
        let m = LayeredMap::of(layers.iter().cloned());
        let mut merged = ResourceMap::new();
        for l in &layers {
            merged.extend(l.iter().map(|(n, r)| (n.clone(), r.clone())));
        }
        let read: Vec<(&String, &Arc<VersionedResource>)> = m.iter().collect();
        let want: Vec<(&String, &Arc<VersionedResource>)> = merged.iter().collect();
        assert_eq!(read.len(), 40);
        assert_eq!(read, want);
    }

    /// The walk that skips shared layers finds exactly what a walk over the merged maps finds.
    #[test]
    fn changes_of_layered_maps_equal_changes_of_merged_ones() {
        let shared = layer(&[("a", 1), ("c", 1), ("e", 1)]);
        let shared2 = layer(&[("a", 1), ("c", 2), ("g", 1)]);
        let own = layer(&[("b", 1), ("d", 1)]);
        let own2 = layer(&[("b", 2), ("f", 1)]);
        let olds = [
            LayeredMap::of([shared.clone(), own.clone()]),
            LayeredMap::of([shared.clone()]),
        ];
        let news = [
            LayeredMap::of([shared.clone(), own.clone()]),
            LayeredMap::of([shared.clone(), own2.clone()]),
            LayeredMap::of([shared2.clone(), own.clone()]),
            LayeredMap::of([shared2.clone(), own2.clone()]),
            LayeredMap::of([own2.clone()]),
            LayeredMap::of([shared.clone()]),
            LayeredMap::default(),
        ];
        for old in &olds {
            for new in &news {
                assert_eq!(
                    changes(old, new),
                    changes(&flat(old), &flat(new)),
                    "{:?} → {:?}",
                    old.keys().collect::<Vec<_>>(),
                    new.keys().collect::<Vec<_>>()
                );
            }
        }
        assert!(changes(&olds[0], &news[0]).is_empty());
    }

    #[test]
    fn changing_a_layered_snapshot_flattens_it_and_keeps_the_rest() {
        let mut snap = Snapshot::new("v");
        snap.set_resources(
            "t",
            LayeredMap::of([layer(&[("a", 1)]), layer(&[("b", 1)])]),
        );
        snap.insert(
            "c",
            Any {
                type_url: "t".into(),
                value: vec![1],
            },
        );
        assert!(snap.remove("t", "a").is_some());
        assert!(snap.remove("t", "zz").is_none());
        let m = snap.resources("t").expect("type present");
        assert_eq!(m.layers().len(), 1);
        assert_eq!(m.keys().collect::<Vec<_>>(), ["b", "c"]);
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
        let names: Names = ["c", "a", "zz"].map(crate::protocol::intern).into();
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
