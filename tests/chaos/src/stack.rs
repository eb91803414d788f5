//! The stack under test, as processes on 127.0.0.1: etcd (one server or a three-member
//! cluster), two user-service replicas on one SQLite file, and the gateway. Replica `b` is
//! registered under the address of a [`TcpProxy`] in this process, which forwards to it, so
//! its traffic can be counted, lost or delayed. Every process is killed on drop.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, bail};
use etcd_client::{Client as EtcdClient, ConnectOptions};
use test_support::{ChildProcess, Etcd, EtcdCluster, TcpProxy, raw_get, wait_until};
use volo_http::{client::Client, http::Method};

use crate::load::{SeedUser, Target, call};

/// The prefix and service name replicas register under (the defaults of both binaries).
const KEY_PREFIX: &str = "kitex/registry-etcd/service.music.user/";

/// How long a process may take to start (register, or answer `/healthz`).
const START_WITHIN: Duration = Duration::from_secs(20);

/// Users registered before the load.
const SEED_USERS: usize = 16;

/// Where the binaries are.
#[derive(Clone, Debug)]
pub struct Bins {
    pub user_service: PathBuf,
    pub gateway: PathBuf,
}

impl Bins {
    /// In `dir`, or beside this binary (`target/debug/`).
    pub fn locate(dir: Option<&Path>) -> anyhow::Result<Bins> {
        let dir = match dir {
            Some(d) => d.to_path_buf(),
            None => std::env::current_exe()?
                .parent()
                .context("this binary has no directory")?
                .to_path_buf(),
        };
        let bins = Bins {
            user_service: dir.join("user-service"),
            gateway: dir.join("gateway"),
        };
        for bin in [&bins.user_service, &bins.gateway] {
            if !bin.is_file() {
                bail!(
                    "{} is missing: build it with `cargo build --workspace --bins` (scripts/chaos does)",
                    bin.display()
                );
            }
        }
        Ok(bins)
    }
}

/// The gateway's rate limits, switched off unless `--keep-gateway-limits`: the whole load comes
/// from one client IP and logs in as a handful of accounts many times a minute, which per-IP and
/// per-account limits meant for the internet would answer 429. Flags given with
/// `--gateway-arg` come after these, and win.
pub const GATEWAY_LIMITS_OFF: &[&str] = &[
    "--rate-limit=off",
    "--rate-limit-per-ip=off",
    "--login-rate-limit-per-ip=off",
    "--login-rate-limit-per-account=off",
];

/// Load shedding, switched off too unless the overload fault runs (or with
/// `--keep-gateway-limits`): here the harness, etcd, both replicas and the gateway share two
/// cores, and at the suite's 200 requests/s with a replica gone the one left saturates them,
/// which the shedder rightly answers with some 503s (23 in one CI run of kill-9). The faults
/// measure what the resilience layers keep; the overload fault measures the shedder.
pub const SHEDDING_OFF: &str = "--shed-cpu-threshold=off";

/// For the overload fault, whose stack shares one CPU: each replica hashes one password at a
/// time, as one sized for its own core would (by default a replica runs a hash per core it
/// had at start, and the fault pins it to one after), and controls its hash queue, as a
/// service expecting floods would.
pub const OVERLOAD_REPLICA: &[&str] = &["--hash-concurrency=1", "--hash-queue-control=100ms"];

/// Flags the harness adds to those it starts the gateway and the replicas with.
#[derive(Clone, Debug)]
pub struct Flags {
    pub gateway: Vec<String>,
    pub replica: Vec<String>,
}

/// etcd: one server, or a cluster.
pub enum Etcds {
    Single(Etcd),
    Cluster(EtcdCluster),
}

impl Etcds {
    pub fn endpoints(&self) -> Vec<String> {
        match self {
            Etcds::Single(e) => vec![e.endpoint()],
            Etcds::Cluster(c) => c.endpoints(),
        }
    }

    pub fn single(&mut self) -> &mut Etcd {
        match self {
            Etcds::Single(e) => e,
            Etcds::Cluster(_) => panic!("this fault needs a single etcd"),
        }
    }
}

/// One user-service process and how to start it again the same way.
pub struct Replica {
    pub name: &'static str,
    /// Where it listens; the same across restarts.
    pub listen: SocketAddr,
    /// What it registers: its listen address, or the proxy's.
    pub registered: SocketAddr,
    process: Option<ChildProcess>,
}

