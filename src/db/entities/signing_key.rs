use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "signing_keys")]
pub struct Model {
    /// The key's RFC 7638 JWK thumbprint; tokens name it in their `kid` header.
    #[sea_orm(primary_key, auto_increment = false)]
    pub kid: String,
    /// `EdDSA` or `ES256`.
    pub algorithm: String,
    /// The public key as a JWK (JSON).
    pub public_jwk: String,
    /// The private key, encrypted (see `auth::keys`).
    pub encrypted_private_key: String,
    pub created_at: DateTimeUtc,
    pub retired_at: Option<DateTimeUtc>,
    /// A MAC over the kid, algorithm, public JWK and status under a key derived from the JWT
    /// secret (see `auth::keys`); `None` for a row stored before it existed.
    pub authentication_tag: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
