//! What a client knows about each instance: calls in flight, an EWMA of latency, and the
//! circuit breaker. [`HealthLayer`] records it for every attempt (an inner layer: it runs
//! after the balancer chose the instance); [`crate::P2cBalance`] reads it to choose.

use std::{
    collections::HashMap,
    io,
    sync::{
        Arc, Mutex, RwLock, Weak,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use volo::{Layer, Service, context::Context, discovery::Instance, net::Address};
use volo_thrift::{ClientError, context::ClientContext};

use crate::{
    breaker::{Breaker, BreakerState, Outcome},
    options::BreakerOptions,
};

/// Time constant of the latency average: a sample weighs `1 - e^(-gap/TAU)`, where `gap` is
/// the time since the previous one, so the average covers about the last second whatever
/// the call rate (go-zero uses 10 s; 1 s notices a slowdown sooner).
const TAU: Duration = Duration::from_secs(1);

/// A failed call counts as at least this slow, so that an instance that fails fast does not
/// look fast to the balancer.
const FAILURE_LATENCY: Duration = Duration::from_secs(1);

/// Per-instance health shared by a client's balancer and layers. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Health {
    inner: Arc<HealthInner>,
}

#[derive(Debug)]
struct HealthInner {
    breaker: BreakerOptions,
    /// Times in the atomics are milliseconds since this instant.
    epoch: Instant,
    /// Stats of the instances some balancer list holds; they die with the last list.
    instances: RwLock<HashMap<Address, Weak<InstanceStats>>>,
}

/// A snapshot of one instance's health, for logs, metrics and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstanceHealth {
    /// Attempts on it now.
    pub in_flight: u32,
    /// Average latency (a timeout counts as its full duration, a failure as at least 1 s);
    /// `None` before its first answer, and again from its first answer after failures until the
    /// next.
    pub latency: Option<Duration>,
    /// Its breaker.
    pub breaker: BreakerState,
    /// How often its breaker opened.
    pub trips: u64,
}

/// The live stats of one instance.
#[derive(Debug)]
pub(crate) struct InstanceStats {
    epoch: Instant,
    in_flight: AtomicU32,
    /// Average latency in nanoseconds as `f64` bits; NaN before the first answer.
    ewma_ns: AtomicU64,
    /// Milliseconds since `epoch` of the balancer's last pick.
    last_pick_ms: AtomicU64,
    /// Mirror of the breaker for the balancer's lock-free look: 0 closed, else milliseconds
    /// since `epoch` (+1) until which it is open (half-open after that).
    blocked_until_ms: AtomicU64,
    /// Written under this lock; the atomics above are read without it.
    locked: Mutex<Locked>,
    /// `volo_etcd_breaker_*` of this instance, when metrics are recorded.
    metrics: Option<crate::metrics::registry::BreakerMetrics>,
}

#[derive(Debug)]
struct Locked {
    breaker: Breaker,
    /// When the latency average last took a sample.
    last_sample: Option<Instant>,
    /// Whether the last call failed.
    failing: bool,
}

/// Whether the balancer may choose an instance, read without locking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Availability {
    Closed,
    /// Cooldown over: may take a probe (ask [`InstanceStats::try_probe`]).
    HalfOpen,
    Open,
}

