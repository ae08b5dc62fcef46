//! Database faults: which failures are the database's rather than the request's, the gate that
//! answers at once while a PostgreSQL server is unreachable (and the probe that opens it again),
//! and the log that reports an outage once rather than once per request.
//!
//! Every query runs through [`Connection`], which wraps SeaORM's pool. On SQLite it only
//! forwards: the file is local, and a full disk or a lock held too long fails one statement,
//! not the next read. On PostgreSQL each operation also races the gate: when the server is found
//! unreachable, waiting operations end at once (the pool would otherwise retry the refused
//! connection until its acquire timeout) and new ones are refused without touching the pool.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use sea_orm::{
    AccessMode, ConnAcquireErr, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    DbBackend, DbErr, ExecResult, IsolationLevel, QueryResult, RuntimeErr, Statement,
    TransactionError, TransactionOptions, TransactionTrait, sqlx,
};
use tokio::sync::watch;

/// How long an operation runs before the gate checks that the server can still be reached: a
/// stopped server refuses connections, and the pool retries them silently until its acquire
/// timeout.
const SUSPECT_AFTER: Duration = Duration::from_millis(300);
/// How long a probe waits for the server: a fresh connection, or a ping through the pool.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// The pause between probes, both while closed and between two suspicions.
const PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// While failures go on, a count is logged at most this often.
const SUMMARY_EVERY: Duration = Duration::from_secs(5);
/// A burst of failures ends after this long without one.
const QUIET_AFTER: Duration = Duration::from_secs(2);

/// What a failed database operation says about the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fault {
    /// The request's or the program's: retrying will not help.
    Query,
    /// The database cannot serve now (busy, full, out of resources, a pool timeout); the same
    /// request may succeed later.
    Unavailable,
    /// The server cannot be reached: refused or lost connections, a server shutting down.
    Unreachable,
}

/// The fault behind `err`, read from the sqlx error inside SeaORM's.
pub(super) fn classify(err: &DbErr) -> Fault {
    match err {
        // Failed connects (SeaORM's own "Disconnected" and the gate's refusal included).
        DbErr::Conn(RuntimeErr::SqlxError(inner)) => match classify_sqlx(inner) {
            Fault::Query => Fault::Unreachable,
            fault => fault,
        },
        DbErr::Conn(_) => Fault::Unreachable,
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout) => Fault::Unavailable,
        DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed) => Fault::Unreachable,
        DbErr::Exec(RuntimeErr::SqlxError(inner)) | DbErr::Query(RuntimeErr::SqlxError(inner)) => {
            classify_sqlx(inner)
        }
        _ => Fault::Query,
    }
}

fn classify_sqlx(err: &sqlx::Error) -> Fault {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Fault::Unreachable,
        sqlx::Error::PoolTimedOut => Fault::Unavailable,
        sqlx::Error::Database(db) => {
            if db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some()
            {
                classify_sqlstate(&db.code().unwrap_or_default())
            } else if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                db.code()
                    .and_then(|code| code.parse::<i32>().ok())
                    .map_or(Fault::Query, classify_sqlite_code)
            } else {
                Fault::Query
            }
        }
        _ => Fault::Query,
    }
}

/// PostgreSQL's SQLSTATE classes (appendix A of its manual).
fn classify_sqlstate(code: &str) -> Fault {
    match code.get(..2) {
        // connection exception; operator intervention (admin shutdown, crash shutdown,
        // cannot connect now, …).
        Some("08" | "57") => Fault::Unreachable,
        // insufficient resources (disk full, out of memory, too many connections); system error
        // (I/O error).
        Some("53" | "58") => Fault::Unavailable,
        _ => Fault::Query,
    }
}

/// SQLite's primary result codes (the low byte of the extended code sqlx reports).
pub(super) fn classify_sqlite_code(extended: i32) -> Fault {
    const BUSY: i32 = 5;
    const LOCKED: i32 = 6;
    const NOMEM: i32 = 7;
    const READONLY: i32 = 8;
    const IOERR: i32 = 10;
    const FULL: i32 = 13;
    const CANTOPEN: i32 = 14;
    const PROTOCOL: i32 = 15;
    match extended & 0xff {
        BUSY | LOCKED | NOMEM | READONLY | IOERR | FULL | CANTOPEN | PROTOCOL => Fault::Unavailable,
        _ => Fault::Query,
    }
}

