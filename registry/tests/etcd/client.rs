//! Client resilience against real volo-thrift servers found through a real etcd: a dead
//! instance (killed process), a hung one, a slow one, and the retry budget. The client is
//! wired by `volo_etcd::configure_client`'s parts, as generated `client()`s are, plus a
//! recording inner layer that sees every attempt.
//!
//! The servers answer raw Thrift `Bytes` (no IDL needed) and count what reaches them.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use test_support::{ChildProcess, Etcd, wait_until};
use tokio::{net::TcpListener, sync::watch};
use volo::{Layer, Service, context::Context, net::Address};
use volo_etcd::{BreakerState, ClientOptions, Registration, Resilience, Shutdown};
use volo_thrift::{
    Bytes, ClientError, ServerError,
    context::{ClientContext, ServerContext},
    server::Server,
};

use crate::common::*;

/// An empty Thrift struct (its stop byte): a void call's arguments and result.
const EMPTY_STRUCT: &[u8] = &[0];

/// Concurrent callers in the load tests.
const WORKERS: usize = 4;

/// What a test server does with a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Answer,
    /// Answers after this long.
    Delay(Duration),
    /// Answers only once the mode changes.
    Hang,
}

#[derive(Clone)]
struct Handler {
    received: Arc<AtomicU64>,
    mode: watch::Receiver<Mode>,
}

impl Service<ServerContext, Bytes> for Handler {
    type Response = Bytes;
    type Error = ServerError;

    async fn call(&self, _cx: &mut ServerContext, _req: Bytes) -> Result<Bytes, ServerError> {
        self.received.fetch_add(1, Ordering::SeqCst);
        let mode = *self.mode.borrow();
        match mode {
            Mode::Answer => {}
            Mode::Delay(d) => tokio::time::sleep(d).await,
            Mode::Hang => {
                let mut mode = self.mode.clone();
                let _ = mode.wait_for(|m| *m != Mode::Hang).await;
            }
        }
        Ok(Bytes::from_static(EMPTY_STRUCT))
    }
}

/// A registered, serving instance.
struct Backend {
    address: SocketAddr,
    received: Arc<AtomicU64>,
    mode: watch::Sender<Mode>,
    _shutdown: ShutdownOnDrop,
}

struct ShutdownOnDrop(Shutdown);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        self.0.trigger();
    }
}

impl Backend {
    async fn start(etcd: &Etcd, service: &str, mode: Mode) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let shutdown = Shutdown::new();
        let announced =
            volo_etcd::announce(listener, &serve_options(etcd, service), shutdown.clone())
                .await
                .expect("announce");
        let address = announced.registered_address();
        let (incoming, registration) = announced.into_parts();
        let (mode_tx, mode_rx) = watch::channel(mode);
        let received = Arc::new(AtomicU64::new(0));
        let handler = Handler {
            received: received.clone(),
            mode: mode_rx,
        };
        serve(handler, incoming, registration);
        Backend {
            address,
            received,
            mode: mode_tx,
            _shutdown: ShutdownOnDrop(shutdown),
        }
    }

    fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }

    fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

fn serve(handler: Handler, incoming: volo_etcd::ShutdownIncoming, registration: Registration) {
    let server =
        Server::new(handler).register_shutdown_hook(move || Box::pin(registration.deregister()));
    tokio::spawn(async move {
        let _ = server.run(incoming).await;
    });
}

/// Every attempt the client made: where, and whether it got an answer.
#[derive(Clone, Default)]
struct Attempts(Arc<Mutex<Vec<(SocketAddr, bool)>>>);

impl Attempts {
    fn to(&self, address: SocketAddr) -> Vec<bool> {
        let all = self.0.lock().unwrap();
        all.iter()
            .filter(|(a, _)| *a == address)
            .map(|(_, ok)| *ok)
            .collect()
    }
}

/// Records each attempt, innermost (after the health layer).
#[derive(Clone)]
struct RecordLayer(Attempts);

