use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261125_000001_create_users::Users;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Items::Table)
                    .if_not_exists()
                    .col(uuid(Items::Id).primary_key())
                    .col(uuid(Items::OwnerId))
                    .col(string_len(Items::Title, 200))
                    .col(text_null(Items::Description))
                    .col(timestamp_with_time_zone(Items::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_items_owner")
                            .from(Items::Table, Items::OwnerId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // A user's items are listed oldest first.
        manager
            .create_index(
                Index::create()
                    .name("idx_items_owner_created")
                    .table(Items::Table)
                    .col(Items::OwnerId)
                    .col(Items::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Items::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Items {
    Table,
    Id,
    OwnerId,
    Title,
    Description,
    CreatedAt,
}
