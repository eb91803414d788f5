//! The faults, each under the steady load, and what the load saw.
//!
//! Each load-driven fault runs one [`Session`]: [`BASELINE`] of load before the fault (its
//! p99 is the reference), the fault, then a tail of load until the stack has recovered (at
//! least [`MIN_TAIL`], at most [`MAX_TAIL`]). Definitions used in the report:
//!
//! - **sent / failed**: every request of the session (baseline, fault and tail).
//! - **p99 during fault**: over the requests due between the fault's start and its end (at
//!   least one second).
//! - **recovery**: from the fault's end (for a kill that is not undone: from the kill) to the
//!   start of the first full second of load with no failure and p99 ≤ max(2 × baseline p99,
//!   [`P99_FLOOR`]) that comes after the last failed request; looked for in 100 ms steps.
//!   The baseline counts only requests that ended before the fault began.
//! - **calls to replica b** (hung and proxy faults): Thrift messages the gateway sent towards
//!   b, counted by the proxy in front of it as they are read (also when b is hung or they are
//!   lost or delayed). They have "stopped" from the point of the fault after which no second
//!   sends b more than 5% of the rate before the fault, or [`PROBES_PER_SECOND`] if that is
//!   more (room for a half-open breaker's probes, whatever b's share was); they
//!   "resume" at the first second after the fault with at least half that rate, or a tenth
//!   of the load's rate if less. A tenth is still several times what a half-open breaker's
//!   probes and the balancer's forced picks send, while a latency-aware balancer gives the
//!   slower of two replicas a small share (and which one is slower on a loaded machine is
//!   noise: CI once saw b at 58% of the load before the fault and 13% after it).

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    task::JoinHandle,
};

use crate::{
    load::{Load, Mix, Op, Record, Run},
    stack::{Stack, key_lease, send_signal, streams_served},
};

/// Load before each fault.
pub const BASELINE: f64 = 3.0;
/// Least load after a fault's end.
pub const MIN_TAIL: f64 = 3.0;
/// Most load after a fault's end, when the stack does not recover.
pub const MAX_TAIL: f64 = 10.0;
/// Recovery needs p99 ≤ max(2 × baseline p99, this) seconds.
pub const P99_FLOOR: f64 = 0.020;
/// "Calls stop going to it within" this many seconds.
const STOP_WITHIN: f64 = 2.0;
/// Re-registration goal after etcd returns.
const REREGISTER_WITHIN: f64 = 3.0;

/// Faults run only when named with `--only`: the control run, and the overload, which pins
/// processes to CPUs and needs a quiet machine to mean anything (README, "Overload").
pub const ON_REQUEST: &[&str] = &["control", "overload"];

/// Every fault: name (for `--only`), what is done, the goal.
pub const FAULTS: &[(&str, &str, &str)] = &[
    (
        "control",
        "no fault: the load alone for 10 s (not run unless named with --only)",
        "0 failed",
    ),
    (
        "rolling-restart",
        "rolling restart of both replicas (SIGTERM, start again, wait until registered; a then b)",
        "0 failed",
    ),
    (
        "kill-9",
        "kill -9 of replica a, started again 5 s later",
        "0 failed",
    ),
    (
        "hung-replica",
        "replica b hung: SIGSTOP for 10 s, then SIGCONT",
        "0 failed; calls to it stop within 2 s and resume after",
    ),
    (
        "proxy-drop",
        "proxy in front of replica b loses everything for 10 s (black hole)",
        "0 failed; calls to it stop within 2 s and resume after",
    ),
    (
        "proxy-delay",
        "proxy in front of replica b adds 500 ms per call for 10 s (250 ms each way)",
        "0 failed; calls to it stop within 2 s and resume after",
    ),
    (
        "etcd-stop",
        "etcd killed for 20 s (data kept), then started again",
        "0 failed; both replicas registered again ≤ 3 s after etcd returns",
    ),
    (
        "etcd-wipe",
        "etcd killed, its data dir removed, started again",
        "0 failed; both replicas registered again ≤ 3 s after etcd returns",
    ),
    (
        "gateway-sigterm",
        "gateway sent SIGTERM with 32 logins in flight (then started again)",
        "every in-flight request answered; new connections refused, none reset mid-answer",
    ),
    (
        "overload",
        "capacity measured (closed loop), then 3 × capacity offered for 30 s (open loop); the stack on CPU 0, the load on CPU 1 (not run unless named with --only)",
        "goodput ≥ 80 % of capacity; p99 of admitted ≤ 3 × unloaded; memory flat; normal answers ≤ 2 s after",
    ),
    (
        "etcd-member-kill",
        "three-member etcd cluster: the member the clients use killed (SIGKILL), not restarted",
        "0 failed",
    ),
];

