//! `idlgen new-service`: a service crate that compiles and serves at once, registered in etcd,
//! with one handler per IDL method answering ServiceErr "not implemented" until written.
//!
//! The crate lands inside the workspace (whose `members` includes `services/*`) and depends on
//! the root `rpc` crate, which re-exports everything the scaffold uses.

use std::path::{Path, PathBuf};

use crate::{
    api::{self, Api},
    codegen::snake_case,
    idl::{FileId, Idl, Method, Service, Type},
};

#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("{0}")]
    Idl(crate::diag::Diagnostics),
    #[error("no service `{service}` in {file}; it declares: {known}")]
    NoService {
        service: String,
        file: String,
        known: String,
    },
    #[error("{0} already exists; choose another --out")]
    Exists(PathBuf),
    #[error("{0} is not inside a cargo workspace (no Cargo.toml with [workspace] above it)")]
    NoWorkspace(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Writes the crate at `out`; returns the files written.
pub fn new_service(
    idl_file: &Path,
    service: &str,
    out: &Path,
) -> Result<Vec<PathBuf>, ScaffoldError> {
    let api = Api::check(Idl::load(&[idl_file.to_path_buf()]).map_err(ScaffoldError::Idl)?)
        .map_err(ScaffoldError::Idl)?;
    let idl = &api.idl;
    let Some(svc) = idl
        .services
        .iter()
        .find(|s| s.name == service && idl.roots.contains(&s.file))
    else {
        return Err(ScaffoldError::NoService {
            service: service.into(),
            file: idl_file.display().to_string(),
            known: idl
                .services
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    if out.exists() {
        return Err(ScaffoldError::Exists(out.to_path_buf()));
    }
    let absolute = std::env::current_dir()
        .map(|d| d.join(out))
        .unwrap_or_else(|_| out.to_path_buf());
    if !absolute.ancestors().skip(1).any(is_workspace_root) {
        return Err(ScaffoldError::NoWorkspace(out.to_path_buf()));
    }

    let dir_name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "service".into());
    let package = if dir_name.ends_with("service") {
        dir_name.clone()
    } else {
        format!("{dir_name}-service")
    };
    let files = [
        ("Cargo.toml", cargo_toml(&package, svc)),
        ("src/main.rs", main_rs(&package, idl, svc)),
        ("src/lib.rs", lib_rs(svc)),
        ("src/config.rs", config_rs(idl, svc)),
        ("src/handler.rs", handler_rs(idl, svc)),
    ];
    let mut written = Vec::new();
    for (name, contents) in files {
        let path = out.join(name);
        let write = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, contents));
        write.map_err(|source| ScaffoldError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    format_rust(&written);
    Ok(written)
}

/// Lays the Rust files out with the toolchain's rustfmt; unformatted (but correct) without it.
fn format_rust(files: &[PathBuf]) {
    let rust: Vec<&PathBuf> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    let _ = std::process::Command::new("rustfmt")
        .args(["--edition", "2024"])
        .args(rust)
        .status();
}

fn is_workspace_root(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml")).is_ok_and(|t| t.contains("[workspace]"))
}

/// `rpc::music::service::user`: where pilota put the items of `file`.
fn module_path(idl: &Idl, file: FileId) -> String {
    let segments: Vec<String> = idl.files[file]
        .namespace
        .iter()
        .map(|s| snake_case(s))
        .collect();
    format!("rpc::{}", segments.join("::"))
}

fn cargo_toml(package: &str, svc: &Service) -> String {
    format!(
        r#"[package]
name = "{package}"
description = "{service}, served over Thrift and registered in etcd."
version.workspace = true
edition.workspace = true
license.workspace = true
publish.workspace = true

[dependencies]
rpc.workspace = true
# Only to turn on its `cli` feature: `rpc::volo_etcd::EtcdArgs`, the etcd flags.
volo-etcd = {{ workspace = true, features = ["cli"] }}
tokio.workspace = true
clap.workspace = true
anyhow.workspace = true
humantime.workspace = true
tracing.workspace = true

[lints]
workspace = true
"#,
        service = svc.name
    )
}

fn main_rs(package: &str, idl: &Idl, svc: &Service) -> String {
    let krate = package.replace('-', "_");
    format!(
        r#"//! Serves {service} on `--listen`, registered in etcd until SIGINT/SIGTERM.

use anyhow::Context as _;
use clap::Parser as _;
use {krate}::{{Config, Handler}};

#[tokio::main]
async fn main() -> anyhow::Result<()> {{
    let config = Config::parse();
    // Kept until the end: dropping it sends the spans still queued.
    let _telemetry = rpc::volo_etcd::telemetry::init(&config.telemetry.options(&config.service_name))
        .context("cannot set up logging")?;
    if let Some(addr) = config.metrics_listen {{
        rpc::volo_etcd::metrics::spawn_listener(addr)
            .await
            .with_context(|| format!("cannot serve metrics on {{addr}}"))?;
    }}
    {module}::{glue}::bind_and_serve(Handler, config.listen, &config.serve_options())
        .await
        .context("{service} stopped with an error")
}}
"#,
        service = svc.name,
        module = module_path(idl, svc.file),
        glue = snake_case(&svc.name),
    )
}

fn lib_rs(svc: &Service) -> String {
    format!(
        r#"//! {service}: the handlers, and the configuration `main` reads.
//!
//! # Layout
//! - `config`: flags and environment variables, with defaults.
//! - `handler`: one method per IDL method.

mod config;
mod handler;

pub use config::Config;
pub use handler::Handler;
"#,
        service = svc.name
    )
}

fn config_rs(idl: &Idl, svc: &Service) -> String {
    format!(
        r#"//! Flags, each with an environment variable.

use std::{{net::SocketAddr, time::Duration}};

use rpc::volo_etcd::{{EtcdArgs, RegisterOptions, ServeOptions, TelemetryArgs}};

#[derive(Debug, Clone, clap::Parser)]
#[command(about = "Serves {service} over Thrift, registered in etcd")]
pub struct Config {{
    /// Address to listen on.
    #[arg(long, env = "LISTEN", default_value = "127.0.0.1:8888")]
    pub listen: SocketAddr,
    /// IP to register instead of the listen address (needed when listening on 0.0.0.0).
    #[arg(long, env = "ADVERTISE")]
    pub advertise: Option<std::net::IpAddr>,
    /// Where etcd is and how to reach it: --etcd-endpoints, --etcd-prefix,
    /// --etcd-dial-timeout, --etcd-username/--etcd-password, --etcd-ca/--etcd-cert/--etcd-key.
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// Name to register under.
    #[arg(long, env = "SERVICE_NAME", default_value = {module}::{glue}::REGISTRY_NAME)]
    pub service_name: String,
    /// Lease TTL of the registration: how long a crashed instance stays listed.
    #[arg(long, env = "LEASE_TTL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub lease_ttl: Duration,
    /// On SIGINT/SIGTERM, how long to keep serving after deregistering, so that callers which
    /// poll etcd stop choosing this instance first: 6s in a fleet with Kitex callers (their
    /// resolver refreshes every 5 s). Callers built on volo-etcd watch and need none.
    #[arg(long, env = "DEREGISTER_LINGER", default_value = "0s", value_parser = humantime::parse_duration)]
    pub deregister_linger: Duration,
    /// How it logs and traces: --log-format (text or json), --otlp-endpoint.
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    /// Serve Prometheus metrics (`GET /metrics`: kitex_server_*, the registry's health) on
    /// this address; off when unset.
    #[arg(long, env = "METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}}

impl Config {{
    pub fn serve_options(&self) -> ServeOptions {{
        ServeOptions {{
            service_name: self.service_name.clone(),
            advertise: self.advertise,
            etcd: self.etcd.options(),
            register: RegisterOptions {{
                ttl: self.lease_ttl,
                linger: self.deregister_linger,
                ..RegisterOptions::default()
            }},
        }}
    }}
}}
"#,
        service = svc.name,
        module = module_path(idl, svc.file),
        glue = snake_case(&svc.name),
    )
}

fn handler_rs(idl: &Idl, svc: &Service) -> String {
    let module = module_path(idl, svc.file);
    let mut methods = String::new();
    for m in &svc.methods {
        methods.push_str(&handler_method(idl, svc, m));
    }
    let error_code = idl
        .enums
        .iter()
        .find(|e| e.name == "ErrCode" && e.variants.iter().any(|(n, _)| n == "ServiceErr"))
        .map(|e| {
            format!(
                "{}::ErrCode::SERVICE_ERR.inner() as i64",
                module_path(idl, e.file)
            )
        })
        .unwrap_or_else(|| "10001".into());
    let status = idl.structs.iter().find(|s| s.name == "BaseResp");
    let not_implemented = match status {
        Some(st) => {
            // Fill the fields this IDL's BaseResp has; the rest take their defaults.
            let has = |name: &str| st.fields.iter().any(|f| f.name == name);
            let mut fields = vec![format!("status_code: {error_code}")];
            if has("status_message") {
                fields.push("status_message: \"not implemented\".into()".into());
            }
            if has("service_time") {
                fields.push(
                    "service_time: i64::try_from(rpc::runtime::unix_now().as_millis()).unwrap_or(i64::MAX)"
                        .into(),
                );
            }
            if fields.len() < st.fields.len() {
                fields.push("..Default::default()".into());
            }
            format!(
                "\n/// The status every unwritten method answers.\nfn not_implemented() -> {path}::BaseResp {{\n    {path}::BaseResp {{ {fields} }}\n}}\n",
                path = module_path(idl, st.file),
                fields = fields.join(", "),
            )
        }
        None => String::new(),
    };
    format!(
        r#"//! {service}'s methods. Each answers ServiceErr "not implemented" until you write it.

use rpc::volo_thrift::ServerError;

#[derive(Debug, Clone, Default)]
pub struct Handler;

impl {module}::{service} for Handler {{
{methods}}}
{not_implemented}"#,
        service = svc.name,
    )
}

fn handler_method(idl: &Idl, svc: &Service, m: &Method) -> String {
    let args: String = m
        .args
        .iter()
        .map(|a| format!(", _{}: {}", snake_case(&a.name), rust_type(idl, &a.ty)))
        .collect();
    let response = m.result.as_ref().map(|t| rust_type(idl, t));
    let body = match &m.result {
        Some(Type::Struct(id)) => {
            let st = &idl.structs[*id];
            match api::status_field(idl, *id).map(|i| &st.fields[i]) {
                Some(f) if f.required => format!(
                    "{} {{ {}: not_implemented(), ..Default::default() }}",
                    rust_type(idl, m.result.as_ref().unwrap_or(&Type::Bool)),
                    snake_case(&f.name)
                ),
                Some(f) => format!(
                    "{} {{ {}: Some(not_implemented()), ..Default::default() }}",
                    rust_type(idl, m.result.as_ref().unwrap_or(&Type::Bool)),
                    snake_case(&f.name)
                ),
                None => "Default::default()".into(),
            }
        }
        Some(_) => "Default::default()".into(),
        None => "()".into(),
    };
    let (ret, value) = if m.throws.is_empty() {
        (response.clone().unwrap_or_else(|| "()".into()), body)
    } else {
        let exception = format!(
            "{}::{}{}Exception",
            module_path(idl, svc.file),
            svc.name,
            m.name
        );
        (
            format!(
                "rpc::volo_thrift::MaybeException<{}, {exception}>",
                response.clone().unwrap_or_else(|| "()".into())
            ),
            format!("rpc::volo_thrift::MaybeException::Ok({body})"),
        )
    };
    let doc = if m.doc.is_empty() {
        String::new()
    } else {
        format!("    /// {}\n", m.doc)
    };
    format!(
        "{doc}    async fn {name}(&self{args}) -> Result<{ret}, ServerError> {{\n        Ok({value})\n    }}\n\n",
        name = snake_case(&m.name),
    )
}

/// The Rust type pilota generates for `ty`, as seen from a service crate.
fn rust_type(idl: &Idl, ty: &Type) -> String {
    match ty {
        Type::Bool => "bool".into(),
        Type::I8 => "i8".into(),
        Type::I16 => "i16".into(),
        Type::I32 => "i32".into(),
        Type::I64 => "i64".into(),
        Type::Double => "f64".into(),
        Type::String => "rpc::pilota::FastStr".into(),
        Type::Binary => "rpc::pilota::Bytes".into(),
        Type::List(t) => format!("Vec<{}>", rust_type(idl, t)),
        Type::Set(t) => format!("rpc::pilota::AHashSet<{}>", rust_type(idl, t)),
        Type::Map(k, v) => format!(
            "rpc::pilota::AHashMap<{}, {}>",
            rust_type(idl, k),
            rust_type(idl, v)
        ),
        Type::Struct(id) => format!(
            "{}::{}",
            module_path(idl, idl.structs[*id].file),
            idl.structs[*id].name
        ),
        Type::Enum(id) => format!(
            "{}::{}",
            module_path(idl, idl.enums[*id].file),
            idl.enums[*id].name
        ),
        Type::Typedef(name, file, _) => format!("{}::{name}", module_path(idl, *file)),
    }
}
