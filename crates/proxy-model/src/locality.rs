//! Locality weighted load balancing (`common_lb_config.locality_weighted_lb_config`): within the
//! priority a request goes to, a locality is chosen first, in proportion to its effective weight,
//! then a host of that locality with the cluster's policy.
//!
//! A locality's effective weight is its `load_balancing_weight` times its availability: the share of
//! its hosts that are available (healthy, not ejected) times the overprovisioning factor, at most
//! one. So a locality with a few unavailable hosts keeps its full weight, one with none available
//! gets nothing, and a locality without a weight gets nothing at all.

/// What the schedule needs to know of one locality of a priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalityState {
    /// The locality's `load_balancing_weight` (0: none, so no traffic).
    pub weight: u32,
    /// How many of its hosts are available.
    pub available: usize,
    /// How many hosts it has.
    pub hosts: usize,
}

impl LocalityState {
    /// The locality's weight scaled by its availability (`overprovisioning` in percent, Envoy's
    /// default 140).
    pub fn effective_weight(&self, overprovisioning: u32) -> f64 {
        if self.hosts == 0 {
            return 0.0;
        }
        let availability =
            f64::from(overprovisioning) / 100.0 * self.available as f64 / self.hosts as f64;
        f64::from(self.weight) * availability.min(1.0)
    }
}

/// The localities of one priority with a positive effective weight, and where each one's share of
/// the unit interval ends. Built when the hosts or their health change, read on every pick.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalitySchedule {
    /// `(locality index, cumulative share)`: locality `i` takes the points below its bound and at
    /// or above the previous one's.
    bounds: Vec<(usize, f64)>,
}

/// The golden ratio's fractional part in 64-bit fixed point: successive multiples of it, modulo 1,
/// fill the unit interval evenly (a Weyl sequence), so consecutive picks interleave localities in
/// proportion to their weights, like a weighted round robin, with nothing shared but a counter.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl LocalitySchedule {
    /// `None` when no locality has a positive effective weight (no weights, or no available host
    /// in any weighted locality): the priority's hosts are then chosen from without localities.
    pub fn new(localities: &[LocalityState], overprovisioning: u32) -> Option<LocalitySchedule> {
        let weights: Vec<(usize, f64)> = localities
            .iter()
            .enumerate()
            .map(|(i, l)| (i, l.effective_weight(overprovisioning)))
            .filter(|(_, w)| *w > 0.0)
            .collect();
        let total: f64 = weights.iter().map(|(_, w)| w).sum();
        if weights.is_empty() || total <= 0.0 {
            return None;
        }
        let mut sum = 0.0;
        let mut bounds: Vec<(usize, f64)> = weights
            .into_iter()
            .map(|(i, w)| {
                sum += w;
                (i, sum / total)
            })
            .collect();
        // Rounding must not leave a gap at the top.
        if let Some(last) = bounds.last_mut() {
            last.1 = 1.0;
        }
        Some(LocalitySchedule { bounds })
    }

    /// The locality (its index among those given to [`LocalitySchedule::new`]) of the `n`th pick.
    pub fn pick(&self, n: u64) -> usize {
        // The top 53 bits of the fixed-point fraction, exactly representable as an f64.
        let point = (n.wrapping_mul(GOLDEN) >> 11) as f64 / (1u64 << 53) as f64;
        self.locality_at(point)
    }

    /// The locality whose share holds `point` (in `[0, 1)`).
    pub fn locality_at(&self, point: f64) -> usize {
        let at = self.bounds.partition_point(|(_, bound)| *bound <= point);
        self.bounds
            .get(at)
            .or(self.bounds.last())
            .map_or(0, |(i, _)| *i)
    }

    /// Each scheduled locality's share of the picks, by locality index.
    pub fn shares(&self) -> impl Iterator<Item = (usize, f64)> + '_ {
        let mut previous = 0.0;
        self.bounds.iter().map(move |(i, bound)| {
            let share = bound - previous;
            previous = *bound;
            (*i, share)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn state(weight: u32, available: usize, hosts: usize) -> LocalityState {
        LocalityState {
            weight,
            available,
            hosts,
        }
    }

    /// How many of `n` picks went to each of `localities` localities.
    fn picks(s: &LocalitySchedule, localities: usize, n: u64) -> Vec<u64> {
        let mut counts = vec![0; localities];
        for i in 0..n {
            counts[s.pick(i)] += 1;
        }
        counts
    }

    #[test]
    fn weights_split_the_picks_and_unweighted_localities_get_none() {
        let s =
            LocalitySchedule::new(&[state(1, 2, 2), state(2, 3, 3), state(0, 2, 2)], 140).unwrap();
        let counts = picks(&s, 3, 3000);
        assert_eq!(counts[2], 0);
        // A low-discrepancy sequence: within a couple of picks of the exact 1000/2000.
        assert!(counts[0].abs_diff(1000) <= 3, "{counts:?}");
        assert_eq!(counts[0] + counts[1], 3000);
        // Interleaved, not in runs: any 30 consecutive picks hold about 10 of locality 0.
        for start in (0..3000).step_by(97) {
            let n = (start..start + 30).filter(|i| s.pick(*i) == 0).count();
            assert!((8..=12).contains(&n), "picks {start}..: {n} of locality 0");
        }
    }

    #[test]
    fn availability_scales_weights_with_the_overprovisioning_factor() {
        // Envoy's documented example: X weight 1, Y weight 2 (all available); as X loses hosts its
        // share goes 33 % (100 % and 72 % available), 28 % (50 %: 1.4 × 0.5 = 0.7), 0 % (none).
        let share_of_x = |available: usize| {
            LocalitySchedule::new(&[state(1, available, 100), state(2, 10, 10)], 140)
                .unwrap()
                .shares()
                .find(|(i, _)| *i == 0)
                .map_or(0.0, |(_, s)| s)
        };
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(share_of_x(100), 1.0 / 3.0));
        assert!(close(share_of_x(72), 1.0 / 3.0));
        assert!(close(share_of_x(50), 0.7 / 2.7));
        assert!(close(share_of_x(0), 0.0));
        assert_eq!(state(3, 1, 2).effective_weight(100), 1.5);
        assert_eq!(state(3, 0, 0).effective_weight(140), 0.0);
    }

    #[test]
    fn no_schedule_without_a_weighted_available_locality() {
        assert_eq!(LocalitySchedule::new(&[], 140), None);
        assert_eq!(
            LocalitySchedule::new(&[state(0, 3, 3), state(5, 0, 2)], 140),
            None
        );
        let s = LocalitySchedule::new(&[state(0, 3, 3), state(5, 1, 2)], 140).unwrap();
        assert!((0..100).all(|n| s.pick(n) == 1));
        assert_eq!(s.locality_at(0.999_999_999_999), 1);
    }
}
