//! [`EtcdArgs`]: the etcd flags of a binary, and [`TelemetryArgs`]: its logging and tracing
//! flags, each with an environment variable (feature `cli`).
//!
//! ```
//! #[derive(clap::Parser)]
//! struct Config {
//!     #[command(flatten)]
//!     etcd: volo_etcd::EtcdArgs,
//! }
//! # use clap::Parser as _;
//! let config = Config::parse_from(["svc", "--etcd-endpoints", "10.0.0.1:2379,10.0.0.2:2379"]);
//! assert_eq!(config.etcd.options().endpoints.len(), 2);
//! ```

use std::{fmt, path::PathBuf, time::Duration};

use crate::{
    options::{Credentials, DEFAULT_PREFIX, EtcdOptions, TlsOptions},
    telemetry::{LogFormat, TelemetryOptions},
};

/// How to reach etcd, from flags or environment variables; [`EtcdArgs::options`] turns it into
/// [`EtcdOptions`]. Meant for `#[command(flatten)]` into a binary's own `clap::Parser`.
///
/// | flag | env | default |
/// |---|---|---|
/// | `--etcd-endpoints` | `ETCD_ENDPOINTS` | `127.0.0.1:2379` (comma-separated) |
/// | `--etcd-prefix` | `ETCD_PREFIX` | `kitex/registry-etcd` |
/// | `--etcd-dial-timeout` | `ETCD_DIAL_TIMEOUT` | `5s` |
/// | `--etcd-username`, `--etcd-password` | `ETCD_USERNAME`, `ETCD_PASSWORD` | no auth; both or neither |
/// | `--etcd-ca` | `ETCD_CA` | no TLS |
/// | `--etcd-cert`, `--etcd-key` | `ETCD_CERT`, `ETCD_KEY` | no client certificate; both, and with `--etcd-ca` |
///
/// Incomplete pairs (a password without a user, a client key without its certificate or
/// without a CA, ...) are refused while parsing. `Debug` never prints the password.
#[derive(clap::Args, Clone)]
// Without this, clap would make the doc comment above the binary's `--help` text.
#[command(about = None, long_about = None)]
pub struct EtcdArgs {
    /// etcd endpoints, comma-separated, with or without http:// or https://
    /// (scheme-less endpoints use TLS exactly when --etcd-ca is given).
    #[arg(
        id = "etcd_endpoints",
        long = "etcd-endpoints",
        env = "ETCD_ENDPOINTS",
        value_name = "ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,

    /// Key prefix of the registry; must match the other services' (Kitex's default).
    #[arg(
        id = "etcd_prefix",
        long = "etcd-prefix",
        env = "ETCD_PREFIX",
        value_name = "PREFIX",
        default_value = DEFAULT_PREFIX
    )]
    pub prefix: String,

    /// Bound on connecting to etcd and on every etcd request (e.g. 500ms, 5s).
    #[arg(
        id = "etcd_dial_timeout",
        long = "etcd-dial-timeout",
        env = "ETCD_DIAL_TIMEOUT",
        value_name = "DURATION",
        default_value = "5s",
        value_parser = humantime::parse_duration
    )]
    pub dial_timeout: Duration,

    /// etcd user, when etcd has authentication enabled; needs --etcd-password.
    #[arg(
        id = "etcd_username",
        long = "etcd-username",
        env = "ETCD_USERNAME",
        value_name = "USER",
        requires = "etcd_password"
    )]
    pub username: Option<String>,

    /// Password of --etcd-username.
    #[arg(
        id = "etcd_password",
        long = "etcd-password",
        env = "ETCD_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true,
        requires = "etcd_username"
    )]
    pub password: Option<String>,

    /// CA certificate (PEM) that signed etcd's server certificate; enables TLS.
    #[arg(
        id = "etcd_ca",
        long = "etcd-ca",
        env = "ETCD_CA",
        value_name = "PEM_FILE"
    )]
    pub ca: Option<PathBuf>,

    /// Client certificate (PEM), when etcd requires one; needs --etcd-key.
    #[arg(
        id = "etcd_cert",
        long = "etcd-cert",
        env = "ETCD_CERT",
        value_name = "PEM_FILE",
        requires = "etcd_key"
    )]
    pub cert: Option<PathBuf>,

    /// Private key (PEM) of --etcd-cert; needs --etcd-cert and --etcd-ca.
    #[arg(
        id = "etcd_key",
        long = "etcd-key",
        env = "ETCD_KEY",
        value_name = "PEM_FILE",
        requires = "etcd_cert",
        requires = "etcd_ca"
    )]
    pub key: Option<PathBuf>,
}

