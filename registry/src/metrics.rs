//! Prometheus metrics under the names Go dashboards already query: kitex-contrib/
//! monitor-prometheus's for RPCs, hertz-contrib/monitor-prometheus's for HTTP (the gateway
//! records those), and the registry's own health, which no Go peer exports.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `kitex_server_throughput`, `kitex_server_latency_us` | counter, histogram (µs) | caller, callee, method, status, retry |
//! | `kitex_client_throughput`, `kitex_client_latency_us` | counter, histogram (µs) | caller, callee, method, status, retry |
//! | `volo_etcd_instances` | gauge | service: instances a client's balancer knows |
//! | `volo_etcd_registered` | gauge | service, address: 1 registered, 0 re-registering |
//! | `volo_etcd_reregistrations_total` | counter | service |
//! | `volo_etcd_reconnects_total` | counter | role (`registration`, `discovery`) |
//! | `volo_etcd_watch_restarts_total` | counter | service |
//! | `volo_etcd_keepalive_latency_us` | histogram (µs) | service |
//!
//! Every `*_latency_us` histogram has Kitex's and Hertz's buckets, [`LATENCY_BUCKETS_US`]. The
//! RPC labels are Kitex's: `status` is `succeed` or `error` (the call failed: an exception or a
//! transport error; a business code in `BaseResp` is a success), `retry` the timed-out attempts
//! retried on another instance, `caller` the client's name (`ClientOptions::caller_name`,
//! which travels in the TTHeader) or `unknown`.
//!
//! Everything is recorded through the `metrics` facade, and nothing is recorded until
//! [`install`] sets the Prometheus recorder: a process without metrics skips the work.

use std::{
    collections::HashMap,
    convert::Infallible,
    hash::Hash,
    sync::{Arc, OnceLock, RwLock},
    time::{Duration, Instant},
};

use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Bytes, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics::{Counter, Histogram, Label};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use volo::{FastStr, Layer, Service, context::Context};
use volo_thrift::context::ClientContext;

use crate::retry::CallState;

/// The histogram buckets of every `*_latency_us` metric, in microseconds: those of Kitex's and
/// Hertz's Prometheus tracers, so that their dashboards' quantiles read the same.
pub const LATENCY_BUCKETS_US: &[f64] = &[
    5_000.0,
    10_000.0,
    25_000.0,
    50_000.0,
    100_000.0,
    250_000.0,
    500_000.0,
    1_000_000.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Whether [`install`] ran: recording is skipped until then.
pub fn enabled() -> bool {
    HANDLE.get().is_some()
}

/// The recorder's handle, if [`install`] ran.
pub fn handle() -> Option<PrometheusHandle> {
    HANDLE.get().cloned()
}

/// Sets the process's Prometheus recorder, once; later calls return the same handle. Its
/// [`PrometheusHandle::render`] is the text a scrape gets ([`serve`] serves it).
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new();
            // The only error is an empty bucket list.
            let builder = builder
                .set_buckets_for_metric(Matcher::Suffix("_latency_us".into()), LATENCY_BUCKETS_US)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed: /metrics stays empty");
            }
            describe();
            // Histogram samples wait in a buffer until a scrape or an upkeep folds them into
            // the buckets; without a scraper, only this keeps the buffer from growing.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .map_err(|e| tracing::warn!("no metrics upkeep thread: {e}"))
                .ok();
            handle
        })
        .clone()
}

/// Binds `addr` and serves `GET /metrics` there in the background ([`serve`]): what a
/// service's `--metrics-listen` does. Returns the address bound.
pub async fn spawn_listener(addr: std::net::SocketAddr) -> std::io::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(serve(listener));
    tracing::info!("metrics on http://{bound}/metrics");
    Ok(bound)
}

