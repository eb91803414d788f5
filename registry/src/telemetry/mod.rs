//! Logs and traces: the one set-up of every binary ([`init`]), the W3C trace context over HTTP
//! and TTHeader ([`TraceContext`]), and the Volo layers that make the RPC spans
//! ([`ServerTraceLayer`], [`ClientTraceLayer`]).
//!
//! Logs go to standard output, filtered by `RUST_LOG` (default `info`), as lines or JSON. With
//! an OTLP endpoint, `tracing` spans are also exported as OpenTelemetry spans (OTLP/HTTP,
//! protobuf, `<endpoint>/v1/traces`, batched on a thread of their own); without one nothing
//! is recorded beyond the spans that log lines need, so that tracing costs nothing when off.
//! Spans that exist only for the trace (the gateway's `bind`, the RPC client's, a query's) are
//! made only when [`exporting`] a sampled trace, and left out of logs: use [`span_if_traced`].

mod context;
mod layers;

use std::{
    fmt,
    io::IsTerminal as _,
    str::FromStr,
    sync::atomic::{AtomicBool, Ordering},
};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{
    EnvFilter, Layer as _,
    filter::{LevelFilter, Targets},
    layer::SubscriberExt as _,
    util::SubscriberInitExt as _,
};

pub use context::{TRACEPARENT, TRACESTATE, TraceContext, current, scope};
pub use layers::{
    ClientTrace, ClientTraceLayer, REQUEST_ID, ServerTrace, ServerTraceLayer, callers_request_id,
};

/// `--log-format` (env `LOG_FORMAT`): `text` or `json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One line per event; colours only when standard output is a terminal, so that logs
    /// written to a file or a pipe stay plain text.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `message`, the event's fields beside
    /// them, `target`, and the spans it happened in (`request_id`, `trace_id`, ...).
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(format!("`{text}` is not a log format: `text` or `json`")),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

/// What [`init`] sets up.
#[derive(Debug, Clone, Default)]
pub struct TelemetryOptions {
    pub log_format: LogFormat,
    /// Base URL of an OTLP/HTTP receiver (`http://host:4318`); spans go to `/v1/traces`
    /// under it. `None`: no export.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of the exported spans.
    pub service_name: String,
}

/// Why [`init`] failed.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(
        "bad OTLP endpoint `{0}`: expected http://HOST:PORT (OTLP/HTTP; a collector beside the \
         service takes it on over TLS)"
    )]
    Endpoint(String),
    #[error("cannot set up the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("logging was already set up: {0}")]
    AlreadySet(#[from] tracing_subscriber::util::TryInitError),
}

/// Keeps the exporter running; dropping it sends the spans still queued (so keep it in `main`
/// until the end).
#[must_use = "dropping it stops the export of spans"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            EXPORTING.store(false, Ordering::Relaxed);
            if let Err(e) = provider.shutdown() {
                tracing::warn!("spans not sent at exit: {e}");
            }
        }
    }
}

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (an OTLP endpoint was given to [`init`]).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The `tracing` target of spans that exist only for the trace: logs leave them out, so
/// that they cost no formatting (their parents' fields identify a log line well enough).
pub const TRACE_ONLY: &str = "trace_only";

/// `make()` (a span of target [`TRACE_ONLY`]) when spans are exported and the request being
/// served, if any, is sampled; else a disabled span, which costs nothing. So an unsampled
/// request pays only for the spans that its log lines need.
pub fn span_if_traced(make: impl FnOnce() -> Span) -> Span {
    let sampled = || {
        context::CURRENT
            .try_with(TraceContext::sampled)
            .unwrap_or(true)
    };
    if exporting() && sampled() {
        make()
    } else {
        Span::none()
    }
}

/// Installs the global subscriber (logs, and traces with an endpoint); call once, first
/// thing in `main`, and keep what it returns until the end.
pub fn init(options: &TelemetryOptions) -> Result<Telemetry, TelemetryError> {
    let trace_only = format!("{TRACE_ONLY}=off")
        .parse()
        .expect("a valid directive");
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive(trace_only);
    let logs = tracing_subscriber::fmt::layer();
    let logs = match options.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stdout().is_terminal()).boxed(),
        LogFormat::Json => logs.json().flatten_event(true).boxed(),
    }
    .with_filter(filter);
    let provider = match &options.otlp_endpoint {
        Some(endpoint) => Some(provider(endpoint, &options.service_name)?),
        None => None,
    };
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("volo-etcd"))
            // Per-span attributes and per-poll work that nothing here reads: the source
            // location, the thread, the `tracing` target, busy and idle times,
            // OpenTelemetry's current context (the layers read a span's context from the span).
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_context_activation(false)
            // The exporter's own HTTP client must not feed spans back into the export.
            .with_filter(
                Targets::new()
                    .with_default(LevelFilter::INFO)
                    .with_target("opentelemetry", LevelFilter::OFF)
                    .with_target("opentelemetry_sdk", LevelFilter::OFF)
                    .with_target("opentelemetry_otlp", LevelFilter::OFF)
                    .with_target("reqwest", LevelFilter::OFF)
                    .with_target("hyper_util", LevelFilter::OFF),
            )
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()?;
    EXPORTING.store(provider.is_some(), Ordering::Relaxed);
    Ok(Telemetry { provider })
}

/// The tracer provider that sends batches to `<endpoint>/v1/traces`.
fn provider(endpoint: &str, service_name: &str) -> Result<SdkTracerProvider, TelemetryError> {
    let base = endpoint.trim().trim_end_matches('/');
    let uri: hyper::Uri = base
        .parse()
        .map_err(|_| TelemetryError::Endpoint(endpoint.to_owned()))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(TelemetryError::Endpoint(endpoint.to_owned()));
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{base}/v1/traces"))
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .build())
}

/// Makes `span` continue `incoming` (the caller's context, if it sent one) and returns the
/// context that the calls made under `span` pass on. Exporting, `span` becomes an
/// OpenTelemetry span whose parent is `incoming` (a new trace without one), of `kind`
/// (`"server"`, `"client"`); otherwise the context passes through as it came, or a new root.
/// Records the trace id in `span`'s `trace_id` field.
pub fn continue_trace(
    span: &Span,
    kind: &'static str,
    incoming: Option<TraceContext>,
) -> TraceContext {
    let trace = if exporting() && !span.is_disabled() {
        span.record("otel.kind", kind);
        if let Some(parent) = &incoming {
            let _ = span.set_parent(parent.to_otel());
        }
        TraceContext::from_otel(&span.context())
    } else {
        None
    };
    let trace = trace.or(incoming).unwrap_or_else(TraceContext::root);
    span.record("trace_id", tracing::field::display(trace.trace_id()));
    trace
}
