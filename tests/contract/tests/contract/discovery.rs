//! Replicas come and go through etcd; the generated client and the gateway follow.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use contract_tests::{Database, Gateway, SOON, Service, Stack};
use rpc::music::base::ErrCode;
use test_support::{Etcd, wait_until};

#[tokio::test]
async fn a_stopped_service_leaves_etcd_before_its_stop_returns() {
    let stack = Stack::start().await;
    let key = stack.service.key();
    stack.service.stop().await;
    let resp = stack.etcd.client().await.get(key.as_str(), None).await;
    let resp = resp.unwrap();
    assert!(resp.kvs().is_empty(), "still registered under {key}");
}

#[tokio::test]
async fn a_service_started_after_the_gateway_is_found() {
    let etcd = Etcd::start().await;
    let endpoints = [etcd.endpoint()];
    let gateway = Gateway::start(&endpoints).await;
    let login = r#"{"username": "nobody", "password": "secret1"}"#;
    let before = gateway.post_json("/api/user/login", login).await;
    assert_eq!(
        (before.status.as_u16(), before.code()),
        (200, i64::from(ErrCode::SERVICE_ERR)),
        "no instance yet: {before:?}"
    );

    let database = Database::sqlite();
    let _service = Service::start(&endpoints, &database.url()).await;
    // The instance arrives through the etcd watch: an unknown user then gets 10004.
    let found = wait_until(SOON, || {
        let gateway = &gateway;
        async move {
            let answer = gateway.post_json("/api/user/login", login).await;
            answer.code() == i64::from(ErrCode::AUTHORIZATION_FAILED)
        }
    })
    .await;
    assert!(
        found,
        "the gateway never reached the service that started late"
    );
}

/// A replica stopped as on SIGTERM deregisters first and drains: callers going through the
/// gateway all the while get answers, never an error.
#[tokio::test]
async fn stopping_one_of_two_replicas_loses_no_request() {
    let stack = Arc::new(Stack::start().await);
    let replica = Service::start(&stack.endpoints(), &stack.database.url()).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (stack, calls, done) = (stack.clone(), calls.clone(), done.clone());
            tokio::spawn(async move {
                let mut codes = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    codes.push(stack.http_login("nobody", "secret1").await.code());
                    calls.fetch_add(1, Ordering::Relaxed);
                }
                codes
            })
        })
        .collect();
    let calls_reach = |n: usize| {
        let calls = calls.clone();
        wait_until(SOON, move || {
            let calls = calls.clone();
            async move { calls.load(Ordering::Relaxed) >= n }
        })
    };
    assert!(calls_reach(20).await, "the callers got no answers");
    replica.stop().await;
    let after_stop = calls.load(Ordering::Relaxed);
    assert!(
        calls_reach(after_stop + 20).await,
        "no answers after the stop"
    );
    done.store(true, Ordering::Relaxed);
    for caller in callers {
        let codes = caller.await.expect("no panic");
        let expected = i64::from(ErrCode::AUTHORIZATION_FAILED);
        assert!(codes.iter().all(|c| *c == expected), "{codes:?}");
    }
}
