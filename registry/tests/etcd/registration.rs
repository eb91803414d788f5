//! Server side: what lands in etcd, and when it leaves.

use std::time::{Duration, Instant};

use test_support::{ChildProcess, Etcd, wait_until};
use tokio::net::TcpListener;
use volo_etcd::{Error, Shutdown};

use crate::common::*;

#[tokio::test]
async fn record_is_registry_etcd_json_under_the_kitex_key() {
    init_tracing();
    let etcd = Etcd::start().await;
    let mut options = serve_options(&etcd, "echo");
    options.register.weight = 7;
    options.register.tags.insert("env".into(), "test".into());
    let reg = register_local(&options).await;

    let port = reg.address().port();
    assert_eq!(reg.address().ip().to_string(), "127.0.0.1");
    assert_eq!(
        reg.key(),
        format!("kitex/registry-etcd/echo/127.0.0.1:{port}")
    );
    let raw = value_at(&etcd, reg.key()).await.expect("key present");
    // Exactly the fields of registry-etcd's instanceInfo, with its JSON names and types.
    let json: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let expected = serde_json::json!({
        "network": "tcp",
        "address": format!("127.0.0.1:{port}"),
        "weight": 7,
        "tags": {"env": "test"},
    });
    assert_eq!(json, expected);
    reg.deregister().await;
}

#[tokio::test]
async fn deregister_removes_the_key_at_once() {
    init_tracing();
    let etcd = Etcd::start().await;
    let reg = register_local(&serve_options(&etcd, "echo")).await;
    let key = reg.key().to_owned();
    assert!(value_at(&etcd, &key).await.is_some());
    reg.deregister().await;
    // No polling: the key must already be gone when deregister returns.
    assert_eq!(value_at(&etcd, &key).await, None);
    // ...and its lease is revoked, not left to expire.
    let mut client = raw_client(&etcd).await;
    assert!(client.leases().await.unwrap().leases().is_empty());
}

#[tokio::test]
async fn deregister_lingers_after_removing_the_key() {
    init_tracing();
    let etcd = Etcd::start().await;
    let mut options = serve_options(&etcd, "echo");
    // Far longer than the test waits: the point is that the key goes first.
    options.register.linger = Duration::from_secs(60);
    let reg = register_local(&options).await;
    let key = reg.key().to_owned();
    let leaving = tokio::spawn(reg.deregister());
    assert!(
        wait_until(Duration::from_secs(10), || async {
            value_at(&etcd, &key).await.is_none()
        })
        .await,
        "the key was not removed"
    );
    assert!(
        !leaving.is_finished(),
        "deregister returned before its linger was over"
    );
    leaving.abort();
}

#[tokio::test]
async fn dropped_registration_expires_within_ttl() {
    init_tracing();
    let etcd = Etcd::start().await;
    let reg = register_local(&serve_options(&etcd, "echo")).await; // TTL 2 s
    let key = reg.key().to_owned();
    let dropped_at = Instant::now();
    drop(reg);
    assert!(
        wait_until(Duration::from_secs(3), || async {
            value_at(&etcd, &key).await.is_none()
        })
        .await,
        "key still present 3 s (TTL + 1 s) after the registration was dropped"
    );
    eprintln!("key expired {:?} after drop", dropped_at.elapsed());
}

/// Set only in the child process of `killed_process_key_disappears_within_ttl`: the endpoint
/// of the etcd it registers in.
const CHILD_ETCD_ENV: &str = "VOLO_ETCD_TEST_CHILD_ETCD";
/// The service the child registers.
const CHILD_SERVICE: &str = "crashing";
/// The child's lease TTL.
const CHILD_TTL: Duration = Duration::from_secs(2);

