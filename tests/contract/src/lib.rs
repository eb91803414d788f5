//! The contract tests' fixtures: the whole stack on loopback, started per test.
//!
//! A [`Stack`] is a fresh etcd on free ports with a temporary data dir, one or more user
//! service replicas on port 0 (SQLite in a temporary dir, or a throwaway PostgreSQL), the
//! generated Thrift client resolving them through etcd, and the gateway on port 0 driven by a
//! real HTTP client. Every part stops when the stack is dropped, also when a test panics:
//! processes are killed, in-process servers aborted. Each test owns its etcd, so tests run in
//! parallel without seeing each other's keys.
//!
//! With [`PEER_ENV`] set, the replicas are another implementation of the service run as child
//! processes, such as the Go Kitex peer: `scripts/test` runs every test but `storage::` and
//! `cluster::` that way too, since the contract is the IDL.
//!
//! To test your own service the same way, copy this crate: swap [`Service`] for your server's
//! `run` and the request helpers on [`Stack`] for your IDL's methods and routes.

mod gateway;
mod service;

use std::time::Duration;

use rpc::{
    music::{
        base::{BaseResp, ErrCode},
        service::user::{
            CreateUserRequest, GetUserRequest, GetUserResponse, LoginRequest, UserServiceClient,
            user_service,
        },
    },
    volo_etcd::{ClientOptions, EtcdOptions},
};
use test_support::{Answer, Etcd};

pub use crate::{
    gateway::{Gateway, SECRET, gateway_config, jwt},
    service::{Database, PEER_ENV, Service},
};

/// What `CreateUser` or `Login` answered over Thrift.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: i64,
    pub message: String,
    pub user_id: Option<i64>,
}

impl Reply {
    fn new(base: &BaseResp, user_id: Option<i64>) -> Self {
        Self {
            code: base.status_code,
            message: base.status_message.to_string(),
            user_id,
        }
    }

    /// Success, with the user's id.
    pub fn success(user_id: Option<i64>) -> Self {
        Self {
            code: ErrCode::SUCCESS.into(),
            message: "Success".to_owned(),
            user_id,
        }
    }

    /// A failure: its code and message, no user id.
    pub fn failure(code: ErrCode, message: &str) -> Self {
        Self {
            code: code.into(),
            message: message.to_owned(),
            user_id: None,
        }
    }
}

/// A user registered and logged in over HTTP.
#[derive(Debug, Clone)]
pub struct SignedUp {
    pub id: i64,
    /// Its bearer token.
    pub token: String,
}

/// A waiting bound for things that happen "at once" on a loaded, shared CI machine.
pub const SOON: Duration = Duration::from_secs(10);

/// etcd, the user service, its generated client and the gateway.
pub struct Stack {
    // Field order is drop order: the gateway and services stop before etcd.
    pub gateway: Gateway,
    /// The first replica; more in `replicas`.
    pub service: Service,
    pub replicas: Vec<Service>,
    pub client: UserServiceClient,
    pub database: Database,
    pub etcd: Etcd,
}

impl Stack {
    /// The stack on SQLite, the default.
    pub async fn start() -> Stack {
        Stack::start_on(Database::sqlite()).await
    }

    /// The stack on `database`.
    pub async fn start_on(database: Database) -> Stack {
        let etcd = Etcd::start().await;
        let endpoints = [etcd.endpoint()];
        let service = Service::start(&endpoints, &database.url()).await;
        let client = user_service::client(&client_options(&endpoints));
        let gateway = Gateway::start(&endpoints).await;
        Stack {
            gateway,
            service,
            replicas: Vec::new(),
            client,
            database,
            etcd,
        }
    }

    /// etcd's endpoints, for more parts.
    pub fn endpoints(&self) -> Vec<String> {
        vec![self.etcd.endpoint()]
    }

    /// Starts one more replica on the same database; returns it once registered.
    pub async fn add_replica(&mut self) -> &Service {
        let replica = Service::start(&self.endpoints(), &self.database.url()).await;
        self.replicas.push(replica);
        self.replicas.last().expect("just pushed")
    }

