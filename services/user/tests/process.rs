//! The `user-service` binary as an operator runs it: signals, exit codes, startup errors.

use std::{process::Command, time::Duration};

use test_support::{ChildProcess, Etcd};

fn user_service(args: &[&str], data: &std::path::Path) -> ChildProcess {
    let mut command = Command::new(env!("CARGO_BIN_EXE_user-service"));
    command
        .args(args)
        .current_dir(data)
        .env("RUST_LOG", "info")
        .env_remove("RUST_BACKTRACE");
    ChildProcess::spawn(command).expect("start user-service")
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
    let listen = format!("127.0.0.1:{}", free_port());
    let mut svc = user_service(
        &["--listen", &listen, "--etcd-endpoints", &etcd.endpoint()],
        dir.path(),
    );

    let key = format!("kitex/registry-etcd/service.music.user/{listen}");
    assert!(
        etcd.wait_for_key(&key, true, Duration::from_secs(20)).await,
        "never registered:\n{}",
        svc.output()
    );
    assert!(
        dir.path().join("data/user.db").exists(),
        "the default database is created under ./data"
    );

    let pid = svc.id().expect("running").to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = svc.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit after SIGTERM:\n{}",
        svc.output()
    );
    assert!(
        etcd.wait_for_key(&key, false, Duration::ZERO).await,
        "the key is gone once the process has exited"
    );
    assert!(
        svc.output().contains("deregistered from etcd"),
        "{}",
        svc.output()
    );
}

async fn fails_with(args: &[&str], message: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut svc = user_service(args, dir.path());
    let status = svc.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{}", svc.output());
    let output = svc.output();
    assert!(
        output.contains(message),
        "expected `{message}` in:\n{output}"
    );
    assert!(!output.contains("panicked"), "{output}");
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
