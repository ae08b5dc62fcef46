//! Sessions (one per password login) and their refresh tokens, stored as hashes.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait as _, Condition, EntityTrait as _, QueryFilter as _, QueryOrder as _,
    QuerySelect as _, TransactionTrait as _,
    sea_query::{Expr, Query},
};
use uuid::Uuid;

use super::{
    AuditEvent, Store, StoreError, User,
    audit_events::insert_audit_events_on,
    entities::{refresh_token, session, signing_key, user},
    inline_writes::InlineTransaction,
};
use crate::domain::ScopeSet;

/// A session as stored.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: Uuid,
    pub user_id: Uuid,
    /// The scopes granted at login: a refresh may narrow them, never widen.
    pub scopes: ScopeSet,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub user_agent: Option<String>,
    pub client_address: String,
    /// The generation of the refresh token handed out last.
    pub refresh_generation: u64,
    /// When that token was handed out by an exchange; `None` while it is the login's.
    pub refresh_rotated_at: Option<DateTime<Utc>>,
}

impl Session {
    /// What the check of every request reads of it.
    pub fn state(&self) -> SessionState {
        SessionState {
            id: self.id,
            last_used_at: self.last_used_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
        }
    }
}

impl From<session::Model> for Session {
    fn from(row: session::Model) -> Self {
        Self {
            id: row.id,
            user_id: row.user_id,
            // Written by us from a parsed set; an unknown scope (a hand edit) grants nothing.
            scopes: ScopeSet::parse(&row.scope).unwrap_or_default(),
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
            user_agent: row.user_agent,
            client_address: row.client_address,
            refresh_generation: u64::try_from(row.refresh_generation).unwrap_or(u64::MAX),
            refresh_rotated_at: row.refresh_rotated_at,
        }
    }
}

/// What the check of every request needs to know about a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionState {
    pub id: Uuid,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl SessionState {
    /// Neither revoked nor expired at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}

/// A user row with the columns of its session that [`SessionState`] needs.
#[derive(Debug, sea_orm::FromQueryResult)]
struct UserWithSession {
    id: Uuid,
    username: String,
    username_normalized: String,
    username_skeleton: Option<String>,
    email: Option<String>,
    full_name: Option<String>,
    hashed_password: String,
    disabled: bool,
    scopes: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    last_login_at: Option<DateTime<Utc>>,
    session_last_used_at: DateTime<Utc>,
    session_expires_at: DateTime<Utc>,
    session_revoked_at: Option<DateTime<Utc>>,
}

impl UserWithSession {
    fn user(self) -> user::Model {
        user::Model {
            id: self.id,
            username: self.username,
            username_normalized: self.username_normalized,
            username_skeleton: self.username_skeleton,
            email: self.email,
            full_name: self.full_name,
            hashed_password: self.hashed_password,
            disabled: self.disabled,
            scopes: self.scopes,
            created_at: self.created_at,
            updated_at: self.updated_at,
            last_login_at: self.last_login_at,
        }
    }
}

/// What a login records about its session.
#[derive(Debug)]
pub struct NewSession {
    /// Chosen by the caller, who signs the session's first access token before storing it.
    pub id: Uuid,
    pub user_id: Uuid,
    pub scopes: ScopeSet,
    pub user_agent: Option<String>,
    pub client_address: String,
    pub lifetime: chrono::Duration,
}

/// A refresh token issued before generations existed, found by its hash, with its session.
#[derive(Debug)]
pub struct LegacyRefreshToken {
    pub rotated_at: Option<DateTime<Utc>>,
    pub session: Session,
}

/// How an exchange of a refresh token ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Exchange {
    /// Hand out the session's token of this generation: the next one, just recorded, or —
    /// for a token exchanged less than the grace period ago — the one that exchange handed out.
    Issue(u64),
    /// The presented generation was spent longer ago than the grace period allows (or is not
    /// the session's at all): nothing was recorded.
    Reused,
    /// The session was revoked, or expired, since it was read: nothing was recorded.
    SessionEnded,
}

/// The longest user agent kept; the rest is cut (it is for people to recognise a device).
const MAX_USER_AGENT_CHARS: usize = 256;

