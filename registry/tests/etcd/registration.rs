//! Server side: what lands in etcd, and when it leaves.

use std::time::{Duration, Instant};

use test_support::{Etcd, wait_until};
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
