use sea_orm::entity::prelude::*;

/// One security audit event; rows are only ever inserted (and deleted by the retention).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub occurred_at: DateTimeUtc,
    /// The event's type, as `domain::AuditEventType` names it (`login.failed`).
    pub event_type: String,
    pub user_id: Option<Uuid>,
    /// A user's id, or `cli`.
    pub actor: Option<String>,
    pub client_address: Option<String>,
    pub user_agent: Option<String>,
    pub session_id: Option<Uuid>,
    pub request_id: Option<String>,
    /// A JSON object.
    pub detail: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
