//! The gateway, run in this process on a free loopback port, driven by a real HTTP client.

use std::{net::SocketAddr, time::Duration};

use clap::Parser as _;
use test_support::Http;
use tokio::task::JoinHandle;

/// The secret of every test gateway, so tests can forge tokens with [`jwt`].
pub const SECRET: &str = "contract-test-secret-0123456789abcdef";

/// Keys with the test gateways' secret.
pub fn jwt() -> gateway::Jwt {
    gateway::Jwt::new(SECRET.as_bytes(), Duration::from_secs(3600)).expect("a valid secret")
}

/// The gateway's flags for the etcd at `endpoints`, with the test secret, no log-in rate
/// limits (the suite logs in hundreds of times from one address) and no load shedding (the
/// suite runs many stacks at once on a busy machine, and checks answers; `scripts/chaos
/// --only overload` tests shedding); `extra` are more flags, e.g. `["--body-limit", "1KiB"]`,
/// and win over these.
pub fn gateway_config(endpoints: &[String], extra: &[&str]) -> gateway::Config {
    let endpoints = endpoints.join(",");
    let mut args = vec![
        "gateway",
        "--etcd-endpoints",
        &endpoints,
        "--jwt-secret",
        SECRET,
        "--login-rate-limit-per-ip",
        "off",
        "--login-rate-limit-per-account",
        "off",
        "--shed-cpu-threshold",
        "off",
    ];
    args.extend_from_slice(extra);
    gateway::Config::try_parse_from(args).expect("valid gateway flags")
}

/// A gateway serving on a free loopback port, used through its HTTP client; aborted on drop.
pub struct Gateway {
    pub addr: SocketAddr,
    http: Http,
    task: JoinHandle<std::io::Result<()>>,
}

impl Gateway {
    /// The IDL's routes, calling services found in the etcd at `endpoints`.
    pub async fn start(endpoints: &[String]) -> Gateway {
        Gateway::start_with(&gateway_config(endpoints, &[])).await
    }

    /// The IDL's routes, as `config` says.
    pub async fn start_with(config: &gateway::Config) -> Gateway {
        let jwt = gateway::jwt_from_config(config).expect("a valid secret");
        let (app, _) = gateway::app(config, jwt).expect("a valid CORS configuration");
        Gateway::serve_with(app, &config.connection_limits()).await
    }

    /// Serves `app` (for routes other than the IDL's) with the default connection limits.
    pub async fn serve(app: gateway::App) -> Gateway {
        Gateway::serve_with(app, &gateway_config(&[], &[]).connection_limits()).await
    }

    async fn serve_with(app: gateway::App, limits: &gateway::ConnectionLimits) -> Gateway {
        // Bound before serving: connections made before the accept loop starts just queue.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = limits.clone();
        let task = tokio::spawn(async move { gateway::serve(app, listener, &limits).await });
        Gateway {
            addr,
            http: Http::new(addr),
            task,
        }
    }
}

/// `gateway.get(..)`, `gateway.post_json(..)`: the gateway is driven through its client.
impl std::ops::Deref for Gateway {
    type Target = Http;

    fn deref(&self) -> &Http {
        &self.http
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}
