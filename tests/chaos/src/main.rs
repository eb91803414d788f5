//! `chaos`: the fault suite that `scripts/chaos` runs.
//!
//! # Layout
//!
//! - `stack`: the stack as processes on 127.0.0.1 (etcd or a three-member cluster, two
//!   user-service replicas on one SQLite file, replica b behind a [`test_support::TcpProxy`],
//!   the gateway), killed on drop.
//! - `load`: steady open-loop load through the gateway, every answer checked.
//! - `faults`: each fault under load, and the definitions of what is measured.
//! - `overload`: capacity, then three times that offered; goodput, latency, memory, recovery.
//! - `report`: the markdown table and details, and JSON.
//!
//! Every fault runs even when an earlier one failed or broke the stack (it is healed or
//! started again); the exit status is 1 when any goal is not met, after the whole table.

mod faults;
mod load;
mod overload;
mod report;
mod stack;

use std::{path::PathBuf, process::ExitCode, time::Instant};

use anyhow::Context as _;
use clap::Parser as _;

use crate::{
    faults::{FAULTS, Outcome, Settings},
    load::Mix,
    stack::{Bins, Stack},
};

#[derive(Debug, clap::Parser)]
#[command(
    about = "Faults under steady open-loop load through the gateway; a report of what clients saw"
)]
struct Args {
    /// Run only these faults (repeat, or separate with commas); `--list` names them.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Requests a second, sent on a fixed schedule.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Percent of logins and of registrations, LOGIN/REGISTER; the rest is GET /api/user/:id.
    #[arg(long, default_value = "5/5")]
    mix: String,
    /// Where user-service and gateway are (default: beside this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Where report.md and report.json go.
    #[arg(long, default_value = "target/chaos")]
    out: PathBuf,
    /// One more flag for the gateway (repeat for more), e.g. to raise a rate limit.
    #[arg(long = "gateway-arg", allow_hyphen_values = true)]
    gateway_args: Vec<String>,
    /// Leave the gateway's rate limits and load shedding at their defaults (they are switched
    /// off otherwise: the load comes from one IP and a few accounts, and shares two cores with
    /// the whole stack; shedding stays on for the overload fault).
    #[arg(long)]
    keep_gateway_limits: bool,
    /// The command shown in the report.
    #[arg(long, default_value = "chaos")]
    command: String,
    /// List the faults and exit.
    #[arg(long)]
    list: bool,
}

fn parse_mix(text: &str) -> anyhow::Result<Mix> {
    let (login, register) = text
        .split_once('/')
        .context("--mix is LOGIN/REGISTER in percent, e.g. 5/5")?;
    let mix = Mix {
        login: login.trim().parse()?,
        register: register.trim().parse()?,
    };
    anyhow::ensure!(
        mix.login + mix.register <= 100,
        "--mix adds up to more than 100"
    );
    Ok(mix)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        for (name, action, goal) in FAULTS {
            println!("{name:<18} {action}\n{:<18} goal: {goal}", "");
        }
        return ExitCode::SUCCESS;
    }
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("chaos: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let mix = parse_mix(&args.mix)?;
    for name in &args.only {
        anyhow::ensure!(
            FAULTS.iter().any(|(n, _, _)| n == name),
            "unknown fault `{name}` (--list names them)"
        );
    }
    let selected: Vec<&'static str> = FAULTS
        .iter()
        .map(|(n, _, _)| *n)
        .filter(|n| {
            if args.only.is_empty() {
                !faults::ON_REQUEST.contains(n)
            } else {
                args.only.iter().any(|o| o == n)
            }
        })
        .collect();
    let bins = Bins::locate(args.bin_dir.as_deref())?;
    let mut gateway_args: Vec<String> = if args.keep_gateway_limits {
        Vec::new()
    } else {
        stack::GATEWAY_LIMITS_OFF
            .iter()
            .map(|a| a.to_string())
            .collect()
    };
    if !args.keep_gateway_limits && !selected.contains(&"overload") {
        gateway_args.push(stack::SHEDDING_OFF.to_string());
    }
    gateway_args.extend(args.gateway_args.iter().cloned());
    let flags = stack::Flags {
        gateway: gateway_args,
        replica: if selected.contains(&"overload") {
            stack::OVERLOAD_REPLICA
                .iter()
                .map(|a| a.to_string())
                .collect()
        } else {
            Vec::new()
        },
    };
    let settings = Settings {
        rate: args.rate,
        mix,
    };
    let started = Instant::now();
    let (single, cluster): (Vec<_>, Vec<_>) =
        selected.into_iter().partition(|n| *n != "etcd-member-kill");
    let mut outcomes = Vec::new();
    for (on_cluster, names) in [(false, single), (true, cluster)] {
        if !names.is_empty() {
            run_group(&bins, on_cluster, &names, settings, &flags, &mut outcomes).await;
        }
    }
    let header = report::Header {
        command: args.command.clone(),
        date: utc_now(),
        rate: args.rate,
        mix: format!(
            "GET with a bearer token {}%, login {}%, register {}%",
            mix.get(),
            mix.login,
            mix.register
        ),
        seconds: started.elapsed().as_secs_f64(),
        gateway_args: flags.gateway.join(" "),
        replica_args: flags.replica.join(" "),
    };
    let markdown = report::markdown(&header, &outcomes);
    std::fs::create_dir_all(&args.out).with_context(|| format!("create {}", args.out.display()))?;
    std::fs::write(args.out.join("report.md"), &markdown)?;
    std::fs::write(
        args.out.join("report.json"),
        serde_json::to_string_pretty(&report::json(&header, &outcomes))?,
    )?;
    println!("\n{markdown}");
    println!(
        "written to {}/report.md and report.json",
        args.out.display()
    );
    Ok(outcomes.iter().all(Outcome::goal_met))
}

