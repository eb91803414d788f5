//! Overload: the stack's capacity measured, then three times that offered for 30 s.
//!
//! As in `scripts/bench`, the load gets a CPU of its own: for this fault the gateway and the
//! replicas run on the first CPU and this harness (the load, and the proxy in front of replica
//! b) on the second, so that the load generator does not take the stack's CPU as it grows.
//!
//! - **capacity**: requests a second answered 200 with code 0 by [`CAPACITY_CLIENTS`] clients
//!   sending the mix back to back (closed loop; a refused request sent again after a pause),
//!   over the last seconds of [`CAPACITY_SECS`]: before the overload, which offers a multiple
//!   of it, and again after the recovery; the goodput goal is against the mean of the two.
//! - **unloaded p99**: open loop at a tenth of capacity for [`UNLOADED_SECS`].
//! - **overload**: open loop at [`FACTOR`] × capacity for [`OVERLOAD_SECS`]. Goodput counts
//!   the requests due in that time that were answered 200 with code 0; a refusal (the
//!   gateway's 503 or 429, or a replica's "busy") is not a failure but not goodput either; the
//!   p99 is that of the answered requests. Goodput counts requests whatever they cost, and
//!   the gateway sheds by cost: the report also sets each operation's answers a second
//!   against its rate at capacity.
//! - **memory**: the resident size of the gateway and both replicas, sampled every 500 ms.
//! - **recovery**: open loop at a tenth of capacity again from the moment the overload stops;
//!   from then to the first full second with no failure and p99 ≤ max(2 × unloaded p99,
//!   [`P99_FLOOR`]) after the last failure.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;

use crate::{
    faults::{Outcome, P99_FLOOR, Settings, between, p99, recovery_in},
    load::{self, Failure, Load, Op, Record, SERVICE_BUSY},
    stack::Stack,
};

const CAPACITY_CLIENTS: usize = 8;
const CAPACITY_SECS: f64 = 13.0;
/// The first seconds of the capacity run warm the stack up and are not counted.
const CAPACITY_WARM_UP: f64 = 3.0;
/// Long enough for a p99 of a few hundred requests.
const UNLOADED_SECS: f64 = 15.0;
const FACTOR: f64 = 3.0;
const OVERLOAD_SECS: f64 = 30.0;
const RECOVERY_SECS: f64 = 5.0;
/// Goals.
const MIN_GOODPUT: f64 = 0.8;
const MAX_P99_RATIO: f64 = 3.0;
const RECOVER_WITHIN: f64 = 2.0;
/// Memory is flat when the peak of the last third is within this of the middle third's
/// (allocators keep some pages; a leak grows without bound).
const MEMORY_SLACK: f64 = 1.25;

fn is_refusal(r: &Record) -> bool {
    r.failure.as_ref().is_some_and(Failure::is_refusal)
}

/// The operations of the mix, in the order of [`PerOp`].
const OPS: [Op; 3] = [Op::Get, Op::Login, Op::Register];

/// Requests a second answered 200 with code 0, of each of [`OPS`].
type PerOp = [f64; 3];

fn per_op(records: &[&Record], seconds: f64) -> PerOp {
    OPS.map(|op| {
        let answered = records.iter().filter(|r| r.op == op && r.failure.is_none());
        answered.count() as f64 / seconds
    })
}

/// Requests a second the stack answers 200 with code 0 to [`CAPACITY_CLIENTS`] clients sending
/// the mix back to back, after [`CAPACITY_WARM_UP`].
async fn capacity(target: &load::Target, mix: load::Mix) -> PerOp {
    let closed = load::closed_loop(
        target.clone(),
        CAPACITY_CLIENTS,
        Duration::from_secs_f64(CAPACITY_SECS),
        mix,
        tag("cap"),
    )
    .await;
    let counted = between(&closed, CAPACITY_WARM_UP, CAPACITY_SECS);
    per_op(&counted, CAPACITY_SECS - CAPACITY_WARM_UP)
}

fn answered(records: &[Record]) -> Vec<&Record> {
    records.iter().filter(|r| r.failure.is_none()).collect()
}

