//! The same contract on PostgreSQL, the store for several replicas: a throwaway server per test.

mod common;

use common::*;
use test_support::Postgres;

async fn stack() -> Stack {
    Stack::start_on(Database::Postgres(Postgres::start().await)).await
}

#[tokio::test]
async fn register_login_fetch_and_duplicates() {
    let stack = stack().await;
    let (code, _, id) = stack.create("ann", "correct horse").await;
    assert_eq!(code, SUCCESS);
    assert_eq!(stack.login("ann", "correct horse").await.2, id);
    assert_eq!(stack.create("ann", "other pw").await.0, USER_ALREADY_EXIST);
    assert_eq!(stack.login("ann", "wrong pw").await.0, AUTHORIZATION_FAILED);
}

#[tokio::test]
async fn concurrent_registrations_of_one_name_give_exactly_one_success() {
    let stack = stack().await;
    assert_one_of_concurrent_registrations_wins(&stack).await;
}

#[tokio::test]
async fn a_restart_keeps_the_data() {
    let mut stack = stack().await;
    let (_, _, id) = stack.create("gus", "secret1").await;
    stack.restart_service().await;
    assert_eq!(
        stack.login("gus", "secret1").await,
        (SUCCESS, "Success".to_string(), id)
    );
}
