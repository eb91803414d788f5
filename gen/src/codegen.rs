//! Rust emitted beside pilota's stubs, by a pilota plugin so that every name it uses (fields,
//! methods, types) is the one pilota chose.
//!
//! Per struct: `Validate` (the `api.vd` rules). Per route response: `Envelope`.
//! Per service, a module named after it in snake case (`user_service`) with the registry glue
//! (`serve`, `client`), the route table (`ROUTES`), one `Endpoint` per route and
//! `visit_routes`. Per crate (`idlgen.rs`): every route and a `visit_routes` over all services.

use std::{
    collections::{BTreeSet, HashMap},
    fmt::Write as _,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use idlgen_runtime as runtime;
use pilota_build::{
    Context, DefId, Plugin,
    db::RirDatabase,
    plugin::walk_item,
    rir::{self, Item},
    ty::TyKind,
};

use crate::{
    api::{self, Api, Route},
    idl::{FileId, ServiceId, StructId, StructKind, Type},
    vd,
};

/// What the crate-level file needs to know about each generated service module.
#[derive(Debug, Clone)]
pub struct ServiceModule {
    /// The service's index in the model, to list services in IDL order.
    pub index: ServiceId,
    /// Path from the crate root: `music::service::user::user_service`.
    pub path: String,
    /// Path of the generated client type: `music::service::user::UserServiceClient`.
    pub client: String,
    pub routes: usize,
}

#[derive(Clone)]
pub struct IdlgenPlugin {
    api: Arc<Api>,
    files: Arc<HashMap<PathBuf, FileId>>,
    /// Filled while pilota runs; read by [`crate_file`] afterwards.
    pub services: Arc<Mutex<Vec<ServiceModule>>>,
    /// What could not be generated; [`crate::generate::generate`] fails the build with them.
    pub errors: Arc<Mutex<Vec<String>>>,
}

impl IdlgenPlugin {
    pub fn new(api: Arc<Api>) -> Self {
        let files = api
            .idl
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| (canonical(&f.source.path), FileId(i)))
            .collect();
        Self {
            api,
            files: Arc::new(files),
            services: Arc::default(),
            errors: Arc::default(),
        }
    }

    fn fail(&self, error: String) {
        self.errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(error);
    }

    /// The model's id of the struct pilota calls `def_id`.
    fn struct_id(&self, cx: &Context, def_id: DefId, name: &str) -> Option<StructId> {
        let file = cx.node(def_id)?.file_id;
        let path = cx.file_paths().get(&file)?;
        let fid = *self.files.get(&canonical(path))?;
        self.api
            .idl
            .structs
            .iter()
            .position(|s| s.file == fid && s.name == name)
            .map(StructId)
    }
}

fn canonical(p: &std::path::Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}

impl Plugin for IdlgenPlugin {
    fn on_item(&mut self, cx: &Context, def_id: DefId, item: Arc<Item>) {
        match &*item {
            Item::Message(m) => {
                if let Some(sid) = self.struct_id(cx, def_id, &m.name.raw_str()) {
                    let rust_name = cx.rust_name(def_id).to_string();
                    let code = message_items(&self.api, sid, &rust_name, &field_names(cx, m));
                    if !code.is_empty() {
                        cx.with_adjust_mut(def_id, |adj| adj.add_nested_item(code.into()));
                    }
                }
            }
            Item::Service(s) => {
                let name = s.name.raw_str();
                let fid = cx
                    .node(def_id)
                    .and_then(|n| cx.file_paths().get(&n.file_id).cloned());
                let service = fid
                    .and_then(|p| self.files.get(&canonical(&p)).copied())
                    .and_then(|fid| {
                        self.api
                            .idl
                            .services
                            .iter()
                            .position(|x| x.file == fid && x.name == name.as_str())
                            .map(ServiceId)
                    });
                match service {
                    Some(si) => {
                        let code = self.service_module(cx, def_id, s, si);
                        cx.with_adjust_mut(def_id, |adj| adj.add_nested_item(code.into()));
                    }
                    None => self.fail(format!("service {name}: not in idlgen's model of the IDL")),
                }
            }
            _ => {}
        }
        walk_item(self, cx, def_id, item)
    }
}