/// Runs `names` on one stack (the three-member cluster one when `cluster`), each fault in a
/// task of its own: a panic becomes that fault's error and the next fault gets a new stack.
async fn run_group(
    bins: &Bins,
    cluster: bool,
    names: &[&'static str],
    settings: Settings,
    flags: &stack::Flags,
    outcomes: &mut Vec<Outcome>,
) {
    let mut stack: Option<Stack> = None;
    for &name in names {
        let mut current = match stack.take() {
            Some(s) => s,
            None => {
                eprintln!(
                    "==> starting the stack ({})",
                    if cluster {
                        "three-member etcd cluster"
                    } else {
                        "one etcd"
                    }
                );
                let (bins, flags) = (bins.clone(), flags.clone());
                let started =
                    tokio::spawn(async move { Stack::start(&bins, cluster, &flags).await }).await;
                match started {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        outcomes.push(Outcome::harness_error(
                            name,
                            format!("the stack did not start: {e:#}"),
                        ));
                        continue;
                    }
                    Err(e) => {
                        outcomes.push(Outcome::harness_error(
                            name,
                            format!("the stack did not start: {}", panic_text(e)),
                        ));
                        continue;
                    }
                }
            }
        };
        let action = FAULTS
            .iter()
            .find(|(n, _, _)| *n == name)
            .map_or("", |f| f.1);
        eprintln!("==> {name}: {action}");
        let task = tokio::spawn(async move {
            let result = faults::run(name, &mut current, settings).await;
            (current, result)
        });
        let mut survivor = match task.await {
            Ok((s, Ok(outcome))) => {
                outcomes.push(outcome);
                Some(s)
            }
            Ok((s, Err(e))) => {
                outcomes.push(Outcome::harness_error(name, format!("{e:#}")));
                Some(s)
            }
            Err(e) => {
                outcomes.push(Outcome::harness_error(name, panic_text(e)));
                None
            }
        };
        if let Some(o) = outcomes.last() {
            eprintln!(
                "    sent {}, failed {}, goal {}",
                o.sent,
                o.failed,
                if o.goal_met() { "met" } else { "NOT met" }
            );
        }
        // Leave a whole stack to the next fault: heal it, or drop it for a new one.
        if let Some(s) = &mut survivor
            && let Err(broken) = s.check().await
        {
            eprintln!("    the stack needs healing: {broken}");
            if let Err(e) = s.heal().await {
                eprintln!("    healing failed ({e:#}); the next fault gets a new stack");
                survivor = None;
            }
        }
        stack = survivor;
    }
}

fn panic_text(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => {
            let text = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_default();
            format!("the harness panicked: {text}")
        }
        Err(e) => format!("the fault's task ended: {e}"),
    }
}

/// `date -u`, ISO 8601.
fn utc_now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
