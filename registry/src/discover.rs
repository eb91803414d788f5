//! Client side: a Volo [`Discover`] fed by an etcd watch.
//!
//! The first `discover()` for a service name starts (once) a background task that lists
//! `<prefix>/<service>/` and then watches it from the listed revision + 1. Every change of
//! the instance list is pushed as a [`Change`] whose `all` is the complete new list, because
//! Volo's `WeightedRandomBalance` caches the first `discover()` answer per key forever and
//! only applies `Change`s. After a compaction, a cancelled watch or a lost connection the
//! task lists again and re-watches, with capped backoff; meanwhile the last known list is
//! kept (fail static).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex, OnceLock, Weak},
    time::Duration,
};

use async_broadcast::{InactiveReceiver, Receiver, Sender};
use etcd_client::{EventType, GetOptions, KeyValue, WatchOptions};
use tokio::sync::watch;
use volo::{
    FastStr,
    context::Endpoint,
    discovery::{Change, Discover, Instance},
};

use crate::{
    backoff::Incident,
    connection::{Connection, Failure},
    error::{CallError, Error, validate_service_name},
    options::{Credentials, EtcdOptions, TlsOptions},
    record::{InstanceRecord, sorted},
};

/// Capacity of the change channel. Overflow drops the oldest change, which is harmless:
/// every change carries the full list.
const CHANGE_CAPACITY: usize = 64;

/// After etcd lost its data (wiped, or restored from an older backup), how long the instances
/// known before stay listed while they register again; registrations retry within 2 s.
const CARRY_OVER: Duration = Duration::from_secs(15);

/// How long after answering `discover()` we check whether the list changed in between.
/// Volo's balancer stores the answer only after `discover()` returns and ignores changes for
/// keys it has not stored yet, so a change in that gap would be lost without this re-send.
const RESEND_WINDOW: Duration = Duration::from_millis(250);

/// Resolves Volo endpoints (by `Endpoint::service_name`) from etcd. Cheap to clone; clones
/// share the connection, the watches and the change channel.
#[derive(Clone)]
pub struct EtcdDiscover {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EtcdDiscover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdDiscover")
            .field("endpoints", &self.inner.conn.options().endpoints)
            .field("prefix", &self.inner.conn.options().prefix)
            .finish_non_exhaustive()
    }
}

struct Inner {
    /// Shared by all watch tasks of this discoverer.
    conn: Arc<Connection>,
    /// One entry per service name ever asked for.
    services: Mutex<HashMap<FastStr, Arc<ServiceState>>>,
    /// Where changes are broadcast; `watch()` hands out receivers.
    changes: Sender<Change<FastStr>>,
    /// Keeps the channel open while no balancer listens.
    _keep_open: InactiveReceiver<Change<FastStr>>,
    /// Dropped with the last handle: tells the watch tasks to stop.
    _alive: watch::Sender<()>,
    /// Receiver side of `_alive`, cloned into each task.
    alive: watch::Receiver<()>,
}

/// What is known about one service.
struct ServiceState {
    /// The current list; `loaded` turns true after the first successful list.
    snapshot: watch::Sender<Snapshot>,
    /// Why the last list+watch round failed, cleared by a successful list: what `discover()`
    /// reports when the first list does not come in time.
    failure: Mutex<Option<RoundFailure>>,
}

/// A failed round, kept for the error of a `discover()` that waited in vain.
#[derive(Clone, Debug)]
enum RoundFailure {
    /// The TLS handshake failed (reported as `Error::Tls`: it will not heal by waiting).
    Tls(String),
    /// Anything else, as text.
    Other(String),
}

impl ServiceState {
    fn set_failure(&self, failure: Option<RoundFailure>) {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = failure;
    }

