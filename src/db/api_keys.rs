//! Personal API keys: created, listed and deleted by their owner (or an admin), read by the
//! check of every request that presents one. Stored as the SHA-256 of their secret.

use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, EntityTrait as _, PaginatorTrait as _, QueryFilter as _,
    QueryOrder as _, QuerySelect as _, sea_query::Expr,
};
use uuid::Uuid;

use super::{
    AuditEvent, Store, StoreError, User,
    audit_events::insert_audit_events_on,
    entities::{api_key, user},
    user_changes::{begin_read_committed, lock_for_write},
};
use crate::domain::ScopeSet;

/// A key as its owner sees it: never its secret or hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub scopes: ScopeSet,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<api_key::Model> for ApiKey {
    fn from(row: api_key::Model) -> Self {
        Self {
            id: row.id,
            user_id: row.user_id,
            name: row.name,
            // Written by us from a parsed set; an unknown scope (a hand edit) grants nothing.
            scopes: ScopeSet::parse(&row.scope).unwrap_or_default(),
            created_at: row.created_at,
            expires_at: row.expires_at,
            last_used_at: row.last_used_at,
        }
    }
}

/// What the check of a request presenting a key reads of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyState {
    pub id: Uuid,
    pub secret_hash: String,
    pub scopes: ScopeSet,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl ApiKeyState {
    /// Not expired at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|expires_at| now < expires_at)
    }
}

/// A key to store (its id and hash made by `domain::ApiKeySecret`).
#[derive(Debug)]
pub struct NewApiKey {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub secret_hash: String,
    pub scopes: ScopeSet,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// How a key's creation ended.
#[derive(Debug)]
pub enum KeyCreation {
    Created(ApiKey),
    /// The user does not exist (deleted meanwhile).
    UserNotFound,
    /// The user already holds this many keys, the most allowed.
    TooMany(u64),
}

/// A user row with the columns of its key that [`ApiKeyState`] needs.
#[derive(Debug, sea_orm::FromQueryResult)]
struct UserWithApiKey {
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
    key_secret_hash: String,
    key_scope: String,
    key_expires_at: Option<DateTime<Utc>>,
    key_last_used_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Stores `new` unless its user already holds `max_per_user` keys. On PostgreSQL the
    /// user's row is locked first, on SQLite the write lock is taken first, so keys created at
    /// once never exceed the limit. The audit `events`, made from the key, are inserted in the
    /// same transaction.
    pub async fn create_api_key(
        &self,
        new: NewApiKey,
        max_per_user: u64,
        events: impl FnOnce(&ApiKey) -> Vec<AuditEvent>,
    ) -> Result<KeyCreation, StoreError> {
        let txn = begin_read_committed(self.connection()).await?;
        lock_for_write(&txn).await?;
        if user::Entity::find_by_id(new.user_id)
            .lock_exclusive()
            .one(&txn)
            .await?
            .is_none()
        {
            txn.rollback().await?;
            return Ok(KeyCreation::UserNotFound);
        }
        let held = api_key::Entity::find()
            .filter(api_key::Column::UserId.eq(new.user_id))
            .count(&txn)
            .await?;
        if held >= max_per_user {
            txn.rollback().await?;
            return Ok(KeyCreation::TooMany(held));
        }
        let row = api_key::ActiveModel {
            id: Set(new.id),
            user_id: Set(new.user_id),
            name: Set(new.name),
            secret_hash: Set(new.secret_hash),
            scope: Set(new.scopes.to_string()),
            created_at: Set(new.created_at),
            expires_at: Set(new.expires_at),
            last_used_at: Set(None),
        };
        let key = ApiKey::from(
            api_key::Entity::insert(row)
                .exec_with_returning(&txn)
                .await?,
        );
        insert_audit_events_on(&txn, events(&key)).await?;
        txn.commit().await?;
        Ok(KeyCreation::Created(key))
    }

    /// `user_id`'s keys, oldest first (expired ones too, until deleted).
    pub async fn list_api_keys(&self, user_id: Uuid) -> Result<Vec<ApiKey>, StoreError> {
        Ok(api_key::Entity::find()
            .filter(api_key::Column::UserId.eq(user_id))
            .order_by_asc(api_key::Column::CreatedAt)
            .order_by_asc(api_key::Column::Id)
            .all(self.connection())
            .await?
            .into_iter()
            .map(ApiKey::from)
            .collect())
    }

