use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, Condition, EntityTrait as _, QueryFilter as _,
    QueryOrder as _, SqlErr, TransactionTrait as _,
};
use uuid::Uuid;

use super::{AuditEvent, Store, StoreError, entities::user};
use crate::domain::{EmailAddress, HashedPassword, Scope, ScopeSet, Username};

/// A user as stored, hash included: handle with care, never serialize.
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub hashed_password: HashedPassword,
    pub disabled: bool,
    pub scopes: ScopeSet,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// `None` before the first login.
    pub last_login_at: Option<DateTime<Utc>>,
}

impl User {
    /// Whether the account is an active admin: what the last-admin rule keeps at least one of.
    pub fn is_active_admin(&self) -> bool {
        !self.disabled && self.scopes.contains(Scope::Admin)
    }
}

impl From<user::Model> for User {
    fn from(row: user::Model) -> Self {
        let scopes = ScopeSet::parse(&row.scopes).unwrap_or_else(|unknown| {
            // Only a hand-edited row gets here; keep the known scopes rather than fail.
            tracing::warn!(user_id = %row.id, unknown, "ignoring an unknown stored scope");
            row.scopes
                .split(' ')
                .filter_map(crate::domain::Scope::parse)
                .collect()
        });
        Self {
            id: row.id,
            username: row.username,
            email: row.email,
            full_name: row.full_name,
            hashed_password: HashedPassword::from_phc(row.hashed_password),
            disabled: row.disabled,
            scopes,
            created_at: row.created_at,
            updated_at: row.updated_at,
            last_login_at: row.last_login_at,
        }
    }
}

/// What is needed to create an account.
#[derive(Debug)]
pub struct NewUser {
    pub username: Username,
    pub email: Option<EmailAddress>,
    pub full_name: Option<String>,
    pub hashed_password: HashedPassword,
    pub disabled: bool,
    pub scopes: ScopeSet,
}

impl Store {
    /// Inserts a user; a name taken in any spelling, or one that looks like a taken one (same
    /// confusable skeleton), is [`StoreError::UsernameTaken`], decided by the unique indexes,
    /// so that concurrent creations cannot both win. The audit `events` made from the created
    /// account are inserted in the same transaction.
    pub async fn create_user(
        &self,
        new: NewUser,
        events: impl FnOnce(&User) -> Vec<AuditEvent>,
    ) -> Result<User, StoreError> {
        let now = super::now();
        let row = user::ActiveModel {
            id: Set(Uuid::now_v7()),
            username_normalized: Set(new.username.normalized()),
            username_skeleton: Set(Some(new.username.skeleton())),
            username: Set(new.username.as_str().to_owned()),
            email: Set(new.email.map(|e| e.as_str().to_owned())),
            full_name: Set(new.full_name),
            hashed_password: Set(new.hashed_password.expose().to_owned()),
            disabled: Set(new.disabled),
            scopes: Set(new.scopes.to_string()),
            created_at: Set(now),
            updated_at: Set(now),
            last_login_at: Set(None),
        };
        let txn = self.connection().begin().await?;
        let inserted: User = user::Entity::insert(row)
            .exec_with_returning(&txn)
            .await?
            .into();
        super::audit_events::insert_audit_events_on(&txn, events(&inserted)).await?;
        txn.commit().await?;
        Ok(inserted)
    }

    /// The account of `username` in any spelling (NFKC and case folding). An account from
    /// before that folding which kept its lower-cased form (it clashed with another, see
    /// [`Store::normalize_usernames`]) is found by that form, which its owner types.
    pub async fn find_user_by_username(
        &self,
        username: &Username,
    ) -> Result<Option<User>, StoreError> {
        let (normalized, legacy) = (username.normalized(), username.legacy_normalized());
        let inline = self
            .inline_reads
            .as_ref()
            .and_then(|inline| inline.users_by_name(&normalized, &legacy).ok());
        let mut found = match inline {
            Some(found) => found,
            None => {
                user_by_name_query(&normalized, &legacy)
                    .all(self.connection())
                    .await?
            }
        };
        // Two rows only when one kept its legacy form: its owner's exact spelling wins.
        found.sort_by_key(|row| row.username_normalized != legacy);
        Ok(found.into_iter().next().map(User::from))
    }

