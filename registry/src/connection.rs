//! One reconnectable etcd client per registration / per discoverer.
//!
//! etcd-client's channel does not reliably recover on its own after etcd went away (its
//! balancer may drop a failed endpoint for good, or keep sending new requests to a dead
//! member), so a client here talks to one endpoint only. Every background task that sees a
//! failure calls [`Connection::invalidate`]; the next [`Connection::client`] connects again,
//! starting with the endpoint after the one that failed and checking that it answers, so a
//! dead member of a cluster costs one refused (or timed-out) connect, not a lost lease.
//! Every request goes through [`call`], which bounds it by the dial timeout.
//!
//! The options are prepared once, in [`Connection::new`]: endpoints parsed into URLs, PEM
//! files read. Options that cannot work (a malformed endpoint, an unreadable certificate)
//! are the answer of every [`Connection::client`] call, without a connect.

use std::{
    future::Future,
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
    time::Duration,
};

use etcd_client::{Client, ConnectOptions};
use tokio::sync::Mutex;

use crate::{
    error::{CallError, Error},
    options::EtcdOptions,
};

/// HTTP/2 ping interval on the etcd connection: a black-holed etcd breaks open watch and
/// keepalive streams after about this plus the dial timeout. etcd refuses pings more often
/// than every 5 s (`--grpc-keepalive-min-time`).
const H2_PING_INTERVAL: Duration = Duration::from_secs(10);

/// A lazily (re)connected etcd client.
pub(crate) struct Connection {
    /// As given: prefix, timeouts, credentials for messages.
    options: EtcdOptions,
    /// Who uses it, for metrics: `registration` or `discovery`.
    role: &'static str,
    /// What every connect uses, or why the options cannot be used.
    target: Result<Target, Unusable>,
    /// The live client; `None` until first use and after invalidation.
    current: Mutex<Option<Current>>,
    /// Generation counter, so a task only invalidates the client it saw fail.
    next_generation: AtomicU64,
    /// Index into `options.endpoints` where the next connect starts.
    start_at: AtomicUsize,
}

/// Why a use of a connection failed. Registration and discovery both handle it: the one
/// who saw a request fail invalidates that client's generation.
#[derive(Debug)]
pub(crate) enum Failure {
    /// No client could be made (options, TLS, auth or network).
    Connect(Error),
    /// A request or a stream failed on the client of this generation.
    Call(CallError, u64),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "{e}"),
            Failure::Call(e, _) => write!(f, "{e}"),
        }
    }
}

/// The options prepared for connecting.
struct Target {
    /// One per endpoint, with the scheme the TLS setting implies.
    urls: Vec<String>,
    /// Timeouts, keepalive, credentials and TLS (certificates read).
    connect: ConnectOptions,
}

/// Why the options cannot be used: the error of every connect, made again each time.
#[derive(Debug)]
enum Unusable {
    Options(String),
    Tls(String),
}

/// The client in use, the endpoint it talks to, and its generation.
struct Current {
    generation: u64,
    endpoint: usize,
    client: Client,
}

impl Connection {
    /// `role` names the user in metrics: `registration` or `discovery`.
    pub(crate) fn new(options: EtcdOptions, role: &'static str) -> Self {
        let target = Target::prepare(&options).map_err(|e| match e {
            Error::Tls { reason, .. } => Unusable::Tls(reason),
            Error::InvalidOptions(why) => Unusable::Options(why),
            // `prepare` makes no other error.
            other => Unusable::Options(other.to_string()),
        });
        Self {
            options,
            role,
            target,
            current: Mutex::new(None),
            next_generation: AtomicU64::new(1),
            start_at: AtomicUsize::new(0),
        }
    }

    pub(crate) fn options(&self) -> &EtcdOptions {
        &self.options
    }

    pub(crate) fn endpoints(&self) -> String {
        self.options.endpoints_display()
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.options.dial_timeout
    }

