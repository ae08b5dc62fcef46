//! Argon2id hashing on a small pool of dedicated threads.
//!
//! Why a pool of our own rather than `spawn_blocking`: a hash is 15 ms of memory-bound work that
//! allocates its whole memory cost (19 MiB by default). Unbounded, logins pile up threads, glibc
//! keeps every buffer, and throughput falls. Here at most `workers` hashes run at once, each worker
//! reuses one buffer while jobs keep coming (and frees it when idle), and at most `queue` requests
//! wait; beyond that callers are told at once that the service is busy instead of queueing without
//! end. Logins also say who they are for (their address and account): one client may hold only
//! its share of the pool (`queue_per_client` hashes waiting or running), so that a flood from one
//! address, or for one account, gets the 503s while everyone else is still served.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
};

use argon2::{
    Algorithm, Argon2, Block, Params, Version,
    password_hash::phc::{Output, ParamsString, PasswordHash, Salt},
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::oneshot;

use crate::{config::HashingSettings, domain::HashedPassword, metrics::HashMetrics};

const SALT_BYTES: usize = 16;
const OUTPUT_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every worker is busy and the queue is full.
    #[error("the password hashing queue is full")]
    Busy,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// The result of checking a password against a stored hash.
#[derive(Debug, PartialEq, Eq)]
pub enum Verification {
    /// The password matches. `rehashed` is a new hash with the current parameters when the
    /// stored one was made with others; the caller stores it.
    Valid {
        rehashed: Option<HashedPassword>,
    },
    Invalid,
}

enum Job {
    Hash {
        password: SecretString,
        reply: oneshot::Sender<Result<String, HashError>>,
    },
    Verify {
        password: SecretString,
        stored: String,
        reply: oneshot::Sender<Result<Verification, HashError>>,
    },
}

/// A handle on the hashing pool; cheap to clone. The workers stop when the last handle is gone.
#[derive(Clone)]
pub struct PasswordHasher {
    jobs: mpsc::SyncSender<(tracing::Span, Job)>,
    /// A hash of a random password, verified for unknown users so that their timing matches.
    dummy_hash: Arc<HashedPassword>,
    /// Hashes waiting or running per client, for the fair share.
    in_flight: Arc<Mutex<HashMap<String, usize>>>,
    per_client: usize,
    /// Places reserved by [`PasswordHasher::reserve`], at most `capacity` (the queue's length:
    /// a reserved job always finds room in the queue).
    places: Arc<AtomicUsize>,
    capacity: usize,
    busy_log: Arc<Mutex<BusyLog>>,
    metrics: HashMetrics,
}

/// How often refusals for a full queue are logged, at most.
const BUSY_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Default)]
struct BusyLog {
    refused: u64,
    logged_at: Option<std::time::Instant>,
}

impl PasswordHasher {
    /// Starts the workers. Computes the dummy hash on one of them, so call it from async code.
    pub async fn start(settings: HashingSettings) -> anyhow::Result<Self> {
        Self::start_with_metrics(settings, HashMetrics::default()).await
    }