/// What one fault did to the clients.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub name: String,
    pub action: String,
    pub goal: String,
    pub sent: usize,
    pub failed: usize,
    pub baseline_p99_ms: Option<f64>,
    pub fault_p99_ms: Option<f64>,
    /// Seconds to recover; `None` with `recovery_note` when not recovered or not applicable.
    pub recovery_s: Option<f64>,
    pub recovery_note: String,
    /// The parts of the goal, each checked.
    pub checks: Vec<Check>,
    /// Failed requests grouped by kind: count and first examples.
    pub failures: BTreeMap<String, (usize, Vec<String>)>,
    /// Other measurements worth reading.
    pub notes: Vec<String>,
    /// The harness could not run the fault.
    pub error: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Check {
    pub what: String,
    pub ok: bool,
    pub detail: String,
}

impl Outcome {
    pub(crate) fn new(name: &str) -> Outcome {
        let (_, action, goal) = FAULTS
            .iter()
            .find(|(n, _, _)| *n == name)
            .expect("a known fault");
        Outcome {
            name: name.into(),
            action: (*action).into(),
            goal: (*goal).into(),
            ..Outcome::default()
        }
    }

    pub fn harness_error(name: &str, error: String) -> Outcome {
        Outcome {
            error: Some(error),
            recovery_note: "—".into(),
            ..Outcome::new(name)
        }
    }

    pub fn goal_met(&self) -> bool {
        self.error.is_none() && !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }

    pub(crate) fn check(&mut self, what: impl Into<String>, ok: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            what: what.into(),
            ok,
            detail: detail.into(),
        });
    }

    pub(crate) fn add_failures<'a>(&mut self, records: impl IntoIterator<Item = &'a Record>) {
        for r in records {
            if let Some(f) = &r.failure {
                let entry = self.failures.entry(f.kind.clone()).or_default();
                entry.0 += 1;
                if entry.1.len() < 3 {
                    entry.1.push(format!("at {:.1} s: {}", r.at, f.detail));
                }
            }
        }
    }
}

/// Load settings.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub rate: u32,
    pub mix: Mix,
}

/// Runs fault `name` on `stack`.
pub async fn run(name: &str, stack: &mut Stack, settings: Settings) -> anyhow::Result<Outcome> {
    match name {
        "control" => control(stack, settings).await,
        "rolling-restart" => rolling_restart(stack, settings).await,
        "kill-9" => kill_9(stack, settings).await,
        "hung-replica" => hung_replica(stack, settings).await,
        "proxy-drop" => proxy_fault(stack, settings, name).await,
        "proxy-delay" => proxy_fault(stack, settings, name).await,
        "etcd-stop" => etcd_fault(stack, settings, false).await,
        "etcd-wipe" => etcd_fault(stack, settings, true).await,
        "gateway-sigterm" => gateway_sigterm(stack).await,
        "etcd-member-kill" => member_kill(stack, settings).await,
        "overload" => crate::overload::overload(stack, settings).await,
        other => anyhow::bail!("unknown fault {other}"),
    }
}

/// Load and the proxy's message count sampled every 100 ms, on the load's clock.
struct Session {
    load: Load,
    /// What the tail waits for: p99 ≤ max(2 × baseline p99, [`P99_FLOOR`]).
    threshold: f64,
    samples: Arc<Mutex<Vec<(f64, u64)>>>,
    sampler: JoinHandle<()>,
}

/// What a finished session measured, before the fault's own checks.
struct Measured {
    run: Run,
    samples: Vec<(f64, u64)>,
}

impl Session {
    /// Starts the load and runs it for [`BASELINE`].
    async fn begin(stack: &Stack, settings: Settings, name: &str) -> Session {
        let tag = format!("{}{:04x}", &name[..name.len().min(8)], fastrand::u16(..));
        let load = Load::start(stack.target(), settings.rate, settings.mix, tag);
        let samples: Arc<Mutex<Vec<(f64, u64)>>> = Arc::default();
        let sampler = {
            let (samples, proxy, t0) = (samples.clone(), stack.proxy.clone(), load.t0());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                loop {
                    tick.tick().await;
                    let at = t0.elapsed().as_secs_f64();
                    samples
                        .lock()
                        .expect("samples")
                        .push((at, proxy.stats().messages));
                }
            })
        };
        tokio::time::sleep(Duration::from_secs_f64(BASELINE - 0.5)).await;
        // The baseline's p99 over requests that have ended (the final one uses all of them).
        let mut base = None;
        for _ in 0..10 {
            base = load.window(0.5, BASELINE - 0.7);
            if base.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let base_p99 = base.and_then(|w| p99(&w.iter().collect::<Vec<_>>()));
        let threshold = (base_p99.unwrap_or(0.0) * 2.0).max(P99_FLOOR);
        tokio::time::sleep_until(load.t0() + Duration::from_secs_f64(BASELINE)).await;
        Session {
            load,
            threshold,
            samples,
            sampler,
        }
    }

    fn now(&self) -> f64 {
        self.load.now()
    }

    /// Keeps the load on after the fault's end until recovered (and, with `resume`, until
    /// calls to replica b are back at half of `resume`'s rate), within the tail bounds.
    async fn tail(&self, from: f64, resume: Option<f64>, min_tail: f64) {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = self.now();
            if now >= from + MAX_TAIL {
                return;
            }
            if now < from + min_tail {
                continue;
            }
            let recovered = recovery_live(&self.load, from, self.threshold, now);
            let resumed = match resume {
                None => Some(0.0),
                Some(level) => {
                    let samples = self.samples.lock().expect("samples").clone();
                    resumed_at(&samples, from, level)
                }
            };
            if let (Some(r), Some(_)) = (recovered, resumed)
                && now >= from + r + 1.5
            {
                return;
            }
        }
    }

    async fn finish(self) -> Measured {
        let run = self.load.stop().await;
        self.sampler.abort();
        let samples = self.samples.lock().expect("samples").clone();
        Measured { run, samples }
    }
}

