//! Plain configuration structs: how to reach etcd, how to register, how a client calls.
//!
//! Every struct has a `Default` (or a `new` when a field has no sensible default) that matches
//! the seed system (Kitex + kitex-contrib/registry-etcd), so generated code and tests only set
//! what differs.

use std::{collections::BTreeMap, fmt, net::IpAddr, path::PathBuf, time::Duration};

/// The key prefix kitex-contrib/registry-etcd uses; keys are `<prefix>/<service>/<host:port>`.
pub const DEFAULT_PREFIX: &str = "kitex/registry-etcd";

/// The weight Kitex registers when none is set, and the weight a reader assumes for
/// records whose weight is missing, zero or negative.
pub const DEFAULT_WEIGHT: u32 = 10;

/// How to reach etcd.
///
/// Default: endpoints `["127.0.0.1:2379"]`, prefix `kitex/registry-etcd`, dial timeout 5 s,
/// no auth, no TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdOptions {
    /// etcd client URLs, `host:port`, with or without `http://` / `https://`.
    /// A scheme-less endpoint uses TLS exactly when `tls` is set.
    pub endpoints: Vec<String>,
    /// Key prefix shared by registrars and resolvers; must match on both sides
    /// (Go Kitex services use `kitex/registry-etcd` unless configured otherwise).
    pub prefix: String,
    /// Bound on connecting and on every single etcd request (grant, put, get, ...), so a
    /// dead or black-holed etcd turns into an error instead of a hang.
    pub dial_timeout: Duration,
    /// User and password when etcd has authentication enabled.
    pub auth: Option<Credentials>,
    /// Certificates when etcd serves TLS (crate feature `tls`, on by default; built without
    /// it, a TLS setting is an error at connect, never silently ignored). A TLS failure
    /// (untrusted server, refused client certificate) is `Error::Tls`, never a fallback
    /// to plain text.
    pub tls: Option<TlsOptions>,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        Self {
            endpoints: vec!["127.0.0.1:2379".to_owned()],
            prefix: DEFAULT_PREFIX.to_owned(),
            dial_timeout: Duration::from_secs(5),
            auth: None,
            tls: None,
        }
    }
}

impl EtcdOptions {
    /// Default options with these endpoints.
    pub fn with_endpoints<I, S>(endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// The prefix without trailing slashes: `kitex/registry-etcd/` and `kitex/registry-etcd`
    /// name the same keys.
    pub(crate) fn clean_prefix(&self) -> &str {
        self.prefix.trim_end_matches('/')
    }

    /// `<prefix>/<service>/`: the trailing slash keeps `user` from matching `user-admin`.
    pub(crate) fn service_prefix(&self, service: &str) -> String {
        format!("{}/{}/", self.clean_prefix(), service)
    }

    /// `endpoints` joined for messages: `127.0.0.1:2379,127.0.0.1:22379`.
    pub(crate) fn endpoints_display(&self) -> String {
        self.endpoints.join(",")
    }
}

/// etcd user and password. `Debug` never prints the password.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credentials {
    /// etcd user name.
    pub username: String,
    /// Its password; kept out of `Debug` output and logs.
    pub password: String,
}

impl Credentials {
    /// Credentials for `username` / `password`.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// PEM files for a TLS connection to etcd.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TlsOptions {
    /// CA certificate that signed etcd's server certificate.
    pub ca: PathBuf,
    /// Client certificate, when etcd requires client certificates (`--client-cert-auth`).
    /// Must be given together with `key`.
    pub cert: Option<PathBuf>,
    /// Private key of `cert`.
    pub key: Option<PathBuf>,
}

/// How an instance is registered. Default: TTL 10 s, weight 10, no tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterOptions {
    /// Lease time to live: how long a crashed instance stays visible. Rounded up to whole
    /// seconds; etcd raises values below its minimum (2 s with default settings).
    /// Keepalives are sent every TTL/3.
    pub ttl: Duration,
    /// Load-balancing weight written into the record (0 is written as 10, like Kitex).
    pub weight: u32,
    /// Free-form tags written into the record (`Instance::tags` on the client side).
    pub tags: BTreeMap<String, String>,
    /// How long [`Registration::deregister`](crate::Registration::deregister) waits after
    /// removing the key, while the server keeps serving, so that clients which poll the
    /// registry instead of watching it stop choosing this instance before its connections
    /// close: Kitex's resolver refreshes every 5 s, so 6 s in a fleet with Kitex callers.
    /// Zero by default: volo-etcd's clients watch, and drop the instance at once.
    pub linger: Duration,
}