/// The error of an operation the gate refused or cut short.
fn refused() -> DbErr {
    DbErr::Conn(RuntimeErr::Internal(
        "the database server is unreachable; answered without waiting for it".into(),
    ))
}

/// SeaORM's pool behind the gate. Every query of the store goes through it.
#[derive(Clone, Debug)]
pub struct Connection {
    db: DatabaseConnection,
    gate: Option<Arc<Gate>>,
}

impl Connection {
    pub(super) fn new(db: DatabaseConnection) -> Self {
        let gate = (db.get_database_backend() == DbBackend::Postgres).then(|| {
            Arc::new(Gate {
                open: watch::Sender::new(true),
                probing: AtomicBool::new(false),
                db: db.clone(),
            })
        });
        Self { db, gate }
    }

    /// The pool itself, ungated: for the migrations at start.
    pub(super) fn pool(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Whether the database answers (without waiting while the gate is closed).
    pub(super) async fn ping(&self) -> Result<(), DbErr> {
        self.guarded(self.db.ping()).await
    }

    /// Closes the pool: every later operation fails.
    pub async fn close(self) -> Result<(), DbErr> {
        self.db.close().await
    }

    /// Runs `operation`, unless the gate is closed; ends it when the gate closes meanwhile.
    async fn guarded<T>(
        &self,
        operation: impl Future<Output = Result<T, DbErr>>,
    ) -> Result<T, DbErr> {
        let Some(gate) = &self.gate else {
            return operation.await;
        };
        let mut open = gate.open.subscribe();
        if !*open.borrow_and_update() {
            return Err(refused());
        }
        let suspicion = tokio::time::sleep(SUSPECT_AFTER);
        tokio::pin!(operation, suspicion);
        let mut suspected = false;
        let result = loop {
            tokio::select! {
                result = &mut operation => break result,
                changed = open.changed() => {
                    if changed.is_err() || !*open.borrow_and_update() {
                        break Err(refused());
                    }
                }
                () = &mut suspicion, if !suspected => {
                    suspected = true;
                    gate.suspect();
                }
            }
        };
        if let Err(err) = &result
            && classify(err) == Fault::Unreachable
        {
            gate.suspect();
        }
        result
    }

    /// The gate alone, for a transaction run by a closure (which owns its connection once
    /// begun).
    fn admit_any<E>(&self) -> Result<(), TransactionError<E>> {
        match &self.gate {
            Some(gate) if !*gate.open.borrow() => Err(TransactionError::Connection(refused())),
            _ => Ok(()),
        }
    }
}

/// Whether requests may use a PostgreSQL server, and the probes that decide it.
#[derive(Debug)]
struct Gate {
    /// `true` while the server is thought reachable.
    open: watch::Sender<bool>,
    /// One probe at a time, whichever kind.
    probing: AtomicBool,
    db: DatabaseConnection,
}

impl Gate {
    /// Something looked like an unreachable server: an operation failed so, or has run for long.
    /// A fresh connection (not the pool, which may only be busy) tells; closes the gate if it
    /// fails, and probes until the server is back.
    fn suspect(self: &Arc<Self>) {
        if !*self.open.borrow() || self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let gate = Arc::downgrade(self);
        tokio::spawn(async move {
            let Some(strong) = gate.upgrade() else { return };
            if let Err(cause) = strong.server_reachable().await {
                // Logged first: the refusals that follow are logged as what they are.
                tracing::warn!(
                    error = %cause,
                    "the database server is unreachable: requests are answered 503 at once until it is back"
                );
                strong.open.send_replace(false);
                let since = Instant::now();
                drop(strong);
                if recovered(&gate).await {
                    tracing::info!(
                        after_ms = since.elapsed().as_millis() as u64,
                        "the database server is reachable again: requests are served"
                    );
                }
            } else {
                // Spaces the probes of a busy but healthy server.
                drop(strong);
                tokio::time::sleep(PROBE_INTERVAL).await;
            }
            if let Some(gate) = gate.upgrade() {
                gate.probing.store(false, Ordering::Release);
            }
        });
    }

