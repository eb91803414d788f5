//! The HTTP API an IDL declares, read from hz-style annotations, and every check on it.
//!
//! | annotation | on | meaning |
//! |---|---|---|
//! | `api.get/post/put/patch/delete = "/path/:param"` | method | an HTTP route to this RPC (hz path syntax) |
//! | `api.auth = "true"` | method | the caller must present a valid bearer token |
//! | `api.issue_token = "field"` | method | on success the gateway issues a token for this response field |
//! | `api.path/query/header/body = "name"` | request field | where the field is bound from (empty: the field's name) |
//! | `api.vd = "expr"` | any struct field | validation, go-tagexpr syntax (see [`crate::vd`]) |
//! | `registry.name = "service.music.user"` | service | the name it registers under in etcd |
//!
//! A request field with no binding comes from the JSON body, or from the query string on
//! routes without a body (GET, HEAD, DELETE, OPTIONS).

use std::collections::HashMap;

use idlgen_runtime as runtime;

use crate::{
    diag::{Diagnostic, Diagnostics, Source},
    idl::{self, Field, Idl, MethodId, Service, ServiceId, StructId, Type},
    vd,
};

/// The annotation that declares a route with this method: `api.get`, ... (hz's names).
pub fn annotation(method: runtime::Method) -> String {
    format!("api.{}", method.as_str().to_ascii_lowercase())
}

/// One request field's binding: `source` and the name it has there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// Index into the request struct's fields.
    pub field: usize,
    pub source: runtime::Source,
    pub key: String,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub method: runtime::Method,
    /// As written in the IDL, hz syntax: `/api/user/:user_id`, `/files/*path`.
    pub path: String,
    pub service: ServiceId,
    /// The method of that service.
    pub rpc: MethodId,
    pub request: StructId,
    pub response: StructId,
    pub auth: bool,
    pub issue_token: Option<String>,
    /// One per request field, in field order.
    pub bindings: Vec<Binding>,
}

impl Route {
    /// The path in volo-http (matchit) syntax: `/api/user/{user_id}`, `/files/{*path}`.
    pub fn router_path(&self) -> String {
        self.path
            .split('/')
            .map(|seg| match (seg.strip_prefix(':'), seg.strip_prefix('*')) {
                (Some(p), _) => format!("{{{p}}}"),
                (_, Some(p)) => format!("{{*{p}}}"),
                _ => seg.to_string(),
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// Names of the path parameters, in order.
    pub fn path_params(&self) -> Vec<&str> {
        path_params(&self.path)
    }
}

fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix(':').or_else(|| seg.strip_prefix('*')))
        .collect()
}

/// A checked IDL and the API it declares.
#[derive(Debug)]
pub struct Api {
    pub idl: Idl,
    pub routes: Vec<Route>,
    /// The compiled `api.vd` of every field that has one, by its struct and its index there.
    pub rules: HashMap<(StructId, usize), vd::Rule>,
}

/// The name a service registers under: `registry.name`, else the IDL name.
pub fn registry_name(service: &Service) -> &str {
    service
        .annotations
        .get("registry.name")
        .unwrap_or(&service.name)
}

impl Api {
    /// Loads and checks every `*.thrift` in `dir`: the same diagnostics as the build.
    pub fn load_dir(dir: &std::path::Path) -> Result<Api, Diagnostics> {
        Self::check(Idl::load_dir(dir)?)
    }

    /// Extracts the routes and runs every check; all errors are reported together.
    pub fn check(idl: Idl) -> Result<Api, Diagnostics> {
        let mut diags = Diagnostics::default();
        let mut routes = Vec::new();
        for (si, service) in idl.services.iter().enumerate() {
            let si = ServiceId(si);
            if !idl.roots.contains(&service.file) {
                continue;
            }
            let src = idl.source(service.file);
            if let Some(name) = service.annotations.get("registry.name")
                && (name.is_empty() || name.contains('/'))
            {
                let at = src
                    .annotation_value(service.offset, "registry.name")
                    .unwrap_or(service.offset);
                diags.push(src.at(
                    at,
                    format!("registry.name `{name}` must be non-empty and contain no `/`"),
                ));
            }
            for (mi, method) in service.methods.iter().enumerate() {
                routes.extend(method_routes(&idl, si, MethodId(mi), method, &mut diags));
            }
        }
        check_duplicates(&idl, &routes, &mut diags);
        let rules = compile_rules(&idl, &mut diags);
        if diags.is_empty() {
            Ok(Api { idl, routes, rules })
        } else {
            Err(diags)
        }
    }

    pub fn service_of(&self, route: &Route) -> &Service {
        &self.idl.services[route.service]
    }

    pub fn method_of(&self, route: &Route) -> &idl::Method {
        &self.idl.services[route.service].methods[route.rpc]
    }