    fn failure(&self) -> Option<RoundFailure> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[derive(Clone, Debug, Default)]
struct Snapshot {
    /// Whether etcd answered at least once.
    loaded: bool,
    /// Whether the last round failed before it could list: a `discover()` with nothing
    /// loaded then fails at once instead of making its caller wait for the dial timeout.
    failing: bool,
    /// Bumped on every published change.
    version: u64,
    /// Sorted by address.
    instances: Vec<Arc<Instance>>,
}

impl EtcdDiscover {
    /// A discoverer of its own. Does not block and does not fail when etcd is down: it
    /// connects in the background on first use (needs a Tokio runtime then). Invalid
    /// options surface as errors from `discover()`.
    pub fn new(options: EtcdOptions) -> Self {
        let (mut changes, rx) = async_broadcast::broadcast(CHANGE_CAPACITY);
        changes.set_overflow(true);
        changes.set_await_active(false);
        let (alive_tx, alive_rx) = watch::channel(());
        Self {
            inner: Arc::new(Inner {
                conn: Arc::new(Connection::new(options, "discovery")),
                services: Mutex::new(HashMap::new()),
                changes,
                _keep_open: rx.deactivate(),
                _alive: alive_tx,
                alive: alive_rx,
            }),
        }
    }

    /// The process-wide discoverer for these options (same endpoints, prefix and
    /// credentials), so every client of a service shares one connection and one watch.
    /// It lives while some handle does; the next call after that creates a new one.
    ///
    /// Its background tasks run on the runtime of the first `discover()` call, so share it
    /// only within one runtime (tests with a runtime each should use distinct options or
    /// [`EtcdDiscover::new`]).
    pub fn shared(options: &EtcdOptions) -> Self {
        /// Options that reach the same etcd, keys and identity: one discoverer serves them.
        #[derive(PartialEq, Eq, Hash)]
        struct Key {
            endpoints: Vec<String>,
            prefix: String,
            auth: Option<Credentials>,
            tls: Option<TlsOptions>,
        }
        type Registry = Mutex<HashMap<Key, Weak<Inner>>>;
        static SHARED: OnceLock<Registry> = OnceLock::new();
        let key = Key {
            endpoints: options.endpoints.clone(),
            prefix: options.clean_prefix().to_owned(),
            auth: options.auth.clone(),
            tls: options.tls.clone(),
        };
        let mut shared = SHARED
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(inner) = shared.get(&key).and_then(Weak::upgrade) {
            return Self { inner };
        }
        shared.retain(|_, w| w.strong_count() > 0);
        let d = Self::new(options.clone());
        shared.insert(key, Arc::downgrade(&d.inner));
        d
    }

    /// The instances currently known for `service`, starting its watch if needed and
    /// waiting (up to the dial timeout) for the first list.
    pub async fn instances(&self, service: &str) -> Result<Vec<Arc<Instance>>, Error> {
        validate_service_name(service)?;
        let name = FastStr::new(service);
        let state = self.inner.service(&name);
        let snapshot = self.inner.wait_loaded(&name, &state).await?;
        Ok(snapshot.instances)
    }
}

impl Inner {
    /// The state of `name`, spawning its watch task the first time.
    fn service(&self, name: &FastStr) -> Arc<ServiceState> {
        let mut services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = services.get(name) {
            return s.clone();
        }
        let state = Arc::new(ServiceState {
            snapshot: watch::Sender::new(Snapshot::default()),
            failure: Mutex::new(None),
        });
        services.insert(name.clone(), state.clone());
        let task = WatchTask {
            name: name.clone(),
            prefix: self.conn.options().service_prefix(name),
            conn: self.conn.clone(),
            state: state.clone(),
            changes: self.changes.clone(),
            warned: HashSet::new(),
            revision: 0,
            listed: BTreeMap::new(),
            carried: None,
        };
        let mut alive = self.alive.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = alive.changed() => {}
                _ = task.run() => {}
            }
        });
        state
    }

    async fn wait_loaded(&self, name: &str, state: &ServiceState) -> Result<Snapshot, Error> {
        let timeout = self.conn.timeout();
        let mut rx = state.snapshot.subscribe();
        let answered = tokio::time::timeout(timeout, rx.wait_for(|s| s.loaded || s.failing));
        if let Ok(Ok(s)) = answered.await
            && s.loaded
        {
            return Ok(s.clone());
        }
        let endpoints = self.conn.endpoints();
        Err(match state.failure() {
            Some(RoundFailure::Tls(reason)) => Error::Tls { endpoints, reason },
            failure => Error::NotLoaded {
                service: name.to_owned(),
                endpoints,
                timeout,
                reason: match failure {
                    Some(RoundFailure::Other(why)) => why,
                    _ => "no answer yet".to_owned(),
                },
            },
        })
    }
}

