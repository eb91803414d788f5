//! The music app's user service: UserService over Thrift, registered in etcd, users in SQLite
//! (default) or PostgreSQL.
//!
//! # Layout
//! - `config`: flags and environment variables, with defaults.
//! - `handler`: the three methods, and how failures become `BaseResp` codes.
//! - `store`: the database (schema in `migrations/`, embedded).
//! - `password`: argon2id hashing, a bounded number at a time.

mod config;
mod handler;
pub mod password;
mod store;

pub use config::Config;
pub use handler::Handler;
pub use store::{Store, StoreError};

use rpc::{
    music::service::user::user_service,
    volo_etcd::{ServeError, Shutdown},
};

/// Serves on `listener` until SIGINT/SIGTERM or `shutdown`: deregisters, drains in-flight
/// calls, then closes the database.
pub async fn run(
    store: Store,
    listener: tokio::net::TcpListener,
    config: &Config,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    let served = user_service::serve(
        Handler::new(store.clone(), config.hasher()),
        listener,
        &config.serve_options(),
        shutdown,
    )
    .await;
    store.close().await;
    served
}
