//! The connection loop: the app on hyper HTTP/1 connections that the gateway owns, so that a
//! slow or idle client is timed out, the number of connections is bounded, and a shutdown
//! refuses new connections at once while every request in flight is answered.
//!
//! volo-http's own `Server::run` sets none of these: a client that sends half its headers
//! holds its connection (and a file descriptor) forever, and after SIGTERM it keeps accepting.

use std::{
    cell::RefCell,
    convert::Infallible,
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use hyper_util::rt::TokioIo;
use metainfo::{METAINFO, MetaInfo};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{Notify, Semaphore, watch},
    task::JoinSet,
    time::Instant,
};
use volo::{Service, net::Address};
use volo_http::{body::Body, context::ServerContext, server::IntoResponse};

use crate::App;

/// Bounds on connections; every field is a gateway flag.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// From the first byte of a request to its last header: a slowloris client is cut off here.
    pub header_read_timeout: Duration,
    /// How long a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Connections served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Request headers (request line included) above this size get a bodyless 431 from the
    /// HTTP parser, which then closes the connection. The app answers a JSON 431 below it.
    pub max_header_bytes: usize,
    /// After SIGTERM, how long requests in flight get to finish.
    pub drain_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting (new
/// connections are refused), lets requests in flight finish within `drain_timeout`, and
/// closes idle connections.
pub async fn serve_until(
    app: App,
    listener: TcpListener,
    limits: &ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let app = Arc::new(app);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    // hyper's buffer bounds the head: it must hold at least 8 KiB (hyper's minimum).
    http.max_buf_size(limits.max_header_bytes.saturating_mul(4).max(8192));
    tokio::pin!(shutdown);
    let spawn = |connections: &mut JoinSet<()>, stream: TcpStream, peer, slot| {
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            app: app.clone(),
            peer: Address::from(peer),
            activity: Arc::new(Activity::new()),
        };
        let http = http.clone();
        let limits = limits.clone();
        let stopping = stopping.clone();
        connections.spawn(async move {
            connection.serve(stream, http, &limits, stopping).await;
            drop(slot);
        });
    };
    loop {
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, most often: wait for some to close.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        spawn(&mut connections, stream, peer, slot);
        // Reap finished connections so the set does not grow with every one ever served.
        while connections.try_join_next().is_some() {}
    }
    // Clients in the listen backlog have connected, and may have sent their request: serve
    // them (within the connection bound) rather than reset them when the listener closes.
    let backlog = listener.into_std();
    while let (Ok(listener), Ok(slot)) = (&backlog, slots.clone().try_acquire_owned()) {
        let Ok((stream, peer)) = listener.accept() else {
            break;
        };
        match stream
            .set_nonblocking(true)
            .and_then(|()| TcpStream::from_std(stream))
        {
            Ok(stream) => spawn(&mut connections, stream, peer, slot),
            Err(e) => tracing::warn!(error = %e, "could not serve a connection from the backlog"),
        }
    }
    // Refuse new connections from now on: the kernel answers RST to a closed port's SYN.
    drop(backlog);
    let _ = stop.send(true);
    let open = connections.len();
    if open > 0 {
        tracing::info!(connections = open, "draining");
    }
    let drained = tokio::time::timeout(limits.drain_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "requests still in flight after the drain timeout; closing them"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        // Without signal handlers the process stops the default way; serve until then.
        _ => std::future::pending().await,
    }
}

/// One client connection.
struct Connection {
    app: Arc<App>,
    peer: Address,
    activity: Arc<Activity>,
}

