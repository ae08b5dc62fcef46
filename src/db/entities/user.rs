use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub username: String,
    #[sea_orm(unique)]
    pub username_normalized: String,
    /// The confusable skeleton of the normalized name (unique); `None` for an account from
    /// before skeletons that looks like an older one (see `db::Store::normalize_usernames`).
    #[sea_orm(unique)]
    pub username_skeleton: Option<String>,
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub hashed_password: String,
    pub disabled: bool,
    pub scopes: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// When the account last logged in; `None` before its first login.
    pub last_login_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::item::Entity")]
    Items,
    #[sea_orm(has_many = "super::session::Entity")]
    Sessions,
    #[sea_orm(has_many = "super::api_key::Entity")]
    ApiKeys,
}

impl Related<super::item::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Items.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

impl Related<super::session::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Sessions.def()
    }
}

impl Related<super::api_key::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ApiKeys.def()
    }
}