    /// Whether a new connection to the server opens (or is refused by a server that runs, for
    /// example for having too many connections already); else why not.
    async fn server_reachable(&self) -> Result<(), String> {
        use sqlx::Connection as _;

        let options = self.db.get_postgres_connection_pool().connect_options();
        let attempt = sqlx::postgres::PgConnection::connect_with(&options);
        match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
            Ok(Ok(connection)) => {
                let _ = connection.close().await;
                Ok(())
            }
            Ok(Err(err)) if classify_sqlx(&err) == Fault::Unreachable => Err(err.to_string()),
            Ok(Err(_)) => Ok(()),
            Err(_) => Err(format!(
                "no connection within {} ms",
                PROBE_TIMEOUT.as_millis()
            )),
        }
    }
}

/// Pings through the pool until it answers, then opens the gate; `false` when the store went
/// away or its pool was closed first.
async fn recovered(gate: &Weak<Gate>) -> bool {
    loop {
        tokio::time::sleep(PROBE_INTERVAL).await;
        let Some(gate) = gate.upgrade() else {
            return false;
        };
        if gate.db.get_postgres_connection_pool().is_closed() {
            return false;
        }
        if let Ok(Ok(())) = tokio::time::timeout(PROBE_TIMEOUT, gate.db.ping()).await {
            gate.open.send_replace(true);
            return true;
        }
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Connection {
    fn get_database_backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.guarded(self.db.execute_raw(stmt)).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.guarded(self.db.execute_unprepared(sql)).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.guarded(self.db.query_one_raw(stmt)).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.guarded(self.db.query_all_raw(stmt)).await
    }
}

#[async_trait::async_trait]
impl TransactionTrait for Connection {
    type Transaction = DatabaseTransaction;

    async fn begin(&self) -> Result<DatabaseTransaction, DbErr> {
        self.guarded(self.db.begin()).await
    }

    async fn begin_with_config(
        &self,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<DatabaseTransaction, DbErr> {
        self.guarded(self.db.begin_with_config(isolation_level, access_mode))
            .await
    }

    async fn begin_with_options(
        &self,
        options: TransactionOptions,
    ) -> Result<DatabaseTransaction, DbErr> {
        self.guarded(self.db.begin_with_options(options)).await
    }

    async fn transaction<F, T, E>(&self, callback: F) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c DatabaseTransaction,
            ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        self.admit_any()?;
        self.db.transaction(callback).await
    }

    async fn transaction_with_config<F, T, E>(
        &self,
        callback: F,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c DatabaseTransaction,
            ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        self.admit_any()?;
        self.db
            .transaction_with_config(callback, isolation_level, access_mode)
            .await
    }
}

/// The process's account of database failures: the first of a burst is logged with its cause,
/// then a count at most every [`SUMMARY_EVERY`], and one line when none came for
/// [`QUIET_AFTER`]. One per process, as the metric that counts them is.
static BURST: Mutex<Option<Burst>> = Mutex::new(None);

#[derive(Debug)]
struct Burst {
    started: Instant,
    last_failure: Instant,
    last_summary: Instant,
    since_summary: u64,
    total: u64,
}

/// What [`Burst::record`] asks to be logged.
#[derive(Debug, PartialEq, Eq)]
enum BurstLine {
    /// The first failure of a burst (the previous one, if it ended unseen, in `ended`).
    Started {
        ended: Option<(u64, Duration)>,
    },
    /// `failures` since the last line.
    StillFailing {
        failures: u64,
        over: Duration,
    },
    Nothing,
}

impl Burst {
    fn new(now: Instant) -> Self {
        Self {
            started: now,
            last_failure: now,
            last_summary: now,
            since_summary: 0,
            total: 1,
        }
    }

    /// Counts a failure at `now` into `burst`, starting one if there is none.
    fn record(burst: &mut Option<Burst>, now: Instant) -> BurstLine {
        let ended = match burst {
            Some(current) if now.duration_since(current.last_failure) < QUIET_AFTER => {
                current.last_failure = now;
                current.total += 1;
                current.since_summary += 1;
                let over = now.duration_since(current.last_summary);
                if over < SUMMARY_EVERY {
                    return BurstLine::Nothing;
                }
                let failures = std::mem::take(&mut current.since_summary);
                current.last_summary = now;
                return BurstLine::StillFailing { failures, over };
            }
            // Its closing task did not run (its runtime ended): it ends here.
            Some(stale) => Some((
                stale.total,
                stale.last_failure.duration_since(stale.started),
            )),
            None => None,
        };
        *burst = Some(Burst::new(now));
        BurstLine::Started { ended }
    }

    /// Ends `burst` when no failure came for [`QUIET_AFTER`] before `now`: its count and length.
    fn close_if_quiet(burst: &mut Option<Burst>, now: Instant) -> Option<(u64, Duration)> {
        let current = burst.as_ref()?;
        if now.duration_since(current.last_failure) < QUIET_AFTER {
            return None;
        }
        let ended = (
            current.total,
            current.last_failure.duration_since(current.started),
        );
        *burst = None;
        Some(ended)
    }
}

/// Logs a failure that is the database's, as part of its burst.
pub(super) fn log_unavailable(err: &DbErr) {
    let line = {
        let mut burst = BURST
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Burst::record(&mut burst, Instant::now())
    };
    match line {
        BurstLine::Started { ended } => {
            if let Some((failures, lasted)) = ended {
                log_burst_end(failures, lasted);
            }
            tracing::error!(
                error = %err,
                "database unavailable: answering 503 with Retry-After; further failures are counted, not logged one by one"
            );
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(close_burst_when_quiet());
            }
        }
        BurstLine::StillFailing { failures, over } => tracing::warn!(
            failures,
            over_ms = over.as_millis() as u64,
            "database still unavailable"
        ),
        BurstLine::Nothing => {}
    }
}