impl Store {
    /// Records a new session; its first refresh token is generation 0.
    pub async fn start_session(&self, new: NewSession) -> Result<Session, StoreError> {
        start_session_on(self.connection(), new).await
    }

    /// The session with this id, live or not.
    pub async fn find_session(&self, id: Uuid) -> Result<Option<Session>, StoreError> {
        Ok(session::Entity::find_by_id(id)
            .one(self.connection())
            .await?
            .map(Session::from))
    }

    /// The refresh token issued before generations with this hash, and its session.
    pub async fn find_legacy_refresh_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<LegacyRefreshToken>, StoreError> {
        let found = refresh_token::Entity::find_by_id(token_hash.to_owned())
            .find_also_related(session::Entity)
            .one(self.connection())
            .await?;
        Ok(found.and_then(|(token, session)| {
            session.map(|session| LegacyRefreshToken {
                rotated_at: token.rotated_at,
                session: session.into(),
            })
        }))
    }

    /// Exchanges the session's refresh token of generation `presented`, atomically, each step
    /// one conditional statement that also checks the session is live (so an exchange racing
    /// a revocation records nothing): of exchanges racing with one token, exactly one moves the
    /// session to the next generation; the others, and any later one within `grace` of it, are
    /// handed that same next generation (two tabs refreshing at once: one chain, not two).
    /// Anything else presents a spent token: [`Exchange::Reused`].
    pub async fn exchange_refresh_token(
        &self,
        session_id: Uuid,
        presented: u64,
        grace: chrono::Duration,
    ) -> Result<Exchange, StoreError> {
        let now = super::now();
        let (Ok(current), Some(next)) = (i64::try_from(presented), presented.checked_add(1)) else {
            return Ok(Exchange::Reused);
        };
        let Ok(next_stored) = i64::try_from(next) else {
            return Ok(Exchange::Reused);
        };
        let live = || {
            session::Entity::update_many()
                .filter(session::Column::Id.eq(session_id))
                .filter(session::Column::RevokedAt.is_null())
                .filter(session::Column::ExpiresAt.gt(now))
        };
        let advanced = live()
            .col_expr(session::Column::RefreshGeneration, Expr::value(next_stored))
            .col_expr(session::Column::RefreshRotatedAt, Expr::value(now))
            .col_expr(session::Column::LastUsedAt, Expr::value(now))
            .filter(session::Column::RefreshGeneration.eq(current))
            .exec(self.connection())
            .await?;
        if advanced.rows_affected == 1 {
            return Ok(Exchange::Issue(next));
        }
        let within_grace = live()
            .col_expr(session::Column::LastUsedAt, Expr::value(now))
            .filter(session::Column::RefreshGeneration.eq(next_stored))
            .filter(session::Column::RefreshRotatedAt.gte(now - grace))
            .exec(self.connection())
            .await?;
        if within_grace.rows_affected == 1 {
            return Ok(Exchange::Issue(next));
        }
        Ok(match self.find_session(session_id).await? {
            Some(session) if session.state().is_live(now) => Exchange::Reused,
            _ => Exchange::SessionEnded,
        })
    }