/// The p99 of `records`' latencies, in seconds.
pub(crate) fn p99(records: &[&Record]) -> Option<f64> {
    if records.is_empty() {
        return None;
    }
    let mut l: Vec<f64> = records.iter().map(|r| r.latency).collect();
    l.sort_by(f64::total_cmp);
    let index = ((l.len() as f64 * 0.99).ceil() as usize).clamp(1, l.len()) - 1;
    Some(l[index])
}

pub(crate) fn between(records: &[Record], from: f64, to: f64) -> Vec<&Record> {
    records
        .iter()
        .filter(|r| r.at >= from && r.at < to)
        .collect()
}

/// Whether one second of requests shows a recovered stack.
fn healthy(window: &[&Record], threshold: f64) -> bool {
    !window.is_empty()
        && window.iter().all(|r| r.failure.is_none())
        && p99(window).is_some_and(|p| p <= threshold)
}

/// Recovery: seconds from `from` to the start of the first full second (looked for in
/// 100 ms steps) that is healthy and after the last failed request, over `records` (due up
/// to `until`, all ended).
pub(crate) fn recovery_in(
    records: &[Record],
    from: f64,
    until: f64,
    threshold: f64,
) -> Option<f64> {
    let last_failure = records
        .iter()
        .filter(|r| r.at >= from && r.failure.is_some())
        .map(|r| r.at)
        .fold(f64::NEG_INFINITY, f64::max);
    grid(from, until - 1.0)
        .filter(|t| *t > last_failure)
        .find(|t| healthy(&between(records, *t, t + 1.0), threshold))
        .map(|t| t - from)
}

/// `from`, `from + 0.1`, ... up to `last` (inclusive, within rounding).
fn grid(from: f64, last: f64) -> impl Iterator<Item = f64> {
    (0u32..)
        .map(move |k| from + f64::from(k) * 0.1)
        .take_while(move |t| *t <= last + 1e-9)
}

/// The same on a running load, over the requests due from `from` on that have all ended.
fn recovery_live(load: &Load, from: f64, threshold: f64, now: f64) -> Option<f64> {
    let until = grid(from, now)
        .take_while(|t| load.window(from, *t).is_some())
        .last()
        .unwrap_or(from);
    let records = load.window(from, until)?;
    recovery_in(&records, from, until, threshold)
}

/// The message count at time `t` (last sample at or before it).
fn count_at(samples: &[(f64, u64)], t: f64) -> Option<u64> {
    samples
        .iter()
        .take_while(|(at, _)| *at <= t)
        .last()
        .map(|(_, n)| *n)
}

/// Messages a second over `[from, to]`.
fn rate(samples: &[(f64, u64)], from: f64, to: f64) -> Option<f64> {
    let (a, b) = (count_at(samples, from)?, count_at(samples, to)?);
    (to > from).then(|| (b.saturating_sub(a)) as f64 / (to - from))
}

/// Calls a second to b that count as "resumed": half its rate before the fault, but no more
/// than a tenth of the load (see the module's doc).
fn resume_level(before: f64, load_rate: u32) -> f64 {
    (before * 0.5).min(f64::from(load_rate) * 0.1)
}

/// Seconds after `from` of the first second with at least `level` messages a second.
fn resumed_at(samples: &[(f64, u64)], from: f64, level: f64) -> Option<f64> {
    let last = samples.last()?.0;
    grid(from, last - 1.0)
        .find(|t| rate(samples, *t, t + 1.0).is_some_and(|r| r >= level))
        .map(|t| t - from)
}

