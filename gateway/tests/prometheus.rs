//! A real Prometheus (Debian's `prometheus`) scrapes the gateway binary and a user service, and
//! PromQL returns the counts this test caused: the metrics are what a Prometheus reads, under
//! the names Kitex and Hertz dashboards query.

mod common;

use std::{net::SocketAddr, path::PathBuf, process::Command, time::Duration};

use common::{free_addr, start_gateway};
use contract_tests::{Database, Service};
use test_support::{ChildProcess, Etcd, Http, wait_until};

/// Where the binary is: `PROMETHEUS_BIN`, else Debian's.
fn prometheus_bin() -> PathBuf {
    let bin = std::env::var_os("PROMETHEUS_BIN")
        .map_or_else(|| PathBuf::from("/usr/bin/prometheus"), PathBuf::from);
    assert!(
        bin.exists(),
        "{} not found: install Prometheus (`sudo apt-get install --no-install-recommends \
         prometheus`; scripts/test does) or set PROMETHEUS_BIN",
        bin.display()
    );
    bin
}

/// A Prometheus server scraping `targets` (job name, address) every second; killed on drop.
struct Prometheus {
    http: Http,
    child: ChildProcess,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    async fn start(targets: &[(&str, SocketAddr)]) -> Prometheus {
        let dir = tempfile::tempdir().expect("a temporary dir");
        let mut config = String::from("global:\n  scrape_interval: 1s\nscrape_configs:\n");
        for (job, addr) in targets {
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: ['{addr}']\n"
            ));
        }
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config).expect("write the config");
        let addr = free_addr();
        let mut command = Command::new(prometheus_bin());
        command
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"));
        let child = ChildProcess::spawn(command).expect("start prometheus");
        let http = Http::new(addr);
        let ready = wait_until(Duration::from_secs(30), || async move {
            test_support::raw_get(addr, "/-/ready")
                .await
                .is_some_and(|answer| {
                    answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")
                })
        })
        .await;
        assert!(ready, "prometheus never became ready:\n{}", child.output());
        Prometheus {
            http,
            child,
            _dir: dir,
        }
    }

    /// The value of an instant query that gives one number; `None` while it gives none.
    async fn query(&self, promql: &str) -> Option<f64> {
        let answer = self
            .http
            .get(
                &format!("/api/v1/query?query={}", percent_encode(promql)),
                &[],
            )
            .await;
        let value = &answer.json["data"]["result"][0]["value"][1];
        value.as_str()?.parse().ok()
    }

    /// Waits until `promql` gives `want` (Prometheus scrapes every second).
    async fn assert_eventually(&self, promql: &str, want: f64) {
        let reached = wait_until(Duration::from_secs(20), || async {
            self.query(promql).await == Some(want)
        })
        .await;
        assert!(
            reached,
            "`{promql}` should be {want}, is {:?}\n{}",
            self.query(promql).await,
            self.child.output()
        );
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_the_stack_and_promql_counts_what_was_sent() {
    let etcd = Etcd::start().await;
    let endpoints = [etcd.endpoint()];
    // The user service runs in this process, its metrics on a port of their own.
    let service_metrics = rpc::volo_etcd::metrics::spawn_listener(free_addr())
        .await
        .expect("the metrics listener");
    let database = Database::sqlite();
    let _service = Service::start(&endpoints, &database.url()).await;
    let (_gateway, gateway_addr) = start_gateway(&etcd.endpoint(), &[]).await;
    let http = Http::new(gateway_addr);
    let registered = wait_until(Duration::from_secs(10), || async move {
        http.post_json(
            "/api/user/register",
            r#"{"username":"prom-0","password":"secret1"}"#,
        )
        .await
        .code()
            == 0
    })
    .await;
    assert!(registered, "the gateway never reached the service");
    for i in 1..3 {
        let body = format!(r#"{{"username":"prom-{i}","password":"secret1"}}"#);
        assert_eq!(http.post_json("/api/user/register", &body).await.code(), 0);
    }
    let mut token = String::new();
    let mut user_id = String::new();
    for _ in 0..2 {
        let login = http
            .post_json(
                "/api/user/login",
                r#"{"username":"prom-0","password":"secret1"}"#,
            )
            .await;
        assert_eq!(login.code(), 0, "{}", login.text);
        token = login.json["data"]["token"].as_str().unwrap().to_owned();
        user_id = login.json["data"]["user_id"]
            .as_i64()
            .expect("a user id")
            .to_string();
    }
    let bearer = format!("Bearer {token}");
    for _ in 0..4 {
        let user = http
            .get(
                &format!("/api/user/{user_id}"),
                &[("authorization", &bearer)],
            )
            .await;
        assert_eq!(user.code(), 0, "{}", user.text);
    }

    let prometheus =
        Prometheus::start(&[("gateway", gateway_addr), ("service", service_metrics)]).await;
    // HTTP, per IDL route; the first registration may have been tried more than once.
    prometheus
        .assert_eventually(
            r#"sum(hertz_server_throughput{job="gateway",path="/api/user/:user_id",statusCode="200"})"#,
            4.0,
        )
        .await;
    prometheus
        .assert_eventually(
            r#"sum(hertz_server_throughput{job="gateway",path="/api/user/login",method="POST",statusCode="200"})"#,
            2.0,
        )
        .await;
    // Both ends of the RPCs, with the caller's name carried in the TTHeader.
    prometheus
        .assert_eventually(
            r#"sum(kitex_client_throughput{job="gateway",caller="gateway",callee="service.music.user",method="Login",status="succeed",retry="0"})"#,
            2.0,
        )
        .await;
    prometheus
        .assert_eventually(
            r#"sum(kitex_server_throughput{job="service",caller="gateway",callee="service.music.user",method="GetUser",status="succeed"})"#,
            4.0,
        )
        .await;
    prometheus
        .assert_eventually(
            r#"sum(kitex_server_latency_us_count{job="service",method="GetUser"})"#,
            4.0,
        )
        .await;
    let p99 = prometheus
        .query(r#"histogram_quantile(0.99, sum by (le) (kitex_client_latency_us_bucket{job="gateway"}))"#)
        .await;
    assert!(
        p99.is_some_and(|us| us > 0.0 && us <= 1_000_000.0),
        "a p99 in microseconds from Kitex's buckets: {p99:?}"
    );
    // The registry's health, as each side sees it.
    prometheus
        .assert_eventually(
            r#"volo_etcd_instances{job="gateway",service="service.music.user"}"#,
            1.0,
        )
        .await;
    prometheus
        .assert_eventually(
            r#"sum(volo_etcd_registered{job="service",service="service.music.user"})"#,
            1.0,
        )
        .await;

    // The Grafana dashboard in the repository: every query is valid PromQL over metrics the
    // stack exports, and the traffic panels show this test's traffic. The keepalive histogram
    // appears with the first keepalive, a third of the lease TTL (10 s) after registering.
    let kept_alive = wait_until(Duration::from_secs(15), || async {
        test_support::raw_get(service_metrics, "/metrics")
            .await
            .is_some_and(|text| text.contains("# TYPE volo_etcd_keepalive_latency_us "))
    })
    .await;
    assert!(kept_alive, "no keepalive recorded");
    let scraped = format!(
        "{}{}",
        http.get("/metrics", &[]).await.text,
        test_support::raw_get(service_metrics, "/metrics")
            .await
            .unwrap_or_default()
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../observability/grafana-dashboard.json"))
            .expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or_default();
        let expr = panel["targets"][0]["expr"].as_str().expect("a query");
        for name in metric_names(expr) {
            assert!(
                scraped.contains(&format!("# TYPE {name} "))
                    || scraped.contains(&format!("\n{name}{{")),
                "panel `{title}` queries `{name}`, which the stack does not export"
            );
        }
        let promql = expr.replace("$__rate_interval", "1m");
        let answer = prometheus
            .http
            .get(
                &format!("/api/v1/query?query={}", percent_encode(&promql)),
                &[],
            )
            .await;
        assert_eq!(
            answer.json["status"], "success",
            "panel `{title}`: {}",
            answer.text
        );
        if title.starts_with("Gateway: answers") || title.starts_with("RPC server: calls") {
            let shown = wait_until(Duration::from_secs(10), || async {
                prometheus
                    .http
                    .get(
                        &format!("/api/v1/query?query={}", percent_encode(&promql)),
                        &[],
                    )
                    .await
                    .json["data"]["result"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty())
            })
            .await;
            assert!(shown, "panel `{title}` shows nothing: `{promql}`");
        }
    }
}

/// The metric names a PromQL expression reads: the words that name our metrics' families.
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| {
            ["hertz_", "kitex_", "volo_etcd_"]
                .iter()
                .any(|prefix| w.starts_with(prefix))
        })
        .map(|w| {
            // A histogram's series are typed under the family name.
            w.strip_suffix("_bucket").unwrap_or(w).to_owned()
        })
        .collect()
}
