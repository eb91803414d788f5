//! How does volo-etcd hold up with many instances of one service? A benchmark command, not a
//! test: it prints figures and asserts nothing about speed.
//!
//! ```sh
//! cargo run --release -p volo-etcd --example scale -- --instances 1000 [--ttl-secs 10] \
//!     [--window-ttls 3] [--json PATH]
//! ```
//!
//! It starts its own etcd on loopback (test-support) and a second process, this example again
//! in its hidden `--watch` mode: a volo-thrift client built as the generated clients are
//! (`EtcdDiscover::shared` + Volo's `WeightedRandomBalance`), whose balancer holds no instance
//! yet. Then it registers N instances at once and measures:
//!
//! - `register_s`: from the start until every `announce` has returned;
//! - `scale_visible_s`: from the same start until the client's balancer holds all N (Volo's
//!   balancer, wrapped only to count what each `rebalance` leaves in it; the watching process
//!   reports it on a pipe);
//! - `cold_visible_s`: once all N are registered, from starting another watching process
//!   until its balancer holds all N (process start, connect, list, parse);
//! - `keepalives_per_ttl`: gRPC messages etcd received per instance per TTL over a window of
//!   `--window-ttls` TTLs once everything is registered: `grpc_server_msg_received_total`,
//!   summed over all methods, read from `/metrics` on etcd's client URL before and after the
//!   window (the per-method split is printed too). HTTP/2 pings are not gRPC messages and are
//!   not counted. A keeper sends a keepalive every TTL/3, so 3 is the design; a tick that
//!   Tokio serves more than 5 ms late moves the keeper's later ticks back by as much
//!   (`MissedTickBehavior::Delay`), so a run starved of CPU shows fewer;
//! - `discoverer_rss_mb`: peak RSS (`VmHWM` of `/proc/PID/status`, MiB) of the watching
//!   process, read at the end, after it has held all N for the whole window.
//!
//! To tell where the registering time goes it also prints the CPU time this process, etcd
//! and the watching process used until all N were registered and visible, the gRPC messages
//! per instance that took, and the machine's load average (other work on the same cores
//! slows everything down).
//!
//! What is real and what is not: every instance registers as a service does, with
//! `volo_etcd::announce` on its own bound `127.0.0.1:0` listener, so each has its own etcd
//! connection, lease, keepalive task and watch on its own key. They share this one process
//! and its Tokio runtime instead of being N processes, and nothing serves on the listeners:
//! the client never sends them a request, since only registration and discovery are measured.
//! On a small machine etcd, the N registrations and the watching process share the CPU.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use test_support::{Etcd, Http};
use tokio::{net::TcpListener, sync::mpsc, task::JoinSet};
use volo::{
    FastStr, Service,
    context::Endpoint,
    discovery::Change,
    loadbalance::{
        LoadBalance,
        error::LoadBalanceError,
        random::{InstancePicker, WeightedRandomBalance},
    },
};
use volo_etcd::{Announced, EtcdDiscover, EtcdOptions, RegisterOptions, ServeOptions, Shutdown};
use volo_thrift::Bytes;

/// The service name every instance registers under.
const SERVICE: &str = "scale";

/// An empty Thrift struct (just its stop byte): a void call's arguments.
const EMPTY_STRUCT: &[u8] = &[0];

/// Bound on the watching process starting and on all N becoming visible.
const DEADLINE: Duration = Duration::from_secs(60);

/// The goals printed beside the figures.
const GOAL_VISIBLE_S: f64 = 1.0;
const GOAL_MESSAGES_PER_TTL: f64 = 3.0;
const GOAL_RSS_MB: f64 = 20.0;

/// Command-line settings.
struct Args {
    /// Instances to register.
    instances: usize,
    /// Lease TTL of every instance, in seconds.
    ttl_secs: u64,
    /// Length of the keepalive window, in TTLs.
    window_ttls: u64,
    /// Where to write the figures as JSON, besides the text on stdout.
    json: Option<PathBuf>,
    /// Hidden: run as the watching process, on the etcd at this endpoint.
    watch: Option<String>,
}

