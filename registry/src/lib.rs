//! etcd service registry and discovery for any Volo service, wire-compatible with
//! kitex-contrib/registry-etcd (Go Kitex services and ours see each other).
//!
//! # Layout
//!
//! - [`options`]: how to reach etcd ([`EtcdOptions`]), how to register ([`RegisterOptions`],
//!   [`ServeOptions`]), how clients call ([`ClientOptions`]).
//! - `registration`: [`announce`] / [`register`] put `<prefix>/<service>/<host:port>` under a
//!   lease and keep it there forever (keepalive every TTL/3, re-register with backoff after a
//!   lost lease, a lost connection or an operator's delete); [`Registration::deregister`]
//!   deletes the key and revokes the lease.
//! - `discover`: [`EtcdDiscover`], a `volo::discovery::Discover` that lists and then watches
//!   a service's prefix and pushes every change to Volo's load balancer; it keeps the last
//!   known instances while etcd is unreachable.
//! - `shutdown`: [`Shutdown`] and [`ShutdownIncoming`], to stop a volo-thrift server without
//!   signals (its shutdown hooks, and so deregistration, still run).
//! - [`record`]: the JSON record and key layout of registry-etcd.
//! - `serve`: [`ServeError`], what a generated `serve()` (announce + run) returns.
//! - `cli` (feature `cli`): `EtcdArgs`, the etcd flags of a binary (`--etcd-endpoints`,
//!   `--etcd-username`, `--etcd-ca`, ...), each with an environment variable.
//! - `connection`: one reconnectable etcd client per registration / discoverer; TLS and auth
//!   are applied there, and TLS failures are told apart from an unreachable etcd.
//!
//! # Features
//!
//! - `tls` (default): TLS to etcd with rustls and ring. Without it, `EtcdOptions::tls` is an
//!   error at startup.
//! - `cli`: `EtcdArgs` (clap), to `#[command(flatten)]` into a binary's config.
//!
//! # Use
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8888").await?;
//! let options = volo_etcd::ServeOptions::new("user");
//! let shutdown = volo_etcd::Shutdown::new();
//! let (incoming, registration) =
//!     volo_etcd::announce(listener, &options, shutdown.clone()).await?.into_parts();
//! // XxxServer::new(handler)
//! //     .register_shutdown_hook(move || Box::pin(registration.deregister()))
//! //     .run(incoming).await?;
//! # drop((incoming, registration)); Ok(()) }
//! ```

mod address;
mod backoff;
#[cfg(feature = "cli")]
mod cli;
mod connection;
mod discover;
mod error;
pub mod options;
pub mod record;
mod registration;
mod serve;
mod shutdown;

pub use address::{ENV_IP_TO_REGISTRY, ENV_PORT_TO_REGISTRY, routable_address};
#[cfg(feature = "cli")]
pub use cli::EtcdArgs;
pub use discover::EtcdDiscover;
pub use error::{CallError, Error, validate_service_name};
pub use options::{
    ClientOptions, Credentials, DEFAULT_PREFIX, DEFAULT_WEIGHT, EtcdOptions, RegisterOptions,
    ServeOptions, TlsOptions,
};
pub use registration::{Announced, Registration, announce, register};
pub use serve::ServeError;
pub use shutdown::{Shutdown, ShutdownIncoming};
