use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .if_not_exists()
                    .col(uuid(Users::Id).primary_key())
                    // The spelling the user chose, shown back to them.
                    .col(string_len(Users::Username, 64))
                    // The lower-cased form; its unique index is what makes `JohnDoe` and
                    // `johndoe` one account on both backends (collations differ, this does not).
                    .col(string_len_uniq(Users::UsernameNormalized, 64))
                    .col(string_len_null(Users::Email, 254))
                    .col(string_len_null(Users::FullName, 200))
                    .col(string_len(Users::HashedPassword, 256))
                    .col(boolean(Users::Disabled).default(false))
                    // Space-separated scope names, e.g. `me items`.
                    .col(string_len(Users::Scopes, 200))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .col(timestamp_with_time_zone(Users::UpdatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Users::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
pub(crate) enum Users {
    Table,
    Id,
    Username,
    UsernameNormalized,
    Email,
    FullName,
    HashedPassword,
    Disabled,
    Scopes,
    CreatedAt,
    UpdatedAt,
}