impl EtcdArgs {
    /// The options these flags describe.
    ///
    /// Parsed by clap, the pairs are complete. Built by hand: a user without a password
    /// authenticates with an empty password (and etcd refuses it), a password without a user
    /// is ignored, and a certificate or key without a CA means no TLS.
    pub fn options(&self) -> EtcdOptions {
        EtcdOptions {
            endpoints: self.endpoints.clone(),
            prefix: self.prefix.clone(),
            dial_timeout: self.dial_timeout,
            auth: self.username.as_ref().map(|username| {
                Credentials::new(username, self.password.clone().unwrap_or_default())
            }),
            tls: self.ca.as_ref().map(|ca| TlsOptions {
                ca: ca.clone(),
                cert: self.cert.clone(),
                key: self.key.clone(),
            }),
        }
    }
}

impl fmt::Debug for EtcdArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdArgs")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("dial_timeout", &self.dial_timeout)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca", &self.ca)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish()
    }
}

/// How a binary logs and traces, from flags or environment variables; [`TelemetryArgs::options`]
/// turns it into [`TelemetryOptions`] for [`crate::telemetry::init`].
///
/// | flag | env | default |
/// |---|---|---|
/// | `--log-format` | `LOG_FORMAT` | `text` (or `json`) |
/// | `--otlp-endpoint` | `OTEL_EXPORTER_OTLP_ENDPOINT` | no export |
#[derive(clap::Args, Clone, Debug)]
#[command(about = None, long_about = None)]
pub struct TelemetryArgs {
    /// Logs as lines for people (`text`) or one JSON object per line (`json`).
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// Export spans to this OTLP/HTTP receiver (e.g. http://127.0.0.1:4318; they go to
    /// /v1/traces under it). Unset: nothing is exported.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
}

impl TelemetryArgs {
    /// The options these flags describe, for a binary whose spans carry `service_name`. An
    /// empty endpoint is none, as OpenTelemetry's variables read empty as unset.
    pub fn options(&self, service_name: &str) -> TelemetryOptions {
        TelemetryOptions {
            log_format: self.log_format,
            otlp_endpoint: self
                .otlp_endpoint
                .clone()
                .filter(|endpoint| !endpoint.trim().is_empty()),
            service_name: service_name.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser, error::ErrorKind};

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        etcd: EtcdArgs,
    }

