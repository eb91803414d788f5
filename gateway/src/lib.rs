//! The HTTP API gateway: every route declared in the IDL, mounted on volo-http with no code per
//! route, calling the services that etcd lists.
//!
//! # Layout
//! - [`Config`] (module `config`): flags and environment variables.
//! - [`Jwt`] (module `jwt`): HS256 bearer tokens, issued on `api.issue_token` routes and checked
//!   on `api.auth` routes.
//! - module `routes`: a [`RouteVisitor`](rpc::runtime::RouteVisitor) that turns each generated
//!   `Endpoint` into a volo-http service holding its client (bind, validate, call, envelope).
//! - module `rejection`: every answer the gateway gives instead of the service's (bad input,
//!   auth, limits, timeouts), one variant each, turned into a response in one place.
//! - module `reply`: the JSON bodies: the `{code, message, data}` envelope and `{error}`.
//! - [`cors`]: which pages on other origins may call the API from a browser.
//! - module `docs`: the `/docs` page (Swagger UI), served from the binary.
//! - module `admission`: bounds on URI and headers, and rate limits, before routing.
//! - [`limits`]: the rate limiters (gateway, client IP, log-ins per IP and per account).
//! - [`shedding`]: adaptive load shedding while the CPU is saturated, a bound per IDL route
//!   (each route's service asks it first).
//! - [`server`]: the connection loop (header-read and idle timeouts, a connection bound,
//!   a shutdown that refuses new connections and answers those in flight).
//! - [`app`], [`serve`]: the whole service (health, OpenAPI, metrics, access log, timeout) and
//!   its server.

mod admission;
mod config;
pub mod cors;
mod docs;
pub mod jwt;
pub mod limits;
mod rejection;
mod reply;
mod routes;
pub mod server;
pub mod shedding;

use std::{convert::Infallible, sync::Arc, time::Instant};

