//! The gateway's binding of a request (path, query, headers, JSON body) and its `api.vd`
//! validation, as generated for every route of the project's IDL: any request gives a bound
//! request or an error, never a panic.
//!
//! The routes come from `rpc::visit_routes`, so a route added to the IDL is fuzzed with no
//! change here. Its clients are built, never called (they resolve through etcd lazily).
//!
//! One more property: what binds and validates satisfies the OpenAPI document's keywords for
//! the JSON body (`rpc::OPENAPI_JSON`), so the document never refuses what the gateway takes.
//!
//! An input is the route's index (one byte), then sections split at byte 0xFF, which UTF-8
//! text never holds: the path parameters' values and the headers (`name: value`), each list
//! split at 0xFE, the query string (none when empty), and the body, the rest as it is.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use rpc::runtime::{Endpoint, RequestParts, RouteSpec, RouteVisitor, Source, Validate};
use serde_json::Value;

/// One HTTP request, as the gateway hands it to the generated code.
#[derive(Debug)]
struct Request {
    route: usize,
    /// Path parameter values, given to the route's path fields in order.
    path: Vec<String>,
    headers: Vec<(String, String)>,
    query: Option<String>,
    body: Vec<u8>,
}

impl Request {
    fn parse(data: &[u8]) -> Option<Request> {
        let (&route, rest) = data.split_first()?;
        let mut sections = rest.splitn(4, |&b| b == 0xFF);
        let mut next = || sections.next().unwrap_or_default();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let list = |b: &[u8]| -> Vec<String> {
            if b.is_empty() {
                Vec::new()
            } else {
                b.split(|&c| c == 0xFE).map(text).collect()
            }
        };
        let path = list(next());
        let headers = list(next())
            .into_iter()
            .map(|h| match h.split_once(':') {
                Some((k, v)) => (k.to_string(), v.trim_start().to_string()),
                None => (h, String::new()),
            })
            .collect();
        let query = Some(next()).filter(|q| !q.is_empty()).map(text);
        let body = next().to_vec();
        Some(Request {
            route: usize::from(route),
            path,
            headers,
            query,
            body,
        })
    }
}

/// Binds and validates one request on the route of `E`: whether it passed.
type Check = fn(&Parts<'_>) -> bool;

struct Collect(Vec<(&'static RouteSpec, Check)>);

impl RouteVisitor for Collect {
    fn visit<E: Endpoint>(&mut self, _client: &E::Client) {
        self.0.push((E::ROUTE, check::<E>));
    }
}

fn check<E: Endpoint>(parts: &Parts<'_>) -> bool {
    match E::bind(parts) {
        Ok(request) => match request.validate() {
            Ok(()) => true,
            Err(e) => {
                assert!(!e.to_string().is_empty());
                false
            }
        },
        Err(e) => {
            assert!(!e.to_string().is_empty());
            false
        }
    }
}

static OPENAPI: LazyLock<Value> =
    LazyLock::new(|| serde_json::from_str(rpc::OPENAPI_JSON).expect("the document is JSON"));

/// The body schema of a route's operation, if it reads a body.
fn body_schema(route: &RouteSpec) -> Option<&'static Value> {
    let path = route.router_path.replace("{*", "{");
    let op = &OPENAPI["paths"][path.as_str()][route.method.as_str().to_ascii_lowercase().as_str()];
    op.get("requestBody")
        .map(|b| &b["content"]["application/json"]["schema"])
}

/// Whether `value` meets the keywords the document writes for `api.vd` rules and types (a
/// `$ref` or `pattern` is taken as met: this only checks what it can evaluate exactly).
fn satisfies(schema: &Value, value: &Value) -> bool {
    let Some(s) = schema.as_object() else {
        return true;
    };
    let list = |k: &str| s.get(k).and_then(Value::as_array);
    let num = |k: &str| s.get(k).and_then(Value::as_f64);
    let count = |k: &str| s.get(k).and_then(Value::as_u64);
    let fits_type = match s.get("type").and_then(Value::as_str) {
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some("array") => value.is_array(),
        Some("object") => value.is_object(),
        Some("null") => value.is_null(),
        _ => true,
    };
    let bounds = value.as_f64().is_none_or(|x| {
        num("minimum").is_none_or(|m| x >= m)
            && num("maximum").is_none_or(|m| x <= m)
            && num("exclusiveMinimum").is_none_or(|m| x > m)
            && num("exclusiveMaximum").is_none_or(|m| x < m)
    });
    let length = value.as_str().is_none_or(|text| {
        let chars = text.chars().count() as u64;
        count("minLength").is_none_or(|m| chars >= m)
            && count("maxLength").is_none_or(|m| chars <= m)
    });
    let items = value.as_array().is_none_or(|items| {
        let n = items.len() as u64;
        count("minItems").is_none_or(|m| n >= m)
            && count("maxItems").is_none_or(|m| n <= m)
            && s.get("items")
                .is_none_or(|item| items.iter().all(|v| satisfies(item, v)))
    });
    fits_type
        && bounds
        && length
        && items
        && list("anyOf").is_none_or(|any| any.iter().any(|alt| satisfies(alt, value)))
        && list("allOf").is_none_or(|all| all.iter().all(|part| satisfies(part, value)))
        && list("enum").is_none_or(|allowed| allowed.contains(value))
        && s.get("const").is_none_or(|c| c == value)
}

/// The generated `client()` wants a runtime with timers to exist. It is never driven: what a
/// client spawns never runs.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
});

static ROUTES: LazyLock<Vec<(&'static RouteSpec, Check)>> = LazyLock::new(|| {
    let _guard = RUNTIME.enter();
    let mut routes = Collect(Vec::new());
    rpc::visit_routes(&mut routes, &rpc::volo_etcd::ClientOptions::default());
    assert!(!routes.0.is_empty(), "the IDL declares routes");
    routes.0
});

struct Parts<'a> {
    route: &'static RouteSpec,
    input: &'a Request,
}

impl RequestParts for Parts<'_> {
    fn body(&self) -> &[u8] {
        &self.input.body
    }

    fn path_param(&self, name: &str) -> Option<&str> {
        let index = self
            .route
            .fields
            .iter()
            .filter(|f| f.source == Source::Path)
            .position(|f| f.key == name)?;
        self.input.path.get(index).map(String::as_str)
    }

    fn query(&self) -> Option<&str> {
        self.input.query.as_deref()
    }

    fn header(&self, name: &str) -> Option<&str> {
        // As HeaderMap: names match whatever their case.
        self.input
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Request::parse(data) else {
        return;
    };
    let (route, check) = ROUTES[input.route % ROUTES.len()];
    let accepted = check(&Parts {
        route,
        input: &input,
    });
    if let (true, Some(schema)) = (accepted, body_schema(route)) {
        let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&input.body) else {
            // A struct also binds from a JSON array (serde's sequence form): not checked here.
            return;
        };
        for (key, value) in &body {
            if let Some(property) = schema["properties"].get(key) {
                assert!(
                    satisfies(property, value),
                    "{} {}: accepted `{key}` = {value}, which the OpenAPI document refuses: {property}",
                    route.method,
                    route.path
                );
            }
        }
    }
});
