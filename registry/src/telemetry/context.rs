//! W3C trace context: the `traceparent` (and `tracestate`) a request arrives with, and the one
//! it passes on, over HTTP headers and over TTHeader metainfo.
//!
//! Over Thrift it travels as metainfo transient values named `traceparent` and `tracestate`
//! (TTHeader keys `RPC_TRANSIT_traceparent`, ...), as kitex-contrib/obs-opentelemetry puts
//! them there with `metainfo.WithValue`; read back, the CGI-style `TRACEPARENT` that a Hertz
//! gateway's conversion makes is accepted too.
//!
//! Without an OTLP endpoint no span is recorded, and the context passes through unchanged: the
//! caller's, or a new root when there is none, so that log lines and the services behind still
//! share one trace id.

use std::{fmt, future::Future};

use metainfo::{Forward as _, METAINFO};
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};

/// The metainfo (and HTTP header) names of the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";
/// The CGI-variable forms, as an HTTP-to-Thrift conversion may name them.
const TRACEPARENT_CGI: &str = "TRACEPARENT";
const TRACESTATE_CGI: &str = "TRACESTATE";

/// `tracestate` longer than this is dropped (W3C allows 32 members of at most ~256 bytes; a
/// longer value is not a vendor's, and it would travel with every call).
const MAX_TRACESTATE: usize = 512;

/// A W3C trace context: trace id, the id of the span that is the parent of the next one,
/// whether the trace is sampled, and the vendors' `tracestate`.
#[derive(Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: u128,
    span_id: u64,
    sampled: bool,
    state: Option<String>,
}

impl TraceContext {
    /// A new trace, sampled, with random ids.
    pub fn root() -> Self {
        Self::new_root(true)
    }

    /// A new trace with random ids, sampled or not.
    pub(crate) fn new_root(sampled: bool) -> Self {
        Self {
            trace_id: fastrand::u128(1..),
            span_id: fastrand::u64(1..),
            sampled,
            state: None,
        }
    }

    /// Parses a `traceparent` value (and its `tracestate`, if any). `None` for anything the
    /// W3C recommendation says to ignore: a bad length, upper-case or non-hex digits, version
    /// `ff`, an all-zero id. A later version is read by its first four fields.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let value = traceparent.trim().as_bytes();
        let version = hex_field(value.get(0..2)?)?;
        let well_sized = match version {
            0 => value.len() == 55,
            0xff => false,
            _ => value.len() == 55 || (value.len() > 55 && value[55] == b'-'),
        };
        if !well_sized || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let trace_id = hex_field(&value[3..35])?;
        let span_id = u64::try_from(hex_field(&value[36..52])?).ok()?;
        let flags = hex_field(&value[53..55])?;
        if trace_id == 0 || span_id == 0 {
            return None;
        }
        let state = tracestate
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= MAX_TRACESTATE && s.is_ascii())
            .map(str::to_owned);
        Some(Self {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
            state,
        })
    }

    /// The 32 hex digits of the trace id, as the `x-trace-id` header and log lines show it.
    pub fn trace_id(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The `traceparent` value that passes this context on.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }

    /// Whether the trace is sampled (recorded by those who export spans).
    pub fn sampled(&self) -> bool {
        self.sampled
    }

    pub fn tracestate(&self) -> Option<&str> {
        self.state.as_deref()
    }

    /// The caller's context from the metainfo of the call being served (upstream values).
    pub fn from_metainfo() -> Option<Self> {
        METAINFO
            .try_with(|m| {
                let m = m.borrow();
                let parent = m
                    .get_upstream(TRACEPARENT)
                    .or_else(|| m.get_upstream(TRACEPARENT_CGI))?;
                let state = m
                    .get_upstream(TRACESTATE)
                    .or_else(|| m.get_upstream(TRACESTATE_CGI));
                Self::parse(&parent, state.as_deref())
            })
            .ok()
            .flatten()
    }

    /// Puts this context in the metainfo of the calls about to be made (transient values:
    /// they reach the callee, not the callee's callees).
    pub fn to_metainfo(&self) {
        let _ = METAINFO.try_with(|m| {
            let mut m = m.borrow_mut();
            m.set_transient(TRACEPARENT, self.traceparent());
            if let Some(state) = &self.state {
                m.set_transient(TRACESTATE, state.clone());
            }
        });
    }

    /// The same context as OpenTelemetry's remote parent.
    pub(crate) fn to_otel(&self) -> opentelemetry::Context {
        let state = self
            .state
            .as_deref()
            .and_then(|s| s.parse::<TraceState>().ok())
            .unwrap_or_default();
        let flags = if self.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let span = SpanContext::new(
            TraceId::from(self.trace_id),
            SpanId::from(self.span_id),
            flags,
            true,
            state,
        );
        opentelemetry::Context::new().with_remote_span_context(span)
    }

    /// The context whose parent is the span of `cx`, if that span is valid.
    pub(crate) fn from_otel(cx: &opentelemetry::Context) -> Option<Self> {
        let span = cx.span();
        let span = span.span_context();
        span.is_valid().then(|| {
            let state = span.trace_state().header();
            Self {
                trace_id: u128::from_be_bytes(span.trace_id().to_bytes()),
                span_id: u64::from_be_bytes(span.span_id().to_bytes()),
                sampled: span.is_sampled(),
                state: (!state.is_empty()).then_some(state),
            }
        })
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.traceparent())
    }
}

/// A field of lower-case hex digits (at most 32) as a number.
fn hex_field(digits: &[u8]) -> Option<u128> {
    if digits.is_empty() || digits.len() > 32 {
        return None;
    }
    digits.iter().try_fold(0u128, |n, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        Some(n << 4 | u128::from(v))
    })
}

tokio::task_local! {
    /// The context a request is served in: what its calls pass on when no span is recorded,
    /// and whether it is sampled.
    pub(super) static CURRENT: TraceContext;
}

/// Runs `fut` with `trace` as the context its RPC calls pass on.
pub fn scope<F: Future>(trace: TraceContext, fut: F) -> impl Future<Output = F::Output> {
    CURRENT.scope(trace, fut)
}

/// The context of the request being served, if any.
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(Clone::clone).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_prints_the_w3c_example() {
        let t = TraceContext::parse(EXAMPLE, Some(" congo=t61rcWkgMzE ")).unwrap();
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.traceparent(), EXAMPLE);
        assert_eq!(t.tracestate(), Some("congo=t61rcWkgMzE"));
        let unsampled = TraceContext::parse(&EXAMPLE.replace("-01", "-00"), None).unwrap();
        assert!(!unsampled.sampled);
    }

    #[test]
    fn refuses_what_the_recommendation_says_to_ignore() {
        let bad = [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0é",
        ];
        for value in bad {
            assert_eq!(TraceContext::parse(value, None), None, "{value:?}");
        }
        // A later version may append fields.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes";
        assert!(TraceContext::parse(later, None).is_some());
    }

    #[test]
    fn round_trips_through_opentelemetry() {
        let t = TraceContext::parse(EXAMPLE, Some("rojo=00f067aa0ba902b7")).unwrap();
        assert_eq!(TraceContext::from_otel(&t.to_otel()), Some(t));
        let root = TraceContext::root();
        assert_eq!(TraceContext::parse(&root.traceparent(), None), Some(root));
    }
}