/// The common part of a load-driven fault's outcome: counts, p99s, recovery, "0 failed".
fn outcome(name: &str, m: &Measured, start: f64, end: f64, recover_from: f64) -> Outcome {
    let mut o = Outcome::new(name);
    let records = &m.run.records;
    o.sent = records.len();
    o.failed = records.iter().filter(|r| r.failure.is_some()).count();
    // Before the fault: requests that ended before it began (one in flight then is hit by it).
    let ended_before = |r: &&Record| r.at + r.latency < start;
    let baseline: Vec<&Record> = between(records, 0.5, start)
        .into_iter()
        .filter(ended_before)
        .collect();
    let base_p99 = p99(&baseline);
    o.baseline_p99_ms = base_p99.map(|p| p * 1000.0);
    let fault_end = end.max(start + 1.0);
    o.fault_p99_ms = p99(&between(records, start, fault_end)).map(|p| p * 1000.0);
    let threshold = (base_p99.unwrap_or(0.0) * 2.0).max(P99_FLOOR);
    match recovery_in(records, recover_from, m.run.last_at, threshold) {
        Some(r) => o.recovery_s = Some(r),
        None => {
            o.recovery_note = format!(
                "not within {:.0} s",
                (m.run.last_at - recover_from).max(0.0)
            )
        }
    }
    o.add_failures(records);
    let base_failed = baseline.iter().filter(|r| r.failure.is_some()).count();
    let by_phase = format!(
        "{} before the fault, {} during it ({:.1} s), {} due after it",
        base_failed,
        between(records, 0.0, end)
            .iter()
            .filter(|r| r.failure.is_some() && !ended_before(r))
            .count(),
        end - start,
        between(records, end, f64::MAX)
            .iter()
            .filter(|r| r.failure.is_some())
            .count(),
    );
    let during = between(records, start, fault_end);
    let by_op = [Op::Get, Op::Login, Op::Register]
        .iter()
        .map(|op| {
            let of: Vec<&Record> = during.iter().copied().filter(|r| r.op == *op).collect();
            format!(
                "{op:?} {} ({} requests)",
                p99(&of).map_or("—".into(), |p| format!("{:.1} ms", p * 1000.0)),
                of.len()
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    o.notes
        .push(format!("p99 during the fault by route: {by_op}"));
    let mut late: Vec<f64> = records.iter().map(|r| r.late).collect();
    late.sort_by(f64::total_cmp);
    if let Some(max) = late.last() {
        let p99_late = late[((late.len() as f64 * 0.99).ceil() as usize).clamp(1, late.len()) - 1];
        o.notes.push(format!(
            "load generator lag (due time to send): p99 {:.1} ms, max {:.1} ms",
            p99_late * 1000.0,
            max * 1000.0
        ));
    }
    o.check(
        "0 failed",
        o.failed == 0,
        format!("{} of {} failed: {by_phase}", o.failed, o.sent),
    );
    o.notes.push(format!(
        "baseline p99 {:.1} ms; recovery threshold p99 ≤ {:.1} ms; fault from {start:.1} s to {end:.1} s of the load, recovery counted from {recover_from:.1} s",
        o.baseline_p99_ms.unwrap_or(f64::NAN),
        threshold * 1000.0
    ));
    o
}

async fn control(stack: &mut Stack, settings: Settings) -> anyhow::Result<Outcome> {
    let session = Session::begin(stack, settings, "control").await;
    let start = session.now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let end = session.now();
    let m = session.finish().await;
    let mut o = outcome("control", &m, start, end, end);
    o.recovery_s = None;
    o.recovery_note = "—".into();
    Ok(o)
}

async fn rolling_restart(stack: &mut Stack, settings: Settings) -> anyhow::Result<Outcome> {
    let session = Session::begin(stack, settings, "rolling").await;
    let start = session.now();
    let mut steps = Vec::new();
    for i in 0..2 {
        let t = session.now();
        stack.replicas[i].terminate().await?;
        let stopped = session.now();
        stack.start_replica(i).await?;
        steps.push(format!(
            "replica {}: stopped in {:.2} s, started and registered in {:.2} s",
            stack.replicas[i].name,
            stopped - t,
            session.now() - stopped
        ));
    }
    let end = session.now();
    session.tail(end, None, MIN_TAIL).await;
    let m = session.finish().await;
    let mut o = outcome("rolling-restart", &m, start, end, end);
    o.notes.extend(steps);
    Ok(o)
}

async fn kill_9(stack: &mut Stack, settings: Settings) -> anyhow::Result<Outcome> {
    let session = Session::begin(stack, settings, "kill9").await;
    let start = session.now();
    stack.replicas[0].kill();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let restart = session.now();
    stack.start_replica(0).await?;
    let end = session.now();
    session.tail(end, None, MIN_TAIL).await;
    let m = session.finish().await;
    let mut o = outcome("kill-9", &m, start, end, end);
    // Failures right after the kill are the interesting ones: split them.
    let early = between(&m.run.records, start, start + 1.0)
        .iter()
        .filter(|r| r.failure.is_some())
        .count();
    o.notes.push(format!(
        "killed at {start:.1} s; failures in the first second after the kill: {early}; started again at {restart:.1} s, registered at {end:.1} s"
    ));
    Ok(o)
}

/// Calls a half-open circuit breaker lets through in a second: its probes, one at a time.
const PROBES_PER_SECOND: f64 = 3.0;

/// The goal's second part for hung and proxy faults, from the proxy's message counts.
fn calls_to_b(o: &mut Outcome, samples: &[(f64, u64)], start: f64, end: f64, load_rate: u32) {
    let before = rate(samples, 1.0, start).unwrap_or(0.0);
    // Calls have stopped from the point after which no second of the fault (100 ms steps)
    // sends b more than `allowed`.
    let allowed = (before * 0.05).max(PROBES_PER_SECOND);
    let stopped_after = match grid(start, end - 1.0)
        .filter(|t| rate(samples, *t, t + 1.0).is_some_and(|r| r > allowed))
        .last()
    {
        None => Some(0.0),
        Some(t) => (t + 1.0 < end - 0.05).then_some(t + 0.1 - start),
    };
    let after_window = rate(samples, start + STOP_WITHIN, end).unwrap_or(f64::NAN);
    let calls_late = count_at(samples, end)
        .zip(count_at(samples, start + STOP_WITHIN))
        .map_or(0, |(b, a)| b.saturating_sub(a));
    o.check(
        format!("calls to b stop within {STOP_WITHIN:.0} s"),
        // Samples are 100 ms apart: +2.0 s is within 2 s.
        stopped_after.is_some_and(|s| s <= STOP_WITHIN + 1e-6),
        format!(
            "before the fault {before:.0} calls/s to b; from +{STOP_WITHIN:.0} s to the fault's end {calls_late} calls ({after_window:.1}/s); {}",
            match stopped_after {
                Some(s) => format!("no second starting from +{s:.1} s on has more than {allowed:.1} calls"),
                None => format!("still more than {allowed:.1} calls in the fault's last second"),
            }
        ),
    );
    let level = resume_level(before, load_rate);
    let resumed = resumed_at(samples, end, level);
    let last = samples.last().map_or(end, |s| s.0);
    let per_second: Vec<String> = (0u32..)
        .map(|k| start - 1.0 + f64::from(k))
        .take_while(|t| t + 1.0 <= last + 1e-9)
        .map(|t| rate(samples, t, t + 1.0).map_or("?".into(), |r| format!("{r:.0}")))
        .collect();
    o.notes.push(format!(
        "calls to b per second, from 1 s before the fault (which lasts {:.1} s): {}",
        end - start,
        per_second.join(" ")
    ));
    let at_end = rate(samples, last - 1.0, last).unwrap_or(f64::NAN);
    o.check(
        "calls to b resume after",
        resumed.is_some(),
        match resumed {
            Some(r) => format!("back to ≥ {level:.0} calls/s {r:.1} s after the fault's end"),
            None => format!(
                "not back to {level:.0} calls/s within {:.1} s after the fault's end ({at_end:.0}/s in the last second)",
                last - end
            ),
        },
    );
}

async fn hung_replica(stack: &mut Stack, settings: Settings) -> anyhow::Result<Outcome> {
    let session = Session::begin(stack, settings, "hung").await;
    let before = session.samples.lock().expect("samples").clone();
    let base_rate = rate(&before, 1.0, session.now()).unwrap_or(0.0);
    let locked_before = stack.replicas[0].output_lines_with("database is locked");
    let start = session.now();
    stack.replicas[1].signal("STOP")?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    stack.replicas[1].signal("CONT")?;
    let end = session.now();
    let level = resume_level(base_rate, settings.rate);
    session.tail(end, Some(level), MIN_TAIL).await;
    let m = session.finish().await;
    let mut o = outcome("hung-replica", &m, start, end, end);
    calls_to_b(&mut o, &m.samples, start, end, settings.rate);
    let locked = stack.replicas[0].output_lines_with("database is locked") - locked_before;
    if locked > 0 {
        o.notes.push(format!(
            "replica a logged \"database is locked\" {locked} times: b was stopped holding the \
             shared SQLite file's write lock, an artifact of this harness's one SQLite file"
        ));
    }
    Ok(o)
}

async fn proxy_fault(stack: &mut Stack, settings: Settings, name: &str) -> anyhow::Result<Outcome> {
    let session = Session::begin(stack, settings, name).await;
    let before = session.samples.lock().expect("samples").clone();
    let base_rate = rate(&before, 1.0, session.now()).unwrap_or(0.0);
    let start = session.now();
    if name == "proxy-drop" {
        stack.proxy.black_hole();
    } else {
        stack.proxy.delay(Duration::from_millis(250));
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    stack.proxy.forward();
    let end = session.now();
    let level = resume_level(base_rate, settings.rate);
    session.tail(end, Some(level), MIN_TAIL).await;
    let m = session.finish().await;
    let mut o = outcome(name, &m, start, end, end);
    calls_to_b(&mut o, &m.samples, start, end, settings.rate);
    Ok(o)
}

async fn etcd_fault(stack: &mut Stack, settings: Settings, wipe: bool) -> anyhow::Result<Outcome> {
    let name = if wipe { "etcd-wipe" } else { "etcd-stop" };
    let endpoints = stack.endpoints();
    let keys: Vec<String> = stack.replicas.iter().map(|r| r.key()).collect();
    let mut leases_before = Vec::new();
    for key in &keys {
        leases_before.push(key_lease(&endpoints, key).await.map(|(l, _)| l));
    }
    let session = Session::begin(stack, settings, name).await;
    let start = session.now();
    if wipe {
        stack.etcd.single().restart_wiped().await;
    } else {
        stack.etcd.single().stop();
        tokio::time::sleep(Duration::from_secs(20)).await;
        stack.etcd.single().restart().await;
    }
    let end = session.now();
    // Registered again: the key is there under a new lease (or, with the old lease, that
    // lease is seen refreshed, i.e. its remaining TTL went up).
    let mut registered_at: Vec<Option<f64>> = vec![None; keys.len()];
    let mut last_ttl: Vec<Option<i64>> = vec![None; keys.len()];
    while session.now() < end + MAX_TAIL && registered_at.iter().any(Option::is_none) {
        for (i, key) in keys.iter().enumerate() {
            if registered_at[i].is_some() {
                continue;
            }
            if let Some((lease, ttl)) = key_lease(&endpoints, key).await {
                let fresh = wipe
                    || Some(lease) != leases_before[i]
                    || last_ttl[i].is_some_and(|prev| ttl > prev);
                if fresh {
                    registered_at[i] = Some(session.now() - end);
                }
                last_ttl[i] = Some(ttl);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    session.tail(end, None, MIN_TAIL).await;
    let m = session.finish().await;
    let mut o = outcome(name, &m, start, end, end);
    let mut still = Vec::new();
    for key in &keys {
        still.push(key_lease(&endpoints, key).await.is_some());
    }
    let names = ["a", "b"];
    let detail = registered_at
        .iter()
        .zip(names)
        .zip(&still)
        .map(|((r, n), s)| {
            format!(
                "{n}: {}, {} at the end of the run",
                r.map_or("not registered again".into(), |r| format!(
                    "registered again {r:.2} s after etcd returned"
                )),
                if *s {
                    "still registered"
                } else {
                    "NOT registered"
                }
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    o.check(
        format!("both replicas registered again ≤ {REREGISTER_WITHIN:.0} s after etcd returns"),
        registered_at
            .iter()
            .all(|r| r.is_some_and(|r| r <= REREGISTER_WITHIN))
            && still.iter().all(|s| *s),
        detail,
    );
    Ok(o)
}

async fn member_kill(stack: &mut Stack, settings: Settings) -> anyhow::Result<Outcome> {
    let endpoints = stack.endpoints();
    let session = Session::begin(stack, settings, "member").await;
    let mut served = Vec::new();
    for endpoint in &endpoints {
        served.push(streams_served(endpoint).await.unwrap_or(0.0));
    }
    // The member serving the most watch and keepalive streams is the one in use; the first
    // endpoint (which the clients try first) when none stands out.
    let victim = served
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
        .map_or(0, |(i, _)| i);
    let start = session.now();
    match &mut stack.etcd {
        crate::stack::Etcds::Cluster(c) => c.kill(victim),
        crate::stack::Etcds::Single(_) => anyhow::bail!("this fault needs the cluster"),
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let end = session.now();
    session.tail(end, None, MIN_TAIL).await;
    let m = session.finish().await;
    let mut o = outcome("etcd-member-kill", &m, start, end, start);
    let mut still = Vec::new();
    for r in &stack.replicas {
        still.push(format!(
            "{} {}",
            r.name,
            if key_lease(&endpoints, &r.key()).await.is_some() {
                "registered"
            } else {
                "NOT registered"
            }
        ));
    }
    o.notes.push(format!(
        "watch + lease-keepalive streams per member before the kill: {served:?}; killed member {victim} ({}); at the end: {}",
        endpoints[victim],
        still.join(", ")
    ));
    Ok(o)
}

/// How one raw HTTP exchange ended.
#[derive(Debug, PartialEq, Eq)]
enum Exchange {
    /// Connection refused: nothing listens.
    Refused,
    /// A whole answer: status and body.
    Answered(u16, String),
    /// Reset (ECONNRESET) before the answer was complete, with what was read so far.
    Reset(usize),
    /// Closed before the answer was complete (or with a body shorter than declared).
    Cut(usize),
    /// No complete answer within the bound.
    Timeout,
    /// Any other I/O error.
    Other(String),
}

impl Exchange {
    fn label(&self) -> String {
        match self {
            Exchange::Refused => "refused (ECONNREFUSED)".into(),
            Exchange::Answered(s, _) => format!("answered in full (HTTP {s})"),
            Exchange::Reset(n) => format!("reset after {n} bytes of the answer"),
            Exchange::Cut(n) => format!("closed after {n} bytes, answer incomplete"),
            Exchange::Timeout => "no complete answer within 15 s".into(),
            Exchange::Other(e) => format!("error: {e}"),
        }
    }
}

/// Sends `request` on a new connection to `addr` and reads the answer to the end, checking
/// it against its `Content-Length`.
async fn exchange(addr: SocketAddr, request: String) -> Exchange {
    let attempt = async {
        match send(addr, &request).await {
            Ok(conn) => answer(conn).await,
            Err(e) => e,
        }
    };
    tokio::time::timeout(EXCHANGE_BOUND, attempt)
        .await
        .unwrap_or(Exchange::Timeout)
}

/// No complete answer within this is an [`Exchange::Timeout`].
const EXCHANGE_BOUND: Duration = Duration::from_secs(15);

/// Connects to `addr` and writes `request`.
async fn send(addr: SocketAddr, request: &str) -> Result<TcpStream, Exchange> {
    let mut conn = match TcpStream::connect(addr).await {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(Exchange::Refused);
        }
        Err(e) => return Err(Exchange::Other(e.to_string())),
    };
    match conn.write_all(request.as_bytes()).await {
        Ok(()) => Ok(conn),
        Err(e) => Err(match e.kind() {
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => {
                Exchange::Reset(0)
            }
            _ => Exchange::Other(e.to_string()),
        }),
    }
}

/// Reads the answer on `conn` to the end.
async fn answer(mut conn: TcpStream) -> Exchange {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Exchange::Reset(raw.len());
            }
            Err(e) => return Exchange::Other(e.to_string()),
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Exchange::Cut(raw.len());
    };
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(0);
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())
            .flatten()
    });
    match length {
        Some(n) if body.len() == n => Exchange::Answered(status, body.to_string()),
        None if status != 0 => Exchange::Answered(status, body.to_string()),
        _ => Exchange::Cut(raw.len()),
    }
}

async fn gateway_sigterm(stack: &mut Stack) -> anyhow::Result<Outcome> {
    const BATCH: usize = 32;
    let mut o = Outcome::new("gateway-sigterm");
    let addr = stack.gateway.addr;
    let pid = stack.gateway.pid().context("the gateway is not running")?;
    let t0 = tokio::time::Instant::now();
    let mut batch = Vec::new();
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::channel(BATCH);
    for i in 0..BATCH {
        let user = stack.users[i % stack.users.len()].clone();
        let body =
            serde_json::json!({"username": user.name, "password": user.password}).to_string();
        let request = format!(
            "POST /api/user/login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let sent = sent_tx.clone();
        batch.push(tokio::spawn(async move {
            let attempt = async {
                let conn = send(addr, &request).await;
                let _ = sent.send(()).await;
                match conn {
                    Ok(conn) => answer(conn).await,
                    Err(e) => e,
                }
            };
            let answer = tokio::time::timeout(EXCHANGE_BOUND, attempt)
                .await
                .unwrap_or(Exchange::Timeout);
            (user, answer, t0.elapsed().as_secs_f64())
        }));
    }
    // Once every login is sent (they then queue for argon2 in the replicas), the signal.
    for _ in 0..BATCH {
        tokio::time::timeout(Duration::from_secs(10), sent_rx.recv())
            .await
            .context("the logins were not all sent within 10 s")?;
    }
    send_signal(pid, "TERM")?;
    let signalled = t0.elapsed().as_secs_f64();
    // New connections while the gateway drains, and after it has exited; the first 100 ms
    // after the signal is left to the gateway to notice it.
    let probe = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut probes = Vec::new();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let exited_at = loop {
        let at = t0.elapsed().as_secs_f64() - signalled;
        probes.push((at, exchange(addr, probe.clone()).await));
        if let Some(status) = stack.gateway.wait_exit(Duration::from_millis(250)).await {
            break Some((t0.elapsed().as_secs_f64() - signalled, status));
        }
        if at > 30.0 {
            break None;
        }
    };
    let at = t0.elapsed().as_secs_f64() - signalled;
    probes.push((at, exchange(addr, probe.clone()).await));
    let mut latencies = Vec::new();
    for task in batch {
        let (user, answer, done) = task.await?;
        latencies.push(done);
        let ok = match &answer {
            Exchange::Answered(200, body) => {
                let json: serde_json::Value =
                    serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
                json["code"].as_i64() == Some(0)
                    && json["data"]["user_id"].as_i64() == Some(user.id)
            }
            _ => false,
        };
        if !ok {
            let kind = match &answer {
                Exchange::Answered(s, body) => {
                    format!("HTTP {s}: {}", body.chars().take(120).collect::<String>())
                }
                other => other.label(),
            };
            let entry = o.failures.entry(kind).or_default();
            entry.0 += 1;
            if entry.1.len() < 3 {
                entry
                    .1
                    .push(format!("login {} ended at {done:.2} s", user.name));
            }
        }
    }
    o.sent = BATCH;
    o.failed = o.failures.values().map(|(n, _)| n).sum();
    latencies.sort_by(f64::total_cmp);
    o.fault_p99_ms = latencies.last().map(|l| l * 1000.0);
    o.check(
        "every in-flight request answered",
        o.failed == 0,
        format!(
            "{} of {BATCH} logins sent before SIGTERM (at {signalled:.3} s) answered 200 with code 0; the last at {:.2} s",
            BATCH - o.failed,
            latencies.last().unwrap_or(&0.0)
        ),
    );
    let probe_summary = probes
        .iter()
        .map(|(at, e)| format!("+{at:.2} s: {}", e.label()))
        .collect::<Vec<_>>()
        .join("; ");
    let all_refused = probes.iter().all(|(_, e)| *e == Exchange::Refused);
    let none_cut = probes
        .iter()
        .all(|(_, e)| matches!(e, Exchange::Refused | Exchange::Answered(..)));
    o.check(
        "new connections refused",
        all_refused,
        format!("new connections after SIGTERM: {probe_summary}"),
    );
    o.check(
        "no new connection reset or cut mid-answer",
        none_cut,
        "see the line above",
    );
    match exited_at {
        Some((at, status)) => {
            o.recovery_note = format!("exited {at:.1} s after SIGTERM");
            o.notes.push(format!(
                "the gateway exited with {status} {at:.2} s after SIGTERM"
            ));
        }
        None => {
            o.recovery_note = "did not exit in 30 s".into();
            o.notes
                .push("the gateway did not exit within 30 s of SIGTERM".into());
        }
    }
    // Start it again for what follows.
    stack.gateway.forget();
    let t = tokio::time::Instant::now();
    stack.start_gateway().await?;
    o.notes.push(format!(
        "started again and answering /healthz in {:.2} s",
        t.elapsed().as_secs_f64()
    ));
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Failure;

    /// 100 requests a second from 0 to `secs`; `fail(at)` and `slow(at)` shape them.
    fn records(secs: f64, fail: impl Fn(f64) -> bool, slow: impl Fn(f64) -> bool) -> Vec<Record> {
        (0..(secs * 100.0) as u32)
            .map(|i| {
                let at = f64::from(i) / 100.0;
                Record {
                    at,
                    latency: if slow(at) { 1.0 } else { 0.01 },
                    op: Op::Get,
                    failure: fail(at).then(|| Failure {
                        kind: "x".into(),
                        detail: "y".into(),
                    }),
                    late: 0.0,
                }
            })
            .collect()
    }

    #[test]
    fn p99_is_the_99th_percentile() {
        let r = records(1.0, |_| false, |at| at >= 0.99);
        assert_eq!(p99(&r.iter().collect::<Vec<_>>()), Some(0.01));
        let r = records(1.0, |_| false, |at| at >= 0.98);
        assert_eq!(p99(&r.iter().collect::<Vec<_>>()), Some(1.0));
        assert_eq!(p99(&[]), None);
    }

    #[test]
    fn recovery_starts_after_the_last_failure() {
        // Healthy right after the fault's end at 5 s, then failures from 6 to 7 s.
        let r = records(12.0, |at| (6.0..7.0).contains(&at), |_| false);
        let got = recovery_in(&r, 5.0, 11.99, 0.02).unwrap();
        assert!((got - 2.0).abs() < 1e-6, "{got}");
        // Slow (over the threshold) until 8 s, no failure.
        let r = records(12.0, |_| false, |at| at < 8.0);
        let got = recovery_in(&r, 5.0, 11.99, 0.02).unwrap();
        assert!((got - 3.0).abs() < 1e-6, "{got}");
        // Never healthy.
        let r = records(12.0, |at| at > 4.0, |_| false);
        assert_eq!(recovery_in(&r, 5.0, 11.99, 0.02), None);
    }

    /// A sample every 100 ms: `per_tick(t)` messages in the tick ending at `t`.
    fn samples(secs: f64, per_tick: impl Fn(f64) -> u64) -> Vec<(f64, u64)> {
        let mut n = 0;
        (0..=(secs * 10.0) as u32)
            .map(|k| {
                let t = f64::from(k) / 10.0;
                n += per_tick(t);
                (t, n)
            })
            .collect()
    }

    #[test]
    fn calls_stop_and_resume() {
        // 10 a tick (100/s) before 3 s, through 4.5 s, none until 13 s, then back.
        let s = samples(20.0, |t| if t > 4.5 && t <= 13.0 { 0 } else { 10 });
        let mut o = Outcome::new("hung-replica");
        calls_to_b(&mut o, &s, 3.0, 13.0, 200);
        assert!(o.checks.iter().all(|c| c.ok), "{:?}", o.checks);
        assert!(
            o.notes[0].ends_with("10.0 s): 100 100 50 0 0 0 0 0 0 0 0 100 100 100 100 100 100 100"),
            "{:?}",
            o.notes
        );
        // Never stops.
        let s = samples(20.0, |_| 10);
        let mut o = Outcome::new("hung-replica");
        calls_to_b(&mut o, &s, 3.0, 13.0, 200);
        assert!(!o.checks[0].ok, "{:?}", o.checks);
        // Stops at 6 s: more than 2 s.
        let s = samples(20.0, |t| if t > 6.0 && t <= 13.0 { 0 } else { 10 });
        let mut o = Outcome::new("hung-replica");
        calls_to_b(&mut o, &s, 3.0, 13.0, 200);
        assert!(!o.checks[0].ok, "{:?}", o.checks);
        assert!(o.checks[1].ok, "{:?}", o.checks);
    }
}