impl Replica {
    /// Its key in etcd.
    pub fn key(&self) -> String {
        format!("{KEY_PREFIX}{}", self.registered)
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(ChildProcess::id)
    }

    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(ChildProcess::is_running)
    }

    /// Its output so far (last 2000 bytes), for error messages.
    pub fn output_tail(&self) -> String {
        let out = self
            .process
            .as_ref()
            .map(ChildProcess::output)
            .unwrap_or_default();
        tail(&out)
    }

    /// How many lines of its output so far contain `text`.
    pub fn output_lines_with(&self, text: &str) -> usize {
        self.process
            .as_ref()
            .map(|p| p.output().lines().filter(|l| l.contains(text)).count())
            .unwrap_or(0)
    }

    /// Sends `signal` (`TERM`, `KILL`, `STOP`, `CONT`).
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        send_signal(self.pid().context("the replica is not running")?, signal)
    }

    /// SIGTERM, then waits for a clean exit.
    pub async fn terminate(&mut self) -> anyhow::Result<()> {
        let process = self.process.as_mut().context("not running")?;
        process.terminate();
        let status = process.wait_exit(Duration::from_secs(15)).await;
        let output = tail(&process.output());
        self.process = None;
        match status {
            Some(s) if s.success() => Ok(()),
            other => bail!(
                "replica {} did not exit cleanly within 15 s of SIGTERM ({other:?}):\n{output}",
                self.name
            ),
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }
}

/// The gateway process.
pub struct GatewayProc {
    pub addr: SocketAddr,
    process: Option<ChildProcess>,
}

impl GatewayProc {
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(ChildProcess::id)
    }

    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(ChildProcess::is_running)
    }

    /// Waits up to `within` for the process to exit; its status.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        self.process.as_mut()?.wait_exit(within).await
    }

    pub fn output_tail(&self) -> String {
        tail(
            &self
                .process
                .as_ref()
                .map(ChildProcess::output)
                .unwrap_or_default(),
        )
    }

    /// Everything it printed so far.
    pub fn output(&self) -> String {
        self.process
            .as_ref()
            .map(ChildProcess::output)
            .unwrap_or_default()
    }

    pub fn forget(&mut self) {
        self.process = None;
    }
}

/// The whole stack. Field order is drop order: gateway, replicas, proxy, then etcd.
pub struct Stack {
    pub gateway: GatewayProc,
    /// `a` (direct) and `b` (behind `proxy`).
    pub replicas: [Replica; 2],
    pub proxy: Arc<TcpProxy>,
    pub etcd: Etcds,
    /// Holds the SQLite file both replicas use.
    db: tempfile::TempDir,
    bins: Bins,
    /// The gateway's token secret (so tokens survive a gateway restart).
    secret: String,
    /// Extra flags.
    flags: Flags,
    pub users: Arc<Vec<SeedUser>>,
    pub token: Arc<str>,
    pub client: Client,
}

impl Stack {
    /// Starts everything and registers [`SEED_USERS`] users through the gateway.
    pub async fn start(bins: &Bins, cluster: bool, flags: &Flags) -> anyhow::Result<Stack> {
        let etcd = if cluster {
            Etcds::Cluster(EtcdCluster::start(3).await)
        } else {
            Etcds::Single(Etcd::start().await)
        };
        let db = tempfile::Builder::new().prefix("chaos-db-").tempdir()?;
        let (listen_a, listen_b) = (free_port()?, free_port()?);
        let proxy = Arc::new(TcpProxy::start(listen_b).await?);
        let replicas = [
            Replica {
                name: "a",
                listen: listen_a,
                registered: listen_a,
                process: None,
            },
            Replica {
                name: "b",
                listen: listen_b,
                registered: proxy.addr(),
                process: None,
            },
        ];
        let secret = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let mut stack = Stack {
            gateway: GatewayProc {
                addr: free_port()?,
                process: None,
            },
            replicas,
            proxy,
            etcd,
            db,
            bins: bins.clone(),
            secret,
            flags: flags.clone(),
            users: Arc::default(),
            token: Arc::from(""),
            client: Client::builder()
                .build()
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        };
        for i in 0..2 {
            stack.start_replica(i).await?;
        }
        stack.start_gateway().await?;
        stack.seed().await?;
        Ok(stack)
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.etcd.endpoints()
    }

    pub fn database_url(&self) -> String {
        format!("sqlite://{}", self.db.path().join("user.db").display())
    }

    pub fn target(&self) -> Target {
        Target {
            gateway: self.gateway.addr,
            users: self.users.clone(),
            token: self.token.clone(),
            client: self.client.clone(),
        }
    }

