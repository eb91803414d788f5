//! A throwaway PostgreSQL server on a free loopback port, killed on drop.
//!
//! Uses the installed server binaries (Debian's `postgresql` package puts them in
//! `/usr/lib/postgresql/<version>/bin`; `PG_BIN` overrides). PostgreSQL refuses to run as
//! root, so as root the server runs as the `postgres` user through `setpriv`, which execs
//! (no intermediate process), so killing the child kills the server.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::{ChildProcess, wait_until};

const INSTALL_HINT: &str = "PostgreSQL server binaries not found: install them with \
    `apt-get install postgresql` (scripts/test does), or set PG_BIN to the directory with initdb and postgres";

/// A running server: connect as `postgres` (trust authentication, loopback only) to [`Self::url`].
#[derive(Debug)]
pub struct Postgres {
    port: u16,
    /// Holds the data directory until the server is gone (field order: the child drops first).
    server: ChildProcess,
    _dir: tempfile::TempDir,
}

impl Postgres {
    /// Initialises a cluster in a temporary directory, starts it, and waits until it accepts
    /// connections. Panics with install instructions when PostgreSQL is missing.
    pub async fn start() -> Postgres {
        let bin = binaries().unwrap_or_else(|| panic!("{INSTALL_HINT}"));
        let dir = tempfile::Builder::new()
            .prefix("test-postgres-")
            .tempdir()
            .expect("temp dir");
        let data = dir.path().join("data");
        let owner = run_as();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the data dir");
        }

        let init = command(owner, &bin.join("initdb"))
            .args([
                "--username=postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .output()
            .expect("run initdb");
        assert!(
            init.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );

        let port = free_port();
        let mut server = command(owner, &bin.join("postgres"));
        server
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]);
        let mut server = ChildProcess::spawn(server).expect("start postgres");
        let ready = wait_until(Duration::from_secs(30), || {
            let up = server.output().contains("ready to accept connections");
            async move { up }
        })
        .await;
        assert!(
            ready && server.is_running(),
            "postgres did not start within 30 s:\n{}",
            server.output()
        );
        Postgres {
            port,
            server,
            _dir: dir,
        }
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// What the server logged so far, for failure messages.
    pub fn log(&self) -> String {
        self.server.output()
    }
}

/// The directory with `initdb` and `postgres`: `PG_BIN`, else the newest Debian install.
fn binaries() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// As root, the uid and gid of the `postgres` user to run the server as.
fn run_as() -> Option<(u32, u32)> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("postgres:"));
    let line = line.unwrap_or_else(|| {
        panic!("running as root and there is no `postgres` user: {INSTALL_HINT}")
    });
    let mut fields = line.split(':').skip(2);
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

fn command(owner: Option<(u32, u32)>, program: &Path) -> Command {
    match owner {
        Some((uid, gid)) => {
            let mut c = Command::new("setpriv");
            c.args([
                format!("--reuid={uid}"),
                format!("--regid={gid}"),
                "--clear-groups".to_string(),
                "--".to_string(),
            ])
            .arg(program);
            c
        }
        None => Command::new(program),
    }
}

fn free_port() -> u16 {
    TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
