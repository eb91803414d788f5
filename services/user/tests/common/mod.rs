//! Shared fixtures: a real etcd, the service on a real database, and the generated client
//! resolving the service through etcd.

#![allow(dead_code)] // each test file uses its own subset

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use ::user_service::{Config, Store};
use clap::Parser as _;
use rpc::{
    music::service::user::{
        CreateUserRequest, LoginRequest, UserServiceClient, user_service as glue,
    },
    volo_etcd::{ClientOptions, EtcdOptions, ServeError, Shutdown},
};
use test_support::{Etcd, Postgres};
use tokio::{io::AsyncReadExt, net::TcpStream, task::JoinHandle};

pub const SUCCESS: i64 = 0;
pub const PARAM_ERR: i64 = 10002;
pub const USER_ALREADY_EXIST: i64 = 10003;
pub const AUTHORIZATION_FAILED: i64 = 10004;

/// One running user service; stopped (deregistered, drained, database closed) on `stop`, or
/// aborted on drop when a test fails before that.
pub struct Service {
    pub addr: SocketAddr,
    shutdown: Shutdown,
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

impl Service {
    pub async fn start(etcd: &Etcd, database_url: &str) -> Service {
        let config = Config::parse_from([
            "user-service",
            "--etcd-endpoints",
            &etcd.endpoint(),
            "--database-url",
            database_url,
        ]);
        let store = Store::open(&config.database_url)
            .await
            .expect("open the database");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = Shutdown::new();
        let stop = shutdown.clone();
        let task =
            tokio::spawn(async move { ::user_service::run(store, listener, &config, stop).await });
        let service = Service {
            addr,
            shutdown,
            task: Some(task),
        };
        service.wait_registered(etcd).await;
        service
    }

    pub fn key(&self) -> String {
        format!("kitex/registry-etcd/service.music.user/{}", self.addr)
    }

    /// Serving starts once the instance is in etcd: wait for it, with a deadline.
    pub async fn wait_registered(&self, etcd: &Etcd) {
        let key = self.key();
        let listed = etcd.wait_for_key(&key, true, Duration::from_secs(10)).await;
        assert!(
            listed,
            "the service did not register under {key} within 10 s"
        );
    }

    pub async fn stop(mut self) {
        self.shutdown.trigger();
        let task = self.task.take().expect("running");
        task.await.expect("no panic").expect("a clean stop");
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Where the service keeps its users.
pub enum Database {
    /// A file in a temporary directory.
    Sqlite(tempfile::TempDir),
    /// A throwaway PostgreSQL server.
    Postgres(Postgres),
}

impl Database {
    pub fn sqlite() -> Database {
        Database::Sqlite(tempfile::tempdir().unwrap())
    }

    pub fn url(&self) -> String {
        match self {
            Database::Sqlite(dir) => format!("sqlite://{}", dir.path().join("user.db").display()),
            Database::Postgres(pg) => pg.url("postgres"),
        }
    }
}

/// etcd, a database, the service, and a client that finds it through etcd.
pub struct Stack {
    pub etcd: Etcd,
    pub database: Database,
    pub service: Service,
    pub client: UserServiceClient,
}

impl Stack {
    /// The stack on SQLite, the default.
    pub async fn start() -> Stack {
        Stack::start_on(Database::sqlite()).await
    }

    pub async fn start_on(database: Database) -> Stack {
        let etcd = Etcd::start().await;
        let service = Service::start(&etcd, &database.url()).await;
        let client = glue::client(&ClientOptions {
            etcd: EtcdOptions::with_endpoints([etcd.endpoint()]),
            ..ClientOptions::default()
        });
        Stack {
            etcd,
            database,
            service,
            client,
        }
    }

    /// The SQLite file (panics on PostgreSQL).
    pub fn db(&self) -> PathBuf {
        match &self.database {
            Database::Sqlite(dir) => dir.path().join("user.db"),
            Database::Postgres(_) => panic!("not a SQLite stack"),
        }
    }

    /// Replaces the service with a fresh one on the same database; the old one stops cleanly.
    pub async fn restart_service(&mut self) {
        let fresh = Service::start(&self.etcd, &self.database.url()).await;
        std::mem::replace(&mut self.service, fresh).stop().await;
    }

    pub async fn create(&self, username: &str, password: &str) -> (i64, String, Option<i64>) {
        let resp = self
            .client
            .create_user(CreateUserRequest {
                username: username.to_string().into(),
                password: password.to_string().into(),
            })
            .await
            .expect("the call reaches the service");
        (
            resp.base_resp.status_code,
            resp.base_resp.status_message.to_string(),
            resp.user_id,
        )
    }

    pub async fn login(&self, username: &str, password: &str) -> (i64, String, Option<i64>) {
        let resp = self
            .client
            .login(LoginRequest {
                username: username.to_string().into(),
                password: password.to_string().into(),
            })
            .await
            .expect("the call reaches the service");
        (
            resp.base_resp.status_code,
            resp.base_resp.status_message.to_string(),
            resp.user_id,
        )
    }
}

/// Eight concurrent registrations of one name: the database lets exactly one win.
pub async fn assert_one_of_concurrent_registrations_wins(stack: &Stack) {
    let mut codes = register_concurrently(stack, "eve", 8).await;
    codes.sort();
    let mut expected = vec![USER_ALREADY_EXIST; 8];
    expected[0] = SUCCESS;
    assert_eq!(codes, expected);
}

/// `n` concurrent registrations of one name; their status codes, in order.
async fn register_concurrently(stack: &Stack, username: &str, n: usize) -> Vec<i64> {
    let attempts = (0..n).map(|i| {
        let client = stack.client.clone();
        let username = username.to_string();
        async move {
            client
                .create_user(CreateUserRequest {
                    username: username.into(),
                    password: format!("secret{i}").into(),
                })
                .await
                .expect("the call reaches the service")
                .base_resp
                .status_code
        }
    });
    spawn_all(attempts).await
}

/// Runs futures concurrently on this runtime and collects their outputs in order.
pub async fn spawn_all<F: std::future::Future<Output = i64> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<i64> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("no panic"));
    }
    out
}

/// Whether the peer closes (or resets) the connection within a few seconds.
pub async fn closed(conn: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .unwrap_or(false)
}
