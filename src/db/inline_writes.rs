//! A login's writes on an SQLite file, run inline on the calling thread.
//!
//! Why: through sqlx, a login's writes are about ten hand-offs to a connection's own thread and
//! back (the throttle's reservation; then `BEGIN`, each statement of the login's transaction,
//! `COMMIT`, and the ping when the connection returns to the pool): twenty thread wake-ups
//! for statements SQLite runs in microseconds, on two cores that the password hashes keep busy.
//! Measured, those wake-ups were most of a login's CPU beside its hash. Here one connection of
//! the process runs a login's transaction on the thread that serves it, with no wake-up at all.
//!
//! What it keeps: the statements are SeaORM's, built by the same functions whose statements
//! the sqlx path runs, and their values are bound as sqlx binds them (UUIDs as 16-byte blobs,
//! timestamps as RFC 3339 text to the nanosecond, booleans as integers; any other kind of value
//! is refused before the transaction starts), so what either path wrote reads the same through
//! both. The connection commits as the login pool's do (WAL, `synchronous = NORMAL`, foreign
//! keys on): a commit is in the operating system's cache before the answer is sent.
//!
//! It never waits: the transaction takes SQLite's write lock at its start (`BEGIN IMMEDIATE`,
//! busy timeout 0), and when another writer holds it (sqlx's pools, another instance, the CLI)
//! or another login is using the connection, the login takes the sqlx path, which waits its
//! turn. Holding the lock from the start also means no statement inside can find it taken.
//! Checkpoints are left to sqlx's connections (`wal_autocheckpoint = 0` here): a checkpoint
//! writes and syncs the database file, which must not stall a thread that serves requests. (Every
//! login also writes its audit event through sqlx, so the checkpoints keep coming.)

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
};

use chrono::SecondsFormat;
use sea_orm::{DbErr, Statement, Value};

use super::{StoreError, health};

/// The connection a login's inline transaction uses, when no other login is using it.
#[derive(Debug)]
pub(super) struct InlineWrites {
    path: PathBuf,
    slot: Mutex<Slot>,
}

#[derive(Debug)]
enum Slot {
    /// Not opened yet, or closed after a failure: the next transaction opens it.
    Closed,
    Idle(rusqlite::Connection),
    /// A transaction holds it.
    InUse,
}

impl InlineWrites {
    pub(super) fn new(path: PathBuf) -> Self {
        Self {
            path,
            slot: Mutex::new(Slot::Closed),
        }
    }

