//! What registry-etcd gets wrong: lost keys come back, etcd outages are survived.

use std::time::{Duration, Instant};

use test_support::{Etcd, wait_until};
use volo_etcd::EtcdDiscover;

use crate::common::*;

#[tokio::test]
async fn an_operators_delete_is_repaired() {
    init_tracing();
    let etcd = Etcd::start().await;
    let reg = register_local(&serve_options(&etcd, "user")).await;
    let key = reg.key().to_owned();
    let original = value_at(&etcd, &key).await.unwrap();

    raw_client(&etcd)
        .await
        .delete(key.as_str(), None)
        .await
        .unwrap();
    assert!(
        wait_until(SOON, || async { value_at(&etcd, &key).await.is_some() }).await,
        "deleted key was not put back"
    );
    assert_eq!(value_at(&etcd, &key).await.unwrap(), original);

    // The repaired key lives under a live lease: it survives more than a TTL...
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert!(value_at(&etcd, &key).await.is_some(), "repaired key lapsed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // ...and is still removed by deregister.
    reg.deregister().await;
    assert_eq!(value_at(&etcd, &key).await, None);
}

#[tokio::test]
async fn wiped_etcd_gets_the_instance_again() {
    init_tracing();
    let mut etcd = Etcd::start().await;
    let reg = register_local(&serve_options(&etcd, "user")).await;
    let key = reg.key().to_owned();
    let discover = EtcdDiscover::new(etcd_options(&etcd));
    assert_eq!(discover.instances("user").await.unwrap().len(), 1);

    etcd.restart_wiped().await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            value_at(&etcd, &key).await.is_some()
        })
        .await,
        "instance not registered again after etcd lost its data"
    );
    // The discoverer re-listed the new cluster and still (again) knows the instance.
    assert!(
        wait_until(SOON, || async {
            addresses(&discover.instances("user").await.unwrap()) == [reg.address()]
        })
        .await
    );
    // Deregistration works against the new cluster.
    reg.deregister().await;
    assert_eq!(value_at(&etcd, &key).await, None);
}

#[tokio::test]
async fn after_a_wipe_the_instances_known_before_stay_listed_while_they_register_again() {
    init_tracing();
    let mut etcd = Etcd::start().await;
    let mut raw = raw_client(&etcd).await;
    // An instance that will not register again after the wipe (no one keeps it)...
    let gone: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    raw.put(
        format!("kitex/registry-etcd/user/{gone}"),
        format!(r#"{{"network":"tcp","address":"{gone}","weight":10,"tags":null}}"#),
        None,
    )
    .await
    .unwrap();
    // ...history, so that the wiped store's revision is clearly behind...
    for n in 0..20 {
        raw.put(format!("unrelated/{n}"), "x", None).await.unwrap();
    }
    // ...and one that will.
    let reg = register_local(&serve_options(&etcd, "user")).await;
    let discover = EtcdDiscover::new(etcd_options(&etcd));
    let mut listed = addresses(&discover.instances("user").await.unwrap());
    listed.sort();
    let mut before = vec![gone, reg.address()];
    before.sort();
    assert_eq!(listed, before);

    etcd.restart_wiped().await;
    // Until the kept instance is registered again (and a little after, for the discoverer to
    // list it), the other one is never dropped.
    let mut lists = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut polls_after = 0;
    while polls_after < 10 {
        lists.push(addresses(&discover.instances("user").await.unwrap()));
        if value_at(&etcd, reg.key()).await.is_some() {
            polls_after += 1;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not registered again: {lists:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        lists.iter().all(|l| l.contains(&gone)),
        "an instance known before the wipe was dropped at once: {lists:?}"
    );
    // It does not come back, so it goes once the carry-over ends.
    assert!(
        wait_until(Duration::from_secs(30), || async {
            addresses(&discover.instances("user").await.unwrap()) == [reg.address()]
        })
        .await
    );
    reg.deregister().await;
}

#[tokio::test]
async fn discovery_keeps_the_last_instances_while_etcd_is_down() {
    init_tracing();
    let mut etcd = Etcd::start().await;
    let reg = register_local(&serve_options(&etcd, "user")).await;
    let discover = EtcdDiscover::new(etcd_options(&etcd));
    let before = addresses(&discover.instances("user").await.unwrap());
    assert_eq!(before, [reg.address()]);

    etcd.stop();
    // Over several retry rounds of the watch task, the answer stays the last known list.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let now = tokio::time::timeout(Duration::from_secs(1), discover.instances("user"))
            .await
            .expect("discover answers without waiting for etcd")
            .expect("discover does not fail while etcd is down");
        assert_eq!(addresses(&now), before);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // etcd comes back with its data: the watch resumes and sees new instances.
    etcd.restart().await;
    let second = register_local(&serve_options(&etcd, "user")).await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            discover.instances("user").await.unwrap().len() == 2
        })
        .await,
        "discovery did not resume after etcd came back"
    );
    second.deregister().await;
    reg.deregister().await;
}

#[tokio::test]
async fn registration_survives_an_etcd_restart() {
    init_tracing();
    let mut etcd = Etcd::start().await;
    let reg = register_local(&serve_options(&etcd, "user")).await;
    let key = reg.key().to_owned();
    etcd.stop();
    // Down for longer than the 2 s TTL: the lease expires inside etcd after restart.
    let down_since = Instant::now();
    let port_free = || std::net::TcpStream::connect(etcd.endpoint()).is_err();
    assert!(port_free());
    while down_since.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    etcd.restart().await;
    // Whatever etcd did with the old lease, the key must be (or come) back and stay.
    assert!(
        wait_until(Duration::from_secs(20), || async {
            value_at(&etcd, &key).await.is_some()
        })
        .await,
        "instance not registered again after etcd restart"
    );
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        if value_at(&etcd, &key).await.is_none() {
            // A lease that expired after restart may drop the key once; it must be repaired.
            assert!(
                wait_until(SOON, || async { value_at(&etcd, &key).await.is_some() }).await,
                "key lost after etcd restart and not repaired"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    reg.deregister().await;
}
