use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, ConnectionTrait as _, DbBackend, EntityTrait as _,
    PaginatorTrait as _, QueryFilter as _, QueryOrder as _, QuerySelect as _,
    TransactionTrait as _, sea_query::LockType,
};
use uuid::Uuid;

use super::{
    Store, StoreError,
    entities::{item, user},
};
use crate::domain::{ItemDescription, ItemTitle};

#[derive(Debug, Clone)]
pub struct Item {
    pub id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<item::Model> for Item {
    fn from(row: item::Model) -> Self {
        Self {
            id: row.id,
            title: row.title,
            description: row.description,
            created_at: row.created_at,
        }
    }
}

impl Store {
    /// One page of a user's items, oldest first: at most `limit` of them, those after the item
    /// `after` when given, and whether more follow. Ids are UUIDv7 (creation time, then a
    /// counter within the millisecond), so ordering by id is ordering by creation, and a page
    /// boundary stays exact even if the item it names is deleted meanwhile.
    pub async fn list_items(
        &self,
        owner: Uuid,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<(Vec<Item>, bool), StoreError> {
        let mut query = item::Entity::find().filter(item::Column::OwnerId.eq(owner));
        if let Some(after) = after {
            query = query.filter(item::Column::Id.gt(after));
        }
        // One more than asked tells whether another page follows.
        let mut rows = query
            .order_by_asc(item::Column::Id)
            .limit(u64::from(limit) + 1)
            .all(self.connection())
            .await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        Ok((rows.into_iter().map(Item::from).collect(), more))
    }

    /// Stores a new item unless `owner` already has `quota` of them (then `None`). Creates
    /// racing for the last places never go over: the count and the insert run in one
    /// transaction under a lock on the owner (PostgreSQL: the owner's row, `FOR NO KEY UPDATE`,
    /// which does not block the key-share locks other inserts take; SQLite: the database's
    /// write lock, taken by the transaction's first statement).
    pub async fn create_item(
        &self,
        owner: Uuid,
        title: ItemTitle,
        description: Option<ItemDescription>,
        quota: u32,
    ) -> Result<Option<Item>, StoreError> {
        let txn = self.connection().begin().await?;
        match txn.get_database_backend() {
            DbBackend::Postgres => {
                user::Entity::find_by_id(owner)
                    .lock(LockType::NoKeyUpdate)
                    .one(&txn)
                    .await?;
            }
            // An UPDATE takes SQLite's write lock even when it matches nothing.
            _ => {
                txn.execute_unprepared("UPDATE items SET id = id WHERE 1 = 0")
                    .await?;
            }
        }
        let held = item::Entity::find()
            .filter(item::Column::OwnerId.eq(owner))
            .count(&txn)
            .await?;
        if held >= u64::from(quota) {
            txn.rollback().await?;
            return Ok(None);
        }
        let row = item::ActiveModel {
            id: Set(Uuid::now_v7()),
            owner_id: Set(owner),
            title: Set(title.into_inner()),
            description: Set(description.map(ItemDescription::into_inner)),
            created_at: Set(super::now()),
        };
        let created = item::Entity::insert(row).exec_with_returning(&txn).await?;
        txn.commit().await?;
        Ok(Some(created.into()))
    }

    /// Deletes one of `owner`'s items; `false` when `owner` has no item with that id.
    pub async fn delete_item(&self, owner: Uuid, id: Uuid) -> Result<bool, StoreError> {
        let result = item::Entity::delete_many()
            .filter(item::Column::Id.eq(id))
            .filter(item::Column::OwnerId.eq(owner))
            .exec(self.connection())
            .await?;
        Ok(result.rows_affected > 0)
    }
}
