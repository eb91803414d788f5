//! `idlgen new-service` writes a crate that compiles against the generated code.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repo root")
}

/// A workspace in a temporary directory with the repo's `[workspace.*]` sections (paths made
/// absolute) and lock file, so the scaffold builds against the same dependencies.
fn temp_workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = repo();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("root Cargo.toml");
    let start = manifest
        .find("[workspace.package]")
        .expect("[workspace.package]");
    let end = manifest.find("\n[package]").expect("[package]");
    let sections =
        manifest[start..end].replace("path = \"", &format!("path = \"{}/", root.display()));
    let sections = sections.replace(
        &format!("{}/.\"", root.display()),
        &format!("{}\"", root.display()),
    );
    std::fs::write(
        dir.path().join("Cargo.toml"),
        format!("[workspace]\nmembers = [\"services/*\"]\nresolver = \"3\"\n\n{sections}"),
    )
    .expect("write manifest");
    std::fs::copy(root.join("Cargo.lock"), dir.path().join("Cargo.lock")).expect("copy lock file");
    dir
}

/// `idlgen new-service idl/user.thrift UserService --out services/user` in `ws`; its output.
fn new_user_service(ws: &tempfile::TempDir) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_idlgen"))
        .args(["new-service"])
        .arg(repo().join("idl/user.thrift"))
        .args(["UserService", "--out", "services/user"])
        .current_dir(ws.path())
        .output()
        .expect("idlgen runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn new_service_writes_a_crate_that_compiles() {
    let ws = temp_workspace();
    let out = new_user_service(&ws);
    let created = String::from_utf8_lossy(&out.stdout);
    for file in [
        "Cargo.toml",
        "src/main.rs",
        "src/lib.rs",
        "src/config.rs",
        "src/handler.rs",
    ] {
        assert!(
            created.contains(&format!("created services/user/{file}")),
            "{created}"
        );
    }
    let handler = std::fs::read_to_string(ws.path().join("services/user/src/handler.rs")).unwrap();
    for method in ["create_user", "login", "get_user"] {
        assert!(
            handler.contains(&format!("async fn {method}(")),
            "{handler}"
        );
    }
    assert!(handler.contains("\"not implemented\""));

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let check = Command::new(cargo)
        .args([
            "clippy",
            "--quiet",
            "--package",
            "user-service",
            "--",
            "-D",
            "warnings",
        ])
        .current_dir(ws.path())
        .env("CARGO_TARGET_DIR", repo().join("target"))
        .output()
        .expect("cargo runs");
    assert!(
        check.status.success(),
        "the scaffold does not compile warning-free:\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn new_service_refuses_an_unknown_service_and_an_existing_directory() {
    let ws = temp_workspace();
    let idl = repo().join("idl/user.thrift");
    let run = |service: &str, out: &str| {
        Command::new(env!("CARGO_BIN_EXE_idlgen"))
            .arg("new-service")
            .arg(&idl)
            .args([service, "--out", out])
            .current_dir(ws.path())
            .output()
            .expect("idlgen runs")
    };
    let unknown = run("NoSuch", "services/x");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no service `NoSuch`"));

    std::fs::create_dir_all(ws.path().join("services/taken")).unwrap();
    let taken = run("UserService", "services/taken");
    assert!(!taken.status.success());
    assert_eq!(
        String::from_utf8_lossy(&taken.stderr),
        "services/taken already exists; choose another --out\n"
    );
}

/// The scaffold's flags are the user service's own, declared alike (name, environment
/// variable, default, type): a new service runs as the one in this repository does.
#[test]
fn the_scaffold_declares_its_flags_as_the_user_service_does() {
    let ws = temp_workspace();
    new_user_service(&ws);
    let read = |path: PathBuf| std::fs::read_to_string(&path).expect("a config.rs");
    let scaffold = flags(&read(ws.path().join("services/user/src/config.rs")));
    let real = flags(&read(repo().join("services/user/src/config.rs")));
    assert!(scaffold.len() >= 6, "{scaffold:#?}");
    for flag in &scaffold {
        assert!(
            real.contains(flag),
            "the scaffold declares `{flag}`, which services/user/src/config.rs does not \
             declare that way: {real:#?}"
        );
    }
}

/// The fields of `Config`, each as its attributes and declaration on one line (doc comments
/// left out, whitespace collapsed).
fn flags(config_rs: &str) -> Vec<String> {
    let start = config_rs
        .find("pub struct Config")
        .expect("a Config struct");
    let mut flags = Vec::new();
    let mut current = Vec::new();
    for line in config_rs[start..].lines().skip(1).map(str::trim) {
        match line {
            "}" => break,
            l if l.is_empty() || l.starts_with("///") => {}
            l => {
                current.push(l);
                if l.starts_with("pub ") {
                    flags.push(current.join(" "));
                    current.clear();
                }
            }
        }
    }
    flags
}
