//! Throughput of the gateway beside two hand-written volo-http servers, side by side in one
//! process on one machine, all answering `GET /api/user/{id}` with a bearer token:
//!
//! - `bare`: a volo-http handler answering the same JSON from memory (no token check, no RPC);
//! - `hand-written`: a volo-http handler that checks the token, calls `UserService.GetUser`
//!   through the same generated client and writes the envelope with serde_json;
//! - `gateway`: the route the gateway generates from the IDL.
//!
//! The user service runs on SQLite behind a real etcd (`contract_tests::Stack`). The load is a
//! closed loop: `--connections` keep-alive connections, each sending its next request when the
//! previous answer is read, for `--seconds`. Rounds run the three servers in turn, so the
//! machine's noise falls on all of them; ratios are per round, then their median.
//!
//! ```sh
//! cargo run --release -p gateway --example throughput -- --rounds 5 --seconds 3
//! ```

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use clap::Parser;
use contract_tests::{Stack, jwt};
use rpc::music::service::user::{GetUserRequest, User, UserServiceClient};
use serde::Serialize;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use volo::{Service, net::incoming::DefaultIncoming};
use volo_http::{
    body::Body,
    context::ServerContext,
    http::{HeaderValue, StatusCode, header},
    request::Request,
    response::Response,
    server::{
        Server,
        route::{Router, get_service},
    },
};

#[derive(Parser)]
struct Args {
    /// Rounds; each runs the three servers in turn.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Length of one server's run within a round.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let stack = Stack::start().await;
    let created = stack.create("bench", "bench-secret").await;
    assert_eq!(created.code, 0, "cannot create the benchmark user");
    let id = created.user_id.expect("a user id");
    let (token, _) = jwt().issue(&id.to_string()).expect("a token");
    let path = format!("/api/user/{id}");

    // What the gateway answers is what the others must answer too.
    let expected = stack
        .gateway
        .get(&path, &[("authorization", &format!("Bearer {token}"))])
        .await
        .text;
    let bare = serve(BareHandler(expected.clone().into())).await;
    let hand_written = serve(HandWritten(Arc::new(HandWrittenState {
        client: stack.client.clone(),
        jwt: jwt(),
    })))
    .await;
    let targets = [
        ("bare", bare),
        ("hand-written", hand_written),
        ("gateway", stack.gateway.addr),
    ];
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n");
    for (name, addr) in targets {
        let body = one_answer(addr, &request).await;
        assert_eq!(
            body, expected,
            "{name} answers differently from the gateway"
        );
    }

    println!(
        "{} rounds x {} s per server, {} connections, GET {path}",
        args.rounds, args.seconds, args.connections
    );
    let mut rates = vec![Vec::new(); targets.len()];
    for round in 1..=args.rounds {
        let mut line = format!("round {round}:");
        for (i, (name, addr)) in targets.iter().enumerate() {
            let rate = load(*addr, &request, args.connections, args.seconds).await;
            line += &format!("  {name} {rate:.0} req/s");
            rates[i].push(rate);
        }
        println!("{line}");
    }
    let ratio =
        |a: usize, b: usize| median(rates[a].iter().zip(&rates[b]).map(|(x, y)| x / y).collect());
    println!();
    for (i, (name, _)) in targets.iter().enumerate() {
        println!("{name:>12}: median {:.0} req/s", median(rates[i].clone()));
    }
    println!(
        "gateway / bare:         {:.2}  (target >= 0.45)",
        ratio(2, 0)
    );
    println!(
        "gateway / hand-written: {:.2}  (target >= 0.95)",
        ratio(2, 1)
    );
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Serves `service` on `GET /api/user/{user_id}` on a free loopback port.
async fn serve<S>(service: S) -> SocketAddr
where
    S: Service<ServerContext, Request, Response = Response, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
{
    let router = Router::new().route("/api/user/{user_id}", get_service(service));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(Server::new(router).run(DefaultIncoming::from(listener)));
    addr
}

fn json(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The answer from memory.
#[derive(Clone)]
struct BareHandler(Arc<str>);

impl Service<ServerContext, Request> for BareHandler {
    type Response = Response;
    type Error = Infallible;

    async fn call(&self, _: &mut ServerContext, _: Request) -> Result<Response, Infallible> {
        Ok(json(StatusCode::OK, self.0.to_string()))
    }
}

struct HandWrittenState {
    client: UserServiceClient,
    jwt: gateway::Jwt,
}

/// What one would write by hand for this route: token, path id, RPC, envelope.
#[derive(Clone)]
struct HandWritten(Arc<HandWrittenState>);

#[derive(Serialize)]
struct Envelope<'a> {
    code: i64,
    message: &'a str,
    data: Option<Profile>,
}

#[derive(Serialize)]
struct Profile {
    user: Option<User>,
}

impl Service<ServerContext, Request> for HandWritten {
    type Response = Response;
    type Error = Infallible;

