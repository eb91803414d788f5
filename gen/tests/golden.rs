//! Golden tests: the route table, the OpenAPI document and the Rust idlgen adds to pilota's
//! stubs, for the shop fixture (tests/codegen/idl, which tests/codegen also compiles and
//! tests). Regenerate with `UPDATE_GOLDEN=1 cargo test -p idlgen --test golden` and review the
//! diff: it is the change every user's generated code sees.

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

/// Only what idlgen adds (pilota's own output is pilota's to pin): per struct, the
/// `::idlgen_runtime` impls; per service, its module (registry glue, route table, endpoints);
/// and the crate file. Each item is headed by the module it sits in.
#[test]
fn generated_rust() {
    let out = tempfile::tempdir().expect("temp dir");
    idlgen(&[
        "generate",
        "--out",
        out.path().to_str().expect("UTF-8 temp path"),
    ]);
    let read = |name: &str| {
        let path = out.path().join(name);
        let text = std::fs::read_to_string(&path).expect("generated file");
        syn::parse_file(&text).unwrap_or_else(|e| panic!("{name} is not Rust: {e}"))
    };
    let mut items = Vec::new();
    collect_idlgen_items(read(idlgen::generate::STUBS_FILE).items, "", &mut items);
    let mut text = String::new();
    for (module, item) in items {
        text.push_str(&format!("// in {module}\n"));
        text.push_str(&unparse(vec![item]));
        text.push('\n');
    }
    text.push_str(&format!("// {}\n", idlgen::generate::CRATE_FILE));
    text.push_str(&unparse(read(idlgen::generate::CRATE_FILE).items));
    check_golden("shop.generated.rs", &text);
}

/// idlgen's items below `path`, depth first in file order: impls of an `::idlgen_runtime`
/// trait, and the modules that hold a service's `ROUTES`.
fn collect_idlgen_items(items: Vec<syn::Item>, path: &str, out: &mut Vec<(String, syn::Item)>) {
    for item in items {
        match item {
            syn::Item::Impl(ref imp)
                if imp.trait_.as_ref().is_some_and(|(_, t, _)| is_runtime(t)) =>
            {
                out.push((path.to_string(), item));
            }
            syn::Item::Mod(m)
                if m.content
                    .as_ref()
                    .is_some_and(|(_, inner)| inner.iter().any(is_route_table)) =>
            {
                out.push((path.to_string(), syn::Item::Mod(m)));
            }
            syn::Item::Mod(m) => {
                let path = if path.is_empty() {
                    m.ident.to_string()
                } else {
                    format!("{path}::{}", m.ident)
                };
                if let Some((_, inner)) = m.content {
                    collect_idlgen_items(inner, &path, out);
                }
            }
            _ => {}
        }
    }
}

fn is_runtime(trait_path: &syn::Path) -> bool {
    trait_path.leading_colon.is_some()
        && trait_path
            .segments
            .first()
            .is_some_and(|s| s.ident == "idlgen_runtime")
}

fn is_route_table(item: &syn::Item) -> bool {
    matches!(item, syn::Item::Static(s) if s.ident == "ROUTES")
}

fn unparse(items: Vec<syn::Item>) -> String {
    prettyplease::unparse(&syn::File {
        shebang: None,
        attrs: Vec::new(),
        items,
    })
}