impl Args {
    fn parse() -> Args {
        let mut args = Args {
            instances: 1000,
            ttl_secs: 10,
            window_ttls: 3,
            json: None,
            watch: None,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut text = |name: &str| {
                it.next()
                    .unwrap_or_else(|| usage(&format!("{name} needs a value")))
            };
            let mut number = |name: &str| -> u64 {
                text(name)
                    .parse()
                    .unwrap_or_else(|_| usage(&format!("{name} needs a number")))
            };
            match flag.as_str() {
                "--instances" => args.instances = number("--instances").max(1) as usize,
                // etcd raises TTLs below 2 s, which would skew the per-TTL rate.
                "--ttl-secs" => args.ttl_secs = number("--ttl-secs").max(2),
                "--window-ttls" => args.window_ttls = number("--window-ttls").max(1),
                "--json" => args.json = Some(text("--json").into()),
                "--watch" => args.watch = Some(text("--watch")),
                "-h" | "--help" => usage(""),
                other => usage(&format!("unknown argument {other:?}")),
            }
        }
        args
    }
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("error: {problem}");
    }
    eprintln!(
        "usage: scale [--instances N (1000)] [--ttl-secs S (10)] [--window-ttls K (3)] \
         [--json PATH]"
    );
    std::process::exit(2)
}

/// How the registering side and the watching process reach the same etcd.
fn etcd_options(endpoint: &str) -> EtcdOptions {
    EtcdOptions::with_endpoints([endpoint])
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "volo_etcd=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match &args.watch {
        Some(endpoint) => watch(endpoint, args.instances).await,
        None => measure(&args).await,
    }
}

// ---- The watching process ------------------------------------------------------------------

/// Volo's `WeightedRandomBalance`, unchanged, that also publishes how many instances it
/// holds: `None` until it has cached the service (first `get_picker`), then the size of
/// the list each `rebalance` installed. (`Clone` only because volo-thrift's builder asks for
/// it; the client keeps one balancer, behind an `Arc`.)
#[derive(Clone)]
struct Counted {
    inner: WeightedRandomBalance<FastStr>,
    held: tokio::sync::watch::Sender<Option<usize>>,
}

impl LoadBalance<EtcdDiscover> for Counted {
    type InstanceIter = InstancePicker;

    async fn get_picker<'future>(
        &'future self,
        endpoint: &'future Endpoint,
        discover: &'future EtcdDiscover,
    ) -> Result<InstancePicker, LoadBalanceError> {
        let picker = self.inner.get_picker(endpoint, discover).await?;
        if self.held.borrow().is_none() {
            // Cached now, so this second picker is a cheap copy of the same list.
            let held = self.inner.get_picker(endpoint, discover).await?.count();
            self.held.send_replace(Some(held));
        }
        Ok(picker)
    }

    fn rebalance(&self, changes: Change<FastStr>) {
        let held = changes.all.len();
        LoadBalance::<EtcdDiscover>::rebalance(&self.inner, changes);
        // `rebalance` only replaces a list the balancer has cached.
        self.held.send_if_modified(|h| match h {
            Some(n) if *n != held => {
                *n = held;
                true
            }
            _ => false,
        });
    }
}

/// Hands volo-thrift's generic client out unchanged (generated code wraps it instead).
struct RawClient;

impl<S> volo::client::MkClient<volo_thrift::Client<S>> for RawClient {
    type Target = volo_thrift::Client<S>;

    fn mk_client(&self, client: volo_thrift::Client<S>) -> Self::Target {
        client
    }
}