    /// Deletes the key `id` of `owner` (any user's for `None`): the key as it was, or `None`
    /// when there is no such key. The audit `events`, made from the key, are inserted in the
    /// same transaction.
    pub async fn delete_api_key(
        &self,
        owner: Option<Uuid>,
        id: Uuid,
        events: impl FnOnce(&ApiKey) -> Vec<AuditEvent>,
    ) -> Result<Option<ApiKey>, StoreError> {
        let txn = begin_read_committed(self.connection()).await?;
        lock_for_write(&txn).await?;
        let mut find = api_key::Entity::find_by_id(id);
        if let Some(owner) = owner {
            find = find.filter(api_key::Column::UserId.eq(owner));
        }
        let Some(key) = find.one(&txn).await?.map(ApiKey::from) else {
            txn.rollback().await?;
            return Ok(None);
        };
        let deleted = api_key::Entity::delete_by_id(id)
            .exec(&txn)
            .await?
            .rows_affected;
        if deleted == 0 {
            // Deleted by a request that committed between the read and this statement.
            txn.rollback().await?;
            return Ok(None);
        }
        insert_audit_events_on(&txn, events(&key)).await?;
        txn.commit().await?;
        Ok(Some(key))
    }

    /// The key with this id and its user: what the check of a request presenting the key
    /// reads (on an SQLite file, inline on the calling thread; see `inline_reads`).
    pub async fn find_api_key_and_user(
        &self,
        id: Uuid,
    ) -> Result<Option<(ApiKeyState, User)>, StoreError> {
        self.api_key_lookups.fetch_add(1, Ordering::Relaxed);
        if let Some(inline) = &self.inline_reads
            && let Ok(found) = inline.api_key_and_user(id)
        {
            return Ok(found.map(|(key, user)| (key, user.into())));
        }
        Ok(self
            .find_api_key_and_user_through_sqlx(id)
            .await?
            .map(|(key, user)| (key, user.into())))
    }

    /// `find_api_key_and_user` through SeaORM and sqlx's pool.
    pub(super) async fn find_api_key_and_user_through_sqlx(
        &self,
        id: Uuid,
    ) -> Result<Option<(ApiKeyState, user::Model)>, StoreError> {
        let found = api_key_and_user_query(id)
            .into_model::<UserWithApiKey>()
            .one(self.connection())
            .await?;
        Ok(found.map(|row| {
            let key = ApiKeyState {
                id,
                secret_hash: row.key_secret_hash.clone(),
                scopes: ScopeSet::parse(&row.key_scope).unwrap_or_default(),
                expires_at: row.key_expires_at,
                last_used_at: row.key_last_used_at,
            };
            (key, row.user())
        }))
    }

    /// How many times this store (and its clones) looked up an API key: how the tests prove
    /// that a key refused by its checksum cost no database read.
    pub fn api_key_lookups(&self) -> u64 {
        self.api_key_lookups.load(Ordering::Relaxed)
    }

    /// Records that a key was used now, unless that was recorded less than `precision` ago.
    pub async fn touch_api_key(
        &self,
        id: Uuid,
        precision: chrono::Duration,
    ) -> Result<(), StoreError> {
        let now = super::now();
        api_key::Entity::update_many()
            .col_expr(api_key::Column::LastUsedAt, Expr::value(now))
            .filter(api_key::Column::Id.eq(id))
            .filter(
                sea_orm::Condition::any()
                    .add(api_key::Column::LastUsedAt.is_null())
                    .add(api_key::Column::LastUsedAt.lt(now - precision)),
            )
            .exec(self.connection())
            .await?;
        Ok(())
    }
}

impl UserWithApiKey {
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

/// The statement of `find_api_key_and_user`: the user's columns and the key's, by the key's id.
pub(super) fn api_key_and_user_query(id: Uuid) -> sea_orm::Select<user::Entity> {
    user::Entity::find()
        .inner_join(api_key::Entity)
        .column_as(api_key::Column::SecretHash, "key_secret_hash")
        .column_as(api_key::Column::Scope, "key_scope")
        .column_as(api_key::Column::ExpiresAt, "key_expires_at")
        .column_as(api_key::Column::LastUsedAt, "key_last_used_at")
        .filter(api_key::Column::Id.eq(id))
}
