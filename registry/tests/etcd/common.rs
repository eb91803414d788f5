//! Shared helpers: options pointing at a test etcd, a raw etcd client, key lookups.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use test_support::Etcd;
use tokio::net::TcpListener;
use volo::{discovery::Instance, net::Address};
use volo_etcd::{EtcdOptions, RegisterOptions, ServeOptions, Shutdown, TlsOptions};

/// Generous bound for things that should happen "at once" on a loaded CI machine.
pub const SOON: Duration = Duration::from_secs(10);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "volo_etcd=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Options for `etcd`: its endpoint, a 2 s dial timeout, and for a TLS server its CA and
/// the client certificate (no credentials: tests with auth add them).
/// Log lines of `volo_etcd`, captured on the current thread (where a `#[tokio::test]`'s
/// spawned tasks run too), for tests that must show which code path ran.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Captures from now until the guard is dropped.
    pub fn start() -> (LogCapture, tracing::subscriber::DefaultGuard) {
        let capture = LogCapture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("volo_etcd=debug")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (capture, tracing::subscriber::set_default(subscriber))
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn etcd_options(etcd: &Etcd) -> EtcdOptions {
    EtcdOptions {
        endpoints: vec![etcd.endpoint()],
        dial_timeout: Duration::from_secs(2),
        tls: etcd.pki().map(|pki| TlsOptions {
            ca: pki.ca(),
            cert: Some(pki.client_cert()),
            key: Some(pki.client_key()),
        }),
        ..EtcdOptions::default()
    }
}

pub fn serve_options(etcd: &Etcd, service: &str) -> ServeOptions {
    ServeOptions {
        service_name: service.to_owned(),
        advertise: None,
        etcd: etcd_options(etcd),
        register: RegisterOptions {
            ttl: Duration::from_secs(2),
            weight: 10,
            ..RegisterOptions::default()
        },
    }
}

/// Binds 127.0.0.1:0 and announces it; returns the registration (the listener is dropped:
/// these tests only look at etcd).
pub async fn register_local(options: &ServeOptions) -> volo_etcd::Registration {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let announced = volo_etcd::announce(listener, options, Shutdown::never())
        .await
        .expect("announce");
    announced.into_parts().1
}

/// Announces on a fresh loopback listener with `options`, expecting a refusal; the error.
pub async fn announce_error(options: &ServeOptions) -> volo_etcd::Error {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    volo_etcd::announce(listener, options, Shutdown::never())
        .await
        .map(|a| a.registered_address())
        .expect_err("announce must fail")
}

/// A plain etcd-client with full access (TLS and `root` when the server has them).
pub async fn raw_client(etcd: &Etcd) -> etcd_client::Client {
    etcd.client().await
}

/// The value at `key`, if any.
pub async fn value_at(etcd: &Etcd, key: &str) -> Option<String> {
    let mut client = raw_client(etcd).await;
    let resp = tokio::time::timeout(Duration::from_secs(2), client.get(key, None))
        .await
        .ok()?
        .ok()?;
    resp.kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
}

/// The keys under `prefix`, sorted.
pub async fn keys_under(etcd: &Etcd, prefix: &str) -> Vec<String> {
    let mut client = raw_client(etcd).await;
    let options = etcd_client::GetOptions::new()
        .with_prefix()
        .with_keys_only();
    match tokio::time::timeout(Duration::from_secs(2), client.get(prefix, Some(options))).await {
        Ok(Ok(resp)) => resp
            .kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
            .collect(),
        _ => Vec::new(),
    }
}

pub fn addresses(list: &[Arc<Instance>]) -> Vec<SocketAddr> {
    list.iter()
        .filter_map(|i| match &i.address {
            Address::Ip(a) => Some(*a),
            _ => None,
        })
        .collect()
}
