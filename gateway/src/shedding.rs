//! Adaptive load shedding, in the manner of go-zero's and Kratos' BBR shedders, bound per route.
//!
//! While its CPUs are saturated, the gateway keeps at most as many requests of each IDL route
//! in flight as the route can carry without queueing (Little's law): the route's throughput
//! (its requests finished in the last second) times its latency without load (its best
//! average latency of a bucket in the last half minute of calm), with headroom, and never
//! fewer than two for a route cheaper than the average request. Requests beyond that are
//! refused at once with 503 and `Retry-After`, so that the admitted ones keep their normal
//! latency instead of every request waiting until it times out. The bound is per route
//! because requests differ in cost: a log-in hashes a password for tens of milliseconds, a
//! `GET` takes well under one, and under one bound counting requests the log-ins would hold
//! the slots that the cheap requests need. A route with too little history yet is bounded by
//! the same law over all routes (their best bucket's throughput, and the latency without load
//! of the requests now coming). The gateway's own paths (`/healthz`, `/metrics`, ...) are
//! never shed: an overloaded gateway must still be seen.
//!
//! The latency without load is remembered through an overload: time spent shedding does not
//! age it, or the queueing that shedding allows would become the new normal, step by step.
//!
//! Shedding starts only when both say so: the CPUs are saturated, and a queue stands (even
//! the fastest request of the last 100 ms took longer than an average one without load,
//! CoDel's test), among all requests or among those of one route measured against that
//! route's own latency without load: on saturated CPUs the costly requests queue, for the
//! CPU, while cheap ones still pass quickly. The CPU gate keeps a slow backend from being
//! mistaken for overload: a hung replica raises latency and requests in flight too, but
//! not CPU, and retries are the answer to it. The queue test keeps a busy host's bursts
//! from being mistaken for it: a burst leaves some requests fast. Once started, it lasts
//! until a second passes without a refusal and, while the CPUs stay saturated, keeps fewer
//! requests in flight than it took to start (two per CPU, not four), so that an overload's
//! queue stays short. The CPUs are those the gateway may run on (its affinity, as `taskset`
//! or a cpuset sets it).

use std::{
    fmt,
    str::FromStr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

/// One bucket of the window.
const BUCKET: Duration = Duration::from_millis(100);
/// The window of throughput: one second.
const BUCKETS: usize = 10;
/// The estimate is trusted once this many past buckets have finished requests.
const MIN_SAMPLED_BUCKETS: usize = 3;
/// Seconds of calm over which the latency without load is the best bucket's.
const CALM_SECONDS: usize = 30;
/// In-flight requests never refused, per CPU the gateway may use, however the estimate
/// moves: to start shedding (a few waiting on each CPU is ordinary jitter on a busy host,
/// not an overload), and while shedding with the CPUs saturated (one running and one
/// waiting on each is not a queue). The gap between them keeps an overload's queue short
/// without mistaking a busy moment for one.
const START_IN_FLIGHT_PER_CPU: usize = 4;
const KEEP_IN_FLIGHT_PER_CPU: usize = 2;
/// A route's bucket shows a standing queue only with this many requests: one slow request is
/// not a queue.
const MIN_ROUTE_SAMPLES: u64 = 2;
/// In-flight requests of a cheap route never refused for the route's own bound: one being
/// answered while the next arrives is not a queue.
const MIN_ROUTE_IN_FLIGHT: usize = 2;
/// Room above the estimate: without it, every refusal would lower the next estimate.
const HEADROOM: f64 = 1.5;
/// After a refusal, shedding stays armed this long even if the CPU dips, so that it does not
/// flap at the threshold.
const COOL_OFF: Duration = Duration::from_secs(1);
/// How often the CPU is sampled, and over how many samples its use is taken: short, since
/// every moment of an overload not yet seen admits a burst that queues.
const CPU_SAMPLE: Duration = Duration::from_millis(25);
const CPU_SAMPLES: usize = 4;

/// `--shed-cpu-threshold`: `90` or `90%` (of all cores), or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuThreshold(Option<u32>);

impl CpuThreshold {
    pub const OFF: Self = Self(None);
}

impl FromStr for CpuThreshold {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(Self::OFF);
        }
        match text.strip_suffix('%').unwrap_or(text).trim().parse::<u32>() {
            Ok(percent @ 1..=100) => Ok(Self(Some(percent))),
            _ => Err(format!(
                "`{text}` is not a CPU threshold: a percent from 1 to 100 (e.g. 90%), or `off`"
            )),
        }
    }
}

impl fmt::Display for CpuThreshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(percent) => write!(f, "{percent}%"),
            None => f.write_str("off"),
        }
    }
}

