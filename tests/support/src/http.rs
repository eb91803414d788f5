//! A real HTTP client for tests of an HTTP server on loopback, and what it answered.

use std::{net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use volo_http::{
    body::BodyConversion as _,
    client::Client,
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode},
};

/// Talks HTTP/1.1 to the server at `addr`.
#[derive(Clone, Copy, Debug)]
pub struct Http {
    pub addr: SocketAddr,
}

impl Http {
    pub fn new(addr: SocketAddr) -> Http {
        Http { addr }
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
        let resp = request.send().await.expect("the server answers");
        let (status, headers) = (resp.status(), resp.headers().clone());
        let text = resp.into_body().into_string().await.expect("a body");
        Answer::new(status, headers, text)
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
        // The server may answer and close before the whole body is sent: ignore write errors.
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
        assert!(read.is_ok(), "the server did not answer within 10 s");
        Answer::parse(&raw)
    }
}

/// What the server answered.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub content_type: Option<String>,
    pub request_id: Option<String>,
    pub text: String,
    /// The body as JSON; `Null` when it is not JSON (tests then fail on its fields).
    pub json: serde_json::Value,
}

impl Answer {
    fn new(status: StatusCode, headers: HeaderMap, text: String) -> Answer {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        Answer {
            status,
            content_type: header("content-type"),
            request_id: header("x-request-id"),
            headers,
            text,
            json,
        }
    }

    /// A whole HTTP/1.1 response read from a raw connection (a body without chunked framing).
    pub fn parse(raw: &[u8]) -> Answer {
        let raw = String::from_utf8_lossy(raw);
        let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
        let mut lines = head.split("\r\n");
        let code: u16 = lines
            .next()
            .and_then(|status| status.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .expect("a status line");
        let mut headers = HeaderMap::new();
        for line in lines {
            let (name, value) = line.split_once(':').expect("a header line");
            headers.append(
                HeaderName::try_from(name.trim()).expect("a header name"),
                HeaderValue::try_from(value.trim()).expect("a header value"),
            );
        }
        Answer::new(
            StatusCode::from_u16(code).expect("a status code"),
            headers,
            body.to_string(),
        )
    }

    /// `{"error": ...}` with `status`; returns the message.
    pub fn assert_error(&self, status: u16) -> &str {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        self.json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no `error` in {self:?}"))
    }

    /// The envelope's `code`.
    pub fn code(&self) -> i64 {
        self.json["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("no `code` in {self:?}"))
    }
}

/// A plain HTTP/1.0 GET (1.0: the body is never chunked), bounded by 2 s; the whole answer,
/// headers included. For probes of health and metrics pages.
pub async fn raw_get(addr: SocketAddr, path: &str) -> Option<String> {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&answer).into_owned())
    };
    match tokio::time::timeout(Duration::from_secs(2), attempt).await {
        Ok(Ok(answer)) => Some(answer),
        _ => None,
    }
}
