//! Capped exponential backoff with jitter, for retries that never give up, and the incident
//! those retries belong to.

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

/// One stretch of trouble with etcd, shared by registration and discovery: it opens at a
/// failure and closes once a stretch of health has held. Its first failure is worth a warning
/// and its first recovery an info line; repeats inside it are debug lines, so a flapping etcd
/// does not flood the log. It owns the retry delays, which start over with each incident.
#[derive(Debug)]
pub(crate) struct Incident {
    open: bool,
    recovery_reported: bool,
    backoff: Backoff,
}

impl Incident {
    pub(crate) fn new() -> Self {
        Self {
            open: false,
            recovery_reported: false,
            backoff: Backoff::new(),
        }
    }

    /// Records a failure; `after_health`: what failed had held long enough to count as
    /// healthy, which closes the incident before. True when this failure opens a new one.
    pub(crate) fn failed(&mut self, after_health: bool) -> bool {
        if after_health {
            self.open = false;
            self.backoff.reset();
        }
        let opens = !self.open;
        if opens {
            self.open = true;
            self.recovery_reported = false;
        }
        opens
    }

    /// Records a recovery. True for the first one of an open incident.
    pub(crate) fn recovered(&mut self) -> bool {
        let first = self.open && !self.recovery_reported;
        self.recovery_reported |= first;
        first
    }

    /// The delay before the next retry.
    pub(crate) fn next_delay(&mut self) -> Duration {
        self.backoff.next_delay()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incident_reports_its_first_failure_and_first_recovery_once() {
        let mut incident = Incident::new();
        assert!(!incident.recovered(), "no incident, nothing to report");
        assert!(incident.failed(false), "the first failure opens it");
        assert!(!incident.failed(false), "a repeat is part of it");
        assert!(incident.recovered());
        assert!(
            !incident.failed(false),
            "a failure after a short recovery too"
        );
        assert!(!incident.recovered(), "its recovery was reported already");
        assert!(
            incident.failed(true),
            "a failure after health opens a new one"
        );
        assert!(incident.recovered());
    }

    #[test]
    fn health_starts_the_delays_over() {
        let mut incident = Incident::new();
        incident.failed(false);
        for _ in 0..10 {
            incident.next_delay();
        }
        assert!(incident.next_delay() >= MAX / 2);
        incident.failed(true);
        assert!(incident.next_delay() <= INITIAL);
    }

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
