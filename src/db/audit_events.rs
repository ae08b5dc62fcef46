//! The security audit log: inserting events (on the connection or transaction of the change
//! they record), reading them newest first, and deleting those past the retention.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, Condition, ConnectionTrait, EntityTrait as _,
    QueryFilter as _, QueryOrder as _, QuerySelect as _,
};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{Store, StoreError, entities::audit_event};
use crate::domain::AuditEventType;

/// The longest user agent kept, as on sessions.
const MAX_USER_AGENT_CHARS: usize = 256;
/// The longest request id (the longest one `telemetry` accepts).
const MAX_REQUEST_ID_CHARS: usize = 128;

/// One audit event, as written and as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub kind: AuditEventType,
    /// The account the event is about, if any.
    pub user_id: Option<Uuid>,
    /// Who acted: a user's id, or `cli`; `None` for an unauthenticated caller.
    pub actor: Option<String>,
    pub client_address: Option<String>,
    pub user_agent: Option<String>,
    pub session_id: Option<Uuid>,
    pub request_id: Option<String>,
    pub detail: Map<String, Value>,
}

impl AuditEvent {
    fn into_row(self) -> audit_event::ActiveModel {
        audit_event::ActiveModel {
            id: Set(self.id),
            occurred_at: Set(self.occurred_at),
            event_type: Set(self.kind.as_str().to_owned()),
            user_id: Set(self.user_id),
            actor: Set(self.actor),
            client_address: Set(self.client_address),
            user_agent: Set(self
                .user_agent
                .map(|agent| agent.chars().take(MAX_USER_AGENT_CHARS).collect())),
            session_id: Set(self.session_id),
            request_id: Set(self
                .request_id
                .map(|id| id.chars().take(MAX_REQUEST_ID_CHARS).collect())),
            detail: Set(Value::Object(self.detail).to_string()),
        }
    }

    /// `None` for a row no version of this service wrote (a type it does not know).
    fn from_row(row: audit_event::Model) -> Option<Self> {
        let kind = AuditEventType::parse(&row.event_type)?;
        let detail = match serde_json::from_str(&row.detail) {
            Ok(Value::Object(detail)) => detail,
            _ => Map::new(),
        };
        Some(Self {
            id: row.id,
            occurred_at: row.occurred_at,
            kind,
            user_id: row.user_id,
            actor: row.actor,
            client_address: row.client_address,
            user_agent: row.user_agent,
            session_id: row.session_id,
            request_id: row.request_id,
            detail,
        })
    }
}

/// Which events a reading shows; every member narrows it.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub user_id: Option<Uuid>,
    pub kind: Option<AuditEventType>,
    /// At or after.
    pub since: Option<DateTime<Utc>>,
    /// At or before.
    pub until: Option<DateTime<Utc>>,
}

/// Where a page of the audit log starts: after (older than) this event. Time and id together
/// are a total order, so a walk sees every event once, and events added meanwhile (newer)
/// are not met at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCursor {
    occurred_at: DateTime<Utc>,
    id: Uuid,
}

impl AuditCursor {
    /// The opaque text given to clients: microseconds since the epoch and the id, in hex.
    pub fn encode(&self) -> String {
        format!(
            "{:x}.{}",
            self.occurred_at.timestamp_micros(),
            self.id.simple()
        )
    }

    /// `None` for text [`AuditCursor::encode`] cannot have produced.
    pub fn decode(text: &str) -> Option<Self> {
        let (micros, id) = text.split_once('.')?;
        if micros.is_empty()
            || micros.len() > 16
            || !micros
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            || id.len() != 32
            || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return None;
        }
        let micros = i64::from_str_radix(micros, 16).ok()?;
        Some(Self {
            occurred_at: DateTime::from_timestamp_micros(micros)?,
            id: Uuid::try_parse(id).ok()?,
        })
    }
}

/// Inserts `events` on `db`: the store's connection, or the transaction of the change they
/// record (so that the change and its record commit together, or neither does).
pub(super) async fn insert_audit_events_on<C: ConnectionTrait>(
    db: &C,
    events: impl IntoIterator<Item = AuditEvent>,
) -> Result<(), StoreError> {
    let rows: Vec<_> = events.into_iter().map(AuditEvent::into_row).collect();
    if rows.is_empty() {
        return Ok(());
    }
    audit_event::Entity::insert_many(rows).exec(db).await?;
    Ok(())
}

impl Store {
    /// Inserts events that record no change of their own (logins, refreshes), in one statement,
    /// on the pool of logins' writes: like the queue they come from, what a power cut can lose.
    pub async fn insert_audit_events(&self, events: Vec<AuditEvent>) -> Result<(), StoreError> {
        insert_audit_events_on(self.login_connection(), events).await
    }

    /// One page of the events matching `filter`, older than `after`, newest first; and where
    /// the next page starts, while more follow.
    pub async fn audit_events_page(
        &self,
        filter: &AuditFilter,
        after: Option<&AuditCursor>,
        limit: u32,
    ) -> Result<(Vec<AuditEvent>, Option<AuditCursor>), StoreError> {
        use audit_event::Column;

        let mut condition = Condition::all();
        if let Some(user_id) = filter.user_id {
            condition = condition.add(Column::UserId.eq(user_id));
        }
        if let Some(kind) = filter.kind {
            condition = condition.add(Column::EventType.eq(kind.as_str()));
        }
        if let Some(since) = filter.since {
            condition = condition.add(Column::OccurredAt.gte(since));
        }
        if let Some(until) = filter.until {
            condition = condition.add(Column::OccurredAt.lte(until));
        }
        if let Some(AuditCursor { occurred_at, id }) = after {
            condition = condition.add(
                Condition::any()
                    .add(Column::OccurredAt.lt(*occurred_at))
                    .add(
                        Condition::all()
                            .add(Column::OccurredAt.eq(*occurred_at))
                            .add(Column::Id.lt(*id)),
                    ),
            );
        }
        let mut rows = audit_event::Entity::find()
            .filter(condition)
            .order_by_desc(Column::OccurredAt)
            .order_by_desc(Column::Id)
            .limit(u64::from(limit) + 1)
            .all(self.connection())
            .await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next = more
            .then(|| {
                rows.last().map(|row| AuditCursor {
                    occurred_at: row.occurred_at,
                    id: row.id,
                })
            })
            .flatten();
        Ok((
            rows.into_iter().filter_map(AuditEvent::from_row).collect(),
            next,
        ))
    }

    /// Deletes the events that occurred before `before`; how many.
    pub async fn delete_audit_events_before(
        &self,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let result = audit_event::Entity::delete_many()
            .filter(audit_event::Column::OccurredAt.lt(before))
            .exec(self.connection())
            .await?;
        Ok(result.rows_affected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_what_they_cannot_be() {
        let cursor = AuditCursor {
            occurred_at: DateTime::from_timestamp_micros(1_764_700_000_123_456).unwrap(),
            id: Uuid::now_v7(),
        };
        assert_eq!(AuditCursor::decode(&cursor.encode()), Some(cursor.clone()));
        let id = cursor.id.simple().to_string();
        for bad in [
            String::new(),
            ".".into(),
            format!(".{id}"),
            "1.".into(),
            format!("x.{id}"),
            format!("-1.{id}"),
            format!("1.{}", &id[1..]),
            format!("1.{}", id.to_uppercase()),
            format!("{}.{id}", "f".repeat(17)),
            format!("7fffffffffffffff.{id}"),
        ] {
            assert_eq!(AuditCursor::decode(&bad), None, "{bad:?}");
        }
    }
}
