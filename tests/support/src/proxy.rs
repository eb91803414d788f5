//! A TCP proxy on 127.0.0.1 that can stop forwarding without closing connections.

use std::{io, net::SocketAddr};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpListener, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::watch,
    task::{JoinHandle, JoinSet},
};

/// Forwards every connection made to [`TcpProxy::endpoint`] to a target address.
///
/// [`TcpProxy::pause`] stops reading in both directions while keeping every connection open:
/// the peers' kernel buffers and flow-control windows fill up, exactly as when a client is
/// too slow or the network stalls. [`TcpProxy::resume`] lets the backlog through. Everything
/// stops when the proxy is dropped.
#[derive(Debug)]
pub struct TcpProxy {
    /// Where clients connect.
    addr: SocketAddr,
    /// `true` while paused; every pump watches it.
    paused: watch::Sender<bool>,
    /// The accept loop; it owns the pumps, so aborting it ends every connection.
    task: JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on a free 127.0.0.1 port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> io::Result<TcpProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let paused = watch::Sender::new(false);
        let rx = paused.subscribe();
        let task = tokio::spawn(async move {
            let mut pumps = JoinSet::new();
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = TcpStream::connect(target).await else {
                    continue; // dropping `inbound` refuses the client, as the target did
                };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let (in_read, in_write) = inbound.into_split();
                let (out_read, out_write) = outbound.into_split();
                pumps.spawn(pump(in_read, out_write, rx.clone()));
                pumps.spawn(pump(out_read, in_write, rx.clone()));
                while pumps.try_join_next().is_some() {}
            }
        });
        Ok(TcpProxy { addr, paused, task })
    }

    /// `127.0.0.1:<port>` of the proxy.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Stops forwarding (bytes already read are held back until [`TcpProxy::resume`]).
    pub fn pause(&self) {
        self.paused.send_replace(true);
    }

    /// Forwards again, backlog first.
    pub fn resume(&self) {
        self.paused.send_replace(false);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies one direction, never reading nor writing while paused.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut paused: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