    /// The current client (connecting if needed) and its generation.
    ///
    /// Connecting tries the endpoints in turn, from the one after the last failure, and takes
    /// the first that answers. Errors that every endpoint would give (bad options, refused
    /// credentials) end the round at once; otherwise the error is the most telling one seen
    /// (a TLS failure over "unreachable").
    pub(crate) async fn client(&self) -> Result<(u64, Client), Error> {
        let mut current = self.current.lock().await;
        if let Some(c) = &*current {
            return Ok((c.generation, c.client.clone()));
        }
        let target = self.target.as_ref().map_err(|unusable| match unusable {
            Unusable::Options(why) => Error::InvalidOptions(why.clone()),
            Unusable::Tls(reason) => Error::Tls {
                endpoints: self.endpoints(),
                reason: reason.clone(),
            },
        })?;
        let urls = &target.urls;
        let start = self.start_at.load(Ordering::Relaxed);
        let mut error = None;
        for k in 0..urls.len() {
            let endpoint = (start + k) % urls.len();
            match self.connect(&target.connect, &urls[endpoint]).await {
                Ok(client) => {
                    let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
                    if generation > 1 {
                        crate::metrics::registry::reconnected(self.role);
                    } else {
                        crate::metrics::registry::connecting(self.role);
                    }
                    *current = Some(Current {
                        generation,
                        endpoint,
                        client: client.clone(),
                    });
                    return Ok((generation, client));
                }
                Err(e @ (Error::Unreachable { .. } | Error::Tls { .. })) => {
                    if !matches!(error, Some(Error::Tls { .. })) {
                        error = Some(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        self.start_at.store(start + 1, Ordering::Relaxed);
        Err(error.expect("at least one endpoint"))
    }

    /// Drops the client of `generation` (if still current) so the next use reconnects,
    /// starting with the next endpoint.
    pub(crate) async fn invalidate(&self, generation: u64) {
        let mut current = self.current.lock().await;
        if let Some(c) = current.as_ref().filter(|c| c.generation == generation) {
            self.start_at.store(c.endpoint + 1, Ordering::Relaxed);
            *current = None;
        }
    }

    /// Runs one request on a client, bounded by the dial timeout.
    pub(crate) async fn call<T, F>(&self, what: F) -> Result<T, CallError>
    where
        F: Future<Output = Result<T, etcd_client::Error>>,
    {
        call(self.timeout(), what).await
    }
}

/// Runs one etcd request, bounded by `timeout`.
pub(crate) async fn call<T, F>(timeout: Duration, request: F) -> Result<T, CallError>
where
    F: Future<Output = Result<T, etcd_client::Error>>,
{
    match tokio::time::timeout(timeout, request).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(CallError::Etcd(e)),
        Err(_) => Err(CallError::Timeout(timeout)),
    }
}

impl EtcdOptions {
    /// Checks what can be checked without etcd: endpoints are `host:port` (optionally with
    /// a scheme that agrees with the TLS setting), and the TLS files can be read. A program
    /// calls it at start, so that a typo stops it with a clear message instead of failing
    /// every call later.
    pub fn validate(&self) -> Result<(), Error> {
        Target::prepare(self).map(drop)
    }
}

/// `host:port` or `[v6]:port`, with a port from 1 to 65535.
fn is_host_port(text: &str) -> bool {
    let Some((host, port)) = text.rsplit_once(':') else {
        return false;
    };
    let host_ok = match host.strip_prefix('[') {
        Some(v6) => v6
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok()),
        None => {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        }
    };
    host_ok && port.parse::<u16>().is_ok_and(|p| p != 0)
}

/// Endpoint URLs for etcd-client: an explicit scheme must agree with the TLS setting, a
/// scheme-less endpoint gets `https://` exactly when TLS is configured.
pub(crate) fn endpoint_urls(options: &EtcdOptions) -> Result<Vec<String>, Error> {
    if options.endpoints.is_empty() {
        return Err(Error::InvalidOptions("no etcd endpoints configured".into()));
    }
    let tls = options.tls.is_some();
    options
        .endpoints
        .iter()
        .map(|raw| {
            let e = raw.trim();
            let (scheme_tls, rest) = if let Some(rest) = e.strip_prefix("https://") {
                (Some(true), rest)
            } else if let Some(rest) = e.strip_prefix("http://") {
                (Some(false), rest)
            } else {
                (None, e)
            };
            let rest = rest.trim_end_matches('/');
            if !is_host_port(rest) {
                return Err(Error::InvalidOptions(format!(
                    "endpoint {raw:?} is not host:port (optionally with http:// or https://)"
                )));
            }
            match (scheme_tls, tls) {
                (Some(true), false) => Err(Error::InvalidOptions(format!(
                    "endpoint {raw:?} asks for https but EtcdOptions::tls is not set"
                ))),
                (Some(false), true) => Err(Error::InvalidOptions(format!(
                    "endpoint {raw:?} asks for plain http but EtcdOptions::tls is set"
                ))),
                _ if tls => Ok(format!("https://{rest}")),
                _ => Ok(format!("http://{rest}")),
            }
        })
        .collect()
}

impl Target {
    fn prepare(options: &EtcdOptions) -> Result<Self, Error> {
        let urls = endpoint_urls(options)?;
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(options.dial_timeout)
            .with_keep_alive(H2_PING_INTERVAL, options.dial_timeout)
            // Pings only while a watch/keepalive stream is open: etcd answers idle pings with
            // GOAWAY ("too many pings") under its default enforcement policy.
            .with_keep_alive_while_idle(false);
        if let Some(auth) = &options.auth {
            connect = connect
                .with_user(auth.username.clone(), auth.password.clone())
                .with_auto_token_refresh(true);
        }
        if let Some(tls) = &options.tls {
            connect = apply_tls(connect, tls, &options.endpoints_display())?;
        }
        Ok(Self { urls, connect })
    }
}

impl Connection {
    /// A client for the one endpoint `url`, once that endpoint answered: with auth, by
    /// authenticating; without, by asking for its status. Both within the dial timeout.
    async fn connect(&self, connect: &ConnectOptions, url: &str) -> Result<Client, Error> {
        let options = &self.options;
        let answered = async {
            let mut client = Client::connect([url], Some(connect.clone())).await?;
            if options.auth.is_none() {
                client.status().await?;
            }
            Ok::<_, etcd_client::Error>(client)
        };
        match tokio::time::timeout(options.dial_timeout, answered).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(self.classify_connect_error(e)),
            Err(_) => Err(Error::Unreachable {
                endpoints: self.endpoints(),
                source: CallError::Timeout(options.dial_timeout),
            }),
        }
    }
}

/// How failures read, given the options (TLS, auth) they happened with.
impl Connection {
    fn classify_connect_error(&self, e: etcd_client::Error) -> Error {
        let options = &self.options;
        let endpoints = options.endpoints_display();
        if let Some(reason) = self.tls_failure_with(&e) {
            return Error::Tls { endpoints, reason };
        }
        if let (Some(auth), etcd_client::Error::GRpcStatus(status)) = (&options.auth, &e) {
            // gRPC codes 16 (unauthenticated) and 7 (permission denied); etcd 3.4 answers a bad
            // password with "invalid argument: authentication failed".
            let code = i32::from(status.code());
            let rejected =
                code == 16 || code == 7 || status.message().contains("authentication failed");
            if rejected {
                return Error::Auth {
                    endpoints,
                    username: auth.username.clone(),
                    source: e,
                };
            }
        }
        if matches!(
            e,
            etcd_client::Error::InvalidArgs(_) | etcd_client::Error::InvalidUri(_)
        ) {
            return Error::InvalidOptions(format!("etcd at {endpoints}: {e}"));
        }
        Error::Unreachable {
            endpoints,
            source: CallError::Etcd(e),
        }
    }

    /// The error for a failure while starting up (registering, first list): a TLS failure,
    /// a refusal, or etcd not reachable.
    pub(crate) fn startup_error(&self, failure: Failure) -> Error {
        let source = match failure {
            Failure::Connect(e) => return e,
            Failure::Call(source, _) => source,
        };
        let options = &self.options;
        let endpoints = options.endpoints_display();
        if let CallError::Etcd(e) = &source
            && let Some(reason) = self.tls_failure_with(e)
        {
            return Error::Tls { endpoints, reason };
        }
        if source.is_refusal() {
            Error::Refused { endpoints, source }
        } else {
            Error::Unreachable { endpoints, source }
        }
    }

    /// [`tls_failure`], plus one guess: with TLS 1.3 etcd checks the client certificate after
    /// the handshake, and a missing or refused one often shows up as nothing more than a
    /// connection closed (or a broken pipe) under the first request, when the server's alert
    /// is not read in time. Only used for the first requests of a registration or discoverer.
    pub(crate) fn tls_failure_with(&self, e: &etcd_client::Error) -> Option<String> {
        let options = &self.options;
        if let Some(reason) = tls_failure(e) {
            return Some(reason);
        }
        let tls = options.tls.as_ref()?;
        if !closed_by_peer(e) {
            return None;
        }
        let client_cert = match &tls.cert {
            Some(cert) => format!(
                "is the client certificate {} signed by etcd's --trusted-ca-file?",
                cert.display()
            ),
            None => "it probably requires a client certificate (EtcdOptions::tls.cert and .key \
                     are not set)"
                .to_owned(),
        };
        Some(format!(
            "etcd closed the connection after the TLS handshake; {client_cert}"
        ))
    }
}

/// What went wrong in TLS, when `e` is a TLS failure: our CA does not trust etcd's
/// certificate, etcd refused our client certificate, the peer does not speak TLS.
/// etcd-client reports these as "unavailable" or "transport error", like a dead server; the
/// cause is a `rustls::Error` among the error's sources, either as such or (when a layer
/// turned it into text) as its message.
#[cfg(feature = "tls")]
pub(crate) fn tls_failure(e: &etcd_client::Error) -> Option<String> {
    /// How rustls' (and tokio-rustls') error messages begin, for errors only known as text.
    const RUSTLS_MESSAGES: [&str; 7] = [
        "tls handshake eof", // tokio-rustls: the peer closed during the handshake
        "invalid peer certificate",
        "received fatal alert",
        "received corrupt message",
        "peer sent no certificates",
        "peer is incompatible",
        "peer misbehaved",
    ];
    let mut found = None;
    for_each_source(e, |err| {
        // rustls errors travel inside `io::Error`s, whose `source()` skips them.
        let inner = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref());
        let typed = err
            .downcast_ref::<rustls::Error>()
            .or_else(|| inner.and_then(|inner| inner.downcast_ref::<rustls::Error>()));
        if let Some(tls) = typed {
            found = Some(describe_tls(tls));
            return true;
        }
        let text = inner.map_or_else(|| err.to_string(), |inner| inner.to_string());
        if RUSTLS_MESSAGES.iter().any(|m| text.starts_with(m)) {
            found = Some(format!(
                "TLS handshake failed: {text}{}",
                hint_for_text(&text)
            ));
            return true;
        }
        false
    });
    found
}

#[cfg(not(feature = "tls"))]
pub(crate) fn tls_failure(_e: &etcd_client::Error) -> Option<String> {
    None
}

/// Whether the peer closed the connection under a request (before any answer): hyper's
/// "connection closed", or a broken pipe / reset / early end of the stream.
pub(crate) fn closed_by_peer(e: &etcd_client::Error) -> bool {
    use std::io::ErrorKind;
    let mut closed = false;
    for_each_source(e, |err| {
        let io_kind = err.downcast_ref::<std::io::Error>().map(|io| io.kind());
        closed = matches!(
            io_kind,
            Some(
                ErrorKind::BrokenPipe
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::UnexpectedEof
            )
        ) || err.to_string().contains("connection closed");
        closed
    });
    closed
}

/// Calls `visit` on the sources of `e` (etcd-client's error has no `source()`; its
/// variants hold the transport's errors) until it returns `true`.
fn for_each_source(
    e: &etcd_client::Error,
    mut visit: impl FnMut(&(dyn std::error::Error + 'static)) -> bool,
) {
    let mut next: Option<&(dyn std::error::Error + 'static)> = match e {
        etcd_client::Error::GRpcStatus(status) => Some(status),
        etcd_client::Error::TransportError(transport) => Some(transport),
        etcd_client::Error::IoError(io) => Some(io),
        _ => None,
    };
    while let Some(err) = next {
        if visit(err) {
            return;
        }
        next = err.source();
    }
}

/// A rustls error with a hint at the usual cause.
#[cfg(feature = "tls")]
fn describe_tls(e: &rustls::Error) -> String {
    use rustls::{AlertDescription as Alert, CertificateError, Error as E};
    let hint = match e {
        E::InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::BadSignature) => {
            " (EtcdOptions::tls.ca is not the CA that signed etcd's certificate)"
        }
        E::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => " (etcd's certificate is not issued for the endpoint's host)",
        E::AlertReceived(Alert::CertificateRequired) => {
            " (etcd requires a client certificate: set EtcdOptions::tls.cert and .key)"
        }
        E::AlertReceived(Alert::BadCertificate | Alert::UnknownCA) => {
            " (etcd refused the client certificate: is it signed by etcd's --trusted-ca-file?)"
        }
        E::InvalidMessage(_) => " (does this endpoint serve TLS?)",
        _ => "",
    };
    format!("TLS handshake failed: {e}{hint}")
}

/// The hint of [`describe_tls`] for a rustls message known only as text.
#[cfg(feature = "tls")]
fn hint_for_text(text: &str) -> &'static str {
    if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        " (EtcdOptions::tls.ca is not the CA that signed etcd's certificate)"
    } else if text.contains("CertificateRequired") {
        " (etcd requires a client certificate: set EtcdOptions::tls.cert and .key)"
    } else if text.contains("BadCertificate") || text.contains("UnknownCA") {
        " (etcd refused the client certificate: is it signed by etcd's --trusted-ca-file?)"
    } else if text.starts_with("received corrupt message") || text.contains("handshake eof") {
        " (does this endpoint serve TLS?)"
    } else {
        ""
    }
}

