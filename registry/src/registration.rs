//! Server side: put `<prefix>/<service>/<host:port>` under a lease and keep it there.
//!
//! [`register`] grants a lease, puts the record and hands a keeper task the rest:
//!
//! ```text
//!            ┌──────────── session ────────────┐
//! register ─►│ keepalive every TTL/3            │── TTL 0 / stream error / timeout ──┐
//!            │ watch own key                    │── DELETE (operator, expiry) ───────┤
//!            └──────────────────────────────────┘                                    ▼
//!                        ▲                        repair: new client, grant, put, revoke old
//!                        └──── success ────────── (capped backoff with jitter, forever)
//! ```
//!
//! Each loss and each recovery is logged once; the retries in between only at debug level.
//! [`Registration::deregister`] stops the task, deletes the key and revokes the lease.
//! Dropping the [`Registration`] only stops the task: the lease then expires after its TTL.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use etcd_client::{EventType, PutOptions, WatchOptions};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use crate::{
    address::routable_address,
    backoff::{Backoff, Incident},
    connection::{Connection, Failure},
    error::{CallError, Error, validate_service_name},
    options::{EtcdOptions, RegisterOptions, ServeOptions},
    record::{InstanceRecord, instance_key},
    shutdown::{Shutdown, ShutdownIncoming},
};

/// A server that is bound and registered, not yet serving.
#[derive(Debug)]
pub struct Announced {
    /// Listener wrapped so `Shutdown` ends volo's accept loop.
    incoming: ShutdownIncoming,
    /// The live registration.
    registration: Registration,
}

impl Announced {
    /// The address written into etcd.
    pub fn registered_address(&self) -> SocketAddr {
        self.registration.address
    }

    /// What to pass to volo's `Server::run`, and what to deregister in the server's
    /// shutdown hook.
    pub fn into_parts(self) -> (ShutdownIncoming, Registration) {
        (self.incoming, self.registration)
    }
}

/// Computes the routable address of a bound listener, registers it under a lease and starts
/// keepalive. Binds nothing itself.
///
/// Fails when the service name is invalid, no routable address can be chosen, or etcd
/// cannot be reached within the dial timeout (`cannot reach etcd at ...`).
pub async fn announce(
    listener: TcpListener,
    options: &ServeOptions,
    shutdown: Shutdown,
) -> Result<Announced, Error> {
    validate_service_name(&options.service_name)?;
    let local = listener.local_addr().map_err(Error::Listener)?;
    let address = routable_address(local, options.advertise)?;
    let registration = register(
        &options.service_name,
        address,
        &options.etcd,
        &options.register,
    )
    .await?;
    Ok(Announced {
        incoming: ShutdownIncoming::new(listener, shutdown),
        registration,
    })
}

/// Registers `address` for `service` without any listener: for servers that bind
/// themselves (volo-http, volo-grpc) or register a proxy's address. Needs a Tokio runtime.
pub async fn register(
    service: &str,
    address: SocketAddr,
    etcd: &EtcdOptions,
    options: &RegisterOptions,
) -> Result<Registration, Error> {
    validate_service_name(service)?;
    if address.ip().is_unspecified() {
        return Err(Error::NoRoutableAddress(format!(
            "{address} is not routable; register a concrete IP"
        )));
    }
    let conn = Arc::new(Connection::new(etcd.clone(), "registration"));
    let key = instance_key(&etcd.prefix, service, address);
    let value = InstanceRecord::new(address, options.weight, options.tags.clone()).to_json();
    let ttl_secs = i64::try_from(options.ttl.as_millis().div_ceil(1000))
        .unwrap_or(i64::MAX)
        .max(1);

    let mut keeper = Keeper {
        conn,
        service: service.to_owned(),
        address: address.to_string(),
        key: key.clone(),
        value,
        requested_ttl: ttl_secs,
        lease: None,
    };
    let granted = keeper.first_put().await?;
    tracing::info!(key = %key, ttl_secs = granted.ttl, "registered in etcd");
    keeper.set_registered(true);
    crate::metrics::registry::registering(service);

    let (stop_tx, stop_rx) = oneshot::channel();
    let task = tokio::spawn(keeper.run(granted, stop_rx));
    Ok(Registration {
        key,
        address,
        dial_timeout: etcd.dial_timeout,
        linger: options.linger,
        stop: Some(stop_tx),
        task: Some(task),
    })
}

