//! Password hashing with argon2id (the argon2 crate's defaults: OWASP's m=19 MiB, t=2, p=1).
//!
//! A hash costs a core for tens of milliseconds and 19 MiB, by design. Run unbounded, a burst
//! of logins takes every core and gigabytes, starving every other call, and keeps hashing for
//! callers that gave up long ago. So a [`Hasher`] owns a fixed pool of `concurrency` threads
//! that do all the hashing, each with its own 19 MiB of working memory, allocated once; calls
//! queue for them, and one that cannot finish in time is refused with [`PasswordError::Busy`]:
//! at once when the queue ahead of it already takes longer than its time (the caller's deadline,
//! at most `queue_timeout`), else when a thread takes it too late to finish. A hash that would
//! end after its caller gave up is work for no one, and its wait is latency for everyone behind
//! it.
//!
//! That time bound lets a burst queue, which is what queues are for, but under a sustained
//! flood it would keep the queue seconds long and every admitted call that slow. So the wait
//! can be controlled ([`QueueControl`], off by default) as in Facebook's "Fail at Scale" (CoDel
//! applied to a server's queue): once the queue has not been empty for its interval (say
//! 100 ms), a call is admitted only if the queue ahead of it takes no more than 5 ms beyond
//! the hashes running now, that is, if fewer calls wait than there are threads; the others are
//! refused at once, as busy. The control lasts until the interval passes without a refusal:
//! the queue it keeps short empties often, and letting a burst queue again each time it did
//! would bring the seconds-long waits back. Off by default because a closed loop of more
//! callers than threads (a batch job, a test suite) keeps a queue standing without any
//! flood, and would get refusals for answers.
//!
//! Why own the memory: allocated per hash, glibc's malloc keeps freed 19 MiB buffers around
//! (about 130 MiB in the main arena, 200 MiB in each thread's), and tokio's blocking pool adds
//! a thread, so an arena, whenever none is idle at the instant of a call.

use std::{
    num::NonZeroUsize,
    panic::AssertUnwindSafe,
    sync::{
        Arc, LazyLock, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use argon2::{
    Algorithm, Argon2, Block, Params, Version,
    password_hash::{self, Output, ParamsString, PasswordHash, SaltString, rand_core::OsRng},
};
use tokio::sync::oneshot;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("cannot hash the password: {0}")]
    Hash(password_hash::Error),
    #[error("stored hash is not a valid argon2 PHC string: {0}")]
    StoredHash(password_hash::Error),
    #[error("the hashing thread panicked")]
    Panicked,
    /// Could not be hashed within its time (the caller's deadline, at most `queue_timeout`):
    /// the service is overloaded with hashes.
    #[error("no hashing thread could finish it within {0:?}")]
    Busy(Duration),
}

/// A unit of hashing work, run by one of the pool's threads with that thread's memory.
type Job = Box<dyn FnOnce(&mut Memory) + Send>;

/// Hashes and verifies on its own `concurrency` threads. Clones share the pool; the threads
/// end once the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Hasher {
    /// The queue the pool's threads take work from.
    jobs: mpsc::Sender<Job>,
    /// The longest a call may take from its arrival to the end of its hash.
    queue_timeout: Duration,
    pace: Arc<Pace>,
}

/// `--hash-queue-control`: how long the queue must have been non-empty to stand (and stays
/// under control after a refusal), or `off`: a call may wait as long as its time allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueControl(Option<Duration>);

impl QueueControl {
    pub const OFF: Self = Self(None);

    pub fn standing_after(interval: Duration) -> Self {
        Self(Some(interval))
    }
}

impl std::str::FromStr for QueueControl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.trim().eq_ignore_ascii_case("off") {
            return Ok(Self::OFF);
        }
        match humantime::parse_duration(text.trim()) {
            Ok(interval) if !interval.is_zero() => Ok(Self::standing_after(interval)),
            Ok(_) => Err("a zero interval would refuse every call that waits; say `off`".into()),
            Err(e) => Err(format!(
                "`{text}` is neither `off` nor a duration like `100ms`: {e}"
            )),
        }
    }
}

impl std::fmt::Display for QueueControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(interval) => write!(f, "{}", humantime::format_duration(interval)),
            None => f.write_str("off"),
        }
    }
}

/// The longest a call may expect to wait for a thread while the queue is under control.
const CONTROLLED_WAIT: Duration = Duration::from_millis(5);

