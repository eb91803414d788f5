//! Mounting the generated endpoints: one volo-http service per route, holding its client.

use std::{
    collections::{BTreeMap, BTreeSet},
    convert::Infallible,
    marker::PhantomData,
    sync::Arc,
};

use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use metainfo::{Forward as _, METAINFO};
use rpc::{
    runtime::{
        Endpoint, Envelope, Method, Query, RequestParts, RouteSpec, RouteVisitor, Source, Validate,
    },
    volo_etcd::telemetry::{self, REQUEST_ID},
};
use serde::Serialize;
use volo::Service;
use volo_http::{
    Bytes,
    body::Body,
    context::ServerContext,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    hyper::body::Body as HttpBody,
    request::Request,
    response::Response,
    server::{
        IntoResponse,
        param::PathParamsVec,
        route::{MethodRouter, Router},
    },
};

use crate::{
    RoutePath,
    admission::client_ip,
    jwt::Jwt,
    limits::Limits,
    rejection::Rejection,
    reply, request_id,
    shedding::{RouteGate, Shedder},
};

/// What every route handler shares, built once at start.
pub(crate) struct Shared {
    /// Checks tokens on `api.auth` routes, issues them on `api.issue_token` routes.
    pub(crate) jwt: Jwt,
    /// Largest body read, in bytes.
    pub(crate) body_limit: usize,
    /// The log-in limits of token-issuing routes.
    pub(crate) limits: Arc<Limits>,
    /// Refuses what the routes cannot carry while the CPUs are saturated.
    pub(crate) shedder: Arc<Shedder>,
}

/// The [`RouteVisitor`] the gateway mounts routes with; hand it to a generated `visit_routes`.
/// Collects one `MethodRouter` per path, since several methods may share a path.
pub struct Mounter {
    shared: Arc<Shared>,
    /// Each path's router, and what it allows.
    paths: BTreeMap<&'static str, (MethodRouter, Allowed)>,
    /// The routes mounted so far, in visit order.
    pub(crate) mounted: Vec<&'static RouteSpec>,
}

impl Mounter {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            paths: BTreeMap::new(),
            mounted: Vec::new(),
        }
    }

    /// Adds every collected path to `router` (see [`with_allow`]).
    pub(crate) fn into_router(self, mut router: Router) -> Router {
        for (path, (router_of_path, allowed)) in self.paths {
            router = router.route(path, with_allow(router_of_path, &allowed));
        }
        router
    }
}

impl RouteVisitor for Mounter {
    fn visit<E: Endpoint>(&mut self, client: &E::Client) {
        let route = E::ROUTE;
        let service = RouteService::<E> {
            client: client.clone(),
            gate: Arc::new(self.shared.shedder.add_route()),
            shared: self.shared.clone(),
            has_body: route.fields.iter().any(|f| f.source == Source::Body),
            _endpoint: PhantomData,
        };
        let (methods, mut allowed) = self.paths.remove(route.router_path).unwrap_or_default();
        let methods = match route.method {
            Method::Get => methods.get_service(service),
            Method::Post => methods.post_service(service),
            Method::Put => methods.put_service(service),
            Method::Patch => methods.patch_service(service),
            Method::Delete => methods.delete_service(service),
            Method::Head => methods.head_service(service),
            Method::Options => methods.options_service(service),
        };
        self.mounted.push(route);
        allowed.add(route);
        self.paths.insert(route.router_path, (methods, allowed));
    }
}

/// The request headers the gateway reads on every route (beside each route's own).
const COMMON_REQUEST_HEADERS: [&str; 3] = ["traceparent", "tracestate", "x-request-id"];

/// What one path allows: its methods, and the request headers its routes read. A browser's
/// CORS preflight is told both.
#[derive(Debug, Default)]
pub(crate) struct Allowed {
    methods: Vec<Method>,
    /// Lowercase names, beside [`COMMON_REQUEST_HEADERS`].
    headers: BTreeSet<String>,
}

impl Allowed {
    /// One of the gateway's own paths: GET, reading no header of its own.
    pub(crate) fn gateway_path() -> Allowed {
        Allowed {
            methods: vec![Method::Get],
            headers: BTreeSet::new(),
        }
    }

    /// Adds a route of the path: its method, and the headers it reads.
    fn add(&mut self, route: &RouteSpec) {
        self.methods.push(route.method);
        if route.auth {
            self.headers.insert("authorization".to_owned());
        }
        for field in route.fields {
            match field.source {
                Source::Body => {
                    self.headers.insert("content-type".to_owned());
                }
                Source::Header => {
                    self.headers.insert(field.key.to_ascii_lowercase());
                }
                Source::Path | Source::Query => {}
            }
        }
    }
}