async fn close_burst_when_quiet() {
    loop {
        tokio::time::sleep(QUIET_AFTER / 4).await;
        let ended = {
            let mut burst = BURST
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if burst.is_none() {
                // Closed by another task (after a restart of the burst).
                return;
            }
            Burst::close_if_quiet(&mut burst, Instant::now())
        };
        if let Some((failures, lasted)) = ended {
            log_burst_end(failures, lasted);
            return;
        }
    }
}

fn log_burst_end(failures: u64, lasted: Duration) {
    tracing::info!(
        failures,
        lasted_ms = lasted.as_millis() as u64,
        "database failures stopped"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlx_err(err: sqlx::Error) -> Arc<sqlx::Error> {
        Arc::new(err)
    }

    #[test]
    fn lost_connections_and_pool_failures_are_the_databases() {
        let connection_refused =
            || sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(
            classify(&DbErr::Conn(RuntimeErr::SqlxError(sqlx_err(
                connection_refused()
            )))),
            Fault::Unreachable
        );
        // A connection reset in the middle of a query.
        let reset = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(
            classify(&DbErr::Query(RuntimeErr::SqlxError(sqlx_err(reset)))),
            Fault::Unreachable
        );
        assert_eq!(
            classify(&DbErr::Exec(RuntimeErr::SqlxError(sqlx_err(
                sqlx::Error::PoolTimedOut
            )))),
            Fault::Unavailable
        );
        assert_eq!(
            classify(&DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)),
            Fault::Unavailable
        );
        assert_eq!(
            classify(&DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed)),
            Fault::Unreachable
        );
        // The gate's own refusal counts as what closed it.
        assert_eq!(classify(&refused()), Fault::Unreachable);
        assert_eq!(
            classify(&DbErr::RecordNotFound("user".into())),
            Fault::Query
        );
        assert_eq!(
            classify(&DbErr::Query(RuntimeErr::SqlxError(sqlx_err(
                sqlx::Error::ColumnNotFound("sid".into())
            )))),
            Fault::Query
        );
    }

    #[test]
    fn postgresql_sqlstates_by_class() {
        for code in ["57P01", "57P02", "57P03", "08006", "08001"] {
            assert_eq!(classify_sqlstate(code), Fault::Unreachable, "{code}");
        }
        for code in ["53300", "53100", "53200", "58030"] {
            assert_eq!(classify_sqlstate(code), Fault::Unavailable, "{code}");
        }
        for code in ["23505", "40001", "42P01", "22P02", ""] {
            assert_eq!(classify_sqlstate(code), Fault::Query, "{code}");
        }
    }

    #[test]
    fn sqlite_result_codes_by_primary_code() {
        // SQLITE_BUSY, SQLITE_BUSY_SNAPSHOT, SQLITE_LOCKED, SQLITE_FULL, SQLITE_IOERR_FSYNC,
        // SQLITE_READONLY_DBMOVED.
        for code in [5, 517, 6, 13, 1034, 1032] {
            assert_eq!(classify_sqlite_code(code), Fault::Unavailable, "{code}");
        }
        // SQLITE_CONSTRAINT_UNIQUE, SQLITE_CORRUPT, SQLITE_ERROR, SQLITE_MISMATCH.
        for code in [2067, 11, 1, 20] {
            assert_eq!(classify_sqlite_code(code), Fault::Query, "{code}");
        }
    }

    /// Real errors from SQLite, as sqlx reports them through SeaORM.
    #[tokio::test]
    async fn a_lock_held_too_long_and_a_full_sqlite_database_are_the_databases() {
        use sea_orm::{ConnectOptions, Database};

        let dir = std::env::temp_dir().join(format!("portcullis-faults-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("f.db").display());
        let connect = || async {
            let mut options = ConnectOptions::new(url.clone());
            options
                .max_connections(1)
                .sqlx_logging(false)
                .map_sqlx_sqlite_opts(|opts| opts.busy_timeout(Duration::ZERO));
            Database::connect(options).await.unwrap()
        };
        let (holder, writer) = (connect().await, connect().await);
        holder
            .execute_unprepared("CREATE TABLE t (v BLOB NOT NULL)")
            .await
            .unwrap();
        // A constraint is the request's.
        let null = writer
            .execute_unprepared("INSERT INTO t VALUES (NULL)")
            .await
            .unwrap_err();
        assert_eq!(classify(&null), Fault::Query, "{null}");

        // The pool's one connection keeps the write lock between statements.
        holder.execute_unprepared("BEGIN IMMEDIATE").await.unwrap();
        let busy = writer
            .execute_unprepared("INSERT INTO t VALUES (1)")
            .await
            .unwrap_err();
        assert_eq!(classify(&busy), Fault::Unavailable, "{busy}");
        assert!(matches!(
            super::super::StoreError::from(busy),
            super::super::StoreError::Unavailable(_)
        ));
        holder.execute_unprepared("ROLLBACK").await.unwrap();

        // No page beyond those it has: the disk is as good as full.
        holder
            .execute_unprepared("PRAGMA max_page_count = 1")
            .await
            .unwrap();
        let full = holder
            .execute_unprepared("INSERT INTO t VALUES (zeroblob(100000))")
            .await
            .unwrap_err();
        assert_eq!(classify(&full), Fault::Unavailable, "{full}");
        assert!(full.to_string().contains("full"), "{full}");

        holder.close().await.unwrap();
        writer.close().await.unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_burst_is_logged_at_its_start_then_counted_every_few_seconds() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut burst = None;
        assert_eq!(
            Burst::record(&mut burst, at(0)),
            BurstLine::Started { ended: None }
        );
        for ms in (100..5_000).step_by(100) {
            assert_eq!(Burst::record(&mut burst, at(ms)), BurstLine::Nothing);
        }
        assert_eq!(
            Burst::record(&mut burst, at(5_000)),
            BurstLine::StillFailing {
                failures: 50,
                over: Duration::from_secs(5)
            }
        );
        assert_eq!(Burst::record(&mut burst, at(6_000)), BurstLine::Nothing);
        // Not quiet yet, then quiet: the burst ends with its whole count.
        assert_eq!(Burst::close_if_quiet(&mut burst, at(7_000)), None);
        assert_eq!(
            Burst::close_if_quiet(&mut burst, at(8_000)),
            Some((52, Duration::from_secs(6)))
        );
        assert!(burst.is_none());
        assert_eq!(
            Burst::record(&mut burst, at(9_000)),
            BurstLine::Started { ended: None }
        );
        // A burst whose closing never ran ends when the next failure comes after a quiet spell.
        assert_eq!(Burst::record(&mut burst, at(9_500)), BurstLine::Nothing);
        assert_eq!(
            Burst::record(&mut burst, at(20_000)),
            BurstLine::Started {
                ended: Some((2, Duration::from_millis(500)))
            }
        );
    }
}