/// The `--watch` mode: prints `ready` once the client's balancer has cached the (empty)
/// service, `visible` once it holds `instances`, then idles until its stdin closes.
async fn watch(endpoint: &str, instances: usize) {
    // The parent holds our stdin: when it is gone (even SIGKILLed), so are we.
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let discover = EtcdDiscover::shared(&etcd_options(endpoint));
    let (held, mut holding) = tokio::sync::watch::channel(None);
    let balancer = Counted {
        inner: WeightedRandomBalance::with_discover(&discover),
        held,
    };
    let client = volo_thrift::client::ClientBuilder::<_, _, _, Bytes, Bytes, _, _, _>::new(
        SERVICE, RawClient,
    )
    .discover(discover)
    .load_balance(balancer)
    .rpc_timeout(Some(Duration::from_secs(3)))
    .connect_timeout(Some(Duration::from_millis(50)))
    .retry_count(2)
    .build();
    // A client asks its balancer on its first call, and from then on the balancer follows
    // the service. With no instance yet the call fails at once, so ask again until the
    // balancer has it; with instances the call waits on a listener nobody serves, long after
    // the balancer has answered, so do not wait for the call.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let cached = holding.clone();
    let asker = client.clone();
    tokio::spawn(async move {
        while cached.borrow().is_none() {
            let mut cx = asker.make_cx("ping", false);
            let _ = asker.call(&mut cx, Bytes::from_static(EMPTY_STRUCT)).await;
        }
    });
    let loaded = tokio::time::timeout_at(deadline, holding.wait_for(Option::is_some))
        .await
        .is_ok_and(|r| r.is_ok());
    assert!(loaded, "the balancer did not load the service");
    println!("ready");
    let all = tokio::time::timeout_at(deadline, holding.wait_for(|h| *h >= Some(instances)))
        .await
        .is_ok_and(|r| r.is_ok());
    if all {
        println!("visible");
    } else {
        println!("stuck at {:?}", *holding.borrow());
    }
    // Holding `client`, and so its balancer, until killed.
    std::future::pending::<()>().await;
    drop(client);
}

/// The watching process, killed and reaped on drop.
struct Watcher {
    child: Child,
    /// Lines it printed, each with when it arrived (stamped on a thread of its own, so a
    /// busy runtime here does not delay the stamp).
    lines: mpsc::UnboundedReceiver<(Instant, String)>,
}

impl Watcher {
    fn spawn(endpoint: &str, instances: usize) -> Watcher {
        let exe = std::env::current_exe().expect("path of this example");
        let mut child = Command::new(exe)
            .args(["--watch", endpoint, "--instances", &instances.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the watching process");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), line)).is_err() {
                    return;
                }
            }
        });
        Watcher { child, lines }
    }

    /// Waits for its next line, which must be `expected`; when it arrived.
    async fn expect(&mut self, expected: &str) -> Instant {
        let line = tokio::time::timeout(DEADLINE, self.lines.recv()).await;
        match line {
            Ok(Some((at, line))) if line == expected => at,
            Ok(Some((_, line))) => panic!("watching process: {line:?}, expected {expected:?}"),
            Ok(None) => panic!("the watching process exited"),
            Err(_) => panic!("no {expected:?} from the watching process within {DEADLINE:?}"),
        }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// `(VmHWM, VmRSS)` in MiB.
    fn memory_mb(&self) -> (f64, f64) {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).expect("read /proc/PID/status");
        let kb = |field: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no {field} in {path}"))
        };
        (kb("VmHWM:") / 1024.0, kb("VmRSS:") / 1024.0)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- The measuring process -----------------------------------------------------------------

/// Per gRPC method, the sum of etcd's counter `metric` (e.g. `grpc_server_msg_received_total`)
/// from `/metrics` on its client URL.
async fn grpc_counters(etcd: SocketAddr, metric: &str) -> BTreeMap<String, f64> {
    let page = Http::new(etcd).get("/metrics", &[]).await;
    assert!(page.status.is_success(), "etcd /metrics: {}", page.status);
    let mut counts = BTreeMap::new();
    for line in page.text.lines() {
        // grpc_server_msg_received_total{grpc_method="Put",grpc_service="...",...} 1000
        let Some(series) = line.strip_prefix(metric).and_then(|l| l.strip_prefix('{')) else {
            continue;
        };
        let Some((labels, value)) = series.rsplit_once("} ") else {
            continue;
        };
        let method = labels
            .split(',')
            .find_map(|l| l.strip_prefix("grpc_method=\""))
            .map_or("?", |m| m.trim_end_matches('"'));
        *counts.entry(method.to_owned()).or_default() += value.trim().parse().unwrap_or(0.0);
    }
    counts
}

