//! The `gateway` binary: flags, start-up refusals, route listing and a clean stop on SIGTERM.

mod common;

use std::time::Duration;

use test_support::{ChildProcess, wait_until};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use volo_http::http::Method;

use common::gateway_command;

#[test]
fn print_routes_lists_the_routes_and_exits() {
    let out = gateway_command().arg("--print-routes").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("/api/user/register -> UserService.CreateUser"),
        "{text}"
    );
    assert!(
        text.contains("/api/user/login -> UserService.Login"),
        "{text}"
    );
    assert!(
        text.contains("/api/user/:user_id -> UserService.GetUser [auth]"),
        "{text}"
    );
}

#[test]
fn a_short_secret_is_refused() {
    let out = gateway_command()
        .args(["--listen", "127.0.0.1:0"])
        .env("JWT_SECRET", "Short-Secret-XYZ")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("at least 32 bytes"), "{all}");
    assert!(
        !all.contains("Short-Secret-XYZ"),
        "the secret leaked: {all}"
    );
}

#[test]
fn a_missing_secret_is_refused_outside_development_mode() {
    let out = gateway_command()
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no JWT secret") && stderr.contains("--dev"),
        "{stderr}"
    );
}

#[test]
fn a_malformed_etcd_endpoint_stops_the_gateway_at_start() {
    let out = gateway_command()
        .args(["--listen", "127.0.0.1:0", "--dev"])
        .args(["--etcd-endpoints", "127.0.0.1:2379,localhost"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#""localhost" is not host:port"#),
        "{stderr}"
    );
}

/// CORS that cannot be served safely, or an origin no browser sends, stops it with one line.
#[test]
fn a_wildcard_with_credentials_or_a_bad_origin_stops_the_gateway_at_start() {
    for (flags, says) in [
        (
            &["--cors-origins", "*", "--cors-allow-credentials"][..],
            "--cors-origins '*' with --cors-allow-credentials",
        ),
        (
            &["--cors-origins", "https://app.example.com/"][..],
            "an origin has no path",
        ),
    ] {
        let out = gateway_command()
            .args(["--listen", "127.0.0.1:0", "--dev"])
            .args(flags)
            .output()
            .unwrap();
        assert_ne!(out.status.code(), Some(0), "{flags:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{flags:?}: {stderr}");
    }
    let out = gateway_command()
        .args(["--listen", "127.0.0.1:0", "--dev"])
        .env("CORS_ORIGINS", "*")
        .env("CORS_ALLOW_CREDENTIALS", "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn a_bad_otlp_endpoint_stops_the_gateway_at_start() {
    for endpoint in ["127.0.0.1:4318", "https://collector:4318", "http://"] {
        let out = gateway_command()
            .args([
                "--listen",
                "127.0.0.1:0",
                "--dev",
                "--otlp-endpoint",
                endpoint,
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{endpoint}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("bad OTLP endpoint `{endpoint}`"))
                && stderr.contains("http://HOST:PORT")
                && stderr.lines().count() == 1,
            "{stderr}"
        );
    }
}

/// Starts the gateway on a free port with `args`, no etcd behind it; its address once it serves.
async fn start(args: &[&str]) -> (ChildProcess, String) {
    let (child, addr) = common::start_gateway("127.0.0.1:1", args).await;
    (child, addr.to_string())
}

/// `GET /healthz` on a connection of its own, with `x-request-id: id`; the whole answer.
async fn healthz(addr: &str, id: &str) -> String {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nx-request-id: {id}\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    answer
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_the_request_id() {
    let (child, addr) = start(&["--log-format", "json"]).await;
    healthz(&addr, "probe-json").await;
    let logged = wait_until(Duration::from_secs(5), || {
        let out = child.output();
        async move { out.contains("probe-json") }
    })
    .await;
    assert!(logged, "no access log line: {}", child.output());
    let lines: Vec<serde_json::Value> = child
        .output()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let access = lines
        .iter()
        .find(|l| l["target"] == "gateway::access")
        .expect("an access line");
    assert_eq!(access["request_id"], "probe-json", "{access}");
    assert_eq!(access["status"], 200, "{access}");
    assert_eq!(access["level"], "INFO", "{access}");
    assert!(
        lines.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("gateway serving on"))),
        "{lines:?}"
    );
}

/// A caller's `traceparent` is continued: its trace id comes back in `x-trace-id` and the
/// request's log lines carry it. Without one, or with a malformed one, a new trace starts.
#[tokio::test]
async fn trace_ids_continue_the_callers_trace_or_start_one() {
    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    let (child, addr) = start(&["--log-format", "json"]).await;
    let http = test_support::Http::new(addr.parse().unwrap());
    let login = |traceparent: Option<&'static str>| {
        let mut headers = vec![("content-type", "application/json")];
        headers.extend(traceparent.map(|t| ("traceparent", t)));
        let http = &http;
        async move {
            let body = br#"{"username":"tracer","password":"password-1"}"#.to_vec();
            let answer = http
                .send(Method::POST, "/api/user/login", &headers, Some(body))
                .await;
            let trace_id = answer
                .headers
                .get("x-trace-id")
                .map(|v| v.to_str().unwrap().to_owned());
            (answer, trace_id.expect("an x-trace-id header"))
        }
    };

    let (continued, trace_id) = login(Some(PARENT)).await;
    assert_eq!(trace_id, TRACE_ID);
    // No service is registered: the gateway logs the failed call inside the request's span.
    let logged = wait_until(Duration::from_secs(5), || {
        let out = child.output();
        async move { out.contains("rpc failed") }
    })
    .await;
    assert!(logged, "no error line: {}", child.output());
    let out = child.output();
    let failed: serde_json::Value = out
        .lines()
        .find(|l| l.contains("rpc failed"))
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap();
    assert_eq!(failed["span"]["trace_id"], TRACE_ID, "{failed}");
    assert_eq!(
        failed["span"]["request_id"].as_str(),
        continued.request_id.as_deref(),
        "{failed}"
    );

    let (_, first) = login(None).await;
    let (_, second) = login(None).await;
    let (_, malformed) = login(Some(
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
    ))
    .await;
    for id in [&first, &second, &malformed] {
        assert!(
            id.len() == 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{id}"
        );
        assert_ne!(id, TRACE_ID);
    }
    assert_ne!(first, second);
}

