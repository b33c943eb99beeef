//! Locality weighted load balancing at run time: each priority's localities as ranges of its hosts,
//! and the locality schedule of each priority (see [`proxy_model::locality`]), rebuilt when the
//! availability of hosts changes (an ejection starts or ends), not on every request.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use proxy_model::cluster::Cluster;
use proxy_model::locality::{LocalitySchedule, LocalityState};

use crate::upstream::Host;

/// The localities of a cluster with `locality_weighted_lb_config`.
#[derive(Debug)]
pub struct LocalityLb {
    /// Per priority, each locality's hosts (a range of the priority's hosts, which are laid out
    /// locality after locality) and weight (0: none).
    localities: Vec<Vec<(Range<usize>, u32)>>,
    /// Per priority and locality, the round-robin position among the locality's hosts (as Envoy,
    /// each locality takes its hosts in turn on its own).
    round_robin: Vec<Vec<AtomicUsize>>,
    overprovisioning: u32,
    /// Bumped whenever a host's availability changes.
    generation: AtomicU64,
    /// The schedules, and the generation they were built for.
    schedules: ArcSwap<(u64, Vec<Option<LocalitySchedule>>)>,
    picks: AtomicU64,
}

impl LocalityLb {
    /// `None` unless the cluster balances by locality weight.
    pub fn new(config: &Cluster) -> Option<LocalityLb> {
        if !config.locality_weighted {
            return None;
        }
        let localities: Vec<Vec<(Range<usize>, u32)>> = config
            .priorities
            .iter()
            .map(|localities| {
                let mut start = 0;
                localities
                    .iter()
                    .map(|l| {
                        let end = start + l.endpoints.len();
                        let range = start..end;
                        start = end;
                        (range, l.weight.unwrap_or(0))
                    })
                    .collect()
            })
            .collect();
        let round_robin = localities
            .iter()
            .map(|l| l.iter().map(|_| AtomicUsize::new(0)).collect())
            .collect();
        Some(LocalityLb {
            localities,
            round_robin,
            overprovisioning: config.overprovisioning_factor,
            // Never equal to a built generation, so the first pick builds.
            generation: AtomicU64::new(1),
            schedules: ArcSwap::from_pointee((0, Vec::new())),
            picks: AtomicU64::new(0),
        })
    }

    /// A host became available or unavailable: the schedules are rebuilt on the next pick.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// The hosts (a range of `priorities[priority]`, the cluster's hosts by priority) of the
    /// locality the next request goes to, and that locality's round-robin position; `None` when no
    /// locality can take it (none weighted with an available host), so the caller chooses among
    /// all the priority's available hosts.
    pub fn pick(
        &self,
        priorities: &[Vec<Arc<Host>>],
        priority: usize,
    ) -> Option<(Range<usize>, &AtomicUsize)> {
        let localities = self.localities.get(priority)?;
        let generation = self.generation.load(Ordering::Relaxed);
        let mut schedules = self.schedules.load();
        if schedules.0 != generation {
            self.schedules
                .store(Arc::new((generation, self.build(priorities))));
            schedules = self.schedules.load();
        }
        let schedule = schedules.1.get(priority)?.as_ref()?;
        let n = self.picks.fetch_add(1, Ordering::Relaxed);
        let locality = schedule.pick(n);
        let (range, _) = localities.get(locality)?;
        Some((
            range.clone(),
            self.round_robin.get(priority)?.get(locality)?,
        ))
    }

    /// The weight of each of `hosts` (priority `priority`'s) in a consistent-hash table: its share of
    /// its locality's hosts' weights times the locality's weight, so a locality's hosts together
    /// take the locality's share of the keys, and those of a locality without a weight none.
    pub fn host_weights(&self, priority: usize, hosts: &[Arc<Host>]) -> Vec<f64> {
        let mut weights = vec![0.0; hosts.len()];
        for (range, weight) in self.localities.get(priority).into_iter().flatten() {
            let (Some(members), Some(slots)) =
                (hosts.get(range.clone()), weights.get_mut(range.clone()))
            else {
                continue;
            };
            let total: f64 = members.iter().map(|h| f64::from(h.weight)).sum();
            for (w, h) in slots.iter_mut().zip(members) {
                *w = f64::from(h.weight) / total * f64::from(*weight);
            }
        }
        weights
    }

    /// Every priority's schedule, from the availability of its hosts now.
    fn build(&self, priorities: &[Vec<Arc<Host>>]) -> Vec<Option<LocalitySchedule>> {
        self.localities
            .iter()
            .zip(priorities)
            .map(|(localities, hosts)| {
                let states: Vec<LocalityState> = localities
                    .iter()
                    .map(|(range, weight)| {
                        let members = hosts.get(range.clone()).unwrap_or_default();
                        LocalityState {
                            weight: *weight,
                            available: members.iter().filter(|h| h.available()).count(),
                            hosts: members.len(),
                        }
                    })
                    .collect();
                LocalitySchedule::new(&states, self.overprovisioning)
            })
            .collect()
    }
}