impl Health {
    /// Empty health with these breaker settings.
    pub fn new(breaker: BreakerOptions) -> Self {
        Self {
            inner: Arc::new(HealthInner {
                breaker,
                epoch: Instant::now(),
                instances: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// The health of the instance at `address`, while a balancer of this client lists it.
    pub fn instance(&self, address: &Address) -> Option<InstanceHealth> {
        self.stats(address).map(|s| s.snapshot(Instant::now()))
    }

    pub(crate) fn stats(&self, address: &Address) -> Option<Arc<InstanceStats>> {
        let map = self
            .inner
            .instances
            .read()
            .unwrap_or_else(|e| e.into_inner());
        map.get(address).and_then(Weak::upgrade)
    }

    /// The stats of each instance (existing ones kept, new ones created), in order.
    pub(crate) fn track(&self, instances: &[Arc<Instance>]) -> Vec<Arc<InstanceStats>> {
        let mut map = self
            .inner
            .instances
            .write()
            .unwrap_or_else(|e| e.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
        instances
            .iter()
            .map(|i| {
                if let Some(s) = map.get(&i.address).and_then(Weak::upgrade) {
                    return s;
                }
                let mut s = InstanceStats::new(self.inner.breaker.clone(), self.inner.epoch);
                s.metrics = crate::metrics::registry::breaker(&i.address);
                let s = Arc::new(s);
                map.insert(i.address.clone(), Arc::downgrade(&s));
                s
            })
            .collect()
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.inner.epoch.elapsed().as_millis() as u64
    }
}

impl InstanceStats {
    pub(crate) fn new(breaker: BreakerOptions, epoch: Instant) -> Self {
        Self {
            epoch,
            in_flight: AtomicU32::new(0),
            ewma_ns: AtomicU64::new(f64::NAN.to_bits()),
            last_pick_ms: AtomicU64::new(0),
            blocked_until_ms: AtomicU64::new(0),
            locked: Mutex::new(Locked {
                breaker: Breaker::new(breaker, epoch),
                last_sample: None,
                failing: false,
            }),
            metrics: None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Locked> {
        self.locked.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.ms(Instant::now())
    }

    fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Average latency in nanoseconds, `None` while unknown (see [`InstanceHealth::latency`]).
    pub(crate) fn latency_ns(&self) -> Option<f64> {
        let v = f64::from_bits(self.ewma_ns.load(Ordering::Relaxed));
        (!v.is_nan()).then_some(v)
    }

    pub(crate) fn last_pick_ms(&self) -> u64 {
        self.last_pick_ms.load(Ordering::Relaxed)
    }

    pub(crate) fn mark_picked(&self, now_ms: u64) {
        self.last_pick_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Claims a forced pick: true for exactly one caller whose `seen` is still current.
    pub(crate) fn claim_pick(&self, seen: u64, now_ms: u64) -> bool {
        self.last_pick_ms
            .compare_exchange(seen, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    pub(crate) fn availability(&self, now_ms: u64) -> Availability {
        match self.blocked_until_ms.load(Ordering::Relaxed) {
            0 => Availability::Closed,
            until if now_ms < until - 1 => Availability::Open,
            _ => Availability::HalfOpen,
        }
    }

    /// Lets one probe through a half-open breaker.
    pub(crate) fn try_probe(&self, now: Instant) -> bool {
        let mut locked = self.lock();
        let passed = locked.breaker.try_pass(now);
        self.mirror(&locked.breaker);
        passed
    }

    fn mirror(&self, breaker: &Breaker) {
        let blocked = breaker.blocked_until();
        let v = blocked.map_or(0, |until| self.ms(until) + 1);
        self.blocked_until_ms.store(v, Ordering::Relaxed);
        if let Some(metrics) = &self.metrics {
            metrics.show(blocked.is_some(), breaker.trips());
        }
    }

    fn start(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    fn finish(&self, outcome: Outcome, elapsed: Duration, now: Instant) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let sample = match outcome {
            Outcome::Success => elapsed,
            Outcome::Failure | Outcome::Refused => elapsed.max(FAILURE_LATENCY),
        };
        let mut locked = self.lock();
        let sample = sample.as_nanos() as f64;
        let recovered = locked.failing && outcome == Outcome::Success;
        locked.failing = outcome != Outcome::Success;
        let next = match (self.latency_ns(), locked.last_sample) {
            // The first answer after failures: they counted as 1 s each to steer calls away
            // while it failed; averaged out one forced pick a second, they would keep a healed
            // instance starved for seconds more. Nor does this answer set the average: it may
            // be a call sent while the instance hung, as slow as the attempt timeout. Unknown
            // again, the instance competes as a new one until its next answer.
            _ if recovered => f64::NAN,
            (Some(avg), Some(last)) => {
                let gap = now.saturating_duration_since(last).as_secs_f64();
                let w = 1.0 - (-gap / TAU.as_secs_f64()).exp();
                avg + (sample - avg) * w
            }
            _ => sample,
        };
        self.ewma_ns.store(next.to_bits(), Ordering::Relaxed);
        locked.last_sample = Some(now);
        locked.breaker.record(outcome, now);
        self.mirror(&locked.breaker);
    }

    #[cfg(test)]
    pub(crate) fn set_for_test(&self, latency: Option<Duration>, in_flight: u32) {
        let ns = latency.map_or(f64::NAN, |l| l.as_nanos() as f64);
        self.ewma_ns.store(ns.to_bits(), Ordering::Relaxed);
        self.in_flight.store(in_flight, Ordering::Relaxed);
    }

    #[cfg(test)]
    pub(crate) fn refuse_for_test(&self) {
        self.start();
        self.finish(Outcome::Refused, Duration::ZERO, Instant::now());
    }

    pub(crate) fn snapshot(&self, now: Instant) -> InstanceHealth {
        let locked = self.lock();
        InstanceHealth {
            in_flight: self.in_flight(),
            latency: self.latency_ns().map(|ns| Duration::from_nanos(ns as u64)),
            breaker: locked.breaker.state(now),
            trips: locked.breaker.trips(),
        }
    }
}

/// Counts an attempt in flight; records it as a timeout if dropped before it ended (the
/// attempt timeout, `rpc_timeout` or the caller gave up on it).
struct Attempt {
    stats: Arc<InstanceStats>,
    started: Instant,
    done: bool,
}

impl Attempt {
    fn start(stats: Arc<InstanceStats>) -> Self {
        stats.start();
        Self {
            stats,
            started: Instant::now(),
            done: false,
        }
    }

    fn end(mut self, outcome: Outcome) {
        self.done = true;
        let now = Instant::now();
        self.stats
            .finish(outcome, now.saturating_duration_since(self.started), now);
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.done {
            let now = Instant::now();
            self.stats.finish(
                Outcome::Failure,
                now.saturating_duration_since(self.started),
                now,
            );
        }
    }
}

/// How an attempt's result reads for the instance's health. `connected`: the attempt got a
/// connection (volo-thrift records the end of connecting only on success).
pub(crate) fn classify<T>(result: &Result<T, ClientError>, connected: bool) -> Outcome {
    match result {
        Ok(_) | Err(ClientError::Application(_) | ClientError::Biz(_)) => Outcome::Success,
        Err(ClientError::Protocol(_)) => Outcome::Failure,
        Err(ClientError::Transport(e)) => match e.kind() {
            io::ErrorKind::ConnectionRefused => Outcome::Refused,
            // Only while connecting: on a pooled connection these may be a benign close.
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
            | io::ErrorKind::AddrNotAvailable
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
                if !connected =>
            {
                Outcome::Refused
            }
            _ => Outcome::Failure,
        },
    }
}

/// The inner layer (`ClientBuilder::layer_inner`) that records every attempt in [`Health`].
#[derive(Clone, Debug)]
pub struct HealthLayer {
    health: Health,
}

impl HealthLayer {
    pub fn new(health: Health) -> Self {
        Self { health }
    }
}

impl<S> Layer<S> for HealthLayer {
    type Service = HealthService<S>;

    fn layer(self, inner: S) -> Self::Service {
        HealthService {
            inner,
            health: self.health,
        }
    }
}

/// See [`HealthLayer`].
#[derive(Clone, Debug)]
pub struct HealthService<S> {
    inner: S,
    health: Health,
}

impl<Req, S> Service<ClientContext, Req> for HealthService<S>
where
    Req: Send + 'static,
    S: Service<ClientContext, Req> + Send + Sync,
    S::Response: Send,
    S::Error: Into<ClientError>,
{
    type Response = S::Response;
    type Error = ClientError;

    async fn call(&self, cx: &mut ClientContext, req: Req) -> Result<S::Response, ClientError> {
        let stats = cx
            .rpc_info()
            .callee()
            .address()
            .and_then(|a| self.health.stats(&a));
        let Some(stats) = stats else {
            return self.inner.call(cx, req).await.map_err(Into::into);
        };
        // volo-thrift sets the end of connecting only when it got a connection: cleared
        // here, it tells this attempt's connect failures from later ones.
        cx.stats.reset();
        let attempt = Attempt::start(stats);
        let result = self.inner.call(cx, req).await.map_err(Into::into);
        let connected = cx.stats.make_transport_end_at().is_some();
        let mut outcome = classify(&result, connected);
        if connected && lost_connection(&result) {
            // A killed process's pooled connections fail like this before anything is
            // refused: one connect tells a dead process (refused) from a closed connection.
            let within = cx
                .rpc_info()
                .config()
                .connect_timeout()
                .unwrap_or(Duration::from_millis(50));
            if let Some(Address::Ip(address)) = cx.rpc_info().callee().address()
                && refused(address, within).await
            {
                outcome = Outcome::Refused;
            }
        }
        attempt.end(outcome);
        result
    }
}

/// Whether an established connection broke under the call.
fn lost_connection<T>(result: &Result<T, ClientError>) -> bool {
    matches!(result, Err(ClientError::Transport(e)) if matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    ))
}

/// Whether connecting to `address` is refused now.
async fn refused(address: std::net::SocketAddr, within: Duration) -> bool {
    matches!(
        tokio::time::timeout(within, tokio::net::TcpStream::connect(address)).await,
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use volo_thrift::{ApplicationException, ApplicationExceptionKind, TransportException};

    fn transport(kind: io::ErrorKind) -> Result<(), ClientError> {
        Err(ClientError::Transport(TransportException::from(
            io::Error::from(kind),
        )))
    }

    #[test]
    fn classify_outcomes() {
        assert_eq!(classify(&Ok::<_, ClientError>(()), true), Outcome::Success);
        let exception = Err::<(), _>(ClientError::Application(ApplicationException::new(
            ApplicationExceptionKind::INTERNAL_ERROR,
            "boom",
        )));
        assert_eq!(classify(&exception, true), Outcome::Success);
        let refused = transport(io::ErrorKind::ConnectionRefused);
        assert_eq!(classify(&refused, false), Outcome::Refused);
        let reset = transport(io::ErrorKind::ConnectionReset);
        assert_eq!(classify(&reset, false), Outcome::Refused);
        assert_eq!(classify(&reset, true), Outcome::Failure);
        let timeout = transport(io::ErrorKind::TimedOut);
        assert_eq!(classify(&timeout, false), Outcome::Failure);
    }

    #[test]
    fn latency_average_follows_time_and_penalises_failures() {
        let t0 = Instant::now();
        let s = InstanceStats::new(BreakerOptions::default(), t0);
        assert_eq!(s.latency_ns(), None);
        s.start();
        s.finish(Outcome::Success, Duration::from_millis(10), t0);
        assert_eq!(s.latency_ns(), Some(10e6));
        // A sample right after the last one barely moves it...
        s.start();
        s.finish(
            Outcome::Success,
            Duration::from_millis(110),
            t0 + Duration::from_millis(1),
        );
        let v = s.latency_ns().unwrap();
        assert!(v > 10e6 && v < 11e6, "{v}");
        // ...one after a long quiet time replaces it.
        s.start();
        s.finish(
            Outcome::Success,
            Duration::from_millis(2),
            t0 + Duration::from_secs(30),
        );
        let v = s.latency_ns().unwrap();
        assert!((v - 2e6).abs() < 1e3, "{v}");
        // A fast failure counts as 1 s.
        s.start();
        s.finish(
            Outcome::Failure,
            Duration::from_millis(1),
            t0 + Duration::from_secs(60),
        );
        assert!(s.latency_ns().unwrap() > 0.9e9);
        assert_eq!(s.in_flight(), 0);
        // The first answer after it, however slow, makes the average unknown again...
        s.start();
        s.finish(
            Outcome::Success,
            Duration::from_millis(900),
            t0 + Duration::from_millis(60_001),
        );
        assert_eq!(s.latency_ns(), None);
        // ...and the next one starts it afresh, however soon it comes.
        s.start();
        s.finish(
            Outcome::Success,
            Duration::from_millis(3),
            t0 + Duration::from_millis(60_002),
        );
        assert_eq!(s.latency_ns(), Some(3e6));
    }

    #[test]
    fn availability_mirrors_the_breaker() {
        let t0 = Instant::now();
        let s = InstanceStats::new(BreakerOptions::default(), t0);
        assert_eq!(s.availability(0), Availability::Closed);
        s.start();
        s.finish(Outcome::Refused, Duration::ZERO, t0);
        assert_eq!(s.availability(10), Availability::Open);
        assert_eq!(s.availability(5_000), Availability::HalfOpen);
        assert!(s.try_probe(t0 + Duration::from_secs(5)));
        assert!(!s.try_probe(t0 + Duration::from_secs(5)));
        for i in 0..3 {
            s.start();
            s.finish(
                Outcome::Success,
                Duration::ZERO,
                t0 + Duration::from_secs(6 + i),
            );
            s.try_probe(t0 + Duration::from_secs(6 + i));
        }
        assert_eq!(s.availability(9_000), Availability::Closed);
    }
}