pub async fn overload(stack: &mut Stack, settings: Settings) -> anyhow::Result<Outcome> {
    let mut o = Outcome::new("overload");
    let target = stack.target();
    let stack_pids: Vec<u32> = [stack.gateway.pid()]
        .into_iter()
        .chain(stack.replicas.iter().map(|r| r.pid()))
        .flatten()
        .collect();
    let _pinned = Pinned::split(&stack_pids)?;

    let capacity_before_by_op = capacity(&target, settings.mix).await;
    let capacity_before: f64 = capacity_before_by_op.iter().sum();
    anyhow::ensure!(
        capacity_before >= 10.0,
        "capacity measured at {capacity_before:.0}/s"
    );
    let light = (capacity_before / 10.0).round().max(10.0) as u32;

    let unloaded = Load::start(target.clone(), light, settings.mix, tag("idle"));
    tokio::time::sleep(Duration::from_secs_f64(UNLOADED_SECS)).await;
    let unloaded = unloaded.stop().await.records;
    let unloaded_p99 = p99(&answered(&unloaded)).unwrap_or(f64::NAN);
    o.baseline_p99_ms = Some(unloaded_p99 * 1000.0);

    let pids = stack_pids.clone();
    let memory: Arc<Mutex<Vec<(f64, u64)>>> = Arc::default();
    let offered = (capacity_before * FACTOR).round() as u32;
    let flood = Load::start(target.clone(), offered, settings.mix, tag("flood"));
    let sampler = {
        let (memory, t0) = (memory.clone(), flood.t0());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                let rss = pids.iter().filter_map(|pid| rss_bytes(*pid)).sum();
                let at = t0.elapsed().as_secs_f64();
                memory.lock().expect("memory").push((at, rss));
            }
        })
    };
    tokio::time::sleep(Duration::from_secs_f64(OVERLOAD_SECS)).await;
    // Stop sending and, at once, watch the stack come back.
    let flood = tokio::spawn(flood.stop());
    let after = Load::start(target.clone(), light, settings.mix, tag("after"));
    let flood = flood.await?.records;
    sampler.abort();
    tokio::time::sleep(Duration::from_secs_f64(RECOVERY_SECS)).await;
    let after = after.stop().await;
    // Measured again once the stack is back: the mean of the two brackets the overload, so
    // that a neighbour's drift on this shared host does not pass for the stack's goodput.
    let capacity_after_by_op = capacity(&target, settings.mix).await;
    let capacity_after: f64 = capacity_after_by_op.iter().sum();
    let capacity = (capacity_before + capacity_after) / 2.0;

    let during = between(&flood, 0.0, OVERLOAD_SECS);
    let ok: Vec<&Record> = during
        .iter()
        .copied()
        .filter(|r| r.failure.is_none())
        .collect();
    let refused = during.iter().filter(|r| is_refusal(r)).count();
    let busy = during
        .iter()
        .filter(|r| r.failure.as_ref().is_some_and(|f| f.kind == SERVICE_BUSY))
        .count();
    let goodput = ok.len() as f64 / OVERLOAD_SECS;
    let admitted_p99 = p99(&ok).unwrap_or(f64::INFINITY);
    o.sent = flood.len();
    o.failed = flood
        .iter()
        .filter(|r| r.failure.is_some() && !is_refusal(r))
        .count();
    o.fault_p99_ms = Some(admitted_p99 * 1000.0);
    o.add_failures(flood.iter().filter(|r| !is_refusal(r)));
    o.add_failures(after.records.iter());

    o.check(
        format!("goodput ≥ {:.0} % of capacity", MIN_GOODPUT * 100.0),
        goodput >= MIN_GOODPUT * capacity,
        format!(
            "capacity {capacity:.0}/s ({capacity_before:.0} before, {capacity_after:.0} after; \
             {CAPACITY_CLIENTS} clients, closed loop, refusals resent); offered {offered}/s for \
             {OVERLOAD_SECS:.0} s; goodput {goodput:.0}/s \
             ({:.0} %); {} refused by the gateway (503/429), {busy} by the replicas (busy), {} \
             failed otherwise",
            goodput / capacity * 100.0,
            refused - busy,
            o.failed
        ),
    );
    o.check(
        format!("p99 of admitted ≤ {MAX_P99_RATIO:.0} × unloaded"),
        admitted_p99 <= MAX_P99_RATIO * unloaded_p99,
        format!(
            "admitted p99 {:.1} ms, unloaded p99 {:.1} ms (open loop at {light}/s): {:.1} ×",
            admitted_p99 * 1000.0,
            unloaded_p99 * 1000.0,
            admitted_p99 / unloaded_p99
        ),
    );
    let memory = memory.lock().expect("memory").clone();
    let peak = |from: f64, to: f64| {
        memory
            .iter()
            .filter(|(at, _)| *at >= from && *at < to)
            .map(|(_, rss)| *rss)
            .max()
            .unwrap_or(0)
    };
    let third = OVERLOAD_SECS / 3.0;
    let (middle, last) = (peak(third, 2.0 * third), peak(2.0 * third, OVERLOAD_SECS));
    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    o.check(
        "memory flat",
        middle > 0 && last as f64 <= middle as f64 * MEMORY_SLACK,
        format!(
            "gateway and replicas together: peak {:.0} MiB in the middle {third:.0} s, {:.0} MiB \
             in the last {third:.0} s (at start {:.0} MiB)",
            mib(middle),
            mib(last),
            mib(memory.first().map_or(0, |m| m.1))
        ),
    );
    let threshold = (unloaded_p99 * 2.0).max(P99_FLOOR);
    let recovery = recovery_in(&after.records, 0.0, after.last_at, threshold);
    match recovery {
        Some(r) => o.recovery_s = Some(r),
        None => o.recovery_note = format!("not within {RECOVERY_SECS:.0} s"),
    }
    o.check(
        format!("normal answers ≤ {RECOVER_WITHIN:.0} s after the load stops"),
        recovery.is_some_and(|r| r <= RECOVER_WITHIN),
        format!(
            "{light}/s from the moment the overload stopped; normal: no failure and p99 ≤ {:.1} ms",
            threshold * 1000.0
        ),
    );
    let by_op = OPS
        .iter()
        .map(|op| {
            let of: Vec<&Record> = ok.iter().copied().filter(|r| r.op == *op).collect();
            let refused = during
                .iter()
                .filter(|r| r.op == *op && is_refusal(r))
                .count();
            format!(
                "{op:?} p50 {} p99 {} ({} answered, {refused} refused)",
                ms(quantile(&of, 0.5)),
                ms(p99(&of)),
                of.len()
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    o.notes
        .push(format!("admitted during the overload: {by_op}"));
    // Goodput counts requests, whatever they cost: say what each operation kept.
    let during_by_op = per_op(&during, OVERLOAD_SECS);
    let kept = OPS
        .iter()
        .enumerate()
        .map(|(i, op)| {
            let at_capacity = (capacity_before_by_op[i] + capacity_after_by_op[i]) / 2.0;
            format!(
                "{op:?} {at_capacity:.1} → {:.1} ({:.0} %)",
                during_by_op[i],
                during_by_op[i] / at_capacity * 100.0
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    o.notes.push(format!(
        "answers a second by operation, at capacity (mean of the two measures) → during the \
         overload: {kept}"
    ));
    // The gateway's own view: from admission to answer, in its access log.
    let mut inside: Vec<f64> = stack
        .gateway
        .output()
        .lines()
        .filter(|l| l.contains("gateway::access") && l.contains("status=200"))
        .filter_map(|l| {
            l.split("latency_us=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    inside.sort_by(f64::total_cmp);
    if !inside.is_empty() {
        let at =
            |q: f64| inside[((inside.len() as f64 * q) as usize).min(inside.len() - 1)] / 1000.0;
        o.notes.push(format!(
            "inside the gateway (its access log, answers 200, the whole fault): p50 {:.1} ms, p99 {:.1} ms",
            at(0.5),
            at(0.99)
        ));
    }
    let mut late: Vec<f64> = flood.iter().map(|r| r.late).collect();
    late.sort_by(f64::total_cmp);
    if let Some(p) = late.get(late.len() * 99 / 100) {
        o.notes.push(format!(
            "load generator lag during the overload (due time to send): p99 {:.1} ms",
            p * 1000.0
        ));
    }
    Ok(o)
}

fn quantile(records: &[&Record], q: f64) -> Option<f64> {
    let mut l: Vec<f64> = records.iter().map(|r| r.latency).collect();
    l.sort_by(f64::total_cmp);
    l.get(((l.len() as f64 * q) as usize).min(l.len().saturating_sub(1)))
        .copied()
}

fn ms(seconds: Option<f64>) -> String {
    seconds.map_or("—".into(), |s| format!("{:.1} ms", s * 1000.0))
}

fn tag(phase: &str) -> String {
    format!("{phase}{:04x}", fastrand::u16(..))
}

/// A process's resident set size, from `/proc/<pid>/status`.
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The stack's processes on CPU 0 and this one on CPU 1, until dropped; then all of them on
/// the CPUs this process had.
struct Pinned {
    pids: Vec<u32>,
    before: String,
}

impl Pinned {
    fn split(stack: &[u32]) -> anyhow::Result<Pinned> {
        let status = std::fs::read_to_string("/proc/self/status")?;
        let before = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .context("no Cpus_allowed_list in /proc/self/status")?
            .trim()
            .to_string();
        anyhow::ensure!(
            std::thread::available_parallelism().map_or(1, usize::from) >= 2,
            "the overload fault gives the load a CPU of its own: it needs two"
        );
        let me = std::process::id();
        for pid in stack {
            taskset("0", *pid)?;
        }
        taskset("1", me)?;
        let mut pids = stack.to_vec();
        pids.push(me);
        Ok(Pinned { pids, before })
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        for pid in &self.pids {
            // A process gone since (a fault killed it) has nothing to restore.
            let _ = taskset(&self.before, *pid);
        }
    }
}

/// `taskset -a -p -c CPUS PID`: every thread of `pid` on `cpus`.
fn taskset(cpus: &str, pid: u32) -> anyhow::Result<()> {
    let out = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .output()
        .context("run taskset (util-linux)")?;
    anyhow::ensure!(
        out.status.success(),
        "taskset -a -p -c {cpus} {pid}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}
