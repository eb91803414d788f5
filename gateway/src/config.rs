//! Flags, each with an environment variable.

use std::{fmt, net::SocketAddr, str::FromStr, time::Duration};

use rpc::volo_etcd::{ClientOptions, EtcdArgs, TelemetryArgs};

use crate::{ConnectionLimits, CorsArgs, CpuThreshold, HeadLimits, Rate, Rates};

/// The gateway's name as a caller: the `caller` label of RPC metrics, on both sides (it
/// travels in the TTHeader, as a Kitex client's service name does).
pub const CALLER_NAME: &str = "gateway";

#[derive(Debug, Clone, clap::Parser)]
// A flag given twice takes its last value, so wrappers can append overrides.
#[command(
    about = "Serves the HTTP API declared in the IDL, calling the services found in etcd",
    args_override_self = true
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "LISTEN", default_value = "127.0.0.1:8889")]
    pub listen: SocketAddr,
    /// Where etcd is and how to reach it: --etcd-endpoints, --etcd-prefix,
    /// --etcd-dial-timeout, --etcd-username/--etcd-password, --etcd-ca/--etcd-cert/--etcd-key.
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// HS256 secret for bearer tokens, at least 32 bytes (e.g. `openssl rand -hex 32`).
    /// Required, except with --dev.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,
    /// Development mode: without --jwt-secret, sign tokens with a random secret made at
    /// start (tokens then die with the process, and no other gateway accepts them).
    #[arg(long, env = "GATEWAY_DEV")]
    pub dev: bool,
    /// How long an issued token stays valid.
    #[arg(long, env = "JWT_TTL", default_value = "24h", value_parser = humantime::parse_duration)]
    pub jwt_ttl: Duration,
    /// Whole-call deadline of one RPC.
    #[arg(long, env = "RPC_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration)]
    pub rpc_timeout: Duration,
    /// TCP connect deadline to a service instance.
    #[arg(long, env = "CONNECT_TIMEOUT", default_value = "50ms", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
    /// Largest request body accepted (bytes, or with a unit: 512KiB, 1MiB, 1MB).
    #[arg(long, env = "BODY_LIMIT", default_value = "1MiB", value_parser = parse_size)]
    pub body_limit: usize,
    /// Deadline of one HTTP request, RPC retries included.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// Requests per second (or minute, hour) the whole gateway admits: `2000/s`; `off`.
    /// Set it just under the capacity of the services behind, so that a flood is answered
    /// 429 at once instead of queueing everywhere.
    #[arg(long, env = "RATE_LIMIT", default_value = "off")]
    pub rate_limit: Rate,
    /// Requests admitted per client IP: `100/s`; `off`.
    #[arg(long, env = "RATE_LIMIT_PER_IP", default_value = "off")]
    pub rate_limit_per_ip: Rate,
    /// Log-ins (requests to token-issuing routes) admitted per client IP.
    #[arg(long, env = "LOGIN_RATE_LIMIT_PER_IP", default_value = "60/min")]
    pub login_rate_limit_per_ip: Rate,
    /// Log-ins admitted per account (the route's first field, `username`), whichever the
    /// address: throttles password guessing spread over many addresses.
    #[arg(long, env = "LOGIN_RATE_LIMIT_PER_ACCOUNT", default_value = "10/min")]
    pub login_rate_limit_per_account: Rate,
    /// Load shedding: from this use of the CPUs the gateway may run on (`90%`; `off`), requests
    /// beyond what it has lately finished without queueing are refused at once with 503.
    #[arg(long, env = "SHED_CPU_THRESHOLD", default_value = "90%")]
    pub shed_cpu_threshold: CpuThreshold,
    /// How long a client may take to send a request's headers (slow clients are cut off).
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,
    /// How long a keep-alive connection may wait for its next request.
    #[arg(long, env = "IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Longest URI (path and query): 414 above it.
    #[arg(long, env = "MAX_URI_SIZE", default_value = "8KiB", value_parser = parse_size)]
    pub max_uri_size: usize,
    /// Largest request headers (names and values): 431 above it.
    #[arg(long, env = "MAX_HEADER_SIZE", default_value = "16KiB", value_parser = parse_size)]
    pub max_header_size: usize,
    /// After SIGTERM, how long requests in flight get to finish.
    #[arg(long, env = "DRAIN_TIMEOUT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// Which pages on other origins may call the API from a browser: --cors-origins,
    /// --cors-allow-credentials, --cors-max-age.
    #[command(flatten)]
    pub cors: CorsArgs,
    /// The API page at `GET /docs` (Swagger UI on /openapi.json, served from the binary):
    /// `on` or `off`.
    #[arg(long, env = "DOCS", default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    pub docs: bool,
    /// How it logs and traces: --log-format (text or json), --otlp-endpoint.
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    /// Prometheus metrics at `GET /metrics` (`on`), or none recorded or served (`off`).
    #[arg(long, env = "METRICS", default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    pub metrics: bool,
    /// Print the mounted routes and exit.
    #[arg(long)]
    pub print_routes: bool,
}

