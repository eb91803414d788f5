//! Flags, each with an environment variable.

use std::{net::SocketAddr, num::NonZeroUsize, time::Duration};

use rpc::volo_etcd::{EtcdArgs, RegisterOptions, ServeOptions, TelemetryArgs};

use crate::password::{Hasher, QueueControl, default_concurrency};

#[derive(Debug, Clone, clap::Parser)]
#[command(about = "Serves UserService over Thrift, registered in etcd")]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "LISTEN", default_value = "127.0.0.1:8888")]
    pub listen: SocketAddr,
    /// IP to register instead of the listen address (needed when listening on 0.0.0.0).
    #[arg(long, env = "ADVERTISE")]
    pub advertise: Option<std::net::IpAddr>,
    /// Where etcd is and how to reach it: --etcd-endpoints, --etcd-prefix,
    /// --etcd-dial-timeout, --etcd-username/--etcd-password, --etcd-ca/--etcd-cert/--etcd-key.
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// Name to register under.
    #[arg(long, env = "SERVICE_NAME", default_value = rpc::music::service::user::user_service::REGISTRY_NAME)]
    pub service_name: String,
    /// Lease TTL of the registration: how long a crashed instance stays listed.
    #[arg(long, env = "LEASE_TTL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub lease_ttl: Duration,
    /// On SIGINT/SIGTERM, how long to keep serving after deregistering, so that callers which
    /// poll etcd stop choosing this instance first: 6s in a fleet with Kitex callers (their
    /// resolver refreshes every 5 s). Callers built on volo-etcd watch and need none.
    #[arg(long, env = "DEREGISTER_LINGER", default_value = "0s", value_parser = humantime::parse_duration)]
    pub deregister_linger: Duration,
    /// Where users are stored: sqlite://PATH (relative to the working directory) or
    /// postgres://USER:PASSWORD@HOST/DB to share one database between replicas.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://data/user.db",
        hide_env_values = true
    )]
    pub database_url: String,
    /// How many password hashes (argon2id, 19 MiB and a core each) run at once; the rest
    /// queue. Default: the number of cores.
    #[arg(long, env = "HASH_CONCURRENCY", default_value_t = default_concurrency())]
    pub hash_concurrency: NonZeroUsize,
    /// The longest a registration or login may take, waiting for a hashing thread and
    /// hashing, before it is refused with ServiceErr "busy" (the caller's deadline, when
    /// sooner, bounds it too).
    #[arg(long, env = "HASH_QUEUE_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub hash_queue_timeout: Duration,
    /// Queue control, as Facebook's "Fail at Scale" applies CoDel to server queues: once the
    /// hash queue has not been empty for this long (`100ms`), and until as long passes without
    /// a refusal, a call is admitted only if a thread will take it at once. `off`: a call may
    /// wait as long as --hash-queue-timeout allows.
    #[arg(long, env = "HASH_QUEUE_CONTROL", default_value_t = QueueControl::OFF)]
    pub hash_queue_control: QueueControl,
    /// How it logs and traces: --log-format (text or json), --otlp-endpoint.
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    /// Serve Prometheus metrics (`GET /metrics`: kitex_server_*, the registry's health) on
    /// this address; off when unset.
    #[arg(long, env = "METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

impl Config {
    pub fn hasher(&self) -> Hasher {
        Hasher::with_control(
            self.hash_concurrency,
            self.hash_queue_timeout,
            self.hash_queue_control,
        )
    }

    pub fn serve_options(&self) -> ServeOptions {
        ServeOptions {
            service_name: self.service_name.clone(),
            advertise: self.advertise,
            etcd: self.etcd.options(),
            register: RegisterOptions {
                ttl: self.lease_ttl,
                linger: self.deregister_linger,
                ..RegisterOptions::default()
            },
        }
    }
}
