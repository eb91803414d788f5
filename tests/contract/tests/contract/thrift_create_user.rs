//! `UserService.CreateUser` over Thrift.

use contract_tests::{Reply, Stack};
use rpc::music::base::ErrCode;

#[tokio::test]
async fn a_new_name_is_registered() {
    let stack = Stack::start().await;
    let created = stack.create("ann", "correct horse").await;
    let id = created.user_id;
    assert_eq!(created, Reply::success(id));
    assert!(id.is_some_and(|id| id > 0), "a positive user id: {id:?}");
    let second = stack.create("ann2", "correct horse").await.user_id;
    assert_ne!(id, second, "ids are unique");
}

#[tokio::test]
async fn a_taken_name_is_user_already_exist() {
    let stack = Stack::start().await;
    assert_eq!(
        stack.create("bob", "secret1").await.code,
        i64::from(ErrCode::SUCCESS)
    );
    assert_eq!(
        stack.create("bob", "another1").await,
        Reply::failure(ErrCode::USER_ALREADY_EXIST, "username is already taken")
    );
}

#[tokio::test]
async fn the_service_validates_input_itself() {
    let stack = Stack::start().await;
    assert_eq!(
        stack.create("dan", "short").await,
        Reply::failure(
            ErrCode::PARAM_ERR,
            "invalid field `password`: must satisfy `len($) >= 6 && len($) <= 64`"
        )
    );
    let message = "invalid field `username`: must satisfy `mblen($) >= 1 && mblen($) <= 32`";
    for username in ["", &"é".repeat(33)] {
        assert_eq!(
            stack.create(username, "long enough").await,
            Reply::failure(ErrCode::PARAM_ERR, message)
        );
    }
    // 32 characters of two bytes each: counted in characters, accepted.
    assert_eq!(
        stack.create(&"é".repeat(32), "long enough").await.code,
        i64::from(ErrCode::SUCCESS)
    );
}

#[tokio::test]
async fn concurrent_registrations_of_one_name_give_exactly_one_success() {
    let stack = Stack::start().await;
    let codes = stack.create_concurrently("eve", 8).await;
    let mut expected = vec![i64::from(ErrCode::USER_ALREADY_EXIST); 8];
    expected[0] = i64::from(ErrCode::SUCCESS);
    assert_eq!(codes, expected);
}

#[tokio::test]
async fn an_internal_failure_is_service_err_without_detail() {
    let stack = Stack::start().await;
    // Break the database under the running service.
    let db = sqlx::SqlitePool::connect(&stack.database.url())
        .await
        .unwrap();
    sqlx::query("DROP TABLE users").execute(&db).await.unwrap();
    assert_eq!(
        stack.create("kim", "secret1").await,
        Reply::failure(ErrCode::SERVICE_ERR, "internal error; try again later")
    );
}
