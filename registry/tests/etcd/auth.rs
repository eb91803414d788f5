//! etcd with authentication: credentials are used, and refusals are errors, not silence.

use test_support::Etcd;
use volo_etcd::{Credentials, Error, EtcdDiscover};

use crate::common::*;

#[tokio::test]
async fn credentials_are_used_and_bad_ones_rejected() {
    init_tracing();
    let etcd = Etcd::builder().auth("s3cret").start().await;

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
    let err = announce_error(&wrong).await;
    assert!(matches!(err, Error::Auth { .. }), "{err}");
    assert!(!err.to_string().contains("nope"), "password leaked: {err}");

    let mut anonymous = options.clone();
    anonymous.etcd.auth = None;
    let err = announce_error(&anonymous).await;
    assert!(matches!(err, Error::Refused { .. }), "{err}");

    reg.deregister().await;
}
