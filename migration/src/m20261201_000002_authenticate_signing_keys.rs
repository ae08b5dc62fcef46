use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // A MAC, under a key derived from the JWT secret, over a key's kid, algorithm, public
        // JWK and whether it is retired (see `auth::keys`): the database alone can then neither
        // add a verifier nor bring a retired key back. Rows stored before this migration have
        // none; the service authenticates those whose sealed private key opens with its secret
        // (proof that they were made by a holder of the secret) when it meets them.
        manager
            .alter_table(
                Table::alter()
                    .table(SigningKeys::Table)
                    .add_column(text_null(SigningKeys::AuthenticationTag))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(SigningKeys::Table)
                    .drop_column(SigningKeys::AuthenticationTag)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    AuthenticationTag,
}