/// Decides which requests to admit. Cheap to share: clone the `Arc`.
pub struct Shedder {
    /// Shedding starts at this CPU use, in per mille; `None`: never.
    cpu_threshold: Option<u32>,
    cpu: Arc<CpuGauge>,
    in_flight: AtomicUsize,
    state: Mutex<State>,
}

struct State {
    origin: Instant,
    /// The last second, a bucket per [`BUCKET`].
    window: [Bucket; BUCKETS],
    /// The bucket last written, folded into `best` once it is over.
    last_tick: u64,
    /// Seconds without shedding since `origin`: the clock `best` ages by.
    calm_seconds: u64,
    /// The wall-clock second `calm_seconds` was last advanced in.
    last_second: u64,
    /// The latency without load of all requests.
    best: Calm,
    /// Each IDL route's own window and latency without load, at its [`RouteGate`]'s index.
    routes: Vec<RouteStats>,
    /// Until when shedding stays armed after the last refusal.
    armed_until: Option<Instant>,
}

/// The best average latency of a bucket, per second of calm (slot `calm_seconds % N`).
#[derive(Clone, Copy, Default)]
struct Calm([Option<Duration>; CALM_SECONDS]);

impl Calm {
    /// A second of calm has begun: the slot it reuses forgets what it held.
    fn advance(&mut self, calm_seconds: u64) {
        self.0[calm_seconds as usize % CALM_SECONDS] = None;
    }

    fn fold(&mut self, calm_seconds: u64, bucket: &Bucket) {
        if let Some(average) = bucket.average() {
            let slot = &mut self.0[calm_seconds as usize % CALM_SECONDS];
            *slot = Some(slot.map_or(average, |best| best.min(average)));
        }
    }

    /// The latency without load: the best of the last [`CALM_SECONDS`] of calm.
    fn unloaded(&self) -> Option<Duration> {
        self.0.iter().flatten().min().copied()
    }
}

/// One route's share of the window.
#[derive(Clone, Copy, Default)]
struct RouteStats {
    window: [Bucket; BUCKETS],
    best: Calm,
}

/// A route's own place in the shedder: its requests are counted, and bounded, apart from
/// other routes'. Made by [`Shedder::add_route`] when the route is mounted.
pub struct RouteGate {
    /// Index of the route's [`RouteStats`].
    index: usize,
    in_flight: AtomicUsize,
}

#[derive(Clone, Copy, Default)]
struct Bucket {
    /// The bucket's number since `origin`: a slot holding an older one is stale.
    tick: u64,
    finished: u64,
    latency_sum: Duration,
    /// The fastest request finished in it.
    latency_min: Option<Duration>,
}

impl Bucket {
    fn average(&self) -> Option<Duration> {
        (self.finished > 0).then(|| self.latency_sum / self.finished as u32)
    }

    /// Counts a request that took `latency`, in the bucket of `tick` (emptied first if it
    /// held an older one).
    fn record(&mut self, tick: u64, latency: Duration) {
        if self.tick != tick {
            *self = Bucket {
                tick,
                ..Bucket::default()
            };
        }
        self.finished += 1;
        self.latency_sum += latency;
        self.latency_min = Some(self.latency_min.map_or(latency, |min| min.min(latency)));
    }

    /// Whether even the fastest request of this bucket, if it is `tick`'s and has at least
    /// `min_finished`, took longer than `unloaded`.
    fn all_slower(&self, tick: u64, min_finished: u64, unloaded: Option<Duration>) -> bool {
        self.tick == tick
            && self.finished >= min_finished
            && matches!((self.latency_min, unloaded), (Some(fastest), Some(unloaded)) if fastest > unloaded)
    }
}

/// An admitted request; dropping it (when the answer is ready) records its latency.
pub struct Ticket<'a> {
    shedder: &'a Shedder,
    route: &'a RouteGate,
    admitted: Instant,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.shedder
            .finish(self.route, self.admitted, Instant::now());
    }
}

impl Shedder {
    /// A shedder whose CPU gauge the caller sets (tests), or none reads.
    fn with_gauge(threshold: CpuThreshold, cpu: Arc<CpuGauge>) -> Self {
        Self {
            cpu_threshold: threshold.0.map(|percent| percent * 10),
            cpu,
            in_flight: AtomicUsize::new(0),
            state: Mutex::new(State {
                origin: Instant::now(),
                window: [Bucket::default(); BUCKETS],
                last_tick: 0,
                calm_seconds: 0,
                last_second: 0,
                best: Calm::default(),
                routes: Vec::new(),
                armed_until: None,
            }),
        }
    }