    /// The field of a response that carries `BaseResp`, if any.
    pub fn status_field(&self, response: StructId) -> Option<usize> {
        status_field(&self.idl, response)
    }
}

/// The field whose type is a struct named `BaseResp`: its code and message become the envelope's.
pub fn status_field(idl: &Idl, response: StructId) -> Option<usize> {
    idl.structs[response]
        .fields
        .iter()
        .position(|f| matches!(&f.ty, Type::Struct(id) if idl.structs[*id].name == "BaseResp"))
}

fn method_routes(
    idl: &Idl,
    si: ServiceId,
    mi: MethodId,
    method: &idl::Method,
    diags: &mut Diagnostics,
) -> Vec<Route> {
    let service = &idl.services[si];
    let src = idl.source(service.file);
    let at_value = |key: &str| {
        src.annotation_value(method.offset, key)
            .unwrap_or(method.offset)
    };
    let declared: Vec<(runtime::Method, &str)> = runtime::Method::ALL
        .iter()
        .filter_map(|m| method.annotations.get(&annotation(*m)).map(|p| (*m, p)))
        .collect();
    if method.annotations.get("api.any").is_some() {
        diags.push(src.at(
            at_value("api.any"),
            "api.any is not supported: declare one route per HTTP method (api.get, api.post, ...)",
        ));
    }
    if declared.is_empty() {
        for key in ["api.auth", "api.issue_token"] {
            if method.annotations.get(key).is_some() {
                diags.push(src.at(
                    at_value(key),
                    format!(
                        "{key} on `{}`, which has no route (api.get, api.post, ...)",
                        method.name
                    ),
                ));
            }
        }
        return Vec::new();
    }

    let mut ok = true;
    let mut err = |d: Diagnostic| {
        ok = false;
        diags.push(d);
    };
    let request = match method.args.as_slice() {
        [arg] => match &arg.ty {
            Type::Struct(id) => Some(*id),
            other => {
                err(src.at(
                    method.offset,
                    format!(
                        "`{}` has a route, so its argument must be a struct, not {}",
                        method.name,
                        idl.type_name(other)
                    ),
                ));
                None
            }
        },
        args => {
            err(src.at(method.offset, format!("`{}` has a route, so it must take exactly one struct argument (hz's convention); it takes {}", method.name, args.len())));
            None
        }
    };
    let response = match &method.result {
        Some(Type::Struct(id)) => Some(*id),
        other => {
            let what = other
                .as_ref()
                .map_or("void".to_string(), |t| idl.type_name(t));
            err(src.at(
                method.offset,
                format!(
                    "`{}` has a route, so it must return a struct, not {what}",
                    method.name
                ),
            ));
            None
        }
    };
    if method.oneway {
        err(src.at(
            method.offset,
            format!(
                "`{}` is oneway: it has no response to answer an HTTP request with",
                method.name
            ),
        ));
    }
    let auth = match method.annotations.get("api.auth") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            err(src.at(
                at_value("api.auth"),
                format!("api.auth must be \"true\" or \"false\", not \"{other}\""),
            ));
            false
        }
    };
    let issue_token = method
        .annotations
        .get("api.issue_token")
        .map(str::to_string);
    if let (Some(field), Some(resp)) = (&issue_token, response) {
        let found = idl.structs[resp].fields.iter().find(|f| &f.name == field);
        match found {
            Some(f) if f.ty.is_integer() || f.ty == Type::String => {}
            Some(f) => err(src.at(at_value("api.issue_token"), format!("api.issue_token names `{field}`, a {}: a token subject must be an integer or a string", idl.type_name(&f.ty)))),
            None => err(src.at(at_value("api.issue_token"), format!("api.issue_token names `{field}`, which is not a field of `{}`", idl.structs[resp].name))),
        }
    }
    let (Some(request), Some(response)) = (request, response) else {
        return Vec::new();
    };

    let mut routes = Vec::new();
    for (http, path) in declared {
        let quote = at_value(&annotation(http));
        if let Err((offset, why)) = check_path(path) {
            diags.push(src.in_literal(quote, offset, why));
            continue;
        }
        if let Some(bindings) = bind_fields(idl, request, http, path, (src, quote), diags) {
            routes.push(Route {
                method: http,
                path: path.to_string(),
                service: si,
                rpc: mi,
                request,
                response,
                auth,
                issue_token: issue_token.clone(),
                bindings,
            });
        }
    }
    if ok { routes } else { Vec::new() }
}