    /// Starts a transaction holding SQLite's write lock; `None` when the lock or the
    /// connection is taken, or the connection cannot be opened: the caller then uses sqlx.
    pub(super) fn begin(self: &Arc<Self>) -> Option<InlineTransaction> {
        let taken = std::mem::replace(&mut *self.slot(), Slot::InUse);
        let connection = match taken {
            Slot::Idle(connection) => connection,
            Slot::Closed => match self.open() {
                Ok(connection) => connection,
                Err(err) => {
                    tracing::debug!(error = %err, "cannot open the inline SQLite writer");
                    self.put(Slot::Closed);
                    return None;
                }
            },
            // Another login's: this one goes through sqlx rather than opening a second
            // connection (SQLite has one writer at a time anyway).
            Slot::InUse => return None,
        };
        match run_cached(&connection, "BEGIN IMMEDIATE") {
            Ok(()) => Some(InlineTransaction {
                owner: self.clone(),
                connection: Some(Mutex::new(connection)),
            }),
            Err(err) => {
                // Busy (the usual case) keeps the connection; anything else closes it.
                self.put(if is_busy(&err) {
                    Slot::Idle(connection)
                } else {
                    tracing::debug!(error = %err, "the inline SQLite writer failed; closing it");
                    Slot::Closed
                });
                None
            }
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn put(&self, slot: Slot) {
        *self.slot() = slot;
    }

    fn open(&self) -> rusqlite::Result<rusqlite::Connection> {
        use rusqlite::OpenFlags;
        let connection = rusqlite::Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.busy_timeout(std::time::Duration::ZERO)?;
        // As sqlx's login pool (see `Store::connect`), but for the checkpoints (see above).
        connection.pragma_update(None, "journal_mode", "wal")?;
        connection.pragma_update(None, "synchronous", "normal")?;
        connection.pragma_update(None, "foreign_keys", true)?;
        connection.pragma_update(None, "cache_size", super::SQLITE_CACHE_SIZE)?;
        connection.pragma_update(None, "wal_autocheckpoint", 0)?;
        connection.set_prepared_statement_cache_capacity(16);
        Ok(connection)
    }
}

/// A login's transaction on the inline connection: rolled back if dropped without
/// [`InlineTransaction::commit`]. Its methods run to completion on the calling thread.
#[derive(Debug)]
pub(super) struct InlineTransaction {
    owner: Arc<InlineWrites>,
    /// `None` once committed or rolled back. (A mutex only to be `Sync`: one task uses it.)
    connection: Option<Mutex<rusqlite::Connection>>,
}

impl InlineTransaction {
    /// Runs `statement`; how many rows it changed.
    pub(super) fn execute(&self, statement: &Statement) -> Result<u64, StoreError> {
        let params = bind(statement)?;
        self.with(|connection| {
            let mut prepared = connection.prepare_cached(&statement.sql)?;
            Ok(prepared.execute(rusqlite::params_from_iter(params))? as u64)
        })
    }

    /// Runs `statement` and reads each row it returns with `read`.
    pub(super) fn query<T>(
        &self,
        statement: &Statement,
        mut read: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        let params = bind(statement)?;
        self.with(|connection| {
            let mut prepared = connection.prepare_cached(&statement.sql)?;
            let mut rows = prepared.query(rusqlite::params_from_iter(params))?;
            let mut read_rows = Vec::new();
            while let Some(row) = rows.next()? {
                read_rows.push(read(row)?);
            }
            Ok(read_rows)
        })
    }

    pub(super) fn commit(mut self) -> Result<(), StoreError> {
        let connection = self.take();
        match run_cached(&connection, "COMMIT") {
            Ok(()) => {
                self.owner.put(Slot::Idle(connection));
                Ok(())
            }
            Err(err) => {
                // Rolled back if it was not already: the connection is closed with it.
                let _ = run_cached(&connection, "ROLLBACK");
                self.owner.put(Slot::Closed);
                Err(store_error(err))
            }
        }
    }

    fn take(&mut self) -> rusqlite::Connection {
        self.connection
            .take()
            .expect("a transaction is ended once")
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn with<T>(
        &self,
        run: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let connection = self
            .connection
            .as_ref()
            .expect("a transaction is used until it ends")
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        run(&connection).map_err(store_error)
    }
}

impl Drop for InlineTransaction {
    fn drop(&mut self) {
        if self.connection.is_none() {
            return;
        }
        let connection = self.take();
        let slot = match run_cached(&connection, "ROLLBACK") {
            Ok(()) => Slot::Idle(connection),
            Err(_) => Slot::Closed,
        };
        self.owner.put(slot);
    }
}

/// Runs a statement without values, prepared once per connection (`BEGIN`, `COMMIT`: parsing
/// them each time was a measurable part of a login).
fn run_cached(connection: &rusqlite::Connection, sql: &str) -> rusqlite::Result<()> {
    connection.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// `statement`'s values as sqlx's SQLite driver binds them (see `sea_query_sqlx`'s
/// `IntoArguments` and sqlx-sqlite's encoders); a kind of value it has no rule for is refused.
fn bind(statement: &Statement) -> Result<Vec<rusqlite::types::Value>, StoreError> {
    use rusqlite::types::Value as Sql;

    let Some(values) = &statement.values else {
        return Ok(Vec::new());
    };
    let integer = |value: Option<i64>| value.map_or(Sql::Null, Sql::Integer);
    values
        .0
        .iter()
        .map(|value| {
            Ok(match value {
                Value::Bool(value) => integer(value.map(i64::from)),
                Value::TinyInt(value) => integer(value.map(i64::from)),
                Value::SmallInt(value) => integer(value.map(i64::from)),
                Value::Int(value) => integer(value.map(i64::from)),
                Value::BigInt(value) => integer(*value),
                Value::TinyUnsigned(value) => integer(value.map(i64::from)),
                Value::SmallUnsigned(value) => integer(value.map(i64::from)),
                Value::Unsigned(value) => integer(value.map(i64::from)),
                Value::String(value) => value.clone().map_or(Sql::Null, Sql::Text),
                Value::Bytes(value) => value.clone().map_or(Sql::Null, Sql::Blob),
                Value::Uuid(value) => {
                    value.map_or(Sql::Null, |id| Sql::Blob(id.as_bytes().to_vec()))
                }
                Value::ChronoDateTimeUtc(value) => value.map_or(Sql::Null, |at| {
                    Sql::Text(at.to_rfc3339_opts(SecondsFormat::AutoSi, false))
                }),
                other => {
                    return Err(StoreError::Query(DbErr::Custom(format!(
                        "the inline SQLite writer cannot bind {other:?}"
                    ))));
                }
            })
        })
        .collect()
}

/// A timestamp column as sqlx writes it (RFC 3339 text).
pub(super) fn timestamp(
    row: &rusqlite::Row<'_>,
    column: &str,
) -> rusqlite::Result<chrono::DateTime<chrono::Utc>> {
    let text: String = row.get(column)?;
    super::inline_reads::parse_timestamp(&text).map_err(|err| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(err))
    })
}

fn is_busy(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// As sqlx's errors are classified (see `health`): SQLite's own code decides whether the
/// database failed (busy, full, I/O) or the statement did (a constraint).
fn store_error(err: rusqlite::Error) -> StoreError {
    let code = match &err {
        rusqlite::Error::SqliteFailure(failure, _) => Some(failure.extended_code),
        _ => None,
    };
    let err = DbErr::Custom(format!("inline SQLite writer: {err}"));
    match code.map(health::classify_sqlite_code) {
        Some(health::Fault::Unavailable | health::Fault::Unreachable) => {
            StoreError::unavailable(err)
        }
        _ => {
            crate::metrics::database_error(crate::metrics::DatabaseErrorKind::Query);
            StoreError::Query(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, Utc};
    use uuid::Uuid;

    use crate::{
        db::{
            LoginCounts as _, NewSession, Session, Store, User,
            entities::session,
            inline_reads::tests::{file_store, test_user},
        },
        domain::{HashedPassword, ScopeSet},
    };
    use sea_orm::EntityTrait as _;

    async fn user(store: &Store) -> User {
        test_user(store, "writer", None).await
    }

    fn new_session(id: Uuid, user: &User) -> NewSession {
        NewSession {
            id,
            user_id: user.id,
            scopes: ScopeSet::parse("me").unwrap(),
            user_agent: Some("curl/8".into()),
            client_address: "127.0.0.2".into(),
            lifetime: Duration::days(1),
        }
    }

    /// Every write of a successful login (after a reserved attempt), as the password grant
    /// makes them, with fixed times; `inline`: which path the transaction must take.
    async fn login(
        store: &Store,
        user: &User,
        session_id: Uuid,
        now: DateTime<Utc>,
        inline: bool,
    ) -> Session {
        let window = Duration::minutes(15);
        let counts = store
            .reserve_login_attempts(
                &[("address", 5), ("account", 10)],
                now,
                window,
                |n, limit| (n >= limit).then(|| Duration::seconds(30)),
            )
            .await
            .unwrap();
        assert_eq!(counts, vec![Some(1), Some(1)]);
        let txn = store.begin_login().await.unwrap();
        assert_eq!(txn.is_inline(), inline);
        txn.forget_attempt("account", &[("address", 5)])
            .await
            .unwrap();
        txn.remember_login_address("account", "address", now)
            .await
            .unwrap();
        let minute = Duration::minutes(1);
        assert_eq!(
            txn.reserve_login_success("successes", 1, now, minute)
                .await
                .unwrap(),
            Some(1)
        );
        // The limit is reached: no row, as through sqlx.
        assert_eq!(
            txn.reserve_login_success("successes", 1, now, minute)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            txn.login_success_window("successes").await.unwrap(),
            Some(now)
        );
        assert_eq!(txn.login_success_window("nobody").await.unwrap(), None);
        let session = txn
            .start_session(new_session(session_id, user))
            .await
            .unwrap();
        let stale = HashedPassword::from_phc("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$b3RoZXI");
        assert!(!txn.record_login(user.id, now, &stale).await.unwrap());
        assert!(
            txn.record_login(user.id, now, &user.hashed_password)
                .await
                .unwrap()
        );
        txn.commit().await.unwrap();
        session
    }

    /// Each table a login writes, one line per row: every value with its SQLite type, as
    /// stored (`shape_only` tables show a timestamp's form and a blob's length, not the value).
    fn dump(path: &std::path::Path) -> Vec<String> {
        let connection = rusqlite::Connection::open(path).unwrap();
        let mut lines = Vec::new();
        for (table, shape_only) in [
            ("login_failures", false),
            ("login_successes", false),
            ("login_addresses", false),
            ("sessions", true),
            ("users", true),
        ] {
            let mut statement = connection
                .prepare(&format!("SELECT * FROM {table} ORDER BY 1"))
                .unwrap();
            let columns: Vec<String> = statement
                .column_names()
                .iter()
                .map(|c| c.to_string())
                .collect();
            let mut rows = statement.query([]).unwrap();
            while let Some(row) = rows.next().unwrap() {
                let mut line = format!("{table}:");
                for (i, column) in columns.iter().enumerate() {
                    use rusqlite::types::ValueRef;
                    let value = match row.get_ref(i).unwrap() {
                        ValueRef::Null => "null".to_owned(),
                        ValueRef::Integer(n) => format!("integer {n}"),
                        ValueRef::Real(x) => format!("real {x}"),
                        ValueRef::Text(text) => {
                            let text = String::from_utf8(text.to_vec()).unwrap();
                            match DateTime::parse_from_rfc3339(&text) {
                                Ok(_) if shape_only => format!(
                                    "timestamp {}",
                                    text.chars()
                                        .map(|c| if c.is_ascii_digit() { '9' } else { c })
                                        .collect::<String>()
                                ),
                                _ if shape_only && column == "id" => "text id".to_owned(),
                                _ => format!("text {text}"),
                            }
                        }
                        ValueRef::Blob(blob) if shape_only => format!("blob of {}", blob.len()),
                        ValueRef::Blob(blob) => format!("blob {blob:?}"),
                    };
                    line.push_str(&format!(" {column}={value}"));
                }
                lines.push(line);
            }
        }
        lines
    }

    /// The inline path stores what sqlx stores, value for value and type for type, and sqlx
    /// reads it back as the inline path returned it.
    #[tokio::test]
    async fn a_login_written_inline_is_stored_as_sqlx_stores_it() {
        // Nanoseconds (the throttle's times) and a whole second (`AutoSi` drops the fraction).
        for now in [
            "2026-12-03T10:11:12.123456789Z"
                .parse::<DateTime<Utc>>()
                .unwrap(),
            "2026-12-03T10:11:12Z".parse().unwrap(),
        ] {
            let (inline_store, inline_dir) = file_store().await;
            let (mut sqlx_store, sqlx_dir) = file_store().await;
            sqlx_store.inline_writes = None;
            let session_id = Uuid::now_v7();
            let inline_user = user(&inline_store).await;
            let sqlx_user = user(&sqlx_store).await;
            let inline_session = login(&inline_store, &inline_user, session_id, now, true).await;
            login(&sqlx_store, &sqlx_user, session_id, now, false).await;

            let stored = dump(&inline_dir.join("p.db"));
            let tables: Vec<&str> = stored
                .iter()
                .filter_map(|line| line.split(':').next())
                .collect();
            assert_eq!(
                tables,
                [
                    "login_failures",
                    "login_successes",
                    "login_addresses",
                    "sessions",
                    "users"
                ],
                "one row of each: the address's count given back, the account's cleared"
            );
            assert_eq!(stored, dump(&sqlx_dir.join("p.db")));
            let read_back: Session = session::Entity::find_by_id(session_id)
                .one(inline_store.connection().pool())
                .await
                .unwrap()
                .expect("the session is stored")
                .into();
            assert_eq!(format!("{read_back:?}"), format!("{inline_session:?}"));
            let stored_user = inline_store
                .find_user_by_id(inline_user.id)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(stored_user.last_login_at, Some(now));
            assert_eq!(
                inline_store
                    .login_success_window("successes")
                    .await
                    .unwrap(),
                Some(now),
                "sqlx reads the window the inline path wrote"
            );
            for dir in [inline_dir, sqlx_dir] {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    /// A transaction dropped before its commit leaves nothing, and gives the connection back.
    #[tokio::test]
    async fn an_unfinished_login_leaves_nothing_and_the_next_one_runs_inline() {
        let (store, dir) = file_store().await;
        let user = user(&store).await;
        let txn = store.begin_login().await.unwrap();
        assert!(txn.is_inline());
        let id = Uuid::now_v7();
        txn.start_session(new_session(id, &user)).await.unwrap();
        drop(txn);
        assert!(
            session::Entity::find_by_id(id)
                .one(store.connection().pool())
                .await
                .unwrap()
                .is_none()
        );
        let again = store.begin_login().await.unwrap();
        assert!(again.is_inline(), "the connection was given back");
        // A session of a user that does not exist: the foreign key refuses it, as through sqlx.
        let mut orphan = new_session(Uuid::now_v7(), &user);
        orphan.user_id = Uuid::now_v7();
        let refused = again.start_session(orphan).await.unwrap_err();
        assert!(!refused.is_unavailable(), "{refused:?}");
        drop(again);
        assert!(store.begin_login().await.unwrap().is_inline());
        let _ = std::fs::remove_dir_all(dir);
    }

    /// While another writer holds SQLite's lock (here another process's connection), or another
    /// login the inline connection, a login goes through sqlx, which waits its turn.
    #[tokio::test]
    async fn a_login_goes_through_sqlx_when_the_lock_or_the_connection_is_taken() {
        let (store, dir) = file_store().await;
        let user = user(&store).await;

        let first = store.begin_login().await.unwrap();
        assert!(first.is_inline());
        assert!(
            store.begin_inline_write().is_none(),
            "one inline transaction at a time"
        );
        drop(first);

        let other = rusqlite::Connection::open(dir.join("p.db")).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        assert!(store.begin_inline_write().is_none(), "the lock is taken");
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            other.execute_batch("COMMIT").unwrap();
        });
        // Through sqlx: waits for the lock, then writes.
        let txn = store.begin_login().await.unwrap();
        assert!(!txn.is_inline());
        let id = Uuid::now_v7();
        txn.start_session(new_session(id, &user)).await.unwrap();
        txn.commit().await.unwrap();
        release.join().unwrap();
        assert!(
            session::Entity::find_by_id(id)
                .one(store.connection().pool())
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            store.begin_login().await.unwrap().is_inline(),
            "inline again once the lock is free"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
