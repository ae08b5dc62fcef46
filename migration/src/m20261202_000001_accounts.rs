use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // When the account last logged in (`AdminUser.last_login_at`); NULL before the first.
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(timestamp_with_time_zone_null(Users::LastLoginAt))
                    .to_owned(),
            )
            .await?;
        // The addresses each account logged in from successfully, and when last: the
        // per-account protection spares them. Keyed like the throttle's counts (an HMAC of
        // the normalized name and the address as counted), never by a name in clear.
        manager
            .create_table(
                Table::create()
                    .table(LoginAddresses::Table)
                    .if_not_exists()
                    .col(string_len(LoginAddresses::AccountKey, 200))
                    .col(string_len(LoginAddresses::AddressKey, 200))
                    .col(timestamp_with_time_zone(LoginAddresses::LastSuccessAt))
                    .primary_key(
                        Index::create()
                            .col(LoginAddresses::AccountKey)
                            .col(LoginAddresses::AddressKey),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_login_addresses_last_success_at")
                    .table(LoginAddresses::Table)
                    .col(LoginAddresses::LastSuccessAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            // The admin list walks usernames in code-point order (`COLLATE "C"`, whatever the
            // database's collation, so that the order and the cursor agree with SQLite's), with
            // or without a `disabled` filter. `q` is a substring search: trigram indexes serve
            // it when the pg_trgm extension can be had (creating it needs a privileged role the
            // first time); without it the search scans, which is still correct.
            manager
                .get_connection()
                .execute_unprepared(
                    r#"CREATE INDEX IF NOT EXISTS idx_users_username_c
                           ON users (username_normalized COLLATE "C");
                       CREATE INDEX IF NOT EXISTS idx_users_disabled_username
                           ON users (disabled, username_normalized COLLATE "C");
                       DO $$
                       BEGIN
                           BEGIN
                               CREATE EXTENSION IF NOT EXISTS pg_trgm;
                           EXCEPTION WHEN OTHERS THEN
                               RAISE NOTICE 'pg_trgm unavailable: the admin search will scan';
                           END;
                           IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
                               CREATE INDEX IF NOT EXISTS idx_users_username_trgm
                                   ON users USING gin (username_normalized gin_trgm_ops);
                               CREATE INDEX IF NOT EXISTS idx_users_email_trgm
                                   ON users USING gin (lower(email) gin_trgm_ops);
                           END IF;
                       END
                       $$"#,
                )
                .await?;
        } else {
            // SQLite compares text by code point already; the unique index serves the
            // unfiltered walk, this one the `disabled` filter.
            manager
                .create_index(
                    Index::create()
                        .name("idx_users_disabled_username")
                        .table(Users::Table)
                        .col(Users::Disabled)
                        .col(Users::UsernameNormalized)
                        .if_not_exists()
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared(
                    "DROP INDEX IF EXISTS idx_users_username_trgm;
                     DROP INDEX IF EXISTS idx_users_email_trgm;
                     DROP INDEX IF EXISTS idx_users_username_c",
                )
                .await?;
        }
        manager
            .drop_index(
                Index::drop()
                    .name("idx_users_disabled_username")
                    .table(Users::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(LoginAddresses::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .drop_column(Users::LastLoginAt)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Disabled,
    UsernameNormalized,
    LastLoginAt,
}

#[derive(DeriveIden)]
enum LoginAddresses {
    Table,
    AccountKey,
    AddressKey,
    LastSuccessAt,
}
