//! Fixtures for tests that need real processes.
//!
//! # Layout
//!
//! - [`Etcd`] (module `etcd`): a throwaway `etcd` server on free loopback ports with its own
//!   data dir, killed on drop (also when the test panics). Stop, restart (same data), restart
//!   wiped; a raw client ([`Etcd::client`]) and its Prometheus metrics ([`Etcd::metric`]).
//! - [`EtcdBuilder`]: servers with more: TLS with client certificates, authentication, flags.
//! - [`EtcdCluster`] (module `cluster`): several etcd members on loopback forming one
//!   cluster, to kill a member under a client.
//! - [`Pki`] (module `pki`): a CA, a server certificate for 127.0.0.1 and a client
//!   certificate, generated at test time.
//! - [`TcpProxy`] (module `proxy`): a loopback TCP proxy that can stop forwarding (to make a
//!   client fall behind without closing its connection), lose everything, or add a delay;
//!   [`ProxyStats`] counts what went through.
//! - [`Http`] (module `http`): a real HTTP/1.1 client for a server on loopback, also sending
//!   chunked bodies over a raw connection; its [`Answer`] parses the body as JSON.
//!   [`raw_get`]: one HTTP/1.0 GET, for health and metrics probes.
//! - [`Postgres`] (module `postgres`): a throwaway PostgreSQL server on a free loopback port.
//! - [`ChildProcess`] (module `process`): a child process killed (SIGKILL) and reaped on drop.
//! - [`wait_until`]: poll a condition with a deadline instead of sleeping and hoping.
//! - [`prometheus_sample`]: one sample of a Prometheus text exposition (a `/metrics` scrape).
//!
//! Only 127.0.0.1 is used, and only processes started here are ever killed, by their handle.

mod cluster;
mod etcd;
mod http;
mod pki;
mod postgres;
mod process;
mod proxy;

use std::{future::Future, time::Duration};

pub use cluster::EtcdCluster;
pub use etcd::{Etcd, EtcdBuilder};
pub use http::{Answer, Http, raw_get};
pub use pki::Pki;
pub use postgres::Postgres;
pub use process::ChildProcess;
pub use proxy::{ProxyStats, TcpProxy};

/// Polls `condition` every 50 ms until it holds or `within` has passed; returns whether it
/// held. Use with `assert!(wait_until(..).await, "what did not happen")`.
pub async fn wait_until<F, Fut>(within: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of the sample `name{labels}` in a Prometheus text exposition, whatever the order
/// of its labels; `None` when no sample has exactly those labels.
pub fn prometheus_sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut want: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    want.sort();
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, mut rest) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let mut got = Vec::new();
            while !rest.is_empty() {
                let (key, after) = rest.split_once("=\"")?;
                let end = after.find('"')?;
                got.push((key.to_string(), after[..end].to_string()));
                rest = after[end + 1..].trim_start_matches(',');
            }
            got.sort();
            (got == want).then(|| value.parse().ok()).flatten()
        })
}