/// hz path syntax: absolute, `:name` parameters, `*name` only as the last segment.
fn check_path(path: &str) -> Result<(), (usize, String)> {
    if !path.starts_with('/') {
        return Err((0, format!("route path `{path}` must start with `/`")));
    }
    let mut offset = 1;
    let segments: Vec<&str> = path[1..].split('/').collect();
    let mut seen = Vec::new();
    for (i, seg) in segments.iter().enumerate() {
        let param = seg.strip_prefix(':').or_else(|| seg.strip_prefix('*'));
        if let Some(name) = param {
            let valid =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err((
                    offset,
                    format!("path parameter `{seg}` needs a name of letters, digits and `_`"),
                ));
            }
            if seg.starts_with('*') && i + 1 != segments.len() {
                return Err((
                    offset,
                    format!("catch-all `{seg}` must be the last segment"),
                ));
            }
            if seen.contains(&name) {
                return Err((offset, format!("path parameter `{name}` appears twice")));
            }
            seen.push(name);
        } else if seg.contains(['{', '}', ':', '*']) {
            return Err((
                offset,
                format!("segment `{seg}`: parameters are written `:name` (hz syntax)"),
            ));
        }
        offset += seg.len() + 1;
    }
    Ok(())
}

/// Where each field of `request` comes from on this route; `None` after reporting errors.
fn bind_fields(
    idl: &Idl,
    request: StructId,
    http: runtime::Method,
    path: &str,
    (route_src, quote): (&Source, usize),
    diags: &mut Diagnostics,
) -> Option<Vec<Binding>> {
    let st = &idl.structs[request];
    let src = idl.source(st.file);
    let before = diags.0.len();
    let mut bindings = Vec::new();
    for (fi, field) in st.fields.iter().enumerate() {
        let explicit: Vec<(runtime::Source, &str)> = [
            ("api.path", runtime::Source::Path),
            ("api.query", runtime::Source::Query),
            ("api.header", runtime::Source::Header),
            ("api.body", runtime::Source::Body),
        ]
        .iter()
        .filter_map(|(k, s)| field.annotations.get(k).map(|v| (*s, v)))
        .collect();
        for key in ["api.form", "api.cookie", "api.raw_body", "api.file_name"] {
            if field.annotations.get(key).is_some() {
                let at = src
                    .annotation_value(field.offset, key)
                    .unwrap_or(field.offset);
                diags.push(src.at(at, format!("{key} is not supported by the gateway; bind `{}` with api.body, api.query, api.header or api.path", field.name)));
            }
        }
        let (source, key) = match explicit.as_slice() {
            [] if http.has_body() => (runtime::Source::Body, ""),
            [] => (runtime::Source::Query, ""),
            [one] => *one,
            [_, second, ..] => {
                let at = src
                    .annotation_value(field.offset, &format!("api.{}", second.0.as_str()))
                    .unwrap_or(field.offset);
                diags.push(src.at(
                    at,
                    format!(
                        "`{}` has more than one binding; a field comes from one place",
                        field.name
                    ),
                ));
                continue;
            }
        };
        let key = if key.is_empty() {
            field.name.clone()
        } else {
            key.to_string()
        };
        let field_at = |source: runtime::Source| {
            src.annotation_value(field.offset, &format!("api.{}", source.as_str()))
                .unwrap_or(field.offset)
        };
        if source == runtime::Source::Body && !http.has_body() {
            diags.push(src.at(field_at(source), format!("`{}` is bound from the body, but {} requests have none; use api.query or api.path", field.name, http.as_str())));
            continue;
        }
        if let Some(why) = placement_error(idl, field, source) {
            diags.push(src.at(field_at(source), why));
            continue;
        }
        bindings.push(Binding {
            field: fi,
            source,
            key,
        });
    }

    let params = path_params(path);
    for param in &params {
        let bound = bindings
            .iter()
            .any(|b| b.source == runtime::Source::Path && b.key == *param);
        if !bound {
            let offset = path
                .find(&format!(":{param}"))
                .or_else(|| path.find(&format!("*{param}")))
                .unwrap_or(0);
            diags.push(route_src.in_literal(quote, offset, format!("path parameter `{param}` has no field: add `(api.path = \"{param}\")` to a field of `{}`", st.name)));
        }
    }
    for b in bindings
        .iter()
        .filter(|b| b.source == runtime::Source::Path)
    {
        if !params.contains(&b.key.as_str()) {
            let field = &st.fields[b.field];
            let at = src
                .annotation_value(field.offset, "api.path")
                .unwrap_or(field.offset);
            diags.push(src.at(
                at,
                format!(
                    "`{}` is bound to path parameter `{}`, but route `{path}` has no `:{}`",
                    field.name, b.key, b.key
                ),
            ));
        }
    }
    (diags.0.len() == before).then_some(bindings)
}

