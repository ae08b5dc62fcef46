//! Storage through SeaORM: connecting (SQLite or PostgreSQL), migrating, and the queries the
//! service needs, returning domain records rather than entities.

mod api_keys;
mod audit_events;
mod batch;
pub mod entities;
mod health;
mod inline_reads;
mod inline_writes;
mod items;
mod login_failures;
mod login_transaction;
mod sessions;
mod signing_keys;
mod user_changes;
mod users;

use std::time::Duration;

use anyhow::Context as _;
use migration::{Migrator, MigratorTrait as _};
use sea_orm::{
    ConnectOptions, Database, DbErr, SqlErr,
    sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous},
};

pub use api_keys::{ApiKey, ApiKeyState, KeyCreation, NewApiKey};
pub use audit_events::{AuditCursor, AuditEvent, AuditFilter};
pub use health::Connection;
pub use items::Item;
pub use login_transaction::{LoginCounts, LoginTransaction};
pub use sessions::{Exchange, LegacyRefreshToken, NewSession, Session, SessionState};
pub use signing_keys::{NewSigningKey, StoredSigningKey};
pub use user_changes::{Guarded, PasswordChange, UserChanges, UserCursor, UserFilter};
pub use users::{NewUser, User};

use crate::{config::DatabaseSettings, metrics::DatabaseErrorKind};

/// How long a writer waits for SQLite's lock before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Each SQLite connection's page cache: `-N` is N KiB (`PRAGMA cache_size`).
pub(crate) const SQLITE_CACHE_SIZE: &str = "-512";
/// The connections of the SQLite pool for a login's writes.
const LOGIN_WRITE_CONNECTIONS: u32 = 2;
/// How long a request waits for a connection before the database counts as unavailable. A
/// PostgreSQL server found unreachable ends the wait sooner (see `health`).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the username is already taken")]
    UsernameTaken,
    #[error("the database is unavailable")]
    Unavailable(#[source] DbErr),
    #[error("database query failed")]
    Query(#[source] DbErr),
}

impl From<DbErr> for StoreError {
    fn from(err: DbErr) -> Self {
        if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
            return StoreError::UsernameTaken;
        }
        match health::classify(&err) {
            health::Fault::Unavailable | health::Fault::Unreachable => StoreError::unavailable(err),
            health::Fault::Query => {
                crate::metrics::database_error(DatabaseErrorKind::Query);
                StoreError::Query(err)
            }
        }
    }
}

impl StoreError {
    /// Whether the database failed rather than the request. Such a failure is logged once per
    /// burst where it is made (see `health`): a caller that would only log it — a write the
    /// answer does not depend on — leaves it at that, or an outage logs once per request.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    /// A failure that is the database's, not the request's: counted in
    /// `portcullis_database_errors_total` and logged as part of its burst.
    fn unavailable(err: DbErr) -> Self {
        crate::metrics::database_error(DatabaseErrorKind::Unavailable);
        health::log_unavailable(&err);
        StoreError::Unavailable(err)
    }
}

