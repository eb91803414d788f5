//! `POST /api/user/login` through the gateway: a bearer token for the user.

use contract_tests::{Stack, jwt};
use rpc::music::base::ErrCode;
use rpc::runtime::unix_now;

#[tokio::test]
async fn the_right_password_gives_a_token_for_the_user() {
    let stack = Stack::start().await;
    let created = stack.http_register("alice", "secret1").await;
    let id = created.json["data"]["user_id"].as_i64().expect("a user id");

    let login = stack.http_login("alice", "secret1").await;
    assert_eq!(login.status.as_u16(), 200, "{login:?}");
    assert_eq!(login.code(), i64::from(ErrCode::SUCCESS), "{login:?}");
    let data = &login.json["data"];
    assert_eq!(data["user_id"], id);
    let token = data["token"].as_str().expect("a token");
    assert_eq!(jwt().verify(token).expect("signed").sub, id.to_string());
    let expires_at = data["expires_at"].as_u64().expect("an expiry");
    assert!(
        expires_at > unix_now().as_secs() + 23 * 3600,
        "the default lifetime is 24 h: {login:?}"
    );
}

#[tokio::test]
async fn wrong_password_and_unknown_user_are_10004_without_a_token() {
    let stack = Stack::start().await;
    stack.http_register("alice", "secret1").await;
    let expected = serde_json::json!({
        "code": i64::from(ErrCode::AUTHORIZATION_FAILED),
        "message": "wrong username or password",
        "data": null,
    });
    for (username, password) in [("alice", "wrong-password"), ("nobody", "secret1")] {
        let answer = stack.http_login(username, password).await;
        assert_eq!(answer.status.as_u16(), 200, "{answer:?}");
        assert_eq!(answer.json, expected, "{username}");
    }
}

#[tokio::test]
async fn invalid_input_is_400_naming_the_field() {
    let stack = Stack::start().await;
    let answer = stack.http_login("alice", "").await;
    assert!(
        answer.assert_error(400).contains("`password`"),
        "{answer:?}"
    );
}
