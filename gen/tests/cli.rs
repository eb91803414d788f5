//! The `idlgen` command line: exit codes, messages, and the generated code it shows.

use std::{path::Path, process::Command};

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_idlgen"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .expect("idlgen runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_passes_on_the_project_idl() {
    let (ok, out, _) = run(&["check"]);
    assert!(ok);
    assert_eq!(out, "ok: 2 files, 1 services, 3 routes\n");
}

#[test]
fn check_fails_with_file_line_col_and_exit_1() {
    let (ok, out, err) = run(&["check", "--idl", "gen/tests/fixtures/bad/unknown_type"]);
    assert!(!ok);
    assert!(out.is_empty());
    assert_eq!(
        err,
        "gen/tests/fixtures/bad/unknown_type/api.thrift:5:17: error: unknown type `Adress`\n1 error in the IDL\n"
    );
}

#[test]
fn a_missing_idl_directory_is_a_clear_error() {
    let (ok, _, err) = run(&["routes", "--idl", "no/such/dir"]);
    assert!(!ok);
    assert!(
        err.starts_with("no/such/dir:1:1: error: cannot read: "),
        "{err}"
    );
}

#[test]
fn routes_show_the_project_routes() {
    let (ok, out, _) = run(&["routes"]);
    assert!(ok);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with("POST /api/user/register -> UserService.CreateUser"));
    assert!(
        lines[2].starts_with(
            "GET /api/user/:user_id  -> UserService.GetUser     auth, user_id<-path vd `$ > 0`"
        ),
        "{}",
        lines[2]
    );
}

#[test]
fn expand_prints_one_service_module_formatted() {
    let (ok, out, err) = run(&["expand", "UserService"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("// Generated for UserService from idl/user.thrift\n"));
    assert!(out.contains("pub trait UserService"));
    assert!(out.contains("pub mod user_service {"));
    assert!(out.contains("pub const REGISTRY_NAME: &str = \"service.music.user\";"));
    assert!(
        !out.contains("cargo:"),
        "build-script lines must not leak into the output"
    );
    syn_like_balanced(&out);
}

/// The output is formatted Rust: braces balance (prettyplease only prints what parsed).
fn syn_like_balanced(code: &str) {
    let open = code.matches('{').count();
    let close = code.matches('}').count();
    assert_eq!(open, close);
}

#[test]
fn expand_names_the_services_when_one_is_unknown() {
    let (ok, _, err) = run(&["expand", "NoSuch"]);
    assert!(!ok);
    assert_eq!(err, "no service `NoSuch` in idl; services: UserService\n");
}

#[test]
fn openapi_is_json_with_every_route() {
    let (ok, out, _) = run(&["openapi"]);
    assert!(ok);
    let doc: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.contains_key("/api/user/register"));
    assert!(paths.contains_key("/api/user/{user_id}"));
    assert_eq!(
        doc["paths"]["/api/user/{user_id}"]["get"]["security"][0]["bearerAuth"],
        serde_json::json!([])
    );
}

/// The project's `api.vd` rules, as schema keywords a client or a test tool can act on.
#[test]
fn openapi_says_what_validation_refuses() {
    let (ok, out, _) = run(&["openapi"]);
    assert!(ok);
    let doc: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let body = &doc["paths"]["/api/user/register"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"]["properties"];
    // mblen counts characters, as JSON Schema does: exact.
    assert_eq!(body["username"]["minLength"], 1);
    assert_eq!(body["username"]["maxLength"], 32);
    // len counts bytes: 64 bytes are at most 64 characters, 6 bytes at least 2.
    assert_eq!(body["password"]["minLength"], 2);
    assert_eq!(body["password"]["maxLength"], 64);
    let user_id = &doc["paths"]["/api/user/{user_id}"]["get"]["parameters"][0]["schema"];
    assert_eq!(user_id["exclusiveMinimum"], 0);
    let responses = doc["paths"]["/api/user/{user_id}"]["get"]["responses"]
        .as_object()
        .expect("responses");
    for status in ["200", "400", "401", "404", "429", "504"] {
        assert!(responses.contains_key(status), "{status}");
    }
}
