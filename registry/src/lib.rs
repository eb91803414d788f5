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
//! - Client resilience, for any volo-thrift client ([`configure_client`] wires it all):
//!   `health` ([`Health`], [`HealthLayer`]: per-instance calls in flight, latency average and
//!   circuit breaker, recorded after the balancer chose), `breaker` (the breaker's state
//!   machine), `balance` ([`P2cBalance`]: power of two choices on load, skipping open
//!   breakers), `retry` ([`RetryLayer`]: per-attempt timeout retried on another instance
//!   under a [`RetryBudget`]), `client` ([`configure_client`], [`Resilience`]).
//! - [`metrics`]: Prometheus metrics under Kitex's names (`kitex_server_*`, `kitex_client_*`,
//!   from [`metrics::ServerMetricsLayer`] and [`metrics::ClientMetricsLayer`]) and the
//!   registry's health; [`metrics::install`] and [`metrics::serve`] expose them.
//! - [`telemetry`]: logs and traces, the one set-up of every binary ([`telemetry::init`]:
//!   `--log-format`, `--otlp-endpoint`), the W3C trace context over HTTP and TTHeader
//!   metainfo, and the RPC spans ([`telemetry::ServerTraceLayer`],
//!   [`telemetry::ClientTraceLayer`]).
//! - [`record`]: the JSON record and key layout of registry-etcd.
//! - `serve`: [`ServeError`], what a generated `serve()` (announce + run) returns.
//! - `cli` (feature `cli`): `EtcdArgs`, the etcd flags of a binary (`--etcd-endpoints`,
//!   `--etcd-username`, `--etcd-ca`, ...), and `TelemetryArgs` (`--log-format`,
//!   `--otlp-endpoint`), each with an environment variable.
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
mod balance;
mod breaker;
#[cfg(feature = "cli")]
mod cli;
mod client;
mod connection;
mod discover;
mod error;
mod health;
pub mod metrics;
pub mod options;
pub mod record;
mod registration;
mod retry;
mod serve;
mod shutdown;
pub mod telemetry;
mod window;

pub use address::{ENV_IP_TO_REGISTRY, ENV_PORT_TO_REGISTRY, routable_address};
pub use balance::{P2cBalance, P2cPicker};
pub use breaker::BreakerState;
#[cfg(feature = "cli")]
pub use cli::{EtcdArgs, TelemetryArgs};
pub use client::{Configured, Resilience, configure_client};
pub use discover::EtcdDiscover;
pub use error::{CallError, Error, validate_service_name};
pub use health::{Health, HealthLayer, HealthService, InstanceHealth};
pub use options::{
    BreakerOptions, ClientOptions, Credentials, DEFAULT_PREFIX, DEFAULT_WEIGHT, EtcdOptions,
    RegisterOptions, RetryBudgetOptions, ServeOptions, TlsOptions,
};
pub use registration::{Announced, Registration, announce, register};
pub use retry::{RetryBudget, RetryLayer, RetryService};
pub use serve::ServeError;
pub use shutdown::{Shutdown, ShutdownIncoming};
