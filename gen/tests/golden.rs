//! Golden tests: the route table and the OpenAPI document of the shop fixture
//! (tests/codegen/idl, which tests/codegen also compiles). Regenerate with
//! `UPDATE_GOLDEN=1 cargo test -p idlgen --test golden` and review the diff.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Runs the CLI the way a user does, from the fixture's crate directory.
fn idlgen(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_idlgen"))
        .args(args)
        .current_dir(root().join("../tests/codegen"))
        .output()
        .expect("idlgen runs");
    assert!(
        out.status.success(),
        "idlgen {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn check_golden(name: &str, actual: &str) {
    let path = root().join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (create it with UPDATE_GOLDEN=1)", path.display()));
    assert!(
        expected == actual,
        "{} differs from the output; if the change is intended, rerun with UPDATE_GOLDEN=1 and review the diff.\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

#[test]
fn route_table() {
    check_golden("shop.routes.txt", &idlgen(&["routes"]));
}

#[test]
fn openapi_document() {
    let doc = idlgen(&["openapi"]);
    let parsed: serde_json::Value = serde_json::from_str(&doc).expect("the document is JSON");
    assert_eq!(parsed["openapi"], "3.1.0");
    check_golden("shop.openapi.json", &doc);
}
