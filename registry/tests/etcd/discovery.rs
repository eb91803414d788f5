//! Client side: lists, pushes changes, reads Go Kitex records.

use std::{sync::Arc, time::Duration};

use test_support::{Etcd, wait_until};
use volo::{
    context::Endpoint,
    discovery::Discover,
    loadbalance::{LoadBalance, random::WeightedRandomBalance},
};
use volo_etcd::EtcdDiscover;

use crate::common::*;

#[tokio::test]
async fn registered_instance_is_resolved() {
    init_tracing();
    let etcd = Etcd::start().await;
    let mut options = serve_options(&etcd, "user");
    options.register.weight = 3;
    options.register.tags.insert("zone".into(), "a".into());
    let reg = register_local(&options).await;

    let discover = EtcdDiscover::new(etcd_options(&etcd));
    let endpoint = Endpoint::new("user".into());
    assert_eq!(discover.key(&endpoint), "user");
    let found = discover.discover(&endpoint).await.expect("discover");
    assert_eq!(addresses(&found), [reg.address()]);
    assert_eq!(found[0].weight, 3);
    assert_eq!(found[0].tags.get("zone").map(|v| v.as_ref()), Some("a"));

    // Another service with a common name prefix is not mixed in.
    let other = register_local(&serve_options(&etcd, "user-admin")).await;
    let found = discover.instances("user").await.unwrap();
    assert_eq!(addresses(&found), [reg.address()]);
    other.deregister().await;
    reg.deregister().await;
}

#[tokio::test]
async fn kitex_records_written_by_go_are_resolved() {
    init_tracing();
    let etcd = Etcd::start().await;
    let mut raw = raw_client(&etcd).await;
    // What registry-etcd writes for a Kitex server without weight or tags...
    raw.put(
        "kitex/registry-etcd/note/10.0.0.5:9000",
        r#"{"network":"tcp","address":"10.0.0.5:9000","weight":0,"tags":null}"#,
        None,
    )
    .await
    .unwrap();
    // ...one with both...
    raw.put(
        "kitex/registry-etcd/note/10.0.0.6:9000",
        r#"{"network":"tcp","address":"10.0.0.6:9000","weight":20,"tags":{"stage":"canary"}}"#,
        None,
    )
    .await
    .unwrap();
    // ...and garbage, which is skipped with a warning.
    raw.put("kitex/registry-etcd/note/broken", "{not json", None)
        .await
        .unwrap();

    let discover = EtcdDiscover::new(etcd_options(&etcd));
    let found = discover.instances("note").await.unwrap();
    assert_eq!(
        addresses(&found),
        [
            "10.0.0.5:9000".parse().unwrap(),
            "10.0.0.6:9000".parse().unwrap()
        ]
    );
    assert_eq!(found[0].weight, 10, "weight 0 reads as the default 10");
    assert!(found[0].tags.is_empty());
    assert_eq!(found[1].weight, 20);
    assert_eq!(
        found[1].tags.get("stage").map(|v| v.as_ref()),
        Some("canary")
    );
}

#[tokio::test]
async fn second_instance_reaches_the_watcher_as_a_change() {
    init_tracing();
    let etcd = Etcd::start().await;
    let first = register_local(&serve_options(&etcd, "user")).await;
    let discover = EtcdDiscover::new(etcd_options(&etcd));
    let mut changes = discover.watch(None).expect("watch is supported");
    let found = discover
        .discover(&Endpoint::new("user".into()))
        .await
        .unwrap();
    assert_eq!(addresses(&found), [first.address()]);

    let second = register_local(&serve_options(&etcd, "user")).await;
    let change = tokio::time::timeout(SOON, async {
        loop {
            let c = changes.recv().await.expect("channel open");
            if c.key == "user" && c.all.len() == 2 {
                return c;
            }
        }
    })
    .await
    .expect("a Change with both instances");
    assert_eq!(addresses(&change.added), [second.address()]);
    let mut all = addresses(&change.all);
    all.sort();
    let mut expected = vec![first.address(), second.address()];
    expected.sort();
    assert_eq!(all, expected);

    // Deregistering pushes the removal too.
    second.deregister().await;
    let change = tokio::time::timeout(SOON, async {
        loop {
            let c = changes.recv().await.expect("channel open");
            if c.key == "user" && c.all.len() == 1 {
                return c;
            }
        }
    })
    .await
    .expect("a Change without the deregistered instance");
    assert_eq!(addresses(&change.all), [first.address()]);
    first.deregister().await;
}

#[tokio::test]
async fn volo_balancer_follows_the_watch_from_an_empty_start() {
    init_tracing();
    let etcd = Etcd::start().await;
    let discover = EtcdDiscover::shared(&etcd_options(&etcd));
    // Wire the balancer exactly as volo's LoadBalanceService does.
    let lb = Arc::new(WeightedRandomBalance::with_discover(&discover));
    let mut changes = discover.watch(None).unwrap();
    let lb2 = lb.clone();
    tokio::spawn(async move {
        while let Ok(change) = changes.recv().await {
            LoadBalance::<EtcdDiscover>::rebalance(&*lb2, change);
        }
    });
    let endpoint = Endpoint::new("user".into());
    // Zero instances at start is fine...
    let picked: Vec<_> = lb.get_picker(&endpoint, &discover).await.unwrap().collect();
    assert!(picked.is_empty());
    // ...and the balancer's cached (empty) list is updated by the watch.
    let reg = register_local(&serve_options(&etcd, "user")).await;
    assert!(
        wait_until(SOON, || async {
            let picked: Vec<_> = lb.get_picker(&endpoint, &discover).await.unwrap().collect();
            picked.len() == 1
        })
        .await,
        "balancer never saw the new instance"
    );
    reg.deregister().await;
    assert!(
        wait_until(SOON, || async {
            lb.get_picker(&endpoint, &discover)
                .await
                .unwrap()
                .next()
                .is_none()
        })
        .await,
        "balancer kept the deregistered instance"
    );
}

#[tokio::test]
async fn shared_discoverers_share_one_watch() {
    let etcd = Etcd::start().await;
    let a = EtcdDiscover::shared(&etcd_options(&etcd));
    let b = EtcdDiscover::shared(&etcd_options(&etcd));
    let reg = register_local(&serve_options(&etcd, "user")).await;
    let mut changes = b.watch(None).unwrap();
    assert_eq!(a.instances("user").await.unwrap().len(), 1);
    // A change seen through `a`'s watch task arrives on `b`'s channel.
    reg.deregister().await;
    // (The first load was broadcast too; wait for the removal.)
    tokio::time::timeout(Duration::from_secs(10), async {
        while !changes.recv().await.unwrap().all.is_empty() {}
    })
    .await
    .expect("removal pushed to the other handle in time");
}

#[tokio::test]
async fn with_etcd_unreachable_and_nothing_known_discovery_fails_at_once() {
    init_tracing();
    // Nothing listens on port 1 of the loopback: every connect is refused at once. The dial
    // timeout is long, so an answer within the deadline below means nobody waited for it.
    let mut options = volo_etcd::EtcdOptions::with_endpoints(["127.0.0.1:1"]);
    options.dial_timeout = Duration::from_secs(120);
    let discover = EtcdDiscover::new(options);
    let endpoint = Endpoint::new("user".into());
    for attempt in 0..3 {
        let answer = tokio::time::timeout(Duration::from_secs(30), discover.discover(&endpoint));
        let error = answer
            .await
            .unwrap_or_else(|_| panic!("attempt {attempt} waited for the dial timeout"))
            .expect_err("no instances without etcd");
        assert!(error.to_string().contains("not loaded"), "{error}");
    }
}
