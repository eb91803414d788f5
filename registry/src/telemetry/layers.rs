//! The RPC spans: one per call served ([`ServerTraceLayer`]) and, when exporting, one per call
//! made ([`ClientTraceLayer`]), with the trace context taken from and put into metainfo.

use metainfo::{Forward as _, METAINFO};
use tracing::{Instrument as _, field::Empty};
use volo::{Layer, Service, context::Context};
use volo_thrift::context::ClientContext;

use super::{
    TRACE_ONLY, TraceContext, continue_trace, current, exporting, scope, serve_in_span,
    span_if_traced,
};

/// The metainfo key of the caller's request id: a transient value, as a Kitex client sends it
/// with `metainfo.WithValue(ctx, "REQUEST_ID", id)` and our gateway sets it.
pub const REQUEST_ID: &str = "REQUEST_ID";

/// Serves every call in a span `rpc.server` with the method, the caller's request id and the
/// trace id, so that every log line of the call carries them; exporting, it is the call's
/// server span, a child of the caller's. `service` is the name the service registers under
/// (the span is named `<service>/<method>`). The generated `serve()` adds it with
/// `layer_front`.
#[derive(Clone, Debug)]
pub struct ServerTraceLayer {
    service: String,
}

impl ServerTraceLayer {
    pub fn new(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
        }
    }
}

impl<S> Layer<S> for ServerTraceLayer {
    type Service = ServerTrace<S>;

    fn layer(self, inner: S) -> ServerTrace<S> {
        ServerTrace {
            inner,
            service: self.service,
        }
    }
}

/// The service [`ServerTraceLayer`] makes.
#[derive(Clone, Debug)]
pub struct ServerTrace<S> {
    inner: S,
    service: String,
}

impl<Cx, Req, S> Service<Cx, Req> for ServerTrace<S>
where
    Cx: Context + Send,
    Req: Send,
    S: Service<Cx, Req> + Sync,
{
    type Response = S::Response;
    type Error = S::Error;

    async fn call(&self, cx: &mut Cx, req: Req) -> Result<S::Response, S::Error> {
        let method = cx.rpc_info().method().clone();
        let request_id = callers_request_id();
        let (span, trace) = serve_in_span(TraceContext::from_metainfo(), || {
            tracing::info_span!(
                "rpc.server",
                method = %method,
                request_id = request_id.as_deref(),
                trace_id = Empty,
                otel.name = Empty,
                otel.kind = Empty,
                otel.status_code = Empty,
            )
        });
        if exporting() && trace.sampled() {
            span.record("otel.name", format!("{}/{method}", self.service));
        }
        let result = scope(trace, self.inner.call(cx, req))
            .instrument(span.clone())
            .await;
        if result.is_err() {
            span.record("otel.status_code", "error");
        }
        result
    }
}

/// The caller's `REQUEST_ID` in the call being served, when it sent one of a sane length.
pub fn callers_request_id() -> Option<String> {
    METAINFO
        .try_with(|m| m.borrow().get_upstream(REQUEST_ID))
        .ok()
        .flatten()
        .filter(|id| !id.is_empty() && id.len() <= 128)
        .map(|id| id.to_string())
}

/// Passes the trace context on with every call (metainfo `traceparent`, as Kitex's
/// obs-opentelemetry reads it); exporting a sampled trace, each call gets a client span
/// `<callee>/<method>`, a child of the current span, with its retries as events.
/// [`configure_client`](crate::configure_client) adds it outside the retry layer.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientTraceLayer;

impl<S> Layer<S> for ClientTraceLayer {
    type Service = ClientTrace<S>;

    fn layer(self, inner: S) -> ClientTrace<S> {
        ClientTrace { inner }
    }
}

/// The service [`ClientTraceLayer`] makes.
#[derive(Clone, Debug)]
pub struct ClientTrace<S> {
    inner: S,
}

impl<Req, S> Service<ClientContext, Req> for ClientTrace<S>
where
    Req: Send,
    S: Service<ClientContext, Req> + Sync,
{
    type Response = S::Response;
    type Error = S::Error;

    async fn call(&self, cx: &mut ClientContext, req: Req) -> Result<S::Response, S::Error> {
        let span = span_if_traced(|| {
            let info = cx.rpc_info();
            let span = tracing::info_span!(
                target: TRACE_ONLY,
                "rpc.client",
                otel.name = Empty,
                otel.kind = Empty,
                otel.status_code = Empty,
            );
            span.record(
                "otel.name",
                format!("{}/{}", info.callee().service_name(), info.method()),
            );
            span
        });
        let trace = if span.is_disabled() {
            current()
        } else {
            Some(continue_trace(&span, "client", None))
        };
        if let Some(trace) = trace {
            trace.to_metainfo();
        }
        let result = self.inner.call(cx, req).instrument(span.clone()).await;
        if result.is_err() {
            span.record("otel.status_code", "error");
        }
        result
    }
}