    async fn call(&self, _: &mut ServerContext, req: Request) -> Result<Response, Infallible> {
        let authorization = req.headers().get(header::AUTHORIZATION);
        if self
            .0
            .jwt
            .verify_header(authorization.map(|v| v.as_bytes()))
            .is_err()
        {
            return Ok(json(StatusCode::UNAUTHORIZED, "{}"));
        }
        let id = req
            .uri()
            .path()
            .rsplit('/')
            .next()
            .and_then(|s| s.parse().ok());
        let Some(user_id) = id else {
            return Ok(json(StatusCode::BAD_REQUEST, "{}"));
        };
        let Ok(resp) = self.0.client.get_user(GetUserRequest { user_id }).await else {
            return Ok(json(StatusCode::OK, "{}"));
        };
        let base = resp.base_resp;
        let body = Envelope {
            code: base.status_code,
            message: &base.status_message,
            data: (base.status_code == 0).then_some(Profile { user: resp.user }),
        };
        Ok(json(StatusCode::OK, serde_json::to_vec(&body).unwrap()))
    }
}

/// Requests per second over `connections` keep-alive connections for `seconds`.
async fn load(addr: SocketAddr, request: &str, connections: usize, seconds: u64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let request = request.as_bytes().to_vec();
            tokio::spawn(async move {
                let mut conn = Connection::open(addr).await;
                let mut done = 0u64;
                while Instant::now() < deadline {
                    let (status, _) = conn.exchange(&request).await;
                    assert_eq!(status, 200, "a request failed under load");
                    done += 1;
                }
                done
            })
        })
        .collect();
    let started = Instant::now();
    let mut total = 0;
    for worker in workers {
        total += worker.await.expect("no panic");
    }
    total as f64 / started.elapsed().as_secs_f64()
}

async fn one_answer(addr: SocketAddr, request: &str) -> String {
    let (status, body) = Connection::open(addr)
        .await
        .exchange(request.as_bytes())
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// A minimal HTTP/1.1 keep-alive client: the load generator shares the CPUs with the servers,
/// so it does as little as possible.
struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Connection {
    async fn open(addr: SocketAddr) -> Connection {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        Connection {
            stream,
            buf: Vec::with_capacity(4096),
        }
    }

    /// Sends one request; the answer's status and body (`content-length` framed).
    async fn exchange(&mut self, request: &[u8]) -> (u16, String) {
        self.stream.write_all(request).await.expect("write");
        self.buf.clear();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end]).expect("an ASCII head");
                let status = head[9..12].parse().expect("a status");
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())?
                    })
                    .expect("a content-length");
                let body_start = end + 4;
                while self.buf.len() < body_start + length {
                    let n = self.stream.read(&mut chunk).await.expect("read");
                    assert!(n > 0, "the server closed the connection");
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                let body = &self.buf[body_start..body_start + length];
                return (status, String::from_utf8_lossy(body).into_owned());
            }
            let n = self.stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "the server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