/// The database, shared by every request.
#[derive(Clone, Debug)]
pub struct Store {
    db: Connection,
    /// Where a login's own writes go (the throttle's counts, the session it starts): on an
    /// SQLite file, a second small pool whose commits are not flushed to the disk one by one
    /// (`synchronous = NORMAL`, see [`Store::connect`]); otherwise the pool itself.
    login_writes: Connection,
    /// On an SQLite file: the per-request check read without sqlx's connection threads.
    inline_reads: Option<std::sync::Arc<inline_reads::InlineReads>>,
    /// On an SQLite file: a login's writes without sqlx's connection threads, when SQLite's
    /// write lock is free.
    inline_writes: Option<std::sync::Arc<inline_writes::InlineWrites>>,
    /// How many times an API key was looked up (see [`Store::api_key_lookups`]).
    api_key_lookups: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Store {
    /// Connects, creating the SQLite file (and its directory) on first start.
    pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        let mut options = ConnectOptions::new(settings.url.clone());
        let mut inline_reads = None;
        let mut inline_writes = None;
        let mut login_writes = None;
        options
            .connect_timeout(ACQUIRE_TIMEOUT)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .sqlx_logging(false);
        if settings.is_sqlite() {
            let file = sqlite_file(&settings.url);
            if let Some(file) = &file {
                create_private_file(file)?;
                inline_reads =
                    inline_reads::InlineReads::new(file.clone()).map(std::sync::Arc::new);
                inline_writes = Some(std::sync::Arc::new(inline_writes::InlineWrites::new(
                    file.clone(),
                )));
            }
            options
                .max_connections(settings.pool_size())
                .min_connections(1)
                // An SQLite connection is a file handle in this process: it cannot be dropped by
                // a server or a network, and the ping each checkout would cost is one more round
                // trip to the connection's thread (sqlx still pings on release).
                .test_before_acquire(false);
            // FULL keeps every committed write through a power cut: every change of an
            // account, a key, a session's end, the audit log.
            let mut full = options.clone();
            full.map_sqlx_sqlite_opts(|opts| sqlite_options(opts, SqliteSynchronous::Full));
            // A login's writes survive the process being killed at any point (WAL frames are in
            // the operating system's cache before the answer is sent) but not a power cut
            // before the next FULL commit or checkpoint, which makes them durable: what a cut can
            // lose is sessions a client then logs in again for, and failure counts a cut
            // cannot be timed to erase. Measured: 5 fsyncs per login became 0.1 (each one an exit
            // to the hypervisor on a VM). One writer at a time is all SQLite allows: two
            // connections keep the lock busy without queuing logins behind the busy timeout's
            // back-off.
            let mut normal = options.clone();
            normal
                .max_connections(LOGIN_WRITE_CONNECTIONS)
                .min_connections(0)
                .map_sqlx_sqlite_opts(|opts| sqlite_options(opts, SqliteSynchronous::Normal));
            // (An in-memory database is one per pool: there the pool itself.)
            login_writes = file.is_some().then_some(normal);
            options = full;
        } else {
            options
                .max_connections(settings.pool_size())
                .min_connections(1);
        }
        let db = Database::connect(options).await.with_context(|| {
            format!(
                "cannot connect to the database at {}",
                redact(&settings.url)
            )
        })?;
        let db = Connection::new(db);
        let login_writes = match login_writes {
            Some(options) => {
                Connection::new(Database::connect(options).await.with_context(|| {
                    format!(
                        "cannot connect to the database at {}",
                        redact(&settings.url)
                    )
                })?)
            }
            None => db.clone(),
        };
        Ok(Self {
            db,
            login_writes,
            inline_reads,
            inline_writes,
            api_key_lookups: Default::default(),
        })
    }

    /// Applies pending migrations. On PostgreSQL, instances starting together take turns: the
    /// migrations run in one transaction holding an advisory lock, so a second instance waits,
    /// then finds nothing pending.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        use sea_orm::{ConnectionTrait as _, DbBackend, TransactionTrait as _};

        const MIGRATION_LOCK: i64 = 0x706f_7274_6375; // "portcu"
        let pool = self.db.pool();
        let applied = if pool.get_database_backend() == DbBackend::Postgres {
            let txn = pool
                .begin()
                .await
                .context("cannot start the migration transaction")?;
            txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
                .await
                .context("cannot take the migration lock")?;
            let applied = apply_pending(&txn).await?;
            txn.commit().await.context("cannot commit the migrations")?;
            applied
        } else {
            apply_pending(pool).await?
        };
        if applied > 0 {
            tracing::info!(count = applied, "applied pending database migrations");
        }
        // Computed by Rust's Unicode tables, which SQL migrations cannot do.
        let left = self
            .normalize_usernames()
            .await
            .context("cannot bring the stored usernames up to date")?;
        if left > 0 {
            tracing::warn!(
                accounts = left,
                "accounts look like others and were kept as they are"
            );
        }
        Ok(())
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db.ping().await.map_err(StoreError::unavailable)
    }

    pub fn connection(&self) -> &Connection {
        &self.db
    }

    /// The pool of a login's own writes (see [`Store::login_writes`]).
    pub(crate) fn login_connection(&self) -> &Connection {
        &self.login_writes
    }
}

/// The settings of every SQLite connection, but for how its commits reach the disk.
fn sqlite_options(
    opts: sea_orm::sqlx::sqlite::SqliteConnectOptions,
    synchronous: SqliteSynchronous,
) -> sea_orm::sqlx::sqlite::SqliteConnectOptions {
    // WAL lets readers run beside the one writer; the busy timeout makes concurrent writers
    // wait their turn instead of failing with "database is locked".
    opts.create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        .foreign_keys(true)
        // Each of the pools' connections keeps its own page cache (2 MiB by default): the
        // operating system's cache holds the file anyway.
        .pragma("cache_size", SQLITE_CACHE_SIZE)
}

async fn apply_pending<'c, C>(db: &'c C) -> anyhow::Result<usize>
where
    C: sea_orm::ConnectionTrait,
    &'c C: migration::IntoSchemaManagerConnection<'c>,
{
    let pending = Migrator::get_pending_migrations(db)
        .await
        .context("cannot read the database's migration state")?
        .len();
    if pending > 0 {
        Migrator::up(db, None)
            .await
            .context("cannot apply the database migrations")?;
    }
    Ok(pending)
}

