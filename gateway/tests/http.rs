//! In-process router tests: binding, validation and every error shape, through a real HTTP
//! client on 127.0.0.1. No service runs: requests that pass every check answer 10001.

use contract_tests::{Gateway, gateway_config, jwt};
use rpc::runtime::unix_now;
use volo_http::http::Method;

/// Nothing listens on port 1 of the loopback: every RPC fails.
fn no_etcd() -> [String; 1] {
    ["127.0.0.1:1".to_owned()]
}

async fn gateway() -> Gateway {
    Gateway::start_with(&gateway_config(&no_etcd(), &["--body-limit", "1KiB"])).await
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn healthz_answers_ok() {
    let gw = gateway().await;
    let a = gw.get("/healthz", &[]).await;
    assert_eq!(a.status.as_u16(), 200);
    assert_eq!(a.json, serde_json::json!({"status": "ok"}));
}

#[tokio::test]
async fn openapi_is_served_as_json() {
    let gw = gateway().await;
    let a = gw.get("/openapi.json", &[]).await;
    assert_eq!(a.status.as_u16(), 200);
    assert_eq!(a.content_type.as_deref(), Some("application/json"));
    assert_eq!(a.text, rpc::OPENAPI_JSON);
}

#[tokio::test]
async fn unknown_route_is_404_with_json() {
    let gw = gateway().await;
    gw.get("/api/nothing/here", &[]).await.assert_error(404);
    gw.post_json("/", "{}").await.assert_error(404);
}

#[tokio::test]
async fn wrong_method_is_405_with_json_and_allow() {
    let gw = gateway().await;
    for (method, path, allow) in [
        (Method::GET, "/api/user/register", "POST, OPTIONS"),
        (Method::POST, "/healthz", "GET, OPTIONS"),
        (Method::DELETE, "/api/user/1", "GET, OPTIONS"),
    ] {
        let a = gw.send(method, path, &[], None).await;
        a.assert_error(405);
        assert_eq!(a.headers["allow"], allow, "{path}: {a:?}");
    }
}

#[tokio::test]
async fn request_id_is_echoed_or_generated() {
    let gw = gateway().await;
    let a = gw.get("/healthz", &[("x-request-id", "abc-123")]).await;
    assert_eq!(a.request_id.as_deref(), Some("abc-123"));
    let b = gw.get("/healthz", &[]).await;
    assert!(b.request_id.is_some_and(|id| !id.is_empty()));
    let c = gw
        .get("/healthz", &[("x-request-id", "bad id with spaces")])
        .await;
    assert_ne!(c.request_id.as_deref(), Some("bad id with spaces"));
}

#[tokio::test]
async fn bad_json_is_400() {
    let gw = gateway().await;
    for body in [
        "{",
        "not json",
        "[1, 2]",
        "{\"username\": \"al\" \"password\": 1}",
    ] {
        let msg = gw
            .post_json("/api/user/register", body)
            .await
            .assert_error(400)
            .to_owned();
        assert!(msg.contains("JSON"), "{body}: {msg}");
    }
    let msg = gw
        .post_json("/api/user/register", "")
        .await
        .assert_error(400)
        .to_owned();
    assert!(msg.contains("empty"), "{msg}");
}

#[tokio::test]
async fn missing_field_is_400_naming_it() {
    let gw = gateway().await;
    let a = gw
        .post_json("/api/user/register", r#"{"username": "alice"}"#)
        .await;
    assert!(a.assert_error(400).contains("password"), "{a:?}");
}

#[tokio::test]
async fn wrong_type_is_400() {
    let gw = gateway().await;
    let a = gw
        .post_json(
            "/api/user/register",
            r#"{"username": 12, "password": "secret1"}"#,
        )
        .await;
    let msg = a.assert_error(400);
    assert!(
        msg.starts_with("invalid JSON body: field `username`: invalid type: integer `12`"),
        "the wrong-typed field is named: {a:?}"
    );
}

#[tokio::test]
async fn validation_failures_are_400_naming_the_field() {
    let gw = gateway().await;
    let a = gw
        .post_json(
            "/api/user/register",
            r#"{"username": "", "password": "secret1"}"#,
        )
        .await;
    assert!(a.assert_error(400).contains("`username`"), "{a:?}");
    let a = gw
        .post_json(
            "/api/user/login",
            r#"{"username": "alice", "password": "short"}"#,
        )
        .await;
    assert!(a.assert_error(400).contains("`password`"), "{a:?}");
}

#[tokio::test]
async fn path_parameters_are_bound_and_validated() {
    let gw = gateway().await;
    let (token, _) = jwt().issue("1").unwrap();
    let auth = bearer(&token);
    let a = gw.get("/api/user/abc", &[("authorization", &auth)]).await;
    assert!(a.assert_error(400).contains("user_id"), "{a:?}");
    let a = gw.get("/api/user/0", &[("authorization", &auth)]).await;
    assert!(a.assert_error(400).contains("`user_id`"), "{a:?}");
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let gw = gateway().await;
    let body = br#"{"username": "alice", "password": "secret1"}"#.to_vec();
    let a = gw
        .send(
            Method::POST,
            "/api/user/register",
            &[("content-type", "text/plain")],
            Some(body.clone()),
        )
        .await;
    a.assert_error(415);
    gw.send(Method::POST, "/api/user/login", &[], Some(body))
        .await
        .assert_error(415);
}

#[tokio::test]
async fn oversized_body_with_declared_length_is_413() {
    let gw = gateway().await;
    let body = format!(
        r#"{{"username": "{}", "password": "secret1"}}"#,
        "a".repeat(2000)
    );
    gw.post_json("/api/user/register", &body)
        .await
        .assert_error(413);
}

#[tokio::test]
async fn oversized_chunked_body_is_413() {
    let gw = gateway().await;
    let a = gw
        .post_chunked("/api/user/register", &[b' '; 300], 10)
        .await;
    a.assert_error(413);
}

#[tokio::test]
async fn chunked_body_under_the_limit_is_bound() {
    let gw = gateway().await;
    // A JSON object split over three chunks is read whole: validation sees both fields.
    let chunks: [&[u8]; 3] = [
        b"{\"username\": \"al",
        b"ice\", \"pass",
        b"word\": \"short\"}",
    ];
    let a = gw.post_chunks("/api/user/register", &chunks).await;
    assert!(a.assert_error(400).contains("`password`"), "{a:?}");
}

#[tokio::test]
async fn unreachable_service_answers_10001_without_detail() {
    let gw = gateway().await;
    let a = gw
        .post_json(
            "/api/user/register",
            r#"{"username": "alice", "password": "secret1"}"#,
        )
        .await;
    assert_eq!(a.status.as_u16(), 200, "{a:?}");
    assert_eq!(
        a.json,
        serde_json::json!({"code": 10001, "message": "service unavailable", "data": null})
    );
}

async fn assert_unauthorized(gw: &Gateway, authorization: Option<&str>) {
    let headers: Vec<(&str, &str)> = authorization
        .map(|v| vec![("authorization", v)])
        .unwrap_or_default();
    let a = gw.get("/api/user/1", &headers).await;
    assert_eq!(a.status.as_u16(), 401, "{authorization:?}: {a:?}");
    assert_eq!(a.code(), 10004, "{a:?}");
    assert!(a.json["message"].is_string(), "{a:?}");
    assert!(a.json["data"].is_null(), "{a:?}");
}

#[tokio::test]
async fn missing_token_is_401() {
    let gw = gateway().await;
    assert_unauthorized(&gw, None).await;
}

#[tokio::test]
async fn malformed_tokens_are_401() {
    let gw = gateway().await;
    let (token, _) = jwt().issue("1").unwrap();
    for value in [
        "Bearer",
        "Bearer ",
        "Bearer not-a-jwt",
        "Bearer a.b.c",
        &format!("Basic {token}"),
        token.as_str(),
    ] {
        assert_unauthorized(&gw, Some(value)).await;
    }
}

#[tokio::test]
async fn expired_token_is_401() {
    let gw = gateway().await;
    let now = unix_now().as_secs();
    let token = jwt().issue_with("1", now - 7200, now - 3600).unwrap();
    assert_unauthorized(&gw, Some(&bearer(&token))).await;
}

#[tokio::test]
async fn token_signed_with_another_key_is_401() {
    let gw = gateway().await;
    let other = gateway::Jwt::new(
        b"another-secret-of-at-least-32-bytes!",
        std::time::Duration::from_secs(60),
    )
    .unwrap();
    let (token, _) = other.issue("1").unwrap();
    assert_unauthorized(&gw, Some(&bearer(&token))).await;
}

#[tokio::test]
async fn alg_none_token_is_401() {
    let gw = gateway().await;
    // {"alg":"none","typ":"JWT"}.{"sub":"42","iat":1,"exp":99999999999}. (no signature)
    let token =
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiI0MiIsImlhdCI6MSwiZXhwIjo5OTk5OTk5OTk5OX0.";
    assert_unauthorized(&gw, Some(&bearer(token))).await;
}

#[tokio::test]
async fn valid_token_passes_auth() {
    let gw = gateway().await;
    let (token, _) = jwt().issue("1").unwrap();
    let a = gw
        .get("/api/user/1", &[("authorization", &bearer(&token))])
        .await;
    // Past auth, binding and validation: only the (absent) service is missing.
    assert_eq!(a.status.as_u16(), 200, "{a:?}");
    assert_eq!(a.code(), 10001);
}

#[test]
fn short_secret_refuses_to_start() {
    use clap::Parser as _;
    let config = gateway::Config::try_parse_from(["gateway", "--jwt-secret", "too-short"]).unwrap();
    let err = gateway::jwt_from_config(&config).err().expect("refused");
    assert!(err.to_string().contains("at least 32 bytes"), "{err}");
    assert!(!err.to_string().contains("too-short"));
}

#[test]
fn print_routes_lists_every_idl_route() {
    let text = gateway::describe_routes(rpc::ROUTES);
    assert!(
        text.contains("POST    /api/user/register -> UserService.CreateUser"),
        "{text}"
    );
    assert!(
        text.contains("GET     /api/user/:user_id -> UserService.GetUser [auth]"),
        "{text}"
    );
    assert_eq!(text.lines().count(), rpc::ROUTES.len());
}

#[tokio::test]
async fn with_no_instance_known_the_answer_does_not_wait_for_the_rpc_timeout() {
    let gw = Gateway::start_with(&gateway_config(
        &no_etcd(),
        &["--rpc-timeout", "60s", "--etcd-dial-timeout", "120s"],
    ))
    .await;
    let login = gw.post_json(
        "/api/user/login",
        r#"{"username": "alice", "password": "secret1"}"#,
    );
    let a = tokio::time::timeout(std::time::Duration::from_secs(30), login)
        .await
        .expect("an answer before the 60 s RPC timeout");
    assert_eq!(a.code(), 10001, "{a:?}");
}
