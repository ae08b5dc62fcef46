use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261125_000001_create_users::Users;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The confusable skeleton (Unicode TS #39) of a username's normalized form: its unique
        // index refuses `јohndoe` (Cyrillic ј) beside `johndoe`, under concurrency too. NULL
        // for rows stored before: the service fills it in, and that of `username_normalized`
        // (now NFKC and case folding, not only lower case), at start (`db::Store::migrate`),
        // since both are computed by Rust's Unicode tables, not SQL. An existing account whose
        // skeleton is already taken keeps NULL (NULLs do not clash in a unique index), so the
        // upgrade never fails on a database that holds lookalikes; it is logged at start.
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(text_null(UsernameSkeleton::UsernameSkeleton))
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DbBackend::Postgres {
            // A normalized form can be longer than the 64 characters of the name (NFKC expands
            // some ligatures many times); SQLite does not enforce lengths.
            manager
                .alter_table(
                    Table::alter()
                        .table(Users::Table)
                        .modify_column(text(Users::UsernameNormalized))
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_users_username_skeleton")
                    .table(Users::Table)
                    .col(UsernameSkeleton::UsernameSkeleton)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_users_username_skeleton")
                    .table(Users::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .drop_column(UsernameSkeleton::UsernameSkeleton)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum UsernameSkeleton {
    UsernameSkeleton,
}
