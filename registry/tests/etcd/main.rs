//! Integration tests of volo-etcd against real etcd servers (one per test, started by
//! test-support), so they run in parallel. Every wait polls a condition with a deadline.

mod auth;
mod client;
mod cluster;
mod common;
mod compaction;
mod discovery;
mod registration;
mod resilience;
mod server;
#[cfg(feature = "tls")]
mod tls;