/// `on` or `off`.
fn parse_on_off(text: &str) -> Result<bool, String> {
    match text {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("`{text}`: expected `on` or `off`")),
    }
}

impl Config {
    /// The generated clients' options: the seed's retries, our timeouts and etcd.
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            caller_name: Some(CALLER_NAME.to_owned()),
            etcd: self.etcd.options(),
            rpc_timeout: self.rpc_timeout,
            connect_timeout: self.connect_timeout,
            ..ClientOptions::default()
        }
    }

    pub fn rates(&self) -> Rates {
        Rates {
            global: self.rate_limit,
            per_ip: self.rate_limit_per_ip,
            login_per_ip: self.login_rate_limit_per_ip,
            login_per_account: self.login_rate_limit_per_account,
        }
    }

    pub fn head_limits(&self) -> HeadLimits {
        HeadLimits {
            max_uri_bytes: self.max_uri_size,
            max_header_bytes: self.max_header_size,
        }
    }

    pub fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
            max_header_bytes: self.max_header_size,
            drain_timeout: self.drain_timeout,
        }
    }
}

/// A secret string whose `Debug` never shows it, so logging the config is safe.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `1048576`, `512KiB`, `1MiB`, `1MB`, `2kb`: a size in bytes.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size (examples: 1048576, 512KiB, 1MiB)"))?;
    let factor: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit `{other}` (use B, KiB, MiB, GiB, kB, MB, GB)"
            ));
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[test]
    fn defaults_match_the_seed() {
        let c = Config::try_parse_from(["gateway"]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8889");
        assert_eq!(c.etcd.options(), rpc::volo_etcd::EtcdOptions::default());
        assert_eq!(c.jwt_ttl, Duration::from_secs(24 * 3600));
        assert_eq!(c.rpc_timeout, Duration::from_secs(3));
        assert_eq!(c.connect_timeout, Duration::from_millis(50));
        assert_eq!(c.body_limit, 1 << 20);
    }

    #[test]
    fn log_ins_are_throttled_by_default_and_nothing_else_is() {
        let c = Config::try_parse_from(["gateway"]).unwrap();
        assert_eq!(c.login_rate_limit_per_account.to_string(), "10/min");
        assert_eq!(c.login_rate_limit_per_ip.to_string(), "60/min");
        assert_eq!(c.rate_limit.to_string(), "off");
        assert_eq!(c.rate_limit_per_ip.to_string(), "off");
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("10"), Ok(10));
        assert_eq!(parse_size("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("1XB").is_err());
    }

    #[test]
    fn secret_is_not_in_debug() {
        let c = Config::try_parse_from(["gateway", "--jwt-secret", "s3cr3t-value"]).unwrap();
        assert!(!format!("{c:?}").contains("s3cr3t"));
        let c = Config::try_parse_from([
            "gateway",
            "--etcd-username",
            "root",
            "--etcd-password",
            "etcd-pa55",
        ])
        .unwrap();
        assert!(!format!("{c:?}").contains("etcd-pa55"));
    }

    #[test]
    fn etcd_auth_and_tls_reach_the_clients() {
        let c = Config::try_parse_from([
            "gateway",
            "--etcd-endpoints",
            "10.0.0.1:2379",
            "--etcd-username",
            "gw",
            "--etcd-password",
            "pw",
            "--etcd-ca",
            "ca.pem",
        ])
        .unwrap();
        let etcd = c.client_options().etcd;
        assert_eq!(etcd.endpoints, ["10.0.0.1:2379"]);
        assert_eq!(etcd.auth.map(|a| a.username).as_deref(), Some("gw"));
        assert_eq!(etcd.tls.map(|t| t.ca), Some("ca.pem".into()));
    }
}