/// The `# HELP` line of every metric.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    for (side, throughput, latency) in [
        (
            "server",
            "kitex_server_throughput",
            "kitex_server_latency_us",
        ),
        (
            "client",
            "kitex_client_throughput",
            "kitex_client_latency_us",
        ),
    ] {
        describe_counter!(
            throughput,
            format!("RPCs finished by the {side}, failed ones included.")
        );
        describe_histogram!(
            latency,
            Unit::Microseconds,
            format!("Time the {side} spent on an RPC, in microseconds.")
        );
    }
    describe_gauge!(
        "volo_etcd_instances",
        "Instances a client's balancer knows for a service."
    );
    describe_gauge!(
        "volo_etcd_registered",
        "1 while this instance's key is in etcd, 0 while it is being put back and once deregistered."
    );
    describe_counter!(
        "volo_etcd_reregistrations_total",
        "Registrations lost (lease expired, key deleted, etcd unreachable) and put back."
    );
    describe_counter!(
        "volo_etcd_reconnects_total",
        "New connections to etcd after the first, by registration or discovery."
    );
    describe_counter!(
        "volo_etcd_watch_restarts_total",
        "Times a client's list and watch of a service ended and began again."
    );
    describe_gauge!(
        "volo_etcd_breaker_open",
        "1 while a client's circuit breaker keeps calls away from an instance (open or half-open), else 0."
    );
    describe_counter!(
        "volo_etcd_breaker_trips_total",
        "Times a client's circuit breaker of an instance opened."
    );
    describe_histogram!(
        "volo_etcd_keepalive_latency_us",
        Unit::Microseconds,
        "Time etcd took to answer a lease keepalive, in microseconds."
    );
}

/// Serves `GET /metrics` on `listener` until the process ends, [`install`]ing the recorder:
/// a service's `--metrics-listen`. Other paths answer 404, other methods 405.
pub async fn serve(listener: tokio::net::TcpListener) {
    let handle = install();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, most likely: let some close.
                tracing::warn!("metrics listener: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let answer = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let response = scrape(&req, &handle);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), answer);
            if let Err(e) = connection.await {
                tracing::debug!("metrics connection: {e}");
            }
        });
    }
}

