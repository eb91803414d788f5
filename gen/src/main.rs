//! `idlgen`: inspect, check and scaffold from the IDL. The build itself runs through
//! `idlgen::build` in build.rs; this CLI shows what that build sees.

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
};

use clap::{Parser, Subcommand};
use idlgen::{api::Api, diag::Diagnostics, generate};

#[derive(Parser)]
#[command(
    name = "idlgen",
    version,
    about = "Thrift IDL to Volo stubs, etcd glue, HTTP routes and OpenAPI"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the route table: `METHOD PATH -> Service.Method`, with auth and validation.
    Routes {
        /// Directory of the *.thrift files.
        #[arg(long, default_value = "idl")]
        idl: PathBuf,
    },
    /// Run the build's checks on the IDL; exit 1 with `file:line:col` errors.
    Check {
        #[arg(long, default_value = "idl")]
        idl: PathBuf,
    },
    /// Print the OpenAPI 3.1 document of the routes.
    Openapi {
        #[arg(long, default_value = "idl")]
        idl: PathBuf,
    },
    /// Print the generated Rust of one service's module, formatted, for reading.
    Expand {
        /// The IDL service name, e.g. UserService.
        service: String,
        #[arg(long, default_value = "idl")]
        idl: PathBuf,
    },
    /// Write everything the build writes (stubs, glue, OpenAPI) into a directory.
    Generate {
        #[arg(long, default_value = "idl")]
        idl: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Scaffold a service crate: config, a main that serves with etcd registration, and one
    /// handler per method answering ServiceErr "not implemented" until written.
    NewService {
        /// The IDL file that declares the service, e.g. idl/user.thrift.
        idl_file: PathBuf,
        /// The IDL service name, e.g. UserService.
        service: String,
        /// The crate directory to create, e.g. services/user.
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Routes { idl } => {
            let api = load(&idl)?;
            print!("{}", route_lines(&api));
        }
        Cmd::Check { idl } => {
            let api = load(&idl)?;
            let idl_ = &api.idl;
            println!(
                "ok: {} files, {} services, {} routes",
                idl_.files.len(),
                idl_.services.len(),
                api.routes.len()
            );
        }
        Cmd::Openapi { idl } => {
            let api = load(&idl)?;
            let doc = idlgen::openapi::document(&api, env!("CARGO_PKG_VERSION"));
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Cmd::Expand { service, idl } => print!("{}", expand(&idl, &service)?),
        Cmd::Generate { idl, out } => {
            std::fs::create_dir_all(&out)?;
            generate(&idl, &out, env!("CARGO_PKG_VERSION"))?;
        }
        Cmd::NewService {
            idl_file,
            service,
            out,
        } => {
            let written = idlgen::scaffold::new_service(&idl_file, &service, &out)?;
            for path in written {
                println!("created {}", path.display());
            }
        }
    }
    Ok(())
}

/// Loads and checks; diagnostics become the error (printed one per line, exit 1).
fn load(dir: &Path) -> anyhow::Result<Api> {
    Api::load_dir(dir).map_err(|d: Diagnostics| anyhow::anyhow!("{d}"))
}

fn route_lines(api: &Api) -> String {
    let rows: Vec<(String, String, String)> = api
        .routes
        .iter()
        .map(|r| {
            let target = format!("{}.{}", api.service_of(r).name, api.method_of(r).name);
            let mut notes = Vec::new();
            if r.auth {
                notes.push("auth".to_string());
            }
            if let Some(t) = &r.issue_token {
                notes.push(format!("issues token for {t}"));
            }
            let st = &api.idl.structs[r.request];
            for b in &r.bindings {
                let f = &st.fields[b.field];
                let rule = f
                    .annotations
                    .get("api.vd")
                    .map(|v| format!(" vd `{v}`"))
                    .unwrap_or_default();
                let key = if b.key == f.name {
                    String::new()
                } else {
                    format!(":{}", b.key)
                };
                notes.push(format!("{}<-{}{key}{rule}", f.name, b.source.as_str()));
            }
            (
                format!("{} {}", r.method.as_str(), r.path),
                target,
                notes.join(", "),
            )
        })
        .collect();
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(route, target, notes)| {
            format!("{route:w0$} -> {target:w1$}  {notes}\n").replace("  \n", "\n")
        })
        .collect()
}

/// Generates into a temporary directory (in a child process: volo-build prints build-script
/// lines on stdout) and prints the module that declares `service`.
fn expand(idl: &Path, service: &str) -> anyhow::Result<String> {
    let api = load(idl)?;
    let Some(svc) = api.idl.services.iter().find(|s| s.name == service) else {
        let known: Vec<&str> = api.idl.services.iter().map(|s| s.name.as_str()).collect();
        anyhow::bail!(
            "no service `{service}` in {}; services: {}",
            idl.display(),
            known.join(", ")
        );
    };
    let out = std::env::temp_dir().join(format!("idlgen-expand-{}", std::process::id()));
    std::fs::create_dir_all(&out)?;
    let status = Command::new(std::env::current_exe()?)
        .args(["generate", "--idl"])
        .arg(idl)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .status()?;
    let code = std::fs::read_to_string(out.join(generate::STUBS_FILE));
    let _ = std::fs::remove_dir_all(&out);
    anyhow::ensure!(status.success(), "code generation failed");
    let file = syn::parse_file(&code?)?;
    let namespace = &api.idl.files[svc.file].namespace;
    let items = find_module(&file.items, namespace).ok_or_else(|| {
        anyhow::anyhow!(
            "module {} not found in the generated code",
            namespace.join("::")
        )
    })?;
    let module = syn::File {
        shebang: None,
        attrs: Vec::new(),
        items: items.to_vec(),
    };
    Ok(format!(
        "// Generated for {service} from {}\n{}",
        api.idl.files[svc.file].source.path.display(),
        prettyplease::unparse(&module)
    ))
}

/// The items of the module at `path` below the generated file's top module (`volo_gen`).
fn find_module<'a>(items: &'a [syn::Item], path: &[String]) -> Option<&'a [syn::Item]> {
    let mut current = items;
    for (i, want) in std::iter::once("volo_gen")
        .chain(path.iter().map(String::as_str))
        .enumerate()
    {
        let found = current.iter().find_map(|item| match item {
            syn::Item::Mod(m)
                if m.ident == want || (i > 0 && m.ident == idlgen::codegen::snake_case(want)) =>
            {
                m.content.as_ref().map(|(_, items)| items.as_slice())
            }
            _ => None,
        })?;
        current = found;
    }
    Some(current)
}
