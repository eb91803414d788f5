//! The stack on a three-member etcd cluster: killing the member every part talks to first
//! stops neither registration nor the gateway's discovery.

use contract_tests::{Database, Gateway, SOON, Service};
use rpc::music::base::ErrCode;
use test_support::{EtcdCluster, Http, wait_until};

async fn login(gateway: &Http) -> i64 {
    let body = r#"{"username": "alice", "password": "secret1"}"#;
    gateway.post_json("/api/user/login", body).await.code()
}

#[tokio::test]
async fn the_stack_outlives_an_etcd_member() {
    let mut cluster = EtcdCluster::start(3).await;
    let endpoints = cluster.endpoints();
    let database = Database::sqlite();
    let first = Service::start(&endpoints, &database.url()).await;
    let gateway = Gateway::start(&endpoints).await;
    let body = r#"{"username": "alice", "password": "secret1"}"#;
    let created = gateway.post_json("/api/user/register", body).await;
    assert_eq!(created.code(), i64::from(ErrCode::SUCCESS), "{created:?}");

    // Every part connected to the first endpoint first.
    cluster.kill(0);

    // A replica started now registers through the survivors; once the first replica is
    // gone, the gateway reaches the new one, which it can only know from the survivors.
    let _second = Service::start(&endpoints, &database.url()).await;
    first.stop().await;
    let served = wait_until(SOON, || async {
        login(&gateway).await == i64::from(ErrCode::SUCCESS)
    })
    .await;
    assert!(
        served,
        "the gateway did not reach the replica registered after the kill:\n{}",
        cluster.logs()
    );
}
