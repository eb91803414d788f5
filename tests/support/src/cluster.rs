//! A throwaway etcd cluster of several members on loopback, to kill members under a client.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use etcd_client::{Client, ConnectOptions};

use crate::etcd::{Ports, START_DEADLINE, etcd_binary, free_ports, probe_health, tail};

/// Bound on each request of the fixture's own client.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// One member: its ports and, while it runs, its process.
#[derive(Debug)]
struct Member {
    name: String,
    ports: Ports,
    child: Option<Child>,
}

/// A running etcd cluster (plain HTTP, no auth), every member killed on drop.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<Member>,
    /// One data dir per member and their logs, removed on drop.
    dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `size` members on free 127.0.0.1 ports and waits until every one of them is
    /// healthy (the cluster has a leader). Panics with install instructions when `etcd` is
    /// missing.
    pub async fn start(size: usize) -> EtcdCluster {
        assert!(size > 0, "a cluster has at least one member");
        let mut last_error = String::new();
        // A free port can be taken by a parallel test before etcd binds it: retry on others.
        for _ in 0..3 {
            let mut cluster = EtcdCluster {
                members: (0..size)
                    .map(|i| Member {
                        name: format!("member-{i}"),
                        ports: free_ports(),
                        child: None,
                    })
                    .collect(),
                dir: tempfile::Builder::new()
                    .prefix("etcd-test-cluster-")
                    .tempdir()
                    .expect("create a temporary dir for etcd"),
            };
            match cluster.spawn_and_wait().await {
                Ok(()) => return cluster,
                Err(e) => last_error = e,
            }
        }
        panic!("the etcd cluster did not start: {last_error}");
    }

    /// Every member's `127.0.0.1:<port>`, in member order: what `EtcdOptions::endpoints` takes.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.ports.client))
            .collect()
    }

    /// Kills member `index` (SIGKILL, like a crash) and reaps it; its data dir stays.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.members[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether every running member reports itself healthy (they have a leader).
    pub async fn healthy(&self) -> bool {
        for member in self.members.iter().filter(|m| m.child.is_some()) {
            if !probe_health(member.ports.metrics).await {
                return false;
            }
        }
        true
    }

    /// A raw client for the running members, for checking keys.
    pub async fn client(&self) -> Client {
        let endpoints: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| format!("http://127.0.0.1:{}", m.ports.client))
            .collect();
        let options = ConnectOptions::new().with_timeout(CLIENT_TIMEOUT);
        match tokio::time::timeout(CLIENT_TIMEOUT, Client::connect(&endpoints, Some(options))).await
        {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => panic!("cannot connect a test client to etcd {endpoints:?}: {e}"),
            Err(_) => panic!("test client: etcd {endpoints:?} did not answer"),
        }
    }

    /// What every member wrote to stderr, for failure messages.
    pub fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let log = std::fs::read_to_string(self.log_path(m)).unwrap_or_default();
                format!("--- {} ---\n{}", m.name, tail(&log))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn log_path(&self, member: &Member) -> PathBuf {
        self.dir.path().join(format!("{}.log", member.name))
    }

    fn peer_url(member: &Member) -> String {
        format!("http://127.0.0.1:{}", member.ports.peer)
    }

    async fn spawn_and_wait(&mut self) -> Result<(), String> {
        let binary = etcd_binary();
        let initial_cluster = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, Self::peer_url(m)))
            .collect::<Vec<_>>()
            .join(",");
        // Unique per cluster, so members of two test clusters can never join each other.
        let token = format!("test-{}", self.members[0].ports.peer);
        for i in 0..self.members.len() {
            let member = &self.members[i];
            let client_url = format!("http://127.0.0.1:{}", member.ports.client);
            let peer_url = Self::peer_url(member);
            // A file, not a pipe: a Go program writing to a closed pipe dies of SIGPIPE.
            let log = std::fs::File::create(self.log_path(member))
                .map_err(|e| format!("cannot create the etcd log: {e}"))?;
            let child = Command::new(&binary)
                .arg(format!("--name={}", member.name))
                .arg(format!(
                    "--data-dir={}",
                    self.dir.path().join(&member.name).display()
                ))
                .arg(format!("--listen-client-urls={client_url}"))
                .arg(format!("--advertise-client-urls={client_url}"))
                .arg(format!("--listen-peer-urls={peer_url}"))
                .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                .arg(format!("--initial-cluster={initial_cluster}"))
                .arg(format!("--initial-cluster-token={token}"))
                .arg("--initial-cluster-state=new")
                .arg(format!(
                    "--listen-metrics-urls=http://127.0.0.1:{}",
                    member.ports.metrics
                ))
                .arg("--log-level=error")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .spawn()
                .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
            self.members[i].child = Some(child);
        }
        let deadline = tokio::time::Instant::now() + START_DEADLINE;
        loop {
            for member in &mut self.members {
                if let Some(Ok(Some(status))) = member.child.as_mut().map(Child::try_wait) {
                    member.child = None;
                    return Err(format!("{} exited with {status}", member.name));
                }
            }
            if self.healthy().await {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "no healthy cluster within {START_DEADLINE:?}:\n{}",
                    self.logs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