    /// Starts replica `i` (on its port, with its registered address) and waits until its key
    /// is in etcd.
    pub async fn start_replica(&mut self, i: usize) -> anyhow::Result<()> {
        let endpoints = self.endpoints().join(",");
        let database = self.database_url();
        // A killed replica's key stays until its lease expires: wait for a new lease.
        let old_lease = key_lease(&self.endpoints(), &self.replicas[i].key())
            .await
            .map(|(lease, _)| lease);
        let replica = &mut self.replicas[i];
        let mut command = Command::new(&self.bins.user_service);
        command
            .arg("--listen")
            .arg(replica.listen.to_string())
            .arg("--etcd-endpoints")
            .arg(&endpoints)
            .arg("--database-url")
            .arg(&database)
            .args(&self.flags.replica)
            .env_remove("KITEX_IP_TO_REGISTRY")
            .env_remove("ADVERTISE");
        if replica.registered != replica.listen {
            command.env(
                "KITEX_PORT_TO_REGISTRY",
                replica.registered.port().to_string(),
            );
        } else {
            command.env_remove("KITEX_PORT_TO_REGISTRY");
        }
        replica.process = Some(
            ChildProcess::spawn(command)
                .with_context(|| format!("start {}", self.bins.user_service.display()))?,
        );
        let key = replica.key();
        let endpoints = self.endpoints();
        let deadline = tokio::time::Instant::now() + START_WITHIN;
        loop {
            if !self.replicas[i].is_running() {
                bail!(
                    "replica {} exited at start:\n{}",
                    self.replicas[i].name,
                    self.replicas[i].output_tail()
                );
            }
            if let Some((lease, _)) = key_lease(&endpoints, &key).await
                && Some(lease) != old_lease
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "replica {} not registered under {key} within {START_WITHIN:?}:\n{}",
                    self.replicas[i].name,
                    self.replicas[i].output_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts the gateway on its port and waits until `/healthz` answers.
    pub async fn start_gateway(&mut self) -> anyhow::Result<()> {
        let mut command = Command::new(&self.bins.gateway);
        command
            .arg("--listen")
            .arg(self.gateway.addr.to_string())
            .arg("--etcd-endpoints")
            .arg(self.endpoints().join(","))
            .args(&self.flags.gateway)
            .env("JWT_SECRET", &self.secret)
            .env_remove("GATEWAY_DEV");
        self.gateway.process = Some(
            ChildProcess::spawn(command)
                .with_context(|| format!("start {}", self.bins.gateway.display()))?,
        );
        let addr = self.gateway.addr;
        let deadline = tokio::time::Instant::now() + START_WITHIN;
        loop {
            if !self.gateway.is_running() {
                bail!(
                    "the gateway exited at start:\n{}",
                    self.gateway.output_tail()
                );
            }
            if healthz(addr).await {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "the gateway did not answer /healthz within {START_WITHIN:?}:\n{}",
                    self.gateway.output_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Registers the seed users and logs one in, through the gateway (retrying while the
    /// gateway has not yet discovered the replicas).
    async fn seed(&mut self) -> anyhow::Result<()> {
        let mut target = self.target();
        let mut users = Vec::new();
        for i in 0..SEED_USERS {
            let name = format!("seed-{i}");
            let password = format!("chaos-password-{i}");
            let body = serde_json::json!({"username": name, "password": password});
            let data = retry(|| {
                call(
                    &target,
                    Method::POST,
                    "/api/user/register",
                    None,
                    Some(body.clone()),
                )
            })
            .await
            .context("register the seed users")?;
            let id = data["user_id"].as_i64().context("register: no user_id")?;
            users.push(SeedUser { id, name, password });
        }
        let body = serde_json::json!({"username": users[0].name, "password": users[0].password});
        let data = retry(|| {
            call(
                &target,
                Method::POST,
                "/api/user/login",
                None,
                Some(body.clone()),
            )
        })
        .await
        .context("log in")?;
        let token = data["token"].as_str().context("login: no token")?;
        self.users = Arc::new(users);
        self.token = Arc::from(token);
        target.users = self.users.clone();
        Ok(())
    }

    /// Whether everything runs and both replicas are registered; what is wrong otherwise.
    pub async fn check(&mut self) -> Result<(), String> {
        let endpoints = self.endpoints();
        let mut wrong = Vec::new();
        for r in &mut self.replicas {
            if !r.is_running() {
                wrong.push(format!("replica {} not running", r.name));
            } else if key_lease(&endpoints, &r.key()).await.is_none() {
                wrong.push(format!("replica {} not registered", r.name));
            }
        }
        if !self.gateway.is_running() {
            wrong.push("gateway not running".into());
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join(", "))
        }
    }

    /// Puts back what a fault left broken: the proxy forwarding, stopped replicas continued,
    /// dead processes started again, and waits for both registrations.
    pub async fn heal(&mut self) -> anyhow::Result<()> {
        self.proxy.forward();
        if let Etcds::Single(etcd) = &mut self.etcd
            && !etcd.is_running()
        {
            etcd.restart().await;
        }
        let endpoints = self.endpoints();
        for i in 0..2 {
            if let Some(pid) = self.replicas[i].pid() {
                let _ = send_signal(pid, "CONT");
            }
            if !self.replicas[i].is_running() {
                self.replicas[i].kill();
                self.start_replica(i).await?;
            }
            let key = self.replicas[i].key();
            let registered = wait_until(Duration::from_secs(10), || async {
                key_lease(&endpoints, &key).await.is_some()
            })
            .await;
            if !registered {
                bail!("replica {} is not registered again", self.replicas[i].name);
            }
        }
        if !self.gateway.is_running() {
            self.gateway.process = None;
            self.start_gateway().await?;
        }
        Ok(())
    }
}

/// Retries `f` for up to 20 s (the gateway may not have found the replicas yet).
async fn retry<F, Fut, T>(mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, crate::load::Failure>>,
{
    let deadline = tokio::time::Instant::now() + START_WITHIN;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() > deadline => {
                bail!("{}: {}", e.kind, e.detail)
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// A port free a moment ago on 127.0.0.1.
pub fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// `kill -<signal> <pid>` (this workspace forbids `unsafe`, so no libc).
pub fn send_signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .context("run kill(1)")?;
    if !status.success() {
        bail!("kill -{signal} {pid} failed");
    }
    Ok(())
}

/// `GET /healthz` answers 200.
pub async fn healthz(addr: SocketAddr) -> bool {
    raw_get(addr, "/healthz")
        .await
        .is_some_and(|a| a.starts_with("HTTP/1.1 200") || a.starts_with("HTTP/1.0 200"))
}

/// A client for the etcd member at `endpoint`, bounded by 1 s.
async fn connect(endpoint: &str) -> Option<EtcdClient> {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_timeout(Duration::from_secs(1));
    tokio::time::timeout(
        Duration::from_secs(1),
        EtcdClient::connect([endpoint], Some(options)),
    )
    .await
    .ok()?
    .ok()
}

/// A key's lease and its remaining TTL in seconds, asking each endpoint in turn until one
/// answers; `None` when the key is absent, its lease is gone, or no member answers.
pub async fn key_lease(endpoints: &[String], key: &str) -> Option<(i64, i64)> {
    for endpoint in endpoints {
        let Some(mut client) = connect(endpoint).await else {
            continue;
        };
        let Ok(Ok(resp)) =
            tokio::time::timeout(Duration::from_secs(1), client.get(key, None)).await
        else {
            continue;
        };
        let lease = resp.kvs().first()?.lease();
        if lease == 0 {
            return Some((0, i64::MAX));
        }
        let ttl = tokio::time::timeout(
            Duration::from_secs(1),
            client.lease_time_to_live(lease, None),
        )
        .await
        .ok()?
        .ok()?
        .ttl();
        return (ttl > 0).then_some((lease, ttl));
    }
    None
}

/// How many watch streams and lease keepalive streams the etcd member at `endpoint` serves
/// (from its `/metrics`, served on the client port too); `None` when it does not answer.
pub async fn streams_served(endpoint: &str) -> Option<f64> {
    let addr: SocketAddr = endpoint.parse().ok()?;
    let page = raw_get(addr, "/metrics").await?;
    let metric = |name: &str, filter: &str| -> f64 {
        page.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter(|(series, _)| series.split('{').next() == Some(name) && series.contains(filter))
            .map(|(_, v)| v.trim().parse::<f64>().unwrap_or(0.0))
            .sum()
    };
    let watches = metric("etcd_debugging_mvcc_watch_stream_total", "");
    let keepalive = "grpc_method=\"LeaseKeepAlive\"";
    let keepalives = metric("grpc_server_started_total", keepalive)
        - metric("grpc_server_handled_total", keepalive);
    Some(watches + keepalives)
}

pub fn tail(s: &str) -> String {
    let mut start = s.len().saturating_sub(2000);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_string()
}
