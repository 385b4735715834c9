//! Percentiles of latency samples.

/// The nearest-rank `p`-th percentile (0 < `p` ≤ 100) of `sorted` (ascending): the
/// smallest sample with at least `p` % of the samples at or below it. `None` when there
/// are no samples.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// What the bench reports about one kind of latency.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Summary {
    /// How many samples there were.
    pub n: usize,
    /// Median (nearest rank); `None` without samples.
    pub p50: Option<f64>,
    /// 99th percentile (nearest rank); `None` without samples.
    pub p99: Option<f64>,
    /// Largest sample; `None` without samples.
    pub max: Option<f64>,
}

impl Summary {
    /// Summarises `samples` (any order; NaNs sort last).
    pub fn of(mut samples: Vec<f64>) -> Self {
        samples.sort_by(f64::total_cmp);
        Self {
            n: samples.len(),
            p50: percentile(&samples, 50.0),
            p99: percentile(&samples, 99.0),
            max: samples.last().copied(),
        }
    }

    /// p99 / p50: how far the tail is from the typical case (`None` without samples or
    /// with a zero median).
    pub fn tail_ratio(&self) -> Option<f64> {
        match (self.p50, self.p99) {
            (Some(p50), Some(p99)) if p50 > 0.0 => Some(p99 / p50),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let s: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&s, 50.0), Some(50.0));
        assert_eq!(percentile(&s, 99.0), Some(99.0));
        assert_eq!(percentile(&s, 100.0), Some(100.0));
        assert_eq!(percentile(&s, 0.5), Some(1.0));
        // Small sets: the p99 of fewer than 100 samples is the largest.
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 99.0), Some(6.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 50.0), Some(3.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0, 5.0], 50.0), Some(3.0));
        assert_eq!(percentile(&[7.0], 50.0), Some(7.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
        // 1000 samples: the p99 is the 990th, not the largest.
        let s: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(percentile(&s, 99.0), Some(990.0));
    }

    #[test]
    fn summary_sorts_and_ratios() {
        let s = Summary::of(vec![4.0, 1.0, 3.0, 2.0, 100.0]);
        assert_eq!(s.n, 5);
        assert_eq!(s.p50, Some(3.0));
        assert_eq!(s.p99, Some(100.0));
        assert_eq!(s.max, Some(100.0));
        assert_eq!(s.tail_ratio(), Some(100.0 / 3.0));

        let empty = Summary::of(Vec::new());
        assert_eq!(empty, Summary::default());
        assert_eq!(empty.tail_ratio(), None);
        assert_eq!(Summary::of(vec![0.0, 0.0]).tail_ratio(), None);
    }
}
