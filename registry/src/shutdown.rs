//! Stopping a server without signals: [`Shutdown`] and the [`ShutdownIncoming`] it ends.

use std::{fmt, io, sync::Arc, time::Duration};

use tokio::{net::TcpListener, sync::watch};
use volo::net::{
    conn::Conn,
    incoming::{DefaultIncoming, Incoming, MakeIncoming},
};

/// A cloneable trigger. `trigger()` on any clone wakes every `triggered()`, now and later.
#[derive(Clone)]
pub struct Shutdown {
    /// `None` for [`Shutdown::never`]; otherwise the shared flag.
    flag: Option<Arc<watch::Sender<bool>>>,
}

impl Shutdown {
    /// A trigger that has not fired.
    pub fn new() -> Self {
        Self {
            flag: Some(Arc::new(watch::Sender::new(false))),
        }
    }

    /// A trigger that never fires (servers stopped only by signals).
    pub fn never() -> Self {
        Self { flag: None }
    }

    /// Fires the trigger; idempotent. Does nothing on [`Shutdown::never`].
    pub fn trigger(&self) {
        if let Some(flag) = &self.flag {
            flag.send_replace(true);
        }
    }

    /// Whether `trigger()` was called.
    pub fn is_triggered(&self) -> bool {
        self.flag.as_ref().is_some_and(|f| *f.borrow())
    }

    /// Completes once the trigger has fired (immediately if it already has); never
    /// completes for [`Shutdown::never`].
    pub async fn triggered(&self) {
        match &self.flag {
            Some(flag) => {
                let mut rx = flag.subscribe();
                // The sender lives in `self`, so the channel cannot close while we wait.
                let _ = rx.wait_for(|fired| *fired).await;
            }
            None => std::future::pending().await,
        }
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.flag {
            None => f.write_str("Shutdown(never)"),
            Some(_) => write!(f, "Shutdown(triggered: {})", self.is_triggered()),
        }
    }
}

/// The listener to hand to volo-thrift's `Server::run`: it accepts like
/// `DefaultIncoming`, and answers "no more connections" once [`Shutdown`] fires, so `run`
/// leaves its accept loop, runs its shutdown hooks (deregistration) and drains connections.
/// SIGINT/SIGTERM keep working: `run` handles them itself.
///
/// Accept errors (`EMFILE`, `ECONNABORTED`, ...) are logged and retried after a short pause
/// instead of being returned, because volo-thrift's `run` returns on an accept error
/// *without* running its shutdown hooks, which would leave the instance registered.
///
/// Only for volo-thrift: volo-http 0.5's accept loop retries on "no more connections"
/// instead of stopping, so there stop a server by aborting its task.
pub struct ShutdownIncoming {
    /// The bound listener.
    inner: DefaultIncoming,
    /// What ends the accept loop.
    shutdown: Shutdown,
}

impl ShutdownIncoming {
    /// Wraps a bound listener.
    pub fn new(listener: TcpListener, shutdown: Shutdown) -> Self {
        Self {
            inner: DefaultIncoming::from(listener),
            shutdown,
        }
    }
}

impl fmt::Debug for ShutdownIncoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownIncoming")
            .field("inner", &self.inner)
            .field("shutdown", &self.shutdown)
            .finish()
    }
}

/// Pause after a failed accept, so a persistent error does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

impl Incoming for ShutdownIncoming {
    async fn accept(&mut self) -> io::Result<Option<Conn>> {
        loop {
            if self.shutdown.is_triggered() {
                return Ok(None);
            }
            let shutdown = self.shutdown.clone();
            tokio::select! {
                biased;
                _ = shutdown.triggered() => return Ok(None),
                accepted = self.inner.accept() => match accepted {
                    Ok(conn) => return Ok(conn),
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed; retrying");
                        tokio::select! {
                            _ = shutdown.triggered() => return Ok(None),
                            _ = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                        }
                    }
                },
            }
        }
    }
}

impl MakeIncoming for ShutdownIncoming {
    type Incoming = Self;

    async fn make_incoming(self) -> io::Result<Self> {
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn trigger_wakes_every_clone() {
        let s = Shutdown::new();
        let c = s.clone();
        let waiter = tokio::spawn(async move { c.triggered().await });
        assert!(!s.is_triggered());
        s.trigger();
        waiter.await.unwrap();
        s.triggered().await; // already fired: returns at once
        assert!(!Shutdown::never().is_triggered());
    }

    #[tokio::test]
    async fn incoming_ends_on_trigger() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let s = Shutdown::new();
        let mut incoming = ShutdownIncoming::new(listener, s.clone())
            .make_incoming()
            .await
            .unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(incoming.accept().await.unwrap().is_some());
        s.trigger();
        assert!(incoming.accept().await.unwrap().is_none());
    }
}
