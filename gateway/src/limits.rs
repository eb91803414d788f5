//! Rate limits (GCRA, the `governor` crate): the whole gateway, each client IP, and on
//! token-issuing routes (log-ins) each IP and each account, so that password guessing is slow
//! whichever of the two an attacker varies.

use std::{
    fmt,
    hash::Hash,
    net::IpAddr,
    num::NonZeroU32,
    str::FromStr,
    sync::{Arc, Weak},
    time::Duration,
};

use governor::{
    DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota,
    clock::{Clock as _, DefaultClock},
};

/// `count` requests per `period`, with bursts of up to `count`; `off` (or `0`) for no limit.
/// Written `200/s`, `10/min`, `1000/h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    count: u32,
    period: Duration,
}

impl Rate {
    pub const OFF: Rate = Rate {
        count: 0,
        period: Duration::from_secs(1),
    };

    pub fn new(count: u32, period: Duration) -> Self {
        Self { count, period }
    }

    fn quota(self) -> Option<Quota> {
        let burst = NonZeroU32::new(self.count)?;
        Quota::with_period(self.period / self.count).map(|q| q.allow_burst(burst))
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") || text == "0" {
            return Ok(Rate::OFF);
        }
        let wrong = || format!("`{text}` is not a rate (examples: 200/s, 10/min, 1000/h, off)");
        let (count, unit) = text.split_once('/').ok_or_else(wrong)?;
        let count: u32 = count.trim().parse().map_err(|_| wrong())?;
        let period = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(wrong()),
        };
        Ok(Rate::new(count, period))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.period.as_secs() {
            _ if self.count == 0 => f.write_str("off"),
            1 => write!(f, "{}/s", self.count),
            60 => write!(f, "{}/min", self.count),
            3600 => write!(f, "{}/h", self.count),
            s => write!(f, "{}/{s}s", self.count),
        }
    }
}

/// The configured rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    pub global: Rate,
    pub per_ip: Rate,
    pub login_per_ip: Rate,
    pub login_per_account: Rate,
}

/// A refused request: how long until the client may try again.
#[derive(Debug, Clone, Copy)]
pub struct Limited {
    pub retry_after: Duration,
    /// What was exceeded, for the answer.
    pub what: &'static str,
}

impl Limited {
    /// Whole seconds, rounded up: `Retry-After` has no fractions.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0)
    }
}

/// Every limiter of one gateway; `None` where the rate is off.
pub struct Limits {
    global: Option<DefaultDirectRateLimiter>,
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    login_per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    login_per_account: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
}

impl Limits {
    /// The limiters, and a task (call inside a Tokio runtime) that forgets idle keys every
    /// minute, so that many client IPs or made-up account names cannot grow memory for good.
    pub fn new(rates: &Rates) -> Arc<Self> {
        let limits = Arc::new(Self {
            global: rates.global.quota().map(DefaultDirectRateLimiter::direct),
            per_ip: rates.per_ip.quota().map(DefaultKeyedRateLimiter::keyed),
            login_per_ip: rates
                .login_per_ip
                .quota()
                .map(DefaultKeyedRateLimiter::keyed),
            login_per_account: rates
                .login_per_account
                .quota()
                .map(DefaultKeyedRateLimiter::keyed),
            clock: DefaultClock::default(),
        });
        if limits.per_ip.is_some()
            || limits.login_per_ip.is_some()
            || limits.login_per_account.is_some()
        {
            tokio::spawn(forget_idle_keys(Arc::downgrade(&limits)));
        }
        limits
    }

    /// Any request: the gateway's rate, then the client's.
    pub fn check_request(&self, ip: IpAddr) -> Result<(), Limited> {
        if let Some(global) = &self.global {
            global.check().map_err(|n| Limited {
                retry_after: n.wait_time_from(self.clock.now()),
                what: "the gateway is at its request rate limit",
            })?;
        }
        self.check_key(&self.per_ip, &ip, "too many requests from this address")
    }

    /// A request to a token-issuing route, before its body is read.
    pub fn check_login_ip(&self, ip: IpAddr) -> Result<(), Limited> {
        self.check_key(
            &self.login_per_ip,
            &ip,
            "too many log-in attempts from this address",
        )
    }

    /// A request to a token-issuing route for `account`, once it is known to be well formed.
    pub fn check_login_account(&self, account: &str) -> Result<(), Limited> {
        if self.login_per_account.is_none() {
            return Ok(());
        }
        self.check_key(
            &self.login_per_account,
            &account.to_owned(),
            "too many log-in attempts for this account",
        )
    }

    fn check_key<K: Hash + Eq + Clone>(
        &self,
        limiter: &Option<DefaultKeyedRateLimiter<K>>,
        key: &K,
        what: &'static str,
    ) -> Result<(), Limited> {
        let Some(limiter) = limiter else {
            return Ok(());
        };
        limiter.check_key(key).map_err(|n| Limited {
            retry_after: n.wait_time_from(self.clock.now()),
            what,
        })
    }

    fn forget_idle(&self) {
        if let Some(l) = &self.per_ip {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.login_per_ip {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.login_per_account {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

async fn forget_idle_keys(limits: Weak<Limits>) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    every.tick().await;
    loop {
        every.tick().await;
        match limits.upgrade() {
            Some(limits) => limits.forget_idle(),
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print() {
        assert_eq!("200/s".parse(), Ok(Rate::new(200, Duration::from_secs(1))));
        assert_eq!("10/min".parse(), Ok(Rate::new(10, Duration::from_secs(60))));
        assert_eq!("off".parse(), Ok(Rate::OFF));
        assert_eq!("0".parse(), Ok(Rate::OFF));
        assert!("10".parse::<Rate>().is_err());
        assert!("10/day".parse::<Rate>().is_err());
        assert!("-1/s".parse::<Rate>().is_err());
        assert_eq!(Rate::new(10, Duration::from_secs(60)).to_string(), "10/min");
        assert_eq!(Rate::OFF.to_string(), "off");
    }

    fn limits(rates: Rates) -> Arc<Limits> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _in_runtime = rt.enter();
        Limits::new(&rates)
    }

    const OFF: Rates = Rates {
        global: Rate::OFF,
        per_ip: Rate::OFF,
        login_per_ip: Rate::OFF,
        login_per_account: Rate::OFF,
    };

    #[test]
    fn a_burst_passes_then_the_excess_is_told_when_to_retry() {
        let l = limits(Rates {
            login_per_account: "3/min".parse().unwrap(),
            ..OFF
        });
        for _ in 0..3 {
            assert!(l.check_login_account("alice").is_ok());
        }
        let limited = l.check_login_account("alice").unwrap_err();
        // One attempt comes back every 20 s.
        assert!(
            (1..=20).contains(&limited.retry_after_secs()),
            "{limited:?}"
        );
        assert!(
            l.check_login_account("bob").is_ok(),
            "accounts are separate"
        );
    }

    #[test]
    fn addresses_are_limited_separately_and_off_limits_nothing() {
        let l = limits(Rates {
            per_ip: "1/h".parse().unwrap(),
            ..OFF
        });
        let a = IpAddr::from([127, 0, 0, 1]);
        let b = IpAddr::from([127, 0, 0, 2]);
        assert!(l.check_request(a).is_ok());
        assert!(l.check_request(a).is_err());
        assert!(l.check_request(b).is_ok());
        assert!(l.check_login_ip(a).is_ok(), "the log-in limit is off");
    }
}