    /// Sheds from `threshold` of its CPUs' use on. Starts the thread that samples the CPU.
    pub fn new(threshold: CpuThreshold) -> Arc<Self> {
        let cpu = Arc::new(CpuGauge::default());
        if threshold != CpuThreshold::OFF {
            let gauge = Arc::downgrade(&cpu);
            let spawned = std::thread::Builder::new()
                .name("cpu-gauge".into())
                .spawn(move || sample_cpu(gauge));
            if let Err(e) = spawned {
                tracing::warn!("cannot start the CPU gauge ({e}): load shedding is off");
            }
        }
        Arc::new(Self::with_gauge(threshold, cpu))
    }

    /// A route whose requests are bounded apart: call once per route, as it is mounted.
    pub fn add_route(&self) -> RouteGate {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.routes.push(RouteStats::default());
        RouteGate {
            index: state.routes.len() - 1,
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Admits a request of `route` (the ticket lives until its answer is ready), or refuses
    /// it.
    pub fn admit<'a>(&'a self, route: &'a RouteGate) -> Option<Ticket<'a>> {
        let now = Instant::now();
        let in_flight = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let of_route = route.in_flight.fetch_add(1, Ordering::AcqRel);
        if self.should_refuse(route.index, in_flight, of_route, now) {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            route.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Ticket {
            shedder: self,
            route,
            admitted: now,
        })
    }

    /// Whether to refuse a request of the route at `route` that finds `in_flight` requests in
    /// flight, `of_route` of them its route's.
    fn should_refuse(&self, route: usize, in_flight: usize, of_route: usize, now: Instant) -> bool {
        let Some(threshold) = self.cpu_threshold else {
            return false;
        };
        let cpus = self.cpu.cpus.load(Ordering::Relaxed).max(1) as usize;
        if in_flight < KEEP_IN_FLIGHT_PER_CPU * cpus {
            return false;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.roll(now);
        let armed = state.armed(now);
        let hot = self.cpu.busy_per_mille.load(Ordering::Relaxed) >= threshold;
        let starting = hot && state.queue_standing(now);
        if !armed && !starting {
            return false;
        }
        let floor = if armed && hot {
            KEEP_IN_FLIGHT_PER_CPU
        } else {
            START_IN_FLIGHT_PER_CPU
        } * cpus;
        if in_flight < floor {
            return false;
        }
        let refuse = match state.route_max_in_flight(route, now) {
            Some(max) => of_route >= max,
            None => state.max_in_flight(now).is_some_and(|max| in_flight >= max),
        };
        if refuse {
            state.armed_until = Some(now + COOL_OFF);
        }
        refuse
    }

    fn finish(&self, route: &RouteGate, admitted: Instant, now: Instant) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        route.in_flight.fetch_sub(1, Ordering::AcqRel);
        if self.cpu_threshold.is_none() {
            return;
        }
        let latency = now.saturating_duration_since(admitted);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.roll(now);
        let tick = state.tick(now);
        let slot = slot(tick);
        state.window[slot].record(tick, latency);
        if let Some(stats) = state.routes.get_mut(route.index) {
            stats.window[slot].record(tick, latency);
        }
    }
}

impl State {
    fn tick(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.origin).as_nanos() / BUCKET.as_nanos()) as u64
    }

    fn armed(&self, now: Instant) -> bool {
        self.armed_until.is_some_and(|until| now < until)
    }

    /// Once the bucket last written is over: advances the calm clock (unless shedding is
    /// armed) and folds the bucket's average latency into `best`.
    fn roll(&mut self, now: Instant) {
        let tick = self.tick(now);
        if tick == self.last_tick {
            return;
        }
        let done = self.last_tick;
        self.last_tick = tick;
        let second = tick * BUCKET.as_millis() as u64 / 1000;
        if second != self.last_second {
            if !self.armed(now) {
                let passed = (second - self.last_second).min(CALM_SECONDS as u64);
                for _ in 0..passed {
                    self.calm_seconds += 1;
                    self.best.advance(self.calm_seconds);
                    for route in &mut self.routes {
                        route.best.advance(self.calm_seconds);
                    }
                }
            }
            self.last_second = second;
        }
        let calm = self.calm_seconds;
        let slot = slot(done);
        let bucket = self.window[slot];
        if bucket.tick == done {
            self.best.fold(calm, &bucket);
        }
        for route in &mut self.routes {
            let bucket = route.window[slot];
            if bucket.tick == done {
                route.best.fold(calm, &bucket);
            }
        }
    }

