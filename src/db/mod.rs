//! Storage through SeaORM: connecting (SQLite or PostgreSQL), migrating, and the queries the
//! service needs, returning domain records rather than entities.

pub mod entities;
mod items;
mod login_failures;
mod sessions;
mod signing_keys;
mod users;

use std::time::Duration;

use anyhow::Context as _;
use migration::{Migrator, MigratorTrait as _};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr, SqlErr};

pub use items::Item;
pub use sessions::{NewSession, Rotation, Session, SessionState, StoredRefreshToken};
pub use signing_keys::{NewSigningKey, StoredSigningKey};
pub use users::{NewUser, User};

use crate::config::DatabaseSettings;

/// How long a writer waits for SQLite's lock before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request waits for a connection before the database counts as unavailable.
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
        match err {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => StoreError::Unavailable(err),
            other => StoreError::Query(other),
        }
    }
}

/// The database, shared by every request.
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
}

impl Store {
    /// Connects, creating the SQLite file (and its directory) on first start.
    pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        let mut options = ConnectOptions::new(settings.url.clone());
        options
            .connect_timeout(ACQUIRE_TIMEOUT)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .sqlx_logging(false);
        if settings.is_sqlite() {
            if let Some(dir) = sqlite_directory(&settings.url) {
                std::fs::create_dir_all(&dir).with_context(|| {
                    format!("cannot create the database directory {}", dir.display())
                })?;
            }
            options
                .max_connections(settings.pool_size())
                .min_connections(1)
                .map_sqlx_sqlite_opts(|opts| {
                    use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
                    // WAL lets readers run beside the one writer; the busy timeout makes
                    // concurrent writers wait their turn instead of failing with "database is
                    // locked"; FULL keeps every committed write through a power cut.
                    opts.create_if_missing(true)
                        .journal_mode(SqliteJournalMode::Wal)
                        .synchronous(SqliteSynchronous::Full)
                        .busy_timeout(SQLITE_BUSY_TIMEOUT)
                        .foreign_keys(true)
                });
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
        Ok(Self { db })
    }

    /// Applies pending migrations. On PostgreSQL, instances starting together take turns: the
    /// migrations run in one transaction holding an advisory lock, so a second instance waits,
    /// then finds nothing pending.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        use sea_orm::{ConnectionTrait as _, DbBackend, TransactionTrait as _};

        const MIGRATION_LOCK: i64 = 0x706f_7274_6375; // "portcu"
        let applied = if self.db.get_database_backend() == DbBackend::Postgres {
            let txn = self
                .db
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
            apply_pending(&self.db).await?
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
        self.db.ping().await.map_err(StoreError::Unavailable)
    }

    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }
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

/// The directory of an SQLite file URL (`sqlite://dir/file.db?mode=rwc`), if it has one.
fn sqlite_directory(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    if path.is_empty() || path.starts_with(":memory:") {
        return None;
    }
    std::path::Path::new(path)
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.to_path_buf())
}

/// The current time at the precision both backends store (PostgreSQL keeps microseconds), so
/// that what a create returns is what a later read returns.
pub(crate) fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound as _;
    chrono::Utc::now().trunc_subsecs(6)
}

/// A database URL fit for logs and error messages: without its password.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
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
    fn the_sqlite_directory_is_found_in_the_url() {
        assert_eq!(
            sqlite_directory("sqlite://data/portcullis.db?mode=rwc"),
            Some("data".into())
        );
        assert_eq!(sqlite_directory("sqlite://p.db"), None);
        assert_eq!(sqlite_directory("sqlite::memory:"), None);
    }
}