/// How busy the pool is: what a new call can expect.
#[derive(Debug)]
struct Pace {
    threads: usize,
    /// The interval of the control; `None`: off.
    standing: Option<Duration>,
    /// Calls queued and not yet taken by a thread.
    waiting: AtomicUsize,
    /// What `empty_us` and `refused_us` count from.
    origin: Instant,
    /// When the queue was last seen empty, in microseconds since `origin`.
    empty_us: AtomicU64,
    /// When a call was last refused, in microseconds since `origin`; 0: never.
    refused_us: AtomicU64,
    /// How long a hash has lately taken, in microseconds (a moving average; 0 before the
    /// first).
    hash_us: AtomicU64,
}

impl Pace {
    fn hash_time(&self) -> Duration {
        Duration::from_micros(self.hash_us.load(Ordering::Relaxed))
    }

    /// Whether a call arriving now, with `timeout` to finish, may queue. It is refused (and
    /// the refusal remembered) when the queue ahead of it (its length shared by the threads,
    /// times a hash) and its own hash take longer than `timeout`, or, while the queue is under
    /// control, when that wait is over [`CONTROLLED_WAIT`].
    fn admits(&self, timeout: Duration) -> bool {
        let ahead = self.waiting.load(Ordering::Relaxed) / self.threads;
        let wait = self.hash_time() * u32::try_from(ahead).unwrap_or(u32::MAX);
        let refused =
            wait + self.hash_time() > timeout || (wait > CONTROLLED_WAIT && self.controlled());
        if refused {
            self.refused();
        }
        !refused
    }

    /// Whether the control is on and the queue has not been empty for its interval, or a
    /// call was refused within it: a queue that refusals keep short empties often, and is
    /// still an overload's, not a burst's.
    fn controlled(&self) -> bool {
        let Some(standing) = self.standing else {
            return false;
        };
        let now = self.micros_now();
        let window = u64::try_from(standing.as_micros()).unwrap_or(u64::MAX);
        let refused = self.refused_us.load(Ordering::Relaxed);
        now.saturating_sub(self.empty_us.load(Ordering::Relaxed)) > window
            || (refused != 0 && now.saturating_sub(refused) < window)
    }

    fn refused(&self) {
        self.refused_us
            .store(self.micros_now().max(1), Ordering::Relaxed);
    }

    fn micros_now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn saw_empty(&self) {
        self.empty_us.store(self.micros_now(), Ordering::Relaxed);
    }

    fn took(&self, hash: Duration) {
        let us = u64::try_from(hash.as_micros()).unwrap_or(u64::MAX);
        // One eighth of the new one: steady under jitter, yet a slower machine shows in a
        // dozen hashes.
        let _ = self
            .hash_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(if old == 0 { us } else { old - old / 8 + us / 8 })
            });
    }
}

impl Hasher {
    /// A pool without queue control: each call may wait as long as its time allows.
    pub fn new(concurrency: NonZeroUsize, queue_timeout: Duration) -> Self {
        Self::with_control(concurrency, queue_timeout, QueueControl::OFF)
    }

    pub fn with_control(
        concurrency: NonZeroUsize,
        queue_timeout: Duration,
        control: QueueControl,
    ) -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let pace = Arc::new(Pace {
            threads: concurrency.get(),
            standing: control.0,
            waiting: AtomicUsize::new(0),
            origin: Instant::now(),
            empty_us: AtomicU64::new(0),
            refused_us: AtomicU64::new(0),
            hash_us: AtomicU64::new(0),
        });
        for n in 0..concurrency.get() {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("argon2id-{n}"))
                .spawn(move || {
                    let mut memory = Memory::default();
                    // The lock is held only to take the next job, not while it runs.
                    let next = || queue.lock().map_or(None, |q| q.recv().ok());
                    while let Some(job) = next() {
                        job(&mut memory);
                    }
                })
                .expect("spawn a hashing thread");
        }
        Self {
            jobs,
            queue_timeout,
            pace,
        }
    }

    /// The PHC string of a fresh argon2id hash with a random salt.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        self.run(move |memory| hash_with(memory, password.as_bytes()))
            .await?
    }

    /// Whether `password` matches `stored`. With no stored hash (unknown user) it still does
    /// the work of one verification, so the answer's timing does not tell which usernames
    /// exist.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, PasswordError> {
        self.run(move |memory| {
            let phc = stored.as_deref().unwrap_or(&DECOY);
            let matches = verify_with(memory, password.as_bytes(), phc)?;
            Ok(stored.is_some() && matches)
        })
        .await?
    }

    /// Runs `work` on a pool thread, if it can finish within the caller's deadline (at most
    /// `queue_timeout`). A call whose caller has gone by the time a thread takes it (its
    /// future dropped) is skipped.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Memory) -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let timeout = match rpc::runtime::deadline::remaining() {
            Some(left) => left.min(self.queue_timeout),
            None => self.queue_timeout,
        };
        if !self.pace.admits(timeout) {
            return Err(PasswordError::Busy(timeout));
        }
        self.enqueue(work, timeout)
            .await
            .map_err(|_| PasswordError::Panicked)?
    }

    /// Queues `work` now, to be finished within `timeout`; the answer arrives on the receiver.
    fn enqueue<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Memory) -> T + Send + 'static,
        timeout: Duration,
    ) -> oneshot::Receiver<Result<T, PasswordError>> {
        let (answer, answered) = oneshot::channel();
        let deadline = Instant::now() + timeout;
        let pace = self.pace.clone();
        if pace.waiting.fetch_add(1, Ordering::Relaxed) == 0 {
            pace.saw_empty();
        }
        let job: Job = Box::new(move |memory| {
            if pace.waiting.fetch_sub(1, Ordering::Relaxed) == 1 {
                pace.saw_empty();
            }
            if answer.is_closed() {
                return;
            }
            let started = Instant::now();
            let result = if started + pace.hash_time() > deadline {
                Err(PasswordError::Busy(timeout))
            } else {
                let result = std::panic::catch_unwind(AssertUnwindSafe(|| work(memory)))
                    .map_err(|_| PasswordError::Panicked);
                pace.took(started.elapsed());
                result
            };
            let _ = answer.send(result);
        });
        self.jobs
            .send(job)
            .expect("the pool's threads live as long as its senders");
        answered
    }
}

