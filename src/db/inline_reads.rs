//! The per-request check of an access token on SQLite, read inline on the calling thread.
//!
//! Why: sqlx runs each SQLite connection on a thread of its own, and one SeaORM lookup through it
//! is three round trips to that thread (a ping when the connection is taken from the pool, the
//! query, a ping when it is returned) — six thread wake-ups for a query SQLite answers in a few
//! microseconds. Here each thread that serves requests keeps one read-only connection of its own
//! and runs the statements SeaORM's query builder rendered (once, at start) directly: the check
//! of every protected request, and a login's lookup of its account.
//!
//! What it keeps: every statement is its own read transaction (autocommit, reset after each
//! row), so a read sees every commit made before it — by this process, another instance or the
//! CLI — and a revoked session or disabled user is refused at the next request, as through sqlx.
//! Nothing is cached but the prepared statement. It only reads: writes stay with sqlx (rusqlite
//! would bind timestamps in another text form). It never waits for a lock (busy timeout 0): any
//! error, or a row it cannot decode exactly as sqlx would, makes the caller take the sqlx path.

use std::{
    cell::RefCell,
    path::PathBuf,
    sync::atomic::{AtomicU64, Ordering},
};

use chrono::{DateTime, Utc};
use sea_orm::{DbBackend, QueryTrait as _, Value, Values};
use uuid::Uuid;

use super::{api_keys::ApiKeyState, entities::user, sessions::SessionState};
use crate::domain::ScopeSet;

/// Connections a thread keeps open; more than one only when a process has several databases
/// (the tests do). The least recently opened is closed first.
const MAX_CONNECTIONS_PER_THREAD: usize = 4;

static NEXT_DATABASE: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's read-only connections, by [`InlineReads::database`].
    static CONNECTIONS: RefCell<Vec<(u64, rusqlite::Connection)>> = const { RefCell::new(Vec::new()) };
}

/// The statements of the per-request check of one SQLite database file.
#[derive(Debug)]
pub(super) struct InlineReads {
    /// Which database a thread's connection belongs to.
    database: u64,
    path: PathBuf,
    /// `find_session_and_user`'s statement without and with the signing-key condition.
    session_and_user: String,
    session_and_user_with_key: String,
    /// `find_user_by_username`'s statement for one normalized form and for two.
    user_by_name: String,
    user_by_names: String,
    /// `find_api_key_and_user`'s statement.
    api_key_and_user: String,
}

/// The outcome of a read the caller must redo through sqlx.
#[derive(Debug)]
pub(super) struct Fallback;

impl InlineReads {
    /// The reads of the database file at `path`; `None` if SeaORM renders the statement with its
    /// values in an order other than the one bound here (a SeaORM upgrade would be noticed by
    /// the tests, and requests would still be served through sqlx).
    pub(super) fn new(path: PathBuf) -> Option<Self> {
        let (session, user, kid, tag) = (Uuid::from_u128(1), Uuid::from_u128(2), "kid", "tag");
        let render = |key: Option<(&str, &str)>| {
            let statement = super::sessions::session_and_user_query(session, user, key)
                .build(DbBackend::Sqlite);
            let mut expected = vec![Value::from(session), Value::from(user)];
            if let Some((kid, tag)) = key {
                // `SELECT 1` of the EXISTS is bound too.
                expected.extend([Value::from(1), Value::from(kid), Value::from(tag)]);
            }
            (statement.values == Some(Values(expected))).then_some(statement.sql)
        };
        let render_by_name = |names: &[&str]| {
            let statement =
                super::users::user_by_name_query(names[0], names.last().copied().unwrap_or(""))
                    .build(DbBackend::Sqlite);
            let expected = names.iter().map(|name| Value::from(*name)).collect();
            (statement.values == Some(Values(expected))).then_some(statement.sql)
        };
        let render_key = || {
            let key = Uuid::from_u128(3);
            let statement = super::api_keys::api_key_and_user_query(key).build(DbBackend::Sqlite);
            (statement.values == Some(Values(vec![Value::from(key)]))).then_some(statement.sql)
        };
        let inline = Self {
            database: NEXT_DATABASE.fetch_add(1, Ordering::Relaxed),
            path,
            session_and_user: render(None)?,
            session_and_user_with_key: render(Some((kid, tag)))?,
            user_by_name: render_by_name(&["name"])?,
            user_by_names: render_by_name(&["name", "legacy"])?,
            api_key_and_user: render_key()?,
        };
        Some(inline)
    }

