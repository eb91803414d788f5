//! What the gateway's test crates share (each uses part of it).
#![allow(dead_code)]

use std::{net::SocketAddr, process::Command, time::Duration};

use test_support::{ChildProcess, wait_until};

/// A free loopback address (released for the caller to bind).
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

/// The gateway binary, with none of its variables from this environment, logging at info.
pub fn gateway_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gateway"));
    for var in [
        "JWT_SECRET",
        "GATEWAY_DEV",
        "LISTEN",
        "ETCD_ENDPOINTS",
        "BODY_LIMIT",
        "CORS_ORIGINS",
        "CORS_ALLOW_CREDENTIALS",
        "DOCS",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ] {
        command.env_remove(var);
    }
    command.env("RUST_LOG", "info");
    command
}

/// The gateway binary on a free port, in development mode (a random token secret), calling
/// the services in the etcd at `endpoint`, without log-in limits or load shedding; `extra`
/// flags win. Returns once it serves, with its address; killed on drop.
pub async fn start_gateway(endpoint: &str, extra: &[&str]) -> (ChildProcess, SocketAddr) {
    let mut command = gateway_command();
    command
        .args(["--listen", "127.0.0.1:0", "--dev"])
        .args(["--etcd-endpoints", endpoint])
        .args([
            "--login-rate-limit-per-ip",
            "off",
            "--shed-cpu-threshold",
            "off",
        ])
        .args(extra);
    let child = ChildProcess::spawn(command).expect("start the gateway");
    let serving = wait_until(Duration::from_secs(10), || {
        let out = child.output();
        async move { out.contains("gateway serving on") }
    })
    .await;
    assert!(serving, "the gateway did not start: {}", child.output());
    let addr = child
        .output()
        .split("gateway serving on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .expect("the address in the log");
    (child, addr)
}