/// Rust field names of a message, by Thrift field id.
fn field_names(cx: &Context, m: &rir::Message) -> HashMap<i32, String> {
    m.fields
        .iter()
        .map(|f| (f.id, cx.rust_name(f.did).to_string()))
        .collect()
}

/// `Validate` for every struct, and `Envelope` for route responses.
fn message_items(
    api: &Api,
    sid: StructId,
    rust_name: &str,
    names: &HashMap<i32, String>,
) -> String {
    let st = &api.idl.structs[sid];
    if st.kind == StructKind::Union {
        return String::new();
    }
    let rust = |f: &crate::idl::Field| names.get(&f.id).cloned().unwrap_or_else(|| f.name.clone());
    let rule = |i: usize| api.rules.get(&(sid, i));
    let mut checks = String::new();
    // The rules read the fields through bindings: bind those they read, by pilota's names.
    let reads: BTreeSet<usize> = (0..st.fields.len())
        .filter_map(rule)
        .flat_map(|r| r.reads.iter().copied())
        .collect();
    if !reads.is_empty() {
        let binds: Vec<String> = reads
            .iter()
            .map(|&i| format!("{}: {}", rust(&st.fields[i]), vd::field_binding(i)))
            .collect();
        let _ = writeln!(checks, "let Self {{ {}, .. }} = self;", binds.join(", "));
    }
    for (i, f) in st.fields.iter().enumerate() {
        if let (Some(rule), Some(expr)) = (rule(i), f.annotations.get("api.vd")) {
            let message = match &rule.message {
                Some(m) => format!("::std::option::Option::Some({m:?})"),
                None => "::std::option::Option::None".into(),
            };
            let _ = writeln!(
                checks,
                "if {violated} {{ return ::std::result::Result::Err(::idlgen_runtime::Invalid::new({name:?}, {expr:?}, {message})); }}",
                violated = rule.violated,
                name = f.name,
            );
        }
        if let Some(call) = nested_check(api, &f.ty, "v", &format!("{:?}", f.name), 0) {
            let place = format!("self.{}", rust(f));
            let _ = if f.required {
                writeln!(checks, "{{ let v = &{place}; {call} }}")
            } else {
                writeln!(
                    checks,
                    "if let ::std::option::Option::Some(v) = &{place} {{ {call} }}"
                )
            };
        }
    }
    let mut out = format!(
        "impl ::idlgen_runtime::Validate for {name} {{\n\
         fn validate(&self) -> ::std::result::Result<(), ::idlgen_runtime::Invalid> {{\n\
         {checks}::std::result::Result::Ok(())\n}}\n}}\n",
        name = rust_name,
    );
    if api.routes.iter().any(|r| r.response == sid) {
        out.push_str(&envelope(api, sid, rust_name, &rust));
    }
    out
}

/// An expression reading `text` as a value of `ty` (a scalar, an enum by number, or a typedef
/// of a scalar): a `Result<_, BindError>` naming `field` and the `Source::{variant}`.
fn text_value(ty: &Type, field: &str, variant: &str, text: &str) -> String {
    let bind = |rust: &str| {
        format!(
            "::idlgen_runtime::bind_text::<{rust}>({field:?}, ::idlgen_runtime::Source::{variant}, {text})"
        )
    };
    // A typedef's scalar must be named: the conversion after it hides it from inference.
    let scalar = |ty: &Type| match ty {
        Type::Bool => "bool",
        Type::I8 => "i8",
        Type::I16 => "i16",
        Type::I32 => "i32",
        Type::I64 => "i64",
        _ => "::pilota::FastStr",
    };
    match (ty, ty.typedef_scalar()) {
        (Type::Enum(_), _) => format!("{}.map(::std::convert::From::from)", bind("i32")),
        (_, Some(target)) => format!("{}.map(::std::convert::From::from)", bind(scalar(target))),
        _ => bind("_"),
    }
}

