//! Changing, listing and removing accounts: the admin API's and self-service's queries. The
//! last-admin rule is decided inside the statement that would break it, under a lock on
//! PostgreSQL, so that two admins demoting each other at once cannot leave none.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait as _, ConnectionTrait, DbBackend, EntityTrait as _, QueryFilter as _,
    QueryOrder as _, QuerySelect as _, TransactionTrait as _,
    sea_query::{Alias, Expr, ExprTrait as _, LikeExpr, Order, Query, SimpleExpr},
};
use uuid::Uuid;

use super::{
    AuditEvent, Store, StoreError, User,
    audit_events::insert_audit_events_on,
    entities::{session, user},
    inline_writes::InlineTransaction,
};
use crate::domain::{EmailAddress, HashedPassword, Scope, ScopeSet};

/// Changes to an account; `None` leaves a member as it is, `Some(None)` clears it.
#[derive(Debug, Default, Clone)]
pub struct UserChanges {
    pub email: Option<Option<EmailAddress>>,
    pub full_name: Option<Option<String>>,
    pub disabled: Option<bool>,
    pub scopes: Option<ScopeSet>,
}

impl UserChanges {
    /// Whether, applied to an active admin, the account would stop being one.
    fn demotes_an_admin(&self) -> bool {
        self.disabled == Some(true)
            || self
                .scopes
                .as_ref()
                .is_some_and(|scopes| !scopes.contains(Scope::Admin))
    }

    fn is_empty(&self) -> bool {
        self.email.is_none()
            && self.full_name.is_none()
            && self.disabled.is_none()
            && self.scopes.is_none()
    }
}

/// Who sets a new password, which decides which sessions survive it.
#[derive(Debug, Clone, Copy)]
pub enum PasswordChange<'a> {
    /// An admin or an operator: every session ends.
    Reset,
    /// The owner, who confirmed `verified` (the hash as read) from their live `session`: that
    /// session stays, every other ends. `None` for an owner authenticated by an API key (not a
    /// session): every session ends; the keys stay.
    ByOwner {
        verified: &'a HashedPassword,
        session: Option<Uuid>,
    },
}

/// What a change guarded by the last-admin rule came to.
#[derive(Debug)]
pub enum Guarded<T> {
    Done(T),
    NotFound,
    /// It would leave no active admin.
    LastAdmin,
}

/// Which accounts the admin list shows.
#[derive(Debug, Default, Clone)]
pub struct UserFilter {
    /// A part of the username or e-mail address, without regard to case.
    pub search: Option<String>,
    pub disabled: Option<bool>,
}

/// Where a page of the admin list starts: after the account with this normalized name (names
/// are unique in that form, so it is a total order, and a name added while a client pages
/// through is seen at most once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCursor(String);

impl UserCursor {
    /// The opaque text given to clients: the name's bytes in hexadecimal, safe in a URL.
    pub fn encode(&self) -> String {
        self.0.bytes().map(|byte| format!("{byte:02x}")).collect()
    }

    /// `None` for text [`UserCursor::encode`] cannot have produced.
    pub fn decode(text: &str) -> Option<Self> {
        if text.is_empty()
            || text.len() % 2 != 0
            || text.len() > 2 * 4 * 256
            || !text.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return None;
        }
        let bytes = (0..text.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        String::from_utf8(bytes)
            .ok()
            .filter(|name| !name.contains('\0'))
            .map(Self)
    }
}

/// PostgreSQL's lock key for changes that may remove an admin ("admins").
const LAST_ADMIN_LOCK: i64 = 0x6164_6d69_6e73;

