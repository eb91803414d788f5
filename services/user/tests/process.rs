//! The `user-service` binary as an operator runs it: signals, exit codes, startup errors.

use std::{
    collections::BTreeMap,
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use test_support::{ChildProcess, Etcd, Pki};

/// The etcd settings the binary reads from the environment; cleared so that only a test's own
/// flags and variables count.
const ETCD_VARS: [&str; 8] = [
    "ETCD_ENDPOINTS",
    "ETCD_PREFIX",
    "ETCD_DIAL_TIMEOUT",
    "ETCD_USERNAME",
    "ETCD_PASSWORD",
    "ETCD_CA",
    "ETCD_CERT",
    "ETCD_KEY",
];

fn user_service(args: &[&str], data: &std::path::Path) -> ChildProcess {
    user_service_with_env(args, &[], data)
}

fn user_service_with_env(
    args: &[&str],
    env: &[(&str, &str)],
    data: &std::path::Path,
) -> ChildProcess {
    let mut command = Command::new(env!("CARGO_BIN_EXE_user-service"));
    for var in ETCD_VARS {
        command.env_remove(var);
    }
    command
        .args(args)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .current_dir(data)
        .env_remove("RUST_BACKTRACE");
    ChildProcess::spawn(command).expect("start user-service")
}

/// `--etcd-*` flags for `etcd`, which serves TLS with client certificates from `pki`.
fn tls_flags(etcd: &Etcd, pki: &Pki) -> Vec<String> {
    let path = |p: std::path::PathBuf| p.display().to_string();
    vec![
        "--etcd-endpoints".into(),
        etcd.endpoint(),
        "--etcd-ca".into(),
        path(pki.ca()),
        "--etcd-cert".into(),
        path(pki.client_cert()),
        "--etcd-key".into(),
        path(pki.client_key()),
    ]
}

/// The binary on a free port, registered in `etcd`, with `extra` flags; returns once its key
/// (also returned) is listed.
async fn registered_user_service(
    etcd: &Etcd,
    extra: &[&str],
    data: &std::path::Path,
) -> (ChildProcess, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let endpoint = etcd.endpoint();
    let mut args = vec!["--listen", &listen, "--etcd-endpoints", &endpoint];
    args.extend_from_slice(extra);
    let svc = user_service(&args, data);
    let key = format!("kitex/registry-etcd/service.music.user/{listen}");
    assert!(
        etcd.wait_for_key(&key, true, Duration::from_secs(20)).await,
        "never registered:\n{}",
        svc.output()
    );
    (svc, key)
}

/// SIGTERM: exit 0, and `key` gone from etcd by the time the process has exited.
async fn stops_on_sigterm_deregistered(svc: &mut ChildProcess, etcd: &Etcd, key: &str) {
    svc.terminate();
    let status = svc.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit after SIGTERM:\n{}",
        svc.output()
    );
    assert!(
        etcd.wait_for_key(key, false, Duration::ZERO).await,
        "the key is gone once the process has exited"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn sigterm_deregisters_and_exits_zero() {
    let etcd = Etcd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut svc, key) = registered_user_service(&etcd, &[], dir.path()).await;
    assert!(
        dir.path().join("data/user.db").exists(),
        "the default database is created under ./data"
    );

    stops_on_sigterm_deregistered(&mut svc, &etcd, &key).await;
    assert!(
        svc.output().contains("deregistered from etcd"),
        "{}",
        svc.output()
    );
}

async fn fails_with(args: &[&str], message: &str) {
    fails_with_env(args, &[], message).await;
}

/// Runs the binary until it exits; asserts exit 1 and `message` in its output, which it returns.
async fn fails_with_env(args: &[&str], env: &[(&str, &str)], message: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut svc = user_service_with_env(args, env, dir.path());
    let status = svc.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{}", svc.output());
    let output = svc.output();
    assert!(
        output.contains(message),
        "expected `{message}` in:\n{output}"
    );
    assert!(!output.contains("panicked"), "{output}");
    output
}

#[tokio::test]
async fn an_unreachable_etcd_is_a_clear_error() {
    let listen = format!("127.0.0.1:{}", free_port());
    let etcd = format!("127.0.0.1:{}", free_port());
    fails_with(
        &["--listen", &listen, "--etcd-endpoints", &etcd],
        &format!("user-service: cannot register in etcd: cannot reach etcd at {etcd}"),
    )
    .await;
}

#[tokio::test]
async fn registers_in_an_etcd_with_tls_and_auth_given_by_flags() {
    let pki = Pki::generate("etcd");
    let etcd = Etcd::builder().tls(&pki).auth("root-pa55").start().await;
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut args = vec!["--listen".to_owned(), listen.clone()];
    args.extend(tls_flags(&etcd, &pki));
    args.extend(["--etcd-username", "root", "--etcd-password", "root-pa55"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut svc = user_service(&args, dir.path());

    let key = format!("kitex/registry-etcd/service.music.user/{listen}");
    assert!(
        etcd.wait_for_key(&key, true, Duration::from_secs(20)).await,
        "never registered over TLS with auth:\n{}\netcd:\n{}",
        svc.output(),
        etcd.log()
    );

    // Deregistration goes through the same authenticated TLS connection.
    stops_on_sigterm_deregistered(&mut svc, &etcd, &key).await;
    assert!(!svc.output().contains("root-pa55"), "{}", svc.output());
}

#[tokio::test]
async fn a_wrong_etcd_password_is_a_one_line_error() {
    let pki = Pki::generate("etcd");
    let etcd = Etcd::builder().tls(&pki).auth("root-pa55").start().await;
    let listen = format!("127.0.0.1:{}", free_port());
    let mut args = vec!["--listen".to_owned(), listen];
    args.extend(tls_flags(&etcd, &pki));
    args.extend(["--etcd-username", "root"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // The password from the environment, as in production (flags show in `ps`).
    let output = fails_with_env(
        &args,
        &[("ETCD_PASSWORD", "wrong-pa55")],
        &format!(
            "user-service: cannot register in etcd: etcd at {} rejected user \"root\"",
            etcd.endpoint()
        ),
    )
    .await;
    let errors: Vec<&str> = output
        .lines()
        .filter(|l| l.starts_with("user-service: "))
        .collect();
    assert_eq!(errors.len(), 1, "one error line:\n{output}");
    assert_eq!(
        output.trim_end().lines().last(),
        errors.first().copied(),
        "the error is the last line:\n{output}"
    );
    assert!(!output.contains("wrong-pa55"), "password leaked:\n{output}");
}

#[tokio::test]
async fn a_password_without_a_user_is_refused_before_starting() {
    let dir = tempfile::tempdir().unwrap();
    let mut svc = user_service_with_env(&[], &[("ETCD_PASSWORD", "lonely-pa55")], dir.path());
    let status = svc.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{}", svc.output());
    let output = svc.output();
    assert!(
        output.contains("required arguments were not provided")
            && output.contains("--etcd-username"),
        "{output}"
    );
    assert!(
        !output.contains("lonely-pa55"),
        "password leaked:\n{output}"
    );
}

#[tokio::test]
async fn a_taken_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    fails_with(
        &["--listen", &listen],
        &format!("user-service: cannot listen on {listen}: Address already in use"),
    )
    .await;
}

#[tokio::test]
async fn a_database_that_cannot_be_opened_is_a_clear_error() {
    fails_with(
        &["--database-url", "mysql://localhost/users"],
        "user-service: unsupported database URL \"mysql://localhost/users\": use sqlite://PATH or postgres://...",
    )
    .await;
    fails_with(
        &["--database-url", "sqlite:///proc/no/such/dir/user.db"],
        "user-service: cannot create the data directory /proc/no/such/dir",
    )
    .await;
}

/// The peak resident memory of process `pid` (`VmHWM`), in bytes.
fn peak_memory(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("procfs");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kib * 1024
}

/// A flood of logins (argon2id, 19 MiB a hash) must not take the process's memory or starve
/// its other methods: hashes run a bounded number at a time, the rest queue or are shed, and
/// what is left in the queue does not hold up a SIGTERM.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_logins_keeps_memory_bounded_and_other_methods_answering() {
    use rpc::{
        music::{
            base::ErrCode,
            service::user::{CreateUserRequest, GetUserRequest, LoginRequest, user_service},
        },
        volo_etcd::{ClientOptions, EtcdOptions},
    };

    /// Logins in flight at once: unbounded, 64 hashes would take 1.2 GiB.
    const FLOOD: usize = 64;
    const FLOOD_FOR: Duration = Duration::from_secs(5);
    /// What the process may grow by: two hashing threads of 19 MiB each, with room to spare.
    const GROWTH_LIMIT: u64 = 256 << 20;

    let etcd = Etcd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut svc, key) =
        registered_user_service(&etcd, &["--hash-concurrency", "2"], dir.path()).await;
    let client = user_service::client(&ClientOptions {
        etcd: EtcdOptions::with_endpoints([etcd.endpoint()]),
        ..ClientOptions::default()
    });
    let created = client
        .create_user(CreateUserRequest {
            username: "flooded".into(),
            password: "secret1".into(),
        })
        .await
        .expect("CreateUser answers");
    let user_id = created.user_id.expect("a user id");
    let pid = svc.id().expect("running");
    let before = peak_memory(pid);

    // Each login's outcome: its status code, or "error" (a timeout).
    let outcomes = Arc::new(Mutex::new(BTreeMap::<String, usize>::new()));
    let until = tokio::time::Instant::now() + FLOOD_FOR;
    let flood: Vec<_> = (0..FLOOD)
        .map(|_| {
            let (client, outcomes) = (client.clone(), outcomes.clone());
            tokio::spawn(async move {
                while tokio::time::Instant::now() < until {
                    let login = client.login(LoginRequest {
                        username: "flooded".into(),
                        password: "wrong password".into(),
                    });
                    let outcome = login
                        .await
                        .map_or("error".to_owned(), |r| r.base_resp.status_code.to_string());
                    *outcomes.lock().unwrap().entry(outcome).or_default() += 1;
                }
            })
        })
        .collect();

    // Meanwhile GetUser keeps answering, each call within the client's 3 s deadline.
    let mut answered = 0;
    while tokio::time::Instant::now() < until {
        let got = client.get_user(GetUserRequest { user_id }).await;
        let got = got.unwrap_or_else(|e| panic!("GetUser during the flood: {e}"));
        assert_eq!(got.base_resp.status_code, 0, "{:?}", got.base_resp);
        answered += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered > 0);

    // Stop the flood mid-call, as callers that gave up: their logins may still be queued.
    for caller in flood {
        caller.abort();
    }
    let outcomes = outcomes.lock().unwrap().clone();
    let refused_or_shed =
        [ErrCode::AUTHORIZATION_FAILED, ErrCode::SERVICE_ERR].map(|c| i32::from(c).to_string());
    assert!(
        outcomes.keys().all(|k| refused_or_shed.contains(k)),
        "a wrong password is refused (10004) or shed as busy (10001), in time: {outcomes:?}"
    );
    let growth = peak_memory(pid).saturating_sub(before);
    eprintln!(
        "flood outcomes {outcomes:?}; {answered} GetUser answered; peak memory grew by {} MiB",
        growth >> 20
    );
    assert!(
        growth < GROWTH_LIMIT,
        "peak memory grew by {} MiB during the flood (limit {} MiB)",
        growth >> 20,
        GROWTH_LIMIT >> 20
    );

    stops_on_sigterm_deregistered(&mut svc, &etcd, &key).await;
}

/// A caller's RPC timeout travels in the TTHeader; the handler sees how long is left.
#[tokio::test]
async fn the_callers_deadline_reaches_the_handler() {
    use rpc::{
        music::service::user::{GetUserRequest, user_service},
        volo_etcd::{ClientOptions, EtcdOptions},
    };

    let etcd = Etcd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let endpoint = etcd.endpoint();
    let svc = user_service_with_env(
        &["--listen", &listen, "--etcd-endpoints", &endpoint],
        &[("RUST_LOG", "info,user_service=debug")],
        dir.path(),
    );
    let key = format!("kitex/registry-etcd/service.music.user/{listen}");
    assert!(etcd.wait_for_key(&key, true, Duration::from_secs(20)).await);
    let client = user_service::client(&ClientOptions {
        etcd: EtcdOptions::with_endpoints([endpoint.clone()]),
        rpc_timeout: Duration::from_millis(2500),
        ..ClientOptions::default()
    });
    let got = client.get_user(GetUserRequest { user_id: 1 }).await;
    assert!(got.is_ok(), "{got:?}");
    let logged = test_support::wait_until(Duration::from_secs(10), || {
        let out = svc.output();
        async move { out.contains("answered") }
    })
    .await;
    let out = svc.output();
    assert!(logged, "no answer logged:\n{out}");
    let deadline_ms: u64 = out
        .split("deadline_ms=")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no deadline in the call's span:\n{out}"));
    assert!((1..=2500).contains(&deadline_ms), "{deadline_ms}");
}

/// The trace a call is made in reaches the service as metainfo `traceparent`: the service's log
/// lines for the call carry its trace id, and one it starts itself when the caller sent none.
/// (Export is tested against a real OTLP receiver in tests/kitex/tracing_test.go.)
#[tokio::test]
async fn the_callers_trace_id_is_in_the_calls_log_lines() {
    use rpc::{
        music::service::user::{GetUserRequest, user_service},
        volo_etcd::{ClientOptions, EtcdOptions, telemetry},
    };

    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    let etcd = Etcd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let endpoint = etcd.endpoint();
    let svc = user_service_with_env(
        &[
            "--listen",
            &listen,
            "--etcd-endpoints",
            &endpoint,
            "--log-format",
            "json",
        ],
        &[("RUST_LOG", "info,user_service=debug")],
        dir.path(),
    );
    let key = format!("kitex/registry-etcd/service.music.user/{listen}");
    assert!(etcd.wait_for_key(&key, true, Duration::from_secs(20)).await);
    let client = user_service::client(&ClientOptions {
        etcd: EtcdOptions::with_endpoints([endpoint.clone()]),
        ..ClientOptions::default()
    });
    let caller =
        telemetry::TraceContext::parse(&format!("00-{TRACE_ID}-00f067aa0ba902b7-01"), None)
            .unwrap();
    let traced = telemetry::scope(caller, client.get_user(GetUserRequest { user_id: 1 })).await;
    assert!(traced.is_ok(), "{traced:?}");
    let untraced = client.get_user(GetUserRequest { user_id: 2 }).await;
    assert!(untraced.is_ok(), "{untraced:?}");

    let answered = || -> Vec<serde_json::Value> {
        svc.output()
            .lines()
            .filter(|l| l.contains("answered"))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    };
    let logged = test_support::wait_until(Duration::from_secs(10), || {
        let n = answered().len();
        async move { n == 2 }
    })
    .await;
    assert!(logged, "not two answers logged:\n{}", svc.output());
    let trace_ids: Vec<String> = answered()
        .iter()
        .map(|line| {
            line["span"]["trace_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(trace_ids[0], TRACE_ID, "{:?}", answered());
    assert!(
        trace_ids[1].len() == 32 && trace_ids[1] != TRACE_ID,
        "{:?}",
        answered()
    );
}

#[tokio::test]
async fn metrics_count_calls_under_kitex_names_on_both_sides() {
    use rpc::{
        music::service::user::{CreateUserRequest, GetUserRequest, user_service},
        volo_etcd::{ClientOptions, EtcdOptions, metrics},
    };
    use test_support::{prometheus_sample, raw_get, wait_until};

    let etcd = Etcd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let scrape_addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let scrape_flag = scrape_addr.to_string();
    let (svc, key) = registered_user_service(
        &etcd,
        &["--metrics-listen", &scrape_flag, "--lease-ttl", "1s"],
        dir.path(),
    )
    .await;
    let address = key.rsplit('/').next().unwrap().to_owned();
    // The client's side is recorded in this process.
    let here = metrics::install();
    let client = user_service::client(&ClientOptions {
        caller_name: Some("metrics-test".into()),
        etcd: EtcdOptions::with_endpoints([etcd.endpoint()]),
        ..ClientOptions::default()
    });
    let created = client
        .create_user(CreateUserRequest {
            username: "counted".into(),
            password: "secret1".into(),
        })
        .await
        .expect("CreateUser answers");
    for _ in 0..3 {
        client
            .get_user(GetUserRequest {
                user_id: created.user_id.expect("a new user's id"),
            })
            .await
            .expect("GetUser answers");
    }

    let call = |method| {
        [
            ("caller", "metrics-test"),
            ("callee", "service.music.user"),
            ("method", method),
            ("status", "succeed"),
            ("retry", "0"),
        ]
    };
    let scrape = || async {
        let answer = raw_get(scrape_addr, "/metrics").await.unwrap_or_default();
        answer
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_owned()
    };
    let served = scrape().await;
    let sample = |text: &str, name, labels: &[(&str, &str)]| prometheus_sample(text, name, labels);
    assert_eq!(
        sample(&served, "kitex_server_throughput", &call("GetUser")),
        Some(3.0),
        "{served}\n{}",
        svc.output()
    );
    assert_eq!(
        sample(&served, "kitex_server_throughput", &call("CreateUser")),
        Some(1.0),
        "{served}"
    );
    assert_eq!(
        sample(&served, "kitex_server_latency_us_count", &call("GetUser")),
        Some(3.0),
        "{served}"
    );
    let mut bucket = call("GetUser").to_vec();
    bucket.push(("le", "1000000"));
    assert_eq!(
        sample(&served, "kitex_server_latency_us_bucket", &bucket),
        Some(3.0),
        "Kitex's buckets, in microseconds: {served}"
    );
    assert_eq!(
        sample(
            &served,
            "volo_etcd_registered",
            &[("service", "service.music.user"), ("address", &address)]
        ),
        Some(1.0),
        "{served}"
    );
    // A lease of 1 s is kept alive every 300 ms.
    let kept_alive = wait_until(Duration::from_secs(10), || async {
        let text = scrape().await;
        sample(
            &text,
            "volo_etcd_keepalive_latency_us_count",
            &[("service", "service.music.user")],
        )
        .is_some_and(|n| n >= 1.0)
    })
    .await;
    assert!(kept_alive, "no keepalive recorded: {}", scrape().await);

    let calling = here.render();
    assert_eq!(
        sample(&calling, "kitex_client_throughput", &call("GetUser")),
        Some(3.0),
        "{calling}"
    );
    assert_eq!(
        sample(
            &calling,
            "kitex_client_latency_us_count",
            &call("CreateUser")
        ),
        Some(1.0),
        "{calling}"
    );
    // Other tests of this binary watch the same service name in their own etcd: the gauge
    // is there, its value theirs or ours.
    assert!(
        sample(
            &calling,
            "volo_etcd_instances",
            &[("service", "service.music.user")]
        )
        .is_some(),
        "{calling}"
    );

    // An instance whose address refuses connections opens this client's breaker of it at its
    // first call (Volo retries that call on the live one).
    let dead: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let record = rpc::volo_etcd::record::InstanceRecord::new(dead, 10, Default::default());
    etcd.client()
        .await
        .put(
            format!("kitex/registry-etcd/service.music.user/{dead}"),
            record.to_json(),
            None,
        )
        .await
        .expect("put the dead instance's key");
    let dead = dead.to_string();
    let tripped = wait_until(Duration::from_secs(20), || async {
        let answered = client.get_user(GetUserRequest { user_id: 1 }).await;
        assert!(answered.is_ok(), "{answered:?}");
        let text = here.render();
        sample(
            &text,
            "volo_etcd_breaker_trips_total",
            &[("address", &dead)],
        ) == Some(1.0)
            && sample(&text, "volo_etcd_breaker_open", &[("address", &dead)]) == Some(1.0)
    })
    .await;
    assert!(tripped, "the dead instance's breaker: {}", here.render());
    assert_eq!(
        sample(
            &here.render(),
            "volo_etcd_breaker_open",
            &[("address", &address)]
        ),
        Some(0.0),
        "the live instance's breaker is closed: {}",
        here.render()
    );

    let elsewhere = raw_get(scrape_addr, "/other").await.unwrap_or_default();
    assert!(elsewhere.contains(" 404 "), "{elsewhere}");
}