impl Default for RegisterOptions {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(10),
            weight: DEFAULT_WEIGHT,
            tags: BTreeMap::new(),
            linger: Duration::ZERO,
        }
    }
}

/// Everything a server needs to announce itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeOptions {
    /// Name clients resolve; the `<service>` part of the key (no `/`, not empty).
    pub service_name: String,
    /// Address to register instead of the listener's; wins over `KITEX_IP_TO_REGISTRY`.
    pub advertise: Option<IpAddr>,
    /// Where the registry lives.
    pub etcd: EtcdOptions,
    /// Lease and record contents.
    pub register: RegisterOptions,
}

impl ServeOptions {
    /// Default etcd and registration options for `service_name`.
    pub fn new(service_name: impl Into<String>) -> Self {
        Self {
            service_name: service_name.into(),
            advertise: None,
            etcd: EtcdOptions::default(),
            register: RegisterOptions::default(),
        }
    }
}

/// How a generated client calls: the seed's settings (Kitex easy_note: rpc timeout 3 s, connect
/// timeout 50 ms, 2 retries, service name from the IDL) plus what Kitex and go-zero users get
/// built in and Volo lacks: a per-attempt timeout retried on another instance under a retry
/// budget, a per-instance circuit breaker and latency-aware (p2c) balancing. See
/// [`configure_client`](crate::configure_client) for how the pieces fit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// Name to resolve in etcd; `None` means the IDL service's name.
    pub service_name: Option<String>,
    /// The caller's own name: sent to the callee in the TTHeader (Kitex's `FROM_SERVICE`) and
    /// the `caller` label of both sides' metrics; `None` leaves them `unknown`.
    pub caller_name: Option<String>,
    /// Where the registry lives.
    pub etcd: EtcdOptions,
    /// Whole-call deadline, every attempt included (volo-thrift has none by default). A
    /// per-call `CallOpt` rpc timeout replaces it for that call.
    pub rpc_timeout: Duration,
    /// TCP connect deadline per attempt.
    pub connect_timeout: Duration,
    /// Extra attempts on transport errors (refused, reset, ...), each on another picked
    /// instance: Volo's own retry, inside one attempt, not limited by `retry_budget` (a refused
    /// connection cost the callee nothing).
    pub retry_count: usize,
    /// How long one attempt may take before the call is retried on another instance, while
    /// `rpc_timeout` and `retry_budget` allow; without a retry to make, the attempt goes on
    /// until `rpc_timeout`. Default 1 s, a third of the default `rpc_timeout`: a hung instance
    /// costs a call about a second and the retry still has two. Keep it above the callee's
    /// slowest normal answer; zero, or a value not below `rpc_timeout`, turns it off.
    pub attempt_timeout: Duration,
    /// The per-instance circuit breaker.
    pub breaker: BreakerOptions,
    /// How many timed-out attempts may be retried.
    pub retry_budget: RetryBudgetOptions,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            service_name: None,
            caller_name: None,
            etcd: EtcdOptions::default(),
            rpc_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_millis(50),
            retry_count: 2,
            attempt_timeout: Duration::from_secs(1),
            breaker: BreakerOptions::default(),
            retry_budget: RetryBudgetOptions::default(),
        }
    }
}

