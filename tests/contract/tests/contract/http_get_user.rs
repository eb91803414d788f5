//! `GET /api/user/:user_id` through the gateway: a profile, for callers with a valid token.

use std::time::Duration;

use contract_tests::{Gateway, SignedUp, Stack, jwt};
use rpc::music::base::ErrCode;
use rpc::runtime::unix_now;

#[tokio::test]
async fn a_logged_in_caller_gets_a_profile() {
    let stack = Stack::start().await;
    let SignedUp { id, token } = stack.http_signed_up("alice").await;
    let other = stack.http_signed_up("bob").await.id;
    for (user_id, name) in [(id, "alice"), (other, "bob")] {
        let answer = stack.http_user(&user_id.to_string(), Some(&token)).await;
        assert_eq!(answer.status.as_u16(), 200, "{answer:?}");
        assert_eq!(answer.code(), i64::from(ErrCode::SUCCESS), "{answer:?}");
        let user = &answer.json["data"]["user"];
        assert_eq!(
            (user["user_id"].as_i64(), user["username"].as_str()),
            (Some(user_id), Some(name))
        );
        assert!(
            user["created_at"].as_i64().is_some_and(|t| t > 0),
            "{answer:?}"
        );
    }
}

#[tokio::test]
async fn missing_forged_and_expired_tokens_are_401() {
    let stack = Stack::start().await;
    let id = stack.http_signed_up("bob").await.id;
    let forger = gateway::Jwt::new(
        b"not-the-gateway-secret-but-long-enough",
        Duration::from_secs(60),
    )
    .unwrap();
    let (forged, _) = forger.issue(&id.to_string()).unwrap();
    let now = unix_now().as_secs();
    let expired = jwt()
        .issue_with(&id.to_string(), now - 7200, now - 60)
        .unwrap();
    for token in [None, Some(forged.as_str()), Some(expired.as_str())] {
        let answer = stack.http_user(&id.to_string(), token).await;
        assert_eq!(answer.status.as_u16(), 401, "{token:?}: {answer:?}");
        assert_eq!(
            answer.code(),
            i64::from(ErrCode::AUTHORIZATION_FAILED),
            "{answer:?}"
        );
        assert!(answer.json["data"].is_null(), "{answer:?}");
    }
}

#[tokio::test]
async fn an_unknown_id_is_10002_without_data() {
    let stack = Stack::start().await;
    let token = stack.http_signed_up("alice").await.token;
    let answer = stack.http_user("424242", Some(&token)).await;
    assert_eq!(answer.status.as_u16(), 200, "{answer:?}");
    assert_eq!(
        answer.json,
        serde_json::json!({
            "code": i64::from(ErrCode::PARAM_ERR),
            "message": "no user with id 424242",
            "data": null,
        })
    );
}

#[tokio::test]
async fn a_bad_id_in_the_path_is_400() {
    let stack = Stack::start().await;
    let token = stack.http_signed_up("alice").await.token;
    for bad in ["abc", "0", "99999999999999999999"] {
        let answer = stack.http_user(bad, Some(&token)).await;
        assert!(
            answer.assert_error(400).contains("user_id"),
            "{bad}: {answer:?}"
        );
    }
}

/// Gateways keep no state: behind a load balancer, a token issued by one is accepted by any
/// other with the same secret.
#[tokio::test]
async fn a_token_from_one_gateway_is_accepted_by_another() {
    let stack = Stack::start().await;
    let SignedUp { id, token } = stack.http_signed_up("alice").await;
    let other = Gateway::start(&stack.endpoints()).await;
    let answer = other
        .get(
            &format!("/api/user/{id}"),
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await;
    assert_eq!(answer.code(), i64::from(ErrCode::SUCCESS), "{answer:?}");
    assert_eq!(answer.json["data"]["user"]["username"], "alice");
}