    /// As `Store::find_session_and_user`, on this thread's connection.
    pub(super) fn session_and_user(
        &self,
        session_id: Uuid,
        user_id: Uuid,
        key: Option<(&str, &str)>,
    ) -> Result<Option<(SessionState, user::Model)>, Fallback> {
        self.with_connection(|connection| {
            let sql = match key {
                Some(_) => &self.session_and_user_with_key,
                None => &self.session_and_user,
            };
            let mut statement = connection.prepare_cached(sql)?;
            let (session_bytes, user_bytes) = (session_id.as_bytes(), user_id.as_bytes());
            let mut rows = match key {
                Some((kid, tag)) => statement.query(rusqlite::params![
                    &session_bytes[..],
                    &user_bytes[..],
                    1,
                    kid,
                    tag
                ])?,
                None => statement.query(rusqlite::params![&session_bytes[..], &user_bytes[..]])?,
            };
            let Some(row) = rows.next()? else {
                return Ok(None);
            };
            Ok(Some(decode(session_id, row)?))
        })
    }

    /// As `Store::find_api_key_and_user`, on this thread's connection.
    pub(super) fn api_key_and_user(
        &self,
        id: Uuid,
    ) -> Result<Option<(ApiKeyState, user::Model)>, Fallback> {
        self.with_connection(|connection| {
            let mut statement = connection.prepare_cached(&self.api_key_and_user)?;
            let mut rows = statement.query(rusqlite::params![&id.as_bytes()[..]])?;
            let Some(row) = rows.next()? else {
                return Ok(None);
            };
            let scope: String = row.get("key_scope")?;
            let key = ApiKeyState {
                id,
                secret_hash: row.get("key_secret_hash")?,
                scopes: ScopeSet::parse(&scope).map_err(|_| ReadError::Undecodable("key_scope"))?,
                expires_at: optional_timestamp(row, "key_expires_at")?,
                last_used_at: optional_timestamp(row, "key_last_used_at")?,
            };
            Ok(Some((key, decode_user(row)?)))
        })
    }

    /// The rows of `Store::find_user_by_username`'s query (one or two), on this thread's
    /// connection.
    pub(super) fn users_by_name(
        &self,
        normalized: &str,
        legacy: &str,
    ) -> Result<Vec<user::Model>, Fallback> {
        self.with_connection(|connection| {
            let rows = if normalized == legacy {
                let mut statement = connection.prepare_cached(&self.user_by_name)?;
                decode_all(statement.query(rusqlite::params![normalized])?)?
            } else {
                let mut statement = connection.prepare_cached(&self.user_by_names)?;
                decode_all(statement.query(rusqlite::params![normalized, legacy])?)?
            };
            Ok(rows)
        })
    }

    /// Runs `read` on this thread's connection to the database, opening it first if needed. A
    /// connection that failed is closed, so the next read opens a fresh one.
    fn with_connection<T>(
        &self,
        read: impl FnOnce(&rusqlite::Connection) -> Result<T, ReadError>,
    ) -> Result<T, Fallback> {
        CONNECTIONS.with(|connections| {
            let mut connections = connections.try_borrow_mut().map_err(|_| Fallback)?;
            let position = match connections.iter().position(|(db, _)| *db == self.database) {
                Some(position) => position,
                None => {
                    let connection = self.open().map_err(|err| {
                        tracing::debug!(error = %err, "cannot open an inline SQLite reader");
                        Fallback
                    })?;
                    if connections.len() >= MAX_CONNECTIONS_PER_THREAD {
                        connections.remove(0);
                    }
                    connections.push((self.database, connection));
                    connections.len() - 1
                }
            };
            read(&connections[position].1).map_err(|err| {
                tracing::debug!(error = ?err, "an inline SQLite read failed; reading through sqlx");
                // A failure of SQLite itself (not a value of an unexpected type) may have left
                // the connection unusable.
                if matches!(err, ReadError::Sqlite(rusqlite::Error::SqliteFailure(..))) {
                    connections.remove(position);
                }
                Fallback
            })
        })
    }

    fn open(&self) -> rusqlite::Result<rusqlite::Connection> {
        use rusqlite::OpenFlags;
        let connection = rusqlite::Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // Never waits for a lock: sqlx's pool, which does, is the fallback.
        connection.busy_timeout(std::time::Duration::ZERO)?;
        connection.pragma_update(None, "query_only", true)?;
        connection.pragma_update(None, "cache_size", super::SQLITE_CACHE_SIZE)?;
        connection.set_prepared_statement_cache_capacity(8);
        Ok(connection)
    }
}