#[cfg(feature = "tls")]
fn apply_tls(
    connect: ConnectOptions,
    tls: &crate::options::TlsOptions,
    endpoints: &str,
) -> Result<ConnectOptions, Error> {
    use etcd_client::{Certificate, Identity};
    let read = |what: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| Error::Tls {
            endpoints: endpoints.to_owned(),
            reason: format!("cannot read {what} {}: {e}", path.display()),
        })
    };
    let mut config =
        etcd_client::TlsOptions::new().ca_certificate(Certificate::from_pem(read("CA", &tls.ca)?));
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            config = config.identity(Identity::from_pem(
                read("client certificate", cert)?,
                read("client key", key)?,
            ));
        }
        (None, None) => {}
        _ => {
            return Err(Error::Tls {
                endpoints: endpoints.to_owned(),
                reason: "a client certificate and its key must be given together".into(),
            });
        }
    }
    Ok(connect.with_tls(config))
}

#[cfg(not(feature = "tls"))]
fn apply_tls(
    _connect: ConnectOptions,
    _tls: &crate::options::TlsOptions,
    endpoints: &str,
) -> Result<ConnectOptions, Error> {
    Err(Error::Tls {
        endpoints: endpoints.to_owned(),
        reason: "volo-etcd was built without its `tls` feature".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::TlsOptions;

    fn opts(endpoints: &[&str], tls: bool) -> EtcdOptions {
        EtcdOptions {
            endpoints: endpoints.iter().map(|s| s.to_string()).collect(),
            tls: tls.then(|| TlsOptions {
                ca: "ca.pem".into(),
                cert: None,
                key: None,
            }),
            ..EtcdOptions::default()
        }
    }

    #[test]
    fn endpoints_with_or_without_scheme() {
        let urls = endpoint_urls(&opts(&["127.0.0.1:2379", "http://h:1/"], false)).unwrap();
        assert_eq!(urls, ["http://127.0.0.1:2379", "http://h:1"]);
        let urls = endpoint_urls(&opts(&["h:1", "https://h:2"], true)).unwrap();
        assert_eq!(urls, ["https://h:1", "https://h:2"]);
    }

    #[test]
    fn scheme_and_tls_must_agree() {
        assert!(endpoint_urls(&opts(&["https://h:1"], false)).is_err());
        assert!(endpoint_urls(&opts(&["http://h:1"], true)).is_err());
        assert!(endpoint_urls(&opts(&[], false)).is_err());
        assert!(endpoint_urls(&opts(&["h:1/x"], false)).is_err());
    }

    #[test]
    fn malformed_endpoints_are_refused_before_any_connect() {
        for bad in [
            "localhost",
            "h:",
            ":2379",
            "h:abc",
            "h:0",
            "h:70000",
            "a b:1",
            "http://",
        ] {
            let err = opts(&[bad], false).validate().unwrap_err();
            assert!(err.to_string().contains("host:port"), "{bad}: {err}");
        }
        for good in [
            "localhost:2379",
            "[::1]:2379",
            "http://10.0.0.1:2379",
            "etcd-0.x:1",
        ] {
            assert!(opts(&[good], false).validate().is_ok(), "{good}");
        }
    }

    #[cfg(feature = "tls")]
    #[test]
    fn an_unreadable_certificate_fails_validation() {
        let mut options = opts(&["h:1"], true);
        options.tls.as_mut().unwrap().ca = "/no/such/dir/ca.pem".into();
        let err = options.validate().unwrap_err();
        assert!(
            matches!(&err, Error::Tls { reason, .. } if reason.contains("cannot read CA /no/such/dir/ca.pem")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn unusable_options_answer_every_connect_without_dialing() {
        let options = opts(&["h:1/x"], false);
        let expected = options.validate().unwrap_err().to_string();
        assert!(expected.contains("host:port"), "{expected}");
        let conn = Connection::new(options, "test");
        for _ in 0..2 {
            let err = conn.client().await.err().unwrap();
            assert_eq!(err.to_string(), expected);
        }
    }

    #[cfg(not(feature = "tls"))]
    #[tokio::test]
    async fn tls_without_the_feature_is_an_error() {
        let options = opts(&["h:1"], true);
        assert!(matches!(options.validate(), Err(Error::Tls { .. })));
        let err = Connection::new(options, "test")
            .client()
            .await
            .err()
            .unwrap();
        assert!(matches!(err, Error::Tls { .. }), "{err}");
    }
}
