//! Slow, greedy and abusive clients: cut off, bounded, throttled, each with a JSON answer where
//! HTTP allows one, while other clients are served.

use std::time::Duration;

use contract_tests::{Gateway, gateway_config};
use test_support::Answer;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Nothing listens on port 1 of the loopback: every RPC fails, at once.
const NO_ETCD: &str = "127.0.0.1:1";

async fn gateway(flags: &[&str]) -> Gateway {
    Gateway::start_with(&gateway_config(&[NO_ETCD.to_owned()], flags)).await
}

/// Whether the server closed `conn` (a read sees the end, or a reset) within `within`.
async fn closed_within(conn: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(within, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    read.await.is_ok()
}

/// Sends `request` on a fresh connection and reads the answer until the server closes.
async fn raw(gw: &Gateway, request: &[u8]) -> Answer {
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    conn.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer));
    assert!(read.await.is_ok(), "no answer within 10 s");
    Answer::parse(&answer)
}

#[tokio::test]
async fn half_sent_headers_are_cut_off_after_the_header_read_timeout() {
    let gw = gateway(&["--header-read-timeout", "1s", "--idle-timeout", "60s"]).await;
    let mut slow = TcpStream::connect(gw.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    // A byte every 300 ms keeps the connection busy, but never finishes the head.
    let drip = async {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if slow.write_all(b"a").await.is_err() {
                return;
            }
        }
    };
    let cut = tokio::time::timeout(Duration::from_secs(20), drip).await;
    assert!(cut.is_ok(), "the slow client was never cut off");
    assert!(closed_within(&mut slow, Duration::from_secs(5)).await);
    assert_eq!(gw.get("/healthz", &[]).await.status.as_u16(), 200);
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout_and_others_are_served() {
    let gw = gateway(&["--idle-timeout", "2s"]).await;
    // 5,000 connections that never send a byte.
    let mut idle = Vec::new();
    for _ in 0..5_000 {
        idle.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    for _ in 0..20 {
        assert_eq!(gw.get("/healthz", &[]).await.status.as_u16(), 200);
    }
    for (n, conn) in idle.iter_mut().enumerate() {
        assert!(
            closed_within(conn, Duration::from_secs(30)).await,
            "idle connection {n} still open"
        );
    }
    // A keep-alive connection that answered once is idle too, once its answer is out.
    let mut kept = TcpStream::connect(gw.addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_within(&mut kept, Duration::from_secs(30)).await);
}

#[tokio::test]
async fn a_connection_over_the_bound_waits_until_one_closes() {
    let gw = gateway(&["--max-connections", "1", "--idle-timeout", "60s"]).await;
    let first = TcpStream::connect(gw.addr).await.unwrap();
    // The second is accepted by the kernel, but not served while the first is open.
    let waiting = tokio::spawn({
        let http = *gw;
        async move { http.get("/healthz", &[]).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "served beyond the connection bound");
    drop(first);
    let answer = tokio::time::timeout(Duration::from_secs(10), waiting).await;
    assert_eq!(answer.unwrap().unwrap().status.as_u16(), 200);
}

#[tokio::test]
async fn an_oversized_uri_is_414_and_oversized_headers_are_431_in_json() {
    let gw = gateway(&["--max-uri-size", "1KiB", "--max-header-size", "2KiB"]).await;
    let long_path = format!("/healthz?{}", "q".repeat(1100));
    let a = gw.get(&long_path, &[]).await;
    assert!(a.assert_error(414).contains("1024 bytes"), "{a:?}");

    let big = "v".repeat(1500);
    let a = gw.get("/healthz", &[("x-a", &big), ("x-b", &big)]).await;
    assert!(a.assert_error(431).contains("2048 bytes"), "{a:?}");

    // Far beyond the bound, the HTTP parser refuses before the app sees anything.
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Huge: {}\r\n\r\n",
        "h".repeat(64 * 1024)
    );
    let a = raw(&gw, huge.as_bytes()).await;
    assert_eq!(a.status.as_u16(), 431, "{a:?}");
    assert_eq!(gw.get("/healthz", &[]).await.status.as_u16(), 200);
}

#[tokio::test]
async fn deeply_nested_json_is_a_400() {
    let gw = gateway(&[]).await;
    let depth = 200_000;
    let body = format!(
        r#"{{"username": {}{}, "password": "secret1"}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let a = gw.post_json("/api/user/register", &body).await;
    assert!(a.assert_error(400).contains("username"), "{a:?}");
}

#[tokio::test]
async fn the_gateway_rate_limit_answers_429_with_retry_after() {
    let gw = gateway(&["--rate-limit", "3/min"]).await;
    for _ in 0..3 {
        assert_eq!(gw.get("/healthz", &[]).await.status.as_u16(), 200);
    }
    let a = gw.get("/healthz", &[]).await;
    assert!(a.assert_error(429).contains("rate limit"), "{a:?}");
    let retry: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "{a:?}");
}

#[tokio::test]
async fn the_per_ip_rate_limit_answers_429() {
    let gw = gateway(&["--rate-limit-per-ip", "2/min"]).await;
    for _ in 0..2 {
        assert_eq!(gw.get("/healthz", &[]).await.status.as_u16(), 200);
    }
    let a = gw.get("/openapi.json", &[]).await;
    assert!(a.assert_error(429).contains("this address"), "{a:?}");
}

fn login_body(username: &str) -> String {
    format!(r#"{{"username": "{username}", "password": "wrong-password"}}"#)
}

#[tokio::test]
async fn log_ins_are_limited_per_account_whatever_the_address() {
    let gw = gateway(&[
        "--login-rate-limit-per-account",
        "2/min",
        "--login-rate-limit-per-ip",
        "off",
    ])
    .await;
    for _ in 0..2 {
        let a = gw.post_json("/api/user/login", &login_body("alice")).await;
        assert_eq!(a.status.as_u16(), 200, "{a:?}");
    }
    let a = gw.post_json("/api/user/login", &login_body("alice")).await;
    assert!(a.assert_error(429).contains("this account"), "{a:?}");
    assert!(a.headers.contains_key("retry-after"));
    // Other accounts, and other routes, are not held back by alice's.
    let a = gw.post_json("/api/user/login", &login_body("bob")).await;
    assert_eq!(a.status.as_u16(), 200, "{a:?}");
    let a = gw
        .post_json("/api/user/register", &login_body("alice"))
        .await;
    assert_eq!(a.status.as_u16(), 200, "{a:?}");
}

#[tokio::test]
async fn log_ins_are_limited_per_address_whatever_the_account() {
    let gw = gateway(&[
        "--login-rate-limit-per-ip",
        "3/min",
        "--login-rate-limit-per-account",
        "off",
    ])
    .await;
    for name in ["a1", "a2", "a3"] {
        let a = gw.post_json("/api/user/login", &login_body(name)).await;
        assert_eq!(a.status.as_u16(), 200, "{a:?}");
    }
    let a = gw.post_json("/api/user/login", &login_body("a4")).await;
    assert!(a.assert_error(429).contains("this address"), "{a:?}");
    // Malformed attempts count too: guessing cannot hide behind bad requests.
    let a = gw.post_json("/api/user/login", "{").await;
    a.assert_error(429);
}
