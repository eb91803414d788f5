//! Shared fixtures: the gateway served on 127.0.0.1 in this process, a real HTTP client, and
//! (for end-to-end tests) etcd and the user service.

#![allow(dead_code)] // each test file uses its own subset

use std::{net::SocketAddr, time::Duration};

use clap::Parser as _;
use gateway::{Config, Jwt};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    task::JoinHandle,
};
use volo_http::{
    body::BodyConversion as _,
    client::Client,
    http::{Method, StatusCode},
};

/// The secret every test gateway uses, so tests can forge tokens with [`jwt`].
pub const SECRET: &str = "test-secret-0123456789abcdef-0123456789";

/// Keys with the gateway's secret.
pub fn jwt() -> Jwt {
    Jwt::new(SECRET.as_bytes(), Duration::from_secs(3600)).unwrap()
}

/// The gateway's config with the test secret and `etcd`; `extra` are more flags.
pub fn config(etcd: &str, extra: &[&str]) -> Config {
    let mut args = vec!["gateway", "--etcd-endpoints", etcd, "--jwt-secret", SECRET];
    args.extend_from_slice(extra);
    Config::try_parse_from(args).expect("valid flags")
}

/// A gateway serving on a free loopback port; aborted on drop.
pub struct Gateway {
    pub addr: SocketAddr,
    task: JoinHandle<Result<(), volo_http::error::BoxError>>,
}

impl Gateway {
    /// The IDL's routes, calling services through the etcd at `etcd`; `extra` are more flags.
    pub async fn start(etcd: &str, extra: &[&str]) -> Gateway {
        let config = config(etcd, extra);
        let jwt = gateway::jwt_from_config(&config).expect("a valid secret");
        let (app, _) = gateway::app(&config, jwt);
        Gateway::serve(app).await
    }

    /// Serves `app` on a free loopback port.
    pub async fn serve(app: gateway::App) -> Gateway {
        // Bound before serving: connections made before the accept loop starts just queue.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(gateway::serve(app, listener));
        Gateway { addr, task }
    }
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.send(Method::GET, path, headers, None).await
    }

    /// A POST with a JSON content type.
    pub async fn post_json(&self, path: &str, body: &str) -> Answer {
        self.send(
            Method::POST,
            path,
            &[("content-type", "application/json")],
            Some(body.as_bytes().to_vec()),
        )
        .await
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Answer {
        let client = Client::builder().build().expect("a client");
        let mut request = client.request(method, self.url(path));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        if let Some(body) = body {
            request = request.data(body);
        }
        let resp = request.send().await.expect("the gateway answers");
        let status = resp.status();
        let request_id = resp
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = resp.into_body().into_string().await.expect("a body");
        Answer::new(status, content_type, request_id, text)
    }

    /// A POST whose body is sent chunked, with no declared length, over a raw connection.
    pub async fn post_chunked(&self, path: &str, chunk: &[u8], chunks: usize) -> Answer {
        self.post_chunks(path, &vec![chunk; chunks]).await
    }

    /// A POST of `chunks`, each sent as one HTTP chunk, with no declared length.
    pub async fn post_chunks(&self, path: &str, chunks: &[&[u8]]) -> Answer {
        let mut conn = TcpStream::connect(self.addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            self.addr
        );
        // The gateway may answer and close before the whole body is sent: ignore write errors.
        let _ = conn.write_all(head.as_bytes()).await;
        for chunk in chunks {
            let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
            frame.extend_from_slice(chunk);
            frame.extend_from_slice(b"\r\n");
            if conn.write_all(&frame).await.is_err() {
                break;
            }
        }
        let _ = conn.write_all(b"0\r\n\r\n").await;
        let mut raw = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), async {
            let mut buf = [0u8; 4096];
            loop {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => raw.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        assert!(read.is_ok(), "the gateway did not answer within 10 s");
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
        let code: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("a status line");
        Answer::new(
            StatusCode::from_u16(code).unwrap(),
            Some("application/json".into()),
            None,
            body.to_string(),
        )
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the gateway answered.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub request_id: Option<String>,
    pub text: String,
    /// The body as JSON; `Null` when it is not JSON (tests then fail on its fields).
    pub json: serde_json::Value,
}

impl Answer {
    fn new(
        status: StatusCode,
        content_type: Option<String>,
        request_id: Option<String>,
        text: String,
    ) -> Answer {
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        Answer {
            status,
            content_type,
            request_id,
            text,
            json,
        }
    }

    /// `{"error": ...}` with `status`; returns the message.
    pub fn assert_error(&self, status: u16) -> &str {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        self.json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no `error` in {self:?}"))
    }

    /// The envelope's code.
    pub fn code(&self) -> i64 {
        self.json["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("no `code` in {self:?}"))
    }
}