    /// Ends a session; `false` when it was already ended (or never existed). When it ends, the
    /// audit `events` are inserted in the same transaction.
    pub async fn revoke_session(
        &self,
        id: Uuid,
        events: impl FnOnce() -> Vec<AuditEvent>,
    ) -> Result<bool, StoreError> {
        let txn = self.connection().begin().await?;
        let result = session::Entity::update_many()
            .col_expr(session::Column::RevokedAt, Expr::value(super::now()))
            .filter(session::Column::Id.eq(id))
            .filter(session::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
        let ended = result.rows_affected > 0;
        if ended {
            insert_audit_events_on(&txn, events()).await?;
        }
        txn.commit().await?;
        Ok(ended)
    }

    /// Ends one of `user_id`'s live sessions; `false` when the user has no such live session.
    /// When it ends, the audit `events` are inserted in the same transaction.
    pub async fn revoke_user_session(
        &self,
        user_id: Uuid,
        id: Uuid,
        events: impl FnOnce() -> Vec<AuditEvent>,
    ) -> Result<bool, StoreError> {
        let now = super::now();
        let txn = self.connection().begin().await?;
        let result = session::Entity::update_many()
            .col_expr(session::Column::RevokedAt, Expr::value(now))
            .filter(session::Column::Id.eq(id))
            .filter(session::Column::UserId.eq(user_id))
            .filter(session::Column::RevokedAt.is_null())
            .filter(session::Column::ExpiresAt.gt(now))
            .exec(&txn)
            .await?;
        let ended = result.rows_affected > 0;
        if ended {
            insert_audit_events_on(&txn, events()).await?;
        }
        txn.commit().await?;
        Ok(ended)
    }

    /// Ends every live session of `user_id`, but `except`; returns how many were ended. The
    /// audit `events`, made from that count, are inserted in the same transaction.
    pub async fn revoke_user_sessions(
        &self,
        user_id: Uuid,
        except: Option<Uuid>,
        events: impl FnOnce(u64) -> Vec<AuditEvent>,
    ) -> Result<u64, StoreError> {
        let txn = self.connection().begin().await?;
        let ended = revoke_user_sessions_on(&txn, user_id, except, super::now()).await?;
        insert_audit_events_on(&txn, events(ended)).await?;
        txn.commit().await?;
        Ok(ended)
    }

    /// `user_id`'s live sessions, most recently used first.
    pub async fn live_sessions(&self, user_id: Uuid) -> Result<Vec<Session>, StoreError> {
        Ok(session::Entity::find()
            .filter(session::Column::UserId.eq(user_id))
            .filter(session::Column::RevokedAt.is_null())
            .filter(session::Column::ExpiresAt.gt(super::now()))
            .order_by_desc(session::Column::LastUsedAt)
            .order_by_desc(session::Column::Id)
            .all(self.connection())
            .await?
            .into_iter()
            .map(Session::from)
            .collect())
    }

    /// The per-request check of an access token, in one query: its session (of its user) and
    /// that user, provided the key named by `key` (kid and the tag it has while active; if any)
    /// is not retired and still carries that tag. `None` when any of them is missing.
    ///
    /// The user's columns and three of the session's, unaliased: SeaORM's `find_also_related`
    /// (every column of both, prefixed) measured 50 µs more per request.
    pub async fn find_session_and_user(
        &self,
        session_id: Uuid,
        user_id: Uuid,
        key: Option<(&str, &str)>,
    ) -> Result<Option<(SessionState, User)>, StoreError> {
        if let Some(inline) = &self.inline_reads {
            if let Ok(found) = inline.session_and_user(session_id, user_id, key) {
                return Ok(found.map(|(session, user)| (session, user.into())));
            }
        }
        Ok(self
            .find_session_and_user_through_sqlx(session_id, user_id, key)
            .await?
            .map(|(session, user)| (session, user.into())))
    }

    /// `find_session_and_user` through SeaORM and sqlx's pool.
    pub(super) async fn find_session_and_user_through_sqlx(
        &self,
        session_id: Uuid,
        user_id: Uuid,
        key: Option<(&str, &str)>,
    ) -> Result<Option<(SessionState, user::Model)>, StoreError> {
        let found = session_and_user_query(session_id, user_id, key)
            .into_model::<UserWithSession>()
            .one(self.connection())
            .await?;
        Ok(found.map(|row| {
            let session = SessionState {
                id: session_id,
                last_used_at: row.session_last_used_at,
                expires_at: row.session_expires_at,
                revoked_at: row.session_revoked_at,
            };
            (session, row.user())
        }))
    }

    /// Records that a session was used now, unless that was recorded less than `precision` ago
    /// (so that a busy session costs one write a minute, not one per request).
    pub async fn touch_session(
        &self,
        id: Uuid,
        precision: chrono::Duration,
    ) -> Result<(), StoreError> {
        let now = super::now();
        session::Entity::update_many()
            .col_expr(session::Column::LastUsedAt, Expr::value(now))
            .filter(session::Column::Id.eq(id))
            .filter(session::Column::LastUsedAt.lt(now - precision))
            .exec(self.connection())
            .await?;
        Ok(())
    }

    /// Deletes sessions (and, by cascade, their refresh tokens) that ended before `before`.
    pub async fn delete_ended_sessions(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let result = session::Entity::delete_many()
            .filter(
                Condition::any()
                    .add(session::Column::ExpiresAt.lt(before))
                    .add(session::Column::RevokedAt.lt(before)),
            )
            .exec(self.connection())
            .await?;
        Ok(result.rows_affected)
    }
}

/// The statement of `find_session_and_user`: the user's columns and three of the session's
/// (aliased `session_…`), for the session `session_id` of `user_id`, provided the key named by
/// `key` (kid, tag) is not retired and still carries that tag. Rendered once for the inline
/// SQLite reads (`inline_reads`), which bind the values in the order given here.
pub(super) fn session_and_user_query(
    session_id: Uuid,
    user_id: Uuid,
    key: Option<(&str, &str)>,
) -> sea_orm::Select<user::Entity> {
    let mut condition = Condition::all()
        .add(session::Column::Id.eq(session_id))
        .add(session::Column::UserId.eq(user_id));
    if let Some((kid, tag)) = key {
        condition = condition.add(Expr::exists(
            Query::select()
                .expr(Expr::val(1))
                .from(signing_key::Entity)
                .and_where(signing_key::Column::Kid.eq(kid))
                .and_where(signing_key::Column::RetiredAt.is_null())
                // A retired key's tag differs: setting `retired_at` back to NULL by hand
                // does not bring it back.
                .and_where(signing_key::Column::AuthenticationTag.eq(tag))
                .to_owned(),
        ));
    }
    user::Entity::find()
        .inner_join(session::Entity)
        .column_as(session::Column::LastUsedAt, "session_last_used_at")
        .column_as(session::Column::ExpiresAt, "session_expires_at")
        .column_as(session::Column::RevokedAt, "session_revoked_at")
        .filter(condition)
}

/// Ends every live session of `user_id` but `except`, at `now`, on `db` (a connection or a
/// transaction); how many ended.
pub(super) async fn revoke_user_sessions_on<C: sea_orm::ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    except: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let mut update = session::Entity::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(now))
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::RevokedAt.is_null())
        .filter(session::Column::ExpiresAt.gt(now));
    if let Some(except) = except {
        update = update.filter(session::Column::Id.ne(except));
    }
    Ok(update.exec(db).await?.rows_affected)
}

