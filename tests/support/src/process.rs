//! A child process that cannot outlive its test.

use std::{
    io,
    path::PathBuf,
    process::{Child, ChildStdin, Command, Stdio},
};

/// A child process, killed (SIGKILL) and reaped when dropped, also when the test panics.
///
/// Its stdin is a pipe held here: a child that reads stdin to its end notices when the test
/// process is gone (even killed), and can exit instead of lingering. Its stdout and stderr go
/// to a temporary file, shown by [`ChildProcess::output`].
#[derive(Debug)]
pub struct ChildProcess {
    /// The process, until killed.
    child: Option<Child>,
    /// Write end of the child's stdin; dropping it closes the pipe.
    stdin: Option<ChildStdin>,
    /// Holds the output file.
    logs: tempfile::TempDir,
}

impl ChildProcess {
    /// Spawns `command` (its stdio is replaced as described above).
    pub fn spawn(mut command: Command) -> io::Result<ChildProcess> {
        let logs = tempfile::Builder::new().prefix("test-child-").tempdir()?;
        let out = std::fs::File::create(logs.path().join("output"))?;
        let err = out.try_clone()?;
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()?;
        let stdin = child.stdin.take();
        Ok(ChildProcess {
            child: Some(child),
            stdin,
            logs,
        })
    }

    /// The process id, while it has not been killed here.
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Waits up to `within` for the process to exit by itself; its exit status, or `None` while
    /// it still runs.
    pub async fn wait_exit(
        &mut self,
        within: std::time::Duration,
    ) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM, as `docker stop` or systemd would, and returns at once; see
    /// [`ChildProcess::wait_exit`]. (Through `kill(1)`: this workspace forbids `unsafe`.)
    pub fn terminate(&self) {
        let pid = self.id().expect("the process is running").to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill(1)");
        assert!(sent.success(), "kill -TERM {pid} failed");
    }

    /// Kills the process with SIGKILL (no chance to clean up, like a crash) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.stdin = None;
    }

    /// Everything the child wrote to stdout and stderr so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.output_path()).unwrap_or_default()
    }

    fn output_path(&self) -> PathBuf {
        self.logs.path().join("output")
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
