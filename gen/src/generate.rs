//! One run of the toolchain: check the IDL, let volo-build write the stubs with our plugin,
//! then write the crate-level file and the OpenAPI document beside them.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use crate::{api::Api, codegen, diag::Diagnostics, openapi};

/// The files one run writes into the output directory.
pub const STUBS_FILE: &str = "volo_gen.rs";
pub const CRATE_FILE: &str = "idlgen.rs";
pub const OPENAPI_FILE: &str = "openapi.json";

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("{0}")]
    Idl(Diagnostics),
    #[error("code generation failed: {0:#}")]
    Codegen(anyhow::Error),
    /// idlgen's checked model and pilota's disagree (a bug of idlgen's): the build fails
    /// rather than compile code generated around the gap.
    #[error("idlgen could not generate: {}", .0.join("; "))]
    Plugin(Vec<String>),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Generates everything for the IDL in `idl_dir` into `out_dir`.
pub fn generate(idl_dir: &Path, out_dir: &Path, version: &str) -> Result<(), GenerateError> {
    let api = Api::load_dir(idl_dir).map_err(GenerateError::Idl)?;
    let roots: Vec<PathBuf> = api
        .idl
        .roots
        .iter()
        .map(|&f| api.idl.files[f].source.path.clone())
        .collect();
    let api = Arc::new(api);
    let plugin = codegen::IdlgenPlugin::new(api.clone());
    let services = plugin.services.clone();
    let errors = plugin.errors.clone();

    let mut builder = volo_build::Builder::thrift()
        .ignore_unused(false)
        .out_dir(out_dir)
        .filename(STUBS_FILE.into())
        .plugin(pilota_build::plugin::SerdePlugin)
        .plugin(plugin);
    for path in &roots {
        builder = builder.add_service(path);
    }
    builder.write().map_err(GenerateError::Codegen)?;
    let errors = std::mem::take(&mut *errors.lock().unwrap_or_else(|e| e.into_inner()));
    if !errors.is_empty() {
        return Err(GenerateError::Plugin(errors));
    }

    let services = services.lock().map(|s| s.clone()).unwrap_or_default();
    write(out_dir.join(CRATE_FILE), codegen::crate_file(&services))?;
    let doc = openapi::document(&api, version);
    let json = serde_json::to_string_pretty(&doc).unwrap_or_default();
    write(out_dir.join(OPENAPI_FILE), json)
}

fn write(path: PathBuf, contents: String) -> Result<(), GenerateError> {
    std::fs::write(&path, contents).map_err(|source| GenerateError::Write { path, source })
}

/// Entry point for a build script: compiles every `*.thrift` in `idl_dir` into `$OUT_DIR`,
/// re-runs when anything in `idl_dir` changes, and fails the build with `file:line:col`
/// diagnostics when the IDL is wrong.
pub fn build(idl_dir: impl AsRef<Path>) {
    let out_dir = std::env::var_os("OUT_DIR").map(PathBuf::from);
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_else(|_| "0.0.0".into());
    for line in build_lines(idl_dir.as_ref(), out_dir.as_deref(), &version) {
        println!("{line}");
    }
}

/// What [`build`] tells cargo, one instruction a line.
pub fn build_lines(idl_dir: &Path, out_dir: Option<&Path>, version: &str) -> Vec<String> {
    // A directory makes cargo re-run on any change below it, files added included.
    let mut lines = vec![format!("cargo::rerun-if-changed={}", idl_dir.display())];
    let Some(out_dir) = out_dir else {
        lines.push(
            "cargo::error=idlgen::build must run from a build script (OUT_DIR is not set)".into(),
        );
        return lines;
    };
    match generate(idl_dir, out_dir, version) {
        Ok(()) => {}
        Err(GenerateError::Idl(diags)) => {
            lines.extend(diags.iter().map(|d| format!("cargo::error={}", d.brief())));
        }
        Err(e) => lines.push(format!("cargo::error={e}")),
    }
    lines
}
