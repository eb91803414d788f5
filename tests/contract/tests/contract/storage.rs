//! What the service keeps: on the default SQLite file and on a shared PostgreSQL.

use contract_tests::{Database, Stack};
use rpc::music::base::ErrCode;

#[tokio::test]
async fn passwords_are_stored_as_argon2id_hashes_only() {
    let stack = Stack::start().await;
    stack.create("fay", "plain text secret").await;
    let file = stack.database.sqlite_file();
    let wal = file.with_extension("db-wal");
    for bytes in [
        std::fs::read(&file).unwrap(),
        std::fs::read(wal).unwrap_or_default(),
    ] {
        assert!(
            !String::from_utf8_lossy(&bytes).contains("plain text secret"),
            "the password is in the database file"
        );
    }
    let store = user_service::Store::open(&stack.database.url())
        .await
        .unwrap();
    let user = store.user_by_name("fay").await.unwrap().expect("stored");
    assert!(
        user.password_hash.starts_with("$argon2id$v=19$"),
        "{}",
        user.password_hash
    );
}

#[tokio::test]
async fn a_restart_keeps_the_data() {
    let mut stack = Stack::start().await;
    let id = stack.create("gus", "secret1").await.user_id;
    stack.restart_service().await;
    assert_eq!(stack.login("gus", "secret1").await.user_id, id);
}

#[tokio::test]
async fn the_contract_holds_on_postgres() {
    let stack = Stack::start_on(Database::postgres().await).await;
    let created = stack.create("ann", "correct horse").await;
    assert_eq!(created.code, i64::from(ErrCode::SUCCESS));
    let id = created.user_id;
    assert_eq!(stack.login("ann", "correct horse").await.user_id, id);
    assert_eq!(
        stack.create("ann", "other pw").await.code,
        i64::from(ErrCode::USER_ALREADY_EXIST)
    );
    assert_eq!(
        stack.login("ann", "wrong pw").await.code,
        i64::from(ErrCode::AUTHORIZATION_FAILED)
    );
    let profile = stack.get_user(id.expect("an id")).await;
    assert_eq!(profile.user.expect("a profile").username, "ann");
}

/// Two replicas on one PostgreSQL: a name registered concurrently through both is taken
/// once, and what one replica wrote the other serves after the first is gone.
#[tokio::test]
async fn replicas_share_one_postgres() {
    let mut stack = Stack::start_on(Database::postgres().await).await;
    stack.add_replica().await;
    let codes = stack.create_concurrently("eve", 8).await;
    let mut expected = vec![i64::from(ErrCode::USER_ALREADY_EXIST); 8];
    expected[0] = i64::from(ErrCode::SUCCESS);
    assert_eq!(codes, expected);

    let id = stack.create("gus", "secret1").await.user_id;
    stack.restart_service().await;
    let replica = stack.replicas.pop().expect("the second replica");
    replica.stop().await;
    assert_eq!(stack.login("gus", "secret1").await.user_id, id);
}

/// A registration whose answer was lost (its connection died after the insert) and that is
/// retried, by the gateway's client on another replica or by the HTTP client itself, carries
/// the same request id: it gets its own user id back, where another id reads "taken".
#[tokio::test]
async fn a_registration_retried_with_its_request_id_gets_its_user_id_back() {
    use volo_http::http::Method;

    let stack = Stack::start().await;
    let register = async |request_id: &str| {
        let body = r#"{"username": "ida", "password": "secret1"}"#.as_bytes().to_vec();
        let headers = [
            ("content-type", "application/json"),
            ("x-request-id", request_id),
        ];
        (stack
            .gateway
            .send(Method::POST, "/api/user/register", &headers, Some(body)))
        .await
    };
    let first = register("reg-1").await;
    assert_eq!(first.code(), i64::from(ErrCode::SUCCESS), "{first:?}");
    let retried = register("reg-1").await;
    assert_eq!(retried.code(), i64::from(ErrCode::SUCCESS), "{retried:?}");
    assert_eq!(retried.json["data"], first.json["data"], "the same user");
    let another = register("reg-2").await;
    assert_eq!(
        another.code(),
        i64::from(ErrCode::USER_ALREADY_EXIST),
        "{another:?}"
    );
    // Without a request id (a caller that sends none), taken is taken.
    let taken = stack.create("ida", "secret1").await;
    assert_eq!(taken.code, i64::from(ErrCode::USER_ALREADY_EXIST));
}
