//! The user service, run in this process on a free loopback port.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser as _;
use rpc::{
    music::service::user::user_service::REGISTRY_NAME,
    volo_etcd::{ServeError, Shutdown},
};
use test_support::{Postgres, wait_until};
use tokio::task::JoinHandle;

use crate::SOON;

/// One running replica; [`Service::stop`] stops it as SIGTERM would (deregister, drain,
/// close the database), dropping it aborts it.
pub struct Service {
    pub addr: SocketAddr,
    shutdown: Shutdown,
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

impl Service {
    /// Starts a replica registered in the etcd at `endpoints`, storing users at
    /// `database_url`; returns once its key is in etcd.
    pub async fn start(endpoints: &[String], database_url: &str) -> Service {
        let config = user_service::Config::parse_from([
            "user-service",
            "--etcd-endpoints",
            &endpoints.join(","),
            "--database-url",
            database_url,
            // The suite runs dozens of stacks on two cores at once, each with its own hashing
            // threads; it checks answers, not load shedding (services/user/tests does that),
            // so a burst of registrations here waits its turn instead of being shed.
            "--hash-queue-timeout",
            "60s",
        ]);
        let store = user_service::Store::open(&config.database_url)
            .await
            .expect("open the database");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = Shutdown::new();
        let stop = shutdown.clone();
        let task =
            tokio::spawn(async move { user_service::run(store, listener, &config, stop).await });
        let service = Service {
            addr,
            shutdown,
            task: Some(task),
        };
        service.wait_registered(endpoints).await;
        service
    }

    /// `kitex/registry-etcd/service.music.user/<addr>`: registry-etcd's key for this replica.
    pub fn key(&self) -> String {
        format!("kitex/registry-etcd/{REGISTRY_NAME}/{}", self.addr)
    }

    /// Serving starts once the instance is in etcd: wait for it, with a deadline. Each
    /// endpoint is asked on its own, so a dead member of a cluster does not hide the key.
    async fn wait_registered(&self, endpoints: &[String]) {
        let key = self.key();
        let listed = wait_until(SOON, || async {
            for endpoint in endpoints {
                if listed_at(endpoint, &key).await {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(
            listed,
            "the service did not register under {key} within {SOON:?}"
        );
    }

    /// Stops as on SIGTERM: deregisters, lets calls in flight finish, closes the database.
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

/// Whether the etcd member at `endpoint` answers, within a second, that `key` exists.
async fn listed_at(endpoint: &str, key: &str) -> bool {
    let get = async {
        let options =
            etcd_client::ConnectOptions::new().with_connect_timeout(Duration::from_secs(1));
        let mut client = etcd_client::Client::connect([endpoint], Some(options)).await?;
        client.get(key, None).await
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), get).await,
        Ok(Ok(resp)) if !resp.kvs().is_empty()
    )
}

/// Where the replicas keep their users.
pub enum Database {
    /// A file in a temporary directory.
    Sqlite(tempfile::TempDir),
    /// A throwaway PostgreSQL server, the store replicas share in production.
    Postgres(Postgres),
}

impl Database {
    pub fn sqlite() -> Database {
        Database::Sqlite(tempfile::tempdir().expect("a temporary dir"))
    }

    pub async fn postgres() -> Database {
        Database::Postgres(Postgres::start().await)
    }

    pub fn url(&self) -> String {
        match self {
            Database::Sqlite(_) => format!("sqlite://{}", self.sqlite_file().display()),
            Database::Postgres(pg) => pg.url("postgres"),
        }
    }

    /// The SQLite file (panics on PostgreSQL).
    pub fn sqlite_file(&self) -> PathBuf {
        match self {
            Database::Sqlite(dir) => dir.path().join("user.db"),
            Database::Postgres(_) => panic!("not a SQLite stack"),
        }
    }
}
