use sea_orm::entity::prelude::*;

/// An address that logged in to an account successfully, and when it last did: the
/// per-account protection spares it. Keys as the throttle's (an HMAC of the name).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "login_addresses")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_key: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub address_key: String,
    pub last_success_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
