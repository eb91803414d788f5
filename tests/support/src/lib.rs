//! Fixtures for tests that need real processes.
//!
//! # Layout
//!
//! - [`Etcd`]: a throwaway `etcd` server on free loopback ports with its own data dir,
//!   killed on drop (also when the test panics). Stop, restart (same data), restart wiped.
//! - [`EtcdBuilder`]: the extension point for servers that need more flags (auth, TLS).
//! - [`wait_until`]: poll a condition with a deadline instead of sleeping and hoping.
//!
//! Only 127.0.0.1 is used, and only processes started here are ever killed, by their handle.

use std::{
    future::Future,
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The binary started, overridable for unusual installs.
const ETCD_BIN_ENV: &str = "ETCD_BIN";

/// How long a start may take before the fixture gives up.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// Polls `condition` every 50 ms until it holds or `within` has passed; returns whether it
/// held. Use with `assert!(wait_until(..).await, "what did not happen")`.
pub async fn wait_until<F, Fut>(within: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Extra configuration for an [`Etcd`]. Today: extra command-line flags. Auth and TLS go
/// here later: TLS as `--cert-file/--key-file/--trusted-ca-file/--client-cert-auth` plus an
/// `https` client URL (see [`EtcdBuilder::scheme`]); auth as a post-start step (`user add
/// root`, `auth enable`) run by `start` before returning.
#[derive(Clone, Debug, Default)]
pub struct EtcdBuilder {
    /// Flags appended to the command line.
    extra_args: Vec<String>,
    /// Client URL scheme; `https` once TLS flags are passed.
    https: bool,
}

impl EtcdBuilder {
    /// Appends one etcd flag, e.g. `--auto-compaction-retention=1`.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// Serve clients over `https` (pass the certificate flags with [`EtcdBuilder::arg`]).
    /// Readiness polling needs TLS then, which this crate does not do yet: extend
    /// `probe_health` when the first TLS test arrives.
    pub fn scheme(mut self, https: bool) -> Self {
        self.https = https;
        self
    }

    /// Starts the server.
    pub async fn start(self) -> Etcd {
        let binary = etcd_binary();
        let temp = |prefix: &str| {
            tempfile::Builder::new()
                .prefix(prefix)
                .tempdir()
                .expect("create a temporary dir for etcd")
        };
        let [client_port, peer_port] = free_ports();
        let mut etcd = Etcd {
            binary,
            config: self,
            data: temp("etcd-test-data-"),
            logs: temp("etcd-test-logs-"),
            client_port,
            peer_port,
            child: None,
        };
        let mut last_error = String::new();
        // A free port can be taken by a parallel test between probing and etcd's bind: retry
        // on other ports.
        for _ in 0..5 {
            match etcd.spawn_and_wait().await {
                Ok(()) => return etcd,
                Err(e) => {
                    last_error = e;
                    etcd.stop();
                    etcd.wipe();
                    [etcd.client_port, etcd.peer_port] = free_ports();
                }
            }
        }
        panic!("etcd did not start: {last_error}");
    }
}

/// A running (or stopped) etcd server owned by the test.
#[derive(Debug)]
pub struct Etcd {
    /// Path of the `etcd` binary.
    binary: PathBuf,
    /// Flags and scheme.
    config: EtcdBuilder,
    /// Data dir, removed on drop.
    data: tempfile::TempDir,
    /// Holds `etcd.log` (stderr of every run), removed on drop.
    logs: tempfile::TempDir,
    /// Port clients connect to.
    client_port: u16,
    /// Raft peer port (unused by tests, but must not collide).
    peer_port: u16,
    /// The process, while running.
    child: Option<Child>,
}

impl Etcd {
    /// Starts a plain etcd on free 127.0.0.1 ports with a fresh data dir, and waits until it
    /// answers. Panics with install instructions when `etcd` is missing.
    pub async fn start() -> Etcd {
        EtcdBuilder::default().start().await
    }

    /// A builder for servers with extra flags.
    pub fn builder() -> EtcdBuilder {
        EtcdBuilder::default()
    }

    /// `127.0.0.1:<port>`, what `EtcdOptions::endpoints` takes.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// The client URL with its scheme.
    pub fn url(&self) -> String {
        let scheme = if self.config.https { "https" } else { "http" };
        format!("{scheme}://{}", self.endpoint())
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.data.path()
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
    /// an etcd container without a volume is recreated.
    pub async fn restart_wiped(&mut self) {
        self.stop();
        self.wipe();
        self.respawn().await;
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
        if self.config.https {
            // Extension point: probe `/health` over TLS here when the first TLS test arrives.
            panic!("https etcd fixtures are not implemented yet: extend probe_health for TLS");
        }
        let name = format!("test-{}", self.client_port);
        let client_url = self.url();
        let peer_url = format!("http://127.0.0.1:{}", self.peer_port);
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
            .arg("--initial-cluster-state=new")
            .arg("--log-level=error")
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
            if let Some(child) = &mut self.child {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!("etcd exited with {status}: {}", tail(&self.log())));
                }
            }
            if probe_health(self.client_port).await {
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

/// `GET /health` on the client port: etcd answers `{"health":"true",...}` once it has a
/// leader and serves requests.
async fn probe_health(port: u16) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&answer).contains("\"health\":\"true\""))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Ok(true))
    )
}

/// Two distinct free loopback ports (both held while probing, so they differ).
fn free_ports() -> [u16; 2] {
    let bind = || {
        TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind a free loopback port")
    };
    let (a, b) = (bind(), bind());
    [
        a.local_addr().expect("local addr").port(),
        b.local_addr().expect("local addr").port(),
    ]
}

fn etcd_binary() -> PathBuf {
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

fn tail(s: &str) -> &str {
    let mut start = s.len().saturating_sub(2000);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}
