//! How fast does a change in etcd reach a Volo client's traffic? A benchmark command, not a
//! test: it prints figures and asserts nothing about speed.
//!
//! ```sh
//! cargo run --release -p volo-etcd --example propagation -- --rounds 200 [--json PATH]
//! ```
//!
//! It starts its own etcd on loopback (test-support), a baseline volo-thrift server that
//! stays registered, and a volo-thrift client built on [`EtcdDiscover`] that keeps
//! `--concurrency` requests in flight. Each round then measures:
//!
//! - (a) **register → first request**: from calling `register` (lease grant + put) for a new,
//!   already serving instance to the first request that instance serves;
//! - (b) **deregister → last request**: from calling `Registration::deregister` (delete +
//!   revoke) to the last request the instance serves (negative: none arrived after it);
//! - (c) **put → watch event**: etcd's own propagation, from a put to its event on a plain
//!   etcd-client watch.
//!
//! Beside (a) and (b) it shows what volo-etcd and Volo add on top of etcd: from the moment a
//! plain etcd-client watch on the service's prefix sees the registering put (the deleting
//! delete) to the first (last) request served.
//!
//! The servers answer every call with an empty Thrift result (no IDL needed: volo-thrift
//! passes raw `Bytes` messages through).
//!
//! `--json PATH` also writes (a), (b) and (c) for scripts, in milliseconds:
//! `{"rounds", "register_first_request_ms": {"p50", "p99", "max"},
//! "deregister_last_request_ms": {..}, "etcd_watch_ms": {..}}`.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use etcd_client::{Client as EtcdClient, EventType, WatchOptions};
use test_support::Etcd;
use tokio::{net::TcpListener, sync::mpsc};
use volo::{Service, loadbalance::random::WeightedRandomBalance};
use volo_etcd::{
    EtcdDiscover, EtcdOptions, RegisterOptions, Registration, Shutdown, ShutdownIncoming,
};
use volo_thrift::{Bytes, ServerError, context::ServerContext, server::Server};

/// The service name every instance registers under.
const SERVICE: &str = "bench";

/// An empty Thrift struct (just its stop byte): a void call's arguments and result.
const EMPTY_STRUCT: &[u8] = &[0];

/// Command-line settings.
struct Args {
    /// Measured rounds.
    rounds: usize,
    /// Requests the client keeps in flight.
    concurrency: usize,
    /// How long an instance must see no request before its last one counts as the last.
    quiet: Duration,
    /// Where to write the figures as JSON, besides the text on stdout.
    json: Option<PathBuf>,
}

impl Args {
    fn parse() -> Args {
        let mut args = Args {
            rounds: 100,
            concurrency: 4,
            quiet: Duration::from_millis(100),
            json: None,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut value = |name: &str| -> u64 {
                it.next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage(&format!("{name} needs a number")))
            };
            match flag.as_str() {
                "--rounds" => args.rounds = value("--rounds").max(1) as usize,
                "--concurrency" => args.concurrency = value("--concurrency").max(1) as usize,
                "--quiet-ms" => args.quiet = Duration::from_millis(value("--quiet-ms")),
                "--json" => {
                    let path = it.next().unwrap_or_else(|| usage("--json needs a path"));
                    args.json = Some(path.into());
                }
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
        "usage: propagation [--rounds N (100)] [--concurrency N (4)] [--quiet-ms N (100)] \
         [--json PATH]"
    );
    std::process::exit(2)
}

/// What one instance saw.
#[derive(Default)]
struct Served {
    /// When it served its first request.
    first: OnceLock<Instant>,
    /// When it served its latest request.
    last: Mutex<Option<Instant>>,
    /// How many it served.
    count: AtomicU64,
}

/// The trivial service: counts and answers with an empty result.
#[derive(Clone)]
struct Counting(Arc<Served>);

impl Service<ServerContext, Bytes> for Counting {
    type Response = Bytes;
    type Error = ServerError;