    /// As [`PasswordHasher::start`], recording each hash's duration and the queue's depth.
    pub async fn start_with_metrics(
        settings: HashingSettings,
        metrics: HashMetrics,
    ) -> anyhow::Result<Self> {
        let params = Params::new(
            settings.memory_kib,
            settings.iterations,
            settings.parallelism,
            Some(OUTPUT_BYTES),
        )
        .map_err(|err| anyhow::anyhow!("invalid Argon2 parameters: {err}"))?;
        let (sender, receiver) = mpsc::sync_channel(settings.queue);
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..settings.workers.get() {
            let receiver = Arc::clone(&receiver);
            let params = params.clone();
            let metrics = metrics.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{index}"))
                .spawn(move || Worker::new(params, metrics).run(&receiver))?;
        }
        let mut hasher = Self {
            jobs: sender,
            dummy_hash: Arc::new(HashedPassword::from_phc(String::new())),
            in_flight: Arc::default(),
            per_client: settings.queue_per_client.get(),
            places: Arc::default(),
            capacity: settings.queue,
            busy_log: Arc::default(),
            metrics,
        };
        let mut random = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut random);
        let dummy_password = SecretString::from(base64_of(&random));
        hasher.dummy_hash = Arc::new(hasher.hash(dummy_password).await?);
        Ok(hasher)
    }

    /// A PHC string of `password` with the current parameters.
    pub async fn hash(&self, password: SecretString) -> Result<HashedPassword, HashError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Hash { password, reply })?;
        answer
            .await
            .map_err(worker_gone)?
            .map(HashedPassword::from_phc)
    }

    /// Checks `password` against `stored`, or against the dummy hash when there is no user, so
    /// that an unknown username costs as much as a wrong password.
    pub async fn verify(
        &self,
        password: SecretString,
        stored: Option<&HashedPassword>,
    ) -> Result<Verification, HashError> {
        let known = stored.is_some();
        let stored = stored.unwrap_or(&self.dummy_hash).expose().to_owned();
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Verify {
            password,
            stored,
            reply,
        })?;
        let verification = answer.await.map_err(worker_gone)??;
        Ok(if known {
            verification
        } else {
            Verification::Invalid
        })
    }

    /// As [`PasswordHasher::verify`], on behalf of `clients` (e.g. an address and an account):
    /// `Busy` at once when one of them already has its share of hashes waiting or running.
    pub async fn verify_for(
        &self,
        clients: &[String],
        password: SecretString,
        stored: Option<&HashedPassword>,
    ) -> Result<Verification, HashError> {
        self.reserve(clients)?.verify(password, stored).await
    }

    /// Takes a place in the pool for `clients` before anything else is done for them: `Busy` at
    /// once when the queue is full or one of them has its share, so that a login that would
    /// be refused costs no database work. The place is given back when the slot is dropped.
    pub fn reserve(&self, clients: &[String]) -> Result<HashSlot, HashError> {
        let place = Place::take(&self.places, self.capacity).ok_or_else(|| self.busy("queue"))?;
        let share = self.claim(clients)?;
        Ok(HashSlot {
            hasher: self.clone(),
            _place: place,
            _share: share,
        })
    }

    /// Takes one place in each client's share, or none when one of them has no room left.
    fn claim(&self, clients: &[String]) -> Result<Claim, HashError> {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if clients
            .iter()
            .any(|client| in_flight.get(client).copied().unwrap_or(0) >= self.per_client)
        {
            return Err(self.busy("client share"));
        }
        for client in clients {
            *in_flight.entry(client.clone()).or_insert(0) += 1;
        }
        Ok(Claim {
            in_flight: Arc::clone(&self.in_flight),
            clients: clients.to_vec(),
        })
    }

    /// A refusal for want of room, logged once per burst: a flood refused thousands of times
    /// a second writes a line every [`BUSY_LOG_INTERVAL`] with the count, not a line each.
    fn busy(&self, full: &'static str) -> HashError {
        let mut log = self.busy_log.lock().unwrap_or_else(|p| p.into_inner());
        log.refused += 1;
        let now = std::time::Instant::now();
        if log.logged_at.is_none_or(|at| now - at >= BUSY_LOG_INTERVAL) {
            tracing::warn!(
                refused = log.refused,
                full,
                "password hashing queue full: logins answered 503 (count since the last such line)"
            );
            log.refused = 0;
            log.logged_at = Some(now);
        }
        HashError::Busy
    }

    fn submit(&self, job: Job) -> Result<(), HashError> {
        // Counted before the send: a worker may take the job (and count it out) at once.
        self.metrics.queue_depth.increment(1.0);
        self.jobs
            .try_send((tracing::Span::current(), job))
            .inspect_err(|_| self.metrics.queue_depth.decrement(1.0))
            .map_err(|err| match err {
                mpsc::TrySendError::Full(_) => self.busy("queue"),
                mpsc::TrySendError::Disconnected(_) => {
                    HashError::Failed("the hashing workers have stopped".into())
                }
            })
    }
}

/// A place in the hashing pool taken by [`PasswordHasher::reserve`], for one verification.
pub struct HashSlot {
    hasher: PasswordHasher,
    _place: Place,
    _share: Claim,
}

impl HashSlot {
    /// As [`PasswordHasher::verify`], in the place reserved.
    pub async fn verify(
        self,
        password: SecretString,
        stored: Option<&HashedPassword>,
    ) -> Result<Verification, HashError> {
        self.hasher.verify(password, stored).await
    }
}

/// One of the queue's places, counted while a reserved login waits, hashes or is answered.
struct Place(Arc<AtomicUsize>);