    pub async fn find_user_by_id(&self, id: Uuid) -> Result<Option<User>, StoreError> {
        Ok(user::Entity::find_by_id(id)
            .one(self.connection())
            .await?
            .map(User::from))
    }

    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        Ok(user::Entity::find()
            .order_by_asc(user::Column::UsernameNormalized)
            .all(self.connection())
            .await?
            .into_iter()
            .map(User::from)
            .collect())
    }

    /// Disables or enables a user; `false` when there is no such user.
    pub async fn set_user_disabled(
        &self,
        username: &Username,
        disabled: bool,
    ) -> Result<bool, StoreError> {
        // By id, once found: a name may match two rows (see `find_user_by_username`).
        let Some(User { id, .. }) = self.find_user_by_username(username).await? else {
            return Ok(false);
        };
        let result = user::Entity::update_many()
            .col_expr(user::Column::Disabled, disabled.into())
            .col_expr(user::Column::UpdatedAt, super::now().into())
            .filter(user::Column::Id.eq(id))
            .exec(self.connection())
            .await?;
        Ok(result.rows_affected > 0)
    }

    /// Deletes a user and, by cascade, their items; `false` when there is no such user.
    pub async fn delete_user(&self, username: &Username) -> Result<bool, StoreError> {
        let Some(User { id, .. }) = self.find_user_by_username(username).await? else {
            return Ok(false);
        };
        let result = user::Entity::delete_many()
            .filter(user::Column::Id.eq(id))
            .exec(self.connection())
            .await?;
        Ok(result.rows_affected > 0)
    }

    /// Replaces the password hash `current` with `rehashed` (the same password under current
    /// parameters); `false`, changing nothing, when the stored hash is no longer `current` (the
    /// password was changed or reset meanwhile: that change wins).
    pub async fn upgrade_password_hash(
        &self,
        id: Uuid,
        current: &HashedPassword,
        rehashed: &HashedPassword,
    ) -> Result<bool, StoreError> {
        let result = user::Entity::update_many()
            .col_expr(
                user::Column::HashedPassword,
                rehashed.expose().to_owned().into(),
            )
            .filter(user::Column::Id.eq(id))
            .filter(user::Column::HashedPassword.eq(current.expose()))
            .exec(self.connection())
            .await?;
        Ok(result.rows_affected > 0)
    }
}

impl Store {
    /// Brings the name columns of accounts created before NFKC and case folding and skeletons
    /// up to date: their `username_normalized` (only lower-cased before) and their
    /// `username_skeleton` (NULL, as migration `m20261201_000003` left it). Run after the
    /// migrations at every start, on the rows without a skeleton only, so that it costs
    /// nothing once done. One row at a time, each update decided by the unique indexes: an
    /// account whose new form or skeleton is already another's (two accounts that were
    /// distinct names before and are lookalikes now) keeps what it had and is logged, rather
    /// than failing the upgrade; it still logs in by its own spelling. Returns how many rows
    /// could not be brought up to date.
    pub async fn normalize_usernames(&self) -> Result<u64, StoreError> {
        let rows = user::Entity::find()
            .filter(user::Column::UsernameSkeleton.is_null())
            .order_by_asc(user::Column::CreatedAt)
            .order_by_asc(user::Column::Id)
            .all(self.connection())
            .await?;
        let mut left = 0;
        for row in rows {
            // A stored name that no longer parses (edited by hand) is left as it is.
            let Ok(name) = Username::parse(&row.username) else {
                left += 1;
                continue;
            };
            let normalized = name.normalized();
            if normalized != row.username_normalized {
                match self
                    .set_name_column(row.id, user::Column::UsernameNormalized, normalized)
                    .await?
                {
                    true => {}
                    false => tracing::warn!(
                        user_id = %row.id,
                        "an account from before usernames were compared after NFKC and case \
                         folding is the same name as another now: it keeps its old form and \
                         logs in by its own spelling; rename or remove one of them"
                    ),
                }
            }
            if !self
                .set_name_column(row.id, user::Column::UsernameSkeleton, name.skeleton())
                .await?
            {
                left += 1;
                tracing::warn!(
                    user_id = %row.id,
                    "an account from before lookalike usernames were refused looks like another \
                     one (same confusable skeleton): it is kept, without a skeleton; rename or \
                     remove one of them"
                );
            }
        }
        Ok(left)
    }

    /// Sets one name column of a user; `false` when its unique index refuses the value.
    async fn set_name_column(
        &self,
        id: Uuid,
        column: user::Column,
        value: String,
    ) -> Result<bool, StoreError> {
        let result = user::Entity::update_many()
            .col_expr(column, value.into())
            .filter(user::Column::Id.eq(id))
            .exec(self.connection())
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                Ok(false)
            }
            Err(err) => Err(err.into()),
        }
    }
}

/// The rows a name can denote: its normalized form, or the lower-cased form an account from
/// before normalization kept.
/// `find_user_by_username`'s statement (rendered once for the inline SQLite reads, which bind
/// the one or two names in this order).
pub(super) fn user_by_name_query(normalized: &str, legacy: &str) -> sea_orm::Select<user::Entity> {
    user::Entity::find().filter(by_name(normalized, legacy))
}

fn by_name(normalized: &str, legacy: &str) -> Condition {
    let condition = Condition::any().add(user::Column::UsernameNormalized.eq(normalized));
    // For ASCII names (most of them) both forms are one: one equality.
    if legacy == normalized {
        return condition;
    }
    condition.add(user::Column::UsernameNormalized.eq(legacy))
}