    async fn call(&self, _cx: &mut ServerContext, _req: Bytes) -> Result<Bytes, ServerError> {
        let now = Instant::now();
        self.0.first.get_or_init(|| now);
        *self.0.last.lock().unwrap() = Some(now);
        self.0.count.fetch_add(1, Ordering::Relaxed);
        Ok(Bytes::from_static(EMPTY_STRUCT))
    }
}

/// A serving instance, not registered yet.
struct Instance {
    address: SocketAddr,
    served: Arc<Served>,
    shutdown: Shutdown,
}

async fn start_instance() -> Instance {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("local address");
    let served = Arc::new(Served::default());
    let shutdown = Shutdown::new();
    let incoming = ShutdownIncoming::new(listener, shutdown.clone());
    let server = Server::new(Counting(served.clone()));
    // volo drains for about 2 s after the trigger; nobody waits for it.
    tokio::spawn(async move {
        if let Err(e) = server.run(incoming).await {
            eprintln!("server {address} failed: {e}");
        }
    });
    Instance {
        address,
        served,
        shutdown,
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

/// Keeps `concurrency` calls in flight until `stop`; returns the failed-call counter.
fn start_load(etcd: &EtcdOptions, concurrency: usize, stop: Arc<AtomicBool>) -> Arc<AtomicU64> {
    let discover = EtcdDiscover::new(etcd.clone());
    let client = volo_thrift::client::ClientBuilder::<_, _, _, Bytes, Bytes, _, _, _>::new(
        SERVICE, RawClient,
    )
    .discover(discover.clone())
    .load_balance(WeightedRandomBalance::with_discover(&discover))
    .rpc_timeout(Some(Duration::from_secs(1)))
    .connect_timeout(Some(Duration::from_millis(50)))
    .retry_count(2)
    .build();
    let failures = Arc::new(AtomicU64::new(0));
    for _ in 0..concurrency {
        let (client, stop, failures) = (client.clone(), stop.clone(), failures.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let mut cx = client.make_cx("ping", false);
                let request = Bytes::from_static(EMPTY_STRUCT);
                if client.call(&mut cx, request).await.is_err() {
                    failures.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        });
    }
    failures
}

/// Polls `f` every 200 µs until it returns `Some`, for at most `within`.
async fn poll<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// Signed milliseconds from `from` to `to`.
fn millis(from: Instant, to: Instant) -> f64 {
    if to >= from {
        (to - from).as_secs_f64() * 1e3
    } else {
        -((from - to).as_secs_f64() * 1e3)
    }
}

/// When a plain watch on the service prefix saw each `(key, is a put)` event.
type SeenEvents = Arc<Mutex<HashMap<(String, bool), Instant>>>;

/// What one round of (a) and (b) measured, in milliseconds.
struct RoundTimes {
    /// (a) `register` called → first request served.
    first: f64,
    /// (b) `deregister` called → last request served.
    last: f64,
    /// The put seen by a plain watch → first request served.
    first_after_event: f64,
    /// The delete seen by a plain watch → last request served.
    last_after_event: f64,
    /// Duration of the `register` call.
    registering: f64,
    /// Duration of the `deregister` call.
    deregistering: f64,
}

/// Waits (up to 10 s) until the plain watch saw `key`'s put or delete, and forgets it.
async fn seen_at(events: &SeenEvents, key: &str, put: bool) -> Option<Instant> {
    let entry = (key.to_owned(), put);
    poll(Duration::from_secs(10), || {
        events.lock().unwrap().remove(&entry)
    })
    .await
}

/// One round of (a) and (b); `None` when the instance never got traffic or never went quiet.
async fn registration_round(
    etcd: &EtcdOptions,
    register: &RegisterOptions,
    quiet: Duration,
    events: &SeenEvents,
) -> Option<RoundTimes> {
    let instance = start_instance().await;
    let started = Instant::now();
    let registration: Registration = volo_etcd::register(SERVICE, instance.address, etcd, register)
        .await
        .expect("register");
    let registered = Instant::now();
    let registration_key = &registration.key().to_owned();
    let first = poll(Duration::from_secs(10), || {
        instance.served.first.get().copied()
    })
    .await;
    let Some(first) = first else {
        eprintln!("instance {} got no request within 10 s", instance.address);
        registration.deregister().await;
        instance.shutdown.trigger();
        return None;
    };
    // Let it take a share of the traffic before leaving.
    let count = || instance.served.count.load(Ordering::Relaxed);
    poll(Duration::from_secs(5), || (count() >= 20).then_some(())).await;

    let leaving = Instant::now();
    registration.deregister().await;
    let deregistered = Instant::now();
    // The last request is the one after which nothing arrives for `quiet`.
    let mut served = count();
    let mut since = Instant::now();
    let went_quiet = poll(Duration::from_secs(10), || {
        let now = count();
        if now != served {
            served = now;
            since = Instant::now();
        }
        (since.elapsed() >= quiet).then_some(())
    })
    .await;
    instance.shutdown.trigger();
    went_quiet?;
    let last = instance.served.last.lock().unwrap().expect("served once");
    let put_seen = seen_at(events, registration_key, true).await?;
    let delete_seen = seen_at(events, registration_key, false).await?;
    Some(RoundTimes {
        first: millis(started, first),
        last: millis(leaving, last),
        first_after_event: millis(put_seen, first),
        last_after_event: millis(delete_seen, last),
        registering: millis(started, registered),
        deregistering: millis(leaving, deregistered),
    })
}

/// Records when each put and delete under the service's prefix reaches a plain watch.
async fn start_service_watch(client: &mut EtcdClient, prefix: &str) -> SeenEvents {
    let mut stream = client
        .watch(prefix, Some(WatchOptions::new().with_prefix()))
        .await
        .expect("watch");
    let events = SeenEvents::default();
    let record = events.clone();
    tokio::spawn(async move {
        while let Ok(Some(resp)) = stream.message().await {
            let now = Instant::now();
            let mut seen = record.lock().unwrap();
            for event in resp.events() {
                if let Some(kv) = event.kv() {
                    let key = String::from_utf8_lossy(kv.key()).into_owned();
                    seen.insert((key, event.event_type() == EventType::Put), now);
                }
            }
        }
    });
    events
}

/// Watches `prefix` and reports each event's value with the instant it arrived.
async fn start_probe_watch(
    client: &mut EtcdClient,
    prefix: &str,
) -> mpsc::Receiver<(String, Instant)> {
    let mut stream = client
        .watch(prefix, Some(WatchOptions::new().with_prefix()))
        .await
        .expect("watch");
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        while let Ok(Some(resp)) = stream.message().await {
            let now = Instant::now();
            for event in resp.events() {
                if let Some(kv) = event.kv() {
                    let value = String::from_utf8_lossy(kv.value()).into_owned();
                    if tx.send((value, now)).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// One measurement of (c): put, and wait for its own event.
async fn watch_round(
    client: &mut EtcdClient,
    events: &mut mpsc::Receiver<(String, Instant)>,
    round: usize,
) -> f64 {
    let value = format!("round-{round}");
    let started = Instant::now();
    client
        .put("bench-probe/key", value.as_str(), None)
        .await
        .expect("put");
    loop {
        let (seen, at) = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("watch event within 10 s")
            .expect("watch open");
        if seen == value {
            return millis(started, at);
        }
    }
}

/// The `p`-th percentile (nearest rank) of `values`.
fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `{"p50", "p99", "max"}` of `values`, for `--json`.
fn summary(values: &[f64]) -> serde_json::Value {
    serde_json::json!({
        "p50": percentile(values, 50.0),
        "p99": percentile(values, 99.0),
        "max": percentile(values, 100.0),
    })
}

fn report(name: &str, values: &[f64]) {
    println!(
        "{name:<44} p50 {:>8.2} ms   p99 {:>8.2} ms   (n = {})",
        percentile(values, 50.0),
        percentile(values, 99.0),
        values.len()
    );
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

    let etcd = Etcd::start().await;
    let options = EtcdOptions {
        endpoints: vec![etcd.endpoint()],
        dial_timeout: Duration::from_secs(2),
        ..EtcdOptions::default()
    };
    let register = RegisterOptions {
        ttl: Duration::from_secs(10),
        ..RegisterOptions::default()
    };
    eprintln!(
        "etcd at {}; {} rounds, {} calls in flight",
        etcd.endpoint(),
        args.rounds,
        args.concurrency
    );

    // A baseline instance that stays, so the client always has somewhere to call.
    let baseline = start_instance().await;
    let _baseline = volo_etcd::register(SERVICE, baseline.address, &options, &register)
        .await
        .expect("register the baseline instance");
    let stop = Arc::new(AtomicBool::new(false));
    let failures = start_load(&options, args.concurrency, stop.clone());
    poll(Duration::from_secs(10), || {
        (baseline.served.count.load(Ordering::Relaxed) > 0).then_some(())
    })
    .await
    .expect("the client reaches the baseline instance");

    let mut probe = etcd.client().await;
    let mut events = start_probe_watch(&mut probe, "bench-probe/").await;
    let service_events =
        start_service_watch(&mut probe, &format!("{}/{SERVICE}/", options.prefix)).await;

    let warmup = 3;
    let mut rounds = Vec::new();
    let mut c = Vec::new();
    for round in 0..args.rounds + warmup {
        let measured = registration_round(&options, &register, args.quiet, &service_events).await;
        let watched = watch_round(&mut probe, &mut events, round).await;
        if round < warmup {
            continue;
        }
        rounds.extend(measured);
        c.push(watched);
        if (round + 1 - warmup) % 50 == 0 {
            eprintln!("{} rounds done", round + 1 - warmup);
        }
    }
    stop.store(true, Ordering::Relaxed);

    println!(
        "volo-etcd propagation, {} rounds ({} warm-up rounds not counted), {} calls in flight",
        args.rounds, warmup, args.concurrency
    );
    let column = |f: fn(&RoundTimes) -> f64| rounds.iter().map(f).collect::<Vec<_>>();
    let (a, b) = (column(|r| r.first), column(|r| r.last));
    report("(a) register() -> first request served", &a);
    report("(b) deregister() -> last request served", &b);
    report("(c) etcd put -> watch event (etcd-client)", &c);
    report(
        "    register() call (lease grant + put)",
        &column(|r| r.registering),
    );
    report(
        "    deregister() call (delete + revoke)",
        &column(|r| r.deregistering),
    );
    report(
        "    put seen by a watch -> first request",
        &column(|r| r.first_after_event),
    );
    report(
        "    delete seen by a watch -> last request",
        &column(|r| r.last_after_event),
    );
    for (name, values) in [("(a)/(c)", &a), ("(b)/(c)", &b)] {
        println!(
            "{name:<44} p50 {:>8.2}      p99 {:>8.2}",
            percentile(values, 50.0) / percentile(&c, 50.0),
            percentile(values, 99.0) / percentile(&c, 99.0)
        );
    }
    let failed = failures.load(Ordering::Relaxed);
    println!(
        "rounds without a measurement: {}; failed calls: {failed}",
        args.rounds - a.len()
    );
    if let Some(path) = &args.json {
        let figures = serde_json::json!({
            "rounds": args.rounds,
            "register_first_request_ms": summary(&a),
            "deregister_last_request_ms": summary(&b),
            "etcd_watch_ms": summary(&c),
        });
        let text = serde_json::to_string_pretty(&figures).expect("numbers serialize");
        std::fs::write(path, text + "\n")
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
}
