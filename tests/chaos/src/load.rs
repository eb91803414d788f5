//! Steady open-loop load through the gateway, and what each request got.
//!
//! Request `i` is due at `t0 + i / rate` and is sent at that time whether or not earlier ones
//! have answered (each runs in its own task); its latency counts from the due time, so a stall
//! of the load generator or of the server shows as latency instead of as fewer requests
//! (no coordinated omission). Every answer is checked: HTTP 200, envelope `code` 0 and the
//! expected `data`; anything else, a transport error or no answer within [`CLIENT_TIMEOUT`]
//! is a failure with its reason.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde_json::Value;
use tokio::{task::JoinSet, time::Instant};
use volo_http::{
    body::BodyConversion as _,
    client::Client,
    http::{Method, StatusCode},
};

/// A request not answered within this is a failure.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A user registered before the load, to log in as and to fetch.
#[derive(Clone, Debug)]
pub struct SeedUser {
    pub id: i64,
    pub name: String,
    pub password: String,
}

/// Shares of the three requests, in percent; the rest is `GET /api/user/:id`.
#[derive(Clone, Copy, Debug)]
pub struct Mix {
    pub login: u32,
    pub register: u32,
}

impl Mix {
    pub fn get(&self) -> u32 {
        100 - self.login - self.register
    }
}

/// Where the load goes and with what.
#[derive(Clone)]
pub struct Target {
    pub gateway: SocketAddr,
    pub users: Arc<Vec<SeedUser>>,
    /// A bearer token of one of `users`, for the GETs.
    pub token: Arc<str>,
    pub client: Client,
}

/// The three routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Get,
    Login,
    Register,
}

/// Why a request failed: a short kind to group by, and the detail of this one.
#[derive(Clone, Debug)]
pub struct Failure {
    pub kind: String,
    pub detail: String,
}

/// How the user service refuses a log-in or registration it has no hashing thread for in time,
/// as [`Failure::kind`] labels the answer.
pub const SERVICE_BUSY: &str = "code 10001 \"the service is busy; try again later\"";

impl Failure {
    /// A refusal made on purpose, by the gateway (503, 429) or by a replica's hashing pool
    /// (busy): fast, and not a failure under overload.
    pub fn is_refusal(&self) -> bool {
        self.kind == "HTTP 503" || self.kind == "HTTP 429" || self.kind == SERVICE_BUSY
    }
}

/// One request's outcome.
#[derive(Clone, Debug)]
pub struct Record {
    /// Seconds from the start of the load to the request's due time.
    pub at: f64,
    /// Seconds from the due time to the end of the answer (or the failure).
    pub latency: f64,
    pub op: Op,
    pub failure: Option<Failure>,
    /// Seconds from the due time until the request's task started: the load generator's
    /// own lag (it counts in `latency` too).
    pub late: f64,
}

/// A running load; [`Load::stop`] ends it.
pub struct Load {
    t0: Instant,
    rate: f64,
    /// Slot `i` is request `i`: `None` while it is in flight.
    slots: Arc<Mutex<Vec<Option<Record>>>>,
    stop: Arc<AtomicBool>,
    scheduler: tokio::task::JoinHandle<JoinSet<()>>,
}

/// A finished load: every request, in due order.
pub struct Run {
    pub records: Vec<Record>,
    /// Seconds from the start to the due time of the last request.
    pub last_at: f64,
}