/// A live registration. See the module docs for what keeps it alive.
#[derive(Debug)]
pub struct Registration {
    /// `<prefix>/<service>/<host:port>`.
    key: String,
    /// The registered address.
    address: SocketAddr,
    /// Bounds each etcd call of `deregister`.
    dial_timeout: Duration,
    /// How long `deregister` keeps the server going after removing the key.
    linger: Duration,
    /// Sending asks the keeper to deregister; dropping it stops the keeper silently.
    stop: Option<oneshot::Sender<()>>,
    /// The keeper, awaited by `deregister`.
    task: Option<JoinHandle<()>>,
}

impl Registration {
    /// The etcd key of this instance.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The registered address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Deletes the key and revokes the lease (so clients stop choosing this instance before
    /// connections drain), stops the keepalive task, then waits [`RegisterOptions::linger`].
    /// Never fails: problems are logged (the lease expires by itself in the worst case).
    /// Takes at most about three dial timeouts, plus the linger. The future is
    /// `Send + 'static`, so it fits volo's
    /// `register_shutdown_hook(move || Box::pin(registration.deregister()))`: volo-thrift
    /// runs its shutdown hooks on SIGINT/SIGTERM while it still serves.
    pub async fn deregister(mut self) {
        let (Some(stop), Some(task)) = (self.stop.take(), self.task.take()) else {
            return;
        };
        if stop.send(()).is_err() {
            tracing::warn!(key = %self.key, "keepalive task already gone; lease will expire");
        }
        let bound = self.dial_timeout * 3 + Duration::from_secs(1);
        match tokio::time::timeout(bound, task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(key = %self.key, error = %e, "keepalive task failed"),
            Err(_) => tracing::warn!(
                key = %self.key,
                "deregistration did not finish within {bound:?}; lease will expire"
            ),
        }
        if !self.linger.is_zero() {
            tracing::info!(key = %self.key, linger = ?self.linger, "deregistered; serving on while polling clients catch up");
            tokio::time::sleep(self.linger).await;
        }
    }
}

/// Why a keepalive session ended.
enum SessionEnd {
    /// `deregister` was called.
    Deregister,
    /// The `Registration` was dropped.
    Dropped,
    /// The registration must be repaired; the text says why (for the log).
    Lost(String, Option<u64>),
}

/// Result of a successful grant + put.
struct Granted {
    /// TTL etcd granted (it may raise small values).
    ttl: i64,
    /// Revision of our put; the own-key watch starts after it.
    revision: i64,
}

/// The granted TTL as a duration (at least 1 s).
fn ttl_of(granted: &Granted) -> Duration {
    Duration::from_secs(u64::try_from(granted.ttl).unwrap_or(1).max(1))
}

/// State of the background task.
struct Keeper {
    /// Own connection (a registration never shares a client with discovery).
    conn: Arc<Connection>,
    /// The service and address registered, for metrics.
    service: String,
    address: String,
    /// Our key.
    key: String,
    /// Our JSON record.
    value: String,
    /// TTL to ask for, in seconds.
    requested_ttl: i64,
    /// The lease our key is attached to (if any).
    lease: Option<i64>,
}

impl Keeper {
    fn set_registered(&self, up: bool) {
        crate::metrics::registry::registered(&self.service, &self.address, up);
    }

