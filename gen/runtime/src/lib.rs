//! The contract between code that `idlgen` generates and the programs that use it.
//!
//! # Layout
//! - [`RouteSpec`], [`FieldSpec`]: the route table as data (method, path, target RPC, where each
//!   field comes from, its validation rule, whether it needs auth). [`Method`] and [`Source`]
//!   are also the generator's own: `idlgen` reads the IDL into them.
//! - [`Endpoint`]: one route, typed: how its request is bound from HTTP, its response, the RPC
//!   call. The generated `visit_routes` hands every endpoint, with its client, to a
//!   [`RouteVisitor`]: that is how the gateway mounts routes with no code per route.
//! - [`RequestParts`], [`BindError`], [`Query`]: what the generated binding code reads.
//! - [`Validate`]: the `api.vd` rules, compiled to Rust.
//! - [`Envelope`]: a response split into status (`BaseResp`) and data.
//! - [`deadline`]: the caller's deadline on the server side (from the TTHeader), for handlers
//!   to check before expensive work.
//!
//! Nothing here depends on an HTTP framework: the gateway adapts volo-http to [`RequestParts`].

use std::{
    borrow::Cow,
    fmt,
    future::Future,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

pub mod deadline;
pub mod vd;

/// Time since the Unix epoch (zero on a clock set before it): the one reading of the wall
/// clock for times that leave the process (token times, row timestamps, `service_time`).
pub fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// The paths the gateway serves itself: health, the OpenAPI document, Prometheus metrics, the
/// API page and its files. An IDL route may not take one (the build says so).
pub const GATEWAY_PATHS: [&str; 7] = [
    "/healthz",
    "/openapi.json",
    "/metrics",
    "/docs",
    "/docs/swagger-ui.css",
    "/docs/swagger-ui-bundle.js",
    "/docs/docs.js",
];

/// The HTTP method of a route: the `api.get`, `api.post`, ... annotations hz reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
    Head,
    Options,
}

impl Method {
    pub const ALL: [Method; 7] = [
        Method::Get,
        Method::Post,
        Method::Put,
        Method::Patch,
        Method::Delete,
        Method::Head,
        Method::Options,
    ];

    /// `GET`, `POST`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Head => "HEAD",
            Method::Options => "OPTIONS",
        }
    }

    /// Whether requests carry a JSON body; fields of the others default to the query string.
    pub fn has_body(self) -> bool {
        matches!(self, Method::Post | Method::Put | Method::Patch)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, not `write_str`: route tables align methods with `{:<7}`.
        f.pad(self.as_str())
    }
}

/// Where a request field's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Path,
    Query,
    Header,
    Body,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Path => "path",
            Source::Query => "query",
            Source::Header => "header",
            Source::Body => "body",
        }
    }
}

/// One request field of a route.
#[derive(Debug)]
pub struct FieldSpec {
    /// The field's IDL name.
    pub name: &'static str,
    pub source: Source,
    /// Its name in that source: path parameter, query key, header name or JSON key.
    pub key: &'static str,
    pub required: bool,
    /// The `api.vd` expression, as written.
    pub rule: Option<&'static str>,
}

/// One HTTP route, as declared in the IDL.
#[derive(Debug)]
pub struct RouteSpec {
    pub method: Method,
    /// hz syntax, as written in the IDL: `/api/user/:user_id`.
    pub path: &'static str,
    /// The same path in volo-http (matchit) syntax: `/api/user/{user_id}`.
    pub router_path: &'static str,
    /// IDL service and method: `UserService`, `GetUser`.
    pub service: &'static str,
    pub rpc: &'static str,
    /// The caller must present a valid bearer token.
    pub auth: bool,
    /// On success, issue a token whose subject is this field of the response data.
    pub issue_token: Option<&'static str>,
    pub fields: &'static [FieldSpec],
}

/// The request as the binding code sees it; the gateway implements it over its HTTP types.
pub trait RequestParts {
    /// The raw body; empty when there is none.
    fn body(&self) -> &[u8];
    fn path_param(&self, name: &str) -> Option<&str>;
    /// The raw query string, without `?`.
    fn query(&self) -> Option<&str>;
    fn header(&self, name: &str) -> Option<&str>;
}

/// Why a request could not be bound; its `Display` names the field and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindError {
    message: String,
}

impl BindError {
    pub fn missing(field: &str, source: Source, key: &str) -> Self {
        let message = match source {
            Source::Path => format!("missing path parameter `{key}` (field `{field}`)"),
            Source::Query => format!("missing query parameter `{key}` (field `{field}`)"),
            Source::Header => format!("missing header `{key}` (field `{field}`)"),
            Source::Body => format!("missing field `{key}` in the JSON body"),
        };
        Self { message }
    }

    pub fn invalid(field: &str, source: Source, why: impl fmt::Display) -> Self {
        Self {
            message: format!(
                "invalid {} value for field `{field}`: {why}",
                source.as_str()
            ),
        }
    }

