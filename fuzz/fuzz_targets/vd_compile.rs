//! The `api.vd` compiler and the IDL checks of `idlgen`: any text gives a compiled rule or a
//! diagnostic, never a panic, and a compiled rule is a Rust expression.
//!
//! The first byte picks the mode: even, the rest is a rule compiled on one of a struct's
//! fields (every type, required and optional); odd, the rest is a Thrift file checked as the
//! build checks it (`Api::check`) and, when it passes, turned into the OpenAPI document.
#![no_main]

use std::{path::PathBuf, sync::LazyLock};

use idlgen::{
    api::Api,
    idl::Idl,
    vd::{self, VdField, VdType},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if mode % 2 == 0 {
        rule(usize::from(mode / 2), text);
    } else {
        idl(text);
    }
});

/// One field of every type the compiler knows, each once required and once optional.
static FIELDS: LazyLock<Vec<(String, VdType, bool)>> = LazyLock::new(|| {
    let types = [
        ("b", VdType::Bool),
        ("i", VdType::Int),
        ("f", VdType::Float),
        ("s", VdType::String),
        ("bin", VdType::Binary),
        ("e", VdType::Enum),
        ("l", VdType::List(Box::new(VdType::Int))),
        ("ls", VdType::List(Box::new(VdType::String))),
        ("set", VdType::Set(Box::new(VdType::String))),
        (
            "m",
            VdType::Map(Box::new(VdType::String), Box::new(VdType::Int)),
        ),
        ("st", VdType::Struct),
    ];
    let mut fields = Vec::new();
    for (name, ty) in types {
        for optional in [false, true] {
            let name = if optional {
                format!("o_{name}")
            } else {
                name.to_string()
            };
            fields.push((name, ty.clone(), optional));
        }
    }
    fields
});

fn rule(current: usize, text: &str) {
    let fields: Vec<VdField<'_>> = FIELDS
        .iter()
        .map(|(name, ty, optional)| VdField {
            name,
            ty: ty.clone(),
            optional: *optional,
        })
        .collect();
    match vd::compile(text, &fields, current % fields.len()) {
        Ok(rule) => {
            // What the generated code embeds must be Rust: an expression, both ways.
            for code in [&rule.check, &rule.violated] {
                if let Err(e) = syn::parse_str::<syn::Expr>(code) {
                    panic!("rule {text:?} compiled to code that is not Rust ({e}): {code}");
                }
            }
        }
        Err(e) => {
            assert!(
                e.offset <= text.len(),
                "offset {} past the rule {text:?}",
                e.offset
            );
            let _ = e.to_string();
        }
    }
}

/// A directory of this process's own, with the files the seed IDLs include.
static DIR: LazyLock<PathBuf> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("idlgen-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    for (name, text) in [
        ("base.thrift", include_str!("../../idl/base.thrift")),
        (
            "common.thrift",
            include_str!("../../tests/codegen/idl/common.thrift"),
        ),
    ] {
        std::fs::write(dir.join(name), text).expect("write an included file");
    }
    dir
});

fn idl(text: &str) {
    // Includes are read from disk: keep them to the files above (a device would block).
    if text.contains("/dev")
        || text.contains("/proc")
        || text.contains("/sys")
        || text.contains("..")
    {
        return;
    }
    let path = DIR.join("api.thrift");
    std::fs::write(&path, text).expect("write the IDL");
    let checked = Idl::load(&[path]).and_then(Api::check);
    match checked {
        Ok(api) => {
            let doc = idlgen::openapi::document(&api, "0.0.0");
            serde_json::to_string(&doc).expect("the document serializes");
        }
        Err(diags) => {
            for d in diags.iter() {
                assert!(d.line >= 1 && d.col >= 1, "{d}");
            }
            let _ = diags.to_string();
        }
    }
}