impl Place {
    fn take(places: &Arc<AtomicUsize>, capacity: usize) -> Option<Self> {
        let taken = places.fetch_add(1, Ordering::AcqRel);
        let place = Place(Arc::clone(places));
        // Dropped at once when over: the count is given back.
        (taken < capacity).then_some(place)
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A login's place in its clients' shares, given back when it is answered (or abandoned).
struct Claim {
    in_flight: Arc<Mutex<HashMap<String, usize>>>,
    clients: Vec<String>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        for client in &self.clients {
            if let Some(count) = in_flight.get_mut(client) {
                *count -= 1;
                if *count == 0 {
                    in_flight.remove(client);
                }
            }
        }
    }
}

fn worker_gone(_: oneshot::error::RecvError) -> HashError {
    HashError::Failed("a hashing worker stopped before answering".into())
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

/// How long a hashing worker keeps its buffer with no job to do. A fresh buffer costs about
/// 6 ms of page faults, paid by the first login after a pause; under load the queue is never
/// empty that long, so the buffer is reused.
const IDLE_BEFORE_RELEASE: std::time::Duration = std::time::Duration::from_millis(250);

struct Worker {
    params: Params,
    /// Reused for every hash with the current parameters while jobs keep coming; freed when
    /// the worker has been idle for `IDLE_BEFORE_RELEASE`.
    memory: Vec<Block>,
    metrics: HashMetrics,
}

impl Worker {
    fn new(params: Params, metrics: HashMetrics) -> Self {
        Self {
            memory: Vec::new(),
            params,
            metrics,
        }
    }

    fn run(mut self, jobs: &Mutex<mpsc::Receiver<(tracing::Span, Job)>>) {
        // Hashing yields the CPU to request handling: at the lowest priority, a login storm
        // uses the cores the async workers leave idle instead of delaying every other request.
        if let Err(err) =
            thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min)
        {
            tracing::warn!(error = %err, "cannot lower the hashing thread's priority");
        }
        loop {
            // The lock is held only while waiting for the next job, never while hashing. The
            // wait is bounded so that an idle worker (whether it holds the lock or waits for
            // it) gets to free its buffer: workers take turns waiting while there is no work.
            let next = match jobs.lock() {
                Ok(receiver) => receiver.recv_timeout(IDLE_BEFORE_RELEASE),
                Err(_) => return,
            };
            let (span, job) = match next {
                Ok(next) => next,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // Back-to-back hashes reuse the buffer; an idle worker holds nothing (the
                    // allocator unmaps a block this size at once: see `crate::memory`).
                    self.memory = Vec::new();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            self.metrics.queue_depth.decrement(1.0);
            let _entered = span.enter();
            let started = std::time::Instant::now();
            match job {
                // Recorded before the answer, so that it is counted by the time a login is.
                Job::Hash { password, reply } => {
                    let hashed = self.hash(password.expose_secret().as_bytes());
                    self.metrics
                        .duration
                        .record(started.elapsed().as_secs_f64());
                    let _ = reply.send(hashed);
                }
                Job::Verify {
                    password,
                    stored,
                    reply,
                } => {
                    let verified = self.verify(password.expose_secret().as_bytes(), &stored);
                    self.metrics
                        .duration
                        .record(started.elapsed().as_secs_f64());
                    let _ = reply.send(verified);
                }
            }
        }
    }

    fn hash(&mut self, password: &[u8]) -> Result<String, HashError> {
        let mut salt = [0u8; SALT_BYTES];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut salt);
        let mut output = [0u8; OUTPUT_BYTES];
        let params = self.params.clone();
        self.compute(
            Algorithm::Argon2id,
            Version::V0x13,
            &params,
            password,
            &salt,
            &mut output,
        )?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params).map_err(failed)?,
            salt: Some(Salt::new(&salt).map_err(failed)?),
            hash: Some(Output::new(&output).map_err(failed)?),
        };
        Ok(phc.to_string())
    }

    fn verify(&mut self, password: &[u8], stored: &str) -> Result<Verification, HashError> {
        // A stored value that is not a hash we understand never matches; it is not a server error
        // the client could learn from, but an operator must hear of it.
        let Some(parsed) = ParsedHash::parse(stored) else {
            tracing::error!("a stored password hash is not an Argon2 PHC string");
            return Ok(Verification::Invalid);
        };
        let mut output = vec![0u8; parsed.expected.len()];
        self.compute(
            parsed.algorithm,
            parsed.version,
            &parsed.params,
            password,
            &parsed.salt,
            &mut output,
        )?;
        if !constant_time_eq(&output, &parsed.expected) {
            return Ok(Verification::Invalid);
        }
        let current = parsed.algorithm == Algorithm::Argon2id
            && parsed.version == Version::V0x13
            && parsed.params.m_cost() == self.params.m_cost()
            && parsed.params.t_cost() == self.params.t_cost()
            && parsed.params.p_cost() == self.params.p_cost()
            && parsed.expected.len() == OUTPUT_BYTES;
        let rehashed = if current {
            None
        } else {
            Some(HashedPassword::from_phc(self.hash(password)?))
        };
        Ok(Verification::Valid { rehashed })
    }

    fn compute(
        &mut self,
        algorithm: Algorithm,
        version: Version,
        params: &Params,
        password: &[u8],
        salt: &[u8],
        output: &mut [u8],
    ) -> Result<(), HashError> {
        let blocks = params.block_count();
        let argon2 = Argon2::new(algorithm, version, params.clone());
        if blocks <= self.params.block_count() {
            if self.memory.len() < self.params.block_count() {
                self.memory = vec![Block::default(); self.params.block_count()];
            }
            argon2
                .hash_password_into_with_memory(password, salt, output, &mut self.memory[..blocks])
                .map_err(failed)
        } else {
            // Larger than ours (an imported hash): a one-off buffer, freed right after.
            let mut memory = vec![Block::default(); blocks];
            argon2
                .hash_password_into_with_memory(password, salt, output, &mut memory)
                .map_err(failed)
        }
    }
}

