use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The failure counts were keyed by the username as typed (often a password entered in
        // the wrong box); keys are now an HMAC of it. The old rows cannot be rewritten without
        // the secret and are short-lived counts anyway: they go.
        manager
            .exec_stmt(Query::delete().from_table(LoginFailures::Table).to_owned())
            .await?;
        // Successful logins per account in the current minute, shared by every instance.
        manager
            .create_table(
                Table::create()
                    .table(LoginSuccesses::Table)
                    .if_not_exists()
                    .col(string_len(LoginSuccesses::Key, 200).primary_key())
                    .col(integer(LoginSuccesses::Successes))
                    .col(timestamp_with_time_zone(LoginSuccesses::WindowStartedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(LoginSuccesses::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum LoginFailures {
    Table,
}

#[derive(DeriveIden)]
enum LoginSuccesses {
    Table,
    Key,
    Successes,
    WindowStartedAt,
}