impl Load {
    /// Starts sending `rate` requests a second; register names start with `tag`.
    pub fn start(target: Target, rate: u32, mix: Mix, tag: String) -> Load {
        let t0 = Instant::now();
        let rate = f64::from(rate.max(1));
        let slots: Arc<Mutex<Vec<Option<Record>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let scheduler = {
            let (slots, stop) = (slots.clone(), stop.clone());
            tokio::spawn(async move {
                let mut tasks = JoinSet::new();
                for i in 0usize.. {
                    let at = i as f64 / rate;
                    tokio::time::sleep_until(t0 + Duration::from_secs_f64(at)).await;
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    slots.lock().expect("slots").push(None);
                    let op = pick(mix);
                    let (target, slots, tag) = (target.clone(), slots.clone(), tag.clone());
                    tasks.spawn(async move {
                        let due = t0 + Duration::from_secs_f64(at);
                        let late = due.elapsed().as_secs_f64();
                        let failure = checked(&target, op, i, &tag).await;
                        let record = Record {
                            at,
                            latency: due.elapsed().as_secs_f64(),
                            op,
                            failure,
                            late,
                        };
                        slots.lock().expect("slots")[i] = Some(record);
                    });
                    while tasks.try_join_next().is_some() {}
                }
                tasks
            })
        };
        Load {
            t0,
            rate,
            slots,
            stop,
            scheduler,
        }
    }

    /// Seconds since the start.
    pub fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    /// The start, for samplers that share the clock.
    pub fn t0(&self) -> Instant {
        self.t0
    }

    /// Requests due in `[from, to)` seconds, `None` while one of them is still in flight or
    /// not yet sent.
    pub fn window(&self, from: f64, to: f64) -> Option<Vec<Record>> {
        let first = (from * self.rate).ceil().max(0.0) as usize;
        let end = (to * self.rate).ceil().max(0.0) as usize;
        let slots = self.slots.lock().expect("slots");
        if end > slots.len() {
            return None;
        }
        slots[first..end].iter().cloned().collect()
    }

    /// Stops sending and waits for every request in flight (each ends within
    /// [`CLIENT_TIMEOUT`]).
    pub async fn stop(self) -> Run {
        self.stop.store(true, Ordering::Relaxed);
        let mut tasks = self
            .scheduler
            .await
            .expect("the load scheduler does not panic");
        while tasks.join_next().await.is_some() {}
        let slots = std::mem::take(&mut *self.slots.lock().expect("slots"));
        let records: Vec<Record> = slots.into_iter().flatten().collect();
        let last_at = records.last().map_or(0.0, |r| r.at);
        Run { records, last_at }
    }
}

/// A closed-loop client sends a refused request again after this pause, as a client told to
/// try again would: so the loop carries the mix as picked, not the requests that happen to be
/// refused fastest, and does not spin on refusals.
const CLOSED_LOOP_RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Closed loop: `clients` each send the mix back to back for `duration`, a request as soon as
/// the previous one answered (a refused one again after [`CLOSED_LOOP_RETRY_PAUSE`]); what
/// every request got (`at` from the start of its first attempt).
pub async fn closed_loop(
    target: Target,
    clients: usize,
    duration: Duration,
    mix: Mix,
    tag: String,
) -> Vec<Record> {
    let t0 = Instant::now();
    let mut tasks = JoinSet::new();
    for client in 0..clients {
        let (target, tag) = (target.clone(), tag.clone());
        tasks.spawn(async move {
            let mut records = Vec::new();
            for n in 0usize.. {
                let start = t0.elapsed();
                if start >= duration {
                    break;
                }
                let op = pick(mix);
                let failure = loop {
                    match checked(&target, op, n * clients + client, &tag).await {
                        Some(f) if f.is_refusal() && t0.elapsed() < duration => {
                            tokio::time::sleep(CLOSED_LOOP_RETRY_PAUSE).await
                        }
                        other => break other,
                    }
                };
                records.push(Record {
                    at: start.as_secs_f64(),
                    latency: (t0.elapsed() - start).as_secs_f64(),
                    op,
                    failure,
                    late: 0.0,
                });
            }
            records
        });
    }
    let mut all = Vec::new();
    while let Some(records) = tasks.join_next().await {
        all.extend(records.expect("a load client does not panic"));
    }
    all.sort_by(|a, b| a.at.total_cmp(&b.at));
    all
}

