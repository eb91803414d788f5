//! A three-member etcd cluster on loopback: a killed member stops neither registration nor
//! discovery. Clients try endpoints in order, so killing member 0 kills the member they
//! were talking to.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use test_support::{EtcdCluster, wait_until};
use volo_etcd::{EtcdDiscover, EtcdOptions, RegisterOptions, ServeOptions};

use crate::common::*;

const TTL: Duration = Duration::from_secs(2);

fn serve_options(cluster: &EtcdCluster) -> ServeOptions {
    ServeOptions {
        service_name: "user".to_owned(),
        advertise: None,
        etcd: EtcdOptions {
            endpoints: cluster.endpoints(),
            dial_timeout: Duration::from_secs(2),
            ..EtcdOptions::default()
        },
        register: RegisterOptions {
            ttl: TTL,
            weight: 10,
            ..RegisterOptions::default()
        },
    }
}

/// Whether `key` is in the cluster, read through the running members.
async fn listed(cluster: &EtcdCluster, key: &str) -> bool {
    let mut client = cluster.client().await;
    let get = tokio::time::timeout(Duration::from_secs(2), client.get(key, None)).await;
    matches!(get, Ok(Ok(resp)) if !resp.kvs().is_empty())
}

/// Waits until `discover` lists exactly `expected` (in any order) for `user`.
async fn discovers(discover: &EtcdDiscover, expected: &[SocketAddr]) -> bool {
    let mut expected = expected.to_vec();
    expected.sort();
    wait_until(SOON, || {
        let expected = expected.clone();
        async move {
            let mut found = addresses(&discover.instances("user").await.unwrap_or_default());
            found.sort();
            found == expected
        }
    })
    .await
}

#[tokio::test]
async fn killing_the_member_in_use_stops_neither_registration_nor_discovery() {
    init_tracing();
    let mut cluster = EtcdCluster::start(3).await;
    let options = serve_options(&cluster);
    let first = register_local(&options).await;
    let discover = EtcdDiscover::new(options.etcd.clone());
    assert!(discovers(&discover, &[first.address()]).await);

    cluster.kill(0);

    // A new instance registers through the survivors, and the running watch sees it.
    let second = register_local(&options).await;
    assert!(
        discovers(&discover, &[first.address(), second.address()]).await,
        "the discoverer did not follow the cluster after member 0 died:\n{}",
        cluster.logs()
    );
    // The first lease is kept alive through the survivors: listed for three TTLs.
    let until = Instant::now() + 3 * TTL;
    while Instant::now() < until {
        assert!(
            listed(&cluster, first.key()).await,
            "the first registration lapsed after member 0 died"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Deregistration reaches the survivors, and the watch drops the instance.
    let gone = second.key().to_owned();
    second.deregister().await;
    assert!(
        !listed(&cluster, &gone).await,
        "deregistered key still listed"
    );
    assert!(discovers(&discover, &[first.address()]).await);
}

#[tokio::test]
async fn a_dead_first_endpoint_does_not_stop_a_start() {
    init_tracing();
    let mut cluster = EtcdCluster::start(3).await;
    cluster.kill(0);
    assert!(
        wait_until(SOON, || cluster.healthy()).await,
        "the two survivors did not elect a leader:\n{}",
        cluster.logs()
    );
    let options = serve_options(&cluster);
    let registration = register_local(&options).await;
    let discover = EtcdDiscover::new(options.etcd.clone());
    assert!(discovers(&discover, &[registration.address()]).await);
}