    /// Whether even the fastest request of the last full bucket took longer than an average
    /// one without load: every request waited, a queue stands (CoDel's test). A burst, or a
    /// slow backend beside fast ones, leaves some requests fast. The same test per route
    /// (on [`MIN_ROUTE_SAMPLES`] requests at least): the requests of a costly route, a log-in's
    /// password hash, can all wait for a saturated CPU while the cheap ones of other routes
    /// still pass quickly.
    fn queue_standing(&self, now: Instant) -> bool {
        let last = self.tick(now).wrapping_sub(1);
        self.window[slot(last)].all_slower(last, 1, self.best.unloaded())
            || self.routes.iter().any(|route| {
                route.window[slot(last)].all_slower(last, MIN_ROUTE_SAMPLES, route.best.unloaded())
            })
    }

    /// Requests the gateway can carry at once, all routes together: the most finished in one
    /// past bucket of the window as a rate, times the latency without load of the requests
    /// now coming ([`little_bound`]); `None` until enough buckets have data. (The caller
    /// applies its floor.)
    fn max_in_flight(&self, now: Instant) -> Option<usize> {
        let current = self.tick(now);
        let unloaded = self
            .mix_unloaded(current.wrapping_sub(1))
            .or(self.best.unloaded())?;
        let (_, most) = sample(&self.window, current)?;
        Some(little_bound(most as f64 / BUCKET.as_secs_f64(), unloaded))
    }

    /// Requests of the route at `route` it can carry at once: its mean rate over the window
    /// (of a sparse route, the best of ten buckets is mostly chance: log-ins that average 2 a
    /// bucket have a best of 5) times its own latency without load ([`little_bound`]); at
    /// least [`MIN_ROUTE_IN_FLIGHT`] unless the route costs more than the requests now coming
    /// do on average, since on saturated CPUs a cheap route's latency is mostly the wait for
    /// the costly ones' CPU, not a queue of its own.
    fn route_max_in_flight(&self, route: usize, now: Instant) -> Option<usize> {
        let stats = self.routes.get(route)?;
        let current = self.tick(now);
        let unloaded = stats.best.unloaded()?;
        let (finished, _) = sample(&stats.window, current)?;
        let span = BUCKET * (BUCKETS as u32 - 1);
        let bound = little_bound(finished as f64 / span.as_secs_f64(), unloaded);
        let costly = self
            .mix_unloaded(current.wrapping_sub(1))
            .is_some_and(|mix| unloaded > mix);
        Some(if costly {
            bound.max(1)
        } else {
            bound.max(MIN_ROUTE_IN_FLIGHT)
        })
    }

    /// The latency without load of the requests of bucket `tick`, route by route: each
    /// route's own, weighted by its requests. The best bucket of all requests would be one
    /// of cheap ones alone, and would not carry the costly.
    fn mix_unloaded(&self, tick: u64) -> Option<Duration> {
        let (finished, total) = self
            .routes
            .iter()
            .filter_map(|route| {
                let bucket = &route.window[slot(tick)];
                let unloaded = route.best.unloaded()?;
                (bucket.tick == tick && bucket.finished > 0)
                    .then(|| (bucket.finished, unloaded * bucket.finished as u32))
            })
            .fold((0, Duration::ZERO), |(n, sum), (k, part)| {
                (n + k, sum + part)
            });
        (finished > 0).then(|| total / finished as u32)
    }
}

/// The slot of bucket `tick` in a window.
fn slot(tick: u64) -> usize {
    (tick % BUCKETS as u64) as usize
}

/// The past buckets of a window (the current one, `current`, is still filling): the requests
/// they finished, and the most one of them did; `None` until [`MIN_SAMPLED_BUCKETS`] have data.
fn sample(window: &[Bucket; BUCKETS], current: u64) -> Option<(u64, u64)> {
    let past = window
        .iter()
        .filter(|b| b.finished > 0 && b.tick < current && current - b.tick < BUCKETS as u64);
    let (sampled, finished, most) = past.fold((0, 0, 0), |(n, sum, most), b| {
        (n + 1, sum + b.finished, most.max(b.finished))
    });
    (sampled >= MIN_SAMPLED_BUCKETS).then_some((finished, most))
}

/// Little's law: requests in flight at `per_second` that each take `unloaded`, with headroom.
fn little_bound(per_second: f64, unloaded: Duration) -> usize {
    (per_second * unloaded.as_secs_f64() * HEADROOM).ceil() as usize
}

/// The CPUs the gateway may run on, as [`sample_cpu`] last read them.
#[derive(Debug, Default)]
struct CpuGauge {
    /// Their use over the last [`CPU_SAMPLES`] samples, in per mille (0 where unknown).
    busy_per_mille: AtomicU32,
    /// How many there are (0 where unknown).
    cpus: AtomicU32,
}