/// Code validating the structs inside `value` (a reference of type `ty`), through typedefs,
/// list and set elements and map values; errors name the place, e.g. `items[2].price` or
/// `by_sku["a1"].price`. `path` is an expression for the name of `value`; `depth` keeps the
/// loop variables of nested containers apart. `None` when `ty` holds no struct.
fn nested_check(api: &Api, ty: &Type, value: &str, path: &str, depth: usize) -> Option<String> {
    match ty {
        Type::Typedef(_, _, target) => nested_check(api, target, value, path, depth),
        Type::Struct(id) if api.idl.structs[*id].kind != StructKind::Union => Some(format!(
            "::idlgen_runtime::Validate::validate({value}).map_err(|e| e.nested({path}))?;"
        )),
        Type::List(inner) | Type::Set(inner) => {
            let (i, item) = (format!("i{depth}"), format!("item{depth}"));
            let item_path = format!("&::std::format!(\"{{}}[{{}}]\", {path}, {i})");
            let check = nested_check(api, inner, &item, &item_path, depth + 1)?;
            Some(format!(
                "for ({i}, {item}) in {value}.iter().enumerate() {{ {check} }}"
            ))
        }
        Type::Map(_, inner) => {
            let (key, item) = (format!("key{depth}"), format!("item{depth}"));
            let item_path = format!("&::std::format!(\"{{}}[{{:?}}]\", {path}, {key})");
            let check = nested_check(api, inner, &item, &item_path, depth + 1)?;
            Some(format!(
                "for ({key}, {item}) in {value}.iter() {{ {check} }}"
            ))
        }
        _ => None,
    }
}

/// `Envelope`: code and message from `BaseResp`, the other fields as `data`.
fn envelope(
    api: &Api,
    sid: StructId,
    rust_name: &str,
    rust: &dyn Fn(&crate::idl::Field) -> String,
) -> String {
    let st = &api.idl.structs[sid];
    let status = api.status_field(sid);
    let (code, message) = match status.map(|i| &st.fields[i]) {
        Some(f) if f.required => (
            format!("self.{}.status_code", rust(f)),
            format!("&self.{}.status_message", rust(f)),
        ),
        Some(f) => (
            format!("self.{}.as_ref().map_or(0, |b| b.status_code)", rust(f)),
            format!(
                "self.{}.as_ref().map_or(\"\", |b| &b.status_message)",
                rust(f)
            ),
        ),
        None => ("0".into(), "\"\"".into()),
    };
    let (mut params, mut fields, mut values) = (Vec::new(), String::new(), Vec::new());
    for (i, f) in st.fields.iter().enumerate() {
        if Some(i) == status {
            continue;
        }
        let t = format!("T{i}");
        if f.required {
            let _ = writeln!(fields, "#[serde(rename = {:?})] f{i}: &'a {t},", f.name);
            values.push(format!("f{i}: &self.{}", rust(f)));
        } else {
            let _ = writeln!(
                fields,
                "#[serde(rename = {:?}, skip_serializing_if = \"::std::option::Option::is_none\")] f{i}: ::std::option::Option<&'a {t}>,",
                f.name
            );
            values.push(format!("f{i}: self.{}.as_ref()", rust(f)));
        }
        params.push(t);
    }
    let generics = if params.is_empty() {
        "<'a>".to_string()
    } else {
        format!("<'a, {}>", params.join(", "))
    };
    let marker = if params.is_empty() {
        "#[serde(skip)] _data: ::std::marker::PhantomData<&'a ()>,\n"
    } else {
        ""
    };
    let marker_value = if params.is_empty() {
        "_data: ::std::marker::PhantomData"
    } else {
        ""
    };
    format!(
        "impl ::idlgen_runtime::Envelope for {name} {{\n\
         fn code(&self) -> i64 {{ {code} }}\n\
         fn message(&self) -> &str {{ {message} }}\n\
         fn data(&self) -> impl ::pilota::serde::Serialize + '_ {{\n\
         #[derive(::pilota::serde::Serialize)]\n\
         #[serde(crate = \"::pilota::serde\")]\n\
         struct Data{generics} {{\n{fields}{marker}}}\n\
         Data {{ {values}{marker_value} }}\n\
         }}\n}}\n",
        name = rust_name,
        values = values.join(", "),
    )
}

