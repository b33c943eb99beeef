//! Consistent-hash load balancers: Envoy's RING_HASH (a sorted ring of virtual nodes) and MAGLEV (a
//! prime-sized lookup table). Both are built from the hosts' addresses and weights only, so a key
//! maps to the same host in every process and after a restart, and removing a host moves only the
//! keys that host had.
//!
//! A table is built once per host set (a priority's hosts, as the cluster's config or EDS gives
//! them). A host that is unhealthy or ejected is skipped at lookup: its keys go to the next entry,
//! and no other key moves. (Envoy rebuilds its table without the host instead, which moves a few
//! other keys too; which host a key lands on is not meant to match Envoy's, only to stick.)

use proxy_model::route::hash::{xx_hash64, xx_hash64_seeded};

/// A built table: which of the hosts it was built from (by index) takes a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashTable {
    /// Ring entries sorted by hash: `(hash, host index)`.
    Ring(Vec<(u64, u32)>),
    /// Maglev: entry `hash % len` is the host index.
    Maglev(Vec<u32>),
}

/// One host as the builders see it: its `ip:port` (the key its positions derive from) and weight
/// (relative; a host of weight 0 is left out, as are the hosts of a locality without a weight).
#[derive(Debug, Clone, Copy)]
pub struct HostKey<'a> {
    pub address: &'a str,
    pub weight: f64,
}

impl HostKey<'_> {
    /// The weight, with anything not positive (or not a number) as 0.
    fn share(&self) -> f64 {
        if self.weight > 0.0 { self.weight } else { 0.0 }
    }
}

impl HashTable {
    /// Envoy's ring: each host gets a share of `scale` virtual nodes proportional to its weight,
    /// where `scale` is the smallest size that gives the lightest host at least
    /// `min_ring_size × its share` nodes, capped at `max_ring_size`. Node `i` of a host sits at
    /// `xxHash64("ADDRESS_i")`.
    pub fn ring(hosts: &[HostKey<'_>], min_ring_size: u64, max_ring_size: u64) -> HashTable {
        let total: f64 = hosts.iter().map(HostKey::share).sum();
        if hosts.is_empty() || total <= 0.0 {
            return HashTable::Ring(Vec::new());
        }
        let shares: Vec<f64> = hosts.iter().map(|h| h.share() / total).collect();
        let min_share = shares
            .iter()
            .copied()
            .filter(|s| *s > 0.0)
            .fold(1.0, f64::min);
        let scale =
            ((min_share * min_ring_size as f64).ceil() / min_share).min(max_ring_size as f64);
        let mut ring = Vec::with_capacity(scale.ceil() as usize + hosts.len());
        // Running totals, so rounding never gives or takes more than one node overall.
        let (mut placed, mut target) = (0.0f64, 0.0f64);
        for (index, (host, share)) in hosts.iter().zip(&shares).enumerate() {
            target += scale * share;
            let mut node = 0u64;
            while placed < target {
                let key = format!("{}_{node}", host.address);
                ring.push((xx_hash64(key.as_bytes()), index as u32));
                node += 1;
                placed += 1.0;
            }
        }
        ring.sort_unstable();
        HashTable::Ring(ring)
    }

    /// Maglev: each host walks its own permutation of the table (start and step from two hashes
    /// of its address) and claims the next free entry on its turns; a host takes a turn in
    /// proportion to its weight, so it ends up with that share of the entries.
    pub fn maglev(hosts: &[HostKey<'_>], table_size: u64) -> HashTable {
        if hosts.is_empty() || table_size < 2 {
            return HashTable::Maglev(Vec::new());
        }
        let size = table_size as usize;
        let max_weight = hosts.iter().map(HostKey::share).fold(0.0, f64::max);
        if max_weight <= 0.0 {
            return HashTable::Maglev(Vec::new());
        }
        struct Walker {
            offset: u64,
            skip: u64,
            next: u64,
            weight: f64,
            target: f64,
        }
        let mut walkers: Vec<Walker> = hosts
            .iter()
            .map(|h| Walker {
                offset: xx_hash64_seeded(h.address.as_bytes(), 0) % table_size,
                skip: xx_hash64_seeded(h.address.as_bytes(), 1) % (table_size - 1) + 1,
                next: 0,
                weight: h.share() / max_weight,
                target: 0.0,
            })
            .collect();
        let mut table = vec![u32::MAX; size];
        let mut filled = 0usize;
        let mut turn = 1u64;
        while filled < size {
            for (index, w) in walkers.iter_mut().enumerate() {
                if filled == size {
                    break;
                }
                // The heaviest host claims every turn; one of a third its weight every third turn;
                // one of no weight never.
                if w.weight <= 0.0 || (turn as f64) * w.weight < w.target {
                    continue;
                }
                w.target += 1.0;
                loop {
                    let slot = ((w.offset + w.skip * w.next) % table_size) as usize;
                    w.next += 1;
                    if table[slot] == u32::MAX {
                        table[slot] = index as u32;
                        filled += 1;
                        break;
                    }
                }
            }
            turn += 1;
        }
        HashTable::Maglev(table)
    }

    /// The index of the host that takes `hash` among those `usable` says may be used; `None` for an
    /// empty table or when none may. An unusable host's keys go on to the next entry (the next node
    /// on the ring; the next slot of the Maglev table, which holds the hosts in proportion to their
    /// weights), so they spread over the others and every other key stays where it was.
    pub fn lookup(&self, hash: u64, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let (start, len) = match self {
            HashTable::Ring(ring) => {
                // The first node at or after the hash, wrapping around.
                let at = ring.partition_point(|(h, _)| *h < hash);
                (at, ring.len())
            }
            HashTable::Maglev(table) => {
                let len = table.len();
                (
                    usize::try_from(hash % (len.max(1) as u64)).unwrap_or(0),
                    len,
                )
            }
        };
        (0..len)
            .map(|step| {
                let at = (start + step) % len;
                match self {
                    HashTable::Ring(ring) => ring[at].1 as usize,
                    HashTable::Maglev(table) => table[at] as usize,
                }
            })
            .find(|i| usable(*i))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Hosts `10.0.0.N:80` with the given weights.
    fn addresses(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("10.0.0.{i}:80")).collect()
    }

    fn keys<'a>(addresses: &'a [String], weights: &[u32]) -> Vec<HostKey<'a>> {
        addresses
            .iter()
            .zip(weights)
            .map(|(a, w)| HostKey {
                address: a,
                weight: f64::from(*w),
            })
            .collect()
    }