struct ParsedHash {
    algorithm: Algorithm,
    version: Version,
    params: Params,
    salt: Vec<u8>,
    expected: Vec<u8>,
}

impl ParsedHash {
    fn parse(stored: &str) -> Option<Self> {
        let phc = PasswordHash::new(stored).ok()?;
        let algorithm = Algorithm::try_from(phc.algorithm.as_str()).ok()?;
        let version = match phc.version {
            Some(v) => Version::try_from(v).ok()?,
            None => Version::V0x10,
        };
        let params = Params::try_from(&phc).ok()?;
        Some(Self {
            algorithm,
            version,
            params,
            salt: phc.salt?.as_ref().to_vec(),
            expected: phc.hash?.as_bytes().to_vec(),
        })
    }
}

fn failed(err: impl std::fmt::Display) -> HashError {
    HashError::Failed(err.to_string())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;

    use super::*;

    fn settings() -> HashingSettings {
        HashingSettings {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
            workers: NonZeroUsize::new(2).unwrap(),
            queue: 16,
            queue_per_client: NonZeroUsize::new(16).unwrap(),
        }
    }

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hasher = PasswordHasher::start(settings()).await.unwrap();
        let hash = hasher.hash(secret("secret")).await.unwrap();
        assert!(
            hash.expose().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            hash.expose()
        );
        assert_eq!(
            hasher.verify(secret("secret"), Some(&hash)).await.unwrap(),
            Verification::Valid { rehashed: None }
        );
        assert_eq!(
            hasher.verify(secret("Secret"), Some(&hash)).await.unwrap(),
            Verification::Invalid
        );
    }

    #[tokio::test]
    async fn a_fastapi_hash_verifies_and_is_upgraded() {
        // Made by argon2-cffi with FastAPI's current parameters, for the password `secret`.
        let fastapi = &HashedPassword::from_phc(
            "$argon2id$v=19$m=65536,t=3,p=4$qpT4PnhNW9H7Sb19quyJ2g$XWj2pn4eKJFoNontTs32xTrgWWJIi10vtZy+t9DBpMo",
        );
        let hasher = PasswordHasher::start(settings()).await.unwrap();
        let Verification::Valid {
            rehashed: Some(upgraded),
        } = hasher
            .verify(secret("secret"), Some(fastapi))
            .await
            .unwrap()
        else {
            panic!("the FastAPI hash should verify and be re-hashed");
        };
        assert!(
            upgraded
                .expose()
                .starts_with("$argon2id$v=19$m=19456,t=2,p=1$")
        );
        assert_eq!(
            hasher
                .verify(secret("secret"), Some(&upgraded))
                .await
                .unwrap(),
            Verification::Valid { rehashed: None }
        );
        assert_eq!(
            hasher.verify(secret("wrong"), Some(fastapi)).await.unwrap(),
            Verification::Invalid
        );
    }

    #[tokio::test]
    async fn no_user_means_no_match_even_for_the_dummy() {
        let hasher = PasswordHasher::start(settings()).await.unwrap();
        assert_eq!(
            hasher.verify(secret("anything"), None).await.unwrap(),
            Verification::Invalid
        );
    }

    #[tokio::test]
    async fn a_garbled_stored_hash_never_matches() {
        let hasher = PasswordHasher::start(settings()).await.unwrap();
        assert_eq!(
            hasher
                .verify(
                    secret("secret"),
                    Some(&HashedPassword::from_phc("not a hash"))
                )
                .await
                .unwrap(),
            Verification::Invalid
        );
    }

    #[tokio::test]
    async fn a_client_over_its_share_is_busy_while_others_are_served() {
        let hasher = PasswordHasher::start(HashingSettings {
            queue_per_client: NonZeroUsize::new(2).unwrap(),
            ..settings()
        })
        .await
        .unwrap();
        let flooder = ["address|192.0.2.1".to_owned(), "account|a".to_owned()];
        let first = hasher.claim(&flooder).unwrap();
        let second = hasher.claim(&flooder).unwrap();
        assert!(matches!(hasher.claim(&flooder), Err(HashError::Busy)));
        // The same account from elsewhere is over its share too; another client is not.
        let elsewhere = ["address|192.0.2.2".to_owned(), "account|a".to_owned()];
        assert!(matches!(hasher.claim(&elsewhere), Err(HashError::Busy)));
        let other = ["address|192.0.2.3".to_owned(), "account|b".to_owned()];
        assert!(hasher.claim(&other).is_ok());
        // Answered logins give their place back.
        drop((first, second));
        assert!(hasher.claim(&flooder).is_ok());
        assert!(hasher.in_flight.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_full_queue_is_reported_as_busy() {
        let hasher = PasswordHasher::start(HashingSettings {
            workers: NonZeroUsize::MIN,
            queue: 1,
            ..settings()
        })
        .await
        .unwrap();
        let attempts: Vec<_> = (0..8)
            .map(|_| {
                let hasher = hasher.clone();
                tokio::spawn(async move { hasher.hash(secret("x")).await })
            })
            .collect();
        let mut busy = 0;
        for attempt in attempts {
            if let Err(HashError::Busy) = attempt.await.unwrap() {
                busy += 1;
            }
        }
        assert!(
            busy > 0,
            "eight hashes on one worker with a queue of one must overflow"
        );
    }

    #[test]
    fn comparison_needs_equal_lengths_and_bytes() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    /// A login takes its place in the queue before any other work: once every place is taken,
    /// the next is refused at once, and a dropped slot gives its place back.
    #[tokio::test]
    async fn places_are_reserved_up_to_the_queue_and_given_back() {
        let hasher = PasswordHasher::start(HashingSettings {
            queue: 3,
            queue_per_client: NonZeroUsize::new(3).unwrap(),
            ..settings()
        })
        .await
        .unwrap();
        let client = |n: usize| vec![format!("client-{n}")];
        let slots: Vec<HashSlot> = (0..3)
            .map(|n| hasher.reserve(&client(n)).unwrap())
            .collect();
        assert!(matches!(hasher.reserve(&client(9)), Err(HashError::Busy)));
        // Refused places are not counted: still exactly three taken.
        assert_eq!(hasher.places.load(Ordering::Acquire), 3);
        drop(slots);
        assert_eq!(hasher.places.load(Ordering::Acquire), 0);
        let slot = hasher.reserve(&client(9)).unwrap();
        assert_eq!(
            slot.verify(secret("pw"), None).await.unwrap(),
            Verification::Invalid
        );
        assert_eq!(hasher.places.load(Ordering::Acquire), 0);
    }

    /// A flood of refusals writes one line per interval, with the count, not one per refusal.
    #[tokio::test]
    async fn refusals_for_a_full_queue_are_logged_once_per_burst() {
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let hasher = PasswordHasher::start(HashingSettings {
            queue: 1,
            ..settings()
        })
        .await
        .unwrap();
        let lines = Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer({
                let lines = lines.clone();
                move || lines.clone()
            })
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let _slot = hasher.reserve(&["a".into()]).unwrap();
            for _ in 0..1000 {
                assert!(matches!(
                    hasher.reserve(&["b".into()]),
                    Err(HashError::Busy)
                ));
            }
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text.matches("password hashing queue full").count(),
            1,
            "{text}"
        );
        assert!(text.contains("refused=1 "), "{text}");
    }
}
