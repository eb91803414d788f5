//! One reconnectable etcd client per registration / per discoverer.
//!
//! etcd-client's channel does not reliably recover on its own after etcd went away (its
//! balancer may drop a failed endpoint for good), so every background task that sees a
//! failure calls [`Connection::invalidate`] and the next [`Connection::client`] builds a
//! fresh client. Every request goes through [`call`], which bounds it by the dial timeout.

use std::{future::Future, time::Duration};

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
    /// What to connect to.
    options: EtcdOptions,
    /// The live client and its generation; `None` until first use and after invalidation.
    current: Mutex<Option<(u64, Client)>>,
    /// Generation counter, so a task only invalidates the client it saw fail.
    next_generation: std::sync::atomic::AtomicU64,
}

impl Connection {
    pub(crate) fn new(options: EtcdOptions) -> Self {
        Self {
            options,
            current: Mutex::new(None),
            next_generation: std::sync::atomic::AtomicU64::new(1),
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
    pub(crate) async fn client(&self) -> Result<(u64, Client), Error> {
        let mut current = self.current.lock().await;
        if let Some((generation, client)) = &*current {
            return Ok((*generation, client.clone()));
        }
        let client = connect(&self.options).await?;
        let generation = self
            .next_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *current = Some((generation, client.clone()));
        Ok((generation, client))
    }

    /// Drops the client of `generation` (if still current) so the next use reconnects.
    pub(crate) async fn invalidate(&self, generation: u64) {
        let mut current = self.current.lock().await;
        if matches!(&*current, Some((g, _)) if *g == generation) {
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
            if rest.is_empty() || rest.contains('/') || rest.contains("://") {
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

/// Builds a client. Without auth this does not talk to etcd yet (the channel is lazy);
/// with auth it authenticates, bounded by the dial timeout.
pub(crate) async fn connect(options: &EtcdOptions) -> Result<Client, Error> {
    let urls = endpoint_urls(options)?;
    let endpoints = options.endpoints_display();
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
        connect = apply_tls(connect, tls, &endpoints)?;
    }
    match tokio::time::timeout(options.dial_timeout, Client::connect(urls, Some(connect))).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(classify_connect_error(options, e)),
        Err(_) => Err(Error::Unreachable {
            endpoints,
            source: CallError::Timeout(options.dial_timeout),
        }),
    }
}

fn classify_connect_error(options: &EtcdOptions, e: etcd_client::Error) -> Error {
    let endpoints = options.endpoints_display();
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

    #[cfg(not(feature = "tls"))]
    #[tokio::test]
    async fn tls_without_the_feature_is_an_error() {
        let err = connect(&opts(&["h:1"], true)).await.err().unwrap();
        assert!(matches!(err, Error::Tls { .. }), "{err}");
    }
}
