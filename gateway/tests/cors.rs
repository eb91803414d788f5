//! CORS and the API page, in process, through a real HTTP client on 127.0.0.1. No service
//! runs: requests that pass every check answer 10001. (`browser.rs` drives a real browser.)

use contract_tests::{Gateway, gateway_config};
use rpc::runtime::{Method, Source};
use test_support::Answer;
use volo_http::http::{self, HeaderMap};

/// Nothing listens on port 1 of the loopback: every RPC fails.
fn no_etcd() -> [String; 1] {
    ["127.0.0.1:1".to_owned()]
}

async fn gateway(flags: &[&str]) -> Gateway {
    Gateway::start_with(&gateway_config(&no_etcd(), flags)).await
}

const APP: &str = "http://app.test:3000";

fn header<'a>(answer: &'a Answer, name: &str) -> Option<&'a str> {
    answer.headers.get(name).and_then(|v| v.to_str().ok())
}

/// Every `Vary` value, split and lowercased.
fn vary(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_ascii_lowercase())
        .collect()
}

/// No header a browser reads as a CORS permission.
fn assert_no_cors(answer: &Answer) {
    for (name, _) in &answer.headers {
        assert!(
            !name.as_str().starts_with("access-control-"),
            "a CORS header in {answer:?}"
        );
    }
}

fn register_body() -> &'static str {
    r#"{"username":"cors-user","password":"secret1"}"#
}

#[tokio::test]
async fn without_cors_origins_other_origins_are_refused_and_the_gateways_own_are_served() {
    let gw = gateway(&[]).await;
    let refused = gw
        .send(
            http::Method::POST,
            "/api/user/register",
            &[
                ("origin", "http://elsewhere.test"),
                ("content-type", "application/json"),
            ],
            Some(register_body().as_bytes().to_vec()),
        )
        .await;
    assert!(refused.assert_error(403).contains("origin"), "{refused:?}");
    assert_no_cors(&refused);
    assert!(vary(&refused.headers).contains(&"origin".to_owned()));

    // A page the gateway served itself (/docs) sends its own origin: not cross-origin.
    let own = format!("http://{}", gw.addr);
    let served = gw
        .send(
            http::Method::POST,
            "/api/user/register",
            &[("origin", &own), ("content-type", "application/json")],
            Some(register_body().as_bytes().to_vec()),
        )
        .await;
    assert_eq!(served.status.as_u16(), 200, "{served:?}");
    assert_eq!(served.code(), 10001, "served, and the service is down");
    assert_no_cors(&served);

    // Without Origin (curl, other services): no CORS at all.
    let plain = gw.post_json("/api/user/register", register_body()).await;
    assert_eq!(plain.code(), 10001, "{plain:?}");
    assert_no_cors(&plain);
}

#[tokio::test]
async fn a_listed_origin_may_read_the_answer_and_an_unlisted_one_gets_403() {
    let gw = gateway(&["--cors-origins", &format!("{APP},https://other.test")]).await;
    let allowed = gw
        .send(
            http::Method::POST,
            "/api/user/register",
            &[("origin", APP), ("content-type", "application/json")],
            Some(register_body().as_bytes().to_vec()),
        )
        .await;
    assert_eq!(allowed.code(), 10001, "{allowed:?}");
    assert_eq!(header(&allowed, "access-control-allow-origin"), Some(APP));
    assert_eq!(header(&allowed, "access-control-allow-credentials"), None);
    let exposed = header(&allowed, "access-control-expose-headers").unwrap_or_default();
    for name in ["x-request-id", "x-trace-id", "retry-after"] {
        assert!(exposed.contains(name), "{name} not exposed: {exposed}");
    }
    assert!(vary(&allowed.headers).contains(&"origin".to_owned()));

    // The gateway's own errors carry the permission too, so a page can read them.
    let not_found = gw.get("/api/nothing", &[("origin", APP)]).await;
    not_found.assert_error(404);
    assert_eq!(header(&not_found, "access-control-allow-origin"), Some(APP));

    for other in [
        "http://app.test:3001",
        "https://app.test:3000",
        "http://evil.test",
        "null",
    ] {
        let refused = gw.get("/healthz", &[("origin", other)]).await;
        refused.assert_error(403);
        assert_no_cors(&refused);
    }
}

/// A path of `route` with every parameter filled in.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| match segment.chars().next() {
            Some(':' | '*') => "1",
            _ => segment,
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn listed(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(|item| item.trim().to_ascii_lowercase())
        .filter(|item| !item.is_empty())
        .collect()
}