impl<S> Layer<S> for RecordLayer {
    type Service = Recorded<S>;

    fn layer(self, inner: S) -> Recorded<S> {
        Recorded(inner, self.0)
    }
}

#[derive(Clone)]
struct Recorded<S>(S, Attempts);

impl<Req, S> Service<ClientContext, Req> for Recorded<S>
where
    Req: Send + 'static,
    S: Service<ClientContext, Req, Error = ClientError> + Send + Sync,
{
    type Response = S::Response;
    type Error = ClientError;

    async fn call(&self, cx: &mut ClientContext, req: Req) -> Result<S::Response, ClientError> {
        let result = self.0.call(cx, req).await;
        if let Some(Address::Ip(a)) = cx.rpc_info().callee().address() {
            (self.1).0.lock().unwrap().push((a, result.is_ok()));
        }
        result
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

type CallFuture = Pin<Box<dyn Future<Output = Result<(), ClientError>> + Send>>;

/// A Bytes client wired exactly as `configure_client` does, recording attempts.
struct TestClient {
    /// One call (the client's type is long to spell out).
    call: Box<dyn Fn() -> CallFuture + Send + Sync>,
    resilience: Resilience,
    attempts: Attempts,
}

impl TestClient {
    fn new(service: &str, options: &ClientOptions) -> TestClient {
        let resilience = Resilience::new(options);
        let attempts = Attempts::default();
        let builder = volo_thrift::client::ClientBuilder::<_, _, _, Bytes, Bytes, _, _, _>::new(
            service, RawClient,
        );
        let client = resilience
            .configure(builder, options)
            .layer_inner(RecordLayer(attempts.clone()))
            .build();
        let call = move || -> CallFuture {
            let client = client.clone();
            Box::pin(async move {
                let mut cx = client.make_cx("ping", false);
                client
                    .call(&mut cx, Bytes::from_static(EMPTY_STRUCT))
                    .await
                    .map(drop)
            })
        };
        TestClient {
            call: Box::new(call),
            resilience,
            attempts,
        }
    }

    async fn call(&self) -> Result<(), ClientError> {
        (self.call)().await
    }

    fn breaker(&self, address: SocketAddr) -> Option<(BreakerState, u64)> {
        self.resilience
            .health()
            .instance(&Address::Ip(address))
            .map(|h| (h.breaker, h.trips))
    }
}

/// Default client options for the test etcd.
fn client_options(etcd: &Etcd) -> ClientOptions {
    ClientOptions {
        etcd: etcd_options(etcd),
        ..ClientOptions::default()
    }
}

/// `WORKERS` tasks calling in a loop until dropped; counts results.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    first_error: Arc<Mutex<Option<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(client: &Arc<TestClient>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let first_error = Arc::new(Mutex::new(None));
        let tasks = (0..WORKERS)
            .map(|_| {
                let (client, stop, ok, failed, first_error) = (
                    client.clone(),
                    stop.clone(),
                    ok.clone(),
                    failed.clone(),
                    first_error.clone(),
                );
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        match client.call().await {
                            Ok(()) => ok.fetch_add(1, Ordering::SeqCst),
                            Err(e) => {
                                first_error.lock().unwrap().get_or_insert(e.to_string());
                                failed.fetch_add(1, Ordering::SeqCst)
                            }
                        };
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            first_error,
            tasks,
        }
    }

    async fn stop(self) -> (u64, u64, Option<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            let _ = t.await;
        }
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
            self.first_error.lock().unwrap().clone(),
        )
    }
}

