use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, EntityTrait as _, QueryFilter as _, QueryOrder as _,
};
use uuid::Uuid;

use super::{Store, StoreError, entities::user};
use crate::domain::{EmailAddress, ScopeSet, Username};

/// A user as stored, hash included: handle with care, never serialize.
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub hashed_password: String,
    pub disabled: bool,
    pub scopes: ScopeSet,
    pub created_at: DateTime<Utc>,
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
            hashed_password: row.hashed_password,
            disabled: row.disabled,
            scopes,
            created_at: row.created_at,
        }
    }
}

/// What is needed to create an account.
#[derive(Debug)]
pub struct NewUser {
    pub username: Username,
    pub email: Option<EmailAddress>,
    pub full_name: Option<String>,
    pub hashed_password: String,
    pub disabled: bool,
    pub scopes: ScopeSet,
}

impl Store {
    /// Inserts a user; a name taken in any spelling is [`StoreError::UsernameTaken`], decided
    /// by the unique index, so that concurrent creations cannot both win.
    pub async fn create_user(&self, new: NewUser) -> Result<User, StoreError> {
        let now = super::now();
        let row = user::ActiveModel {
            id: Set(Uuid::now_v7()),
            username_normalized: Set(new.username.normalized()),
            username: Set(new.username.as_str().to_owned()),
            email: Set(new.email.map(|e| e.as_str().to_owned())),
            full_name: Set(new.full_name),
            hashed_password: Set(new.hashed_password),
            disabled: Set(new.disabled),
            scopes: Set(new.scopes.to_string()),
            created_at: Set(now),
            updated_at: Set(now),
        };
        let inserted = user::Entity::insert(row)
            .exec_with_returning(self.connection())
            .await?;
        Ok(inserted.into())
    }

    pub async fn find_user_by_username(
        &self,
        username: &Username,
    ) -> Result<Option<User>, StoreError> {
        Ok(user::Entity::find()
            .filter(user::Column::UsernameNormalized.eq(username.normalized()))
            .one(self.connection())
            .await?
            .map(User::from))
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
        let result = user::Entity::update_many()
            .col_expr(user::Column::Disabled, disabled.into())
            .col_expr(user::Column::UpdatedAt, super::now().into())
            .filter(user::Column::UsernameNormalized.eq(username.normalized()))
            .exec(self.connection())
            .await?;
        Ok(result.rows_affected > 0)
    }

    /// Deletes a user and, by cascade, their items; `false` when there is no such user.
    pub async fn delete_user(&self, username: &Username) -> Result<bool, StoreError> {
        let result = user::Entity::delete_many()
            .filter(user::Column::UsernameNormalized.eq(username.normalized()))
            .exec(self.connection())
            .await?;
        Ok(result.rows_affected > 0)
    }

    /// Replaces a password hash, e.g. after re-hashing with current parameters.
    pub async fn set_password_hash(
        &self,
        id: Uuid,
        hashed_password: String,
    ) -> Result<(), StoreError> {
        user::Entity::update_many()
            .col_expr(user::Column::HashedPassword, hashed_password.into())
            .col_expr(user::Column::UpdatedAt, super::now().into())
            .filter(user::Column::Id.eq(id))
            .exec(self.connection())
            .await?;
        Ok(())
    }
}