    /// Grants a new lease, puts the key with it, and revokes the previous lease (best effort:
    /// the key no longer depends on it).
    async fn put_under_new_lease(&mut self) -> Result<Granted, Failure> {
        let (generation, mut client) = self.conn.client().await.map_err(Failure::Connect)?;
        let attempt = async {
            let grant = self
                .conn
                .call(client.lease_grant(self.requested_ttl, None))
                .await?;
            let put = self
                .conn
                .call(client.put(
                    self.key.clone(),
                    self.value.clone(),
                    Some(PutOptions::new().with_lease(grant.id())),
                ))
                .await?;
            let revision = put.header().map_or(0, |h| h.revision());
            Ok::<_, CallError>((grant.id(), grant.ttl(), revision))
        };
        match attempt.await {
            Ok((lease, ttl, revision)) => {
                if let Some(old) = self.lease.replace(lease).filter(|old| *old != lease) {
                    let _ = self.conn.call(client.lease_revoke(old)).await;
                }
                Ok(Granted { ttl, revision })
            }
            Err(e) => {
                self.conn.invalidate(generation).await;
                Err(Failure::Call(e, generation))
            }
        }
    }

    /// The first grant and put. With several endpoints, a start rides out a dead member or
    /// a leader election: "unreachable" failures are retried, each on the next endpoint, for
    /// up to twice the dial timeout. With one endpoint the first failure is the answer, so a
    /// misconfigured server stops at once.
    async fn first_put(&mut self) -> Result<Granted, Error> {
        let (dial_timeout, endpoints) = {
            let etcd = self.conn.options();
            (etcd.dial_timeout, etcd.endpoints.len())
        };
        let deadline = tokio::time::Instant::now() + 2 * dial_timeout;
        let mut backoff = Backoff::new();
        loop {
            let error = match self.put_under_new_lease().await {
                Ok(granted) => return Ok(granted),
                Err(failure) => self.conn.startup_error(failure),
            };
            let delay = backoff.next_delay();
            let retry = matches!(error, Error::Unreachable { .. })
                && endpoints > 1
                && tokio::time::Instant::now() + delay < deadline;
            if !retry {
                return Err(error);
            }
            tracing::debug!(key = %self.key, %error, "first registration failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    async fn run(mut self, mut granted: Granted, mut stop: oneshot::Receiver<()>) {
        // A session that held for a whole TTL ends an incident.
        let mut incident = Incident::new();
        loop {
            let lease = self.lease.unwrap_or_default();
            let started = tokio::time::Instant::now();
            let end = self.session(lease, &granted, &mut stop).await;
            let reason = match end {
                SessionEnd::Deregister => return self.stop(true).await,
                SessionEnd::Dropped => return self.stop(false).await,
                SessionEnd::Lost(reason, generation) => {
                    if let Some(g) = generation {
                        self.conn.invalidate(g).await;
                    }
                    reason
                }
            };
            self.set_registered(false);
            let held = started.elapsed() >= ttl_of(&granted);
            if incident.failed(held) {
                tracing::warn!(key = %self.key, %reason, "etcd registration lost; re-registering");
            } else {
                tracing::debug!(key = %self.key, %reason, "etcd registration lost again");
            }
            let mut attempts = 0u32;
            // A session that broke at once is not retried at once (no hot loop when, say,
            // the put works but the watch is refused).
            let mut delay = (!held).then(|| incident.next_delay());
            loop {
                if let Some(delay) = delay.take() {
                    tokio::select! {
                        biased;
                        r = &mut stop => return self.stop(r.is_ok()).await,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                attempts += 1;
                let repaired = tokio::select! {
                    biased;
                    r = &mut stop => return self.stop(r.is_ok()).await,
                    r = self.put_under_new_lease() => r,
                };
                match repaired {
                    Ok(g) => {
                        if incident.recovered() {
                            tracing::info!(key = %self.key, attempts, "registered in etcd again");
                        } else {
                            tracing::debug!(key = %self.key, attempts, "registered in etcd again");
                        }
                        granted = g;
                        self.set_registered(true);
                        crate::metrics::registry::reregistered(&self.service);
                        break;
                    }
                    Err(e) => {
                        let next = incident.next_delay();
                        tracing::debug!(key = %self.key, error = %e, delay = ?next, "re-registration failed; retrying");
                        delay = Some(next);
                    }
                }
            }
        }
    }

    /// Keeps `lease` alive and watches our key until something goes wrong or we are stopped.
    async fn session(
        &mut self,
        lease: i64,
        granted: &Granted,
        stop: &mut oneshot::Receiver<()>,
    ) -> SessionEnd {
        let lost = |why: String, g: u64| SessionEnd::Lost(why, Some(g));
        let (generation, mut client) = match self.conn.client().await {
            Ok(c) => c,
            Err(e) => return SessionEnd::Lost(format!("cannot connect: {e}"), None),
        };
        // Opening the stream sends one keepalive and checks its answer: an expired lease
        // fails here ("lease not found").
        let (mut keeper, mut responses) = match self.conn.call(client.lease_keep_alive(lease)).await
        {
            Ok(pair) => pair,
            Err(e) => return lost(format!("keepalive stream failed: {e}"), generation),
        };
        let mut own_key = match self
            .conn
            .call(client.watch(
                self.key.clone(),
                Some(WatchOptions::new().with_start_revision(granted.revision + 1)),
            ))
            .await
        {
            Ok(w) => w,
            Err(e) => return lost(format!("cannot watch own key: {e}"), generation),
        };

        let ttl = ttl_of(granted);
        let interval = (ttl / 3).max(Duration::from_millis(300));
        // An answer later than this means the connection is not healthy enough to hold a
        // lease of this TTL.
        let answer_timeout = self.conn.timeout().min(ttl * 2 / 3);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                r = &mut *stop => {
                    return match r {
                        Ok(()) => SessionEnd::Deregister,
                        Err(_) => SessionEnd::Dropped,
                    };
                }
                _ = tick.tick() => {
                    let sent = tokio::time::Instant::now();
                    if let Err(e) = keeper.keep_alive().await {
                        return lost(format!("keepalive send failed: {e}"), generation);
                    }
                    match crate::connection::call(answer_timeout, responses.message()).await {
                        Ok(Some(r)) if r.ttl() > 0 => {
                            crate::metrics::registry::keepalive(&self.service, sent.elapsed());
                        }
                        Ok(Some(_)) => return lost(format!("lease {lease:x} expired"), generation),
                        Ok(None) => return lost("keepalive stream closed".into(), generation),
                        Err(e) => return lost(format!("keepalive failed: {e}"), generation),
                    }
                }
                event = own_key.message() => match event {
                    Ok(Some(resp)) => {
                        if resp.canceled() {
                            return lost(
                                format!("watch on own key canceled: {}", resp.cancel_reason()),
                                generation,
                            );
                        }
                        if resp.events().iter().any(|e| e.event_type() == EventType::Delete) {
                            return SessionEnd::Lost("key was deleted".into(), None);
                        }
                    }
                    Ok(None) => return lost("watch on own key closed".into(), generation),
                    Err(e) => return lost(format!("watch on own key failed: {e}"), generation),
                },
            }
        }
    }

    /// Ends the task: deregisters when asked to, otherwise leaves the lease to expire.
    async fn stop(self, deregister: bool) {
        self.set_registered(false);
        if deregister {
            self.deregister().await;
        } else {
            tracing::debug!(key = %self.key, "registration dropped; lease will expire");
        }
    }

    /// Deletes the key and revokes the lease; one retry on a fresh client.
    async fn deregister(self) {
        for attempt in 0..2 {
            let (generation, mut client) = match self.conn.client().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(key = %self.key, error = %e, "cannot deregister");
                    continue;
                }
            };
            match self.conn.call(client.delete(self.key.clone(), None)).await {
                Ok(_) => {
                    // Clean-up only: the key is gone already, and a lease that expired
                    // meanwhile answers "lease not found".
                    if let Some(lease) = self.lease
                        && let Err(e) = self.conn.call(client.lease_revoke(lease)).await
                    {
                        tracing::debug!(key = %self.key, error = %e, "lease revoke failed");
                    }
                    tracing::info!(key = %self.key, "deregistered from etcd");
                    return;
                }
                Err(e) => {
                    self.conn.invalidate(generation).await;
                    if attempt == 1 {
                        tracing::warn!(key = %self.key, error = %e, "deregistration failed; lease will expire");
                    }
                }
            }
        }
    }
}
