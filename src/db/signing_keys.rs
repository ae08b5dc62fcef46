use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, EntityTrait as _, QueryFilter as _, QueryOrder as _, SqlErr,
};

use super::{AuditEvent, Store, StoreError, entities::signing_key};

/// A signing key as stored: the public half as a JWK, the private half encrypted. What the
/// columns mean is `auth::keys`' business; this module only moves rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSigningKey {
    pub kid: String,
    pub algorithm: String,
    pub public_jwk: String,
    pub encrypted_private_key: String,
    pub created_at: DateTime<Utc>,
    pub retired_at: Option<DateTime<Utc>>,
    pub authentication_tag: Option<String>,
}

impl From<signing_key::Model> for StoredSigningKey {
    fn from(row: signing_key::Model) -> Self {
        Self {
            kid: row.kid,
            algorithm: row.algorithm,
            public_jwk: row.public_jwk,
            encrypted_private_key: row.encrypted_private_key,
            created_at: row.created_at,
            retired_at: row.retired_at,
            authentication_tag: row.authentication_tag,
        }
    }
}

/// What is needed to store a new key; it is created active, now.
#[derive(Debug)]
pub struct NewSigningKey {
    pub kid: String,
    pub algorithm: String,
    pub public_jwk: String,
    pub encrypted_private_key: String,
    pub authentication_tag: String,
}

impl Store {
    /// Stores a new key; the audit `events` made from it are inserted in the same transaction.
    pub async fn insert_signing_key(
        &self,
        new: NewSigningKey,
        events: impl FnOnce(&StoredSigningKey) -> Vec<AuditEvent>,
    ) -> Result<StoredSigningKey, StoreError> {
        use sea_orm::TransactionTrait as _;

        let txn = self.connection().begin().await?;
        let key: StoredSigningKey = insert(&txn, new).await?.into();
        super::audit_events::insert_audit_events_on(&txn, events(&key)).await?;
        txn.commit().await?;
        Ok(key)
    }

    /// Stores `new` unless a key of its algorithm is active and `usable` (authentic), which is
    /// then returned instead: instances starting together on an empty database create one key
    /// between them. The check and the insert hold the database's write lock (PostgreSQL: an
    /// advisory lock; SQLite: a write transaction from its first statement).
    pub async fn insert_signing_key_unless_active(
        &self,
        new: NewSigningKey,
        usable: impl Fn(&StoredSigningKey) -> bool,
    ) -> Result<StoredSigningKey, StoreError> {
        use sea_orm::{ConnectionTrait as _, DbBackend, TransactionTrait as _};

        const KEY_CREATION_LOCK: i64 = 0x706f_7274_6b65; // "portke"
        let txn = self.connection().begin().await?;
        let lock = match txn.get_database_backend() {
            DbBackend::Postgres => format!("SELECT pg_advisory_xact_lock({KEY_CREATION_LOCK})"),
            // An UPDATE takes SQLite's write lock even when it matches nothing.
            _ => "UPDATE signing_keys SET kid = kid WHERE 1 = 0".to_owned(),
        };
        txn.execute_unprepared(&lock).await?;
        let existing = newest_active(&new.algorithm)
            .all(&txn)
            .await?
            .into_iter()
            .map(StoredSigningKey::from)
            .find(|key| usable(key));
        let key = match existing {
            Some(existing) => existing,
            None => insert(&txn, new).await?.into(),
        };
        txn.commit().await?;
        Ok(key)
    }

    /// The newest key of `algorithm` not retired: with that algorithm configured, the key that
    /// signs.
    pub async fn newest_active_signing_key(
        &self,
        algorithm: &str,
    ) -> Result<Option<StoredSigningKey>, StoreError> {
        Ok(newest_active(algorithm)
            .one(self.connection())
            .await?
            .map(StoredSigningKey::from))
    }

    pub async fn find_signing_key(
        &self,
        kid: &str,
    ) -> Result<Option<StoredSigningKey>, StoreError> {
        Ok(signing_key::Entity::find_by_id(kid)
            .one(self.connection())
            .await?
            .map(StoredSigningKey::from))
    }