/// (a) A killed process: its key stays in etcd (until its 30 s lease expires), connecting
/// is refused. Its first failed attempt opens its breaker; it gets no attempt after that,
/// and no call fails (Volo's transport retry takes the other instance).
#[tokio::test]
async fn a_killed_instance_gets_nothing_after_its_first_failure() {
    init_tracing();
    let etcd = Etcd::start().await;
    let alive = Backend::start(&etcd, KILLED_SERVICE, Mode::Answer).await;
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "client::child_serves_until_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ETCD_ENV, etcd.endpoint());
    let mut child = ChildProcess::spawn(command).expect("spawn the child process");
    let prefix = format!("kitex/registry-etcd/{KILLED_SERVICE}/");
    assert!(
        wait_until(SOON, || async {
            keys_under(&etcd, &prefix).await.len() == 2
        })
        .await,
        "the child never registered; its output:\n{}",
        child.output()
    );
    let alive_key = format!("{prefix}{}", alive.address);
    let child_key = keys_under(&etcd, &prefix)
        .await
        .into_iter()
        .find(|k| *k != alive_key)
        .unwrap();
    let dead: SocketAddr = child_key[prefix.len()..].parse().unwrap();

    let mut options = client_options(&etcd);
    // Keep half-open probes out of this test's few seconds (probing is tested elsewhere).
    options.breaker.cooldown = Duration::from_secs(600);
    let client = TestClient::new(KILLED_SERVICE, &options);

    // Both serve: the child got calls (the client holds pooled connections to it).
    assert!(
        wait_until(SOON, || async {
            client.call().await.expect("call while both live");
            client.attempts.to(dead).contains(&true)
        })
        .await,
        "the child never got a call"
    );

    child.kill();
    let before = client.attempts.to(dead).len();
    // Call until an attempt on the dead instance has failed...
    let deadline = Instant::now() + SOON;
    while !client.attempts.to(dead)[before..].contains(&false) {
        assert!(
            Instant::now() < deadline,
            "the dead instance was never tried"
        );
        client.call().await.expect("no call fails");
    }
    // ...then many more, for longer than the balancer's forced-pick interval (1 s), which
    // would try an idle instance again if its breaker were not open.
    let failed_at = Instant::now();
    let mut more = 0;
    while more < 200 || failed_at.elapsed() < Duration::from_secs(2) {
        client.call().await.expect("no call fails");
        more += 1;
    }
    let after_kill = &client.attempts.to(dead)[before..];
    assert_eq!(
        after_kill,
        [false],
        "attempts on the dead instance after the kill (ok?)"
    );
    assert_eq!(client.breaker(dead).map(|b| b.0), Some(BreakerState::Open));
    assert!(
        value_at(&etcd, &child_key).await.is_some(),
        "the dead instance's key should still be in etcd"
    );
}

const KILLED_SERVICE: &str = "killed";
const CHILD_ETCD_ENV: &str = "VOLO_ETCD_TEST_CLIENT_CHILD_ETCD";

/// Not a test of its own: the child process of the test above (does nothing without
/// [`CHILD_ETCD_ENV`]). Serves under a 30 s lease until killed, or until its parent is gone.
#[tokio::test]
async fn child_serves_until_killed() {
    let Ok(endpoint) = std::env::var(CHILD_ETCD_ENV) else {
        return;
    };
    init_tracing();
    let mut options = volo_etcd::ServeOptions::new(KILLED_SERVICE);
    options.etcd.endpoints = vec![endpoint];
    options.etcd.dial_timeout = Duration::from_secs(2);
    options.register.ttl = Duration::from_secs(30);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let announced = volo_etcd::announce(listener, &options, Shutdown::never())
        .await
        .expect("announce");
    let (incoming, registration) = announced.into_parts();
    let (_mode, mode_rx) = watch::channel(Mode::Answer);
    let handler = Handler {
        received: Arc::new(AtomicU64::new(0)),
        mode: mode_rx,
    };
    serve(handler, incoming, registration);
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
        let _ = closed_tx.send(());
    });
    let _ = tokio::time::timeout(Duration::from_secs(120), closed_rx).await;
}