#[tokio::test]
async fn killed_process_key_disappears_within_ttl() {
    init_tracing();
    let etcd = Etcd::start().await;
    let ttl = CHILD_TTL;
    // The child is this test binary again, filtered to the helper below.
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "registration::child_registers_and_waits_to_be_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ETCD_ENV, etcd.endpoint());
    let mut child = ChildProcess::spawn(command).expect("spawn the child process");
    let prefix = format!("kitex/registry-etcd/{CHILD_SERVICE}/");

    let registered = wait_until(SOON, || async {
        keys_under(&etcd, &prefix).await.len() == 1
    })
    .await;
    assert!(
        registered,
        "the child never registered; its output:\n{}",
        child.output()
    );
    let key = keys_under(&etcd, &prefix).await.remove(0);

    // The child keeps its lease alive: the key outlives 1.5 TTL, so its later disappearance
    // is the kill's doing.
    let alive_until = Instant::now() + ttl * 3 / 2;
    while Instant::now() < alive_until {
        assert!(child.is_running(), "child exited: {}", child.output());
        assert!(
            value_at(&etcd, &key).await.is_some(),
            "key lapsed while the child lived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        value_at(&etcd, &key).await.is_some(),
        "key gone before the child was killed"
    );

    child.kill(); // SIGKILL: no deregistration, no revoke
    let killed_at = Instant::now();
    let gone = wait_until(ttl + Duration::from_secs(2), || async {
        value_at(&etcd, &key).await.is_none()
    })
    .await;
    let after = killed_at.elapsed();
    assert!(gone, "key still present {after:?} after SIGKILL");
    assert!(
        after <= ttl + Duration::from_secs(1),
        "key disappeared {after:?} after SIGKILL, more than TTL + 1 s"
    );
    eprintln!("key of the killed process disappeared {after:?} after SIGKILL");
}

/// Not a test of its own: the child process of `killed_process_key_disappears_within_ttl`,
/// which runs this binary again with [`CHILD_ETCD_ENV`] set. Without it, it does nothing.
/// The child registers (TTL 2 s) and waits to be killed; if the parent test dies first, the
/// child's stdin closes and it leaves, letting the lease expire.
#[tokio::test]
async fn child_registers_and_waits_to_be_killed() {
    let Ok(endpoint) = std::env::var(CHILD_ETCD_ENV) else {
        return;
    };
    init_tracing();
    let mut options = volo_etcd::ServeOptions::new(CHILD_SERVICE);
    options.etcd.endpoints = vec![endpoint];
    options.etcd.dial_timeout = Duration::from_secs(2);
    options.register.ttl = CHILD_TTL;
    let registration = register_local(&options).await;
    eprintln!("child: registered {}", registration.key());
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
        let _ = closed_tx.send(());
    });
    let _ = tokio::time::timeout(Duration::from_secs(120), closed_rx).await;
    eprintln!("child: parent gone; leaving without deregistering");
    drop(registration);
}

#[tokio::test]
async fn keepalive_holds_a_short_lease() {
    init_tracing();
    let etcd = Etcd::start().await;
    let reg = register_local(&serve_options(&etcd, "echo")).await; // TTL 2 s
    let key = reg.key().to_owned();
    let mut client = raw_client(&etcd).await;
    let lease_of = |resp: etcd_client::GetResponse| resp.kvs().first().map(|kv| kv.lease());
    let lease = lease_of(client.get(key.as_str(), None).await.unwrap()).expect("key present");
    assert_ne!(lease, 0, "the key is attached to a lease");
    // Over three TTLs the key must be present at every look, under the same lease (kept
    // alive, not lost and re-granted).
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        let now = lease_of(client.get(key.as_str(), None).await.unwrap());
        assert_eq!(
            now,
            Some(lease),
            "lease lapsed or was replaced while kept alive"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    reg.deregister().await;
}

#[tokio::test]
async fn announce_fails_clearly_when_etcd_is_unreachable() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut options = volo_etcd::ServeOptions::new("echo");
    options.etcd.endpoints = vec![format!("127.0.0.1:{port}")];
    options.etcd.dial_timeout = Duration::from_millis(500);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let started = Instant::now();
    let err = volo_etcd::announce(listener, &options, Shutdown::never())
        .await
        .expect_err("must fail");
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("cannot reach etcd at 127.0.0.1:{port}: ")),
        "{msg}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn invalid_service_names_are_rejected() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options = volo_etcd::ServeOptions::new("a/b");
    let err = volo_etcd::announce(listener, &options, Shutdown::never())
        .await
        .expect_err("must fail");
    assert!(matches!(err, Error::InvalidServiceName { .. }), "{err}");
}

#[tokio::test]
async fn unspecified_listen_address_is_never_registered() {
    init_tracing();
    let etcd = Etcd::start().await;
    let mut options = serve_options(&etcd, "echo");
    options.advertise = Some("127.0.0.2".parse().unwrap());
    let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let announced = volo_etcd::announce(listener, &options, Shutdown::never())
        .await
        .unwrap();
    assert_eq!(announced.registered_address().ip().to_string(), "127.0.0.2");
    announced.into_parts().1.deregister().await;
}
