//! `UserService.Login` over Thrift.

use contract_tests::{Reply, Stack};
use rpc::music::base::ErrCode;

#[tokio::test]
async fn the_right_password_gives_the_user_id() {
    let stack = Stack::start().await;
    let id = stack.create("ann", "correct horse").await.user_id;
    assert_eq!(
        stack.login("ann", "correct horse").await,
        Reply::success(id)
    );
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let stack = Stack::start().await;
    stack.create("cat", "secret1").await;
    let wrong = stack.login("cat", "secret2").await;
    let expected = Reply::failure(ErrCode::AUTHORIZATION_FAILED, "wrong username or password");
    assert_eq!(wrong, expected);
    assert_eq!(stack.login("nobody", "secret1").await, expected);
}

/// A name or password no account can have is just a failed login: the answer says nothing
/// about the rules (the gateway, in front, names the field with a 400).
#[tokio::test]
async fn input_no_account_can_have_is_a_failed_login() {
    let stack = Stack::start().await;
    stack.create("cat", "secret1").await;
    let expected = Reply::failure(ErrCode::AUTHORIZATION_FAILED, "wrong username or password");
    for (username, password) in [("", "secret1"), ("cat", "short"), ("cat", &"x".repeat(65))] {
        assert_eq!(
            stack.login(username, password).await,
            expected,
            "{username:?}"
        );
    }
}
