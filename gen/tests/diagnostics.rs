//! Each kind of bad IDL fails with `file:line:col` and a message that says what is wrong.
//! The build runs these same checks (`idlgen::build` calls `Api::load_dir`).

use std::path::Path;

use idlgen::api::Api;

/// The diagnostics of fixture `bad/<name>`, as `line:col: message`.
fn errors(name: &str) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bad")
        .join(name);
    let diags = Api::load_dir(&dir).expect_err("the fixture is bad IDL");
    diags
        .iter()
        .map(|d| {
            assert_eq!(d.path, dir.join("api.thrift"));
            format!("{}:{}: {}", d.line, d.col, d.message)
        })
        .collect()
}

#[test]
fn syntax_error() {
    assert_eq!(
        errors("syntax"),
        ["6:1: syntax error: unexpected '}', expected '(' or identifier"]
    );
}

#[test]
fn unknown_type() {
    assert_eq!(errors("unknown_type"), ["5:17: unknown type `Adress`"]);
}

#[test]
fn unknown_include() {
    assert_eq!(
        errors("unknown_include"),
        [
            "4:17: unknown type `base.BaseResp` (no include named `base`: add `include \"base.thrift\"`)"
        ]
    );
}

#[test]
fn two_routes_with_the_same_method_and_path() {
    let errors = errors("duplicate_route");
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("10:39: route GET /items/:id is declared twice: also by A.Get at "),
        "{errors:?}"
    );
    assert!(errors[0].ends_with("api.thrift:7:37"), "{errors:?}");
}

#[test]
fn a_route_on_a_path_of_the_gateway() {
    assert_eq!(
        errors("gateway_path"),
        [
            "7:39: route GET /metrics: the gateway serves this path itself (/healthz, /openapi.json, /metrics, /docs, /docs/swagger-ui.css, /docs/swagger-ui-bundle.js, /docs/docs.js); choose another"
        ]
    );
}

#[test]
fn path_parameter_with_no_field() {
    assert_eq!(
        errors("path_param_without_field"),
        [
            "7:45: path parameter `item_id` has no field: add `(api.path = \"item_id\")` to a field of `Req`"
        ]
    );
}

#[test]
fn binding_a_type_its_place_cannot_carry() {
    assert_eq!(
        errors("binding_type"),
        [
            "6:45: `filter` is a Filter, which cannot be bound from the header: it carries one text value"
        ]
    );
}

#[test]
fn vd_that_does_not_parse() {
    // The column points into the expression, just past `len($) > 0 &&`.
    assert_eq!(
        errors("vd_parse"),
        ["4:53: api.vd of `name`: expected a value, found the end of the rule"]
    );
}

#[test]
fn vd_that_does_not_type_check() {
    assert_eq!(
        errors("vd_type"),
        [
            "4:49: api.vd of `age`: len() needs a string, binary, list, set or map, but `age` is an integer"
        ]
    );
}

#[test]
fn vd_with_an_invalid_regex() {
    assert_eq!(
        errors("vd_regex"),
        ["4:47: api.vd of `name`: invalid regular expression: unclosed character class"]
    );
}

#[test]
fn routed_method_needs_a_struct_argument() {
    assert_eq!(
        errors("not_a_struct_argument"),
        ["6:10: `Get` has a route, so its argument must be a struct, not i64"]
    );
}

#[test]
fn the_project_idl_is_clean() {
    let idl = Path::new(env!("CARGO_MANIFEST_DIR")).join("../idl");
    let api = Api::load_dir(&idl).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(api.routes.len(), 3);
}

#[test]
fn the_build_script_fails_with_one_cargo_error_per_diagnostic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad/unknown_type");
    let out = tempfile::tempdir().unwrap();
    let lines = idlgen::build_lines(&dir, Some(out.path()), "0.1.0");
    assert_eq!(
        lines,
        [
            format!("cargo::rerun-if-changed={}", dir.display()),
            format!(
                "cargo::error={}: unknown type `Adress`",
                dir.join("api.thrift:5:17").display()
            ),
        ]
    );
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        0,
        "nothing is written for bad IDL"
    );
}

/// Found while writing the vd_compile fuzz target: the implicit value after `i64::MAX`
/// overflowed and panicked the checker; values past i32 were accepted.
#[test]
fn enum_values_must_fit_in_i32() {
    assert_eq!(
        errors("enum_range"),
        [
            "6:5: enum value `Big.B` = 2147483648 does not fit in i32",
            "7:5: enum value `Big.C` = 9223372036854775807 does not fit in i32",
            "8:5: enum value `Big.D` = 9223372036854775808 does not fit in i32",
        ]
    );
}