/// Keeps `cpu` up to date until the shedder is gone. A thread of its own, so that a swamped
/// runtime does not delay the very reading that would relieve it. Reads `/proc`; elsewhere
/// the gauge stays at 0 and nothing is shed.
fn sample_cpu(cpu: std::sync::Weak<CpuGauge>) {
    let mut samples = std::collections::VecDeque::with_capacity(CPU_SAMPLES + 1);
    loop {
        let Some(gauge) = cpu.upgrade() else { return };
        let Some(now) = read_cpu_times() else {
            tracing::warn!("cannot read /proc/stat and /proc/self/status: load shedding is off");
            return;
        };
        samples.push_back(now);
        if samples.len() > CPU_SAMPLES + 1 {
            samples.pop_front();
        }
        if let (Some(first), Some(last)) = (samples.front(), samples.back()) {
            gauge
                .busy_per_mille
                .store(last.busy_per_mille_since(first), Ordering::Relaxed);
            gauge.cpus.store(last.cpus, Ordering::Relaxed);
        }
        drop(gauge);
        std::thread::sleep(CPU_SAMPLE);
    }
}

/// Cumulative time of some CPUs, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuTimes {
    busy: u64,
    total: u64,
    cpus: u32,
}

impl CpuTimes {
    /// The `cpuN` lines of `/proc/stat` for the CPUs in `allowed`: `cpuN user nice system idle
    /// iowait irq softirq steal …`. Stolen time counts as busy: the CPU was wanted and not had.
    fn parse(stat: &str, allowed: &[u32]) -> Option<Self> {
        let mut sum = Self {
            busy: 0,
            total: 0,
            cpus: 0,
        };
        for line in stat.lines() {
            let Some((name, times)) = line.split_once(' ') else {
                continue;
            };
            let Some(Ok(n)) = name.strip_prefix("cpu").map(str::parse::<u32>) else {
                continue;
            };
            if !allowed.contains(&n) {
                continue;
            }
            let fields: Vec<u64> = times
                .split_whitespace()
                .take(8)
                .map(|f| f.parse().ok())
                .collect::<Option<_>>()?;
            let [user, nice, system, idle, iowait, irq, softirq, steal] = fields[..] else {
                return None;
            };
            let busy = user + nice + system + irq + softirq + steal;
            sum.busy += busy;
            sum.total += busy + idle + iowait;
            sum.cpus += 1;
        }
        (sum.cpus > 0).then_some(sum)
    }

    fn busy_per_mille_since(&self, earlier: &Self) -> u32 {
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0;
        }
        (self.busy.saturating_sub(earlier.busy) * 1000 / total) as u32
    }
}

