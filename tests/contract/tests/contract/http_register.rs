//! `POST /api/user/register` through the gateway.

use contract_tests::Stack;
use rpc::music::base::ErrCode;

#[tokio::test]
async fn a_new_name_is_registered() {
    let stack = Stack::start().await;
    let created = stack.http_register("alice", "secret1").await;
    assert_eq!(created.status.as_u16(), 200, "{created:?}");
    assert_eq!(created.content_type.as_deref(), Some("application/json"));
    assert!(
        created.request_id.is_some(),
        "every answer has an x-request-id"
    );
    assert_eq!(created.code(), i64::from(ErrCode::SUCCESS));
    assert_eq!(created.json["message"], "Success");
    let id = created.json["data"]["user_id"].as_i64().expect("a user id");
    // The same user, seen over Thrift.
    let profile = stack.get_user(id).await.user.expect("a profile");
    assert_eq!(profile.username, "alice");
}

#[tokio::test]
async fn a_taken_name_is_10003_without_data() {
    let stack = Stack::start().await;
    stack.http_register("alice", "secret1").await;
    let duplicate = stack.http_register("alice", "another1").await;
    assert_eq!(duplicate.status.as_u16(), 200, "{duplicate:?}");
    assert_eq!(
        duplicate.json,
        serde_json::json!({
            "code": i64::from(ErrCode::USER_ALREADY_EXIST),
            "message": "username is already taken",
            "data": null,
        })
    );
}

#[tokio::test]
async fn invalid_input_is_400_naming_the_field_and_registers_nothing() {
    let stack = Stack::start().await;
    let short = stack.http_register("carol", "short").await;
    assert!(short.assert_error(400).contains("`password`"), "{short:?}");
    let empty = stack.http_register("", "secret1").await;
    assert!(empty.assert_error(400).contains("`username`"), "{empty:?}");
    assert_eq!(
        stack.http_register("carol", "secret1").await.code(),
        i64::from(ErrCode::SUCCESS),
        "the refused attempts did not register carol"
    );
}

#[tokio::test]
async fn malformed_and_oversized_bodies_never_reach_the_service() {
    let stack = Stack::start().await;
    let path = "/api/user/register";
    let truncated = stack.gateway.post_json(path, "{\"username\": ").await;
    assert!(
        truncated.assert_error(400).contains("JSON"),
        "{truncated:?}"
    );
    let missing = stack
        .gateway
        .post_json(path, r#"{"username": "carol"}"#)
        .await;
    assert!(
        missing.assert_error(400).contains("password"),
        "{missing:?}"
    );
    let wrong_type = r#"{"username": 7, "password": "secret1"}"#;
    let wrong_type = stack.gateway.post_json(path, wrong_type).await;
    assert!(
        wrong_type.assert_error(400).contains("username"),
        "{wrong_type:?}"
    );
    let big = format!(
        r#"{{"username": "carol", "password": "{}"}}"#,
        "x".repeat(2 << 20)
    );
    stack.gateway.post_json(path, &big).await.assert_error(413);
    let body = br#"{"username": "carol", "password": "secret1"}"#.to_vec();
    let text = stack
        .gateway
        .send(
            volo_http::http::Method::POST,
            path,
            &[("content-type", "text/plain")],
            Some(body),
        )
        .await;
    text.assert_error(415);
    assert_eq!(
        stack.http_register("carol", "secret1").await.code(),
        i64::from(ErrCode::SUCCESS),
        "none of them registered carol"
    );
}
