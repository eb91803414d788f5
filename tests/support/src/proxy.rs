//! A TCP proxy on 127.0.0.1 that can stall, lose or delay what it forwards, and counts it.

use std::{
    io,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpListener, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::{mpsc, watch},
    task::{JoinHandle, JoinSet},
    time::Instant,
};

/// Forwards every connection made to [`TcpProxy::endpoint`] to a target address.
///
/// [`TcpProxy::pause`] stops reading in both directions while keeping every connection open:
/// the peers' kernel buffers and flow-control windows fill up, exactly as when a client is
/// too slow or the network stalls. [`TcpProxy::resume`] lets the backlog through.
///
/// [`TcpProxy::black_hole`] models a path that loses every packet while the peers' sockets
/// stay open: connections are still accepted and read (so writers never block), but nothing
/// is forwarded, and a connection that lost bytes never forwards again (its stream has a hole).
/// [`TcpProxy::delay`] forwards each chunk that long after it was read, in both directions,
/// without limiting throughput. [`TcpProxy::forward`] (or `resume`) goes back to plain
/// forwarding for new bytes and new connections. [`TcpProxy::stats`] counts what clients sent.
/// Everything stops when the proxy is dropped.
#[derive(Debug)]
pub struct TcpProxy {
    /// Where clients connect.
    addr: SocketAddr,
    /// What the proxy does with bytes now; every pump watches it.
    mode: watch::Sender<Mode>,
    /// What clients sent, shared with every connection.
    counters: Arc<Counters>,
    /// The accept loop; it owns the pumps, so aborting it ends every connection.
    task: JoinHandle<()>,
}

/// What the proxy does with the bytes it reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Forwards at once.
    #[default]
    Forward,
    /// Reads nothing and writes nothing; bytes already read wait for the next mode.
    Paused,
    /// Reads and discards; new connections are accepted but never connected to the target.
    BlackHole,
    /// Forwards each chunk this long after it was read.
    Delay(Duration),
}

/// What clients sent through the proxy, counted when read (also when then discarded or held).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted.
    pub connections: u64,
    /// Bytes read from clients.
    pub bytes: u64,
    /// Messages read from clients, for protocols whose messages start with a 4-byte big-endian
    /// length of the rest (Thrift framed and TTHeader transports); meaningless for others.
    pub messages: u64,
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    bytes: AtomicU64,
    messages: AtomicU64,
}