/// `Cpus_allowed_list` of `/proc/self/status` (`0-3,6`): the CPUs this process may run on,
/// read each time since `taskset` can move a running process.
fn allowed_cpus(status: &str) -> Option<Vec<u32>> {
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
    let mut cpus = Vec::new();
    for part in list.trim().split(',') {
        match part.split_once('-') {
            Some((first, last)) => cpus.extend(first.parse::<u32>().ok()?..=last.parse().ok()?),
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

fn read_cpu_times() -> Option<CpuTimes> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    CpuTimes::parse(&stat, &allowed_cpus(&status)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shedder whose CPUs (`CPUS` of them) are `cpu_per_mille` busy, with one route: the
    /// route of [`refuses`] and [`feed`].
    fn shedder(cpu_per_mille: u32) -> Shedder {
        let s = Shedder::with_gauge(CpuThreshold(Some(90)), gauge(cpu_per_mille));
        s.add_route();
        s
    }

    /// The first route.
    const ONLY: usize = 0;

    /// Whether a request would be refused with `in_flight` requests in flight, all of the
    /// first route: fed as many requests in each bucket, its bound is then the bound of all.
    fn refuses(s: &Shedder, in_flight: usize, now: Instant) -> bool {
        s.should_refuse(ONLY, in_flight, in_flight, now)
    }

    /// `n` requests of the route at `route` that took `latency`, finished at `done`.
    fn finish_at(s: &Shedder, route: usize, n: u64, done: Instant, latency: Duration) {
        let gate = RouteGate {
            index: route,
            in_flight: AtomicUsize::new(0),
        };
        for _ in 0..n {
            s.in_flight.fetch_add(1, Ordering::AcqRel);
            gate.in_flight.fetch_add(1, Ordering::AcqRel);
            s.finish(&gate, done - latency, done);
        }
    }

    const CPUS: u32 = 4;
    const START: usize = START_IN_FLIGHT_PER_CPU * CPUS as usize;
    const KEEP: usize = KEEP_IN_FLIGHT_PER_CPU * CPUS as usize;

    fn gauge(cpu_per_mille: u32) -> Arc<CpuGauge> {
        Arc::new(CpuGauge {
            busy_per_mille: AtomicU32::new(cpu_per_mille),
            cpus: AtomicU32::new(CPUS),
        })
    }

    /// `per_bucket` requests of `latency` finished in each bucket of `seconds` from `start`;
    /// the end.
    fn feed(
        s: &Shedder,
        start: Instant,
        seconds: u32,
        per_bucket: u64,
        latency: Duration,
    ) -> Instant {
        let buckets = seconds * (Duration::from_secs(1).as_millis() / BUCKET.as_millis()) as u32;
        feed_buckets(s, start, buckets, per_bucket, latency)
    }

    fn feed_buckets(
        s: &Shedder,
        start: Instant,
        buckets: u32,
        per_bucket: u64,
        latency: Duration,
    ) -> Instant {
        for k in 0..buckets {
            finish_at(
                s,
                ONLY,
                per_bucket,
                start + BUCKET * k + BUCKET / 2,
                latency,
            );
        }
        start + BUCKET * buckets
    }

    /// One second of the window, each bucket with `per_bucket` requests of `latency`.
    fn fill(s: &Shedder, per_bucket: u64, latency: Duration) -> Instant {
        let origin = s.state.lock().unwrap().origin;
        feed(s, origin, 1, per_bucket, latency)
    }

    /// As [`fill`], then a bucket in which every request took twice as long: a queue stands.
    fn fill_queued(s: &Shedder, per_bucket: u64, latency: Duration) -> Instant {
        let now = fill(s, per_bucket, latency);
        feed_buckets(s, now, 1, per_bucket, latency * 2)
    }

    /// The limit for `at_once` requests in flight without load.
    fn with_headroom(at_once: f64) -> usize {
        (at_once * HEADROOM).ceil() as usize
    }

    fn limit(s: &Shedder, now: Instant) -> Option<usize> {
        let mut state = s.state.lock().unwrap();
        state.roll(now);
        state.max_in_flight(now)
    }

    #[test]
    fn the_limit_is_throughput_times_best_latency_with_headroom() {
        let s = shedder(1000);
        // 100 requests each 100 ms (1,000/s) of 20 ms: 20 at once, and headroom.
        let now = fill_queued(&s, 100, Duration::from_millis(20));
        let most = with_headroom(20.0);
        assert_eq!(limit(&s, now), Some(most));
        assert!(!refuses(&s, most - 1, now));
        assert!(refuses(&s, most, now));
    }

    #[test]
    fn a_busy_moment_without_a_standing_queue_is_not_shed() {
        let s = shedder(1000);
        let now = fill(&s, 100, Duration::from_millis(20));
        assert!(
            !refuses(&s, 1_000, now),
            "the fastest took no longer than usual"
        );
        // One slow request among fast ones: still no standing queue.
        let now = feed_buckets(&s, now, 1, 100, Duration::from_millis(20));
        finish_at(&s, ONLY, 1, now - BUCKET / 2, Duration::from_secs(1));
        assert!(!refuses(&s, 1_000, now));
    }

    /// `n` requests of the route at `route` that took `latency`, finished in the middle of the
    /// bucket that starts at `start`.
    fn finish_route(s: &Shedder, start: Instant, n: u64, route: usize, latency: Duration) {
        finish_at(s, route, n, start + BUCKET / 2, latency);
    }

    /// A shedder on saturated CPUs with two routes: (shedder, cheap route, costly route).
    fn get_and_login() -> (Shedder, usize, usize) {
        let s = Shedder::with_gauge(CpuThreshold(Some(90)), gauge(1000));
        let (get, login) = (s.add_route().index, s.add_route().index);
        (s, get, login)
    }

    /// Cheap requests stay fast, and every log-in of the last bucket waited: a queue stands
    /// on that route. One slow log-in among them is no queue.
    #[test]
    fn a_route_whose_every_request_waited_has_a_standing_queue() {
        let (s, get, login) = get_and_login();
        let (fast, hash) = (Duration::from_millis(1), Duration::from_millis(20));
        let mut now = s.state.lock().unwrap().origin;
        for _ in 0..10 {
            finish_route(&s, now, 50, get, fast);
            finish_route(&s, now, 5, login, hash);
            now += BUCKET;
        }
        assert!(!s.should_refuse(login, 1_000, 500, now), "calm");
        finish_route(&s, now, 50, get, fast);
        finish_route(&s, now, 1, login, hash * 10);
        now += BUCKET;
        assert!(!s.should_refuse(login, 1_000, 500, now), "one slow log-in");
        finish_route(&s, now, 50, get, fast);
        finish_route(&s, now, 5, login, hash * 4);
        now += BUCKET;
        assert!(
            s.should_refuse(login, 1_000, 500, now),
            "every log-in waited"
        );
    }

    /// While shedding, each route is held to its own throughput times its own latency without
    /// load: log-ins at their bound do not take the room of the cheap requests.
    #[test]
    fn each_route_is_bounded_by_its_own_cost() {
        let (s, get, login) = get_and_login();
        let (fast, hash) = (Duration::from_millis(2), Duration::from_millis(30));
        let mut now = s.state.lock().unwrap().origin;
        for _ in 0..10 {
            finish_route(&s, now, 100, get, fast);
            finish_route(&s, now, 10, login, hash);
            now += BUCKET;
        }
        finish_route(&s, now, 100, get, fast);
        finish_route(&s, now, 10, login, hash * 4);
        now += BUCKET;
        // Log-ins: 100/s of 30 ms, 3 at once and headroom. GETs: 1,000/s of 2 ms, 2 at once
        // and headroom. (Each route's rate is its mean over the window.)
        let (logins, gets) = (with_headroom(3.0), with_headroom(2.0));
        let state = s.state.lock().unwrap();
        assert_eq!(state.route_max_in_flight(login, now), Some(logins));
        assert_eq!(state.route_max_in_flight(get, now), Some(gets));
        drop(state);
        let all = START + logins + gets;
        assert!(s.should_refuse(login, all, logins, now));
        assert!(!s.should_refuse(get, all, gets - 1, now));
        assert!(s.should_refuse(get, all, gets, now));
        assert!(!s.should_refuse(login, all, logins - 1, now));
        // A route never refused for its own bound below its floor.
        assert!(!s.should_refuse(get, all, MIN_ROUTE_IN_FLIGHT - 1, now));
    }

    /// A sparse costly route is bounded by its mean rate, not by its luckiest bucket, and
    /// may go down to one in flight; a cheap route keeps two.
    #[test]
    fn a_sparse_costly_route_is_held_to_its_mean() {
        let (s, get, login) = get_and_login();
        let (fast, hash) = (Duration::from_millis(1), Duration::from_millis(25));
        let mut now = s.state.lock().unwrap().origin;
        // Four log-ins every other bucket; in the last, they all waited.
        for k in 0..11u32 {
            finish_route(&s, now, 10, get, fast);
            let logins = if k % 2 == 0 { 4 } else { 0 };
            finish_route(&s, now, logins, login, hash * (1 + k / 10));
            now += BUCKET;
        }
        // Log-ins: 20 in the 9 past buckets of the window, 22/s of 25 ms, 0.8 at once with
        // headroom (their best bucket, 40/s, would allow 2). GETs: 100/s of 1 ms, 0.1 at once.
        let state = s.state.lock().unwrap();
        assert_eq!(state.route_max_in_flight(login, now), Some(1));
        assert_eq!(
            state.route_max_in_flight(get, now),
            Some(MIN_ROUTE_IN_FLIGHT)
        );
        drop(state);
        assert!(s.should_refuse(login, START, 1, now));
        assert!(!s.should_refuse(get, START, MIN_ROUTE_IN_FLIGHT - 1, now));
    }

    /// Light load: cheap requests alone in some buckets, costly ones alone in others. Under
    /// load, the estimate weighs each route's own latency without load by its requests, not
    /// the best bucket's (of cheap requests alone).
    #[test]
    fn the_limit_of_all_weighs_each_route_by_its_own_cost() {
        let (s, get, login) = get_and_login();
        let (fast, hash) = (Duration::from_millis(1), Duration::from_millis(20));
        let mut now = s.state.lock().unwrap().origin;
        for k in 0..10 {
            if k % 2 == 0 {
                finish_route(&s, now, 5, get, fast);
            } else {
                finish_route(&s, now, 1, login, hash);
            }
            now += BUCKET;
        }
        finish_route(&s, now, 100, get, fast);
        finish_route(&s, now, 10, login, hash);
        now += BUCKET;
        // 1,100/s of (100 × 1 ms + 10 × 20 ms) / 110: 3 at once (the best bucket's 1 ms
        // would make it 1.1).
        let limit = limit(&s, now).unwrap();
        let most = with_headroom(3.0);
        assert!((most - 1..=most).contains(&limit), "{limit}, not {most}");
    }

    #[test]
    fn nothing_is_refused_while_the_cpu_has_room() {
        let s = shedder(500);
        let now = fill(&s, 100, Duration::from_millis(20));
        assert!(!refuses(&s, 1_000, now));
    }

    #[test]
    fn a_refusal_keeps_shedding_armed_for_a_while_after_the_cpu_dips() {
        let s = shedder(1000);
        let now = fill_queued(&s, 100, Duration::from_millis(20));
        assert!(refuses(&s, 50, now));
        s.cpu.busy_per_mille.store(0, Ordering::Relaxed);
        let later = now + COOL_OFF / 2;
        assert!(refuses(&s, 50, later));
        // Each refusal re-arms it.
        assert!(!refuses(&s, 50, later + COOL_OFF));
    }

    #[test]
    fn nothing_is_shed_below_the_floor_or_in_a_young_window() {
        let s = shedder(1000);
        assert!(!refuses(&s, 1_000, Instant::now()), "no data yet");
        let now = fill_queued(&s, 1, Duration::from_millis(1));
        assert_eq!(s.state.lock().unwrap().max_in_flight(now), Some(1));
        assert!(!refuses(&s, START - 1, now));
        assert!(refuses(&s, START, now));
        // Once shedding, it keeps fewer in flight.
        assert!(!refuses(&s, KEEP - 1, now));
        assert!(refuses(&s, KEEP, now));
        // The floors follow the CPUs the gateway may use.
        s.cpu.cpus.store(1, Ordering::Relaxed);
        assert!(refuses(&s, KEEP_IN_FLIGHT_PER_CPU, now));
        s.state.lock().unwrap().armed_until = None;
        assert!(!refuses(&s, START_IN_FLIGHT_PER_CPU - 1, now));
        assert!(refuses(&s, START_IN_FLIGHT_PER_CPU, now));
    }

    #[test]
    fn old_buckets_leave_the_window() {
        let s = shedder(1000);
        let now = fill(&s, 100, Duration::from_millis(20));
        assert_eq!(limit(&s, now + BUCKET * 20), None);
    }

    #[test]
    fn the_latency_without_load_outlives_an_overload_but_not_calm() {
        let s = shedder(1000);
        let now = fill(&s, 100, Duration::from_millis(20));
        // A minute of slow answers while shedding: the limit still counts on 20 ms.
        s.state.lock().unwrap().armed_until = Some(now + Duration::from_secs(3600));
        let now = feed(&s, now, 60, 100, Duration::from_millis(200));
        assert_eq!(limit(&s, now), Some(with_headroom(20.0)));
        // The same slowness without shedding becomes the new normal within the calm window.
        s.state.lock().unwrap().armed_until = None;
        let now = feed(
            &s,
            now,
            CALM_SECONDS as u32 + 1,
            100,
            Duration::from_millis(200),
        );
        assert_eq!(limit(&s, now), Some(with_headroom(200.0)));
    }

    #[test]
    fn off_admits_everything() {
        let s = Shedder::with_gauge(CpuThreshold::OFF, gauge(1000));
        assert!(!refuses(&s, usize::MAX, Instant::now()));
    }

    #[test]
    fn thresholds_parse() {
        assert_eq!("90".parse(), Ok(CpuThreshold(Some(90))));
        assert_eq!(" 75% ".parse(), Ok(CpuThreshold(Some(75))));
        assert_eq!("OFF".parse(), Ok(CpuThreshold::OFF));
        for bad in ["0", "101", "ninety", "-5", ""] {
            assert!(bad.parse::<CpuThreshold>().is_err(), "{bad}");
        }
        assert_eq!(CpuThreshold(Some(90)).to_string(), "90%");
    }

    #[test]
    fn cpu_time_counts_only_the_allowed_cpus() {
        let stat = "cpu  200 0 100 1600 100 0 0 0 0 0\n\
                    cpu0 100 0 50 800 50 0 0 0 0 0\n\
                    cpu1 100 0 50 800 50 0 0 0 0 0\n\
                    intr 1 2 3\n";
        let one = CpuTimes::parse(stat, &[1]).unwrap();
        assert_eq!(
            one,
            CpuTimes {
                busy: 150,
                total: 1000,
                cpus: 1
            }
        );
        assert_eq!(CpuTimes::parse(stat, &[0, 1]).unwrap().total, 2000);
        assert_eq!(CpuTimes::parse(stat, &[7]), None);
        let later = CpuTimes::parse("cpu1 170 0 50 870 50 0 0 0 0 0\n", &[1]).unwrap();
        assert_eq!(later.busy_per_mille_since(&one), 500);
        assert_eq!(CpuTimes::parse("cpu1 1 2\n", &[1]), None);
    }

    #[test]
    fn the_allowed_cpus_come_from_proc_self_status() {
        let status = "Name:\tgateway\nCpus_allowed:\t4d\nCpus_allowed_list:\t0,2-3,6\n";
        assert_eq!(allowed_cpus(status), Some(vec![0, 2, 3, 6]));
        assert_eq!(allowed_cpus("Name:\tgateway\n"), None);
        assert_eq!(allowed_cpus("Cpus_allowed_list:\tx\n"), None);
    }
}