/// The answer to one request of the metrics listener.
fn scrape<B>(req: &Request<B>, handle: &PrometheusHandle) -> Response<Full<Bytes>> {
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => (StatusCode::OK, handle.render()),
        (_, "/metrics") => (StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n".into()),
        _ => (StatusCode::NOT_FOUND, "metrics are at /metrics\n".into()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(CONTENT_TYPE),
    );
    response
}

/// The Prometheus text format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A counter of answers and a histogram of their latency under the same labels, with the
/// handles of each label set kept after its first use: building the labels and looking up
/// the series cost about 0.9 µs a call, a kept handle about 40 ns.
///
/// Some label values come from the wire (a server's `caller` and `method`), so the label sets
/// are bounded: past [`MAX_SERIES`], answers under a new one are not recorded (logged once),
/// and a client cannot grow the process's memory without end.
#[derive(Debug)]
pub struct Throughput<K> {
    count: &'static str,
    latency: &'static str,
    series: RwLock<HashMap<K, (Counter, Histogram)>>,
    full: std::sync::Once,
}

/// The most label sets one [`Throughput`] records.
pub const MAX_SERIES: usize = 1000;

impl<K: Hash + Eq> Throughput<K> {
    /// `count` and `latency` (µs) are the metrics' names.
    pub fn new(count: &'static str, latency: &'static str) -> Self {
        Self {
            count,
            latency,
            series: RwLock::default(),
            full: std::sync::Once::new(),
        }
    }

    /// Counts one answer that took `took`, under the labels `labels` gives for `key` (asked
    /// only the first time `key` is seen).
    pub fn record(&self, key: K, labels: impl FnOnce(&K) -> Vec<Label>, took: Duration) {
        let known = self
            .series
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        let (count, latency) = match known {
            Some(handles) => handles,
            None => {
                let mut series = self.series.write().unwrap_or_else(|e| e.into_inner());
                if series.len() >= MAX_SERIES {
                    self.full.call_once(|| {
                        tracing::warn!(
                            metric = self.count,
                            "{MAX_SERIES} label sets recorded; answers under new ones are not"
                        );
                    });
                    return;
                }
                let labels = labels(&key);
                let handles = (
                    metrics::counter!(self.count, labels.clone()),
                    metrics::histogram!(self.latency, labels),
                );
                series.insert(key, handles.clone());
                handles
            }
        };
        count.increment(1);
        latency.record(micros(took));
    }
}

/// An RPC's labels: caller, callee, method, whether it succeeded, its retries.
type CallKey = (FastStr, FastStr, FastStr, bool, u32);

/// One finished call, under Kitex's names and labels.
fn record_call(series: &Throughput<CallKey>, key: CallKey, took: Duration) {
    let labels = |(caller, callee, method, ok, retries): &CallKey| {
        let known = |name: &FastStr| {
            if name.is_empty() {
                "unknown".to_owned()
            } else {
                name.to_string()
            }
        };
        vec![
            Label::new("caller", known(caller)),
            Label::new("callee", known(callee)),
            Label::new("method", known(method)),
            Label::new("status", if *ok { "succeed" } else { "error" }),
            Label::new("retry", retries.to_string()),
        ]
    };
    series.record(key, labels, took);
}

/// A duration in microseconds, the unit of every `*_latency_us` histogram.
pub fn micros(took: Duration) -> f64 {
    took.as_secs_f64() * 1e6
}

/// Records every call a volo-thrift server answers (`kitex_server_*`); `callee` is the name
/// the service registers under. Add it with `layer_front`, so that decoding is inside the
/// time measured, as in Kitex (from the request read to the answer).
#[derive(Clone, Debug)]
pub struct ServerMetricsLayer {
    callee: FastStr,
}

impl ServerMetricsLayer {
    pub fn new(callee: impl Into<FastStr>) -> Self {
        Self {
            callee: callee.into(),
        }
    }
}

impl<S> Layer<S> for ServerMetricsLayer {
    type Service = ServerMetrics<S>;

    fn layer(self, inner: S) -> ServerMetrics<S> {
        ServerMetrics {
            inner,
            callee: self.callee,
            series: Arc::new(Throughput::new(
                "kitex_server_throughput",
                "kitex_server_latency_us",
            )),
        }
    }
}

/// The service [`ServerMetricsLayer`] makes.
#[derive(Clone, Debug)]
pub struct ServerMetrics<S> {
    inner: S,
    callee: FastStr,
    series: Arc<Throughput<CallKey>>,
}

impl<Cx, Req, S> Service<Cx, Req> for ServerMetrics<S>
where
    Cx: Context + Send,
    Req: Send,
    S: Service<Cx, Req> + Sync,
{
    type Response = S::Response;
    type Error = S::Error;

    async fn call(&self, cx: &mut Cx, req: Req) -> Result<S::Response, S::Error> {
        if !enabled() {
            return self.inner.call(cx, req).await;
        }
        let started = Instant::now();
        let result = self.inner.call(cx, req).await;
        let info = cx.rpc_info();
        let key = (
            info.caller().service_name(),
            self.callee.clone(),
            info.method().clone(),
            result.is_ok(),
            0,
        );
        record_call(&self.series, key, started.elapsed());
        result
    }
}

/// Records every call of a volo-thrift client (`kitex_client_*`), once per call with its
/// retries counted. [`configure_client`](crate::configure_client) adds it outside the retry
/// layer.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientMetricsLayer;

impl<S> Layer<S> for ClientMetricsLayer {
    type Service = ClientMetrics<S>;

    fn layer(self, inner: S) -> ClientMetrics<S> {
        ClientMetrics {
            inner,
            series: Arc::new(Throughput::new(
                "kitex_client_throughput",
                "kitex_client_latency_us",
            )),
        }
    }
}

/// The service [`ClientMetricsLayer`] makes.
#[derive(Clone, Debug)]
pub struct ClientMetrics<S> {
    inner: S,
    series: Arc<Throughput<CallKey>>,
}

impl<Req, S> Service<ClientContext, Req> for ClientMetrics<S>
where
    Req: Send,
    S: Service<ClientContext, Req> + Sync,
{
    type Response = S::Response;
    type Error = S::Error;

    async fn call(&self, cx: &mut ClientContext, req: Req) -> Result<S::Response, S::Error> {
        if !enabled() {
            return self.inner.call(cx, req).await;
        }
        let started = Instant::now();
        let result = self.inner.call(cx, req).await;
        let info = cx.rpc_info();
        let retries = info
            .callee()
            .get::<CallState>()
            .map_or(0, CallState::retries);
        let key = (
            info.caller().service_name(),
            info.callee().service_name(),
            info.method().clone(),
            result.is_ok(),
            retries,
        );
        record_call(&self.series, key, started.elapsed());
        result
    }
}

/// The registry's health: what the registration and discovery tasks record.
pub(crate) mod registry {
    use std::{
        sync::atomic::{AtomicU64, Ordering},
        time::Duration,
    };

    use metrics::Label;
    use volo::net::Address;

    use super::{enabled, micros};

    fn service(name: &str) -> Vec<Label> {
        vec![Label::new("service", name.to_owned())]
    }

    /// The instances a client's balancer knows for `name`.
    pub(crate) fn instances(name: &str, known: usize) {
        if enabled() {
            metrics::gauge!("volo_etcd_instances", service(name)).set(known as f64);
        }
    }

    /// Whether `address` is registered for `name` (0 while re-registering, and once
    /// deregistered).
    pub(crate) fn registered(name: &str, address: &str, up: bool) {
        if enabled() {
            let mut labels = service(name);
            labels.push(Label::new("address", address.to_owned()));
            metrics::gauge!("volo_etcd_registered", labels).set(if up { 1.0 } else { 0.0 });
        }
    }

    /// A registration of `name` began: its counters exist from now, at 0, so that a
    /// dashboard's rate shows 0 rather than no data.
    pub(crate) fn registering(name: &str) {
        if enabled() {
            metrics::counter!("volo_etcd_reregistrations_total", service(name)).increment(0);
        }
    }

    /// A lost registration of `name` put back.
    pub(crate) fn reregistered(name: &str) {
        if enabled() {
            metrics::counter!("volo_etcd_reregistrations_total", service(name)).increment(1);
        }
    }

    /// The answer time of one lease keepalive of `name`'s registration.
    pub(crate) fn keepalive(name: &str, took: Duration) {
        if enabled() {
            metrics::histogram!("volo_etcd_keepalive_latency_us", service(name))
                .record(micros(took));
        }
    }

    /// A connection for `role` was made: its counter exists from now, at 0.
    pub(crate) fn connecting(role: &'static str) {
        if enabled() {
            metrics::counter!("volo_etcd_reconnects_total", vec![Label::new("role", role)])
                .increment(0);
        }
    }

    /// A new etcd connection after the first, by a registration or a discoverer.
    pub(crate) fn reconnected(role: &'static str) {
        if enabled() {
            metrics::counter!("volo_etcd_reconnects_total", vec![Label::new("role", role)])
                .increment(1);
        }
    }

    /// A client began to watch `name`: its counter exists from now, at 0.
    pub(crate) fn watching(name: &str) {
        if enabled() {
            metrics::counter!("volo_etcd_watch_restarts_total", service(name)).increment(0);
        }
    }

    /// `name`'s list+watch ended and starts again.
    pub(crate) fn watch_restarted(name: &str) {
        if enabled() {
            metrics::counter!("volo_etcd_watch_restarts_total", service(name)).increment(1);
        }
    }

    /// The circuit breaker of one instance (of one client), as its metrics show it.
    #[derive(Debug)]
    pub(crate) struct BreakerMetrics {
        open: metrics::Gauge,
        trips: metrics::Counter,
        /// The breaker's trips already counted.
        counted: AtomicU64,
    }

    impl BreakerMetrics {
        /// Shows the breaker's state: `open` while it keeps calls away (open, or half-open
        /// and probing), and its trips so far.
        pub(crate) fn show(&self, open: bool, trips: u64) {
            self.open.set(if open { 1.0 } else { 0.0 });
            let before = self.counted.swap(trips, Ordering::Relaxed);
            self.trips.increment(trips.saturating_sub(before));
        }
    }

    /// The breaker metrics of the instance at `address`, at closed and 0 trips; `None` when
    /// nothing records.
    pub(crate) fn breaker(address: &Address) -> Option<BreakerMetrics> {
        if !enabled() {
            return None;
        }
        // Not `instance`: Prometheus sets that label itself, to the scraped target.
        let labels = || vec![Label::new("address", address.to_string())];
        let metrics = BreakerMetrics {
            open: metrics::gauge!("volo_etcd_breaker_open", labels()),
            trips: metrics::counter!("volo_etcd_breaker_trips_total", labels()),
            counted: AtomicU64::new(0),
        };
        metrics.show(false, 0);
        Some(metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_sets_are_bounded_and_their_labels_built_once() {
        let answers = Throughput::new("test_total", "test_latency_us");
        for i in 0..MAX_SERIES + 10 {
            answers.record(i, |i| vec![Label::new("i", i.to_string())], Duration::ZERO);
        }
        assert_eq!(answers.series.read().unwrap().len(), MAX_SERIES);
        answers.record(
            0,
            |_| -> Vec<Label> { unreachable!("a known label set's labels are not built again") },
            Duration::ZERO,
        );
    }
}