/// The routes of one path, answering `OPTIONS` too unless the IDL has it (RFC 9110: `Allow`;
/// for a CORS preflight, also the methods and headers, see the `cors` module), and a JSON 405
/// naming the methods in `Allow` for any other method.
pub(crate) fn with_allow(router: MethodRouter, allowed: &Allowed) -> MethodRouter {
    let mut names: Vec<&str> = allowed.methods.iter().map(|m| m.as_str()).collect();
    let router = if allowed.methods.contains(&Method::Options) {
        router
    } else {
        names.push(Method::Options.as_str());
        let headers: Vec<&str> = COMMON_REQUEST_HEADERS
            .into_iter()
            .chain(allowed.headers.iter().map(String::as_str))
            .collect();
        router.options_service(OptionsService {
            allow: header_list(&names),
            headers: header_list(&headers),
        })
    };
    let allow = header_list(&names);
    router.fallback(move || {
        let allow = allow.clone();
        async move { Rejection::MethodNotAllowed(allow) }
    })
}

fn header_list(items: &[&str]) -> HeaderValue {
    HeaderValue::from_str(&items.join(", ")).expect("method and header names are header text")
}

/// `OPTIONS` on a path: 204 with `Allow`; a CORS preflight also gets the methods and the
/// request headers allowed (the `cors` layer adds the origin, or refuses it before this).
#[derive(Clone)]
struct OptionsService {
    allow: HeaderValue,
    headers: HeaderValue,
}

impl Service<ServerContext, Request> for OptionsService {
    type Response = Response;
    type Error = Infallible;

    async fn call(&self, _: &mut ServerContext, req: Request) -> Result<Response, Infallible> {
        let mut response = Response::default();
        *response.status_mut() = StatusCode::NO_CONTENT;
        let headers = response.headers_mut();
        headers.insert(header::ALLOW, self.allow.clone());
        if req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, self.allow.clone());
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, self.headers.clone());
        }
        Ok(response)
    }
}

/// One route: auth, body, binding, validation, the RPC, the envelope.
struct RouteService<E: Endpoint> {
    client: E::Client,
    /// The route's place in the shedder.
    gate: Arc<RouteGate>,
    shared: Arc<Shared>,
    /// Whether the route reads a JSON body (else the body is ignored).
    has_body: bool,
    _endpoint: PhantomData<fn() -> E>,
}

impl<E: Endpoint> Clone for RouteService<E> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            gate: self.gate.clone(),
            shared: self.shared.clone(),
            has_body: self.has_body,
            _endpoint: PhantomData,
        }
    }
}

impl<E: Endpoint> Service<ServerContext, Request> for RouteService<E> {
    type Response = Response;
    type Error = Infallible;

    async fn call(&self, cx: &mut ServerContext, req: Request) -> Result<Response, Infallible> {
        let mut response = match self.shared.shedder.admit(&self.gate) {
            Some(_ticket) => self.handle(cx, req).await,
            None => Err(Rejection::Overloaded),
        }
        .unwrap_or_else(IntoResponse::into_response);
        response.extensions_mut().insert(RoutePath(E::ROUTE.path));
        Ok(response)
    }
}

