//! Any standard Thrift client can call the service, as it can call a Kitex server: an Apache
//! Thrift Python client, generated from idl/user.thrift by the Apache `thrift` compiler, over
//! the framed and the buffered transport with the binary protocol.

use std::{path::Path, process::Command};

use contract_tests::Stack;
use rpc::music::base::ErrCode;

const PYTHON: &str = "/usr/bin/python3";
const INSTALL_HINT: &str = "needs the Apache Thrift compiler and Python library: \
    `apt-get install thrift-compiler python3-thrift` (scripts/test installs them)";

/// Python code for idl/user.thrift, from the Apache compiler, in a temporary directory.
fn generate_python_client() -> tempfile::TempDir {
    let idl = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../idl");
    let out = tempfile::tempdir().unwrap();
    let generated = Command::new("thrift")
        .args(["-r", "--gen", "py", "-I"])
        .arg(&idl)
        .arg("-out")
        .arg(out.path())
        .arg(idl.join("user.thrift"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run `thrift` ({e}): {INSTALL_HINT}"));
    assert!(
        generated.status.success(),
        "thrift --gen py failed: {}",
        String::from_utf8_lossy(&generated.stderr)
    );
    out
}

fn call(
    client_code: &Path,
    addr: std::net::SocketAddr,
    transport: &str,
    username: &str,
) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/client.py");
    let out = Command::new(PYTHON)
        .arg(script)
        .arg(client_code)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .args([transport, username])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {PYTHON} ({e}): {INSTALL_HINT}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'thrift'"),
        "{INSTALL_HINT}"
    );
    assert!(
        out.status.success(),
        "the {transport} client failed: {stderr}"
    );
    serde_json::from_slice(&out.stdout).expect("the client prints JSON")
}

#[tokio::test]
async fn apache_thrift_clients_call_the_service_framed_and_buffered() {
    let stack = Stack::start().await;
    let client_code = generate_python_client();
    for (transport, username) in [("framed", "py-framed"), ("buffered", "py-buffered")] {
        let gen_dir = client_code.path().to_path_buf();
        let addr = stack.service.addr;
        let answer = tokio::task::spawn_blocking(move || call(&gen_dir, addr, transport, username))
            .await
            .unwrap();
        let id = answer["create"][1].as_i64().expect("a user id");
        assert_eq!(
            answer["create"][0],
            i64::from(ErrCode::SUCCESS),
            "{transport}: {answer}"
        );
        assert_eq!(
            answer["login"],
            serde_json::json!([i64::from(ErrCode::SUCCESS), id]),
            "{transport}"
        );
        assert_eq!(
            answer["get"],
            serde_json::json!([i64::from(ErrCode::SUCCESS), username, id]),
            "{transport}"
        );
        assert_eq!(
            answer["wrong_password"],
            serde_json::json!([
                i64::from(ErrCode::AUTHORIZATION_FAILED),
                "wrong username or password"
            ]),
            "{transport}"
        );
    }
}