impl IdlgenPlugin {
    fn service_module(
        &self,
        cx: &Context,
        def_id: DefId,
        s: &rir::Service,
        si: ServiceId,
    ) -> String {
        let api = &*self.api;
        let service = &api.idl.services[si];
        let trait_name = cx.rust_name(def_id).to_string();
        let module = snake_case(&service.name);
        let routes: Vec<&Route> = api.routes.iter().filter(|r| r.service == si).collect();

        let mut out = String::new();
        let _ = writeln!(
            out,
            "/// Registry glue and HTTP routes of `{name}`, generated by idlgen from {file}.\n\
             pub mod {module} {{",
            name = service.name,
            file = api.idl.files[service.file].source.path.display(),
        );
        let _ = writeln!(
            out,
            "/// The name `{name}` registers under in etcd (`registry.name` in the IDL).\n\
             pub const REGISTRY_NAME: &str = {registry:?};",
            name = service.name,
            registry = api::registry_name(service),
        );
        out.push_str(&registry_glue(&trait_name));

        // The route table, then one endpoint per route.
        let mut table = String::new();
        let mut endpoints = String::new();
        let mut visits = String::new();
        for (ri, route) in routes.iter().enumerate() {
            let method = &service.methods[route.rpc];
            let target = match pilota_method(cx, s, &method.name) {
                Ok(t) => t,
                Err(why) => {
                    // The checked model and pilota's disagree: a bug of ours, never broken code.
                    self.fail(format!(
                        "route {} {} -> {}.{}: {why}",
                        route.method, route.path, service.name, method.name
                    ));
                    continue;
                }
            };
            let endpoint = endpoint_name(&method.name, route, routes.as_slice());
            table.push_str(&route_spec(api, route));
            endpoints.push_str(&endpoint_impl(
                api,
                route,
                ri,
                &EndpointNames {
                    endpoint: &endpoint,
                    client: &format!("super::{trait_name}Client"),
                    request: &format!("super::{}", cx.related_item_path(def_id, target.request)),
                    response: &format!("super::{}", cx.related_item_path(def_id, target.response)),
                    rpc: &target.rpc,
                    fields: &target.fields,
                    throws: target.throws,
                },
            ));
            let _ = writeln!(visits, "visitor.visit::<{endpoint}>(client);");
        }
        let _ = writeln!(
            out,
            "/// Every route of `{name}`, in IDL order.\n\
             pub static ROUTES: [::idlgen_runtime::RouteSpec; {n}] = [\n{table}];\n\
             {endpoints}\
             /// Hands every route of `{name}` to `visitor`, with the client to call it through.\n\
             #[allow(unused_variables)]\n\
             pub fn visit_routes<V: ::idlgen_runtime::RouteVisitor>(visitor: &mut V, client: &super::{trait_name}Client) {{\n{visits}}}\n}}",
            name = service.name,
            n = routes.len(),
        );

        let mod_path: Vec<String> = cx.item_path(def_id).iter().map(|s| s.to_string()).collect();
        let parent = mod_path[..mod_path.len() - 1].join("::");
        let join = |last: &str| {
            if parent.is_empty() {
                last.to_string()
            } else {
                format!("{parent}::{last}")
            }
        };
        if let Ok(mut services) = self.services.lock() {
            services.push(ServiceModule {
                index: si,
                path: join(&module),
                client: join(&format!("{trait_name}Client")),
                routes: routes.len(),
            });
        }
        out
    }
}

/// What pilota generated for a routed method.
struct PilotaMethod {
    /// The Rust name of the client's method.
    rpc: String,
    request: DefId,
    response: DefId,
    /// Rust names of the request's fields, by Thrift id.
    fields: HashMap<i32, String>,
    throws: bool,
}

/// The method `name` of `service` as pilota generated it; the API check made sure it takes
/// one struct and returns one, so an error here is a disagreement between the two models.
fn pilota_method(
    cx: &Context,
    service: &rir::Service,
    name: &str,
) -> Result<PilotaMethod, &'static str> {
    let method = service
        .methods
        .iter()
        .find(|m| m.name.raw_str().as_str() == name)
        .ok_or("pilota generated no such method")?;
    let request = match &method.args.first().map(|a| &a.ty.kind) {
        Some(TyKind::Path(p)) => p.did,
        _ => return Err("pilota's method does not take one struct"),
    };
    let TyKind::Path(response) = &method.ret.kind else {
        return Err("pilota's method does not return a struct");
    };
    let Some(Item::Message(message)) = cx.item(request).as_deref().cloned() else {
        return Err("pilota's request type is not a struct");
    };
    Ok(PilotaMethod {
        rpc: cx.rust_name(method.def_id).to_string(),
        request,
        response: response.did,
        fields: field_names(cx, &message),
        throws: method.exceptions.is_some(),
    })
}

