//! Capped exponential backoff with jitter, for retries that never give up.

use std::time::Duration;

/// First retry delay after a failure.
pub(crate) const INITIAL: Duration = Duration::from_millis(100);
/// Longest delay between two retries: an instance registers again, and a client lists again,
/// within 2 s of etcd's return (1 to 2 s with jitter), which even a thousand instances
/// retrying together keep far below what one etcd member serves.
pub(crate) const MAX: Duration = Duration::from_secs(2);

/// Delays 100 ms, 200 ms, 400 ms ... up to 2 s, each with "equal jitter" (between half and
/// all of the nominal delay) so many instances that lost etcd together do not retry in step.
#[derive(Debug)]
pub(crate) struct Backoff {
    /// Nominal delay of the next retry.
    next: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Self { next: INITIAL }
    }

    /// The delay to wait now; doubles the next one up to the cap.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let nominal = self.next;
        self.next = (self.next * 2).min(MAX);
        let half = nominal / 2;
        let jitter_ms = fastrand::u64(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter_ms)
    }

    /// Back to the first delay after a success.
    pub(crate) fn reset(&mut self) {
        self.next = INITIAL;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter() {
        let mut b = Backoff::new();
        let first = b.next_delay();
        assert!(first >= INITIAL / 2 && first <= INITIAL);
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(d <= MAX);
        }
        let d = b.next_delay();
        assert!(d >= MAX / 2, "{d:?}");
        b.reset();
        assert!(b.next_delay() <= INITIAL);
    }
}