#[tokio::test]
async fn each_routes_preflight_names_its_methods_and_the_headers_it_reads() {
    let gw = gateway(&["--cors-origins", APP, "--cors-max-age", "5m"]).await;
    assert!(!rpc::ROUTES.is_empty());
    for route in rpc::ROUTES {
        let path = concrete(route.path);
        let preflight = gw
            .send(
                http::Method::OPTIONS,
                &path,
                &[
                    ("origin", APP),
                    ("access-control-request-method", route.method.as_str()),
                    (
                        "access-control-request-headers",
                        "authorization,content-type",
                    ),
                ],
                None,
            )
            .await;
        assert_eq!(preflight.status.as_u16(), 204, "{path}: {preflight:?}");
        assert_eq!(header(&preflight, "access-control-allow-origin"), Some(APP));
        assert_eq!(header(&preflight, "access-control-max-age"), Some("300"));
        let methods = listed(header(&preflight, "access-control-allow-methods"));
        assert!(
            methods.contains(&route.method.as_str().to_ascii_lowercase()),
            "{path}: {methods:?}"
        );
        let headers = listed(header(&preflight, "access-control-allow-headers"));
        let reads = |name: &str| headers.contains(&name.to_owned());
        assert_eq!(reads("authorization"), route.auth, "{path}: {headers:?}");
        let has_body = route.fields.iter().any(|f| f.source == Source::Body);
        assert_eq!(reads("content-type"), has_body, "{path}: {headers:?}");
        for field in route.fields.iter().filter(|f| f.source == Source::Header) {
            assert!(
                reads(&field.key.to_ascii_lowercase()),
                "{path}: {headers:?}"
            );
        }
        assert!(reads("traceparent") && reads("x-request-id"), "{headers:?}");
        let vary = vary(&preflight.headers);
        for name in [
            "origin",
            "access-control-request-method",
            "access-control-request-headers",
        ] {
            assert!(vary.contains(&name.to_owned()), "{path}: {vary:?}");
        }

        let refused = gw
            .send(
                http::Method::OPTIONS,
                &path,
                &[
                    ("origin", "http://evil.test"),
                    ("access-control-request-method", route.method.as_str()),
                ],
                None,
            )
            .await;
        refused.assert_error(403);
        assert_no_cors(&refused);
    }
    let unknown = gw
        .send(
            http::Method::OPTIONS,
            "/api/nothing",
            &[("origin", APP), ("access-control-request-method", "GET")],
            None,
        )
        .await;
    unknown.assert_error(404);
}

#[tokio::test]
async fn options_without_a_preflight_answers_allow() {
    let gw = gateway(&[]).await;
    for route in rpc::ROUTES {
        let answer = gw
            .send(http::Method::OPTIONS, &concrete(route.path), &[], None)
            .await;
        assert_eq!(answer.status.as_u16(), 204, "{answer:?}");
        let allow = listed(header(&answer, "allow"));
        assert!(allow.contains(&route.method.as_str().to_ascii_lowercase()));
        assert!(allow.contains(&Method::Options.as_str().to_ascii_lowercase()));
        assert_no_cors(&answer);
    }
}

#[tokio::test]
async fn a_wildcard_allows_every_origin_without_credentials() {
    let gw = gateway(&["--cors-origins", "*"]).await;
    let answer = gw.get("/healthz", &[("origin", "http://any.test")]).await;
    assert_eq!(answer.status.as_u16(), 200);
    assert_eq!(header(&answer, "access-control-allow-origin"), Some("*"));
    assert_eq!(header(&answer, "access-control-allow-credentials"), None);
    assert!(!vary(&answer.headers).contains(&"origin".to_owned()));
}

#[tokio::test]
async fn credentials_are_allowed_to_listed_origins_only() {
    let gw = gateway(&["--cors-origins", APP, "--cors-allow-credentials"]).await;
    let answer = gw.get("/healthz", &[("origin", APP)]).await;
    assert_eq!(header(&answer, "access-control-allow-origin"), Some(APP));
    assert_eq!(
        header(&answer, "access-control-allow-credentials"),
        Some("true")
    );

    let config = gateway_config(
        &no_etcd(),
        &["--cors-origins", "*", "--cors-allow-credentials"],
    );
    let refused = gateway::app(&config, contract_tests::jwt()).err();
    assert!(
        matches!(refused, Some(gateway::CorsError::AnyOriginWithCredentials)),
        "{refused:?}"
    );
}

#[tokio::test]
async fn the_docs_page_and_its_files_come_from_the_gateway_alone() {
    let gw = gateway(&[]).await;
    let page = gw.get("/docs", &[]).await;
    assert_eq!(page.status.as_u16(), 200, "{page:?}");
    assert_eq!(
        page.content_type.as_deref(),
        Some("text/html; charset=utf-8")
    );
    let policy = header(&page, "content-security-policy").unwrap_or_default();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
    ] {
        assert!(policy.contains(directive), "{policy}");
    }
    assert!(
        !page.text.contains("http:") && !page.text.contains("https:"),
        "the page names another host: {}",
        page.text
    );
    for (file, content_type) in [
        ("docs/swagger-ui.css", "text/css; charset=utf-8"),
        (
            "docs/swagger-ui-bundle.js",
            "text/javascript; charset=utf-8",
        ),
        ("docs/docs.js", "text/javascript; charset=utf-8"),
    ] {
        let reference = page
            .text
            .split('"')
            .find(|part| part.starts_with(file))
            .unwrap_or_else(|| panic!("the page loads {file}: {}", page.text));
        let answer = gw.get(&format!("/{reference}"), &[]).await;
        assert_eq!(answer.status.as_u16(), 200, "{reference}");
        assert_eq!(answer.content_type.as_deref(), Some(content_type));
        assert!(answer.text.len() > 100, "{reference} is empty");
    }
    let init = gw.get("/docs/docs.js", &[]).await.text;
    assert!(
        init.contains("url: \"openapi.json\"") && init.contains("validatorUrl: null"),
        "{init}"
    );

    let off = gateway(&["--docs", "off"]).await;
    off.get("/docs", &[]).await.assert_error(404);
    off.get("/docs/swagger-ui-bundle.js", &[])
        .await
        .assert_error(404);
}