    /// Every key not retired, of either algorithm, newest first.
    pub async fn active_signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
        self.signing_keys(true).await
    }

    /// Every key of `algorithm` not retired, newest (the one that signs, if it can) first.
    pub async fn active_signing_keys_of(
        &self,
        algorithm: &str,
    ) -> Result<Vec<StoredSigningKey>, StoreError> {
        Ok(newest_active(algorithm)
            .all(self.connection())
            .await?
            .into_iter()
            .map(StoredSigningKey::from)
            .collect())
    }

    /// Every key, retired ones included, newest first.
    pub async fn list_signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
        self.signing_keys(false).await
    }

    async fn signing_keys(&self, active_only: bool) -> Result<Vec<StoredSigningKey>, StoreError> {
        let mut query = signing_key::Entity::find();
        if active_only {
            query = query.filter(signing_key::Column::RetiredAt.is_null());
        }
        Ok(query
            .order_by_desc(signing_key::Column::CreatedAt)
            .order_by_desc(signing_key::Column::Kid)
            .all(self.connection())
            .await?
            .into_iter()
            .map(StoredSigningKey::from)
            .collect())
    }

    /// Retires a key, replacing its tag with `tag` (that of the retired key) and wiping its
    /// sealed private key, which a retired key never needs again; `false` when there is no such
    /// key or it was already retired (its retirement date is kept). When it is retired, the
    /// audit `events` are inserted in the same transaction.
    pub async fn retire_signing_key(
        &self,
        kid: &str,
        tag: String,
        events: impl FnOnce() -> Vec<AuditEvent>,
    ) -> Result<bool, StoreError> {
        use sea_orm::TransactionTrait as _;

        let txn = self.connection().begin().await?;
        let result = signing_key::Entity::update_many()
            .col_expr(signing_key::Column::RetiredAt, super::now().into())
            .col_expr(
                signing_key::Column::EncryptedPrivateKey,
                String::new().into(),
            )
            .col_expr(signing_key::Column::AuthenticationTag, Some(tag).into())
            .filter(signing_key::Column::Kid.eq(kid))
            .filter(signing_key::Column::RetiredAt.is_null())
            .exec(&txn)
            .await
            .map_err(StoreError::from)?;
        let retired = result.rows_affected > 0;
        if retired {
            super::audit_events::insert_audit_events_on(&txn, events()).await?;
        }
        txn.commit().await?;
        Ok(retired)
    }

    /// Records the tag of a key stored before tags existed, and wipes the private key of such
    /// a key already retired (see `auth::keys`); only while it has no tag and its status is
    /// still the one read (`retired`), so that it cannot overwrite a retirement made meanwhile.
    pub async fn set_signing_key_tag(
        &self,
        kid: &str,
        retired: bool,
        tag: String,
    ) -> Result<(), StoreError> {
        let mut update = signing_key::Entity::update_many()
            .col_expr(signing_key::Column::AuthenticationTag, Some(tag).into())
            .filter(signing_key::Column::Kid.eq(kid))
            .filter(signing_key::Column::AuthenticationTag.is_null());
        update = if retired {
            update
                .col_expr(
                    signing_key::Column::EncryptedPrivateKey,
                    String::new().into(),
                )
                .filter(signing_key::Column::RetiredAt.is_not_null())
        } else {
            update.filter(signing_key::Column::RetiredAt.is_null())
        };
        update.exec(self.connection()).await?;
        Ok(())
    }

    /// Whether the key `kid` is still active with the tag `tag` (the tag of it active): the
    /// check `find_session_and_user` makes per request, for a caller without a session query.
    pub async fn signing_key_is_active(&self, kid: &str, tag: &str) -> Result<bool, StoreError> {
        Ok(signing_key::Entity::find()
            .filter(signing_key::Column::Kid.eq(kid))
            .filter(signing_key::Column::RetiredAt.is_null())
            .filter(signing_key::Column::AuthenticationTag.eq(tag))
            .one(self.connection())
            .await?
            .is_some())
    }
}

/// Keys of `algorithm` not retired, newest first. Ties (keys created in the same microsecond
/// by two instances) are broken by kid, so every instance picks the same one.
fn newest_active(algorithm: &str) -> sea_orm::Select<signing_key::Entity> {
    signing_key::Entity::find()
        .filter(signing_key::Column::RetiredAt.is_null())
        .filter(signing_key::Column::Algorithm.eq(algorithm))
        .order_by_desc(signing_key::Column::CreatedAt)
        .order_by_desc(signing_key::Column::Kid)
}

async fn insert<C: sea_orm::ConnectionTrait>(
    db: &C,
    new: NewSigningKey,
) -> Result<signing_key::Model, StoreError> {
    let row = signing_key::ActiveModel {
        kid: Set(new.kid),
        algorithm: Set(new.algorithm),
        public_jwk: Set(new.public_jwk),
        encrypted_private_key: Set(new.encrypted_private_key),
        created_at: Set(super::now()),
        retired_at: Set(None),
        authentication_tag: Set(Some(new.authentication_tag)),
    };
    signing_key::Entity::insert(row)
        .exec_with_returning(db)
        .await
        .map_err(|err| match err.sql_err() {
            // The kid is a hash of a freshly generated key: a clash means a broken random
            // source, not a taken name, so it must not read as `UsernameTaken`.
            Some(SqlErr::UniqueConstraintViolation(_)) => StoreError::Query(err),
            _ => StoreError::from(err),
        })
}
