//! A throwaway etcd server: plain, with TLS (client certificates), with authentication.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

use crate::pki::Pki;

/// The binary started, overridable for unusual installs.
const ETCD_BIN_ENV: &str = "ETCD_BIN";

/// How long a start may take before the fixture gives up.
pub(crate) const START_DEADLINE: Duration = Duration::from_secs(20);

/// Bound on each request of the fixture's own etcd client.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// What kind of etcd to start: extra flags, TLS, authentication.
///
/// Readiness is polled on a plain-HTTP metrics listener (`--listen-metrics-urls`), so it works
/// the same for TLS servers; authentication is enabled after start (user `root` with the
/// given password, role `root`, `auth enable`), as an operator would.
#[derive(Clone, Debug, Default)]
pub struct EtcdBuilder {
    /// Flags appended to the command line.
    extra_args: Vec<String>,
    /// Serve clients over TLS with these certificates.
    tls: Option<Pki>,
    /// With TLS: require client certificates signed by the CA (`--client-cert-auth`).
    client_cert_auth: bool,
    /// Password of `root`, when authentication is to be enabled.
    root_password: Option<String>,
}

impl EtcdBuilder {
    /// Appends one etcd flag, e.g. `--auto-compaction-retention=1`.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// Serves clients over `https` only, with `pki`'s server certificate, and requires a
    /// client certificate signed by `pki`'s CA (`--client-cert-auth`).
    pub fn tls(mut self, pki: &Pki) -> Self {
        self.tls = Some(pki.clone());
        self.client_cert_auth = true;
        self
    }

    /// With [`EtcdBuilder::tls`]: whether client certificates are required (default: yes).
    pub fn client_cert_auth(mut self, required: bool) -> Self {
        self.client_cert_auth = required;
        self
    }

    /// Enables authentication after start: user `root` with `password`, in role `root`.
    pub fn auth(mut self, root_password: impl Into<String>) -> Self {
        self.root_password = Some(root_password.into());
        self
    }

    /// Starts the server and waits until it answers (and has authentication enabled, if asked).
    pub async fn start(self) -> Etcd {
        let binary = etcd_binary();
        let temp = |prefix: &str| {
            tempfile::Builder::new()
                .prefix(prefix)
                .tempdir()
                .expect("create a temporary dir for etcd")
        };
        let mut etcd = Etcd {
            binary,
            config: self,
            data: temp("etcd-test-data-"),
            logs: temp("etcd-test-logs-"),
            ports: free_ports(),
            child: None,
        };
        let mut last_error = String::new();
        // A free port can be taken by a parallel test between probing and etcd's bind: retry
        // on other ports.
        for _ in 0..5 {
            match etcd.spawn_and_wait().await {
                Ok(()) => {
                    etcd.setup_auth().await;
                    return etcd;
                }
                Err(e) => {
                    last_error = e;
                    etcd.stop();
                    etcd.wipe();
                    etcd.ports = free_ports();
                }
            }
        }
        panic!("etcd did not start: {last_error}");
    }
}

/// The ports one server uses.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ports {
    /// Clients (http or https).
    pub(crate) client: u16,
    /// Raft peers.
    pub(crate) peer: u16,
    /// Plain-HTTP `/health` and `/metrics`.
    pub(crate) metrics: u16,
}

/// A running (or stopped) etcd server owned by the test.
#[derive(Debug)]
pub struct Etcd {
    /// Path of the `etcd` binary.
    binary: PathBuf,
    /// Flags, TLS, auth.
    config: EtcdBuilder,
    /// Data dir, removed on drop.
    data: tempfile::TempDir,
    /// Holds `etcd.log` (stderr of every run), removed on drop.
    logs: tempfile::TempDir,
    /// Where it listens; kept across restarts.
    ports: Ports,
    /// The process, while running.
    child: Option<Child>,
}

