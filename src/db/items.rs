use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, EntityTrait as _, QueryFilter as _, QueryOrder as _,
};
use uuid::Uuid;

use super::{Store, StoreError, entities::item};
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
    /// A user's items, oldest first (ids are UUIDv7, so they break ties in creation order).
    pub async fn list_items(&self, owner: Uuid) -> Result<Vec<Item>, StoreError> {
        Ok(item::Entity::find()
            .filter(item::Column::OwnerId.eq(owner))
            .order_by_asc(item::Column::CreatedAt)
            .order_by_asc(item::Column::Id)
            .all(self.connection())
            .await?
            .into_iter()
            .map(Item::from)
            .collect())
    }

    pub async fn create_item(
        &self,
        owner: Uuid,
        title: ItemTitle,
        description: Option<ItemDescription>,
    ) -> Result<Item, StoreError> {
        let row = item::ActiveModel {
            id: Set(Uuid::now_v7()),
            owner_id: Set(owner),
            title: Set(title.into_inner()),
            description: Set(description.map(ItemDescription::into_inner)),
            created_at: Set(super::now()),
        };
        Ok(item::Entity::insert(row)
            .exec_with_returning(self.connection())
            .await?
            .into())
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