impl Discover for EtcdDiscover {
    type Key = FastStr;
    type Error = Error;

    async fn discover<'s>(&'s self, endpoint: &'s Endpoint) -> Result<Vec<Arc<Instance>>, Error> {
        let name = endpoint.service_name.clone();
        validate_service_name(&name)?;
        let state = self.inner.service(&name);
        let answered = self.inner.wait_loaded(&name, &state).await?;
        // Re-send the current list if it changed between this answer and the moment the
        // balancer stored it (see RESEND_WINDOW).
        let changes = self.inner.changes.clone();
        let mut rx = state.snapshot.subscribe();
        let seen = answered.version;
        let instances = answered.instances.clone();
        tokio::spawn(async move {
            tokio::time::sleep(RESEND_WINDOW).await;
            let now = rx.borrow_and_update().clone();
            if now.version != seen {
                let _ = changes.try_broadcast(change(name, &instances, &now.instances));
            }
        });
        Ok(answered.instances)
    }

    fn key(&self, endpoint: &Endpoint) -> FastStr {
        endpoint.service_name.clone()
    }

    fn watch(&self, _keys: Option<&[FastStr]>) -> Option<Receiver<Change<FastStr>>> {
        Some(self.inner.changes.new_receiver())
    }
}

/// The change from `prev` to `next`: `all` is `next`; an instance whose weight or tags
/// changed is in `updated`.
fn change(key: FastStr, prev: &[Arc<Instance>], next: &[Arc<Instance>]) -> Change<FastStr> {
    let before: HashMap<_, _> = prev.iter().map(|i| (&i.address, i)).collect();
    let after: HashMap<_, _> = next.iter().map(|i| (&i.address, i)).collect();
    let added = next
        .iter()
        .filter(|i| !before.contains_key(&i.address))
        .cloned()
        .collect();
    let removed = prev
        .iter()
        .filter(|i| !after.contains_key(&i.address))
        .cloned()
        .collect();
    let updated = next
        .iter()
        .filter(|i| {
            before
                .get(&i.address)
                .is_some_and(|p| p.as_ref() != i.as_ref())
        })
        .cloned()
        .collect();
    Change {
        key,
        all: next.to_vec(),
        added,
        updated,
        removed,
    }
}

/// A list+watch round that lasted this long counts as healthy: the next failure is a new
/// incident (logged as a warning) and retries start from the shortest delay again.
const HEALTHY_ROUND: Duration = Duration::from_secs(10);

/// Why a list+watch round ended.
enum RoundEnd {
    /// Connecting, a request or the stream failed.
    Failed(Failure),
    /// etcd cancelled the watch (compaction, leader loss); list again.
    Canceled(String),
}

impl From<Failure> for RoundEnd {
    fn from(failure: Failure) -> Self {
        RoundEnd::Failed(failure)
    }
}

impl RoundEnd {
    /// What to keep of this end for `discover()`'s error.
    fn failure(&self, conn: &Connection) -> RoundFailure {
        match self {
            RoundEnd::Failed(Failure::Connect(Error::Tls { reason, .. })) => {
                RoundFailure::Tls(reason.clone())
            }
            RoundEnd::Failed(Failure::Call(CallError::Etcd(e), _)) => {
                match conn.tls_failure_with(e) {
                    Some(reason) => RoundFailure::Tls(reason),
                    None => RoundFailure::Other(self.to_string()),
                }
            }
            _ => RoundFailure::Other(self.to_string()),
        }
    }
}

impl std::fmt::Display for RoundEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RoundEnd::Failed(failure) => write!(f, "{failure}"),
            RoundEnd::Canceled(why) => write!(f, "watch canceled: {why}"),
        }
    }
}

