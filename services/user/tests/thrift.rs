//! UserService's contract over Thrift, on the default embedded SQLite.

mod common;

use ::user_service::Store;
use common::*;
use rpc::music::service::user::GetUserRequest;
use tokio::{io::AsyncWriteExt, net::TcpStream};

#[tokio::test]
async fn register_login_and_fetch_a_profile() {
    let stack = Stack::start().await;
    let (code, message, id) = stack.create("ann", "correct horse").await;
    assert_eq!((code, message.as_str()), (SUCCESS, "Success"));
    let id = id.expect("an id");

    let (code, _, logged_in) = stack.login("ann", "correct horse").await;
    assert_eq!((code, logged_in), (SUCCESS, Some(id)));

    let resp = stack
        .client
        .get_user(GetUserRequest { user_id: id })
        .await
        .unwrap();
    assert_eq!(resp.base_resp.status_code, SUCCESS);
    let user = resp.user.expect("a profile");
    assert_eq!((user.user_id, user.username.as_str()), (id, "ann"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (now - 60..=now + 1).contains(&user.created_at),
        "created_at is Unix seconds: {}",
        user.created_at
    );
    assert!(resp.base_resp.service_time > 0);
    stack.service.stop().await;
}

#[tokio::test]
async fn a_taken_name_is_user_already_exist() {
    let stack = Stack::start().await;
    assert_eq!(stack.create("bob", "secret1").await.0, SUCCESS);
    let (code, message, id) = stack.create("bob", "another1").await;
    assert_eq!(
        (code, message.as_str(), id),
        (USER_ALREADY_EXIST, "username is already taken", None)
    );
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let stack = Stack::start().await;
    stack.create("cat", "secret1").await;
    let wrong = stack.login("cat", "secret2").await;
    let unknown = stack.login("nobody", "secret1").await;
    assert_eq!(
        wrong,
        (
            AUTHORIZATION_FAILED,
            "wrong username or password".to_string(),
            None
        )
    );
    assert_eq!(unknown, wrong);
}

#[tokio::test]
async fn the_service_validates_input_itself() {
    let stack = Stack::start().await;
    let (code, message, _) = stack.create("dan", "short").await;
    assert_eq!(code, PARAM_ERR);
    assert_eq!(
        message,
        "invalid field `password`: must satisfy `len($) >= 6 && len($) <= 64`"
    );
    let (code, message, _) = stack.create("", "long enough").await;
    assert_eq!(
        (code, message.as_str()),
        (
            PARAM_ERR,
            "invalid field `username`: must satisfy `mblen($) >= 1 && mblen($) <= 32`"
        )
    );
    let resp = stack
        .client
        .get_user(GetUserRequest { user_id: 0 })
        .await
        .unwrap();
    assert_eq!(resp.base_resp.status_code, PARAM_ERR);
}

#[tokio::test]
async fn an_unknown_id_is_param_err() {
    let stack = Stack::start().await;
    let resp = stack
        .client
        .get_user(GetUserRequest { user_id: 424242 })
        .await
        .unwrap();
    assert_eq!(resp.base_resp.status_code, PARAM_ERR);
    assert_eq!(resp.base_resp.status_message, "no user with id 424242");
    assert!(resp.user.is_none());
}

#[tokio::test]
async fn concurrent_registrations_of_one_name_give_exactly_one_success() {
    let stack = Stack::start().await;
    assert_one_of_concurrent_registrations_wins(&stack).await;
}

#[tokio::test]
async fn passwords_are_stored_as_argon2id_hashes_only() {
    let stack = Stack::start().await;
    stack.create("fay", "plain text secret").await;
    let raw = std::fs::read(stack.db()).unwrap();
    let wal = std::fs::read(stack.db().with_extension("db-wal")).unwrap_or_default();
    for bytes in [&raw, &wal] {
        assert!(
            !String::from_utf8_lossy(bytes).contains("plain text secret"),
            "the password is in the database file"
        );
    }
    let store = Store::open(&format!("sqlite://{}", stack.db().display()))
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
    let (_, _, id) = stack.create("gus", "secret1").await;
    stack.restart_service().await;
    let (code, _, logged_in) = stack.login("gus", "secret1").await;
    assert_eq!((code, logged_in), (SUCCESS, id));
}

#[tokio::test]
async fn a_garbage_frame_closes_that_connection_only() {
    let stack = Stack::start().await;
    let mut conn = TcpStream::connect(stack.service.addr).await.unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nthis is not thrift at all")
        .await
        .unwrap();
    assert!(
        closed(&mut conn).await,
        "the server closes a connection that speaks garbage"
    );
    assert_eq!(
        stack.create("hal", "secret1").await.0,
        SUCCESS,
        "other callers are served"
    );
}

#[tokio::test]
async fn an_oversized_frame_is_refused() {
    let stack = Stack::start().await;
    let mut conn = TcpStream::connect(stack.service.addr).await.unwrap();
    // A framed-transport header announcing 64 MiB (volo-thrift's limit is 16 MiB), then a
    // binary-protocol message start so the framing is recognised.
    let mut frame = (64u32 << 20).to_be_bytes().to_vec();
    frame.extend_from_slice(&[0x80, 0x01, 0x00, 0x01]);
    conn.write_all(&frame).await.unwrap();
    assert!(
        closed(&mut conn).await,
        "the server refuses the frame instead of waiting for 64 MiB"
    );
    assert_eq!(stack.create("ivy", "secret1").await.0, SUCCESS);
}

#[tokio::test]
async fn a_stopped_service_leaves_etcd_at_once() {
    let stack = Stack::start().await;
    let key = stack.service.key();
    stack.service.stop().await;
    let resp = stack
        .etcd
        .client()
        .await
        .get(key.as_str(), None)
        .await
        .unwrap();
    assert!(
        resp.kvs().is_empty(),
        "deregistered before the stop returned"
    );
}

#[tokio::test]
async fn an_internal_failure_is_service_err_without_detail() {
    let stack = Stack::start().await;
    // Break the database under the running service.
    let db = sqlx::SqlitePool::connect(&stack.database.url())
        .await
        .unwrap();
    sqlx::query("DROP TABLE users").execute(&db).await.unwrap();
    let (code, message, id) = stack.create("kim", "secret1").await;
    assert_eq!(
        (code, message.as_str(), id),
        (10001, "internal error; try again later", None)
    );
}