/// Records a new session; its first refresh token is generation 0.
pub(super) async fn start_session_on<C: sea_orm::ConnectionTrait>(
    db: &C,
    new: NewSession,
) -> Result<Session, StoreError> {
    let session = session::Entity::insert(new_session_row(new))
        .exec_with_returning(db)
        .await?;
    Ok(session.into())
}

/// As [`start_session_on`], in a login's inline transaction: the session is the row as
/// inserted (every column is set here; the table has no defaults or triggers that change it).
pub(super) fn start_session_inline(
    txn: &InlineTransaction,
    new: NewSession,
) -> Result<Session, StoreError> {
    use sea_orm::{QueryTrait as _, TryIntoModel as _};

    let row = new_session_row(new);
    txn.execute(&session::Entity::insert(row.clone()).build(sea_orm::DbBackend::Sqlite))?;
    Ok(row.try_into_model()?.into())
}

/// The row of a new session; its first refresh token is generation 0.
fn new_session_row(new: NewSession) -> session::ActiveModel {
    let now = super::now();
    session::ActiveModel {
        id: Set(new.id),
        user_id: Set(new.user_id),
        scope: Set(new.scopes.to_string()),
        created_at: Set(now),
        last_used_at: Set(now),
        expires_at: Set(now + new.lifetime),
        revoked_at: Set(None),
        user_agent: Set(new
            .user_agent
            .map(|agent| agent.chars().take(MAX_USER_AGENT_CHARS).collect())),
        client_address: Set(new.client_address),
        refresh_generation: Set(0),
        refresh_rotated_at: Set(None),
    }
}