impl TcpProxy {
    /// Listens on a free 127.0.0.1 port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> io::Result<TcpProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mode = watch::Sender::new(Mode::Forward);
        let counters = Arc::new(Counters::default());
        let rx = mode.subscribe();
        let count = counters.clone();
        let task = tokio::spawn(async move {
            let mut pumps = JoinSet::new();
            while let Ok((inbound, _)) = listener.accept().await {
                while pumps.try_join_next().is_some() {}
                count.connections.fetch_add(1, Ordering::Relaxed);
                let _ = inbound.set_nodelay(true);
                let lost = Arc::new(AtomicBool::new(false));
                if *rx.borrow() == Mode::BlackHole {
                    let (in_read, in_write) = inbound.into_split();
                    lost.store(true, Ordering::Relaxed);
                    let (rx, count) = (rx.clone(), count.clone());
                    pumps.spawn(async move {
                        // Held open: a closed write side would tell the client something.
                        let _open = in_write;
                        pump(in_read, None, rx, lost, Some(count)).await;
                    });
                    continue;
                }
                // Connecting in the connection's own task: a target that does not complete
                // handshakes must not stop the proxy from accepting others.
                let (rx, count) = (rx.clone(), count.clone());
                pumps.spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        // Reset, not a clean close: as near to the target's refusal as an
                        // accepted connection gets.
                        let _ = inbound.set_zero_linger();
                        return;
                    };
                    let (in_read, in_write) = inbound.into_split();
                    let _ = outbound.set_nodelay(true);
                    let (out_read, out_write) = outbound.into_split();
                    let to_target = pump(
                        in_read,
                        Some(out_write),
                        rx.clone(),
                        lost.clone(),
                        Some(count),
                    );
                    let to_client = pump(out_read, Some(in_write), rx, lost, None);
                    tokio::join!(to_target, to_client);
                });
            }
        });
        Ok(TcpProxy {
            addr,
            mode,
            counters,
            task,
        })
    }

    /// `127.0.0.1:<port>` of the proxy.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops forwarding (bytes already read are held back until [`TcpProxy::resume`]).
    pub fn pause(&self) {
        self.set_mode(Mode::Paused);
    }

    /// Forwards again, backlog first.
    pub fn resume(&self) {
        self.set_mode(Mode::Forward);
    }

    /// Plain forwarding again (the same as [`TcpProxy::resume`]).
    pub fn forward(&self) {
        self.set_mode(Mode::Forward);
    }

    /// Loses everything from now on: reads and discards, accepts new connections without
    /// connecting them to the target, and never forwards on a connection that lost bytes.
    pub fn black_hole(&self) {
        self.set_mode(Mode::BlackHole);
    }

    /// Forwards each chunk `by` after reading it, in both directions.
    pub fn delay(&self, by: Duration) {
        self.set_mode(Mode::Delay(by));
    }

    /// Switches to `mode`.
    pub(crate) fn set_mode(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// What clients have sent so far.
    pub fn stats(&self) -> ProxyStats {
        ProxyStats {
            connections: self.counters.connections.load(Ordering::Relaxed),
            bytes: self.counters.bytes.load(Ordering::Relaxed),
            messages: self.counters.messages.load(Ordering::Relaxed),
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Counts length-prefixed messages across chunk boundaries.
#[derive(Default)]
struct MessageCounter {
    /// Bytes of the current length prefix seen so far.
    header: [u8; 4],
    header_len: usize,
    /// Bytes of the current message body still to come.
    remaining: u64,
}

impl MessageCounter {
    /// Feeds `bytes`; returns how many messages started in them.
    fn feed(&mut self, mut bytes: &[u8]) -> u64 {
        let mut started = 0;
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let skip = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.remaining -= skip as u64;
                bytes = &bytes[skip..];
                continue;
            }
            self.header[self.header_len] = bytes[0];
            self.header_len += 1;
            bytes = &bytes[1..];
            if self.header_len == 4 {
                self.header_len = 0;
                self.remaining = u64::from(u32::from_be_bytes(self.header));
                started += 1;
            }
        }
        started
    }
}

/// Copies one direction as the mode says. Reads into chunks handed to a writer task, which
/// writes each one at its due time (at once, or after the delay in force when it was read).
/// `lost` is shared by both directions of a connection: once set, nothing is forwarded again.
/// `count` is set for the client-to-target direction.
async fn pump(
    mut from: OwnedReadHalf,
    to: Option<OwnedWriteHalf>,
    mut mode: watch::Receiver<Mode>,
    lost: Arc<AtomicBool>,
    count: Option<Arc<Counters>>,
) {
    // Bounded: a slow destination slows the reader down, as a plain copy would.
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>(64);
    let writer = to.map(|to| tokio::spawn(write_out(to, rx, mode.clone(), lost.clone())));
    let mut messages = MessageCounter::default();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if mode.wait_for(|m| *m != Mode::Paused).await.is_err() {
            break;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(count) = &count {
            count.bytes.fetch_add(n as u64, Ordering::Relaxed);
            count
                .messages
                .fetch_add(messages.feed(&buf[..n]), Ordering::Relaxed);
        }
        let now = *mode.borrow();
        if now == Mode::BlackHole {
            lost.store(true, Ordering::Relaxed);
        }
        if lost.load(Ordering::Relaxed) {
            continue;
        }
        let due = match now {
            Mode::Delay(by) => Instant::now() + by,
            _ => Instant::now(),
        };
        if tx.send((due, buf[..n].to_vec())).await.is_err() {
            break;
        }
    }
    // The writer flushes what is queued, then shuts its side down.
    drop(tx);
    if let Some(writer) = writer {
        let _ = writer.await;
    }
}

/// Writes each chunk at its due time, never while paused, and nothing once the stream lost
/// bytes; shuts the destination's write side down when the reader ends.
async fn write_out(
    mut to: OwnedWriteHalf,
    mut chunks: mpsc::Receiver<(Instant, Vec<u8>)>,
    mut mode: watch::Receiver<Mode>,
    lost: Arc<AtomicBool>,
) {
    while let Some((due, chunk)) = chunks.recv().await {
        tokio::time::sleep_until(due).await;
        if mode.wait_for(|m| *m != Mode::Paused).await.is_err() {
            return;
        }
        if *mode.borrow() == Mode::BlackHole {
            lost.store(true, Ordering::Relaxed);
        }
        if lost.load(Ordering::Relaxed) {
            continue;
        }
        if to.write_all(&chunk).await.is_err() {
            return;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on a free port; its address.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = conn.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    /// Writes `msg` and reads as many bytes back, within `within`; `None` on timeout.
    async fn round_trip(conn: &mut TcpStream, msg: &[u8], within: Duration) -> Option<Vec<u8>> {
        conn.write_all(msg).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        tokio::time::timeout(within, conn.read_exact(&mut back))
            .await
            .ok()
            .map(|r| {
                r.unwrap();
                back
            })
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut m = (body.len() as u32).to_be_bytes().to_vec();
        m.extend_from_slice(body);
        m
    }

    #[tokio::test]
    async fn forwards_and_counts_messages() {
        let proxy = TcpProxy::start(echo().await).await.unwrap();
        let mut conn = TcpStream::connect(proxy.addr()).await.unwrap();
        let two = [framed(b"hello"), framed(b"")].concat();
        assert_eq!(
            round_trip(&mut conn, &two, Duration::from_secs(5)).await,
            Some(two.clone())
        );
        let stats = proxy.stats();
        assert_eq!(stats.connections, 1);
        assert_eq!(stats.bytes, two.len() as u64);
        assert_eq!(stats.messages, 2);
    }

    #[tokio::test]
    async fn pause_holds_bytes_until_resume() {
        let proxy = TcpProxy::start(echo().await).await.unwrap();
        let mut conn = TcpStream::connect(proxy.addr()).await.unwrap();
        proxy.pause();
        assert_eq!(
            round_trip(&mut conn, b"held", Duration::from_millis(300)).await,
            None
        );
        proxy.resume();
        let mut back = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut back))
            .await
            .expect("the backlog arrives after resume")
            .unwrap();
        assert_eq!(&back, b"held");
    }

    #[tokio::test]
    async fn black_hole_loses_bytes_and_poisons_the_connection() {
        let proxy = TcpProxy::start(echo().await).await.unwrap();
        let mut old = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(
            round_trip(&mut old, b"ok", Duration::from_secs(5))
                .await
                .is_some()
        );
        proxy.black_hole();
        let mut during = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(
            round_trip(&mut old, b"lost", Duration::from_millis(300)).await,
            None
        );
        assert_eq!(
            round_trip(&mut during, b"lost", Duration::from_millis(300)).await,
            None
        );
        assert_eq!(proxy.stats().bytes, 2 + 4 + 4, "lost bytes are still read");
        proxy.forward();
        // Connections that lost bytes stay dead; new ones work.
        assert_eq!(
            round_trip(&mut old, b"more", Duration::from_millis(300)).await,
            None
        );
        let mut after = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(
            round_trip(&mut after, b"fine", Duration::from_secs(5)).await,
            Some(b"fine".to_vec())
        );
    }

    #[tokio::test]
    async fn a_refusing_target_resets_the_client() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let proxy = TcpProxy::start(closed).await.unwrap();
        let mut conn = TcpStream::connect(proxy.addr()).await.unwrap();
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .expect("the proxy gives up on the target at once");
        assert_eq!(
            read.map_err(|e| e.kind()),
            Err(io::ErrorKind::ConnectionReset)
        );
    }

    #[tokio::test]
    async fn delay_applies_to_each_direction() {
        let proxy = TcpProxy::start(echo().await).await.unwrap();
        let mut conn = TcpStream::connect(proxy.addr()).await.unwrap();
        proxy.delay(Duration::from_millis(200));
        let started = std::time::Instant::now();
        assert!(
            round_trip(&mut conn, b"slow", Duration::from_secs(5))
                .await
                .is_some()
        );
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(400), "{took:?}");
        proxy.forward();
        let started = std::time::Instant::now();
        assert!(
            round_trip(&mut conn, b"fast", Duration::from_secs(5))
                .await
                .is_some()
        );
        assert!(started.elapsed() < Duration::from_millis(300));
    }
}
