//! `UserService.GetUser` over Thrift.

use std::time::{SystemTime, UNIX_EPOCH};

use contract_tests::Stack;
use rpc::music::base::ErrCode;

#[tokio::test]
async fn a_registered_user_has_a_profile() {
    let stack = Stack::start().await;
    let id = stack.create("ann", "correct horse").await.user_id;
    let id = id.expect("an id");
    let resp = stack.get_user(id).await;
    assert_eq!(resp.base_resp.status_code, i64::from(ErrCode::SUCCESS));
    assert!(resp.base_resp.service_time > 0, "service_time is set");
    let user = resp.user.expect("a profile");
    assert_eq!((user.user_id, user.username.as_str()), (id, "ann"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (now - 60..=now + 1).contains(&user.created_at),
        "created_at is Unix seconds: {}",
        user.created_at
    );
}

#[tokio::test]
async fn an_unknown_id_is_param_err() {
    let stack = Stack::start().await;
    let resp = stack.get_user(424242).await;
    assert_eq!(resp.base_resp.status_code, i64::from(ErrCode::PARAM_ERR));
    assert_eq!(resp.base_resp.status_message, "no user with id 424242");
    assert!(resp.user.is_none());
}

#[tokio::test]
async fn a_non_positive_id_is_param_err() {
    let stack = Stack::start().await;
    for id in [0, -1] {
        let resp = stack.get_user(id).await;
        assert_eq!(
            resp.base_resp.status_code,
            i64::from(ErrCode::PARAM_ERR),
            "{id}"
        );
        assert!(
            resp.base_resp.status_message.contains("`user_id`"),
            "{}",
            resp.base_resp.status_message
        );
    }
}