    const KEYS: u64 = 20_000;

    /// How many of `KEYS` request keys each host takes.
    fn spread(table: &HashTable, hosts: usize) -> Vec<u64> {
        let mut counts = vec![0u64; hosts];
        for k in 0..KEYS {
            counts[table
                .lookup(xx_hash64(format!("user-{k}").as_bytes()), |_| true)
                .unwrap()] += 1;
        }
        counts
    }

    /// Builds a table over hosts.
    type Build = fn(&[HostKey<'_>]) -> HashTable;

    fn builders() -> [(&'static str, Build); 2] {
        [
            ("ring", |h| HashTable::ring(h, 1024, 8 * 1024 * 1024)),
            ("maglev", |h| HashTable::maglev(h, 65537)),
        ]
    }

    #[test]
    fn keys_spread_by_weight() {
        let a = addresses(3);
        for (name, build) in builders() {
            // A host of weight 0 (its locality has none) takes no key.
            for weights in [[1, 1, 1], [1, 2, 3], [2, 0, 1]] {
                let counts = spread(&build(&keys(&a, &weights)), 3);
                let total_weight: u32 = weights.iter().sum();
                for (count, w) in counts.iter().zip(weights) {
                    let want = KEYS as f64 * f64::from(w) / f64::from(total_weight);
                    // A 1024-node ring spreads within a few percent; allow 15 % of the share.
                    assert!(
                        (*count as f64 - want).abs() <= want * 0.15,
                        "{name} {weights:?}: {counts:?}"
                    );
                }
            }
        }
    }

    /// Of `KEYS` keys: the share host `gone` had in `before`, and the share of the other hosts'
    /// keys that land elsewhere in `after`.
    fn moved(
        before: impl Fn(u64) -> String,
        after: impl Fn(u64) -> String,
        gone: &str,
    ) -> (f64, f64) {
        let (mut of_gone, mut moved) = (0u64, 0u64);
        for k in 0..KEYS {
            let hash = xx_hash64(format!("user-{k}").as_bytes());
            let was = before(hash);
            if was == gone {
                of_gone += 1;
            } else if was != after(hash) {
                moved += 1;
            }
        }
        (of_gone as f64 / KEYS as f64, moved as f64 / KEYS as f64)
    }

    #[test]
    fn an_unusable_host_moves_only_its_own_keys() {
        let a = addresses(5);
        for (name, build) in builders() {
            let table = build(&keys(&a, &[1; 5]));
            let at = |usable: &dyn Fn(usize) -> bool, hash| {
                a[table.lookup(hash, usable).unwrap()].clone()
            };
            let (share, others) = moved(|h| at(&|_| true, h), |h| at(&|i| i != 2, h), &a[2]);
            // The host had about 1/5 of the keys; those moved, and none of the others.
            assert!((share - 0.2).abs() < 0.04, "{name}: the host had {share}");
            assert_eq!(others, 0.0, "{name}");
            // Its keys spread over the 4 others, not all to one neighbour.
            let mut takers = std::collections::HashMap::new();
            for k in 0..KEYS {
                let hash = xx_hash64(format!("user-{k}").as_bytes());
                if at(&|_| true, hash) == a[2] {
                    *takers.entry(at(&|i| i != 2, hash)).or_insert(0u64) += 1;
                }
            }
            assert_eq!(takers.len(), 4, "{name}: {takers:?}");
            assert_eq!(table.lookup(1, |_| false), None);
        }
    }

    #[test]
    fn removing_a_host_moves_about_its_share_of_keys() {
        let a = addresses(5);
        let mut fewer = a.clone();
        fewer.remove(2);
        for (name, build) in builders() {
            let all = build(&keys(&a, &[1; 5]));
            let rebuilt = build(&keys(&fewer, &[1; 4]));
            let (share, others) = moved(
                |h| a[all.lookup(h, |_| true).unwrap()].clone(),
                |h| fewer[rebuilt.lookup(h, |_| true).unwrap()].clone(),
                &a[2],
            );
            assert!((share - 0.2).abs() < 0.04, "{name}: the host had {share}");
            // A rebuilt table moves a few more: Maglev's permutations shift a little, and Envoy's
            // ring sizing gives each remaining host more nodes (1024/4 instead of 1024/5).
            assert!(others < 0.12, "{name}: {others} of the other keys moved");
        }
    }

    #[test]
    fn the_same_hosts_build_the_same_table() {
        let a = addresses(3);
        // Stable across builds (and so across restarts): only addresses and weights count.
        for (_, build) in builders() {
            assert_eq!(build(&keys(&a, &[1, 2, 1])), build(&keys(&a, &[1, 2, 1])));
        }
    }

    #[test]
    fn ring_size_follows_envoys_bounds_and_empty_tables_pick_nothing() {
        let a = addresses(3);
        let HashTable::Ring(ring) = HashTable::ring(&keys(&a, &[1, 1, 1]), 1024, 8 << 20) else {
            unreachable!()
        };
        // The lightest host gets ceil(1024/3) = 342 nodes; so does each of the others (floating
        // point may round one node more, as in Envoy).
        assert!((1026..=1027).contains(&ring.len()), "{}", ring.len());
        let HashTable::Ring(capped) = HashTable::ring(&keys(&a, &[1, 1, 1]), 1024, 300) else {
            unreachable!()
        };
        assert!((300..=301).contains(&capped.len()), "{}", capped.len());
        assert_eq!(HashTable::ring(&[], 1024, 2048).lookup(7, |_| true), None);
        assert_eq!(HashTable::maglev(&[], 65537).lookup(7, |_| true), None);
        let small = HashTable::maglev(&keys(&a, &[1, 1, 1]), 7);
        assert!(small.lookup(7, |_| true).is_some_and(|i| i < 3));
    }
}
