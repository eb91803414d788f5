//! End to end: a real etcd, the real user service (SQLite) and the gateway, through HTTP.

mod common;

use std::time::Duration;

use clap::Parser as _;
use common::{Gateway, jwt};
use gateway::jwt::unix_now;
use rpc::volo_etcd::{ServeError, Shutdown};
use test_support::{Etcd, wait_until};
use tokio::task::JoinHandle;

/// etcd, the user service registered in it, and a gateway calling it.
struct Stack {
    gateway: Gateway,
    _service: Service,
    _db: tempfile::TempDir,
    _etcd: Etcd,
}

/// The user service, aborted on drop.
struct Service(JoinHandle<Result<(), ServeError>>);

impl Drop for Service {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The user service on a fresh SQLite file, once it is listed in etcd.
async fn start_service(etcd: &Etcd) -> (Service, tempfile::TempDir) {
    let db = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", db.path().join("user.db").display());
    let config = user_service::Config::parse_from([
        "user-service",
        "--etcd-endpoints",
        &etcd.endpoint(),
        "--database-url",
        &url,
    ]);
    let store = user_service::Store::open(&config.database_url)
        .await
        .expect("open the database");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let key = format!(
        "kitex/registry-etcd/service.music.user/{}",
        listener.local_addr().unwrap()
    );
    let service = Service(tokio::spawn(async move {
        user_service::run(store, listener, &config, Shutdown::new()).await
    }));
    let listed = etcd.wait_for_key(&key, true, Duration::from_secs(10)).await;
    assert!(listed, "the user service did not register within 10 s");
    (service, db)
}

impl Stack {
    async fn start() -> Stack {
        let etcd = Etcd::start().await;
        let (service, db) = start_service(&etcd).await;
        let gateway = Gateway::start(&etcd.endpoint(), &[]).await;
        Stack {
            gateway,
            _service: service,
            _db: db,
            _etcd: etcd,
        }
    }

    async fn register(&self, username: &str, password: &str) -> common::Answer {
        self.gateway
            .post_json(
                "/api/user/register",
                &serde_json::json!({"username": username, "password": password}).to_string(),
            )
            .await
    }

    async fn login(&self, username: &str, password: &str) -> common::Answer {
        self.gateway
            .post_json(
                "/api/user/login",
                &serde_json::json!({"username": username, "password": password}).to_string(),
            )
            .await
    }
}

#[tokio::test]
async fn register_login_and_get_user() {
    let stack = Stack::start().await;

    let created = stack.register("alice", "secret1").await;
    assert_eq!(created.status.as_u16(), 200, "{created:?}");
    assert_eq!(created.code(), 0, "{created:?}");
    assert_eq!(created.json["message"], "Success");
    let user_id = created.json["data"]["user_id"].as_i64().expect("a user id");

    let duplicate = stack.register("alice", "another1").await;
    assert_eq!(duplicate.status.as_u16(), 200);
    assert_eq!(duplicate.code(), 10003, "{duplicate:?}");
    assert!(
        duplicate.json["data"].is_null(),
        "a failure carries no data: {duplicate:?}"
    );

    let wrong = stack.login("alice", "wrong-password").await;
    assert_eq!(wrong.code(), 10004, "{wrong:?}");
    assert!(wrong.json["data"].is_null(), "no token, no data: {wrong:?}");

    let login = stack.login("alice", "secret1").await;
    assert_eq!(login.code(), 0, "{login:?}");
    assert_eq!(login.json["data"]["user_id"], user_id);
    let token = login.json["data"]["token"]
        .as_str()
        .expect("a token")
        .to_owned();
    let expires_at = login.json["data"]["expires_at"]
        .as_u64()
        .expect("an expiry");
    assert!(expires_at > unix_now() + 23 * 3600, "{login:?}");
    assert_eq!(jwt().verify(&token).unwrap().sub, user_id.to_string());

    let path = format!("/api/user/{user_id}");
    let auth = format!("Bearer {token}");
    let user = stack.gateway.get(&path, &[("authorization", &auth)]).await;
    assert_eq!(user.code(), 0, "{user:?}");
    assert_eq!(user.json["data"]["user"]["username"], "alice");
    assert_eq!(user.json["data"]["user"]["user_id"], user_id);

    let anonymous = stack.gateway.get(&path, &[]).await;
    assert_eq!(anonymous.status.as_u16(), 401);
    assert_eq!(anonymous.code(), 10004);
}

#[tokio::test]
async fn forged_and_expired_tokens_are_refused() {
    let stack = Stack::start().await;
    let created = stack.register("bob", "secret1").await;
    let user_id = created.json["data"]["user_id"].as_i64().expect("a user id");
    let path = format!("/api/user/{user_id}");

    let forger = gateway::Jwt::new(
        b"not-the-gateway-secret-but-long-enough",
        Duration::from_secs(60),
    )
    .unwrap();
    let (forged, _) = forger.issue(&user_id.to_string()).unwrap();
    let now = unix_now();
    let expired = jwt()
        .issue_with(&user_id.to_string(), now - 7200, now - 60)
        .unwrap();
    for token in [forged, expired] {
        let a = stack
            .gateway
            .get(&path, &[("authorization", &format!("Bearer {token}"))])
            .await;
        assert_eq!(a.status.as_u16(), 401, "{a:?}");
        assert_eq!(a.code(), 10004, "{a:?}");
        assert!(a.json["data"].is_null());
    }
}

#[tokio::test]
async fn malformed_and_oversized_bodies_never_reach_the_service() {
    let stack = Stack::start().await;
    stack
        .gateway
        .post_json("/api/user/register", "{\"username\": ")
        .await
        .assert_error(400);
    stack
        .gateway
        .post_json("/api/user/register", r#"{"username": "carol"}"#)
        .await
        .assert_error(400);
    let big = format!(
        r#"{{"username": "carol", "password": "{}"}}"#,
        "x".repeat(2 << 20)
    );
    stack
        .gateway
        .post_json("/api/user/register", &big)
        .await
        .assert_error(413);
    // None of them registered carol.
    let created = stack.register("carol", "secret1").await;
    assert_eq!(created.code(), 0, "{created:?}");
}

#[tokio::test]
async fn a_service_started_after_the_gateway_is_found() {
    let etcd = Etcd::start().await;
    let gateway = Gateway::start(&etcd.endpoint(), &[]).await;
    let login = r#"{"username": "nobody", "password": "secret1"}"#;
    let before = gateway.post_json("/api/user/login", login).await;
    assert_eq!(
        (before.status.as_u16(), before.code()),
        (200, 10001),
        "{before:?}"
    );

    let (_service, _db) = start_service(&etcd).await;
    // The instance appears through the etcd watch: an unknown user then gets 10004.
    let found = wait_until(Duration::from_secs(10), || {
        let gateway = &gateway;
        async move { gateway.post_json("/api/user/login", login).await.code() == 10004 }
    })
    .await;
    assert!(
        found,
        "the gateway never reached the service that started late"
    );
}