    fn parse(args: &[&str]) -> Result<EtcdArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("test").chain(args.iter().copied())).map(|c| c.etcd)
    }

    #[test]
    fn defaults_are_those_of_etcd_options() {
        assert_eq!(parse(&[]).unwrap().options(), EtcdOptions::default());
    }

    #[test]
    fn every_flag_is_read() {
        let args = parse(&[
            "--etcd-endpoints",
            "https://10.0.0.1:2379,10.0.0.2:2379",
            "--etcd-prefix",
            "custom/prefix",
            "--etcd-dial-timeout",
            "1500ms",
            "--etcd-username",
            "root",
            "--etcd-password",
            "s3cret",
            "--etcd-ca",
            "/pki/ca.pem",
            "--etcd-cert",
            "/pki/client.pem",
            "--etcd-key",
            "/pki/client-key.pem",
        ])
        .unwrap();
        assert_eq!(
            args.options(),
            EtcdOptions {
                endpoints: vec!["https://10.0.0.1:2379".into(), "10.0.0.2:2379".into()],
                prefix: "custom/prefix".into(),
                dial_timeout: Duration::from_millis(1500),
                auth: Some(Credentials::new("root", "s3cret")),
                tls: Some(TlsOptions {
                    ca: "/pki/ca.pem".into(),
                    cert: Some("/pki/client.pem".into()),
                    key: Some("/pki/client-key.pem".into()),
                }),
            }
        );
    }

    #[test]
    fn a_ca_alone_is_tls_without_a_client_certificate() {
        let tls = parse(&["--etcd-ca", "ca.pem"]).unwrap().options().tls;
        assert_eq!(
            tls,
            Some(TlsOptions {
                ca: "ca.pem".into(),
                cert: None,
                key: None,
            })
        );
    }

    #[test]
    fn every_flag_has_its_environment_variable() {
        let cmd = Cli::command();
        let env = |long: &str| {
            let arg = cmd
                .get_arguments()
                .find(|a| a.get_long() == Some(long))
                .unwrap_or_else(|| panic!("no --{long}"));
            arg.get_env().map(|e| e.to_string_lossy().into_owned())
        };
        for (long, var) in [
            ("etcd-endpoints", "ETCD_ENDPOINTS"),
            ("etcd-prefix", "ETCD_PREFIX"),
            ("etcd-dial-timeout", "ETCD_DIAL_TIMEOUT"),
            ("etcd-username", "ETCD_USERNAME"),
            ("etcd-password", "ETCD_PASSWORD"),
            ("etcd-ca", "ETCD_CA"),
            ("etcd-cert", "ETCD_CERT"),
            ("etcd-key", "ETCD_KEY"),
        ] {
            assert_eq!(env(long).as_deref(), Some(var), "--{long}");
        }
        let password = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some("etcd-password"))
            .unwrap();
        assert!(password.is_hide_env_values_set());
    }

    #[test]
    fn the_binary_keeps_its_own_help_text() {
        #[derive(Parser)]
        #[command(about = "The binary's own description")]
        struct Documented {
            #[command(flatten)]
            etcd: EtcdArgs,
        }
        let mut cmd = Documented::command();
        let help = cmd.render_long_help().to_string();
        assert!(help.starts_with("The binary's own description"), "{help}");
        assert!(!help.contains("Meant for"), "{help}");
        assert!(
            Cli::command()
                .render_long_help()
                .to_string()
                .starts_with("Usage:")
        );
    }

    #[test]
    fn debug_hides_the_password() {
        let args = parse(&["--etcd-username", "root", "--etcd-password", "s3cret"]).unwrap();
        let shown = format!("{args:?}");
        assert!(
            shown.contains("root") && shown.contains("<redacted>") && !shown.contains("s3cret"),
            "{shown}"
        );
        assert!(format!("{:?}", parse(&[]).unwrap()).contains("password: None"));
    }

    /// The error names the missing flag and never echoes the password.
    fn missing(args: &[&str], flag: &str) {
        let err = parse(args).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument, "{err}");
        let text = err.to_string();
        assert!(
            text.contains("required arguments were not provided") && text.contains(flag),
            "expected {flag} in: {text}"
        );
        assert!(!text.contains("s3cret"), "password leaked: {text}");
    }

    #[test]
    fn incomplete_pairs_are_refused() {
        missing(&["--etcd-password", "s3cret"], "--etcd-username <USER>");
        missing(&["--etcd-username", "root"], "--etcd-password <PASSWORD>");
        missing(
            &["--etcd-ca", "ca.pem", "--etcd-cert", "c.pem"],
            "--etcd-key <PEM_FILE>",
        );
        missing(
            &["--etcd-ca", "ca.pem", "--etcd-key", "k.pem"],
            "--etcd-cert <PEM_FILE>",
        );
        missing(
            &["--etcd-cert", "c.pem", "--etcd-key", "k.pem"],
            "--etcd-ca <PEM_FILE>",
        );
    }

    #[test]
    fn a_bad_dial_timeout_is_refused() {
        let err = parse(&["--etcd-dial-timeout", "soon"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueValidation, "{err}");
        assert!(err.to_string().contains("--etcd-dial-timeout"), "{err}");
    }
}
