//! The report: a markdown table with details below it, and the same as JSON.

use std::fmt::Write as _;

use serde_json::json;

use crate::faults::Outcome;

/// What the run was, for the report's header.
pub struct Header {
    pub command: String,
    pub date: String,
    pub rate: u32,
    pub mix: String,
    pub seconds: f64,
    /// Flags given to the gateway beyond address, etcd and secret.
    pub gateway_args: String,
    /// Flags given to the replicas beyond address, etcd and database.
    pub replica_args: String,
}

fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0} ms"),
        Some(v) => format!("{v:.1} ms"),
        None => "—".into(),
    }
}

fn recovery(o: &Outcome) -> String {
    match o.recovery_s {
        Some(r) => format!("{r:.1} s"),
        None => o.recovery_note.clone(),
    }
}

/// The table alone.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut out = String::from(
        "| fault | sent | failed | p99 during fault | recovery | goal met |\n|---|--:|--:|--:|---|---|\n",
    );
    for o in outcomes {
        let met = if o.goal_met() { "yes" } else { "**no**" };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {met} |",
            o.name,
            o.sent,
            o.failed,
            ms(o.fault_p99_ms),
            recovery(o)
        );
    }
    out
}

pub fn markdown(header: &Header, outcomes: &[Outcome]) -> String {
    let mut out = String::from("# Chaos report\n\n");
    let _ = writeln!(
        out,
        "`{}` on {}: {} requests/s open loop through the gateway ({}), two user-service \
         replicas on one SQLite file (replica b behind a TCP proxy in the harness), {} \
         builds; {:.0} s in all. Gateway flags: `{}`.{}\n",
        header.command,
        header.date,
        header.rate,
        header.mix,
        // The harness is built with the stack, in the same profile.
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        header.seconds,
        if header.gateway_args.is_empty() {
            "(defaults)"
        } else {
            &header.gateway_args
        },
        if header.replica_args.is_empty() {
            String::new()
        } else {
            format!(" Replica flags: `{}`.", header.replica_args)
        }
    );
    out.push_str(&table(outcomes));
    out.push_str(
        "\nsent/failed: every request of the fault's run (3 s before, the fault, the tail \
         after). A failure is anything but HTTP 200 with code 0 and the expected data, \
         including transport errors and no answer within 10 s. p99 counts from each \
         request's due time. Recovery: from the fault's end (etcd-member-kill: from the kill) \
         to the first full second with no failure and p99 ≤ max(2 × the p99 before the \
         fault, 20 ms) that comes after the last failed request. Calls to replica b: Thrift \
         messages the gateway sent towards b, counted by the proxy in front of it; stopped = \
         from the point after which no second has more than 5% of the rate before the fault \
         or 3 calls, if more (a half-open breaker's probes), resumed = a second with at least half that rate (or a tenth of the load's rate, \
         if less).\n\n## Details\n",
    );
    for o in outcomes {
        let _ = writeln!(out, "\n### {}: {}\n", o.name, o.action);
        let _ = writeln!(
            out,
            "Goal: {} — **{}**\n",
            o.goal,
            if o.goal_met() { "met" } else { "not met" }
        );
        if let Some(e) = &o.error {
            let _ = writeln!(out, "- harness error: {e}");
        }
        for c in &o.checks {
            let _ = writeln!(
                out,
                "- [{}] {}: {}",
                if c.ok { "x" } else { " " },
                c.what,
                c.detail
            );
        }
        for (kind, (count, examples)) in &o.failures {
            let _ = writeln!(out, "- failed ×{count}: {kind}");
            for e in examples {
                let _ = writeln!(out, "  - {e}");
            }
        }
        for n in &o.notes {
            let _ = writeln!(out, "- {n}");
        }
    }
    out
}

pub fn json(header: &Header, outcomes: &[Outcome]) -> serde_json::Value {
    json!({
        "command": header.command,
        "date": header.date,
        "rate": header.rate,
        "mix": header.mix,
        "seconds": header.seconds,
        "gateway_args": header.gateway_args,
        "replica_args": header.replica_args,
        "all_goals_met": outcomes.iter().all(Outcome::goal_met),
        "faults": outcomes.iter().map(|o| json!({
            "name": o.name,
            "action": o.action,
            "goal": o.goal,
            "goal_met": o.goal_met(),
            "sent": o.sent,
            "failed": o.failed,
            "baseline_p99_ms": o.baseline_p99_ms,
            "fault_p99_ms": o.fault_p99_ms,
            "recovery_s": o.recovery_s,
            "recovery_note": o.recovery_note,
            "checks": o.checks.iter().map(|c| json!({
                "what": c.what, "ok": c.ok, "detail": c.detail,
            })).collect::<Vec<_>>(),
            "failures": o.failures.iter().map(|(kind, (count, examples))| json!({
                "kind": kind, "count": count, "examples": examples,
            })).collect::<Vec<_>>(),
            "notes": o.notes,
            "error": o.error,
        })).collect::<Vec<_>>(),
    })
}
