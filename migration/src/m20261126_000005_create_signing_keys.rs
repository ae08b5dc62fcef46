use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Asymmetric signing keys, shared by every instance. The public half is stored as a
        // JWK; the private half only encrypted (see `auth::keys`). The newest key that is not
        // retired signs; every key that is not retired verifies.
        manager
            .create_table(
                Table::create()
                    .table(SigningKeys::Table)
                    .if_not_exists()
                    .col(string_len(SigningKeys::Kid, 64).primary_key())
                    .col(string_len(SigningKeys::Algorithm, 16))
                    .col(text(SigningKeys::PublicJwk))
                    .col(text(SigningKeys::EncryptedPrivateKey))
                    .col(timestamp_with_time_zone(SigningKeys::CreatedAt))
                    .col(timestamp_with_time_zone_null(SigningKeys::RetiredAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SigningKeys::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    Kid,
    Algorithm,
    PublicJwk,
    EncryptedPrivateKey,
    CreatedAt,
    RetiredAt,
}