/// The background task of one service.
struct WatchTask {
    /// Service name (the change key).
    name: FastStr,
    /// `<prefix>/<service>/`.
    prefix: String,
    /// The discoverer's connection.
    conn: Arc<Connection>,
    /// Where the list is published.
    state: Arc<ServiceState>,
    /// Where changes are broadcast.
    changes: Sender<Change<FastStr>>,
    /// Keys (with their mod revision) already reported as unusable, to warn once each.
    warned: HashSet<(String, i64)>,
    /// The highest store revision seen: a listing below it means etcd lost its data.
    revision: i64,
    /// What etcd listed last (before carried-over instances are added).
    listed: BTreeMap<String, Arc<Instance>>,
    /// Instances known before etcd lost its data, listed until they register again or until
    /// the deadline, so that a wiped etcd does not empty every client's list at once.
    carried: Option<(BTreeMap<String, Arc<Instance>>, tokio::time::Instant)>,
}

impl WatchTask {
    async fn run(mut self) {
        crate::metrics::registry::watching(&self.name);
        let mut incident = Incident::new();
        loop {
            let started = tokio::time::Instant::now();
            let end = self.round(&mut incident).await;
            crate::metrics::registry::watch_restarted(&self.name);
            self.state.set_failure(Some(end.failure(&self.conn)));
            self.state
                .snapshot
                .send_if_modified(|s| !std::mem::replace(&mut s.failing, true));
            if let RoundEnd::Failed(Failure::Call(_, generation)) = &end {
                self.conn.invalidate(*generation).await;
            }
            let known = self.state.snapshot.borrow().instances.len();
            if !incident.failed(started.elapsed() >= HEALTHY_ROUND) {
                tracing::debug!(service = %self.name, reason = %end, "etcd discovery retry failed");
            } else {
                tracing::warn!(
                    service = %self.name,
                    reason = %end,
                    known_instances = known,
                    "etcd discovery interrupted; keeping the last known instances and retrying"
                );
            }
            // Also after a compaction: the first retry comes after ~100 ms.
            tokio::time::sleep(incident.next_delay()).await;
        }
    }

    /// Lists, publishes, then watches until something ends the watch.
    async fn round(&mut self, incident: &mut Incident) -> RoundEnd {
        let (generation, mut client) = match self.conn.client().await {
            Ok(c) => c,
            Err(e) => return Failure::Connect(e).into(),
        };
        let listed = match self
            .conn
            .call(client.get(self.prefix.clone(), Some(GetOptions::new().with_prefix())))
            .await
        {
            Ok(r) => r,
            Err(e) => return Failure::Call(e, generation).into(),
        };
        let revision = listed.header().map_or(0, |h| h.revision());
        self.state.set_failure(None);
        if revision < self.revision {
            tracing::warn!(
                service = %self.name,
                was = self.revision,
                now = revision,
                "etcd's revision went back: it lost its data; keeping the {} instances known \
                 before for up to {CARRY_OVER:?} while they register again",
                self.listed.len()
            );
            self.carried = Some((
                std::mem::take(&mut self.listed),
                tokio::time::Instant::now() + CARRY_OVER,
            ));
        }
        self.revision = revision;
        let mut current: BTreeMap<String, Arc<Instance>> = BTreeMap::new();
        for kv in listed.kvs() {
            self.apply_put(&mut current, kv);
        }
        self.publish(&current);
        if incident.recovered() {
            tracing::info!(
                service = %self.name,
                instances = current.len(),
                "etcd discovery resumed"
            );
        }
        let mut stream = match self
            .conn
            .call(
                client.watch(
                    self.prefix.clone(),
                    Some(
                        WatchOptions::new()
                            .with_prefix()
                            .with_start_revision(revision + 1),
                    ),
                ),
            )
            .await
        {
            Ok(s) => s,
            Err(e) => return Failure::Call(e, generation).into(),
        };
        loop {
            let carried_until = self.carried.as_ref().map(|(_, until)| *until);
            let message = tokio::select! {
                message = stream.message() => message,
                () = sleep_until_some(carried_until) => {
                    self.carried = None;
                    self.publish(&current);
                    continue;
                }
            };
            match message {
                Ok(Some(resp)) => {
                    if let Some(header) = resp.header() {
                        self.revision = self.revision.max(header.revision());
                    }
                    if resp.canceled() {
                        let why = if resp.compact_revision() > 0 {
                            format!("revision compacted up to {}", resp.compact_revision())
                        } else {
                            resp.cancel_reason().to_owned()
                        };
                        return RoundEnd::Canceled(why);
                    }
                    if resp.events().is_empty() {
                        continue;
                    }
                    for event in resp.events() {
                        let Some(kv) = event.kv() else { continue };
                        match event.event_type() {
                            EventType::Put => self.apply_put(&mut current, kv),
                            EventType::Delete => {
                                current.remove(&String::from_utf8_lossy(kv.key()).into_owned());
                            }
                        }
                    }
                    self.publish(&current);
                }
                Ok(None) => {
                    return Failure::Call(CallError::Closed("watch stream closed"), generation)
                        .into();
                }
                Err(e) => return Failure::Call(CallError::Etcd(e), generation).into(),
            }
        }
    }

