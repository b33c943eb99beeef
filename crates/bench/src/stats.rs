//! Latency samples with exact percentiles, and medians across runs.

/// Most latency samples one run keeps (8 bytes each: 32 MiB). A run at 100,000 req/s for 10 s records a
/// million; past the cap further samples are counted but not kept, so memory stays bounded.
pub const MAX_SAMPLES: usize = 4_000_000;

/// Recorded latencies in nanoseconds; percentiles are exact (nearest rank over every kept sample).
#[derive(Debug, Clone, Default)]
pub struct Samples {
    nanos: Vec<u64>,
    dropped: u64,
    cap: usize,
}

impl Samples {
    /// Keeps at most `cap` samples.
    pub fn with_cap(cap: usize) -> Samples {
        Samples {
            nanos: Vec::with_capacity(cap.min(1 << 16)),
            dropped: 0,
            cap,
        }
    }

    /// Records one latency.
    pub fn record(&mut self, latency: std::time::Duration) {
        if self.nanos.len() < self.cap {
            self.nanos
                .push(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
        } else {
            self.dropped += 1;
        }
    }

    /// Adds another run's (or task's) samples, within this one's cap.
    pub fn merge(&mut self, other: Samples) {
        let room = self.cap.saturating_sub(self.nanos.len());
        let take = other.nanos.len().min(room);
        self.dropped += other.dropped + (other.nanos.len() - take) as u64;
        self.nanos.extend_from_slice(&other.nanos[..take]);
    }

    /// Samples kept.
    pub fn len(&self) -> usize {
        self.nanos.len()
    }

    /// Samples not kept (over the cap).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Sorts the samples for [`Sorted::percentile`].
    pub fn sorted(mut self) -> Sorted {
        self.nanos.sort_unstable();
        Sorted(self.nanos)
    }
}

/// Sorted samples.
#[derive(Debug, Clone)]
pub struct Sorted(Vec<u64>);

impl Sorted {
    /// The `q`-quantile (0.0 ..= 1.0) by nearest rank, in microseconds; `None` without samples.
    pub fn percentile_us(&self, q: f64) -> Option<f64> {
        percentile(&self.0, q).map(|ns| ns as f64 / 1000.0)
    }
}

/// The nearest-rank `q`-quantile of `sorted`: the smallest sample such that at least `q` of all samples are
/// at or below it. `q` is clamped to 0.0 ..= 1.0; `None` when empty.
pub fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let q = q.clamp(0.0, 1.0);
    // rank = ceil(q * n), at least 1.
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    sorted.get(rank - 1).copied()
}

/// The median of `values` (the mean of the middle two for an even count); `None` when empty. NaNs are
/// ignored.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Some(50));
        assert_eq!(percentile(&v, 0.9), Some(90));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&v, 1.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[7], 0.99), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
        // 10 samples: p99 is the largest, p50 the fifth.
        let v = [10, 20, 30, 40, 50, 60, 70, 80, 90, 1000];
        assert_eq!(percentile(&v, 0.99), Some(1000));
        assert_eq!(percentile(&v, 0.9), Some(90));
        assert_eq!(percentile(&v, 0.5), Some(50));
    }

    #[test]
    fn samples_are_bounded_and_sorted() {
        let mut s = Samples::with_cap(3);
        for us in [30, 10, 20, 40] {
            s.record(Duration::from_micros(us));
        }
        assert_eq!((s.len(), s.dropped()), (3, 1));
        let mut t = Samples::with_cap(3);
        t.record(Duration::from_micros(5));
        s.merge(t);
        assert_eq!((s.len(), s.dropped()), (3, 2));
        let sorted = s.sorted();
        assert_eq!(sorted.percentile_us(0.0), Some(10.0));
        assert_eq!(sorted.percentile_us(1.0), Some(30.0));
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
        assert_eq!(median(&[]), None);
    }
}