    /// Replaces the first replica with a fresh one on the same database; the old one stops
    /// cleanly (deregistered, drained) before this returns.
    pub async fn restart_service(&mut self) {
        let fresh = Service::start(&self.endpoints(), &self.database.url()).await;
        std::mem::replace(&mut self.service, fresh).stop().await;
    }

    /// `CreateUser` over Thrift.
    pub async fn create(&self, username: &str, password: &str) -> Reply {
        let resp = self
            .client
            .create_user(CreateUserRequest {
                username: username.to_owned().into(),
                password: password.to_owned().into(),
            })
            .await
            .expect("the call reaches the service");
        Reply::new(&resp.base_resp, resp.user_id)
    }

    /// `Login` over Thrift.
    pub async fn login(&self, username: &str, password: &str) -> Reply {
        let resp = self
            .client
            .login(LoginRequest {
                username: username.to_owned().into(),
                password: password.to_owned().into(),
            })
            .await
            .expect("the call reaches the service");
        Reply::new(&resp.base_resp, resp.user_id)
    }

    /// `n` concurrent `CreateUser` calls for one name (each with its own password); their
    /// status codes, sorted.
    pub async fn create_concurrently(&self, username: &str, n: usize) -> Vec<i64> {
        let calls: Vec<_> = (0..n)
            .map(|i| {
                let client = self.client.clone();
                let request = CreateUserRequest {
                    username: username.to_owned().into(),
                    password: format!("secret{i}").into(),
                };
                tokio::spawn(async move { client.create_user(request).await })
            })
            .collect();
        let mut codes = Vec::with_capacity(n);
        for call in calls {
            let resp = call.await.expect("no panic").expect("a reply");
            codes.push(resp.base_resp.status_code);
        }
        codes.sort();
        codes
    }

    /// `GetUser` over Thrift.
    pub async fn get_user(&self, user_id: i64) -> GetUserResponse {
        self.client
            .get_user(GetUserRequest { user_id })
            .await
            .expect("the call reaches the service")
    }

    /// `POST /api/user/register` with a JSON body.
    pub async fn http_register(&self, username: &str, password: &str) -> Answer {
        let body = serde_json::json!({"username": username, "password": password});
        self.gateway
            .post_json("/api/user/register", &body.to_string())
            .await
    }

    /// `POST /api/user/login` with a JSON body.
    pub async fn http_login(&self, username: &str, password: &str) -> Answer {
        let body = serde_json::json!({"username": username, "password": password});
        self.gateway
            .post_json("/api/user/login", &body.to_string())
            .await
    }

    /// Registers and logs in `username` over HTTP.
    pub async fn http_signed_up(&self, username: &str) -> SignedUp {
        let created = self.http_register(username, "secret1").await;
        assert_eq!(created.code(), i64::from(ErrCode::SUCCESS), "{created:?}");
        let login = self.http_login(username, "secret1").await;
        assert_eq!(login.code(), i64::from(ErrCode::SUCCESS), "{login:?}");
        let id = login.json["data"]["user_id"].as_i64().expect("a user id");
        let token = login.json["data"]["token"].as_str().expect("a token");
        SignedUp {
            id,
            token: token.to_owned(),
        }
    }

    /// `GET /api/user/:user_id`, with `Authorization: Bearer <token>` when given.
    pub async fn http_user(&self, user_id: &str, token: Option<&str>) -> Answer {
        let path = format!("/api/user/{user_id}");
        match token {
            Some(token) => {
                let auth = format!("Bearer {token}");
                self.gateway.get(&path, &[("authorization", &auth)]).await
            }
            None => self.gateway.get(&path, &[]).await,
        }
    }
}

/// Options of the generated clients for `endpoints`: the defaults (the seed's timeouts and
/// retries) otherwise.
pub fn client_options(endpoints: &[String]) -> ClientOptions {
    ClientOptions {
        etcd: EtcdOptions::with_endpoints(endpoints.iter().cloned()),
        ..ClientOptions::default()
    }
}