impl Store {
    /// One page of accounts matching `filter`, after `after`, in code-point order of their
    /// normalized names; and whether more follow.
    pub async fn list_users_page(
        &self,
        filter: &UserFilter,
        after: Option<&UserCursor>,
        limit: u32,
    ) -> Result<(Vec<User>, Option<UserCursor>), StoreError> {
        // PostgreSQL compares by the database's collation unless told: "C" is SQLite's order.
        let backend = self.connection().get_database_backend();
        let name = match backend {
            DbBackend::Postgres => r#""username_normalized" COLLATE "C""#,
            _ => r#""username_normalized""#,
        };
        let mut query = user::Entity::find();
        if let Some(disabled) = filter.disabled {
            query = query.filter(user::Column::Disabled.eq(disabled));
        }
        if let Some(search) = filter.search.as_deref().filter(|s| !s.is_empty()) {
            let name_part = like_pattern(&crate::domain::caseless_form(search));
            let email_part = like_pattern(&search.to_lowercase());
            query = query.filter(
                Expr::col(user::Column::UsernameNormalized)
                    .like(name_part)
                    .or(Expr::expr(Expr::cust(r#"lower("email")"#)).like(email_part)),
            );
        }
        if let Some(UserCursor(last)) = after {
            query = query.filter(match backend {
                DbBackend::Postgres => {
                    Expr::cust_with_values(format!("{name} > $1"), [last.clone()])
                }
                _ => Expr::col(user::Column::UsernameNormalized).gt(last.clone()),
            });
        }
        let mut rows = query
            .order_by(Expr::cust(name), Order::Asc)
            .limit(u64::from(limit) + 1)
            .all(self.connection())
            .await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next = more
            .then(|| {
                rows.last()
                    .map(|row| UserCursor(row.username_normalized.clone()))
            })
            .flatten();
        Ok((rows.into_iter().map(User::from).collect(), next))
    }

    /// Applies `changes` to the account `id`, unless that would leave no active admin. The
    /// audit `events`, made from the account as it was and as it is, are inserted in the same
    /// transaction.
    pub async fn update_user(
        &self,
        id: Uuid,
        changes: UserChanges,
        events: impl FnOnce(&User, &User) -> Vec<AuditEvent>,
    ) -> Result<Guarded<User>, StoreError> {
        let txn = begin_read_committed(self.connection()).await?;
        if changes.demotes_an_admin() {
            lock_admins(&txn).await?;
        }
        // The account as it was, locked until this commits (what changed is told from it).
        lock_for_write(&txn).await?;
        let Some(before) = user::Entity::find_by_id(id)
            .lock_exclusive()
            .one(&txn)
            .await?
            .map(User::from)
        else {
            txn.rollback().await?;
            return Ok(Guarded::NotFound);
        };
        let rows_affected = if changes.is_empty() {
            1
        } else {
            let mut update = user::Entity::update_many()
                .col_expr(user::Column::UpdatedAt, Expr::value(super::now()))
                .filter(user::Column::Id.eq(id));
            if let Some(email) = &changes.email {
                let email = email.as_ref().map(|e| e.as_str().to_owned());
                update = update.col_expr(user::Column::Email, Expr::value(email));
            }
            if let Some(full_name) = &changes.full_name {
                update = update.col_expr(user::Column::FullName, Expr::value(full_name.clone()));
            }
            if let Some(disabled) = changes.disabled {
                update = update.col_expr(user::Column::Disabled, Expr::value(disabled));
            }
            if let Some(scopes) = &changes.scopes {
                update = update.col_expr(user::Column::Scopes, Expr::value(scopes.to_string()));
            }
            if changes.demotes_an_admin() {
                update = update.filter(another_active_admin_remains(id));
            }
            update.exec(&txn).await?.rows_affected
        };
        let found = user::Entity::find_by_id(id).one(&txn).await?;
        let outcome = match found {
            None => Guarded::NotFound,
            Some(_) if rows_affected == 0 => Guarded::LastAdmin,
            Some(row) => {
                let after = User::from(row);
                insert_audit_events_on(&txn, events(&before, &after)).await?;
                Guarded::Done(after)
            }
        };
        txn.commit().await?;
        Ok(outcome)
    }

    /// Deletes the account `id` and, by cascade, its items and sessions, unless it is the last
    /// active admin; the audit `events` are inserted in the same transaction.
    pub async fn delete_user_by_id(
        &self,
        id: Uuid,
        events: impl FnOnce() -> Vec<AuditEvent>,
    ) -> Result<Guarded<()>, StoreError> {
        let txn = begin_read_committed(self.connection()).await?;
        lock_admins(&txn).await?;
        let deleted = user::Entity::delete_many()
            .filter(user::Column::Id.eq(id))
            .filter(another_active_admin_remains(id))
            .exec(&txn)
            .await?
            .rows_affected;
        let outcome = if deleted > 0 {
            insert_audit_events_on(&txn, events()).await?;
            Guarded::Done(())
        } else if user::Entity::find_by_id(id).one(&txn).await?.is_some() {
            Guarded::LastAdmin
        } else {
            Guarded::NotFound
        };
        txn.commit().await?;
        Ok(outcome)
    }

    /// Sets a new password and ends every session of the account (but the owner's own, for a
    /// change by the owner), in one transaction; how many sessions ended, or `None` when there
    /// is no such account, or (for a change by the owner) the confirmed password or the
    /// owner's session is no longer current. A refresh racing this ends either way: it either
    /// commits first (and its session is ended here) or finds its session ended. The audit
    /// `events`, made from how many sessions ended, are inserted in the same transaction.
    pub async fn change_password(
        &self,
        id: Uuid,
        hashed_password: HashedPassword,
        change: PasswordChange<'_>,
        events: impl FnOnce(u64) -> Vec<AuditEvent>,
    ) -> Result<Option<u64>, StoreError> {
        let now = super::now();
        let txn = begin_read_committed(self.connection()).await?;
        let mut update = user::Entity::update_many()
            .col_expr(
                user::Column::HashedPassword,
                Expr::value(hashed_password.expose().to_owned()),
            )
            .col_expr(user::Column::UpdatedAt, Expr::value(now))
            .filter(user::Column::Id.eq(id));
        let keep = match change {
            PasswordChange::Reset => None,
            PasswordChange::ByOwner { verified, session } => {
                // Compare and swap: the password the owner confirmed must still be the one
                // stored (a reset or another change committed meanwhile wins), and the owner's
                // session, if any, must still be live (a reset ended it).
                update = update.filter(user::Column::HashedPassword.eq(verified.expose()));
                if let Some(session) = session {
                    update = update.filter(Expr::exists(
                        Query::select()
                            .expr(Expr::val(1))
                            .from(session::Entity)
                            .and_where(session::Column::Id.eq(session))
                            .and_where(session::Column::UserId.eq(id))
                            .and_where(session::Column::RevokedAt.is_null())
                            .and_where(session::Column::ExpiresAt.gt(now))
                            .to_owned(),
                    ));
                }
                session
            }
        };
        let changed = update.exec(&txn).await?.rows_affected;
        if changed == 0 {
            txn.rollback().await?;
            return Ok(None);
        }
        let ended = super::sessions::revoke_user_sessions_on(&txn, id, keep, now).await?;
        insert_audit_events_on(&txn, events(ended)).await?;
        txn.commit().await?;
        Ok(Some(ended))
    }

    /// Records a successful login of the account `id` at `at`, if its stored password hash is
    /// still `verified` (the one the password was checked against); `false`, recording nothing,
    /// when it changed meanwhile. On PostgreSQL the update waits for a change of that row in
    /// progress to commit and then reads the new row, so a reset racing a login is seen by one
    /// or the other; SQLite has one writer at a time.
    pub async fn record_login(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        verified: &HashedPassword,
    ) -> Result<bool, StoreError> {
        record_login_on(self.connection(), id, at, verified).await
    }
}

/// A transaction at READ COMMITTED on PostgreSQL whatever the database's default: the
/// last-admin guard and the password compare-and-swap rely on each statement seeing what
/// committed before it (under REPEATABLE READ the snapshot would predate the lock). SQLite has
/// one writer at a time and no such setting.
pub(super) async fn begin_read_committed(
    db: &super::Connection,
) -> Result<sea_orm::DatabaseTransaction, StoreError> {
    Ok(match db.get_database_backend() {
        DbBackend::Postgres => {
            db.begin_with_config(Some(sea_orm::IsolationLevel::ReadCommitted), None)
                .await?
        }
        _ => db.begin().await?,
    })
}

/// On SQLite, takes the database's write lock at once: a transaction that reads before it
/// writes would otherwise fail with "database is locked" when another write committed between
/// its read and its write (the busy timeout does not help there). PostgreSQL locks the row.
pub(super) async fn lock_for_write<C: ConnectionTrait>(txn: &C) -> Result<(), StoreError> {
    if txn.get_database_backend() == DbBackend::Sqlite {
        // An UPDATE takes SQLite's write lock even when it matches nothing.
        txn.execute_unprepared("UPDATE users SET id = id WHERE 1 = 0")
            .await?;
    }
    Ok(())
}

/// On PostgreSQL, waits for any other change that may remove an admin to commit, so that each
/// sees the others' outcome (READ COMMITTED alone lets two demotions each count the other as
/// the remaining admin). SQLite runs one writer at a time: the guarded statement suffices.
async fn lock_admins<C: ConnectionTrait>(txn: &C) -> Result<(), StoreError> {
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({LAST_ADMIN_LOCK})"))
            .await?;
    }
    Ok(())
}

/// True unless the row is an active admin with no other active admin beside it.
fn another_active_admin_remains(id: Uuid) -> SimpleExpr {
    let other = Alias::new("other_admin");
    let holds_admin = |table: &str| {
        Expr::cust(format!(
            r#"(' ' || "{table}"."scopes" || ' ') LIKE '% {} %'"#,
            Scope::Admin.as_str()
        ))
    };
    let this_is_active_admin = Expr::col((user::Entity, user::Column::Disabled))
        .eq(false)
        .and(holds_admin("users"));
    let another = Query::select()
        .expr(Expr::val(1))
        .from_as(user::Entity, other.clone())
        .and_where(Expr::col((other.clone(), user::Column::Id)).ne(id))
        .and_where(Expr::col((other.clone(), user::Column::Disabled)).eq(false))
        .and_where(holds_admin("other_admin"))
        .to_owned();
    this_is_active_admin.not().or(Expr::exists(another))
}

/// A LIKE pattern matching any text that contains `part`, its wildcards escaped.
fn like_pattern(part: &str) -> LikeExpr {
    let mut escaped = String::with_capacity(part.len() + 2);
    escaped.push('%');
    for c in part.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped.push('%');
    LikeExpr::new(escaped).escape('\\')
}

/// Records a successful login of the account `id` at `at`, if its stored password hash is
/// still `verified` (the one the password was checked against); `false`, recording nothing,
/// when it changed meanwhile. On PostgreSQL the update waits for a change of that row in
/// progress to commit and then reads the new row, so a reset racing a login is seen by one
/// or the other; SQLite has one writer at a time.
pub(super) async fn record_login_on<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    at: DateTime<Utc>,
    verified: &HashedPassword,
) -> Result<bool, StoreError> {
    let result = record_login_query(id, at, verified).exec(db).await?;
    Ok(result.rows_affected > 0)
}

/// As [`record_login_on`], in a login's inline transaction (SQLite has one writer at a time).
pub(super) fn record_login_inline(
    txn: &InlineTransaction,
    id: Uuid,
    at: DateTime<Utc>,
    verified: &HashedPassword,
) -> Result<bool, StoreError> {
    use sea_orm::QueryTrait as _;
    Ok(txn.execute(&record_login_query(id, at, verified).build(DbBackend::Sqlite))? > 0)
}

fn record_login_query(
    id: Uuid,
    at: DateTime<Utc>,
    verified: &HashedPassword,
) -> sea_orm::UpdateMany<user::Entity> {
    user::Entity::update_many()
        .col_expr(user::Column::LastLoginAt, Expr::value(Some(at)))
        .filter(user::Column::Id.eq(id))
        .filter(user::Column::HashedPassword.eq(verified.expose()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_what_they_cannot_be() {
        let cursor = UserCursor("jöhn doe".into());
        assert_eq!(UserCursor::decode(&cursor.encode()), Some(cursor));
        for bad in ["", "6", "zz", "ff", "00", "6a6", "+6a6f", "+6"] {
            assert_eq!(UserCursor::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn like_wildcards_in_a_search_are_literal() {
        let pattern = like_pattern("50%_a\\b");
        assert_eq!(
            format!("{pattern:?}"),
            format!("{:?}", LikeExpr::new("%50\\%\\_a\\\\b%").escape('\\'))
        );
    }
}