/// Argon2's working memory (m KiB blocks), reused by one thread for every hash it runs.
#[derive(Default)]
struct Memory(Vec<Block>);

impl Memory {
    /// The blocks `params` needs; reallocates only when they differ from the last call's.
    fn for_params(&mut self, params: &Params) -> &mut [Block] {
        self.0.resize(params.block_count(), Block::default());
        &mut self.0
    }
}

/// argon2id with the crate's default parameters and a random salt, as a PHC string.
fn hash_with(memory: &mut Memory, password: &[u8]) -> Result<String, PasswordError> {
    let argon2 = Argon2::default();
    let salt = SaltString::generate(&mut OsRng);
    let output = compute(&argon2, memory, password, &salt, Params::DEFAULT_OUTPUT_LEN)
        .map_err(PasswordError::Hash)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::default().into()),
        params: ParamsString::try_from(argon2.params()).map_err(PasswordError::Hash)?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Whether `password` hashes to `phc` under `phc`'s own algorithm, version and parameters.
fn verify_with(memory: &mut Memory, password: &[u8], phc: &str) -> Result<bool, PasswordError> {
    let parse = || {
        let stored = PasswordHash::new(phc)?;
        let (Some(salt), Some(expected)) = (stored.salt, stored.hash) else {
            return Err(password_hash::Error::PhcStringField);
        };
        let version = stored.version.map(Version::try_from).transpose()?;
        let argon2 = Argon2::new(
            Algorithm::try_from(stored.algorithm)?,
            version.unwrap_or_default(),
            Params::try_from(&stored)?,
        );
        Ok((argon2, SaltString::from_b64(salt.as_str())?, expected))
    };
    let (argon2, salt, expected) = parse().map_err(PasswordError::StoredHash)?;
    let computed = compute(&argon2, memory, password, &salt, expected.len())
        .map_err(PasswordError::StoredHash)?;
    // `Output`'s equality is constant-time.
    Ok(computed == expected)
}

/// The raw argon2 output of `len` bytes, computed in `memory`.
fn compute(
    argon2: &Argon2<'_>,
    memory: &mut Memory,
    password: &[u8],
    salt: &SaltString,
    len: usize,
) -> password_hash::Result<Output> {
    let mut raw_salt = [0; Output::MAX_LENGTH];
    let raw_salt = salt.as_salt().decode_b64(&mut raw_salt)?;
    let blocks = memory.for_params(argon2.params());
    Output::init_with(len, |out| {
        argon2
            .hash_password_into_with_memory(password, raw_salt, out, blocks)
            .map_err(Into::into)
    })
}

/// A hash of nothing anyone knows, verified against when the user does not exist.
static DECOY: LazyLock<String> = LazyLock::new(|| {
    hash_with(&mut Memory::default(), b"decoy password for unknown users").unwrap_or_default()
});