impl<E: Endpoint> RouteService<E> {
    async fn handle(&self, cx: &mut ServerContext, req: Request) -> Result<Response, Rejection> {
        let route = E::ROUTE;
        let (parts, body) = req.into_parts();
        let request_id = request_id(&parts.headers);
        if route.issue_token.is_some() {
            self.shared.limits.check_login_ip(client_ip(cx))?;
        }
        if route.auth {
            let authorization = parts
                .headers
                .get(header::AUTHORIZATION)
                .map(|v| v.as_bytes());
            self.shared.jwt.verify_header(authorization)?;
        }
        let body = if self.has_body {
            if !is_json(&parts.headers) {
                return Err(Rejection::NotJson);
            }
            read_body(body, self.shared.body_limit).await?
        } else {
            Bytes::new()
        };
        let http_parts = HttpParts {
            params: cx.params(),
            query: parts.uri.query(),
            headers: &parts.headers,
            body: &body,
        };
        let request = telemetry::span_if_traced(
            || tracing::info_span!(target: telemetry::TRACE_ONLY, "bind"),
        )
        .in_scope(|| -> Result<_, Rejection> {
            let request = E::bind(&http_parts).map_err(Rejection::invalid)?;
            request.validate()?;
            Ok(request)
        })?;
        if route.issue_token.is_some()
            && let Some(account) = account(route, &http_parts)
        {
            self.shared.limits.check_login_account(&account)?;
        }
        // The id reaches the service as Kitex's metainfo value `REQUEST_ID`: its log lines
        // carry it, and a registration retried on another instance is known as the same one.
        let _ = METAINFO.try_with(|metainfo| {
            metainfo
                .borrow_mut()
                .set_transient(REQUEST_ID, request_id.to_owned())
        });
        let response = E::call(&self.client, request).await.map_err(|e| {
            tracing::error!(
                request_id,
                service = route.service,
                rpc = route.rpc,
                error = %e,
                "rpc failed"
            );
            Rejection::ServiceUnavailable
        })?;
        let code = response.code();
        let message = match response.message() {
            "" if code == 0 => "Success",
            m => m,
        };
        match route.issue_token {
            // As the seed's SendResponse(c, err, nil): a failure carries no data.
            _ if code != 0 => Ok(reply::envelope(StatusCode::OK, code, message, ())),
            Some(field) => self.with_token(&response, field, message, request_id),
            None => Ok(reply::envelope(
                StatusCode::OK,
                code,
                message,
                response.data(),
            )),
        }
    }

    /// The envelope with `token` and `expires_at` added to `data`, subject `data[field]`.
    fn with_token(
        &self,
        response: &E::Response,
        field: &str,
        message: &str,
        request_id: &str,
    ) -> Result<Response, Rejection> {
        let fail = |why: &dyn std::fmt::Display| {
            tracing::error!(
                request_id,
                rpc = E::ROUTE.rpc,
                "cannot issue a token: {why}"
            );
            Rejection::ServiceUnavailable
        };
        let mut data = match serde_json::to_value(response.data()) {
            Ok(serde_json::Value::Object(map)) => map,
            Ok(_) => return Err(fail(&"the response data is not an object")),
            Err(e) => return Err(fail(&e)),
        };
        let subject = match data.get(field) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => {
                return Err(fail(&format_args!(
                    "field `{field}` is missing from the response"
                )));
            }
        };
        let (token, expires_at) = self.shared.jwt.issue(&subject).map_err(|e| fail(&e))?;
        data.insert("token".into(), token.into());
        data.insert("expires_at".into(), expires_at.into());
        Ok(reply::envelope(StatusCode::OK, 0, message, Data(&data)))
    }
}

/// On a token-issuing route, the account a log-in is for: the value of the route's first field
/// (`username` of `LoginRequest`), as the client sent it.
fn account(route: &RouteSpec, parts: &HttpParts<'_>) -> Option<String> {
    let field = route.fields.first()?;
    match field.source {
        Source::Path => parts.path_param(field.key).map(str::to_owned),
        Source::Header => parts.header(field.key).map(str::to_owned),
        Source::Query => Query::parse(parts.query).get(field.key).map(str::to_owned),
        Source::Body => {
            let body: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(parts.body).ok()?;
            match body.get(field.key)? {
                serde_json::Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            }
        }
    }
}

/// Serializes a borrowed map as the `data` object.
struct Data<'a>(&'a serde_json::Map<String, serde_json::Value>);

impl Serialize for Data<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// `application/json`, `application/json; charset=utf-8`, `application/problem+json`.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = value.split(';').next().unwrap_or("").trim();
    let Some((kind, sub)) = mime.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (sub.eq_ignore_ascii_case("json") || sub.to_ascii_lowercase().ends_with("+json"))
}

/// The whole body, at most `limit` bytes: a declared length over it is refused before a byte
/// is read, and a chunked body (no declared length) as soon as it passes the limit.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, Rejection> {
    if HttpBody::size_hint(&body).lower() > limit as u64 {
        return Err(Rejection::BodyTooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(Rejection::BodyTooLarge { limit }),
        Err(_) => Err(Rejection::BodyUnreadable),
    }
}

/// volo-http's request, as the generated binding code reads it.
struct HttpParts<'a> {
    params: &'a PathParamsVec,
    query: Option<&'a str>,
    headers: &'a HeaderMap,
    body: &'a [u8],
}

impl RequestParts for HttpParts<'_> {
    fn body(&self) -> &[u8] {
        self.body
    }

    fn path_param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.as_str() == name)
            .map(|(_, v)| v.as_str())
    }

    fn query(&self) -> Option<&str> {
        self.query
    }

    fn header(&self, name: &str) -> Option<&str> {
        // HeaderMap lookups by &str are case-insensitive.
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}
