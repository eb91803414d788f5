//! Two counters summed over a sliding time window kept in ten buckets: shared by the circuit
//! breaker (successes, failures) and the retry budget (calls, retries).

use std::time::{Duration, Instant};

/// Buckets per window: the window slides in steps of a tenth of its length.
const BUCKETS: usize = 10;

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    /// Which bucket-length slot since `epoch` these counts belong to.
    slot: u64,
    counts: [u64; 2],
}

/// Counts `[a, b]` over the last `window`, to a tenth of it.
#[derive(Clone, Debug)]
pub(crate) struct SlidingWindow {
    /// Slot numbers are measured from here.
    epoch: Instant,
    /// A tenth of the window (at least 1 ms).
    bucket: Duration,
    buckets: [Bucket; BUCKETS],
}

impl SlidingWindow {
    pub(crate) fn new(window: Duration, epoch: Instant) -> Self {
        Self {
            epoch,
            bucket: (window / BUCKETS as u32).max(Duration::from_millis(1)),
            // Slot 0 is live at the start: mark the others stale.
            buckets: [Bucket {
                slot: u64::MAX,
                counts: [0; 2],
            }; BUCKETS],
        }
    }

    fn slot(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.epoch);
        (since.as_nanos() / self.bucket.as_nanos()) as u64
    }

    /// Adds to counter `which` (0 or 1).
    pub(crate) fn add(&mut self, which: usize, now: Instant) {
        let slot = self.slot(now);
        let bucket = &mut self.buckets[(slot % BUCKETS as u64) as usize];
        if bucket.slot != slot {
            *bucket = Bucket {
                slot,
                counts: [0; 2],
            };
        }
        bucket.counts[which] += 1;
    }

    /// Both counters over the window ending at `now`.
    pub(crate) fn totals(&self, now: Instant) -> [u64; 2] {
        let slot = self.slot(now);
        let mut sum = [0; 2];
        for b in &self.buckets {
            if b.slot <= slot && slot - b.slot < BUCKETS as u64 {
                sum[0] += b.counts[0];
                sum[1] += b.counts[1];
            }
        }
        sum
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self) {
        for b in &mut self.buckets {
            b.slot = u64::MAX;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_slide_out_after_the_window() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::new(Duration::from_secs(10), t0);
        w.add(0, t0);
        w.add(1, t0 + Duration::from_millis(500));
        w.add(1, t0 + Duration::from_secs(5));
        assert_eq!(w.totals(t0 + Duration::from_secs(5)), [1, 2]);
        // The first bucket (0..1 s) leaves the window at 10 s.
        assert_eq!(w.totals(t0 + Duration::from_secs(10)), [0, 1]);
        assert_eq!(w.totals(t0 + Duration::from_secs(15)), [0, 0]);
        // A reused bucket starts from zero.
        w.add(0, t0 + Duration::from_secs(20));
        assert_eq!(w.totals(t0 + Duration::from_secs(20)), [1, 0]);
        w.clear();
        assert_eq!(w.totals(t0 + Duration::from_secs(20)), [0, 0]);
    }
}