use opentelemetry::trace::TraceContextExt as _;
use rpc::volo_etcd::telemetry::{self, TRACEPARENT, TRACESTATE, TraceContext};
use tracing::{Instrument as _, Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use volo::Service;
use volo_http::{
    context::ServerContext,
    http::{self, HeaderValue, StatusCode, header::CONTENT_TYPE},
    request::Request,
    response::Response,
    server::{
        IntoResponse as _,
        layer::TimeoutLayer,
        route::{Router, get},
    },
};

use rejection::Rejection;
use rpc::volo_etcd::metrics::Throughput;

pub use admission::HeadLimits;
pub use config::{CALLER_NAME, Config, Secret, parse_size};
pub use cors::{CorsArgs, CorsError, CorsPolicy};
pub use jwt::{Jwt, KeyError};
pub use limits::{Rate, Rates};
pub use routes::Mounter;
pub use server::ConnectionLimits;
pub use shedding::CpuThreshold;

/// The request id: the client's `x-request-id` when it is safe to echo, else a generated one.
/// [`AccessLog`] puts it in the request's own `x-request-id` header, where handlers read it
/// ([`request_id`]), and echoes it in the response.
const REQUEST_ID: &str = "x-request-id";

/// The trace id of every answer (32 hex digits): the client's `traceparent` continued, or a
/// new trace.
const TRACE_ID: &str = "x-trace-id";

/// The id of the request with these headers (set by [`AccessLog`]), for log lines.
pub fn request_id(headers: &volo_http::http::HeaderMap) -> &str {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The gateway as one volo-http service.
pub type App = AccessLog<cors::Cors<admission::Admission<Router>>>;

/// Builds the token keys from the config: the given secret (refused under 32 bytes); without
/// one, a random secret in development mode (with a warning) and an error otherwise.
pub fn jwt_from_config(config: &Config) -> Result<Jwt, KeyError> {
    match &config.jwt_secret {
        Some(secret) => Jwt::new(secret.expose().as_bytes(), config.jwt_ttl),
        None if config.dev => {
            tracing::warn!(
                "development mode without --jwt-secret: using a random secret, so tokens die \
                 with this process"
            );
            Jwt::random(config.jwt_ttl)
        }
        None => Err(KeyError::Missing),
    }
}

/// The gateway as built: the service, and the IDL routes it mounted.
pub type Built = (App, Vec<&'static rpc::runtime::RouteSpec>);

/// Every route of the IDL (clients resolved through etcd, built once here), plus the gateway's
/// own paths (`/healthz`, `/openapi.json`, `/metrics`, `/docs`). Call inside a Tokio runtime.
/// Fails on a CORS configuration that cannot be served.
pub fn app(config: &Config, jwt: Jwt) -> Result<Built, CorsError> {
    let options = config.client_options();
    app_with(config, jwt, |mounter| rpc::visit_routes(mounter, &options))
}

/// [`app`] with the routes from `visit` instead of the IDL's: tests mount fixture endpoints.
pub fn app_with(
    config: &Config,
    jwt: Jwt,
    visit: impl FnOnce(&mut Mounter),
) -> Result<Built, CorsError> {
    let cors = Arc::new(config.cors.policy()?);
    let limits = limits::Limits::new(&config.rates());
    let shared = Arc::new(routes::Shared {
        jwt,
        body_limit: config.body_limit,
        limits: limits.clone(),
        shedder: shedding::Shedder::new(config.shed_cpu_threshold),
    });
    let mut mounter = Mounter::new(shared);
    visit(&mut mounter);
    let mounted = std::mem::take(&mut mounter.mounted);
    // The gateway's own paths (`GATEWAY_PATHS`, which no IDL route may take).
    let own = routes::Allowed::gateway_path;
    let mut router = Router::new()
        .route("/healthz", routes::with_allow(get(healthz), &own()))
        .route("/openapi.json", routes::with_allow(get(openapi), &own()))
        .route("/metrics", routes::with_allow(get(metrics), &own()));
    if config.docs {
        router = docs::mount(router);
    }
    let router = mounter
        .into_router(router)
        .fallback(not_found)
        .layer(TimeoutLayer::new(config.request_timeout, on_timeout))
        .layer(volo::catch_panic::Layer::new(on_panic));
    let admission = admission::Admission {
        inner: router,
        head: config.head_limits(),
        limits,
    };
    let access_log = AccessLog {
        inner: cors::Cors {
            inner: admission,
            policy: cors,
        },
        metrics: Arc::new(Throughput::new(
            "hertz_server_throughput",
            "hertz_server_latency_us",
        )),
    };
    Ok((access_log, mounted))
}

/// `METHOD path -> Service.Method [auth]`, one line per route.
pub fn describe_routes(routes: &[&rpc::runtime::RouteSpec]) -> String {
    let mut out = String::new();
    for r in routes {
        out.push_str(&format!(
            "{:<7} {} -> {}.{}",
            r.method, r.path, r.service, r.rpc
        ));
        if r.auth {
            out.push_str(" [auth]");
        }
        if let Some(f) = r.issue_token {
            out.push_str(&format!(" [issues token for `{f}`]"));
        }
        out.push('\n');
    }
    out
}

/// Serves `app` on `listener` until SIGINT/SIGTERM, then refuses new connections and
/// answers the requests in flight.
pub async fn serve(
    app: App,
    listener: tokio::net::TcpListener,
    limits: &ConnectionLimits,
) -> std::io::Result<()> {
    server::serve_until(app, listener, limits, server::signal()).await
}

async fn healthz() -> Response {
    reply::json_bytes(StatusCode::OK, br#"{"status":"ok"}"#.to_vec())
}

async fn openapi() -> Response {
    reply::json_bytes(StatusCode::OK, rpc::OPENAPI_JSON.as_bytes().to_vec())
}

/// The Prometheus scrape: `hertz_server_*` of the gateway, `kitex_client_*` of its calls, and
/// the registry's health as its clients see it.
async fn metrics() -> Result<Response, Rejection> {
    // Off (`--metrics off`), or a gateway built into another program that did not install.
    let handle = rpc::volo_etcd::metrics::handle().ok_or(Rejection::NoRoute)?;
    let mut response = handle.render().into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(rpc::volo_etcd::metrics::CONTENT_TYPE),
    );
    Ok(response)
}

/// The route that answered, as the IDL spells its path: the `path` label of the HTTP metrics
/// (the request's own path would make one series per user id).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RoutePath(pub(crate) &'static str);

/// An answer's labels under hertz-contrib/monitor-prometheus's names: method, status, path.
type HttpKey = (volo_http::http::Method, StatusCode, &'static str);

fn http_labels((method, status, path): &HttpKey) -> Vec<metrics::Label> {
    vec![
        metrics::Label::new("method", method.as_str().to_owned()),
        metrics::Label::new("statusCode", status.as_str().to_owned()),
        metrics::Label::new("path", *path),
    ]
}

/// The `path` label of an answer: its route's, a gateway path's own, else `other` (no route,
/// or refused before routing).
fn path_label(resp: &Response, path: &str) -> &'static str {
    match resp.extensions().get::<RoutePath>() {
        Some(RoutePath(route)) => route,
        None => rpc::runtime::GATEWAY_PATHS
            .iter()
            .find(|own| **own == path)
            .copied()
            .unwrap_or("other"),
    }
}

async fn not_found() -> Rejection {
    Rejection::NoRoute
}

fn on_timeout(_: &ServerContext) -> Response {
    Rejection::Timeout.into_response()
}

/// A bug must not reach the client as a dropped connection or a detail: log it, answer 500.
fn on_panic(
    _: &mut ServerContext,
    _: Box<dyn std::any::Any + Send>,
    info: volo::catch_panic::PanicInfo,
) -> Result<Response, Infallible> {
    tracing::error!("a request handler panicked: {info}");
    Ok(Rejection::Internal.into_response())
}

/// Gives each request an id, logs one line per request and counts it in the HTTP metrics.
#[derive(Clone)]
pub struct AccessLog<S> {
    inner: S,
    metrics: Arc<Throughput<HttpKey>>,
}

impl<S> Service<ServerContext, Request> for AccessLog<S>
where
    S: Service<ServerContext, Request, Response = Response, Error = Infallible> + Send + Sync,
{
    type Response = Response;
    type Error = Infallible;

    async fn call(&self, cx: &mut ServerContext, mut req: Request) -> Result<Response, Infallible> {
        let start = Instant::now();
        // Cloning a header value only counts a reference: the id costs one allocation when
        // generated and none when the client's is echoed.
        let id = match req.headers().get(REQUEST_ID) {
            Some(id) if is_safe_request_id(id.as_bytes()) => id.clone(),
            _ => {
                let id = HeaderValue::try_from(format!("{:016x}", fastrand::u64(..)))
                    .expect("hex digits are a valid header value");
                req.headers_mut().insert(REQUEST_ID, id.clone());
                id
            }
        };
        let method = req.method().clone();
        let uri = req.uri().clone();
        let incoming = req.headers().get(TRACEPARENT).and_then(|parent| {
            let state = req.headers().get(TRACESTATE);
            TraceContext::parse(parent.to_str().ok()?, state.and_then(|s| s.to_str().ok()))
        });
        let (span, trace) = telemetry::serve_in_span(incoming, || request_span(&req, &id));
        let exported = telemetry::exporting() && !span.is_disabled() && trace.sampled();
        let trace_id = trace.trace_id();
        let mut resp = match telemetry::scope(trace, self.inner.call(cx, req))
            .instrument(span.clone())
            .await
        {
            Ok(r) => r,
            Err(never) => match never {},
        };
        if resp.status() != StatusCode::NO_CONTENT && !resp.headers().contains_key(CONTENT_TYPE) {
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let took = start.elapsed();
        let route = path_label(&resp, uri.path());
        if rpc::volo_etcd::metrics::enabled() {
            let key = (method.clone(), resp.status(), route);
            self.metrics.record(key, http_labels, took);
        }
        if exported {
            end_request_span(&span, &method, uri.path(), route, resp.status());
        }
        tracing::info!(
            target: "gateway::access",
            method = %method,
            path = uri.path(),
            status = resp.status().as_u16(),
            latency_us = took.as_micros() as u64,
            request_id = id.to_str().unwrap_or_default(),
            trace_id,
        );
        resp.headers_mut().insert(REQUEST_ID, id);
        if let Ok(trace_id) = HeaderValue::try_from(trace_id) {
            resp.headers_mut().insert(TRACE_ID, trace_id);
        }
        Ok(resp)
    }
}

/// The span of one request: its log lines carry the request id and trace id; exporting, it is
/// the trace's HTTP server span. The gateway's own paths (health probes, scrapes) get none.
fn request_span(req: &Request, id: &HeaderValue) -> Span {
    if rpc::runtime::GATEWAY_PATHS.contains(&req.uri().path()) {
        return Span::none();
    }
    tracing::info_span!(
        "request",
        request_id = id.to_str().unwrap_or_default(),
        trace_id = Empty,
        otel.kind = Empty,
        otel.status_code = Empty,
    )
}

/// Names the exported server span after its route (OpenTelemetry's `{method} {route}`), once
/// routing has told the route, adds the request's attributes, and marks a 5xx answer as an
/// error.
fn end_request_span(
    span: &Span,
    method: &http::Method,
    path: &str,
    route: &str,
    status: StatusCode,
) {
    span.set_attribute("http.request.method", method.as_str().to_owned());
    span.set_attribute("url.path", path.to_owned());
    let cx = span.context();
    let otel = cx.span();
    if route == "other" {
        otel.update_name(method.as_str().to_owned());
    } else {
        otel.update_name(format!("{method} {route}"));
        span.set_attribute("http.route", route.to_owned());
    }
    span.set_attribute("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
}

/// A client's id is echoed and logged: keep it short and printable.
fn is_safe_request_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}