/// The file of an SQLite URL (`sqlite://dir/file.db?mode=rwc`), as sqlx reads it (percent
/// escapes decoded); `None` for an in-memory or read-only database.
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    use std::str::FromStr as _;

    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let in_memory_or_read_only = query
        .split('&')
        .any(|pair| pair == "mode=memory" || pair == "mode=ro");
    if path.is_empty() || path == ":memory:" || in_memory_or_read_only {
        return None;
    }
    let options = sea_orm::sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    Some(options.get_filename().to_path_buf())
}

/// Creates the SQLite file (and its directory, 0700) readable by this user only, before SQLite
/// opens it: SQLite would create it 0644 (less the umask), and it creates the `-wal` and `-shm`
/// files with the main file's permissions. An existing file is left as it is, with a warning when
/// others may read it.
fn create_private_file(file: &std::path::Path) -> anyhow::Result<()> {
    if let Some(dir) = file.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        crate::config::create_private_dir(dir)
            .with_context(|| format!("cannot create the database directory {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    // Never truncates: an existing database is opened, not replaced.
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let opened = options
        .open(file)
        .with_context(|| format!("cannot create the database file {}", file.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = opened
            .metadata()
            .map(|m| m.permissions().mode())
            .unwrap_or(0);
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %file.display(),
                mode = format!("{:o}", mode & 0o777),
                "the database file may be read by other users: chmod 600 it (and its -wal and -shm files)"
            );
        }
    }
    drop(opened);
    Ok(())
}

/// The current time at the precision both backends store (PostgreSQL keeps microseconds), so
/// that what a create returns is what a later read returns.
pub(crate) fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound as _;
    chrono::Utc::now().trunc_subsecs(6)
}

/// A database URL fit for logs and error messages: without its password, whether in the user
/// info (`user:pw@`) or in a query parameter (`?password=`, `?sslpassword=`).
pub fn redact(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut redacted = match (base.find("://"), base.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &base[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &base[..scheme_end + 3], &base[at..]),
                None => base.to_owned(),
            }
        }
        _ => base.to_owned(),
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if name.to_ascii_lowercase().ends_with("password") => {
                    format!("{name}=***")
                }
                _ => pair.to_owned(),
            })
            .collect();
        redacted.push('?');
        redacted.push_str(&pairs.join("&"));
    }
    redacted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_in_database_urls() {
        assert_eq!(
            redact("postgres://app:hunter2@db:5432/auth"),
            "postgres://app:***@db:5432/auth"
        );
        assert_eq!(redact("postgres://app@db/auth"), "postgres://app@db/auth");
        assert_eq!(
            redact("sqlite://data/p.db?mode=rwc"),
            "sqlite://data/p.db?mode=rwc"
        );
    }

    #[test]
    fn passwords_in_query_parameters_are_hidden_too() {
        assert_eq!(
            redact("postgres://app@db/auth?password=hunter2"),
            "postgres://app@db/auth?password=***"
        );
        assert_eq!(
            redact("postgres://db/auth?sslmode=require&PASSWORD=hunter2&sslpassword=k3y&user=app"),
            "postgres://db/auth?sslmode=require&PASSWORD=***&sslpassword=***&user=app"
        );
        assert_eq!(
            redact("postgres://app:hunter2@db/auth?password=again"),
            "postgres://app:***@db/auth?password=***"
        );
        // An `@` in the query is not user info.
        assert_eq!(
            redact("postgres://db/auth?password=a@b"),
            "postgres://db/auth?password=***"
        );
    }

    #[test]
    fn the_sqlite_file_is_found_in_the_url() {
        assert_eq!(
            sqlite_file("sqlite://data/portcullis.db?mode=rwc"),
            Some("data/portcullis.db".into())
        );
        assert_eq!(sqlite_file("sqlite://p.db"), Some("p.db".into()));
        assert_eq!(
            sqlite_file("sqlite:///tmp/a%20b.db"),
            Some("/tmp/a b.db".into())
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("sqlite://p.db?mode=memory"), None);
        assert_eq!(sqlite_file("sqlite://p.db?mode=ro"), None);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_sqlite_files_and_their_directory_are_private() {
        use std::os::unix::fs::PermissionsExt as _;

        let root = std::env::temp_dir().join(format!("portcullis-perm-{}", uuid::Uuid::new_v4()));
        let dir = root.join("data");
        let file = dir.join("p.db");
        let store = Store::connect(&DatabaseSettings {
            url: format!("sqlite://{}?mode=rwc", file.display()),
            max_connections: None,
        })
        .await
        .unwrap();
        store.migrate().await.unwrap();
        let mode =
            |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        for name in ["p.db", "p.db-wal", "p.db-shm"] {
            assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
        }
        drop(store);
        std::fs::remove_dir_all(root).unwrap();
    }
}