#[tokio::test]
async fn sigterm_answers_requests_in_flight_refuses_new_ones_and_exits_0() {
    let (mut child, addr) = start(&[]).await;
    let out = child.output();
    assert!(
        out.contains("random secret"),
        "no warning about the secret: {out}"
    );
    assert!(!out.contains('\x1b'), "colour codes in piped logs: {out:?}");

    // One request, then its access log line.
    let answer = healthz(&addr, "probe-1").await;
    assert!(answer.contains(r#"{"status":"ok"}"#), "{answer}");
    let logged = wait_until(Duration::from_secs(5), || {
        let out = child.output();
        async move { out.contains("probe-1") && out.contains("/healthz") }
    })
    .await;
    assert!(logged, "no access log line: {}", child.output());

    // A request in flight at SIGTERM: its head is in, its body is not yet.
    let body = br#"{"username": "", "password": "secret1"}"#;
    let mut in_flight = TcpStream::connect(&addr).await.unwrap();
    // `Expect: 100-continue` makes the moment visible: the interim 100 is sent once the
    // handler reads the body.
    let head = format!(
        "POST /api/user/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    in_flight.write_all(head.as_bytes()).await.unwrap();
    let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
    let mut read = vec![0; interim.len()];
    let continued = tokio::time::timeout(Duration::from_secs(10), in_flight.read_exact(&mut read));
    assert!(
        matches!(continued.await, Ok(Ok(_))),
        "no 100 Continue within 10 s"
    );
    assert_eq!(read, interim, "{}", String::from_utf8_lossy(&read));
    in_flight.write_all(&body[..10]).await.unwrap();
    // A client that has connected but not yet sent its request at SIGTERM.
    let mut silent = TcpStream::connect(&addr).await.unwrap();

    child.terminate();
    // New connections are refused (not accepted and then reset) once it stops listening.
    let refused = wait_until(Duration::from_secs(10), || {
        let addr = addr.clone();
        async move {
            matches!(TcpStream::connect(&addr).await,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
        }
    })
    .await;
    assert!(refused, "still accepting after SIGTERM: {}", child.output());
    // The silent client gets a moment to send it, and is answered; then the connection closes.
    silent
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), silent.read_to_end(&mut answer));
    assert!(read.await.is_ok(), "the silent client was not answered");
    let answer = test_support::Answer::parse(&answer);
    assert_eq!(answer.status, 200, "{answer:?}");
    // The request in flight is answered in full, and its connection then closed.
    in_flight.write_all(&body[10..]).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), in_flight.read_to_end(&mut answer));
    assert!(read.await.is_ok(), "the request in flight was not answered");
    let answer = test_support::Answer::parse(&answer);
    assert!(answer.assert_error(400).contains("username"), "{answer:?}");
    assert_eq!(answer.headers["connection"], "close", "{answer:?}");

    let status = child.wait_exit(Duration::from_secs(40)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}: {}",
        child.output()
    );
}

/// `GET path` on a connection of its own; the status line and the body.
async fn get(addr: &str, path: &str) -> (String, String) {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (head.to_owned(), body.to_owned())
}

#[tokio::test]
async fn metrics_count_answers_per_route_under_hertz_names() {
    let (_child, addr) = start(&[]).await;
    for path in [
        "/healthz",
        "/healthz",
        "/api/user/42",
        "/api/user/43",
        "/nope",
    ] {
        get(&addr, path).await;
    }
    let (head, body) = get(&addr, "/metrics").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let count = |path, status| {
        test_support::prometheus_sample(
            &body,
            "hertz_server_throughput",
            &[("method", "GET"), ("statusCode", status), ("path", path)],
        )
    };
    assert_eq!(count("/healthz", "200"), Some(2.0), "{body}");
    // One series for the route, not one per user id: no token, so 401 before any call.
    assert_eq!(count("/api/user/:user_id", "401"), Some(2.0), "{body}");
    assert_eq!(count("other", "404"), Some(1.0), "{body}");
    assert_eq!(
        test_support::prometheus_sample(
            &body,
            "hertz_server_latency_us_count",
            &[
                ("method", "GET"),
                ("statusCode", "200"),
                ("path", "/healthz")
            ],
        ),
        Some(2.0),
        "{body}"
    );
    assert!(
        body.contains("hertz_server_latency_us_bucket{method=\"GET\",statusCode=\"200\",path=\"/healthz\",le=\"5000\"}"),
        "Hertz's buckets, in microseconds: {body}"
    );
}

#[tokio::test]
async fn metrics_off_records_and_serves_none() {
    let (_child, addr) = start(&["--metrics", "off"]).await;
    get(&addr, "/healthz").await;
    let (head, body) = get(&addr, "/metrics").await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}\n{body}");
    assert!(!body.contains("hertz_"), "{body}");
}