impl Etcd {
    /// Starts a plain etcd on free 127.0.0.1 ports with a fresh data dir, and waits until it
    /// answers. Panics with install instructions when `etcd` is missing.
    pub async fn start() -> Etcd {
        EtcdBuilder::default().start().await
    }

    /// A builder for servers with TLS, authentication or extra flags.
    pub fn builder() -> EtcdBuilder {
        EtcdBuilder::default()
    }

    /// `127.0.0.1:<port>`, what `EtcdOptions::endpoints` takes.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.ports.client)
    }

    /// The client URL with its scheme (`https` for a TLS server).
    pub fn url(&self) -> String {
        let scheme = if self.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.endpoint())
    }

    /// The certificates, for a TLS server.
    pub fn pki(&self) -> Option<&Pki> {
        self.config.tls.as_ref()
    }

    /// `root`'s password, when authentication is enabled.
    pub fn root_password(&self) -> Option<&str> {
        self.config.root_password.as_deref()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// A client with full access: over TLS with the client certificate when the server has
    /// TLS, as `root` when it has authentication.
    pub async fn client(&self) -> Client {
        self.connect(true).await
    }

    async fn connect(&self, as_root: bool) -> Client {
        let mut options = ConnectOptions::new().with_timeout(CLIENT_TIMEOUT);
        if let Some(pki) = &self.config.tls {
            let read = |p: PathBuf| std::fs::read(&p).expect("read a PEM file");
            options = options.with_tls(
                TlsOptions::new()
                    .ca_certificate(Certificate::from_pem(read(pki.ca())))
                    .identity(Identity::from_pem(
                        read(pki.client_cert()),
                        read(pki.client_key()),
                    )),
            );
        }
        if let (true, Some(password)) = (as_root, &self.config.root_password) {
            options = options.with_user("root", password.clone());
        }
        let connect = Client::connect([self.url()], Some(options));
        match tokio::time::timeout(CLIENT_TIMEOUT, connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => panic!("cannot connect a test client to etcd {}: {e}", self.url()),
            Err(_) => panic!("test client: etcd {} did not answer", self.url()),
        }
    }

    /// Creates `root` and enables authentication, when configured.
    async fn setup_auth(&self) {
        let Some(password) = &self.config.root_password else {
            return;
        };
        let mut client = self.connect(false).await;
        client
            .user_add("root", password.as_str(), None)
            .await
            .expect("etcd: user add root");
        // The role exists already on some versions.
        let _ = client.role_add("root").await;
        client
            .user_grant_role("root", "root")
            .await
            .expect("etcd: grant role root");
        client.auth_enable().await.expect("etcd: auth enable");
    }

    /// Waits up to `within` until `key` exists (`present`) or is gone (`!present`); whether it
    /// got there. For "the service has registered" and "the key was removed".
    pub async fn wait_for_key(&self, key: &str, present: bool, within: Duration) -> bool {
        let client = self.client().await;
        crate::wait_until(within, || {
            let mut client = client.clone();
            async move {
                client
                    .get(key, None)
                    .await
                    .is_ok_and(|r| r.kvs().is_empty() != present)
            }
        })
        .await
    }

    /// The value of a Prometheus metric from `/metrics` (summed over its label sets; 0 when
    /// absent), e.g. `etcd_debugging_mvcc_slow_watcher_total`. `None` when etcd does not answer.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let page = crate::raw_get(loopback(self.ports.metrics), "/metrics").await?;
        let mut sum = 0.0;
        for line in page.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let metric = series.split('{').next().unwrap_or(series);
            if metric == name {
                sum += value.trim().parse::<f64>().unwrap_or(0.0);
            }
        }
        Some(sum)
    }

    /// Whether the process is running (it may have exited by itself).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills the server (SIGKILL, like a crash) and reaps it. The data dir stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops and starts again on the same ports with the same data: leases and keys survive.
    pub async fn restart(&mut self) {
        self.stop();
        self.respawn().await;
    }

    /// Stops, deletes all data, and starts again on the same ports: a new cluster, as when
    /// an etcd container without a volume is recreated (authentication is set up again).
    pub async fn restart_wiped(&mut self) {
        self.stop();
        self.wipe();
        self.respawn().await;
        self.setup_auth().await;
    }

    fn wipe(&self) {
        let dir = self.data.path();
        std::fs::remove_dir_all(dir).expect("wipe etcd data dir");
        std::fs::create_dir_all(dir).expect("recreate etcd data dir");
    }

    /// What etcd wrote to stderr so far (all runs), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.logs.path().join("etcd.log")
    }

    async fn respawn(&mut self) {
        let deadline = tokio::time::Instant::now() + START_DEADLINE;
        loop {
            match self.spawn_and_wait().await {
                Ok(()) => return,
                // The old socket may linger for a moment; anything else is fatal too late.
                Err(e) if tokio::time::Instant::now() < deadline => {
                    self.stop();
                    eprintln!("etcd restart failed ({e}); retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("etcd did not restart: {e}"),
            }
        }
    }

    async fn spawn_and_wait(&mut self) -> Result<(), String> {
        let Ports {
            client,
            peer,
            metrics,
        } = self.ports;
        let name = format!("test-{client}");
        let client_url = self.url();
        let peer_url = format!("http://127.0.0.1:{peer}");
        // A file, not a pipe: a Go program writing to a closed pipe on stderr dies of SIGPIPE.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("cannot open etcd log: {e}"))?;
        let mut command = Command::new(&self.binary);
        command
            .arg(format!("--name={name}"))
            .arg(format!("--data-dir={}", self.data.path().display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster={name}={peer_url}"))
            .arg(format!("--listen-metrics-urls=http://127.0.0.1:{metrics}"))
            .arg("--initial-cluster-state=new")
            .arg("--log-level=error");
        if let Some(pki) = &self.config.tls {
            command
                .arg(format!("--cert-file={}", pki.server_cert().display()))
                .arg(format!("--key-file={}", pki.server_key().display()))
                .arg(format!("--trusted-ca-file={}", pki.ca().display()));
            if self.config.client_cert_auth {
                command.arg("--client-cert-auth");
            }
        }
        command
            .args(&self.config.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        let child = command
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + START_DEADLINE;
        loop {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!("etcd exited with {status}: {}", tail(&self.log())));
            }
            if probe_health(metrics).await {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("no healthy answer within {START_DEADLINE:?}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn loopback(port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

/// `GET /health` on the metrics port: etcd answers `{"health":"true",...}` once it has a
/// leader and serves requests.
pub(crate) async fn probe_health(port: u16) -> bool {
    crate::raw_get(loopback(port), "/health")
        .await
        .is_some_and(|body| body.contains("\"health\":\"true\""))
}

/// Three distinct free loopback ports (all held while probing, so they differ).
pub(crate) fn free_ports() -> Ports {
    let bind = || {
        TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind a free loopback port")
    };
    let (a, b, c) = (bind(), bind(), bind());
    let port = |l: &TcpListener| l.local_addr().expect("local addr").port();
    Ports {
        client: port(&a),
        peer: port(&b),
        metrics: port(&c),
    }
}

pub(crate) fn etcd_binary() -> PathBuf {
    if let Some(path) = std::env::var_os(ETCD_BIN_ENV) {
        return PathBuf::from(path);
    }
    for dir in std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
    {
        let candidate = dir.join("etcd");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "the `etcd` server binary is not installed (tests need a real etcd). Install it with \
         `apt-get install etcd-server` (Debian/Ubuntu), run `scripts/test` which installs it, \
         or point {ETCD_BIN_ENV} at an etcd binary"
    );
}

pub(crate) fn tail(s: &str) -> &str {
    let mut start = s.len().saturating_sub(2000);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}