impl Connection {
    async fn serve(
        self,
        stream: TcpStream,
        http: hyper::server::conn::http1::Builder,
        limits: &ConnectionLimits,
        mut stopping: watch::Receiver<bool>,
    ) {
        let activity = self.activity.clone();
        let io = TokioIo::new(Watched {
            inner: stream,
            activity: activity.clone(),
        });
        let app = self.app.clone();
        let peer = self.peer.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
            let app = app.clone();
            let peer = peer.clone();
            let request = activity.request_started();
            // As volo-http's own server: a metainfo scope per request, which the RPC clients
            // read to forward values over TTHeader.
            METAINFO.scope(RefCell::new(MetaInfo::default()), async move {
                let mut cx = ServerContext::new(peer);
                let resp = match app.call(&mut cx, req.map(Body::from_incoming)).await {
                    Ok(resp) => resp,
                    Err(never) => match never {},
                };
                drop(request);
                Ok::<_, Infallible>(resp.into_response())
            })
        });
        let conn = http.serve_connection(io, service);
        tokio::pin!(conn);
        let expired = self.activity.expired(limits);
        tokio::pin!(expired);
        tokio::select! {
            // The connection first: bytes already arrived are read before a stop is seen.
            biased;
            result = conn.as_mut() => log_connection_end(result),
            why = &mut expired => {
                tracing::debug!(peer = %self.peer, "closing the connection: {why}");
            }
            // The guard `wait_for` returns is not `Send`: drop it at once.
            _ = async { stopping.wait_for(|stop| *stop).await.map(|_| ()) } => {
                // hyper closes a connection that has not begun a request at once. A client
                // that has just connected is about to send one: give it a moment, as Go's
                // http.Server does, so that it is answered rather than cut off.
                if !self.activity.ever_received() {
                    let first = tokio::time::timeout(FIRST_REQUEST_GRACE, self.activity.first_bytes());
                    tokio::select! {
                        biased;
                        result = conn.as_mut() => return log_connection_end(result),
                        _ = first => {}
                    }
                }
                // Answers what is in flight (with `connection: close`), then closes.
                conn.as_mut().graceful_shutdown();
                log_connection_end(conn.await);
            }
        }
    }
}

fn log_connection_end(result: Result<(), hyper::Error>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// After a stop, how long a connection that has received nothing yet gets to send its first
/// request.
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(2);

/// What the watchdog of one connection sees: requests in flight, and when the connection
/// became idle or started receiving a request head. Times are milliseconds since `start`.
struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    idle_since: AtomicU64,
    /// One more than the time the first byte of the next request arrived; 0 when none has.
    head_since: AtomicU64,
    /// Whether any byte has arrived on the connection, and its signal.
    ever_received: AtomicBool,
    first_bytes: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            ever_received: AtomicBool::new(false),
            first_bytes: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Bytes arrived: with no request in flight, they begin the next request's head.
    fn received(&self) {
        if !self.ever_received.swap(true, Ordering::Relaxed) {
            self.first_bytes.notify_waiters();
        }
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_since.load(Ordering::Relaxed) == 0
        {
            self.head_since.store(self.now() + 1, Ordering::Relaxed);
        }
    }

    fn ever_received(&self) -> bool {
        self.ever_received.load(Ordering::Relaxed)
    }

    /// Resolves once the connection has received a byte.
    async fn first_bytes(&self) {
        let notified = self.first_bytes.notified();
        tokio::pin!(notified);
        // Registered before the flag is read, so a byte arriving in between is not missed.
        notified.as_mut().enable();
        if !self.ever_received() {
            notified.await;
        }
    }

    /// hyper parsed a whole head; the returned guard marks the request finished when dropped.
    fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(0, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Resolves when the connection has been idle, or receiving one head, for too long.
    async fn expired(&self, limits: &ConnectionLimits) -> &'static str {
        let header = limits.header_read_timeout.as_millis() as u64;
        let idle = limits.idle_timeout.as_millis() as u64;
        loop {
            let now = self.now();
            let head = self.head_since.load(Ordering::Relaxed);
            let wake = if self.in_flight.load(Ordering::Relaxed) > 0 {
                // Bounded by the app's request timeout; look again later.
                now + header
            } else if head != 0 {
                if now >= head - 1 + header {
                    return "the request headers took too long";
                }
                head - 1 + header
            } else {
                let idle_until = self.idle_since.load(Ordering::Relaxed) + idle;
                if now >= idle_until {
                    return "idle for too long";
                }
                // A head that starts from now on expires no sooner than `now + header`.
                idle_until.min(now + header)
            };
            tokio::time::sleep_until(self.start + Duration::from_millis(wake)).await;
        }
    }
}

/// A request in flight on its connection.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        activity.idle_since.store(activity.now(), Ordering::Relaxed);
        activity.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The TCP stream, telling [`Activity`] when bytes arrive.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.received();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
