//! Plain configuration structs: how to reach etcd, how to register, how a client calls.
//!
//! Every struct has a `Default` (or a `new` when a field has no sensible default) that matches
//! the seed system (Kitex + kitex-contrib/registry-etcd), so generated code and tests only set
//! what differs.

use std::{collections::BTreeMap, fmt, net::IpAddr, path::PathBuf, time::Duration};

/// The key prefix kitex-contrib/registry-etcd uses; keys are `<prefix>/<service>/<host:port>`.
pub const DEFAULT_PREFIX: &str = "kitex/registry-etcd";

/// The weight Kitex registers when none is set, and the weight a reader assumes for
/// records whose weight is missing, zero or negative.
pub const DEFAULT_WEIGHT: u32 = 10;

/// How to reach etcd.
///
/// Default: endpoints `["127.0.0.1:2379"]`, prefix `kitex/registry-etcd`, dial timeout 5 s,
/// no auth, no TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdOptions {
    /// etcd client URLs, `host:port`, with or without `http://` / `https://`.
    /// A scheme-less endpoint uses TLS exactly when `tls` is set.
    pub endpoints: Vec<String>,
    /// Key prefix shared by registrars and resolvers; must match on both sides
    /// (Go Kitex services use `kitex/registry-etcd` unless configured otherwise).
    pub prefix: String,
    /// Bound on connecting and on every single etcd request (grant, put, get, ...), so a
    /// dead or black-holed etcd turns into an error instead of a hang.
    pub dial_timeout: Duration,
    /// User and password when etcd has authentication enabled.
    pub auth: Option<Credentials>,
    /// Certificates when etcd serves TLS (crate feature `tls`, on by default; built without
    /// it, a TLS setting is an error at connect, never silently ignored). A TLS failure
    /// (untrusted server, refused client certificate) is `Error::Tls`, never a fallback
    /// to plain text.
    pub tls: Option<TlsOptions>,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        Self {
            endpoints: vec!["127.0.0.1:2379".to_owned()],
            prefix: DEFAULT_PREFIX.to_owned(),
            dial_timeout: Duration::from_secs(5),
            auth: None,
            tls: None,
        }
    }
}

impl EtcdOptions {
    /// Default options with these endpoints.
    pub fn with_endpoints<I, S>(endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// The prefix without trailing slashes: `kitex/registry-etcd/` and `kitex/registry-etcd`
    /// name the same keys.
    pub(crate) fn clean_prefix(&self) -> &str {
        self.prefix.trim_end_matches('/')
    }

    /// `<prefix>/<service>/`: the trailing slash keeps `user` from matching `user-admin`.
    pub(crate) fn service_prefix(&self, service: &str) -> String {
        format!("{}/{}/", self.clean_prefix(), service)
    }

    /// `endpoints` joined for messages: `127.0.0.1:2379,127.0.0.1:22379`.
    pub(crate) fn endpoints_display(&self) -> String {
        self.endpoints.join(",")
    }
}

/// etcd user and password. `Debug` never prints the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// etcd user name.
    pub username: String,
    /// Its password; kept out of `Debug` output and logs.
    pub password: String,
}

impl Credentials {
    /// Credentials for `username` / `password`.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// PEM files for a TLS connection to etcd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsOptions {
    /// CA certificate that signed etcd's server certificate.
    pub ca: PathBuf,
    /// Client certificate, when etcd requires client certificates (`--client-cert-auth`).
    /// Must be given together with `key`.
    pub cert: Option<PathBuf>,
    /// Private key of `cert`.
    pub key: Option<PathBuf>,
}

/// How an instance is registered. Default: TTL 10 s, weight 10, no tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterOptions {
    /// Lease time to live: how long a crashed instance stays visible. Rounded up to whole
    /// seconds; etcd raises values below its minimum (2 s with default settings).
    /// Keepalives are sent every TTL/3.
    pub ttl: Duration,
    /// Load-balancing weight written into the record (0 is written as 10, like Kitex).
    pub weight: u32,
    /// Free-form tags written into the record (`Instance::tags` on the client side).
    pub tags: BTreeMap<String, String>,
    /// How long [`Registration::deregister`](crate::Registration::deregister) waits after
    /// removing the key, while the server keeps serving, so that clients which poll the
    /// registry instead of watching it stop choosing this instance before its connections
    /// close: Kitex's resolver refreshes every 5 s, so 6 s in a fleet with Kitex callers.
    /// Zero by default: volo-etcd's clients watch, and drop the instance at once.
    pub linger: Duration,
}

impl Default for RegisterOptions {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(10),
            weight: DEFAULT_WEIGHT,
            tags: BTreeMap::new(),
            linger: Duration::ZERO,
        }
    }
}

/// Everything a server needs to announce itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeOptions {
    /// Name clients resolve; the `<service>` part of the key (no `/`, not empty).
    pub service_name: String,
    /// Address to register instead of the listener's; wins over `KITEX_IP_TO_REGISTRY`.
    pub advertise: Option<IpAddr>,
    /// Where the registry lives.
    pub etcd: EtcdOptions,
    /// Lease and record contents.
    pub register: RegisterOptions,
}

impl ServeOptions {
    /// Default etcd and registration options for `service_name`.
    pub fn new(service_name: impl Into<String>) -> Self {
        Self {
            service_name: service_name.into(),
            advertise: None,
            etcd: EtcdOptions::default(),
            register: RegisterOptions::default(),
        }
    }
}

/// Client defaults of the seed (Kitex easy_note): rpc timeout 3 s, connect timeout 50 ms,
/// 2 retries, service name from the IDL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// Name to resolve in etcd; `None` means the IDL service's name.
    pub service_name: Option<String>,
    /// Where the registry lives.
    pub etcd: EtcdOptions,
    /// Whole-call deadline (volo-thrift has none by default).
    pub rpc_timeout: Duration,
    /// TCP connect deadline per attempt.
    pub connect_timeout: Duration,
    /// Extra attempts on transport errors, each on another picked instance.
    pub retry_count: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            service_name: None,
            etcd: EtcdOptions::default(),
            rpc_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_millis(50),
            retry_count: 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_seed() {
        let e = EtcdOptions::default();
        assert_eq!(e.endpoints, ["127.0.0.1:2379"]);
        assert_eq!(e.prefix, "kitex/registry-etcd");
        assert_eq!(e.dial_timeout, Duration::from_secs(5));
        let r = RegisterOptions::default();
        assert_eq!((r.ttl, r.weight), (Duration::from_secs(10), 10));
        let c = ClientOptions::default();
        assert_eq!(c.rpc_timeout, Duration::from_secs(3));
        assert_eq!(c.connect_timeout, Duration::from_millis(50));
        assert_eq!(c.retry_count, 2);
    }

    #[test]
    fn debug_hides_the_password() {
        let c = Credentials::new("root", "s3cret");
        let shown = format!("{c:?}");
        assert!(
            shown.contains("root") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    #[test]
    fn service_prefix_ignores_trailing_slash() {
        let mut e = EtcdOptions::default();
        assert_eq!(e.service_prefix("user"), "kitex/registry-etcd/user/");
        e.prefix = "kitex/registry-etcd/".into();
        assert_eq!(e.service_prefix("user"), "kitex/registry-etcd/user/");
    }
}