/// (b) A hung instance: calls on it time out after the attempt timeout (1 s) and are retried
/// on the other instance, so none fails; two in a row open its breaker, after which it gets
/// nothing; once it answers again, a probe after the cooldown closes the breaker and it gets
/// calls again.
#[tokio::test]
async fn a_hung_instance_is_timed_out_retried_elsewhere_then_skipped_until_it_recovers() {
    init_tracing();
    let etcd = Etcd::start().await;
    let fast = Backend::start(&etcd, "hung", Mode::Answer).await;
    let hung = Backend::start(&etcd, "hung", Mode::Answer).await;
    let client = Arc::new(TestClient::new("hung", &client_options(&etcd)));
    let load = Load::start(&client);
    assert!(
        wait_until(SOON, || async {
            hung.received() >= 5 && fast.received() >= 5
        })
        .await,
        "both instances should get calls first"
    );

    hung.set(Mode::Hang);
    let hung_at = Instant::now();
    let h0 = hung.received();
    assert!(
        wait_until(SOON, || async {
            client.breaker(hung.address).map(|b| b.0) == Some(BreakerState::Open)
        })
        .await,
        "the hung instance's breaker never opened"
    );
    let opened_after = hung_at.elapsed();
    let h1 = hung.received();
    let trips = client.breaker(hung.address).unwrap().1;
    eprintln!(
        "hung instance: breaker open {opened_after:?} after the hang, {} calls on it",
        h1 - h0
    );
    // Calls did land on it (and were retried: none failed, checked below), but few: the
    // balancer avoids an instance with calls stuck in flight.
    assert!(h1 > h0, "no call reached the hung instance");
    assert!(
        h1 - h0 <= WORKERS as u64 + 2,
        "{} calls reached the hung instance before its breaker opened",
        h1 - h0
    );

    // While open it gets nothing, however many calls the other serves.
    let served = fast.received();
    assert!(
        wait_until(SOON, || async { fast.received() >= served + 200 }).await,
        "the fast instance stopped serving"
    );
    assert_eq!(
        client.breaker(hung.address),
        Some((BreakerState::Open, trips)),
        "still in the same open period (5 s cooldown)"
    );
    assert_eq!(
        hung.received(),
        h1,
        "calls reached an instance whose breaker is open"
    );

    // It recovers: probed after the cooldown, closed, called again.
    hung.set(Mode::Answer);
    assert!(
        wait_until(SOON + Duration::from_secs(5), || async {
            hung.received() > h1 + 3
                && client.breaker(hung.address).map(|b| b.0) == Some(BreakerState::Closed)
        })
        .await,
        "the recovered instance never got calls again: {:?}",
        client.breaker(hung.address)
    );
    let (ok, failed, first_error) = load.stop().await;
    eprintln!("calls: {ok} ok, {failed} failed");
    assert_eq!(failed, 0, "a call failed: {first_error:?}");
}

/// (c) An instance that answers 500 ms late loses its share of calls to the fast one (with a
/// random balancer it would get half of them).
#[tokio::test]
async fn a_slow_instance_loses_its_share() {
    init_tracing();
    let etcd = Etcd::start().await;
    let fast = Backend::start(&etcd, "slow", Mode::Answer).await;
    let slow = Backend::start(&etcd, "slow", Mode::Delay(Duration::from_millis(500))).await;
    let client = Arc::new(TestClient::new("slow", &client_options(&etcd)));
    let load = Load::start(&client);
    // (With a random balancer that takes minutes: every other call waits 500 ms.)
    wait_until(Duration::from_secs(30), || async { fast.received() >= 500 }).await;
    let (f, s) = (fast.received(), slow.received());
    let (ok, failed, first_error) = load.stop().await;
    eprintln!("fast {f}, slow {s}; calls: {ok} ok, {failed} failed");
    assert_eq!(failed, 0, "a call failed: {first_error:?}");
    assert!(
        s >= 1,
        "the slow instance never got a call (forced picks keep it known)"
    );
    assert!(
        s * 10 <= f,
        "the slow instance got {s} calls, the fast one {f}"
    );
}

