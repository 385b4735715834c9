//! Throughput over a sliding window, for `status`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How far back "tokens per second" looks.
const WINDOW: Duration = Duration::from_secs(5);

/// Samples of the cumulative generated-token count.
#[derive(Debug, Default)]
pub struct Throughput {
    samples: VecDeque<(Instant, u64)>,
}

impl Throughput {
    /// Records the cumulative count at `now`.
    pub fn record(&mut self, now: Instant, total: u64) {
        self.samples.push_back((now, total));
        while self
            .samples
            .front()
            .is_some_and(|&(t, _)| now.duration_since(t) > WINDOW)
        {
            self.samples.pop_front();
        }
    }

    /// Tokens per second over the window ending at `now` (0 when idle).
    pub fn rate(&self, now: Instant) -> f64 {
        let mut recent = self
            .samples
            .iter()
            .filter(|&&(t, _)| now.duration_since(t) <= WINDOW);
        let (Some(first), Some(last)) = (recent.next(), recent.next_back()) else {
            return 0.0;
        };
        let span = now.duration_since(first.0).as_secs_f64().max(1e-3);
        (last.1 - first.1) as f64 / span
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_over_window() {
        let t0 = Instant::now();
        let mut t = Throughput::default();
        t.record(t0, 0);
        t.record(t0 + Duration::from_secs(1), 100);
        t.record(t0 + Duration::from_secs(2), 200);
        let r = t.rate(t0 + Duration::from_secs(2));
        assert!((r - 100.0).abs() < 1e-6, "{r}");
        assert_eq!(t.rate(t0 + Duration::from_secs(60)), 0.0);
    }
}