    /// Adds or replaces the instance of `kv`; an unusable value removes the key and is
    /// reported once.
    fn apply_put(&mut self, current: &mut BTreeMap<String, Arc<Instance>>, kv: &KeyValue) {
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        match InstanceRecord::parse_instance(kv.value()) {
            Ok(instance) => {
                current.insert(key, Arc::new(instance));
            }
            Err(why) => {
                current.remove(&key);
                if self.warned.insert((key.clone(), kv.mod_revision())) {
                    tracing::warn!(service = %self.name, %key, %why, "skipping etcd record");
                }
            }
        }
    }

    /// Publishes the list (with any carried-over instances) and broadcasts a change when it
    /// differs from the last one.
    fn publish(&mut self, current: &BTreeMap<String, Arc<Instance>>) {
        self.listed = current.clone();
        let mut all = current.clone();
        if let Some((carried, _)) = &self.carried {
            for (key, instance) in carried {
                all.entry(key.clone()).or_insert_with(|| instance.clone());
            }
        }
        let next = sorted(all.into_values().collect());
        let mut previous = None;
        self.state.snapshot.send_if_modified(|s| {
            let recovered = std::mem::replace(&mut s.failing, false);
            if s.loaded && s.instances == next {
                return recovered;
            }
            previous = Some(std::mem::replace(&mut s.instances, next.clone()));
            s.loaded = true;
            s.version += 1;
            true
        });
        if let Some(prev) = previous {
            tracing::debug!(service = %self.name, instances = next.len(), "instances changed");
            crate::metrics::registry::instances(&self.name, next.len());
            let _ = self
                .changes
                .try_broadcast(change(self.name.clone(), &prev, &next));
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use volo::net::Address;

    fn inst(addr: &str, weight: u32) -> Arc<Instance> {
        Arc::new(Instance {
            address: Address::Ip(addr.parse().unwrap()),
            weight,
            tags: Default::default(),
        })
    }

    #[test]
    fn change_lists_added_removed_updated() {
        let prev = [inst("1.1.1.1:1", 10), inst("2.2.2.2:2", 10)];
        let next = [inst("2.2.2.2:2", 5), inst("3.3.3.3:3", 10)];
        let c = change("svc".into(), &prev, &next);
        assert_eq!(c.all.len(), 2);
        assert_eq!(c.added[0].address, next[1].address);
        assert_eq!(c.removed[0].address, prev[0].address);
        assert_eq!(c.updated[0].weight, 5);
    }

    #[tokio::test]
    async fn shared_is_one_per_options() {
        let a = EtcdDiscover::shared(&EtcdOptions::with_endpoints(["127.0.0.1:1"]));
        let b = EtcdDiscover::shared(&EtcdOptions::with_endpoints(["127.0.0.1:1"]));
        let c = EtcdDiscover::shared(&EtcdOptions::with_endpoints(["127.0.0.1:2"]));
        assert!(Arc::ptr_eq(&a.inner, &b.inner));
        assert!(!Arc::ptr_eq(&a.inner, &c.inner));
    }

    #[tokio::test]
    async fn rejects_bad_names_and_times_out_without_etcd() {
        let d = EtcdDiscover::new(EtcdOptions {
            endpoints: vec!["127.0.0.1:1".into()],
            dial_timeout: Duration::from_millis(300),
            ..EtcdOptions::default()
        });
        assert!(matches!(
            d.instances("a/b").await,
            Err(Error::InvalidServiceName { .. })
        ));
        let err = d.instances("user").await.unwrap_err();
        assert!(matches!(err, Error::NotLoaded { .. }), "{err}");
    }
}