/// Why an inline read did not give an answer.
#[derive(Debug)]
enum ReadError {
    Sqlite(#[allow(dead_code)] rusqlite::Error),
    /// A value not stored in the form sqlx writes (a hand edit): sqlx's decoder decides.
    Undecodable(#[allow(dead_code)] &'static str),
}

impl From<rusqlite::Error> for ReadError {
    fn from(err: rusqlite::Error) -> Self {
        ReadError::Sqlite(err)
    }
}

/// A row of `session_and_user_query`, read the way sqlx's SQLite decoders read it: UUIDs as
/// 16-byte blobs, timestamps as RFC 3339 text, booleans as integers.
fn decode(
    session_id: Uuid,
    row: &rusqlite::Row<'_>,
) -> Result<(SessionState, user::Model), ReadError> {
    let session = SessionState {
        id: session_id,
        last_used_at: timestamp(row, "session_last_used_at")?,
        expires_at: timestamp(row, "session_expires_at")?,
        revoked_at: optional_timestamp(row, "session_revoked_at")?,
    };
    Ok((session, decode_user(row)?))
}

fn decode_all(mut rows: rusqlite::Rows<'_>) -> Result<Vec<user::Model>, ReadError> {
    let mut users = Vec::new();
    while let Some(row) = rows.next()? {
        users.push(decode_user(row)?);
    }
    Ok(users)
}

/// The user's columns of a row, by name.
fn decode_user(row: &rusqlite::Row<'_>) -> Result<user::Model, ReadError> {
    let id: Vec<u8> = row.get("id")?;
    Ok(user::Model {
        id: Uuid::from_slice(&id).map_err(|_| ReadError::Undecodable("id"))?,
        username: row.get("username")?,
        username_normalized: row.get("username_normalized")?,
        username_skeleton: row.get("username_skeleton")?,
        email: row.get("email")?,
        full_name: row.get("full_name")?,
        hashed_password: row.get("hashed_password")?,
        disabled: row.get("disabled")?,
        scopes: row.get("scopes")?,
        created_at: timestamp(row, "created_at")?,
        updated_at: timestamp(row, "updated_at")?,
        last_login_at: optional_timestamp(row, "last_login_at")?,
    })
}

fn timestamp(row: &rusqlite::Row<'_>, column: &'static str) -> Result<DateTime<Utc>, ReadError> {
    optional_timestamp(row, column)?.ok_or(ReadError::Undecodable(column))
}

fn optional_timestamp(
    row: &rusqlite::Row<'_>,
    column: &'static str,
) -> Result<Option<DateTime<Utc>>, ReadError> {
    let text: Option<String> = row.get(column)?;
    text.map(|text| parse_timestamp(&text).map_err(|_| ReadError::Undecodable(column)))
        .transpose()
}

/// A timestamp as sqlx writes it on SQLite (RFC 3339 text); also read by `inline_writes`.
pub(super) fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(text).map(|at| at.with_timezone(&Utc))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::{
        config::DatabaseSettings,
        db::{NewSession, NewUser, Store},
        domain::{HashedPassword, ScopeSet, Username},
    };

    /// A migrated store on an SQLite file of its own, and the file's directory.
    pub(in crate::db) async fn file_store() -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("portcullis-inline-{}", Uuid::new_v4()));
        let store = Store::connect(&DatabaseSettings {
            url: format!("sqlite://{}?mode=rwc", dir.join("p.db").display()),
            max_connections: None,
        })
        .await
        .unwrap();
        store.migrate().await.unwrap();
        (store, dir)
    }

    /// An active account `name` with scopes `me items` (and a stand-in hash).
    pub(in crate::db) async fn test_user(
        store: &Store,
        name: &str,
        full_name: Option<&str>,
    ) -> crate::db::User {
        store
            .create_user(
                NewUser {
                    username: Username::parse(name).unwrap(),
                    email: None,
                    full_name: full_name.map(str::to_owned),
                    hashed_password: HashedPassword::from_phc(
                        "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
                    ),
                    disabled: false,
                    scopes: ScopeSet::parse("me items").unwrap(),
                },
                |_| Vec::new(),
            )
            .await
            .unwrap()
    }

    /// An account (`me items`, a full name) with one live session of scope `me`.
    async fn user_with_session(store: &Store, name: &str) -> (crate::db::User, crate::db::Session) {
        let user = test_user(store, name, Some("In Line")).await;
        let session = store
            .start_session(NewSession {
                id: Uuid::now_v7(),
                user_id: user.id,
                scopes: ScopeSet::parse("me").unwrap(),
                user_agent: None,
                client_address: "127.0.0.1".into(),
                lifetime: chrono::Duration::days(1),
            })
            .await
            .unwrap();
        (user, session)
    }

    /// The inline read answers exactly what sqlx answers, and sees each write at the next read.
    #[tokio::test]
    async fn inline_reads_answer_what_sqlx_answers_and_see_every_commit() {
        let (store, dir) = file_store().await;
        let inline = store
            .inline_reads
            .clone()
            .expect("an SQLite file gets inline reads");
        let (user, session) = user_with_session(&store, "inline").await;

        let through_sqlx = store
            .find_session_and_user_through_sqlx(session.id, user.id, None)
            .await
            .unwrap()
            .expect("the session is found");
        let inline_found = inline
            .session_and_user(session.id, user.id, None)
            .expect("read inline")
            .expect("the session is found");
        assert_eq!(inline_found, through_sqlx);
        assert_eq!(inline_found.0.revoked_at, None);

        // The login's lookup by name: the same row as sqlx's, by one form or by two.
        let by_sqlx = super::super::users::user_by_name_query("inline", "inline")
            .all(store.connection())
            .await
            .unwrap();
        assert_eq!(inline.users_by_name("inline", "inline").unwrap(), by_sqlx);
        assert_eq!(inline.users_by_name("nobody", "inline").unwrap(), by_sqlx);
        assert_eq!(inline.users_by_name("nobody", "nobody").unwrap(), vec![]);
        assert_eq!(by_sqlx[0], through_sqlx.1);

        // Another user's id, an unknown session, a key that does not exist: nothing, as sqlx.
        for (session_id, user_id, key) in [
            (session.id, Uuid::now_v7(), None),
            (Uuid::now_v7(), user.id, None),
            (session.id, user.id, Some(("no-such-kid", "tag"))),
        ] {
            assert_eq!(
                inline.session_and_user(session_id, user_id, key).unwrap(),
                None
            );
            assert_eq!(
                store
                    .find_session_and_user_through_sqlx(session_id, user_id, key)
                    .await
                    .unwrap(),
                None
            );
        }

        // A revocation through sqlx is seen by the very next inline read on this thread.
        assert!(store.revoke_session(session.id, Vec::new).await.unwrap());
        let revoked = inline
            .session_and_user(session.id, user.id, None)
            .unwrap()
            .unwrap();
        assert!(revoked.0.revoked_at.is_some());
        assert_eq!(
            Some(revoked),
            store
                .find_session_and_user_through_sqlx(session.id, user.id, None)
                .await
                .unwrap()
        );
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// An API key's read: what sqlx reads, for a key with and without an expiry, and nothing
    /// for an unknown id; a deletion is seen at the next read.
    #[tokio::test]
    async fn the_api_key_read_answers_what_sqlx_answers() {
        let (store, dir) = file_store().await;
        let inline = store.inline_reads.clone().unwrap();
        let (user, _) = user_with_session(&store, "keyholder").await;
        let mut ids = Vec::new();
        for expires_at in [None, Some(crate::db::now() + chrono::Duration::days(3))] {
            let new = crate::db::NewApiKey {
                id: Uuid::now_v7(),
                user_id: user.id,
                name: "k".into(),
                secret_hash: "ab".repeat(32),
                scopes: ScopeSet::parse("items").unwrap(),
                created_at: crate::db::now(),
                expires_at,
            };
            ids.push(new.id);
            let created = store.create_api_key(new, 50, |_| Vec::new()).await.unwrap();
            assert!(matches!(created, crate::db::KeyCreation::Created(_)));
        }
        for id in &ids {
            let through_sqlx = store.find_api_key_and_user_through_sqlx(*id).await.unwrap();
            let read_inline = inline.api_key_and_user(*id).expect("read inline");
            assert!(through_sqlx.is_some());
            assert_eq!(read_inline, through_sqlx);
        }
        assert_eq!(inline.api_key_and_user(Uuid::now_v7()).unwrap(), None);
        store
            .delete_api_key(None, ids[0], |_| Vec::new())
            .await
            .unwrap();
        assert_eq!(inline.api_key_and_user(ids[0]).unwrap(), None);
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A timestamp in a form sqlx writes but RFC 3339 does not cover is left to sqlx.
    #[tokio::test]
    async fn a_value_it_cannot_decode_falls_back_to_sqlx() {
        use sea_orm::ConnectionTrait as _;

        let (store, dir) = file_store().await;
        let inline = store.inline_reads.clone().unwrap();
        let (user, session) = user_with_session(&store, "edited").await;
        store
            .connection()
            .execute_unprepared("UPDATE users SET updated_at = '2026-01-02 03:04:05'")
            .await
            .unwrap();
        assert!(matches!(
            inline.session_and_user(session.id, user.id, None),
            Err(Fallback)
        ));
        let (_, found) = store
            .find_session_and_user(session.id, user.id, None)
            .await
            .unwrap()
            .expect("sqlx reads it");
        assert_eq!(found.updated_at.to_rfc3339(), "2026-01-02T03:04:05+00:00");
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
