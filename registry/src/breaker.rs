//! The circuit breaker of one instance, as a pure state machine: every method takes the time,
//! so tests drive it with a made-up clock. [`crate::health`] owns one per instance.

use std::time::Instant;

use crate::{options::BreakerOptions, window::SlidingWindow};

/// How one call to an instance ended, as far as the instance's health goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The instance answered (an exception is an answer too).
    Success,
    /// Transport or protocol error, or no answer within the attempt's time.
    Failure,
    /// Connecting was refused (or reset, or unreachable): nothing listens there.
    Refused,
}

/// What a breaker lets through, for [`crate::InstanceHealth`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are kept away until the cooldown ends.
    Open,
    /// The cooldown is over: probes go through one at a time.
    HalfOpen,
}

#[derive(Clone, Copy, Debug)]
enum State {
    Closed,
    Open {
        until: Instant,
    },
    HalfOpen {
        /// When the cooldown ended.
        cooled: Instant,
        /// When the probe now in flight was let through.
        probing_since: Option<Instant>,
        successes: u32,
    },
}

/// Counter indices in the window.
const OK: usize = 0;
const FAILED: usize = 1;

#[derive(Debug)]
pub(crate) struct Breaker {
    options: BreakerOptions,
    state: State,
    /// Successes and failures while closed.
    window: SlidingWindow,
    /// Failures since the last success (while closed).
    consecutive: u32,
    /// When the last of them happened: an older one does not continue the streak.
    last_failure: Option<Instant>,
    /// How often it opened.
    trips: u64,
}

impl Breaker {
    pub(crate) fn new(options: BreakerOptions, now: Instant) -> Self {
        Self {
            window: SlidingWindow::new(options.window, now),
            options,
            state: State::Closed,
            consecutive: 0,
            last_failure: None,
            trips: 0,
        }
    }

    /// An open breaker whose cooldown is over is half-open.
    fn advance(&mut self, now: Instant) {
        if let State::Open { until } = self.state
            && now >= until
        {
            self.state = State::HalfOpen {
                cooled: until,
                probing_since: None,
                successes: 0,
            };
        }
    }