/// CPU time (user + system) process `pid` (or `self`) has used so far, in seconds, from
/// `/proc/PID/stat` (in clock ticks of 1/100 s, Linux's USER_HZ); 0 when it cannot be read.
fn cpu_s(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    ticks(11)
        .zip(ticks(12))
        .map_or(0.0, |(u, s)| (u + s) / 100.0)
}

/// The pid of our etcd, found by its data dir on its command line (test-support does not
/// hand it out).
fn etcd_pid(etcd: &Etcd) -> Option<String> {
    let flag = format!("--data-dir={}", etcd.data_dir().display());
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid = entry.file_name().into_string().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let ours = cmdline.split(|b| *b == 0).any(|arg| arg == flag.as_bytes());
            ours.then_some(pid)
        })
}

/// `after - before` per method, without the methods that did not move.
fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(m, v)| (m.clone(), v - before.get(m).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d > 0.0)
        .collect()
}

/// `Method a, Method b` with each count divided by `per`.
fn split(counts: &BTreeMap<String, f64>, per: f64) -> String {
    let parts: Vec<String> = counts
        .iter()
        .map(|(m, v)| format!("{m} {:.2}", v / per))
        .collect();
    parts.join(", ")
}

/// The `p`-th percentile (nearest rank) of `values`.
fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn goal(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

async fn measure(args: &Args) {
    let n = args.instances;
    let etcd = Etcd::start().await;
    let etcd_addr: SocketAddr = etcd.endpoint().parse().expect("etcd endpoint");
    let ttl = Duration::from_secs(args.ttl_secs);
    let serve = Arc::new(ServeOptions {
        etcd: etcd_options(&etcd.endpoint()),
        register: RegisterOptions {
            ttl,
            ..RegisterOptions::default()
        },
        ..ServeOptions::new(SERVICE)
    });
    eprintln!("etcd at {}; {n} instances, TTL {ttl:?}", etcd.endpoint());

    let mut watcher = Watcher::spawn(&etcd.endpoint(), n);
    watcher.expect("ready").await;
    let (idle_peak, _) = watcher.memory_mb();
    let before_registering = grpc_counters(etcd_addr, "grpc_server_msg_received_total").await;
    let etcd_pid = etcd_pid(&etcd).unwrap_or_default();
    let watcher_pid = watcher.pid();
    let cpu = || [cpu_s("self"), cpu_s(&etcd_pid), cpu_s(&watcher_pid)];
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load_1min = load.split_whitespace().next().unwrap_or("?").to_owned();
    let cpu_before = cpu();

    // All N at once, each as a service registers itself.
    let start = Instant::now();
    let mut registering = JoinSet::new();
    for _ in 0..n {
        let serve = serve.clone();
        registering.spawn(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let announced = volo_etcd::announce(listener, &serve, Shutdown::new())
                .await
                .unwrap_or_else(|e| panic!("announce: {e}"));
            (announced, start.elapsed())
        });
    }
    let mut announced: Vec<Announced> = Vec::with_capacity(n);
    let mut latencies = Vec::with_capacity(n);
    while let Some(joined) = registering.join_next().await {
        let (a, took) = joined.expect("a registration task");
        announced.push(a);
        latencies.push(took.as_secs_f64());
    }
    let register_s = start.elapsed().as_secs_f64();
    // Stamped on arrival: it may precede the last `announce` returning.
    let visible_s = (watcher.expect("visible").await - start).as_secs_f64();
    let cpu_used: Vec<f64> = cpu().iter().zip(cpu_before).map(|(a, b)| a - b).collect();
    let (visible_peak, _) = watcher.memory_mb();

    // A client that starts when all N are registered already.
    let late_start = Instant::now();
    let mut late = Watcher::spawn(&etcd.endpoint(), n);
    late.expect("ready").await;
    let cold_visible_s = (late.expect("visible").await - late_start).as_secs_f64();
    drop(late);

    // The window starts once every keeper has opened its keepalive stream and its own-key
    // watch (plus the client's watch), so it holds nothing but steady-state traffic.
    let started = "grpc_server_started_total";
    let opened = test_support::wait_until(DEADLINE, move || async move {
        let s = grpc_counters(etcd_addr, started).await;
        let count = |m: &str| s.get(m).copied().unwrap_or(0.0) as usize;
        count("LeaseKeepAlive") >= n && count("Watch") > n
    })
    .await;
    assert!(opened, "the keepers did not open their streams");
    let received = "grpc_server_msg_received_total";
    let scrape = move || async move {
        let asked = Instant::now();
        let counts = grpc_counters(etcd_addr, received).await;
        (asked + asked.elapsed() / 2, counts)
    };
    let (t0, first) = scrape().await;
    let registration = delta(&before_registering, &first);
    // A whole number of TTLs is a whole number of keepalive periods (TTL/3): every keeper
    // sends the same number of keepalives in it, whatever its phase.
    tokio::time::sleep(ttl * args.window_ttls as u32).await;
    let (t1, last) = scrape().await;
    let window = delta(&first, &last);
    let ttls = (t1 - t0).as_secs_f64() / ttl.as_secs_f64();
    let per_instance_ttl = n as f64 * ttls;
    let messages_per_ttl = window.values().sum::<f64>() / per_instance_ttl;
    let (peak, rss_now) = watcher.memory_mb();
    drop(watcher);

    println!("volo-etcd at scale: {n} instances, TTL {ttl:?}, one watching client process");
    println!(
        "register_s          {register_s:>8.3} s    (per announce: p50 {:.3} s, p99 {:.3} s)",
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0)
    );
    println!(
        "scale_visible_s     {visible_s:>8.3} s    goal <= {GOAL_VISIBLE_S} s: {}",
        goal(visible_s <= GOAL_VISIBLE_S)
    );
    println!(
        "cold_visible_s      {cold_visible_s:>8.3} s    (a client started with all {n} registered)"
    );
    println!(
        "keepalives_per_ttl  {messages_per_ttl:>8.3}      goal <= {GOAL_MESSAGES_PER_TTL}: {} \
         (gRPC messages per instance per TTL over {ttls:.2} TTLs: {})",
        goal(messages_per_ttl <= GOAL_MESSAGES_PER_TTL),
        split(&window, per_instance_ttl)
    );
    println!(
        "discoverer_rss_mb   {peak:>8.2} MiB  goal <= {GOAL_RSS_MB} MB: {} \
         (peak before registering {idle_peak:.2}, when all visible {visible_peak:.2}, \
         RSS now {rss_now:.2})",
        goal(peak <= GOAL_RSS_MB)
    );
    println!(
        "until all registered and visible ({:.3} s, load average {load_1min}): CPU used by \
         this process {:.2} s, etcd {:.2} s, the watching process {:.2} s",
        register_s.max(visible_s),
        cpu_used[0],
        cpu_used[1],
        cpu_used[2]
    );
    println!(
        "gRPC messages per instance from registering to the window: {}",
        split(&registration, n as f64)
    );

    if let Some(path) = &args.json {
        let figures = serde_json::json!({
            "instances": n,
            "register_s": register_s,
            "scale_visible_s": visible_s,
            "cold_visible_s": cold_visible_s,
            "keepalives_per_ttl": messages_per_ttl,
            "discoverer_rss_mb": peak,
            "ttl_s": args.ttl_secs,
        });
        let text = serde_json::to_string_pretty(&figures).expect("numbers serialize");
        std::fs::write(path, text + "\n")
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
    drop(announced);
}