/// How many hashes to run at once by default: one per core, which is what keeps the
/// throughput of hashing while the runtime threads still get a turn.
pub fn default_concurrency() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::SeqCst;

    use super::*;

    fn threads(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap()
    }

    fn hasher() -> Hasher {
        Hasher::new(threads(2), Duration::from_secs(60))
    }

    #[tokio::test]
    async fn hashes_are_salted_argon2id_and_verify() {
        let hasher = hasher();
        let a = hasher.hash("correct horse".into()).await.unwrap();
        let b = hasher.hash("correct horse".into()).await.unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(!a.contains("correct horse"));
        assert!(
            hasher
                .verify("correct horse".into(), Some(a.clone()))
                .await
                .unwrap()
        );
        assert!(!hasher.verify("wrong horse".into(), Some(a)).await.unwrap());
    }

    /// Hashes stored before this module owned its memory were made by the argon2 crate's
    /// `PasswordHasher`; they keep verifying, and ours verify there.
    #[test]
    fn hashes_agree_with_the_argon2_crates_own() {
        use argon2::{PasswordHasher, PasswordVerifier};
        let mut memory = Memory::default();
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default()
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert!(verify_with(&mut memory, b"correct horse", &theirs).unwrap());
        assert!(!verify_with(&mut memory, b"wrong horse", &theirs).unwrap());
        let ours = hash_with(&mut memory, b"correct horse").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        assert_eq!(parsed.params.to_string(), "m=19456,t=2,p=1");
    }

    #[tokio::test]
    async fn an_unknown_user_never_verifies() {
        assert!(
            !hasher()
                .verify("decoy password for unknown users".into(), None)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn a_corrupt_stored_hash_is_an_error_not_a_match() {
        let verified = hasher().verify("x".into(), Some("not a hash".into())).await;
        assert!(matches!(verified, Err(PasswordError::StoredHash(_))));
    }

    /// Keeps the only thread of `hasher` busy until the sender returned is dropped; the
    /// receiver then answers `true`.
    async fn hold_the_thread(
        hasher: &Hasher,
    ) -> (
        mpsc::Sender<()>,
        oneshot::Receiver<Result<bool, PasswordError>>,
    ) {
        let (release, held) = mpsc::channel::<()>();
        let (start, started) = oneshot::channel();
        let busy = hasher.enqueue(
            move |_| {
                let _ = start.send(());
                held.recv().is_err()
            },
            Duration::from_secs(60),
        );
        started.await.expect("the busy job starts");
        (release, busy)
    }

    #[tokio::test]
    async fn a_call_that_waited_too_long_is_refused_and_a_gone_one_skipped() {
        let hasher = Hasher::new(threads(1), Duration::from_secs(60));
        let (long, short) = (Duration::from_secs(60), Duration::from_millis(1));
        let (release, busy) = hold_the_thread(&hasher).await;
        let late = hasher.enqueue(|_| "hashed", short);
        let gone_ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ran = gone_ran.clone();
        let gone = hasher.enqueue(move |_| ran.store(true, SeqCst), long);
        drop(gone);
        // Past the 1 ms that `late` may wait, while the thread is busy.
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(release);
        assert!(busy.await.unwrap().unwrap());
        let late = late.await.unwrap();
        assert!(matches!(late, Err(PasswordError::Busy(_))), "{late:?}");
        // The one thread runs jobs in order: once a later one is answered, `gone` is behind it.
        hasher
            .enqueue(|_| (), long)
            .await
            .expect("an answer")
            .unwrap();
        assert!(
            !gone_ran.load(SeqCst),
            "a call whose caller left is skipped"
        );
    }

    #[tokio::test]
    async fn a_call_whose_caller_gives_up_first_is_shed_at_its_deadline() {
        let hasher = Hasher::new(threads(1), Duration::from_secs(60));
        let (release, busy) = hold_the_thread(&hasher).await;
        // The caller waits 50 ms, far less than the 60 s queue timeout.
        let queued = hasher.clone();
        let call = rpc::runtime::deadline::within(Duration::from_millis(50), async move {
            queued.run(|_| "hashed").await
        });
        let waiting = tokio::spawn(call);
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(release);
        assert!(busy.await.unwrap().unwrap());
        let shed = waiting.await.unwrap();
        assert!(
            matches!(shed, Err(PasswordError::Busy(d)) if d <= Duration::from_millis(50)),
            "{shed:?}"
        );
    }

    /// With hashes taking 100 ms and two calls queued behind a busy thread, a caller with
    /// 150 ms left is refused at once, not after waiting for its place.
    #[tokio::test]
    async fn a_call_the_queue_cannot_finish_in_time_is_refused_at_once() {
        let hasher = Hasher::new(threads(1), Duration::from_secs(60));
        hasher.pace.took(Duration::from_millis(100));
        let (release, busy) = hold_the_thread(&hasher).await;
        let queued: Vec<_> = (0..2)
            .map(|_| hasher.enqueue(|_| (), Duration::from_secs(60)))
            .collect();
        let queue = hasher.clone();
        let call = rpc::runtime::deadline::within(Duration::from_millis(150), async move {
            queue.run(|_| "hashed").await
        });
        // Refused without a thread: the busy one is held until after the answer.
        let refused = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("an answer while every thread is busy");
        assert!(
            matches!(refused, Err(PasswordError::Busy(d)) if d <= Duration::from_millis(150)),
            "{refused:?}"
        );
        drop(release);
        assert!(busy.await.unwrap().unwrap());
        for job in queued {
            job.await.unwrap().unwrap();
        }
    }

    /// With the control on, a burst queues within its time; a queue that has stood for the
    /// control's interval admits a call only if a thread will be free for it at once, and so
    /// it does for the interval after a refusal, although the queue emptied; then the burst
    /// rule again.
    #[tokio::test]
    async fn a_standing_queue_refuses_what_a_burst_may_queue() {
        const STANDING: Duration = Duration::from_millis(100);
        let hasher = Hasher::with_control(
            threads(1),
            Duration::from_secs(60),
            QueueControl::standing_after(STANDING),
        );
        hasher.pace.took(Duration::from_millis(10));
        let queue_behind_a_held_thread = || async {
            let (release, busy) = hold_the_thread(&hasher).await;
            let queued = hasher.enqueue(|_| (), Duration::from_secs(60));
            (release, busy, queued)
        };
        let admits = || hasher.pace.admits(Duration::from_secs(60));

        let (release, busy, queued) = queue_behind_a_held_thread().await;
        assert!(admits(), "a burst: the queue was empty a moment ago");
        // The queue, held by the busy thread, has not emptied for longer than STANDING.
        tokio::time::sleep(STANDING + Duration::from_millis(20)).await;
        assert!(!admits(), "a standing queue");
        assert_ne!(
            hasher.pace.refused_us.load(Ordering::Relaxed),
            0,
            "remembered"
        );
        drop(release);
        assert!(busy.await.unwrap().unwrap());
        queued.await.unwrap().unwrap();

        let (release, busy, queued) = queue_behind_a_held_thread().await;
        // As if the refusal above had been a moment ago (however long the handover took).
        hasher.pace.refused();
        assert!(
            !admits(),
            "the queue emptied, but a call was refused just now"
        );
        drop(release);
        assert!(busy.await.unwrap().unwrap());
        queued.await.unwrap().unwrap();

        tokio::time::sleep(STANDING + Duration::from_millis(20)).await;
        let (release, busy, queued) = queue_behind_a_held_thread().await;
        assert!(
            admits(),
            "a burst again: no refusal, the queue empty a moment ago"
        );
        drop(release);
        assert!(busy.await.unwrap().unwrap());
        queued.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn without_control_a_standing_queue_admits_what_its_time_allows() {
        let hasher = Hasher::new(threads(1), Duration::from_secs(60));
        hasher.pace.took(Duration::from_millis(10));
        let (release, busy) = hold_the_thread(&hasher).await;
        let queued = hasher.enqueue(|_| (), Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(hasher.pace.admits(Duration::from_secs(60)));
        assert!(
            !hasher.pace.admits(Duration::from_millis(15)),
            "one hash ahead and its own: 20 ms"
        );
        drop(release);
        assert!(busy.await.unwrap().unwrap());
        queued.await.unwrap().unwrap();
    }

    #[test]
    fn queue_control_parses() {
        assert_eq!("off".parse(), Ok(QueueControl::OFF));
        assert_eq!(
            "100ms".parse(),
            Ok(QueueControl::standing_after(Duration::from_millis(100)))
        );
        assert_eq!(
            QueueControl::standing_after(Duration::from_millis(100)).to_string(),
            "100ms"
        );
        assert!("0s".parse::<QueueControl>().is_err());
        assert!("soon".parse::<QueueControl>().is_err());
    }

    #[tokio::test]
    async fn at_most_concurrency_hashes_run_at_once() {
        let hasher = Hasher::new(threads(2), Duration::from_secs(60));
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let (hasher, running, most) = (hasher.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    hasher
                        .run(move |memory| {
                            let now = running.fetch_add(1, SeqCst) + 1;
                            most.fetch_max(now, SeqCst);
                            hash_with(memory, b"x").unwrap();
                            running.fetch_sub(1, SeqCst);
                        })
                        .await
                })
            })
            .collect();
        for call in calls {
            call.await.unwrap().unwrap();
        }
        let most = most.load(SeqCst);
        assert!((1..=2).contains(&most), "{most} hashes ran at once");
    }
}
