//! The user service, run in this process on a free loopback port, or another implementation
//! of it run as a child process (see [`PEER_ENV`]).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser as _;
use rpc::{
    music::service::user::user_service::REGISTRY_NAME,
    volo_etcd::{ServeError, Shutdown},
};
use test_support::{ChildProcess, Postgres, wait_until};
use tokio::task::JoinHandle;

use crate::SOON;

/// Names another implementation of UserService to run the suite against, such as the Go Kitex
/// peer (`tests/kitex/cmd/userservice`, registered by registry-etcd): a binary that takes
/// `--listen`, `--etcd-endpoints` and `--database-url sqlite://PATH` and registers itself in
/// etcd as ours does. Unset, replicas run in this process. The contract is the IDL, so the
/// tests that do not look inside our implementation must pass against either.
pub const PEER_ENV: &str = "CONTRACT_USER_SERVICE_BIN";

/// One running replica; [`Service::stop`] stops it as SIGTERM would (deregister, drain,
/// close the database), dropping it aborts it.
pub struct Service {
    pub addr: SocketAddr,
    running: Running,
}

enum Running {
    /// Ours, in this process; `None` once stopped or aborted.
    InProcess {
        shutdown: Shutdown,
        task: Option<JoinHandle<Result<(), ServeError>>>,
    },
    /// The binary named by [`PEER_ENV`], killed on drop.
    Peer(ChildProcess),
}

impl Service {
    /// Starts a replica registered in the etcd at `endpoints`, storing users at
    /// `database_url`; returns once its key is in etcd.
    pub async fn start(endpoints: &[String], database_url: &str) -> Service {
        let service = match std::env::var_os(PEER_ENV) {
            Some(peer) => Service::start_peer(peer.as_ref(), endpoints, database_url),
            None => Service::start_in_process(endpoints, database_url).await,
        };
        service.wait_registered(endpoints).await;
        service
    }

    async fn start_in_process(endpoints: &[String], database_url: &str) -> Service {
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
        Service {
            addr,
            running: Running::InProcess {
                shutdown,
                task: Some(task),
            },
        }
    }

    fn start_peer(bin: &std::path::Path, endpoints: &[String], database_url: &str) -> Service {
        // A port that was free a moment ago: the peer binds it itself.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port");
        let mut command = std::process::Command::new(bin);
        command
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--etcd-endpoints")
            .arg(endpoints.join(","))
            .arg("--database-url")
            .arg(database_url);
        let process = ChildProcess::spawn(command)
            .unwrap_or_else(|e| panic!("cannot start {PEER_ENV}={}: {e}", bin.display()));
        Service {
            addr,
            running: Running::Peer(process),
        }
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
        let output = match &self.running {
            Running::Peer(process) => process.output(),
            Running::InProcess { .. } => String::new(),
        };
        assert!(
            listed,
            "the service did not register under {key} within {SOON:?}\n{output}"
        );
    }

    /// Stops as on SIGTERM: deregisters, lets calls in flight finish, closes the database.
    pub async fn stop(mut self) {
        match &mut self.running {
            Running::InProcess { shutdown, task } => {
                shutdown.trigger();
                let task = task.take().expect("running");
                task.await.expect("no panic").expect("a clean stop");
            }
            Running::Peer(process) => {
                process.terminate();
                let status = process.wait_exit(SOON).await;
                assert!(
                    status.is_some_and(|s| s.success()),
                    "the peer did not exit cleanly within {SOON:?} of SIGTERM ({status:?}):\n{}",
                    process.output()
                );
            }
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // A peer process is killed by its own drop.
        if let Running::InProcess {
            task: Some(task), ..
        } = &self.running
        {
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