/// `serve` and `client`: the calls that tie a service to etcd.
fn registry_glue(trait_name: &str) -> String {
    format!(
        r#"/// Serves `handler` on `listener`: registers the listener's address in etcd under a lease,
/// and on shutdown (SIGINT/SIGTERM, or `shutdown` fired) deregisters before connections drain.
pub async fn serve<S>(
    handler: S,
    listener: ::tokio::net::TcpListener,
    options: &::volo_etcd::ServeOptions,
    shutdown: ::volo_etcd::Shutdown,
) -> ::std::result::Result<(), ::volo_etcd::ServeError>
where
    S: super::{trait_name} + ::std::marker::Send + ::std::marker::Sync + 'static,
{{
    let (incoming, registration) = ::volo_etcd::announce(listener, options, shutdown)
        .await?
        .into_parts();
    super::{trait_name}Server::new(handler)
        // The caller's deadline, for handlers to check before expensive work.
        .layer_front(::idlgen_runtime::deadline::DeadlineLayer)
        // kitex_server_* metrics, once a metrics recorder is installed.
        .layer_front(::volo_etcd::metrics::ServerMetricsLayer::new(options.service_name.clone()))
        // Each call's span (method, request id, trace id), continuing the caller's trace.
        .layer_front(::volo_etcd::telemetry::ServerTraceLayer::new(options.service_name.clone()))
        .register_shutdown_hook(move || ::std::boxed::Box::pin(registration.deregister()))
        .run(incoming)
        .await
        .map_err(::volo_etcd::ServeError::Serve)
}}

/// Binds `listen` and serves until SIGINT/SIGTERM: `serve` for a `main`.
pub async fn bind_and_serve<S>(
    handler: S,
    listen: ::std::net::SocketAddr,
    options: &::volo_etcd::ServeOptions,
) -> ::std::result::Result<(), ::volo_etcd::ServeError>
where
    S: super::{trait_name} + ::std::marker::Send + ::std::marker::Sync + 'static,
{{
    let listener = ::tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ::volo_etcd::ServeError::Bind {{ addr: listen, source }})?;
    serve(handler, listener, options, ::volo_etcd::Shutdown::never()).await
}}

/// A client that finds instances through etcd and follows them live, with the options'
/// timeouts, retries (transport errors; timed-out attempts under a retry budget), per-instance
/// circuit breaker and latency-aware balancing (`volo_etcd::configure_client`). Call inside a
/// Tokio runtime.
pub fn client(options: &::volo_etcd::ClientOptions) -> super::{trait_name}Client {{
    let name = options.service_name.clone().unwrap_or_else(|| REGISTRY_NAME.to_string());
    ::volo_etcd::configure_client(super::{trait_name}ClientBuilder::new(name), options).build()
}}
"#
    )
}

fn route_spec(api: &Api, route: &Route) -> String {
    let service = api.service_of(route);
    let method = api.method_of(route);
    let st = &api.idl.structs[route.request];
    let mut fields = String::new();
    for b in &route.bindings {
        let f = &st.fields[b.field];
        let rule = match f.annotations.get("api.vd") {
            Some(r) => format!("::std::option::Option::Some({r:?})"),
            None => "::std::option::Option::None".into(),
        };
        let _ = writeln!(
            fields,
            "::idlgen_runtime::FieldSpec {{ name: {:?}, source: ::idlgen_runtime::Source::{:?}, key: {:?}, required: {}, rule: {rule} }},",
            f.name, b.source, b.key, f.required,
        );
    }
    let issue = match &route.issue_token {
        Some(t) => format!("::std::option::Option::Some({t:?})"),
        None => "::std::option::Option::None".into(),
    };
    format!(
        "::idlgen_runtime::RouteSpec {{ method: ::idlgen_runtime::Method::{:?}, path: {:?}, router_path: {:?}, service: {:?}, rpc: {:?}, auth: {}, issue_token: {issue}, fields: &[\n{fields}] }},\n",
        route.method,
        route.path,
        route.router_path(),
        service.name,
        method.name,
        route.auth,
    )
}