/// Why `field` cannot come from `source`, if it cannot: path and header carry one text value,
/// the query string also lists of them, the body anything.
fn placement_error(idl: &Idl, field: &Field, source: runtime::Source) -> Option<String> {
    let fits = match (source, &field.ty) {
        (runtime::Source::Body, _) => true,
        (runtime::Source::Query, Type::List(t) | Type::Set(t)) => t.is_text(),
        (_, t) => t.is_text(),
    };
    (!fits).then(|| {
        let what = match source {
            runtime::Source::Query => "a text value or a list of them",
            _ => "one text value",
        };
        let hint = if matches!(field.ty, Type::Typedef(..)) {
            " (only typedefs of bool, integers and string can come from text)"
        } else {
            ""
        };
        format!(
            "`{}` is a {}, which cannot be bound from the {}: it carries {what}{hint}",
            field.name,
            idl.type_name(&field.ty),
            source.as_str()
        )
    })
}

/// Two routes with the same method and path (parameter names do not matter to the router),
/// or a route on one of the gateway's own paths.
fn check_duplicates(idl: &Idl, routes: &[Route], diags: &mut Diagnostics) {
    let mut seen: HashMap<(runtime::Method, String), &Route> = HashMap::new();
    for r in routes {
        if runtime::GATEWAY_PATHS.contains(&r.path.as_str()) {
            diags.push(Diagnostic {
                message: format!(
                    "route {} {}: the gateway serves this path itself ({}); choose another",
                    r.method.as_str(),
                    r.path,
                    runtime::GATEWAY_PATHS.join(", ")
                ),
                ..locate_route(idl, r)
            });
            continue;
        }
        let shape: String = r
            .path
            .split('/')
            .map(|s| {
                if s.starts_with(':') {
                    ":"
                } else if s.starts_with('*') {
                    "*"
                } else {
                    s
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        if let Some(first) = seen.get(&(r.method, shape.clone())) {
            let here = locate_route(idl, r);
            let there = locate_route(idl, first);
            let first_name = format!(
                "{}.{}",
                idl.services[first.service].name,
                idl.services[first.service].methods[first.rpc].name
            );
            diags.push(Diagnostic {
                message: format!(
                    "route {} {} is declared twice: also by {first_name} at {}:{}:{}",
                    r.method.as_str(),
                    r.path,
                    there.path.display(),
                    there.line,
                    there.col
                ),
                ..here
            });
        } else {
            seen.insert((r.method, shape), r);
        }
    }
}

fn locate_route(idl: &Idl, r: &Route) -> Diagnostic {
    let service = &idl.services[r.service];
    let method = &service.methods[r.rpc];
    let src = idl.source(service.file);
    let at = src
        .annotation_value(method.offset, &annotation(r.method))
        .unwrap_or(method.offset);
    src.at(at, "")
}

/// Compiles every `api.vd` in the IDL: each must compile.
fn compile_rules(idl: &Idl, diags: &mut Diagnostics) -> HashMap<(StructId, usize), vd::Rule> {
    let mut rules = HashMap::new();
    for (si, st) in idl.structs.iter().enumerate() {
        let src = idl.source(st.file);
        let fields = vd_fields(&st.fields);
        for (fi, field) in st.fields.iter().enumerate() {
            let Some(expr) = field.annotations.get("api.vd") else {
                continue;
            };
            let quote = src
                .annotation_value(field.offset, "api.vd")
                .unwrap_or(field.offset);
            if matches!(field.ty, Type::Typedef(..)) {
                diags.push(src.at(quote, format!("api.vd on `{}`: validating typedef'd fields is not supported; use the underlying type", field.name)));
                continue;
            }
            match vd::compile(expr, &fields, fi) {
                Ok(rule) => {
                    rules.insert((StructId(si), fi), rule);
                }
                Err(e) => diags.push(src.in_literal(
                    quote,
                    e.offset,
                    format!("api.vd of `{}`: {}", field.name, e.message),
                )),
            }
        }
    }
    rules
}

/// What the validation compiler needs to know of each field.
fn vd_fields(fields: &[Field]) -> Vec<vd::VdField<'_>> {
    fields
        .iter()
        .map(|f| vd::VdField {
            name: &f.name,
            ty: vd_type(&f.ty),
            optional: !f.required,
        })
        .collect()
}

fn vd_type(ty: &Type) -> vd::VdType {
    use vd::VdType as V;
    match ty {
        Type::Bool => V::Bool,
        Type::I8 | Type::I16 | Type::I32 | Type::I64 => V::Int,
        Type::Double => V::Float,
        Type::String => V::String,
        Type::Binary => V::Binary,
        Type::List(t) => V::List(Box::new(vd_type(t))),
        Type::Set(t) => V::Set(Box::new(vd_type(t))),
        Type::Map(k, v) => V::Map(Box::new(vd_type(k)), Box::new(vd_type(v))),
        Type::Struct(_) | Type::Typedef(..) => V::Struct,
        Type::Enum(_) => V::Enum,
    }
}
