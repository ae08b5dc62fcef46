use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // A user's items are listed a page at a time in id order (UUIDv7: creation order), so
        // a page is read from this index without sorting every item the user holds.
        manager
            .create_index(
                Index::create()
                    .name("idx_items_owner_id")
                    .table(Items::Table)
                    .col(Items::OwnerId)
                    .col(Items::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_items_owner_id")
                    .table(Items::Table)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Items {
    Table,
    Id,
    OwnerId,
}
