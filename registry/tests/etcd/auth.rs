//! etcd with authentication: credentials are used, and refusals are errors, not silence.

use test_support::Etcd;
use volo_etcd::{Credentials, Error, EtcdDiscover};

use crate::common::*;

/// Creates `root` with `password` and enables auth, as an operator would.
async fn enable_auth(etcd: &Etcd, password: &str) {
    let mut client = raw_client(etcd).await;
    client.user_add("root", password, None).await.unwrap();
    let _ = client.role_add("root").await; // exists already on some versions
    client.user_grant_role("root", "root").await.unwrap();
    client.auth_enable().await.unwrap();
}

#[tokio::test]
async fn credentials_are_used_and_bad_ones_rejected() {
    init_tracing();
    let etcd = Etcd::start().await;
    enable_auth(&etcd, "s3cret").await;

    let mut options = serve_options(&etcd, "user");
    options.etcd.auth = Some(Credentials::new("root", "s3cret"));
    let reg = register_local(&options).await;
    let found = EtcdDiscover::new(options.etcd.clone())
        .instances("user")
        .await
        .unwrap();
    assert_eq!(addresses(&found), [reg.address()]);

    let mut wrong = options.clone();
    wrong.etcd.auth = Some(Credentials::new("root", "nope"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = volo_etcd::announce(listener, &wrong, volo_etcd::Shutdown::never())
        .await
        .expect_err("wrong password must fail");
    assert!(matches!(err, Error::Auth { .. }), "{err}");
    assert!(!err.to_string().contains("nope"), "password leaked: {err}");

    let mut anonymous = options.clone();
    anonymous.etcd.auth = None;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = volo_etcd::announce(listener, &anonymous, volo_etcd::Shutdown::never())
        .await
        .expect_err("missing credentials must fail");
    assert!(matches!(err, Error::Refused { .. }), "{err}");

    reg.deregister().await;
}
