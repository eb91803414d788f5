//! The gateway in a real browser: Debian's Chromium, headless, driven by Playwright from
//! Node.js (the scripts are in `tests/browser`). The `/docs` page used as a person would use
//! it, and CORS as the browser itself enforces it for pages on other origins. The stack is
//! real: etcd, the user service on SQLite, the gateway.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use common::free_addr;
use contract_tests::{Database, Gateway, Service, gateway_config};
use test_support::{ChildProcess, Etcd};

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser")
}

/// Where the tests leave what they saw (the page's screenshot).
fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("browser")
}

/// Runs `node tests/browser/<script>` with `env`; fails the test with its output unless it
/// passes. Fails saying what to install when Node.js, Chromium or Playwright is missing.
async fn run_script(script: &str, env: &[(&str, String)]) -> String {
    let chromium = std::env::var_os("CHROMIUM_BIN")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        chromium.exists(),
        "{} not found: install Chromium (`sudo apt-get install chromium`; scripts/test does) or \
         set CHROMIUM_BIN",
        chromium.display()
    );
    assert!(
        scripts_dir().join("node_modules/playwright-core").exists(),
        "Playwright is not installed: run `npm ci --prefix tests/browser` (scripts/test does)"
    );
    let mut command = Command::new("node");
    command
        .arg(scripts_dir().join(script))
        .env("CHROMIUM_BIN", &chromium);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut node = ChildProcess::spawn(command).unwrap_or_else(|e| {
        panic!("cannot run node ({e}): install Node.js 20 or newer (`sudo apt-get install nodejs`)")
    });
    let status = node.wait_exit(Duration::from_secs(180)).await;
    let output = node.output();
    assert!(
        status.is_some_and(|s| s.success()),
        "{script} failed ({status:?}):\n{output}"
    );
    output
}

/// etcd, a user service and a gateway with `flags`, in this process but for etcd.
struct Stack {
    _etcd: Etcd,
    _service: Service,
    _database: Database,
    gateway: Gateway,
}

impl Stack {
    async fn start(flags: &[&str]) -> Stack {
        let etcd = Etcd::start().await;
        let endpoints = [etcd.endpoint()];
        let database = Database::sqlite();
        let service = Service::start(&endpoints, &database.url()).await;
        let gateway = Gateway::start_with(&gateway_config(&endpoints, flags)).await;
        Stack {
            _etcd: etcd,
            _service: service,
            _database: database,
            gateway,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.gateway.addr)
    }
}

/// Swagger UI at /docs: register, log in (the page applies the token itself) and fetch the
/// user; no request leaves for another host, no error in the page; a screenshot is kept.
#[tokio::test(flavor = "multi_thread")]
async fn the_docs_page_registers_logs_in_and_fetches_the_user() {
    let stack = Stack::start(&[]).await;
    let artifacts = artifacts_dir();
    let output = run_script(
        "docs.mjs",
        &[
            ("GATEWAY_URL", stack.url()),
            ("ARTIFACTS_DIR", artifacts.display().to_string()),
        ],
    )
    .await;
    let screenshot = std::fs::read(artifacts.join("docs.png")).unwrap_or_default();
    assert!(
        screenshot.starts_with(b"\x89PNG"),
        "no screenshot in {}:\n{output}",
        artifacts.display()
    );
}

/// A front end on an allowed origin calls the API with fetch(); on another origin, the browser
/// blocks it, and the gateway never carried the request out.
#[tokio::test(flavor = "multi_thread")]
async fn pages_on_other_origins_are_served_or_blocked_as_configured() {
    let (allowed, blocked) = (free_addr().port(), free_addr().port());
    let origin = format!("http://127.0.0.1:{allowed}");
    let stack = Stack::start(&["--cors-origins", &origin]).await;
    let username = "cross-origin-user";
    run_script(
        "cross-origin.mjs",
        &[
            ("GATEWAY_URL", stack.url()),
            ("ALLOWED_PORT", allowed.to_string()),
            ("BLOCKED_PORT", blocked.to_string()),
            ("TEST_USERNAME", username.to_owned()),
        ],
    )
    .await;
    let login = |name: &str| format!(r#"{{"username":"{name}","password":"secret-password-1"}}"#);
    let served = stack
        .gateway
        .post_json("/api/user/login", &login(username))
        .await;
    assert_eq!(served.code(), 0, "the allowed page registered: {served:?}");
    let never = stack
        .gateway
        .post_json("/api/user/login", &login(&format!("{username}-blocked")))
        .await;
    assert_ne!(
        never.code(),
        0,
        "the blocked page's registration was carried out: {never:?}"
    );
}