    /// The body is not the JSON the route expects: names the field (`path`, e.g. `ship_to.city`)
    /// when the error is inside one, and keeps serde's position.
    pub fn body(err: &serde_json::Error, path: &str) -> Self {
        let message = if err.is_eof() && err.line() == 1 && err.column() == 0 {
            "the request body is empty; expected a JSON object".to_string()
        } else {
            // serde_path_to_error writes `?` for a position it could not name.
            let known = path.trim_end_matches(['?', '.']);
            if known.is_empty() {
                format!("invalid JSON body: {err}")
            } else {
                format!("invalid JSON body: field `{known}`: {err}")
            }
        };
        Self { message }
    }
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BindError {}

/// A text value parsed into a field's type (path parameters, query values, headers).
pub trait FromText: Sized {
    fn from_text(text: &str) -> Result<Self, String>;
}

macro_rules! from_text_via_parse {
    ($($t:ty),*) => {$(
        impl FromText for $t {
            fn from_text(text: &str) -> Result<Self, String> {
                text.trim().parse().map_err(|e| format!("`{text}` is not a valid {}: {e}", stringify!($t)))
            }
        }
    )*};
}
from_text_via_parse!(i8, i16, i32, i64, f64);

impl FromText for bool {
    fn from_text(text: &str) -> Result<Self, String> {
        match text.trim() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(format!("`{text}` is not a boolean (true, false, 1 or 0)")),
        }
    }
}

impl FromText for pilota::FastStr {
    fn from_text(text: &str) -> Result<Self, String> {
        Ok(pilota::FastStr::new(text))
    }
}

impl FromText for pilota::OrderedFloat<f64> {
    fn from_text(text: &str) -> Result<Self, String> {
        f64::from_text(text).map(pilota::OrderedFloat)
    }
}

/// Reads one text-valued field, for the generated binding code.
pub fn bind_text<T: FromText>(field: &str, source: Source, text: &str) -> Result<T, BindError> {
    T::from_text(text).map_err(|why| BindError::invalid(field, source, why))
}

/// The query string, decoded once per request.
pub struct Query<'a> {
    pairs: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'a> Query<'a> {
    pub fn parse(raw: Option<&'a str>) -> Self {
        let pairs = raw
            .map(|q| form_urlencoded::parse(q.as_bytes()).collect())
            .unwrap_or_default();
        Self { pairs }
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }

    /// Every value of `key`, for list fields: `?id=1&id=2`.
    pub fn all<'s>(&'s self, key: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }
}

/// Decodes the JSON body into the generated body struct of a route, tracking where a failure is.
pub fn decode_body<'de, T: serde::Deserialize<'de>>(body: &'de [u8]) -> Result<T, BindError> {
    let mut json = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut json)
        .map_err(|e| BindError::body(e.inner(), &e.path().to_string()))?;
    // Trailing characters after the object are an error too, as with serde_json::from_slice.
    json.end().map_err(|e| BindError::body(&e, ""))?;
    Ok(value)
}

/// The `api.vd` rules of a struct, compiled to Rust at build time.
pub trait Validate {
    fn validate(&self) -> Result<(), Invalid>;
}

/// A value that broke a validation rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Path of the field from the validated struct: `username`, `address.city`.
    pub field: String,
    pub message: String,
}

impl Invalid {
    /// `rule` is the expression as written; `message` the rule's own `msg`, if it has one.
    pub fn new(field: &str, rule: &str, message: Option<&str>) -> Self {
        let message = match message {
            Some(m) => m.to_string(),
            None => format!("must satisfy `{rule}`"),
        };
        Self {
            field: field.to_string(),
            message,
        }
    }

    /// The same error seen from a struct that contains the field.
    pub fn nested(self, parent: &str) -> Self {
        Self {
            field: format!("{parent}.{}", self.field),
            message: self.message,
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid field `{}`: {}", self.field, self.message)
    }
}

impl std::error::Error for Invalid {}

/// A response split the way the gateway answers: `{code, message, data}`.
pub trait Envelope {
    /// `BaseResp.status_code`, or 0 when the response has no `BaseResp`.
    fn code(&self) -> i64;
    /// `BaseResp.status_message`, or "" when the response has no `BaseResp`.
    fn message(&self) -> &str;
    /// Every field but `BaseResp`, serialized as one object with the IDL's field names.
    fn data(&self) -> impl serde::Serialize + '_;
}

/// Why an RPC made for a route did not produce a response.
#[derive(Debug)]
pub enum CallError {
    /// Transport, timeout, no instance...: the client's error.
    Client(volo_thrift::ClientError),
    /// The method declared `throws` and the service raised one; its debug form, for the log.
    Exception(String),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Client(e) => write!(f, "rpc failed: {e}"),
            CallError::Exception(e) => write!(f, "rpc raised an exception: {e}"),
        }
    }
}

impl std::error::Error for CallError {}

/// One route, typed. Generated per route of an RPC method.
pub trait Endpoint: 'static {
    /// The generated client of the service.
    type Client: Clone + Send + Sync + 'static;
    type Request: Validate + Send + 'static;
    type Response: Envelope + Send + 'static;

    const ROUTE: &'static RouteSpec;

    /// Builds the request, each field from where the IDL binds it on this route.
    fn bind<P: RequestParts + ?Sized>(parts: &P) -> Result<Self::Request, BindError>;

    fn call(
        client: &Self::Client,
        request: Self::Request,
    ) -> impl Future<Output = Result<Self::Response, CallError>> + Send;
}

/// Receives every endpoint, with the client to call it through; the gateway mounts them.
pub trait RouteVisitor {
    fn visit<E: Endpoint>(&mut self, client: &E::Client);
}
