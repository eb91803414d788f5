//! Logs and traces: the one set-up of every binary ([`init`]), the W3C trace context over HTTP
//! and TTHeader ([`TraceContext`]), and the Volo layers that make the RPC spans
//! ([`ServerTraceLayer`], [`ClientTraceLayer`]).
//!
//! Logs go to standard output, filtered by `RUST_LOG` (default `info`), as lines or JSON. With
//! an OTLP endpoint, `tracing` spans are also exported as OpenTelemetry spans (OTLP/HTTP,
//! protobuf, `<endpoint>/v1/traces`, batched on a thread of their own); without one nothing
//! is recorded beyond the spans that log lines need, so that tracing costs nothing when off.
//! A request's or call's own span starts with [`serve_in_span`], which keeps it out of
//! OpenTelemetry's sight when the trace is not sampled (head sampling by the standard
//! `OTEL_TRACES_SAMPLER` variables). Spans that exist only for the trace (the gateway's
//! `bind`, the RPC client's, a query's) are made only when [`exporting`] a sampled trace, and
//! left out of logs: use [`span_if_traced`].

mod context;
mod layers;

use std::{
    cell::Cell,
    fmt,
    io::IsTerminal as _,
    str::FromStr,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::{
    Resource,
    trace::{Sampler, SdkTracerProvider},
};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{
    EnvFilter, Layer as _,
    filter::{FilterExt as _, LevelFilter, Targets, filter_fn},
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

/// The share of new traces that are sampled (`f64` bits), from OpenTelemetry's standard
/// variables at [`init`]: `OTEL_TRACES_SAMPLER` (`always_on`, `always_off`, `traceidratio` or
/// their `parentbased_` forms; by default `parentbased_always_on`) and `OTEL_TRACES_SAMPLER_ARG`
/// (the ratio). A trace that arrives keeps its caller's decision whichever is set: the
/// `parentbased_` behaviour, which a trace crossing services needs.
static ROOT_RATIO: AtomicU64 = AtomicU64::new(0x3ff0_0000_0000_0000); // 1.0

/// The share of new traces to sample, given `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`;
/// what OpenTelemetry's SDKs do with a value they do not know: all of them.
fn root_ratio(sampler: Option<&str>, arg: Option<&str>) -> f64 {
    let ratio = || {
        arg.and_then(|arg| arg.trim().parse::<f64>().ok())
            .filter(|ratio| (0.0..=1.0).contains(ratio))
            .unwrap_or(1.0)
    };
    match sampler.unwrap_or_default().trim() {
        "always_off" | "parentbased_always_off" => 0.0,
        "traceidratio" | "parentbased_traceidratio" => ratio(),
        _ => 1.0,
    }
}

/// Whether a request or call arriving with `incoming` (its caller's context, if any) is
/// exported: the caller's decision, or for a new trace the head sampler's.
fn traced(incoming: Option<&TraceContext>) -> bool {
    exporting()
        && match incoming {
            Some(caller) => caller.sampled(),
            None => fastrand::f64() < f64::from_bits(ROOT_RATIO.load(Ordering::Relaxed)),
        }
}

thread_local! {
    /// Set while [`serve_in_span`] makes the span of a request that is not traced, so that
    /// OpenTelemetry's layer never sees it.
    static UNTRACED: Cell<bool> = const { Cell::new(false) };
}

/// Starts serving a request or call that arrived with `incoming` (the caller's context, if it
/// sent one) in the span that `make` makes, the one that carries its log lines. When the
/// trace is exported and sampled (by the caller, or by the head sampler for a new trace), the
/// span is its server span, a child of the caller's; otherwise OpenTelemetry never sees it, so
/// that an unsampled request costs what it costs with no exporter. Returns the span and the
/// context that the calls made under it pass on.
pub fn serve_in_span(
    incoming: Option<TraceContext>,
    make: impl FnOnce() -> Span,
) -> (Span, TraceContext) {
    if traced(incoming.as_ref()) {
        let span = make();
        let trace = continue_trace(&span, "server", incoming);
        return (span, trace);
    }
    // Cleared even if `make` panics, or every later span of this thread would be left out.
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            UNTRACED.set(false);
        }
    }
    UNTRACED.set(true);
    let reset = Reset;
    let span = make();
    drop(reset);
    // Passed on unsampled (or, with no exporter, as it came), so that the services behind
    // neither record it nor start a trace of their own.
    let trace = incoming.unwrap_or_else(|| TraceContext::new_root(!exporting()));
    span.record("trace_id", tracing::field::display(trace.trace_id()));
    (span, trace)
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
            // The exporter's own HTTP client must not feed spans back into the export, and
            // the spans of unsampled requests stay out.
            .with_filter(
                Targets::new()
                    .with_default(LevelFilter::INFO)
                    .with_target("opentelemetry", LevelFilter::OFF)
                    .with_target("opentelemetry_sdk", LevelFilter::OFF)
                    .with_target("opentelemetry_otlp", LevelFilter::OFF)
                    .with_target("reqwest", LevelFilter::OFF)
                    .with_target("hyper_util", LevelFilter::OFF)
                    .and(filter_fn(|meta| !(meta.is_span() && UNTRACED.get()))),
            )
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()?;
    let ratio = root_ratio(
        std::env::var("OTEL_TRACES_SAMPLER").ok().as_deref(),
        std::env::var("OTEL_TRACES_SAMPLER_ARG").ok().as_deref(),
    );
    ROOT_RATIO.store(ratio.to_bits(), Ordering::Relaxed);
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
        // New traces are sampled by `serve_in_span` (the spans of the others never reach the
        // SDK), so the SDK records every root it sees and follows the parent otherwise.
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
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
pub(crate) fn continue_trace(
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

#[cfg(test)]
mod tests {
    use super::root_ratio;

    #[test]
    fn the_head_sampler_reads_the_standard_variables() {
        assert_eq!(root_ratio(None, None), 1.0);
        assert_eq!(root_ratio(Some("parentbased_always_on"), None), 1.0);
        assert_eq!(root_ratio(Some("always_off"), None), 0.0);
        assert_eq!(root_ratio(Some("parentbased_always_off"), Some("0.5")), 0.0);
        assert_eq!(
            root_ratio(Some("parentbased_traceidratio"), Some("0.1")),
            0.1
        );
        assert_eq!(root_ratio(Some("traceidratio"), Some(" 0.25 ")), 0.25);
        // A ratio out of range or unreadable: every trace, as the default ratio is 1.
        assert_eq!(root_ratio(Some("traceidratio"), Some("2")), 1.0);
        assert_eq!(root_ratio(Some("traceidratio"), Some("a tenth")), 1.0);
        assert_eq!(root_ratio(Some("jaeger_remote"), None), 1.0);
    }
}