/// Two healthy instances share the calls about evenly, even one call at a time (nothing in
/// flight to tell them apart): their latencies differ by noise, which must not send nearly
/// every call to the one that happens to be faster (it did: 999 to 1).
#[tokio::test]
async fn healthy_instances_share_the_load() {
    init_tracing();
    let etcd = Etcd::start().await;
    let a = Backend::start(&etcd, "even", Mode::Answer).await;
    let b = Backend::start(&etcd, "even", Mode::Answer).await;
    let client = TestClient::new("even", &client_options(&etcd));
    // Some seconds: a first call that also connected can make one look slow until its
    // forced pick a second later.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        client.call().await.expect("a healthy instance answers");
    }
    let (ra, rb) = (a.received(), b.received());
    eprintln!("a {ra}, b {rb}");
    // Evenly on a quiet machine (~50:50); on a loaded one a slow moment keeps an instance
    // out until its next forced pick (15:85 seen in CI). Before the draw on close scores it
    // was 999:1, so 1 in 20 still tells the two apart.
    assert!(
        ra.min(rb) * 20 >= ra + rb,
        "one instance got {} of {} calls",
        ra.min(rb),
        ra + rb
    );
}

/// (d) Every instance hung, breaker off (so only the budget limits retries): attempts stay
/// within calls × (1 + 20 %) + the floor (1/s over the 10 s window), instead of doubling.
#[tokio::test]
async fn the_retry_budget_bounds_attempts_when_everything_hangs() {
    init_tracing();
    let etcd = Etcd::start().await;
    let a = Backend::start(&etcd, "stuck", Mode::Answer).await;
    let b = Backend::start(&etcd, "stuck", Mode::Answer).await;
    let mut options = client_options(&etcd);
    options.breaker.enabled = false;
    let client = Arc::new(TestClient::new("stuck", &options));
    // Resolve the instances first (so that every call below is a real attempt).
    client.call().await.expect("warm-up call");
    let warm = a.received() + b.received();
    a.set(Mode::Hang);
    b.set(Mode::Hang);

    const CALLS: u64 = 50;
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..CALLS {
        let client = client.clone();
        set.spawn(async move { client.call().await });
    }
    let mut timed_out = 0;
    while let Some(result) = set.join_next().await {
        let err = result.unwrap().expect_err("nothing answers");
        assert!(err.to_string().contains("rpc call timeout"), "{err}");
        timed_out += 1;
    }
    assert_eq!(timed_out, CALLS);
    let attempts = a.received() + b.received() - warm;
    let budget = &options.retry_budget;
    let bound = CALLS * (100 + u64::from(budget.percent)) / 100
        + u64::from(budget.floor_per_second) * budget.window.as_secs();
    eprintln!(
        "{CALLS} calls, {attempts} attempts (bound {bound}), all timed out after {:?}",
        started.elapsed()
    );
    assert!(attempts > CALLS, "no retry at all: {attempts} attempts");
    assert!(
        attempts <= bound,
        "{attempts} attempts for {CALLS} calls, bound {bound}"
    );
    a.set(Mode::Answer);
    b.set(Mode::Answer);
}

/// Without another instance to try, an attempt past the attempt timeout is not abandoned:
/// the only instance answering in 1.5 s (attempt timeout 1 s, rpc timeout 3 s) still answers.
#[tokio::test]
async fn a_lone_slow_instance_still_answers_within_the_rpc_timeout() {
    init_tracing();
    let etcd = Etcd::start().await;
    let only = Backend::start(&etcd, "lone", Mode::Delay(Duration::from_millis(1500))).await;
    let client = TestClient::new("lone", &client_options(&etcd));
    client.call().await.expect("answered after 1.5 s");
    assert_eq!(only.received(), 1, "one attempt, not abandoned");
}
