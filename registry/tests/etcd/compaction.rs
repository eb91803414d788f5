//! A watch that falls behind a compaction: etcd cancels it, the discoverer lists again.
//!
//! etcd only cancels a watch for compaction when the watcher is behind: etcd marks a watcher
//! whose stream cannot take more events as slow, keeps its position, and when it catches up
//! after the revisions it missed were compacted, answers "compacted" instead of the events.
//! A proxy that stops forwarding makes the discoverer's watch that slow while its connection
//! stays open (so nothing else, like a reconnect, can hide the compaction path).

use std::time::{Duration, Instant};

use etcd_client::CompactionOptions;
use test_support::{Etcd, TcpProxy, wait_until};
use volo_etcd::EtcdDiscover;

use crate::common::*;

/// A registry-etcd record for an address nobody listens on, padded to `pad` bytes.
fn filler_record(address: &str, pad: usize) -> String {
    serde_json::json!({
        "network": "tcp",
        "address": address,
        "weight": 10,
        "tags": {"pad": "x".repeat(pad)},
    })
    .to_string()
}

#[tokio::test]
async fn a_watch_behind_a_compaction_lists_again() {
    let etcd = Etcd::start().await;
    let proxy = TcpProxy::start(etcd.endpoint().parse().unwrap())
        .await
        .unwrap();
    let first = register_local(&serve_options(&etcd, "user")).await;

    let (logs, _guard) = LogCapture::start();
    let mut through_proxy = etcd_options(&etcd);
    through_proxy.endpoints = vec![proxy.endpoint()];
    let discover = EtcdDiscover::new(through_proxy);
    assert_eq!(
        addresses(&discover.instances("user").await.unwrap()),
        [first.address()]
    );

    // The watch is live (not only the first list): a put reaches the discoverer.
    let mut client = raw_client(&etcd).await;
    let filler = "kitex/registry-etcd/user/192.0.2.1:1";
    client
        .put(filler, filler_record("192.0.2.1:1", 0), None)
        .await
        .unwrap();
    assert!(
        wait_until(SOON, || async {
            discover.instances("user").await.unwrap().len() == 2
        })
        .await,
        "the watch did not deliver a put"
    );

    // Stall the discoverer's connection and flood its prefix until etcd gives up pushing to
    // its watch (etcd_debugging_mvcc_slow_watcher_total counts such watchers).
    proxy.pause();
    let started = Instant::now();
    let mut puts = 0;
    let slow = loop {
        // A few large values fill the HTTP/2 window, then many small ones etcd's queue.
        let pad = if puts < 16 { 256 * 1024 } else { 16 };
        client
            .put(filler, filler_record("192.0.2.1:1", pad), None)
            .await
            .unwrap();
        puts += 1;
        if puts % 16 == 0 {
            let slow = etcd
                .metric("etcd_debugging_mvcc_slow_watcher_total")
                .await
                .unwrap_or(0.0);
            if slow >= 1.0 {
                break true;
            }
        }
        if started.elapsed() > Duration::from_secs(8) {
            break false;
        }
    };
    eprintln!("watcher slow after {puts} puts in {:?}", started.elapsed());
    assert!(slow, "etcd never marked the stalled watch as slow");

    // What the discoverer must end with: `second` only. Then compact past all of it.
    let second = register_local(&serve_options(&etcd, "user")).await;
    first.deregister().await;
    client.delete(filler, None).await.unwrap();
    let revision = client
        .get("x", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    client
        .compact(revision, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    proxy.resume();

    let caught_up = wait_until(SOON, || async {
        addresses(&discover.instances("user").await.unwrap()) == [second.address()]
    })
    .await;
    let log = logs.text();
    assert!(
        caught_up,
        "discoverer did not end with the second instance only: {:?}\n{log}",
        discover.instances("user").await
    );
    assert!(
        log.contains("watch canceled: revision compacted up to"),
        "the compaction path did not run:\n{log}"
    );
    second.deregister().await;
}