fn pick(mix: Mix) -> Op {
    let r = fastrand::u32(..100);
    if r < mix.login {
        Op::Login
    } else if r < mix.login + mix.register {
        Op::Register
    } else {
        Op::Get
    }
}

/// Request `i` of kind `op`: why it failed, if it did (no answer within [`CLIENT_TIMEOUT`]
/// included).
async fn checked(target: &Target, op: Op, i: usize, tag: &str) -> Option<Failure> {
    match tokio::time::timeout(CLIENT_TIMEOUT, request(target, op, i, tag)).await {
        Ok(Ok(())) => None,
        Ok(Err(f)) => Some(f),
        Err(_) => Some(Failure {
            kind: format!("no answer within {CLIENT_TIMEOUT:?}"),
            detail: format!("{op:?}"),
        }),
    }
}

/// Sends request `i` of kind `op` and checks its answer.
async fn request(target: &Target, op: Op, i: usize, tag: &str) -> Result<(), Failure> {
    let user = &target.users[fastrand::usize(..target.users.len())];
    match op {
        Op::Get => {
            let auth = format!("Bearer {}", target.token);
            let data = call(
                target,
                Method::GET,
                &format!("/api/user/{}", user.id),
                Some(&auth),
                None,
            )
            .await?;
            let got = &data["user"];
            expect(
                got["user_id"].as_i64() == Some(user.id)
                    && got["username"].as_str() == Some(&user.name),
                || format!("GET /api/user/{}: data {data}", user.id),
            )
        }
        Op::Login => {
            let body = serde_json::json!({"username": user.name, "password": user.password});
            let data = call(target, Method::POST, "/api/user/login", None, Some(body)).await?;
            expect(
                data["user_id"].as_i64() == Some(user.id)
                    && data["token"].as_str().is_some_and(|t| !t.is_empty()),
                || format!("login {}: data {data}", user.name),
            )
        }
        Op::Register => {
            let name = format!("{tag}-{i}");
            let body = serde_json::json!({"username": name, "password": "chaos-secret"});
            let data = call(target, Method::POST, "/api/user/register", None, Some(body)).await?;
            expect(data["user_id"].as_i64().is_some_and(|id| id > 0), || {
                format!("register {name}: data {data}")
            })
        }
    }
}

fn expect(ok: bool, detail: impl FnOnce() -> String) -> Result<(), Failure> {
    if ok {
        Ok(())
    } else {
        Err(Failure {
            kind: "unexpected data".into(),
            detail: detail(),
        })
    }
}

/// One HTTP request; the envelope's `data` when it answered 200 with code 0.
pub async fn call(
    target: &Target,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> Result<Value, Failure> {
    let mut request = target
        .client
        .request(method.clone(), format!("http://{}{path}", target.gateway));
    if let Some(auth) = bearer {
        request = request.header("authorization", auth);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .data(body.to_string().into_bytes());
    }
    let what = format!("{method} {path}");
    let resp = request.send().await.map_err(|e| Failure {
        kind: format!("transport error ({:?})", e.kind()),
        detail: format!("{what}: {e}"),
    })?;
    let status = resp.status();
    let text = resp.into_body().into_string().await.map_err(|e| Failure {
        kind: "body cut off".into(),
        detail: format!("{what}: {e}"),
    })?;
    let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status != StatusCode::OK {
        return Err(Failure {
            kind: format!("HTTP {}", status.as_u16()),
            detail: format!("{what}: {}", short(&text)),
        });
    }
    match json["code"].as_i64() {
        Some(0) => Ok(json["data"].clone()),
        Some(code) => Err(Failure {
            kind: format!(
                "code {code} \"{}\"",
                json["message"].as_str().unwrap_or_default()
            ),
            detail: format!("{what}: {}", short(&text)),
        }),
        None => Err(Failure {
            kind: "not an envelope".into(),
            detail: format!("{what}: {}", short(&text)),
        }),
    }
}

fn short(text: &str) -> String {
    text.chars().take(200).collect()
}
