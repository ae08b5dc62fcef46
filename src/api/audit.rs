//! Reading the security audit log: `GET /admin/audit-events`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use poem_openapi::{ApiResponse, Object, OpenApi, param::Query, payload::Json};
use uuid::Uuid;

use super::{
    ApiTags, AppState,
    error::{ApiError, ProtectedError, ValidationIssue},
    input::{Deferred, PageLimit, collect_issues, page_request},
    security::Credentials,
};
use crate::{
    db::{AuditCursor, AuditEvent, AuditFilter},
    domain::{AuditEventType, Scope},
};

/// Events a page holds unless `limit` says otherwise.
const DEFAULT_PAGE_LIMIT: u32 = 50;

/// One security event: what happened (`type`), to which account, who acted, from where.
#[derive(Debug, Object)]
#[oai(rename = "AuditEvent")]
pub struct AuditEventBody {
    /// Identifier.
    pub id: Uuid,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    // No doc comment: poem-openapi would wrap the reference in an `allOf` to carry it, which
    // openapi-python-client refuses for an enumeration ("Cannot take allOf a non-object").
    #[oai(rename = "type")]
    pub kind: AuditEventType,
    /// The account it is about; `null` when none (a failed login to no account, a key).
    pub user_id: Option<Uuid>,
    /// Who acted: a user's id (the account's owner, or an admin), or `cli` for the command
    /// line; `null` for a caller not authenticated (a failed login, a reused refresh token).
    pub actor: Option<String>,
    /// The client's address; `null` at the command line.
    pub client_address: Option<String>,
    /// The client's `User-Agent` (at most 256 characters), if it sent one.
    pub user_agent: Option<String>,
    /// The caller's session (for a login, the session it started); `null` when none.
    pub session_id: Option<Uuid>,
    /// The request's `X-Request-Id`; `null` at the command line.
    pub request_id: Option<String>,
    /// More about it, by type: the scopes granted, the fields changed, how many sessions ended,
    /// why a login was refused. Never a password, token or hash.
    pub detail: BTreeMap<String, serde_json::Value>,
}

impl From<AuditEvent> for AuditEventBody {
    fn from(event: AuditEvent) -> Self {
        Self {
            id: event.id,
            occurred_at: event.occurred_at,
            kind: event.kind,
            user_id: event.user_id,
            actor: event.actor,
            client_address: event.client_address,
            user_agent: event.user_agent,
            session_id: event.session_id,
            request_id: event.request_id,
            detail: event.detail.into_iter().collect(),
        }
    }
}

/// One page of the audit log.
#[derive(Debug, Object)]
#[oai(rename = "AuditEventList")]
pub struct AuditEventListBody {
    /// Newest first.
    pub events: Vec<AuditEventBody>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(ApiResponse)]
pub enum AuditEventListResponse {
    /// One page of the matching events.
    #[oai(status = 200)]
    Ok(Json<AuditEventListBody>),
}

#[derive(Default)]
pub struct AuditApi;

#[OpenApi(tag = "ApiTags::Admin")]
impl AuditApi {
    /// List audit events
    ///
    /// The security audit log, newest first, a page at a time: logins (succeeded, failed,
    /// throttled), refreshes, reuse of a refresh token, revocations, ended sessions, password
    /// changes and resets, account changes, unlocks and signing-key changes, each with who
    /// acted, from which address and in which request. Filters narrow it by account
    /// (`user_id`), `type`, and time (`since`, `until`, RFC 3339, both included). Follow
    /// `next_cursor` (pass it as `cursor`, with the same filters) to visit every matching
    /// event exactly once. Events are kept `PORTCULLIS_AUDIT_RETENTION_DAYS` (default 90).
    /// Needs the `admin` scope.
    #[oai(
        path = "/admin/audit-events",
        method = "get",
        operation_id = "list_audit_events"
    )]
    #[expect(clippy::too_many_arguments, reason = "one per query parameter")]
    async fn list_audit_events(
        &self,
        #[oai(scope = "Scope::Admin")] auth: Credentials,
        state: poem::web::Data<&AppState>,
        /// Only the events about this account.
        user_id: Query<Option<Deferred<Uuid>>>,
        /// Only the events of this type.
        #[oai(name = "type")]
        kind: Query<Option<Deferred<AuditEventType>>>,
        /// Only the events at or after this time (RFC 3339, e.g. `2026-12-01T00:00:00Z`).
        since: Query<Option<Deferred<DateTime<Utc>>>>,
        /// Only the events at or before this time (RFC 3339).
        until: Query<Option<Deferred<DateTime<Utc>>>>,
        /// How many events to return, 1–200 (default 50).
        limit: Query<Option<Deferred<PageLimit<DEFAULT_PAGE_LIMIT>>>>,
        /// The `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<AuditEventListResponse, ProtectedError> {
        auth.authenticate(&state, &[Scope::Admin]).await?;
        let mut issues = Vec::new();
        let user_id = user_id
            .0
            .as_ref()
            .and_then(|raw| collect_issues(raw.parse_uuid_at(&["query", "user_id"]), &mut issues));
        let kind = kind
            .0
            .as_ref()
            .and_then(|raw| collect_issues(raw.parse(&["query", "type"]), &mut issues));
        let since = since
            .0
            .as_ref()
            .and_then(|raw| collect_issues(raw.parse(&["query", "since"]), &mut issues));
        let until = until
            .0
            .as_ref()
            .and_then(|raw| collect_issues(raw.parse(&["query", "until"]), &mut issues));
        if let (Some(since), Some(until)) = (since, until)
            && since > until
        {
            issues.push(ValidationIssue::new(
                &["query", "since"],
                "since must not be after until",
                "value_error",
            ));
        }
        let (limit, after) = page_request(
            limit.0.as_ref(),
            cursor.0.as_deref(),
            AuditCursor::decode,
            &mut issues,
        );
        let Some(limit) = limit.filter(|_| issues.is_empty()) else {
            return Err(ApiError::Validation(issues).into());
        };
        let filter = AuditFilter {
            user_id,
            kind,
            since: since.map(truncated),
            until: until.map(truncated),
        };
        let page = crate::audit::events_page(&state.store, &filter, after.as_ref(), limit)
            .await
            .map_err(ApiError::from)?;
        Ok(AuditEventListResponse::Ok(Json(AuditEventListBody {
            events: page.events.into_iter().map(AuditEventBody::from).collect(),
            next_cursor: page.next.map(|cursor| cursor.encode()),
        })))
    }
}

/// A time at the precision stored (microseconds), so that a bound given in nanoseconds
/// compares as the stored times do.
fn truncated(at: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::SubsecRound as _;
    at.trunc_subsecs(6)
}