/// The circuit breaker of each instance (Kitex's instance breaker, go-zero's SRE breaker).
///
/// Counted as failures: transport and protocol errors and timed-out attempts. An answer, even
/// an exception, is a success: the instance is alive. The breaker opens when
///
/// - connecting to the instance is refused (or reset, or the host is unreachable), or a
///   connection broke mid-call and connecting again is refused: at once, since a dead
///   process's key stays in etcd until its lease expires;
/// - `consecutive_failures` calls in a row failed, none more than `window` after the previous;
/// - at least `min_samples` calls ended in `window` and `failure_percent` of them failed.
///
/// Open, the instance gets no calls for `cooldown`; then it is half-open: calls go through one
/// at a time, `half_open_probes` successes close it, a failure opens it again. When every
/// instance is open, the balancer still picks among them rather than fail the call.
///
/// Default: enabled, 10 s window, 20 samples, 50 %, 2 in a row, 5 s cooldown, 3 probes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerOptions {
    /// Off: no instance is ever skipped (latency and load still steer the balancer).
    pub enabled: bool,
    /// How far back the failure rate looks, counted in ten buckets. 10 s like Kitex and
    /// go-zero: long enough to hold `min_samples` at moderate traffic.
    pub window: Duration,
    /// Calls in `window` below which the failure rate is not judged: 20, so an occasional
    /// error at low traffic (under 2 calls/s) never opens the breaker through the rate.
    pub min_samples: u32,
    /// Failure rate (percent of calls in `window`) that opens the breaker: 50, Kitex's.
    pub failure_percent: u32,
    /// Failures in a row that open the breaker: 2. One failure may be bad luck, two with no
    /// success between are a pattern. It is what catches a hung or dead instance quickly:
    /// the balancer already keeps most calls away from it, so it never reaches `min_samples`,
    /// but at about one call per second (the balancer's forced pick) it is out within ~2 s.
    /// 0 turns this rule off.
    pub consecutive_failures: u32,
    /// How long an open breaker keeps the instance out before probing it: 5 s, so a healed
    /// instance is back soon while a still-broken one costs one probe per 5 s.
    pub cooldown: Duration,
    /// Successful probes (one at a time) that close a half-open breaker: 3.
    pub half_open_probes: u32,
}

impl Default for BreakerOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            window: Duration::from_secs(10),
            min_samples: 20,
            failure_percent: 50,
            consecutive_failures: 2,
            cooldown: Duration::from_secs(5),
            half_open_probes: 3,
        }
    }
}

/// Bounds the retries of timed-out attempts, so that retries cannot multiply the load on a
/// struggling service (Finagle's `RetryBudget`, Kitex's failure-retry percentage): over the
/// last `window`, retries may reach `percent` of calls plus `floor_per_second` per second.
///
/// Default: 20 % over 10 s, plus 1 per second.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryBudgetOptions {
    /// Retries allowed per 100 calls: 20, so at worst a call costs 1.2 attempts on average.
    pub percent: u32,
    /// Retries allowed per second whatever the traffic: 1, so a client making a few calls per
    /// second can still retry a hung instance's timeouts, at the cost of at most one extra
    /// attempt per second when everything is down.
    pub floor_per_second: u32,
    /// How far back calls and retries are counted: 10 s, like Finagle.
    pub window: Duration,
}

impl Default for RetryBudgetOptions {
    fn default() -> Self {
        Self {
            percent: 20,
            floor_per_second: 1,
            window: Duration::from_secs(10),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_seed() {
        let e = EtcdOptions::default();
        assert_eq!(e.endpoints, ["127.0.0.1:2379"]);
        assert_eq!(e.prefix, "kitex/registry-etcd");
        assert_eq!(e.dial_timeout, Duration::from_secs(5));
        let r = RegisterOptions::default();
        assert_eq!((r.ttl, r.weight), (Duration::from_secs(10), 10));
        let c = ClientOptions::default();
        assert_eq!(c.rpc_timeout, Duration::from_secs(3));
        assert_eq!(c.connect_timeout, Duration::from_millis(50));
        assert_eq!(c.retry_count, 2);
        // What a Kitex easy_note client does not have: attempt timeout a third of the rpc
        // timeout, breaker and retry budget on.
        assert_eq!(c.attempt_timeout, c.rpc_timeout / 3);
        assert!(c.breaker.enabled);
        assert_eq!(c.breaker.window, Duration::from_secs(10));
        assert_eq!((c.breaker.min_samples, c.breaker.failure_percent), (20, 50));
        assert_eq!(c.breaker.consecutive_failures, 2);
        assert_eq!(c.breaker.cooldown, Duration::from_secs(5));
        assert_eq!(c.breaker.half_open_probes, 3);
        assert_eq!(
            (c.retry_budget.percent, c.retry_budget.floor_per_second),
            (20, 1)
        );
        assert_eq!(c.retry_budget.window, Duration::from_secs(10));
    }

    #[test]
    fn debug_hides_the_password() {
        let c = Credentials::new("root", "s3cret");
        let shown = format!("{c:?}");
        assert!(
            shown.contains("root") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    #[test]
    fn service_prefix_ignores_trailing_slash() {
        let mut e = EtcdOptions::default();
        assert_eq!(e.service_prefix("user"), "kitex/registry-etcd/user/");
        e.prefix = "kitex/registry-etcd/".into();
        assert_eq!(e.service_prefix("user"), "kitex/registry-etcd/user/");
    }
}
