//! Shared helpers: options pointing at a test etcd, a raw etcd client, key lookups.

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

use test_support::Etcd;
use tokio::net::TcpListener;
use volo::{discovery::Instance, net::Address};
use volo_etcd::{EtcdOptions, RegisterOptions, ServeOptions, Shutdown};

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

pub fn etcd_options(etcd: &Etcd) -> EtcdOptions {
    EtcdOptions {
        endpoints: vec![etcd.endpoint()],
        dial_timeout: Duration::from_secs(2),
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
            tags: BTreeMap::new(),
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

pub async fn raw_client(etcd: &Etcd) -> etcd_client::Client {
    etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .expect("connect raw etcd client")
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

pub fn addresses(list: &[Arc<Instance>]) -> Vec<SocketAddr> {
    list.iter()
        .filter_map(|i| match &i.address {
            Address::Ip(a) => Some(*a),
            _ => None,
        })
        .collect()
}