    pub(crate) fn state(&self, now: Instant) -> BreakerState {
        match self.state {
            State::Closed => BreakerState::Closed,
            State::Open { until } if now < until => BreakerState::Open,
            State::Open { .. } | State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Until when calls are kept away: `None` when closed; a past time when half-open.
    pub(crate) fn blocked_until(&self) -> Option<Instant> {
        match self.state {
            State::Closed => None,
            State::Open { until } => Some(until),
            State::HalfOpen { cooled, .. } => Some(cooled),
        }
    }

    pub(crate) fn trips(&self) -> u64 {
        self.trips
    }

    /// Whether a call may go through now. Closed: yes. Open: no. Half-open: yes when no probe
    /// is in flight (or the one in flight was let through a cooldown ago and never reported:
    /// it got lost), and that call is the probe.
    pub(crate) fn try_pass(&mut self, now: Instant) -> bool {
        self.advance(now);
        match &mut self.state {
            State::Closed => true,
            State::Open { .. } => false,
            State::HalfOpen { probing_since, .. } => {
                let free = probing_since.is_none_or(|since| {
                    now.saturating_duration_since(since) >= self.options.cooldown
                });
                if free {
                    *probing_since = Some(now);
                }
                free
            }
        }
    }

    pub(crate) fn record(&mut self, outcome: Outcome, now: Instant) {
        if !self.options.enabled {
            return;
        }
        self.advance(now);
        match &mut self.state {
            State::Closed => self.record_closed(outcome, now),
            // Late answers of calls let through before it opened.
            State::Open { .. } => {}
            State::HalfOpen {
                probing_since,
                successes,
                ..
            } => match outcome {
                Outcome::Success => {
                    *probing_since = None;
                    *successes += 1;
                    if *successes >= self.options.half_open_probes {
                        self.close();
                    }
                }
                Outcome::Failure | Outcome::Refused => self.trip(now),
            },
        }
    }

    fn record_closed(&mut self, outcome: Outcome, now: Instant) {
        match outcome {
            Outcome::Success => {
                self.window.add(OK, now);
                self.consecutive = 0;
            }
            Outcome::Refused => self.trip(now),
            Outcome::Failure => {
                self.window.add(FAILED, now);
                let continues = self
                    .last_failure
                    .is_some_and(|at| now.saturating_duration_since(at) <= self.options.window);
                self.consecutive = if continues { self.consecutive + 1 } else { 1 };
                self.last_failure = Some(now);
                let [ok, failed] = self.window.totals(now);
                let total = ok + failed;
                let streak = self.options.consecutive_failures > 0
                    && self.consecutive >= self.options.consecutive_failures;
                let rate = total >= u64::from(self.options.min_samples.max(1))
                    && failed * 100 >= total * u64::from(self.options.failure_percent);
                if streak || rate {
                    self.trip(now);
                }
            }
        }
    }

    fn trip(&mut self, now: Instant) {
        self.state = State::Open {
            until: now + self.options.cooldown,
        };
        self.trips += 1;
        self.reset_counts();
    }

    fn close(&mut self) {
        self.state = State::Closed;
        self.reset_counts();
    }

    /// Counts start afresh after every transition: old failures must not reopen a breaker
    /// that probes just closed.
    fn reset_counts(&mut self) {
        self.window.clear();
        self.consecutive = 0;
        self.last_failure = None;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ms(m: u64) -> Duration {
        Duration::from_millis(m)
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn breaker(t0: Instant) -> Breaker {
        Breaker::new(BreakerOptions::default(), t0)
    }

    #[test]
    fn an_occasional_failure_at_low_traffic_never_opens() {
        let t0 = Instant::now();
        let mut b = breaker(t0);
        // One call a second for a minute, every fifth failing.
        for i in 0..60u64 {
            let outcome = if i % 5 == 0 {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            b.record(outcome, t0 + secs(i));
            assert_eq!(b.state(t0 + secs(i)), BreakerState::Closed, "call {i}");
        }
        // Two failures 20 s apart (nothing between) are no streak either.
        b.record(Outcome::Failure, t0 + secs(100));
        b.record(Outcome::Failure, t0 + secs(120));
        assert_eq!(b.state(t0 + secs(120)), BreakerState::Closed);
        assert_eq!(b.trips(), 0);
    }

    #[test]
    fn two_failures_in_a_row_open_it() {
        let t0 = Instant::now();
        let mut b = breaker(t0);
        b.record(Outcome::Success, t0);
        b.record(Outcome::Failure, t0 + ms(10));
        assert_eq!(b.state(t0 + ms(10)), BreakerState::Closed);
        b.record(Outcome::Failure, t0 + secs(1));
        assert_eq!(b.state(t0 + secs(1)), BreakerState::Open);
        assert_eq!(b.trips(), 1);
    }

    #[test]
    fn a_refused_connection_opens_it_at_once() {
        let t0 = Instant::now();
        let mut b = breaker(t0);
        for i in 0..100 {
            b.record(Outcome::Success, t0 + ms(i));
        }
        b.record(Outcome::Refused, t0 + ms(100));
        assert_eq!(b.state(t0 + ms(100)), BreakerState::Open);
    }

    #[test]
    fn the_failure_rate_opens_it_at_high_traffic() {
        let t0 = Instant::now();
        let mut b = Breaker::new(
            BreakerOptions {
                consecutive_failures: 0,
                ..BreakerOptions::default()
            },
            t0,
        );
        // 100 calls/s, every other one failing: below 20 samples nothing happens...
        for i in 0..19u64 {
            let outcome = if i % 2 == 1 {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            b.record(outcome, t0 + ms(10 * i));
        }
        assert_eq!(b.state(t0 + ms(190)), BreakerState::Closed);
        // ...the 20th sample (a failure: 10 of 20) opens it, within 0.2 s.
        b.record(Outcome::Failure, t0 + ms(190));
        assert_eq!(b.state(t0 + ms(190)), BreakerState::Open);
    }

    #[test]
    fn half_open_probes_one_at_a_time_then_closes() {
        let t0 = Instant::now();
        let mut b = breaker(t0);
        b.record(Outcome::Refused, t0);
        assert!(!b.try_pass(t0 + secs(4)), "open during the cooldown");
        let t = t0 + secs(5);
        assert_eq!(b.state(t), BreakerState::HalfOpen);
        assert!(b.try_pass(t), "first probe");
        assert!(!b.try_pass(t), "one probe at a time");
        b.record(Outcome::Success, t + ms(1));
        assert!(b.try_pass(t + ms(2)));
        b.record(Outcome::Success, t + ms(3));
        assert!(b.try_pass(t + ms(4)));
        b.record(Outcome::Success, t + ms(5));
        assert_eq!(b.state(t + ms(5)), BreakerState::Closed);
        assert!(b.try_pass(t + ms(6)));
        // Counts started afresh: one failure does not reopen it.
        b.record(Outcome::Failure, t + ms(7));
        assert_eq!(b.state(t + ms(7)), BreakerState::Closed);
    }

    #[test]
    fn a_failed_probe_opens_it_again() {
        let t0 = Instant::now();
        let mut b = breaker(t0);
        b.record(Outcome::Failure, t0);
        b.record(Outcome::Failure, t0);
        let t = t0 + secs(5);
        assert!(b.try_pass(t));
        b.record(Outcome::Failure, t + secs(1));
        assert_eq!(b.state(t + secs(1)), BreakerState::Open);
        assert_eq!(b.state(t + secs(6)), BreakerState::HalfOpen);
        assert_eq!(b.trips(), 2);
    }

    #[test]
    fn a_lost_probe_is_replaced_after_a_cooldown() {
        let t0 = Instant::now();
        let mut b = breaker(t0);
        b.record(Outcome::Refused, t0);
        let t = t0 + secs(5);
        assert!(b.try_pass(t));
        assert!(!b.try_pass(t + secs(4)));
        assert!(b.try_pass(t + secs(5)));
    }

    #[test]
    fn disabled_never_opens() {
        let t0 = Instant::now();
        let mut b = Breaker::new(
            BreakerOptions {
                enabled: false,
                ..BreakerOptions::default()
            },
            t0,
        );
        for i in 0..100 {
            b.record(Outcome::Refused, t0 + ms(i));
        }
        assert!(b.try_pass(t0 + ms(100)));
        assert_eq!(b.state(t0 + ms(100)), BreakerState::Closed);
    }

    #[test]
    fn late_answers_while_open_change_nothing() {
        let t0 = Instant::now();
        let mut b = breaker(t0);
        b.record(Outcome::Refused, t0);
        b.record(Outcome::Success, t0 + secs(1));
        b.record(Outcome::Success, t0 + secs(2));
        assert_eq!(b.state(t0 + secs(2)), BreakerState::Open);
    }
}