/// The endpoint type's name: the method's, plus the HTTP method when it has several routes.
fn endpoint_name(method_name: &str, route: &Route, routes: &[&Route]) -> String {
    let base = snake_to_camel(&snake_case(method_name));
    if routes.iter().filter(|r| r.rpc == route.rpc).count() > 1 {
        let m = route.method.as_str();
        format!("{base}{}{}", &m[..1], m[1..].to_ascii_lowercase())
    } else {
        base
    }
}

struct EndpointNames<'a> {
    endpoint: &'a str,
    client: &'a str,
    request: &'a str,
    response: &'a str,
    rpc: &'a str,
    fields: &'a HashMap<i32, String>,
    throws: bool,
}

/// One `Endpoint`: binding every request field from its source, and the call.
fn endpoint_impl(api: &Api, route: &Route, index: usize, n: &EndpointNames<'_>) -> String {
    let st = &api.idl.structs[route.request];
    let mut body_fields = String::new();
    let mut body_params = Vec::new();
    let mut values = Vec::new();
    let mut needs_query = false;
    for b in &route.bindings {
        let f = &st.fields[b.field];
        let rust = n
            .fields
            .get(&f.id)
            .cloned()
            .unwrap_or_else(|| f.name.clone());
        let i = b.field;
        let value = match b.source {
            runtime::Source::Body => {
                let default = if f.required { "" } else { "default, " };
                let _ = writeln!(
                    body_fields,
                    "#[serde({default}rename = {:?})] f{i}: T{i},",
                    b.key
                );
                body_params.push(format!("T{i}"));
                format!("body.f{i}")
            }
            source => {
                // The `Debug` of a unit variant is its name: `Path`, `Header`, `Query`.
                let variant = format!("{source:?}");
                let (lookup, list) = match source {
                    runtime::Source::Path => (format!("parts.path_param({:?})", b.key), false),
                    runtime::Source::Header => (format!("parts.header({:?})", b.key), false),
                    _ => {
                        needs_query = true;
                        (
                            format!("query.get({:?})", b.key),
                            matches!(f.ty, Type::List(_) | Type::Set(_)),
                        )
                    }
                };
                let convert =
                    |text: &str| format!("{}?", text_value(&f.ty, &f.name, &variant, text));
                if list {
                    let (Type::List(element) | Type::Set(element)) = &f.ty else {
                        unreachable!("a list binding has a list type")
                    };
                    let all = format!(
                        "query.all({key:?}).map(|t| {element}).collect::<::std::result::Result<_, _>>()?",
                        key = b.key,
                        element = text_value(element, &f.name, "Query", "t"),
                    );
                    if f.required {
                        all
                    } else {
                        format!("::std::option::Option::Some({all})")
                    }
                } else if f.required {
                    let missing = format!(
                        "::idlgen_runtime::BindError::missing({:?}, ::idlgen_runtime::Source::{variant}, {:?})",
                        f.name, b.key
                    );
                    let text = format!("{lookup}.ok_or_else(|| {missing})?");
                    convert(&text)
                } else {
                    format!(
                        "match {lookup} {{ ::std::option::Option::Some(t) => ::std::option::Option::Some({}), ::std::option::Option::None => ::std::option::Option::None }}",
                        convert("t")
                    )
                }
            }
        };
        values.push(format!("{rust}: {value}"));
    }
    let mut bind = String::new();
    if !body_params.is_empty() {
        let params = body_params.join(", ");
        let _ = writeln!(
            bind,
            "#[derive(::pilota::serde::Deserialize)]\n#[serde(crate = \"::pilota::serde\")]\nstruct Body<{params}> {{\n{body_fields}}}\n\
             let body: Body<{holes}> = ::idlgen_runtime::decode_body(parts.body())?;",
            holes = body_params
                .iter()
                .map(|_| "_")
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    if needs_query {
        bind.push_str("let query = ::idlgen_runtime::Query::parse(parts.query());\n");
    }
    let call = if n.throws {
        format!(
            "match client.{rpc}(request).await {{\n\
             ::std::result::Result::Ok(::volo_thrift::MaybeException::Ok(r)) => ::std::result::Result::Ok(r),\n\
             ::std::result::Result::Ok(::volo_thrift::MaybeException::Exception(e)) => ::std::result::Result::Err(::idlgen_runtime::CallError::Exception(::std::format!(\"{{e:?}}\"))),\n\
             ::std::result::Result::Err(e) => ::std::result::Result::Err(::idlgen_runtime::CallError::Client(e)),\n}}",
            rpc = n.rpc
        )
    } else {
        format!(
            "client.{}(request).await.map_err(::idlgen_runtime::CallError::Client)",
            n.rpc
        )
    };
    format!(
        "/// `{method} {path}` → `{service}.{rpc}`.\n\
         pub struct {endpoint};\n\
         impl ::idlgen_runtime::Endpoint for {endpoint} {{\n\
         type Client = {client};\n\
         type Request = {request};\n\
         type Response = {response};\n\
         const ROUTE: &'static ::idlgen_runtime::RouteSpec = &ROUTES[{index}];\n\
         fn bind<P: ::idlgen_runtime::RequestParts + ?Sized>(parts: &P) -> ::std::result::Result<Self::Request, ::idlgen_runtime::BindError> {{\n\
         {bind}::std::result::Result::Ok({request} {{ {values} }})\n}}\n\
         fn call(client: &Self::Client, request: Self::Request) -> impl ::std::future::Future<Output = ::std::result::Result<Self::Response, ::idlgen_runtime::CallError>> + ::std::marker::Send {{\n\
         async move {{ {call} }}\n}}\n}}\n",
        method = route.method.as_str(),
        path = route.path,
        service = api.service_of(route).name,
        rpc = api.method_of(route).name,
        endpoint = n.endpoint,
        client = n.client,
        request = n.request,
        response = n.response,
        values = values.join(", "),
    )
}

/// The crate-level file: every route, and one `visit_routes` over all services.
pub fn crate_file(services: &[ServiceModule]) -> String {
    let mut services = services.to_vec();
    services.sort_by_key(|s| s.index);
    let mut routes = String::new();
    let mut visits = String::new();
    for s in &services {
        for i in 0..s.routes {
            let _ = writeln!(routes, "&{}::ROUTES[{i}],", s.path);
        }
        if s.routes > 0 {
            let _ = writeln!(
                visits,
                "{path}::visit_routes(visitor, &{path}::client(options));",
                path = s.path
            );
        }
    }
    format!(
        "/// Every HTTP route declared in the IDL, in IDL order.\n\
         pub static ROUTES: &[&::idlgen_runtime::RouteSpec] = &[\n{routes}];\n\n\
         /// Builds a client per routed service (resolved through etcd) and hands every route to\n\
         /// `visitor`: the gateway mounts the whole API with this one call.\n\
         #[allow(unused_variables)]\n\
         pub fn visit_routes<V: ::idlgen_runtime::RouteVisitor>(visitor: &mut V, options: &::volo_etcd::ClientOptions) {{\n{visits}}}\n\n\
         /// The OpenAPI 3.1 document of every route.\n\
         pub const OPENAPI_JSON: &str = include_str!(concat!(env!(\"OUT_DIR\"), \"/openapi.json\"));\n"
    )
}

/// `UserService` → `user_service`.
pub fn snake_case(name: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = name.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev_lower =
                i > 0 && (chars[i - 1].is_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if i > 0 && (prev_lower || (next_lower && chars[i - 1].is_uppercase())) {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn snake_to_camel(s: &str) -> String {
    s.split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map_or(String::new(), |f| f.to_uppercase().chain(c).collect())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_handles_acronyms() {
        assert_eq!(snake_case("UserService"), "user_service");
        assert_eq!(snake_case("HTTPGateway"), "http_gateway");
        assert_eq!(snake_case("GetUserV2"), "get_user_v2");
        assert_eq!(snake_case("simple"), "simple");
    }
}
